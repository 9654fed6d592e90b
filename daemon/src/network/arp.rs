//! The host's IPv4 neighbour table, for virDomainInterfaceAddresses with source
//! `arp`: libvirt reads it by netlink (RTM_GETNEIGH); `/proc/net/arp` holds the same
//! IPv4 entries of the daemon's network namespace and needs no netlink code.

use std::net::Ipv4Addr;

/// One resolved neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
}

/// `ATF_COM` (linux/if_arp.h): the entry is complete, its MAC known.
const ATF_COM: u32 = 0x02;

/// The complete entries of the table (incomplete ones have no MAC yet).
pub fn neighbours() -> std::io::Result<Vec<Neighbour>> {
    Ok(parse(&std::fs::read_to_string("/proc/net/arp")?))
}

/// Parses `/proc/net/arp`: a header line, then `IP HWtype Flags HWaddress Mask Device`.
fn parse(text: &str) -> Vec<Neighbour> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
            (flags & ATF_COM != 0).then_some(())?;
            Some(Neighbour {
                ip: f.first()?.parse().ok()?,
                mac: f.get(3)?.to_ascii_lowercase(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_entries_only() {
        let text = "IP address       HW type     Flags       HW address            Mask     Device\n\
                    192.168.122.45   0x1         0x2         52:54:00:AA:00:02     *        virbr0\n\
                    192.168.122.46   0x1         0x0         00:00:00:00:00:00     *        virbr0\n\
                    10.0.0.7         0x1         0x6         52:54:00:aa:00:03     *        br1\n";
        assert_eq!(
            parse(text),
            [
                Neighbour {
                    ip: "192.168.122.45".parse().unwrap(),
                    mac: "52:54:00:aa:00:02".into()
                },
                Neighbour {
                    ip: "10.0.0.7".parse().unwrap(),
                    mac: "52:54:00:aa:00:03".into()
                }
            ]
        );
    }
}

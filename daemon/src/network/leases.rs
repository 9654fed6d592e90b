//! dnsmasq's lease file (`dhcp-leasefile=`), which dnsmasq rewrites on every change:
//! IPv4 lines are `EXPIRY MAC IP HOSTNAME CLIENTID` (`*` for none); a `duid` line
//! starts the IPv6 part, whose lines are `EXPIRY IAID IP HOSTNAME CLIENTID`.

use std::net::IpAddr;

/// One lease, in the fields of libvirt's `virNetworkDHCPLease`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The network's bridge.
    pub iface: String,
    /// Seconds since the epoch; 0 for an infinite lease.
    pub expiry: i64,
    pub ip: IpAddr,
    pub prefix: u32,
    pub mac: Option<String>,
    pub iaid: Option<String>,
    pub hostname: Option<String>,
    pub clientid: Option<String>,
}

/// Parses the lease file text. `prefix_of` gives the prefix of the network's subnet
/// holding an address.
pub fn parse(text: &str, iface: &str, prefix_of: impl Fn(IpAddr) -> u32) -> Vec<Lease> {
    let mut v6 = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() == Some(&"duid") {
            v6 = true;
            continue;
        }
        if f.len() < 4 {
            continue;
        }
        let (Ok(expiry), Ok(ip)) = (f[0].parse::<i64>(), f[2].parse::<IpAddr>()) else {
            continue;
        };
        let opt = |s: Option<&&str>| s.filter(|s| **s != "*").map(|s| s.to_string());
        out.push(Lease {
            iface: iface.to_string(),
            expiry,
            ip,
            prefix: prefix_of(ip),
            mac: if v6 {
                None
            } else {
                Some(f[1].to_ascii_lowercase())
            },
            iaid: if v6 { Some(f[1].to_string()) } else { None },
            hostname: opt(f.get(3)),
            clientid: opt(f.get(4)),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6_leases() {
        let text = "1765012345 52:54:00:AB:cd:01 192.168.122.50 guest1 01:52:54:00:ab:cd:01\n\
                    1765012399 52:54:00:ab:cd:02 192.168.122.51 * *\n\
                    duid 00:01:00:01:2e:00:00:00:52:54:00:00:00:01\n\
                    1765012400 1234 fd00::50 g6 00:01:00:01\n";
        let l = parse(text, "virbr0", |a| if a.is_ipv4() { 24 } else { 64 });
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].mac.as_deref(), Some("52:54:00:ab:cd:01"));
        assert_eq!(l[0].hostname.as_deref(), Some("guest1"));
        assert_eq!(
            (l[1].hostname.as_deref(), l[1].clientid.as_deref()),
            (None, None)
        );
        assert_eq!((l[2].iaid.as_deref(), l[2].prefix), (Some("1234"), 64));
    }
}

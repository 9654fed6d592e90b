//! virNetworkUpdate's edits of a definition: `<dhcp><host>` (section ip-dhcp-host)
//! and `<dns><host>` (section dns-host), with libvirt's matching rules and errors
//! (`virNetworkDefUpdateIPDHCPHost`, `virNetworkDefUpdateDNSHost`).

use super::error::{Error, Result};
use super::update::{ADD_FIRST, ADD_LAST, DELETE, MODIFY, SECTION_DNS_HOST, SECTION_IP_DHCP_HOST};
use super::xml::{self, DhcpHost, DnsHost, Network};

/// One requested edit.
#[derive(Debug, Clone)]
pub enum Change {
    DhcpHost(DhcpHost),
    DnsHost(DnsHost),
}

fn unknown_command(c: u32) -> Error {
    Error::InvalidArg(format!("unrecognized network update command {c}"))
}

impl Change {
    /// The element of `section`; other sections are not supported.
    pub fn parse(section: u32, text: &str) -> Result<Change> {
        match section {
            SECTION_IP_DHCP_HOST => Ok(Change::DhcpHost(xml::parse_dhcp_host(text)?)),
            SECTION_DNS_HOST => Ok(Change::DnsHost(xml::parse_dns_host(text)?)),
            other => Err(Error::NoSupport(format!(
                "virNetworkUpdate: section {other} (ip-dhcp-host 4 and dns-host 10 are)"
            ))),
        }
    }

    /// Applies the edit to `n`; `text` is the request's XML (for messages).
    pub fn apply(&self, n: &mut Network, command: u32, parent: i32, text: &str) -> Result<()> {
        match self {
            Change::DhcpHost(h) => dhcp_host(n, command, parent, h, text),
            Change::DnsHost(h) => dns_host(n, command, h, text),
        }
    }
}

fn dhcp_host(
    n: &mut Network,
    command: u32,
    parent: i32,
    host: &DhcpHost,
    text: &str,
) -> Result<()> {
    let name = n.name.clone();
    let ip = match usize::try_from(parent).ok() {
        Some(i) => n.ips.get_mut(i),
        None => n
            .ips
            .iter_mut()
            .find(|i| i.dhcp && host.ip.is_none_or(|a| i.contains(a))),
    }
    .ok_or_else(|| {
        Error::OperationInvalid("couldn't locate a matching <ip> element in network".into())
    })?;
    let same = |h: &DhcpHost| {
        (host.mac.is_some() && h.mac == host.mac)
            || (host.mac.is_none() && host.name.is_some() && h.name == host.name)
    };
    match command {
        ADD_LAST | ADD_FIRST => {
            if ip
                .hosts
                .iter()
                .any(|h| same(h) || (host.ip.is_some() && h.ip == host.ip))
            {
                return Err(Error::OperationInvalid(format!(
                    "there is an existing dhcp host entry in network '{name}' that matches \"{}\"",
                    text.trim()
                )));
            }
            if let Some(a) = host.ip {
                if !ip.contains(a) {
                    return Err(Error::ConfigUnsupported(format!(
                        "DHCP host entry {a} is not within network {}",
                        ip.cidr()
                    )));
                }
            }
            ip.dhcp = true;
            if command == ADD_FIRST {
                ip.hosts.insert(0, host.clone());
            } else {
                ip.hosts.push(host.clone());
            }
        }
        DELETE | MODIFY => {
            let i = ip.hosts.iter().position(same).ok_or_else(|| {
                Error::OperationInvalid(format!(
                    "couldn't locate a matching dhcp host entry in network '{name}'"
                ))
            })?;
            if command == DELETE {
                ip.hosts.remove(i);
            } else {
                ip.hosts[i] = host.clone();
            }
        }
        other => return Err(unknown_command(other)),
    }
    Ok(())
}

fn dns_host(n: &mut Network, command: u32, host: &DnsHost, text: &str) -> Result<()> {
    // libvirt: a record matches on its address or any of its names.
    let matches = |h: &DnsHost| h.ip == host.ip || h.names.iter().any(|x| host.names.contains(x));
    match command {
        ADD_LAST | ADD_FIRST => {
            if n.dns_hosts.iter().any(matches) {
                return Err(Error::OperationInvalid(format!(
                    "there is already at least one DNS HOST record with a matching field in network {}",
                    n.name
                )));
            }
            if command == ADD_FIRST {
                n.dns_hosts.insert(0, host.clone());
            } else {
                n.dns_hosts.push(host.clone());
            }
        }
        DELETE => {
            let before = n.dns_hosts.len();
            n.dns_hosts.retain(|h| !matches(h));
            if n.dns_hosts.len() == before {
                return Err(Error::OperationInvalid(format!(
                    "couldn't locate a matching DNS HOST record in network {} for \"{}\"",
                    n.name,
                    text.trim()
                )));
            }
        }
        MODIFY => {
            return Err(Error::OperationUnsupported(
                "DNS HOST records cannot be modified, only added or deleted".into(),
            ))
        }
        other => return Err(unknown_command(other)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Network {
        Network::parse(
            "<network><name>u</name><bridge name='bru'/><ip address='10.6.0.1' prefix='24'>\
             <dhcp><range start='10.6.0.10' end='10.6.0.20'/></dhcp></ip></network>",
        )
        .unwrap()
    }

    #[test]
    fn dhcp_hosts_add_modify_delete() {
        let mut n = net();
        let add = "<host mac='52:54:00:00:00:07' name='seven' ip='10.6.0.7'/>";
        Change::parse(4, add)
            .unwrap()
            .apply(&mut n, ADD_LAST, -1, add)
            .unwrap();
        let e = Change::parse(4, add)
            .unwrap()
            .apply(&mut n, ADD_LAST, -1, add)
            .unwrap_err();
        assert!(e.to_string().contains("existing dhcp host entry"), "{e}");
        let out = "<host mac='52:54:00:00:00:08' ip='10.7.0.8'/>";
        let e = Change::parse(4, out)
            .unwrap()
            .apply(&mut n, ADD_LAST, 0, out)
            .unwrap_err();
        assert!(
            e.to_string().contains("not within network 10.6.0.0/24"),
            "{e}"
        );
        let m = "<host mac='52:54:00:00:00:07' name='seven' ip='10.6.0.17'/>";
        Change::parse(4, m)
            .unwrap()
            .apply(&mut n, MODIFY, -1, m)
            .unwrap();
        assert_eq!(n.ips[0].hosts[0].ip, Some("10.6.0.17".parse().unwrap()));
        Change::parse(4, m)
            .unwrap()
            .apply(&mut n, DELETE, -1, m)
            .unwrap();
        assert!(n.ips[0].hosts.is_empty());
    }

    #[test]
    fn dns_hosts_add_and_delete() {
        let mut n = net();
        let h = "<host ip='10.6.0.9'><hostname>nine</hostname></host>";
        Change::parse(10, h)
            .unwrap()
            .apply(&mut n, ADD_FIRST, -1, h)
            .unwrap();
        assert_eq!(super::super::dnsmasq::addnhosts(&n), "10.6.0.9\tnine\n");
        let e = Change::parse(10, h)
            .unwrap()
            .apply(&mut n, ADD_LAST, -1, h)
            .unwrap_err();
        assert!(e.to_string().contains("matching field"), "{e}");
        Change::parse(10, h)
            .unwrap()
            .apply(&mut n, DELETE, -1, h)
            .unwrap();
        assert!(n.dns_hosts.is_empty());
        assert!(Change::parse(5, "<range/>").is_err());
    }
}

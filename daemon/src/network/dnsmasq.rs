//! Debian's dnsmasq as a network's DHCP and DNS server, with the configuration
//! libvirt 9.0 writes (`networkDnsmasqConfContents`; the `default` network's text is
//! pinned by a golden test) plus `dhcp-leasefile=`: dnsmasq keeps our own lease file,
//! so there is no lease helper script and no dependency on libvirt's.
//!
//! dnsmasq opens the lease file and writes its pid file as root, then drops to
//! `nobody`; it rereads the hosts files as `nobody` on SIGHUP ([`Files`]).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::xml::Network;

/// Where one network's dnsmasq files are.
#[derive(Debug, Clone)]
pub struct Files {
    pub conf: PathBuf,
    pub pid: PathBuf,
    pub hostsfile: PathBuf,
    pub addnhosts: PathBuf,
    pub leases: PathBuf,
}

impl Files {
    /// The files of network `name`: configuration, hosts files and leases in `state`
    /// (kept across reboots, like libvirt's `/var/lib/libvirt/dnsmasq`; world-readable
    /// because dnsmasq rereads the hosts files as `nobody`), the pid file in `run`.
    pub fn new(state: &Path, run: &Path, name: &str) -> Files {
        Files {
            conf: state.join(format!("{name}.conf")),
            pid: run.join(format!("{name}.pid")),
            hostsfile: state.join(format!("{name}.hostsfile")),
            addnhosts: state.join(format!("{name}.addnhosts")),
            leases: state.join(format!("{name}.leases")),
        }
    }
}

/// Whether the network needs a dnsmasq at all (libvirt: any `<ip>`).
pub fn needed(net: &Network) -> bool {
    net.owns_bridge() && !net.ips.is_empty()
}

fn range_size(a: IpAddr, b: IpAddr) -> u128 {
    let n = |x: IpAddr| match x {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    n(b).saturating_sub(n(a)) + 1
}

/// The configuration file's text.
pub fn conf(net: &Network, files: &Files) -> String {
    let mut s = String::new();
    s.push_str(
        "##WARNING:  THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n\
         ##OVERWRITTEN AND LOST.  Changes to this configuration should be made using:\n\
         ##    virsh net-edit ",
    );
    let _ = writeln!(
        s,
        "{}\n## or other application using the libvirt API.\n##",
        net.name
    );
    s.push_str("## dnsmasq conf file created by oxvirt\n");
    s.push_str("strict-order\n");
    if let Some(d) = &net.domain {
        let _ = writeln!(s, "domain={d}\nexpand-hosts");
    }
    if net.dns_enable == Some(false) {
        s.push_str("port=0\n");
    }
    let _ = writeln!(s, "pid-file={}", files.pid.display());
    s.push_str("except-interface=lo\nbind-dynamic\n");
    let _ = writeln!(s, "interface={}", net.bridge.as_deref().unwrap_or(""));
    let mut lease_max: u128 = 0;
    let mut any_dhcp = false;
    for ip in &net.ips {
        if !ip.dhcp {
            continue;
        }
        for (a, b) in &ip.ranges {
            any_dhcp = true;
            lease_max += range_size(*a, *b);
            if ip.is_v4() {
                let _ = writeln!(s, "dhcp-range={a},{b},{}", ip.netmask_v4());
            } else {
                let _ = writeln!(s, "dhcp-range={a},{b},{}", ip.prefix);
            }
        }
        if !ip.hosts.is_empty() && ip.ranges.is_empty() {
            any_dhcp = true;
            let _ = writeln!(s, "dhcp-range={},static", ip.network());
        }
    }
    if any_dhcp {
        s.push_str("dhcp-no-override\ndhcp-authoritative\n");
        let _ = writeln!(s, "dhcp-lease-max={lease_max}");
        let _ = writeln!(s, "dhcp-hostsfile={}", files.hostsfile.display());
    }
    let _ = writeln!(s, "addn-hosts={}", files.addnhosts.display());
    if net.ips.iter().any(|i| !i.is_v4()) {
        s.push_str("enable-ra\n");
        for ip in net.ips.iter().filter(|i| !i.is_v4() && !i.dhcp) {
            let _ = writeln!(s, "dhcp-range={},ra-only", ip.network());
        }
    }
    if net.forward.is_none() {
        // An isolated network: no default route and no upstream DNS for its guests.
        s.push_str("dhcp-option=3\nno-resolv\n");
    }
    if let Some(m) = net.mtu {
        let _ = writeln!(s, "dhcp-option=option:mtu,{m}");
    }
    // Ours: dnsmasq writes the leases itself (libvirt uses --leasefile-ro and a helper).
    let _ = writeln!(s, "dhcp-leasefile={}", files.leases.display());
    s
}

/// `dhcp-hostsfile` lines: `MAC,IP,NAME` (fields the host leaves out are left out).
pub fn hostsfile(net: &Network) -> String {
    let mut s = String::new();
    for ip in net.ips.iter().filter(|i| i.dhcp) {
        for h in &ip.hosts {
            let fields: Vec<String> = [
                h.mac.clone(),
                h.ip.map(|a| {
                    if a.is_ipv6() {
                        format!("[{a}]")
                    } else {
                        a.to_string()
                    }
                }),
                h.name.clone(),
            ]
            .into_iter()
            .flatten()
            .collect();
            let _ = writeln!(s, "{}", fields.join(","));
        }
    }
    s
}

/// `addn-hosts` lines: `IP<TAB>NAME…`.
pub fn addnhosts(net: &Network) -> String {
    let mut s = String::new();
    for h in &net.dns_hosts {
        let _ = writeln!(s, "{}\t{}", h.ip, h.names.join("\t"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libvirt 9.0's `default.conf` as captured (research/networks-storage.md §1.2),
    /// with our pid-file and hosts paths and our lease file.
    const GOLDEN_DEFAULT: &str = include_str!("testdata/default.conf");

    #[test]
    fn default_network_conf_matches_libvirt() {
        let mut n =
            Network::parse(include_str!("../../../packaging/networks/default.xml")).unwrap();
        n.fill_defaults(|_| false);
        let f = Files::new(
            Path::new("/var/lib/oxvirt/dnsmasq"),
            Path::new("/run/oxvirt/networks"),
            "default",
        );
        let text = conf(&n, &f);
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("##"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(body, GOLDEN_DEFAULT);
    }

    #[test]
    fn isolated_network_without_dns_gets_no_router_and_port_0() {
        let n = Network::parse(
            "<network><name>iso</name><bridge name='br5'/><dns enable='no'/>\
             <ip address='10.5.0.1' prefix='24'><dhcp><range start='10.5.0.10' end='10.5.0.19'/>\
             <host mac='52:54:00:00:00:05' ip='10.5.0.5' name='five'/></dhcp></ip></network>",
        )
        .unwrap();
        let f = Files::new(Path::new("/s"), Path::new("/r"), "iso");
        let text = conf(&n, &f);
        for l in [
            "port=0",
            "dhcp-option=3",
            "no-resolv",
            "dhcp-lease-max=10",
            "interface=br5",
        ] {
            assert!(text.lines().any(|x| x == l), "{l} missing in\n{text}");
        }
        assert_eq!(hostsfile(&n), "52:54:00:00:00:05,10.5.0.5,five\n");
    }
}

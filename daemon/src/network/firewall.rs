//! A network's firewall: one nftables table of its own (`inet oxvirt_<bridge>`),
//! loaded with `nft -f -` in one transaction at start and removed with one
//! `delete table` at stop, so a failure leaves either all rules or none.
//!
//! The rules follow libvirt's nftables backend (`network_nftables.c`, libvirt 10):
//! a `forward` chain jumping to `guest_cross`, `guest_output`, `guest_input`, and a
//! `guest_nat` postrouting chain that masquerades the subnet (ports 1024-65535 for
//! TCP/UDP, as libvirt's `<nat><port>`); no host INPUT/OUTPUT rules and no CHECKSUM
//! rule (libvirt dropped both with that backend). Debian's `nft` is the only tool:
//! no iptables.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use super::error::{Error, Result};
use super::xml::{ForwardMode, Network};

/// The table a network's rules live in.
pub fn table_name(bridge: &str) -> String {
    // nft identifiers: letters, digits, '_' (bridge names may hold '-' or '.').
    let safe: String = bridge
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("oxvirt_{safe}")
}

/// The ruleset text for `net`, or `None` when the mode has no rules (`open`,
/// `bridge`).
pub fn ruleset(net: &Network) -> Option<String> {
    let mode = net.forward.as_ref().map(|f| f.mode);
    if matches!(mode, Some(ForwardMode::Open | ForwardMode::Bridge)) {
        return None;
    }
    let br = net.bridge.as_deref()?;
    let dev = net.forward.as_ref().and_then(|f| f.dev.as_deref());
    let table = table_name(br);
    let mut s = String::new();
    let _ = writeln!(s, "table inet {table} {{");
    s.push_str(
        "  chain forward {\n    type filter hook forward priority filter; policy accept;\n    \
         jump guest_cross\n    jump guest_output\n    jump guest_input\n  }\n",
    );
    let _ = writeln!(
        s,
        "  chain guest_cross {{\n    iifname \"{br}\" oifname \"{br}\" accept\n  }}"
    );
    let out_dev = dev.map(|d| format!(" oifname \"{d}\"")).unwrap_or_default();
    let in_dev = dev.map(|d| format!(" iifname \"{d}\"")).unwrap_or_default();
    s.push_str("  chain guest_output {\n");
    if mode.is_some() {
        for ip in &net.ips {
            let fam = if ip.is_v4() { "ip" } else { "ip6" };
            let _ = writeln!(
                s,
                "    {fam} saddr {} iifname \"{br}\"{out_dev} accept",
                ip.cidr()
            );
        }
    }
    let _ = writeln!(s, "    iifname \"{br}\" reject\n  }}");
    s.push_str("  chain guest_input {\n");
    if mode.is_some() {
        let ct = if mode == Some(ForwardMode::Nat) {
            " ct state related,established"
        } else {
            ""
        };
        for ip in &net.ips {
            // libvirt NATs IPv4 only; an IPv6 subnet of a NAT network is routed.
            let fam = if ip.is_v4() { "ip" } else { "ip6" };
            let ct = if ip.is_v4() { ct } else { "" };
            let _ = writeln!(
                s,
                "    {fam} daddr {}{in_dev} oifname \"{br}\"{ct} accept",
                ip.cidr()
            );
        }
    }
    let _ = writeln!(s, "    oifname \"{br}\" reject\n  }}");
    if mode == Some(ForwardMode::Nat) {
        s.push_str(
            "  chain guest_nat {\n    type nat hook postrouting priority srcnat; policy accept;\n",
        );
        for ip in net.ips.iter().filter(|i| i.is_v4()) {
            let net_ = ip.cidr();
            let out = dev.map(|d| format!(" oifname \"{d}\"")).unwrap_or_default();
            let _ = writeln!(s, "    ip saddr {net_} ip daddr 224.0.0.0/24 return");
            let _ = writeln!(s, "    ip saddr {net_} ip daddr 255.255.255.255 return");
            for proto in ["tcp", "udp"] {
                let _ = writeln!(
                    s,
                    "    meta l4proto {proto} ip saddr {net_} ip daddr != {net_}{out} masquerade to :1024-65535"
                );
            }
            let _ = writeln!(s, "    ip saddr {net_} ip daddr != {net_}{out} masquerade");
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    Some(s)
}

fn nft(input: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::System(format!("cannot run nft (Debian package nftables): {e}")))?;
    if let Some(mut w) = child.stdin.take() {
        w.write_all(input.as_bytes())
            .map_err(|e| Error::System(format!("cannot write to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::System(format!("cannot wait for nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::System(format!(
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Loads the network's table (replacing a leftover of the same name) in one
/// transaction.
pub fn add(net: &Network) -> Result<()> {
    let Some(rules) = ruleset(net) else {
        return Ok(());
    };
    let table = table_name(net.bridge.as_deref().unwrap_or_default());
    // `add table` + `delete table` first: a leftover from a crash goes in the same
    // transaction that loads the new rules.
    nft(&format!(
        "add table inet {table}\ndelete table inet {table}\n{rules}"
    ))
}

/// Removes the network's table; a missing table is fine.
pub fn remove(bridge: &str) -> Result<()> {
    let table = table_name(bridge);
    nft(&format!(
        "add table inet {table}\ndelete table inet {table}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_network_ruleset_matches_golden() {
        let mut n =
            Network::parse(include_str!("../../../packaging/networks/default.xml")).unwrap();
        n.fill_defaults(|_| false);
        assert_eq!(ruleset(&n).unwrap(), include_str!("testdata/default.nft"));
    }

    #[test]
    fn modes_pick_their_rules() {
        let route = Network::parse(
            "<network><name>r</name><forward mode='route'/><bridge name='br-r'/>\
             <ip address='10.7.0.1' prefix='24'/></network>",
        )
        .unwrap();
        let r = ruleset(&route).unwrap();
        assert!(r.starts_with("table inet oxvirt_br_r {"), "{r}");
        assert!(
            r.contains("ip daddr 10.7.0.0/24 oifname \"br-r\" accept"),
            "{r}"
        );
        assert!(!r.contains("masquerade"), "{r}");
        let iso = Network::parse(
            "<network><name>i</name><bridge name='bri'/><ip address='10.8.0.1' prefix='24'/></network>",
        )
        .unwrap();
        let i = ruleset(&iso).unwrap();
        assert!(
            !i.contains("saddr") && !i.contains("daddr") && !i.contains("nat"),
            "{i}"
        );
        let open = Network::parse(
            "<network><name>o</name><forward mode='open'/><bridge name='bro'/></network>",
        )
        .unwrap();
        assert!(ruleset(&open).is_none());
    }
}

//! The host side of a network: its bridge, the bridge's addresses, the sysctls.
//!
//! Links and addresses are made with iproute2's `ip`, not a netlink crate: the
//! workspace has no netlink stack, `ip` is on every Debian host (iproute2 is
//! priority important), its errors are the kernel's own words, and these are a
//! handful of calls per network start; `rtnetlink` would add an async netlink stack
//! for the same few messages. STP and the forward delay are set at creation
//! (`stp_state`, `forward_delay`), the sysctls through `/proc/sys`.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use super::error::{Error, Result};
use super::xml::{IpDef, Network};

/// Runs `ip ARGS`; a failure carries `ip`'s own message.
fn ip(args: &[&str]) -> Result<()> {
    ip_raw(args).map_err(|m| Error::System(format!("'ip {}' failed: {m}", args.join(" "))))
}

/// Runs `ip ARGS`; a failure is the kernel's words (iproute2's `RTNETLINK answers: `
/// prefix removed), or why `ip` did not run.
fn ip_raw(args: &[&str]) -> std::result::Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (Debian package iproute2): {e}"))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg.trim();
        return Err(msg
            .strip_prefix("RTNETLINK answers: ")
            .unwrap_or(msg)
            .to_string());
    }
    Ok(())
}

/// Whether the host has a link named `name`.
pub fn exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// libvirt's route-collision check (`networkCheckRouteCollision`): an IPv4 subnet
/// the host already routes through another interface cannot be used.
pub fn check_route_collision(net: &Network) -> Result<()> {
    let table = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let bridge = net.bridge.as_deref().unwrap_or_default();
    for ip in net.ips.iter().filter(|i| i.is_v4()) {
        if let Some(dev) = routed_by(&table, ip, bridge) {
            return Err(Error::Internal(format!(
                "Network is already in use by interface {dev}"
            )));
        }
    }
    Ok(())
}

/// The interface of a `/proc/net/route` line routing exactly `ip`'s subnet, other
/// than `bridge`.
fn routed_by(table: &str, ip: &IpDef, bridge: &str) -> Option<String> {
    let IpAddr::V4(want) = ip.network() else {
        return None;
    };
    let want_mask = ip.netmask_v4();
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 || f[0] == bridge {
            return None;
        }
        // Little-endian hex as the kernel prints it.
        let dest = u32::from_str_radix(f[1], 16).ok()?.swap_bytes();
        let mask = u32::from_str_radix(f[7], 16).ok()?.swap_bytes();
        (mask != 0 && dest == u32::from(want) && mask == u32::from(want_mask))
            .then(|| f[0].to_string())
    })
}

/// Creates the bridge (MAC, MTU, STP, delay), its addresses, and brings it up.
/// On failure the bridge is removed again.
pub fn create(net: &Network) -> Result<()> {
    let br = net
        .bridge
        .as_deref()
        .ok_or_else(|| Error::Internal(format!("network '{}' has no bridge name", net.name)))?;
    if exists(br) {
        return Err(Error::OperationFailed(format!(
            "bridge name '{br}' already in use."
        )));
    }
    let stp = if net.stp.unwrap_or(true) { "1" } else { "0" };
    // forward_delay is in centiseconds.
    let delay = (net.delay.unwrap_or(0) * 100).to_string();
    let mut args = vec!["link", "add", br];
    if let Some(m) = &net.mac {
        args.extend(["address", m.as_str()]);
    }
    let mtu = net.mtu.map(|m| m.to_string());
    if let Some(m) = &mtu {
        args.extend(["mtu", m.as_str()]);
    }
    // libvirt's order: the delay, then STP. With STP on, kernels raise a delay below
    // 2 s to 2 s (`br_stp_start`); libvirt's bridges get the same.
    args.extend(["type", "bridge", "forward_delay", &delay, "stp_state", stp]);
    // libvirt's words (virNetDevBridgeCreate); without CAP_NET_ADMIN, as a session
    // daemon runs, "Operation not permitted".
    ip_raw(&args)
        .map_err(|m| Error::System(format!("error creating bridge interface {br}: {m}")))?;
    let rest = (|| {
        if !net.ips.iter().any(|i| !i.is_v4()) {
            // libvirt: no IPv6 on a bridge without an IPv6 <ip> (no link-local either).
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{br}/disable_ipv6"), "1");
        }
        for i in &net.ips {
            ip(&[
                "addr",
                "add",
                &format!("{}/{}", i.address, i.prefix),
                "dev",
                br,
            ])?;
        }
        ip(&["link", "set", br, "up"])
    })();
    if let Err(e) = rest {
        let _ = remove(br);
        return Err(e);
    }
    Ok(())
}

/// Deletes the bridge; a missing one is fine.
pub fn remove(br: &str) -> Result<()> {
    if !exists(br) {
        return Ok(());
    }
    ip(&["link", "del", br])
}

/// Turns on forwarding for the families the network routes (per network namespace).
pub fn enable_forwarding(net: &Network) -> Result<()> {
    let mut files = Vec::new();
    if net.ips.iter().any(IpDef::is_v4) {
        files.push("/proc/sys/net/ipv4/ip_forward");
    }
    if net.ips.iter().any(|i| !i.is_v4()) {
        files.push("/proc/sys/net/ipv6/conf/all/forwarding");
    }
    for f in files {
        std::fs::write(f, "1").map_err(|e| Error::io("enable forwarding in", Path::new(f), &e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_collision_finds_the_interface() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t007AA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let n = Network::parse(include_str!("../../../packaging/networks/default.xml")).unwrap();
        assert_eq!(
            routed_by(table, &n.ips[0], "virbr0").as_deref(),
            Some("eth0")
        );
        assert_eq!(routed_by(table, &n.ips[0], "eth0"), None);
    }
}

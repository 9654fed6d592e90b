//! passt's command-line options for a NIC's [`UserNet`]: guest addresses (`--address`,
//! `--netmask`), gateways (`--gateway`) and forwarded ports (`--tcp-ports` /
//! `--udp-ports`), the port specs written as libvirt 9.0 writes them for
//! `<portForward>` (src/qemu/qemu_passt.c): `[ADDR][%DEV]/` then comma-joined
//! `[~]START[-END][:TO[-TO+END-START]]`, or `all` without ranges.

use std::fmt::Write;

use machine_spec::{PortForward, PortProto, UserNet};

/// The options, in libvirt's order: addresses, then port forwards; gateways after the
/// addresses (libvirt 9.0 has no `<route>` for passt).
pub fn passt_args(user: &UserNet) -> Vec<String> {
    let mut args = Vec::new();
    for a in &user.addresses {
        args.push("--address".to_string());
        args.push(a.address.to_string());
        // passt takes no IPv6 prefix; the translation refuses one.
        if let (Some(p), true) = (a.prefix, a.address.is_ipv4()) {
            args.push("--netmask".to_string());
            args.push(p.to_string());
        }
    }
    for g in &user.gateways {
        args.push("--gateway".to_string());
        args.push(g.to_string());
    }
    for f in &user.port_forwards {
        args.push(
            match f.proto {
                PortProto::Tcp => "--tcp-ports",
                PortProto::Udp => "--udp-ports",
            }
            .to_string(),
        );
        args.push(port_spec(f));
    }
    args
}

/// One forward's spec, e.g. `127.0.0.1%lo/2022:22,~2025`.
fn port_spec(f: &PortForward) -> String {
    let mut s = String::new();
    if let Some(a) = f.address {
        s.push_str(&a.to_string());
    }
    if let Some(d) = &f.dev {
        s.push('%');
        s.push_str(d);
    }
    if !s.is_empty() {
        s.push('/');
    }
    if f.ranges.is_empty() {
        s.push_str("all");
    }
    for (i, r) in f.ranges.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        if r.exclude {
            s.push('~');
        }
        let _ = write!(s, "{}", r.start);
        if let Some(end) = r.end {
            let _ = write!(s, "-{end}");
        }
        if let Some(to) = r.to {
            let _ = write!(s, ":{to}");
            if let Some(end) = r.end {
                // The translation checks that this stays within 65535.
                let _ = write!(
                    s,
                    "-{}",
                    u32::from(end) + u32::from(to) - u32::from(r.start)
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use machine_spec::{PortRange, UserAddress};

    fn range(start: u16, end: Option<u16>, to: Option<u16>, exclude: bool) -> PortRange {
        PortRange {
            start,
            end,
            to,
            exclude,
        }
    }

    fn forward(proto: PortProto, address: Option<&str>, dev: Option<&str>) -> PortForward {
        PortForward {
            proto,
            address: address.map(|a| a.parse().unwrap()),
            dev: dev.map(str::to_string),
            ranges: Vec::new(),
        }
    }

    #[test]
    fn defaults_give_no_options() {
        assert!(passt_args(&UserNet::default()).is_empty());
    }

    #[test]
    fn addresses_netmask_and_gateways() {
        let user = UserNet {
            addresses: vec![
                UserAddress {
                    address: "10.0.2.15".parse().unwrap(),
                    prefix: Some(24),
                },
                UserAddress {
                    address: "fd00::15".parse().unwrap(),
                    prefix: None,
                },
            ],
            gateways: vec!["10.0.2.2".parse().unwrap()],
            port_forwards: Vec::new(),
        };
        assert_eq!(
            passt_args(&user),
            [
                "--address",
                "10.0.2.15",
                "--netmask",
                "24",
                "--address",
                "fd00::15",
                "--gateway",
                "10.0.2.2"
            ]
        );
    }

    /// Address, interface, ranges, `to` with and without an end, exclusions: each
    /// written as qemu_passt.c writes it.
    #[test]
    fn port_specs_as_libvirt_writes_them() {
        let mut all_udp = forward(PortProto::Udp, None, None);
        assert_eq!(port_spec(&all_udp), "all");
        all_udp.dev = Some("eth0".into());
        assert_eq!(port_spec(&all_udp), "%eth0/all");

        let mut f = forward(PortProto::Tcp, Some("2001:db8:ac10:fd01::1:10"), None);
        f.ranges = vec![
            range(22, None, Some(2022), false),
            range(5000, Some(5020), Some(6000), false),
            range(5010, Some(5015), None, true),
        ];
        assert_eq!(
            port_spec(&f),
            "2001:db8:ac10:fd01::1:10/22:2022,5000-5020:6000-6020,~5010-5015"
        );

        let mut f = forward(PortProto::Udp, Some("1.2.3.4"), Some("eth0"));
        f.ranges = vec![range(80, None, None, false), range(443, None, None, false)];
        assert_eq!(port_spec(&f), "1.2.3.4%eth0/80,443");

        let mut f = forward(PortProto::Tcp, None, None);
        f.ranges = vec![range(2022, None, Some(22), false)];
        let user = UserNet {
            port_forwards: vec![f, forward(PortProto::Udp, None, None)],
            ..UserNet::default()
        };
        assert_eq!(
            passt_args(&user),
            ["--tcp-ports", "2022:22", "--udp-ports", "all"]
        );
    }

    #[test]
    fn a_range_mapped_to_the_top_of_the_port_space() {
        let mut f = forward(PortProto::Tcp, None, None);
        f.ranges = vec![range(1000, Some(1010), Some(65525), false)];
        assert_eq!(port_spec(&f), "1000-1010:65525-65535");
    }
}

//! User-mode networking (`<interface type='user'>`, what session-mode domains and
//! virt-install on `qemu:///session` have): the Linux test guest's virtio-net runs on
//! Debian's `passt`, which the VMM starts on a socket pair. The guest gets its address
//! from passt's DHCP with busybox `udhcpc` and reaches a TCP server listening on the
//! host's loopback through the gateway address (passt maps it to the host), no root
//! and no tap involved. Skips loudly without passt.

#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use machine_spec::{exit, DeviceKind, Net, NetBackend};
use oxvirt_tests::{skip, Vm};
use support::{base64, check, guest, pci_device, wait_ready, Report, EXIT};

const MAC: &str = "52:54:00:70:61:73";

/// DHCP from passt, then TCP to the gateway address (the host, through passt).
fn script(port: u16) -> String {
    format!(
        r#"printf '#!/bin/sh\ncase "$1" in bound) ip addr add $ip/$mask dev $interface; ip route add default via $router; echo "$router" >/tmp/router;; esac\n' >/tmp/u.sh
chmod +x /tmp/u.sh
ip link set eth0 up
udhcpc -i eth0 -n -q -f -t 10 -T 3 -s /tmp/u.sh >/tmp/udhcpc.log 2>&1 || {{ cat /tmp/udhcpc.log; exit 1; }}
echo "OXCHECK dhcp addr=$(ip -4 -o addr show eth0 | awk '{{print $4}}') router=$(cat /tmp/router)"
for i in 1 2 3; do r=$(echo from-guest | nc -w 30 "$(cat /tmp/router)" {port}); [ -n "$r" ] && break; done
echo "OXCHECK tcp reply=$r"
[ "$r" = from-host ]
"#
    )
}

#[test]
fn linux_guest_user_networking_through_passt() {
    const T: &str = "linux_guest_user_networking_through_passt";
    if !Path::new("/usr/bin/passt").exists() {
        skip(T, "/usr/bin/passt missing (Debian package passt)");
        return;
    }
    let Some(g) = guest(T) else {
        return;
    };
    // The host-side server: on loopback only, reached by the guest through passt.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut c, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).unwrap_or(0);
        let _ = c.write_all(b"from-host\n");
        (peer, String::from_utf8_lossy(&buf[..n]).trim().to_string())
    });

    let mem = if g.stock { 256 } else { 128 };
    let mut spec = g.spec(
        1,
        mem,
        &format!("oxvirt_cmd64={}", base64(script(port).as_bytes())),
    );
    spec.devices.push(pci_device(
        "net0",
        5,
        DeviceKind::Net(Net {
            mac: MAC.into(),
            backend: NetBackend::User,
            link_up: true,
            mtu: None,
        }),
    ));
    let vm = Vm::start(&spec);
    let r = wait_ready(&vm, g);
    check(
        &vm,
        r.all("net").iter().any(|l| l.get("mac") == MAC),
        &format!("the guest has no NIC with {MAC}: {:?}", r.all("net")),
    );
    vm.wait_for("OXVIRT-CMD-RC=", Duration::from_secs(600));
    let code = vm.wait_exit(EXIT);
    check(
        &vm,
        code == exit::POWEROFF,
        &format!("VMM exit status {code}, expected power-off"),
    );
    let r = Report::parse(&vm.console());
    check(
        &vm,
        r.cmd_rc == Some(0),
        &format!("the guest's network commands failed: {}", r.cmd_output),
    );
    check(
        &vm,
        r.check_lines("dhcp")
            .first()
            .is_some_and(|l| !l.get("addr").is_empty() && !l.get("router").is_empty()),
        &format!("no DHCP lease from passt: {}", r.cmd_output),
    );
    let (peer, said) = server.join().unwrap();
    assert!(peer.ip().is_loopback(), "{peer}");
    assert_eq!(said, "from-guest");
}

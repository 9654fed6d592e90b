//! User-mode networking (`<interface type='user'>`, what session-mode domains and
//! virt-install on `qemu:///session` have): the Linux test guest's virtio-net runs on
//! Debian's `passt`, which the VMM starts on a socket pair, with the NIC's `<ip>`,
//! `<route>` and `<portForward>` as passt options. The guest gets the configured
//! address and gateway from passt's DHCP with busybox `udhcpc`, reaches a TCP server
//! listening on the host's loopback through the gateway address (passt maps it to the
//! host), and a host connection to the forwarded loopback port reaches a listener in
//! the guest; no root and no tap involved. Skips loudly without passt.

#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use machine_spec::{
    exit, DeviceKind, Net, NetBackend, PortForward, PortProto, PortRange, UserAddress, UserNet,
};
use oxvirt_tests::{skip, Vm};
use support::{base64, check, guest, pci_device, wait_ready, Report, DHCP_ETH0, EXIT};

const MAC: &str = "52:54:00:70:61:73";

/// The guest's address and gateway, handed out by passt (`<ip>`, `<route>`).
const GUEST_ADDR: &str = "10.0.2.15";
const GATEWAY: &str = "10.0.2.2";
/// The guest port the host's forwarded port leads to (`<range to>`).
const GUEST_PORT: u16 = 2222;

/// DHCP from passt, TCP to the gateway address (the host, through passt), then a
/// listener for the forwarded port.
fn script(port: u16) -> String {
    format!(
        r#"{DHCP_ETH0}echo "OXCHECK dhcp addr=$(ip -4 -o addr show eth0 | awk '{{print $4}}') router=$(cat /tmp/router)"
for i in 1 2 3; do r=$(echo from-guest | nc -w 30 "$(cat /tmp/router)" {port}); [ -n "$r" ] && break; done
echo "OXCHECK tcp reply=$r"
[ "$r" = from-host ] || exit 1
(sleep 300 | nc -l -p {GUEST_PORT} >/tmp/got) &
sleep 1
echo "OXCHECK listening"
i=0; while [ $i -lt 120 ] && ! [ -s /tmp/got ]; do sleep 1; i=$((i+1)); done
echo "OXCHECK fwd got=$(cat /tmp/got)"
[ "$(cat /tmp/got)" = from-host-fwd ]
"#
    )
}

/// A free port on the host's loopback for passt to listen on.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

    let fwd_port = free_port();
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
            backend: NetBackend::User(UserNet {
                addresses: vec![UserAddress {
                    address: GUEST_ADDR.parse().unwrap(),
                    prefix: Some(24),
                }],
                gateways: vec![GATEWAY.parse().unwrap()],
                // <portForward proto='tcp' address='127.0.0.1'><range start=FWD to=2222/>
                port_forwards: vec![PortForward {
                    proto: PortProto::Tcp,
                    address: Some("127.0.0.1".parse().unwrap()),
                    dev: None,
                    ranges: vec![PortRange {
                        start: fwd_port,
                        end: None,
                        to: Some(GUEST_PORT),
                        exclude: false,
                    }],
                }],
            }),
            link_up: true,
            mtu: None,
            model: Default::default(),
            queues: None,
            tap_fds: Vec::new(),
            vhost_fds: Vec::new(),
            driver: Default::default(),
        }),
    ));
    let vm = Vm::start(&spec);
    let r = wait_ready(&vm, g);
    check(
        &vm,
        r.all("net").iter().any(|l| l.get("mac") == MAC),
        &format!("the guest has no NIC with {MAC}: {:?}", r.all("net")),
    );
    // Host → guest through the forwarded port (passt listens on the host's loopback).
    // (Or the script's end, when an earlier step failed: the checks below report it.)
    let deadline = Instant::now() + Duration::from_secs(600);
    while !vm.console().contains("OXCHECK listening") && !vm.console().contains("OXVIRT-CMD-RC=") {
        check(
            &vm,
            Instant::now() < deadline,
            "the guest's script did not get to its listener",
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut sent = false;
    for _ in 0..10 {
        if !vm.console().contains("OXCHECK listening") {
            break;
        }
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", fwd_port)) {
            sent = c.write_all(b"from-host-fwd\n").is_ok();
            let _ = c.shutdown(Shutdown::Write);
            // passt closes our end once the guest's listener has closed its own.
            let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
            let _ = c.read(&mut [0u8; 16]);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    vm.wait_for("OXVIRT-CMD-RC=", Duration::from_secs(300));
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
        r.check_lines("dhcp").first().is_some_and(|l| {
            l.get("addr") == format!("{GUEST_ADDR}/24") && l.get("router") == GATEWAY
        }),
        &format!(
            "no DHCP lease with {GUEST_ADDR}/24 via {GATEWAY} from passt: {}",
            r.cmd_output
        ),
    );
    check(
        &vm,
        sent,
        &format!("cannot connect to the forwarded port 127.0.0.1:{fwd_port}"),
    );
    check(
        &vm,
        r.check_lines("fwd")
            .first()
            .is_some_and(|l| l.get("got") == "from-host-fwd"),
        &format!(
            "the forwarded connection did not reach the guest: {}",
            r.cmd_output
        ),
    );
    let (peer, said) = server.join().unwrap();
    assert!(peer.ip().is_loopback(), "{peer}");
    assert_eq!(said, "from-guest");
}

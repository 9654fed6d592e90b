//! The emulated Intel NICs, each with the Linux test guest's own driver: the 82540EM
//! (`<model type='e1000'/>`, what virt-install gives generic and i440FX guests;
//! driver `e1000`) and the 82574L (`<model type='e1000e'/>`, what it gives Windows
//! on q35; driver `e1000e`, which takes extended receive descriptors and falls back
//! from MSI-X and MSI to INTx). The driver binds to it, gets an address by DHCP through passt and moves 256 KiB each way over TCP — the
//! guest's large writes leave through the NIC's TCP segmentation and checksum
//! insertion, the host's reply fills the receive ring many times over, and the
//! guest's pure ACKs (which its driver pads to 60 bytes) reach passt. Skips loudly
//! without passt.
//!
//! The guest keeps its sending side open until the reply is in: Debian 12's passt
//! sends more to a guest that has half-closed only when the host socket has news,
//! so a reply written at once could stall after the first window (passt's own
//! behaviour: tcp_tap_handler's TAP_FIN_RCVD branch only takes ACKs).

#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use machine_spec::{exit, DeviceKind, Net, NetBackend, NetModel, UserNet};
use oxvirt_tests::{skip, Vm};
use support::{base64, check, guest, pci_device, wait_ready, Report, DHCP_ETH0, EXIT};

/// Bytes the guest sends, and the host sends back.
const BULK: usize = 256 * 1024;
const REPLY: usize = 256 * 1024;

/// `yes word | head -c len`.
fn pattern(word: &str, len: usize) -> Vec<u8> {
    format!("{word}\n").bytes().cycle().take(len).collect()
}

fn script(port: u16) -> String {
    format!(
        r#"echo "OXCHECK driver name=$(basename "$(readlink /sys/class/net/eth0/device/driver)") device=$(cat /sys/class/net/eth0/device/device)"
{DHCP_ETH0}echo "OXCHECK dhcp addr=$(ip -4 -o addr show eth0 | awk '{{print $4}}')"
yes 0123456789abcdef | head -c {BULK} >/tmp/out
(cat /tmp/out; sleep 20) | nc -w 60 "$(cat /tmp/router)" {port} >/tmp/in
echo "OXCHECK bulk got=$(wc -c </tmp/in) want=$(yes fedcba9876543210 | head -c {REPLY} | md5sum | cut -d' ' -f1) md5=$(md5sum </tmp/in | cut -d' ' -f1)"
grep -E 'eth0|e1000' /proc/interrupts || true
[ "$(wc -c </tmp/in)" = {REPLY} ]
"#
    )
}

#[test]
fn linux_e1000_driver_moves_bulk_tcp_both_ways() {
    bulk_both_ways(
        "linux_e1000_driver_moves_bulk_tcp_both_ways",
        NetModel::E1000,
        "e1000",
        "0x100e",
    );
}

#[test]
fn linux_e1000e_driver_moves_bulk_tcp_both_ways() {
    bulk_both_ways(
        "linux_e1000e_driver_moves_bulk_tcp_both_ways",
        NetModel::E1000e,
        "e1000e",
        "0x10d3",
    );
}

/// Boots the guest with one `model` NIC on passt and checks that Linux's `driver`
/// binds to PCI device `device_id`, leases an address and moves the bulk both ways.
fn bulk_both_ways(t: &str, model: NetModel, driver: &str, device_id: &str) {
    const MAC: &str = "52:54:00:e1:00:00";
    if !Path::new("/usr/bin/passt").exists() {
        skip(t, "/usr/bin/passt missing (Debian package passt)");
        return;
    }
    let Some(g) = guest(t) else {
        return;
    };
    // The host side: reads the guest's bytes, then answers with its own.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut got = vec![0u8; BULK];
        let ok = c.read_exact(&mut got).is_ok();
        let _ = c.write_all(&pattern("fedcba9876543210", REPLY));
        // Half-close and wait for the guest to close: closing at once could reset
        // the connection under data still in flight.
        let _ = c.shutdown(std::net::Shutdown::Write);
        let _ = c.read_to_end(&mut Vec::new());
        (ok, got)
    });

    let mut spec = g.spec(
        1,
        if g.stock { 256 } else { 128 },
        &format!("oxvirt_cmd64={}", base64(script(port).as_bytes())),
    );
    spec.devices.push(pci_device(
        "net0",
        5,
        DeviceKind::Net(Net {
            mac: MAC.into(),
            backend: NetBackend::User(UserNet::default()),
            link_up: true,
            mtu: None,
            model,
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
    vm.wait_for("OXVIRT-CMD-RC=", Duration::from_secs(600));
    let code = vm.wait_exit(EXIT);
    check(
        &vm,
        code == exit::POWEROFF,
        &format!("VMM exit status {code}, expected power-off"),
    );
    let r = Report::parse(&vm.console());
    let out = &r.cmd_output;
    check(
        &vm,
        r.check_lines("driver")
            .first()
            .is_some_and(|l| l.get("name") == driver && l.get("device") == device_id),
        &format!("eth0 is not driven by Linux's {driver} driver on device {device_id}: {out}"),
    );
    check(
        &vm,
        r.check_lines("dhcp")
            .first()
            .is_some_and(|l| !l.get("addr").is_empty()),
        &format!("no DHCP lease through the {driver} NIC: {out}"),
    );
    let (ok, got) = server.join().unwrap();
    check(
        &vm,
        ok && got == pattern("0123456789abcdef", BULK),
        &format!("the host did not get the guest's {BULK} bytes intact: {out}"),
    );
    check(
        &vm,
        r.check_lines("bulk")
            .first()
            .is_some_and(|l| l.get("got") == REPLY.to_string() && l.get("md5") == l.get("want")),
        &format!("the guest did not get the host's {REPLY} bytes intact: {out}"),
    );
    check(
        &vm,
        r.cmd_rc == Some(0),
        &format!("the guest's commands failed: {out}"),
    );
}

//! virtio-rng, virtio-console, virtio-balloon and virtio-vsock through the real
//! VMM, driven by the oxtest guest's own virtio drivers.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use machine_spec::{Balloon, CharBackend, Console, Device, DeviceKind, Vsock};
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::spec::{pci_slot, rng_device};
use oxvirt_tests::{oxtest_spec, Vm, GUEST_TIMEOUT};

#[test]
fn rng_returns_bytes_and_console_output_reaches_its_file() {
    if !require_kvm("rng_returns_bytes_and_console_output_reaches_its_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vport.log");
    let vm = Vm::start(&oxtest_spec(
        "pci,virtio,poweroff",
        vec![
            rng_device("rng0", 6),
            Device {
                boot_index: None,
                id: "console1".into(),
                pci: pci_slot(7),
                kind: DeviceKind::Console(Console {
                    backend: CharBackend::File {
                        path: out.clone(),
                        append: false,
                    },
                    name: None,
                }),
            },
        ],
    ));
    vm.wait_poweroff(GUEST_TIMEOUT);
    vm.assert_no_failures();
    let pci = vm.expect_ok("pci", GUEST_TIMEOUT);
    assert!(
        pci.details.contains("06.0=0x1af4:0x1044"),
        "{}",
        pci.details
    );
    assert!(
        pci.details.contains("07.0=0x1af4:0x1043"),
        "{}",
        pci.details
    );
    let rng = vm.expect_ok("vrng", GUEST_TIMEOUT);
    assert_eq!(rng.field("bytes"), Some("64"));
    vm.expect_ok("vcons", GUEST_TIMEOUT);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("OXVIRTIO console says hello"),
        "console backend got {text:?}\n{}",
        vm.console()
    );
}

#[test]
fn balloon_inflates_when_asked_over_qmp() {
    if !require_kvm("balloon_inflates_when_asked_over_qmp") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let qmp = dir.path().join("qmp.sock");
    let s = oxtest_spec(
        "virtio,balloon,poweroff",
        vec![Device {
            boot_index: None,
            id: "balloon0".into(),
            pci: pci_slot(5),
            kind: DeviceKind::Balloon(Balloon {
                stats_period: 0,
                deflate_on_oom: false,
            }),
        }],
    );
    let vm = Vm::start_with(&s, &["--qmp", qmp.to_str().unwrap()]);
    vm.wait_for("OXTEST vballoon-wait", GUEST_TIMEOUT);
    let mut c = qmp_connect(&qmp);
    // 128 MiB guest asked down to 120 MiB: 2048 pages of 4 KiB.
    let r = qmp_cmd(
        &mut c,
        r#"{"execute":"balloon","arguments":{"value":125829120}}"#,
    );
    assert!(r.contains("\"return\""), "{r}");
    let line = vm.expect_ok("vballoon", GUEST_TIMEOUT);
    assert_eq!(line.field("pages"), Some("2048"), "{}", vm.console());
    let deadline = Instant::now() + GUEST_TIMEOUT;
    loop {
        let r = qmp_cmd(&mut c, r#"{"execute":"query-balloon"}"#);
        if r.contains("\"actual\":125829120") || r.contains("\"actual\": 125829120") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "balloon never reached the target: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    vm.wait_poweroff(GUEST_TIMEOUT);
    vm.assert_no_failures();
}

fn qmp_connect(path: &std::path::Path) -> BufReader<UnixStream> {
    let deadline = Instant::now() + GUEST_TIMEOUT;
    let s = loop {
        match UnixStream::connect(path) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("QMP socket {}: {e}", path.display()),
        }
    };
    s.set_read_timeout(Some(GUEST_TIMEOUT)).unwrap();
    let mut c = BufReader::new(s);
    let mut greeting = String::new();
    c.read_line(&mut greeting).unwrap();
    assert!(greeting.contains("\"QMP\""), "{greeting}");
    qmp_cmd(&mut c, r#"{"execute":"qmp_capabilities"}"#);
    c
}

/// Sends one command and returns its reply line (skipping events).
fn qmp_cmd(c: &mut BufReader<UnixStream>, cmd: &str) -> String {
    c.get_mut().write_all(cmd.as_bytes()).unwrap();
    c.get_mut().write_all(b"\n").unwrap();
    loop {
        let mut line = String::new();
        c.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "QMP closed");
        if !line.contains("\"event\"") {
            return line;
        }
    }
}

#[test]
fn vsock_carries_bytes_both_ways() {
    if !require_kvm("vsock_carries_bytes_both_ways") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vsock.sock");
    // The guest connects to host port 1234 (→ <uds>_1234), echoes what it gets
    // there, then accepts a host connection on its port 5000.
    let host = UnixListener::bind(format!("{}_1234", uds.display())).unwrap();
    let s = oxtest_spec(
        "virtio,vsock,poweroff",
        vec![Device {
            boot_index: None,
            id: "vsock0".into(),
            pci: pci_slot(8),
            kind: DeviceKind::Vsock(Vsock {
                guest_cid: 42,
                uds_path: uds.clone(),
            }),
        }],
    );
    let vm = Vm::start(&s);
    host.set_nonblocking(false).unwrap();
    let (mut g, _) = accept_within(&host, &vm);
    g.set_read_timeout(Some(GUEST_TIMEOUT)).unwrap();
    let mut hello = [0u8; 11];
    g.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"OXVSOCK-G2H", "guest to host");
    g.write_all(b"OXVSOCK-H2G").unwrap();
    vm.expect_ok("vsock-connect", GUEST_TIMEOUT);
    // Host-initiated connection to guest port 5000.
    vm.wait_for("OXTEST vsock-listen", GUEST_TIMEOUT);
    let mut c = UnixStream::connect(&uds).unwrap();
    c.set_read_timeout(Some(GUEST_TIMEOUT)).unwrap();
    c.write_all(b"CONNECT 5000\n").unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut ok = String::new();
    r.read_line(&mut ok).unwrap();
    assert!(ok.starts_with("OK "), "{ok:?}");
    let mut greet = [0u8; 11];
    r.read_exact(&mut greet).unwrap();
    assert_eq!(&greet, b"OXVSOCK-ACC");
    vm.wait_poweroff(GUEST_TIMEOUT);
    vm.assert_no_failures();
}

fn accept_within(l: &UnixListener, vm: &Vm) -> (UnixStream, std::os::unix::net::SocketAddr) {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + GUEST_TIMEOUT;
    loop {
        match l.accept() {
            Ok(c) => {
                c.0.set_nonblocking(false).unwrap();
                return c;
            }
            Err(_) if Instant::now() < deadline && vm.exited().is_none() => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => vm.fail(&format!("guest never connected over vsock: {e}")),
        }
    }
}

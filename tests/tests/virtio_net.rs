//! virtio-net through the real VMM, inside a network namespace the test makes:
//! the oxtest guest sends a broadcast frame (ethertype 0x88b5) that must arrive
//! on the host side, and a frame the host sends must reach the guest. Two
//! backends: an existing tap opened by name, and a tap the VMM creates and
//! attaches to a bridge.
//!
//! Needs root (network namespaces, taps) and `ip` (iproute2); skips loudly
//! without them.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use machine_spec::NetBackend;
use oxvirt_tests::host::skip;
use oxvirt_tests::net::require_tap;
use oxvirt_tests::spec::net_device;
use oxvirt_tests::{bin_path, oxtest_spec, GUEST_TIMEOUT};

const MAC: &str = "52:54:00:0a:0b:0c";

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Netns> {
        let name = format!("oxv{tag}{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Netns(name))
    }

    /// `ip -n NAME ARGS…`.
    fn ip_run(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .output()
            .unwrap()
    }

    /// As [`Netns::ip_run`]; fails the test unless it succeeded.
    fn ip(&self, args: &[&str]) {
        let o = self.ip_run(args);
        assert!(
            o.status.success(),
            "ip -n {} {args:?}: {}",
            self.0,
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// What `ip -n NAME ARGS…` prints.
    fn ip_out(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.ip_run(args).stdout).into_owned()
    }

    fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The host side of the exchange: waits for the guest's frame on `iface`,
/// prints its source MAC, answers with a frame to it.
const PEER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind((sys.argv[1], 0))
s.settimeout(120)
print("READY", flush=True)
while True:
    f = s.recv(4096)
    if f[12:14] == b"\x88\xb5" and f[14:24] == b"OXVNET-G2H":
        break
print("GOT", f[6:12].hex(":"), flush=True)
reply = f[6:12] + bytes.fromhex("020000000001") + b"\x88\xb5" + b"OXVNET-H2G" + bytes(36)
for _ in range(20):
    s.send(reply)
    try:
        s.settimeout(0.25)
        s.recv(4096)
    except socket.timeout:
        pass
print("SENT", flush=True)
"#;

fn collect(mut r: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

fn wait_text(buf: &Mutex<String>, needle: &str, child: &mut Child, what: &str) -> bool {
    let deadline = Instant::now() + GUEST_TIMEOUT;
    while Instant::now() < deadline {
        if buf.lock().unwrap().contains(needle) {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return buf.lock().unwrap().contains(needle);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{what}: no {needle:?} within {GUEST_TIMEOUT:?}");
    false
}

/// The namespace `test` runs in, or `None` (SKIPPED printed) when the host lacks
/// what it needs.
fn netns_for(test: &str, tag: &str) -> Option<Netns> {
    if !require_tap(test) {
        return None;
    }
    let ns = Netns::new(tag);
    if ns.is_none() {
        skip(test, "cannot create a network namespace (ip netns add)");
    }
    ns
}

/// Boots the guest in `ns` with a NIC on `backend`, runs the peer on `iface`.
fn exchange(ns: &Netns, backend: NetBackend, iface: &str) {
    let mut peer = ns
        .exec("/usr/bin/python3")
        .args(["-c", PEER, iface])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let peer_out = collect(peer.stdout.take().unwrap());
    let peer_err = collect(peer.stderr.take().unwrap());
    if !wait_text(&peer_out, "READY", &mut peer, "peer") {
        panic!("peer did not start: {}", peer_err.lock().unwrap());
    }

    let dir = tempfile::tempdir().unwrap();
    let s = oxtest_spec(
        "pci,virtio,net,poweroff",
        vec![net_device("net0", 3, MAC, backend)],
    );
    let path = dir.path().join("spec.json");
    std::fs::write(&path, s.to_json()).unwrap();
    let mut vmm = ns
        .exec(bin_path("oxvirt-vmm").to_str().unwrap())
        .arg("--spec")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let console = collect(vmm.stdout.take().unwrap());
    let log = collect(vmm.stderr.take().unwrap());
    let done = wait_text(&console, "OXTEST DONE", &mut vmm, "guest");
    let _ = vmm.kill();
    let _ = vmm.wait();
    let peer_done = wait_text(&peer_out, "SENT", &mut peer, "peer");
    let _ = peer.kill();
    let _ = peer.wait();
    let console = console.lock().unwrap().clone();
    let report = format!(
        "--- guest console\n{console}\n--- VMM log\n{}\n--- peer\n{}{}",
        log.lock().unwrap(),
        peer_out.lock().unwrap(),
        peer_err.lock().unwrap()
    );
    assert!(done, "guest did not finish\n{report}");
    let checks = oxvirt_tests::oxtest::checks(&console);
    let tx = checks
        .iter()
        .find(|c| c.name == "vnet-tx")
        .unwrap_or_else(|| panic!("no vnet-tx\n{report}"));
    assert!(tx.ok, "{report}");
    assert_eq!(tx.field("mac"), Some(MAC), "MAC from the spec\n{report}");
    assert_eq!(tx.field("link"), Some("1"));
    assert!(
        peer_out.lock().unwrap().contains(&format!("GOT {MAC}")),
        "guest frame did not arrive on the host side\n{report}"
    );
    assert!(peer_done, "{report}");
    let rx = checks.iter().find(|c| c.name == "vnet-rx");
    assert!(
        rx.is_some_and(|c| c.ok),
        "host frame did not reach the guest\n{report}"
    );
}

#[test]
fn frames_cross_an_existing_tap_both_ways() {
    let Some(ns) = netns_for("frames_cross_an_existing_tap_both_ways", "t") else {
        return;
    };
    ns.ip(&["tuntap", "add", "dev", "oxtap0", "mode", "tap"]);
    ns.ip(&["link", "set", "oxtap0", "up"]);
    exchange(
        &ns,
        NetBackend::Tap {
            name: Some("oxtap0".into()),
        },
        "oxtap0",
    );
}

#[test]
fn frames_cross_a_bridge_with_a_created_tap() {
    let Some(ns) = netns_for("frames_cross_a_bridge_with_a_created_tap", "b") else {
        return;
    };
    ns.ip(&["link", "add", "oxbr0", "type", "bridge"]);
    ns.ip(&["link", "set", "oxbr0", "up"]);
    exchange(
        &ns,
        NetBackend::Bridge {
            bridge: "oxbr0".into(),
            tap: Some("oxtap1".into()),
        },
        "oxbr0",
    );
    // The VMM is gone, so its tap is too; the bridge saw it as a port while it ran
    // (the frames crossed it), and nothing is left behind.
    assert!(!ns.ip_out(&["-o", "link"]).contains("oxtap1"));
}

/// `<driver name='vhost'>` on a host without vhost-net (these development machines
/// have no module): the VMM does not start, and says which NIC wanted what and why,
/// rather than falling back silently as the default does.
#[test]
fn vhost_net_required_where_the_host_has_none_is_refused_by_name() {
    const T: &str = "vhost_net_required_where_the_host_has_none_is_refused_by_name";
    if std::fs::File::open("/dev/vhost-net").is_ok() {
        skip(
            T,
            "this host has vhost-net (the refusal needs a host without)",
        );
        return;
    }
    let Some(ns) = netns_for(T, "v") else {
        return;
    };
    let mut dev = net_device("net0", 3, MAC, NetBackend::Tap { name: None });
    if let machine_spec::DeviceKind::Net(n) = &mut dev.kind {
        n.driver = machine_spec::NetDriver::Vhost;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.json");
    std::fs::write(&path, oxtest_spec("poweroff", vec![dev]).to_json()).unwrap();
    let out = ns
        .exec(bin_path("oxvirt-vmm").to_str().unwrap())
        .arg("--spec")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(machine_spec::exit::VMM_ERROR),
        "{log}"
    );
    assert!(
        log.contains(
            "interface 'net0': vhost-net requested but could not be initialized: \
             cannot open /dev/vhost-net: No such file or directory"
        ),
        "{log}"
    );
}

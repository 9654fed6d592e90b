//! oxvirtd's D-Bus answers next to Debian's libvirt-dbus for the same calls: the
//! reference runs on a second private bus over libvirt's test driver
//! (`/org/libvirt/Test`), and `daemon_common/wire.py` (dbus-python) compares the
//! shapes: typed parameters two variant levels deep (`GetStats`,
//! `GetAllDomainStats`), `Properties.GetAll` two levels and `Get` one (property
//! errors: `daemon_host_objects`). No guest runs: an inactive domain has state and
//! balloon figures.

mod daemon_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daemon_common::{busctl_at, BusKind, Daemon};
use oxvirt_tests::host::skip;

const LIBVIRT_DBUS: &str = "/usr/sbin/libvirt-dbus";

/// Debian's libvirt-dbus on a private session bus of its own (killed on drop).
struct Reference {
    dir: tempfile::TempDir,
    bus: Child,
    service: Child,
}

impl Reference {
    fn start() -> Reference {
        let dir = tempfile::Builder::new()
            .prefix("libvirt-dbus-ref-")
            .tempdir()
            .unwrap();
        let socket = dir.path().join("bus");
        let bus = Command::new("dbus-daemon")
            .arg("--session")
            .arg(format!("--address=unix:path={}", socket.display()))
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        wait_for(|| socket.exists(), "the reference bus socket");
        let log = std::fs::File::create(dir.path().join("libvirt-dbus.log")).unwrap();
        let service = Command::new(LIBVIRT_DBUS)
            .arg("--session")
            .env("DBUS_SESSION_BUS_ADDRESS", address(&socket))
            // libvirt's client side writes nothing outside these.
            .env("HOME", dir.path())
            .env("XDG_RUNTIME_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("libvirt-dbus");
        let r = Reference { dir, bus, service };
        wait_for(
            || busctl_at(&r.address(), false, &["status", "org.libvirt"]).ok,
            "libvirt-dbus to own org.libvirt",
        );
        r
    }

    fn address(&self) -> String {
        address(&self.dir.path().join("bus"))
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        for c in [&mut self.service, &mut self.bus] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn address(socket: &Path) -> String {
    format!("unix:path={}", socket.display())
}

fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/daemon_common/wire.py")
}

#[test]
fn daemon_wire_matches_libvirt_dbus() {
    let name = "daemon_wire_matches_libvirt_dbus";
    if !Path::new(LIBVIRT_DBUS).exists() {
        skip(
            name,
            "Debian's libvirt-dbus is not installed (the reference)",
        );
        return;
    }
    let d = Daemon::start(BusKind::Session);
    let path = d.define_guest("wire");
    let reference = Reference::start();
    let out = Command::new("/usr/bin/python3")
        .arg(script())
        .args([&d.address(), &path, &reference.address()])
        .output()
        .expect("python3 (dbus-python)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stdout.contains("PASS") {
        let ref_log = std::fs::read_to_string(reference.dir.path().join("libvirt-dbus.log"))
            .unwrap_or_default();
        d.fail(&format!(
            "wire.py failed:\n{stdout}{stderr}\n--- libvirt-dbus log:\n{ref_log}"
        ));
    }
    print!("{stdout}");
}

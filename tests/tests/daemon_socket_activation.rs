//! systemd socket activation of the libvirt-protocol sockets, the way
//! packaging/systemd/oxvirtd.socket and oxvirtd-ro.socket start the daemon: systemd's
//! own `systemd-socket-activate` holds both sockets (named `rw` and `ro`), starts
//! oxvirtd on the first connection and passes them (LISTEN_FDS, LISTEN_FDNAMES); Debian's
//! real `virsh` then talks to the daemon through them. The daemon's configured socket
//! path lies elsewhere, so a daemon that bound its own socket would be seen.

mod rpc_common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxvirt_tests::bin_path;
use oxvirt_tests::oxvirtd::write_config;
use rpc_common::{is_socket, virsh};

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.0.iter_mut().rev() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_socket(p: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !is_socket(p) {
        assert!(Instant::now() < deadline, "{what} did not create {p:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A private D-Bus daemon and `systemd-socket-activate` holding the sockets `files` (in
/// a temporary directory) under the names `names`, ready to start oxvirtd (configured to
/// bind `own/virtoxvirtd-sock`, which must stay absent) on the first connection.
struct Activated {
    // Fields drop in order: the processes stop before their directory goes.
    _procs: Procs,
    dir: tempfile::TempDir,
}

impl Activated {
    fn start(prefix: &str, files: &[&str], names: &[&str]) -> Activated {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let d = dir.path();
        let mut procs = Procs(Vec::new());
        let bus = d.join("bus");
        procs.0.push(
            Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--nopidfile"])
                .arg(format!("--address=unix:path={}", bus.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting dbus-daemon (Debian package dbus)"),
        );
        wait_socket(&bus, "dbus-daemon");
        let config = write_config(d, &bus, false, &d.join("own").join("virtoxvirtd-sock"));
        let log = std::fs::File::create(d.join("oxvirtd.log")).unwrap();
        let mut c = Command::new("systemd-socket-activate");
        for f in files {
            c.arg("-l").arg(d.join(f));
        }
        procs.0.push(
            c.arg(format!("--fdname={}", names.join(":")))
                .args(["-E", "OXVIRTD_LOG=info,daemon::rpc=debug"])
                .arg(bin_path("oxvirtd"))
                .arg("--system")
                .arg("--config")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("starting systemd-socket-activate (Debian package systemd)"),
        );
        for f in files {
            wait_socket(&d.join(f), "systemd-socket-activate");
        }
        Activated { dir, _procs: procs }
    }

    fn path(&self, file: &str) -> std::path::PathBuf {
        self.dir.path().join(file)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("oxvirtd.log")).unwrap_or_default()
    }
}

#[test]
fn daemon_socket_activation_serves_virsh_on_passed_sockets() {
    let act = Activated::start(
        "oxvirt-sockact-",
        &["virtoxvirtd-sock", "virtoxvirtd-sock-ro"],
        &["rw", "ro"],
    );
    let d = act.dir.path();
    // Where the daemon would bind without activation: must stay absent.
    let own = d.join("own").join("virtoxvirtd-sock");
    let (rw, ro) = (
        act.path("virtoxvirtd-sock"),
        act.path("virtoxvirtd-sock-ro"),
    );
    let show_log = || act.log();

    // The first connection starts the daemon, which answers on the passed socket.
    let rw_uri = format!("oxvirt:///system?socket={}", rw.display());
    let r = virsh(&rw_uri, &["list", "--all"]);
    assert!(
        r.ok,
        "virsh list on the activated rw socket failed: {}\n--- log:\n{}",
        r.stderr,
        show_log()
    );
    assert!(
        r.stdout.contains("Id") && r.stdout.contains("State"),
        "{}",
        r.stdout
    );
    let uri = virsh(&rw_uri, &["uri"]);
    assert!(uri.stdout.starts_with("oxvirt:///system"), "{}", uri.stderr);

    // The read-only socket serves reads and refuses changes.
    let ro_uri = format!("oxvirt:///system?socket={}", ro.display());
    let r = virsh(&ro_uri, &["list", "--all"]);
    assert!(
        r.ok,
        "virsh list on the ro socket: {}\n{}",
        r.stderr,
        show_log()
    );
    let xml = d.join("x.xml");
    std::fs::write(
        &xml,
        "<domain type='kvm'><name>ro-probe</name><memory unit='MiB'>16</memory>\
         <os><type>hvm</type></os></domain>",
    )
    .unwrap();
    let r = virsh(&ro_uri, &["define", xml.to_str().unwrap()]);
    assert!(!r.ok, "define through the read-only socket succeeded");
    assert!(
        r.stderr.contains("read only") || r.stderr.contains("read-only"),
        "{}",
        r.stderr
    );

    let log = show_log();
    assert!(
        log.matches("using the socket passed by systemd").count() == 2,
        "oxvirtd did not take both passed sockets:\n{log}"
    );
    assert!(
        !own.exists() && !own.with_file_name("virtoxvirtd-sock-ro").exists(),
        "oxvirtd bound its own socket despite socket activation:\n{log}"
    );
    // The sockets stay the ones systemd-socket-activate made (the daemon did not
    // replace them), and they keep working for a new client.
    let again = virsh(&rw_uri, &["list", "--all"]);
    assert!(again.ok, "{}\n{log}", again.stderr);
}

/// Package oxvirt-qemu-uri's socket units: libvirt's QEMU-driver sockets passed by
/// name (`qemu-rw`, `qemu-ro`) make the daemon answer `qemu:///system` on them, with
/// no `qemu_uri` in its configuration (installing the units is the choice).
#[test]
fn daemon_socket_activation_serves_qemu_uri_on_the_compat_sockets() {
    let act = Activated::start(
        "oxvirt-sockact-qemu-",
        &[
            "virtoxvirtd-sock",
            "virtoxvirtd-sock-ro",
            "virtqemud-sock",
            "virtqemud-sock-ro",
        ],
        &["rw", "ro", "qemu-rw", "qemu-ro"],
    );
    let d = act.dir.path();
    let (qrw, qro) = (act.path("virtqemud-sock"), act.path("virtqemud-sock-ro"));
    let show_log = || act.log();

    let q = format!("qemu:///system?socket={}", qrw.display());
    let r = virsh(&q, &["version"]);
    assert!(r.ok, "{}\n--- log:\n{}", r.stderr, show_log());
    assert!(
        r.stdout.contains("Running hypervisor: QEMU 7.2.0"),
        "{}",
        r.stdout
    );
    // The read-only twin refuses changes, as libvirt's does.
    let xml = d.join("x.xml");
    std::fs::write(
        &xml,
        "<domain type='kvm'><name>ro-probe</name><memory unit='MiB'>16</memory>\
         <os><type>hvm</type></os></domain>",
    )
    .unwrap();
    let qr = format!("qemu:///system?socket={}", qro.display());
    let r = virsh(&qr, &["define", xml.to_str().unwrap()]);
    assert!(!r.ok, "define through virtqemud-sock-ro succeeded");
    assert!(virsh(&qr, &["list", "--all"]).ok, "{}", show_log());
    let log = show_log();
    assert!(
        log.contains("on the socket systemd passed as 'qemu-rw'")
            && log.contains("on the socket systemd passed as 'qemu-ro'"),
        "oxvirtd did not serve both passed compat sockets:\n{log}"
    );
}

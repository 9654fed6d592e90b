//! polkit decides for a system-bus caller who is neither root nor in group oxvirt.
//!
//! Debian's real polkitd runs on a private system-style bus (it finds the bus through
//! DBUS_SYSTEM_BUS_ADDRESS) with oxvirt's actions (packaging/polkit/org.oxvirt.policy)
//! and a rule that grants user `nobody` only `org.oxvirt.domain.monitor`. The bus policy
//! lets anybody call org.libvirt (as an admin who relies on polkit would set it), so the
//! daemon's own check and polkit's answer are all that decide: `nobody` may list
//! domains (monitor) but not define one (manage).
//!
//! polkitd reads actions and rules only from fixed system directories
//! (/usr/share/polkit-1/actions, /etc/polkit-1/rules.d), so the test installs the two
//! files there for its run and removes them afterwards; it needs root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxvirt_tests::bin_path;
use oxvirt_tests::oxvirtd::write_config;

mod daemon_common;

use daemon_common::{busctl_at, call_args, Run};

const CONNECT: &str = "/org/libvirt/QEMU";

/// Children killed and files removed on drop, last first.
#[derive(Default)]
struct Cleanup {
    children: Vec<Child>,
    files: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// busctl on the private bus (60 s timeout: polkitd may be slow to answer).
fn busctl(bus: &Path, as_nobody: bool, args: &[&str]) -> Run {
    let mut a = vec!["--timeout=60"];
    a.extend_from_slice(args);
    busctl_at(&format!("unix:path={}", bus.display()), as_nobody, &a)
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} did not come up in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn daemon_polkit_admits_nobody_for_monitor_only() {
    let polkitd = Path::new("/usr/lib/polkit-1/polkitd");
    if !nix::unistd::geteuid().is_root() || !polkitd.exists() {
        eprintln!(
            "SKIPPED daemon_polkit_admits_nobody_for_monitor_only: needs root and Debian's \
             polkitd (package polkitd) to install actions/rules for the real polkitd"
        );
        return;
    }
    let mut cleanup = Cleanup::default();
    let dir = tempfile::Builder::new()
        .prefix("oxvirt-polkit-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    // polkitd (user polkitd) and nobody must reach the bus socket.
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // oxvirt's actions, as the package installs them, unless already installed.
    let actions = Path::new("/usr/share/polkit-1/actions/org.oxvirt.policy");
    if !actions.exists() {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/polkit/org.oxvirt.policy"),
            actions,
        )
        .unwrap();
        cleanup.files.push(actions.to_path_buf());
    }
    let rule = PathBuf::from(format!(
        "/etc/polkit-1/rules.d/49-oxvirt-test-{}.rules",
        std::process::id()
    ));
    std::fs::write(
        &rule,
        "polkit.addRule(function(action, subject) {\n\
         \x20 if (action.id == \"org.oxvirt.domain.monitor\" && subject.user == \"nobody\")\n\
         \x20   return polkit.Result.YES;\n});\n",
    )
    .unwrap();
    std::fs::set_permissions(&rule, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    cleanup.files.push(rule);

    let bus = d.join("bus");
    let conf = d.join("bus.conf");
    std::fs::write(
        &conf,
        daemon_common::system_bus_conf_text(
            &bus,
            "    <allow send_destination=\"org.freedesktop.DBus\"/>
    <allow send_destination=\"org.libvirt\"/>
    <allow send_destination=\"org.freedesktop.PolicyKit1\"/>
",
            "  <policy user=\"root\"><allow own=\"org.libvirt\"/></policy>
  <policy user=\"polkitd\"><allow own=\"org.freedesktop.PolicyKit1\"/></policy>
",
        ),
    )
    .unwrap();
    cleanup.children.push(
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dbus-daemon (Debian package dbus)"),
    );
    wait_for("dbus-daemon", || bus.exists());
    let pk_log = d.join("polkitd.log");
    cleanup.children.push(
        Command::new(polkitd)
            .arg("--no-debug")
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}", bus.display()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&pk_log).unwrap())
            .spawn()
            .expect("starting polkitd"),
    );
    wait_for("polkitd", || {
        busctl(&bus, false, &["status", "org.freedesktop.PolicyKit1"]).ok
    });

    let config = write_config(d, &bus, false, &d.join("rpc/sock"));
    let log_path = d.join("oxvirtd.log");
    cleanup.children.push(
        Command::new(bin_path("oxvirtd"))
            .arg("--system")
            .arg("--config")
            .arg(&config)
            .env("OXVIRTD_LOG", "info,daemon=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("starting oxvirtd"),
    );
    wait_for("oxvirtd", || {
        busctl(&bus, false, &["status", "org.libvirt"]).ok
    });
    let logs = || {
        format!(
            "--- oxvirtd:\n{}\n--- polkitd:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default(),
            std::fs::read_to_string(&pk_log).unwrap_or_default()
        )
    };

    // Reading: polkit says yes (the rule), so nobody is served.
    let o = busctl(
        &bus,
        true,
        &call_args(CONNECT, "org.libvirt.Connect", "ListDomains", &["u", "0"]),
    );
    assert!(
        o.ok,
        "nobody was refused monitor access polkit grants: {}\n{}",
        o.stderr,
        logs()
    );
    assert_eq!(o.stdout.trim(), "ao 0");

    // Changing: polkit says no (manage is auth_admin, and no interaction is allowed).
    let xml = "<domain type='kvm'><name>pk</name><memory>65536</memory>\
               <os><type>hvm</type><kernel>/k</kernel></os></domain>";
    let o = busctl(
        &bus,
        true,
        &call_args(
            CONNECT,
            "org.libvirt.Connect",
            "DomainDefineXML",
            &["s", xml],
        ),
    );
    let err = &o.stderr;
    assert!(!o.ok, "nobody defined a domain\n{}", logs());
    assert!(
        err.contains("polkit authorization for 'org.oxvirt.domain.manage'")
            && !err.contains("not available"),
        "{err}\n{}",
        logs()
    );
    // Root still needs no polkit, and nothing was defined.
    let o = busctl(
        &bus,
        false,
        &call_args(CONNECT, "org.libvirt.Connect", "ListDomains", &["u", "0"]),
    );
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(o.stdout.trim(), "ao 0");
}

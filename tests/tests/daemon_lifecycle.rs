//! A domain's whole life through D-Bus with real clients: a dbus-python program
//! (define, start, events, XML, stats, suspend/resume, graceful shutdown by the ACPI
//! power button, destroy, undefine), and `gdbus` for the same calls from GLib's client.

mod daemon_common;

use std::process::Command;
use std::time::Duration;

use daemon_common::{guest_xml, BusKind, Daemon, CONNECT, STEP};
use oxvirt_tests::host::require_kvm;

#[test]
fn dbus_python_client_drives_a_domain_through_its_life() {
    if !require_kvm("dbus_python_client_drives_a_domain_through_its_life") {
        return;
    }
    let d = Daemon::start(BusKind::Session);
    let console = d.console("lifecycle");
    let xml_file = d.dir.path().join("lifecycle.xml");
    std::fs::write(&xml_file, guest_xml("lifecycle", &console)).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/daemon_common/lifecycle.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(d.address())
        .arg(&xml_file)
        .arg(&console)
        .output()
        .expect("running /usr/bin/python3 (Debian python3-dbus, python3-gi)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stdout.contains("OK") {
        d.fail(&format!("python client failed:\n{stdout}\n{stderr}"));
    }
}

#[test]
fn gdbus_defines_starts_and_destroys() {
    if !require_kvm("gdbus_defines_starts_and_destroys") {
        return;
    }
    let d = Daemon::start(BusKind::Session);
    let gdbus = |args: &[&str]| {
        let o = Command::new("gdbus")
            .args(["call", "--address", &d.address(), "--dest", "org.libvirt"])
            .args(args)
            .output()
            .expect("running gdbus (Debian libglib2.0-bin)");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let xml = guest_xml("viagdbus", &d.console("viagdbus"));
    let (ok, out, err) = gdbus(&[
        "--object-path",
        CONNECT,
        "--method",
        "org.libvirt.Connect.DomainDefineXML",
        &xml,
    ]);
    assert!(ok, "{err}");
    let path = out.split('\'').nth(1).unwrap().to_string();
    let (ok, _, err) = gdbus(&[
        "--object-path",
        &path,
        "--method",
        "org.libvirt.Domain.Create",
        "0",
    ]);
    assert!(ok, "{err}");
    d.wait_console("viagdbus", "OXTEST READY", STEP);
    let (ok, out, _) = gdbus(&[
        "--object-path",
        &path,
        "--method",
        "org.libvirt.Domain.GetState",
        "0",
    ]);
    assert!(ok && out.contains("(1, 1)"), "{out}");
    // Starting it again is refused in libvirt's words.
    let (ok, _, err) = gdbus(&[
        "--object-path",
        &path,
        "--method",
        "org.libvirt.Domain.Create",
        "0",
    ]);
    assert!(!ok);
    assert!(
        err.contains("org.libvirt.Error")
            && err.contains("Requested operation is not valid: domain is already running"),
        "{err}"
    );
    let (ok, _, err) = gdbus(&[
        "--object-path",
        &path,
        "--method",
        "org.libvirt.Domain.Destroy",
        "0",
    ]);
    assert!(ok, "{err}");
    d.wait_state(&path, 5, Duration::from_secs(30));
    assert_eq!(d.state(&path), (5, 2));
}

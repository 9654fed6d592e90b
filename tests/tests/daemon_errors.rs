//! Bad input through D-Bus: each case answers `org.libvirt.Error` with libvirt's
//! message, and nothing on disk changes.

mod daemon_common;

use std::path::{Path, PathBuf};

use daemon_common::{BusKind, Daemon, CONNECT};
use oxvirt_tests::host::require_kvm;

/// Every file under `dir` with its content, to prove nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let content = std::fs::read(&p).unwrap_or_default();
                out.push((p, content));
            }
        }
    }
    out.sort();
    out
}

/// Runs a failing call and returns busctl's error text.
fn refused(d: &Daemon, path: &str, iface: &str, method: &str, args: &[&str]) -> String {
    let r = d.try_call(path, iface, method, args);
    assert!(
        !r.ok,
        "{method} {args:?} unexpectedly succeeded: {}",
        r.stdout
    );
    r.stderr
}

#[test]
fn bad_input_is_refused_in_libvirt_words_and_changes_nothing() {
    let d = Daemon::start(BusKind::Session);
    let store = d.dir.path().join("domains");
    let xml =
        "<domain type='kvm'><name>keep</name><uuid>5d9b1a80-9c3e-4f5a-8b7d-1e2f3a4b5c6d</uuid>\
               <memory unit='MiB'>64</memory><os><type>hvm</type><kernel>/k</kernel></os></domain>";
    let path = d.define(xml);
    let before = snapshot(&store);

    // Malformed XML.
    let e = refused(
        &d,
        CONNECT,
        "org.libvirt.Connect",
        "DomainDefineXML",
        &["s", "<domain><name>x</name>"],
    );
    assert!(e.contains("XML error"), "{e}");
    // Same name, another UUID.
    let dup_name = xml.replace("5d9b1a80", "aaaaaaaa");
    let e = refused(
        &d,
        CONNECT,
        "org.libvirt.Connect",
        "DomainDefineXML",
        &["s", &dup_name],
    );
    assert!(
        e.contains("operation failed: domain 'keep' already exists with uuid 5d9b1a80-9c3e-4f5a-8b7d-1e2f3a4b5c6d"),
        "{e}"
    );
    // Same UUID, another name.
    let dup_uuid = xml.replace("<name>keep</name>", "<name>other</name>");
    let e = refused(
        &d,
        CONNECT,
        "org.libvirt.Connect",
        "DomainDefineXML",
        &["s", &dup_uuid],
    );
    assert!(
        e.contains("operation failed: domain 'keep' is already defined with uuid 5d9b1a80-9c3e-4f5a-8b7d-1e2f3a4b5c6d"),
        "{e}"
    );
    // Unsupported configuration (valid libvirt XML we cannot run).
    // (A floppy drive: no floppy controller is emulated.)
    let ide = xml.replace(
        "</os>",
        "</os><devices><disk type='file' device='floppy'><source file='/x.img'/><target dev='fda' bus='fdc'/></disk></devices>",
    ).replace("keep", "ide").replace("5d9b1a80", "bbbbbbbb");
    let e = refused(
        &d,
        CONNECT,
        "org.libvirt.Connect",
        "DomainDefineXML",
        &["s", &ide],
    );
    assert!(e.contains("unsupported configuration"), "{e}");
    // Unknown domain, by name, UUID, id and object path.
    let e = refused(
        &d,
        CONNECT,
        "org.libvirt.Connect",
        "DomainLookupByName",
        &["s", "nosuch"],
    );
    assert!(
        e.contains("Domain not found: no domain with matching name 'nosuch'"),
        "{e}"
    );
    let e = refused(
        &d,
        CONNECT,
        "org.libvirt.Connect",
        "DomainLookupByUUID",
        &["s", "00000000-0000-0000-0000-000000000001"],
    );
    assert!(
        e.contains(
            "Domain not found: no domain with matching uuid '00000000-0000-0000-0000-000000000001'"
        ),
        "{e}"
    );
    let e = refused(
        &d,
        CONNECT,
        "org.libvirt.Connect",
        "DomainLookupByID",
        &["i", "42"],
    );
    assert!(
        e.contains("Domain not found: no domain with matching id 42"),
        "{e}"
    );
    // Operations that need a running domain.
    let e = refused(&d, &path, "org.libvirt.Domain", "Suspend", &[]);
    assert!(
        e.contains("Requested operation is not valid: domain is not running"),
        "{e}"
    );
    let e = refused(&d, &path, "org.libvirt.Domain", "Destroy", &["u", "0"]);
    assert!(
        e.contains("Requested operation is not valid: domain is not running"),
        "{e}"
    );
    // Unknown flags.
    let e = refused(&d, &path, "org.libvirt.Domain", "Undefine", &["u", "1024"]);
    assert!(e.contains("unsupported flags (0x400)"), "{e}");
    let e = refused(&d, &path, "org.libvirt.Domain", "ManagedSave", &["u", "0"]);
    assert!(
        e.contains("Requested operation is not valid: domain is not running"),
        "{e}"
    );
    // An API we do not implement answers libvirt's NO_SUPPORT by name.
    let e = refused(&d, &path, "org.libvirt.Domain", "InjectNMI", &["u", "0"]);
    assert!(
        e.contains("this function is not supported by the connection driver: virDomainInjectNMI"),
        "{e}"
    );
    assert_eq!(snapshot(&store), before, "the store changed");

    // The error name is libvirt-dbus's.
    let o = std::process::Command::new("gdbus")
        .args([
            "call",
            "--address",
            &d.address(),
            "--dest",
            "org.libvirt",
            "--object-path",
            CONNECT,
        ])
        .args([
            "--method",
            "org.libvirt.Connect.DomainLookupByName",
            "nosuch",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("GDBus.Error:org.libvirt.Error: Domain not found"),
        "{err}"
    );
}

#[test]
fn start_or_rename_of_a_running_domain_is_refused_and_undefine_makes_it_transient() {
    let name = "start_or_rename_of_a_running_domain_is_refused_and_undefine_makes_it_transient";
    if !require_kvm(name) {
        return;
    }
    let d = Daemon::start(BusKind::Session);
    let path = d.start_guest("busy", "OXTEST READY");
    let store = d.dir.path().join("domains");
    let before = snapshot(&store);
    let e = refused(&d, &path, "org.libvirt.Domain", "Create", &["u", "0"]);
    assert!(
        e.contains("Requested operation is not valid: domain is already running"),
        "{e}"
    );
    let e = refused(
        &d,
        &path,
        "org.libvirt.Domain",
        "Rename",
        &["su", "other", "0"],
    );
    assert!(e.contains("cannot rename active domain"), "{e}");
    assert_eq!(snapshot(&store), before, "the store changed");
    assert_eq!(d.state(&path), (1, 1));

    // libvirt 9.0: undefining a running persistent domain makes it transient.
    let events = d.monitor("undefine.log");
    d.domain(&path, "Undefine", &["u", "0"]);
    // DomainEvent(o, UNDEFINED = 1, REMOVED = 0).
    events.wait_for(&d, &format!("(objectpath '{path}', 1, 0)"));
    assert!(!store.join("busy.xml").exists(), "the definition stayed");
    assert_eq!(
        d.property(&path, "org.libvirt.Domain", "Persistent"),
        "b false"
    );
    assert_eq!(d.state(&path), (1, 1), "undefine stopped the domain");
    let e = refused(&d, &path, "org.libvirt.Domain", "Undefine", &["u", "0"]);
    assert!(e.contains("cannot undefine transient domain"), "{e}");
    // Gone once it stops.
    d.domain(&path, "Destroy", &["u", "0"]);
    d.wait_undefined("busy");
}

//! Domain snapshots through libvirt-dbus's interface on oxvirtd, with real clients
//! (`busctl`, and `gdbus` where the D-Bus error name matters):
//!
//! * tier 2, the oxtest guest running (no disks: a running snapshot keeps RAM and
//!   device state): `Domain.SnapshotCreateXML` answers libvirt-dbus's object path,
//!   `ListDomainSnapshots`, `SnapshotCurrent` and `SnapshotLookupByName` give it
//!   back; the `org.libvirt.DomainSnapshot` object's XML, `IsCurrent`, `GetParent`
//!   (libvirt's error for a root), `ListChildren`; a second snapshot's parent and
//!   its parent's children; `Revert` (the domain runs again, from the snapshot);
//!   `Delete` removes the snapshots and their objects;
//! * no KVM: a shut-off domain's snapshot object has exactly the members of
//!   Debian's `org.libvirt.DomainSnapshot.xml`, and `schemas/dbus/` keeps it
//!   (regenerate: `OXVIRT_UPDATE_SCHEMAS=1 cargo test --test daemon_snapshots`).

mod daemon_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use daemon_common::{object_path, BusKind, Daemon, Run, STEP};
use oxvirt_tests::host::require_kvm;

const SNAP: &str = "org.libvirt.DomainSnapshot";

/// `gdbus call` on the daemon's bus, bounded: (ok, stdout, stderr). gdbus names
/// the D-Bus error (`GDBus.Error:org.libvirt.Error: …`), which busctl leaves out.
fn gdbus(d: &Daemon, path: &str, method: &str, args: &[&str]) -> (bool, String, String) {
    let o = Command::new("timeout")
        .arg("60")
        .args(["gdbus", "call", "--address", &d.address(), "--dest"])
        .args(["org.libvirt", "--object-path", path, "--method", method])
        .args(args)
        .output()
        .expect("running gdbus (Debian libglib2.0-bin)");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The object paths in busctl's `ao N "/a" "/b"` output.
fn paths(out: &str) -> Vec<String> {
    out.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// `busctl introspect --xml-interface` of `path`.
fn introspect(d: &Daemon, path: &str) -> Run {
    d.busctl(&["introspect", "--xml-interface", "org.libvirt", path])
}

#[test]
fn dbus_snapshots_of_a_running_domain() {
    if !require_kvm("dbus_snapshots_of_a_running_domain") {
        return;
    }
    let d = Daemon::start(BusKind::Session);
    let dom = d.start_guest("dbus-snap", "OXTEST READY");
    d.wait_state(&dom, 1, STEP);
    let uuid = d
        .property(&dom, "org.libvirt.Domain", "UUID")
        .trim_start_matches("s ")
        .trim_matches('"')
        .to_string();

    // Create: the path is libvirt-dbus's.
    let s1 = object_path(&d.domain(
        &dom,
        "SnapshotCreateXML",
        &[
            "su",
            "<domainsnapshot><name>s1</name><description>first</description></domainsnapshot>",
            "0",
        ],
    ));
    assert_eq!(
        s1,
        format!(
            "/org/libvirt/QEMU/domainsnapshot/_{}_s1",
            uuid.replace('-', "_")
        )
    );
    let list = d.domain(&dom, "ListDomainSnapshots", &["u", "0"]);
    assert_eq!(paths(&list), [s1.as_str()], "{list}");
    let current = object_path(&d.domain(&dom, "SnapshotCurrent", &["u", "0"]));
    assert_eq!(current, s1);
    let by_name = object_path(&d.domain(&dom, "SnapshotLookupByName", &["su", "s1", "0"]));
    assert_eq!(by_name, s1);

    // The snapshot object.
    let xml = d.call(&s1, SNAP, "GetXMLDesc", &["u", "0"]);
    for want in [
        "<name>s1</name>",
        "<description>first</description>",
        "<state>running</state>",
    ] {
        assert!(xml.contains(want), "{want} missing: {xml}");
    }
    assert_eq!(d.call(&s1, SNAP, "IsCurrent", &["u", "0"]).trim(), "b true");
    let (ok, out, err) = gdbus(&d, &s1, "org.libvirt.DomainSnapshot.GetParent", &["0"]);
    assert!(
        !ok && err.contains("org.libvirt.Error") && err.contains("does not have a parent"),
        "GetParent of a root: {out} {err}"
    );
    assert_eq!(
        d.call(&s1, SNAP, "ListChildren", &["u", "0"]).trim(),
        "ao 0"
    );

    // A second snapshot: a child of the current one.
    let s2 = object_path(&d.domain(
        &dom,
        "SnapshotCreateXML",
        &[
            "su",
            "<domainsnapshot><name>s2</name></domainsnapshot>",
            "0",
        ],
    ));
    assert!(s2.ends_with("_s2"), "{s2}");
    assert_eq!(
        object_path(&d.call(&s2, SNAP, "GetParent", &["u", "0"])),
        s1
    );
    assert_eq!(
        paths(&d.call(&s1, SNAP, "ListChildren", &["u", "0"])),
        [s2.as_str()]
    );
    assert_eq!(
        d.call(&s1, SNAP, "IsCurrent", &["u", "0"]).trim(),
        "b false"
    );
    assert_eq!(d.call(&s2, SNAP, "IsCurrent", &["u", "0"]).trim(), "b true");
    let list = d.domain(&dom, "ListDomainSnapshots", &["u", "0"]);
    assert_eq!(paths(&list), [s1.as_str(), s2.as_str()], "{list}");

    // Revert to s1: the domain runs again, from the snapshot's state.
    d.call(&s1, SNAP, "Revert", &["u", "0"]);
    let state = d.wait_state(&dom, 1, STEP);
    assert_eq!(state, (1, 4), "running (from snapshot)");
    assert_eq!(d.call(&s1, SNAP, "IsCurrent", &["u", "0"]).trim(), "b true");

    // Delete both: no snapshots, no objects.
    d.call(&s2, SNAP, "Delete", &["u", "0"]);
    d.call(&s1, SNAP, "Delete", &["u", "0"]);
    assert_eq!(
        d.domain(&dom, "ListDomainSnapshots", &["u", "0"]).trim(),
        "ao 0"
    );
    for gone in [&s1, &s2] {
        let x = introspect(&d, gone);
        assert!(
            !x.stdout.contains(SNAP),
            "{gone} still serves {SNAP}: {}",
            x.stdout
        );
        let (ok, out, err) = gdbus(&d, gone, "org.libvirt.DomainSnapshot.IsCurrent", &["0"]);
        assert!(
            !ok && (err.contains("UnknownObject") || err.contains("UnknownMethod")),
            "{gone} still answers: {out} {err}"
        );
    }
    let r = d.try_call(&dom, "org.libvirt.Domain", "SnapshotCurrent", &["u", "0"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("the domain does not have a current snapshot"),
        "{}",
        r.stderr
    );
    assert_eq!(d.state(&dom).0, 1, "the domain runs on");
    d.domain(&dom, "Destroy", &["u", "0"]);
    d.wait_state(&dom, 5, Duration::from_secs(30));
}

/// member key (`method Foo`) → its arguments (`in u, out o`).
fn members(xml: &str, iface: &str) -> BTreeMap<String, String> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, opts).expect("introspection parses");
    let itf = doc
        .descendants()
        .find(|n| n.has_tag_name("interface") && n.attribute("name") == Some(iface))
        .unwrap_or_else(|| panic!("interface {iface} missing: {xml}"));
    itf.children()
        .filter(|n| n.is_element())
        .map(|m| {
            let args: Vec<String> = m
                .children()
                .filter(|a| a.has_tag_name("arg"))
                .map(|a| {
                    format!(
                        "{} {}",
                        a.attribute("direction").unwrap_or("in"),
                        a.attribute("type").unwrap_or_default()
                    )
                })
                .collect();
            (
                format!(
                    "{} {}",
                    m.tag_name().name(),
                    m.attribute("name").unwrap_or_default()
                ),
                args.join(", "),
            )
        })
        .collect()
}

#[test]
fn dbus_snapshot_objects_match_libvirt_dbus_interface() {
    let d = Daemon::start(BusKind::Session);
    // Shut off and without disks: the snapshot is metadata only, no KVM needed.
    let dom = d.define_guest("dbus-snap-introspect");
    let snap = object_path(&d.domain(
        &dom,
        "SnapshotCreateXML",
        &[
            "su",
            "<domainsnapshot><name>off</name></domainsnapshot>",
            "0",
        ],
    ));
    let xml = d.call(&snap, SNAP, "GetXMLDesc", &["u", "0"]);
    assert!(xml.contains("<state>shutoff</state>"), "{xml}");

    let x = introspect(&d, &snap);
    if !x.ok {
        d.fail(&format!("introspecting {snap}: {}", x.stderr));
    }
    let reference_file = "/usr/share/dbus-1/interfaces/org.libvirt.DomainSnapshot.xml";
    let reference = std::fs::read_to_string(reference_file)
        .unwrap_or_else(|e| panic!("{reference_file}: {e} (install Debian's libvirt-dbus)"));
    let want = members(&reference, SNAP);
    assert_eq!(want.len(), 6, "{want:?}");
    assert_eq!(members(&x.stdout, SNAP), want);

    // schemas/dbus/, in daemon_introspect's format.
    let start = x
        .stdout
        .find(&format!("<interface name=\"{SNAP}\">"))
        .expect("interface in introspection");
    let end = start + x.stdout[start..].find("</interface>").unwrap() + "</interface>".len();
    let text = format!(
        "<!-- {SNAP} as oxvirtd serves it (regenerate: OXVIRT_UPDATE_SCHEMAS=1 cargo test --test daemon_snapshots) -->\n<node>\n {}\n</node>\n",
        &x.stdout[start..end]
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/dbus")
        .join(format!("{SNAP}.xml"));
    if std::env::var_os("OXVIRT_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == text,
        "{} is stale: run OXVIRT_UPDATE_SCHEMAS=1 cargo test --test daemon_snapshots",
        path.display()
    );

    // Deleting a shut-off domain's snapshot removes its object too.
    d.call(&snap, SNAP, "Delete", &["u", "0"]);
    assert!(!introspect(&d, &snap).stdout.contains(SNAP));
}

//! CD-ROM media changes on every front end of oxvirtd, with real clients:
//!
//! * `virsh change-media DOM TARGET [PATH] --update|--eject|--insert [--force]
//!   [--config]` (Debian's virsh, libvirt 9.0: it edits the disk XML from `dumpxml`
//!   and calls virDomainUpdateDeviceFlags), on a virtio-scsi CD-ROM and on a SATA
//!   (AHCI) one; the live XML follows (source, and `tray='open'` while open), and
//!   `--config` changes only the persistent definition;
//! * libvirt's tray-change event as `virsh event --event tray-change --loop` prints
//!   it and as python3-libvirt's `domainEventRegisterAny(…TRAY_CHANGE…)` callback
//!   receives it;
//! * libvirt-dbus's `org.libvirt.Domain.UpdateDevice(s, u)` through `busctl`, and the
//!   `TrayChange(s device, i reason)` signal as `gdbus monitor` sees it;
//! * the errors: virsh's own (no such disk, not removable, already has media) and
//!   the daemon's (a disk that is not a CD-ROM, an image that does not exist).
//!
//! The guest is the oxtest guest (it ticks; it never locks a door), so a media
//! change is immediate; what Linux sees of one is `linux_guest_scsi`'s.

mod rpc_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oxvirt_tests::host::require_kvm;
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::{domain_xml, test_guests};
use rpc_common::{Daemon, Watch};

/// python3-libvirt: registers a tray-change callback and prints each call as
/// `TRAY <domain> <alias> <reason>`.
const PY_TRAY: &str = r#"
import sys, threading, libvirt
libvirt.virEventRegisterDefaultImpl()
conn = libvirt.open(sys.argv[1])
def cb(conn, dom, alias, reason, opaque):
    print("TRAY", dom.name(), alias, reason, flush=True)
conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_TRAY_CHANGE, cb, None)
print("REGISTERED", flush=True)
while True:
    libvirt.virEventRunDefaultImpl()
"#;

fn iso(dir: &Path, name: &str, fill: u8) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, vec![fill; 8 * 2048]).unwrap();
    p
}

/// The oxtest guest (it ticks) with a virtio-scsi CD-ROM `sda` holding `medium`, an
/// empty SATA CD-ROM `sdb` and a virtio disk `vda`.
fn media_xml(name: &str, medium: &Path, disk: &Path) -> String {
    domain_xml(
        name,
        &test_guests().elf,
        "console=ttyS0 oxtest=count",
        64,
        1,
        "destroy",
        &serial_xml("pty"),
    )
    .replace(
        "<devices>",
        &format!(
            "<devices>
    <controller type='scsi' index='0' model='virtio-scsi'/>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <source file='{}'/><target dev='sda' bus='scsi'/><readonly/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <target dev='sdb' bus='sata'/><readonly/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{}'/><target dev='vda' bus='virtio'/></disk>",
            medium.display(),
            disk.display()
        ),
    )
}

/// The `<disk>` element of target `dev` in a domain XML.
fn disk_xml(xml: &str, dev: &str) -> String {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let disk = doc
        .descendants()
        .find(|n| {
            n.has_tag_name("disk")
                && n.children()
                    .any(|c| c.has_tag_name("target") && c.attribute("dev") == Some(dev))
        })
        .unwrap_or_else(|| panic!("no disk {dev} in\n{xml}"));
    xml[disk.range()].to_string()
}

fn source_of(xml: &str, dev: &str) -> Option<String> {
    let d = disk_xml(xml, dev);
    let doc = roxmltree::Document::parse(&d).unwrap();
    let s = doc.descendants().find(|n| n.has_tag_name("source"))?;
    s.attribute("file").map(str::to_string)
}

fn tray_of(xml: &str, dev: &str) -> Option<String> {
    let d = disk_xml(xml, dev);
    let doc = roxmltree::Document::parse(&d).unwrap();
    let t = doc.descendants().find(|n| n.has_tag_name("target"))?;
    t.attribute("tray").map(str::to_string)
}

fn alias_of(xml: &str, dev: &str) -> String {
    let d = disk_xml(xml, dev);
    let doc = roxmltree::Document::parse(&d).unwrap();
    doc.descendants()
        .find(|n| n.has_tag_name("alias"))
        .and_then(|a| a.attribute("name"))
        .unwrap_or_else(|| panic!("no alias in {d}"))
        .to_string()
}

fn bus_address(d: &Daemon) -> String {
    format!("unix:path={}", d.dir.path().join("bus").display())
}

/// The D-Bus object path of domain `name` (`Connect.DomainLookupByName`).
fn dbus_path(d: &Daemon, name: &str) -> String {
    let out = Command::new("busctl")
        .args([
            "--address",
            &bus_address(d),
            "call",
            "org.libvirt",
            "/org/libvirt/QEMU",
        ])
        .args(["org.libvirt.Connect", "DomainLookupByName", "s", name])
        .output()
        .expect("busctl");
    let s = String::from_utf8_lossy(&out.stdout);
    s.split_whitespace()
        .nth(1)
        .map(|p| p.trim_matches('"').to_string())
        .unwrap_or_else(|| {
            d.fail(&format!(
                "DomainLookupByName: {s}{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        })
}

#[test]
fn change_media_on_virsh_python_and_dbus_with_tray_events() {
    if !require_kvm("change_media_on_virsh_python_and_dbus_with_tray_events") {
        return;
    }
    let d = Daemon::start();
    let name = "rpc-media";
    let (a, b) = (
        iso(d.dir.path(), "a.iso", 0xaa),
        iso(d.dir.path(), "b.iso", 0xbb),
    );
    let vda = d.dir.path().join("vda.img");
    std::fs::write(&vda, vec![0u8; 1 << 20]).unwrap();
    let f = d.xml_file(name, &media_xml(name, &a, &vda));
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    d.wait_state(name, "running");
    let live = d.virsh_ok(&["dumpxml", name]);
    let (scsi, sata) = (alias_of(&live, "sda"), alias_of(&live, "sdb"));
    assert_eq!(scsi, "scsi0-0-0-0");
    assert!(sata.starts_with("sata0-0-"), "{sata}");

    // The watchers, each registered before the first change.
    let mut c = Command::new("virsh");
    c.args(["-c", &d.uri(), "event", "--event", "tray-change", "--loop"]);
    let mut ev = Watch::spawn(c, "virsh event");
    let mut c = Command::new("/usr/bin/python3");
    c.args(["-c", PY_TRAY, &d.uri()]);
    let mut py = Watch::spawn(c, "python3-libvirt");
    py.wait_count(&d, "REGISTERED", 1);
    let mut c = Command::new("gdbus");
    c.args([
        "monitor",
        "--address",
        &bus_address(&d),
        "--dest",
        "org.libvirt",
    ]);
    let mut mon = Watch::spawn(c, "gdbus monitor");
    std::thread::sleep(Duration::from_millis(700));

    // --update: open, swap, close (libvirt 9's blockdev sequence).
    let out = d.virsh_ok(&["change-media", name, "sda", b.to_str().unwrap(), "--update"]);
    assert!(out.contains("Successfully updated media."), "{out}");
    let opened = format!("event 'tray-change' for domain '{name}' disk {scsi}: opened");
    let closed = format!("event 'tray-change' for domain '{name}' disk {scsi}: closed");
    ev.wait_count(&d, &opened, 1);
    ev.wait_count(&d, &closed, 1);
    assert!(ev.text.find(&opened) < ev.text.find(&closed), "{}", ev.text);
    py.wait_count(&d, &format!("TRAY {name} {scsi} 0"), 1);
    py.wait_count(&d, &format!("TRAY {name} {scsi} 1"), 1);
    mon.wait_count(&d, "org.libvirt.Domain.TrayChange", 2);
    assert!(
        mon.text.contains(&format!("('{scsi}', 0)"))
            && mon.text.contains(&format!("('{scsi}', 1)")),
        "{}",
        mon.text
    );
    let live = d.virsh_ok(&["dumpxml", name]);
    assert_eq!(source_of(&live, "sda").as_deref(), b.to_str(), "{live}");
    assert_eq!(tray_of(&live, "sda"), None, "closed again: {live}");
    let inactive = d.virsh_ok(&["dumpxml", "--inactive", name]);
    assert_eq!(
        source_of(&inactive, "sda").as_deref(),
        a.to_str(),
        "live only"
    );

    // --eject: libvirt opens, removes and closes again; the live XML has no source.
    let out = d.virsh_ok(&["change-media", name, "sda", "--eject"]);
    assert!(out.contains("Successfully ejected media."), "{out}");
    ev.wait_count(&d, &closed, 2);
    let live = d.virsh_ok(&["dumpxml", name]);
    assert_eq!(source_of(&live, "sda"), None, "{live}");
    // virsh's own checks, from the live XML.
    let r = d.virsh(&["change-media", name, "sda", "--eject"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("The disk device 'sda' doesn't have media"),
        "{}",
        r.stderr
    );
    let r = d.virsh(&[
        "change-media",
        name,
        "nope",
        a.to_str().unwrap(),
        "--insert",
    ]);
    assert!(
        !r.ok
            && r.stderr
                .contains("No disk found whose source path or target is nope"),
        "{}",
        r.stderr
    );
    let r = d.virsh(&["change-media", name, "vda", a.to_str().unwrap(), "--update"]);
    assert!(
        // virsh looks among the removable drives only.
        !r.ok
            && r.stderr
                .contains("No disk found whose source path or target is vda"),
        "{}",
        r.stderr
    );
    // A medium that is not there: libvirt's error, and nothing changes.
    let r = d.virsh(&["change-media", name, "sda", "/nonexistent.iso", "--insert"]);
    assert!(
        !r.ok
            && r.stderr.contains(
                "error: Cannot access storage file '/nonexistent.iso': No such file or directory"
            ),
        "{}",
        r.stderr
    );
    let out = d.virsh_ok(&[
        "change-media",
        name,
        "sda",
        a.to_str().unwrap(),
        "--insert",
        "--force",
    ]);
    assert!(out.contains("Successfully inserted media."), "{out}");
    let r = d.virsh(&["change-media", name, "sda", b.to_str().unwrap(), "--insert"]);
    assert!(
        !r.ok && r.stderr.contains("The disk device 'sda' already has media"),
        "{}",
        r.stderr
    );

    // --config: the persistent definition only.
    d.virsh_ok(&[
        "change-media",
        name,
        "sda",
        b.to_str().unwrap(),
        "--update",
        "--config",
    ]);
    let inactive = d.virsh_ok(&["dumpxml", "--inactive", name]);
    assert_eq!(
        source_of(&inactive, "sda").as_deref(),
        b.to_str(),
        "{inactive}"
    );
    let live = d.virsh_ok(&["dumpxml", name]);
    assert_eq!(source_of(&live, "sda").as_deref(), a.to_str(), "{live}");

    // The SATA CD-ROM: insert into the empty drive.
    d.virsh_ok(&["change-media", name, "sdb", b.to_str().unwrap(), "--insert"]);
    ev.wait_count(
        &d,
        &format!("event 'tray-change' for domain '{name}' disk {sata}: closed"),
        1,
    );
    let live = d.virsh_ok(&["dumpxml", name]);
    assert_eq!(source_of(&live, "sdb").as_deref(), b.to_str(), "{live}");

    // D-Bus UpdateDevice (flags 1: live) with a disk XML, as a libvirt-dbus client sends it.
    let path = dbus_path(&d, name);
    let xml = format!(
        "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>\
         <source file='{}'/><target dev='sda' bus='scsi'/><readonly/></disk>",
        b.display()
    );
    let out = Command::new("busctl")
        .args(["--address", &bus_address(&d), "call", "org.libvirt", &path])
        .args(["org.libvirt.Domain", "UpdateDevice", "su", &xml, "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "UpdateDevice: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = mon.text.matches("TrayChange").count();
    mon.wait_count(&d, "org.libvirt.Domain.TrayChange", before.max(1) + 1);
    let live = d.virsh_ok(&["dumpxml", name]);
    assert_eq!(source_of(&live, "sda").as_deref(), b.to_str(), "{live}");
    // Not a CD-ROM: libvirt's refusal, through D-Bus.
    let xml = format!(
        "<disk type='file' device='disk'><source file='{}'/><target dev='vda' bus='virtio'/></disk>",
        a.display()
    );
    let out = Command::new("busctl")
        .args(["--address", &bus_address(&d), "call", "org.libvirt", &path])
        .args(["org.libvirt.Domain", "UpdateDevice", "su", &xml, "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("disk source can be changed only in removable drives"),
        "{err}"
    );

    d.virsh_ok(&["destroy", name]);
}

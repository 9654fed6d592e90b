//! CD-ROM media through libvirt-dbus's `org.libvirt.Domain.UpdateDevice` (busctl) on
//! oxvirtd, across a daemon restart: a media change shows in the live XML and as
//! `TrayChange` signals; after oxvirtd is killed and started again (the VMM runs on)
//! the live XML still names the new disc, and the next change works, the tray-change
//! events included.

mod daemon_common;

use std::path::Path;

use daemon_common::{guest_xml, BusKind, Daemon, STEP};

fn iso(dir: &Path, name: &str, fill: u8) -> String {
    let p = dir.join(name);
    std::fs::write(&p, vec![fill; 8 * 2048]).unwrap();
    p.display().to_string()
}

fn cdrom(source: &str) -> String {
    format!(
        "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>\
         <source file='{source}'/><target dev='sda' bus='scsi'/><readonly/></disk>"
    )
}

/// `GetXMLDesc(flags)`, without busctl's escaping of quotes.
fn xml_desc(d: &Daemon, path: &str, flags: &str) -> String {
    d.domain(path, "GetXMLDesc", &["u", flags])
        .replace("\\'", "'")
}

#[test]
fn dbus_update_device_changes_media_across_a_daemon_restart() {
    if !oxvirt_tests::host::require_kvm("dbus_update_device_changes_media_across_a_daemon_restart")
    {
        return;
    }
    let mut d = Daemon::start(BusKind::Session);
    let name = "dbus-media";
    let (a, b) = (
        iso(d.dir.path(), "a.iso", 0xaa),
        iso(d.dir.path(), "b.iso", 0xbb),
    );
    let xml = guest_xml(name, &d.console(name)).replace(
        "<devices>",
        &format!(
            "<devices>\n    <controller type='scsi' index='0' model='virtio-scsi'/>\n    {}",
            cdrom(&a)
        ),
    );
    let path = d.define(&xml);
    d.domain(&path, "Create", &["u", "0"]);
    d.wait_state(&path, 1, STEP);
    let mon = d.monitor("signals.log");

    // VIR_DOMAIN_AFFECT_LIVE: open, swap, close.
    d.domain(&path, "UpdateDevice", &["su", &cdrom(&b), "1"]);
    mon.wait_for(&d, "org.libvirt.Domain.TrayChange ('scsi0-0-0-0', 1)");
    assert!(
        mon.seen()
            .contains("org.libvirt.Domain.TrayChange ('scsi0-0-0-0', 0)"),
        "{}",
        mon.seen()
    );
    let live = xml_desc(&d, &path, "0");
    assert!(live.contains(&format!("<source file='{b}'")), "{live}");

    // A restarted daemon reattaches with the live definition the change left.
    drop(mon);
    d.kill9();
    d.start_daemon();
    d.wait_state(&path, 1, STEP);
    let live = xml_desc(&d, &path, "0");
    assert!(live.contains(&format!("<source file='{b}'")), "{live}");
    assert!(
        xml_desc(&d, &path, "2").contains(&format!("<source file='{a}'")),
        "the persistent definition keeps disc A"
    );

    // The next change, and its signals, on the new daemon.
    let mon = d.monitor("signals2.log");
    d.domain(&path, "UpdateDevice", &["su", &cdrom(&a), "0"]);
    mon.wait_for(&d, "org.libvirt.Domain.TrayChange ('scsi0-0-0-0', 1)");
    let live = xml_desc(&d, &path, "0");
    assert!(live.contains(&format!("<source file='{a}'")), "{live}");
    d.domain(&path, "Destroy", &["u", "0"]);
}

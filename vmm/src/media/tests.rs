//! The drive state machine and the registry, with real image files and the
//! guest's side seen through the MMC unit's commands.

use std::io::Write;

use serde_json::json;
use vm_memory::VolatileSlice;

use super::*;
use crate::scsi::{Completion, Data, DeviceConfig, DeviceKind, Sense};

/// An ISO-sized raw image whose every byte is `fill`.
fn image(fill: u8, blocks: usize) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&vec![fill; blocks * 2048]).unwrap();
    f
}

fn medium(f: &tempfile::NamedTempFile, node: &str) -> OpenedMedium {
    OpenedMedium::open(
        "cd",
        MediumFile {
            path: f.path().to_path_buf(),
            format: MediumFormat::Raw,
            node_name: node.into(),
        },
    )
    .unwrap()
}

fn unit(id: &str) -> ScsiDevice {
    ScsiDevice::new(
        DeviceConfig {
            kind: DeviceKind::Cdrom,
            readonly: true,
            writeback: false,
            serial: None,
            device_id: id.into(),
            vendor: None,
            product: None,
            wwn: None,
        },
        None,
    )
}

fn drive(id: &str, target: &str, m: Option<OpenedMedium>) -> Drive {
    Drive::new(
        DriveNames {
            id: id.into(),
            target: target.into(),
        },
        unit(id),
        m,
        false,
    )
}

/// The guest runs `cdb` (data-in of `len` bytes).
fn guest(d: &Drive, cdb: &[u8], len: usize) -> (Completion, Vec<u8>) {
    let mut buf = vec![0u8; len];
    let c = {
        let s = [VolatileSlice::from(&mut buf[..])];
        d.unit().lock().unwrap().execute(cdb, Data::In(&s))
    };
    (c, buf)
}

fn sense_key(c: &Completion) -> Option<(u8, u8)> {
    c.sense.map(|s: Sense| (s.key, s.asc))
}

const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];
const READ_10_LBA0: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const LOCK: [u8; 6] = [0x1e, 0, 0, 0, 1, 0];
const EJECT: [u8; 6] = [0x1b, 0, 0, 0, 0x02, 0];
const GESN_MEDIA: [u8; 10] = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0];

#[test]
fn registry_finds_drives_by_id_target_and_drive_name() {
    let r = MediaRegistry::new();
    r.register(drive("scsi0-0-0-0", "sda", None)).unwrap();
    r.register(drive("sata0-0-0", "sdb", None)).unwrap();
    assert_eq!(r.find(None, Some("sata0-0-0")).unwrap().1, "sata0-0-0");
    let (d, shown) = r.find(Some("sda"), None).unwrap();
    assert_eq!(
        (d.names().id.as_str(), shown.as_str()),
        ("scsi0-0-0-0", "sda")
    );
    assert!(r.find(Some("drive-sata0-0-0"), None).is_ok());
    // `id` is the device id only, as QEMU's qdev id.
    assert_eq!(
        r.find(None, Some("sda")).unwrap_err().to_string(),
        "Device 'sda' not found"
    );
    assert_eq!(
        r.find(Some("sda"), Some("x")).unwrap_err().to_string(),
        "Need exactly one of 'device' and 'id'"
    );
    assert!(matches!(r.find(None, None), Err(MediaError::NeedOneName)));
    let dup = r.register(drive("other", "sda", None)).unwrap_err();
    assert_eq!(
        dup.to_string(),
        "removable-media drive 'sda' is registered twice"
    );
}

#[test]
fn open_and_close_the_tray_without_a_lock() {
    let f = image(1, 4);
    let d = drive("cd0", "sda", Some(medium(&f, "n0")));
    assert_eq!(guest(&d, &TUR, 0).0.status, 0, "ready at power-on");
    assert_eq!(d.open_tray(false, "cd0").unwrap(), TrayOpen::Opened);
    assert_eq!(d.open_tray(false, "cd0").unwrap(), TrayOpen::AlreadyOpen);
    let s = d.status();
    assert!(s.tray_open && !s.locked);
    assert_eq!(
        s.medium.as_ref().unwrap().1,
        4 * 2048,
        "medium stays in the open tray"
    );
    assert_eq!(sense_key(&guest(&d, &TUR, 0).0), Some((0x02, 0x3a)));
    assert!(d.close_tray());
    assert!(!d.close_tray(), "closed already: no move");
    // Closing over a medium is a media change to the guest: NOT READY, then
    // UNIT ATTENTION, then ready.
    assert_eq!(sense_key(&guest(&d, &TUR, 0).0), Some((0x02, 0x3a)));
    assert_eq!(sense_key(&guest(&d, &TUR, 0).0), Some((0x06, 0x28)));
    assert_eq!(guest(&d, &TUR, 0).0.status, 0);
}

#[test]
fn a_locked_door_gets_an_eject_request_and_force_opens_it() {
    let f = image(1, 4);
    let d = drive("cd0", "sda", Some(medium(&f, "n0")));
    assert_eq!(guest(&d, &LOCK, 0).0.status, 0);
    assert!(d.status().locked);
    let e = d.open_tray(false, "cd0").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Device 'cd0' is locked and force was not specified, wait for tray to open and try again"
    );
    assert!(!d.status().tray_open);
    // The guest polls GET EVENT STATUS NOTIFICATION: EjectRequest (1).
    let (c, b) = guest(&d, &GESN_MEDIA, 8);
    assert_eq!(c.status, 0);
    assert_eq!(b[4] & 0x0f, 1, "EjectRequest: {b:?}");
    // A locked guest refuses its own eject; force opens anyway and unlocks.
    assert_eq!(sense_key(&guest(&d, &EJECT, 0).0), Some((0x05, 0x53)));
    assert_eq!(d.open_tray(true, "cd0").unwrap(), TrayOpen::Opened);
    assert!(!d.status().locked);
}

#[test]
fn change_medium_step_by_step_and_what_the_guest_reads() {
    let (a, b) = (image(0xaa, 4), image(0xbb, 8));
    let d = drive("cd0", "sda", Some(medium(&a, "old")));
    assert_eq!(guest(&d, &READ_10_LBA0, 2048).1[0], 0xaa);
    // The tray must be open to remove or insert.
    assert_eq!(
        d.remove_medium("cd0").unwrap_err().to_string(),
        "Tray of device 'cd0' is not open"
    );
    assert_eq!(
        d.insert_medium(medium(&b, "new")).unwrap_err().to_string(),
        "Tray of the device is not open"
    );
    d.open_tray(false, "cd0").unwrap();
    assert_eq!(
        d.insert_medium(medium(&b, "new")).unwrap_err().to_string(),
        "There already is a medium in the device"
    );
    d.remove_medium("cd0").unwrap();
    d.remove_medium("cd0").unwrap();
    assert!(d.status().medium.is_none());
    d.insert_medium(medium(&b, "new")).unwrap();
    assert!(d.holds_node("new") && !d.holds_node("old"));
    assert!(d.status().tray_open, "insert leaves the tray open");
    d.close_tray();
    let s = d.status();
    assert_eq!(s.medium.unwrap().0.node_name, "new");
    let (c, _) = guest(&d, &READ_10_LBA0, 2048);
    assert_eq!(sense_key(&c), Some((0x02, 0x3a)));
    let (c, _) = guest(&d, &READ_10_LBA0, 2048);
    assert_eq!(sense_key(&c), Some((0x06, 0x28)));
    let (c, data) = guest(&d, &READ_10_LBA0, 2048);
    assert_eq!((c.status, data[0]), (0, 0xbb), "the new disc");
}

#[test]
fn the_guests_eject_reaches_subscribers_and_resets_keep_the_medium() {
    let f = image(1, 4);
    let r = MediaRegistry::new();
    let d = r
        .register(drive("cd0", "sda", Some(medium(&f, "n0"))))
        .unwrap();
    let mut rx = r.subscribe();
    assert_eq!(guest(&d, &EJECT, 0).0.status, 0);
    assert_eq!(
        rx.try_recv().unwrap(),
        TrayMoved {
            id: "cd0".into(),
            open: true
        }
    );
    assert!(rx.try_recv().is_err(), "one event per move");
    // A host close is reported by the call, not to subscribers.
    assert!(d.close_tray());
    assert!(rx.try_recv().is_err());
    guest(&d, &LOCK, 0);
    d.open_tray(true, "cd0").unwrap();
    guest(&d, &LOCK, 0);
    r.machine_reset();
    let s = d.status();
    assert!(s.tray_open, "the tray stays open across a reset");
    assert!(!s.locked, "the guest's lock does not");
    assert!(s.medium.is_some());
}

#[test]
fn a_drive_can_start_with_its_tray_open() {
    let f = image(1, 4);
    let d = Drive::new(
        DriveNames {
            id: "cd0".into(),
            target: "sda".into(),
        },
        unit("cd0"),
        Some(medium(&f, "n0")),
        true,
    );
    assert!(d.status().tray_open);
    assert_eq!(sense_key(&guest(&d, &TUR, 0).0), Some((0x02, 0x3a)));
}

#[test]
fn blockdev_add_nodes_as_libvirt_sends_them() {
    let f = image(1, 4);
    let path = f.path().display().to_string();
    let t = nodes::NodeTable::default();
    let args = |v: serde_json::Value| v.as_object().unwrap().clone();
    t.add(&args(json!({"driver": "file", "filename": path,
        "node-name": "libvirt-3-storage", "auto-read-only": true, "discard": "unmap"})))
        .unwrap();
    t.add(&args(
        json!({"node-name": "libvirt-3-format", "read-only": true,
        "driver": "raw", "file": "libvirt-3-storage"}),
    ))
    .unwrap();
    let n = t.get("libvirt-3-format").unwrap();
    assert_eq!(
        (n.path.clone(), n.format),
        (f.path().to_path_buf(), Some(MediumFormat::Raw))
    );
    t.add(&args(json!({"node-name": "inline", "driver": "raw",
        "file": {"driver": "file", "filename": path}})))
        .unwrap();
    let dup = t.add(&args(
        json!({"driver": "file", "filename": path, "node-name": "inline"}),
    ));
    assert_eq!(
        dup.unwrap_err().to_string(),
        "Duplicate nodes with node-name='inline'"
    );
    let missing = t.add(&args(
        json!({"driver": "file", "filename": "/nonexistent.iso", "node-name": "m"}),
    ));
    assert_eq!(
        missing.unwrap_err().to_string(),
        "Could not open '/nonexistent.iso': No such file or directory"
    );
    let nbd = t.add(&args(json!({"driver": "nbd", "node-name": "x"})));
    assert!(nbd
        .unwrap_err()
        .to_string()
        .contains("'nbd' is not supported"));
    let bad = t.add(&args(
        json!({"driver": "raw", "node-name": "y", "file": "nope"}),
    ));
    assert_eq!(bad.unwrap_err().to_string(), "Node 'nope' not found");
    let extra = t.add(&args(
        json!({"driver": "file", "filename": path, "node-name": "z", "bogus": 1}),
    ));
    assert_eq!(extra.unwrap_err().to_string(), "Invalid parameter 'bogus'");
    // The protocol node is in use by the format node; a node in a drive too.
    assert_eq!(
        t.remove("libvirt-3-storage", false)
            .unwrap_err()
            .to_string(),
        "Node libvirt-3-storage is in use"
    );
    assert!(t.remove("libvirt-3-format", true).is_err());
    t.remove("libvirt-3-format", false).unwrap();
    t.remove("libvirt-3-storage", false).unwrap();
    assert_eq!(
        t.remove("libvirt-3-storage", false)
            .unwrap_err()
            .to_string(),
        "Failed to find node with node-name='libvirt-3-storage'"
    );
}

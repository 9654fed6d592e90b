//! CD-ROM media through QMP with a real client (qemu.qmp), against a running VMM
//! whose oxtest guest ticks along beside a virtio-scsi CD-ROM: the tray and medium
//! commands as QEMU 7.2 names them (`blockdev-open-tray`, `blockdev-remove-medium`,
//! `blockdev-add` + `blockdev-insert-medium` as libvirt 9 sends them,
//! `blockdev-close-tray`, `blockdev-change-medium`, `eject`), `query-block`'s tray
//! state and medium after each step, every `DEVICE_TRAY_MOVED` event, QEMU's error
//! texts, and the medium and tray surviving a machine reset (the VMM rebuilds the
//! machine then). What the guest sees of a change (sense codes, a new disc) is in
//! the unit tests and in `linux_guest_scsi`.

mod qmp_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use machine_spec::{Device, DeviceKind, Disk, ScsiController, ScsiDisk};
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::spec::raw_disk;
use oxvirt_tests::{oxtest_spec, GUEST_TIMEOUT};
use qmp_common::{PyQmp, QmpVm};
use serde_json::{json, Value};

const ID: &str = "scsi0-0-0-0";
const EVENT_WAIT: Duration = Duration::from_secs(10);

fn iso(dir: &Path, name: &str, fill: u8) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, vec![fill; 16 * 2048]).unwrap();
    p
}

fn cdrom(medium: Option<&Path>, tray_open: bool) -> Vec<Device> {
    vec![
        Device {
            id: "scsi0".into(),
            pci: oxvirt_tests::spec::pci_slot(4),
            boot_index: None,
            kind: DeviceKind::ScsiController(ScsiController { index: 0 }),
        },
        Device {
            id: ID.into(),
            pci: None,
            boot_index: None,
            kind: DeviceKind::ScsiDisk(ScsiDisk {
                controller: 0,
                target: 0,
                lun: 0,
                cdrom: true,
                name: "sda".into(),
                vendor: None,
                product: None,
                wwn: None,
                tray_open,
                medium: medium.map(|p| Disk {
                    readonly: true,
                    target: "sda".into(),
                    ..raw_disk(p)
                }),
            }),
        },
    ]
}

/// The `query-block` entry of the CD-ROM.
fn cd(c: &mut PyQmp) -> Value {
    let blocks = c.ok("query-block", Value::Null);
    blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["qdev"] == ID)
        .cloned()
        .unwrap_or_else(|| panic!("no {ID} in {blocks}"))
}

fn tray_event(c: &mut PyQmp, open: bool) {
    let ev = c.event("DEVICE_TRAY_MOVED", EVENT_WAIT);
    assert_eq!(
        ev["data"],
        json!({"device": "", "id": ID, "tray-open": open}),
        "{ev}"
    );
}

fn error(c: &mut PyQmp, cmd: &str, args: Value) -> (String, String) {
    let r = c.execute(cmd, args);
    let e = &r["error"];
    assert!(e.is_object(), "{cmd} should fail: {r}");
    (
        e["class"].as_str().unwrap().to_string(),
        e["desc"].as_str().unwrap().to_string(),
    )
}

#[test]
fn tray_and_medium_commands_with_events_and_a_reset() {
    if !require_kvm("tray_and_medium_commands_with_events_and_a_reset") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        iso(dir.path(), "a.iso", 0xaa),
        iso(dir.path(), "b.iso", 0xbb),
    );
    let q = QmpVm::start(&oxtest_spec("count", cdrom(Some(&a), false)));
    q.vm.wait_for("OXTEST tick 1", GUEST_TIMEOUT);
    let mut c = PyQmp::connect(&q.sock);

    let info = cd(&mut c);
    assert_eq!(info["removable"], true, "{info}");
    assert_eq!(info["tray_open"], false, "{info}");
    assert_eq!(info["locked"], false, "{info}");
    assert_eq!(info["inserted"]["file"], a.display().to_string(), "{info}");
    assert_eq!(info["inserted"]["ro"], true, "{info}");
    assert_eq!(
        info["inserted"]["image"]["virtual-size"],
        16 * 2048,
        "{info}"
    );

    // Naming errors, as QEMU's qmp_get_blk gives them.
    assert_eq!(
        error(&mut c, "blockdev-open-tray", json!({"id": "nope"})),
        ("DeviceNotFound".into(), "Device 'nope' not found".into())
    );
    assert_eq!(
        error(
            &mut c,
            "blockdev-close-tray",
            json!({"id": ID, "device": "sda"})
        ),
        (
            "GenericError".into(),
            "Need exactly one of 'device' and 'id'".into()
        )
    );
    // The tray must be open to take the medium out.
    assert_eq!(
        error(&mut c, "blockdev-remove-medium", json!({"id": ID})).1,
        format!("Tray of device '{ID}' is not open")
    );

    // libvirt 9's change-media sequence.
    assert_eq!(
        c.ok("blockdev-open-tray", json!({"id": ID, "force": false})),
        json!({})
    );
    tray_event(&mut c, true);
    let info = cd(&mut c);
    assert_eq!(info["tray_open"], true, "{info}");
    assert!(
        info["inserted"].is_object(),
        "the medium stays in the open tray: {info}"
    );
    c.ok("blockdev-remove-medium", json!({"id": ID}));
    assert!(cd(&mut c).get("inserted").is_none());
    c.ok(
        "blockdev-add",
        json!({"driver": "file", "filename": b, "node-name": "libvirt-3-storage",
            "auto-read-only": true, "discard": "unmap"}),
    );
    c.ok(
        "blockdev-add",
        json!({"node-name": "libvirt-3-format", "read-only": true, "driver": "raw",
            "file": "libvirt-3-storage"}),
    );
    assert_eq!(
        error(
            &mut c,
            "blockdev-insert-medium",
            json!({"id": ID, "node-name": "nope"})
        )
        .1,
        "Node 'nope' not found"
    );
    c.ok(
        "blockdev-insert-medium",
        json!({"id": ID, "node-name": "libvirt-3-format"}),
    );
    assert_eq!(
        error(
            &mut c,
            "blockdev-del",
            json!({"node-name": "libvirt-3-format"})
        )
        .1,
        "Node libvirt-3-format is in use"
    );
    c.ok("blockdev-close-tray", json!({"id": ID}));
    tray_event(&mut c, false);
    let info = cd(&mut c);
    assert_eq!(info["tray_open"], false, "{info}");
    assert_eq!(info["inserted"]["file"], b.display().to_string(), "{info}");
    assert_eq!(info["inserted"]["node-name"], "libvirt-3-format", "{info}");
    // Closing a closed tray moves nothing and sends nothing.
    c.ok("blockdev-close-tray", json!({"id": ID}));

    // blockdev-change-medium by the target name: open, swap, close.
    c.ok(
        "blockdev-change-medium",
        json!({"device": "sda", "filename": a}),
    );
    tray_event(&mut c, true);
    tray_event(&mut c, false);
    assert_eq!(cd(&mut c)["inserted"]["file"], a.display().to_string());
    assert_eq!(
        error(
            &mut c,
            "blockdev-change-medium",
            json!({"id": ID, "filename": "/nonexistent.iso"})
        )
        .1,
        "Could not open '/nonexistent.iso': No such file or directory"
    );

    // eject: open and remove.
    c.ok("eject", json!({"id": ID}));
    tray_event(&mut c, true);
    let info = cd(&mut c);
    assert_eq!(info["tray_open"], true, "{info}");
    assert!(info.get("inserted").is_none(), "{info}");

    // HMP says it in QEMU's words.
    let hmp = c.ok(
        "human-monitor-command",
        json!({"command-line": "info block"}),
    );
    assert!(
        hmp.as_str().unwrap().contains(&format!(
            "{ID}: [not inserted]\r\n    Attached to:      {ID}\r\n    Removable device: not locked, tray open\r\n"
        )),
        "{hmp}"
    );

    // The machine is rebuilt on reset: the empty open tray stays so.
    c.ok("system_reset", Value::Null);
    c.event("RESET", EVENT_WAIT);
    q.vm.wait_count("OXTEST tick 1", 2, GUEST_TIMEOUT);
    let info = cd(&mut c);
    assert_eq!(info["tray_open"], true, "{info}");
    assert!(info.get("inserted").is_none(), "{info}");
    // And a medium inserted now stays through the next reset.
    c.ok(
        "blockdev-change-medium",
        json!({"id": ID, "filename": b, "format": "raw"}),
    );
    tray_event(&mut c, false);
    c.ok("system_reset", Value::Null);
    c.event("RESET", EVENT_WAIT);
    q.vm.wait_count("OXTEST tick 1", 3, GUEST_TIMEOUT);
    let info = cd(&mut c);
    assert_eq!(info["tray_open"], false, "{info}");
    assert_eq!(info["inserted"]["file"], b.display().to_string(), "{info}");
    assert_eq!(q.vm.exited(), None, "the VMM runs on");
}

#[test]
fn a_tray_open_in_the_spec_starts_open() {
    if !require_kvm("a_tray_open_in_the_spec_starts_open") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = iso(dir.path(), "a.iso", 1);
    let q = QmpVm::start(&oxtest_spec("count", cdrom(Some(&a), true)));
    q.vm.wait_for("OXTEST tick 1", GUEST_TIMEOUT);
    let mut c = PyQmp::connect(&q.sock);
    let info = cd(&mut c);
    assert_eq!(info["tray_open"], true, "{info}");
    assert_eq!(info["inserted"]["file"], a.display().to_string(), "{info}");
    c.ok("blockdev-close-tray", json!({"device": "sda"}));
    tray_event(&mut c, false);
    assert_eq!(cd(&mut c)["tray_open"], false);
}

/// One QMP session, sent as raw bytes: the replies and events in order (greeting
/// and timestamps left out).
fn session(sock: &Path, commands: &[Value]) -> Vec<Value> {
    let mut input = String::new();
    for c in commands {
        input.push_str(&c.to_string());
        input.push('\n');
    }
    let out = qmp_common::socat(sock, input.as_bytes());
    out.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            if let Some(o) = v.as_object_mut() {
                o.remove("timestamp");
            }
            v
        })
        .collect()
}

/// The same session against QEMU 7.2 (a `scsi-cd` on `virtio-scsi-pci`, its medium
/// given with `-blockdev` as libvirt 9 does, TCG, never started) and against
/// oxvirt-vmm: the same replies, errors and `DEVICE_TRAY_MOVED` events, in the
/// same order.
#[test]
fn the_media_commands_answer_as_qemu_7_2_does() {
    if !require_kvm("the_media_commands_answer_as_qemu_7_2_does") {
        return;
    }
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        oxvirt_tests::host::skip(
            "the_media_commands_answer_as_qemu_7_2_does",
            "no qemu-system-x86_64 (Debian package qemu-system-x86)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        iso(dir.path(), "a.iso", 0xaa),
        iso(dir.path(), "b.iso", 0xbb),
    );
    let node = format!("libvirt-{ID}-format");
    let qsock = dir.path().join("qemu.sock");
    let storage = json!({"driver": "file", "filename": a, "node-name": format!("libvirt-{ID}-storage"), "read-only": true});
    let format = json!({"node-name": node, "read-only": true, "driver": "raw", "file": format!("libvirt-{ID}-storage")});
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-M",
            "pc",
            "-accel",
            "tcg",
            "-S",
            "-nodefaults",
            "-display",
            "none",
        ])
        .args(["-device", "virtio-scsi-pci,id=scsi0"])
        .args([
            "-blockdev",
            &storage.to_string(),
            "-blockdev",
            &format.to_string(),
        ])
        .args([
            "-device",
            &format!("scsi-cd,bus=scsi0.0,drive={node},id={ID}"),
        ])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qsock.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64");
    qmp_common::wait_socket(&qsock, Duration::from_secs(30));

    let id = json!({"id": ID});
    let cmd = |name: &str, args: Value| json!({"execute": name, "arguments": args});
    let commands = vec![
        json!({"execute": "qmp_capabilities"}),
        cmd("blockdev-remove-medium", id.clone()),
        cmd("blockdev-open-tray", json!({"id": ID, "force": false})),
        cmd("blockdev-open-tray", id.clone()),
        cmd("blockdev-remove-medium", id.clone()),
        cmd("blockdev-remove-medium", id.clone()),
        cmd("blockdev-del", json!({"node-name": node})),
        cmd("blockdev-del", json!({"node-name": "nope"})),
        cmd(
            "blockdev-change-medium",
            json!({"id": ID, "filename": "/nonexistent.iso"}),
        ),
        cmd("blockdev-close-tray", json!({"id": ID, "device": "x"})),
        cmd("blockdev-close-tray", json!({})),
        cmd(
            "blockdev-insert-medium",
            json!({"id": ID, "node-name": "nope"}),
        ),
        cmd("eject", json!({"id": "nope"})),
        cmd(
            "blockdev-add",
            json!({"driver": "file", "filename": "/nonexistent.iso", "node-name": "m"}),
        ),
        cmd(
            "blockdev-add",
            json!({"driver": "file", "filename": b, "node-name": "s"}),
        ),
        cmd(
            "blockdev-add",
            json!({"driver": "file", "filename": b, "node-name": "s"}),
        ),
        cmd(
            "blockdev-add",
            json!({"driver": "raw", "file": "s", "node-name": "f"}),
        ),
        cmd(
            "blockdev-insert-medium",
            json!({"id": ID, "node-name": "f"}),
        ),
        cmd(
            "blockdev-insert-medium",
            json!({"id": ID, "node-name": "f"}),
        ),
        cmd("blockdev-del", json!({"node-name": "f"})),
        cmd("blockdev-close-tray", id.clone()),
        cmd("blockdev-close-tray", id.clone()),
        cmd(
            "blockdev-insert-medium",
            json!({"id": ID, "node-name": "s"}),
        ),
        cmd("blockdev-remove-medium", id.clone()),
        cmd(
            "blockdev-change-medium",
            json!({"id": ID, "filename": a, "format": "raw"}),
        ),
        cmd("eject", id.clone()),
        cmd("eject", json!({"id": ID, "force": true})),
        cmd("blockdev-close-tray", id.clone()),
        cmd("blockdev-change-medium", json!({"id": ID, "filename": b})),
    ];
    // One after the other: QEMU's image locks and ours keep two processes from
    // holding one image in conflicting ways.
    let theirs = session(&qsock, &commands);
    let _ = qemu.kill();
    let _ = qemu.wait();
    let q = QmpVm::start(&oxtest_spec("count", cdrom(Some(&a), false)));
    q.vm.wait_for("OXTEST tick 1", GUEST_TIMEOUT);
    let ours = session(&q.sock, &commands);
    let show = |v: &[Value]| v.iter().map(|x| format!("{x}\n")).collect::<String>();
    assert_eq!(
        ours,
        theirs,
        "oxvirt-vmm:\n{}\nQEMU 7.2:\n{}",
        show(&ours),
        show(&theirs)
    );
    // The sequence did reach the drive: both end with disc B in a closed tray.
    let events = theirs
        .iter()
        .filter(|v| v["event"] == "DEVICE_TRAY_MOVED")
        .count();
    assert!(events >= 6, "{}", show(&theirs));
}

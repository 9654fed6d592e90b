//! QMP's device queries on a guest that uses its devices, through qemu.qmp: a disk the
//! guest's own virtio driver reads and writes (query-block, real query-blockstats
//! counters, query-pci, `info block`), and a balloon it inflates on a `balloon` command
//! (BALLOON_CHANGE, query-balloon, `info balloon`).

mod qmp_common;

use machine_spec::{Device, DeviceKind};
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::spec::{disk_device, pci_slot, raw_disk};
use oxvirt_tests::{oxtest_spec, spec, test_guests, GUEST_TIMEOUT};
use qmp_common::{PyQmp, QmpVm, QMP_TIMEOUT};
use serde_json::{json, Value};

#[test]
fn block_pci_and_balloon_queries_report_the_devices_in_use() {
    if !require_kvm("block_pci_and_balloon_queries_report_the_devices_in_use") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk0.raw");
    std::fs::write(&image, vec![0u8; 8 << 20]).unwrap();
    let s = oxtest_spec(
        "pci,virtio,balloon,count",
        vec![
            disk_device("virtio-disk0", 4, raw_disk(&image)),
            Device {
                boot_index: None,
                id: "balloon0".into(),
                pci: pci_slot(5),
                kind: DeviceKind::Balloon(machine_spec::Balloon {
                    stats_period: 0,
                    deflate_on_oom: false,
                }),
            },
        ],
    );
    let q = QmpVm::start(&s);
    let vm = &q.vm;
    let mut c = PyQmp::connect(&q.sock);

    // The guest's driver has read and written the disk: the counters say so.
    vm.expect_ok("vblk", GUEST_TIMEOUT);
    let stats = c.ok("query-blockstats", Value::Null);
    let disk = &stats[0];
    assert_eq!(disk["qdev"], "virtio-disk0", "{stats}");
    let st = &disk["stats"];
    assert!(st["rd_operations"].as_u64().unwrap() >= 1, "{stats}");
    assert!(st["wr_operations"].as_u64().unwrap() >= 1, "{stats}");
    assert!(st["rd_bytes"].as_u64().unwrap() >= 512, "{stats}");
    assert!(st["wr_highest_offset"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(st["failed_rd_operations"], 0);

    let block = c.ok("query-block", Value::Null);
    let ins = &block[0]["inserted"];
    assert_eq!(block[0]["qdev"], "virtio-disk0", "{block}");
    assert_eq!(ins["file"], image.display().to_string());
    assert_eq!(ins["drv"], "raw");
    assert_eq!(ins["ro"], false);
    assert_eq!(ins["image"]["virtual-size"], 8 << 20, "{block}");
    assert_eq!(ins["cache"]["writeback"], true);
    let info = c.ok(
        "human-monitor-command",
        json!({"command-line": "info block"}),
    );
    assert!(
        info.as_str()
            .unwrap()
            .contains(&format!("{} (raw)", image.display())),
        "{info}"
    );

    let pci = c.ok("query-pci", Value::Null);
    let devices = pci[0]["devices"].as_array().unwrap();
    let find = |slot: u64| {
        devices
            .iter()
            .find(|d| d["slot"] == slot)
            .unwrap_or_else(|| panic!("no slot {slot} in {pci}"))
    };
    assert_eq!(find(4)["id"]["vendor"], 0x1af4);
    assert_eq!(find(4)["id"]["device"], 0x1042);
    assert_eq!(find(4)["qdev_id"], "virtio-disk0");
    // INTA#, and the Interrupt Line (the GSI of the DSDT's _PRT) as QEMU reports it.
    assert_eq!(find(4)["irq_pin"], 1, "{pci}");
    assert_eq!(find(4)["irq"], 20, "{pci}");
    assert_eq!(find(0)["irq_pin"], 0, "the host bridge has no pin: {pci}");
    assert!(find(0).get("irq").is_none(), "{pci}");
    assert_eq!(find(5)["id"]["device"], 0x1045);

    // The balloon: the guest inflates to the target we set, and we are told.
    vm.expect_ok("vballoon-wait", GUEST_TIMEOUT);
    let target: u64 = 100 << 20;
    assert_eq!(c.ok("balloon", json!({"value": target})), json!({}));
    let ev = c.event("BALLOON_CHANGE", GUEST_TIMEOUT);
    assert_eq!(ev["data"], json!({"actual": target}), "{ev}");
    assert_eq!(
        c.ok("query-balloon", Value::Null),
        json!({"actual": target})
    );
    assert_eq!(
        c.ok(
            "human-monitor-command",
            json!({"command-line": "info balloon"})
        ),
        json!("balloon: actual=100\r\n")
    );
    let err = c.execute("balloon", json!({"value": 0}));
    assert_eq!(err["error"]["desc"], "Parameter 'target' expects a size");
    vm.expect_ok("vballoon", GUEST_TIMEOUT);

    assert_eq!(c.ok("quit", Value::Null), json!({}));
    c.event("SHUTDOWN", QMP_TIMEOUT);
    vm.wait_exit(GUEST_TIMEOUT);
}

/// A small tmpfs, unmounted on drop (before its directory goes).
struct Tmpfs(std::path::PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "oxvirt-qmp-test",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs(dir.path().to_path_buf(), dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn host_write_errors_raise_block_io_error() {
    let test = "host_write_errors_raise_block_io_error";
    if !require_kvm(test) {
        return;
    }
    // The image lives on a full filesystem: the guest's write fails on the host (ENOSPC).
    let fs = match Tmpfs::mount("256k") {
        Ok(fs) => fs,
        Err(e) => {
            oxvirt_tests::skip(test, &format!("cannot mount a tmpfs (needs root): {e}"));
            return;
        }
    };
    let image = fs.0.join("disk0.raw");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(fs.0.join("filler")).unwrap();
        while filler.write_all(&[0xffu8; 4096]).is_ok() {}
    }
    let mut s = spec(&test_guests().elf, "console=ttyS0 oxtest=pci,virtio", 64, 1);
    s.devices
        .push(disk_device("virtio-disk0", 4, raw_disk(&image)));
    let q = QmpVm::start(&s);
    let mut c = PyQmp::connect(&q.sock);
    // The first run may write before we are connected (events are not kept for later
    // clients, as in QEMU); a reset makes the guest's driver write again.
    q.vm.wait_for("OXTEST vblk", GUEST_TIMEOUT);
    assert_eq!(c.ok("system_reset", Value::Null), json!({}));
    q.vm.wait_count("OXTEST vblk", 2, GUEST_TIMEOUT);
    let ev = c.event("BLOCK_IO_ERROR", GUEST_TIMEOUT);
    assert_eq!(
        ev["data"],
        json!({"device": "", "node-name": "libvirt-virtio-disk0-format", "operation": "write",
            "action": "report", "nospace": false, "reason": "Input/output error"}),
        "{ev}"
    );
    let stats = c.ok("query-blockstats", Value::Null);
    assert!(
        stats[0]["stats"]["failed_wr_operations"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert_eq!(c.ok("quit", Value::Null), json!({}));
    q.vm.wait_exit(GUEST_TIMEOUT);
}

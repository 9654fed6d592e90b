//! QMP's device queries on a guest that uses its devices, through qemu.qmp: a disk the
//! guest's own virtio driver reads and writes (query-block, real query-blockstats
//! counters, query-pci, `info block`), and a balloon it inflates on a `balloon` command
//! (BALLOON_CHANGE, query-balloon, `info balloon`).

mod qmp_common;

use machine_spec::{CacheMode, Device, DeviceKind, Disk, DiskFormat, PciAddress};
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::{spec, test_guests, GUEST_TIMEOUT};
use qmp_common::{PyQmp, QmpVm, QMP_TIMEOUT};
use serde_json::{json, Value};

fn at(slot: u8) -> Option<PciAddress> {
    Some(PciAddress {
        domain: 0,
        bus: 0,
        slot,
        function: 0,
    })
}

#[test]
fn block_pci_and_balloon_queries_report_the_devices_in_use() {
    if !require_kvm("block_pci_and_balloon_queries_report_the_devices_in_use") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk0.raw");
    std::fs::write(&image, vec![0u8; 8 << 20]).unwrap();
    let mut s = spec(
        &test_guests().elf,
        "console=ttyS0 oxtest=pci,virtio,balloon,count",
        128,
        1,
    );
    s.devices.push(Device {
        id: "virtio-disk0".into(),
        pci: at(4),
        kind: DeviceKind::Disk(Disk {
            path: image.clone(),
            format: DiskFormat::Raw,
            target: "vda".into(),
            readonly: false,
            shareable: false,
            serial: None,
            cache: CacheMode::Writeback,
            discard: false,
        }),
    });
    s.devices.push(Device {
        id: "balloon0".into(),
        pci: at(5),
        kind: DeviceKind::Balloon(machine_spec::Balloon {
            stats_period: 0,
            deflate_on_oom: false,
        }),
    });
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

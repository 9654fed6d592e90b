//! Saving a running machine and starting from the saved state, as libvirt's
//! `virsh save`/`restore` and managed save drive QEMU: a real client (qemu.qmp)
//! passes an open file with `getfd` and runs `migrate uri=fd:NAME`; a new VMM
//! starts from that file (the spec's `incoming`).
//!
//! The oxtest guest (two vCPUs) counts its LAPIC timer's ticks ("OXTEST tick N",
//! twice a second): after the save it is paused and counts no more; the new VMM's
//! guest goes on from N+1 — no new boot ("OXTEST READY" never shows), the timer,
//! the interrupt controllers and the UART all as they were. Its ACPI power button
//! then still works (PM block and IOAPIC routing restored); a virtio-rng the guest
//! leaves alone comes along. A machine with a device that cannot save
//! (virtio-balloon, for now) refuses by the device's id and runs on.

mod qmp_common;

use std::time::Duration;

use machine_spec::{Balloon, Device, DeviceKind, Incoming, PciController, PciControllerModel};
use oxvirt_tests::spec::{oxtest_spec, pci_slot, rng_device};
use oxvirt_tests::Vm;
use qmp_common::{PyQmp, QmpVm};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// The highest N of "OXTEST tick N" on the console.
fn last_tick(vm: &Vm) -> u64 {
    vm.console_lines()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("OXTEST tick "))
        .filter_map(|n| n.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

/// Passes `state` (created) to the VMM and runs `migrate` into it, as libvirt saves;
/// the whole reply.
fn migrate_into(q: &mut PyQmp, state: &std::path::Path) -> serde_json::Value {
    q.pass_file(state);
    q.ok("getfd", json!({"fdname": "migrate"}));
    q.execute("migrate", json!({"uri": "fd:migrate"}))
}

/// Checks that the restored guest on `vm`'s console went on from tick `n` (the next
/// tick, or the one after if the save caught the guest half-way through printing a
/// line) without booting again.
fn assert_went_on(vm: &Vm, n: u64) {
    let text = vm.console_lines();
    assert!(
        !text.contains("OXTEST READY"),
        "the restored guest booted again:\n{text}"
    );
    let first = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("OXTEST tick "))
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no tick after the restore:\n{text}"));
    assert!(
        (n + 1..=n + 2).contains(&first),
        "the count did not go on from {n}:\n{text}"
    );
}

#[test]
fn a_saved_guest_goes_on_counting_in_a_new_vmm() {
    // Ten ticks (five seconds), then it waits for the power button.
    let mut spec = oxtest_spec("count,acpibutton ticks=10", vec![rng_device("rng0", 3)]);
    spec.cpus.count = 2;
    spec.cpus.max = 2;
    spec.cpus.topology.cores = 2;
    let a = QmpVm::start(&spec);
    a.vm.wait_count("OXTEST tick", 3, WAIT);

    let state = a.vm.dir().join("saved.state");
    let mut q = PyQmp::connect(&a.sock);
    let r = migrate_into(&mut q, &state);
    assert_eq!(r["return"], json!({}), "{r}");
    let ev = q.event("MIGRATION", WAIT);
    assert_eq!(ev["data"]["status"], "setup", "{ev}");
    q.event("STOP", WAIT);
    let info = q.ok("query-migrate", json!(null));
    assert_eq!(info["status"], "completed", "{info}");
    let len = std::fs::metadata(&state).unwrap().len();
    assert_eq!(info["ram"]["total"], json!(len), "{info}");
    // The guest's code and data are in it; the untouched rest of its 128 MiB is not.
    assert!(
        (64 << 10..16 << 20).contains(&len),
        "zero pages are left out of the stream: {len} bytes"
    );
    let st = q.ok("query-status", json!(null));
    assert_eq!(st["status"], "paused", "{st}");

    // Paused: no tick after the save.
    let n = last_tick(&a.vm);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(last_tick(&a.vm), n, "the guest ran on after the save");
    q.ok("quit", json!(null));
    a.vm.wait_exit(WAIT);

    // A new VMM from the file: the count goes on without a boot.
    spec.incoming = Some(Incoming {
        path: state.clone(),
        offset: 0,
    });
    let b = QmpVm::start(&spec);
    b.vm.wait_count("OXTEST tick", 2, WAIT);
    assert_went_on(&b.vm, n);

    let mut q = PyQmp::connect(&b.sock);
    let st = q.ok("query-status", json!(null));
    assert_eq!(st["status"], "running", "{st}");
    // The restored guest counts to ten, arms the power button and powers off on it.
    b.vm.wait_for("OXTEST acpibutton armed", WAIT);
    q.ok("system_powerdown", json!(null));
    b.vm.expect_ok("acpibutton", WAIT);
    b.vm.expect_exit(0, WAIT);
}

#[test]
fn a_machine_with_a_device_that_cannot_save_refuses_by_its_id() {
    let balloon = Device {
        boot_index: None,
        id: "balloon0".into(),
        pci: pci_slot(3),
        kind: DeviceKind::Balloon(Balloon {
            stats_period: 0,
            deflate_on_oom: false,
        }),
    };
    let spec = oxtest_spec("count", vec![balloon]);
    let a = QmpVm::start(&spec);
    a.vm.wait_count("OXTEST tick", 1, WAIT);
    let state = a.vm.dir().join("saved.state");
    let mut q = PyQmp::connect(&a.sock);
    let r = migrate_into(&mut q, &state);
    let desc = r["error"]["desc"].as_str().unwrap_or_default().to_string();
    assert!(
        desc.contains("device 'balloon0 (virtio-balloon)' cannot save its state"),
        "{r}"
    );
    let info = q.ok("query-migrate", json!(null));
    assert_eq!(info["status"], "failed", "{info}");
    // The guest was never stopped.
    let st = q.ok("query-status", json!(null));
    assert_eq!(st["status"], "running", "{st}");
    let n = last_tick(&a.vm);
    a.vm.wait_count("OXTEST tick", (n + 1) as usize, WAIT);
    // Only fd: URIs.
    let r = q.execute("migrate", json!({"uri": "tcp:127.0.0.1:4444"}));
    assert!(
        r["error"]["desc"]
            .as_str()
            .unwrap_or_default()
            .contains("Invalid migration URI"),
        "{r}"
    );
    q.ok("quit", json!(null));
    a.vm.wait_exit(WAIT);
}

/// A Q35 machine (its MCH, LPC and built-in AHCI controller with no drives, and an
/// empty PCIe root port with its hot-plug slot) saves and restores too.
#[test]
fn a_q35_machine_saves_and_restores() {
    let port = Device {
        boot_index: None,
        id: "pci.1".into(),
        pci: pci_slot(2),
        kind: DeviceKind::PciController(PciController {
            model: PciControllerModel::PcieRootPort,
            index: 1,
            chassis: 1,
            port: 0x10,
        }),
    };
    let mut spec = oxtest_spec("count", vec![port]);
    spec.platform.chipset = machine_spec::Chipset::Q35;
    let a = QmpVm::start(&spec);
    a.vm.wait_count("OXTEST tick", 2, WAIT);
    let state = a.vm.dir().join("saved.state");
    let mut q = PyQmp::connect(&a.sock);
    let r = migrate_into(&mut q, &state);
    assert_eq!(r["return"], json!({}), "{r}");
    let n = last_tick(&a.vm);
    q.ok("quit", json!(null));
    a.vm.wait_exit(WAIT);

    spec.incoming = Some(Incoming {
        path: state.clone(),
        offset: 0,
    });
    let b = QmpVm::start(&spec);
    b.vm.wait_count("OXTEST tick", 1, WAIT);
    assert_went_on(&b.vm, n);
    let mut q = PyQmp::connect(&b.sock);
    q.ok("quit", json!(null));
    b.vm.wait_exit(WAIT);
}

//! QMP `set_link` through a real client (qemu.qmp) on a guest that watches its
//! link: the oxtest guest's virtio-net driver reads the `status` field of the
//! device configuration, takes the configuration-change interrupt the VMM raises
//! on `set_link` (MSI-X, or INTx with the ISR's config bit when the guest leaves
//! MSI-X off) and prints the new status. The test takes the link down, checks an
//! unknown name fails as QEMU 7.2 fails it, and brings the link up again by the
//! netdev id libvirt would use.
//!
//! The NIC needs a tap: the VMM creates one (transient, gone when it exits), which
//! needs root and /dev/net/tun; the test skips loudly without them.

mod qmp_common;

use machine_spec::{exit, NetBackend};
use oxvirt_tests::net::{link_status as vnet_link_status, require_tap};
use oxvirt_tests::spec::net_device;
use oxvirt_tests::{oxtest_spec, Vm, GUEST_TIMEOUT};
use qmp_common::{PyQmp, QmpVm};
use serde_json::json;

const SLOT: u8 = 3;

/// Waits for the guest's `vnet-link` line number `n` (0 = the initial state) and
/// returns its `status` field.
fn link_status(vm: &Vm, n: usize) -> String {
    let needle = format!("changes={n} ");
    vm.wait_count(&needle, 1, GUEST_TIMEOUT);
    vnet_link_status(&vm.checks(), n).unwrap_or_else(|e| vm.fail(&e))
}

fn flip_link(checks: &str, tap: &str) -> Vm {
    let s = oxtest_spec(
        &format!("pci,virtio,{checks},poweroff link_changes=2"),
        vec![net_device(
            "net0",
            SLOT,
            "52:54:00:0a:0b:0d",
            NetBackend::Tap {
                name: Some(tap.into()),
            },
        )],
    );
    let q = QmpVm::start(&s);
    let mut c = PyQmp::connect(&q.sock);
    let vm = &q.vm;

    assert_eq!(link_status(vm, 0), "1", "the link starts up");
    assert_eq!(
        c.ok("set_link", json!({"name": "net0", "up": false})),
        json!({})
    );
    assert_eq!(link_status(vm, 1), "0", "the guest saw the link go down");

    // QEMU 7.2: {"class": "DeviceNotFound", "desc": "Device 'nope' not found"}.
    let e = c.execute("set_link", json!({"name": "nope", "up": true}));
    assert_eq!(e["error"]["class"], "DeviceNotFound", "{e}");
    assert_eq!(e["error"]["desc"], "Device 'nope' not found", "{e}");

    // libvirt's netdev id for the NIC with alias net0.
    assert_eq!(
        c.ok("set_link", json!({"name": "hostnet0", "up": true})),
        json!({})
    );
    assert_eq!(link_status(vm, 2), "1", "the guest saw the link come back");
    vm.wait_for("OXTEST DONE", GUEST_TIMEOUT);
    assert_eq!(vm.wait_exit(GUEST_TIMEOUT), exit::POWEROFF);
    vm.assert_no_failures();
    drop(c);
    let QmpVm { vm, .. } = q;
    vm
}

#[test]
fn set_link_reaches_the_guest_driver_through_msix() {
    let name = "set_link_reaches_the_guest_driver_through_msix";
    if !require_tap(name) {
        return;
    }
    let vm = flip_link("link", &format!("oxlm{}", std::process::id()));
    let last = vm
        .checks()
        .into_iter()
        .rfind(|c| c.name == "vnet-link")
        .unwrap();
    // Each configuration change moved the generation counter.
    assert_eq!(last.field("gen"), Some("2"), "{}", last.details);
}

#[test]
fn set_link_reaches_the_guest_driver_through_intx() {
    let name = "set_link_reaches_the_guest_driver_through_intx";
    if !require_tap(name) {
        return;
    }
    let vm = flip_link("link,intx", &format!("oxli{}", std::process::id()));
    for c in vm.checks().into_iter().filter(|c| c.name == "vnet-link") {
        if c.field("changes") != Some("0") {
            assert_eq!(
                c.field("intx"),
                Some("1"),
                "config interrupt on INTx: {}",
                c.details
            );
        }
        assert_eq!(c.field("gsi"), Some("19"), "16 + slot 3: {}", c.details);
    }
}

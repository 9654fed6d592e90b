//! virtio-pci without MSI-X: the oxtest guest leaves MSI-X off (as Linux with
//! `pci=nomsi` does) and drives a disk and an rng through INTA#, routed by the
//! Interrupt Line register's GSI through the IO-APIC as a level-triggered line,
//! waiting for completions with sti;hlt; its handler reads the virtio ISR (which
//! clears it) before the EOI. Through the real VMM: the irqfd with resampling,
//! the swizzle the DSDT's `_PRT` describes (GSI 16 + slot mod 8).

use machine_spec::Disk;
use oxvirt_tests::disk::{guest_pattern, raw_image};
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::spec::{disk_device, raw_disk, rng_device};
use oxvirt_tests::{oxtest_spec, Vm, GUEST_TIMEOUT};

/// The guest driving `disk` at `disk_slot` and an rng at `rng_slot` on INTx, run to
/// power-off with no failed check.
fn run_intx(disk_slot: u8, disk: Disk, rng_slot: u8) -> Vm {
    let s = oxtest_spec(
        "pci,virtio,intx,poweroff",
        vec![
            disk_device("virtio-disk0", disk_slot, disk),
            rng_device("rng0", rng_slot),
        ],
    );
    let vm = Vm::start(&s);
    vm.wait_poweroff(GUEST_TIMEOUT * 2);
    vm.assert_no_failures();
    vm
}

#[test]
fn disk_and_rng_work_on_intx_without_msix() {
    if !require_kvm("disk_and_rng_work_on_intx_without_msix") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The guest expects sector 0 to hold the host pattern.
    let image = raw_image(dir.path(), "disk.raw", 1);
    let disk = Disk {
        serial: Some("INTXDISK".into()),
        ..raw_disk(&image)
    };
    let vm = run_intx(5, disk, 6);

    let blk = vm.expect_ok("vblk", GUEST_TIMEOUT);
    assert_eq!(blk.field("intx"), Some("1"), "{}", blk.details);
    assert_eq!(blk.field("pin"), Some("1"), "INTA#: {}", blk.details);
    assert_eq!(blk.field("gsi"), Some("21"), "16 + slot 5: {}", blk.details);
    assert_eq!(blk.field("read"), Some("pattern"), "{}", blk.details);
    assert_eq!(blk.field("write"), Some("ok"), "{}", blk.details);
    assert_eq!(blk.field("reinit"), Some("1"), "{}", blk.details);
    assert_eq!(blk.field("id"), Some("INTXDISK"), "{}", blk.details);
    let rng = vm.expect_ok("vrng", GUEST_TIMEOUT);
    assert_eq!(rng.field("intx"), Some("1"), "{}", rng.details);
    assert_eq!(rng.field("gsi"), Some("22"), "16 + slot 6: {}", rng.details);
    assert_eq!(rng.field("bytes"), Some("64"));

    // The guest's write reached the image.
    let disk = std::fs::read(&image).unwrap();
    assert!(
        disk[4096..8192] == guest_pattern(5)[..],
        "the guest's write is not in the image"
    );
}

/// Slots 4 and 12 share GSI 20 (16 + slot mod 8): one level-triggered line, two
/// resampling irqfds; the guest's handler reads both devices' ISRs before its EOI.
#[test]
fn two_functions_share_one_intx_line() {
    if !require_kvm("two_functions_share_one_intx_line") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.raw");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let vm = run_intx(4, raw_disk(&image), 12);
    let blk = vm.expect_ok("vblk", GUEST_TIMEOUT);
    let rng = vm.expect_ok("vrng", GUEST_TIMEOUT);
    for c in [&blk, &rng] {
        assert_eq!(c.field("gsi"), Some("20"), "{}", c.details);
        assert_eq!(c.field("intx"), Some("1"), "{}", c.details);
    }
    assert_eq!(blk.field("write"), Some("ok"), "{}", blk.details);
}

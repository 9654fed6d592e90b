//! virtio-pci without MSI-X: the oxtest guest leaves MSI-X off (as Linux with
//! `pci=nomsi` does) and drives a disk and an rng through INTA#, routed by the
//! Interrupt Line register's GSI through the IO-APIC as a level-triggered line,
//! waiting for completions with sti;hlt; its handler reads the virtio ISR (which
//! clears it) before the EOI. Through the real VMM: the irqfd with resampling,
//! the swizzle the DSDT's `_PRT` describes (GSI 16 + slot mod 8).

use machine_spec::{exit, CacheMode, Device, DeviceKind, Disk, DiskFormat, PciAddress, Rng};
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::{spec, test_guests, Vm, GUEST_TIMEOUT};

fn at(slot: u8) -> Option<PciAddress> {
    Some(PciAddress {
        domain: 0,
        bus: 0,
        slot,
        function: 0,
    })
}

#[test]
fn disk_and_rng_work_on_intx_without_msix() {
    if !require_kvm("disk_and_rng_work_on_intx_without_msix") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.raw");
    // The guest expects byte k of sector 0 to be (k*13+0x5a) & 0xff.
    let mut data: Vec<u8> = (0..4096u32).map(|k| (k * 13 + 0x5a) as u8).collect();
    data.resize(1 << 20, 0);
    std::fs::write(&image, &data).unwrap();
    let mut s = spec(
        &test_guests().elf,
        "console=ttyS0 oxtest=pci,virtio,intx,poweroff",
        128,
        1,
    );
    s.devices.push(Device {
        id: "virtio-disk0".into(),
        pci: at(5),
        kind: DeviceKind::Disk(Disk {
            path: image.clone(),
            format: DiskFormat::Raw,
            target: "vda".into(),
            readonly: false,
            shareable: false,
            serial: Some("INTXDISK".into()),
            cache: CacheMode::Writeback,
            discard: false,
        }),
    });
    s.devices.push(Device {
        id: "rng0".into(),
        pci: at(6),
        kind: DeviceKind::Rng(Rng {
            source: "/dev/urandom".into(),
        }),
    });
    let vm = Vm::start(&s);
    vm.wait_for("OXTEST DONE", GUEST_TIMEOUT * 2);
    assert_eq!(vm.wait_exit(GUEST_TIMEOUT), exit::POWEROFF);
    vm.assert_no_failures();

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

    // The guest's write reached the image: bytes 4096.. are (k*3 + slot + 0xa5).
    let disk = std::fs::read(&image).unwrap();
    assert!(
        (0..4096usize).all(|k| disk[4096 + k] == (k * 3 + 5 + 0xa5) as u8),
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
    let mut s = spec(
        &test_guests().elf,
        "console=ttyS0 oxtest=pci,virtio,intx,poweroff",
        128,
        1,
    );
    s.devices.push(Device {
        id: "virtio-disk0".into(),
        pci: at(4),
        kind: DeviceKind::Disk(Disk {
            path: image,
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
        id: "rng0".into(),
        pci: at(12),
        kind: DeviceKind::Rng(Rng {
            source: "/dev/urandom".into(),
        }),
    });
    let vm = Vm::start(&s);
    vm.wait_for("OXTEST DONE", GUEST_TIMEOUT * 2);
    assert_eq!(vm.wait_exit(GUEST_TIMEOUT), exit::POWEROFF);
    vm.assert_no_failures();
    let blk = vm.expect_ok("vblk", GUEST_TIMEOUT);
    let rng = vm.expect_ok("vrng", GUEST_TIMEOUT);
    for c in [&blk, &rng] {
        assert_eq!(c.field("gsi"), Some("20"), "{}", c.details);
        assert_eq!(c.field("intx"), Some("1"), "{}", c.details);
    }
    assert_eq!(blk.field("write"), Some("ok"), "{}", blk.details);
}

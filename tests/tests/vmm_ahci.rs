//! The AHCI adapter driven by the oxtest guest's own polled AHCI driver
//! (`tests/guests/oxtest/ahci.c`, tier 2): it finds the ICH9 function on PCI,
//! brings up the port with the ATA disk, sends IDENTIFY DEVICE, reads the
//! host's pattern from LBA 0 with READ DMA EXT, writes LBA 1 with WRITE DMA EXT
//! and reads it back; the host then finds the guest's sector in the image.

use machine_spec::{exit, AtaBus, AtaController, AtaDisk, Device, DeviceKind, Disk};
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::spec::{pci_slot, raw_disk};
use oxvirt_tests::{oxtest_spec, Vm, GUEST_TIMEOUT};

#[test]
fn oxtest_guest_reads_and_writes_a_sata_disk() {
    if !require_kvm("oxtest_guest_reads_and_writes_a_sata_disk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let mut data = vec![0u8; 4 << 20];
    data[..512].fill(0x5a);
    std::fs::write(&img, &data).unwrap();
    let devices = vec![
        Device {
            id: "sata0".into(),
            pci: pci_slot(5),
            boot_index: None,
            kind: DeviceKind::SataController(AtaController { index: 0 }),
        },
        // The disk on port 3: the driver must find the port by its signature.
        Device {
            id: "sata0-0-3".into(),
            pci: None,
            boot_index: None,
            kind: DeviceKind::AtaDisk(AtaDisk {
                bus_type: AtaBus::Sata,
                controller: 0,
                bus: 3,
                unit: 0,
                cdrom: false,
                name: "sdd".into(),
                wwn: None,
                tray_open: false,
                medium: Some(Disk {
                    target: "sdd".into(),
                    ..raw_disk(&img)
                }),
            }),
        },
    ];
    let vm = Vm::start(&oxtest_spec("ahci,poweroff", devices));
    let line = vm.wait_for("OXTEST ahci", GUEST_TIMEOUT);
    assert!(
        line.contains("OXTEST ahci ok")
            && line.contains("port=3")
            && line.contains(&format!("sectors={}", (4 << 20) / 512))
            && line.contains("first=0x5a")
            && line.contains("model=QEMU_HARDDISK"),
        "{line}\n{}",
        vm.console()
    );
    vm.expect_exit(exit::POWEROFF, GUEST_TIMEOUT);
    let after = std::fs::read(&img).unwrap();
    let want: Vec<u8> = (0..512).map(|i| (i ^ 0xa5) as u8).collect();
    assert_eq!(
        &after[512..1024],
        &want[..],
        "the guest's sector is not in the image"
    );
}

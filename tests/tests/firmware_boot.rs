//! Firmware boot with Debian's SeaBIOS (`/usr/share/seabios/bios-256k.bin`, package
//! `seabios`): domain XML without `<kernel>`, run through `oxvirt-vmm --xml`, boots our
//! 512-byte boot sector (`guests/bootsector/boot.S`) from a virtio-blk disk on Q35 and
//! on i440FX. The boot sector reads LBA 1 through INT 13h (the firmware's virtio-blk
//! driver on our device, its BARs placed by the firmware), prints the tag found there,
//! and powers off through the PM block. Boot order (`<boot order>`, `<boot dev>`), the
//! boot menu over the serial console, and reset (the firmware runs again from the reset
//! vector with its low copy restored) are checked the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use machine_spec::exit;
use oxvirt_tests::guests::boot_disk;
use oxvirt_tests::host::require_seabios;
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::Vm;

/// SeaBIOS reaches a boot sector in ≈ 3 s under QEMU on this emulated KVM.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// A disk XML element for a raw image with an optional per-device boot order.
fn disk_xml(path: &Path, dev: &str, order: Option<u32>) -> String {
    disk_at(path, dev, order, "")
}

/// As [`disk_xml`], with an `<address>` element (or none).
fn disk_at(path: &Path, dev: &str, order: Option<u32>, address: &str) -> String {
    let boot = order
        .map(|o| format!("<boot order='{o}'/>"))
        .unwrap_or_default();
    format!(
        "<disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{}'/>
      <target dev='{dev}' bus='virtio'/>
      {boot}
      {address}
    </disk>",
        path.display()
    )
}

/// libvirt's layout of a Q35 domain: `pcie-root-port` controllers as functions of
/// one multi-function slot (00:02.0-00:02.N), each providing bus `index`.
fn root_ports(n: u8) -> String {
    (1..=n)
        .map(|i| {
            let mf = if i == 1 { " multifunction='on'" } else { "" };
            format!(
                "<controller type='pci' index='{i}' model='pcie-root-port'>
      <model name='pcie-root-port'/>
      <target chassis='{i}' port='{port:#x}'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='{f:#x}'{mf}/>
    </controller>",
                port = 0x10 + i - 1,
                f = i - 1
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A PCI address on `bus`, slot 0 (what libvirt gives a device behind a root port).
fn behind(bus: u8) -> String {
    format!("<address type='pci' domain='0x0000' bus='{bus:#04x}' slot='0x00' function='0x0'/>")
}

/// A firmware-booted domain: `machine`, the `<os>` children after `<type>`, devices.
fn firmware_xml(machine: &str, os_extra: &str, on_poweroff: &str, devices: &str) -> String {
    format!(
        "<domain type='kvm'>
  <name>fwboot</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='{machine}'>hvm</type>
    {os_extra}
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>{on_poweroff}</on_poweroff>
  <devices>
    {devices}
{serial}
  </devices>
</domain>
",
        serial = serial_xml("stdio")
    )
}

/// Disk images tagged A, B, … in a temporary directory.
fn disks(tags: &[&str]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let paths = tags
        .iter()
        .map(|t| {
            let p = dir.path().join(format!("disk-{t}.img"));
            boot_disk(&p, t).unwrap();
            p
        })
        .collect();
    (dir, paths)
}

/// Waits for the boot sector's lines and the power-off; returns the tag it read.
fn booted_tag(vm: &Vm) -> String {
    let line = vm.wait_for("OXBOOT-SECTOR-OK", BOOT_TIMEOUT);
    assert!(
        line.contains("drive=80"),
        "booted from the first hard disk: {line}"
    );
    let data = vm.wait_for("OXBOOT-DATA", BOOT_TIMEOUT);
    vm.expect_exit(exit::POWEROFF, BOOT_TIMEOUT);
    data.split("tag=")
        .nth(1)
        .unwrap_or_else(|| vm.fail(&format!("no tag in `{data}`")))
        .trim()
        .to_string()
}

fn boots_from_virtio_blk(machine: &str) {
    let (_dir, d) = disks(&["A"]);
    let xml = firmware_xml(
        machine,
        "<boot dev='hd'/>",
        "destroy",
        &disk_xml(&d[0], "vda", None),
    );
    let vm = Vm::start_xml(&xml, &[]);
    assert_eq!(booted_tag(&vm), "A");
    // SeaBIOS's banner went to COM1 too (sercon: the domain has no video device).
    assert!(vm.console().contains("SeaBIOS"), "{}", vm.console());
}

#[test]
fn seabios_q35_boots_a_boot_sector_from_virtio_blk() {
    if require_seabios("seabios_q35_boots_a_boot_sector_from_virtio_blk") {
        boots_from_virtio_blk("q35");
    }
}

#[test]
fn seabios_i440fx_boots_a_boot_sector_from_virtio_blk() {
    if require_seabios("seabios_i440fx_boots_a_boot_sector_from_virtio_blk") {
        boots_from_virtio_blk("pc-i440fx-7.2");
    }
}

#[test]
fn per_device_boot_order_picks_the_second_disk() {
    if !require_seabios("per_device_boot_order_picks_the_second_disk") {
        return;
    }
    let (_dir, d) = disks(&["A", "B"]);
    let devices = format!(
        "{}\n{}",
        disk_xml(&d[0], "vda", Some(2)),
        disk_xml(&d[1], "vdb", Some(1))
    );
    let vm = Vm::start_xml(&firmware_xml("q35", "", "destroy", &devices), &[]);
    assert_eq!(booted_tag(&vm), "B");
}

#[test]
fn boot_dev_hd_picks_the_first_disk() {
    if !require_seabios("boot_dev_hd_picks_the_first_disk") {
        return;
    }
    let (_dir, d) = disks(&["A", "B"]);
    let devices = format!(
        "{}\n{}",
        disk_xml(&d[0], "vda", None),
        disk_xml(&d[1], "vdb", None)
    );
    let vm = Vm::start_xml(
        &firmware_xml("q35", "<boot dev='hd'/>", "destroy", &devices),
        &[],
    );
    assert_eq!(booted_tag(&vm), "A");
}

#[test]
fn boot_menu_is_offered_on_the_serial_console() {
    if !require_seabios("boot_menu_is_offered_on_the_serial_console") {
        return;
    }
    let (_dir, d) = disks(&["A"]);
    let vm = Vm::start_xml(
        &firmware_xml(
            "q35",
            "<boot dev='hd'/><bootmenu enable='yes' timeout='500'/>",
            "destroy",
            &disk_xml(&d[0], "vda", None),
        ),
        &[],
    );
    vm.wait_for("Press ESC for boot menu", BOOT_TIMEOUT);
    assert_eq!(booted_tag(&vm), "A");
}

#[test]
fn power_off_with_restart_runs_the_firmware_again() {
    if !require_seabios("power_off_with_restart_runs_the_firmware_again") {
        return;
    }
    let (_dir, d) = disks(&["A"]);
    let vm = Vm::start_xml(
        &firmware_xml(
            "q35",
            "<boot dev='hd'/>",
            "restart",
            &disk_xml(&d[0], "vda", None),
        ),
        &[],
    );
    // Each boot prints the banner and the sector's line; the second boot starts from
    // the reset vector with fresh RAM and the BIOS tail copied in again.
    vm.wait_count("OXBOOT-DATA tag=A", 2, BOOT_TIMEOUT * 2);
    let console = vm.console();
    assert!(
        console.matches("SeaBIOS (version").count() >= 2,
        "{console}"
    );
    vm.kill();
}

#[test]
fn disks_behind_root_ports_boot_in_boot_order() {
    if !require_seabios("disks_behind_root_ports_boot_in_boot_order") {
        return;
    }
    let (_dir, d) = disks(&["A", "B"]);
    // As `virsh dumpxml` shows a libvirt Q35 domain: every device behind a root port.
    let devices = format!(
        "{}\n{}\n{}",
        root_ports(3),
        disk_at(&d[0], "vda", Some(2), &behind(1)),
        disk_at(&d[1], "vdb", Some(1), &behind(3))
    );
    let vm = Vm::start_xml(&firmware_xml("q35", "", "destroy", &devices), &[]);
    assert_eq!(booted_tag(&vm), "B");
}

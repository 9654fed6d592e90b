//! Booting through SeaBIOS from SATA (the ICH9 AHCI at 00:1f.2 on Q35, `<disk
//! bus='sata'>`), via `oxvirt-vmm --xml`:
//!
//! * an El Torito no-emulation ISO (built here with `xorriso -as mkisofs -b boot.img
//!   -no-emul-boot -boot-load-size 4`, the boot image being our boot sector) on an
//!   ATAPI CD-ROM. SeaBIOS finds the port's ATAPI signature, sends IDENTIFY PACKET
//!   DEVICE, then TEST UNIT READY and READ(10) packets for the boot catalog and the
//!   image, and hands the boot sector a CD drive number (0xe0); the boot sector's
//!   INT 13h read of "LBA 1" is then 2048-byte block 1 of the ISO, which lies in the
//!   system area, filled here (`-G`) with the `OXBOOT-DATA` tag;
//! * a raw boot disk on an ATA disk port (drive 0x80, READ DMA EXT).
//!
//! The domains put more drives on the adapter than the one booted (an empty tray,
//! another disk), and pick the boot device by `<boot order>` or `<boot dev>`: the
//! `bootorder` paths QEMU writes for AHCI (`/pci@i0cf8/pci8086,2922@1f,2/drive@N/disk@0`)
//! must match what SeaBIOS builds for each port.
//!
//! And from IDE on i440FX (the PIIX3 IDE function at 00:01.1, channels at the
//! legacy ports): a CD as `hdc` (secondary master, SeaBIOS's ATAPI over PIO) and a
//! disk as `hda`.

mod qmp_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use machine_spec::exit;
use oxvirt_tests::guests::boot_disk;
use oxvirt_tests::host::{require_seabios, skip};
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::Vm;

/// SeaBIOS reaches a CD boot sector in ≈ 3.3 s under QEMU (AHCI) on this emulated KVM.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// A firmware-booted Q35 domain with `os_extra` after `<type>` and `devices`.
fn domain_xml(os_extra: &str, devices: &str) -> String {
    machine_xml("q35", os_extra, devices)
}

/// The same on machine type `machine`.
fn machine_xml(machine: &str, os_extra: &str, devices: &str) -> String {
    format!(
        "<domain type='kvm'>
  <name>fwsata</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='{machine}'>hvm</type>
    {os_extra}
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    {devices}
{serial}
  </devices>
</domain>
",
        serial = serial_xml("stdio")
    )
}

/// A `<disk bus='sata'>` element: `device` disk or cdrom, an optional image, the
/// port (drive address unit) and extra XML inside `<disk>`.
fn sata_disk(device: &str, image: Option<&Path>, dev: &str, port: u32, extra: &str) -> String {
    let source = image
        .map(|p| format!("<source file='{}'/>", p.display()))
        .unwrap_or_default();
    let ro = if device == "cdrom" { "<readonly/>" } else { "" };
    format!(
        "<disk type='file' device='{device}'>
      <driver name='qemu' type='raw'/>
      {source}
      <target dev='{dev}' bus='sata'/>
      {ro}
      {extra}
      <address type='drive' controller='0' bus='0' target='0' unit='{port}'/>
    </disk>"
    )
}

/// Builds an El Torito no-emulation ISO whose boot image is the test boot sector and
/// whose 2048-byte block 1 holds `OXBOOT-DATA tag=<tag>`. `None` when xorriso is
/// missing.
fn boot_iso(dir: &Path, tag: &str) -> Option<PathBuf> {
    let disk = dir.join("sector.img");
    boot_disk(&disk, "unused").unwrap();
    let mut sector = std::fs::read(&disk).unwrap();
    sector.truncate(512);
    sector.resize(2048, 0);
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("boot.img"), &sector).unwrap();
    std::fs::write(root.join("README.TXT"), b"oxvirt SATA CD test\n").unwrap();
    // The system area (blocks 0-15), where block 1 carries the tag.
    let mut sysarea = vec![0u8; 32 << 10];
    let text = format!("OXBOOT-DATA tag={tag}");
    sysarea[2048..2048 + text.len()].copy_from_slice(text.as_bytes());
    let sys = dir.join("sysarea.img");
    std::fs::write(&sys, &sysarea).unwrap();
    let iso = dir.join("boot.iso");
    let out = match Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "OXBOOT", "-G"])
        .arg(&sys)
        .args([
            "-b",
            "boot.img",
            "-no-emul-boot",
            "-boot-load-size",
            "4",
            "-o",
        ])
        .arg(&iso)
        .arg(&root)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            skip(
                "firmware_sata",
                &format!("xorriso: {e} (apt-get install xorriso)"),
            );
            return None;
        }
    };
    assert!(
        out.status.success(),
        "xorriso failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(iso)
}

/// Waits for the boot sector's two lines and the power-off; returns the drive
/// number it was booted with and the tag it read.
fn booted(vm: &Vm) -> (String, String) {
    let line = vm.wait_for("OXBOOT-SECTOR-OK", BOOT_TIMEOUT);
    let drive = line
        .split("drive=")
        .nth(1)
        .unwrap_or_else(|| vm.fail(&format!("no drive in `{line}`")))
        .trim()
        .to_string();
    let data = vm.wait_for("OXBOOT-DATA", BOOT_TIMEOUT);
    vm.expect_exit(exit::POWEROFF, BOOT_TIMEOUT);
    let tag = data
        .split("tag=")
        .nth(1)
        .unwrap_or_else(|| vm.fail(&format!("no tag in `{data}`")))
        .trim()
        .to_string();
    (drive, tag)
}

#[test]
fn seabios_boots_an_el_torito_cd_on_sata() {
    let test = "seabios_boots_an_el_torito_cd_on_sata";
    if !require_seabios(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(iso) = boot_iso(dir.path(), "SATACD") else {
        return;
    };
    let disk = dir.path().join("disk.img");
    boot_disk(&disk, "HD").unwrap();
    // A bootable disk on port 0, an empty tray on port 1, the ISO on port 4 with the
    // first boot index: SeaBIOS must boot the CD, not the disk.
    let devices = [
        sata_disk("disk", Some(&disk), "sda", 0, ""),
        sata_disk("cdrom", None, "sdb", 1, ""),
        sata_disk("cdrom", Some(&iso), "sde", 4, "<boot order='1'/>"),
    ]
    .join("\n    ");
    let vm = Vm::start_xml(&domain_xml("", &devices), &[]);
    let (drive, tag) = booted(&vm);
    assert_eq!(tag, "SATACD", "{}", vm.console());
    assert!(
        drive.starts_with('e'),
        "a CD drive number (0xe0+), got {drive}"
    );
}

#[test]
fn boot_dev_hd_then_cdrom_boots_the_sata_disk() {
    let test = "boot_dev_hd_then_cdrom_boots_the_sata_disk";
    if !require_seabios(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(iso) = boot_iso(dir.path(), "CD") else {
        return;
    };
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    boot_disk(&a, "A").unwrap();
    boot_disk(&b, "B").unwrap();
    // The CD first on the bus; `<boot dev='hd'/>` gives the first disk (port 2) the
    // first boot index.
    let devices = [
        sata_disk("cdrom", Some(&iso), "sda", 0, ""),
        sata_disk("disk", Some(&b), "sdc", 2, ""),
        sata_disk("disk", Some(&a), "sdd", 3, ""),
    ]
    .join("\n    ");
    let vm = Vm::start_xml(
        &domain_xml("<boot dev='hd'/><boot dev='cdrom'/>", &devices),
        &[],
    );
    let (drive, tag) = booted(&vm);
    assert_eq!(tag, "B", "{}", vm.console());
    assert_eq!(drive, "80", "the first hard disk");
}

#[test]
fn boot_dev_cdrom_boots_the_sata_cd() {
    let test = "boot_dev_cdrom_boots_the_sata_cd";
    if !require_seabios(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(iso) = boot_iso(dir.path(), "CD2") else {
        return;
    };
    let disk = dir.path().join("disk.img");
    boot_disk(&disk, "HD").unwrap();
    // virt-install's install-time layout: disk first, CD second, <boot dev='cdrom'/>.
    let devices = [
        sata_disk("disk", Some(&disk), "sda", 0, ""),
        sata_disk("cdrom", Some(&iso), "sdb", 1, ""),
    ]
    .join("\n    ");
    let vm = Vm::start_xml(
        &domain_xml("<boot dev='cdrom'/><boot dev='hd'/>", &devices),
        &[],
    );
    assert_eq!(booted(&vm).1, "CD2");
}

/// An `<disk bus='ide'>` element at IDE channel `bus`, `unit` (master 0, slave 1).
fn ide_disk(device: &str, image: &Path, dev: &str, bus: u32, unit: u32, extra: &str) -> String {
    let ro = if device == "cdrom" { "<readonly/>" } else { "" };
    format!(
        "<disk type='file' device='{device}'>
      <driver name='qemu' type='raw'/>
      <source file='{}'/>
      <target dev='{dev}' bus='ide'/>
      {ro}
      {extra}
      <address type='drive' controller='0' bus='{bus}' target='0' unit='{unit}'/>
    </disk>",
        image.display()
    )
}

#[test]
fn seabios_i440fx_boots_a_cd_on_ide() {
    let test = "seabios_i440fx_boots_a_cd_on_ide";
    if !require_seabios(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(iso) = boot_iso(dir.path(), "IDECD") else {
        return;
    };
    let disk = dir.path().join("disk.img");
    boot_disk(&disk, "HD").unwrap();
    // virt-install's pc layout: the disk as hda, the CD as hdc; boot the CD.
    let devices = [
        ide_disk("disk", &disk, "hda", 0, 0, ""),
        ide_disk("cdrom", &iso, "hdc", 1, 0, ""),
    ]
    .join("\n    ");
    let vm = Vm::start_xml(
        &machine_xml(
            "pc-i440fx-7.2",
            "<boot dev='cdrom'/><boot dev='hd'/>",
            &devices,
        ),
        &[],
    );
    let (drive, tag) = booted(&vm);
    assert_eq!(tag, "IDECD", "{}", vm.console());
    assert!(
        drive.starts_with('e'),
        "a CD drive number (0xe0+), got {drive}"
    );
}

#[test]
fn seabios_i440fx_boots_the_ide_slave_disk_by_boot_order() {
    let test = "seabios_i440fx_boots_the_ide_slave_disk_by_boot_order";
    if !require_seabios(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    boot_disk(&a, "A").unwrap();
    boot_disk(&b, "B").unwrap();
    let devices = [
        ide_disk("disk", &a, "hda", 0, 0, ""),
        ide_disk("disk", &b, "hdb", 0, 1, "<boot order='1'/>"),
    ]
    .join("\n    ");
    let vm = Vm::start_xml(&machine_xml("pc-i440fx-7.2", "", &devices), &[]);
    let (drive, tag) = booted(&vm);
    assert_eq!(tag, "B", "{}", vm.console());
    assert_eq!(drive, "80", "the first hard disk");
}

#[test]
fn blank_sata_disk_and_empty_tray_show_in_query_block_and_blockstats() {
    let test = "blank_sata_disk_and_empty_tray_show_in_query_block_and_blockstats";
    if !require_seabios(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.img");
    std::fs::write(&blank, vec![0u8; 1 << 20]).unwrap();
    let devices = [
        sata_disk("disk", Some(&blank), "sda", 0, ""),
        sata_disk("cdrom", None, "sdb", 1, ""),
    ]
    .join("\n    ");
    let sock = dir.path().join("qmp.sock");
    let vm = Vm::start_xml(
        &domain_xml("<boot dev='cdrom'/><boot dev='hd'/>", &devices),
        &["--qmp", sock.to_str().unwrap()],
    );
    // SeaBIOS tries the CD (no medium), reads the blank disk's MBR, gives up.
    vm.wait_for("No bootable device", BOOT_TIMEOUT);
    qmp_common::wait_socket(&sock, Duration::from_secs(30));
    let mut q = qmp_common::RawQmp::connect(&sock);
    q.line(); // greeting
    q.ask(b"{\"execute\":\"qmp_capabilities\"}\n");
    let reply: serde_json::Value =
        serde_json::from_str(&q.ask(b"{\"execute\":\"query-block\"}\n")).unwrap();
    let blocks = reply["return"]
        .as_array()
        .unwrap_or_else(|| vm.fail(&format!("{reply}")));
    let find = |qdev: &str| {
        blocks
            .iter()
            .find(|b| b["qdev"] == qdev)
            .unwrap_or_else(|| vm.fail(&format!("no {qdev} in {reply}")))
    };
    // libvirt's aliases as qdev ids.
    let disk = find("sata0-0-0");
    assert_eq!(disk["removable"], false, "{reply}");
    assert_eq!(disk["inserted"]["file"], blank.display().to_string());
    assert_eq!(disk["inserted"]["image"]["virtual-size"], 1 << 20);
    let cd = find("sata0-0-1");
    assert_eq!(cd["removable"], true, "{reply}");
    assert_eq!(cd["tray_open"], false, "{reply}");
    assert!(cd.get("inserted").is_none(), "{reply}");
    let stats: serde_json::Value =
        serde_json::from_str(&q.ask(b"{\"execute\":\"query-blockstats\"}\n")).unwrap();
    let disk = stats["return"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["qdev"] == "sata0-0-0"))
        .unwrap_or_else(|| vm.fail(&format!("no sata0-0-0 in {stats}")));
    assert!(
        disk["stats"]["rd_operations"].as_u64().unwrap_or(0) >= 1,
        "SeaBIOS read the disk through AHCI: {disk}"
    );
}

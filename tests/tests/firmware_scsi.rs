//! Booting through SeaBIOS from virtio-scsi (`<controller type='scsi'
//! model='virtio-scsi'>`, `<disk bus='scsi'>`), via `oxvirt-vmm --xml` on Q35 (and a
//! CD on i440FX):
//!
//! * an El Torito no-emulation ISO (built here with `xorriso -as mkisofs -b boot.img
//!   -no-emul-boot -boot-load-size 4`, the boot image being our boot sector) on a
//!   CD-ROM unit. SeaBIOS reads the boot catalog and the image with READ(10) in
//!   2048-byte blocks and hands the boot sector a CD drive number (0xe0); the boot
//!   sector's INT 13h read of "LBA 1" is then 2048-byte block 1 of the ISO, which
//!   lies in the system area, filled here (`-G`) with the `OXBOOT-DATA` tag;
//! * a raw boot disk on a disk unit (drive 0x80, 512-byte blocks).
//!
//! Both domains put more units on the bus than the one booted (an empty CD tray,
//! units on other target ids), so the firmware's scan of 256 targets (REPORT LUNS,
//! INQUIRY, TEST UNIT READY, BAD_TARGET for the absent ones) is exercised too.
//! A domain with nothing bootable (a blank disk, an empty tray) reaches SeaBIOS's
//! "No bootable device" and QMP `query-block` lists both units.

mod qmp_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use machine_spec::exit;
use oxvirt_tests::guests::boot_disk;
use oxvirt_tests::host::{require_seabios, skip};
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::Vm;
use qmp_common::{wait_socket, RawQmp};
use serde_json::Value;

/// SeaBIOS reaches a CD boot sector in ≈ 4 s under QEMU on this emulated KVM.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// A firmware-booted Q35 domain with `os_extra` after `<type>` and `devices`.
fn domain_xml(os_extra: &str, devices: &str) -> String {
    machine_xml("q35", os_extra, devices)
}

/// The same on machine type `machine`.
fn machine_xml(machine: &str, os_extra: &str, devices: &str) -> String {
    format!(
        "<domain type='kvm'>
  <name>fwscsi</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='{machine}'>hvm</type>
    {os_extra}
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <controller type='scsi' index='0' model='virtio-scsi'/>
    {devices}
{serial}
  </devices>
</domain>
",
        serial = serial_xml("stdio")
    )
}

/// A `<disk bus='scsi'>` element: `device` disk or cdrom, an optional image, and
/// its drive address.
fn scsi_disk(device: &str, image: Option<&Path>, dev: &str, target: u32, unit: u32) -> String {
    let source = image
        .map(|p| format!("<source file='{}'/>", p.display()))
        .unwrap_or_default();
    let ro = if device == "cdrom" { "<readonly/>" } else { "" };
    format!(
        "<disk type='file' device='{device}'>
      <driver name='qemu' type='raw'/>
      {source}
      <target dev='{dev}' bus='scsi'/>
      {ro}
      <address type='drive' controller='0' bus='0' target='{target}' unit='{unit}'/>
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
    std::fs::write(root.join("README.TXT"), b"oxvirt virtio-scsi CD test\n").unwrap();
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
                "firmware_scsi",
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
fn seabios_boots_an_el_torito_cd_on_virtio_scsi() {
    let test = "seabios_boots_an_el_torito_cd_on_virtio_scsi";
    if !require_seabios(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(iso) = boot_iso(dir.path(), "CD") else {
        return;
    };
    let disk = dir.path().join("disk.img");
    boot_disk(&disk, "HD").unwrap();
    // A bootable disk at target 0 LUN 0, an empty tray at LUN 1, the ISO at target 3
    // with the first boot index: SeaBIOS must boot the CD, not the disk.
    let devices = [
        scsi_disk("disk", Some(&disk), "sda", 0, 0),
        scsi_disk("cdrom", None, "sdb", 0, 1),
        scsi_disk("cdrom", Some(&iso), "sdc", 3, 0)
            .replace("<readonly/>", "<readonly/>\n      <boot order='1'/>"),
    ]
    .join("\n    ");
    let vm = Vm::start_xml(&domain_xml("", &devices), &[]);
    let (drive, tag) = booted(&vm);
    assert_eq!(tag, "CD", "{}", vm.console());
    assert!(
        drive.starts_with('e'),
        "a CD drive number (0xe0+), got {drive}"
    );
}

#[test]
fn boot_dev_cdrom_picks_the_first_cd() {
    let test = "boot_dev_cdrom_picks_the_first_cd";
    if !require_seabios(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(iso) = boot_iso(dir.path(), "CD1") else {
        return;
    };
    let disk = dir.path().join("disk.img");
    boot_disk(&disk, "HD").unwrap();
    let devices = [
        scsi_disk("disk", Some(&disk), "sda", 0, 0),
        scsi_disk("cdrom", Some(&iso), "sdb", 1, 0),
    ]
    .join("\n    ");
    let vm = Vm::start_xml(
        &domain_xml("<boot dev='cdrom'/><boot dev='hd'/>", &devices),
        &[],
    );
    assert_eq!(booted(&vm).1, "CD1");
}

#[test]
fn seabios_i440fx_boots_a_cd_on_virtio_scsi() {
    let test = "seabios_i440fx_boots_a_cd_on_virtio_scsi";
    if !require_seabios(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(iso) = boot_iso(dir.path(), "PC") else {
        return;
    };
    let devices = scsi_disk("cdrom", Some(&iso), "sda", 0, 0);
    let vm = Vm::start_xml(
        &machine_xml("pc-i440fx-7.2", "<boot dev='cdrom'/>", &devices),
        &[],
    );
    assert_eq!(booted(&vm).1, "PC");
}

#[test]
fn seabios_boots_a_disk_on_virtio_scsi() {
    let test = "seabios_boots_a_disk_on_virtio_scsi";
    if !require_seabios(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    boot_disk(&a, "A").unwrap();
    boot_disk(&b, "B").unwrap();
    // Two disks, the second on LUN 2 of target 5 with the first boot index.
    let devices = [
        scsi_disk("disk", Some(&a), "sda", 0, 0),
        scsi_disk("disk", Some(&b), "sdb", 5, 2).replace(
            "<target dev='sdb' bus='scsi'/>",
            "<target dev='sdb' bus='scsi'/>\n      <boot order='1'/>",
        ),
    ]
    .join("\n    ");
    let vm = Vm::start_xml(&domain_xml("", &devices), &[]);
    let (drive, tag) = booted(&vm);
    assert_eq!(tag, "B", "{}", vm.console());
    assert_eq!(drive, "80", "the first hard disk");
}

#[test]
fn empty_tray_and_blank_disk_boot_nothing_and_show_in_query_block() {
    let test = "empty_tray_and_blank_disk_boot_nothing_and_show_in_query_block";
    if !require_seabios(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.img");
    std::fs::write(&blank, vec![0u8; 1 << 20]).unwrap();
    let devices = [
        scsi_disk("disk", Some(&blank), "sda", 0, 0),
        scsi_disk("cdrom", None, "sdb", 0, 1),
    ]
    .join("\n    ");
    let sock = dir.path().join("qmp.sock");
    let vm = Vm::start_xml(
        &domain_xml("<boot dev='cdrom'/><boot dev='hd'/>", &devices),
        &["--qmp", sock.to_str().unwrap()],
    );
    // SeaBIOS tries the CD (no medium), then the disk, then gives up.
    vm.wait_for("No bootable device", BOOT_TIMEOUT);
    wait_socket(&sock, Duration::from_secs(30));
    let mut q = RawQmp::connect(&sock);
    q.line(); // greeting
    q.ask(b"{\"execute\":\"qmp_capabilities\"}\n");
    let reply: Value = serde_json::from_str(&q.ask(b"{\"execute\":\"query-block\"}\n")).unwrap();
    let blocks = reply["return"]
        .as_array()
        .unwrap_or_else(|| vm.fail(&format!("{reply}")));
    let find = |qdev: &str| {
        blocks
            .iter()
            .find(|b| b["qdev"] == qdev)
            .unwrap_or_else(|| vm.fail(&format!("no {qdev} in {reply}")))
    };
    let disk = find("scsi0-0-0-0");
    assert_eq!(disk["removable"], false, "{reply}");
    assert_eq!(disk["inserted"]["file"], blank.display().to_string());
    assert_eq!(disk["inserted"]["image"]["virtual-size"], 1 << 20);
    let cd = find("scsi0-0-0-1");
    assert_eq!(cd["removable"], true, "{reply}");
    assert_eq!(cd["tray_open"], false, "{reply}");
    assert!(cd.get("inserted").is_none(), "{reply}");
}

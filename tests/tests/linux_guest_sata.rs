//! Linux (the patched test guest of `tests/linux-guest/`, direct kernel boot) drives
//! oxvirt's AHCI adapter (ICH9, 8086:2922) with its own `ahci`, `sd` and `sr`
//! drivers: one boot with a disk (port 0), an ISO 9660 CD-ROM (port 1) and an
//! empty tray (port 2). The guest reads and writes the disk (`oxcheck disk`:
//! checksums compared with the host's, writes found in the image), mounts the CD
//! and hashes a file on it, and gets "no medium" from the empty drive; the
//! adapter's interrupts come by MSI (`/proc/interrupts`: PCI-MSI, `ahci`).
//!
//! Then IDE: Linux's `ata_piix` on the PIIX3 IDE function (IRQ 14/15) with a
//! disk as `hda` and the ISO as `hdc`: both drives in a DMA mode (bus-master
//! DMA through BAR4), the same reads, writes and mount.
//!
//! And the "install from an ISO" path end to end: SeaBIOS on Q35 boots a
//! `grub-mkrescue` ISO holding the test guest from a SATA CD-ROM (the ICH9 AHCI at
//! 00:1f.2, El Torito through ATAPI), GRUB loads the kernel and initramfs from the
//! CD, and Linux finds the disk and the CD it came from on the same adapter.

#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use machine_spec::{
    exit, AtaBus, AtaController, AtaDisk, CacheMode, Device, DeviceKind, Disk, DiskFormat,
};
use oxvirt_tests::{skip, Vm};
use support::{
    base64, check, guest, host, pattern, pci_device, sha256_hex, wait_ready, Report, EXIT,
};

/// The disk: 4 MiB, a pattern in the first 256 KiB (what `oxcheck disk` reads).
const DISK_SIZE: usize = 4 << 20;
const REGION: usize = 256 << 10;
/// Where `oxcheck disk` copies the region and writes its marker.
const COPY_AT: usize = 16 * 65536;
const MARK_SECTOR: usize = 4000;
const MARK: &str = "OXVIRT-GUEST-WROTE-THIS";
/// The guest's commands, run after its ready line (`oxvirt_cmd64`: base64).
const SCRIPT: &str = r#"oxcheck disk /dev/sda || exit 1
for d in /sys/block/sr*; do
	n=${d##*/}
	if dd if="/dev/$n" of=/dev/null bs=2048 count=1 2>/tmp/err; then
		mkdir -p /tmp/cd
		mount -t iso9660 -o ro "/dev/$n" /tmp/cd || { echo "OXCHECK error what=mount rc=$?"; exit 1; }
		set -- $(sha256sum </tmp/cd/data.bin)
		echo "OXCHECK iso dev=$n sha256=$1"
		umount /tmp/cd
	else
		echo "OXCHECK empty dev=$n err=$(head -1 /tmp/err | tr ' ' _)"
	fi
done
for d in /sys/class/ata_device/*; do
	echo "OXCHECK atadev name=${d##*/} xfer=$(cat "$d/xfer_mode")"
done
grep -E 'ahci|ata_piix' /proc/interrupts | while read -r n count rest; do
	set -- $rest
	eval "name=\${$#}"
	echo "OXCHECK irq n=${n%:} count=$count kind=$1 name=$name"
done
"#;

fn sata_drive(id: &str, port: u8, cdrom: bool, name: &str, medium: Option<&Path>) -> Device {
    Device {
        boot_index: None,
        id: id.into(),
        pci: None,
        kind: DeviceKind::AtaDisk(AtaDisk {
            bus_type: AtaBus::Sata,
            controller: 0,
            bus: port,
            unit: 0,
            cdrom,
            name: name.into(),
            wwn: None,
            tray_open: false,
            medium: medium.map(|p| Disk {
                path: p.to_path_buf(),
                format: DiskFormat::Raw,
                target: name.into(),
                readonly: cdrom,
                shareable: false,
                serial: (!cdrom).then(|| "OXSATA-DISK".into()),
                cache: CacheMode::Default,
                discard: false,
                queues: None,
                io: Default::default(),
            }),
        }),
    }
}

/// An ISO 9660 image (Rock Ridge names) holding `data.bin`; `None` without xorriso.
fn iso(dir: &Path, data: &[u8]) -> Option<PathBuf> {
    let root = dir.join("cd");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("data.bin"), data).unwrap();
    let out = dir.join("cd.iso");
    let r = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-V", "OXSATA", "-o"])
        .arg(&out)
        .arg(&root)
        .output();
    match r {
        Ok(o) if o.status.success() => Some(out),
        Ok(o) => panic!("xorriso: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            skip(
                "linux_guest_sata",
                &format!("xorriso: {e} (apt-get install xorriso)"),
            );
            None
        }
    }
}

#[test]
fn linux_sata_disk_cdrom_and_empty_tray() {
    let Some(g) = guest("linux_sata_disk_cdrom_and_empty_tray") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let region = pattern(REGION, 0x5a7a);
    let mut raw = region.clone();
    raw.resize(DISK_SIZE, 0);
    let disk = dir.path().join("disk.raw");
    std::fs::write(&disk, &raw).unwrap();
    let data = pattern(300 << 10, 0xcd);
    let Some(iso) = iso(dir.path(), &data) else {
        return;
    };
    let iso_sectors = std::fs::metadata(&iso).unwrap().len() / 512;

    let mem = if g.stock { 256 } else { 128 };
    let mut spec = g.spec(
        1,
        mem,
        &format!("oxvirt_cmd64={}", base64(SCRIPT.as_bytes())),
    );
    spec.devices.push(pci_device(
        "sata0",
        6,
        DeviceKind::SataController(AtaController { index: 0 }),
    ));
    spec.devices
        .push(sata_drive("sata0-0-0", 0, false, "sda", Some(&disk)));
    spec.devices
        .push(sata_drive("sata0-0-1", 1, true, "sdb", Some(&iso)));
    spec.devices
        .push(sata_drive("sata0-0-2", 2, true, "sdc", None));
    let vm = Vm::start(&spec);
    let r = wait_ready(&vm, g);

    // What /init found: the AHCI function, sda with its serial, two CD drives.
    check(
        &vm,
        r.all("pci")
            .iter()
            .any(|l| l.get("vendor") == "0x8086" && l.get("device") == "0x2922"),
        "the guest did not find the ICH9 AHCI function",
    );
    let blk = r.all("block");
    let line = |name: &str| blk.iter().find(|l| l.get("name") == name);
    check(
        &vm,
        line("sda").is_some_and(|l| l.get("sectors") == (DISK_SIZE / 512).to_string()),
        &format!("sda of {} sectors expected: {blk:?}", DISK_SIZE / 512),
    );
    let cds: Vec<Option<String>> = ["sr0", "sr1"]
        .iter()
        .map(|n| line(n).map(|l| l.get("sectors").to_string()))
        .collect();
    check(
        &vm,
        cds.iter().all(Option::is_some)
            && cds
                .iter()
                .any(|c| c.as_deref() == Some(&iso_sectors.to_string())),
        &format!("sr0 and sr1 expected, one of {iso_sectors} sectors: {blk:?}"),
    );

    vm.wait_for("OXVIRT-CMD-RC=", Duration::from_secs(600));
    let code = vm.wait_exit(EXIT);
    check(
        &vm,
        code == exit::POWEROFF,
        &format!("VMM exit status {code}, expected power-off"),
    );
    let r = Report::parse(&vm.console());
    check(
        &vm,
        r.cmd_rc == Some(0),
        &format!("the guest's commands failed: {}", r.cmd_output),
    );
    check(
        &vm,
        r.check_lines("disk-read")
            .first()
            .is_some_and(|l| l.get("sha256") == sha256_hex(&region)),
        "the guest read different bytes from the SATA disk than the host wrote",
    );
    check(
        &vm,
        r.check_lines("iso")
            .first()
            .is_some_and(|l| l.get("sha256") == sha256_hex(&data)),
        &format!("data.bin on the CD hashed differently: {}", r.cmd_output),
    );
    let irqs = r.check_lines("irq");
    check(
        &vm,
        irqs.iter().any(|l| {
            l.get("kind") == "PCI-MSI" && l.get("name").starts_with("ahci") && l.get("count") != "0"
        }),
        &format!("the ahci driver should take its interrupts by MSI: {irqs:?}"),
    );
    check(
        &vm,
        r.check_lines("empty")
            .first()
            .is_some_and(|l| l.get("err").contains("medium")),
        &format!(
            "reading the empty drive should fail with no medium: {}",
            r.cmd_output
        ),
    );
    let after = std::fs::read(&disk).unwrap();
    check(
        &vm,
        after[COPY_AT..COPY_AT + REGION] == region[..],
        "the region the guest copied is not on the host image",
    );
    let mark = &after[MARK_SECTOR * 512..MARK_SECTOR * 512 + MARK.len()];
    check(
        &vm,
        mark == MARK.as_bytes(),
        "the marker the guest wrote is not on the host image",
    );
}

#[test]
fn linux_installs_from_an_iso_on_a_sata_cdrom_through_seabios() {
    use oxvirt_tests::host::SEABIOS;
    let test = "linux_installs_from_an_iso_on_a_sata_cdrom_through_seabios";
    let Some(g) = guest(test) else {
        return;
    };
    let tools = [
        "/usr/bin/grub-mkrescue",
        "/usr/lib/grub/i386-pc",
        "/usr/bin/xorriso",
    ];
    if !Path::new(SEABIOS).exists() || tools.iter().any(|t| !Path::new(t).exists()) {
        skip(
            test,
            "needs seabios, grub-pc-bin, grub-common, xorriso and mtools (apt-get install them)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let region = pattern(REGION, 0x1505);
    let mut raw = region.clone();
    raw.resize(DISK_SIZE, 0);
    let disk = dir.path().join("disk.raw");
    std::fs::write(&disk, &raw).unwrap();
    // The installer medium: GRUB, the kernel (a bzImage: a bootloader cannot load
    // the PVH ELF), the initramfs, the command line, and a file to find again.
    let data = pattern(200 << 10, 0x150);
    let tree = dir.path().join("iso");
    std::fs::create_dir_all(tree.join("boot/grub")).unwrap();
    std::fs::copy(g.dir.join("bzImage"), tree.join("boot/bzImage")).unwrap();
    std::fs::copy(&g.initrd, tree.join("boot/initrd")).unwrap();
    std::fs::write(tree.join("data.bin"), &data).unwrap();
    let cmdline = format!("{} oxvirt_cmd64={}", g.cmdline, base64(SCRIPT.as_bytes()));
    std::fs::write(
        tree.join("boot/grub/grub.cfg"),
        format!(
            "set timeout=0\nserial --unit=0 --speed=115200\nterminal_output serial\n\
             menuentry linux {{\n  linux /boot/bzImage {cmdline}\n  initrd /boot/initrd\n}}\n"
        ),
    )
    .unwrap();
    let iso = dir.path().join("install.iso");
    host(
        "grub-mkrescue",
        &["-o", iso.to_str().unwrap(), tree.to_str().unwrap()],
    );
    let iso_sectors = std::fs::metadata(&iso).unwrap().len() / 512;

    let mut spec = g.spec(1, if g.stock { 256 } else { 128 }, "");
    spec.boot = machine_spec::Boot {
        kernel: None,
        initrd: None,
        cmdline: String::new(),
        firmware: Some(machine_spec::Firmware {
            kind: machine_spec::FirmwareKind::Bios,
            code: SEABIOS.into(),
            vars: None,
            vars_template: None,
            boot_menu_timeout_ms: None,
            reboot_timeout_ms: None,
            serial_console: true,
            smbios: None,
        }),
    };
    spec.platform.chipset = machine_spec::Chipset::Q35;
    // libvirt's q35 layout: the AHCI at 00:1f.2 (alias `ide`), the disk on port 0,
    // the CD on port 2 with the first boot index.
    let mut ahci = pci_device(
        "ide",
        0x1f,
        DeviceKind::SataController(AtaController { index: 0 }),
    );
    ahci.pci = ahci
        .pci
        .map(|a| machine_spec::PciAddress { function: 2, ..a });
    let mut cd = sata_drive("sata0-0-2", 2, true, "sdc", Some(&iso));
    cd.boot_index = Some(1);
    spec.devices.extend([
        ahci,
        sata_drive("sata0-0-0", 0, false, "sda", Some(&disk)),
        cd,
    ]);
    let vm = Vm::start(&spec);
    vm.wait_for("SeaBIOS (version", Duration::from_secs(120));
    vm.wait_for("GRUB", Duration::from_secs(300));
    let r = wait_ready(&vm, g);
    let blk = r.all("block");
    check(
        &vm,
        blk.iter()
            .any(|l| l.get("name") == "sr0" && l.get("sectors") == iso_sectors.to_string()),
        &format!("sr0 of {iso_sectors} sectors (the installer CD) expected: {blk:?}"),
    );
    vm.wait_for("OXVIRT-CMD-RC=", Duration::from_secs(600));
    let code = vm.wait_exit(EXIT);
    check(
        &vm,
        code == exit::POWEROFF,
        &format!("VMM exit status {code}, expected power-off"),
    );
    let r = Report::parse(&vm.console());
    check(
        &vm,
        r.cmd_rc == Some(0),
        &format!("the guest's commands failed: {}", r.cmd_output),
    );
    check(
        &vm,
        r.check_lines("disk-read")
            .first()
            .is_some_and(|l| l.get("sha256") == sha256_hex(&region)),
        "the guest read different bytes from the SATA disk than the host wrote",
    );
    check(
        &vm,
        r.check_lines("iso")
            .first()
            .is_some_and(|l| l.get("sha256") == sha256_hex(&data)),
        &format!(
            "data.bin on the installer CD hashed differently: {}",
            r.cmd_output
        ),
    );
    let after = std::fs::read(&disk).unwrap();
    let mark = &after[MARK_SECTOR * 512..MARK_SECTOR * 512 + MARK.len()];
    check(
        &vm,
        mark == MARK.as_bytes(),
        "the marker the guest wrote is not on the host image",
    );
}

fn ide_drive(id: &str, bus: u8, unit: u8, cdrom: bool, name: &str, medium: &Path) -> Device {
    let mut d = sata_drive(id, 0, cdrom, name, Some(medium));
    if let DeviceKind::AtaDisk(u) = &mut d.kind {
        u.bus_type = AtaBus::Ide;
        u.bus = bus;
        u.unit = unit;
    }
    d
}

#[test]
fn linux_ide_disk_and_cdrom() {
    let Some(g) = guest("linux_ide_disk_and_cdrom") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let region = pattern(REGION, 0x1de);
    let mut raw = region.clone();
    raw.resize(DISK_SIZE, 0);
    let disk = dir.path().join("disk.raw");
    std::fs::write(&disk, &raw).unwrap();
    let data = pattern(300 << 10, 0x1d);
    let Some(iso) = iso(dir.path(), &data) else {
        return;
    };
    let mut spec = g.spec(
        1,
        if g.stock { 256 } else { 128 },
        &format!("oxvirt_cmd64={}", base64(SCRIPT.as_bytes())),
    );
    // The PIIX3 IDE function (at 00:01.0: this direct-boot machine has no PIIX3
    // ISA function 0 in slot 1, which i440FX's 00:01.1 needs), hda and hdc.
    let ide = pci_device(
        "ide",
        1,
        DeviceKind::IdeController(AtaController { index: 0 }),
    );
    spec.devices.extend([
        ide,
        ide_drive("ide0-0-0", 0, 0, false, "hda", &disk),
        ide_drive("ide0-1-0", 1, 0, true, "hdc", &iso),
    ]);
    let vm = Vm::start(&spec);
    let r = wait_ready(&vm, g);
    let blk = r.all("block");
    check(
        &vm,
        blk.iter().any(|l| l.get("name") == "sda") && blk.iter().any(|l| l.get("name") == "sr0"),
        &format!("sda and sr0 on ata_piix expected: {blk:?}"),
    );
    vm.wait_for("OXVIRT-CMD-RC=", Duration::from_secs(600));
    let code = vm.wait_exit(EXIT);
    check(
        &vm,
        code == exit::POWEROFF,
        &format!("VMM exit status {code}, expected power-off"),
    );
    let r = Report::parse(&vm.console());
    check(
        &vm,
        r.cmd_rc == Some(0),
        &format!("the guest's commands failed: {}", r.cmd_output),
    );
    check(
        &vm,
        r.check_lines("disk-read")
            .first()
            .is_some_and(|l| l.get("sha256") == sha256_hex(&region)),
        "the guest read different bytes from the IDE disk than the host wrote",
    );
    // Bus-master DMA: ata_piix chose a DMA mode for both drives (MWDMA2 on PIIX3),
    // so the reads and writes above went through PRD tables.
    // (dev1.0 is hda, dev2.0 hdc; the empty slave positions stay PIO.)
    let devs = r.check_lines("atadev");
    check(
        &vm,
        ["dev1.0", "dev2.0"].iter().all(|n| {
            devs.iter()
                .any(|l| l.get("name") == *n && l.get("xfer").contains("DMA"))
        }),
        &format!("ata_piix should run hda and hdc in a DMA mode: {devs:?}"),
    );
    check(
        &vm,
        r.check_lines("iso")
            .first()
            .is_some_and(|l| l.get("dev") == "sr0" && l.get("sha256") == sha256_hex(&data)),
        &format!(
            "data.bin on the IDE CD (sr0) hashed differently: {}",
            r.cmd_output
        ),
    );
    let after = std::fs::read(&disk).unwrap();
    let mark = &after[MARK_SECTOR * 512..MARK_SECTOR * 512 + MARK.len()];
    check(
        &vm,
        mark == MARK.as_bytes(),
        "the marker the guest wrote is not on the host image",
    );
}

/// The guest's side of a media change: hash `data.bin` from the disc in `sr0`,
/// then keep mounting the drive until a disc with another `data.bin` shows up
/// (each open makes `sr` ask the drive: NOT READY, then UNIT ATTENTION "medium may
/// have changed", as after a real disc swap).
const CHANGE_SCRIPT: &str = r#"mkdir -p /tmp/cd
mount -t iso9660 -o ro /dev/sr0 /tmp/cd || exit 1
set -- $(sha256sum </tmp/cd/data.bin)
first=$1
umount /tmp/cd
echo "OXCHECK first sha256=$first"
i=0
found=
while [ $i -lt 300 ] && [ -z "$found" ]; do
	if mount -t iso9660 -o ro /dev/sr0 /tmp/cd 2>/dev/null; then
		set -- $(sha256sum </tmp/cd/data.bin)
		umount /tmp/cd
		if [ "$1" != "$first" ]; then
			echo "OXCHECK second sha256=$1 tries=$i"
			found=1
		fi
	fi
	[ -n "$found" ] || sleep 1
	i=$((i + 1))
done
[ -n "$found" ]
"#;

#[test]
fn linux_sees_a_new_disc_in_a_sata_cdrom_after_a_qmp_media_change() {
    let test = "linux_sees_a_new_disc_in_a_sata_cdrom_after_a_qmp_media_change";
    let Some(g) = guest(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (pattern(100 << 10, 0xa1), pattern(120 << 10, 0xb2));
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let Some(a) = iso(&a_dir, &da) else {
        return;
    };
    let Some(b) = iso(&b_dir, &db) else {
        return;
    };
    let mut spec = g.spec(
        1,
        if g.stock { 256 } else { 128 },
        &format!("oxvirt_cmd64={}", base64(CHANGE_SCRIPT.as_bytes())),
    );
    spec.devices.push(pci_device(
        "sata0",
        6,
        DeviceKind::SataController(AtaController { index: 0 }),
    ));
    spec.devices
        .push(sata_drive("sata0-0-1", 1, true, "sdb", Some(&a)));
    let qmp = dir.path().join("qmp.sock");
    let vm = Vm::start_with(&spec, &["--qmp", qmp.to_str().unwrap()]);
    let mut q = support::Qmp::connect(&qmp, &vm);
    wait_ready(&vm, g);
    let first = vm.wait_for("OXCHECK first", Duration::from_secs(300));
    check(
        &vm,
        first.contains(&sha256_hex(&da)),
        &format!("the first disc hashed differently: {first}"),
    );
    // libvirt's change-media --update, in one command.
    q.execute_with(
        &vm,
        "blockdev-change-medium",
        serde_json::json!({"id": "sata0-0-1", "filename": b.to_str().unwrap(), "format": "raw"}),
    );
    let second = vm.wait_for("OXCHECK second", Duration::from_secs(400));
    check(
        &vm,
        second.contains(&sha256_hex(&db)),
        &format!("the new disc hashed differently: {second}"),
    );
    vm.wait_for("OXVIRT-CMD-RC=0", Duration::from_secs(60));
    let code = vm.wait_exit(EXIT);
    check(
        &vm,
        code == exit::POWEROFF,
        &format!("VMM exit status {code}, expected power-off"),
    );
}

//! Linux (the patched test guest of `tests/linux-guest/`, direct kernel boot) drives
//! oxvirt's virtio-scsi with its own `virtio_scsi`, `sd` and `sr` drivers: one boot
//! with a disk (target 0), an ISO 9660 CD-ROM (target 1) and an empty tray (target 2)
//! on one controller. The guest reads and writes the disk (`oxcheck disk`: checksums
//! compared with the host's, writes found in the image), mounts the CD and hashes a
//! file on it, and gets "no medium" from the empty drive.

#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use machine_spec::DeviceKind;
use machine_spec::{exit, CacheMode, Device, Disk, DiskFormat, ScsiController, ScsiDisk};
use oxvirt_tests::{skip, Vm};
use support::{base64, check, guest, pattern, pci_device, sha256_hex, wait_ready, Report, EXIT};

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
"#;

fn scsi_unit(id: &str, target: u8, cdrom: bool, name: &str, medium: Option<&Path>) -> Device {
    Device {
        boot_index: None,
        id: id.into(),
        pci: None,
        kind: DeviceKind::ScsiDisk(ScsiDisk {
            controller: 0,
            target,
            lun: 0,
            cdrom,
            name: name.into(),
            vendor: None,
            product: None,
            wwn: None,
            tray_open: false,
            medium: medium.map(|p| Disk {
                path: p.to_path_buf(),
                format: DiskFormat::Raw,
                target: name.into(),
                readonly: cdrom,
                shareable: false,
                serial: None,
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
        .args(["-as", "mkisofs", "-quiet", "-R", "-V", "OXSCSI", "-o"])
        .arg(&out)
        .arg(&root)
        .output();
    match r {
        Ok(o) if o.status.success() => Some(out),
        Ok(o) => panic!("xorriso: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            skip(
                "linux_scsi",
                &format!("xorriso: {e} (apt-get install xorriso)"),
            );
            None
        }
    }
}

#[test]
fn linux_virtio_scsi_disk_cdrom_and_empty_tray() {
    let Some(g) = guest("linux_virtio_scsi_disk_cdrom_and_empty_tray") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let region = pattern(REGION, 0x5c51);
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
        "scsi0",
        6,
        DeviceKind::ScsiController(ScsiController { index: 0 }),
    ));
    spec.devices
        .push(scsi_unit("scsi0-0-0-0", 0, false, "sda", Some(&disk)));
    spec.devices
        .push(scsi_unit("scsi0-0-1-0", 1, true, "sdb", Some(&iso)));
    spec.devices
        .push(scsi_unit("scsi0-0-2-0", 2, true, "sdc", None));
    let vm = Vm::start(&spec);
    let r = wait_ready(&vm, g);

    // What /init found: the virtio-scsi function with its driver, sda, two CD drives.
    check(
        &vm,
        r.all("virtio")
            .iter()
            .any(|l| l.get("id") == "0x0008" && l.get("driver") == "virtio_scsi"),
        "virtio_scsi did not bind to the controller",
    );
    let blk = r.all("block");
    let size = |name: &str| {
        blk.iter()
            .find(|l| l.get("name") == name)
            .map(|l| l.get("sectors").to_string())
    };
    check(
        &vm,
        size("sda") == Some((DISK_SIZE / 512).to_string()),
        &format!("sda of {} sectors expected: {blk:?}", DISK_SIZE / 512),
    );
    // The drive with the ISO has its size; the empty one whatever sr guessed.
    let cds: Vec<Option<String>> = ["sr0", "sr1"].iter().map(|n| size(n)).collect();
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
        "the guest read different bytes from the SCSI disk than the host wrote",
    );
    check(
        &vm,
        r.check_lines("iso")
            .first()
            .is_some_and(|l| l.get("sha256") == sha256_hex(&data)),
        &format!("data.bin on the CD hashed differently: {}", r.cmd_output),
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

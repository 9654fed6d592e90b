//! virtio-blk host cache modes through the real VMM: one disk per libvirt cache
//! mode, each a raw image on a disk filesystem (/var/tmp: O_DIRECT needs one
//! that takes it; tmpfs may not be one on older kernels). The oxtest guest's
//! driver reads the host's pattern, writes its own and flushes on every disk;
//! the host checks each image after the VMM exits, and the VMM's log says how
//! each image was opened (O_DIRECT for 'none' and 'directsync').

use std::path::{Path, PathBuf};

use machine_spec::{
    exit, CacheMode, Device, DeviceKind, Disk, DiskFormat, MachineSpec, PciAddress,
};
use oxvirt_tests::host::{require_kvm, skip};
use oxvirt_tests::{spec, test_guests, Vm, GUEST_TIMEOUT};

/// Byte k of the first 4 KiB the host writes (the guest checks it: `read=pattern`).
fn host_pattern() -> Vec<u8> {
    (0..4096u32).map(|k| (k * 13 + 0x5a) as u8).collect()
}

/// Byte k of what the guest on slot `slot` writes at offset 4096.
fn guest_pattern(slot: u8) -> Vec<u8> {
    (0..4096u32)
        .map(|k| (k * 3 + u32::from(slot) + 0xa5) as u8)
        .collect()
}

fn takes_o_direct(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join("o_direct-probe");
    std::fs::write(&probe, [0u8; 4096]).unwrap();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .is_ok()
}

fn raw_image(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let mut data = host_pattern();
    data.resize(2 << 20, 0);
    std::fs::write(&p, data).unwrap();
    p
}

fn disk(slot: u8, path: &Path, cache: CacheMode) -> Device {
    Device {
        id: format!("virtio-disk{slot}"),
        pci: Some(PciAddress {
            domain: 0,
            bus: 0,
            slot,
            function: 0,
        }),
        kind: DeviceKind::Disk(Disk {
            path: path.to_path_buf(),
            format: DiskFormat::Raw,
            target: format!("vd{}", (b'a' + slot) as char),
            readonly: false,
            shareable: false,
            serial: None,
            cache,
            discard: false,
        }),
    }
}

#[test]
fn every_cache_mode_moves_guest_data_to_the_image() {
    if !require_kvm("every_cache_mode_moves_guest_data_to_the_image") {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    if !takes_o_direct(dir.path()) {
        skip(
            "every_cache_mode_moves_guest_data_to_the_image",
            "the filesystem of /var/tmp refuses O_DIRECT",
        );
        return;
    }
    let modes = [
        (5u8, CacheMode::None, "O_DIRECT"),
        (6, CacheMode::Directsync, "O_DIRECT, O_DSYNC"),
        (
            7,
            CacheMode::Writethrough,
            "through the host page cache, O_DSYNC",
        ),
        (8, CacheMode::Writeback, "through the host page cache"),
        (
            9,
            CacheMode::Unsafe,
            "through the host page cache, guest flushes ignored",
        ),
    ];
    let mut s: MachineSpec = spec(
        &test_guests().elf,
        "console=ttyS0 oxtest=virtio,poweroff",
        128,
        1,
    );
    let images: Vec<PathBuf> = modes
        .iter()
        .map(|&(slot, _, _)| raw_image(dir.path(), &format!("slot{slot}.img")))
        .collect();
    for (&(slot, cache, _), img) in modes.iter().zip(&images) {
        s.devices.push(disk(slot, img, cache));
    }
    let vm = Vm::start(&s);
    vm.wait_for("OXTEST DONE", GUEST_TIMEOUT);
    let code = vm.wait_exit(GUEST_TIMEOUT);
    if code != exit::POWEROFF {
        vm.fail(&format!("VMM exited {code}, expected power-off"));
    }
    vm.assert_no_failures();
    let log = vm.log();
    for (&(slot, cache, how), img) in modes.iter().zip(&images) {
        let line = vm
            .checks()
            .into_iter()
            .find(|c| c.name == "vblk" && c.field("slot") == Some(&slot.to_string()))
            .unwrap_or_else(|| vm.fail(&format!("no vblk line for slot {slot}")));
        assert_eq!(line.field("read"), Some("pattern"), "{cache:?}");
        assert_eq!(line.field("write"), Some("ok"), "{cache:?}");
        assert_eq!(line.field("reinit"), Some("1"), "{cache:?}");
        let opened = format!("virtio-disk{slot}: '{}' opened {how}\n", img.display());
        assert!(log.contains(&opened), "{cache:?}: no '{opened}' in\n{log}");
        let data = std::fs::read(img).unwrap();
        assert!(data[..4096] == host_pattern()[..], "{cache:?}: sector 0");
        assert!(
            data[4096..8192] == guest_pattern(slot)[..],
            "{cache:?}: the guest's pattern is in {} after exit\n{}",
            img.display(),
            vm.console()
        );
        assert!(data[8192..].iter().all(|&b| b == 0), "{cache:?}: the rest");
    }
}

//! virtio-blk host cache modes through the real VMM: one disk per libvirt cache
//! mode, each a raw image on a disk filesystem (/var/tmp: O_DIRECT needs one
//! that takes it; tmpfs may not be one on older kernels). The oxtest guest's
//! driver reads the host's pattern, writes its own and flushes on every disk;
//! the host checks each image after the VMM exits, and the VMM's log says how
//! each image was opened (O_DIRECT for 'none' and 'directsync').

use std::path::{Path, PathBuf};

use machine_spec::{CacheMode, Device, Disk};
use oxvirt_tests::disk::{
    guest_pattern, host_pattern, inflight_pattern, raw_image, vblk_line, INFLIGHT_SECTORS,
};
use oxvirt_tests::host::{require_kvm, skip};
use oxvirt_tests::spec::{disk_device, raw_disk};
use oxvirt_tests::{oxtest_spec, Vm, GUEST_TIMEOUT};

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

fn disk(slot: u8, path: &Path, cache: CacheMode) -> Device {
    disk_device(
        &format!("virtio-disk{slot}"),
        slot,
        Disk {
            target: format!("vd{}", (b'a' + slot) as char),
            cache,
            ..raw_disk(path)
        },
    )
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
    let images: Vec<PathBuf> = modes
        .iter()
        .map(|&(slot, _, _)| raw_image(dir.path(), &format!("slot{slot}.img"), 2))
        .collect();
    let devices = modes
        .iter()
        .zip(&images)
        .map(|(&(slot, cache, _), img)| disk(slot, img, cache))
        .collect();
    let vm = Vm::start(&oxtest_spec("virtio,poweroff", devices));
    vm.wait_poweroff(GUEST_TIMEOUT);
    vm.assert_no_failures();
    let log = vm.log();
    for (&(slot, cache, how), img) in modes.iter().zip(&images) {
        let line = vblk_line(&vm, slot);
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
        // The guest's batch of writes in flight at once, through each cache mode
        // (cache=none: O_DIRECT from io_uring).
        let (a, b) = (INFLIGHT_SECTORS.start * 512, INFLIGHT_SECTORS.end * 512);
        assert_eq!(line.field("inflight"), Some("5"), "{cache:?}");
        assert!(
            data[a..b] == inflight_pattern(slot)[..],
            "{cache:?}: in flight"
        );
        assert!(data[8192..a].iter().all(|&b| b == 0), "{cache:?}: the rest");
        assert!(data[b..].iter().all(|&b| b == 0), "{cache:?}: the rest");
    }
}

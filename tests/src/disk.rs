//! Disk images for the oxtest guest's virtio-blk driver, which checks that the first
//! 4 KiB hold [`host_pattern`] (`read=pattern`) and writes [`guest_pattern`] at
//! offset 4096.

use std::path::{Path, PathBuf};

use crate::oxtest::Check;
use crate::Vm;

/// Byte k of the first 4 KiB the host writes.
pub fn host_pattern() -> Vec<u8> {
    (0..4096u32).map(|k| (k * 13 + 0x5a) as u8).collect()
}

/// Byte k of what the guest's driver for the disk at PCI slot `slot` writes at
/// offset 4096.
pub fn guest_pattern(slot: u8) -> Vec<u8> {
    (0..4096u32)
        .map(|k| (k * 3 + u32::from(slot) + 0xa5) as u8)
        .collect()
}

/// Where the oxtest guest's in-flight check (`inflight=5` on the vblk line) writes:
/// 4 KiB at each of sectors 64, 72, ..., 96, posted together.
pub const INFLIGHT_SECTORS: std::ops::Range<usize> = 64..104;

/// The bytes the in-flight check leaves at `INFLIGHT_SECTORS` of the disk at PCI slot
/// `slot`: byte k of write i is (i*31 + k + slot) & 0xff.
pub fn inflight_pattern(slot: u8) -> Vec<u8> {
    (0..5 * 4096usize)
        .map(|j| ((j / 4096) * 31 + j % 4096 + usize::from(slot)) as u8)
        .collect()
}

/// A raw image `dir/name` of `mib` MiB starting with [`host_pattern`], zeros after.
pub fn raw_image(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let p = dir.join(name);
    let mut data = host_pattern();
    data.resize((mib << 20) as usize, 0);
    std::fs::write(&p, data).unwrap();
    p
}

/// The guest's `vblk` line for the disk at PCI slot `slot`; fails without one.
pub fn vblk_line(vm: &Vm, slot: u8) -> Check {
    vm.checks()
        .into_iter()
        .find(|c| c.name == "vblk" && c.field("slot") == Some(&slot.to_string()))
        .unwrap_or_else(|| vm.fail(&format!("no vblk line for slot {slot}")))
}

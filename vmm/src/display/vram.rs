//! Video memory: a host mapping that the guest reaches as BAR0 of the display
//! device, registered as a KVM memory slot with dirty logging, so guest writes run
//! at memory speed and the renderer learns which pages changed from KVM's dirty
//! bitmap (one ioctl per refresh: an idle screen costs that and nothing more).
//!
//! The slot follows the BAR: it is added when the guest enables memory decoding with
//! the BAR programmed, and removed or moved when the guest turns decoding off or
//! re-programs the BAR. While it is not mapped, accesses reach the device as MMIO
//! (PCI root dispatch) and land in the same host memory.

use std::sync::Arc;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::VmFd;
use vm_memory::{Bytes, MmapRegion, VolatileMemory, VolatileSlice};

/// Page size of the dirty log.
pub const PAGE: u64 = 4096;

/// Errors setting video memory up.
#[derive(Debug, thiserror::Error)]
pub enum VramError {
    #[error("cannot map {0} MiB of video memory")]
    Map(u64, #[source] vm_memory::mmap::MmapRegionError),
}

/// Video memory and where it is mapped into the guest.
pub struct Vram {
    region: Arc<MmapRegion>,
    vm: Option<Arc<VmFd>>,
    slot: u32,
    /// Guest address the slot is at, if mapped.
    mapped: Option<u64>,
    /// Everything must be redrawn (the slot was (re)made: its log starts clean
    /// without saying what happened before, or host-side writes happened).
    all_dirty: bool,
}

impl Vram {
    /// `size` bytes of zeroed video memory, to be mapped through `vm` at memory
    /// slot `slot` (None: never mapped, every access is MMIO; unit tests).
    pub fn new(size: u64, vm: Option<Arc<VmFd>>, slot: u32) -> Result<Vram, VramError> {
        let region = MmapRegion::new(size as usize).map_err(|e| VramError::Map(size >> 20, e))?;
        Ok(Vram {
            region: Arc::new(region),
            vm,
            slot,
            mapped: None,
            all_dirty: true,
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.region.size() as u64
    }

    /// The memory, for reading pixels and for MMIO accesses.
    pub fn slice(&self) -> VolatileSlice<'_> {
        self.region.as_volatile_slice()
    }

    /// Reads bytes at `offset` (out-of-range bytes read as 0xff).
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        let s = self.slice();
        if offset + data.len() as u64 <= self.size() {
            let _ = s.read_slice(data, offset as usize);
        } else {
            data.fill(0xff);
        }
    }

    /// Writes bytes at `offset` from the host side (MMIO path, legacy window).
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset + data.len() as u64 <= self.size() {
            let _ = self.slice().write_slice(data, offset as usize);
            self.all_dirty = true;
        }
    }

    /// Whether the guest reaches the memory directly at `addr` now.
    pub fn mapped_at(&self) -> Option<u64> {
        self.mapped
    }

    /// Maps the memory at guest address `at` (None: unmaps it).
    pub fn map(&mut self, at: Option<u64>) {
        if self.mapped == at {
            return;
        }
        let Some(vm) = self.vm.clone() else {
            self.mapped = at;
            return;
        };
        if self.mapped.is_some() {
            self.set_slot(&vm, 0, 0);
            self.mapped = None;
        }
        if let Some(addr) = at {
            if self.set_slot(&vm, addr, self.size()) {
                self.mapped = Some(addr);
            }
        }
        self.all_dirty = true;
    }

    fn set_slot(&self, vm: &VmFd, addr: u64, size: u64) -> bool {
        let r = kvm_userspace_memory_region {
            slot: self.slot,
            guest_phys_addr: addr,
            memory_size: size,
            userspace_addr: self.region.as_ptr() as u64,
            flags: KVM_MEM_LOG_DIRTY_PAGES,
        };
        // SAFETY: `region` is a live anonymous mapping of `size()` bytes that this
        // struct keeps (an Arc) until `Drop` has removed the slot; a size of 0 removes
        // the slot. KVM never sees the mapping after it is gone.
        match unsafe { vm.set_user_memory_region(r) } {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(slot = self.slot, addr, size, error = %e, "cannot (un)map video memory");
                false
            }
        }
    }

    /// Which pages changed since the last call: a bitmap (bit n = page n), or
    /// None for "everything".
    pub fn take_dirty(&mut self) -> Option<Vec<u64>> {
        let all = std::mem::take(&mut self.all_dirty);
        let log = match (&self.vm, self.mapped) {
            (Some(vm), Some(_)) => match vm.get_dirty_log(self.slot, self.size() as usize) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::debug!(error = %e, "KVM_GET_DIRTY_LOG failed; redrawing everything");
                    None
                }
            },
            // Not mapped: only host-side writes change it, and those set all_dirty.
            _ => Some(vec![0; (self.size() / PAGE).div_ceil(64) as usize]),
        };
        if all {
            None
        } else {
            log
        }
    }
}

impl Drop for Vram {
    fn drop(&mut self) {
        self.map(None);
    }
}

/// Whether any page in `[start, end)` bytes is set in `bitmap`.
pub fn any_dirty(bitmap: &[u64], start: u64, end: u64) -> bool {
    let (first, last) = (start / PAGE, end.saturating_sub(1) / PAGE);
    (first..=last).any(|p| {
        bitmap
            .get((p / 64) as usize)
            .is_some_and(|w| w & (1 << (p % 64)) != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_writes_make_everything_dirty_once() {
        let mut v = Vram::new(1 << 20, None, 0).unwrap();
        assert!(v.take_dirty().is_none(), "new memory is drawn whole");
        let clean = v.take_dirty().unwrap();
        assert!(!any_dirty(&clean, 0, 1 << 20));
        v.write(8192, &[1, 2, 3]);
        assert!(v.take_dirty().is_none());
        let mut b = [0u8; 3];
        v.read(8192, &mut b);
        assert_eq!(b, [1, 2, 3]);
    }

    #[test]
    fn dirty_ranges() {
        let bitmap = vec![0b100u64, 1];
        assert!(any_dirty(&bitmap, 2 * PAGE, 2 * PAGE + 1));
        assert!(!any_dirty(&bitmap, 0, 2 * PAGE));
        assert!(any_dirty(&bitmap, 60 * PAGE, 65 * PAGE));
        assert!(!any_dirty(&bitmap, 65 * PAGE, 70 * PAGE));
    }
}

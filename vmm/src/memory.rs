//! Guest RAM: anonymous, lazily backed (`MAP_NORESERVE`) host mappings laid
//! out around the 32-bit PCI hole ([`crate::layout::RamLayout`]). Nothing is
//! touched here, so a large guest costs no host memory until it uses it.

use vm_memory::GuestMemoryMmap;

use crate::layout::RamLayout;

/// Errors of guest memory allocation.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The guest asks for more than the host has.
    #[error("not enough host memory: the guest needs {need_mib} MiB, the host has {have_mib} MiB of RAM and swap")]
    HostTooSmall { need_mib: u64, have_mib: u64 },
    /// mmap failed.
    #[error("cannot allocate {0} MiB of guest memory")]
    Mmap(u64, #[source] vm_memory::mmap::FromRangesError),
}

/// Host RAM + swap in bytes, from /proc/meminfo (None if unreadable).
pub fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some(field("MemTotal:")? + field("SwapTotal:").unwrap_or(0))
}

/// Maps guest RAM for `layout`.
pub fn create(layout: &RamLayout) -> Result<GuestMemoryMmap, MemoryError> {
    let total: u64 = layout.ranges.iter().map(|r| r.1).sum();
    if let Some(have) = host_memory() {
        if total > have {
            return Err(MemoryError::HostTooSmall {
                need_mib: total >> 20,
                have_mib: have >> 20,
            });
        }
    }
    let ranges: Vec<_> = layout
        .ranges
        .iter()
        .map(|&(start, size)| (start, size as usize))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| MemoryError::Mmap(total >> 20, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

    #[test]
    fn regions_follow_the_layout() {
        let l = RamLayout::new(64 << 20);
        let m = create(&l).unwrap();
        let regions: Vec<_> = m.iter().map(|r| (r.start_addr().0, r.len())).collect();
        assert_eq!(regions, vec![(0, 64 << 20)]);
    }

    #[test]
    fn more_than_the_host_has_is_refused_with_sizes() {
        let have = host_memory().unwrap();
        let l = RamLayout::new(have + (1 << 30));
        let e = create(&l).unwrap_err();
        assert!(e.to_string().contains("not enough host memory"), "{e}");
    }
}

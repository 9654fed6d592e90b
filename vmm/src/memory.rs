//! Guest RAM: host mappings laid out around the 32-bit PCI hole
//! ([`crate::layout::RamLayout`]).
//!
//! * default: private anonymous memory, lazily backed (`MAP_NORESERVE`): nothing is
//!   touched here, so a large guest costs no host memory until it uses it;
//! * `shared` (libvirt `<access mode='shared'/>`): one memfd mapped `MAP_SHARED`, so
//!   another process (a vhost-user backend) can map the same pages;
//! * `hugepages` (libvirt `<hugepages/>`): `MAP_HUGETLB` (or a hugetlb memfd when
//!   shared), reserved up front so a shortage is an error now, not a SIGBUS later.
//!
//! Without `<hugepages/>`, RAM is advised `MADV_HUGEPAGE` (as QEMU does in
//! `ram_block_add`): where the host runs transparent huge pages in `madvise` mode,
//! guest RAM is faulted in 2 MiB at a time, so KVM can map it with large pages and
//! the host walks fewer page tables copying disk and network data in and out of it.
//! Private regions start on a 2 MiB boundary of the host address space (so guest
//! 2 MiB frames and host huge pages coincide). The cost is resident memory rounded
//! up to 2 MiB per region the guest touches: the tiny boot test guest (128 MiB)
//! peaks at 6.6 MiB RSS instead of 4.8 MiB.

use std::fs::File;

use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    FileOffset, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
};

use crate::layout::RamLayout;

mod thp;

/// Errors of guest memory allocation.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The guest asks for more than the host has.
    #[error("not enough host memory: the guest needs {need_mib} MiB, the host has {have_mib} MiB of RAM and swap")]
    HostTooSmall { need_mib: u64, have_mib: u64 },
    /// mmap failed.
    #[error("cannot allocate {0} MiB of guest memory")]
    Mmap(u64, #[source] vm_memory::mmap::FromRangesError),
    /// Huge pages could not be had.
    #[error("cannot allocate {0} MiB of guest memory from huge pages (is vm.nr_hugepages large enough?)")]
    HugePages(u64, #[source] vm_memory::mmap::MmapRegionError),
    /// The shared-memory file could not be created.
    #[error("cannot create the shared guest memory file")]
    Memfd(#[source] std::io::Error),
    /// A private anonymous mapping failed.
    #[error("cannot allocate {0} MiB of guest memory")]
    Private(u64, #[source] std::io::Error),
    /// The regions do not form a valid guest memory map.
    #[error("invalid guest memory layout")]
    Layout(#[source] vm_memory::GuestRegionCollectionError),
}

/// How guest RAM is backed (libvirt `<memoryBacking>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backing {
    /// One memfd, `MAP_SHARED`.
    pub shared: bool,
    /// Huge pages.
    pub hugepages: bool,
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

fn memfd(size: u64, hugepages: bool) -> Result<File, MemoryError> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let mut flags = MFdFlags::MFD_CLOEXEC;
    if hugepages {
        flags |= MFdFlags::MFD_HUGETLB;
    }
    let fd = memfd_create("oxvirt-guest-ram", flags)
        .map_err(|e| MemoryError::Memfd(std::io::Error::from_raw_os_error(e as i32)))?;
    let f = File::from(fd);
    f.set_len(size).map_err(MemoryError::Memfd)?;
    Ok(f)
}

/// Maps guest RAM for `layout`.
pub fn create(layout: &RamLayout, backing: Backing) -> Result<GuestMemoryMmap, MemoryError> {
    let total: u64 = layout.ranges.iter().map(|r| r.1).sum();
    if let Some(have) = host_memory() {
        if total > have {
            return Err(MemoryError::HostTooSmall {
                need_mib: total >> 20,
                have_mib: have >> 20,
            });
        }
    }
    let mib = total >> 20;
    if backing.shared {
        let f = memfd(total, backing.hugepages)?;
        let mut off = 0;
        let mut ranges = Vec::new();
        for &(start, size) in &layout.ranges {
            let fo = FileOffset::new(f.try_clone().map_err(MemoryError::Memfd)?, off);
            ranges.push((start, size as usize, Some(fo)));
            off += size;
        }
        let m = GuestMemoryMmap::from_ranges_with_files(&ranges)
            .map_err(|e| MemoryError::Mmap(mib, e))?;
        // Shared memory (shmem) follows the advice where the host's
        // shmem_enabled is `advise` or `within_size`.
        if !backing.hugepages {
            for r in m.iter() {
                thp::advise(r.as_ptr(), r.len() as usize);
            }
        }
        return Ok(m);
    }
    if backing.hugepages {
        let mut regions = Vec::new();
        for &(start, size) in &layout.ranges {
            let r = MmapRegionBuilder::new(size as usize)
                .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
                .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB)
                .build()
                .map_err(|e| MemoryError::HugePages(mib, e))?;
            // Regions come from a RamLayout, whose ranges never overflow.
            regions.push(GuestRegionMmap::new(r, start).expect("range fits"));
        }
        return GuestMemoryMmap::from_regions(regions).map_err(MemoryError::Layout);
    }
    let mut regions = Vec::new();
    for &(start, size) in &layout.ranges {
        let r = thp::private_region(size as usize).map_err(|e| MemoryError::Private(mib, e))?;
        // Regions come from a RamLayout, whose ranges never overflow.
        regions.push(GuestRegionMmap::new(r, start).expect("range fits"));
    }
    GuestMemoryMmap::from_regions(regions).map_err(MemoryError::Layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `ptr` lies in a `MADV_HUGEPAGE` (`hg` in VmFlags) mapping.
    fn advised_huge(ptr: *mut u8) -> bool {
        let a = ptr as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((lo, hi)) = range.split_once('-') {
                    if let (Ok(lo), Ok(hi)) =
                        (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                    {
                        inside = lo <= a && a < hi;
                        continue;
                    }
                }
            }
            if inside && line.starts_with("VmFlags:") {
                return line.split_whitespace().any(|f| f == "hg");
            }
        }
        false
    }

    #[test]
    fn private_ram_is_advised_huge_and_2mib_aligned() {
        // 65 MiB: not a multiple of 2 MiB, so the kernel does not align it by itself.
        for size in [64u64 << 20, 65 << 20] {
            let m = create(&RamLayout::new(size), Backing::default()).unwrap();
            let r = m.iter().next().unwrap();
            assert_eq!(r.as_ptr() as usize % (2 << 20), 0, "{size}");
            assert!(advised_huge(r.as_ptr()), "{size}");
            assert!(advised_huge(r.as_ptr().wrapping_add(size as usize - 1)));
            use vm_memory::{Bytes, GuestAddress};
            m.write_obj(0x5au8, GuestAddress(size - 1)).unwrap();
            assert_eq!(m.read_obj::<u8>(GuestAddress(size - 1)).unwrap(), 0x5a);
        }
    }

    #[test]
    fn regions_follow_the_layout() {
        let l = RamLayout::new(64 << 20);
        let m = create(&l, Backing::default()).unwrap();
        let regions: Vec<_> = m.iter().map(|r| (r.start_addr().0, r.len())).collect();
        assert_eq!(regions, vec![(0, 64 << 20)]);
    }

    #[test]
    fn more_than_the_host_has_is_refused_with_sizes() {
        let have = host_memory().unwrap();
        let l = RamLayout::new(have + (1 << 30));
        let e = create(&l, Backing::default()).unwrap_err();
        assert!(e.to_string().contains("not enough host memory"), "{e}");
    }

    #[test]
    fn shared_backing_is_one_memfd_across_the_hole() {
        use vm_memory::{Bytes, GuestAddress};
        let l = RamLayout::new((3 << 30) + (8 << 20));
        let m = create(
            &l,
            Backing {
                shared: true,
                hugepages: false,
            },
        )
        .unwrap();
        let files: Vec<_> = m
            .iter()
            .map(|r| r.file_offset().map(|f| f.start()))
            .collect();
        assert_eq!(files, vec![Some(0), Some(3 << 30)]);
        m.write_obj(0xabu8, GuestAddress(1 << 32)).unwrap();
        assert_eq!(m.read_obj::<u8>(GuestAddress(1 << 32)).unwrap(), 0xab);
    }

    #[test]
    fn huge_pages_fail_clearly_when_the_host_has_none() {
        let free: u64 = std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let l = RamLayout::new(64 << 20);
        let r = create(
            &l,
            Backing {
                shared: false,
                hugepages: true,
            },
        );
        if free == 0 {
            let e = r.unwrap_err();
            assert!(e.to_string().contains("huge pages"), "{e}");
        } else if let Err(e) = r {
            // Some pages exist but maybe not 32 of them.
            assert!(e.to_string().contains("huge pages"), "{e}");
        }
    }
}

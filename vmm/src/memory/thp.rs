//! Transparent huge pages for guest RAM: 2 MiB aligned private mappings and the
//! `MADV_HUGEPAGE` advice.

use std::io;

use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::MmapRegion;

/// Size of a PMD-mapped transparent huge page on x86-64.
pub const HUGE: usize = 2 << 20;

const PROT: i32 = libc::PROT_READ | libc::PROT_WRITE;
const FLAGS: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;

/// Advises `len` bytes at `ptr` for huge pages. Best effort: a host built
/// without THP answers EINVAL and the guest simply runs on 4 KiB pages.
pub fn advise(ptr: *mut u8, len: usize) {
    // SAFETY: madvise(MADV_HUGEPAGE) only changes how the kernel backs the
    // range (no data is lost or moved); the range is a mapping we own.
    let rc = unsafe { libc::madvise(ptr.cast(), len, libc::MADV_HUGEPAGE) };
    if rc != 0 {
        tracing::debug!(
            "madvise(MADV_HUGEPAGE) on guest RAM: {}",
            io::Error::last_os_error()
        );
    }
}

/// A private anonymous mapping of `size` bytes that starts on a 2 MiB boundary,
/// advised for huge pages.
///
/// Recent kernels place such mappings on a huge-page boundary by themselves when
/// the size is a multiple of 2 MiB; the mapping then belongs to vm-memory, which
/// unmaps it when the memory is dropped. Otherwise (older kernels, odd sizes) an
/// oversized mapping is trimmed to an aligned one, which vm-memory cannot own:
/// it stays mapped until the process exits, which is when a VMM drops its RAM.
pub fn private_region(size: usize) -> io::Result<MmapRegion> {
    let owned = MmapRegionBuilder::new(size)
        .with_mmap_prot(PROT)
        .with_mmap_flags(FLAGS)
        .build()
        .map_err(mmap_error)?;
    if size < HUGE || (owned.as_ptr() as usize).is_multiple_of(HUGE) {
        advise(owned.as_ptr(), size);
        return Ok(owned);
    }
    drop(owned);
    let ptr = aligned_mapping(size)?;
    // SAFETY: `ptr..ptr + size` is a private anonymous read-write mapping made by
    // aligned_mapping, never unmapped (see above), so it stays valid for the
    // region's lifetime.
    let region = unsafe { MmapRegionBuilder::new(size).with_raw_mmap_pointer(ptr) }
        .with_mmap_prot(PROT)
        .with_mmap_flags(FLAGS)
        .build()
        .map_err(mmap_error)?;
    advise(ptr, size);
    Ok(region)
}

/// Maps `size + HUGE` bytes and unmaps the head and tail around the first 2 MiB
/// boundary, leaving an aligned mapping of `size` bytes.
fn aligned_mapping(size: usize) -> io::Result<*mut u8> {
    let total = size
        .checked_add(HUGE)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
    // SAFETY: a fresh anonymous mapping at an address the kernel picks; it
    // touches no existing memory.
    let raw = unsafe { libc::mmap(std::ptr::null_mut(), total, PROT, FLAGS, -1, 0) };
    if raw == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = raw as usize;
    let start = base.next_multiple_of(HUGE);
    let (head, tail) = (start - base, base + total - (start + size));
    // SAFETY: both ranges lie inside the mapping made above and outside the
    // `start..start + size` part that is kept; nothing refers to them.
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        if tail > 0 {
            libc::munmap((start + size) as *mut libc::c_void, tail);
        }
    }
    Ok(start as *mut u8)
}

fn mmap_error(e: vm_memory::mmap::MmapRegionError) -> io::Error {
    match e {
        vm_memory::mmap::MmapRegionError::Mmap(e) => e,
        e => io::Error::other(e.to_string()),
    }
}

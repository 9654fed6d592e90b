//! BAR placement: a bump allocator over the PCI MMIO windows.
//!
//! Devices are added once at start-up in spec order, so a bump allocator with
//! natural alignment (a BAR of size S sits at a multiple of S, as PCI requires)
//! is all we need; nothing is ever freed.

use super::PciError;

/// Hands out naturally aligned ranges of one window.
#[derive(Debug, Clone)]
pub struct BarAllocator {
    next: u64,
    end: u64,
}

impl BarAllocator {
    /// A window of `size` bytes at `base`.
    pub fn new(base: u64, size: u64) -> Self {
        BarAllocator {
            next: base,
            end: base.saturating_add(size),
        }
    }

    /// A range of `size` bytes (a power of two) aligned to `size`.
    pub fn allocate(&mut self, size: u64) -> Result<u64, PciError> {
        let addr = self
            .next
            .checked_next_multiple_of(size)
            .filter(|a| a.checked_add(size).is_some_and(|e| e <= self.end))
            .ok_or(PciError::BarSpace { size })?;
        self.next = addr + size;
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_and_bounded() {
        let mut a = BarAllocator::new(0xc000_1000, 0x3000_0000);
        assert_eq!(a.allocate(0x4000).unwrap(), 0xc000_4000);
        assert_eq!(a.allocate(0x1000).unwrap(), 0xc000_8000);
        assert_eq!(a.allocate(0x10_0000).unwrap(), 0xc010_0000);
        assert!(matches!(
            a.allocate(0x4000_0000),
            Err(PciError::BarSpace { size: 0x4000_0000 })
        ));
    }
}

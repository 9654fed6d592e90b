//! The guest physical address map and the e820 table that describes it.
//!
//! ```text
//! 0x0000_0000 ┌ RAM (low)                        real-mode IVT/BDA … up to 0x9fc00
//! 0x0009_fc00 │ reserved: EBDA, VGA hole, BIOS   ACPI tables live at 0xe0000
//! 0x0010_0000 │ RAM                              kernel, initrd (top of low RAM)
//! 0xc000_0000 ├ 32-bit PCI hole (no RAM):
//!             │   0xc000_0000  PCI MMIO32 window (512 MiB, BARs)
//!             │   0xe000_0000  PCI ECAM (256 MiB, buses 0-255), e820-reserved
//!             │   0xfec0_0000  IO-APIC
//!             │   0xfee0_0000  local APIC
//! 0x1_0000_0000 RAM (high): whatever did not fit below 3 GiB
//! after high RAM: PCI MMIO64 window
//! ```
//!
//! A guest with more than 3 GiB gets the rest above 4 GiB, so it sees all its memory.

use vm_memory::GuestAddress;

/// Everything below 3 GiB may be RAM; the 32-bit PCI hole starts here.
pub const MEM_32BIT_GAP_START: u64 = 0xc000_0000;
/// First address above the 32-bit hole.
pub const HIGH_RAM_START: u64 = 0x1_0000_0000;
/// Start of the 32-bit MMIO window for PCI BARs.
pub const PCI_MMIO32_START: u64 = 0xc000_0000;
/// Size of the 32-bit MMIO window for PCI BARs.
pub const PCI_MMIO32_SIZE: u64 = 0x2000_0000;
/// PCI Express enhanced configuration space (ECAM), one segment.
pub const PCI_ECAM_START: u64 = 0xe000_0000;
/// 1 MiB per bus, 256 buses.
pub const PCI_ECAM_SIZE: u64 = 0x1000_0000;
/// Last bus number the ECAM window covers.
pub const PCI_ECAM_LAST_BUS: u8 = 0xff;
/// IO-APIC registers (in-kernel IO-APIC).
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// Local APIC registers (in-kernel local APIC).
pub const LAPIC_START: u64 = 0xfee0_0000;
/// Size of the 64-bit MMIO window placed after the end of high RAM.
pub const PCI_MMIO64_SIZE: u64 = 0x40_0000_0000;

/// End of usable real-mode RAM; the EBDA starts here.
pub const EBDA_START: u64 = 0x9_fc00;
/// Start of memory above the legacy 1 MiB.
pub const HIMEM_START: u64 = 0x10_0000;

/// Global descriptor table for the boot vCPU.
pub const BOOT_GDT_START: u64 = 0x500;
/// Empty IDT for the boot vCPU.
pub const BOOT_IDT_START: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (the initrd).
pub const PVH_MODLIST_START: u64 = 0x6040;
/// PVH memory map (up to 128 entries).
pub const PVH_MEMMAP_START: u64 = 0x6080;
/// Linux zero page (`boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer for the 64-bit Linux entry.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity-mapping page tables: PML4, PDPT, then four page directories.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// First of four page directories (2 MiB pages, 4 GiB mapped).
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x2_0000;
/// Longest command line we place (Linux's own limit on x86 is 2048 by default).
pub const CMDLINE_MAX_SIZE: usize = 0x1_0000;
/// ACPI RSDP, followed by the other ACPI tables, in the reserved BIOS area.
pub const ACPI_START: u64 = 0xe_0000;
/// End of the area the ACPI tables may use.
pub const ACPI_END: u64 = 0x10_0000;

/// `struct e820entry` types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E820Type {
    /// Usable RAM.
    Ram = 1,
    /// Reserved, not usable.
    Reserved = 2,
    /// ACPI tables, reclaimable after parsing.
    Acpi = 3,
}

/// One e820 entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: E820Type,
}

/// Where guest RAM lives for a given size: one range below the PCI hole and,
/// for guests larger than 3 GiB, one above 4 GiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamLayout {
    /// `(start, size)` of each RAM range, in address order.
    pub ranges: Vec<(GuestAddress, u64)>,
}

impl RamLayout {
    /// Splits `size` bytes of RAM around the 32-bit PCI hole.
    pub fn new(size: u64) -> Self {
        let low = size.min(MEM_32BIT_GAP_START);
        let mut ranges = vec![(GuestAddress(0), low)];
        if size > low {
            ranges.push((GuestAddress(HIGH_RAM_START), size - low));
        }
        RamLayout { ranges }
    }

    /// Bytes of RAM below the 32-bit hole.
    pub fn low_size(&self) -> u64 {
        self.ranges[0].1
    }

    /// First address after the highest RAM byte.
    pub fn end(&self) -> u64 {
        let (start, size) = self.ranges[self.ranges.len() - 1];
        start.0 + size
    }

    /// Start of the 64-bit PCI MMIO window: the first 1 GiB boundary after RAM
    /// (and never below 4 GiB).
    pub fn mmio64_start(&self) -> u64 {
        let end = self.end().max(HIGH_RAM_START);
        end.div_ceil(1 << 30) << 30
    }

    /// The e820 map the guest is given (PVH memmap and zero page alike).
    pub fn e820(&self) -> Vec<E820Entry> {
        let low = self.low_size();
        let mut map = vec![E820Entry {
            addr: 0,
            size: EBDA_START.min(low),
            kind: E820Type::Ram,
        }];
        map.push(E820Entry {
            addr: EBDA_START,
            size: HIMEM_START - EBDA_START,
            kind: E820Type::Reserved,
        });
        if low > HIMEM_START {
            map.push(E820Entry {
                addr: HIMEM_START,
                size: low - HIMEM_START,
                kind: E820Type::Ram,
            });
        }
        // The ECAM window must be e820-reserved or Linux refuses MMCONFIG.
        map.push(E820Entry {
            addr: PCI_ECAM_START,
            size: PCI_ECAM_SIZE,
            kind: E820Type::Reserved,
        });
        if let Some(&(start, size)) = self.ranges.get(1) {
            map.push(E820Entry {
                addr: start.0,
                size,
                kind: E820Type::Ram,
            });
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram_total(map: &[E820Entry]) -> u64 {
        map.iter()
            .filter(|e| e.kind == E820Type::Ram)
            .map(|e| e.size)
            .sum()
    }

    #[test]
    fn small_guest_is_one_low_range() {
        let l = RamLayout::new(128 << 20);
        assert_eq!(l.ranges, vec![(GuestAddress(0), 128 << 20)]);
        let map = l.e820();
        // The legacy hole (640 KiB to 1 MiB) is not RAM.
        assert_eq!(ram_total(&map), (128 << 20) - (HIMEM_START - EBDA_START));
        assert!(map
            .iter()
            .any(|e| e.addr == PCI_ECAM_START && e.kind == E820Type::Reserved));
        assert_eq!(l.mmio64_start(), HIGH_RAM_START);
    }

    #[test]
    fn four_gib_guest_gets_all_its_memory_around_the_hole() {
        let size = 4u64 << 30;
        let l = RamLayout::new(size);
        assert_eq!(
            l.ranges,
            vec![
                (GuestAddress(0), MEM_32BIT_GAP_START),
                (GuestAddress(HIGH_RAM_START), size - MEM_32BIT_GAP_START)
            ]
        );
        let map = l.e820();
        let high = map.last().unwrap();
        assert_eq!(high.addr, HIGH_RAM_START);
        assert_eq!(high.size, 1 << 30);
        assert_eq!(ram_total(&map), size - (HIMEM_START - EBDA_START));
        assert_eq!(l.end(), 5 << 30);
        assert_eq!(l.mmio64_start(), 5 << 30);
    }

    #[test]
    fn entries_are_sorted_and_disjoint() {
        for size in [1u64 << 20, 3 << 30, (3 << 30) + 4096, 9 << 30] {
            let map = RamLayout::new(size).e820();
            for w in map.windows(2) {
                assert!(w[0].addr + w[0].size <= w[1].addr, "{size:#x}: {map:?}");
            }
        }
    }

    #[test]
    fn exactly_three_gib_has_no_high_range() {
        let l = RamLayout::new(3 << 30);
        assert_eq!(l.ranges.len(), 1);
        assert_eq!(l.low_size(), MEM_32BIT_GAP_START);
    }
}

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
//!
//! Firmware-booted machines (Q35, i440FX) use the map QEMU gives them, because
//! SeaBIOS and OVMF hard-code it: see [`PlatformLayout`].

use machine_spec::Chipset;
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

/// Where the chipset puts PCI and how much RAM may sit below it.
///
/// ```text
///              generic (direct boot)     Q35 (firmware)            i440FX (firmware)
/// low RAM      < 0xc000_0000             < 0xb000_0000, else 2 GiB < 0xe000_0000, else 3 GiB
/// ECAM         0xe000_0000               0xb000_0000 (PCIEXBAR)    none (0xcf8 only)
/// MMIO32       0xc000_0000 + 512 MiB     0xc000_0000-0xfec0_0000   0xc000_0000-0xfec0_0000
/// KVM TSS      0xfffb_d000               0xfeffd000 (below the flash, as QEMU)
/// ```
///
/// Firmware reassigns every BAR inside the 32-bit window ([0xc000_0000,
/// 0xfec0_0000) on Q35, SeaBIOS `pcimem_start`); the DSDT's `_CRS` says the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformLayout {
    pub chipset: Chipset,
    /// RAM sizes up to this fit below the hole in one piece.
    pub lowmem_max: u64,
    /// Low RAM size for larger guests; the rest goes above 4 GiB.
    pub lowmem_split: u64,
    /// ECAM base (256 buses, 256 MiB), if the chipset has one.
    pub ecam: Option<u64>,
    /// 32-bit PCI MMIO window: (base, size).
    pub mmio32: (u64, u64),
    /// Three pages for KVM's TSS (KVM_SET_TSS_ADDR), below the firmware flash.
    pub kvm_tss: u64,
    /// One page for KVM's identity map (Intel), right below the TSS.
    pub kvm_identity_map: u64,
}

impl PlatformLayout {
    /// The layout of `chipset`.
    pub const fn of(chipset: Chipset) -> Self {
        match chipset {
            Chipset::Generic => PlatformLayout {
                chipset,
                lowmem_max: MEM_32BIT_GAP_START,
                lowmem_split: MEM_32BIT_GAP_START,
                ecam: Some(PCI_ECAM_START),
                mmio32: (PCI_MMIO32_START, PCI_MMIO32_SIZE),
                kvm_tss: 0xfffb_d000,
                kvm_identity_map: 0xfffb_c000,
            },
            Chipset::Q35 => PlatformLayout {
                chipset,
                lowmem_max: Q35_ECAM_START - 1,
                lowmem_split: 0x8000_0000,
                ecam: Some(Q35_ECAM_START),
                mmio32: (FW_MMIO32_START, IOAPIC_START - FW_MMIO32_START),
                kvm_tss: FW_KVM_TSS,
                kvm_identity_map: FW_KVM_TSS - 0x1000,
            },
            Chipset::I440fx => PlatformLayout {
                chipset,
                lowmem_max: 0xe000_0000 - 1,
                lowmem_split: 0xc000_0000,
                ecam: None,
                mmio32: (FW_MMIO32_START, IOAPIC_START - FW_MMIO32_START),
                kvm_tss: FW_KVM_TSS,
                kvm_identity_map: FW_KVM_TSS - 0x1000,
            },
        }
    }

    /// Whether firmware owns the platform (it enumerates PCI, reads fw_cfg).
    pub fn firmware(&self) -> bool {
        self.chipset != Chipset::Generic
    }

    /// Bytes of a `size`-byte guest that go below the PCI hole.
    pub fn low_ram(&self, size: u64) -> u64 {
        if size <= self.lowmem_max {
            size
        } else {
            self.lowmem_split
        }
    }
}

/// Q35 ECAM (MCH PCIEXBAR as SeaBIOS and OVMF program it).
pub const Q35_ECAM_START: u64 = 0xb000_0000;
/// Start of the 32-bit PCI window firmware assigns BARs from.
pub const FW_MMIO32_START: u64 = 0xc000_0000;
/// KVM TSS on firmware platforms: QEMU's place, below the 16 MiB of flash.
pub const FW_KVM_TSS: u64 = 0xfeff_d000;
/// Firmware images end at 4 GiB.
pub const FIRMWARE_END: u64 = 0x1_0000_0000;
/// The legacy BIOS area (0xC0000-0xFFFFF) that holds the tail of a BIOS image: all of
/// SeaBIOS's 256 KiB, so its code is already where it runs it from (the PAM shadow
/// "already enabled"), and it skips copying itself down from the flash.
pub const BIOS_LOW_START: u64 = 0xc_0000;
/// Size of the low BIOS alias.
pub const BIOS_LOW_SIZE: u64 = 0x4_0000;

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
    /// Splits `size` bytes of RAM around the 32-bit PCI hole of the generic platform.
    pub fn new(size: u64) -> Self {
        Self::for_platform(size, &PlatformLayout::of(Chipset::Generic))
    }

    /// Splits `size` bytes of RAM around the PCI hole of `platform`.
    pub fn for_platform(size: u64, platform: &PlatformLayout) -> Self {
        let low = platform.low_ram(size);
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

    /// The map firmware gets in fw_cfg `etc/e820`, as QEMU gives it: RAM from 0 (the
    /// firmware reserves its own areas: EBDA, BIOS, ECAM) and KVM's TSS pages.
    pub fn firmware_e820(&self, platform: &PlatformLayout) -> Vec<E820Entry> {
        let mut map: Vec<E820Entry> = self
            .ranges
            .iter()
            .map(|&(start, size)| E820Entry {
                addr: start.0,
                size,
                kind: E820Type::Ram,
            })
            .collect();
        map.insert(
            1,
            E820Entry {
                addr: platform.kvm_identity_map,
                size: 0x4000,
                kind: E820Type::Reserved,
            },
        );
        map
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
    fn q35_keeps_low_ram_below_the_ecam_window() {
        let q35 = PlatformLayout::of(Chipset::Q35);
        let l = RamLayout::for_platform(0xa000_0000, &q35);
        assert_eq!(l.ranges.len(), 1);
        // QEMU's rule: with RAM at or above the ECAM base, 2 GiB low, the rest high.
        let l = RamLayout::for_platform(3 << 30, &q35);
        assert_eq!(l.low_size(), 0x8000_0000);
        assert_eq!(l.ranges[1], (GuestAddress(HIGH_RAM_START), 1 << 30));
        let map = l.firmware_e820(&q35);
        assert_eq!(map[0].addr, 0);
        assert_eq!(map[0].size, 0x8000_0000);
        assert_eq!(map[1].kind, E820Type::Reserved);
        assert!(map[1].addr >= 0xfe00_0000 && map[1].addr + map[1].size <= 0xff00_0000);
        assert_eq!(ram_total(&map), 3 << 30);
    }

    #[test]
    fn exactly_three_gib_has_no_high_range() {
        let l = RamLayout::new(3 << 30);
        assert_eq!(l.ranges.len(), 1);
        assert_eq!(l.low_size(), MEM_32BIT_GAP_START);
    }
}

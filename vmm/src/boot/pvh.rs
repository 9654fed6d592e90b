//! The PVH start-of-day structure (`hvm_start_info`, version 1) with its memory
//! map and module list.

use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{BootError, InitrdPlacement};
use crate::layout::{self, RamLayout};

/// `hvm_start_info.magic`.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// Room for the memory map at `PVH_MEMMAP_START` before the zero page area.
const MAX_MEMMAP_ENTRIES: usize = 128;

/// Writes `hvm_start_info`, the e820-style memory map and the initrd module.
pub fn write_start_info(
    mem: &GuestMemoryMmap,
    ram: &RamLayout,
    initrd: Option<InitrdPlacement>,
    rsdp: Option<u64>,
) -> Result<(), BootError> {
    let e820 = ram.e820();
    let w = |e| BootError::Write("PVH start info", e);
    for (i, e) in e820.iter().take(MAX_MEMMAP_ENTRIES).enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind as u32,
            reserved: 0,
        };
        let at =
            layout::PVH_MEMMAP_START + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
        mem.write_obj(entry, GuestAddress(at)).map_err(w)?;
    }
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        cmdline_paddr: layout::CMDLINE_START,
        rsdp_paddr: rsdp.unwrap_or(0),
        memmap_paddr: layout::PVH_MEMMAP_START,
        memmap_entries: e820.len().min(MAX_MEMMAP_ENTRIES) as u32,
        ..Default::default()
    };
    if let Some(i) = initrd {
        let m = hvm_modlist_entry {
            paddr: i.addr,
            size: i.size,
            ..Default::default()
        };
        mem.write_obj(m, GuestAddress(layout::PVH_MODLIST_START))
            .map_err(w)?;
        info.nr_modules = 1;
        info.modlist_paddr = layout::PVH_MODLIST_START;
    }
    mem.write_obj(info, GuestAddress(layout::PVH_INFO_START))
        .map_err(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_info_points_at_memmap_cmdline_rsdp_and_initrd() {
        let ram = RamLayout::new(64 << 20);
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        let initrd = InitrdPlacement {
            addr: 0x300_0000,
            size: 0x1234,
        };
        write_start_info(&mem, &ram, Some(initrd), Some(layout::ACPI_START)).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(layout::PVH_INFO_START)).unwrap();
        assert_eq!(info.magic, XEN_HVM_START_MAGIC_VALUE);
        assert_eq!(info.version, 1);
        assert_eq!(info.rsdp_paddr, layout::ACPI_START);
        assert_eq!(info.cmdline_paddr, layout::CMDLINE_START);
        assert_eq!(info.memmap_entries as usize, ram.e820().len());
        assert_eq!(info.nr_modules, 1);
        let m: hvm_modlist_entry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!((m.paddr, m.size), (0x300_0000, 0x1234));
        let e: hvm_memmap_table_entry = mem
            .read_obj(GuestAddress(info.memmap_paddr + 2 * 24))
            .unwrap();
        assert_eq!(
            (e.addr, e.size, e.type_),
            (layout::HIMEM_START, (64 << 20) - layout::HIMEM_START, 1)
        );
        // Start info, module list and memory map stay clear of the zero page.
        const { assert!(layout::PVH_MEMMAP_START + 128 * 24 <= layout::ZERO_PAGE_START) };
    }
}

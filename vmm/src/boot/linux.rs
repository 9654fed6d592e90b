//! bzImage loading and the Linux zero page (`boot_params`) for the 64-bit boot
//! protocol (Documentation/arch/x86/boot.rst).

use std::fs::File;
use std::path::Path;

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{BzImage, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{load_initrd, write_cmdline, BootError, BootSource};
use crate::arch::x86_64::regs::EntryMode;
use crate::layout::{self, RamLayout};

/// `xloadflags` bit: the kernel has a 64-bit entry at `load address + 0x200`.
const XLF_KERNEL_64: u16 = 1;
/// Offset of `startup_64` from the protected-mode kernel's load address.
const STARTUP_64_OFFSET: u64 = 0x200;
/// `type_of_loader`: "undefined" boot loader.
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `loadflags` bit: the loader may use the heap (`heap_end_ptr` is valid).
const CAN_USE_HEAP: u8 = 0x80;

/// Loads a bzImage at 1 MiB, writes the command line, initrd and zero page.
pub fn load_bzimage(
    mem: &GuestMemoryMmap,
    ram: &RamLayout,
    path: &Path,
    file: &mut File,
    src: &BootSource<'_>,
    rsdp: Option<u64>,
) -> Result<EntryMode, BootError> {
    let r = BzImage::load(mem, None, file, Some(GuestAddress(layout::HIMEM_START)))
        .map_err(|e| BootError::Load(path.into(), e))?;
    // BzImage::load always returns the header it parsed.
    let mut hdr = r.setup_header.expect("bzImage setup header");
    if hdr.xloadflags & XLF_KERNEL_64 == 0 || hdr.version < 0x020c {
        return Err(BootError::Not64Bit(
            path.into(),
            hdr.version,
            hdr.xloadflags,
        ));
    }
    // Kernels before 2.06 do not state their limit; 2048 is what they had.
    let cmdline_limit = if hdr.cmdline_size == 0 {
        2048
    } else {
        hdr.cmdline_size as usize + 1
    };
    write_cmdline(
        mem,
        src.cmdline,
        cmdline_limit.min(layout::CMDLINE_MAX_SIZE),
    )?;

    hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    hdr.loadflags |= CAN_USE_HEAP;
    hdr.heap_end_ptr = 0xfe00;
    hdr.cmd_line_ptr = layout::CMDLINE_START as u32;
    hdr.cmdline_size = src.cmdline.len() as u32;
    if let Some(p) = src.initrd {
        // initrd_addr_max is the highest address the initrd may *occupy*.
        let max_end = ram.low_size().min(
            u64::from(hdr.initrd_addr_max)
                .saturating_add(1)
                .max(1 << 20),
        );
        let kernel_end = r.kernel_end.max(r.kernel_load.0 + u64::from(hdr.init_size));
        let i = load_initrd(mem, p, kernel_end, max_end)?;
        hdr.ramdisk_image = i.addr as u32;
        hdr.ramdisk_size = i.size as u32;
    }

    let mut params = boot_params {
        hdr,
        acpi_rsdp_addr: rsdp.unwrap_or(0),
        ..Default::default()
    };
    let e820 = ram.e820();
    for (slot, e) in params.e820_table.iter_mut().zip(e820.iter()) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind as u32,
        };
    }
    params.e820_entries = e820.len().min(params.e820_table.len()) as u8;
    mem.write_obj(params, GuestAddress(layout::ZERO_PAGE_START))
        .map_err(|e| BootError::Write("zero page", e))?;

    Ok(EntryMode::Linux64 {
        entry: r.kernel_load.0 + STARTUP_64_OFFSET,
        zero_page: layout::ZERO_PAGE_START,
    })
}

//! Loading the kernel, initrd and command line, and the boot information the
//! kernel reads first: the PVH `hvm_start_info` or the Linux zero page.
//!
//! The kernel format is recognised from the file itself:
//! * ELF (64-bit through linux-loader, 32-bit with [`elf32`]) with a
//!   `XEN_ELFNOTE_PHYS32_ENTRY` note → PVH entry;
//! * a bzImage (`HdrS` at 0x202) supporting the 64-bit boot protocol → Linux 64-bit entry.

pub mod elf32;
pub mod linux;
pub mod pvh;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::loader::{elf::PvhBootCapability, Elf, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::x86_64::regs::EntryMode;
use crate::layout::{self, RamLayout};

/// Errors of kernel/initrd loading.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel file cannot be opened.
    #[error("cannot open kernel '{}'", .0.display())]
    KernelOpen(PathBuf, #[source] std::io::Error),
    /// The file is neither an ELF with a PVH note nor a bzImage.
    #[error("'{}' is not a kernel this VMM can boot: neither an ELF image with a PVH entry note nor a bzImage", .0.display())]
    NotAKernel(PathBuf),
    /// An ELF kernel without `XEN_ELFNOTE_PHYS32_ENTRY`.
    #[error("ELF kernel '{}' has no PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY note); build it with CONFIG_PVH=y or boot its bzImage", .0.display())]
    NoPvhNote(PathBuf),
    /// linux-loader refused the image.
    #[error("cannot load kernel '{}'", .0.display())]
    Load(PathBuf, #[source] linux_loader::loader::Error),
    /// Our own ELF32 loader refused the image.
    #[error("cannot load kernel '{}'", .0.display())]
    Elf32(PathBuf, #[source] elf32::Elf32Error),
    /// A bzImage too old for the 64-bit boot protocol.
    #[error("bzImage '{path}' does not support the 64-bit boot protocol (boot protocol {1:#x}, xloadflags {2:#x})", path = .0.display())]
    Not64Bit(PathBuf, u16, u16),
    /// Reading the kernel failed.
    #[error("cannot read kernel '{}'", .0.display())]
    KernelRead(PathBuf, #[source] std::io::Error),
    /// The initrd cannot be read.
    #[error("cannot read initrd '{}'", .0.display())]
    Initrd(PathBuf, #[source] std::io::Error),
    /// The initrd does not fit between the kernel and the top of low memory.
    #[error("initrd '{path}' ({1} bytes) does not fit in guest memory below {2:#x} above the kernel (ends at {3:#x})", path = .0.display())]
    InitrdTooBig(PathBuf, u64, u64, u64),
    /// The command line is too long.
    #[error("kernel command line is {0} bytes; the limit is {1}")]
    CmdlineTooLong(usize, usize),
    /// The command line contains a NUL byte.
    #[error("kernel command line contains a NUL byte")]
    CmdlineNul,
    /// Writing boot structures into guest memory failed.
    #[error("cannot write the {0} into guest memory")]
    Write(&'static str, #[source] vm_memory::GuestMemoryError),
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct BootSource<'a> {
    pub kernel: &'a Path,
    pub initrd: Option<&'a Path>,
    pub cmdline: &'a str,
}

/// Kernel image formats we recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    Elf64,
    Elf32,
    BzImage,
}

/// Recognises the kernel format from its first bytes.
pub fn detect_format(path: &Path, file: &mut File) -> Result<KernelFormat, BootError> {
    let mut head = [0u8; 0x206];
    file.seek(SeekFrom::Start(0))
        .map_err(|e| BootError::KernelRead(path.into(), e))?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(BootError::KernelRead(path.into(), e)),
        }
    }
    if n >= 5 && head[..4] == *b"\x7fELF" {
        return match head[4] {
            1 => Ok(KernelFormat::Elf32),
            2 => Ok(KernelFormat::Elf64),
            _ => Err(BootError::NotAKernel(path.into())),
        };
    }
    if n >= 0x206 && head[0x202..0x206] == *b"HdrS" {
        return Ok(KernelFormat::BzImage);
    }
    Err(BootError::NotAKernel(path.into()))
}

/// Validates the command line and writes it, NUL-terminated, at `CMDLINE_START`.
fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str, limit: usize) -> Result<(), BootError> {
    if cmdline.as_bytes().contains(&0) {
        return Err(BootError::CmdlineNul);
    }
    if cmdline.len() + 1 > limit {
        return Err(BootError::CmdlineTooLong(cmdline.len(), limit - 1));
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(layout::CMDLINE_START))
        .map_err(|e| BootError::Write("command line", e))
}

/// Where the initrd went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitrdPlacement {
    pub addr: u64,
    pub size: u64,
}

/// Places the initrd page-aligned at the top of low RAM (below `max_end`), above
/// `kernel_end`.
pub fn place_initrd(size: u64, kernel_end: u64, max_end: u64) -> Option<u64> {
    let addr = max_end.checked_sub(size)? & !0xfff;
    (addr >= kernel_end).then_some(addr)
}

fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel_end: u64,
    max_end: u64,
) -> Result<InitrdPlacement, BootError> {
    let mut f = crate::files::open(path, crate::files::Access::READ)
        .map_err(|e| BootError::Initrd(path.into(), e))?;
    let size = f
        .metadata()
        .map_err(|e| BootError::Initrd(path.into(), e))?
        .len();
    let addr = place_initrd(size, kernel_end, max_end)
        .ok_or_else(|| BootError::InitrdTooBig(path.into(), size, max_end, kernel_end))?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut f, size as usize)
        .map_err(|e| BootError::Write("initrd", e))?;
    Ok(InitrdPlacement { addr, size })
}

/// Loads everything and writes the boot information. Returns how the boot vCPU
/// must enter the kernel.
pub fn load(
    mem: &GuestMemoryMmap,
    ram: &RamLayout,
    src: &BootSource<'_>,
    rsdp: Option<u64>,
) -> Result<EntryMode, BootError> {
    let path = src.kernel;
    let mut file = crate::files::open(path, crate::files::Access::READ)
        .map_err(|e| BootError::KernelOpen(path.into(), e))?;
    let format = detect_format(path, &mut file)?;
    let low_end = ram.low_size();
    match format {
        KernelFormat::Elf64 | KernelFormat::Elf32 => {
            let (entry, kernel_end) = if format == KernelFormat::Elf64 {
                let r = Elf::load(mem, None, &mut file, None)
                    .map_err(|e| BootError::Load(path.into(), e))?;
                match r.pvh_boot_cap {
                    PvhBootCapability::PvhEntryPresent(a) => (a.0, r.kernel_end),
                    _ => return Err(BootError::NoPvhNote(path.into())),
                }
            } else {
                let r =
                    elf32::load(mem, &mut file).map_err(|e| BootError::Elf32(path.into(), e))?;
                match r.pvh_entry {
                    Some(e) => (e, r.kernel_end),
                    None => return Err(BootError::NoPvhNote(path.into())),
                }
            };
            write_cmdline(mem, src.cmdline, layout::CMDLINE_MAX_SIZE)?;
            let initrd = match src.initrd {
                Some(p) => Some(load_initrd(mem, p, kernel_end, low_end)?),
                None => None,
            };
            pvh::write_start_info(mem, ram, initrd, rsdp)?;
            Ok(EntryMode::Pvh {
                entry,
                start_info: layout::PVH_INFO_START,
            })
        }
        KernelFormat::BzImage => linux::load_bzimage(mem, ram, path, &mut file, src, rsdp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn initrd_goes_to_the_top_and_never_over_the_kernel() {
        assert_eq!(place_initrd(0x1800, 0x20_0000, 0x800_0000), Some(0x7ffe000));
        assert_eq!(place_initrd(0x800_0000, 0x20_0000, 0x800_0000), None);
        assert_eq!(place_initrd(0x900_0000, 0, 0x800_0000), None);
    }

    #[test]
    fn formats_are_recognised_and_junk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(&p, &bz).unwrap();
        assert_eq!(
            detect_format(&p, &mut File::open(&p).unwrap()).unwrap(),
            KernelFormat::BzImage
        );
        let mut f = File::create(&p).unwrap();
        f.write_all(b"\x7fELF\x01rest").unwrap();
        assert_eq!(
            detect_format(&p, &mut File::open(&p).unwrap()).unwrap(),
            KernelFormat::Elf32
        );
        std::fs::write(&p, b"#!/bin/sh\necho not a kernel\n").unwrap();
        let err = detect_format(&p, &mut File::open(&p).unwrap()).unwrap_err();
        assert!(err.to_string().contains("is not a kernel"), "{err}");
    }

    #[test]
    fn cmdline_is_nul_terminated_and_bounded() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_cmdline(&mem, "console=ttyS0", 64).unwrap();
        let mut buf = [0u8; 14];
        mem.read_slice(&mut buf, GuestAddress(layout::CMDLINE_START))
            .unwrap();
        assert_eq!(&buf, b"console=ttyS0\0");
        assert!(matches!(
            write_cmdline(&mem, &"x".repeat(64), 64),
            Err(BootError::CmdlineTooLong(64, 63))
        ));
        assert!(matches!(
            write_cmdline(&mem, "a\0b", 64),
            Err(BootError::CmdlineNul)
        ));
    }
}

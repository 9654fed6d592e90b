//! A loader for 32-bit ELF kernels with a PVH note.
//!
//! linux-loader handles only ELF64. Small PVH guests (and QEMU's `-kernel`
//! users) are often ELF32, so the few lines needed for those live here:
//! `PT_LOAD` segments are copied to their physical addresses and `PT_NOTE`
//! segments are searched for `XEN_ELFNOTE_PHYS32_ENTRY`.

use std::io::{Read, Seek, SeekFrom};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Errors of the ELF32 loader.
#[derive(Debug, thiserror::Error)]
pub enum Elf32Error {
    /// Reading the file failed.
    #[error("cannot read the ELF image")]
    Read(#[source] std::io::Error),
    /// A malformed header.
    #[error("malformed ELF32 image: {0}")]
    Malformed(&'static str),
    /// A segment does not fit in guest memory.
    #[error("ELF segment at {0:#x} ({1} bytes) is outside guest memory")]
    Segment(u64, u64),
}

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Result of loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elf32Loaded {
    /// The PVH entry point, if the image has the note.
    pub pvh_entry: Option<u64>,
    /// First byte after the highest loaded segment (including its BSS).
    pub kernel_end: u64,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Finds the PVH entry in the contents of one note segment.
pub fn pvh_entry_in_notes(notes: &[u8]) -> Option<u64> {
    let align = |x: usize| (x + 3) & !3;
    let mut off = 0;
    while off + 12 <= notes.len() {
        let namesz = u32_at(notes, off) as usize;
        let descsz = u32_at(notes, off + 4) as usize;
        let kind = u32_at(notes, off + 8);
        let name_at = off + 12;
        let desc_at = name_at + align(namesz);
        if desc_at + descsz > notes.len() {
            return None;
        }
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && notes[name_at..name_at + namesz].starts_with(b"Xen")
        {
            let d = &notes[desc_at..desc_at + descsz];
            return match descsz {
                4 => Some(u64::from(u32_at(d, 0))),
                8 => Some(u64::from_le_bytes(d.try_into().ok()?)),
                _ => None,
            };
        }
        off = desc_at + align(descsz);
    }
    None
}

/// Loads an ELF32 image into `mem`.
pub fn load<F: Read + Seek>(
    mem: &GuestMemoryMmap,
    file: &mut F,
) -> Result<Elf32Loaded, Elf32Error> {
    let mut eh = [0u8; 52];
    file.seek(SeekFrom::Start(0)).map_err(Elf32Error::Read)?;
    file.read_exact(&mut eh).map_err(Elf32Error::Read)?;
    if eh[5] != 1 {
        return Err(Elf32Error::Malformed("not little-endian"));
    }
    let phoff = u64::from(u32_at(&eh, 28));
    let phentsize = usize::from(u16_at(&eh, 42));
    let phnum = usize::from(u16_at(&eh, 44));
    if phentsize < 32 || phnum == 0 {
        return Err(Elf32Error::Malformed("no program headers"));
    }
    let mut ph = vec![0u8; phentsize * phnum];
    file.seek(SeekFrom::Start(phoff))
        .map_err(Elf32Error::Read)?;
    file.read_exact(&mut ph).map_err(Elf32Error::Read)?;

    let mut loaded = Elf32Loaded {
        pvh_entry: None,
        kernel_end: 0,
    };
    for i in 0..phnum {
        let p = &ph[i * phentsize..(i + 1) * phentsize];
        let (kind, offset, paddr) = (u32_at(p, 0), u32_at(p, 4), u32_at(p, 12));
        let (filesz, memsz) = (u32_at(p, 16), u32_at(p, 20));
        file.seek(SeekFrom::Start(u64::from(offset)))
            .map_err(Elf32Error::Read)?;
        match kind {
            PT_LOAD => {
                if filesz > 0 {
                    let mut seg = vec![0u8; filesz as usize];
                    file.read_exact(&mut seg).map_err(Elf32Error::Read)?;
                    mem.write_slice(&seg, GuestAddress(u64::from(paddr)))
                        .map_err(|_| Elf32Error::Segment(u64::from(paddr), u64::from(filesz)))?;
                }
                // Fresh guest memory is zero, so the BSS needs no clearing.
                loaded.kernel_end = loaded
                    .kernel_end
                    .max(u64::from(paddr) + u64::from(memsz.max(filesz)));
            }
            PT_NOTE if loaded.pvh_entry.is_none() => {
                let mut notes = vec![0u8; filesz as usize];
                file.read_exact(&mut notes).map_err(Elf32Error::Read)?;
                loaded.pvh_entry = pvh_entry_in_notes(&notes);
            }
            _ => {}
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A minimal ELF32 image: one PT_LOAD of `code` at `paddr` and a PVH note.
    pub(crate) fn tiny_elf32(code: &[u8], paddr: u32, entry: u32) -> Vec<u8> {
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
        note.extend_from_slice(b"Xen\0");
        note.extend_from_slice(&entry.to_le_bytes());
        let ph_off = 52u32;
        let note_off = ph_off + 2 * 32;
        let code_off = note_off + note.len() as u32;
        let mut f = vec![0u8; 52];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 1;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&3u16.to_le_bytes());
        f[24..28].copy_from_slice(&entry.to_le_bytes());
        f[28..32].copy_from_slice(&ph_off.to_le_bytes());
        f[42..44].copy_from_slice(&32u16.to_le_bytes());
        f[44..46].copy_from_slice(&2u16.to_le_bytes());
        let ph = |kind: u32, off: u32, addr: u32, size: u32| {
            let mut p = vec![0u8; 32];
            p[0..4].copy_from_slice(&kind.to_le_bytes());
            p[4..8].copy_from_slice(&off.to_le_bytes());
            p[8..12].copy_from_slice(&addr.to_le_bytes());
            p[12..16].copy_from_slice(&addr.to_le_bytes());
            p[16..20].copy_from_slice(&size.to_le_bytes());
            p[20..24].copy_from_slice(&size.to_le_bytes());
            p
        };
        f.extend(ph(PT_LOAD, code_off, paddr, code.len() as u32));
        f.extend(ph(PT_NOTE, note_off, 0, note.len() as u32));
        f.extend(&note);
        f.extend_from_slice(code);
        f
    }

    #[test]
    fn loads_segments_and_finds_the_pvh_entry() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let img = tiny_elf32(&[0xf4, 0x90, 0xeb], 0x10_0000, 0x10_0000);
        let r = load(&mem, &mut Cursor::new(img)).unwrap();
        assert_eq!(r.pvh_entry, Some(0x10_0000));
        assert_eq!(r.kernel_end, 0x10_0003);
        let mut b = [0u8; 3];
        mem.read_slice(&mut b, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(b, [0xf4, 0x90, 0xeb]);
    }

    #[test]
    fn a_segment_outside_memory_is_an_error() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let img = tiny_elf32(&[0xf4], 0x20_0000, 0x20_0000);
        assert!(matches!(
            load(&mem, &mut Cursor::new(img)),
            Err(Elf32Error::Segment(0x20_0000, 1))
        ));
    }
}

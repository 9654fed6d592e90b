//! Boot-vCPU register state for each entry protocol, the GDT and identity page
//! tables it needs, FPU defaults and the local APIC's LINT pins.
//!
//! * PVH: 32-bit protected mode, paging off, flat segments, `%ebx` = `hvm_start_info`.
//! * Linux 64-bit boot protocol: long mode, identity-mapped 4 GiB, `__BOOT_CS` = 0x10
//!   and `__BOOT_DS` = 0x18 flat, `%rsi` = the zero page.

use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout;

/// Errors of register setup.
#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    /// Writing the GDT, IDT or page tables into guest memory failed.
    #[error("cannot write boot {0} into guest memory")]
    Write(&'static str, #[source] vm_memory::GuestMemoryError),
}

/// How the boot vCPU enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// PVH: 32-bit, paging off; `start_info` goes in `%ebx`.
    Pvh { entry: u64, start_info: u64 },
    /// Linux 64-bit boot protocol; `zero_page` goes in `%rsi`.
    Linux64 { entry: u64, zero_page: u64 },
}

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_NE: u64 = 0x20;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

/// GDT slots (selector = index * 8).
const GDT_CODE32: usize = 1;
const GDT_CODE64: usize = 2;
const GDT_DATA: usize = 3;
const GDT_TSS: usize = 4;

/// Encodes a segment descriptor.
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << 32)
        | ((u64::from(flags) & 0xf0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << 32)
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0xffff)
}

/// The boot GDT: null, flat 32-bit code, flat 64-bit code, flat data, TSS.
pub fn boot_gdt() -> [u64; 5] {
    [
        0,
        gdt_entry(0xc09b, 0, 0xfffff),
        gdt_entry(0xa09b, 0, 0xfffff),
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0x808b, 0, 0xfffff),
    ]
}

/// The KVM view of GDT slot `index`.
pub fn segment_from_gdt(entry: u64, index: usize) -> kvm_segment {
    let g = ((entry >> 55) & 1) as u8;
    let raw_limit = (((entry >> 32) & 0x000f_0000) | (entry & 0xffff)) as u32;
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: if g == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: (index * 8) as u16,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// Writes the GDT and an empty IDT to guest memory.
fn write_descriptor_tables(mem: &GuestMemoryMmap, gdt: &[u64]) -> Result<(), RegsError> {
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(layout::BOOT_GDT_START + (i as u64) * 8))
            .map_err(|e| RegsError::Write("GDT", e))?;
    }
    mem.write_obj(0u64, GuestAddress(layout::BOOT_IDT_START))
        .map_err(|e| RegsError::Write("IDT", e))
}

/// Identity-maps the first 4 GiB with 2 MiB pages (PML4 → PDPT → 4 PDs).
fn write_page_tables(mem: &GuestMemoryMmap) -> Result<(), RegsError> {
    let w = |v: u64, a: u64| {
        mem.write_obj(v, GuestAddress(a))
            .map_err(|e| RegsError::Write("page tables", e))
    };
    w(layout::PDPTE_START | 0x03, layout::PML4_START)?;
    for pd in 0..4u64 {
        let pd_addr = layout::PDE_START + pd * 0x1000;
        w(pd_addr | 0x03, layout::PDPTE_START + pd * 8)?;
        let mut table = [0u8; 4096];
        for i in 0..512u64 {
            let page = ((pd << 30) | (i << 21)) | 0x83;
            table[(i * 8) as usize..(i * 8 + 8) as usize].copy_from_slice(&page.to_le_bytes());
        }
        mem.write_slice(&table, GuestAddress(pd_addr))
            .map_err(|e| RegsError::Write("page tables", e))?;
    }
    Ok(())
}

/// Special registers for `mode`, starting from the vCPU's current ones.
/// Writes the descriptor tables (and page tables for long mode) to memory.
pub fn setup_sregs(
    mem: &GuestMemoryMmap,
    mode: EntryMode,
    sregs: &mut kvm_sregs,
) -> Result<(), RegsError> {
    let gdt = boot_gdt();
    write_descriptor_tables(mem, &gdt)?;
    sregs.gdt.base = layout::BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = layout::BOOT_IDT_START;
    sregs.idt.limit = 7;

    let code = match mode {
        EntryMode::Pvh { .. } => GDT_CODE32,
        EntryMode::Linux64 { .. } => GDT_CODE64,
    };
    sregs.cs = segment_from_gdt(gdt[code], code);
    let data = segment_from_gdt(gdt[GDT_DATA], GDT_DATA);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment_from_gdt(gdt[GDT_TSS], GDT_TSS);

    match mode {
        EntryMode::Pvh { .. } => {
            // Assign, do not OR: the reset CR0 has CD|NW set.
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
        EntryMode::Linux64 { .. } => {
            write_page_tables(mem)?;
            sregs.cr3 = layout::PML4_START;
            sregs.cr4 = X86_CR4_PAE;
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
            sregs.efer = EFER_LME | EFER_LMA;
        }
    }
    Ok(())
}

/// General registers for `mode`.
pub fn boot_regs(mode: EntryMode) -> kvm_regs {
    match mode {
        EntryMode::Pvh { entry, start_info } => kvm_regs {
            rflags: 0x2,
            rip: entry,
            rbx: start_info,
            ..Default::default()
        },
        EntryMode::Linux64 { entry, zero_page } => kvm_regs {
            rflags: 0x2,
            rip: entry,
            rsp: layout::BOOT_STACK_POINTER,
            rbp: layout::BOOT_STACK_POINTER,
            rsi: zero_page,
            ..Default::default()
        },
    }
}

/// x87 and SSE control words as after FNINIT / reset.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_reg(l: &kvm_lapic_state, off: usize) -> u32 {
    let b = |i: usize| l.regs[off + i] as u8;
    u32::from_le_bytes([b(0), b(1), b(2), b(3)])
}

fn set_lapic_reg(l: &mut kvm_lapic_state, off: usize, v: u32) {
    for (i, b) in v.to_le_bytes().iter().enumerate() {
        l.regs[off + i] = *b as _;
    }
}

/// LINT0 = ExtINT (the PIC), LINT1 = NMI, as a PC's firmware leaves them.
pub fn set_lint(l: &mut kvm_lapic_state) {
    let mode = |v: u32, m: u32| (v & !0x700) | (m << 8);
    let l0 = lapic_reg(l, APIC_LVT0);
    set_lapic_reg(l, APIC_LVT0, mode(l0, APIC_MODE_EXTINT));
    let l1 = lapic_reg(l, APIC_LVT1);
    set_lapic_reg(l, APIC_LVT1, mode(l1, APIC_MODE_NMI));
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn gdt_entries_decode_to_flat_segments() {
        let gdt = boot_gdt();
        let cs64 = segment_from_gdt(gdt[GDT_CODE64], GDT_CODE64);
        assert_eq!(
            (cs64.selector, cs64.l, cs64.db, cs64.type_),
            (0x10, 1, 0, 0xb)
        );
        assert_eq!(
            (cs64.base, cs64.limit, cs64.present, cs64.g),
            (0, 0xffff_ffff, 1, 1)
        );
        let cs32 = segment_from_gdt(gdt[GDT_CODE32], GDT_CODE32);
        assert_eq!((cs32.selector, cs32.l, cs32.db), (0x08, 0, 1));
        let ds = segment_from_gdt(gdt[GDT_DATA], GDT_DATA);
        assert_eq!((ds.selector, ds.type_, ds.s), (0x18, 3, 1));
        let null = segment_from_gdt(0, 0);
        assert_eq!(null.unusable, 1);
    }

    #[test]
    fn long_mode_sregs_and_identity_map() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut s = kvm_sregs::default();
        let mode = EntryMode::Linux64 {
            entry: 0x100200,
            zero_page: layout::ZERO_PAGE_START,
        };
        setup_sregs(&mem, mode, &mut s).unwrap();
        assert_eq!(s.cr0, 0x8000_0031);
        assert_eq!(s.efer, EFER_LME | EFER_LMA);
        assert_eq!(s.cs.selector, 0x10);
        assert_eq!(s.ds.selector, 0x18);
        let pml4: u64 = mem.read_obj(GuestAddress(layout::PML4_START)).unwrap();
        assert_eq!(pml4, layout::PDPTE_START | 3);
        // The last 2 MiB page below 4 GiB maps to itself.
        let last: u64 = mem
            .read_obj(GuestAddress(layout::PDE_START + 3 * 0x1000 + 511 * 8))
            .unwrap();
        assert_eq!(last, 0xffe0_0000 | 0x83);
        let r = boot_regs(mode);
        assert_eq!(
            (r.rip, r.rsi, r.rflags),
            (0x100200, layout::ZERO_PAGE_START, 2)
        );
    }

    #[test]
    fn pvh_starts_flat_32_bit_without_paging() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut s = kvm_sregs {
            cr0: 0x6000_0010,
            ..Default::default()
        };
        let mode = EntryMode::Pvh {
            entry: 0x1000,
            start_info: layout::PVH_INFO_START,
        };
        setup_sregs(&mem, mode, &mut s).unwrap();
        assert_eq!(s.cr0, X86_CR0_PE | X86_CR0_ET);
        assert_eq!(s.cs.db, 1);
        assert_eq!(boot_regs(mode).rbx, layout::PVH_INFO_START);
    }

    #[test]
    fn lint_pins_get_extint_and_nmi() {
        let mut l = kvm_lapic_state::default();
        set_lint(&mut l);
        assert_eq!((lapic_reg(&l, APIC_LVT0) >> 8) & 7, APIC_MODE_EXTINT);
        assert_eq!((lapic_reg(&l, APIC_LVT1) >> 8) & 7, APIC_MODE_NMI);
    }
}

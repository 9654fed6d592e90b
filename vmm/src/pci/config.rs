//! A type-0 PCI configuration space: header, BARs and the capability list.
//!
//! Registers are kept as 64 little-endian dwords (the 256-byte conventional space;
//! the ECAM extended space reads as zero, which tells the guest "no extended
//! capabilities"). Every dword has a write mask, so read-only fields, BAR sizing
//! (the guest writes all ones and reads back the size mask) and partial writes all
//! follow from one rule: `new = (old & !mask) | (value & mask)`.

/// Number of dwords in the conventional configuration space.
pub const CONFIG_DWORDS: usize = 64;
/// First BAR register (dword index of offset 0x10).
pub const BAR0_REG: usize = 4;
/// Number of BARs in a type-0 header.
pub const NUM_BARS: usize = 6;
/// Command register bit: I/O space decoding enabled.
pub const COMMAND_IO: u16 = 1;
/// Command register bit: memory space decoding enabled.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command register bit: bus mastering (DMA) enabled.
pub const COMMAND_MASTER: u16 = 1 << 2;
/// Status register bit: the capability list at 0x34 is valid.
const STATUS_CAP_LIST: u32 = 1 << 4;
/// Offset of the capability pointer.
const CAP_PTR: usize = 0x34;
/// Where the first capability goes (after the 64-byte header).
const FIRST_CAP: usize = 0x40;

/// Identity of a function: what `lspci -n` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciHeader {
    pub vendor: u16,
    pub device: u16,
    pub revision: u8,
    /// Class code (base class << 16 | subclass << 8 | programming interface).
    pub class: u32,
    pub subsystem_vendor: u16,
    pub subsystem: u16,
}

/// What kind of BAR a region is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory BAR (below 4 GiB).
    Mem32,
    /// 64-bit memory BAR; it uses this BAR register and the next.
    Mem64,
    /// I/O space BAR: a range of ports (x86 decodes 16 bits of it).
    Io,
}

/// End of x86 port space: an I/O BAR decodes only below it.
pub const IO_SPACE_END: u64 = 0x1_0000;

#[derive(Debug, Clone, Copy)]
struct Bar {
    size: u64,
    kind: BarKind,
}

/// The configuration space of one function.
#[derive(Debug, Clone)]
pub struct ConfigSpace {
    regs: [u32; CONFIG_DWORDS],
    wmask: [u32; CONFIG_DWORDS],
    bars: [Option<Bar>; NUM_BARS],
    /// Offset of the last capability added, to chain the next one.
    last_cap: Option<usize>,
    next_cap: usize,
}

impl ConfigSpace {
    /// A header with no BARs and no capabilities. Command bits for memory and bus
    /// master, and the interrupt line, are writable.
    pub fn new(h: PciHeader) -> Self {
        let mut regs = [0u32; CONFIG_DWORDS];
        let mut wmask = [0u32; CONFIG_DWORDS];
        regs[0] = u32::from(h.vendor) | u32::from(h.device) << 16;
        regs[2] = u32::from(h.revision) | (h.class & 0xff_ffff) << 8;
        regs[11] = u32::from(h.subsystem_vendor) | u32::from(h.subsystem) << 16;
        // Command: I/O, memory, bus master, INTx disable (bit 10).
        wmask[1] = 0x0000_0407;
        // Cache line size and latency timer are plain storage for the guest.
        wmask[3] = 0x0000_ffff;
        // Interrupt line is scratch for the OS; the pin is 0 (none) until
        // `set_interrupt` gives the function one.
        wmask[15] = 0x0000_00ff;
        ConfigSpace {
            regs,
            wmask,
            bars: [None; NUM_BARS],
            last_cap: None,
            next_cap: FIRST_CAP,
        }
    }

    /// The register values (a saved machine keeps these; masks, BAR sizes and the
    /// capability chain come from the device model, which the restore builds again).
    pub fn save_regs(&self) -> Vec<u32> {
        self.regs.to_vec()
    }

    /// Puts saved register values back.
    pub fn restore_regs(&mut self, regs: &[u32]) -> Result<(), String> {
        if regs.len() != CONFIG_DWORDS {
            return Err(format!(
                "{} configuration registers, not {CONFIG_DWORDS}",
                regs.len()
            ));
        }
        self.regs.copy_from_slice(regs);
        Ok(())
    }

    /// Marks the function as a bridge-less multi-function header (bit 7 of the
    /// header type) so the guest scans functions 1..7 of the slot.
    pub fn set_multifunction(&mut self, on: bool) {
        if on {
            self.regs[3] |= 0x0080_0000;
        } else {
            self.regs[3] &= !0x0080_0000;
        }
    }

    /// Gives the function interrupt pin `pin` (1 = INTA#) and programs the
    /// Interrupt Line register with `line` (the GSI it is routed to), as firmware does.
    pub fn set_interrupt(&mut self, line: u8, pin: u8) {
        self.regs[15] = (self.regs[15] & !0xffff) | u32::from(pin) << 8 | u32::from(line);
    }

    /// Declares BAR `index` as a region of `size` bytes (a power of two, at
    /// least 16 for memory, 4 for I/O). A 64-bit BAR also claims register `index + 1`.
    pub fn add_bar(&mut self, index: usize, size: u64, kind: BarKind) {
        let min = if kind == BarKind::Io { 4 } else { 16 };
        assert!(
            size.is_power_of_two() && size >= min,
            "bad BAR size {size:#x}"
        );
        let reg = BAR0_REG + index;
        let mask = !(size - 1);
        match kind {
            BarKind::Mem32 => {
                self.regs[reg] = 0;
                self.wmask[reg] = mask as u32 & !0xf;
            }
            BarKind::Mem64 => {
                assert!(index + 1 < NUM_BARS, "64-bit BAR {index} has no upper half");
                // Type 10b = 64-bit, not prefetchable.
                self.regs[reg] = 0x4;
                self.wmask[reg] = mask as u32 & !0xf;
                self.wmask[reg + 1] = (mask >> 32) as u32;
            }
            BarKind::Io => {
                // Bit 0 = I/O space; the size mask covers all 32 bits, as on QEMU.
                self.regs[reg] = 0x1;
                self.wmask[reg] = mask as u32 & !0x3;
            }
        }
        self.bars[index] = Some(Bar { size, kind });
    }

    /// Programs BAR `index` with `addr` (what firmware would do).
    pub fn set_bar_address(&mut self, index: usize, addr: u64) {
        let bar = self.bars[index].expect("BAR declared before it is placed");
        let reg = BAR0_REG + index;
        let flags = Self::flag_bits(bar.kind);
        self.regs[reg] = (self.regs[reg] & flags) | (addr as u32 & !flags);
        if bar.kind == BarKind::Mem64 {
            self.regs[reg + 1] = (addr >> 32) as u32;
        }
    }

    /// The address BAR `index` is programmed with, if the BAR exists.
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let bar = self.bars[index]?;
        let reg = BAR0_REG + index;
        let low = u64::from(self.regs[reg] & !Self::flag_bits(bar.kind));
        Some(match bar.kind {
            BarKind::Mem32 | BarKind::Io => low,
            BarKind::Mem64 => low | u64::from(self.regs[reg + 1]) << 32,
        })
    }

    /// Declared BARs: (index, size, kind).
    pub fn bar_layout(&self) -> impl Iterator<Item = (usize, u64, BarKind)> + '_ {
        self.bars
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.map(|b| (i, b.size, b.kind)))
    }

    /// The low bits of a BAR register that are flags, not address.
    fn flag_bits(kind: BarKind) -> u32 {
        match kind {
            BarKind::Mem32 | BarKind::Mem64 => 0xf,
            BarKind::Io => 0x3,
        }
    }

    /// Memory BARs as programmed, skipping unassigned ones and ones mid-sizing
    /// (all ones written: the address would overflow past the end of space).
    pub fn bars(&self) -> Vec<(usize, u64, u64)> {
        self.bar_layout()
            .filter(|&(_, _, kind)| kind != BarKind::Io)
            .filter_map(|(i, size, _)| {
                let addr = self.bar_address(i)?;
                (addr != 0 && addr.checked_add(size).is_some()).then_some((i, addr, size))
            })
            .collect()
    }

    /// I/O BARs as programmed: (index, first port, size), skipping unassigned
    /// ones and ones beyond port space (mid-sizing).
    pub fn io_bars(&self) -> Vec<(usize, u64, u64)> {
        self.bar_layout()
            .filter(|&(_, _, kind)| kind == BarKind::Io)
            .filter_map(|(i, size, _)| {
                let addr = self.bar_address(i)?;
                (addr != 0 && addr + size <= IO_SPACE_END).then_some((i, addr, size))
            })
            .collect()
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.regs[1] as u16
    }

    /// Appends a capability. `body` starts with the capability ID and a
    /// placeholder next-pointer byte; its length is padded to a dword.
    /// `writable` gives per-byte write masks for the body (shorter = read-only rest).
    /// Returns the capability's offset in configuration space.
    pub fn add_capability(&mut self, body: &[u8], writable: &[u8]) -> usize {
        let off = self.next_cap;
        let len = body.len().div_ceil(4) * 4;
        assert!(
            off + len <= CONFIG_DWORDS * 4,
            "capabilities overflow config space"
        );
        for (i, &b) in body.iter().enumerate() {
            self.set_byte(off + i, b);
        }
        for (i, &m) in writable.iter().enumerate() {
            let pos = off + i;
            let shift = (pos % 4) * 8;
            self.wmask[pos / 4] |= u32::from(m) << shift;
        }
        // The next pointer is ours to write, never the guest's.
        self.set_byte(off + 1, 0);
        match self.last_cap {
            None => {
                self.set_byte(CAP_PTR, off as u8);
                self.regs[1] |= STATUS_CAP_LIST << 16;
            }
            Some(prev) => self.set_byte(prev + 1, off as u8),
        }
        self.last_cap = Some(off);
        self.next_cap = off + len;
        off
    }

    /// Reads register `reg`; the extended space reads as zero.
    pub fn read(&self, reg: usize) -> u32 {
        self.regs.get(reg).copied().unwrap_or(0)
    }

    /// Applies a guest write of `data` at byte `offset` in register `reg`,
    /// honouring the write masks. Returns the register's new value.
    pub fn write(&mut self, reg: usize, offset: u8, data: &[u8]) -> Option<u32> {
        if reg >= CONFIG_DWORDS || usize::from(offset) + data.len() > 4 {
            return None;
        }
        let mut value = 0u32;
        let mut lanes = 0u32;
        for (i, &b) in data.iter().enumerate() {
            let shift = (usize::from(offset) + i) * 8;
            value |= u32::from(b) << shift;
            lanes |= 0xff << shift;
        }
        let mask = self.wmask[reg] & lanes;
        self.regs[reg] = (self.regs[reg] & !mask) | (value & mask);
        Some(self.regs[reg])
    }

    /// Makes `len` bytes from byte `offset` writable by the guest: plain storage
    /// (chipset registers that firmware programs and reads back).
    pub fn set_writable(&mut self, offset: usize, len: usize) {
        for pos in offset..offset + len {
            self.wmask[pos / 4] |= 0xff << ((pos % 4) * 8);
        }
    }

    /// Reads one byte (for capability handlers).
    pub fn byte(&self, pos: usize) -> u8 {
        (self.regs[pos / 4] >> ((pos % 4) * 8)) as u8
    }

    /// Sets one byte regardless of write masks (device-side update).
    pub fn set_byte(&mut self, pos: usize, b: u8) {
        let shift = (pos % 4) * 8;
        let r = &mut self.regs[pos / 4];
        *r = (*r & !(0xff << shift)) | u32::from(b) << shift;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> PciHeader {
        PciHeader {
            vendor: 0x1af4,
            device: 0x1042,
            revision: 1,
            class: 0x01_8000,
            subsystem_vendor: 0x1af4,
            subsystem: 0x40,
        }
    }

    #[test]
    fn identity_registers_are_read_only() {
        let mut c = ConfigSpace::new(header());
        c.write(0, 0, &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(c.read(0), 0x1042_1af4);
        assert_eq!(c.read(2), 0x0180_0001);
    }

    #[test]
    fn bar_sizing_returns_size_mask_then_restores() {
        let mut c = ConfigSpace::new(header());
        c.add_bar(0, 0x4000, BarKind::Mem64);
        c.set_bar_address(0, 0x1_2000_0000);
        assert_eq!(c.bar_address(0), Some(0x1_2000_0000));
        // Sizing: write all ones to both halves, read back.
        c.write(4, 0, &[0xff; 4]);
        c.write(5, 0, &[0xff; 4]);
        assert_eq!(c.read(4), 0xffff_c004);
        assert_eq!(c.read(5), 0xffff_ffff);
        assert!(c.bars().is_empty(), "a BAR mid-sizing is not decoded");
        c.write(4, 0, &0x2000_0000u32.to_le_bytes());
        c.write(5, 0, &1u32.to_le_bytes());
        assert_eq!(c.bars(), vec![(0, 0x1_2000_0000, 0x4000)]);
    }

    #[test]
    fn io_bar_sizing_and_decoding() {
        let mut c = ConfigSpace::new(header());
        c.add_bar(4, 16, BarKind::Io);
        assert_eq!(c.read(8), 1, "I/O space indicator, no address yet");
        assert!(c.io_bars().is_empty());
        c.set_bar_address(4, 0xc040);
        assert_eq!(c.read(8), 0xc041);
        assert_eq!(c.io_bars(), vec![(4, 0xc040, 16)]);
        assert!(c.bars().is_empty(), "an I/O BAR is not a memory BAR");
        // Sizing: all ones read back as the size mask with the I/O bit.
        c.write(8, 0, &[0xff; 4]);
        assert_eq!(c.read(8), 0xffff_fff1);
        assert!(c.io_bars().is_empty(), "a BAR mid-sizing is not decoded");
        c.write(8, 0, &0xd000u32.to_le_bytes());
        assert_eq!(c.io_bars(), vec![(4, 0xd000, 16)]);
    }

    #[test]
    fn capability_chain_links_and_masks() {
        let mut c = ConfigSpace::new(header());
        let a = c.add_capability(&[0x09, 0xaa, 4, 1], &[]);
        let b = c.add_capability(&[0x11, 0, 0, 0, 0, 0, 0, 0], &[0, 0, 0, 0xc0]);
        assert_eq!((a, b), (0x40, 0x44));
        assert_eq!(c.read(0x34 / 4) & 0xff, 0x40);
        assert_ne!(c.read(1) & (STATUS_CAP_LIST << 16), 0);
        assert_eq!(c.byte(0x41), 0x44, "first cap points at the second");
        assert_eq!(c.byte(0x45), 0, "last cap ends the list");
        c.write(0x44 / 4, 2, &[0xff, 0xff]);
        assert_eq!(c.byte(0x47), 0xc0);
        assert_eq!(c.byte(0x46), 0);
    }

    #[test]
    fn interrupt_pin_is_read_only_and_line_is_scratch() {
        let mut c = ConfigSpace::new(header());
        assert_eq!(c.read(15) & 0xffff, 0);
        c.set_interrupt(19, 1);
        assert_eq!(c.read(15) & 0xffff, 0x0113);
        c.write(15, 0, &[0x0b, 0x04]);
        assert_eq!(
            c.read(15) & 0xffff,
            0x010b,
            "the OS may rewrite the line, not the pin"
        );
    }

    #[test]
    fn command_partial_writes() {
        let mut c = ConfigSpace::new(header());
        c.write(1, 0, &[0x06]);
        assert_eq!(c.command(), COMMAND_MEMORY | COMMAND_MASTER);
        assert_eq!(c.write(99, 0, &[1]), None);
        assert_eq!(c.read(200), 0);
    }
}

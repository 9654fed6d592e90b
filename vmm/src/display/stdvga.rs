//! PCI 1234:1111, QEMU's "standard VGA" (`VGA`) and `bochs-display`
//! (QEMU `docs/specs/standard-vga.rst`):
//!
//! * BAR0: the framebuffer ([`Vram`], a dirty-logged KVM memory slot);
//! * BAR2: 4 KiB of MMIO: EDID at 0x000, the VGA ports 0x3c0-0x3df at 0x400 (VGA
//!   only), DISPI registers at 0x500 + index × 2, and QEMU's "qext" block at 0x600
//!   (its size and the framebuffer byte order);
//! * the expansion ROM: SeaBIOS's vgabios (`vgabios-stdvga.bin` or
//!   `vgabios-bochs-display.bin` from Debian's `seabios` package), which SeaBIOS
//!   copies to 0xC0000 and runs;
//! * DISPI also at ports 0x1ce/0x1cf; for VGA the legacy ports and the 0xA0000 window.
//!
//! The two personalities differ in class code (VGA 0x0300, display-other 0x0380) and
//! in the legacy parts; everything the PCI device and the ports touch is one
//! [`VgaState`] behind a mutex, which the renderer ([`super::render`]) reads.

use std::sync::{Arc, Mutex};

use vm_memory::Bytes;

use super::dispi::Dispi;
use super::vga::VgaRegs;
use super::vram::Vram;
use crate::devices::bus::BusDevice;
use crate::pci::config::COMMAND_MEMORY;
use crate::pci::{BarKind, ConfigSpace, PciDevice, PciHeader};

/// Size of BAR2.
pub const MMIO_BAR_SIZE: u64 = 4096;
/// DISPI index/data ports.
pub const DISPI_PORT: u16 = 0x1ce;
pub const DISPI_PORTS: u64 = 3;
/// Legacy VGA ports 0x3b0-0x3df.
pub const VGA_PORTS_BASE: u16 = 0x3b0;
pub const VGA_PORTS_LEN: u64 = 0x30;
/// Expansion ROM register (dword index of offset 0x30).
const ROM_REG: usize = 12;
/// The qext block's size register value and the little-endian byte-order magic.
const QEXT_SIZE: u32 = 8;
const QEXT_LE: u32 = 0x1e1e_1e1e;

/// Everything of the device that guest accesses change and the renderer reads.
pub struct VgaState {
    pub dispi: Dispi,
    pub vram: Vram,
    /// The legacy VGA part (None for bochs-display).
    pub vga: Option<VgaRegs>,
    pub edid: [u8; 128],
}

/// The state as devices and the renderer share it.
pub type SharedState = Arc<Mutex<VgaState>>;

fn lock(s: &SharedState) -> std::sync::MutexGuard<'_, VgaState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl VgaState {
    fn dispi_read(&self, reg: u16) -> u16 {
        self.dispi.read(reg)
    }

    fn dispi_write(&mut self, reg: u16, v: u16) {
        let was = self.dispi.enabled();
        self.dispi.write(reg, v);
        if reg == super::dispi::ENABLE
            && !was
            && self.dispi.enabled()
            && v & super::dispi::NOCLEARMEM == 0
        {
            // A mode set clears the framebuffer unless asked not to.
            if let Some(m) = self.dispi.mode() {
                let len = (u64::from(m.stride) * u64::from(m.height)).min(self.vram.size());
                let zeros = vec![0u8; 1 << 16];
                let slice = self.vram.slice();
                let mut at = 0usize;
                while (at as u64) < len {
                    let n = (len as usize - at).min(zeros.len());
                    let _ = slice.write_slice(&zeros[..n], at);
                    at += n;
                }
            }
        }
    }

    /// BAR2 read.
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match offset {
            0..=0x3ff => {
                for (i, b) in data.iter_mut().enumerate() {
                    *b = self.edid.get(offset as usize + i).copied().unwrap_or(0);
                }
            }
            0x400..=0x41f => {
                if let Some(v) = &mut self.vga {
                    for (i, b) in data.iter_mut().enumerate() {
                        *b = v.port_read(0x3c0 + (offset - 0x400) as u16 + i as u16);
                    }
                }
            }
            0x500..=0x515 => {
                let v = self.dispi_read(((offset - 0x500) / 2) as u16);
                let bytes = v.to_le_bytes();
                let o = (offset & 1) as usize;
                for (i, b) in data.iter_mut().enumerate() {
                    *b = bytes.get(o + i).copied().unwrap_or(0);
                }
            }
            0x600..=0x607 => {
                let regs = [QEXT_SIZE.to_le_bytes(), QEXT_LE.to_le_bytes()].concat();
                for (i, b) in data.iter_mut().enumerate() {
                    *b = regs
                        .get((offset - 0x600) as usize + i)
                        .copied()
                        .unwrap_or(0);
                }
            }
            _ => {}
        }
    }

    /// BAR2 write.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            0x400..=0x41f => {
                if let Some(v) = &mut self.vga {
                    for (i, &b) in data.iter().enumerate() {
                        v.port_write(0x3c0 + (offset - 0x400) as u16 + i as u16, b);
                    }
                }
            }
            0x500..=0x515 if data.len() == 2 && offset & 1 == 0 => {
                let v = u16::from_le_bytes([data[0], data[1]]);
                self.dispi_write(((offset - 0x500) / 2) as u16, v);
            }
            // The byte-order register: only little endian is offered.
            _ => {}
        }
    }
}

/// The PCI function.
pub struct StdVgaPci {
    config: ConfigSpace,
    state: SharedState,
    rom: Option<Arc<Vec<u8>>>,
    /// Expansion ROM register as the guest wrote it, and the ROM BAR size.
    rom_reg: u32,
    rom_size: u32,
}

impl StdVgaPci {
    /// A 1234:1111 function: `vga` chooses the VGA class (else display-other),
    /// `rom` the option ROM image. BAR0 and BAR2 are placed at `bar0`/`bar2`.
    pub fn new(
        state: SharedState,
        vga: bool,
        rom: Option<Arc<Vec<u8>>>,
        bar0: u64,
        bar2: u64,
    ) -> StdVgaPci {
        let mut config = ConfigSpace::new(PciHeader {
            vendor: 0x1234,
            device: 0x1111,
            // Revision 2: qext present (Linux's bochs driver checks).
            revision: 2,
            class: if vga { 0x03_0000 } else { 0x03_8000 },
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        });
        let vram = lock(&state).vram.size();
        config.add_bar(0, vram, BarKind::Mem32);
        config.set_bar_address(0, bar0);
        config.add_bar(2, MMIO_BAR_SIZE, BarKind::Mem32);
        config.set_bar_address(2, bar2);
        let rom_size = rom
            .as_ref()
            .map_or(0, |r| (r.len() as u32).next_power_of_two().max(2048));
        StdVgaPci {
            config,
            state,
            rom,
            rom_reg: 0,
            rom_size,
        }
    }

    fn rom_addr(&self) -> Option<u64> {
        let addr = self.rom_reg & !0x7ff;
        (self.rom_size > 0 && self.rom_reg & 1 != 0 && addr != 0 && addr != !0x7ff)
            .then_some(u64::from(addr))
    }

    /// Maps the framebuffer where BAR0 decodes now, or unmaps it.
    fn sync_vram(&mut self) {
        let at = if self.memory_enabled() {
            self.config
                .bars()
                .into_iter()
                .find(|b| b.0 == 0)
                .map(|b| b.1)
        } else {
            None
        };
        lock(&self.state).vram.map(at);
    }
}

impl PciDevice for StdVgaPci {
    fn state_name(&self) -> String {
        "VGA".into()
    }
    fn read_config(&mut self, reg: usize) -> u32 {
        if reg == ROM_REG {
            return self.rom_reg;
        }
        self.config.read(reg)
    }

    fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]) {
        if reg == ROM_REG {
            let mut bytes = self.rom_reg.to_le_bytes();
            for (i, &b) in data.iter().enumerate() {
                if let Some(x) = bytes.get_mut(usize::from(offset) + i) {
                    *x = b;
                }
            }
            let mask = if self.rom_size == 0 {
                0
            } else {
                !(self.rom_size - 1) | 1
            };
            self.rom_reg = u32::from_le_bytes(bytes) & mask;
            return;
        }
        self.config.write(reg, offset, data);
        self.sync_vram();
    }

    fn bars(&self) -> Vec<(usize, u64, u64)> {
        let mut b = self.config.bars();
        if let Some(addr) = self.rom_addr() {
            b.push((6, addr, u64::from(self.rom_size)));
        }
        b
    }

    fn memory_enabled(&self) -> bool {
        self.config.command() & COMMAND_MEMORY != 0
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        match bar {
            0 => lock(&self.state).vram.read(offset, data),
            2 => lock(&self.state).mmio_read(offset, data),
            6 => {
                let rom = self.rom.as_deref().map_or(&[][..], |r| r.as_slice());
                for (i, b) in data.iter_mut().enumerate() {
                    *b = rom.get(offset as usize + i).copied().unwrap_or(0xff);
                }
            }
            _ => data.fill(0xff),
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        match bar {
            0 => lock(&self.state).vram.write(offset, data),
            2 => lock(&self.state).mmio_write(offset, data),
            _ => {}
        }
    }

    fn bar_moved(&mut self, _bar: usize, _old: u64, _new: u64) {
        self.sync_vram();
    }
}

/// The DISPI ports 0x1ce-0x1d0 and, for VGA, the legacy ports 0x3b0-0x3df.
pub struct VgaPorts(pub SharedState);

impl BusDevice for VgaPorts {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let port = (base + offset) as u16;
        let mut s = lock(&self.0);
        data.fill(0xff);
        if (DISPI_PORT..DISPI_PORT + DISPI_PORTS as u16).contains(&port) {
            let v = if port == DISPI_PORT {
                s.dispi.index
            } else {
                s.dispi_read(s.dispi.index)
            };
            let b = v.to_le_bytes();
            for (i, d) in data.iter_mut().enumerate().take(2) {
                *d = b[i];
            }
            return;
        }
        if let Some(v) = &mut s.vga {
            for (i, d) in data.iter_mut().enumerate() {
                *d = v.port_read(port + i as u16);
            }
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let port = (base + offset) as u16;
        let mut s = lock(&self.0);
        if (DISPI_PORT..DISPI_PORT + DISPI_PORTS as u16).contains(&port) {
            let v = match data {
                [a] => u16::from(*a),
                [a, b, ..] => u16::from_le_bytes([*a, *b]),
                [] => return,
            };
            if port == DISPI_PORT {
                s.dispi.index = v;
            } else {
                let i = s.dispi.index;
                s.dispi_write(i, v);
            }
            return;
        }
        if let Some(v) = &mut s.vga {
            // A 16-bit write to an index port sets index and data (outw 0x3c4).
            for (i, &b) in data.iter().enumerate() {
                v.port_write(port + i as u16, b);
            }
        }
    }
}

/// The legacy window 0xA0000-0xBFFFF.
pub struct VgaWindow(pub SharedState);

impl BusDevice for VgaWindow {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let mut s = lock(&self.0);
        match &mut s.vga {
            Some(v) => {
                for (i, d) in data.iter_mut().enumerate() {
                    *d = v.mem_read(offset + i as u64);
                }
            }
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let mut s = lock(&self.0);
        if let Some(v) = &mut s.vga {
            for (i, &d) in data.iter().enumerate() {
                v.mem_write(offset + i as u64, d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(vga: bool) -> (StdVgaPci, SharedState) {
        let state = Arc::new(Mutex::new(VgaState {
            dispi: Dispi::new(16 << 20),
            vram: Vram::new(16 << 20, None, 0).unwrap(),
            vga: vga.then(VgaRegs::new),
            edid: super::super::edid::edid(1024, 768),
        }));
        let rom = Arc::new(vec![0x55, 0xaa, 0x40]);
        let d = StdVgaPci::new(state.clone(), vga, Some(rom), 0xe000_0000, 0xe100_0000);
        (d, state)
    }

    #[test]
    fn identity_bars_and_rom_sizing() {
        let (mut d, _) = device(true);
        assert_eq!(d.read_config(0), 0x1111_1234);
        assert_eq!(d.read_config(2) >> 8, 0x03_0000);
        assert_eq!(device(false).0.read_config(2) >> 8, 0x03_8000);
        d.write_config(12, 0, &0xffff_f800u32.to_le_bytes());
        assert_eq!(d.read_config(12), 0xffff_f800, "2 KiB ROM BAR, not enabled");
        d.write_config(12, 0, &0xfeb0_0001u32.to_le_bytes());
        d.write_config(1, 0, &[0x02]);
        let bars = d.bars();
        assert!(bars.contains(&(0, 0xe000_0000, 16 << 20)));
        assert!(bars.contains(&(2, 0xe100_0000, 4096)));
        assert!(bars.contains(&(6, 0xfeb0_0000, 2048)));
        let mut b = [0u8; 2];
        d.bar_read(6, 0, &mut b);
        assert_eq!(b, [0x55, 0xaa]);
    }

    #[test]
    fn dispi_through_mmio_and_ports_edid_and_qext() {
        let (mut d, state) = device(false);
        let mut b = [0u8; 2];
        d.bar_read(2, 0x500, &mut b);
        assert_eq!(u16::from_le_bytes(b), 0xb0c5);
        d.bar_write(2, 0x502, &640u16.to_le_bytes());
        let mut ports = VgaPorts(state.clone());
        ports.write(0x1ce, 0, &[2]);
        ports.write(0x1ce, 1, &480u16.to_le_bytes());
        ports.write(0x1ce, 0, &[3]);
        ports.write(0x1ce, 1, &32u16.to_le_bytes());
        ports.write(0x1ce, 0, &[4]);
        ports.write(0x1ce, 1, &0x41u16.to_le_bytes());
        let m = state.lock().unwrap().dispi.mode().unwrap();
        assert_eq!((m.width, m.height, m.bpp, m.stride), (640, 480, 32, 2560));
        let mut e = [0u8; 8];
        d.bar_read(2, 0, &mut e);
        assert_eq!(e, [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
        let mut q = [0u8; 4];
        d.bar_read(2, 0x604, &mut q);
        assert_eq!(u32::from_le_bytes(q), QEXT_LE);
        // bochs-display has no legacy registers.
        d.bar_read(2, 0x41a, &mut b[..1]);
        assert_eq!(b[0], 0);
    }
}

//! The legacy VGA register file and its 256 KiB of planar memory, as the VGA
//! personality of PCI 1234:1111 exposes them: ports 0x3c0-0x3df (and the 0x3b4/0x3b5
//! mono CRTC pair), the same ports at BAR2 + 0x400, and the 0xA0000-0xBFFFF window.
//!
//! Memory is stored plane-interleaved: byte `offset * 4 + plane`. In odd/even mode
//! (text), address bit 0 picks plane 0 or 1 and the rest is the offset, so character
//! `i` of the screen is byte `i * 4` and its attribute `i * 4 + 1`; the font that
//! the BIOS loads into plane 2 is at `glyph_offset * 4 + 2`. In chain-4 mode (mode
//! 13h) an address maps straight onto that byte index. Otherwise (planar modes,
//! and the font load) the four write modes and two read modes of the Graphics
//! Controller apply, with the 32-bit latch. This follows the IBM VGA technical
//! reference; text mode and the font load are what firmware and boot loaders use.

/// Bytes of planar memory (4 planes × 64 KiB).
pub const PLANES_SIZE: usize = 4 << 16;
/// The legacy memory window.
pub const WINDOW_BASE: u64 = 0xa_0000;
pub const WINDOW_SIZE: u64 = 0x2_0000;

/// VGA registers and planar memory.
#[derive(Clone)]
pub struct VgaRegs {
    pub misc: u8,
    pub seq_index: u8,
    pub seq: [u8; 8],
    pub gc_index: u8,
    pub gc: [u8; 16],
    pub crtc_index: u8,
    pub crtc: [u8; 32],
    pub ar_index: u8,
    /// Attribute controller flip-flop: false = next write to 0x3c0 is an index.
    pub ar_data_next: bool,
    pub ar: [u8; 32],
    pub dac_mask: u8,
    pub dac_read: u16,
    pub dac_write: u16,
    /// 256 entries × (r, g, b), 6 bits each.
    pub dac: [u8; 768],
    pub dac_state: u8,
    feature: u8,
    retrace: u8,
    latch: u32,
    pub planes: Vec<u8>,
    /// Bumped on every change that can affect the picture (the renderer's cue).
    pub generation: u64,
}

impl Default for VgaRegs {
    fn default() -> Self {
        Self::new()
    }
}

impl VgaRegs {
    /// Power-on state: everything zero (the option ROM programs a mode).
    pub fn new() -> VgaRegs {
        VgaRegs {
            misc: 0,
            seq_index: 0,
            seq: [0; 8],
            gc_index: 0,
            gc: [0; 16],
            crtc_index: 0,
            crtc: [0; 32],
            ar_index: 0,
            ar_data_next: false,
            ar: [0; 32],
            dac_mask: 0xff,
            dac_read: 0,
            dac_write: 0,
            dac: [0; 768],
            dac_state: 0,
            feature: 0,
            retrace: 0,
            latch: 0,
            planes: vec![0; PLANES_SIZE],
            generation: 0,
        }
    }

    /// Whether the CRTC answers at 0x3d4 (colour) rather than 0x3b4 (mono).
    fn color(&self) -> bool {
        self.misc & 1 != 0
    }

    /// Reads port `port` (0x3b0-0x3df).
    pub fn port_read(&mut self, port: u16) -> u8 {
        let mono_port = matches!(port, 0x3b4 | 0x3b5 | 0x3ba);
        let color_port = matches!(port, 0x3d4 | 0x3d5 | 0x3da);
        if (mono_port && self.color()) || (color_port && !self.color()) {
            return 0xff;
        }
        match port {
            0x3c0 => {
                if self.ar_data_next {
                    0
                } else {
                    self.ar_index
                }
            }
            0x3c1 => self.ar[usize::from(self.ar_index & 0x1f)],
            0x3c2 => 0x10, // switch sense
            0x3c4 => self.seq_index,
            0x3c5 => self.seq[usize::from(self.seq_index & 7)],
            0x3c6 => self.dac_mask,
            0x3c7 => self.dac_state,
            0x3c8 => (self.dac_write / 3) as u8,
            0x3c9 => {
                let v = self.dac[usize::from(self.dac_read % 768)];
                self.dac_read = (self.dac_read + 1) % 768;
                v
            }
            0x3ca => self.feature,
            0x3cc => self.misc,
            0x3ce => self.gc_index,
            0x3cf => self.gc[usize::from(self.gc_index & 0xf)],
            0x3b4 | 0x3d4 => self.crtc_index,
            0x3b5 | 0x3d5 => self.crtc[usize::from(self.crtc_index & 0x1f)],
            0x3ba | 0x3da => {
                // Input status 1: reading resets the attribute flip-flop. The
                // retrace bits toggle so loops that wait for a retrace end.
                self.ar_data_next = false;
                self.retrace ^= 0x09;
                self.retrace
            }
            _ => 0xff,
        }
    }

    /// Writes port `port` (0x3b0-0x3df).
    pub fn port_write(&mut self, port: u16, v: u8) {
        let mono_port = matches!(port, 0x3b4 | 0x3b5 | 0x3ba);
        let color_port = matches!(port, 0x3d4 | 0x3d5 | 0x3da);
        if (mono_port && self.color()) || (color_port && !self.color()) {
            return;
        }
        self.generation += 1;
        match port {
            0x3c0 => {
                if self.ar_data_next {
                    let i = usize::from(self.ar_index & 0x1f);
                    if i < 0x15 {
                        self.ar[i] = v;
                    }
                } else {
                    self.ar_index = v & 0x3f;
                }
                self.ar_data_next = !self.ar_data_next;
            }
            0x3c2 => self.misc = v,
            0x3c4 => self.seq_index = v & 7,
            0x3c5 => self.seq[usize::from(self.seq_index & 7)] = v,
            0x3c6 => self.dac_mask = v,
            0x3c7 => {
                self.dac_read = u16::from(v) * 3;
                self.dac_state = 0;
            }
            0x3c8 => {
                self.dac_write = u16::from(v) * 3;
                self.dac_state = 3;
            }
            0x3c9 => {
                self.dac[usize::from(self.dac_write % 768)] = v & 0x3f;
                self.dac_write = (self.dac_write + 1) % 768;
            }
            0x3ce => self.gc_index = v & 0xf,
            0x3cf => self.gc[usize::from(self.gc_index & 0xf)] = v,
            0x3b4 | 0x3d4 => self.crtc_index = v & 0x1f,
            0x3b5 | 0x3d5 => {
                let i = usize::from(self.crtc_index & 0x1f);
                // CR00-CR07 are locked by CR11 bit 7 (except CR07's line compare bit 4).
                if self.crtc[0x11] & 0x80 != 0 && i <= 7 {
                    if i == 7 {
                        self.crtc[7] = (self.crtc[7] & !0x10) | (v & 0x10);
                    }
                    return;
                }
                self.crtc[i] = v;
            }
            0x3ba | 0x3da => self.feature = v & 0x10,
            _ => {}
        }
    }

    /// The window the Graphics Controller maps: (base offset in 0xA0000.., size).
    fn window(&self) -> (u64, u64) {
        match (self.gc[6] >> 2) & 3 {
            0 => (0, 0x2_0000),
            1 => (0, 0x1_0000),
            2 => (0x1_0000, 0x8000),
            _ => (0x1_8000, 0x8000),
        }
    }

    /// Reads one byte at `addr` (offset from 0xA0000).
    pub fn mem_read(&mut self, addr: u64) -> u8 {
        let (base, size) = self.window();
        if addr < base || addr - base >= size {
            return 0xff;
        }
        let a = (addr - base) as usize;
        if self.seq[4] & 0x08 != 0 {
            // Chain 4.
            return self.planes[a % PLANES_SIZE];
        }
        if self.gc[5] & 0x10 != 0 {
            // Odd/even.
            let plane = (self.gc[4] & 2) as usize | (a & 1);
            return self.planes[((a & !1) << 1 | plane) % PLANES_SIZE];
        }
        let off = (a & 0xffff) * 4;
        self.latch = u32::from_le_bytes(self.planes[off..off + 4].try_into().expect("4 bytes"));
        if self.gc[5] & 0x08 == 0 {
            // Read mode 0: the plane Read Map Select names.
            (self.latch >> ((self.gc[4] & 3) * 8)) as u8
        } else {
            // Read mode 1: colour compare over the planes Color Don't Care keeps.
            let mut result = 0xffu8;
            for p in 0..4 {
                if self.gc[7] & (1 << p) == 0 {
                    continue;
                }
                let plane = (self.latch >> (p * 8)) as u8;
                let want = if self.gc[2] & (1 << p) != 0 { 0xff } else { 0 };
                result &= !(plane ^ want);
            }
            result
        }
    }

    /// Writes one byte at `addr` (offset from 0xA0000).
    pub fn mem_write(&mut self, addr: u64, v: u8) {
        let (base, size) = self.window();
        if addr < base || addr - base >= size {
            return;
        }
        self.generation += 1;
        let a = (addr - base) as usize;
        let map_mask = self.seq[2] & 0xf;
        if self.seq[4] & 0x08 != 0 {
            if map_mask & (1 << (a & 3)) != 0 {
                self.planes[a % PLANES_SIZE] = v;
            }
            return;
        }
        if self.gc[5] & 0x10 != 0 {
            let plane = (self.gc[4] & 2) as usize | (a & 1);
            if map_mask & (1 << plane) != 0 {
                self.planes[((a & !1) << 1 | plane) % PLANES_SIZE] = v;
            }
            return;
        }
        let expand = |bits: u8| -> u32 {
            (0..4).fold(0u32, |acc, p| {
                acc | if bits & (1 << p) != 0 {
                    0xff << (p * 8)
                } else {
                    0
                }
            })
        };
        let rotate = self.gc[3] & 7;
        let mut bit_mask = self.gc[8];
        let data: u32 = match self.gc[5] & 3 {
            0 => {
                let b = v.rotate_right(u32::from(rotate));
                let mut d = u32::from_le_bytes([b; 4]);
                let enable = expand(self.gc[1]);
                d = (d & !enable) | (expand(self.gc[0]) & enable);
                d
            }
            1 => {
                // Latch copy.
                self.store_planes(a, self.latch, map_mask);
                return;
            }
            2 => expand(v),
            _ => {
                let b = v.rotate_right(u32::from(rotate));
                bit_mask &= b;
                expand(self.gc[0])
            }
        };
        let data = match (self.gc[3] >> 3) & 3 {
            0 => data,
            1 => data & self.latch,
            2 => data | self.latch,
            _ => data ^ self.latch,
        };
        let m = u32::from_le_bytes([bit_mask; 4]);
        let data = (data & m) | (self.latch & !m);
        self.store_planes(a, data, map_mask);
    }

    fn store_planes(&mut self, a: usize, data: u32, map_mask: u8) {
        let off = (a & 0xffff) * 4;
        for p in 0..4 {
            if map_mask & (1 << p) != 0 {
                self.planes[off + p] = (data >> (p * 8)) as u8;
            }
        }
    }

    /// Whether the CRTC and attribute controller describe a text mode.
    pub fn text_mode(&self) -> bool {
        self.gc[6] & 1 == 0 && self.ar[0x10] & 1 == 0
    }

    /// Whether the screen is on (attribute controller palette address source set,
    /// sequencer not blanking).
    pub fn screen_on(&self) -> bool {
        self.ar_index & 0x20 != 0 && self.seq[1] & 0x20 == 0
    }

    /// The colour of DAC entry `i` as 0x00RRGGBB.
    pub fn dac_rgb(&self, i: u8) -> u32 {
        let i = usize::from(i & self.dac_mask) * 3;
        let c = |v: u8| {
            let v = u32::from(v & 0x3f);
            v << 2 | v >> 4
        };
        c(self.dac[i]) << 16 | c(self.dac[i + 1]) << 8 | c(self.dac[i + 2])
    }

    /// The DAC index of attribute palette entry `colour` (0-15).
    pub fn palette_index(&self, colour: u8) -> u8 {
        let mut v = self.ar[usize::from(colour & 0xf)] & 0x3f;
        let cs = self.ar[0x14];
        if self.ar[0x10] & 0x80 != 0 {
            v = (v & 0x0f) | (cs & 0x03) << 4;
        }
        v | (cs & 0x0c) << 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registers as the BIOS leaves them in mode 3 (80×25 text, odd/even).
    pub(crate) fn mode3() -> VgaRegs {
        let mut r = VgaRegs::new();
        r.misc = 0x67;
        r.seq[1] = 0x00; // 9-dot cells
        r.seq[2] = 0x03;
        r.seq[4] = 0x02;
        r.gc[5] = 0x10;
        r.gc[6] = 0x0e;
        r
    }

    #[test]
    fn text_writes_land_in_planes_0_and_1() {
        let mut r = mode3();
        r.mem_write(0x1_8000, b'A');
        r.mem_write(0x1_8001, 0x1f);
        r.mem_write(0x1_8002, b'B');
        assert_eq!(&r.planes[0..2], &[b'A', 0x1f]);
        assert_eq!(r.planes[4], b'B');
        assert_eq!(r.mem_read(0x1_8001), 0x1f);
        assert_eq!(r.mem_read(0), 0xff, "0xA0000 is outside the B8000 window");
    }

    #[test]
    fn font_load_writes_plane_2_in_planar_mode() {
        // What a BIOS does to load a font: map plane 2 only, sequential addressing,
        // window at A0000, write mode 0 with nothing but the bit mask set.
        let mut r = mode3();
        r.seq[2] = 0x04;
        r.seq[4] = 0x06;
        r.gc[4] = 0x02;
        r.gc[5] = 0x00;
        r.gc[6] = 0x04;
        r.gc[8] = 0xff;
        r.mem_write(0x41 * 32, 0x18);
        assert_eq!(r.planes[0x41 * 32 * 4 + 2], 0x18);
        assert_eq!(r.planes[0x41 * 32 * 4], 0, "other planes untouched");
        // Read mode 0 from plane 2 gives it back.
        assert_eq!(r.mem_read(0x41 * 32), 0x18);
    }

    #[test]
    fn write_modes_use_latch_set_reset_and_bit_mask() {
        let mut r = VgaRegs::new();
        r.seq[2] = 0x0f;
        r.seq[4] = 0x06;
        r.gc[6] = 0x05; // graphics, A0000 64K
        r.gc[8] = 0xff;
        // Mode 2: colour 5 (planes 0 and 2) to all bits.
        r.gc[5] = 2;
        r.mem_write(0, 0x05);
        assert_eq!(&r.planes[0..4], &[0xff, 0, 0xff, 0]);
        // Mode 0 with set/reset on plane 1 and bit mask 0x0f: latch keeps the rest.
        r.mem_read(0);
        r.gc[5] = 0;
        r.gc[0] = 0x02;
        r.gc[1] = 0x02;
        r.gc[8] = 0x0f;
        r.mem_write(0, 0x00);
        assert_eq!(&r.planes[0..4], &[0xf0, 0x0f, 0xf0, 0]);
        // Mode 1 copies the latch to another address.
        r.mem_read(0);
        r.gc[5] = 1;
        r.mem_write(1, 0x99);
        assert_eq!(&r.planes[4..8], &[0xf0, 0x0f, 0xf0, 0]);
    }

    #[test]
    fn attribute_flip_flop_and_dac() {
        let mut r = mode3();
        r.port_read(0x3da);
        r.port_write(0x3c0, 0x01);
        r.port_write(0x3c0, 0x3f);
        assert_eq!(r.ar[1], 0x3f);
        r.port_write(0x3c0, 0x20);
        assert!(r.ar_index & 0x20 != 0);
        r.port_write(0x3c8, 7);
        for v in [0x3f, 0x20, 0x00] {
            r.port_write(0x3c9, v);
        }
        assert_eq!(r.dac_rgb(7), 0xff8200);
        r.port_write(0x3c7, 7);
        assert_eq!(r.port_read(0x3c9), 0x3f);
        assert_eq!(r.port_read(0x3b5), 0xff, "mono CRTC off in colour mode");
    }
}

//! The Bochs VBE "DISPI" register file: how guests pick a linear framebuffer mode
//! on PCI 1234:1111 (QEMU's `docs/specs/standard-vga.rst`, Bochs `vbe.h`).
//!
//! Sixteen-bit registers, reached through an index/data port pair (0x1ce/0x1cf) or
//! as MMIO at BAR2 + 0x500 + index × 2. The mode is on when `ENABLE` has bit 0;
//! the framebuffer starts at BAR0 + (`Y_OFFSET` × `VIRT_WIDTH` + `X_OFFSET`) ×
//! bytes per pixel.

/// Register indices.
pub const ID: u16 = 0;
pub const XRES: u16 = 1;
pub const YRES: u16 = 2;
pub const BPP: u16 = 3;
pub const ENABLE: u16 = 4;
pub const BANK: u16 = 5;
pub const VIRT_WIDTH: u16 = 6;
pub const VIRT_HEIGHT: u16 = 7;
pub const X_OFFSET: u16 = 8;
pub const Y_OFFSET: u16 = 9;
pub const VIDEO_MEMORY_64K: u16 = 10;
const COUNT: usize = 11;

/// The newest interface version (QEMU answers 0xB0C5).
pub const ID5: u16 = 0xb0c5;
/// `ENABLE` bits.
pub const ENABLED: u16 = 0x01;
pub const GETCAPS: u16 = 0x02;
pub const LFB_ENABLED: u16 = 0x40;
pub const NOCLEARMEM: u16 = 0x80;
/// Largest resolution offered (QEMU's VBE_DISPI_MAX_XRES/YRES).
pub const MAX_XRES: u16 = 16000;
pub const MAX_YRES: u16 = 12000;

/// A framebuffer mode: what the guest's pixels in VRAM mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    pub width: u32,
    pub height: u32,
    /// 8, 15, 16, 24 or 32.
    pub bpp: u32,
    /// Bytes from one scanline to the next.
    pub stride: u32,
    /// Byte offset of the visible top-left pixel in VRAM.
    pub offset: u64,
}

/// The register file.
#[derive(Debug, Clone)]
pub struct Dispi {
    regs: [u16; COUNT],
    /// The index latched through port 0x1ce.
    pub index: u16,
    vram_size: u64,
}

impl Dispi {
    /// Registers of a device with `vram_size` bytes of framebuffer.
    pub fn new(vram_size: u64) -> Dispi {
        let mut regs = [0u16; COUNT];
        regs[ID as usize] = ID5;
        regs[VIDEO_MEMORY_64K as usize] = (vram_size >> 16).min(0xffff) as u16;
        Dispi {
            regs,
            index: 0,
            vram_size,
        }
    }

    /// Reads register `index`.
    pub fn read(&self, index: u16) -> u16 {
        let i = usize::from(index);
        if i >= COUNT {
            return 0;
        }
        if index != ENABLE && self.regs[ENABLE as usize] & GETCAPS != 0 {
            // With GETCAPS set, the resolution registers read their maxima.
            match index {
                XRES => return MAX_XRES,
                YRES => return MAX_YRES,
                BPP => return 32,
                _ => {}
            }
        }
        self.regs[i]
    }

    /// Writes register `index`.
    pub fn write(&mut self, index: u16, value: u16) {
        let i = usize::from(index);
        match index {
            // The guest announces the interface version it speaks; any of
            // B0C0..B0C5 is accepted and read back.
            ID if (0xb0c0..=ID5).contains(&value) => self.regs[i] = value,
            ID => {}
            XRES => self.regs[i] = value.min(MAX_XRES),
            YRES => self.regs[i] = value.min(MAX_YRES),
            BPP => {
                let bpp = if value == 0 { 8 } else { value };
                if matches!(bpp, 4 | 8 | 15 | 16 | 24 | 32) {
                    self.regs[i] = bpp;
                }
            }
            ENABLE => {
                let was = self.regs[i] & ENABLED != 0;
                self.regs[i] = value;
                if value & ENABLED != 0 && !was {
                    // Enabling a mode resets the virtual size and panning, as QEMU does.
                    self.regs[VIRT_WIDTH as usize] = self.regs[XRES as usize];
                    self.regs[VIRT_HEIGHT as usize] = self.regs[YRES as usize];
                    self.regs[X_OFFSET as usize] = 0;
                    self.regs[Y_OFFSET as usize] = 0;
                }
            }
            BANK | X_OFFSET | Y_OFFSET => self.regs[i] = value,
            VIRT_WIDTH => {
                self.regs[i] = value;
                let stride = u64::from(value) * self.bytes_per_pixel();
                if let Some(lines) = self.vram_size.checked_div(stride) {
                    self.regs[VIRT_HEIGHT as usize] = lines.min(0xffff) as u16;
                }
            }
            VIRT_HEIGHT | VIDEO_MEMORY_64K => {}
            _ => {}
        }
    }

    fn bytes_per_pixel(&self) -> u64 {
        u64::from(self.regs[BPP as usize]).div_ceil(8).max(1)
    }

    /// Whether a DISPI mode is on (then the legacy VGA registers do not drive the screen).
    pub fn enabled(&self) -> bool {
        self.regs[ENABLE as usize] & ENABLED != 0
    }

    /// The mode the registers describe, if enabled and fitting in VRAM.
    pub fn mode(&self) -> Option<Mode> {
        if !self.enabled() {
            return None;
        }
        let r = |i: u16| u32::from(self.regs[i as usize]);
        let (width, height, bpp) = (r(XRES), r(YRES), r(BPP));
        if width == 0 || height == 0 || !matches!(bpp, 8 | 15 | 16 | 24 | 32) {
            return None;
        }
        let bypp = bpp.div_ceil(8);
        let virt = r(VIRT_WIDTH).max(width);
        let stride = virt * bypp;
        let offset =
            (u64::from(r(Y_OFFSET)) * u64::from(virt) + u64::from(r(X_OFFSET))) * u64::from(bypp);
        let end = offset + u64::from(stride) * u64::from(height - 1) + u64::from(width * bypp);
        (end <= self.vram_size).then_some(Mode {
            width,
            height,
            bpp,
            stride,
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_bochs_drm_mode_set() {
        // The sequence drivers/gpu/drm/tiny/bochs.c writes for 1024x768x32.
        let mut d = Dispi::new(16 << 20);
        assert_eq!(d.read(ID), 0xb0c5);
        assert_eq!(d.read(VIDEO_MEMORY_64K), 256);
        d.write(ENABLE, 0);
        d.write(BPP, 32);
        d.write(XRES, 1024);
        d.write(YRES, 768);
        d.write(BANK, 0);
        d.write(VIRT_WIDTH, 1024);
        d.write(VIRT_HEIGHT, 768);
        d.write(X_OFFSET, 0);
        d.write(Y_OFFSET, 0);
        assert_eq!(d.mode(), None, "not enabled yet");
        d.write(ENABLE, ENABLED | LFB_ENABLED);
        assert_eq!(
            d.mode(),
            Some(Mode {
                width: 1024,
                height: 768,
                bpp: 32,
                stride: 4096,
                offset: 0
            })
        );
        // Page flip: the second buffer below the first.
        d.write(Y_OFFSET, 768);
        assert_eq!(d.mode().unwrap().offset, 768 * 4096);
    }

    #[test]
    fn getcaps_reports_maxima_and_oversized_modes_are_refused() {
        let mut d = Dispi::new(4 << 20);
        d.write(ENABLE, GETCAPS);
        assert_eq!(d.read(XRES), MAX_XRES);
        assert_eq!(d.read(BPP), 32);
        d.write(ENABLE, 0);
        d.write(XRES, 2048);
        d.write(YRES, 1536);
        d.write(BPP, 32);
        d.write(ENABLE, ENABLED);
        assert_eq!(d.mode(), None, "12 MiB does not fit in 4 MiB");
        d.write(BPP, 7);
        assert_eq!(d.read(BPP), 32, "invalid depth ignored");
    }
}

//! VGA graphics modes as the CRT controller scans them out of planar memory: the
//! 16-colour planar modes (0Dh, 0Eh, 10h, 12h: one bit per plane per pixel, through
//! the attribute palette and the DAC) and the 256-colour mode 13h (chain-4, one byte
//! a pixel straight into the DAC). Boot screens use them: Windows' boot video driver
//! (mode 12h), old boot loaders and DOS programs (13h).
//!
//! The picture has the CRTC's size in dot clocks, as QEMU shows it: mode 13h's 320
//! pixels are each drawn twice across a 640-wide screen and its 200 lines twice down
//! 400 (the maximum-scan-line register), so a viewer gets the aspect the monitor
//! would. Scan-out follows the IBM VGA reference: the start address and offset
//! registers, the max scan line and double-scan repeat, the CGA/Hercules address
//! interleave of the mode control register. CGA 4-colour shift mode (modes 4/5) is
//! not drawn (the caller shows black): nothing we boot uses it.

use super::vga::VgaRegs;
use super::Image;

/// Largest picture drawn; registers beyond it are taken as garbage, not a mode.
const MAX_W: u32 = 2048;
const MAX_H: u32 = 1536;

/// Renders the graphics mode `v` describes, or `None` for one not drawn (CGA
/// shift mode, or a geometry no VGA can scan out).
pub fn render_graphics(v: &VgaRegs) -> Option<Image> {
    let cr = &v.crtc;
    let shift = (v.gc[5] >> 5) & 3;
    if shift == 1 {
        return None;
    }
    let width = (u32::from(cr[1]) + 1) * 8;
    let height =
        (u32::from(cr[0x12]) | u32::from(cr[7] & 0x02) << 7 | u32::from(cr[7] & 0x40) << 3) + 1;
    // Dot clock ÷ 2 (SR01 bit 3): planar modes 0Dh/0Eh draw each pixel twice.
    let half_clock = shift == 0 && v.seq[1] & 0x08 != 0;
    let out_w = if half_clock { width * 2 } else { width };
    if out_w > MAX_W || height > MAX_H {
        return None;
    }
    if !v.screen_on() {
        return Some(Image::black(out_w, height));
    }
    // Each memory row is shown (max scan line + 1) times, twice that with double scan.
    let double_scan = u32::from(cr[9] >> 7);
    let repeat = ((u32::from(cr[9] & 0x1f) + 1) << double_scan) as usize;
    // Byte addresses in the plane-interleaved store (4 bytes per planar address).
    let mut row_addr = (u32::from(cr[0x0c]) << 8 | u32::from(cr[0x0d])) as usize * 4;
    let line_offset = usize::from(cr[0x13]) * 8;
    let mut palette = [0u32; 16];
    for (i, p) in palette.iter_mut().enumerate() {
        *p = v.dac_rgb(v.palette_index(i as u8));
    }
    let plane_enable = v.ar[0x12] & 0x0f;
    let len = v.planes.len();
    let mut img = Image::black(out_w, height);
    let mut mem_row = 0usize;
    for y in 0..height as usize {
        let addr = interleave(cr[0x17], row_addr, mem_row);
        let out = &mut img.pixels[y * out_w as usize..(y + 1) * out_w as usize];
        if shift == 0 {
            let dots = if half_clock { 2 } else { 1 };
            for (group, px) in out.chunks_mut(8 * dots).enumerate() {
                let at = (addr + group * 4) % len;
                let planes: [u8; 4] = std::array::from_fn(|p| v.planes[(at + p) % len]);
                for (i, o) in px.iter_mut().enumerate() {
                    let bit = 7 - i / dots;
                    let colour = (0..4).fold(0u8, |c, p| {
                        c | ((planes[p] >> bit) & 1 & (plane_enable >> p)) << p
                    });
                    *o = palette[usize::from(colour)];
                }
            }
        } else {
            for (i, pair) in out.chunks_mut(2).enumerate() {
                pair.fill(v.dac_rgb(v.planes[(addr + i) % len]));
            }
        }
        // The next memory row after `repeat` scan lines (and, with interleave, only
        // on the lines the mode control register's mask selects).
        if (y + 1) % repeat == 0 {
            let mask = usize::from((cr[0x17] & 3) ^ 3);
            if mem_row & mask == mask {
                row_addr += line_offset;
            }
            mem_row += 1;
        }
    }
    Some(img)
}

/// The CGA (CR17 bit 0 clear: bit 13 of the planar address from row bit 0) and
/// Hercules (bit 1 clear: bit 14 from row bit 1) address substitutions, on a byte
/// address of the interleaved store (planar address × 4).
fn interleave(cr17: u8, addr: usize, row: usize) -> usize {
    let mut a = addr;
    if cr17 & 1 == 0 {
        let bit = 13 + usize::from((cr17 >> 6) & 1) + 2;
        a = (a & !(1 << bit)) | ((row & 1) << bit);
    }
    if cr17 & 2 == 0 {
        a = (a & !(1 << 16)) | ((row & 2) << 15);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registers as a VGA BIOS programs them for a mode (IBM's parameter tables).
    fn mode(misc: u8, seq: [u8; 4], crtc: [u8; 25], gc: [u8; 9], ar: [u8; 21]) -> VgaRegs {
        let mut v = VgaRegs::new();
        v.misc = misc;
        v.seq[1..5].copy_from_slice(&seq);
        v.crtc[..25].copy_from_slice(&crtc);
        v.gc[..9].copy_from_slice(&gc);
        v.ar[..21].copy_from_slice(&ar);
        v.ar_index = 0x20; // palette address source: screen on
        v
    }

    const EGA_PALETTE: [u8; 16] = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e,
        0x3f,
    ];

    fn mode13() -> VgaRegs {
        let mut ar = [0u8; 21];
        for (i, a) in ar.iter_mut().enumerate().take(16) {
            *a = i as u8;
        }
        ar[0x10] = 0x41;
        ar[0x12] = 0x0f;
        mode(
            0x63,
            [0x01, 0x0f, 0x00, 0x0e],
            [
                0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00, 0x41, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x9c, 0x0e, 0x8f, 0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff,
            ],
            [0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0f, 0xff],
            ar,
        )
    }

    fn mode12() -> VgaRegs {
        let mut ar = [0u8; 21];
        ar[..16].copy_from_slice(&EGA_PALETTE);
        ar[0x10] = 0x01;
        ar[0x12] = 0x0f;
        mode(
            0xe3,
            [0x01, 0x0f, 0x00, 0x06],
            [
                0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0x0b, 0x3e, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0xea, 0x0c, 0xdf, 0x28, 0x00, 0xe7, 0x04, 0xe3, 0xff,
            ],
            [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0f, 0xff],
            ar,
        )
    }

    /// Sets DAC entry `i` through the ports, as a program does (6-bit components).
    fn set_dac(v: &mut VgaRegs, i: u8, rgb: [u8; 3]) {
        v.port_write(0x3c8, i);
        for c in rgb {
            v.port_write(0x3c9, c);
        }
    }

    #[test]
    fn mode_13h_shows_chain4_bytes_through_the_dac_doubled_to_640x400() {
        let mut v = mode13();
        set_dac(&mut v, 0x20, [63, 0, 0]);
        set_dac(&mut v, 0x21, [0, 63, 0]);
        set_dac(&mut v, 0x22, [0, 0, 63]);
        // Pixel (x, y) of the 320×200 screen is byte y * 320 + x at 0xA0000.
        v.mem_write(0, 0x20);
        v.mem_write(319, 0x21);
        v.mem_write(199 * 320 + 160, 0x22);
        let img = render_graphics(&v).expect("mode 13h is drawn");
        assert_eq!((img.width, img.height), (640, 400));
        let at = |x: u32, y: u32| img.pixels[(y * 640 + x) as usize];
        // Each mode-13h pixel is a 2×2 block.
        for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            assert_eq!(at(x, y), 0xff0000, "({x},{y})");
        }
        assert_eq!(at(2, 0), 0, "the next pixel is colour 0 (black)");
        assert_eq!(at(638, 0), 0x00ff00);
        assert_eq!(at(639, 1), 0x00ff00);
        assert_eq!(at(320, 398), 0x0000ff);
        assert_eq!(at(321, 399), 0x0000ff);
        assert_eq!(img.pixels.iter().filter(|&&p| p != 0).count(), 12);
        // The start address scrolls: one row (80 planar addresses = 320 bytes) down.
        v.crtc[0x0c] = 0;
        v.crtc[0x0d] = 80;
        let img = render_graphics(&v).unwrap();
        assert_eq!(img.pixels[0], 0, "row 0 scrolled away");
        assert_eq!(img.pixels[(397 * 640 + 320) as usize], 0x0000ff);
    }

    #[test]
    fn mode_12h_combines_four_planes_through_the_attribute_palette() {
        let mut v = mode12();
        // The default EGA colours the BIOS loads: index 0x3f white, 0x14 brown, 0x01 blue.
        set_dac(&mut v, 0x3f, [63, 63, 63]);
        set_dac(&mut v, 0x14, [42, 21, 0]);
        set_dac(&mut v, 0x01, [0, 0, 42]);
        // Write mode 2 (as Windows' bootvid does): colour 15 into the leftmost pixel of
        // row 0, colour 6 (brown) into pixels 1-2 of the last row, colour 1 (blue)
        // into the last pixel of row 0.
        v.gc[5] = 0x02;
        v.gc[8] = 0x80;
        v.mem_read(0);
        v.mem_write(0, 15);
        let last = 479 * 80;
        v.gc[8] = 0x60;
        v.mem_read(last);
        v.mem_write(last, 6);
        v.gc[8] = 0x01;
        v.mem_read(79);
        v.mem_write(79, 1);
        let img = render_graphics(&v).expect("mode 12h is drawn");
        assert_eq!((img.width, img.height), (640, 480));
        let at = |x: u32, y: u32| img.pixels[(y * 640 + x) as usize];
        assert_eq!(at(0, 0), 0xffffff);
        assert_eq!(at(1, 0), 0);
        assert_eq!(at(639, 0), 0x0000aa);
        assert_eq!(
            (at(0, 479), at(1, 479), at(2, 479), at(3, 479)),
            (0, 0xaa5500, 0xaa5500, 0)
        );
        assert_eq!(img.pixels.iter().filter(|&&p| p != 0).count(), 4);
        // The colour plane enable register masks planes: without plane 3, 15 is 7
        // (palette 0x07, DAC entry 7 still black here).
        v.ar[0x12] = 0x07;
        assert_eq!(render_graphics(&v).unwrap().pixels[0], 0);
    }

    #[test]
    fn half_dot_clock_modes_double_pixels_and_cga_modes_are_not_drawn() {
        // Mode 0Dh: 320×200×16, SR01 bit 3, double scan.
        let mut v = mode12();
        v.seq[1] = 0x09;
        v.crtc[1] = 0x27;
        v.crtc[9] = 0xc0;
        v.crtc[0x12] = 0x8f;
        v.crtc[7] = 0x1f;
        v.crtc[0x13] = 0x14;
        set_dac(&mut v, 0x3f, [63, 63, 63]);
        v.planes[..4].copy_from_slice(&[0x80; 4]);
        let img = render_graphics(&v).unwrap();
        assert_eq!((img.width, img.height), (640, 400));
        let white: Vec<usize> = (0..img.pixels.len())
            .filter(|&i| img.pixels[i] == 0xffffff)
            .collect();
        assert_eq!(white, vec![0, 1, 640, 641], "one pixel as a 2×2 block");
        // CGA shift mode: not drawn.
        v.gc[5] = 0x20;
        assert!(render_graphics(&v).is_none());
    }

    #[test]
    fn screen_off_is_black_and_oversized_geometry_is_refused() {
        let mut v = mode13();
        v.planes[0] = 0x3f;
        set_dac(&mut v, 0x3f, [63, 63, 63]);
        v.seq[1] |= 0x20;
        let img = render_graphics(&v).unwrap();
        assert!(img.pixels.iter().all(|&p| p == 0));
        // The widest CRTC setting in a half-dot-clock planar mode would be 4096 wide.
        let mut v = mode12();
        v.seq[1] = 0x09;
        v.crtc[1] = 0xff;
        assert!(render_graphics(&v).is_none());
    }
    #[test]
    fn the_console_redraws_only_the_rows_a_program_wrote() {
        use crate::display::dispi::Dispi;
        use crate::display::render::VgaScreen;
        use crate::display::stdvga::VgaState;
        use crate::display::vram::Vram;
        use crate::display::{Rect, ScreenSource};
        use std::sync::{Arc, Mutex};

        let mut v = mode13();
        set_dac(&mut v, 4, [63, 0, 0]);
        let state = Arc::new(Mutex::new(VgaState {
            dispi: Dispi::new(4 << 20),
            vram: Vram::new(4 << 20, None, 0).unwrap(),
            vga: Some(v),
            edid: [0; 128],
        }));
        let mut screen = VgaScreen::new(state.clone());
        let mut image = Arc::new(Image::black(720, 400));
        assert_eq!(
            screen.refresh(&mut image),
            vec![Rect {
                x: 0,
                y: 0,
                w: 640,
                h: 400
            }],
            "a new mode: everything"
        );
        assert!(
            screen.refresh(&mut image).is_empty(),
            "nothing written: nothing"
        );
        // Pixel (10, 100): scan lines 200 and 201.
        state
            .lock()
            .unwrap()
            .vga
            .as_mut()
            .unwrap()
            .mem_write(100 * 320 + 10, 4);
        assert_eq!(
            screen.refresh(&mut image),
            vec![Rect {
                x: 0,
                y: 200,
                w: 640,
                h: 2
            }]
        );
        assert_eq!(image.pixels[200 * 640 + 20], 0xff0000);
    }
}

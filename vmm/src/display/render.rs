//! Turning the display device's memory into the console's picture: the linear
//! framebuffer of a DISPI mode (only the scanlines KVM's dirty log says changed are
//! converted again), or VGA text mode (cells from planes 0/1, glyphs from the font
//! the BIOS loaded into plane 2, attributes through the palette and DAC, the
//! cursor), or a VGA graphics mode ([`render_graphics`]), re-rendered only when the
//! registers or the window were written.

use std::sync::Arc;

use vm_memory::Bytes;

use super::dispi::Mode;
use super::stdvga::{SharedState, VgaState};
use super::vga::VgaRegs;
use super::vga_graphics::render_graphics;
use super::vram::any_dirty;
use super::{Image, Rect, ScreenSource};

/// What was drawn last, to know what a refresh must redo.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shown {
    Nothing,
    Framebuffer(Mode),
    /// The VGA generation counter the text picture was drawn from.
    Text(u64),
    /// The VGA generation counter a graphics-mode picture was drawn from (black for
    /// the modes `render_graphics` does not draw).
    Graphics(u64),
}

/// Refreshes between two full rescans of the framebuffer (≈ 1 s at VNC's 30 Hz).
/// The dirty log is the fast path; the rescan catches pages whose writes it did not
/// report (seen on the emulated KVM of the CI machines, kvm_pvm, where an emulated
/// instruction's writes can escape the log), comparing rows, so it damages nothing
/// that did not change.
const RESCAN_EVERY: u32 = 32;

/// The console's view of a 1234:1111 device.
pub struct VgaScreen {
    state: SharedState,
    shown: Shown,
    /// Refreshes since the last full rescan.
    since_rescan: u32,
}

impl VgaScreen {
    pub fn new(state: SharedState) -> VgaScreen {
        VgaScreen {
            state,
            shown: Shown::Nothing,
            since_rescan: 0,
        }
    }
}

impl ScreenSource for VgaScreen {
    fn refresh(&mut self, image: &mut Arc<Image>) -> Vec<Rect> {
        self.since_rescan += 1;
        let rescan = self.since_rescan >= RESCAN_EVERY;
        self.update(image, rescan)
    }

    fn refresh_all(&mut self, image: &mut Arc<Image>) -> Vec<Rect> {
        self.update(image, true)
    }
}

impl VgaScreen {
    /// Brings `image` up to date; `rescan` compares every scanline of a framebuffer
    /// mode instead of trusting the dirty log alone.
    fn update(&mut self, image: &mut Arc<Image>, rescan: bool) -> Vec<Rect> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mode) = s.dispi.mode() {
            let dirty = s.vram.take_dirty();
            let new_mode = self.shown != Shown::Framebuffer(mode);
            self.shown = Shown::Framebuffer(mode);
            // Everything changed only with the mode; "everything dirty" (host writes,
            // no dirty log) is a full comparison that damages what differs.
            let how = match &dirty {
                _ if new_mode => Redraw::All,
                Some(d) if !rescan => Redraw::Dirty(d),
                _ => {
                    self.since_rescan = 0;
                    Redraw::Compare
                }
            };
            return render_framebuffer(&s, mode, image, how);
        }
        let Some(vga) = &s.vga else {
            // bochs-display without a mode: nothing to show.
            if self.shown != Shown::Nothing {
                self.shown = Shown::Nothing;
                *image = Arc::new(Image::black(640, 480));
                return vec![image.rect()];
            }
            return Vec::new();
        };
        let generation = vga.generation;
        if vga.text_mode() {
            if self.shown == Shown::Text(generation) {
                return Vec::new();
            }
            self.shown = Shown::Text(generation);
            let img = render_text(vga);
            let rect = img.rect();
            if **image == img {
                return Vec::new();
            }
            *image = Arc::new(img);
            return vec![rect];
        }
        if self.shown == Shown::Graphics(generation) {
            return Vec::new();
        }
        self.shown = Shown::Graphics(generation);
        let img = render_graphics(vga).unwrap_or_else(|| Image::black(640, 480));
        changed_rows(image, img)
    }
}

/// Puts `new` in `image`; the damage is the runs of rows that differ (the whole
/// picture on a size change), so a program redrawing part of a VGA graphics screen
/// sends only that part to VNC clients.
fn changed_rows(image: &mut Arc<Image>, new: Image) -> Vec<Rect> {
    if (image.width, image.height) != (new.width, new.height) {
        *image = Arc::new(new);
        return vec![image.rect()];
    }
    let w = new.width;
    let mut rects: Vec<Rect> = Vec::new();
    for y in 0..new.height {
        let row = (y * w) as usize..((y + 1) * w) as usize;
        if image.pixels[row.clone()] == new.pixels[row] {
            continue;
        }
        match rects.last_mut() {
            Some(r) if r.y + r.h == y => r.h += 1,
            _ => rects.push(Rect { x: 0, y, w, h: 1 }),
        }
    }
    if !rects.is_empty() {
        *image = Arc::new(new);
    }
    rects
}

/// Which scanlines a framebuffer refresh converts.
enum Redraw<'a> {
    /// Every one, all damaged (a new mode).
    All,
    /// Those on pages the dirty log names.
    Dirty(&'a [u64]),
    /// Every one (the periodic rescan, or the dirty log said "everything").
    Compare,
}

/// Converts the scanlines of `mode` that `how` selects into `image`.
fn render_framebuffer(
    s: &VgaState,
    mode: Mode,
    image: &mut Arc<Image>,
    how: Redraw<'_>,
) -> Vec<Rect> {
    let (w, h) = (mode.width, mode.height);
    let resized = image.width != w || image.height != h;
    if resized {
        *image = Arc::new(Image::black(w, h));
    }
    let bypp = u64::from(mode.bpp.div_ceil(8));
    let row_bytes = u64::from(w) * bypp;
    let start_of = |y: u32| mode.offset + u64::from(y) * u64::from(mode.stride);
    let mem = s.vram.slice();
    let mut line = vec![0u8; row_bytes as usize];
    let mut converted = vec![0u32; w as usize];
    let mut rects: Vec<Rect> = Vec::new();
    for y in 0..h {
        let start = start_of(y);
        if let Redraw::Dirty(d) = how {
            if !any_dirty(d, start, start + row_bytes) {
                continue;
            }
        }
        if mem.read_slice(&mut line, start as usize).is_err() {
            continue;
        }
        convert_line(&line, mode.bpp, s.vga.as_ref(), &mut converted);
        let range = (y * w) as usize..((y + 1) * w) as usize;
        // Only the pixels that changed: a page the dirty log names again while the
        // guest is still writing it (or one written with the same pixels) costs the
        // clients nothing, or only the part that differs.
        let (x0, x1) = match how {
            Redraw::All => (0, w),
            Redraw::Dirty(_) | Redraw::Compare => {
                match changed_span(&image.pixels[range.clone()], &converted) {
                    Some(span) => span,
                    None => continue,
                }
            }
        };
        Arc::make_mut(image).pixels[range].copy_from_slice(&converted);
        // Runs of consecutive rows, each run as wide as its changes.
        match rects.last_mut() {
            Some(r) if r.y + r.h == y => {
                let (left, right) = (r.x.min(x0), (r.x + r.w).max(x1));
                *r = Rect {
                    x: left,
                    y: r.y,
                    w: right - left,
                    h: r.h + 1,
                };
            }
            _ => rects.push(Rect {
                x: x0,
                y,
                w: x1 - x0,
                h: 1,
            }),
        }
    }
    rects
}

/// The columns `[first, last + 1)` where `old` and `new` differ, if any.
fn changed_span(old: &[u32], new: &[u32]) -> Option<(u32, u32)> {
    let first = old.iter().zip(new).position(|(a, b)| a != b)?;
    let last = old.iter().zip(new).rposition(|(a, b)| a != b)?;
    Some((first as u32, last as u32 + 1))
}

/// One scanline of `bpp`-bit pixels to 0x00RRGGBB.
fn convert_line(src: &[u8], bpp: u32, vga: Option<&VgaRegs>, out: &mut [u32]) {
    match bpp {
        32 => {
            for (o, p) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = u32::from_le_bytes([p[0], p[1], p[2], 0]);
            }
        }
        24 => {
            for (o, p) in out.iter_mut().zip(src.chunks_exact(3)) {
                *o = u32::from_le_bytes([p[0], p[1], p[2], 0]);
            }
        }
        16 | 15 => {
            for (o, p) in out.iter_mut().zip(src.chunks_exact(2)) {
                let v = u32::from(u16::from_le_bytes([p[0], p[1]]));
                let (r, g, b) = if bpp == 16 {
                    ((v >> 11) & 0x1f, (v >> 5) & 0x3f, v & 0x1f)
                } else {
                    ((v >> 10) & 0x1f, ((v >> 5) & 0x1f) << 1, v & 0x1f)
                };
                *o = (r << 3 | r >> 2) << 16 | (g << 2 | g >> 4) << 8 | (b << 3 | b >> 2);
            }
        }
        _ => {
            for (o, &p) in out.iter_mut().zip(src) {
                *o = match vga {
                    Some(v) => v.dac_rgb(p),
                    None => u32::from(p) * 0x01_0101,
                };
            }
        }
    }
}

/// Renders VGA text mode: the geometry from the CRTC, 8- or 9-dot cells, glyphs
/// from plane 2, colours through the attribute palette and the DAC, the cursor.
pub fn render_text(v: &VgaRegs) -> Image {
    let cr = &v.crtc;
    let cols = u32::from(cr[1]) + 1;
    let cell_h = u32::from(cr[9] & 0x1f) + 1;
    let lines =
        (u32::from(cr[0x12]) | u32::from(cr[7] & 0x02) << 7 | u32::from(cr[7] & 0x40) << 3) + 1;
    let rows = (lines / cell_h).max(1);
    let cell_w = if v.seq[1] & 0x01 != 0 { 8 } else { 9 };
    if !v.screen_on() || cols > 200 || rows > 100 {
        return Image::black(640, 480);
    }
    let (w, h) = (cols * cell_w, rows * cell_h);
    let mut img = Image::black(w, h);
    let pitch = (u32::from(cr[0x13]) * 2).max(cols);
    let start = u32::from(cr[0x0c]) << 8 | u32::from(cr[0x0d]);
    let cursor = u32::from(cr[0x0e]) << 8 | u32::from(cr[0x0f]);
    let cursor_on = cr[0x0a] & 0x20 == 0;
    let (cur_start, cur_end) = (u32::from(cr[0x0a] & 0x1f), u32::from(cr[0x0b] & 0x1f));
    // Character maps A (attribute bit 3 set) and B, as offsets in plane 2.
    let sr3 = v.seq[3];
    let map_a = u32::from((sr3 >> 5) & 1 | (sr3 >> 1) & 6) * 0x4000;
    let map_b = u32::from((sr3 >> 4) & 1 | (sr3 << 1) & 6) * 0x4000;
    let blink_attr = v.ar[0x10] & 0x08 != 0;
    let line_graphics = v.ar[0x10] & 0x04 != 0;
    let mut palette = [0u32; 16];
    for (i, p) in palette.iter_mut().enumerate() {
        *p = v.dac_rgb(v.palette_index(i as u8));
    }
    for row in 0..rows {
        for col in 0..cols {
            let addr = (start + row * pitch + col) & 0xffff;
            let ch = v.planes[(addr * 4) as usize % v.planes.len()];
            let attr = v.planes[(addr * 4 + 1) as usize % v.planes.len()];
            let fg = palette[usize::from(attr & 0x0f)];
            let bg_index = if blink_attr {
                (attr >> 4) & 7
            } else {
                attr >> 4
            };
            let bg = palette[usize::from(bg_index)];
            let font = if attr & 0x08 != 0 { map_a } else { map_b };
            let is_cursor = cursor_on && addr == (cursor & 0xffff);
            for y in 0..cell_h {
                let glyph_at = (font + u32::from(ch) * 32 + y) * 4 + 2;
                let bits = v.planes[glyph_at as usize % v.planes.len()];
                let cursor_line = is_cursor && y >= cur_start && y <= cur_end;
                let base = ((row * cell_h + y) * w + col * cell_w) as usize;
                for x in 0..cell_w {
                    let on = if x < 8 {
                        bits & (0x80 >> x) != 0
                    } else {
                        line_graphics && (0xc0..=0xdf).contains(&ch) && bits & 1 != 0
                    };
                    img.pixels[base + x as usize] = if on || cursor_line { fg } else { bg };
                }
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::dispi::Dispi;
    use crate::display::vram::Vram;
    use std::sync::Mutex;

    /// Mode 3 as a BIOS leaves it: 80×25, 9×16 cells, the CGA palette.
    fn mode3_with_glyph() -> VgaRegs {
        let mut v = VgaRegs::new();
        v.misc = 0x67;
        v.seq[2] = 0x03;
        v.seq[4] = 0x02;
        v.gc[5] = 0x10;
        v.gc[6] = 0x0e;
        v.crtc[1] = 79;
        v.crtc[9] = 15;
        v.crtc[0x12] = 0x8f;
        v.crtc[7] = 0x1f;
        v.crtc[0x13] = 40;
        v.crtc[0x0a] = 14;
        v.crtc[0x0b] = 15;
        v.ar_index = 0x20;
        v.ar[0x10] = 0x0c;
        for i in 0..16 {
            v.ar[i] = [
                0, 1, 2, 3, 4, 5, 0x14, 7, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
            ][i];
        }
        // DAC 0 black, 1 blue (0,0,42), 0x3f white.
        v.dac[3..6].copy_from_slice(&[0, 0, 42]);
        v.dac[0x3f * 3..0x3f * 3 + 3].copy_from_slice(&[63, 63, 63]);
        // A glyph for 'H': two vertical bars with a bar across line 7.
        for y in 0..16u32 {
            let bits = match y {
                2..=12 if y == 7 => 0xfe,
                2..=12 => 0xc6,
                _ => 0,
            };
            v.planes[((u32::from(b'H') * 32 + y) * 4 + 2) as usize] = bits;
        }
        v
    }

    #[test]
    fn text_cell_matches_the_glyph_attribute_and_cursor() {
        let mut v = mode3_with_glyph();
        // 'H' white on blue at row 0 col 1; cursor at row 0 col 2.
        v.planes[4] = b'H';
        v.planes[5] = 0x1f;
        v.crtc[0x0f] = 2;
        let img = render_text(&v);
        assert_eq!((img.width, img.height), (720, 400));
        let (white, blue, black) = (0xffffff, 0x0000aa, 0);
        // Expected picture of cell (0,1): rows of the glyph, 9th column background.
        let mut expect = String::new();
        let mut got = String::new();
        for y in 0..16u32 {
            for x in 0..9u32 {
                let bits: u8 = match y {
                    7 => 0xfe,
                    2..=12 => 0xc6,
                    _ => 0,
                };
                let on = x < 8 && bits & (0x80 >> x) != 0;
                expect.push(if on { '#' } else { '.' });
                let p = img.pixels[(y * 720 + 9 + x) as usize];
                got.push(match p {
                    p if p == white => '#',
                    p if p == blue => '.',
                    _ => '?',
                });
            }
            expect.push('\n');
            got.push('\n');
        }
        assert_eq!(got, expect);
        // The cursor: lines 14-15 of cell (0,2) in the foreground (attribute 0 → black
        // on black here, so check a cell whose attribute is set).
        assert_eq!(img.pixels[(14 * 720 + 18) as usize], black);
        v.planes[9] = 0x0f;
        let img = render_text(&v);
        assert_eq!(img.pixels[(14 * 720 + 18) as usize], white, "cursor line");
        assert_eq!(
            img.pixels[(13 * 720 + 18) as usize],
            black,
            "above the cursor"
        );
    }

    #[test]
    fn framebuffer_modes_convert_and_only_dirty_rows_are_redrawn() {
        let state = Arc::new(Mutex::new(VgaState {
            dispi: Dispi::new(4 << 20),
            vram: Vram::new(4 << 20, None, 0).unwrap(),
            vga: None,
            edid: [0; 128],
        }));
        {
            let mut s = state.lock().unwrap();
            use crate::display::dispi::*;
            s.dispi.write(XRES, 640);
            s.dispi.write(YRES, 480);
            s.dispi.write(BPP, 32);
            s.dispi.write(ENABLE, ENABLED);
            // Pixel (3, 2) red in BGRX.
            s.vram.write((2 * 640 + 3) * 4, &[0, 0, 0xff, 0]);
        }
        let mut screen = VgaScreen::new(state.clone());
        let mut image = Arc::new(Image::black(10, 10));
        let rects = screen.refresh_all(&mut image);
        assert_eq!(
            rects,
            vec![Rect {
                x: 0,
                y: 0,
                w: 640,
                h: 480
            }]
        );
        assert_eq!(image.pixels[2 * 640 + 3], 0xff0000);
        let held = image.clone();
        assert!(
            screen.refresh(&mut image).is_empty(),
            "idle: nothing redrawn"
        );
        assert!(Arc::ptr_eq(&held, &image), "idle: no copy made");
        // A write the dirty log does not see (host side, bypassing it) is found by
        // the rescan, which damages only the changed row.
        state
            .lock()
            .unwrap()
            .vram
            .slice()
            .write_slice(&[0xff; 4], 100 * 640 * 4)
            .unwrap();
        assert_eq!(
            screen.refresh_all(&mut image),
            vec![Rect {
                x: 0,
                y: 100,
                w: 1,
                h: 1
            }]
        );
        // Dirty pages: only the pixels that changed are damaged, and a page written
        // with what it held already damages nothing.
        {
            let mut s = state.lock().unwrap();
            s.vram.write((200 * 640 + 10) * 4, &[0xff, 0, 0, 0]);
            s.vram.write((201 * 640 + 600) * 4, &[0xff, 0, 0, 0]);
            s.vram.write((300 * 640 + 5) * 4, &[0, 0, 0, 0]);
        }
        assert_eq!(
            screen.refresh(&mut image),
            vec![Rect {
                x: 10,
                y: 200,
                w: 591,
                h: 2
            }]
        );
        assert_eq!(image.pixels[201 * 640 + 600], 0x0000ff);
        assert_eq!(image.pixels[100 * 640], 0xffffff);
        // 16 bpp: RGB565 pure green.
        let mut line = [0u32; 1];
        convert_line(&0x07e0u16.to_le_bytes(), 16, None, &mut line);
        assert_eq!(line[0], 0x00ff00);
        convert_line(&[1, 2, 3], 24, None, &mut line);
        assert_eq!(line[0], 0x030201);
    }
}

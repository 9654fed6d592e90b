//! The guest's screen and input, as the outside world (VNC, QMP `screendump`,
//! `send-key`) sees them.
//!
//! A [`Console`] is one display head: the primary video device's output. It lives
//! as long as the VMM process (a VNC client stays connected across guest resets);
//! each machine's video device plugs a [`ScreenSource`] into it, and each machine's
//! input devices plug into its [`InputRouter`]. Readers call [`Console::refresh`],
//! which asks the source for what changed (through the device's dirty tracking) and
//! returns the damaged rectangles; [`Console::image`] is the last rendered picture.
//!
//! Keys are Linux evdev key codes everywhere inside the VMM ([`keycodes`] converts
//! QEMU's "number" and "qcode" key names to them).

use std::sync::{Arc, Mutex};

pub mod attach;
pub mod dispi;
pub mod edid;
pub mod input;
pub mod keycodes;
pub mod render;
pub mod stdvga;
pub mod vga;
pub mod vga_graphics;
pub mod vram;

pub use input::InputRouter;

/// A rendered screen: row-major pixels, 0x00RRGGBB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u32>,
}

impl Image {
    /// A black image of `width`×`height`.
    pub fn black(width: u32, height: u32) -> Image {
        Image {
            width,
            height,
            pixels: vec![0; width as usize * height as usize],
        }
    }

    /// The whole image as one rectangle.
    pub fn rect(&self) -> Rect {
        Rect {
            x: 0,
            y: 0,
            w: self.width,
            h: self.height,
        }
    }
}

/// A rectangle of pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// What a video device gives its console: the picture, re-rendered on demand.
pub trait ScreenSource: Send {
    /// Brings `image` up to date with the guest's framebuffer or text screen and
    /// returns the rectangles that changed (empty: `image` untouched, so an idle
    /// screen costs a dirty-log query and nothing else). A mode change replaces
    /// the image and reports it whole. Use [`Arc::make_mut`] only when something
    /// changed, so readers holding the old picture keep theirs.
    fn refresh(&mut self, image: &mut Arc<Image>) -> Vec<Rect>;
    /// Like [`ScreenSource::refresh`], but re-reads everything instead of trusting
    /// the dirty tracking alone (damage is still only what changed): for a one-off
    /// picture that must be exact (`screendump`).
    fn refresh_all(&mut self, image: &mut Arc<Image>) -> Vec<Rect> {
        self.refresh(image)
    }
}

/// Where keyboard and pointer events go. Keys are Linux evdev key codes
/// (linux/input-event-codes.h), the project's internal key currency.
pub trait InputSink: Send + Sync {
    fn key(&self, linux_keycode: u16, down: bool);
    /// Absolute position within a screen of `width`×`height` pixels.
    fn pointer_abs(&self, x: u32, y: u32, width: u32, height: u32);
    fn pointer_rel(&self, dx: i32, dy: i32);
    /// Button mask as RFB sends it: bit 0 left, 1 middle, 2 right, 3 wheel up, 4 wheel down.
    fn buttons(&self, mask: u8);
    /// Keyboard LEDs as the guest set them (bit 0 scroll, 1 num, 2 caps), for QEMU's LED extension.
    fn leds(&self) -> u8 {
        0
    }
}

/// The screen before any device draws (QEMU shows 640×480 too).
const BLANK: (u32, u32) = (640, 480);

struct Screen {
    image: Arc<Image>,
    source: Option<Box<dyn ScreenSource>>,
}

/// One display head, shared by the device model, the VNC server and screendump.
pub struct Console {
    screen: Mutex<Screen>,
    input: Arc<InputRouter>,
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Console {
    /// A console with a black screen and no input devices yet.
    pub fn new() -> Console {
        Console {
            screen: Mutex::new(Screen {
                image: Arc::new(Image::black(BLANK.0, BLANK.1)),
                source: None,
            }),
            input: Arc::new(InputRouter::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Screen> {
        self.screen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `source` (a new machine's video device) what the console shows; `None`
    /// when the machine is gone. The next refresh redraws everything.
    pub fn set_source(&self, source: Option<Box<dyn ScreenSource>>) {
        let mut s = self.lock();
        s.source = source;
        if s.source.is_none() {
            s.image = Arc::new(Image::black(BLANK.0, BLANK.1));
        }
    }

    /// Re-reads the guest's framebuffer/text (through the device's dirty tracking) into
    /// the console's image; returns the damaged rectangles (empty when nothing changed).
    pub fn refresh(&self) -> Vec<Rect> {
        let mut s = self.lock();
        let Screen { image, source } = &mut *s;
        match source {
            Some(src) => src.refresh(image),
            None => Vec::new(),
        }
    }

    /// Like [`Console::refresh`], but reads the whole screen again rather than trusting
    /// the dirty tracking alone (for `screendump`).
    pub fn refresh_all(&self) -> Vec<Rect> {
        let mut s = self.lock();
        let Screen { image, source } = &mut *s;
        match source {
            Some(src) => src.refresh_all(image),
            None => Vec::new(),
        }
    }

    /// The current image (cheap clone: Arc).
    pub fn image(&self) -> Arc<Image> {
        self.lock().image.clone()
    }

    /// Where keyboard and pointer events go (PS/2 or virtio-input, whatever the machine has).
    pub fn input(&self) -> Arc<dyn InputSink> {
        self.input.clone()
    }

    /// The router itself, for the machine builder to plug devices in.
    pub fn router(&self) -> &Arc<InputRouter> {
        &self.input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that paints one pixel white on every other refresh.
    struct Blinker(bool);

    impl ScreenSource for Blinker {
        fn refresh(&mut self, image: &mut Arc<Image>) -> Vec<Rect> {
            self.0 = !self.0;
            if !self.0 {
                return Vec::new();
            }
            let img = Arc::make_mut(image);
            img.pixels[0] ^= 0xffffff;
            vec![Rect {
                x: 0,
                y: 0,
                w: 1,
                h: 1,
            }]
        }
    }

    #[test]
    fn refresh_reports_damage_and_keeps_old_images_intact() {
        let c = Console::new();
        assert!(c.refresh().is_empty(), "no source: nothing changes");
        c.set_source(Some(Box::new(Blinker(false))));
        let before = c.image();
        assert_eq!(c.refresh().len(), 1);
        assert_eq!(before.pixels[0], 0, "a reader's old image is not changed");
        assert_eq!(c.image().pixels[0], 0xffffff);
        assert!(c.refresh().is_empty());
        c.set_source(None);
        assert_eq!(c.image().width, 640);
    }
}

//! The console's view of a virtio-gpu: the scanout resource once the driver set
//! one; before that (and after a driver reset) `virtio-vga` shows its VGA side
//! (SeaBIOS's text screen, a VBE mode) and `virtio-gpu-pci` a black screen.

use std::sync::Arc;

use super::{lock, SharedGpu};
use crate::display::render::VgaScreen;
use crate::display::stdvga::SharedState;
use crate::display::{Image, Rect, ScreenSource};

/// Size of the black screen shown before the driver sets a scanout.
const BLANK: (u32, u32) = (640, 480);

/// What the image holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Nothing,
    /// The scanout, as of this generation.
    Scanout(u64),
    Vga,
}

/// A [`ScreenSource`] over a virtio-gpu and, for virtio-vga, its VGA part.
pub struct GpuScreen {
    gpu: SharedGpu,
    /// The VGA state and its renderer (virtio-vga only); the renderer is made anew
    /// whenever the VGA side comes back, so it redraws everything.
    vga: Option<(SharedState, VgaScreen)>,
    shown: Shown,
}

impl GpuScreen {
    pub fn new(gpu: SharedGpu, vga: Option<SharedState>) -> GpuScreen {
        GpuScreen {
            gpu,
            vga: vga.map(|s| (s.clone(), VgaScreen::new(s))),
            shown: Shown::Nothing,
        }
    }

    fn update(&mut self, image: &mut Arc<Image>, full: bool) -> Vec<Rect> {
        let mut g = lock(&self.gpu);
        if g.scanout().is_some() {
            let generation = g.generation;
            let seen = match self.shown {
                Shown::Scanout(n) => n,
                _ => generation.wrapping_sub(1),
            };
            self.shown = Shown::Scanout(generation);
            return g.render(image, full, seen);
        }
        drop(g);
        match &mut self.vga {
            Some((state, screen)) => {
                if self.shown != Shown::Vga {
                    *screen = VgaScreen::new(state.clone());
                    self.shown = Shown::Vga;
                }
                if full {
                    screen.refresh_all(image)
                } else {
                    screen.refresh(image)
                }
            }
            None => {
                if self.shown == Shown::Nothing && !full {
                    return Vec::new();
                }
                self.shown = Shown::Nothing;
                *image = Arc::new(Image::black(BLANK.0, BLANK.1));
                vec![image.rect()]
            }
        }
    }
}

impl ScreenSource for GpuScreen {
    fn refresh(&mut self, image: &mut Arc<Image>) -> Vec<Rect> {
        self.update(image, false)
    }

    fn refresh_all(&mut self, image: &mut Arc<Image>) -> Vec<Rect> {
        self.update(image, true)
    }
}

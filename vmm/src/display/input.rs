//! Routing of keyboard and pointer events to the machine's input devices.
//!
//! A machine may have a PS/2 keyboard and mouse (always, on the i8042) and virtio
//! keyboards and tablets. Like QEMU's input layer, events go to the device the guest
//! is actually using: keys to a virtio keyboard whose driver is up, else PS/2;
//! absolute pointer positions to a tablet whose driver is up, else they become
//! relative moves for the PS/2 mouse (from the last position seen).

use std::sync::{Arc, Mutex};

use super::InputSink;

/// A keyboard device as the router drives it.
pub trait Keyboard: Send + Sync {
    /// A key went down or up (Linux key code).
    fn key(&self, linux_keycode: u16, down: bool);
    /// Whether the guest is listening (driver ready); PS/2 always is.
    fn active(&self) -> bool;
    /// LEDs as the guest set them (bit 0 scroll, 1 num, 2 caps).
    fn leds(&self) -> u8 {
        0
    }
}

/// A pointing device as the router drives it.
pub trait Pointer: Send + Sync {
    /// Whether it takes absolute positions (a tablet) rather than moves.
    fn absolute(&self) -> bool;
    /// Whether the guest is listening.
    fn active(&self) -> bool;
    /// Absolute position scaled to 0..=0x7fff on both axes (tablets only).
    fn abs(&self, x: u32, y: u32);
    /// Relative move (mice only).
    fn rel(&self, dx: i32, dy: i32);
    /// Button mask as RFB sends it (bit 0 left, 1 middle, 2 right, 3/4 wheel up/down).
    fn buttons(&self, mask: u8);
}

/// Highest absolute coordinate (QEMU's INPUT_EVENT_ABS_MAX).
pub const ABS_MAX: u32 = 0x7fff;

#[derive(Default)]
struct Devices {
    /// Highest priority first.
    keyboards: Vec<Arc<dyn Keyboard>>,
    pointers: Vec<Arc<dyn Pointer>>,
    /// Last absolute position (0..=ABS_MAX), to turn positions into moves.
    last_abs: Option<(u32, u32)>,
    /// Buttons held, for callers that send one button at a time.
    buttons: u8,
}

/// The console's [`InputSink`]: forwards to the current machine's devices.
#[derive(Default)]
pub struct InputRouter {
    devices: Mutex<Devices>,
}

impl InputRouter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Devices> {
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the devices (a new machine): keyboards and pointers, preferred first.
    pub fn set_devices(&self, keyboards: Vec<Arc<dyn Keyboard>>, pointers: Vec<Arc<dyn Pointer>>) {
        let mut d = self.lock();
        d.keyboards = keyboards;
        d.pointers = pointers;
        d.last_abs = None;
    }

    fn keyboard(d: &Devices) -> Option<&Arc<dyn Keyboard>> {
        d.keyboards
            .iter()
            .find(|k| k.active())
            .or(d.keyboards.last())
    }

    fn pointer(d: &Devices, absolute: bool) -> Option<&Arc<dyn Pointer>> {
        d.pointers
            .iter()
            .find(|p| p.active() && p.absolute() == absolute)
    }

    /// The pointer that gets buttons: an active tablet, else an active mouse.
    fn button_pointer(d: &Devices) -> Option<&Arc<dyn Pointer>> {
        Self::pointer(d, true)
            .or_else(|| Self::pointer(d, false))
            .or(d.pointers.last())
    }

    /// Puts a keyboard ahead of the others (a virtio keyboard before PS/2).
    pub fn add_keyboard_first(&self, k: Arc<dyn Keyboard>) {
        self.lock().keyboards.insert(0, k);
    }

    /// Puts a pointer ahead of the others (a virtio tablet before the PS/2 mouse).
    pub fn add_pointer_first(&self, p: Arc<dyn Pointer>) {
        self.lock().pointers.insert(0, p);
    }

    /// Presses or releases one button (RFB mask bit `bit`), keeping the others as they are.
    pub fn button(&self, bit: u8, down: bool) {
        let mask = {
            let mut d = self.lock();
            if down {
                d.buttons |= bit;
            } else {
                d.buttons &= !bit;
            }
            d.buttons
        };
        self.buttons(mask);
    }

    /// Whether a tablet whose driver is up takes absolute positions now (VNC tells
    /// its clients, QEMU's pointer type change, so gtk-vnc grabs the pointer otherwise).
    pub fn has_absolute(&self) -> bool {
        Self::pointer(&self.lock(), true).is_some()
    }

    /// Absolute position in 0..=ABS_MAX (both axes), as QMP `input-send-event` gives it.
    pub fn pointer_abs_scaled(&self, x: u32, y: u32) {
        let mut d = self.lock();
        let (x, y) = (x.min(ABS_MAX), y.min(ABS_MAX));
        if let Some(p) = Self::pointer(&d, true) {
            p.abs(x, y);
            d.last_abs = Some((x, y));
            return;
        }
        // No tablet listening: a move from the last position for the mouse (in
        // 640×480-ish units so the guest's acceleration sees sane steps).
        let (lx, ly) = d.last_abs.unwrap_or((x, y));
        d.last_abs = Some((x, y));
        let scale = |v: u32, l: u32, span: i64| {
            ((i64::from(v) - i64::from(l)) * span / i64::from(ABS_MAX)) as i32
        };
        let (dx, dy) = (scale(x, lx, 1024), scale(y, ly, 768));
        if (dx, dy) != (0, 0) {
            if let Some(p) = Self::pointer(&d, false) {
                p.rel(dx, dy);
            }
        }
    }
}

impl InputSink for InputRouter {
    fn key(&self, linux_keycode: u16, down: bool) {
        let d = self.lock();
        if let Some(k) = Self::keyboard(&d) {
            k.key(linux_keycode, down);
        }
    }

    fn pointer_abs(&self, x: u32, y: u32, width: u32, height: u32) {
        let scale = |v: u32, span: u32| {
            if span <= 1 {
                0
            } else {
                (u64::from(v.min(span - 1)) * u64::from(ABS_MAX) / u64::from(span - 1)) as u32
            }
        };
        self.pointer_abs_scaled(scale(x, width), scale(y, height));
    }

    fn pointer_rel(&self, dx: i32, dy: i32) {
        let d = self.lock();
        if let Some(p) = Self::pointer(&d, false).or(d.pointers.iter().find(|p| !p.absolute())) {
            p.rel(dx, dy);
        }
    }

    fn buttons(&self, mask: u8) {
        let mut d = self.lock();
        d.buttons = mask;
        if let Some(p) = Self::button_pointer(&d) {
            p.buttons(mask);
        }
    }

    fn leds(&self) -> u8 {
        let d = self.lock();
        Self::keyboard(&d).map_or(0, |k| k.leds())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Log {
        active: AtomicBool,
        events: Mutex<Vec<String>>,
    }

    impl Keyboard for Log {
        fn key(&self, code: u16, down: bool) {
            self.events
                .lock()
                .unwrap()
                .push(format!("key {code} {down}"));
        }
        fn active(&self) -> bool {
            self.active.load(Ordering::Relaxed)
        }
    }

    struct Dev(Arc<Log>, bool);

    impl Pointer for Dev {
        fn absolute(&self) -> bool {
            self.1
        }
        fn active(&self) -> bool {
            self.0.active.load(Ordering::Relaxed)
        }
        fn abs(&self, x: u32, y: u32) {
            self.0.events.lock().unwrap().push(format!("abs {x} {y}"));
        }
        fn rel(&self, dx: i32, dy: i32) {
            self.0.events.lock().unwrap().push(format!("rel {dx} {dy}"));
        }
        fn buttons(&self, mask: u8) {
            self.0.events.lock().unwrap().push(format!("btn {mask}"));
        }
    }

    #[test]
    fn keys_go_to_the_active_keyboard_first_else_the_last() {
        let virtio = Arc::new(Log::default());
        let ps2 = Arc::new(Log::default());
        ps2.active.store(true, Ordering::Relaxed);
        let r = InputRouter::default();
        r.set_devices(vec![virtio.clone(), ps2.clone()], vec![]);
        r.key(30, true);
        virtio.active.store(true, Ordering::Relaxed);
        r.key(30, false);
        assert_eq!(*ps2.events.lock().unwrap(), vec!["key 30 true"]);
        assert_eq!(*virtio.events.lock().unwrap(), vec!["key 30 false"]);
    }

    #[test]
    fn absolute_positions_become_moves_without_a_tablet() {
        let tablet = Arc::new(Log::default());
        let mouse = Arc::new(Log::default());
        mouse.active.store(true, Ordering::Relaxed);
        let r = InputRouter::default();
        r.set_devices(
            vec![],
            vec![
                Arc::new(Dev(tablet.clone(), true)),
                Arc::new(Dev(mouse.clone(), false)),
            ],
        );
        r.pointer_abs(0, 0, 1024, 768);
        r.pointer_abs(1023, 767, 1024, 768);
        r.buttons(1);
        assert_eq!(*mouse.events.lock().unwrap(), vec!["rel 1024 768", "btn 1"]);
        tablet.active.store(true, Ordering::Relaxed);
        r.pointer_abs(1023, 0, 1024, 768);
        r.buttons(4);
        assert_eq!(*tablet.events.lock().unwrap(), vec!["abs 32767 0", "btn 4"]);
    }
}

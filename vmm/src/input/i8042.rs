//! The i8042 keyboard controller (ports 0x60 data, 0x64 status/command) with a PS/2
//! keyboard on its first port (IRQ 1) and a PS/2 mouse on its auxiliary port
//! (IRQ 12), as firmware (SeaBIOS, OVMF's Ps2KeyboardDxe) and Linux's i8042, atkbd
//! and psmouse drivers use it. It also keeps the controller's reset line: command
//! 0xFE, or an output-port write with bit 0 clear, resets the machine.
//!
//! One output buffer: when it is empty the controller refills it from its own
//! replies first, then the keyboard, then the mouse (each only while its interface
//! is enabled in the command byte), sets OBF (and AUXB for mouse bytes) and raises
//! the device's IRQ if the command byte enables it; reading port 0x60 empties it
//! and lowers the line.

use std::collections::VecDeque;

use super::ps2::{Keyboard, Mouse};
use crate::devices::bus::BusDevice;
use crate::devices::pm::IrqLine;
use crate::lifecycle::{ExitSink, GuestExit};

/// Data port; the status/command port is at +4.
pub const DATA_PORT: u16 = 0x60;
pub const COMMAND_PORT: u16 = 0x64;
/// ISA IRQs of the two ports.
pub const KBD_IRQ: u32 = 1;
pub const AUX_IRQ: u32 = 12;

/// Status register bits.
const OBF: u8 = 0x01;
const SYS: u8 = 0x04;
const CMD: u8 = 0x08;
const UNLOCKED: u8 = 0x10;
const AUXB: u8 = 0x20;
/// Command byte bits.
const CCB_KBD_INT: u8 = 0x01;
const CCB_AUX_INT: u8 = 0x02;
const CCB_SYS: u8 = 0x04;
const CCB_KBD_OFF: u8 = 0x10;
const CCB_AUX_OFF: u8 = 0x20;
const CCB_XLATE: u8 = 0x40;

/// Where a byte in the output buffer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Source {
    Controller,
    Keyboard,
    Mouse,
}

/// The controller and its two devices.
pub struct I8042 {
    ccb: u8,
    status: u8,
    /// The byte in the output buffer, if full.
    obf: Option<(u8, Source)>,
    replies: VecDeque<(u8, Source)>,
    /// A command waiting for its data byte on port 0x60.
    pending: Option<u8>,
    pub kbd: Keyboard,
    pub mouse: Mouse,
    kbd_irq: Box<dyn IrqLine>,
    aux_irq: Box<dyn IrqLine>,
    exits: Option<ExitSink>,
}

/// The controller's registers and buffers, and both devices'.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedI8042 {
    ccb: u8,
    status: u8,
    obf: Option<(u8, Source)>,
    replies: Vec<(u8, Source)>,
    pending: Option<u8>,
    kbd: Keyboard,
    mouse: Mouse,
}

impl crate::vmstate::Stateful for I8042 {
    fn save_state(&self) -> serde_json::Value {
        crate::vmstate::to_value(&SavedI8042 {
            ccb: self.ccb,
            status: self.status,
            obf: self.obf,
            replies: self.replies.iter().copied().collect(),
            pending: self.pending,
            kbd: self.kbd.clone(),
            mouse: self.mouse.clone(),
        })
    }

    fn restore_state(&mut self, v: &serde_json::Value) -> Result<(), String> {
        let s: SavedI8042 = crate::vmstate::from_value(v)?;
        self.ccb = s.ccb;
        self.status = s.status;
        self.obf = s.obf;
        self.replies = s.replies.into();
        self.pending = s.pending;
        self.kbd = s.kbd;
        self.mouse = s.mouse;
        Ok(())
    }
}

impl I8042 {
    /// A controller as firmware leaves it: both interfaces on, interrupts on,
    /// translation on.
    pub fn new(
        kbd_irq: Box<dyn IrqLine>,
        aux_irq: Box<dyn IrqLine>,
        exits: Option<ExitSink>,
    ) -> Self {
        I8042 {
            ccb: CCB_KBD_INT | CCB_AUX_INT | CCB_SYS | CCB_XLATE,
            status: UNLOCKED | SYS,
            obf: None,
            replies: VecDeque::new(),
            pending: None,
            kbd: Keyboard::default(),
            mouse: Mouse::default(),
            kbd_irq,
            aux_irq,
            exits,
        }
    }

    /// Whether the controller translates keyboard set 2 to set 1.
    pub fn translating(&self) -> bool {
        self.ccb & CCB_XLATE != 0
    }

    fn reply(&mut self, b: u8) {
        self.replies.push_back((b, Source::Controller));
    }

    /// Fills the output buffer if it is empty and something is waiting.
    pub fn update(&mut self) {
        if self.obf.is_none() {
            let next = if let Some(r) = self.replies.pop_front() {
                Some(r)
            } else if self.ccb & CCB_KBD_OFF == 0 && !self.kbd.out.is_empty() {
                self.kbd.out.pop_front().map(|b| (b, Source::Keyboard))
            } else if self.ccb & CCB_AUX_OFF == 0 && !self.mouse.out.is_empty() {
                self.mouse.out.pop_front().map(|b| (b, Source::Mouse))
            } else {
                None
            };
            if let Some((b, src)) = next {
                self.obf = Some((b, src));
                match src {
                    Source::Mouse if self.ccb & CCB_AUX_INT != 0 => self.aux_irq.set_level(true),
                    Source::Keyboard | Source::Controller if self.ccb & CCB_KBD_INT != 0 => {
                        self.kbd_irq.set_level(true)
                    }
                    _ => {}
                }
            }
        }
    }

    fn status(&self) -> u8 {
        let mut s = self.status & !(OBF | AUXB);
        match self.obf {
            Some((_, Source::Mouse)) => s |= OBF | AUXB,
            Some(_) => s |= OBF,
            None => {}
        }
        s
    }

    fn read_data(&mut self) -> u8 {
        let v = match self.obf.take() {
            Some((b, src)) => {
                match src {
                    Source::Mouse => self.aux_irq.set_level(false),
                    _ => self.kbd_irq.set_level(false),
                }
                b
            }
            None => 0,
        };
        self.update();
        v
    }

    fn reset_machine(&self) {
        if let Some(e) = &self.exits {
            e.request(GuestExit::Reset);
        }
    }

    fn command(&mut self, c: u8) {
        self.status |= CMD;
        match c {
            0x20 => self.reply(self.ccb),
            0x60 | 0xd1 | 0xd2 | 0xd3 | 0xd4 => self.pending = Some(c),
            0xa7 => self.ccb |= CCB_AUX_OFF,
            0xa8 => self.ccb &= !CCB_AUX_OFF,
            0xa9 | 0xab => self.reply(0x00), // interface tests pass
            0xaa => {
                self.status |= SYS;
                self.reply(0x55);
            }
            0xad => self.ccb |= CCB_KBD_OFF,
            0xae => self.ccb &= !CCB_KBD_OFF,
            0xc0 => self.reply(0x80), // input port: keyboard not locked
            // Output port: reset line high, A20 on, OBF/AUXB mirrored.
            0xd0 => {
                let s = self.status();
                self.reply(0x03 | (s & OBF) << 4 | (s & AUXB));
            }
            0xdd | 0xdf => {} // A20 gate: always on
            // Pulse output lines; bit 0 low pulses the reset line.
            0xf0..=0xff if c & 1 == 0 => self.reset_machine(),
            _ => {}
        }
    }

    fn write_data(&mut self, b: u8) {
        self.status &= !CMD;
        match self.pending.take() {
            Some(0x60) => {
                self.ccb = b;
                if b & CCB_SYS != 0 {
                    self.status |= SYS;
                }
                // A line whose interrupt was just disabled goes low.
                if b & CCB_KBD_INT == 0 {
                    self.kbd_irq.set_level(false);
                }
                if b & CCB_AUX_INT == 0 {
                    self.aux_irq.set_level(false);
                }
            }
            Some(0xd1) => {
                if b & 1 == 0 {
                    self.reset_machine();
                }
            }
            Some(0xd2) => self.replies.push_back((b, Source::Keyboard)),
            Some(0xd3) => self.replies.push_back((b, Source::Mouse)),
            Some(0xd4) => self.mouse.write(b),
            _ => {
                // Data for the keyboard; writing to it enables its interface.
                self.ccb &= !CCB_KBD_OFF;
                let xlate = self.translating();
                self.kbd.write(b, xlate);
            }
        }
    }

    /// A key from the host.
    pub fn key(&mut self, code: u16, down: bool) {
        let xlate = self.translating();
        self.kbd.key(code, down, xlate);
        self.update();
    }

    /// A relative mouse move from the host.
    pub fn mouse_rel(&mut self, dx: i32, dy: i32) {
        self.mouse.rel(dx, dy);
        self.update();
    }

    /// Mouse buttons from the host (RFB mask).
    pub fn mouse_buttons(&mut self, mask: u8) {
        self.mouse.buttons(mask);
        self.update();
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let port = (base + offset) as u16;
        data.fill(0);
        let v = match port {
            DATA_PORT => self.read_data(),
            COMMAND_PORT => self.status(),
            _ => 0xff,
        };
        if let Some(b) = data.first_mut() {
            *b = v;
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let port = (base + offset) as u16;
        let Some(&b) = data.first() else {
            return;
        };
        match port {
            DATA_PORT => self.write_data(b),
            COMMAND_PORT => self.command(b),
            _ => {}
        }
        self.update();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Line(Arc<AtomicBool>);

    impl IrqLine for Line {
        fn set_level(&self, high: bool) {
            self.0.store(high, Ordering::SeqCst);
        }
    }

    fn controller() -> (I8042, Line, Line) {
        let (k, a) = (Line::default(), Line::default());
        (
            I8042::new(Box::new(k.clone()), Box::new(a.clone()), None),
            k,
            a,
        )
    }

    fn out(c: &mut I8042, port: u16, v: u8) {
        c.write(u64::from(port), 0, &[v]);
    }

    fn inb(c: &mut I8042, port: u16) -> u8 {
        let mut b = [0u8];
        c.read(u64::from(port), 0, &mut b);
        b[0]
    }

    #[test]
    fn pulse_reset_line_command_resets_the_machine() {
        let exits = ExitSink::new().unwrap();
        let (k, a) = (Line::default(), Line::default());
        let mut c = I8042::new(Box::new(k), Box::new(a), Some(exits.clone()));
        // 0xfe pulses the reset line (`reboot=k`); 0xff pulses none.
        out(&mut c, COMMAND_PORT, 0xff);
        assert_eq!(exits.take(), None);
        out(&mut c, COMMAND_PORT, 0xfe);
        assert_eq!(exits.take(), Some(GuestExit::Reset));
        // The same value on the data port is a keyboard byte, not a command.
        out(&mut c, DATA_PORT, 0xfe);
        assert_eq!(exits.take(), None);
    }

    #[test]
    fn linux_i8042_probe_sequence() {
        let (mut c, kirq, _) = controller();
        // Flush, read CTR, self test, write CTR back.
        assert_eq!(inb(&mut c, COMMAND_PORT) & OBF, 0);
        out(&mut c, COMMAND_PORT, 0x20);
        assert_eq!(inb(&mut c, COMMAND_PORT) & OBF, OBF);
        let ctr = inb(&mut c, DATA_PORT);
        assert_eq!(ctr & CCB_XLATE, CCB_XLATE);
        out(&mut c, COMMAND_PORT, 0xaa);
        assert_eq!(inb(&mut c, DATA_PORT), 0x55);
        out(&mut c, COMMAND_PORT, 0x60);
        out(&mut c, DATA_PORT, ctr & !CCB_KBD_INT);
        // AUX loopback (0xd3) comes back flagged as mouse data.
        out(&mut c, COMMAND_PORT, 0xd3);
        out(&mut c, DATA_PORT, 0x5a);
        assert_eq!(inb(&mut c, COMMAND_PORT) & (OBF | AUXB), OBF | AUXB);
        assert_eq!(inb(&mut c, DATA_PORT), 0x5a);
        // Keyboard reset through the data port; no IRQ while disabled in the CTR.
        out(&mut c, DATA_PORT, 0xff);
        assert!(!kirq.0.load(Ordering::SeqCst));
        assert_eq!(inb(&mut c, DATA_PORT), 0xfa);
        assert_eq!(inb(&mut c, DATA_PORT), 0xaa);
    }

    #[test]
    fn keys_raise_irq1_and_mouse_irq12() {
        let (mut c, kirq, airq) = controller();
        c.key(30, true);
        assert!(kirq.0.load(Ordering::SeqCst));
        assert_eq!(inb(&mut c, DATA_PORT), 0x1e, "translated to set 1");
        assert!(!kirq.0.load(Ordering::SeqCst), "read lowers the line");
        // Mouse: enable reporting through 0xd4, then a move.
        out(&mut c, COMMAND_PORT, 0xd4);
        out(&mut c, DATA_PORT, 0xf4);
        assert!(airq.0.load(Ordering::SeqCst));
        assert_eq!(inb(&mut c, DATA_PORT), 0xfa);
        c.mouse_rel(1, 0);
        assert_eq!(inb(&mut c, COMMAND_PORT) & AUXB, AUXB);
        assert_eq!(
            [
                inb(&mut c, DATA_PORT),
                inb(&mut c, DATA_PORT),
                inb(&mut c, DATA_PORT)
            ],
            [0x08, 1, 0]
        );
        // Translation off: set 2 codes.
        out(&mut c, COMMAND_PORT, 0x60);
        out(&mut c, DATA_PORT, CCB_KBD_INT | CCB_AUX_INT);
        c.key(30, false);
        assert_eq!(
            [inb(&mut c, DATA_PORT), inb(&mut c, DATA_PORT)],
            [0xf0, 0x1c]
        );
    }

    #[test]
    fn disabled_keyboard_interface_holds_its_bytes() {
        let (mut c, _, _) = controller();
        out(&mut c, COMMAND_PORT, 0xad);
        c.key(30, true);
        assert_eq!(inb(&mut c, COMMAND_PORT) & OBF, 0);
        out(&mut c, COMMAND_PORT, 0xae);
        assert_eq!(inb(&mut c, DATA_PORT), 0x1e);
    }
}

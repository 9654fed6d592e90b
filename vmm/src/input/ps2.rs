//! PS/2 devices behind the i8042: the keyboard (scancode sets 1 and 2, LEDs,
//! typematic and identify commands) and the mouse (relative, 3-byte packets, and
//! the IntelliMouse 4-byte wheel protocol that the 200/100/80 sample-rate knock turns
//! on). Pure state machines: a command byte in, response bytes out, as the IBM PS/2
//! technical reference describes them and Linux's atkbd/psmouse and SeaBIOS use them.

use std::collections::VecDeque;

use crate::display::keycodes::ps2_bytes;

/// Acknowledge, resend, self-test passed, echo.
pub const ACK: u8 = 0xfa;
pub const RESEND: u8 = 0xfe;
pub const SELF_TEST_OK: u8 = 0xaa;
const ECHO: u8 = 0xee;
/// Bytes a device queues at most (the rest are dropped, as a full buffer does).
const QUEUE_MAX: usize = 256;

fn push(q: &mut VecDeque<u8>, bytes: &[u8]) {
    for &b in bytes {
        if q.len() < QUEUE_MAX {
            q.push_back(b);
        }
    }
}

/// The keyboard.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Keyboard {
    /// Bytes for the controller, oldest first.
    pub out: VecDeque<u8>,
    scanning: bool,
    /// Scancode set the guest chose (1 or 2; 3 is treated as 2).
    set: u8,
    /// A command waiting for its parameter byte.
    pending: Option<u8>,
    /// LEDs: bit 0 scroll, 1 num, 2 caps lock.
    pub leds: u8,
}

impl Default for Keyboard {
    fn default() -> Self {
        Keyboard {
            out: VecDeque::new(),
            scanning: true,
            set: 2,
            pending: None,
            leds: 0,
        }
    }
}

impl Keyboard {
    /// A byte from the host (through the controller). `translated`: the controller
    /// turns set 2 into set 1 (command byte bit 6), which changes some answers.
    pub fn write(&mut self, b: u8, translated: bool) {
        if let Some(cmd) = self.pending.take() {
            match cmd {
                0xed => self.leds = b & 7,
                0xf0 if b == 0 => {
                    // Which set: reported translated as the controller would.
                    let id = match (self.set, translated) {
                        (1, true) => 0x43,
                        (1, false) => 1,
                        (_, true) => 0x41,
                        (_, false) => 2,
                    };
                    push(&mut self.out, &[ACK, id]);
                    return;
                }
                0xf0 => self.set = if b == 1 { 1 } else { 2 },
                _ => {} // 0xf3 typematic rate: accepted, keys do not repeat here
            }
            push(&mut self.out, &[ACK]);
            return;
        }
        match b {
            0xff => {
                *self = Keyboard::default();
                push(&mut self.out, &[ACK, SELF_TEST_OK]);
            }
            0xf2 => push(
                &mut self.out,
                &[ACK, 0xab, if translated { 0x41 } else { 0x83 }],
            ),
            0xf4 => {
                self.scanning = true;
                push(&mut self.out, &[ACK]);
            }
            0xf5 => {
                // Disable: defaults, no scanning.
                self.scanning = false;
                self.set = 2;
                self.out.clear();
                push(&mut self.out, &[ACK]);
            }
            0xf6 => {
                self.scanning = true;
                self.set = 2;
                push(&mut self.out, &[ACK]);
            }
            0xed | 0xf0 | 0xf3 => {
                self.pending = Some(b);
                push(&mut self.out, &[ACK]);
            }
            0xee => push(&mut self.out, &[ECHO]),
            0xf7..=0xfd => push(&mut self.out, &[ACK]),
            0xfe => push(&mut self.out, &[ACK]),
            _ => push(&mut self.out, &[RESEND]),
        }
    }

    /// Linux key `code` went down or up: queues its scancodes if scanning.
    pub fn key(&mut self, code: u16, down: bool, translated: bool) {
        if !self.scanning {
            return;
        }
        // Set 1 comes out as set 1 whether or not the controller translates (QEMU
        // does the same); set 2 is turned into set 1 by a translating controller,
        // which we fold in here.
        let as_set1 = self.set == 1 || translated;
        push(&mut self.out, &ps2_bytes(code, down, as_set1));
    }
}

/// The mouse.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Mouse {
    /// Bytes for the controller, oldest first.
    pub out: VecDeque<u8>,
    reporting: bool,
    remote: bool,
    wrap: bool,
    scaling_2to1: bool,
    rate: u8,
    resolution: u8,
    /// 0 standard, 3 IntelliMouse (wheel), 4 IntelliMouse Explorer.
    id: u8,
    /// The last three sample rates set (the knock sequence for `id`).
    rates: [u8; 3],
    pending: Option<u8>,
    /// Buttons as PS/2 packs them: bit 0 left, 1 right, 2 middle.
    buttons: u8,
    dx: i32,
    dy: i32,
    dz: i32,
}

impl Default for Mouse {
    fn default() -> Self {
        Mouse {
            out: VecDeque::new(),
            reporting: false,
            remote: false,
            wrap: false,
            scaling_2to1: false,
            rate: 100,
            resolution: 2,
            id: 0,
            rates: [0; 3],
            pending: None,
            buttons: 0,
            dx: 0,
            dy: 0,
            dz: 0,
        }
    }
}

impl Mouse {
    /// A byte from the host (controller command 0xd4 first).
    pub fn write(&mut self, b: u8) {
        if self.wrap && b != 0xec && b != 0xff {
            push(&mut self.out, &[b]);
            return;
        }
        if let Some(cmd) = self.pending.take() {
            match cmd {
                0xf3 => {
                    self.rate = b;
                    self.rates = [self.rates[1], self.rates[2], b];
                    match self.rates {
                        [200, 100, 80] if self.id == 0 => self.id = 3,
                        [200, 200, 80] if self.id == 3 => self.id = 4,
                        _ => {}
                    }
                }
                _ => self.resolution = b & 3, // 0xe8
            }
            push(&mut self.out, &[ACK]);
            return;
        }
        match b {
            0xff => {
                let out = std::mem::take(&mut self.out);
                *self = Mouse {
                    out,
                    ..Mouse::default()
                };
                self.out.clear();
                push(&mut self.out, &[ACK, SELF_TEST_OK, 0x00]);
            }
            0xf6 => {
                let (out, id) = (std::mem::take(&mut self.out), self.id);
                *self = Mouse {
                    out,
                    id,
                    ..Mouse::default()
                };
                push(&mut self.out, &[ACK]);
            }
            0xf5 => {
                self.reporting = false;
                push(&mut self.out, &[ACK]);
            }
            0xf4 => {
                self.reporting = true;
                push(&mut self.out, &[ACK]);
            }
            0xf3 | 0xe8 => {
                self.pending = Some(b);
                push(&mut self.out, &[ACK]);
            }
            0xf2 => push(&mut self.out, &[ACK, self.id]),
            0xf0 => {
                self.remote = true;
                push(&mut self.out, &[ACK]);
            }
            0xea => {
                self.remote = false;
                push(&mut self.out, &[ACK]);
            }
            0xeb => {
                push(&mut self.out, &[ACK]);
                self.packet(true);
            }
            0xe9 => {
                let status = u8::from(self.remote) << 6
                    | u8::from(self.reporting) << 5
                    | u8::from(self.scaling_2to1) << 4
                    | (self.buttons & 1) << 2
                    | (self.buttons & 4) >> 1
                    | (self.buttons & 2) >> 1;
                push(&mut self.out, &[ACK, status, self.resolution, self.rate]);
            }
            0xe7 | 0xe6 => {
                self.scaling_2to1 = b == 0xe7;
                push(&mut self.out, &[ACK]);
            }
            0xee => {
                self.wrap = true;
                push(&mut self.out, &[ACK]);
            }
            0xec => {
                self.wrap = false;
                push(&mut self.out, &[ACK]);
            }
            _ => push(&mut self.out, &[RESEND]),
        }
    }

    /// A relative move (screen coordinates: y grows downwards).
    pub fn rel(&mut self, dx: i32, dy: i32) {
        self.dx = self.dx.saturating_add(dx);
        self.dy = self.dy.saturating_add(dy);
        self.flush();
    }

    /// Buttons as RFB sends them (bit 0 left, 1 middle, 2 right, 3 wheel up, 4 down).
    pub fn buttons(&mut self, mask: u8) {
        let ps2 = (mask & 1) | (mask & 4) >> 1 | (mask & 2) << 1;
        // A wheel "press" is one notch (RFB sends press then release).
        if mask & 0x08 != 0 {
            self.dz -= 1;
        }
        if mask & 0x10 != 0 {
            self.dz += 1;
        }
        let changed = ps2 != self.buttons || self.dz != 0;
        self.buttons = ps2;
        if changed {
            self.packet(false);
        }
    }

    fn flush(&mut self) {
        while self.dx != 0 || self.dy != 0 || self.dz != 0 {
            let before = (self.dx, self.dy, self.dz);
            self.packet(false);
            if !self.reporting || self.remote || before == (self.dx, self.dy, self.dz) {
                break;
            }
        }
    }

    /// Sends one packet with up to ±255 of the pending motion (always in remote
    /// mode's read-data, else only when reporting in stream mode).
    fn packet(&mut self, forced: bool) {
        if !forced && (!self.reporting || self.remote) {
            return;
        }
        let dx = self.dx.clamp(-255, 255);
        // PS/2 y grows upwards.
        let dy = (-self.dy).clamp(-255, 255);
        let dz = self.dz.clamp(-8, 7);
        self.dx -= dx;
        self.dy += dy;
        self.dz -= dz;
        let b0 = 0x08 | self.buttons | u8::from(dx < 0) << 4 | u8::from(dy < 0) << 5;
        let mut p = vec![b0, dx as u8, dy as u8];
        match self.id {
            3 => p.push(dz as u8),
            4 => p.push((dz as u8) & 0x0f),
            _ => {}
        }
        push(&mut self.out, &p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut VecDeque<u8>) -> Vec<u8> {
        q.drain(..).collect()
    }

    #[test]
    fn keyboard_commands_as_atkbd_sends_them() {
        let mut k = Keyboard::default();
        k.write(0xf2, true);
        assert_eq!(drain(&mut k.out), [ACK, 0xab, 0x41]);
        k.write(0xff, true);
        assert_eq!(drain(&mut k.out), [ACK, SELF_TEST_OK]);
        // LEDs: command, then the bits.
        k.write(0xed, true);
        k.write(0x06, true);
        assert_eq!(drain(&mut k.out), [ACK, ACK]);
        assert_eq!(k.leds, 6);
        // Typematic rate and scancode set query.
        k.write(0xf3, true);
        k.write(0x20, true);
        k.write(0xf0, false);
        k.write(0x00, false);
        assert_eq!(drain(&mut k.out), [ACK, ACK, ACK, ACK, 2]);
        k.write(0xee, true);
        assert_eq!(drain(&mut k.out), [0xee]);
        k.write(0x12, true);
        assert_eq!(drain(&mut k.out), [RESEND]);
    }

    #[test]
    fn keys_follow_scanning_and_translation() {
        let mut k = Keyboard::default();
        k.key(30, true, true);
        k.key(30, false, false);
        assert_eq!(drain(&mut k.out), [0x1e, 0xf0, 0x1c]);
        k.write(0xf5, true);
        drain(&mut k.out);
        k.key(30, true, true);
        assert!(k.out.is_empty(), "disabled keyboard sends nothing");
        k.write(0xf4, true);
        k.write(0xf0, false);
        k.write(0x01, false);
        drain(&mut k.out);
        k.key(30, true, false);
        assert_eq!(drain(&mut k.out), [0x1e], "set 1 without translation");
    }

    #[test]
    fn mouse_reset_stream_packets_and_wheel_knock() {
        let mut m = Mouse::default();
        m.write(0xff);
        assert_eq!(drain(&mut m.out), [ACK, SELF_TEST_OK, 0]);
        m.rel(5, 5);
        assert!(m.out.is_empty(), "not reporting yet");
        m.write(0xf4);
        drain(&mut m.out);
        m.rel(10, -3);
        // 5+10 right, 5-3=2 down → dy -2 (up is positive in PS/2).
        assert_eq!(drain(&mut m.out), [0x28, 15, 0xfe]);
        m.buttons(0b101); // left + right
        assert_eq!(drain(&mut m.out), [0x0b, 0, 0]);
        // IntelliMouse knock: 200, 100, 80, then the id is 3 and packets have 4 bytes.
        for r in [200, 100, 80] {
            m.write(0xf3);
            m.write(r);
        }
        m.write(0xf2);
        assert_eq!(
            drain(&mut m.out),
            [ACK; 6].iter().copied().chain([ACK, 3]).collect::<Vec<_>>()
        );
        m.buttons(0x08); // wheel up
        assert_eq!(drain(&mut m.out), [0x08, 0, 0, 0xff]);
        m.rel(300, 0);
        assert_eq!(drain(&mut m.out), [0x08, 255, 0, 0, 0x08, 45, 0, 0]);
        m.write(0xe9);
        assert_eq!(drain(&mut m.out), [ACK, 0x20, 2, 80]);
    }
}

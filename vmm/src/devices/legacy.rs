//! Small legacy platform devices: the i8042's port numbers (the controller is
//! `crate::input::i8042`), the PCI reset control register (0xcf9), the POST/debug port (0x80) and the pvpanic port (0x505).

use std::time::Instant;

use super::bus::BusDevice;
use crate::lifecycle::{ExitSink, GuestExit};

/// i8042 data port; the command/status port is at +4.
pub const I8042_DATA_PORT: u16 = 0x60;
/// i8042 command/status port.
pub const I8042_COMMAND_PORT: u16 = 0x64;
/// Reset control register (Intel PIIX/ICH `RST_CNT`); also the FADT reset register.
pub const RESET_PORT: u16 = 0xcf9;
/// The value the FADT tells the OS to write to [`RESET_PORT`].
pub const RESET_VALUE: u8 = 0x06;
/// POST code / debug port.
pub const DEBUG_PORT: u16 = 0x80;
/// QEMU's pvpanic ISA port.
pub const PVPANIC_PORT: u16 = 0x505;
/// System control port A (fast A20 gate, fast reset).
pub const PORT_A: u16 = 0x92;
/// QEMU's `isa-debugcon` port, where SeaBIOS writes its debug log.
pub const DEBUGCON_PORT: u16 = 0x402;

/// Port 0xcf9: bit 2 (`RST_CPU`) resets the machine.
pub struct ResetControl {
    value: u8,
    exits: ExitSink,
}

impl ResetControl {
    /// A reset register reporting to `exits`.
    pub fn new(exits: ExitSink) -> Self {
        ResetControl { value: 0, exits }
    }
}

impl BusDevice for ResetControl {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = self.value;
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if offset != 0 {
            return;
        }
        if let Some(&v) = data.first() {
            self.value = v & 0x0e;
            if v & 0x04 != 0 {
                self.exits.request(GuestExit::Reset);
            }
        }
    }
}

/// Port 0x80: logs each POST code with the time since the VMM started, so boot
/// milestones can be timed from the log.
pub struct DebugPort {
    start: Instant,
}

impl DebugPort {
    /// A debug port timing from `start`.
    pub fn new(start: Instant) -> Self {
        DebugPort { start }
    }
}

impl BusDevice for DebugPort {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
        if let Some(&v) = data.first() {
            let us = self.start.elapsed().as_micros();
            tracing::info!("guest debug port 0x80: code {v:#04x} at {us} us");
        }
    }
}

/// System control port A: bit 1 is the A20 gate (always on under KVM, but firmware
/// reads it back: OVMF does `IoOr8(0x92, BIT1)`), bit 0 a fast reset.
pub struct PortA {
    value: u8,
    exits: ExitSink,
}

impl PortA {
    /// Port A with A20 enabled, reporting resets to `exits`.
    pub fn new(exits: ExitSink) -> Self {
        PortA { value: 0x02, exits }
    }
}

impl BusDevice for PortA {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = self.value;
        }
    }

    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        // A reset happens on the 0 → 1 edge of bit 0.
        if v & 1 != 0 && self.value & 1 == 0 {
            self.exits.request(GuestExit::Reset);
        }
        self.value = v & 0x03;
    }
}

/// The debug console at 0x402: firmware's log, one `tracing` line per guest line
/// (target `firmware`; `OXVIRT_LOG=firmware=debug` shows it). Reads return 0xe9,
/// which is how SeaBIOS detects the port — only while that log is wanted: otherwise
/// SeaBIOS turns its log off and saves one exit per byte of it (≈ 4.5 KB a boot),
/// as under QEMU without `-debugcon`.
pub struct DebugCon {
    line: Vec<u8>,
    present: bool,
}

impl Default for DebugCon {
    fn default() -> Self {
        DebugCon {
            line: Vec::new(),
            present: tracing::enabled!(target: "firmware", tracing::Level::DEBUG),
        }
    }
}

/// Longest line kept before it is logged anyway.
const DEBUGCON_LINE_MAX: usize = 512;

impl BusDevice for DebugCon {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(if self.present { 0xe9 } else { 0xff });
    }

    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
        for &b in data {
            if b == b'\n' || self.line.len() >= DEBUGCON_LINE_MAX {
                let text = String::from_utf8_lossy(&self.line);
                tracing::debug!(target: "firmware", "{}", text.trim_end());
                self.line.clear();
            }
            if b != b'\n' {
                self.line.push(b);
            }
        }
    }
}

/// pvpanic: reading shows the supported events, writing bit 0 reports a panic.
pub struct Pvpanic {
    exits: ExitSink,
}

/// pvpanic event bits.
const PVPANIC_PANICKED: u8 = 1;
const PVPANIC_CRASH_LOADED: u8 = 2;

impl Pvpanic {
    /// A pvpanic port reporting to `exits`.
    pub fn new(exits: ExitSink) -> Self {
        Pvpanic { exits }
    }
}

impl BusDevice for Pvpanic {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
        }
    }

    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
        if data.first().is_some_and(|v| v & PVPANIC_PANICKED != 0) {
            self.exits.request(GuestExit::Panicked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cf9_resets_only_with_rst_cpu() {
        let s = ExitSink::new().unwrap();
        let mut r = ResetControl::new(s.clone());
        r.write(0xcf9, 0, &[0x02]);
        assert_eq!(s.take(), None);
        let mut v = [0u8];
        r.read(0xcf9, 0, &mut v);
        assert_eq!(v[0], 0x02);
        r.write(0xcf9, 0, &[RESET_VALUE]);
        assert_eq!(s.take(), Some(GuestExit::Reset));
    }

    #[test]
    fn port_a_keeps_a20_and_resets_on_bit_0() {
        let s = ExitSink::new().unwrap();
        let mut p = PortA::new(s.clone());
        let mut v = [0u8];
        p.read(0x92, 0, &mut v);
        assert_eq!(v[0], 0x02);
        p.write(0x92, 0, &[v[0] | 0x02]);
        assert_eq!(s.take(), None);
        p.write(0x92, 0, &[0x03]);
        assert_eq!(s.take(), Some(GuestExit::Reset));
    }

    #[test]
    fn debugcon_reads_e9_while_its_log_is_wanted() {
        let mut d = DebugCon::default();
        let mut v = [0u8];
        d.read(0x402, 0, &mut v);
        // No subscriber in unit tests: the port looks absent.
        assert_eq!(v[0], 0xff);
        d.present = true;
        d.read(0x402, 0, &mut v);
        assert_eq!(v[0], 0xe9);
        d.write(0x402, 0, b"SeaBIOS\n");
        assert!(d.line.is_empty());
    }

    #[test]
    fn pvpanic_reports_a_panic() {
        let s = ExitSink::new().unwrap();
        let mut p = Pvpanic::new(s.clone());
        let mut v = [0u8];
        p.read(0x505, 0, &mut v);
        assert_eq!(v[0], 3);
        p.write(0x505, 0, &[1]);
        assert_eq!(s.take(), Some(GuestExit::Panicked));
    }
}

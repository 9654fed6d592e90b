//! ACPI fixed hardware: the PM1 event and control blocks and the PM timer,
//! which give the guest its power button and its way to S5.
//!
//! ```text
//! 0x600  PM1a_STS  (16 bit, write 1 to clear)   bit 8 PWRBTN_STS
//! 0x602  PM1a_EN   (16 bit)                     bit 8 PWRBTN_EN
//! 0x604  PM1a_CNT  (16 bit)                     bit 0 SCI_EN, 10-12 SLP_TYP, 13 SLP_EN
//! 0x608  PM_TMR    (32 bit, 3.579545 MHz)
//! ```
//!
//! The SCI (IRQ 9, level, active high) is asserted while `STS & EN` has a bit set.
//! Writing `SLP_TYP = 5` (the DSDT's `\_S5`) with `SLP_EN` powers the machine off.

use std::time::Instant;

use super::bus::BusDevice;
use crate::lifecycle::{ExitSink, GuestExit};

/// First port of the PM block.
pub const PM_BASE: u16 = 0x600;
/// Ports the block spans.
pub const PM_LEN: u64 = 12;
/// PM1a event block (STS + EN).
pub const PM1A_EVT_BLK: u16 = PM_BASE;
/// PM1 event block length (bytes).
pub const PM1_EVT_LEN: u8 = 4;
/// PM1a control block.
pub const PM1A_CNT_BLK: u16 = PM_BASE + 4;
/// PM1 control block length.
pub const PM1_CNT_LEN: u8 = 2;
/// PM timer.
pub const PM_TMR_BLK: u16 = PM_BASE + 8;
/// PM timer block length.
pub const PM_TMR_LEN: u8 = 4;
/// The SCI's ISA IRQ / GSI.
pub const SCI_IRQ: u32 = 9;
/// The sleep type `\_S5` names.
pub const SLP_TYP_S5: u16 = 5;

const PWRBTN: u16 = 1 << 8;
const SCI_EN: u16 = 1;
const SLP_EN: u16 = 1 << 13;
const PM_TIMER_HZ: u128 = 3_579_545;

/// A level-triggered interrupt line.
pub trait IrqLine: Send {
    /// Drives the line high (`true`) or low.
    fn set_level(&self, high: bool);
}

/// The PM registers.
pub struct PmDevice {
    status: u16,
    enable: u16,
    control: u16,
    start: Instant,
    sci: Box<dyn IrqLine>,
    exits: ExitSink,
}

impl PmDevice {
    /// A PM block raising `sci` and reporting power-off to `exits`.
    pub fn new(sci: Box<dyn IrqLine>, exits: ExitSink) -> Self {
        PmDevice {
            status: 0,
            enable: 0,
            // Hardware is always in ACPI mode (the FADT has no SMI command port).
            control: SCI_EN,
            start: Instant::now(),
            sci,
            exits,
        }
    }

    /// Presses the power button: sets PWRBTN_STS and raises the SCI if enabled.
    pub fn press_power_button(&mut self) {
        self.status |= PWRBTN;
        self.update_sci();
    }

    fn update_sci(&self) {
        self.sci.set_level(self.status & self.enable != 0);
    }

    fn timer(&self) -> u32 {
        let ns = self.start.elapsed().as_nanos();
        (ns * PM_TIMER_HZ / 1_000_000_000) as u32
    }

    fn registers(&self) -> [u8; PM_LEN as usize] {
        let mut r = [0u8; PM_LEN as usize];
        r[0..2].copy_from_slice(&self.status.to_le_bytes());
        r[2..4].copy_from_slice(&self.enable.to_le_bytes());
        r[4..6].copy_from_slice(&self.control.to_le_bytes());
        r[8..12].copy_from_slice(&self.timer().to_le_bytes());
        r
    }
}

impl BusDevice for PmDevice {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let regs = self.registers();
        for (i, b) in data.iter_mut().enumerate() {
            *b = regs.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let mut control_written = false;
        for (i, &b) in data.iter().enumerate() {
            let at = offset as usize + i;
            let shift = 8 * (at % 2);
            let v = u16::from(b) << shift;
            let mask = 0xffu16 << shift;
            match at {
                0 | 1 => self.status &= !v,
                2 | 3 => self.enable = (self.enable & !mask) | v,
                4 | 5 => {
                    self.control = (self.control & !mask) | v;
                    control_written = true;
                }
                _ => {}
            }
        }
        if control_written && self.control & SLP_EN != 0 {
            let typ = (self.control >> 10) & 7;
            self.control &= !SLP_EN; // write-only bit
            if typ == SLP_TYP_S5 {
                tracing::info!("guest entered ACPI S5 (power off)");
                self.exits.request(GuestExit::PowerOff);
            } else {
                tracing::warn!(
                    slp_typ = typ,
                    "guest asked for an unsupported sleep state; ignored"
                );
            }
        }
        self.control |= SCI_EN;
        self.update_sci();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    struct Line(Arc<AtomicBool>);
    impl IrqLine for Line {
        fn set_level(&self, high: bool) {
            self.0.store(high, Ordering::SeqCst);
        }
    }

    fn pm() -> (PmDevice, Arc<AtomicBool>, ExitSink) {
        let level = Arc::new(AtomicBool::new(false));
        let s = ExitSink::new().unwrap();
        (
            PmDevice::new(Box::new(Line(level.clone())), s.clone()),
            level,
            s,
        )
    }

    fn r16(p: &mut PmDevice, off: u64) -> u16 {
        let mut b = [0u8; 2];
        p.read(0x600, off, &mut b);
        u16::from_le_bytes(b)
    }

    #[test]
    fn power_button_raises_sci_only_when_enabled_and_clears_on_w1c() {
        let (mut p, level, _) = pm();
        p.press_power_button();
        assert!(!level.load(Ordering::SeqCst), "not enabled yet");
        assert_eq!(r16(&mut p, 0) & PWRBTN, PWRBTN);
        p.write(0x600, 2, &PWRBTN.to_le_bytes());
        assert!(level.load(Ordering::SeqCst));
        // Writing 0 to a status bit keeps it; writing 1 clears it.
        p.write(0x600, 0, &0u16.to_le_bytes());
        assert!(level.load(Ordering::SeqCst));
        p.write(0x600, 0, &PWRBTN.to_le_bytes());
        assert!(!level.load(Ordering::SeqCst));
        assert_eq!(r16(&mut p, 0), 0);
    }

    #[test]
    fn s5_powers_off_and_other_sleep_states_do_not() {
        let (mut p, _, s) = pm();
        assert_eq!(r16(&mut p, 4) & SCI_EN, SCI_EN, "always in ACPI mode");
        p.write(0x600, 4, &((3 << 10) | SLP_EN).to_le_bytes());
        assert_eq!(s.take(), None);
        p.write(0x600, 4, &((SLP_TYP_S5 << 10) | SLP_EN).to_le_bytes());
        assert_eq!(s.take(), Some(GuestExit::PowerOff));
        assert_eq!(r16(&mut p, 4) & SLP_EN, 0);
    }

    #[test]
    fn pm_timer_counts_up() {
        let (mut p, _, _) = pm();
        let mut a = [0u8; 4];
        p.read(0x600, 8, &mut a);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut b = [0u8; 4];
        p.read(0x600, 8, &mut b);
        assert!(u32::from_le_bytes(b) > u32::from_le_bytes(a));
    }
}

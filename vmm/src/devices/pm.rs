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
//! Writing the DSDT's `\_S5` sleep type with `SLP_EN` powers the machine off.
//!
//! The block comes in three flavours ([`PmKind`]), all at PMBASE 0x600:
//!
//! * generic (direct kernel boot): the 12 ports above; `\_S5` is 5.
//! * ICH9 (Q35), the LPC's 128-port ACPI I/O space: the same PM1 and timer, plus
//!   GPE0 at +0x20 (8 bytes of status, write 1 to clear, then 8 of enable) and
//!   SMI_EN at +0x30 with APMC_EN (bit 5) preset, as QEMU sets it when there is no
//!   SMM: SeaBIOS's `smm_setup()` otherwise writes to the APM port and spins
//!   until an SMI handler answers. Soft-off is SLP_TYP 0 (QEMU's `\_S5`, and what
//!   OVMF's `ResetShutdown()` writes).
//! * PIIX4 (i440FX): 64 ports, PM1 and timer as above; soft-off is SLP_TYP 0 too.
//!
//! Other ports of the block read 0 and ignore writes.
//!
//! Machines with ACPI PCI hot-plug (`pc`, [`PmDevice::with_gpe`]) also have QEMU's
//! PIIX4 GPE0 block at [`GPE0_BLK`]: 2 bytes of status (write 1 to clear), then 2 of
//! enable; the FADT's GPE0_BLK names it. The PCI hot-plug registers
//! (`pci/acpi_hotplug.rs`) raise GPE [`GPE_PCI_HOTPLUG`] through
//! [`PmDevice::raise_gpe`], and the SCI is asserted while `STS & EN` has a bit set
//! here or in PM1.

use std::time::Instant;

use machine_spec::Chipset;

use super::bus::BusDevice;
use crate::lifecycle::{ExitSink, GuestExit};

/// First port of the PM block.
pub const PM_BASE: u16 = 0x600;
/// Ports the generic block spans ([`PmKind::ports`] for every flavour).
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
/// The sleep type `\_S5` names on the generic platform.
pub const SLP_TYP_S5: u16 = 5;
/// ICH9 GPE0 block (status, then enable), relative to PMBASE.
pub const ICH9_GPE0_OFFSET: u64 = 0x20;
/// ICH9 GPE0 block length: 8 bytes of status, 8 of enable.
pub const ICH9_GPE0_LEN: u64 = 16;
/// ICH9 SMI_EN register, relative to PMBASE.
pub const ICH9_SMI_EN_OFFSET: u64 = 0x30;
/// SMI_EN bit 5: an APM port write raises an SMI.
pub const ICH9_SMI_EN_APMC_EN: u32 = 1 << 5;

/// The GPE0 block of machines with ACPI PCI hot-plug (QEMU's PIIX4 address).
pub const GPE0_BLK: u16 = 0xafe0;
/// Its length: 2 bytes of status, 2 of enable (16 GPEs).
pub const GPE0_LEN: u8 = 4;
/// The GPE that PCI hot-plug events raise (the DSDT's `\_GPE._E01`).
pub const GPE_PCI_HOTPLUG: u8 = 1;

const PWRBTN: u16 = 1 << 8;
const SCI_EN: u16 = 1;
const SLP_EN: u16 = 1 << 13;
const PM_TIMER_HZ: u128 = 3_579_545;

/// Which chipset's PM block this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmKind {
    /// oxvirt's generic platform: PM1 and the timer.
    Generic,
    /// Q35's ICH9 LPC ACPI I/O space.
    Ich9,
    /// i440FX's PIIX4 PM function.
    Piix4,
}

impl PmKind {
    /// The block `chipset` has.
    pub const fn of(chipset: Chipset) -> Self {
        match chipset {
            Chipset::Generic => PmKind::Generic,
            Chipset::Q35 => PmKind::Ich9,
            Chipset::I440fx => PmKind::Piix4,
        }
    }

    /// Ports the block spans from [`PM_BASE`].
    pub const fn ports(self) -> u64 {
        match self {
            PmKind::Generic => PM_LEN,
            PmKind::Ich9 => 128,
            PmKind::Piix4 => 64,
        }
    }

    /// The PM1 `SLP_TYP` that powers off: the DSDT's `\_S5` says the same.
    pub const fn s5_sleep_type(self) -> u16 {
        match self {
            PmKind::Generic => SLP_TYP_S5,
            PmKind::Ich9 | PmKind::Piix4 => 0,
        }
    }
}

/// A level-triggered interrupt line.
pub trait IrqLine: Send {
    /// Drives the line high (`true`) or low.
    fn set_level(&self, high: bool);
}

/// The PM registers.
pub struct PmDevice {
    kind: PmKind,
    status: u16,
    enable: u16,
    control: u16,
    /// ICH9 GPE0 status (write 1 to clear) and enable; nothing raises a GPE.
    gpe0: [u8; ICH9_GPE0_LEN as usize],
    /// ICH9 SMI_EN.
    smi_en: u32,
    /// The GPE0 block at [`GPE0_BLK`] (status 0-1, enable 2-3), when the machine has it.
    gpe: Option<[u8; GPE0_LEN as usize]>,
    start: Instant,
    sci: Box<dyn IrqLine>,
    exits: ExitSink,
}

impl PmDevice {
    /// The generic PM block, raising `sci` and reporting power-off to `exits`.
    pub fn new(sci: Box<dyn IrqLine>, exits: ExitSink) -> Self {
        Self::with_kind(PmKind::Generic, sci, exits)
    }

    /// The PM block of `kind`, raising `sci` and reporting power-off to `exits`.
    pub fn with_kind(kind: PmKind, sci: Box<dyn IrqLine>, exits: ExitSink) -> Self {
        PmDevice {
            kind,
            status: 0,
            enable: 0,
            // Hardware is always in ACPI mode (the FADT has no SMI command port).
            control: SCI_EN,
            gpe0: [0; ICH9_GPE0_LEN as usize],
            // No SMM: "SMM already initialised", as QEMU's ICH9 pm_reset says.
            smi_en: ICH9_SMI_EN_APMC_EN,
            gpe: None,
            start: Instant::now(),
            sci,
            exits,
        }
    }

    /// Gives the block the GPE0 registers at [`GPE0_BLK`] (the caller maps them).
    pub fn with_gpe(mut self) -> Self {
        self.gpe = Some([0; GPE0_LEN as usize]);
        self
    }

    /// Sets GPE `bit`'s status (an event) and raises the SCI if it is enabled.
    /// Without a GPE0 block nothing happens.
    pub fn raise_gpe(&mut self, bit: u8) {
        if let Some(g) = self.gpe.as_mut() {
            g[usize::from(bit / 8)] |= 1 << (bit % 8);
        }
        self.update_sci();
    }

    /// Presses the power button: sets PWRBTN_STS and raises the SCI if enabled.
    pub fn press_power_button(&mut self) {
        self.status |= PWRBTN;
        self.update_sci();
    }

    fn update_sci(&self) {
        let gpe = self
            .gpe
            .is_some_and(|g| g[0] & g[2] != 0 || g[1] & g[3] != 0);
        self.sci.set_level(self.status & self.enable != 0 || gpe);
    }

    /// An access to the GPE0 block (`base` is [`GPE0_BLK`]).
    fn gpe_access(&mut self, offset: u64, read: Option<&mut [u8]>, write: &[u8]) {
        let Some(g) = self.gpe.as_mut() else {
            if let Some(data) = read {
                data.fill(0);
            }
            return;
        };
        match read {
            Some(data) => {
                for (i, b) in data.iter_mut().enumerate() {
                    *b = g.get(offset as usize + i).copied().unwrap_or(0);
                }
            }
            None => {
                for (i, &b) in write.iter().enumerate() {
                    match offset as usize + i {
                        at @ 0..=1 => g[at] &= !b, // status: write 1 to clear
                        at @ 2..=3 => g[at] = b,
                        _ => {}
                    }
                }
                self.update_sci();
            }
        }
    }

    fn timer(&self) -> u32 {
        let ns = self.start.elapsed().as_nanos();
        (ns * PM_TIMER_HZ / 1_000_000_000) as u32
    }

    /// The byte at `at` (offset into the block).
    fn register_byte(&self, at: u64, timer: u32) -> u8 {
        let byte = |v: u64, i: u64| (v >> (8 * i)) as u8;
        let ich9 = self.kind == PmKind::Ich9;
        match at {
            0..=1 => byte(self.status.into(), at),
            2..=3 => byte(self.enable.into(), at - 2),
            4..=5 => byte(self.control.into(), at - 4),
            8..=11 => byte(timer.into(), at - 8),
            0x20..=0x2f if ich9 => self.gpe0[(at - ICH9_GPE0_OFFSET) as usize],
            0x30..=0x33 if ich9 => byte(self.smi_en.into(), at - ICH9_SMI_EN_OFFSET),
            _ => 0,
        }
    }
}

/// The PM registers, and how far the PM timer had counted (it goes on from there,
/// so a restored guest never sees it jump back).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedPm {
    status: u16,
    enable: u16,
    control: u16,
    gpe0: Vec<u8>,
    smi_en: u32,
    gpe: Option<Vec<u8>>,
    timer_ns: u64,
}

impl crate::vmstate::Stateful for PmDevice {
    fn save_state(&self) -> serde_json::Value {
        crate::vmstate::to_value(&SavedPm {
            status: self.status,
            enable: self.enable,
            control: self.control,
            gpe0: self.gpe0.to_vec(),
            smi_en: self.smi_en,
            gpe: self.gpe.map(|g| g.to_vec()),
            timer_ns: self.start.elapsed().as_nanos() as u64,
        })
    }

    fn restore_state(&mut self, v: &serde_json::Value) -> Result<(), String> {
        let s: SavedPm = crate::vmstate::from_value(v)?;
        if s.gpe.is_some() != self.gpe.is_some() {
            return Err("the saved PM block differs in its GPE0 block".into());
        }
        self.gpe0 = s
            .gpe0
            .try_into()
            .map_err(|_| "ICH9 GPE0 block of the wrong size".to_string())?;
        if let Some(g) = s.gpe {
            self.gpe = Some(
                g.try_into()
                    .map_err(|_| "GPE0 block of the wrong size".to_string())?,
            );
        }
        self.status = s.status;
        self.enable = s.enable;
        self.control = s.control;
        self.smi_en = s.smi_en;
        let now = Instant::now();
        self.start = now
            .checked_sub(std::time::Duration::from_nanos(s.timer_ns))
            .unwrap_or(now);
        self.update_sci();
        Ok(())
    }
}

impl BusDevice for PmDevice {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        if base == u64::from(GPE0_BLK) {
            return self.gpe_access(offset, Some(data), &[]);
        }
        // One timer sample for the whole access, so a 32-bit read is consistent.
        let timer = if offset < 12 && offset + data.len() as u64 > 8 {
            self.timer()
        } else {
            0
        };
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.register_byte(offset + i as u64, timer);
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        if base == u64::from(GPE0_BLK) {
            return self.gpe_access(offset, None, data);
        }
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
                0x20..=0x2f if self.kind == PmKind::Ich9 => {
                    let i = at - ICH9_GPE0_OFFSET as usize;
                    if i < 8 {
                        self.gpe0[i] &= !b; // status: write 1 to clear
                    } else {
                        self.gpe0[i] = b;
                    }
                }
                0x30..=0x33 if self.kind == PmKind::Ich9 => {
                    let shift = 8 * (at - ICH9_SMI_EN_OFFSET as usize);
                    self.smi_en = (self.smi_en & !(0xff << shift)) | (u32::from(b) << shift);
                }
                _ => {}
            }
        }
        if control_written && self.control & SLP_EN != 0 {
            let typ = (self.control >> 10) & 7;
            self.control &= !SLP_EN; // write-only bit
            if typ == self.kind.s5_sleep_type() {
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
        pm_of(PmKind::Generic)
    }

    fn pm_of(kind: PmKind) -> (PmDevice, Arc<AtomicBool>, ExitSink) {
        let level = Arc::new(AtomicBool::new(false));
        let s = ExitSink::new().unwrap();
        (
            PmDevice::with_kind(kind, Box::new(Line(level.clone())), s.clone()),
            level,
            s,
        )
    }

    fn r32(p: &mut PmDevice, off: u64) -> u32 {
        let mut b = [0u8; 4];
        p.read(0x600, off, &mut b);
        u32::from_le_bytes(b)
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

    #[test]
    fn block_lengths_follow_the_chipset() {
        assert_eq!(PmKind::of(Chipset::Generic).ports(), PM_LEN);
        assert_eq!(PmKind::of(Chipset::Q35), PmKind::Ich9);
        assert_eq!(PmKind::Ich9.ports(), 128);
        assert_eq!(PmKind::of(Chipset::I440fx).ports(), 64);
    }

    #[test]
    fn ich9_smi_en_reads_with_apmc_en_preset() {
        let (mut p, _, _) = pm_of(PmKind::Ich9);
        assert_eq!(r32(&mut p, 0x30), ICH9_SMI_EN_APMC_EN);
        let mut b = [0u8; 1];
        p.read(0x600, 0x30, &mut b);
        assert_eq!(b[0] & 0x20, 0x20, "SeaBIOS reads it bytewise too");
        p.write(0x600, 0x30, &0x21u32.to_le_bytes());
        assert_eq!(r32(&mut p, 0x30), 0x21, "SMI_EN is read/write");
    }

    #[test]
    fn ich9_gpe0_status_is_write_one_to_clear_and_enable_read_write() {
        let (mut p, level, _) = pm_of(PmKind::Ich9);
        assert_eq!(r32(&mut p, 0x20), 0);
        p.write(0x600, 0x28, &0x0102_0304u32.to_le_bytes());
        assert_eq!(r32(&mut p, 0x28), 0x0102_0304);
        p.write(0x600, 0x20, &u32::MAX.to_le_bytes());
        assert_eq!(r32(&mut p, 0x20), 0);
        assert!(!level.load(Ordering::SeqCst));
        // Unimplemented registers of the 128-port block read 0.
        assert_eq!(r32(&mut p, 0x60), 0);
        assert_eq!(r32(&mut p, 0x7c), 0);
    }

    #[test]
    fn ich9_powers_off_on_sleep_type_0_only() {
        let (mut p, _, s) = pm_of(PmKind::Ich9);
        p.write(0x600, 4, &((SLP_TYP_S5 << 10) | SLP_EN).to_le_bytes());
        assert_eq!(s.take(), None, "5 is S3 on ICH9, not soft-off");
        p.write(0x600, 4, &(SLP_EN | SCI_EN).to_le_bytes());
        assert_eq!(s.take(), Some(GuestExit::PowerOff));
        assert_eq!(r16(&mut p, 4), SCI_EN);
    }

    #[test]
    fn generic_block_has_no_gpe_or_smi_registers() {
        let (mut p, _, s) = pm();
        assert_eq!(r32(&mut p, 0x30), 0);
        p.write(0x600, 4, &SLP_EN.to_le_bytes());
        assert_eq!(s.take(), None, "SLP_TYP 0 is S0 on the generic platform");
    }

    #[test]
    fn gpe0_raises_the_sci_while_status_and_enable_share_a_bit() {
        let level = Arc::new(AtomicBool::new(false));
        let mut p = PmDevice::with_kind(
            PmKind::Generic,
            Box::new(Line(level.clone())),
            ExitSink::new().unwrap(),
        )
        .with_gpe();
        let gpe = u64::from(GPE0_BLK);
        let r = |p: &mut PmDevice| {
            let mut b = [0u8; 4];
            p.read(gpe, 0, &mut b);
            b
        };
        p.raise_gpe(GPE_PCI_HOTPLUG);
        assert_eq!(r(&mut p), [2, 0, 0, 0], "status set, not enabled");
        assert!(!level.load(Ordering::SeqCst));
        // The OS enables GPE 1 (ACPICA writes the enable byte alone).
        p.write(gpe, 2, &[2]);
        assert!(level.load(Ordering::SeqCst));
        assert_eq!(r(&mut p), [2, 0, 2, 0]);
        // Writing 0 keeps the status; writing 1 clears it and drops the SCI.
        p.write(gpe, 0, &[0]);
        assert!(level.load(Ordering::SeqCst));
        p.write(gpe, 0, &[2]);
        assert!(!level.load(Ordering::SeqCst));
        assert_eq!(r(&mut p), [0, 0, 2, 0]);
        // A second event while enabled raises it at once; PM1 is unaffected.
        p.raise_gpe(GPE_PCI_HOTPLUG);
        assert!(level.load(Ordering::SeqCst));
        assert_eq!(r16(&mut p, 0), 0);
        // GPE 9 lives in the second byte.
        p.write(gpe, 0, &[2]);
        p.raise_gpe(9);
        assert!(!level.load(Ordering::SeqCst));
        p.write(gpe, 3, &[2]);
        assert!(level.load(Ordering::SeqCst));
    }

    #[test]
    fn without_a_gpe_block_gpe_ports_read_zero_and_events_are_dropped() {
        let (mut p, level, _) = pm_of(PmKind::Piix4);
        p.write(u64::from(GPE0_BLK), 2, &[0xff, 0xff]);
        p.raise_gpe(GPE_PCI_HOTPLUG);
        let mut b = [0xffu8; 4];
        p.read(u64::from(GPE0_BLK), 0, &mut b);
        assert_eq!(b, [0; 4]);
        assert!(!level.load(Ordering::SeqCst));
    }

    #[test]
    fn timer_reads_are_consistent_bytewise_and_wide() {
        let (mut p, _, _) = pm_of(PmKind::Ich9);
        let a = r32(&mut p, 8);
        let b = r32(&mut p, 8);
        assert!(b >= a);
        let mut w = [0u8; 2];
        p.read(0x600, 10, &mut w);
        assert!(u32::from(u16::from_le_bytes(w)) >= a >> 16);
    }
}

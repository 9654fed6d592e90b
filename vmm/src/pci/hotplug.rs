//! PCIe native hot-plug of one slot (PCIe Base 4.0 §6.7, the Slot Capabilities,
//! Control and Status registers of a root port's PCI Express capability), the way
//! QEMU's `pcie-root-port` models it (`hw/pci/pcie.c`), so Linux's `pciehp` drives
//! it unchanged:
//!
//! * the slot has an attention button, a power controller, power and attention
//!   indicators, and is hot-plug capable; no MRL sensor, no surprise removal;
//! * **hot-add**: the host puts a device in the slot → presence detect and data
//!   link layer state changed; the OS powers the slot on and scans it;
//! * **hot-remove**: the host presses the attention button; the OS (after its
//!   5-second abort window) unbinds the driver, turns the power controller off and
//!   the power indicator off; that write is the moment the device may go
//!   ([`SlotWrite::unplug`]). A guest that never does so keeps the device;
//! * every Slot Control write completes at once (command completed);
//! * the port interrupts (MSI) when an enabled event becomes pending while none
//!   was: the level [`HotplugSlot::interrupt_pending`] rising.
//!
//! This is the register model alone; [`super::bridge::Bridge`] maps it into
//! configuration space and owns the MSI.

/// Slot Capabilities bits.
const SLTCAP_ABP: u32 = 1 << 0;
const SLTCAP_PCP: u32 = 1 << 1;
const SLTCAP_AIP: u32 = 1 << 3;
const SLTCAP_PIP: u32 = 1 << 4;
const SLTCAP_HPC: u32 = 1 << 6;

/// Slot Control bits.
const SLTCTL_ABPE: u16 = 1 << 0;
const SLTCTL_PDCE: u16 = 1 << 3;
const SLTCTL_CCIE: u16 = 1 << 4;
const SLTCTL_HPIE: u16 = 1 << 5;
const SLTCTL_AIC: u16 = 3 << 6;
const SLTCTL_PIC: u16 = 3 << 8;
const SLTCTL_PCC: u16 = 1 << 10;
const SLTCTL_DLLSCE: u16 = 1 << 12;
/// Indicator values (two-bit fields): on, blink, off.
const IND_ON: u16 = 1;
const IND_BLINK: u16 = 2;
const IND_OFF: u16 = 3;
/// What the OS may write: event enables, indicators, power controller, DLLSC enable
/// (the electromechanical interlock control and the reserved bits are not ours).
const SLTCTL_WRITABLE: u16 =
    0x1f | SLTCTL_HPIE | SLTCTL_AIC | SLTCTL_PIC | SLTCTL_PCC | SLTCTL_DLLSCE;

/// Slot Status bits.
const SLTSTA_ABP: u16 = 1 << 0;
const SLTSTA_PDC: u16 = 1 << 3;
const SLTSTA_CC: u16 = 1 << 4;
const SLTSTA_PDS: u16 = 1 << 6;
const SLTSTA_DLLSC: u16 = 1 << 8;
/// Event bits the OS clears by writing 1.
const SLTSTA_RW1C: u16 = 0x1f | SLTSTA_DLLSC;

/// Why a host request on the slot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// Something is in the slot already.
    #[error("the slot is occupied")]
    Occupied,
    /// Nothing is in the slot.
    #[error("the slot is empty")]
    Empty,
    /// The OS is handling an earlier button press (power indicator blinking).
    #[error("guest is busy (power indicator blinking)")]
    Busy,
}

/// What a Slot Control write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotWrite {
    /// The OS turned power and power indicator off with a device present: the
    /// device may be removed now.
    pub unplug: bool,
}

/// The slot registers of one hot-plug capable downstream port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HotplugSlot {
    control: u16,
    status: u16,
    /// Interrupt level as last signalled (MSI is sent on its rising edge).
    signalled: bool,
}

impl HotplugSlot {
    /// A slot as at machine start: powered with its power indicator on when
    /// `populated`, powered off with indicators off when empty.
    pub fn new(populated: bool) -> Self {
        let mut s = HotplugSlot {
            control: IND_OFF << 6,
            status: 0,
            signalled: false,
        };
        s.cold_set(populated);
        s
    }

    /// Re-states the slot as populated or not without events (a device placed
    /// at build time).
    pub fn cold_set(&mut self, populated: bool) {
        self.control &= !(SLTCTL_PIC | SLTCTL_PCC);
        if populated {
            self.control |= IND_ON << 8;
            self.status |= SLTSTA_PDS;
        } else {
            self.control |= (IND_OFF << 8) | SLTCTL_PCC;
            self.status &= !SLTSTA_PDS;
        }
    }

    /// Slot Capabilities bits this model offers (the physical slot number is the
    /// port's to add).
    pub const fn capabilities() -> u32 {
        SLTCAP_ABP | SLTCAP_PCP | SLTCAP_AIP | SLTCAP_PIP | SLTCAP_HPC
    }

    /// Slot Control as the OS reads it.
    pub fn control(&self) -> u16 {
        self.control
    }

    /// Slot Status as the OS reads it.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether a device is in the slot.
    pub fn present(&self) -> bool {
        self.status & SLTSTA_PDS != 0
    }

    /// Link Status' "data link layer link active": a device is present and the
    /// slot powered (or it has no power yet to report: the power controller is on).
    pub fn link_active(&self) -> bool {
        self.present() && self.control & SLTCTL_PCC == 0
    }

    /// Whether slot power and power indicator are both off.
    fn powered_off(control: u16) -> bool {
        control & SLTCTL_PCC != 0 && (control & SLTCTL_PIC) >> 8 == IND_OFF
    }

    /// The OS writes Slot Control: one command, completed at once.
    pub fn write_control(&mut self, value: u16) -> SlotWrite {
        let old = self.control;
        self.control = (old & !SLTCTL_WRITABLE) | (value & SLTCTL_WRITABLE);
        // Turning the power controller back on of an occupied slot brings its
        // link up again (a guest that re-enables a slot it had powered off).
        if old & SLTCTL_PCC != 0 && self.control & SLTCTL_PCC == 0 && self.present() {
            self.status |= SLTSTA_DLLSC;
        }
        // QEMU's rule: only the transition to "off" unplugs, so a guest that
        // rewrites the control of a slot already off removes nothing.
        let unplug = self.present() && Self::powered_off(self.control) && !Self::powered_off(old);
        self.status |= SLTSTA_CC;
        SlotWrite { unplug }
    }

    /// The OS writes Slot Status: event bits it writes as 1 are cleared.
    pub fn write_status(&mut self, value: u16) {
        self.status &= !(value & SLTSTA_RW1C);
    }

    /// The host puts a device into the empty slot.
    pub fn plug(&mut self) -> Result<(), SlotError> {
        if self.present() {
            return Err(SlotError::Occupied);
        }
        self.status |= SLTSTA_PDS | SLTSTA_PDC | SLTSTA_DLLSC;
        Ok(())
    }

    /// The host asks for the device to go: the attention button is pressed.
    pub fn request_unplug(&mut self) -> Result<(), SlotError> {
        if !self.present() {
            return Err(SlotError::Empty);
        }
        if (self.control & SLTCTL_PIC) >> 8 == IND_BLINK {
            return Err(SlotError::Busy);
        }
        self.status |= SLTSTA_ABP;
        Ok(())
    }

    /// Whether the slot is occupied but powered off by the OS: a device there can
    /// go at once, no guest to ask (QEMU removes such a device immediately).
    pub fn unplug_now(&self) -> bool {
        self.present() && Self::powered_off(self.control)
    }

    /// The device left the slot.
    pub fn removed(&mut self) {
        if self.present() {
            self.status &= !SLTSTA_PDS;
            self.status |= SLTSTA_PDC | SLTSTA_DLLSC;
        }
    }

    /// Whether an enabled event is pending with hot-plug interrupts on.
    pub fn interrupt_pending(&self) -> bool {
        if self.control & SLTCTL_HPIE == 0 {
            return false;
        }
        let c = self.control;
        let s = self.status;
        (c & SLTCTL_ABPE != 0 && s & SLTSTA_ABP != 0)
            || (c & SLTCTL_PDCE != 0 && s & SLTSTA_PDC != 0)
            || (c & SLTCTL_CCIE != 0 && s & SLTSTA_CC != 0)
            || (c & SLTCTL_DLLSCE != 0 && s & SLTSTA_DLLSC != 0)
    }

    /// After any change: whether to send an interrupt now (the pending level rose).
    pub fn take_edge(&mut self) -> bool {
        let now = self.interrupt_pending();
        let edge = now && !self.signalled;
        self.signalled = now;
        edge
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Linux's pciehp enables at probe.
    const LINUX_ENABLES: u16 =
        SLTCTL_ABPE | SLTCTL_PDCE | SLTCTL_CCIE | SLTCTL_HPIE | SLTCTL_DLLSCE;

    #[test]
    fn empty_slot_starts_powered_off_and_populated_one_on() {
        let e = HotplugSlot::new(false);
        assert!(!e.present() && !e.link_active());
        assert_eq!(e.control() & SLTCTL_PCC, SLTCTL_PCC);
        assert_eq!((e.control() & SLTCTL_PIC) >> 8, IND_OFF);
        let p = HotplugSlot::new(true);
        assert!(p.present() && p.link_active());
        assert_eq!((p.control() & SLTCTL_PIC) >> 8, IND_ON);
        assert_eq!(HotplugSlot::capabilities() & SLTCAP_HPC, SLTCAP_HPC);
    }

    #[test]
    fn every_control_write_completes_and_interrupts_once_enabled() {
        let mut s = HotplugSlot::new(false);
        let w = s.write_control(LINUX_ENABLES | SLTCTL_PCC | (IND_OFF << 8) | (IND_OFF << 6));
        assert!(!w.unplug);
        assert_eq!(s.status() & SLTSTA_CC, SLTSTA_CC);
        assert!(s.take_edge(), "command completed with CCIE and HPIE on");
        assert!(!s.take_edge(), "no second edge while still pending");
        s.write_status(SLTSTA_CC);
        assert!(!s.take_edge());
        assert_eq!(s.status() & SLTSTA_CC, 0);
    }

    #[test]
    fn hot_add_reports_presence_and_link_change() {
        let mut s = HotplugSlot::new(false);
        s.write_control(LINUX_ENABLES | SLTCTL_PCC | (IND_OFF << 8));
        s.write_status(SLTSTA_CC);
        s.take_edge();
        s.plug().unwrap();
        assert!(s.take_edge());
        assert_eq!(
            s.status() & (SLTSTA_PDS | SLTSTA_PDC | SLTSTA_DLLSC),
            SLTSTA_PDS | SLTSTA_PDC | SLTSTA_DLLSC
        );
        assert!(!s.link_active(), "power still off");
        // pciehp powers the slot on with the power indicator on.
        s.write_status(SLTSTA_PDC | SLTSTA_DLLSC);
        s.write_control(LINUX_ENABLES | (IND_ON << 8) | (IND_OFF << 6));
        assert!(s.link_active());
        assert_eq!(s.plug(), Err(SlotError::Occupied));
    }

    #[test]
    fn unplug_waits_for_power_and_indicator_off() {
        let mut s = HotplugSlot::new(true);
        s.write_control(LINUX_ENABLES | (IND_ON << 8) | (IND_OFF << 6));
        s.write_status(SLTSTA_CC);
        s.take_edge();
        s.request_unplug().unwrap();
        assert!(s.take_edge(), "attention button pressed");
        s.write_status(SLTSTA_ABP);
        // pciehp blinks the power indicator for five seconds…
        s.write_control(LINUX_ENABLES | (IND_BLINK << 8) | (IND_OFF << 6));
        assert_eq!(s.request_unplug(), Err(SlotError::Busy));
        // …then powers the slot off, then turns the indicator off.
        let w = s.write_control(LINUX_ENABLES | SLTCTL_PCC | (IND_BLINK << 8) | (IND_OFF << 6));
        assert!(!w.unplug, "indicator still blinking");
        let w = s.write_control(LINUX_ENABLES | SLTCTL_PCC | (IND_OFF << 8) | (IND_OFF << 6));
        assert!(w.unplug);
        // Writing the same again is no new unplug.
        let w = s.write_control(LINUX_ENABLES | SLTCTL_PCC | (IND_OFF << 8) | (IND_OFF << 6));
        assert!(!w.unplug);
        s.removed();
        assert!(!s.present());
        assert_eq!(s.status() & SLTSTA_PDC, SLTSTA_PDC);
        assert_eq!(s.request_unplug(), Err(SlotError::Empty));
    }

    #[test]
    fn guest_without_pciehp_never_unplugs() {
        let mut s = HotplugSlot::new(true);
        s.request_unplug().unwrap();
        assert!(!s.take_edge(), "no interrupt with HPIE off");
        assert!(s.present() && !s.unplug_now());
    }
}

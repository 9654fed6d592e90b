//! ACPI PCI hot-plug of the root bus's slots, the interface QEMU's PIIX4 PM gives
//! its DSDT (`docs/specs/acpi_pci_hotplug.rst` in QEMU), so Linux's `acpiphp` and
//! other ACPI OSes drive it through the AML alone:
//!
//! ```text
//! 0xae00  PCIU   (32 bit, read)   slots with a device just added; reading clears it
//! 0xae04  PCID   (32 bit, read)   slots whose device the host asks to remove
//! 0xae08  B0EJ   (32 bit, write)  the OS ejects the lowest slot written as 1
//! 0xae0c  PCIRMV (32 bit, read)   slots that are hot-pluggable
//! 0xae10  BNUM   (32 bit, r/w)    bus select; only bus 0 (the root) exists here
//! 0xae14  PIDX   (32 bit)         acpi-index: none (reads 0)
//! ```
//!
//! * **hot-add**: the host puts a device in a free hot-pluggable slot and sets its
//!   PCIU bit; the machine raises GPE 1, whose `_E01` method reads PCIU and
//!   `Notify`s the slot's device (device check): the OS scans the slot;
//! * **hot-remove**: the host sets the slot's PCID bit and raises GPE 1; `_E01`
//!   `Notify`s an eject request; the OS unbinds the driver and runs the slot's
//!   `_EJ0`, which writes the slot's bit to B0EJ: that write is the moment the
//!   device goes ([`AcpiHotplugRegs::write`] names the slot). A guest that never
//!   does so keeps the device. As in QEMU, the OS may also eject a hot-pluggable
//!   slot on its own (the device goes then too).
//!
//! This is the register model alone; [`super::PciRoot`] owns it for the root bus,
//! removes the functions of an ejected slot and raises the GPE.

/// The register block's first port (QEMU's `ACPI_PCIHP_ADDR`).
pub const BASE: u16 = 0xae00;
/// Its length in ports.
pub const LEN: u64 = 0x18;
/// Register offsets.
pub const PCI_UP: u64 = 0x00;
pub const PCI_DOWN: u64 = 0x04;
pub const PCI_EJ: u64 = 0x08;
pub const PCI_RMV: u64 = 0x0c;
pub const PCI_SEL: u64 = 0x10;
pub const PCI_AIDX: u64 = 0x14;

/// Whether a boot-time device of the spec can be unplugged live (the kinds that
/// can be hot-added): a virtio disk or a virtio NIC.
pub fn unpluggable(kind: &machine_spec::DeviceKind) -> bool {
    use machine_spec::{DeviceKind, NetModel};
    match kind {
        DeviceKind::Disk(_) => true,
        DeviceKind::Net(n) => n.model == NetModel::Virtio,
        _ => false,
    }
}

/// The root-bus slots (a bit each) a machine of `spec` offers for hot-plug: every
/// slot but the host bridge's (0) and the chipset's (1, the PIIX3 on `pc`),
/// except those where the spec puts a device that cannot be unplugged, or more
/// than one function. Empty without ACPI PCI hot-plug. The DSDT describes these
/// slots and PCIRMV reports them.
pub fn slots_of(spec: &machine_spec::MachineSpec) -> u32 {
    if !spec.platform.acpi_pci_hotplug {
        return 0;
    }
    let mut slots = !0b11u32;
    for d in &spec.devices {
        let Some(a) = d.pci else { continue };
        if a.domain != 0 || a.bus != 0 || a.slot >= 32 {
            continue;
        }
        if a.function != 0 || !unpluggable(&d.kind) {
            slots &= !(1 << a.slot);
        }
    }
    slots
}

/// The hot-plug state of the root bus's 32 slots.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AcpiHotplugRegs {
    up: u32,
    down: u32,
    /// PCIRMV: the slots that may be hot-plugged (empty ones and those whose
    /// device can go), fixed for a machine.
    hotpluggable: u32,
    select: u32,
}

impl AcpiHotplugRegs {
    /// Registers for a machine whose hot-pluggable slots are the bits of `slots`.
    pub fn new(slots: u32) -> Self {
        AcpiHotplugRegs {
            hotpluggable: slots,
            ..Self::default()
        }
    }

    /// Whether `slot` may be hot-plugged.
    pub fn hotpluggable(&self, slot: u8) -> bool {
        slot < 32 && self.hotpluggable & (1 << slot) != 0
    }

    /// The PCIRMV mask.
    pub fn slots(&self) -> u32 {
        self.hotpluggable
    }

    /// Pending PCIU and PCID bits.
    pub fn pending(&self) -> (u32, u32) {
        (self.up, self.down)
    }

    /// A device was put in `slot`: the OS is to check it.
    pub fn plug(&mut self, slot: u8) {
        self.up |= 1 << slot;
        self.down &= !(1 << slot);
    }

    /// The host asks the OS to give up `slot`'s device.
    pub fn request_unplug(&mut self, slot: u8) {
        self.down |= 1 << slot;
    }

    /// `slot` is empty now.
    pub fn removed(&mut self, slot: u8) {
        self.up &= !(1 << slot);
        self.down &= !(1 << slot);
    }

    /// The OS reads the 32-bit register at `offset`.
    pub fn read(&mut self, offset: u64) -> u32 {
        match offset {
            PCI_SEL => self.select,
            _ if self.select != 0 => 0,
            PCI_UP => std::mem::take(&mut self.up),
            PCI_DOWN => self.down,
            PCI_RMV => self.hotpluggable,
            _ => 0,
        }
    }

    /// The OS writes the 32-bit register at `offset`; returns the slot it ejects
    /// (a hot-pluggable one; the caller removes its functions).
    pub fn write(&mut self, offset: u64, value: u32) -> Option<u8> {
        match offset {
            PCI_SEL => {
                self.select = value;
                None
            }
            PCI_EJ if self.select == 0 && value != 0 => {
                let slot = value.trailing_zeros() as u8;
                if !self.hotpluggable(slot) {
                    return None;
                }
                self.removed(slot);
                Some(slot)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_add_is_reported_once() {
        let mut r = AcpiHotplugRegs::new(!0b11);
        assert_eq!(r.read(PCI_RMV), !0b11);
        r.plug(5);
        assert_eq!(r.read(PCI_UP), 1 << 5);
        assert_eq!(r.read(PCI_UP), 0, "reading PCIU clears it");
        assert_eq!(r.read(PCI_DOWN), 0);
    }

    #[test]
    fn removal_waits_for_the_eject_write() {
        let mut r = AcpiHotplugRegs::new(!0b11);
        r.request_unplug(6);
        r.request_unplug(9);
        assert_eq!(r.read(PCI_DOWN), (1 << 6) | (1 << 9));
        assert_eq!(
            r.read(PCI_DOWN),
            (1 << 6) | (1 << 9),
            "PCID stays until ejected"
        );
        // _EJ0 of slot 6: BNUM = 0, B0EJ = 1 << 6.
        assert_eq!(r.write(PCI_SEL, 0), None);
        assert_eq!(r.write(PCI_EJ, 1 << 6), Some(6));
        assert_eq!(r.read(PCI_DOWN), 1 << 9);
        // The lowest bit written is the slot, as in QEMU.
        assert_eq!(r.write(PCI_EJ, (1 << 9) | (1 << 12)), Some(9));
        assert_eq!(r.pending(), (0, 0));
        assert_eq!(r.write(PCI_EJ, 0), None);
    }

    #[test]
    fn chipset_slots_cannot_be_ejected() {
        let mut r = AcpiHotplugRegs::new(!0b111);
        assert!(!r.hotpluggable(1) && r.hotpluggable(3) && !r.hotpluggable(40));
        assert_eq!(r.write(PCI_EJ, 1 << 1), None);
        assert_eq!(r.write(PCI_EJ, 1 << 0), None);
    }

    #[test]
    fn other_buses_read_zero_and_eject_nothing() {
        let mut r = AcpiHotplugRegs::new(!0b11);
        r.plug(4);
        r.request_unplug(5);
        r.write(PCI_SEL, 1);
        assert_eq!(r.read(PCI_UP), 0);
        assert_eq!(r.read(PCI_DOWN), 0);
        assert_eq!(r.read(PCI_RMV), 0);
        assert_eq!(r.write(PCI_EJ, 1 << 5), None);
        r.write(PCI_SEL, 0);
        assert_eq!(r.read(PCI_SEL), 0);
        assert_eq!(r.read(PCI_AIDX), 0, "no acpi-index");
        assert_eq!(r.read(PCI_UP), 1 << 4, "kept for bus 0");
        assert_eq!(r.read(PCI_DOWN), 1 << 5);
    }

    #[test]
    fn a_new_device_cancels_a_stale_removal_request() {
        let mut r = AcpiHotplugRegs::new(!0b11);
        r.request_unplug(7);
        r.removed(7);
        r.plug(7);
        assert_eq!(r.pending(), (1 << 7, 0));
    }
}

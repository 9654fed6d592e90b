//! PCI: the root bus, configuration space, BARs and MSI-X.
//!
//! The guest reaches configuration space two ways, both decoded by [`PciRoot`]:
//! the legacy port pair 0xCF8 (address) / 0xCFC (data), and ECAM (PCIe enhanced
//! configuration access, "MMCONFIG"), a 256 MiB-per-segment MMIO window that ACPI's
//! MCFG table advertises. Only bus 0 exists: every device sits on the root bus at the
//! slot/function the machine spec gives (libvirt `<address type='pci'>`).
//!
//! Interrupts are MSI-X ([`msix`]) or, for drivers that do not enable it, the
//! legacy INTA# pin ([`intx`]), routed to GSI 16 + (slot mod 8) as the DSDT's `_PRT`
//! says and the Interrupt Line register repeats.
//!
//! I/O BARs (legacy functions such as the PIIX3 IDE's bus master) live in port
//! space: [`PciRoot`] hands them ports from [`root::IO_WINDOW`] and dispatches
//! the port window the same way.
//!
//! Device BARs are assigned by the VMM when devices are added (firmware-style), so a
//! guest that does not re-program BARs (Linux keeps valid firmware assignments) finds
//! them ready. A guest may still move them; [`PciRoot`] dispatches BAR accesses by
//! the addresses currently programmed and tells the device when one moves
//! ([`PciDevice::bar_moved`]) so its ioeventfds can follow.

pub mod acpi_hotplug;
pub mod alloc;
pub mod bridge;
pub mod chipset;
pub mod config;
pub mod hotplug;
pub mod intx;
pub mod msi;
pub mod msix;
pub mod root;

pub use alloc::BarAllocator;
pub use config::{BarKind, ConfigSpace, PciHeader};
pub use intx::{IntxLine, IntxPin};
pub use msix::{MsiMessage, MsiSink, MsixState};
pub use root::{FunctionInfo, HostBridge, PciRoot, PciWindows};

/// A device function on the PCI bus.
///
/// Calls come from vCPU threads holding the root's lock; a device that runs a
/// data-path thread keeps that state behind its own synchronisation.
pub trait PciDevice: Send {
    /// Reads the 32-bit configuration register `reg` (dword index, 0..1024).
    fn read_config(&mut self, reg: usize) -> u32;
    /// Writes `data` (1, 2 or 4 bytes) at byte `offset` within register `reg`.
    fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]);
    /// BARs as currently programmed: (BAR index, guest address, size). Only
    /// memory BARs with a non-zero address are listed.
    fn bars(&self) -> Vec<(usize, u64, u64)>;
    /// Whether memory decoding is enabled (command register bit 1).
    fn memory_enabled(&self) -> bool;
    /// I/O-space BARs as currently programmed: (BAR index, first port, size).
    /// Their accesses come through [`PciDevice::bar_read`] and `bar_write`.
    fn io_bars(&self) -> Vec<(usize, u64, u64)> {
        Vec::new()
    }
    /// Whether I/O decoding is enabled (command register bit 0).
    fn io_enabled(&self) -> bool {
        false
    }
    /// Reads `data.len()` bytes at `offset` within BAR `bar`.
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]);
    /// Writes `data` at `offset` within BAR `bar`.
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]);
    /// BAR `bar` now decodes at `new` instead of `old` (guest re-programmed it
    /// with memory decoding on), or starts decoding at `new` (`old == new`: it was
    /// not decoding before). Devices with ioeventfds in the BAR move them there.
    fn bar_moved(&mut self, _bar: usize, _old: u64, _new: u64) {}
    /// Sets the multi-function bit of the header type (function 0 of a slot
    /// that has other functions).
    fn set_multifunction(&mut self) {}
    /// Whether [`PciDevice::save_state`] can save this function (no side effects):
    /// one that cannot blocks saving the machine.
    fn can_save(&self) -> bool {
        false
    }
    /// The function's state for a saved machine (`crate::vmstate`), with the vCPUs
    /// stopped; a device with a data path stops it (completing what was in flight)
    /// until [`PciDevice::resume_after_save`]. Only called when `can_save`.
    fn save_state(&mut self) -> Option<serde_json::Value> {
        None
    }
    /// Serves again after [`PciDevice::save_state`] (the guest goes on).
    fn resume_after_save(&mut self) {}
    /// Takes the state [`PciDevice::save_state`] gave, on a function just built
    /// from the same spec.
    fn restore_state(&mut self, _state: &serde_json::Value) -> Result<(), String> {
        Err("this device cannot restore a saved state".into())
    }
    /// What to call the function in an error (its model).
    fn state_name(&self) -> String {
        "a PCI device".into()
    }
    /// For a bridge (type-1 header): the bus behind it.
    fn bridge(&self) -> Option<BridgeBus> {
        None
    }
    /// A bridge function itself (its hot-plug slot).
    fn as_bridge(&mut self) -> Option<&mut bridge::Bridge> {
        None
    }
}

/// The bus behind a bridge: its number as the spec (libvirt's controller index)
/// names it, and the number the guest's firmware or OS gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeBus {
    /// libvirt's `<controller type='pci' index>`: devices say `bus='index'`.
    pub index: u8,
    /// The secondary bus number register as programmed (0 = not yet).
    pub secondary: u8,
    /// Whether only device 0 exists behind it (a PCIe link).
    pub single_device: bool,
}

/// Errors building the PCI topology.
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    /// Two devices asked for one slot/function.
    #[error("PCI address 0000:00:{slot:02x}.{function} is already in use")]
    AddressInUse { slot: u8, function: u8 },
    /// A BAR does not fit in the PCI window.
    #[error("no room for a {size:#x}-byte BAR in the PCI MMIO window")]
    BarSpace { size: u64 },
    /// An I/O BAR does not fit in the PCI port window.
    #[error("no room for a {size:#x}-port I/O BAR in the PCI I/O window")]
    IoSpace { size: u64 },
    /// The spec put a device on a bus or segment other than 0000:00.
    #[error(
        "PCI address {domain:04x}:{bus:02x}:{slot:02x}.{function} is not on the root bus 0000:00"
    )]
    NotRootBus {
        domain: u16,
        bus: u8,
        slot: u8,
        function: u8,
    },
    /// No bridge provides the bus a device names.
    #[error("no PCI controller provides bus {bus:#04x}")]
    NoSuchBus { bus: u8 },
    /// The bus a hot-plug names is not behind a hot-plug capable port.
    #[error("PCI bus {bus:#04x} does not support hotplugging")]
    NotHotplug { bus: u8 },
    /// A root-bus slot that ACPI PCI hot-plug does not offer.
    #[error("PCI slot {slot:#04x} of bus 0x00 does not support hotplugging")]
    SlotNotHotplug { slot: u8 },
    /// The port's slot refused the hot-plug request.
    #[error("hot-plug slot of PCI bus {bus:#04x}")]
    Hotplug {
        bus: u8,
        #[source]
        source: hotplug::SlotError,
    },
    /// Slot or function number out of range, or the host bridge's 00.0.
    #[error("PCI slot {slot:#x} function {function} is out of range or reserved")]
    BadSlot { slot: u8, function: u8 },
}

//! Intel 82540EM gigabit Ethernet (`<model type='e1000'/>`, QEMU's `e1000`): what
//! virt-install gives generic and older guests, and i440FX domains carry. Drivers
//! for it ship with every OS since 2001, so it is the NIC of last resort where no
//! virtio driver exists. The same function is also an Intel 82574L
//! (`<model type='e1000e'/>`, QEMU's `e1000e`, what virt-install gives Windows on
//! q35): [`model`] holds what differs (ids, PHY, EERD layout, NVM/config-done bits,
//! INT_ASSERTED and interrupt auto-mask, extended receive descriptors, a PCI
//! Express capability); its MSI-X, multiple queues, RSS and timestamping are not
//! modelled (the driver falls back to INTx; the timestamp registers only hold what
//! is written), nor packet-split receive descriptors, which e1000e uses only for an
//! MTU above 1500 (a warning in the domain log says so).
//!
//! The register interface (§13 of Intel's 8254x manual) over one 128 KiB memory BAR,
//! the Microwire EEPROM holding the MAC address ([`eeprom`]), the copper PHY behind
//! MDIC ([`phy`]), legacy receive descriptors, and legacy plus extended transmit
//! descriptors with checksum insertion and TCP segmentation done in software
//! ([`tx`]), since frames leave as plain Ethernet frames on the same backends
//! virtio-net uses (tap, bridge, passt). INTx only (the 82540 has no MSI).
//!
//! Not modelled: the I/O-mapped register window (BAR 1; drivers use the memory BAR),
//! interrupt throttling and delay timers (interrupts are raised at once), flow
//! control, wake-on-LAN, and the receive checksum offload (descriptors say "ignore
//! checksum indication", so the guest verifies checksums itself).

pub mod device;
pub mod eeprom;
pub mod model;
pub mod phy;
pub mod regs;
#[cfg(test)]
mod tests;
pub mod tx;

pub use device::{E1000Error, E1000Function};
pub use model::Model;

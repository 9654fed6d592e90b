//! The KVM virtual machine monitor.

pub mod pci;
pub mod virtio;

//! The KVM virtual machine monitor.

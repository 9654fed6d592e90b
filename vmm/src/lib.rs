//! oxvirt's KVM virtual machine monitor.
//!
//! Map of the crate:
//! * [`vm`]: builds the machine from a `MachineSpec` and runs the main loop;
//! * [`control`]: the thread-safe control API and lifecycle events (for QMP);
//! * [`vcpu`]: vCPU threads and how they are paused and stopped;
//! * [`layout`], [`memory`]: the guest physical address map, e820, guest RAM;
//! * [`arch`]: CPUID, MSRs, registers, GDT and page tables;
//! * [`boot`]: PVH and bzImage loading, initrd, command line;
//! * [`acpi`]: RSDP, XSDT, FADT, FACS, DSDT, MADT, MCFG;
//! * [`devices`]: the buses and the platform devices (UARTs, PM, CMOS, i8042, …);
//! * [`pci`], [`virtio`]: the PCI root bus and virtio devices;
//! * [`tpm`]: the TPM 2.0 CRB interface, its ACPI description and swtpm;
//! * [`seccomp`]: the seccomp filter of each thread kind;
//! * [`display`]: the screen (video devices' output) and input routing, for VNC and QMP;
//! * [`kvm`]: the few `unsafe` calls into KVM and the OS.

pub mod acpi;
pub mod arch;
pub mod ata;
pub mod boot;
pub mod capabilities;
pub mod control;
#[doc(hidden)]
pub mod devfuzz;
pub mod devices;
pub mod display;
pub mod e1000;
pub mod files;
pub mod firmware;
pub mod input;
pub mod kvm;
pub mod layout;
pub mod lifecycle;
pub mod media;
pub mod memory;
pub mod monitor;
pub mod mounts;
pub mod pci;
pub mod privilege;
pub mod scsi;
pub mod seccomp;
pub mod smbios;
pub mod tpm;
pub mod vcpu;
pub mod virtio;
pub mod vm;
pub mod vmstate;
pub mod vnc;

pub use control::{
    ChardevInfo, ControlError, RunState, ShutdownCause, VcpuThreadInfo, VmControl, VmEvent,
};
pub use vm::{block_host_signals, Outcome, VmError, Vmm};

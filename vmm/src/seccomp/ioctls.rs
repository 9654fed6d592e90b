//! The ioctl request numbers the allow-lists name.
//!
//! kvm-ioctls keeps its request numbers private, so the KVM ones are computed here
//! from `<linux/kvm.h>`'s definitions (direction, `KVMIO`, number, argument size)
//! with the kvm-bindings types; the others come from libc or `<linux/fs.h>`.

use kvm_bindings as kb;
use std::mem::size_of;
use vhost::vhost_kern::vhost_binding as vb;

const NONE: u64 = 0;
const WRITE: u64 = 1;
const READ: u64 = 2;
const KVMIO: u64 = 0xae;

/// `_IOC(dir, type, nr, size)` of `<asm-generic/ioctl.h>`.
const fn ioc(dir: u64, ty: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (ty << 8) | nr
}

const fn kvm(dir: u64, nr: u64, size: usize) -> u64 {
    ioc(dir, KVMIO, nr, size)
}

// /dev/kvm
pub const KVM_GET_API_VERSION: u64 = kvm(NONE, 0x00, 0);
pub const KVM_CREATE_VM: u64 = kvm(NONE, 0x01, 0);
pub const KVM_CHECK_EXTENSION: u64 = kvm(NONE, 0x03, 0);
pub const KVM_GET_VCPU_MMAP_SIZE: u64 = kvm(NONE, 0x04, 0);
pub const KVM_GET_SUPPORTED_CPUID: u64 = kvm(READ | WRITE, 0x05, size_of::<kb::kvm_cpuid2>());

// VM
pub const KVM_CREATE_VCPU: u64 = kvm(NONE, 0x41, 0);
pub const KVM_GET_DIRTY_LOG: u64 = kvm(WRITE, 0x42, size_of::<kb::kvm_dirty_log>());
pub const KVM_SET_USER_MEMORY_REGION: u64 =
    kvm(WRITE, 0x46, size_of::<kb::kvm_userspace_memory_region>());
pub const KVM_SET_TSS_ADDR: u64 = kvm(NONE, 0x47, 0);
pub const KVM_SET_IDENTITY_MAP_ADDR: u64 = kvm(WRITE, 0x48, size_of::<u64>());
pub const KVM_CREATE_IRQCHIP: u64 = kvm(NONE, 0x60, 0);
pub const KVM_IRQ_LINE: u64 = kvm(WRITE, 0x61, size_of::<kb::kvm_irq_level>());
pub const KVM_SET_GSI_ROUTING: u64 = kvm(WRITE, 0x6a, size_of::<kb::kvm_irq_routing>());
pub const KVM_IRQFD: u64 = kvm(WRITE, 0x76, size_of::<kb::kvm_irqfd>());
pub const KVM_CREATE_PIT2: u64 = kvm(WRITE, 0x77, size_of::<kb::kvm_pit_config>());
pub const KVM_IOEVENTFD: u64 = kvm(WRITE, 0x79, size_of::<kb::kvm_ioeventfd>());
pub const KVM_SET_CLOCK: u64 = kvm(WRITE, 0x7b, size_of::<kb::kvm_clock_data>());
pub const KVM_GET_CLOCK: u64 = kvm(READ, 0x7c, size_of::<kb::kvm_clock_data>());

// vCPU
pub const KVM_RUN: u64 = kvm(NONE, 0x80, 0);
pub const KVM_GET_REGS: u64 = kvm(READ, 0x81, size_of::<kb::kvm_regs>());
pub const KVM_SET_REGS: u64 = kvm(WRITE, 0x82, size_of::<kb::kvm_regs>());
pub const KVM_GET_SREGS: u64 = kvm(READ, 0x83, size_of::<kb::kvm_sregs>());
pub const KVM_SET_SREGS: u64 = kvm(WRITE, 0x84, size_of::<kb::kvm_sregs>());
pub const KVM_TRANSLATE: u64 = kvm(READ | WRITE, 0x85, size_of::<kb::kvm_translation>());
pub const KVM_SET_MSRS: u64 = kvm(WRITE, 0x89, size_of::<kb::kvm_msrs>());
pub const KVM_SET_FPU: u64 = kvm(WRITE, 0x8d, size_of::<kb::kvm_fpu>());
pub const KVM_GET_LAPIC: u64 = kvm(READ, 0x8e, size_of::<kb::kvm_lapic_state>());
pub const KVM_SET_LAPIC: u64 = kvm(WRITE, 0x8f, size_of::<kb::kvm_lapic_state>());
pub const KVM_SET_CPUID2: u64 = kvm(WRITE, 0x90, size_of::<kb::kvm_cpuid2>());
pub const KVM_SET_MP_STATE: u64 = kvm(WRITE, 0x99, size_of::<kb::kvm_mp_state>());
pub const KVM_ENABLE_CAP: u64 = kvm(WRITE, 0xa3, size_of::<kb::kvm_enable_cap>());
// Saving a machine's state from the main thread (vmstate.rs; restoring happens
// before any filter is installed).
pub const KVM_GET_IRQCHIP: u64 = kvm(READ | WRITE, 0x62, size_of::<kb::kvm_irqchip>());
pub const KVM_GET_PIT2: u64 = kvm(READ, 0x9f, size_of::<kb::kvm_pit_state2>());
pub const KVM_GET_MSRS: u64 = kvm(READ | WRITE, 0x88, size_of::<kb::kvm_msrs>());
pub const KVM_GET_MP_STATE: u64 = kvm(READ, 0x98, size_of::<kb::kvm_mp_state>());
pub const KVM_GET_VCPU_EVENTS: u64 = kvm(READ, 0x9f, size_of::<kb::kvm_vcpu_events>());
pub const KVM_GET_DEBUGREGS: u64 = kvm(READ, 0xa1, size_of::<kb::kvm_debugregs>());
pub const KVM_GET_XSAVE: u64 = kvm(READ, 0xa4, size_of::<kb::kvm_xsave>());
pub const KVM_GET_XCRS: u64 = kvm(READ, 0xa6, size_of::<kb::kvm_xcrs>());
pub const KVM_GET_SUPPORTED_HV_CPUID: u64 = kvm(READ | WRITE, 0xc1, size_of::<kb::kvm_cpuid2>());

// Block devices (`<linux/fs.h>`): size, discard (BLKSSZGET is in libc).
pub const BLKGETSIZE64: u64 = ioc(READ, 0x12, 114, size_of::<u64>());
pub const BLKDISCARD: u64 = ioc(NONE, 0x12, 119, 0);

/// `<linux/sockios.h>`, not in the libc crate (the tap, FIONBIO and terminal
/// requests are; `Ioctl` is `u64` on x86-64).
pub const SIOCBRADDIF: u64 = 0x89a2;

// vhost-net (`<linux/vhost.h>`, magic 0xaf): owner and features when a NIC is built,
// the rings at each activation, the tap attached and detached (activation, link, reset).
const VHOST: u64 = 0xaf;
pub const VHOST_GET_FEATURES: u64 = ioc(READ, VHOST, 0x00, size_of::<u64>());
pub const VHOST_SET_FEATURES: u64 = ioc(WRITE, VHOST, 0x00, size_of::<u64>());
pub const VHOST_SET_OWNER: u64 = ioc(NONE, VHOST, 0x01, 0);
pub const VHOST_RESET_OWNER: u64 = ioc(NONE, VHOST, 0x02, 0);
pub const VHOST_SET_MEM_TABLE: u64 = ioc(WRITE, VHOST, 0x03, size_of::<vb::vhost_memory>());
pub const VHOST_SET_VRING_NUM: u64 = ioc(WRITE, VHOST, 0x10, size_of::<vb::vhost_vring_state>());
pub const VHOST_SET_VRING_ADDR: u64 = ioc(WRITE, VHOST, 0x11, size_of::<vb::vhost_vring_addr>());
pub const VHOST_SET_VRING_BASE: u64 = ioc(WRITE, VHOST, 0x12, size_of::<vb::vhost_vring_state>());
pub const VHOST_SET_VRING_KICK: u64 = ioc(WRITE, VHOST, 0x20, size_of::<vb::vhost_vring_file>());
pub const VHOST_SET_VRING_CALL: u64 = ioc(WRITE, VHOST, 0x21, size_of::<vb::vhost_vring_file>());
pub const VHOST_NET_SET_BACKEND: u64 = ioc(WRITE, VHOST, 0x30, size_of::<vb::vhost_vring_file>());

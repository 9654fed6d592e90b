//! The part of a new machine that the kernel makes us wait for: the VM, its
//! memory slots, the in-kernel irqchip and the PIT.
//!
//! These ioctls are quick in themselves but sleep in the kernel: a memory slot
//! and the irqchip's interrupt routing wait for SRCU grace periods, and the PIT
//! starts a kernel thread. On a busy host each wait can cost a scheduler tick
//! (milliseconds). So a [`PendingVm`] maps guest RAM on the calling thread and
//! makes the VM on a helper thread, while the caller opens the devices, computes
//! the CPUID and loads the kernel into that RAM; [`PendingVm::finish`] joins it.

use std::sync::Arc;
use std::thread::JoinHandle;

use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

use super::{io_err, lap, VmError};
use crate::firmware::FirmwareRom;
use crate::kvm as kvmsys;
use crate::layout::{PlatformLayout, RamLayout};
use crate::memory::{self, Backing};

/// Guest RAM, mapped, and the VM being made for it on a helper thread.
pub(super) struct PendingVm {
    mem: GuestMemoryMmap,
    vm: JoinHandle<Result<VmFd, VmError>>,
}

impl PendingVm {
    /// Maps guest RAM and starts making the VM.
    pub(super) fn start(
        ram: &RamLayout,
        backing: Backing,
        platform: &PlatformLayout,
        rom: Option<&FirmwareRom>,
    ) -> Result<PendingVm, VmError> {
        let mem = memory::create(ram, backing)?;
        lap("guest RAM mapped");
        let for_vm = mem.clone();
        let tss = platform.kvm_tss as usize;
        let identity_map = platform.kvm_identity_map;
        let rom = rom.cloned();
        let vm = std::thread::Builder::new()
            .name("vm-setup".into())
            .spawn(move || create_vm(&for_vm, tss, identity_map, rom.as_ref()))
            .map_err(io_err("cannot spawn the VM set-up thread"))?;
        Ok(PendingVm { mem, vm })
    }

    /// Guest RAM, to be filled while the VM is being made.
    pub(super) fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Waits for the VM.
    pub(super) fn finish(self) -> Result<(Arc<VmFd>, GuestMemoryMmap), VmError> {
        let vm = self
            .vm
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))?;
        Ok((Arc::new(vm), self.mem))
    }
}

/// The VM with `mem` registered, the in-kernel interrupt controllers (PIC,
/// IO-APIC; each vCPU gets its LAPIC later) and the PIT.
/// `tss`, `identity_map`: where KVM's TSS and identity-map pages go (Intel),
/// outside RAM and firmware; `rom`: the firmware image, mapped read-only.
fn create_vm(
    mem: &GuestMemoryMmap,
    tss: usize,
    identity_map: u64,
    rom: Option<&FirmwareRom>,
) -> Result<VmFd, VmError> {
    lap("vm-setup thread running");
    let kvm = kvmsys::open_kvm()?;
    lap("/dev/kvm opened (vm-setup)");
    let vm = kvm
        .create_vm()
        .map_err(|e| VmError::KvmIoctl("KVM_CREATE_VM", e))?;
    lap("KVM_CREATE_VM");
    if let Err(e) = vm.set_tss_address(tss) {
        tracing::debug!(error = %e, "KVM_SET_TSS_ADDR not accepted");
    }
    if let Err(e) = vm.set_identity_map_address(identity_map) {
        tracing::debug!(error = %e, "KVM_SET_IDENTITY_MAP_ADDR not accepted");
    }
    // Memory first: its slot's grace period is quick on a fresh VM, but waits
    // behind those that the irqchip and PIT start.
    kvmsys::register_memory(&vm, mem)?;
    lap("KVM_SET_USER_MEMORY_REGION");
    // Before the irqchip: a slot added after it waits for an SRCU grace period
    // (milliseconds), one added now does not.
    if let Some(rom) = rom {
        let slot = vm_memory::GuestMemoryBackend::num_regions(mem) as u32;
        kvmsys::register_rom(&vm, slot, rom.addr, rom.region())?;
        lap("firmware mapped");
    }
    vm.create_irq_chip()
        .map_err(|e| VmError::KvmIoctl("KVM_CREATE_IRQCHIP", e))?;
    lap("KVM_CREATE_IRQCHIP");
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit)
        .map_err(|e| VmError::KvmIoctl("KVM_CREATE_PIT2", e))?;
    lap("KVM_CREATE_PIT2");
    Ok(vm)
}

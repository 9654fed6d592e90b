//! Hyper-V enlightenments on each vCPU (`spec.platform.hyperv`): the capabilities KVM
//! needs switched on before `KVM_SET_CPUID2` (enlightened VMCS, SynIC, CPUID
//! enforcement), the Hyper-V leaves built once from vCPU 0's
//! `KVM_GET_SUPPORTED_HV_CPUID`, and each vCPU's VP_INDEX after it — the order QEMU's
//! `kvm_arch_init_vcpu` uses.

use kvm_bindings::{kvm_cpuid_entry2, kvm_enable_cap, kvm_msr_entry, Msrs};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use machine_spec::{HvFeature, HyperV};

use super::VmError;
use crate::arch::x86_64::hyperv::{self, HypervError};
use crate::kvm;

/// `HV_X64_MSR_VP_INDEX`.
pub const HV_X64_MSR_VP_INDEX: u32 = 0x4000_0002;

fn has_cap(vm: &VmFd, cap: u32) -> bool {
    vm.check_extension_raw(u64::from(cap)) > 0
}

fn enable(vcpu: &VcpuFd, cap: u32, arg0: u64, what: &'static str) -> Result<(), VmError> {
    let mut c = kvm_enable_cap {
        cap,
        ..Default::default()
    };
    c.args[0] = arg0;
    vcpu.enable_cap(&c).map_err(|e| VmError::KvmIoctl(what, e))
}

/// Checks `hv` against `/dev/kvm` before anything starts (no QMP socket, no VM yet),
/// where KVM can answer without a vCPU; otherwise [`prepare_vcpu`] checks on vCPU 0.
pub fn check_early(hv: &HyperV, kvm: &Kvm) -> Result<(), VmError> {
    let supported = kvm::system_supported_hv_cpuid(kvm)
        .map_err(|e| VmError::KvmIoctl("KVM_GET_SUPPORTED_HV_CPUID", e))?;
    if let Some(supported) = supported {
        hyperv::leaves(hv, &supported)?;
    }
    Ok(())
}

/// Switches on what `hv` needs on `vcpu`, before its CPUID is set; on the first vCPU
/// (`leaves` still empty) checks the set against KVM and builds the Hyper-V leaves.
/// A missing enlightenment fails here, naming it, before any vCPU runs.
pub fn prepare_vcpu(
    hv: &HyperV,
    vm: &VmFd,
    vcpu: &VcpuFd,
    leaves: &mut Option<Vec<kvm_cpuid_entry2>>,
) -> Result<(), VmError> {
    if hv.has(HvFeature::Evmcs) {
        // Intel only; the nested leaf's version comes back through the CPUID query.
        kvm::enable_evmcs(vcpu)
            .map_err(|_| VmError::Hyperv(HypervError::Unsupported("'evmcs' (hv-evmcs)".into())))?;
    }
    if leaves.is_none() {
        let supported = kvm::supported_hv_cpuid(vm, vcpu)
            .map_err(|e| VmError::KvmIoctl("KVM_GET_SUPPORTED_HV_CPUID", e))?;
        *leaves = Some(hyperv::leaves(hv, &supported)?);
    }
    if hv.has(HvFeature::Synic) {
        // SYNIC2: the SynIC pages are not zeroed on enable (QEMU uses it unless told
        // the SynIC is KVM's only).
        enable(
            vcpu,
            kvm_bindings::KVM_CAP_HYPERV_SYNIC2,
            0,
            "KVM_ENABLE_CAP(KVM_CAP_HYPERV_SYNIC2)",
        )?;
    }
    if has_cap(vm, kvm_bindings::KVM_CAP_HYPERV_ENFORCE_CPUID) {
        // The guest gets exactly the synthetic MSRs and hypercalls the leaves list;
        // without it KVM would serve every one it implements.
        enable(
            vcpu,
            kvm_bindings::KVM_CAP_HYPERV_ENFORCE_CPUID,
            1,
            "KVM_ENABLE_CAP(KVM_CAP_HYPERV_ENFORCE_CPUID)",
        )?;
    }
    Ok(())
}

/// After `KVM_SET_CPUID2`: vCPU `index` gets VP_INDEX `index`, where KVM lets it be
/// set (KVM's own default is the same creation index).
pub fn finish_vcpu(hv: &HyperV, vm: &VmFd, vcpu: &VcpuFd, index: u32) -> Result<(), VmError> {
    if !hv.has(HvFeature::Vpindex) || !has_cap(vm, kvm_bindings::KVM_CAP_HYPERV_VP_INDEX) {
        return Ok(());
    }
    let msrs = Msrs::from_entries(&[kvm_msr_entry {
        index: HV_X64_MSR_VP_INDEX,
        data: u64::from(index),
        ..Default::default()
    }])
    .expect("one MSR fits");
    match vcpu.set_msrs(&msrs) {
        Ok(1) => Ok(()),
        Ok(_) => Err(VmError::KvmIoctl(
            "KVM_SET_MSRS(HV_X64_MSR_VP_INDEX)",
            kvm_ioctls::Error::new(libc::EINVAL),
        )),
        Err(e) => Err(VmError::KvmIoctl("KVM_SET_MSRS(HV_X64_MSR_VP_INDEX)", e)),
    }
}

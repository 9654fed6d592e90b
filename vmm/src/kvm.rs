//! The few places where KVM and the OS need `unsafe`: opening `/dev/kvm` with a
//! useful error, registering guest memory with KVM, the vCPU kick signal, reading
//! `kvm_run` unions, and thread ids.

use std::cell::Cell;
use std::os::raw::{c_int, c_void};

use kvm_bindings::{kvm_run, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// `/dev/kvm` is missing.
    #[error("/dev/kvm does not exist: KVM is not available on this host (load the kvm_intel or kvm_amd module, or enable virtualization in the firmware)")]
    NoKvm,
    /// No permission on `/dev/kvm`.
    #[error("permission denied opening /dev/kvm: add this user to the 'kvm' group or run as root")]
    KvmPermission,
    /// Another error opening `/dev/kvm`.
    #[error("cannot open /dev/kvm")]
    Open(#[source] std::io::Error),
    /// The KVM API version is not 12.
    #[error("unsupported KVM API version {0} (need 12)")]
    ApiVersion(i32),
    /// A required KVM capability is missing.
    #[error("KVM lacks a required capability: {0}")]
    MissingCap(&'static str),
    /// `KVM_SET_USER_MEMORY_REGION` failed.
    #[error("cannot register guest memory slot {slot} with KVM")]
    MemorySlot {
        slot: u32,
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The kick signal handler could not be installed.
    #[error("cannot install the vCPU kick signal handler")]
    KickHandler(#[source] vmm_sys_util::errno::Error),
}

/// Opens `/dev/kvm`, turning the usual failures into messages that say what to do.
/// A `/dev/kvm` handed over open ([`crate::files`]) is used instead: a VMM running
/// as a user without access to the device (`--run-as`) still gets KVM.
pub fn open_kvm() -> Result<Kvm, KvmError> {
    let dev = std::path::Path::new("/dev/kvm");
    let access = crate::files::Access {
        write: true,
        direct: false,
    };
    let kvm = if let Some(file) = crate::files::given(dev, access) {
        let file = file.map_err(KvmError::Open)?;
        // SAFETY: `file` is a new duplicate of a /dev/kvm descriptor, owned by nobody
        // else; the Kvm object takes it over and closes it.
        unsafe {
            <Kvm as std::os::fd::FromRawFd>::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(file))
        }
    } else {
        Kvm::new().map_err(|e| match e.errno() {
            libc::ENOENT | libc::ENXIO | libc::ENODEV => KvmError::NoKvm,
            libc::EACCES | libc::EPERM => KvmError::KvmPermission,
            _ => KvmError::Open(std::io::Error::from_raw_os_error(e.errno())),
        })?
    };
    let v = kvm.get_api_version();
    if v != kvm_bindings::KVM_API_VERSION as i32 {
        return Err(KvmError::ApiVersion(v));
    }
    for (cap, name) in [
        (kvm_ioctls::Cap::Irqchip, "KVM_CAP_IRQCHIP"),
        (kvm_ioctls::Cap::Irqfd, "KVM_CAP_IRQFD"),
        (kvm_ioctls::Cap::Pit2, "KVM_CAP_PIT2"),
        (kvm_ioctls::Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
        (kvm_ioctls::Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(KvmError::MissingCap(name));
        }
    }
    Ok(kvm)
}

/// Registers every region of `mem` with the VM, one slot per region.
pub fn register_memory(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), KvmError> {
    for (slot, region) in mem.iter().enumerate() {
        let slot = slot as u32;
        let r = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: the host range [as_ptr, as_ptr + len) is a live mapping owned by
        // `mem`; the caller keeps `mem` alive at least as long as `vm` (the machine
        // drops the VM fd before its memory), so KVM never sees a dangling mapping.
        unsafe { vm.set_user_memory_region(r) }
            .map_err(|source| KvmError::MemorySlot { slot, source })?;
    }
    Ok(())
}

/// Registers `region` read-only at `slot` (firmware flash): reads come from the
/// mapping, writes exit to the VMM as MMIO.
pub fn register_rom(
    vm: &VmFd,
    slot: u32,
    addr: u64,
    region: &vm_memory::MmapRegion,
) -> Result<(), KvmError> {
    let r = kvm_userspace_memory_region {
        slot,
        guest_phys_addr: addr,
        memory_size: region.size() as u64,
        userspace_addr: region.as_ptr() as u64,
        flags: kvm_bindings::KVM_MEM_READONLY,
    };
    // SAFETY: `region` is a live mapping of `memory_size` bytes; the caller keeps it
    // (an `Arc` held by the machine) alive for as long as the VM exists.
    unsafe { vm.set_user_memory_region(r) }.map_err(|source| KvmError::MemorySlot { slot, source })
}

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
pub fn kick_signal() -> c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

thread_local! {
    /// This thread's `kvm_run`, so the kick handler can set `immediate_exit`.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn kick_handler(_: c_int, _: *mut libc::siginfo_t, _: *mut c_void) {
    // Only touches a const-initialised thread-local and one byte: async-signal-safe.
    let run = KVM_RUN.with(|c| c.get());
    if !run.is_null() {
        // SAFETY: `run` points at this thread's mmap'd kvm_run, which lives as long
        // as the VcpuFd that `bind_kick_target` was given; `unbind` clears it before
        // that fd is dropped. A volatile byte store cannot tear.
        unsafe { std::ptr::write_volatile(std::ptr::addr_of_mut!((*run).immediate_exit), 1) };
    }
}

/// Installs the process-wide kick handler (idempotent).
pub fn install_kick_handler() -> Result<(), KvmError> {
    vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
        .map_err(KvmError::KickHandler)
}

/// Makes kicks on this thread set `immediate_exit` in `vcpu`'s `kvm_run`, so a kick
/// that lands just before `KVM_RUN` still makes it return at once.
pub fn bind_kick_target(vcpu: &mut VcpuFd) {
    let run: *mut kvm_run = vcpu.get_kvm_run();
    KVM_RUN.with(|c| c.set(run));
}

/// Undoes [`bind_kick_target`]; call before the VcpuFd is dropped.
pub fn unbind_kick_target() {
    KVM_RUN.with(|c| c.set(std::ptr::null_mut()));
}

/// Sends the kick signal to a thread.
pub fn kick_thread(thread: libc::pthread_t) {
    // SAFETY: callers pass a pthread_t of a thread that has not been joined yet
    // (the vCPU gate removes a thread from its list before joining it), so the
    // handle is valid; the signal has a handler that only sets a flag.
    unsafe { libc::pthread_kill(thread, kick_signal()) };
}

/// The calling thread's pthread handle.
pub fn current_pthread() -> libc::pthread_t {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() }
}

/// The calling thread's Linux thread id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// `KVM_EXIT_INTERNAL_ERROR` details: sub-error and the kernel's data words.
pub fn internal_error(vcpu: &mut VcpuFd) -> (u32, Vec<u64>) {
    let run = vcpu.get_kvm_run();
    // SAFETY: called right after KVM_RUN returned KVM_EXIT_INTERNAL_ERROR, so the
    // `internal` member is the active one of the union.
    let internal = unsafe { run.__bindgen_anon_1.internal };
    let n = (internal.ndata as usize).min(internal.data.len());
    (internal.suberror, internal.data[..n].to_vec())
}

/// `KVM_EXIT_FAIL_ENTRY` and similar are decoded by kvm-ioctls; this reads the
/// raw exit reason for messages about exits it does not decode.
pub fn exit_reason(vcpu: &mut VcpuFd) -> u32 {
    vcpu.get_kvm_run().exit_reason
}

// ------------------------------------------------------------------ Hyper-V
// kvm-ioctls 0.25 wraps neither KVM_GET_SUPPORTED_HV_CPUID nor the Hyper-V exit's
// payload, so these few calls live here with the module's other `unsafe`.

vmm_sys_util::ioctl_iowr_nr!(
    KVM_GET_SUPPORTED_HV_CPUID,
    kvm_bindings::KVMIO,
    0xc1,
    kvm_bindings::kvm_cpuid2
);

/// `HV_STATUS_INVALID_HYPERCALL_CODE`: what a hypercall KVM leaves to user space gets.
const HV_STATUS_INVALID_HYPERCALL_CODE: u64 = 2;

/// The Hyper-V CPUID leaves KVM can back on `vcpu` (`KVM_GET_SUPPORTED_HV_CPUID`, the
/// vCPU form, which every kernel with `KVM_CAP_HYPERV_CPUID` has). Empty when KVM has
/// no Hyper-V support (the ioctl is unknown to it).
pub fn supported_hv_cpuid(
    vm: &VmFd,
    vcpu: &VcpuFd,
) -> Result<Vec<kvm_bindings::kvm_cpuid_entry2>, kvm_ioctls::Error> {
    if vm.check_extension_raw(u64::from(kvm_bindings::KVM_CAP_HYPERV_CPUID)) <= 0 {
        return Ok(Vec::new());
    }
    get_supported_hv_cpuid(vcpu)
}

/// The same from `/dev/kvm` before any VM exists: `Some` when the answer is known
/// without a vCPU (the system form, `KVM_CAP_SYS_HYPERV_CPUID`, Linux 5.11+; or no
/// Hyper-V support at all: empty), `None` when only the vCPU form exists.
pub fn system_supported_hv_cpuid(
    kvm: &Kvm,
) -> Result<Option<Vec<kvm_bindings::kvm_cpuid_entry2>>, kvm_ioctls::Error> {
    let cap = |c: u32| kvm.check_extension_raw(u64::from(c)) > 0;
    if cap(kvm_bindings::KVM_CAP_SYS_HYPERV_CPUID) {
        get_supported_hv_cpuid(kvm).map(Some)
    } else if cap(kvm_bindings::KVM_CAP_HYPERV_CPUID) {
        Ok(None)
    } else {
        Ok(Some(Vec::new()))
    }
}

fn get_supported_hv_cpuid(
    fd: &impl std::os::fd::AsRawFd,
) -> Result<Vec<kvm_bindings::kvm_cpuid_entry2>, kvm_ioctls::Error> {
    // KVM answers E2BIG without saying how many it has: grow until it fits (QEMU
    // does the same). Kernels today report 7-11 leaves.
    for n in [16usize, 64, 256] {
        let mut cpuid =
            kvm_bindings::CpuId::new(n).map_err(|_| kvm_ioctls::Error::new(libc::ENOMEM))?;
        // SAFETY: `fd` is /dev/kvm or a vCPU, which both take this request; its
        // argument is a `kvm_cpuid2` header followed by room for `n` entries, all owned
        // by `cpuid` and alive across the call; KVM writes at most `nent` (= n) entries
        // and updates `nent` to the count written.
        let r = unsafe {
            vmm_sys_util::ioctl::ioctl_with_mut_ptr(
                fd,
                KVM_GET_SUPPORTED_HV_CPUID(),
                cpuid.as_mut_fam_struct_ptr(),
            )
        };
        if r == 0 {
            return Ok(cpuid.as_slice().to_vec());
        }
        let e = kvm_ioctls::Error::last();
        if e.errno() != libc::E2BIG {
            return Err(e);
        }
    }
    Err(kvm_ioctls::Error::new(libc::E2BIG))
}

/// Enables the enlightened VMCS on `vcpu` (`KVM_CAP_HYPERV_ENLIGHTENED_VMCS`) and
/// returns the eVMCS version range KVM supports (CPUID 0x4000000A EAX).
pub fn enable_evmcs(vcpu: &VcpuFd) -> Result<u16, kvm_ioctls::Error> {
    let mut version: u16 = 0;
    let mut cap = kvm_bindings::kvm_enable_cap {
        cap: kvm_bindings::KVM_CAP_HYPERV_ENLIGHTENED_VMCS,
        ..Default::default()
    };
    // KVM stores the version through this pointer before KVM_ENABLE_CAP returns;
    // `version` outlives the call.
    cap.args[0] = std::ptr::addr_of_mut!(version) as u64;
    vcpu.enable_cap(&cap)?;
    Ok(version)
}

/// Answers a `KVM_EXIT_HYPERV`. SynIC MSR writes (KVM_EXIT_HYPERV_SYNIC) were already
/// applied by KVM and are only reported (QEMU tracks them for VMBus, which oxvirt does
/// not have); a hypercall KVM leaves to user space (post message, signal event: not
/// advertised) gets "invalid hypercall code". Returns the exit's type and, for a
/// hypercall, its input word, for the log.
pub fn answer_hyperv_exit(vcpu: &mut VcpuFd) -> (u32, u64) {
    let run = vcpu.get_kvm_run();
    // SAFETY: called right after KVM_RUN returned KVM_EXIT_HYPERV, so `hyperv` is the
    // active member of the exit union.
    let hv = unsafe { &mut run.__bindgen_anon_1.hyperv };
    if hv.type_ == kvm_bindings::KVM_EXIT_HYPERV_HCALL {
        // SAFETY: `type_` says the hypercall member of the inner union is active.
        let hcall = unsafe { &mut hv.u.hcall };
        hcall.result = HV_STATUS_INVALID_HYPERCALL_CODE;
        return (hv.type_, hcall.input);
    }
    (hv.type_, 0)
}

//! vCPU threads: `KVM_RUN` and the devices its exits reach. Port and MMIO handlers
//! run here: the disk controllers that work synchronously (AHCI, IDE, flash, fw_cfg
//! DMA) read and write images, the TPM talks to swtpm, the PCI root reprograms
//! MSI routes, BARs (memory slots, ioeventfds) and, when a driver sets DRIVER_OK,
//! starts the device's worker thread (so this list includes the worker's, see
//! `Thread::allow_list`).

use super::super::ioctls::*;
use super::super::AllowList;
use libc::*;

pub(in crate::seccomp) fn allow(a: &mut AllowList) {
    a.ioctls(&[
        KVM_RUN,
        KVM_GET_REGS,
        KVM_SET_REGS,
        KVM_GET_SREGS,
        KVM_SET_SREGS,
        KVM_TRANSLATE,
        KVM_SET_MSRS,
        KVM_SET_FPU,
        KVM_GET_LAPIC,
        KVM_SET_LAPIC,
        KVM_SET_CPUID2,
        KVM_SET_MP_STATE,
        // the VM fd: legacy interrupt lines, MSI routes, BAR moves
        KVM_IRQ_LINE,
        KVM_SET_GSI_ROUTING,
        KVM_SET_USER_MEMORY_REGION,
        KVM_IOEVENTFD,
        KVM_IRQFD,
        KVM_GET_DIRTY_LOG,
    ]);
    a.calls(&[
        // images behind AHCI/IDE/flash, fw_cfg files
        SYS_pread64,
        SYS_pwrite64,
        SYS_preadv,
        SYS_pwritev,
        SYS_lseek,
        SYS_fsync,
        SYS_fdatasync,
        // swtpm's data socket, chardev output
        SYS_sendto,
        SYS_recvfrom,
        SYS_sendmsg,
        SYS_recvmsg,
        SYS_poll,
        SYS_ppoll,
        // starting a device worker (see the module doc)
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_eventfd2,
        SYS_clone3,
        SYS_tgkill,
    ]);
    a.call_with(SYS_clone, 0, &[super::THREAD_CLONE_FLAGS]);
}

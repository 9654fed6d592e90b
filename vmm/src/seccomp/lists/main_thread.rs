//! The main thread once the machine runs: its event loop (signals, chardev input,
//! lifecycle requests) and what reset and shutdown do from it. Reset builds a new
//! machine here (a new VM and its vCPUs and devices; `Thread::allow_list` adds their
//! lists); shutdown stops passt and swtpm and removes the pid file and sockets.
//! Listed beyond the other kinds: creating the VM and its vCPUs, chardev backends
//! (ptys, unix sockets), taps and bridges, and reaping child processes.

use super::super::ioctls::*;
use super::super::AllowList;
use libc::*;

pub(in crate::seccomp) fn allow(a: &mut AllowList) {
    a.calls(&[
        SYS_epoll_wait,
        SYS_epoll_pwait,
        SYS_epoll_ctl,
        SYS_epoll_create1,
        SYS_eventfd2,
        SYS_signalfd4,
        SYS_poll,
        SYS_ppoll,
        SYS_clone3,
        // files: images, firmware, NVRAM, chardevs, the pid file
        SYS_openat,
        SYS_access,
        SYS_statx,
        SYS_newfstatat,
        SYS_fstat,
        SYS_fstatfs,
        SYS_lseek,
        SYS_pread64,
        SYS_pwrite64,
        SYS_preadv,
        SYS_pwritev,
        SYS_fsync,
        SYS_fdatasync,
        SYS_ftruncate,
        SYS_getdents64,
        SYS_mkdir,
        SYS_rmdir,
        SYS_rename,
        SYS_unlink,
        SYS_chmod,
        SYS_fchmod,
        SYS_dup,
        SYS_dup2,
        SYS_dup3,
        SYS_pipe2,
        SYS_memfd_create,
        SYS_fallocate,
        SYS_prlimit64,
        // chardev and QMP sockets
        SYS_bind,
        SYS_listen,
        SYS_accept4,
        SYS_connect,
        SYS_socketpair,
        SYS_getsockname,
        SYS_getpeername,
        SYS_setsockopt,
        SYS_getsockopt,
        SYS_sendto,
        SYS_recvfrom,
        SYS_sendmsg,
        SYS_recvmsg,
        SYS_shutdown,
        // signals to vCPU threads; stopping and reaping passt and swtpm
        SYS_tgkill,
        SYS_kill,
        SYS_wait4,
        SYS_waitid,
        SYS_rt_sigaction,
    ]);
    a.call_with(SYS_clone, 0, &[super::THREAD_CLONE_FLAGS]);
    // unix sockets (chardevs), inet ones for a tap's interface flags
    a.call_with(SYS_socket, 0, &[AF_UNIX as u64, AF_INET as u64]);
    a.call_with(
        SYS_fcntl,
        1,
        &[F_OFD_GETLK as u64, F_OFD_SETLK as u64, F_OFD_SETLKW as u64],
    );
    a.ioctls(&[
        KVM_GET_API_VERSION,
        KVM_CREATE_VM,
        KVM_CHECK_EXTENSION,
        KVM_GET_VCPU_MMAP_SIZE,
        KVM_GET_SUPPORTED_CPUID,
        KVM_CREATE_VCPU,
        // Hyper-V enlightenments of a new vCPU (vm/hyperv.rs)
        KVM_GET_SUPPORTED_HV_CPUID,
        KVM_ENABLE_CAP,
        KVM_SET_TSS_ADDR,
        KVM_SET_IDENTITY_MAP_ADDR,
        KVM_CREATE_IRQCHIP,
        KVM_CREATE_PIT2,
        KVM_SET_CLOCK,
        KVM_GET_CLOCK,
        // QMP `migrate`: the machine's state, read with its vCPUs stopped (vmstate.rs)
        KVM_GET_IRQCHIP,
        KVM_GET_PIT2,
        KVM_GET_MSRS,
        KVM_GET_MP_STATE,
        KVM_GET_VCPU_EVENTS,
        KVM_GET_DEBUGREGS,
        KVM_GET_XSAVE,
        KVM_GET_XCRS,
        TUNSETIFF,
        // A tap handed over open (spec `tap_fds`, `netdev_add` with `fd`/`fds`): its
        // name and flags.
        TUNGETIFF,
        TUNSETVNETHDRSZ,
        TUNSETOFFLOAD,
        // a multiqueue tap's queues attached and detached (virtio-net's pairs)
        TUNSETQUEUE,
        // a vhost-net instance per pair of a NIC being built (the rest: worker list);
        // a handed-over one released from the last build at a machine rebuild
        VHOST_SET_OWNER,
        VHOST_RESET_OWNER,
        VHOST_GET_FEATURES,
        SIOCGIFFLAGS,
        SIOCSIFFLAGS,
        SIOCGIFINDEX,
        SIOCBRADDIF,
        FIONBIO,
        FIOCLEX,
        TCGETS,
        TCSETS,
        TIOCGWINSZ,
        TIOCGPTN,
        TIOCSPTLCK,
        BLKGETSIZE64,
        BLKSSZGET,
        BLKDISCARD,
    ]);
}

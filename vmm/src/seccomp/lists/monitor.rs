//! The QMP monitor: its tokio runtime (epoll, eventfd, blocking-pool threads), the
//! listening socket and clients (with SCM_RIGHTS for getfd/add_client), media
//! changes and blockdev-add (opening and locking images), screendump (writing a
//! file, reading the dirty log), pausing vCPUs (a signal to kick them out of
//! `KVM_RUN`), and quitting.

use super::super::ioctls::*;
use super::super::AllowList;
use libc::*;

pub(in crate::seccomp) fn allow(a: &mut AllowList) {
    a.calls(&[
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_epoll_wait,
        SYS_epoll_pwait,
        SYS_eventfd2,
        SYS_poll,
        SYS_ppoll,
        SYS_clone3,
        // the QMP socket and its clients
        SYS_bind,
        SYS_listen,
        SYS_accept4,
        SYS_accept,
        SYS_socketpair,
        SYS_getsockname,
        SYS_getpeername,
        SYS_getsockopt,
        SYS_setsockopt,
        SYS_recvfrom,
        SYS_recvmsg,
        SYS_sendto,
        SYS_sendmsg,
        SYS_shutdown,
        SYS_chmod,
        SYS_fchmod,
        SYS_unlink,
        // media and blockdev-add: images, their locks and formats; screendump
        SYS_openat,
        SYS_statx,
        SYS_newfstatat,
        SYS_fstat,
        SYS_lseek,
        SYS_pread64,
        SYS_pwrite64,
        SYS_readlink,
        SYS_fsync,
        SYS_fdatasync,
        SYS_ftruncate,
        SYS_rename,
        SYS_flock,
        SYS_dup,
        SYS_pipe2,
        // stop: kicking vCPU threads out of KVM_RUN
        SYS_tgkill,
        SYS_kill,
    ]);
    a.call_with(SYS_clone, 0, &[super::THREAD_CLONE_FLAGS]);
    a.call_with(SYS_socket, 0, &[AF_UNIX as u64]);
    a.call_with(
        SYS_fcntl,
        1,
        &[F_OFD_GETLK as u64, F_OFD_SETLK as u64, F_OFD_SETLKW as u64],
    );
    a.ioctls(&[
        FIONBIO,
        FIOCLEX,
        TCGETS,
        KVM_GET_DIRTY_LOG,
        BLKGETSIZE64,
        BLKSSZGET,
    ]);
}

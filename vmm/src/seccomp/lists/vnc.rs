//! The VNC server's threads (rfb's refresh, accept, per-client reader and writer):
//! sockets handed to them, the framebuffer's dirty log, keyboard and pointer input
//! delivered to the guest's devices, and the read-only files
//! std and the DES key schedule open (`/dev/urandom`, the online CPU list).

use super::super::ioctls::*;
use super::super::AllowList;
use libc::*;

pub(in crate::seccomp) fn allow(a: &mut AllowList) {
    a.calls(&[
        SYS_accept4,
        SYS_accept,
        SYS_recvfrom,
        SYS_sendto,
        SYS_recvmsg,
        SYS_sendmsg,
        SYS_shutdown,
        SYS_getpeername,
        SYS_getsockname,
        SYS_setsockopt,
        SYS_poll,
        SYS_ppoll,
        SYS_clone3,
    ]);
    a.call_with(SYS_clone, 0, &[super::THREAD_CLONE_FLAGS]);
    a.call_with(SYS_openat, 2, &[(O_RDONLY | O_CLOEXEC) as u64]);
    // The dirty log for refreshes; input from clients raises the i8042's interrupt
    // line (virtio-input kicks its queue through an eventfd write).
    // The last holder of the video memory removes its KVM slot on drop: at shutdown
    // that can be the accept thread, whose loop ends when the listener is shut.
    a.ioctls(&[
        KVM_GET_DIRTY_LOG,
        KVM_IRQ_LINE,
        FIONBIO,
        KVM_SET_USER_MEMORY_REGION,
    ]);
}

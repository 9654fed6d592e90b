//! Device workers: virtio queues on ioeventfds (block, net, console, rng, vsock,
//! balloon, scsi, gpu, input), the e1000 receiver, the INTx resampler. They move
//! data between guest memory and an fd they were handed: an image, a tap, passt's
//! socket, a chardev, a vsock peer's unix socket.

use super::super::ioctls::*;
use super::super::AllowList;
use libc::*;

pub(in crate::seccomp) fn allow(a: &mut AllowList) {
    a.calls(&[
        SYS_epoll_wait,
        SYS_epoll_pwait,
        SYS_epoll_ctl,
        SYS_poll,
        SYS_ppoll,
        // block: images and host block devices; io_uring for submission
        SYS_pread64,
        SYS_pwrite64,
        SYS_preadv,
        SYS_pwritev,
        SYS_readv,
        SYS_lseek,
        SYS_fsync,
        SYS_fdatasync,
        SYS_fallocate,
        // qcow2 (imago) grows its image file as clusters are allocated
        SYS_ftruncate,
        SYS_fstat,
        SYS_newfstatat,
        SYS_statx,
        SYS_io_uring_setup,
        SYS_io_uring_enter,
        SYS_io_uring_register,
        // net (tap, passt), console and vsock sockets
        SYS_sendto,
        SYS_recvfrom,
        SYS_sendmsg,
        SYS_recvmsg,
        SYS_accept4,
        SYS_connect,
        SYS_shutdown,
        SYS_getsockopt,
        // balloon: returning pages to the host
        SYS_fadvise64,
    ]);
    // vsock connects to the host side's unix sockets.
    a.call_with(SYS_socket, 0, &[AF_UNIX as u64]);
    a.ioctls(&[
        FIONBIO,
        FIOCLEX,
        TUNSETOFFLOAD,
        // virtio-net's control queue switches a multiqueue tap's queues
        TUNSETQUEUE,
        BLKGETSIZE64,
        BLKDISCARD,
        BLKSSZGET,
        // vhost-net: the rings handed over at activation (a vCPU's DRIVER_OK), the
        // tap attached and detached (activation, link state, reset)
        VHOST_SET_FEATURES,
        VHOST_SET_MEM_TABLE,
        VHOST_SET_VRING_NUM,
        VHOST_SET_VRING_ADDR,
        VHOST_SET_VRING_BASE,
        VHOST_SET_VRING_KICK,
        VHOST_SET_VRING_CALL,
        VHOST_NET_SET_BACKEND,
        // the INTx resampler and MSI-X masking re-route interrupts
        KVM_IRQ_LINE,
        KVM_IRQFD,
        KVM_SET_GSI_ROUTING,
    ]);
}

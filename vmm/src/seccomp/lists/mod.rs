//! The allow-list of each thread kind, one module per kind, plus what every
//! thread needs ([`common`]). Each list was built from `strace -f` of the guest
//! tests (the tier-2 tests, a Linux guest boot, VNC and QMP clients) and from the
//! code paths those tests do not reach; add to the list of the thread that makes a
//! new call, with a comment saying why.

pub(super) mod common;
pub(super) mod main_thread;
pub(super) mod monitor;
pub(super) mod vcpu;
pub(super) mod vnc;
pub(super) mod worker;

/// `clone` flags of a new thread as glibc's `pthread_create` passes them (used when
/// `clone3` is unavailable); anything else (a fork) stays forbidden.
const THREAD_CLONE_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;

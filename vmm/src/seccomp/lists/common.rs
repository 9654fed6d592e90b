//! What every thread of the VMM does: memory allocation, locks and condition
//! variables, logging to stderr, time, thread start-up and exit, closing files.

use super::super::AllowList;
use libc::*;

pub(in crate::seccomp) fn allow(a: &mut AllowList) {
    a.calls(&[
        // the allocator, thread stacks
        SYS_brk,
        SYS_mmap,
        SYS_munmap,
        SYS_mremap,
        SYS_mprotect,
        SYS_madvise,
        // locks, channels, sleeps
        SYS_futex,
        SYS_sched_yield,
        SYS_nanosleep,
        SYS_clock_nanosleep,
        // time: the vDSO falls back to these where the clocksource has no vDSO path
        SYS_clock_gettime,
        SYS_clock_getres,
        SYS_gettimeofday,
        SYS_time,
        // logging to stderr, fds a thread owns
        SYS_write,
        SYS_writev,
        SYS_read,
        SYS_close,
        // thread life: glibc's start and exit, std's name and parallelism queries
        SYS_rseq,
        SYS_set_robust_list,
        SYS_sigaltstack,
        SYS_rt_sigprocmask,
        SYS_rt_sigreturn,
        // the kernel's continuation of a sleep (nanosleep, poll, futex with a timeout)
        // that a signal handler interrupted: the interrupted call was allowed already
        SYS_restart_syscall,
        SYS_gettid,
        SYS_getpid,
        SYS_sched_getaffinity,
        SYS_getrandom,
        SYS_exit,
        SYS_exit_group,
    ]);
    // std's OwnedFd checks in debug builds and CLOEXEC duplicates.
    a.call_with(
        SYS_fcntl,
        1,
        &[
            F_GETFD as u64,
            F_SETFD as u64,
            F_GETFL as u64,
            F_SETFL as u64,
            F_DUPFD_CLOEXEC as u64,
        ],
    );
    // Naming threads; a thread spawned by this one lowers its capabilities
    // (crate::capabilities) and installs its own filter.
    a.call_with(
        SYS_prctl,
        0,
        &[
            PR_SET_NAME as u64,
            PR_SET_NO_NEW_PRIVS as u64,
            PR_CAPBSET_DROP as u64,
            PR_CAP_AMBIENT as u64,
        ],
    );
    a.calls(&[SYS_capget, SYS_capset]);
    a.call_with(SYS_seccomp, 0, &[SECCOMP_SET_MODE_FILTER as u64]);
}

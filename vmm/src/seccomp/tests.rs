use super::*;

#[test]
fn every_thread_kind_compiles_in_both_filtering_modes() {
    for t in Thread::ALL {
        for action in [SeccompAction::Trap, SeccompAction::Log] {
            let p = t
                .allow_list()
                .compile(action)
                .unwrap_or_else(|e| panic!("{}: {e}", t.name()));
            assert!(!p.is_empty(), "{}", t.name());
        }
    }
}

#[test]
fn no_list_allows_the_handlers_death_call_or_the_test_hooks_call() {
    for t in Thread::ALL {
        let a = t.allow_list();
        assert!(!a.mentions(DEATH_SYSCALL), "{} allows kexec_load", t.name());
        assert!(
            !a.mentions(libc::SYS_personality),
            "{} allows personality",
            t.name()
        );
        // Nor what an escaped guest would want first.
        for call in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_fork,
        ] {
            assert!(
                !a.mentions(call),
                "{} allows {}",
                t.name(),
                syscall_name(call)
            );
        }
    }
}

/// A signal may interrupt any thread's sleep; the kernel then resumes it through
/// `restart_syscall`, which a filter must allow (the main thread was killed for it
/// after a guest power-off with `on_poweroff='restart'`).
#[test]
fn every_thread_may_resume_an_interrupted_sleep() {
    for t in Thread::ALL {
        let a = t.allow_list();
        for call in [libc::SYS_restart_syscall, libc::SYS_rt_sigreturn] {
            assert!(
                a.mentions(call),
                "{} forbids {}",
                t.name(),
                syscall_name(call)
            );
        }
    }
}

#[test]
fn only_vcpu_and_main_threads_may_run_a_vcpu_or_create_a_vm() {
    use ioctls::{KVM_CREATE_VM, KVM_RUN};
    for t in Thread::ALL {
        let a = t.allow_list();
        let expect_run = matches!(t, Thread::Vcpu | Thread::Main);
        assert_eq!(a.allows_ioctl(KVM_RUN), expect_run, "{}", t.name());
        assert_eq!(
            a.allows_ioctl(KVM_CREATE_VM),
            t == Thread::Main,
            "{}",
            t.name()
        );
        assert!(
            !a.mentions(libc::SYS_ioctl) || !a.allows_ioctl(0),
            "{}",
            t.name()
        );
    }
}

#[test]
fn kvm_request_numbers_match_the_kernel_headers() {
    // Values from <linux/kvm.h> as strace prints them.
    assert_eq!(ioctls::KVM_RUN, 0xae80);
    assert_eq!(ioctls::KVM_CREATE_VM, 0xae01);
    assert_eq!(ioctls::KVM_SET_USER_MEMORY_REGION, 0x4020ae46);
    assert_eq!(ioctls::KVM_GET_REGS, 0x8090ae81);
    assert_eq!(ioctls::KVM_IRQFD, 0x4020ae76);
    assert_eq!(ioctls::KVM_GET_DIRTY_LOG, 0x4010ae42);
    assert_eq!(ioctls::KVM_GET_XSAVE, 0x9000aea4);
    assert_eq!(ioctls::KVM_GET_MSRS, 0xc008ae88);
    assert_eq!(ioctls::KVM_GET_IRQCHIP, 0xc208ae62);
    assert_eq!(ioctls::KVM_GET_PIT2, 0x8070ae9f);
    assert_eq!(ioctls::KVM_GET_VCPU_EVENTS, 0x8040ae9f);
    assert_eq!(ioctls::BLKGETSIZE64, 0x80081272);
    assert_eq!(ioctls::BLKDISCARD, 0x1277);
}

#[test]
fn vhost_request_numbers_match_the_vhost_crate() {
    use vhost::vhost_kern::vhost_binding as vb;
    let pairs = [
        (ioctls::VHOST_GET_FEATURES, vb::VHOST_GET_FEATURES()),
        (ioctls::VHOST_SET_FEATURES, vb::VHOST_SET_FEATURES()),
        (ioctls::VHOST_SET_OWNER, vb::VHOST_SET_OWNER()),
        (ioctls::VHOST_RESET_OWNER, vb::VHOST_RESET_OWNER()),
        (ioctls::VHOST_SET_MEM_TABLE, vb::VHOST_SET_MEM_TABLE()),
        (ioctls::VHOST_SET_VRING_NUM, vb::VHOST_SET_VRING_NUM()),
        (ioctls::VHOST_SET_VRING_ADDR, vb::VHOST_SET_VRING_ADDR()),
        (ioctls::VHOST_SET_VRING_BASE, vb::VHOST_SET_VRING_BASE()),
        (ioctls::VHOST_SET_VRING_KICK, vb::VHOST_SET_VRING_KICK()),
        (ioctls::VHOST_SET_VRING_CALL, vb::VHOST_SET_VRING_CALL()),
        (ioctls::VHOST_NET_SET_BACKEND, vb::VHOST_NET_SET_BACKEND()),
    ];
    for (ours, theirs) in pairs {
        assert_eq!(ours, theirs, "{ours:#x}");
    }
    // <linux/vhost.h> as strace prints them.
    assert_eq!(ioctls::VHOST_SET_OWNER, 0xaf01);
    assert_eq!(ioctls::VHOST_NET_SET_BACKEND, 0x4008af30);
}

#[test]
fn modes_parse_and_unknown_ones_are_named() {
    assert_eq!("none".parse::<Mode>(), Ok(Mode::None));
    assert_eq!("log".parse::<Mode>(), Ok(Mode::Log));
    assert_eq!("kill".parse::<Mode>(), Ok(Mode::Kill));
    let e = "trap".parse::<Mode>().unwrap_err();
    assert!(
        e.contains("'trap'") && e.contains("none, log or kill"),
        "{e}"
    );
}

#[test]
fn the_report_names_thread_number_and_call() {
    let mut buf = FixedBuf {
        bytes: [0; 256],
        len: 0,
    };
    report(&mut buf, "monitor", libc::SYS_personality);
    let line = std::str::from_utf8(&buf.bytes[..buf.len]).unwrap();
    assert_eq!(
        line,
        "oxvirt-vmm: seccomp: the monitor thread made system call 135 (personality), which its filter forbids; stopping the VMM\n"
    );
    assert_eq!(syscall_name(41), "socket");
    assert_eq!(syscall_name(100_000), "?");
    assert_eq!(syscall_name(-1), "?");
}

#[test]
fn a_long_report_is_cut_not_overflowed() {
    let mut buf = FixedBuf {
        bytes: [0; 256],
        len: 0,
    };
    report(&mut buf, &"x".repeat(400), 1);
    assert_eq!(buf.len, 256);
}

/// How long compiling takes and how long the programs are (run by hand, release).
#[test]
#[ignore]
fn compile_time() {
    for t in Thread::ALL {
        let a = t.allow_list();
        let start = std::time::Instant::now();
        let p = a.compile(SeccompAction::Trap).unwrap();
        let took = start.elapsed();
        eprintln!(
            "{}: {} calls, {} instructions, {took:?}",
            t.name(),
            a.len(),
            p.len()
        );
    }
}

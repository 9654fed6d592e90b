//! The VMM's per-thread seccomp filters seen from outside, through oxvirtd and
//! Debian's virsh: every thread of a running VMM is filtered (`Seccomp: 2`,
//! `NoNewPrivs: 1` in /proc), and a thread that makes a system call its filter
//! forbids stops the VMM, which the daemon reports as `shut off (crashed)` with the
//! call named in the domain log it keeps. The forbidden call comes from the
//! test-only HMP command `x-oxvirt-test-forbidden-syscall` (run on the monitor
//! thread), sent with `virsh qemu-monitor-command --hmp`. Every thread also holds
//! only the capabilities its kind needs later (none for vCPUs, device workers and
//! VNC), the bounding set lowered alike: a VMM the daemon starts as root keeps no
//! root powers in the threads that handle guest or network input.

mod rpc_common;

use std::path::Path;
use std::time::{Duration, Instant};

use rpc_common::{display_xml, Daemon, STEP};

/// One thread's confinement as /proc shows it.
#[derive(Debug)]
struct Confinement {
    comm: String,
    seccomp: String,
    nnp: String,
    /// CapEff, CapPrm and CapBnd.
    caps: [u64; 3],
}

/// The confinement of every thread of process `pid`.
fn thread_confinement(pid: i32) -> Vec<Confinement> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let cap = |name: &str| u64::from_str_radix(&field(name), 16).unwrap_or(u64::MAX);
        out.push(Confinement {
            comm: comm.trim().to_string(),
            seccomp: field("Seccomp:"),
            nnp: field("NoNewPrivs:"),
            caps: [cap("CapEff:"), cap("CapPrm:"), cap("CapBnd:")],
        });
    }
    out
}

fn vmm_pid(d: &Daemon, name: &str) -> i32 {
    let p = d.dir.path().join("run/domains").join(name).join("pid");
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(pid) = std::fs::read_to_string(&p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        if Instant::now() > deadline {
            d.fail(&format!("no pid file {}", p.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_vmm_thread_is_filtered_and_a_forbidden_call_crashes_the_domain_with_its_name_logged() {
    if !oxvirt_tests::host::require_kvm("rpc_seccomp") {
        return;
    }
    let d = Daemon::start();
    let name = "sc1";
    // As root, a tap-backed NIC too, with two queue pairs: the daemon creates the
    // multiqueue tap and hands its queues over open, so the VMM needs no
    // CAP_NET_ADMIN for it.
    let root = nix::unistd::geteuid().is_root();
    let nic = if root {
        "<interface type='ethernet'><mac address='52:54:00:5e:cc:01'/><model type='virtio'/>\
         <driver queues='2'/></interface>"
    } else {
        ""
    };
    let xml = display_xml(
        name,
        &format!("<graphics type='vnc' port='-1' autoport='yes'/>{nic}"),
    );
    d.virsh_ok(&["define", d.xml_file(name, &xml).to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    d.wait_state(name, "running");

    // The main thread installs its filter once the machine runs, just after the
    // monitor answers: wait for every thread to show it.
    let pid = vmm_pid(&d, name);
    let deadline = Instant::now() + STEP;
    let threads = loop {
        let t = thread_confinement(pid);
        let ready = t.iter().any(|c| c.comm.starts_with("vcpu"))
            && t.iter().all(|c| c.seccomp == "2" && c.nnp == "1");
        if ready || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for kind in ["vcpu0", "qmp", "qmp-events", "vnc-accept", "vnc-refresh"] {
        assert!(
            threads.iter().any(|c| c.comm == kind),
            "no {kind} thread: {threads:?}"
        );
    }
    // CAP_KILL: stopping passt (it runs as nobody). No CAP_NET_ADMIN: oxvirtd hands
    // taps over open; no CAP_DAC_*: it hands images, media, kernel and firmware over
    // open too (spec `files`, add-fd; rpc_handover).
    const KILL: u64 = 1 << 5;
    for c in &threads {
        assert_eq!(
            (c.seccomp.as_str(), c.nnp.as_str()),
            ("2", "1"),
            "thread {} is not filtered: {threads:?}\n{}",
            c.comm,
            d.domain_log(name)
        );
        // The main thread stops passt at exit. Everything else — the monitor, vCPUs,
        // device workers, VNC — keeps none.
        let allowed = if c.comm == "oxvirt-vmm" { KILL } else { 0 };
        for (what, v) in ["CapEff", "CapPrm", "CapBnd"].iter().zip(c.caps) {
            assert_eq!(
                v & !allowed,
                0,
                "thread {} has {what} {v:#x}, more than {allowed:#x}: {threads:?}",
                c.comm
            );
        }
    }
    // The test runs as root in CI: the daemon's VMM had every capability to lose,
    // and its NIC's tap is one it was given (a /dev/net/tun descriptor), on the host.
    if root {
        let taps = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l == std::path::Path::new("/dev/net/tun"))
            .count();
        assert!(
            taps >= 2,
            "the VMM does not hold both queues of its tap: {}",
            d.domain_log(name)
        );
        let live = d.virsh_ok(&["domiflist", name]);
        let tap = live
            .lines()
            .find(|l| l.contains("52:54:00:5e:cc:01"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{live}"))
            .to_string();
        assert!(
            std::path::Path::new("/sys/class/net").join(&tap).exists(),
            "tap {tap} is not on the host: {live}"
        );
        let vcpu = threads.iter().find(|c| c.comm == "vcpu0").unwrap();
        assert_eq!(vcpu.caps, [0, 0, 0], "{threads:?}");
        // A reset rebuilds the machine on the filtered main thread, the NIC on
        // duplicates of the same tap's queues (the second one, detached while no
        // driver asked for two pairs, is attached again).
        d.virsh_ok(&["reset", name]);
        std::thread::sleep(Duration::from_millis(500));
        d.wait_state(name, "running");
        assert_eq!(vmm_pid(&d, name), pid, "{}", d.domain_log(name));
        assert!(
            std::path::Path::new("/sys/class/net").join(&tap).exists(),
            "tap {tap} went at reset: {}",
            d.domain_log(name)
        );
    }

    // The monitor thread makes a system call no thread may make: the VMM dies of
    // SIGSYS (virsh loses the monitor, so its own result does not matter).
    let _ = d.virsh(&[
        "qemu-monitor-command",
        name,
        "--hmp",
        "x-oxvirt-test-forbidden-syscall",
    ]);
    d.wait_state(name, "shut off");
    assert_eq!(
        d.virsh_ok(&["domstate", "--reason", name]).trim(),
        "shut off (crashed)"
    );
    let kept = d.dir.path().join("run/log").join(format!("{name}.log"));
    let log = std::fs::read_to_string(&kept).unwrap_or_default();
    let line = "oxvirt-vmm: seccomp: the monitor thread made system call 135 (personality), \
                which its filter forbids; stopping the VMM";
    assert!(
        log.contains(line),
        "the kept domain log {} does not name the call:\n{log}\n--- oxvirtd log:\n{}",
        kept.display(),
        d.log()
    );
    assert!(
        d.log().contains("VMM crashed: oxvirt-vmm: seccomp:"),
        "{}",
        d.log()
    );
    // The domain starts again (nothing of the crashed run is left in the way).
    d.virsh_ok(&["start", name]);
    d.wait_state(name, "running");
    d.virsh_ok(&["destroy", name]);
}

#[test]
fn an_unknown_seccomp_mode_is_a_usage_error_that_names_it() {
    let out = std::process::Command::new(oxvirt_tests::bin_path("oxvirt-vmm"))
        .args(["--seccomp", "trap", "--spec"])
        .arg(Path::new("/nonexistent/spec.json"))
        .output()
        .expect("running oxvirt-vmm");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown seccomp mode 'trap' (expected none, log or kill)"),
        "{err}"
    );
}

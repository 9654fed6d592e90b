//! Each VMM in a cgroup of its own, seen from outside through oxvirtd and Debian's
//! virsh: a running domain's VMM is in `machine/oxvirt-NAME-PID` under the daemon's
//! cgroup in each tuned controller, the cgroup files hold what `<memtune>`,
//! `<cputune>` and `<blkiotune>` set, and the cgroup is gone after `virsh destroy`.
//! Runs on cgroup v1 (these machines mount memory, cpu and blkio as v1); skips loudly
//! where the test is not root or the controllers are not mounted as v1.

mod rpc_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::{domain_xml, test_guests};
use rpc_common::{guest_xml, Daemon, STEP};

const TUNING: &str = "<memtune><hard_limit unit='MiB'>512</hard_limit>\
<soft_limit unit='MiB'>256</soft_limit></memtune>\
<blkiotune><weight>300</weight></blkiotune>\
<cputune><shares>2048</shares><period>100000</period><quota>50000</quota></cputune>\n  <devices>";

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

/// The v1 cgroup directory of `pid` for `controller`, from /proc/PID/cgroup.
fn v1_dir(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls.split(',').any(|c| c == controller).then(|| {
            Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(path.trim_start_matches('/'))
        })
    })
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// `busctl call` on the daemon's private bus, `org.libvirt.Domain` of `obj`; stdout.
fn busctl(d: &Daemon, obj: &str, method: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("busctl")
        .arg("--address")
        .arg(format!("unix:path={}", d.dir.path().join("bus").display()))
        .args(["call", "org.libvirt", obj, "org.libvirt.Domain", method])
        .args(args)
        .output()
        .expect("busctl");
    if !out.status.success() {
        d.fail(&format!(
            "busctl {method}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// virsh's "name : value" lines.
fn fields(out: &str) -> std::collections::HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Why this host cannot run the test, if it cannot.
fn unusable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root: oxvirtd runs domains without cgroups".into());
    }
    let me = std::process::id() as i32;
    for c in ["memory", "cpu", "blkio"] {
        if v1_dir(me, c).is_none()
            || !Path::new("/sys/fs/cgroup")
                .join(c)
                .join("cgroup.procs")
                .exists()
        {
            return Some(format!("the '{c}' controller is not mounted as cgroup v1"));
        }
    }
    None
}

#[test]
fn a_running_domain_is_in_its_own_cgroup_with_its_tuning_and_the_cgroup_goes_with_it() {
    if !oxvirt_tests::host::require_kvm("rpc_cgroups") {
        return;
    }
    if let Some(why) = unusable() {
        eprintln!("SKIP rpc_cgroups: {why}");
        return;
    }
    let d = Daemon::start();
    let name = "cg1";
    let xml = guest_xml(name).replacen("  <devices>", TUNING, 1);
    d.virsh_ok(&["define", d.xml_file(name, &xml).to_str().unwrap()]);
    // A blkio weight needs an I/O scheduler with one (bfq, or cfq on old kernels); where
    // the host has none, the start is refused in libvirt's words and the rest runs
    // without <blkiotune>.
    let start = d.virsh(&["start", name]);
    let has_weight = start.ok;
    if !has_weight {
        assert!(
            start
                .stderr
                .contains("blkio device weight is valid only for bfq or cfq scheduler"),
            "{}",
            start.stderr
        );
        assert_eq!(d.virsh_ok(&["domstate", name]).trim(), "shut off");
        eprintln!(
            "*** SKIPPED (part of rpc_cgroups): <blkiotune> weight: this host's block devices \
             have no scheduler with a blkio weight (no bfq/cfq); the refusal was checked"
        );
        let xml = xml.replace("<blkiotune><weight>300</weight></blkiotune>", "");
        d.virsh_ok(&["undefine", name]);
        d.virsh_ok(&["define", d.xml_file(name, &xml).to_str().unwrap()]);
        d.virsh_ok(&["start", name]);
    }
    d.wait_state(name, "running");
    let pid = vmm_pid(&d, name);

    let leaf = format!("machine/oxvirt-{name}-{pid}");
    let dirs: Vec<PathBuf> = ["memory", "cpu", "blkio"]
        .iter()
        .map(|c| {
            let dir =
                v1_dir(pid, c).unwrap_or_else(|| d.fail(&format!("VMM {pid} has no {c} cgroup")));
            if !dir.ends_with(&leaf) {
                d.fail(&format!(
                    "VMM {pid} is in {} ({c}), not in .../{leaf}",
                    dir.display()
                ));
            }
            dir
        })
        .collect();
    let (mem_dir, cpu, blkio) = (&dirs[0], &dirs[1], &dirs[2]);
    eprintln!(
        "VMM {pid} in {}, {}, {}",
        mem_dir.display(),
        cpu.display(),
        blkio.display()
    );
    assert_eq!(
        read(mem_dir, "memory.limit_in_bytes"),
        (512u64 << 20).to_string()
    );
    assert_eq!(
        read(mem_dir, "memory.soft_limit_in_bytes"),
        (256u64 << 20).to_string()
    );
    assert_eq!(read(cpu, "cpu.shares"), "2048");
    assert_eq!(read(cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(read(cpu, "cpu.cfs_quota_us"), "50000");
    let weight = if blkio.join("blkio.weight").exists() {
        "blkio.weight"
    } else {
        "blkio.bfq.weight"
    };
    if has_weight {
        assert_eq!(read(blkio, weight), "300");
    }
    // Every thread of the VMM (vCPUs included) is in it.
    let tasks = read(cpu, "tasks");
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let tid = t.file_name().to_string_lossy().to_string();
        assert!(
            tasks.lines().any(|l| l == tid),
            "thread {tid} not in {}",
            cpu.display()
        );
    }

    // What virsh reads: the cgroup (live) and the definition (--config).
    let mem = fields(&d.virsh_ok(&["memtune", name]));
    assert_eq!(mem["hard_limit"], "524288", "{mem:?}");
    assert_eq!(mem["soft_limit"], "262144", "{mem:?}");
    assert_eq!(mem["swap_hard_limit"], "unlimited", "{mem:?}");
    let sched = fields(&d.virsh_ok(&["schedinfo", name]));
    assert_eq!(sched["Scheduler"], "posix", "{sched:?}");
    assert_eq!(sched["cpu_shares"], "2048", "{sched:?}");
    assert_eq!(sched["vcpu_period"], "100000", "{sched:?}");
    assert_eq!(sched["vcpu_quota"], "50000", "{sched:?}");
    if has_weight {
        assert_eq!(fields(&d.virsh_ok(&["blkiotune", name]))["weight"], "300");
    }
    // No <numatune> (translation refuses it): libvirt's default policy, no nodeset.
    let numa = fields(&d.virsh_ok(&["numatune", name]));
    assert_eq!(numa["numa_mode"], "strict", "{numa:?}");
    assert_eq!(numa["numa_nodeset"], "", "{numa:?}");

    // --live writes the cgroup files and the live XML.
    d.virsh_ok(&["memtune", name, "--hard-limit", "400000", "--live"]);
    assert_eq!(
        read(mem_dir, "memory.limit_in_bytes"),
        (400000u64 * 1024).to_string()
    );
    d.virsh_ok(&[
        "schedinfo",
        name,
        "--live",
        "cpu_shares=512",
        "vcpu_quota=20000",
    ]);
    assert_eq!(read(cpu, "cpu.shares"), "512");
    assert_eq!(read(cpu, "cpu.cfs_quota_us"), "20000");
    if has_weight {
        d.virsh_ok(&["blkiotune", name, "--weight", "700", "--live"]);
        assert_eq!(read(blkio, weight), "700");
    }
    let live = d.virsh_ok(&["dumpxml", name]);
    for want in [
        "<hard_limit unit='KiB'>400000</hard_limit>",
        "<shares>512</shares>",
        "<quota>20000</quota>",
        if has_weight {
            "<weight>700</weight>"
        } else {
            "<cputune>"
        },
    ] {
        assert!(live.contains(want), "live XML lacks {want}:\n{live}");
    }
    assert_eq!(
        fields(&d.virsh_ok(&["memtune", name]))["hard_limit"],
        "400000"
    );

    // --config changes the persistent definition only.
    d.virsh_ok(&["memtune", name, "--soft-limit", "100000", "--config"]);
    assert_eq!(
        fields(&d.virsh_ok(&["memtune", name, "--config"]))["soft_limit"],
        "100000"
    );
    assert!(d
        .virsh_ok(&["dumpxml", "--inactive", name])
        .contains("<soft_limit unit='KiB'>100000</soft_limit>"));
    assert_eq!(
        read(mem_dir, "memory.soft_limit_in_bytes"),
        (256u64 << 20).to_string()
    );
    assert_eq!(
        fields(&d.virsh_ok(&["schedinfo", name, "--config"]))["cpu_shares"],
        "2048"
    );

    // libvirt-dbus's methods on the same core (busctl prints the values' innermost type).
    let uuid = d.virsh_ok(&["domuuid", name]).trim().replace('-', "_");
    let obj = format!("/org/libvirt/QEMU/domain/_{uuid}");
    let got = busctl(&d, &obj, "GetMemoryParameters", &["u", "0"]);
    assert!(got.contains("\"hard_limit\" v t 400000"), "{got}");
    let got = busctl(&d, &obj, "GetSchedulerParameters", &["u", "0"]);
    assert!(got.contains("\"vcpu_quota\" v x 20000"), "{got}");
    // No <numatune>: libvirt's defaults, as `virsh numatune` shows them too.
    let got = busctl(&d, &obj, "GetNumaParameters", &["u", "0"]);
    assert!(
        got.contains("\"numa_mode\" v i 0") && got.contains("\"numa_nodeset\" v s \"\""),
        "{got}"
    );
    let numa = d.virsh_ok(&["numatune", name]);
    assert!(numa.contains("strict"), "{numa}");
    if has_weight {
        let got = busctl(&d, &obj, "GetBlockIOParameters", &["u", "0"]);
        assert!(got.contains("\"weight\" v u 700"), "{got}");
    }
    busctl(
        &d,
        &obj,
        "SetMemoryParameters",
        &["a{sv}u", "1", "hard_limit", "t", "300000", "1"],
    );
    assert_eq!(
        read(mem_dir, "memory.limit_in_bytes"),
        (300000u64 * 1024).to_string()
    );
    busctl(
        &d,
        &obj,
        "SetSchedulerParameters",
        &["a{sv}u", "1", "cpu_shares", "t", "256", "1"],
    );
    assert_eq!(read(cpu, "cpu.shares"), "256");
    if has_weight {
        busctl(
            &d,
            &obj,
            "SetBlockIOParameters",
            &["a{sv}u", "1", "weight", "u", "600", "1"],
        );
        assert_eq!(read(blkio, weight), "600");
    }

    // Out of range or unknown: refused by name, nothing written.
    let r = d.virsh(&["schedinfo", name, "--live", "vcpu_period=10"]);
    assert!(!r.ok && r.stderr.contains("period"), "{}", r.stderr);
    let r = d.virsh(&["blkiotune", name, "--weight", "5000", "--live"]);
    assert!(!r.ok && r.stderr.contains("weight"), "{}", r.stderr);
    if has_weight {
        assert_eq!(read(blkio, weight), "600");
    }

    d.virsh_ok(&["destroy", name]);
    d.wait_state(name, "shut off");
    let deadline = Instant::now() + STEP;
    while dirs.iter().any(|p| p.exists()) {
        if Instant::now() > deadline {
            d.fail(&format!("cgroup {leaf} still there after destroy"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_guest_over_its_hard_limit_is_oom_killed_in_its_cgroup_and_reported_crashed() {
    if !oxvirt_tests::host::require_kvm("rpc_cgroups") {
        return;
    }
    if let Some(why) = unusable() {
        eprintln!("SKIP rpc_cgroups: {why}");
        return;
    }
    let d = Daemon::start();
    let name = "cg2";
    // 128 MiB of guest RAM, all of it touched (oxtest=memfill), against a 48 MiB
    // limit on memory and memory+swap: the kernel's OOM killer ends the VMM.
    let xml = domain_xml(
        name,
        &test_guests().elf,
        "console=ttyS0 oxtest=memfill,acpibutton",
        128,
        1,
        "restart",
        &serial_xml("pty"),
    )
    .replacen(
        "  <devices>",
        "<memtune><hard_limit unit='MiB'>48</hard_limit>\
         <swap_hard_limit unit='MiB'>48</swap_hard_limit></memtune>\n  <devices>",
        1,
    );
    d.virsh_ok(&["define", d.xml_file(name, &xml).to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    let pid = vmm_pid(&d, name);
    let dir = v1_dir(pid, "memory");
    d.wait_state(name, "shut off");
    let state = d.virsh_ok(&["domstate", "--reason", name]);
    assert_eq!(state.trim(), "shut off (crashed)", "{}", d.log());
    // The kernel says whose limit it was (dmesg needs root, which this test has).
    let leaf = "task_memcg=";
    let cg = format!("/machine/oxvirt-{name}-{pid},task=oxvirt-vmm");
    let dmesg = std::process::Command::new("dmesg")
        .output()
        .map(|o| o.stdout);
    match dmesg {
        Ok(out) => {
            let out = String::from_utf8_lossy(&out);
            assert!(
                out.lines()
                    .any(|l| l.contains("oom-kill:") && l.contains(leaf) && l.contains(&cg)),
                "no OOM kill of VMM {pid} in its cgroup in dmesg"
            );
        }
        Err(e) => {
            eprintln!("rpc_cgroups: dmesg not readable ({e}): the OOM kill's cgroup is not checked")
        }
    }
    if let Some(dir) = dir {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

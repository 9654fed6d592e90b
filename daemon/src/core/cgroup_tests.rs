//! Both layouts against fake hierarchies in a temp dir: files the kernel would
//! create are written first, so the test sees exactly what the daemon writes.

use super::*;

fn touch(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (f, v) in files {
        std::fs::write(dir.join(f), v).unwrap();
    }
}

fn get(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap().trim().to_string()
}

const ALL: Tuning = Tuning {
    hard_limit_kib: Some(524288),
    soft_limit_kib: Some(262144),
    swap_hard_limit_kib: Some(1048576),
    cpu_shares: Some(2048),
    cpu_period_us: Some(100000),
    cpu_quota_us: Some(50000),
    blkio_weight: Some(300),
};

#[test]
fn v1_puts_the_domain_under_each_controllers_own_cgroup() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for c in ["memory", "cpu", "blkio"] {
        touch(&r.join(c), &[("cgroup.procs", "")]);
    }
    let own = "9:name=systemd:/\n7:blkio:/\n4:memory:/svc/x\n1:cpu,cpuacct:/\n0::/\n";
    let h = Hierarchy::detect(r, own).unwrap();
    assert_eq!(h.version(), Version::V1);
    let cg = h.create("vm1").unwrap();
    let dirs: Vec<_> = cg.dirs().map(Path::to_path_buf).collect();
    assert_eq!(
        dirs,
        [
            r.join("memory/svc/x/machine/oxvirt-vm1"),
            r.join("cpu/machine/oxvirt-vm1"),
            r.join("blkio/machine/oxvirt-vm1"),
        ]
    );
    // What the kernel puts in a new v1 cgroup (BFQ's weight file, no CFQ one).
    touch(
        &dirs[0],
        &[
            ("memory.limit_in_bytes", "9223372036854771712"),
            ("memory.soft_limit_in_bytes", "9223372036854771712"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712"),
        ],
    );
    touch(
        &dirs[1],
        &[
            ("cpu.shares", "1024"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "-1"),
        ],
    );
    touch(&dirs[2], &[("blkio.bfq.weight", "100")]);
    let t = cg.read().unwrap();
    assert_eq!(t.hard_limit_kib, Some(MEMORY_UNLIMITED_KIB));
    assert_eq!(t.cpu_quota_us, Some(-1));
    assert_eq!(t.blkio_weight, Some(100));

    cg.apply(&ALL).unwrap();
    assert_eq!(get(dirs[0].join("memory.limit_in_bytes")), "536870912");
    assert_eq!(get(dirs[0].join("memory.soft_limit_in_bytes")), "268435456");
    assert_eq!(
        get(dirs[0].join("memory.memsw.limit_in_bytes")),
        "1073741824"
    );
    assert_eq!(get(dirs[1].join("cpu.shares")), "2048");
    assert_eq!(get(dirs[1].join("cpu.cfs_quota_us")), "50000");
    assert_eq!(get(dirs[2].join("blkio.bfq.weight")), "300");
    assert_eq!(cg.read().unwrap(), ALL);

    let unlimited = Tuning {
        hard_limit_kib: Some(MEMORY_UNLIMITED_KIB),
        cpu_quota_us: Some(-1),
        ..Tuning::default()
    };
    cg.apply(&unlimited).unwrap();
    assert_eq!(get(dirs[0].join("memory.limit_in_bytes")), "-1");
    assert_eq!(get(dirs[1].join("cpu.cfs_quota_us")), "-1");
}

#[test]
fn v2_puts_the_domain_in_one_directory_with_the_controllers_enabled() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    touch(r, &[("cgroup.controllers", "cpuset cpu io memory pids")]);
    touch(
        &r.join("system.slice/oxvirtd.service"),
        &[("cgroup.procs", "")],
    );
    let h = Hierarchy::detect(r, "0::/system.slice/oxvirtd.service\n").unwrap();
    assert_eq!(h.version(), Version::V2);
    let cg = h.create("vm2").unwrap();
    let own = r.join("system.slice/oxvirtd.service");
    let dir = own.join("machine/oxvirt-vm2");
    assert!(cg.dirs().all(|d| d == dir));
    touch(&dir, &[("cgroup.procs", "")]);
    cg.add(42).unwrap();
    assert_eq!(get(dir.join("cgroup.procs")), "42");
    // The last controller enabled for the partition's children (a fake file keeps
    // only the last write; the kernel accumulates them).
    assert_eq!(get(own.join("machine/cgroup.subtree_control")), "+io");
    touch(
        &dir,
        &[
            ("memory.max", "max"),
            ("memory.high", "max"),
            ("memory.swap.max", "max"),
            ("cpu.weight", "100"),
            ("cpu.max", "max 100000"),
            ("io.weight", "default 100\n"),
        ],
    );
    let t = cg.read().unwrap();
    assert_eq!(t.swap_hard_limit_kib, Some(MEMORY_UNLIMITED_KIB));
    assert_eq!((t.cpu_quota_us, t.cpu_period_us), (Some(-1), Some(100000)));

    cg.apply(&ALL).unwrap();
    assert_eq!(get(dir.join("memory.max")), "536870912");
    assert_eq!(get(dir.join("memory.high")), "268435456");
    // swap alone: memory+swap 1 GiB less memory 512 MiB.
    assert_eq!(get(dir.join("memory.swap.max")), "536870912");
    assert_eq!(get(dir.join("cpu.weight")), "2048");
    assert_eq!(get(dir.join("cpu.max")), "50000 100000");
    assert_eq!(get(dir.join("io.weight")), "default 300");
    std::fs::write(dir.join("io.weight"), "default 300\n8:0 200\n").unwrap();
    assert_eq!(cg.read().unwrap(), ALL);

    // A quota alone keeps the period.
    cg.apply(&Tuning {
        cpu_quota_us: Some(-1),
        ..Tuning::default()
    })
    .unwrap();
    assert_eq!(get(dir.join("cpu.max")), "max 100000");
}

#[test]
fn a_hierarchy_without_the_controllers_is_named() {
    let root = tempfile::tempdir().unwrap();
    let e = Hierarchy::detect(root.path(), "4:memory:/\n").unwrap_err();
    assert!(e.contains("memory"), "{e}");
    touch(&root.path().join("memory"), &[("cgroup.procs", "")]);
    let e = Hierarchy::detect(root.path(), "4:memory:/\n").unwrap_err();
    assert!(e.contains("'cpu'"), "{e}");
}

#[test]
fn remove_takes_every_directory_and_tolerates_missing_ones() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    touch(r, &[("cgroup.controllers", "cpu io memory")]);
    let h = Hierarchy::detect(r, "0::/\n").unwrap();
    let cg = h.create("gone").unwrap();
    cg.remove().unwrap();
    assert!(!r.join("machine/oxvirt-gone").exists());
    cg.remove().unwrap();
}

#[test]
fn v2_under_a_delegated_unit_moves_the_daemon_into_a_leaf_first() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    touch(r, &[("cgroup.controllers", "cpu io memory")]);
    let unit = r.join("system.slice/oxvirtd.service");
    touch(
        &unit,
        &[("cgroup.procs", "4242\n"), ("cgroup.type", "domain")],
    );
    let h = Hierarchy::detect(r, "0::/system.slice/oxvirtd.service\n").unwrap();
    h.leave_inner_node(4242).unwrap();
    assert_eq!(get(unit.join("daemon/cgroup.procs")), "4242");
    // The root cgroup (no cgroup.type) and v1 stay as they are.
    let h = Hierarchy::detect(r, "0::/\n").unwrap();
    h.leave_inner_node(4242).unwrap();
    assert!(!r.join("daemon").exists());
}

#[test]
fn sweep_removes_the_cgroups_of_gone_vmms_only() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    touch(r, &[("cgroup.controllers", "cpu io memory")]);
    let h = Hierarchy::detect(r, "0::/\n").unwrap();
    for leaf in ["oxvirt-a-10", "oxvirt-b-c-11", "oxvirt-d-12", "other-13"] {
        std::fs::create_dir_all(r.join("machine").join(leaf)).unwrap();
    }
    h.sweep(|pid| pid == 12);
    let left: std::collections::BTreeSet<String> = std::fs::read_dir(r.join("machine"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| !n.starts_with("cgroup."))
        .collect();
    assert_eq!(
        left,
        ["oxvirt-d-12".to_string(), "other-13".to_string()].into()
    );
}

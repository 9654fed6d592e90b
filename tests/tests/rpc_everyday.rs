//! The everyday libvirt API (issue 19) through python3-libvirt and virsh against a
//! running oxtest domain with a virtio disk and NIC: host facts and stats, per-domain stats,
//! bulk stats, pinning, and `--config` device changes. Checks libvirt 9.0's field
//! names and types, and the values that must hold (vCPU count, memory sizes, disk
//! counters after the guest's I/O).

mod rpc_common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use oxvirt_tests::disk::raw_image;
use oxvirt_tests::net::require_tap;
use oxvirt_tests::spec::{domain_xml, serial_xml};
use oxvirt_tests::test_guests;
use rpc_common::{run_with_timeout, Daemon, STEP};
use serde_json::Value;

fn script() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/rpc/everyday_script.py"
    ))
}

/// The host side of the guest's NIC (unique per test process, as a tap outlives a
/// VMM that was not stopped cleanly).
fn tap() -> String {
    format!("oxevd{}", std::process::id() % 100_000)
}

/// The oxtest guest with a virtio disk `vda` that it reads and writes and a virtio
/// NIC on tap [`tap`] that it sends one frame on, then waits for the power button.
/// The disk sits in the lower slot: the guest drives it before the NIC, whose check
/// then waits (60 s) for a frame from the host that never comes.
fn guest_with_disk(d: &Daemon, name: &str) -> String {
    let img = raw_image(d.dir.path(), "vda.img", 4);
    let xml = domain_xml(
        name,
        &test_guests().elf,
        "console=ttyS0 oxtest=pci,virtio,net,acpibutton",
        64,
        2,
        "restart",
        &serial_xml(&format!(
            "file:{}",
            d.dir.path().join("console.log").display()
        )),
    );
    xml.replace(
        "</devices>",
        &format!(
            "<disk type='file' device='disk'><driver name='qemu' type='raw'/>\
             <source file='{}'/><target dev='vda' bus='virtio'/>\
             <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></disk>\n\
             <interface type='ethernet'><mac address='52:54:00:e7:00:01'/>\
             <target dev='{}'/><model type='virtio'/>\
             <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/></interface>\n</devices>",
            img.display(),
            tap()
        ),
    )
}

/// Waits until the guest's console shows its virtio-blk and NIC transmit checks.
fn wait_guest_io(d: &Daemon) {
    let deadline = Instant::now() + STEP;
    let log = d.dir.path().join("console.log");
    loop {
        let s = std::fs::read_to_string(&log).unwrap_or_default();
        if s.contains("OXTEST vblk ") {
            assert!(
                s.contains("OXTEST vblk ok"),
                "guest disk check failed:\n{s}"
            );
            return;
        }
        if Instant::now() > deadline {
            d.fail(&format!(
                "no vblk/vnet-tx lines from the guest; console:\n{s}\n{}",
                d.domain_log("everyday")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run_script(d: &Daemon, name: &str) -> Value {
    let mut c = Command::new("/usr/bin/python3");
    c.arg(script()).arg(d.uri()).arg(name).arg("vda").arg(tap());
    let r = run_with_timeout(c, STEP);
    if !r.ok {
        d.fail(&format!("script failed:\n{}\n{}", r.stdout, r.stderr));
    }
    serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| d.fail(&format!("bad JSON ({e}): {}", r.stdout)))
}

/// The answer of call `key`; fails the test (with the whole matrix) on an error.
fn ok<'a>(d: &Daemon, out: &'a Value, key: &str) -> &'a Value {
    match out[key].get("ok") {
        Some(v) => v,
        None => d.fail(&format!("{key} failed: {}", out[key])),
    }
}

/// The keys of a dict answer, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// `virsh domblkstat NAME vda`'s `vda rd_req N` value.
fn virsh_blkstat(d: &Daemon, name: &str, field: &str) -> u64 {
    let out = d.virsh_ok(&["domblkstat", name, "vda"]);
    out.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some("vda") && it.next() == Some(field))
                .then(|| it.next()?.parse().ok())?
        })
        .unwrap_or_else(|| d.fail(&format!("no {field} in domblkstat:\n{out}")))
}

#[test]
fn rpc_everyday_calls_answer_like_libvirt() {
    if !require_tap("rpc_everyday_calls_answer_like_libvirt") {
        return;
    }
    let d = Daemon::start();
    let name = "everyday";
    let xml = d.xml_file(name, &guest_with_disk(&d, name));
    d.virsh_ok(&["define", xml.to_str().unwrap()]);
    // Only the guest touches the disk image, so every block counter comes from its
    // I/O (4 KiB read at sector 0, 4 KiB written at sector 8).
    d.virsh_ok(&["start", name]);
    wait_guest_io(&d);
    let out = run_script(&d, name);
    let failing: Vec<&str> = out
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["err"].as_i64().is_some())
        .map(|(k, _)| k.as_str())
        .collect();
    eprintln!("calls that answer an error: {failing:?}");

    // Host.
    let info = ok(&d, &out, "getInfo");
    let host_cpus = info[2].as_u64().unwrap();
    assert_eq!(
        keys(ok(&d, &out, "getCPUStats")),
        ["idle", "iowait", "kernel", "user"]
    );
    assert_eq!(
        keys(ok(&d, &out, "getCPUStats_cpu0")),
        ["idle", "iowait", "kernel", "user"]
    );
    let mem = ok(&d, &out, "getMemoryStats");
    assert_eq!(keys(mem), ["buffers", "cached", "free", "total"]);
    // getInfo gives MiB, the memory stats KiB.
    assert_eq!(
        mem["total"].as_u64().unwrap() / 1024,
        info[1].as_u64().unwrap()
    );
    let cells = ok(&d, &out, "getCellsFreeMemory");
    assert!(cells[0].as_u64().unwrap() > 0, "{cells}");
    let map = ok(&d, &out, "getCPUMap");
    let ncpus = map[0].as_u64().unwrap();
    assert_eq!(map[1].as_array().unwrap().len() as u64, ncpus);
    assert_eq!(map[2].as_u64().unwrap(), host_cpus, "online CPUs: {map}");
    assert!(ok(&d, &out, "getSysinfo")
        .as_str()
        .unwrap()
        .starts_with("<sysinfo type='smbios'"));

    // vCPUs and pinning.
    let vcpus = ok(&d, &out, "vcpus");
    let vinfo = vcpus[0].as_array().unwrap();
    assert_eq!(vinfo.len(), 2, "{vcpus}");
    for (i, v) in vinfo.iter().enumerate() {
        assert_eq!(v[0], i as u64, "vCPU number");
        assert_eq!(v[1], 1, "VIR_VCPU_RUNNING");
        assert!(v[3].as_i64().unwrap() < ncpus as i64, "host CPU");
    }
    assert_eq!(vcpus[1][0].as_array().unwrap().len() as u64, ncpus);
    let pinned = ok(&d, &out, "vcpuPinInfo_pinned");
    assert_eq!(pinned[0][0], true);
    assert!(pinned[0]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .all(|c| c == false));
    assert_eq!(
        out["pinVcpuFlags_config"]["err"], 67,
        "{}",
        out["pinVcpuFlags_config"]
    );
    let emu = ok(&d, &out, "emulatorPinInfo_pinned");
    assert_eq!(emu[0], true);
    assert!(emu.as_array().unwrap().iter().skip(1).all(|c| c == false));
    ok(&d, &out, "pinVcpu_back");
    ok(&d, &out, "pinEmulator_back");

    // Block devices: the guest read 4 KiB at sector 0 and wrote 4 KiB at sector 8.
    let bs = ok(&d, &out, "blockStats");
    assert!(
        bs[0].as_i64().unwrap() >= 1 && bs[1].as_i64().unwrap() >= 4096,
        "{bs}"
    );
    assert!(
        bs[2].as_i64().unwrap() >= 1 && bs[3].as_i64().unwrap() >= 4096,
        "{bs}"
    );
    assert_eq!(bs[4], -1, "QEMU keeps no error count");
    let bsf = ok(&d, &out, "blockStatsFlags");
    assert_eq!(
        keys(bsf),
        [
            "flush_operations",
            "flush_total_times",
            "rd_bytes",
            "rd_operations",
            "rd_total_times",
            "wr_bytes",
            "wr_operations",
            "wr_total_times"
        ]
    );
    assert_eq!(bsf["rd_bytes"], bs[1]);
    assert_eq!(out["blockStats_missing"]["err"], 8, "VIR_ERR_INVALID_ARG");
    // The NIC: the guest sent one frame, which the tap received.
    let net = ok(&d, &out, "interfaceStats").as_array().unwrap();
    assert_eq!(net.len(), 8, "{net:?}");
    assert!(
        net[5].as_i64().unwrap() + net[7].as_i64().unwrap() >= 1,
        "the guest's frame is in tx_packets or tx_drop: {net:?}"
    );
    assert_eq!(
        out["interfaceStats_missing"]["err"], 8,
        "VIR_ERR_INVALID_ARG"
    );
    assert_eq!(
        ok(&d, &out, "blockInfo"),
        &serde_json::json!([4 << 20, 4 << 20, 4 << 20])
    );

    // Memory and CPU time.
    let ms = ok(&d, &out, "memoryStats");
    assert_eq!(ms["actual"], 65536);
    assert!(ms["rss"].as_u64().unwrap() > 0);
    let total = ok(&d, &out, "getCPUStats_total");
    assert_eq!(keys(&total[0]), ["cpu_time", "system_time", "user_time"]);
    let t = &total[0];
    assert_eq!(
        t["cpu_time"].as_u64().unwrap(),
        t["user_time"].as_u64().unwrap() + t["system_time"].as_u64().unwrap()
    );
    let percpu = ok(&d, &out, "getCPUStats_percpu").as_array().unwrap();
    assert_eq!(percpu.len() as u64, ncpus);
    assert_eq!(keys(&percpu[0]), ["cpu_time", "vcpu_time"]);

    // Control and jobs: no job ever runs.
    assert_eq!(ok(&d, &out, "controlInfo"), &serde_json::json!([0, 0, 0]));
    assert_eq!(
        ok(&d, &out, "jobInfo"),
        &serde_json::json!([0u64; 12].to_vec())
    );
    assert_eq!(ok(&d, &out, "jobStats"), &serde_json::json!({"type": 0}));
    assert_eq!(
        out["getTime"]["err"], 74,
        "no guest agent: {}",
        out["getTime"]
    );

    // Bulk stats, libvirt's names for the groups a KVM domain has.
    for key in ["getAllDomainStats", "domainListGetStats"] {
        let recs = ok(&d, &out, key);
        let rec = &recs.as_array().unwrap()[0];
        assert_eq!(rec[0], name);
        let s = &rec[1];
        for f in [
            "state.state",
            "state.reason",
            "cpu.time",
            "cpu.user",
            "cpu.system",
            "balloon.current",
            "balloon.maximum",
            "balloon.rss",
            "vcpu.current",
            "vcpu.maximum",
            "vcpu.0.state",
            "vcpu.0.time",
            "vcpu.0.wait",
            "vcpu.1.delay",
            "net.count",
            "net.0.name",
            "net.0.rx.bytes",
            "net.0.rx.pkts",
            "net.0.rx.errs",
            "net.0.rx.drop",
            "net.0.tx.bytes",
            "net.0.tx.pkts",
            "net.0.tx.errs",
            "net.0.tx.drop",
            "block.count",
            "block.0.name",
            "block.0.path",
            "block.0.rd.reqs",
            "block.0.rd.bytes",
            "block.0.rd.times",
            "block.0.wr.reqs",
            "block.0.wr.bytes",
            "block.0.wr.times",
            "block.0.fl.reqs",
            "block.0.fl.times",
            "block.0.allocation",
            "block.0.capacity",
            "block.0.physical",
        ] {
            assert!(s.get(f).is_some(), "{key}: no {f} in {s}");
        }
        assert_eq!(s["vcpu.current"], 2);
        assert_eq!(s["balloon.maximum"], 65536);
        assert_eq!(s["block.0.name"], "vda");
        assert_eq!(s["net.0.name"], tap().as_str());
        assert!(s["block.0.rd.bytes"].as_u64().unwrap() >= 4096);
    }

    // The same through virsh.
    let has = |args: &[&str], want: &[&str]| {
        let o = d.virsh_ok(args);
        for w in want {
            assert!(o.contains(w), "virsh {args:?}: no '{w}' in:\n{o}");
        }
    };
    has(&["nodeinfo"], &["CPU(s):", "Memory size:"]);
    has(&["nodecpustats"], &["user:", "system:", "idle:", "iowait:"]);
    has(&["nodememstats"], &["total  :", "free   :"]);
    has(&["sysinfo"], &["<sysinfo type='smbios'"]);
    has(&["vcpuinfo", name], &["VCPU:", "CPU Affinity:", "State:"]);
    has(&["vcpupin", name], &["VCPU", "CPU Affinity"]);
    has(&["emulatorpin", name], &["emulator:", "CPU Affinity"]);
    has(
        &["domstats", name],
        &["block.0.rd.reqs=", "vcpu.1.time=", "state.state=1"],
    );
    has(&["dommemstat", name], &["actual 65536", "rss "]);
    has(&["cpu-stats", name], &["CPU0:", "cpu_time", "vcpu_time"]);
    has(
        &["cpu-stats", name, "--total"],
        &["cpu_time", "user_time", "system_time"],
    );
    has(&["domblkinfo", name, "vda"], &["Capacity:       4194304"]);
    has(&["domjobinfo", name], &["None"]);
    has(&["domcontrol", name], &["ok"]);
    has(
        &["domifstat", name, &tap()],
        &[
            &format!("{} rx_bytes", tap()),
            &format!("{} tx_packets", tap()),
        ],
    );
    assert!(virsh_blkstat(&d, name, "rd_req") >= 1);

    vcpu_count_changes(&d, name);
    config_device_changes(&d, name);

    // Shut off: bulk stats still answer (state, balloon, vcpu, block sizes), the
    // per-device counters say the domain is not running, as libvirt's.
    d.virsh_ok(&["destroy", name]);
    has(
        &["domstats", name],
        &[
            "state.state=5",
            "block.0.capacity=4194304",
            "vcpu.current=2",
        ],
    );
    for args in [
        &["domblkstat", name, "vda"][..],
        &["domifstat", name, &tap()][..],
    ] {
        let r = d.virsh(args);
        assert!(
            !r.ok && r.stderr.contains("domain is not running"),
            "{args:?}: {}",
            r.stderr
        );
    }
}

/// `virsh setvcpus` on the running 2-vCPU domain, as libvirt 9.0's QEMU driver answers:
/// the persistent count and maximum change with `--config`; live, the same count is
/// accepted (nothing to do) and another is refused by name (no vCPU hot-plug), leaving
/// both definitions alone; `find-storage-pool-sources` answers libvirt's errors for
/// pool types without discovery.
fn vcpu_count_changes(d: &Daemon, name: &str) {
    let count = |args: &[&str]| -> String {
        let mut a = vec!["vcpucount", name];
        a.extend_from_slice(args);
        d.virsh_ok(&a).trim().to_string()
    };
    d.virsh_ok(&["setvcpus", name, "2", "--live"]);
    d.virsh_ok(&["setvcpus", name, "2"]);
    let r = d.virsh(&["setvcpus", name, "1", "--live"]);
    assert!(
        !r.ok && r.stderr.contains("vCPU hot-plug"),
        "live change: {}",
        r.stderr
    );
    let r = d.virsh(&["setvcpus", name, "3", "--live"]);
    assert!(
        !r.ok
            && r.stderr.contains(
                "requested vcpus is greater than max allowable vcpus for the live domain: 3 > 2"
            ),
        "{}",
        r.stderr
    );
    assert_eq!(count(&["--live", "--active"]), "2");

    d.virsh_ok(&["setvcpus", name, "4", "--maximum", "--config"]);
    d.virsh_ok(&["setvcpus", name, "1", "--config"]);
    assert_eq!(count(&["--config", "--maximum"]), "4");
    assert_eq!(count(&["--config", "--active"]), "1");
    let inactive = d.virsh_ok(&["dumpxml", "--inactive", name]);
    assert!(
        inactive.contains("<vcpu placement='static' current='1'>4</vcpu>")
            || inactive.contains("<vcpu current='1'>4</vcpu>"),
        "{inactive}"
    );
    let r = d.virsh(&["setvcpus", name, "5", "--config"]);
    assert!(
        !r.ok
            && r.stderr.contains(
                "requested vcpus is greater than max allowable vcpus for the persistent domain: 5 > 4"
            ),
        "{}",
        r.stderr
    );
    // The running domain did not move; put the definition back.
    assert_eq!(count(&["--live", "--active"]), "2");
    d.virsh_ok(&["setvcpus", name, "2", "--maximum", "--config"]);
    d.virsh_ok(&["setvcpus", name, "2", "--config"]);
    assert_eq!(count(&["--config", "--active"]), "2");

    // LVM answers its volume groups (none, or the host's); dir has no discovery.
    let out = d.virsh_ok(&["find-storage-pool-sources", "logical"]);
    assert!(out.contains("<sources>"), "{out}");
    let r = d.virsh(&["find-storage-pool-sources", "dir"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("pool type 'dir' does not support source discovery"),
        "{}",
        r.stderr
    );
}

/// `--config` attach and detach on the running domain: the persistent definition
/// changes, the live one does not; a live attach changes only the live one; a device the
/// translation refuses leaves the definition as it was.
fn config_device_changes(d: &Daemon, name: &str) {
    let inactive = || d.virsh_ok(&["dumpxml", "--inactive", name]);
    let vdb = raw_image(d.dir.path(), "vdb.img", 1);
    let vdb = vdb.to_str().unwrap();
    let out = d.virsh_ok(&[
        "attach-disk",
        name,
        vdb,
        "vdb",
        "--targetbus",
        "virtio",
        "--config",
    ]);
    assert!(out.contains("Disk attached successfully"), "{out}");
    assert!(
        inactive().contains("<target dev='vdb' bus='virtio'/>"),
        "{}",
        inactive()
    );
    assert!(!d.virsh_ok(&["dumpxml", name]).contains("dev='vdb'"));
    let again = d.virsh(&["attach-disk", name, vdb, "vdb", "--config"]);
    assert!(
        !again.ok && again.stderr.contains("target vdb already exists"),
        "{}",
        again.stderr
    );
    // Live (the default on a running domain) goes to the running machine only: ACPI
    // PCI hot-plug on this i440FX machine (linux_guest_hotplug has the guest's side).
    let vdc = raw_image(d.dir.path(), "vdc.img", 1);
    let out = d.virsh_ok(&[
        "attach-disk",
        name,
        vdc.to_str().unwrap(),
        "vdc",
        "--targetbus",
        "virtio",
    ]);
    assert!(out.contains("Disk attached successfully"), "{out}");
    assert!(d
        .virsh_ok(&["dumpxml", name])
        .contains("<target dev='vdc' bus='virtio'/>"));
    assert!(!inactive().contains("dev='vdc'"), "{}", inactive());

    let out = d.virsh_ok(&[
        "attach-interface",
        name,
        "network",
        "default",
        "--model",
        "virtio",
        "--config",
    ]);
    assert!(out.contains("Interface attached successfully"), "{out}");
    assert!(
        inactive().contains("<source network='default'/>"),
        "{}",
        inactive()
    );

    // A floppy does not translate: refused, definition untouched.
    let before = inactive();
    let floppy = d.xml_file(
        "floppy",
        "<disk type='file' device='floppy'><source file='/dev/null'/><target dev='fda' bus='fdc'/></disk>",
    );
    let r = d.virsh(&["attach-device", name, floppy.to_str().unwrap(), "--config"]);
    assert!(!r.ok, "a floppy was accepted: {}", r.stdout);
    assert_eq!(inactive(), before);

    let out = d.virsh_ok(&["detach-disk", name, "vdb", "--config"]);
    assert!(out.contains("Disk detached successfully"), "{out}");
    let out = d.virsh_ok(&["detach-interface", name, "network", "--config"]);
    assert!(out.contains("Interface detached successfully"), "{out}");
    let after = inactive();
    assert!(
        !after.contains("dev='vdb'") && !after.contains("network='default'"),
        "{after}"
    );
    let missing = d.virsh(&["detach-disk", name, "vdz", "--config"]);
    assert!(!missing.ok, "{}", missing.stdout);
}

//! The python3-libvirt matrix of issue 19: the everyday calls (host facts and stats,
//! CPU models, per-domain stats, pinning, tuning parameters, jobs, bulk stats with each
//! group, capabilities, snapshots, interface addresses) answered by oxvirtd and by a
//! private libvirtd 9.0 (QEMU driver, TCG) on the same small domain: the oxtest guest
//! with 64 MiB, 2 vCPUs, a 4 MiB raw virtio disk and a virtio NIC on a tap. Values are
//! not compared, shapes are (`tests/rpc/matrix_script.py`): the Python type of each
//! answer, dict keys and typed-parameter names with their types, tuple lengths,
//! per-vCPU and per-host-CPU list lengths, the error code where both refuse, and the
//! values the definition fixes (memory in KiB, capacity in bytes, vCPU count).
//!
//! Where libvirtd in session mode as `nobody` cannot answer (no cgroups, no
//! dmidecode), oxvirtd's answer is compared with the shape libvirt's QEMU driver gives
//! on a system daemon ([`REFERENCE`]); differences that are legitimate are listed in
//! [`ALLOWED`] with the reason for each. The test prints the whole matrix.
//!
//! Needs root and /dev/net/tun (both taps are made here or by oxvirt-vmm), KVM, and for
//! the comparison libvirtd + qemu-system-x86_64: SKIPPED loudly otherwise.

mod rpc_common;

use std::path::Path;
use std::process::Command;

use oxvirt_tests::disk::raw_image;
use oxvirt_tests::net::require_tap;
use oxvirt_tests::spec::{domain_xml, serial_xml};
use oxvirt_tests::test_guests;
use rpc_common::libvirtd::{Driver, Libvirtd};
use rpc_common::{run_with_timeout, virsh, Daemon, CMDLINE, STEP};
use serde_json::{json, Value};

const NAME: &str = "matrix";
const MAC: &str = "52:54:00:e7:00:09";

/// Calls libvirtd cannot answer here (a session daemon as `nobody` has no cgroups and
/// cannot run dmidecode): oxvirtd's answer is compared with what libvirt 9.0's QEMU
/// driver answers on a system daemon (its source: qemu_driver.c), given as a shape.
/// `NCPUS` stands for the host's CPU count.
const REFERENCE: &[(&str, &str, &str)] = &[
    (
        "dom.getCPUStats(True)",
        r#"["list", [{"cpu_time": "int", "system_time": "int", "user_time": "int"}]]"#,
        "qemuDomainGetCPUStats → virCgroupGetDomainTotalCpuStats: cpuacct only on a system daemon",
    ),
    (
        "dom.getCPUStats(False)",
        r#"["list", NCPUS × {"cpu_time": "int", "vcpu_time": "int"}]"#,
        "qemuDomainGetCPUStats → virCgroupGetPercpuStats: one entry per host CPU",
    ),
    (
        "dom.memoryParameters",
        r#"{"hard_limit": "int", "soft_limit": "int", "swap_hard_limit": "int"}"#,
        "qemuDomainGetMemoryParameters (QEMU_NB_MEM_PARAM 3): memory cgroup",
    ),
    (
        "dom.blkioParameters",
        r#"{"weight": "int", "device_weight": "str", "device_read_iops_sec": "str",
            "device_write_iops_sec": "str", "device_read_bytes_sec": "str",
            "device_write_bytes_sec": "str"}"#,
        "qemuDomainGetBlkioParameters (QEMU_NB_BLKIO_PARAM 6): blkio cgroup; where the \
         host's I/O scheduler has no weights, OPERATION_INVALID (see host_has_blkio_weight)",
    ),
    (
        "dom.schedulerType",
        r#"["tuple", ["str", "int"]]"#,
        "qemuDomainGetSchedulerType: 'posix' and the parameter count (cpu cgroup)",
    ),
    (
        "dom.schedulerParameters",
        r#"{"cpu_shares": "int", "vcpu_period": "int", "vcpu_quota": "int",
            "emulator_period": "int", "emulator_quota": "int", "global_period": "int",
            "global_quota": "int", "iothread_period": "int", "iothread_quota": "int"}"#,
        "qemuDomainGetSchedulerParametersFlags with CFS bandwidth: 9 parameters",
    ),
    (
        "dom.interfaceAddresses(arp)",
        "{}",
        "libvirtd's ARP source fails here ('wrong nlmsg len' from its netlink neighbour \
         dump in this container); on a host it answers a dict by interface, empty for a \
         guest that sent no ARP",
    ),
    (
        "node.getSysinfo",
        "SYSINFO",
        "libvirt reads the host's SMBIOS with dmidecode, which `nobody` cannot run: \
         oxvirtd's element names must be among those of libvirt's sysinfo (virsysinfo.c)",
    ),
];

/// Element paths libvirt's `<sysinfo type='smbios'>` of a host can hold
/// (virSysinfoFormat: bios, system, baseBoard, chassis, processor, memory_device,
/// oemStrings, each made of `<entry name=…>`).
const SYSINFO_PATHS: &[&str] = &[
    "/sysinfo[@type]",
    "/sysinfo[@type]/bios",
    "/sysinfo[@type]/bios/entry[@name]",
    "/sysinfo[@type]/system",
    "/sysinfo[@type]/system/entry[@name]",
    "/sysinfo[@type]/baseBoard",
    "/sysinfo[@type]/baseBoard/entry[@name]",
    "/sysinfo[@type]/chassis",
    "/sysinfo[@type]/chassis/entry[@name]",
    "/sysinfo[@type]/processor",
    "/sysinfo[@type]/processor/entry[@name]",
    "/sysinfo[@type]/memory_device",
    "/sysinfo[@type]/memory_device/entry[@name]",
    "/sysinfo[@type]/oemStrings",
    "/sysinfo[@type]/oemStrings/entry",
];

/// Legitimate differences: (call, field, reason). The field is a dict key or
/// typed-parameter name (bulk-stats names normalised); "*stats" is every bulk-stats call.
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "dom.schedulerParameters",
        "emulator_period",
        "oxvirt places a domain in one cgroup, without libvirt's vcpuN/emulator/iothread \
         sub-cgroups: it has cpu_shares, vcpu_period and vcpu_quota (that cgroup's) and no \
         separate emulator, global or iothread bandwidth (translation refuses \
         <emulator_period> and the like)",
    ),
    (
        "dom.schedulerParameters",
        "emulator_quota",
        "same: one cgroup per domain",
    ),
    (
        "dom.schedulerParameters",
        "global_period",
        "same: one cgroup per domain",
    ),
    (
        "dom.schedulerParameters",
        "global_quota",
        "same: one cgroup per domain",
    ),
    (
        "dom.schedulerParameters",
        "iothread_period",
        "same: one cgroup per domain",
    ),
    (
        "dom.schedulerParameters",
        "iothread_quota",
        "same: one cgroup per domain",
    ),
    (
        "*stats",
        "cpu.cache.monitor.count",
        "resctrl cache monitoring (<cputune><cachetune><monitor>): oxvirt has no resctrl support",
    ),
    (
        "*stats",
        "cpu.haltpoll.success.time",
        "guest halt-polling time from KVM's per-vCPU debugfs: oxvirt-vmm does not poll in halt",
    ),
    (
        "*stats",
        "cpu.haltpoll.fail.time",
        "same: no halt polling in oxvirt-vmm",
    ),
    (
        "*stats",
        "dirtyrate.calc_mode",
        "QEMU's calc-dirty-rate (virDomainStartDirtyRateCalc) has no counterpart in oxvirt-vmm",
    ),
    (
        "*stats",
        "dirtyrate.calc_period",
        "same: no dirty-rate calculation",
    ),
    (
        "*stats",
        "dirtyrate.calc_start_time",
        "same: no dirty-rate calculation",
    ),
    (
        "*stats",
        "dirtyrate.calc_status",
        "same: no dirty-rate calculation",
    ),
    (
        "*stats",
        "balloon.last-update",
        "the time of the guest balloon driver's last stats update: oxvirt's balloon reports \
         no guest statistics (QEMU gives it even when the guest never reported)",
    ),
    (
        "dom.memoryStats",
        "last_update",
        "same field as balloon.last-update",
    ),
    (
        "*stats",
        "block.N.backingIndex",
        "the index of the disk's top image in libvirt's backing chain, written by libvirt's \
         blockdev layer; oxvirt keeps no backing-chain index for a raw file",
    ),
];

fn script() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/rpc/matrix_script.py"
    ))
}

fn run_script(uri: &str) -> Result<Value, String> {
    let mut c = Command::new("/usr/bin/python3");
    c.arg(script()).arg(uri).arg(NAME).arg("vda").arg(MAC);
    let r = run_with_timeout(c, STEP * 2);
    if !r.ok {
        return Err(format!("script failed:\n{}\n{}", r.stdout, r.stderr));
    }
    serde_json::from_str(r.stdout.trim()).map_err(|e| format!("bad JSON ({e}): {}", r.stdout))
}

/// The domain: the oxtest guest waiting for the power button, a raw virtio disk `vda`
/// and a virtio NIC on tap `tap` (`managed='no'`: a tap made beforehand).
fn domain(kernel: &Path, disk: &Path, tap: &str, managed: bool, serial: &str) -> String {
    let managed = if managed { "" } else { " managed='no'" };
    domain_xml(NAME, kernel, CMDLINE, 64, 2, "restart", serial).replace(
        "</devices>",
        &format!(
            "<disk type='file' device='disk'><driver name='qemu' type='raw'/>\
             <source file='{}'/><target dev='vda' bus='virtio'/></disk>\n\
             <interface type='ethernet'><mac address='{MAC}'/>\
             <target dev='{tap}'{managed}/><model type='virtio'/></interface>\n</devices>",
            disk.display()
        ),
    )
}

/// A tap owned by `nobody` (libvirtd runs as nobody and opens it, `managed='no'`),
/// deleted on drop.
struct Tap(String);

impl Tap {
    fn new(name: &str) -> Tap {
        let _ = Command::new("ip").args(["link", "del", name]).output();
        for args in [
            &["tuntap", "add", "dev", name, "mode", "tap", "user", "65534"][..],
            &["link", "set", name, "up"][..],
        ] {
            let out = Command::new("ip")
                .args(args)
                .output()
                .expect("ip (iproute2)");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Tap(name.to_string())
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

/// One difference between two shapes: the field it is in ("" at the top) and what.
struct Diff {
    field: String,
    what: String,
}

/// Shape differences of `ours` against `theirs`, recursively; `field` is the innermost
/// dict key on the way down.
fn diff(ours: &Value, theirs: &Value, field: &str, out: &mut Vec<Diff>) {
    match (ours, theirs) {
        (Value::Object(o), Value::Object(t)) => {
            for (k, v) in o {
                match t.get(k) {
                    Some(w) => diff(v, w, k, out),
                    None => out.push(Diff {
                        field: k.clone(),
                        what: format!("only oxvirtd has '{k}' ({v})"),
                    }),
                }
            }
            for (k, w) in t {
                if !o.contains_key(k) {
                    out.push(Diff {
                        field: k.clone(),
                        what: format!("only libvirtd has '{k}' ({w})"),
                    });
                }
            }
        }
        (Value::Array(o), Value::Array(t)) if o.len() == t.len() => {
            for (v, w) in o.iter().zip(t) {
                diff(v, w, field, out);
            }
        }
        _ if ours == theirs => {}
        _ => out.push(Diff {
            field: field.to_string(),
            what: format!("oxvirtd {ours} vs libvirtd {theirs}"),
        }),
    }
}

fn allowed(call: &str, field: &str) -> Option<&'static str> {
    let stats = call.starts_with("getAllDomainStats") || call.starts_with("domainListGetStats");
    ALLOWED
        .iter()
        .find(|(c, f, _)| (*c == call || (*c == "*stats" && stats)) && *f == field)
        .map(|(_, _, why)| *why)
}

/// The shape libvirt answers with on a system daemon ([`REFERENCE`]).
/// `{"err": CODE}` where libvirt refuses on a system daemon too.
fn reference(call: &str, ncpus: usize) -> Option<Value> {
    let (_, shape, _) = REFERENCE.iter().find(|(c, _, _)| *c == call)?;
    if call == "dom.blkioParameters" && !host_has_blkio_weight() {
        // virCgroupV1GetBlkioWeight: "blkio device weight is valid only for bfq or
        // cfq scheduler", VIR_ERR_OPERATION_INVALID.
        return Some(json!({"err": 55}));
    }
    if let Some(rest) = shape.strip_prefix(r#"["list", NCPUS × "#) {
        let one: Value = serde_json::from_str(rest.trim_end_matches(']')).unwrap();
        return Some(json!(["list", vec![one; ncpus]]));
    }
    if *shape == "SYSINFO" {
        return Some(Value::Null);
    }
    Some(serde_json::from_str(shape).unwrap_or_else(|e| panic!("{call}: {e}")))
}

/// Whether the host's blkio controller (cgroup v1) has a weight file: neither
/// `blkio.bfq.weight` nor `blkio.weight` exists where the disks' I/O scheduler has no
/// weights (mq-deadline, none), and libvirt then refuses `GetBlkioParameters`.
fn host_has_blkio_weight() -> bool {
    let v1 = Path::new("/sys/fs/cgroup/blkio");
    !v1.is_dir()
        || ["blkio.bfq.weight", "blkio.weight"]
            .iter()
            .any(|f| v1.join(f).exists())
}

/// What a cell of the matrix shows for one side's answer.
fn brief(v: &Value) -> String {
    match (v.get("ok"), v.get("err")) {
        (Some(_), _) => "ok".into(),
        (_, Some(code)) => format!("error {code}"),
        _ => format!("{v}"),
    }
}

/// Compares oxvirtd's answer `ov` with libvirt's reference `r` (a shape, `Null` for
/// the sysinfo check, or `{"err": CODE}`); the matrix verdict.
fn against_reference(call: &str, ov: &Value, r: &Value, failures: &mut Vec<String>) -> String {
    let mut fail = |what: String| {
        failures.push(format!("{call} (vs libvirt's reference): {what}"));
        "DIFFERENT".to_string()
    };
    match (ov.get("ok"), r.get("err")) {
        (None, Some(code)) if &ov["err"] == code => {
            format!("same as libvirt's reference (error {code})")
        }
        (None, _) => fail(format!("error {} ({})", ov["err"], ov["msg"])),
        (Some(_), Some(code)) => fail(format!("answers where libvirt refuses with {code}")),
        (Some(os), None) if r.is_null() => {
            // Sysinfo: every element ours writes is one libvirt writes.
            let paths: Vec<&str> = os
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let odd: Vec<&&str> = paths
                .iter()
                .filter(|p| !SYSINFO_PATHS.contains(p))
                .collect();
            if paths.first() != Some(&"/sysinfo[@type]") || !odd.is_empty() {
                fail(format!("elements libvirt has not: {odd:?}"))
            } else {
                "same as libvirt's reference".into()
            }
        }
        (Some(os), None) => {
            let mut ds = Vec::new();
            diff(os, r, "", &mut ds);
            let (allowed_ds, ds): (Vec<Diff>, Vec<Diff>) = ds
                .into_iter()
                .partition(|d| allowed(call, &d.field).is_some());
            if !ds.is_empty() {
                let what: Vec<String> = ds.into_iter().map(|d| d.what).collect();
                fail(what.join("; "))
            } else if allowed_ds.is_empty() {
                "same as libvirt's reference".into()
            } else {
                let fields: Vec<String> = allowed_ds.into_iter().map(|d| d.field).collect();
                format!(
                    "same as libvirt's reference but allowed: {}",
                    fields.join(", ")
                )
            }
        }
    }
}

#[test]
fn rpc_python_matrix_matches_libvirtd_qemu() {
    let test = "rpc_python_matrix_matches_libvirtd_qemu";
    if !require_tap(test) {
        return;
    }
    let pid = std::process::id() % 100_000;
    // Made before the daemons, so dropped after them (and their guests).
    let lv_tap = Tap::new(&format!("oxmxl{pid}"));
    let ox_tap = Tap(format!("oxmxo{pid}")); // oxvirt-vmm makes it; this deletes it.
    let Some(lv) = Libvirtd::start(test, Driver::Qemu) else {
        return;
    };

    // libvirtd: the same guest on QEMU/TCG (type='qemu', no host-passthrough: QEMU
    // aborts on KVM's MSRs here), its NIC on a tap that nobody owns.
    let lv_disk = raw_image(lv.dir.path(), "vda.img", 4);
    let st = Command::new("chown")
        .args(["65534:65534"])
        .arg(&lv_disk)
        .status()
        .unwrap();
    assert!(st.success());
    let lv_xml = domain(&lv.guest_kernel(), &lv_disk, &lv_tap.0, false, "")
        .replace("<domain type='kvm'>", "<domain type='qemu'>")
        .replace("<cpu mode='host-passthrough'/>", "")
        .replace(
            "</devices>",
            "<serial type='pty'/><console type='pty'/></devices>",
        );
    let lv_file = lv.dir.path().join("matrix.xml");
    std::fs::write(&lv_file, lv_xml).unwrap();
    for args in [&["define", lv_file.to_str().unwrap()][..], &["start", NAME]] {
        let r = virsh(&lv.uri(), args);
        assert!(r.ok, "libvirtd: virsh {args:?}: {}\n{}", r.stderr, lv.log());
    }
    let theirs = run_script(&lv.uri()).unwrap_or_else(|e| panic!("libvirtd: {e}\n{}", lv.log()));

    // oxvirtd: the same domain on KVM; oxvirt-vmm makes its tap.
    let d = Daemon::start();
    let disk = raw_image(d.dir.path(), "vda.img", 4);
    let xml = domain(
        &test_guests().elf,
        &disk,
        &ox_tap.0,
        true,
        &serial_xml(&format!(
            "file:{}",
            d.dir.path().join("console.log").display()
        )),
    );
    let f = d.xml_file(NAME, &xml);
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    d.virsh_ok(&["start", NAME]);
    d.wait_state(NAME, "running");
    let ours = run_script(&d.uri()).unwrap_or_else(|e| {
        let console = std::fs::read_to_string(d.dir.path().join("console.log")).unwrap_or_default();
        d.fail(&format!("oxvirtd: {e}\n--- console:\n{console}"))
    });

    let (o, t) = (ours.as_object().unwrap(), theirs.as_object().unwrap());
    let mut calls: Vec<&String> = o.keys().collect();
    calls.sort();
    assert_eq!(
        calls,
        {
            let mut k: Vec<&String> = t.keys().collect();
            k.sort();
            k
        },
        "both runs make the same calls"
    );
    let ncpus = t["node.getCPUMap"]["ok"][1][1]
        .as_array()
        .map(Vec::len)
        .expect("libvirtd's getCPUMap");

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut used_allowed = Vec::new();
    for call in calls {
        let (ov, tv) = (&o[call], &t[call]);
        let verdict = match (ov.get("ok"), tv.get("ok")) {
            (Some(os), Some(ts)) => {
                let mut ds = Vec::new();
                diff(os, ts, "", &mut ds);
                let mut verdict = "same".to_string();
                let mut allowed_fields = Vec::new();
                for dd in ds {
                    match allowed(call, &dd.field) {
                        Some(_) => {
                            used_allowed.push((call.clone(), dd.field.clone()));
                            allowed_fields.push(if dd.field.is_empty() {
                                "(whole answer)".to_string()
                            } else {
                                dd.field
                            });
                        }
                        None => {
                            failures.push(format!("{call}: {}", dd.what));
                            verdict = "DIFFERENT".into();
                        }
                    }
                }
                if verdict == "same" && !allowed_fields.is_empty() {
                    allowed_fields.dedup();
                    verdict = format!("same but allowed: {}", allowed_fields.join(", "));
                }
                verdict
            }
            (None, None) if ov["err"] == tv["err"] => {
                if ov["msg"] == tv["msg"] {
                    "same error".into()
                } else {
                    format!("same error code; texts {} | {}", ov["msg"], tv["msg"])
                }
            }
            (_, None) => match reference(call, ncpus) {
                Some(r) => against_reference(call, ov, &r, &mut failures),
                None => {
                    failures.push(format!(
                        "{call}: oxvirtd {}, libvirtd refuses with {} ({})",
                        if ov.get("ok").is_some() {
                            "answers".to_string()
                        } else {
                            format!("refuses with {} ({})", ov["err"], ov["msg"])
                        },
                        tv["err"],
                        tv["msg"]
                    ));
                    "DIFFERENT".into()
                }
            },
            (None, Some(_)) => {
                failures.push(format!(
                    "{call}: oxvirtd refuses with {} ({}), libvirtd answers",
                    ov["err"], ov["msg"]
                ));
                "DIFFERENT".into()
            }
        };
        rows.push(format!(
            "{call:<32} {:<10} {:<10} {verdict}",
            brief(ov),
            brief(tv)
        ));
    }
    eprintln!(
        "{:<32} {:<10} {:<10} verdict\n{}",
        "call",
        "oxvirtd",
        "libvirtd",
        rows.join("\n")
    );
    eprintln!("allowed differences met:");
    used_allowed.sort();
    used_allowed.dedup();
    for (call, field) in &used_allowed {
        eprintln!(
            "  {call} {field}: {}",
            allowed(call, field).unwrap_or_default()
        );
    }
    assert!(
        failures.is_empty(),
        "oxvirtd's answers differ from libvirtd's:\n  {}\n--- oxvirtd:\n{ours:#}\n--- libvirtd:\n{theirs:#}",
        failures.join("\n  ")
    );
    d.virsh_ok(&["destroy", NAME]);
}

/// The comparison itself (no daemons): a renamed field, a changed type, a missing
/// per-vCPU entry and an extra bulk-stats key are each reported; allow-listed keys are
/// not; libvirt's error reference is met only by the same code.
#[test]
fn matrix_comparison_reports_what_differs() {
    let diffs = |o: Value, t: Value| {
        let mut ds = Vec::new();
        diff(&o, &t, "", &mut ds);
        ds.into_iter().map(|d| d.field).collect::<Vec<_>>()
    };
    assert_eq!(
        diffs(json!({"rd_bytes": "int"}), json!({"rd_bytes": "int"})),
        Vec::<String>::new()
    );
    assert_eq!(
        diffs(json!({"rd_byte": "int"}), json!({"rd_bytes": "int"})),
        ["rd_byte", "rd_bytes"]
    );
    assert_eq!(
        diffs(
            json!({"numa_nodeset": "int"}),
            json!({"numa_nodeset": "str"})
        ),
        ["numa_nodeset"]
    );
    assert_eq!(
        diffs(json!(["list", ["int"]]), json!(["list", ["int", "int"]])),
        [""]
    );
    let stats = |extra: &str| json!(["list", [["tuple", ["virDomain", {"state.state": "int", extra: "int"}]]]]);
    let d = diffs(stats("balloon.actual"), stats("balloon.last-update"));
    assert_eq!(d, ["balloon.actual", "balloon.last-update"]);
    assert!(allowed("getAllDomainStats(balloon)", "balloon.actual").is_none());
    assert!(allowed("getAllDomainStats(balloon)", "balloon.last-update").is_some());
    assert!(allowed("dom.memoryStats", "balloon.last-update").is_none());

    let mut failures = Vec::new();
    let err = |code: i64| json!({"err": code, "msg": "m"});
    let v = against_reference(
        "dom.blkioParameters",
        &err(55),
        &json!({"err": 55}),
        &mut failures,
    );
    assert!(v.starts_with("same"), "{v}");
    let v = against_reference(
        "dom.blkioParameters",
        &err(1),
        &json!({"err": 55}),
        &mut failures,
    );
    assert_eq!(v, "DIFFERENT");
    let ok = json!({"ok": {"hard_limit": "int", "soft_limit": "int"}});
    let r = reference("dom.memoryParameters", 2).unwrap();
    assert_eq!(
        against_reference("dom.memoryParameters", &ok, &r, &mut failures),
        "DIFFERENT"
    );
    assert_eq!(failures.len(), 2, "{failures:?}");
    let percpu = reference("dom.getCPUStats(False)", 3).unwrap();
    assert_eq!(percpu[1].as_array().map(Vec::len), Some(3));
}

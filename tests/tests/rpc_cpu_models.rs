//! CPU models through real virsh against oxvirtd: `cpu-models x86_64`, the
//! `<cpu>` of `domcapabilities` (host-model as this host's KVM gives it, every
//! custom model with `usable`), `hypervisor-cpu-baseline` (with `--features` and
//! `--migratable`), `hypervisor-cpu-compare` (identical, superset, incompatible
//! with libvirt's reason under `--error`), and the older `cpu-baseline` /
//! `cpu-compare`; and libvirt-dbus's `GetCPUModelNames`, `BaselineCPU` and
//! `CompareCPU` through busctl; a running host-model domain's live XML (the custom
//! CPU it runs as) and a custom model the host cannot run refused at start. What this host can run comes from `oxvirt-vmm --probe-cpu`; the
//! expectations are computed from the same probe and model table, so they hold on
//! an emulated KVM (few features) and on hardware alike.

mod rpc_common;

use machine_spec::cpu_models::{self, HostCpu};
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::vm::bin_path;
use rpc_common::{guest_xml, Daemon};

/// `busctl call` on the daemon's private bus, `org.libvirt.Connect`; stdout.
fn busctl(d: &Daemon, method: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("busctl")
        .arg("--address")
        .arg(format!("unix:path={}", d.dir.path().join("bus").display()))
        .args([
            "call",
            "org.libvirt",
            "/org/libvirt/QEMU",
            "org.libvirt.Connect",
            method,
        ])
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

/// Writes `xml` to a file and checks it against libvirt's schema `kind`.
fn validate(d: &Daemon, name: &str, xml: &str, kind: &str) -> std::path::PathBuf {
    let f = d.xml_file(name, xml);
    let v = std::process::Command::new("virt-xml-validate")
        .arg(&f)
        .arg(kind)
        .output()
        .expect("virt-xml-validate (libvirt-clients)");
    assert!(
        v.status.success(),
        "{kind}: {}{}\n{xml}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    f
}

fn probe() -> HostCpu {
    let out = std::process::Command::new(bin_path("oxvirt-vmm"))
        .arg("--probe-cpu")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn virsh_cpu_models_baseline_compare() {
    if !require_kvm("virsh_cpu_models_baseline_compare") {
        return;
    }
    let d = Daemon::start();
    let host = probe();
    let fit = cpu_models::host_model(&host).expect("a model for this host");

    // cpu-models: libvirt's x86 names, in libvirt's order.
    let names = d.virsh_ok(&["cpu-models", "x86_64"]);
    let listed: Vec<&str> = names.lines().filter(|l| !l.is_empty()).collect();
    let table: Vec<&str> = cpu_models::models().iter().map(|m| m.name).collect();
    assert_eq!(listed, table);
    for m in [
        "qemu64",
        "Skylake-Client",
        "EPYC-Rome",
        "Cascadelake-Server",
    ] {
        assert!(listed.contains(&m), "{m} missing: {names}");
    }
    let bad = d.virsh(&["cpu-models", "vax"]);
    assert!(
        !bad.ok && bad.stderr.contains("cannot find architecture vax"),
        "{}",
        bad.stderr
    );

    // domcapabilities: host-model is the probe's closest model; usability per model.
    let caps = d.virsh_ok(&["domcapabilities"]);
    assert!(
        caps.contains(&format!(
            "<mode name='host-model' supported='yes'>\n      <model fallback='forbid'>{}</model>",
            fit.model.name
        )),
        "{caps}"
    );
    validate(&d, "domcaps", &caps, "domaincaps");
    let features = host.feature_set();
    for m in cpu_models::models() {
        let usable = if m.missing_on(&features).is_empty() {
            "yes"
        } else {
            "no"
        };
        let vendor = m.vendor.map(|v| v.name()).unwrap_or("unknown");
        let line = format!(
            "<model usable='{usable}' vendor='{vendor}'>{}</model>",
            m.name
        );
        assert!(caps.contains(&line), "{line} not in\n{caps}");
    }

    // capabilities: the host CPU by model, vendor, signature and extra features,
    // valid against libvirt's schema, and usable as cpu-baseline input.
    let caps_host = d.virsh_ok(&["capabilities"]);
    assert!(
        caps_host.contains(&format!("<model>{}</model>", fit.model.name))
            && caps_host.contains(&format!(
                "<signature family='{}' model='{}' stepping='{}'/>",
                host.family, host.model, host.stepping
            )),
        "{caps_host}"
    );
    let capsf = validate(&d, "caps", &caps_host, "capability");
    let b = d.virsh_ok(&["cpu-baseline", capsf.to_str().unwrap()]);
    assert!(b.contains(&format!(">{}</model>", fit.model.name)), "{b}");

    // hypervisor-cpu-baseline: Skylake-Client limited to what KVM here offers.
    let sky = d.xml_file(
        "sky",
        "<cpu mode='custom' match='exact'><model fallback='forbid'>Skylake-Client</model>\
         <vendor>Intel</vendor></cpu>",
    );
    let base = d.virsh_ok(&["hypervisor-cpu-baseline", sky.to_str().unwrap()]);
    let mut common = cpu_models::expand(Some("Skylake-Client"), &[]).unwrap();
    common = common.intersect(&features);
    let want = cpu_models::closest_model(&common, Some(cpu_models::Vendor::Intel), None).unwrap();
    assert!(
        base.contains(&format!(
            "<model fallback='forbid'>{}</model>",
            want.model.name
        )),
        "{base}"
    );
    assert!(base.contains("<cpu mode='custom' match='exact'>"), "{base}");
    let expanded = d.virsh_ok(&[
        "hypervisor-cpu-baseline",
        sky.to_str().unwrap(),
        "--features",
        "--migratable",
    ]);
    let n = |s: &str| s.matches("<feature ").count();
    assert!(
        n(&expanded) >= want.model.cpuid_features().count(),
        "--features lists the model's own features too:\n{expanded}"
    );
    // The older API baselines the CPUs alone: Skylake-Client stays Skylake-Client.
    let old = d.virsh_ok(&["cpu-baseline", sky.to_str().unwrap()]);
    assert!(old.contains(">Skylake-Client</model>"), "{old}");

    // hypervisor-cpu-compare: the host-model CPU is identical, a smaller one a
    // superset, a feature KVM never offers incompatible.
    let mut host_cpu = format!(
        "<cpu mode='custom' match='exact'><model>{}</model>",
        fit.model.name
    );
    for f in &fit.extra {
        host_cpu.push_str(&format!("<feature policy='require' name='{f}'/>"));
    }
    host_cpu.push_str("</cpu>");
    let same = d.xml_file("same", &host_cpu);
    let out = d.virsh_ok(&["hypervisor-cpu-compare", same.to_str().unwrap()]);
    assert!(
        out.contains("is identical to the CPU provided by hypervisor on the host"),
        "{out}"
    );
    let small = d.xml_file("small", "<cpu><model>486</model></cpu>");
    let out = d.virsh_ok(&["hypervisor-cpu-compare", small.to_str().unwrap()]);
    assert!(out.contains("superset of CPU described in"), "{out}");
    let ia64 = d.xml_file(
        "ia64.xml",
        "<cpu mode='custom' match='exact'><model>486</model>\
         <feature policy='require' name='ia64'/></cpu>",
    );
    let r = d.virsh(&["hypervisor-cpu-compare", ia64.to_str().unwrap()]);
    assert!(
        r.stdout
            .contains("is incompatible with the CPU provided by hypervisor on the host"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    let r = d.virsh(&["hypervisor-cpu-compare", ia64.to_str().unwrap(), "--error"]);
    assert!(
        !r.ok
            && r.stderr.contains(
                "the CPU is incompatible with host CPU: Host CPU does not provide required features: ia64"
            ),
        "{} {}",
        r.stdout,
        r.stderr
    );
    let r = d.virsh(&["cpu-compare", ia64.to_str().unwrap()]);
    assert!(
        r.stdout.contains("incompatible"),
        "{} {}",
        r.stdout,
        r.stderr
    );

    // D-Bus, libvirt-dbus 1.4.1's three CPU methods.
    let models = busctl(&d, "GetCPUModelNames", &["su", "x86_64", "0"]);
    assert!(
        models.starts_with(&format!("as {} \"486\"", table.len()))
            && models.contains("\"EPYC-Milan\""),
        "{models}"
    );
    let sky_xml = std::fs::read_to_string(&sky).unwrap();
    let b = busctl(&d, "BaselineCPU", &["asu", "1", &sky_xml, "0"]);
    assert!(b.contains("Skylake-Client"), "{b}");
    let c = busctl(&d, "CompareCPU", &["su", &host_cpu, "0"]);
    assert_eq!(c.trim(), "i 1", "identical");

    let unknown = d.xml_file("unknown", "<cpu><model>Pentium9</model></cpu>");
    let r = d.virsh(&["hypervisor-cpu-compare", unknown.to_str().unwrap()]);
    assert!(
        !r.ok && r.stderr.contains("Unknown CPU model Pentium9"),
        "{}",
        r.stderr
    );

    // A host-model domain runs as the custom CPU above; its live XML says so,
    // the inactive XML keeps host-model.
    let xml = guest_xml("cpuhm").replace(
        "<cpu mode='host-passthrough'/>",
        "<cpu mode='host-model' check='partial'/>",
    );
    let f = d.xml_file("cpuhm", &xml);
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    d.virsh_ok(&["start", "cpuhm"]);
    let live = d.virsh_ok(&["dumpxml", "cpuhm"]);
    assert!(
        live.contains(&format!(
            "<cpu mode='custom' match='exact' check='full'>\n    <model fallback='forbid'>{}</model>\n    <vendor>",
            fit.model.name
        )),
        "{live}"
    );
    for f in &fit.extra {
        assert!(
            live.contains(&format!("<feature policy='require' name='{f}'/>")),
            "{f}: {live}"
        );
    }
    validate(&d, "live", &live, "domain");
    let inactive = d.virsh_ok(&["dumpxml", "cpuhm", "--inactive"]);
    assert!(
        inactive.contains("<cpu mode='host-model' check='partial'/>"),
        "{inactive}"
    );
    d.virsh_ok(&["destroy", "cpuhm"]);

    // A custom model needing a feature KVM never offers does not start.
    let xml = guest_xml("cpuia64").replace(
        "<cpu mode='host-passthrough'/>",
        "<cpu mode='custom' match='exact'><model>486</model>\
         <feature policy='require' name='ia64'/></cpu>",
    );
    let f = d.xml_file("cpuia64", &xml);
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    let r = d.virsh(&["start", "cpuia64"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("Host CPU does not provide required features: ia64"),
        "{} {}",
        r.stdout,
        r.stderr
    );
}

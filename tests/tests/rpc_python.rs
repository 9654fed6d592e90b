//! python3-libvirt drives oxvirtd; the same script run against a real libvirtd's
//! `test:///default` driver produces the same results, which shows the script checks
//! libvirt's behaviour rather than ours. A second script reads the capabilities
//! documents from oxvirtd and from libvirtd's QEMU driver and compares them.

mod rpc_common;

use std::path::Path;
use std::process::Command;

use oxvirt_tests::host::require_kvm;
use rpc_common::libvirtd::{Driver, Libvirtd};
use rpc_common::{guest_xml, run_with_timeout, Daemon, STEP};
use serde_json::Value;

fn script() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/rpc/libvirt_script.py"
    ))
}

fn run_script(uri: &str, xml: &Path) -> Result<Value, String> {
    let mut c = Command::new("/usr/bin/python3");
    c.arg(script()).arg(uri).arg(xml);
    let r = run_with_timeout(c, STEP * 3);
    if !r.ok {
        return Err(format!("script failed:\n{}\n{}", r.stdout, r.stderr));
    }
    serde_json::from_str(r.stdout.trim()).map_err(|e| format!("bad JSON ({e}): {}", r.stdout))
}

/// Keys whose values legitimately differ between the two hypervisors.
const DIFFERENT: &[(&str, &str)] = &[
    ("uri", "each daemon reports its own URI"),
    ("os_type", "the test driver reports 'linux' for any domain"),
    (
        "start_twice",
        "qemu and oxvirt say OPERATION_INVALID (55), the test driver INTERNAL_ERROR (1)",
    ),
    (
        "suspend_inactive",
        "same: OPERATION_INVALID vs INTERNAL_ERROR",
    ),
    ("lookup_missing", "compared by error code only, below"),
    (
        "state_suspended",
        "compared by state only: the test driver gives no pause reason",
    ),
    (
        "state_after_shutdown",
        "compared by state only: the test driver's shutdown reason differs",
    ),
    (
        "event_kinds",
        "the test driver emits no SHUTDOWN event before STOPPED",
    ),
];

#[test]
fn rpc_python_libvirt_matches_libvirtd_test_driver() {
    if !require_kvm("rpc_python_libvirt_matches_libvirtd_test_driver") {
        return;
    }
    let d = Daemon::start();
    let name = "rpc-python";
    let ours_xml = d.xml_file(name, &guest_xml(name));
    let ours = run_script(&d.uri(), &ours_xml).unwrap_or_else(|e| d.fail(&e));

    // Our own answers, in full.
    assert_eq!(ours["defined_name"], name);
    assert_eq!(ours["state_defined"], serde_json::json!([5, 0]));
    assert_eq!(ours["state_started"], serde_json::json!([1, 1]));
    assert_eq!(ours["state_suspended"], serde_json::json!([3, 1]));
    assert_eq!(ours["state_resumed"], serde_json::json!([1, 5]));
    assert_eq!(ours["state_after_shutdown"], serde_json::json!([5, 1]));
    assert_eq!(ours["state_destroyed"], serde_json::json!([5, 2]));
    assert_eq!(ours["os_type"], "hvm");
    assert_eq!(ours["start_twice"], 55);
    assert_eq!(ours["suspend_inactive"], 55);
    for k in [
        "started_event",
        "suspended_event",
        "resumed_event",
        "stopped_event",
        "undefined_event",
    ] {
        assert_eq!(ours[k], true, "{k}: {ours}");
    }
    assert!(
        ours["event_kinds"]
            .as_array()
            .unwrap()
            .contains(&Value::from("SHUTDOWN")),
        "{ours}"
    );

    // The same script against libvirtd's test driver.
    let Some(lv) = Libvirtd::start(
        "rpc_python_libvirt_matches_libvirtd_test_driver (libvirtd part)",
        Driver::Test,
    ) else {
        return;
    };
    let test_xml = d.xml_file(
        "test-driver",
        "<domain type='test'><name>rpc-python</name><memory unit='MiB'>64</memory>\
         <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>",
    );
    let theirs = run_script(&lv.uri(), &test_xml).unwrap_or_else(|e| panic!("{e}\n{}", lv.log()));
    let (o, t) = (ours.as_object().unwrap(), theirs.as_object().unwrap());
    let mut keys: Vec<&String> = o.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        {
            let mut k: Vec<&String> = t.keys().collect();
            k.sort();
            k
        },
        "both runs report the same things"
    );
    for k in keys {
        if DIFFERENT.iter().any(|(d, _)| d == k) {
            continue;
        }
        assert_eq!(
            o[k], t[k],
            "'{k}' differs: oxvirtd {} vs libvirtd {}",
            o[k], t[k]
        );
    }
    assert_eq!(o["lookup_missing"][0], t["lookup_missing"][0]);
    assert_eq!(o["state_suspended"][0], t["state_suspended"][0]);
    assert_eq!(o["state_after_shutdown"][0], t["state_after_shutdown"][0]);
    let kinds = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .filter(|s| s != "SHUTDOWN")
            .collect()
    };
    assert_eq!(kinds(&o["event_kinds"]), kinds(&t["event_kinds"]));
}

fn run_domcaps_script(uri: &str) -> Result<Value, String> {
    let script = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/rpc/domcaps_script.py"
    ));
    let mut c = Command::new("/usr/bin/python3");
    c.arg(script).arg(uri);
    let r = run_with_timeout(c, STEP);
    if !r.ok {
        return Err(format!("script failed:\n{}\n{}", r.stdout, r.stderr));
    }
    serde_json::from_str(r.stdout.trim()).map_err(|e| format!("bad JSON ({e}): {}", r.stdout))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// python3-libvirt's getCapabilities / getDomainCapabilities against oxvirtd: the
/// firmware and machine types oxvirt runs, in the shape libvirtd's QEMU driver gives
/// (the same script against a private libvirtd), never claiming more than it.
#[test]
fn rpc_python_domain_capabilities_match_libvirtd_qemu_driver() {
    let d = Daemon::start();
    let ours = run_domcaps_script(&d.uri()).unwrap_or_else(|e| d.fail(&e));
    let ovmf = Path::new("/usr/share/qemu/firmware/60-edk2-x86_64.json").exists()
        && Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd").exists();

    assert_eq!(ours["default"]["machine"], "pc-i440fx-7.2");
    assert_eq!(ours["pc"]["machine"], "pc-i440fx-7.2");
    assert_eq!(ours["q35"]["machine"], "pc-q35-7.2");
    assert_eq!(strings(&ours["pc"]["firmware"]), ["bios"]);
    assert_eq!(strings(&ours["pc"]["loader_type"]), ["rom"]);
    if ovmf {
        assert_eq!(strings(&ours["q35"]["firmware"]), ["bios", "efi"]);
        assert_eq!(
            strings(&ours["q35"]["loaders"]),
            ["/usr/share/OVMF/OVMF_CODE_4M.fd"]
        );
        assert_eq!(strings(&ours["q35"]["loader_type"]), ["rom", "pflash"]);
    }
    assert_eq!(strings(&ours["q35"]["loader_secure"]), ["no"]);
    assert_eq!(ours["unknown_machine"][0], 8, "VIR_ERR_INVALID_ARG: {ours}");
    let machines: Vec<(Value, Value)> = ours["caps_machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m[0].clone(), m[1].clone()))
        .collect();
    assert_eq!(
        machines,
        [
            ("pc-i440fx-7.2".into(), Value::Null),
            ("pc".into(), "pc-i440fx-7.2".into()),
            ("pc-q35-7.2".into(), Value::Null),
            ("q35".into(), "pc-q35-7.2".into()),
        ]
    );

    let Some(lv) = Libvirtd::start(
        "rpc_python_domain_capabilities_match_libvirtd_qemu_driver (libvirtd part)",
        Driver::Qemu,
    ) else {
        return;
    };
    let theirs = run_domcaps_script(&lv.uri()).unwrap_or_else(|e| panic!("{e}\n{}", lv.log()));
    // Machine names as libvirt writes them, in capabilities and domain capabilities.
    let their_machines: Vec<(Value, Value)> = theirs["caps_machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m[0].clone(), m[1].clone()))
        .collect();
    for m in &machines {
        assert!(
            their_machines.contains(m),
            "{m:?} not in {their_machines:?}"
        );
    }
    assert_eq!(ours["unknown_machine"][0], theirs["unknown_machine"][0]);
    for m in ["default", "q35", "pc"] {
        let (o, t) = (&ours[m], &theirs[m]);
        assert_eq!(o["machine"], t["machine"], "{m}");
        assert_eq!(o["os_shape"], t["os_shape"], "{m}: <os> shape");
        // Never more than libvirt offers, but SeaBIOS: libvirt lists `bios` only
        // from a descriptor (Debian ships none), oxvirt boots it without one.
        let sub = |key: &str, extra: &[&str]| {
            let theirs = strings(&t[key]);
            for v in strings(&o[key]) {
                assert!(
                    theirs.contains(&v) || extra.contains(&v.as_str()),
                    "{m}: {key} '{v}' is not among libvirt's {theirs:?}"
                );
            }
        };
        sub("firmware", &["bios"]);
        sub("loaders", &[]);
        sub("loader_type", &[]);
        sub("loader_readonly", &[]);
        sub("loader_secure", &[]);
    }
}

//! libvirt-dbus's own upstream test suite (v1.4.1, pytest + dbus-python) against
//! oxvirtd, through `scripts/libvirt-dbus-suite.sh` (fixture: the test driver's
//! domain `test` running, network `default` and pool `default-pool` active, each
//! test's oxvirtd in its own network namespace). Every test passes except those in
//! `libvirt_dbus_suite/known_failures.txt`, each listed with its reason; a listed test
//! that passes is reported so the list can shrink.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use oxvirt_tests::host::{require_kvm, skip};
use oxvirt_tests::test_guests;

const TEST: &str = "libvirt_dbus_upstream_suite_passes_but_the_listed_tests";
/// The suite's own run is about a minute here; the source download on first use more.
const LIMIT: Duration = Duration::from_secs(900);
/// pytest counts 84 tests in v1.4.1; fewer seen means the run broke off.
const AT_LEAST: usize = 80;
/// The script's exit status when the source cannot be fetched.
const NO_SOURCE: i32 = 77;

/// TEST-ID → reason, from known_failures.txt.
fn known_failures() -> BTreeMap<String, String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/libvirt_dbus_suite/known_failures.txt");
    let text = std::fs::read_to_string(&path).expect("known_failures.txt");
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.splitn(3, " | ").collect();
        assert!(
            fields.len() == 3 && ["kvm", "missing"].contains(&fields[1]),
            "{}:{}: expected 'TEST-ID | kvm|missing | reason', got {line:?}",
            path.display(),
            n + 1
        );
        out.insert(
            fields[0].to_string(),
            format!("{}: {}", fields[1], fields[2]),
        );
    }
    out
}

/// (passed, not passed) test ids from pytest's `-rA` short summary.
fn outcomes(stdout: &str) -> (Vec<String>, Vec<String>) {
    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    for line in stdout.lines() {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let id = rest.split(" - ").next().unwrap_or("").trim().to_string();
        match word {
            "PASSED" => passed.push(id),
            "FAILED" | "ERROR" => failed.push(id),
            _ => {}
        }
    }
    (passed, failed)
}

fn missing_tools() -> Option<String> {
    let py = Command::new("/usr/bin/python3")
        .args(["-c", "import pytest, dbus, gi"])
        .output();
    if !py.is_ok_and(|o| o.status.success()) {
        return Some(
            "python3 cannot import pytest, dbus and gi (python3-pytest, python3-dbus, python3-gi)"
                .into(),
        );
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Some(
            "not root: the fixture's network needs a bridge in a private network namespace".into(),
        );
    }
    None
}

#[test]
fn libvirt_dbus_upstream_suite_passes_but_the_listed_tests() {
    if let Some(why) = missing_tools() {
        skip(TEST, &why);
        return;
    }
    if !require_kvm(TEST) {
        return;
    }
    let known = known_failures();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/libvirt-dbus-suite.sh");
    let mut cmd = Command::new("timeout");
    cmd.arg(LIMIT.as_secs().to_string())
        .arg(&script)
        .args(["-rA", "--tb=line"])
        .env("OXVIRT_SUITE_KERNEL", &test_guests().elf)
        .stdin(Stdio::null());
    let out = cmd.output().expect("running scripts/libvirt-dbus-suite.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(NO_SOURCE) {
        skip(TEST, &format!("no libvirt-dbus source: {}", stderr.trim()));
        return;
    }
    let (passed, failed) = outcomes(&stdout);
    assert!(
        passed.len() + failed.len() >= AT_LEAST,
        "the suite broke off ({} passed, {} not; status {:?}):\n{stdout}\n{stderr}",
        passed.len(),
        failed.len(),
        out.status
    );
    let unexpected: Vec<&String> = failed.iter().filter(|t| !known.contains_key(*t)).collect();
    let fixed: Vec<&String> = passed.iter().filter(|t| known.contains_key(*t)).collect();
    for t in &fixed {
        eprintln!("*** {t} now passes: take it off tests/libvirt_dbus_suite/known_failures.txt");
    }
    eprintln!(
        "libvirt-dbus suite: {} passed, {} failed as listed, {} failed unexpectedly",
        passed.len(),
        failed.len() - unexpected.len(),
        unexpected.len()
    );
    assert!(
        unexpected.is_empty(),
        "libvirt-dbus tests failed that are not in known_failures.txt: {unexpected:#?}\n\
         --- pytest:\n{stdout}\n{stderr}"
    );
}

//! QMP on a running test guest, driven by real clients: Python's `qemu.qmp` library,
//! its `qmp-shell`, and `socat` for raw bytes.

mod qmp_common;

use std::time::Duration;

use machine_spec::exit;
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::{spec, test_guests, GUEST_TIMEOUT};
use qmp_common::{python, socat, vcpu_tids, PyQmp, QmpVm, QMP_TIMEOUT};
use serde_json::{json, Value};

#[test]
fn qemu_qmp_session_pauses_resumes_and_powers_down_a_guest() {
    if !require_kvm("qemu_qmp_session_pauses_resumes_and_powers_down_a_guest") {
        return;
    }
    // Ticks twice a second, then waits for the ACPI power button and powers off.
    let s = spec(
        &test_guests().elf,
        "console=ttyS0 oxtest=acpi,count,acpibutton ticks=12",
        64,
        2,
    );
    let q = QmpVm::start(&s);
    let vm = &q.vm;
    let mut c = PyQmp::connect(&q.sock);
    assert_eq!(c.greeting["QMP"]["capabilities"], json!([]));
    assert_eq!(c.greeting["QMP"]["version"]["qemu"]["major"], 7);

    vm.wait_for("OXTEST tick 2", GUEST_TIMEOUT);
    let st = c.ok("query-status", Value::Null);
    assert_eq!(
        st,
        json!({"running": true, "singlestep": false, "status": "running"})
    );

    // stop: STOP, and the guest's counter stops.
    assert_eq!(c.ok("stop", Value::Null), json!({}));
    c.event("STOP", QMP_TIMEOUT);
    let ticks = vm.console_lines().matches("OXTEST tick").count();
    std::thread::sleep(Duration::from_secs(2));
    let after = vm.console_lines().matches("OXTEST tick").count();
    if after != ticks {
        vm.fail(&format!(
            "the guest went on counting while stopped ({ticks} -> {after})"
        ));
    }
    assert_eq!(
        c.ok("query-status", Value::Null),
        json!({"running": false, "singlestep": false, "status": "paused"})
    );
    assert_eq!(
        c.ok(
            "human-monitor-command",
            json!({"command-line": "info status"})
        ),
        json!("VM status: paused\r\n")
    );

    // cont: RESUME, and it goes on from where it was.
    assert_eq!(c.ok("cont", Value::Null), json!({}));
    c.event("RESUME", QMP_TIMEOUT);
    vm.wait_count("OXTEST tick", ticks + 1, GUEST_TIMEOUT);
    assert_eq!(c.ok("query-status", Value::Null)["status"], "running");

    // query-cpus-fast: the thread ids are the process's vcpuN threads.
    let cpus = c.ok("query-cpus-fast", Value::Null);
    let reported: Vec<(u32, i64)> = cpus
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["target"], "x86_64");
            (
                c["cpu-index"].as_u64().unwrap() as u32,
                c["thread-id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(reported.len(), 2);
    assert_eq!(reported, vcpu_tids(vm.pid()), "query-cpus-fast: {cpus}");
    let hmp_cpus = c.ok(
        "human-monitor-command",
        json!({"command-line": "info cpus"}),
    );
    assert_eq!(
        hmp_cpus,
        json!(format!(
            "* CPU #0: thread_id={}\r\n  CPU #1: thread_id={}\r\n",
            reported[0].1, reported[1].1
        ))
    );

    // Identity and the rest of the inspection commands, as the guest runs.
    assert_eq!(c.ok("query-name", Value::Null), json!({"name": "oxtest"}));
    assert_eq!(c.ok("query-uuid", Value::Null), json!({"UUID": s.uuid}));
    assert_eq!(
        c.ok("query-kvm", Value::Null),
        json!({"enabled": true, "present": true})
    );
    assert_eq!(
        c.ok("query-memory-size-summary", Value::Null),
        json!({"base-memory": 64 << 20, "plugged-memory": 0})
    );
    let serial = c.ok("query-chardev", Value::Null);
    assert!(
        !serial.as_array().unwrap().is_empty(),
        "query-chardev: {serial}"
    );
    let err = c.execute("query-balloon", Value::Null);
    assert_eq!(
        err["error"],
        json!({"class": "DeviceNotActive", "desc": "No balloon device has been activated"})
    );
    let err = c.execute("device_del", json!({"id": "x"}));
    assert_eq!(
        err["error"],
        json!({"class": "DeviceNotFound", "desc": "Device 'x' not found"})
    );
    // Saving goes into a descriptor only (libvirt's `fd:`); no live migration.
    let err = c.execute("migrate", json!({"uri": "exec:true"}));
    assert_eq!(err["error"]["class"], "GenericError", "{err}");
    assert!(
        err["error"]["desc"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Invalid migration URI 'exec:true'"),
        "{err}"
    );

    // system_powerdown: POWERDOWN; the guest takes the ACPI power button and powers
    // off: SHUTDOWN guest-shutdown, and the process exits.
    vm.wait_for("OXTEST acpibutton armed", GUEST_TIMEOUT);
    assert_eq!(c.ok("system_powerdown", Value::Null), json!({}));
    c.event("POWERDOWN", QMP_TIMEOUT);
    let ev = c.event("SHUTDOWN", GUEST_TIMEOUT);
    assert_eq!(
        ev["data"],
        json!({"guest": true, "reason": "guest-shutdown"})
    );
    assert!(ev["timestamp"]["seconds"].as_i64().unwrap() > 1_600_000_000);
    vm.expect_exit(exit::POWEROFF, GUEST_TIMEOUT);
    vm.expect_ok("acpibutton", GUEST_TIMEOUT);
    assert!(!q.sock.exists(), "the QMP socket is left behind");
}

#[test]
fn qmp_shell_runs_commands_and_quit_ends_the_process() {
    if !require_kvm("qmp_shell_runs_commands_and_quit_ends_the_process") {
        return;
    }
    let s = spec(&test_guests().elf, "console=ttyS0 oxtest=count", 64, 1);
    let q = QmpVm::start(&s);
    q.vm.wait_for("OXTEST tick 1", GUEST_TIMEOUT);

    // qmp-shell, non-interactively: commands on stdin, results on stdout.
    let run_shell = |args: &[&str], input: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(python())
            .args(["-m", "qemu.qmp.qmp_shell"])
            .args(args)
            .arg(&q.sock)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running qmp-shell");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "qmp-shell failed: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run_shell(&[], "query-name\nquery-status\n");
    assert!(out.contains("Connected to QEMU 7.2.0"), "{out}");
    assert!(out.contains(r#"{"return": {"name": "oxtest"}}"#), "{out}");
    assert!(
        out.contains(r#"{"return": {"running": true, "singlestep": false, "status": "running"}}"#),
        "{out}"
    );
    // HMP mode goes through human-monitor-command.
    let out = run_shell(&["-H"], "info status\ninfo name\nnosuch\n");
    assert!(out.contains("VM status: running"), "{out}");
    assert!(out.contains("oxtest"), "{out}");
    assert!(out.contains("unknown command: 'nosuch'"), "{out}");

    // quit: the reply comes (after SHUTDOWN), then the process ends with HOST_STOP.
    let mut c = PyQmp::connect(&q.sock);
    assert_eq!(c.ok("quit", Value::Null), json!({}));
    let ev = c.event("SHUTDOWN", QMP_TIMEOUT);
    assert_eq!(
        ev["data"],
        json!({"guest": false, "reason": "host-qmp-quit"})
    );
    q.vm.expect_exit(exit::HOST_STOP, GUEST_TIMEOUT);
}

#[test]
fn socat_raw_bytes_malformed_input_and_reset() {
    if !require_kvm("socat_raw_bytes_malformed_input_and_reset") {
        return;
    }
    let s = spec(&test_guests().elf, "console=ttyS0 oxtest=count", 64, 1);
    let q = QmpVm::start(&s);
    q.vm.wait_for("OXTEST tick 1", GUEST_TIMEOUT);

    let out = socat(
        &q.sock,
        b"{\"execute\":\"query-status\",\"id\":\"early\"}\n\
          {\"execute\":\"qmp_capabilities\"}\n\
          }\n{\"execute\": bogus}\n[1]\n\xff\n{\"id\":1}\n\
          {\"execute\":\"query-kvm\",\"arguments\":{\"x\":1},\"id\":2}\n\
          {\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":5},\"id\":3}\n\
          {'execute':'query-kvm','id':4}{\"execute\":\"query-target\",\"id\":{\"n\":[5]}}\n",
    );
    let lines: Vec<&str> = out.split_inclusive("\r\n").skip(1).collect();
    let expected = [
        "{\"id\": \"early\", \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n",
        "{\"return\": {}}\r\n",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, expecting value\"}}\r\n",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, invalid keyword 'bogus'\"}}\r\n",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}\r\n",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\uFFFD'\"}}\r\n",
        "{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input lacks member 'execute'\"}}\r\n",
        "{\"id\": 2, \"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'x' is unexpected\"}}\r\n",
        "{\"id\": 3, \"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid parameter type for 'command-line', expected: string\"}}\r\n",
        "{\"return\": {\"enabled\": true, \"present\": true}, \"id\": 4}\r\n",
        "{\"return\": {\"arch\": \"x86_64\"}, \"id\": {\"n\": [5]}}\r\n",
    ];
    assert_eq!(lines, expected, "whole output:\n{out}");
    assert!(out.starts_with(
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}"
    ));

    // system_reset from raw bytes: RESET (host-qmp-system-reset) before the reply, and
    // the guest starts over.
    let out = socat(
        &q.sock,
        b"{\"execute\":\"qmp_capabilities\"}{\"execute\":\"system_reset\",\"id\":9}",
    );
    let lines: Vec<&str> = out.split_inclusive("\r\n").collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[2].ends_with("\"event\": \"RESET\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-system-reset\"}}\r\n"),
        "{out}"
    );
    assert_eq!(lines[3], "{\"return\": {}, \"id\": 9}\r\n");
    q.vm.wait_count("OXTEST READY", 2, GUEST_TIMEOUT);
    // The machine still answers and runs.
    q.vm.wait_count("OXTEST tick 1", 2, GUEST_TIMEOUT);
}

//! Cockpit Machines (Debian 12's cockpit-machines, through cockpit-ws and
//! cockpit-bridge) in a real headless Chromium driven by Selenium, against
//! `oxvirtd --session` of an unprivileged user: Cockpit shows the session
//! connection only to users other than root, and reaches libvirt there through
//! `org.libvirt` on the user's session bus, which is oxvirtd's. cockpit-ws runs as
//! that user with `--local-session=cockpit-bridge` (no login), bound to loopback.
//! The browser side is `cockpit/machines.py`: the VM list, Run, a running VM's page
//! with usage figures above zero and no error toast, a snapshot made from the
//! Create snapshot dialog and listed, a refused one's error in the dialog, Shut
//! down, the Create VM dialog; this side checks each state change with virsh as well. On failure the
//! screenshot and page HTML are kept in `target/cockpit-machines/`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oxvirt_tests::host::{require_kvm, skip};
use oxvirt_tests::session::SessionDaemon;
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::{domain_xml, test_guests};

const TEST: &str = "cockpit_machines_lists_runs_shows_usage_and_stops_a_vm";
const URI: &str = "qemu:///session";
const VM: &str = "cockpit-vm";
const WS: &str = "/usr/lib/cockpit/cockpit-ws";
/// The whole browser session; each wait inside it is bounded too (machines.py).
const BROWSER_LIMIT: Duration = Duration::from_secs(300);

/// Why this host cannot run the browser check, if it cannot.
fn missing_parts() -> Option<String> {
    let files = [
        (WS, "cockpit-ws"),
        ("/usr/bin/cockpit-bridge", "cockpit-bridge"),
        (
            "/usr/share/cockpit/machines/manifest.json",
            "cockpit-machines",
        ),
        ("/usr/share/cockpit/shell/manifest.json", "cockpit-system"),
        ("/usr/bin/chromium", "chromium"),
        ("/usr/bin/chromedriver", "chromium-driver"),
    ];
    for (path, package) in files {
        if !Path::new(path).exists() {
            return Some(format!("{path} missing (Debian package {package})"));
        }
    }
    let selenium = Command::new("/usr/bin/python3")
        .args(["-c", "import selenium"])
        .output();
    if !selenium.is_ok_and(|o| o.status.success()) {
        return Some("python3 cannot import selenium (Debian package python3-selenium)".into());
    }
    None
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}

/// Kills the child (cockpit-ws, the browser driver) when the test ends either way.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_http(port: u16, ws_log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "cockpit-ws did not listen on 127.0.0.1:{port}:\n{}",
            std::fs::read_to_string(ws_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `virsh domstate` until it says `want` (30 s); Err says what it said last.
fn domstate_becomes(s: &SessionDaemon, want: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = s.virsh_ok(URI, &["domstate", VM]);
        if state.trim() == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "virsh domstate says {:?}, not {want:?}",
                state.trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn shots_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("cockpit-machines")
}

#[test]
fn cockpit_machines_lists_runs_shows_usage_and_stops_a_vm() {
    if let Some(why) = missing_parts() {
        skip(TEST, &why);
        return;
    }
    if !require_kvm(TEST) {
        return;
    }
    let s = SessionDaemon::start(&["--qemu-uri"]).unwrap_or_else(|e| panic!("{e}"));
    let kernel = s.give(&test_guests().elf);
    let console = s.files().join("console.log");
    // The guest waits for the ACPI power button (Shut down) with a 100 Hz timer
    // running, so its CPU time grows and Cockpit's CPU figure is above zero.
    let xml = domain_xml(
        VM,
        &kernel,
        "console=ttyS0 oxtest=acpi,acpibutton busy",
        64,
        1,
        "restart",
        &serial_xml(&format!("file:{}", console.display())),
    );
    let xml_path = s.files().join("vm.xml");
    std::fs::write(&xml_path, xml).unwrap();
    s.virsh_ok(URI, &["define", xml_path.to_str().unwrap()]);

    let port = free_port();
    let ws_log = s.dir.path().join("cockpit-ws.log");
    let ws = s
        .command(WS)
        .args([
            "--no-tls",
            "--local-session=cockpit-bridge",
            "-a",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&ws_log).unwrap())
        .stderr(std::fs::File::create(ws_log.with_extension("err")).unwrap())
        .spawn()
        .expect("cockpit-ws as the session user");
    let _ws = Reaped(ws);
    wait_for_http(port, &ws_log);

    let shots = shots_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cockpit/machines.py");
    let url = format!("http://127.0.0.1:{port}/cockpit/@localhost/machines/index.html");
    let driver_err = s.dir.path().join("machines-py.err");
    let mut driver = Command::new("/usr/bin/python3")
        .arg(&script)
        .args([&url, VM, shots.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&driver_err).unwrap())
        .spawn()
        .expect("python3 tests/cockpit/machines.py");
    let mut to_driver = driver.stdin.take().unwrap();
    let from_driver = BufReader::new(driver.stdout.take().unwrap());
    let driver = Reaped(driver);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in from_driver.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Relay: print the driver's steps, answer its virsh checks, stop at its end.
    let deadline = Instant::now() + BROWSER_LIMIT;
    let mut transcript = String::new();
    let mut all_ok = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = rx.recv_timeout(left) else {
            break; // ended, or the limit passed
        };
        eprintln!("{line}");
        transcript.push_str(&line);
        transcript.push('\n');
        if let Some(want) = line.strip_prefix("WAIT-VIRSH ") {
            let answer = domstate_becomes(&s, want)
                .err()
                .unwrap_or_else(|| "ok".into());
            writeln!(to_driver, "{answer}").unwrap();
        }
        all_ok |= line == "ALL OK";
    }
    drop(driver);
    assert!(
        all_ok,
        "Cockpit Machines check failed (screenshot and HTML in {}):\n{transcript}\n\
         --- machines.py stderr:\n{}\n--- cockpit-ws:\n{}\n--- oxvirtd log:\n{}\n\
         --- guest console:\n{}",
        shots.display(),
        std::fs::read_to_string(&driver_err).unwrap_or_default(),
        std::fs::read_to_string(ws_log.with_extension("err")).unwrap_or_default(),
        s.log(),
        std::fs::read_to_string(&console).unwrap_or_default(),
    );
    // The guest saw Cockpit's Shut down as the ACPI power button.
    let out = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(
        out.contains("OXTEST acpibutton ok"),
        "guest console:\n{out}"
    );
}

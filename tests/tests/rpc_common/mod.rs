//! Shared harness of the libvirt-RPC tests: a private oxvirtd (own store, runtime dir,
//! D-Bus daemon and RPC sockets in a temporary directory), Debian's real `virsh`, and
//! the test guest as a libvirt domain.
#![allow(dead_code)]

pub mod libvirtd;

use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub use oxvirt_tests::cmd::Run;
use oxvirt_tests::oxvirtd::write_config;
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::{bin_path, domain_xml, test_guests};

/// How long a daemon or guest step may take here (emulated KVM is slow).
pub const STEP: Duration = Duration::from_secs(90);

/// The guest: prints `OXTEST READY`, runs its checks, then waits for the ACPI power
/// button and powers off (so `virsh shutdown` works).
pub const CMDLINE: &str = "console=ttyS0 oxtest=acpibutton";

/// A domain XML of the test guest, serial console on a pty (what `virsh console` uses).
pub fn guest_xml(name: &str) -> String {
    domain_xml(
        name,
        &test_guests().elf,
        CMDLINE,
        64,
        1,
        "restart",
        &serial_xml("pty"),
    )
}

/// The test guest drawing its known picture (tests/guests/oxtest/display.c) into a
/// bochs-display, with `graphics` (a `<graphics>` element).
pub fn display_xml(name: &str, graphics: &str) -> String {
    domain_xml(
        name,
        &test_guests().elf,
        "console=ttyS0 oxtest=pci,display",
        64,
        1,
        "restart",
        &serial_xml("pty"),
    )
    .replace(
        "  </devices>",
        &format!("    {graphics}\n    <video><model type='bochs'/></video>\n  </devices>"),
    )
}

/// A running oxvirtd with its own D-Bus daemon.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    daemon: Child,
    dbus: Child,
}

impl Daemon {
    /// Starts oxvirtd and waits until its RPC socket accepts connections.
    pub fn start() -> Daemon {
        Self::start_with_config("")
    }

    /// As [`Daemon::start`], with `extra` lines appended to its config file.
    pub fn start_with_config(extra: &str) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("oxvirt-rpc-")
            .tempdir()
            .expect("temporary directory");
        // The VMMs (the system daemon's oxvirt-vmm user) reach their runtime
        // directories below this one; nothing here is listable by others.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .unwrap();
        let bus = dir.path().join("bus");
        let dbus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address=unix:path={}", bus.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dbus-daemon (Debian package dbus)");
        wait_for_socket(&bus, Duration::from_secs(20), "dbus-daemon");
        let socket = dir.path().join("rpc").join("virtoxvirtd-sock");
        let config = write_config(dir.path(), &bus, false, &socket);
        if !extra.is_empty() {
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(&config, format!("{text}{extra}\n")).unwrap();
        }
        let log = std::fs::File::create(dir.path().join("oxvirtd.log")).unwrap();
        let daemon = Command::new(bin_path("oxvirtd"))
            .arg("--system")
            .arg("--config")
            .arg(&config)
            .env("OXVIRTD_LOG", "info,daemon::rpc=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting oxvirtd");
        let d = Daemon {
            dir,
            socket,
            daemon,
            dbus,
        };
        let deadline = Instant::now() + STEP;
        while !is_socket(&d.socket) {
            if Instant::now() > deadline {
                d.fail("oxvirtd did not create its RPC socket");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// The URI clients use: our scheme plus the private socket.
    pub fn uri(&self) -> String {
        format!("oxvirt:///system?socket={}", self.socket.display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("oxvirtd.log")).unwrap_or_default()
    }

    /// The console output of a running domain, as the daemon's runtime dir has it.
    pub fn domain_log(&self, name: &str) -> String {
        let d = self.dir.path().join("run/domains").join(name);
        let mut s = String::new();
        for f in ["log", "console.log"] {
            if let Ok(t) = std::fs::read_to_string(d.join(f)) {
                s += &format!("--- {f}\n{t}\n");
            }
        }
        s
    }

    /// Fails the test, printing the daemon's log.
    pub fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n--- oxvirtd log:\n{}", self.log());
    }

    /// Runs `virsh -c URI ARGS…`.
    pub fn virsh(&self, args: &[&str]) -> Run {
        virsh(&self.uri(), args)
    }

    /// Runs virsh and fails the test (with the daemon log) unless it succeeded.
    pub fn virsh_ok(&self, args: &[&str]) -> String {
        let r = self.virsh(args);
        if !r.ok {
            self.fail(&format!(
                "virsh {args:?} failed:\n{}\n{}",
                r.stdout, r.stderr
            ));
        }
        r.stdout
    }

    /// Waits until `virsh domstate NAME` prints `state`.
    pub fn wait_state(&self, name: &str, state: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            let r = self.virsh(&["domstate", name]);
            if r.ok && r.stdout.trim() == state {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "domain {name} did not reach '{state}' (last: {} {})\n{}",
                    r.stdout.trim(),
                    r.stderr.trim(),
                    self.domain_log(name)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `virsh shutdown` until the domain is shut off. The guest ignores the power button
    /// until it has armed it (early in its boot), so one press may be lost, as with any
    /// OS; scripts retry the same way.
    pub fn shutdown_until_off(&self, name: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            let out = self.virsh_ok(&["shutdown", name]);
            assert!(
                out.contains(&format!("Domain '{name}' is being shutdown")),
                "{out}"
            );
            let retry = Instant::now() + Duration::from_secs(3);
            while Instant::now() < retry {
                let r = self.virsh(&["domstate", name]);
                if r.stdout.trim() == "shut off" {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "{name} did not power off on the ACPI button\n{}",
                    self.domain_log(name)
                ));
            }
        }
    }

    /// Writes `xml` to a file in the test dir and returns its path.
    pub fn xml_file(&self, name: &str, xml: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{name}.xml"));
        std::fs::write(&p, xml).unwrap();
        p
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Leave no VMM behind: destroy whatever still runs, then stop the daemon.
        let r = self.virsh(&["list", "--name"]);
        for name in r.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let _ = self.virsh(&["destroy", name]);
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}

/// Runs Debian's virsh against `uri`.
pub fn virsh(uri: &str, args: &[&str]) -> Run {
    let mut c = Command::new("virsh");
    c.arg("-c").arg(uri).args(args);
    run_with_timeout(c, STEP)
}

/// Runs a command, killing it if it takes longer than `limit`.
pub fn run_with_timeout(mut c: Command, limit: Duration) -> Run {
    let mut child = c
        .env("LIBVIRT_AUTOSTART", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning a client (Debian packages libvirt-clients, python3-libvirt)");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let mut stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
    if status.is_none() {
        stderr += &format!("\n[killed after {limit:?}]");
    }
    Run {
        ok: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
    }
}

pub fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false)
}

fn wait_for_socket(p: &Path, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while !is_socket(p) {
        assert!(
            Instant::now() < deadline,
            "{what} did not create {}",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The counts of the oxtest guest's `count` mode ("OXTEST tick N") on a serial log
/// file, in order; only whole lines (the guest may be half-way through the last).
pub fn console_ticks(console: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(console).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .filter_map(|l| l.trim().strip_prefix("OXTEST tick "))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

impl Daemon {
    /// Waits until the console shows at least `n` ticks ([`console_ticks`]).
    pub fn wait_ticks(&self, console: &Path, n: usize) -> Vec<u64> {
        let deadline = Instant::now() + STEP;
        loop {
            let t = console_ticks(console);
            if t.len() >= n {
                return t;
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "fewer than {n} ticks on the console:\n{}",
                    std::fs::read_to_string(console).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The value after `key:` in `virsh dominfo`-style output.
pub fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no '{key}:' in:\n{text}"))
}

/// A process whose stdout is collected as it comes (killed on drop).
pub struct Watch {
    child: Child,
    rx: Receiver<String>,
    /// Everything printed so far.
    pub text: String,
    what: &'static str,
}

impl Watch {
    pub fn spawn(mut c: Command, what: &'static str) -> Watch {
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0
                    || tx
                        .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                        .is_err()
                {
                    break;
                }
            }
        });
        Watch {
            child,
            rx,
            text: String::new(),
            what,
        }
    }

    /// Waits until the output holds `needle` `n` times.
    pub fn wait_count(&mut self, d: &Daemon, needle: &str, n: usize) {
        let deadline = Instant::now() + STEP;
        while self.text.matches(needle).count() < n {
            if let Ok(chunk) = self.rx.recv_timeout(Duration::from_millis(100)) {
                self.text.push_str(&chunk);
            }
            if Instant::now() > deadline {
                d.fail(&format!(
                    "{} never printed '{needle}' {n} times; it printed:\n{}",
                    self.what, self.text
                ));
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

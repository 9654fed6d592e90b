//! Shared harness of the oxvirtd D-Bus tests: a private `dbus-daemon` (a session bus,
//! or a system-like bus with our policy file from packaging/dbus), oxvirtd with its
//! own store and runtime dir in a temporary directory, and real clients (`busctl`,
//! `gdbus`, a dbus-python script) pointed at that bus.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use oxvirt_tests::cmd::Run;
use oxvirt_tests::oxvirtd::write_config;
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::{bin_path, domain_xml, test_guests};

/// How long one daemon or guest step may take here (emulated KVM is slow).
pub const STEP: Duration = Duration::from_secs(90);

/// The guest prints `OXTEST READY`, then waits for the ACPI power button and powers off.
pub const CMDLINE: &str = "console=ttyS0 oxtest=acpibutton";

pub const CONNECT: &str = "/org/libvirt/QEMU";

/// The test guest as a libvirt domain, serial console into `console` (a file).
pub fn guest_xml(name: &str, console: &Path) -> String {
    domain_xml(
        name,
        &test_guests().elf,
        CMDLINE,
        64,
        1,
        "destroy",
        &serial_xml(&format!("file:{}", console.display())),
    )
}

/// Which kind of bus the daemon runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    /// `dbus-daemon --session`; oxvirtd `--session`.
    Session,
    /// A system-like bus (system policy defaults + packaging/dbus/org.libvirt.conf);
    /// oxvirtd `--system`.
    System,
    /// A system-like bus whose policy lets anybody call org.libvirt, so only
    /// oxvirtd's own credential check stands in the way; oxvirtd `--system`.
    SystemOpenPolicy,
}

/// A running `gdbus monitor` (killed on drop).
pub struct Monitor {
    child: Child,
    log: PathBuf,
}

impl Monitor {
    /// What it has printed so far.
    pub fn seen(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to [`STEP`] until its output contains `needle`; fails the test (with
    /// `d`'s log and the monitor's output) otherwise.
    pub fn wait_for(&self, d: &Daemon, needle: &str) {
        let deadline = Instant::now() + STEP;
        while !self.seen().contains(needle) {
            if Instant::now() > deadline {
                d.fail(&format!("no {needle}; monitor saw:\n{}", self.seen()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it and returns all it printed.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `busctl --address=ADDRESS ARGS…` as root or (`as_nobody`) as user `nobody`
/// through `setpriv`.
pub fn busctl_at(address: &str, as_nobody: bool, args: &[&str]) -> Run {
    let mut c = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "busctl",
        ]);
        c
    } else {
        Command::new("busctl")
    };
    c.arg(format!("--address={address}"))
        .args(args)
        .output()
        .expect("running busctl (Debian systemd) / setpriv (util-linux)")
        .into()
}

/// The busctl arguments for `call org.libvirt PATH IFACE METHOD SIG ARGS…`.
pub fn call_args<'a>(
    path: &'a str,
    iface: &'a str,
    method: &'a str,
    sig_args: &[&'a str],
) -> Vec<&'a str> {
    // "--": arguments such as "-1" are values, not options.
    let mut args = vec!["call", "--", "org.libvirt", path, iface, method];
    args.extend_from_slice(sig_args);
    args
}

/// The busctl arguments that set `Domain.Autostart` of the domain at `path` to true.
pub fn set_autostart_args(path: &str) -> [&str; 7] {
    [
        "set-property",
        "org.libvirt",
        path,
        "org.libvirt.Domain",
        "Autostart",
        "b",
        "true",
    ]
}

/// A private bus with oxvirtd on it.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub bus: PathBuf,
    pub kind: BusKind,
    daemon: Option<Child>,
    dbus: Child,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A system-style bus configuration listening on `bus`: the default policy of
/// Debian's system.conf (deny calls and names, allow replies), then `default_extra`
/// inside that default policy and `after` (more policies, includes) after it.
pub fn system_bus_conf_text(bus: &Path, default_extra: &str, after: &str) -> String {
    format!(
        "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\"
 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">
<busconfig>
  <type>system</type>
  <listen>unix:path={bus}</listen>
  <auth>EXTERNAL</auth>
  <policy context=\"default\">
    <allow user=\"*\"/>
    <deny own=\"*\"/>
    <deny send_type=\"method_call\"/>
    <allow send_type=\"signal\"/>
    <allow send_requested_reply=\"true\" send_type=\"method_return\"/>
    <allow send_requested_reply=\"true\" send_type=\"error\"/>
    <allow receive_type=\"method_call\"/>
    <allow receive_type=\"method_return\"/>
    <allow receive_type=\"error\"/>
    <allow receive_type=\"signal\"/>
{default_extra}  </policy>
{after}</busconfig>
",
        bus = bus.display()
    )
}

fn system_bus_config(dir: &Path, bus: &Path, open: bool) -> PathBuf {
    let policy = if open {
        let p = dir.join("open-policy.conf");
        std::fs::write(
            &p,
            "<busconfig><policy user=\"root\"><allow own=\"org.libvirt\"/></policy>\
             <policy context=\"default\"><allow send_destination=\"org.libvirt\"/></policy></busconfig>",
        )
        .unwrap();
        p
    } else {
        repo_root().join("packaging/dbus/org.libvirt.conf")
    };
    let cfg = dir.join("system-bus.conf");
    std::fs::write(
        &cfg,
        system_bus_conf_text(
            bus,
            "    <allow send_destination=\"org.freedesktop.DBus\" send_interface=\"org.freedesktop.DBus\"/>
    <allow send_destination=\"org.freedesktop.DBus\" send_interface=\"org.freedesktop.DBus.Introspectable\"/>
    <allow send_destination=\"org.freedesktop.DBus\" send_interface=\"org.freedesktop.DBus.Properties\"/>
",
            &format!("  <include>{}</include>\n", policy.display()),
        ),
    )
    .unwrap();
    cfg
}

impl Daemon {
    /// A bus of `kind` and oxvirtd on it, ready (its name is owned).
    pub fn start(kind: BusKind) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("oxvirt-dbus-")
            .tempdir()
            .expect("temporary directory");
        // Other users (the unprivileged client) must reach the bus socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bus = dir.path().join("bus");
        let mut cmd = Command::new("dbus-daemon");
        match kind {
            BusKind::Session => {
                cmd.arg("--session")
                    .arg(format!("--address=unix:path={}", bus.display()));
            }
            BusKind::System | BusKind::SystemOpenPolicy => {
                let open = kind == BusKind::SystemOpenPolicy;
                cmd.arg(format!(
                    "--config-file={}",
                    system_bus_config(dir.path(), &bus, open).display()
                ));
            }
        }
        let dbus = cmd
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dbus-daemon (Debian package dbus)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !bus.exists() {
            assert!(
                Instant::now() < deadline,
                "dbus-daemon did not create {}",
                bus.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut d = Daemon {
            dir,
            bus,
            kind,
            daemon: None,
            dbus,
        };
        d.start_daemon();
        d
    }

    /// Starts (or restarts) oxvirtd over the same store and runtime dir.
    pub fn start_daemon(&mut self) {
        let d = self.dir.path();
        let config = write_config(d, &self.bus, true, &d.join("rpc/sock"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("oxvirtd.log"))
            .unwrap();
        let mode = match self.kind {
            BusKind::Session => "--session",
            BusKind::System | BusKind::SystemOpenPolicy => "--system",
        };
        let child = Command::new(bin_path("oxvirtd"))
            .arg(mode)
            .arg("--config")
            .arg(&config)
            .env("OXVIRTD_LOG", "info,daemon=debug")
            .env("XDG_RUNTIME_DIR", d)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting oxvirtd");
        self.daemon = Some(child);
        let deadline = Instant::now() + STEP;
        loop {
            let r = self.busctl(&["status", "org.libvirt"]);
            if r.ok {
                break;
            }
            if let Some(st) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                self.fail(&format!("oxvirtd exited ({st}) before owning org.libvirt"));
            }
            if Instant::now() > deadline {
                self.fail("oxvirtd did not own org.libvirt in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.daemon.as_ref().expect("daemon running").id() as i32
    }

    /// Kills the daemon with SIGKILL (VMMs keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn address(&self) -> String {
        format!("unix:path={}", self.bus.display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("oxvirtd.log")).unwrap_or_default()
    }

    /// A domain's runtime dir (console, VMM log).
    pub fn runtime(&self, name: &str) -> PathBuf {
        self.dir.path().join("run/domains").join(name)
    }

    /// Where a test domain's serial console goes.
    pub fn console(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.console"))
    }

    /// Fails the test, printing the daemon's log, and every console and VMM log.
    pub fn fail(&self, msg: &str) -> ! {
        let mut extra = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "console") {
                    extra += &format!(
                        "\n--- console {}:\n{}",
                        p.display(),
                        std::fs::read_to_string(&p).unwrap_or_default()
                    );
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("run/domains")) {
            for e in entries.flatten() {
                extra += &format!(
                    "\n--- VMM log {}:\n{}",
                    e.path().display(),
                    std::fs::read_to_string(e.path().join("log")).unwrap_or_default()
                );
            }
        }
        panic!("{msg}\n--- oxvirtd log:\n{}{extra}", self.log());
    }

    /// `busctl --address=… ARGS` as the current user (root).
    pub fn busctl(&self, args: &[&str]) -> Run {
        busctl_at(&self.address(), false, args)
    }

    /// As [`Daemon::busctl`], as user `nobody`.
    pub fn busctl_as_nobody(&self, args: &[&str]) -> Run {
        busctl_at(&self.address(), true, args)
    }

    /// As [`Daemon::try_call`], as user `nobody`.
    pub fn try_call_as_nobody(
        &self,
        path: &str,
        iface: &str,
        method: &str,
        sig_args: &[&str],
    ) -> Run {
        self.busctl_as_nobody(&call_args(path, iface, method, sig_args))
    }

    /// `busctl call org.libvirt PATH IFACE METHOD SIG ARGS…`; fails the test on error.
    pub fn call(&self, path: &str, iface: &str, method: &str, sig_args: &[&str]) -> String {
        let r = self.try_call(path, iface, method, sig_args);
        if !r.ok {
            self.fail(&format!("{method} failed: {}", r.stderr));
        }
        r.stdout
    }

    pub fn try_call(&self, path: &str, iface: &str, method: &str, sig_args: &[&str]) -> Run {
        self.busctl(&call_args(path, iface, method, sig_args))
    }

    /// `busctl get-property org.libvirt PATH IFACE NAME`: the value as busctl prints
    /// it (`b true`, `s "name"`); fails the test on error.
    pub fn property(&self, path: &str, iface: &str, name: &str) -> String {
        let r = self.busctl(&["get-property", "org.libvirt", path, iface, name]);
        if !r.ok {
            self.fail(&format!("get-property {iface}.{name} failed: {}", r.stderr));
        }
        r.stdout.trim().to_string()
    }

    /// Polls `Connect.DomainLookupByName(name)` until it answers "Domain not found"
    /// (a transient domain is gone); fails after [`STEP`].
    pub fn wait_undefined(&self, name: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            let r = self.try_call(
                CONNECT,
                "org.libvirt.Connect",
                "DomainLookupByName",
                &["s", name],
            );
            if !r.ok {
                assert!(r.stderr.contains("Domain not found"), "{}", r.stderr);
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("transient domain {name} still defined"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `gdbus monitor` on the daemon's bus name, its output into `DIR/file`.
    pub fn monitor(&self, file: &str) -> Monitor {
        let log = self.dir.path().join(file);
        let child = Command::new("gdbus")
            .args([
                "monitor",
                "--address",
                &self.address(),
                "--dest",
                "org.libvirt",
            ])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("gdbus monitor");
        // Let it subscribe before the test acts.
        std::thread::sleep(Duration::from_millis(500));
        Monitor { child, log }
    }

    /// `Connect.DomainDefineXML`: the new domain's object path.
    pub fn define(&self, xml: &str) -> String {
        let out = self.call(
            CONNECT,
            "org.libvirt.Connect",
            "DomainDefineXML",
            &["s", xml],
        );
        object_path(&out)
    }

    /// Defines the test guest ([`guest_xml`]) as `name`, console into
    /// [`Daemon::console`]; returns its object path.
    pub fn define_guest(&self, name: &str) -> String {
        self.define(&guest_xml(name, &self.console(name)))
    }

    /// Defines and starts the test guest `name` and waits for `ready` on its console;
    /// returns its object path.
    pub fn start_guest(&self, name: &str, ready: &str) -> String {
        let path = self.define_guest(name);
        self.domain(&path, "Create", &["u", "0"]);
        self.wait_console(name, ready, STEP);
        path
    }

    /// `Domain.METHOD` on `path`.
    pub fn domain(&self, path: &str, method: &str, sig_args: &[&str]) -> String {
        self.call(path, "org.libvirt.Domain", method, sig_args)
    }

    /// `(state, reason)` from `Domain.GetState`.
    pub fn state(&self, path: &str) -> (i32, i32) {
        let out = self.domain(path, "GetState", &["u", "0"]);
        // busctl prints "(ii) 1 1"
        let v: Vec<i32> = out
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        (v[0], v[1])
    }

    /// Waits until `path` is in `state`.
    pub fn wait_state(&self, path: &str, state: i32, within: Duration) -> (i32, i32) {
        let deadline = Instant::now() + within;
        loop {
            let s = self.state(path);
            if s.0 == state {
                return s;
            }
            if Instant::now() > deadline {
                self.fail(&format!("{path} stayed in state {s:?}, expected {state}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the console file of `name` holds `needle`.
    pub fn wait_console(&self, name: &str, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let text = std::fs::read_to_string(self.console(name)).unwrap_or_default();
            if text.contains(needle) {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("'{needle}' not on {name}'s console in {within:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid of a running domain's VMM (from its runtime dir).
    pub fn vmm_pid(&self, name: &str) -> i32 {
        std::fs::read_to_string(self.runtime(name).join("pid"))
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or_else(|_| self.fail(&format!("no pid file for {name}")))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Stop every VMM we started (they outlive the daemon by design).
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("run/domains")) {
            for e in entries.flatten() {
                if let Ok(pid) = std::fs::read_to_string(e.path().join("pid")) {
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
        self.kill9();
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}

/// The object path in busctl's `o "/…"` output.
pub fn object_path(out: &str) -> String {
    out.split('"').nth(1).unwrap_or_default().to_string()
}

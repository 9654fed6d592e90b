//! Running `oxvirt-vmm`: spawn, read the console and the log, wait with timeouts, clean up.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use machine_spec::{CharBackend, DeviceKind, MachineSpec};

use crate::oxtest::{checks, Check};

/// Default limit for one guest wait. Guest code runs hundreds of times slower under the
/// emulated KVM of the development machines; `OXVIRT_TEST_TIMEOUT` (seconds) overrides.
pub const GUEST_TIMEOUT: Duration = Duration::from_secs(90);

fn timeout(d: Duration) -> Duration {
    std::env::var("OXVIRT_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).max(d))
        .unwrap_or(d)
}

/// A workspace binary (`oxvirt-vmm`, `oxvirtd`, …): `$OXVIRT_BIN_DIR`, else the cargo
/// target dir (`$CARGO_TARGET_DIR` or the workspace's `target/`), `debug/` then `release/`.
pub fn bin_path(name: &str) -> PathBuf {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("OXVIRT_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    // The test binary itself lives in <target>/<profile>/deps: prefer its profile.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile) = exe.parent().and_then(|d| d.parent()) {
            dirs.push(profile.to_path_buf());
        }
    }
    dirs.push(target.join("debug"));
    dirs.push(target.join("release"));
    for d in &dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} not found in {dirs:?}: build the binaries first (`cargo build --workspace --bins`, \
         which scripts/test.sh does)"
    );
}

/// Bytes from a console or log, shared between a reader thread and the test.
#[derive(Default)]
struct Buf {
    data: Mutex<Vec<u8>>,
    more: Condvar,
}

impl Buf {
    fn push(&self, b: &[u8]) {
        self.data.lock().unwrap().extend_from_slice(b);
        self.more.notify_all();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data.lock().unwrap()).into_owned()
    }

    fn wait(&self, d: Duration) {
        let g = self.data.lock().unwrap();
        let _ = self.more.wait_timeout(g, d).unwrap();
    }
}

fn pump(mut r: impl Read + Send + 'static, buf: Arc<Buf>, stop: Arc<AtomicBool>) {
    thread::spawn(move || {
        let mut b = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            match r.read(&mut b) {
                Ok(0) => break,
                Ok(n) => buf.push(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
}

/// Follows a file that another process appends to, until `stop`.
fn tail_file(path: PathBuf, buf: Arc<Buf>, stop: Arc<AtomicBool>) {
    thread::spawn(move || {
        let mut f = None;
        let mut b = [0u8; 4096];
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if f.is_none() {
                f = File::open(&path).ok();
            }
            let mut got = false;
            if let Some(f) = f.as_mut() {
                while let Ok(n) = f.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    got = true;
                    buf.push(&b[..n]);
                }
            }
            if stopping {
                break;
            }
            if !got {
                thread::sleep(Duration::from_millis(20));
            }
        }
    });
}

/// How the console reaches the test, decided from the spec's ttyS0 backend.
enum ConsoleSource {
    Stdout,
    File(PathBuf),
    Pty,
    UnixConnect(PathBuf),
    UnixAccept(UnixListener),
    None,
}

/// A running (or finished) `oxvirt-vmm` process with its console and log.
pub struct Vm {
    child: Mutex<Child>,
    stdin: Mutex<Option<std::process::ChildStdin>>,
    status: Mutex<Option<ExitStatus>>,
    console: Arc<Buf>,
    log: Arc<Buf>,
    stop: Arc<AtomicBool>,
    dir: tempfile::TempDir,
    started: Instant,
    /// What was run, for failure messages.
    what: String,
}

impl Vm {
    /// Runs `oxvirt-vmm --spec` with `spec` (written to a private directory).
    pub fn start(spec: &MachineSpec) -> Vm {
        Self::start_with(spec, &[])
    }

    /// As [`Vm::start`], with extra command-line arguments (`--qmp PATH`, …).
    pub fn start_with(spec: &MachineSpec, extra: &[&str]) -> Vm {
        Self::start_with_files(spec, extra, Vec::new())
    }

    /// As [`Vm::start_with`], the VMM inheriting `files` as descriptors 3, 4, …
    /// (what `spec.files` names: oxvirtd's hand-over).
    pub fn start_with_files(
        spec: &MachineSpec,
        extra: &[&str],
        files: Vec<std::os::fd::OwnedFd>,
    ) -> Vm {
        let dir = tempfile::Builder::new()
            .prefix("oxvirt-test-")
            .tempdir()
            .expect("temporary directory");
        let path = dir.path().join("spec.json");
        std::fs::write(&path, spec.to_json()).expect("writing spec.json");
        let source = console_source(spec);
        let mut args = vec!["--spec".to_string(), path.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(
            dir,
            args,
            source,
            format!("spec:\n{}", spec.to_json()),
            files,
        )
    }

    /// Runs `oxvirt-vmm --xml` with a domain XML document. The console is read from the
    /// VMM's stdout (use `<serial type='stdio'>`, or read a file/socket yourself).
    pub fn start_xml(xml: &str, extra: &[&str]) -> Vm {
        let dir = tempfile::Builder::new()
            .prefix("oxvirt-test-")
            .tempdir()
            .expect("temporary directory");
        let path = dir.path().join("domain.xml");
        std::fs::write(&path, xml).expect("writing domain.xml");
        let mut args = vec!["--xml".to_string(), path.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let source = if xml.contains("type='pty'") {
            ConsoleSource::Pty
        } else {
            ConsoleSource::Stdout
        };
        Self::spawn(dir, args, source, format!("domain XML:\n{xml}"), Vec::new())
    }

    /// The private directory of this run (for sockets and files a test adds).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(
        dir: tempfile::TempDir,
        args: Vec<String>,
        source: ConsoleSource,
        what: String,
        files: Vec<std::os::fd::OwnedFd>,
    ) -> Vm {
        let bin = bin_path("oxvirt-vmm");
        let mut cmd = Command::new(&bin);
        if !files.is_empty() {
            use command_fds::{CommandFdExt, FdMapping};
            let mappings = files
                .into_iter()
                .zip(3..)
                .map(|(parent_fd, child_fd)| FdMapping {
                    parent_fd,
                    child_fd,
                })
                .collect();
            cmd.fd_mappings(mappings).expect("descriptors for the VMM");
        }
        // stdin is a pipe the test holds open: the VMM's stdio backend can watch it, and
        // tests can type into the guest's console (`send_stdin`).
        cmd.args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var_os("OXVIRT_LOG").is_none() {
            cmd.env("OXVIRT_LOG", "info");
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let console = Arc::new(Buf::default());
        let log = Arc::new(Buf::default());
        let stop = Arc::new(AtomicBool::new(false));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        pump(stderr, log.clone(), stop.clone());
        let vm = Vm {
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            status: Mutex::new(None),
            console: console.clone(),
            log: log.clone(),
            stop: stop.clone(),
            dir,
            started,
            what: format!("{} {}\n{what}", bin.display(), args.join(" ")),
        };
        match source {
            ConsoleSource::Stdout => pump(stdout, console, stop),
            other => {
                // stdout still carries whatever the VMM prints there: keep it in the log.
                pump(stdout, log, stop.clone());
                vm.attach_console(other);
            }
        }
        vm
    }

    fn attach_console(&self, source: ConsoleSource) {
        let (console, stop) = (self.console.clone(), self.stop.clone());
        match source {
            ConsoleSource::Stdout | ConsoleSource::None => {}
            ConsoleSource::File(p) => tail_file(p, console, stop),
            ConsoleSource::UnixAccept(l) => {
                thread::spawn(move || {
                    if let Ok((s, _)) = l.accept() {
                        pump(s, console, stop);
                    }
                });
            }
            ConsoleSource::UnixConnect(p) => {
                let deadline = Instant::now() + timeout(GUEST_TIMEOUT);
                loop {
                    let is_socket = std::fs::metadata(&p)
                        .map(|m| m.file_type().is_socket())
                        .unwrap_or(false);
                    if is_socket {
                        if let Ok(s) = UnixStream::connect(&p) {
                            pump(s, console, stop);
                            return;
                        }
                    }
                    if Instant::now() > deadline || self.exited().is_some() {
                        self.fail(&format!(
                            "the VMM did not create the console socket {}",
                            p.display()
                        ));
                    }
                    // Short: the guest prints within milliseconds of the bind.
                    thread::sleep(Duration::from_millis(1));
                }
            }
            ConsoleSource::Pty => {
                let pty = self.pty_path(timeout(GUEST_TIMEOUT));
                let f = File::options()
                    .read(true)
                    .write(true)
                    .open(&pty)
                    .unwrap_or_else(|e| self.fail(&format!("opening {}: {e}", pty.display())));
                make_raw(&f);
                pump(f, console, stop);
            }
        }
    }

    /// The `/dev/pts/N` path the VMM reported in its log.
    pub fn pty_path(&self, within: Duration) -> PathBuf {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log.text();
            if let Some(i) = log.find("/dev/pts/") {
                let n: String = log[i + 9..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                if !n.is_empty() {
                    return PathBuf::from(format!("/dev/pts/{n}"));
                }
            }
            if Instant::now() > deadline || self.exited().is_some() {
                self.fail("the VMM log never named its pty (/dev/pts/N)");
            }
            self.log.wait(Duration::from_millis(50));
        }
    }

    /// Writes to the VMM's stdin (the guest's input with a stdio console).
    pub fn send_stdin(&self, bytes: &[u8]) {
        use std::io::Write;
        if let Some(s) = self.stdin.lock().unwrap().as_mut() {
            let _ = s.write_all(bytes);
            let _ = s.flush();
        }
    }

    /// Closes the VMM's stdin (end of input).
    pub fn close_stdin(&self) {
        self.stdin.lock().unwrap().take();
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Everything the guest printed so far.
    pub fn console(&self) -> String {
        self.console.text()
    }

    /// The console up to its last complete line (a line still being printed is left out).
    pub fn console_lines(&self) -> String {
        let mut t = self.console();
        let end = t.rfind('\n').map_or(0, |i| i + 1);
        t.truncate(end);
        t
    }

    /// Everything the VMM logged so far (stderr).
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// The `OXTEST` result lines so far.
    pub fn checks(&self) -> Vec<Check> {
        checks(&self.console_lines())
    }

    /// The exit status, if the process has ended.
    pub fn exited(&self) -> Option<ExitStatus> {
        let mut st = self.status.lock().unwrap();
        if st.is_none() {
            *st = self.child.lock().unwrap().try_wait().ok().flatten();
        }
        *st
    }

    /// Panics with `msg`, the command, the console and the log.
    pub fn fail(&self, msg: &str) -> ! {
        let status = self
            .exited()
            .map(|s| format!("exited: {s}"))
            .unwrap_or_else(|| "still running".into());
        panic!(
            "{msg}\n(after {:.1} s; VMM {status})\n--- command\n{}\n--- guest console\n{}\n--- VMM log\n{}\n---",
            self.started.elapsed().as_secs_f64(),
            self.what,
            self.console(),
            self.log()
        );
    }

    /// Waits until the console has `n` occurrences of `needle` in complete lines; returns
    /// the console up to its last complete line.
    /// Fails (with the console) on timeout or if the VMM exits first.
    pub fn wait_count(&self, needle: &str, n: usize, within: Duration) -> String {
        let deadline = Instant::now() + timeout(within);
        loop {
            let text = self.console_lines();
            if text.matches(needle).count() >= n {
                return text;
            }
            if let Some(st) = self.exited() {
                // Give the reader threads a moment to drain what the guest wrote last.
                thread::sleep(Duration::from_millis(100));
                let text = self.console();
                if text.matches(needle).count() >= n {
                    return text;
                }
                self.fail(&format!(
                    "the VMM exited ({st}) before the console showed {needle:?} x{n}"
                ));
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "timed out waiting for {needle:?} x{n} on the console"
                ));
            }
            self.console.wait(Duration::from_millis(50));
        }
    }

    /// Waits for the first console line containing `needle` and returns that line.
    pub fn wait_for(&self, needle: &str, within: Duration) -> String {
        let text = self.wait_count(needle, 1, within);
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or("")
            .trim_end_matches('\r')
            .to_string()
    }

    /// Waits for `OXTEST <check> ok|FAIL` and returns it; fails if it is FAIL.
    pub fn expect_ok(&self, check: &str, within: Duration) -> Check {
        let ok = format!("OXTEST {check} ok");
        let bad = format!("OXTEST {check} FAIL");
        let deadline = Instant::now() + timeout(within);
        loop {
            if let Some(c) = self.checks().into_iter().find(|c| c.name == check) {
                if !c.ok {
                    self.fail(&format!("guest check failed: {bad} {}", c.details));
                }
                return c;
            }
            if self.exited().is_some() {
                thread::sleep(Duration::from_millis(100));
                if self.console().contains(&ok) {
                    continue;
                }
                self.fail(&format!("the VMM exited before the guest reported {ok:?}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {ok:?}"));
            }
            self.console.wait(Duration::from_millis(50));
        }
    }

    /// Fails if any `OXTEST … FAIL` line is on the console.
    pub fn assert_no_failures(&self) {
        if let Some(c) = self.checks().into_iter().find(|c| !c.ok) {
            self.fail(&format!(
                "guest check failed: {} FAIL {}",
                c.name, c.details
            ));
        }
    }

    /// Waits for `OXTEST DONE` and then for the VMM's power-off exit status, each
    /// `within`; fails (printing console and log) otherwise.
    pub fn wait_poweroff(&self, within: Duration) {
        self.wait_for("OXTEST DONE", within);
        self.expect_exit(machine_spec::exit::POWEROFF, within);
    }

    /// Waits for the process to end (as [`Vm::wait_exit`]) and fails unless its exit
    /// status is `want` (a `machine_spec::exit` value).
    pub fn expect_exit(&self, want: i32, within: Duration) {
        let code = self.wait_exit(within);
        if code != want {
            self.fail(&format!(
                "exit status {code}, expected {} ({want})",
                exit_name(want)
            ));
        }
    }

    /// Waits for the process to end and returns its exit code; fails on timeout (the
    /// process is killed) or on death by signal.
    pub fn wait_exit(&self, within: Duration) -> i32 {
        let deadline = Instant::now() + timeout(within);
        loop {
            if let Some(st) = self.exited() {
                self.settle();
                return st.code().unwrap_or_else(|| {
                    self.fail(&format!("the VMM died by signal {:?}", st.signal()))
                });
            }
            if Instant::now() > deadline {
                self.kill();
                self.fail("timed out waiting for the VMM to exit (killed it)");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets the console readers catch up after the process ended.
    fn settle(&self) {
        thread::sleep(Duration::from_millis(100));
    }

    /// Sends a signal (SIGTERM for a clean stop).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        let _ = nix::sys::signal::kill(pid, sig);
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&self) {
        let mut c = self.child.lock().unwrap();
        let _ = c.kill();
        if let Ok(st) = c.wait() {
            *self.status.lock().unwrap() = Some(st);
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn console_source(spec: &MachineSpec) -> ConsoleSource {
    let backend = spec.devices.iter().find_map(|d| match &d.kind {
        DeviceKind::Serial(s) if s.port == 0 => Some(s.backend.clone()),
        _ => None,
    });
    match backend {
        Some(CharBackend::Stdio) => ConsoleSource::Stdout,
        Some(CharBackend::File { path, .. }) => ConsoleSource::File(path),
        Some(CharBackend::Pty) => ConsoleSource::Pty,
        Some(CharBackend::Unix { path, listen: true }) => ConsoleSource::UnixConnect(path),
        Some(CharBackend::Unix {
            path,
            listen: false,
        }) => {
            let _ = std::fs::remove_file(&path);
            ConsoleSource::UnixAccept(
                UnixListener::bind(&path)
                    .unwrap_or_else(|e| panic!("binding {}: {e}", path.display())),
            )
        }
        Some(CharBackend::Tcp { .. }) | Some(CharBackend::Null) | None => ConsoleSource::None,
    }
}

/// Raw mode on our end of the pty: no echo back into the guest, no line buffering.
fn make_raw(f: &File) {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    if let Ok(mut t) = tcgetattr(f) {
        cfmakeraw(&mut t);
        let _ = tcsetattr(f, SetArg::TCSANOW, &t);
    }
}

/// The name of a `machine_spec::exit` status, for failure messages.
fn exit_name(code: i32) -> &'static str {
    use machine_spec::exit;
    match code {
        exit::POWEROFF => "POWEROFF",
        exit::VMM_ERROR => "VMM_ERROR",
        exit::USAGE => "USAGE",
        exit::REBOOT => "REBOOT",
        exit::CRASH => "CRASH",
        exit::HOST_STOP => "HOST_STOP",
        _ => "an unknown status",
    }
}

//! Shared pieces of the QMP tests: a qemu.qmp-driven client (Python, a real client),
//! raw byte exchanges (socat or a plain socket), the reference QEMU, and a VMM with a
//! QMP socket.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use machine_spec::MachineSpec;
use oxvirt_tests::Vm;
use serde_json::{json, Value};

/// How long one QMP exchange may take (the VMM may be slowed by emulated KVM).
pub const QMP_TIMEOUT: Duration = Duration::from_secs(30);

/// The Python interpreter that has `qemu.qmp` (PyPI), or a panic saying how to get it.
/// `OXVIRT_PYTHON` overrides the search.
pub fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let mut candidates = Vec::new();
        if let Ok(p) = std::env::var("OXVIRT_PYTHON") {
            candidates.push(p);
        }
        candidates.extend(["python3".to_string(), "/usr/bin/python3".to_string()]);
        for c in &candidates {
            let ok = Command::new(c)
                .args(["-c", "import qemu.qmp"])
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return c.clone();
            }
        }
        panic!(
            "no Python with the qemu.qmp package among {candidates:?}; install it with \
             `pip install qemu.qmp` (CI: .ci/run) or point OXVIRT_PYTHON at one"
        )
    })
}

/// Waits until `path` is a socket that accepts connections.
pub fn wait_socket(path: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let is_sock = std::fs::metadata(path)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false);
        if is_sock && UnixStream::connect(path).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "QMP socket {} did not appear within {within:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A session driven by the `qemu.qmp` library (tests/qmp_common/qmp_driver.py).
pub struct PyQmp {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    pub greeting: Value,
}

impl PyQmp {
    /// Connects and negotiates (qemu.qmp does both in `connect`).
    pub fn connect(sock: &Path) -> PyQmp {
        let driver = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/qmp_common/qmp_driver.py"
        );
        let mut child = Command::new(python())
            .arg(driver)
            .arg(sock)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("running the qemu.qmp driver");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut me = PyQmp {
            child,
            stdin,
            lines,
            greeting: Value::Null,
        };
        let g = me.recv(QMP_TIMEOUT);
        me.greeting = g["greeting"].clone();
        assert!(me.greeting.is_object(), "no greeting from the driver: {g}");
        me
    }

    fn recv(&mut self, within: Duration) -> Value {
        let line = self
            .lines
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("qemu.qmp driver gave no answer within {within:?}: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver said {line:?}: {e}"))
    }

    fn send(&mut self, req: Value) {
        writeln!(self.stdin, "{req}").expect("writing to the driver");
        self.stdin.flush().unwrap();
    }

    /// Runs a command; the whole answer (`{"return": …}` or the server's error reply).
    pub fn execute(&mut self, cmd: &str, args: Value) -> Value {
        let mut req = json!({"execute": cmd});
        if !args.is_null() {
            req["arguments"] = args;
        }
        self.send(req);
        self.recv(QMP_TIMEOUT)
    }

    /// Runs a command that must succeed; its return value.
    pub fn ok(&mut self, cmd: &str, args: Value) -> Value {
        let r = self.execute(cmd, args);
        match r.get("return") {
            Some(v) => v.clone(),
            None => panic!("{cmd} failed: {r}"),
        }
    }

    /// The next event called `name` (others are kept for later).
    pub fn event(&mut self, name: &str, within: Duration) -> Value {
        self.send(json!({"event": name, "timeout": within.as_secs_f64()}));
        let r = self.recv(within + Duration::from_secs(5));
        match r.get("event") {
            Some(ev) => ev.clone(),
            None => panic!("no {name} event within {within:?}: {r}"),
        }
    }
}

impl PyQmp {
    /// Makes a socket pair, passes one end to the server with qemu.qmp's
    /// `send_fd_scm` (for the next `getfd`) and keeps the other as `name`.
    pub fn pass_socket(&mut self, name: &str) {
        self.send(json!({ "pass_socket": name }));
        let r = self.recv(QMP_TIMEOUT);
        assert_eq!(r["passed"], name, "{r}");
    }

    /// Opens `path` for writing (created, truncated) and passes it to the server
    /// for the next `getfd`, as libvirt passes a save file.
    pub fn pass_file(&mut self, path: &Path) {
        self.send(json!({ "pass_file": path }));
        let r = self.recv(QMP_TIMEOUT);
        assert_eq!(r["passed"], json!(path), "{r}");
    }

    /// Writes `bytes` to the kept socket `name`.
    pub fn sock_send(&mut self, name: &str, bytes: &[u8]) {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.send(json!({"sock_send": name, "hex": hex}));
        self.recv(QMP_TIMEOUT);
    }

    /// Reads `n` bytes from the kept socket `name` (fewer if it closes or nothing
    /// comes for 30 s).
    pub fn sock_recv(&mut self, name: &str, n: usize) -> Vec<u8> {
        self.send(json!({"sock_recv": name, "n": n, "timeout": QMP_TIMEOUT.as_secs()}));
        let r = self.recv(QMP_TIMEOUT + Duration::from_secs(5));
        let hex = r["hex"].as_str().unwrap_or_else(|| panic!("{r}"));
        (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap())
            .collect()
    }
}

impl Drop for PyQmp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `input` with socat (as a shell user would) and returns everything the
/// server wrote until it closed the connection after our end of input.
pub fn socat(sock: &Path, input: &[u8]) -> String {
    let mut child = Command::new("socat")
        .args(["-t", "5", "-", &format!("UNIX-CONNECT:{}", sock.display())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running socat (Debian package socat)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "socat failed: {st}");
    String::from_utf8_lossy(&out).into_owned()
}

/// A raw connection: bytes in, `\r\n`-terminated lines out.
pub struct RawQmp {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl RawQmp {
    pub fn connect(sock: &Path) -> RawQmp {
        let stream = UnixStream::connect(sock).expect("connecting to the QMP socket");
        stream.set_read_timeout(Some(QMP_TIMEOUT)).unwrap();
        RawQmp {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next line, `\r\n` included.
    pub fn line(&mut self) -> String {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..p + 2).collect();
                return String::from_utf8(line).expect("QMP output is ASCII");
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .unwrap_or_else(|e| panic!("reading a QMP line: {e}"));
            assert!(
                n > 0,
                "connection closed; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a request and returns the next line.
    pub fn ask(&mut self, bytes: &[u8]) -> String {
        self.send(bytes);
        self.line()
    }
}

/// Debian's QEMU 7.2 with `-M none` and a QMP socket: the reference (needs no KVM).
pub struct Qemu {
    child: Child,
    pub sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Qemu {
    pub fn start() -> Qemu {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qemu.sock");
        let child = Command::new("qemu-system-x86_64")
            .args(["-M", "none", "-nographic", "-display", "none", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("running qemu-system-x86_64 (Debian package qemu-system-x86)");
        wait_socket(&sock, Duration::from_secs(30));
        Qemu {
            child,
            sock,
            _dir: dir,
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A VMM running `spec` with `--qmp` on a socket in its own directory.
pub struct QmpVm {
    pub vm: Vm,
    pub sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl QmpVm {
    pub fn start(spec: &MachineSpec) -> QmpVm {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let vm = Vm::start_with(spec, &["--qmp", sock.to_str().unwrap()]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sock.exists() {
            if vm.exited().is_some() || Instant::now() > deadline {
                vm.fail("the QMP socket did not appear");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        wait_socket(&sock, Duration::from_secs(30));
        QmpVm {
            vm,
            sock,
            _dir: dir,
        }
    }
}

/// Thread ids of the process's threads named `vcpuN`, by N.
pub fn vcpu_tids(pid: u32) -> Vec<(u32, i64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let e = e.unwrap();
        let tid: i64 = e.file_name().to_string_lossy().parse().unwrap();
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if let Some(n) = comm
            .trim()
            .strip_prefix("vcpu")
            .and_then(|n| n.parse().ok())
        {
            out.push((n, tid));
        }
    }
    out.sort();
    out
}

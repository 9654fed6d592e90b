//! The Linux test guest (`tests/linux-guest/`) under `oxvirt-vmm`: building it once,
//! specs for it, what its `/init` and `oxcheck` report, a small QMP client, and the
//! reasons to skip. Shared by `linux_guest.rs` (the patched kernel, runs here) and
//! `linux_full.rs` (Debian's kernel, hardware KVM only).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use machine_spec::{Device, DeviceKind, LifecycleAction, MachineSpec, PciAddress};
use oxvirt_tests::{emulated_kvm, kvm_usable, skip, Vm};

/// Boot to the ready line: ≈ 25 s on an idle emulated-KVM machine, but 20 times that was
/// seen while the machine's two cores also ran several builds (`OXVIRT_TEST_TIMEOUT`
/// raises it). A crash ends the wait at once; only a hung guest waits this long.
pub const BOOT: Duration = Duration::from_secs(900);
/// From the ready line (or a command's end) to the VMM's exit.
pub const EXIT: Duration = Duration::from_secs(180);

/// `OXVIRT_LINUX_GUEST=stock` boots Debian's cloud kernel (hardware KVM only) instead of
/// our patched one; the tests are the same.
pub fn stock() -> bool {
    std::env::var("OXVIRT_LINUX_GUEST").is_ok_and(|v| v == "stock")
}

/// The built guest: kernel, initramfs and the command line it needs.
#[derive(Debug)]
pub struct LinuxGuest {
    /// Debian's kernel (`build.sh --stock`) rather than the patched one.
    pub stock: bool,
    pub dir: PathBuf,
    /// The PVH ELF vmlinux (patched guest) or the bzImage (stock).
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
}

/// Builds the guest with `tests/linux-guest/build.sh` (a no-op when cached), or takes
/// the outputs of an earlier build from the directory `dir_var` names.
fn build(stock: bool, dir_var: &str) -> anyhow::Result<LinuxGuest> {
    let dir = match std::env::var_os(dir_var) {
        Some(d) => PathBuf::from(d),
        None => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("linux-guest/build.sh");
            let mut cmd = Command::new(&script);
            if stock {
                cmd.arg("--stock");
            }
            // Progress goes to stderr (the test's output); a build from scratch takes
            // minutes.
            let out = cmd
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| anyhow::anyhow!("running {}: {e}", script.display()))?;
            anyhow::ensure!(
                out.status.success(),
                "{} failed ({})",
                script.display(),
                out.status
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            PathBuf::from(stdout.lines().last().unwrap_or("").trim())
        }
    };
    let kernel = if stock {
        dir.join("bzImage")
    } else {
        dir.join("vmlinux")
    };
    let cmdline = std::fs::read_to_string(dir.join("cmdline"))?
        .trim()
        .to_string();
    Ok(LinuxGuest {
        stock,
        kernel,
        initrd: dir.join("initramfs.cpio"),
        cmdline,
        dir,
    })
}

/// The guest for `test`, or `None` after a loud SKIPPED line when this host cannot run
/// it. A guest that fails to build fails the test.
pub fn guest(test: &str) -> Option<&'static LinuxGuest> {
    if let Err(e) = kvm_usable() {
        skip(test, &format!("no usable KVM ({e})"));
        return None;
    }
    if stock() && emulated_kvm() {
        skip(
            test,
            "OXVIRT_LINUX_GUEST=stock on the emulated KVM (kvm_pvm): Debian's kernel stops at \
             the first int3 (int3_selftest in arch/x86/kernel/alternative.c) with a KVM \
             emulation failure; run the stock kernel on hardware KVM, or the patched guest here",
        );
        return None;
    }
    if emulated_kvm() {
        take_turn();
    }
    Some(built(stock()))
}

/// On the emulated KVM the Linux guests of one test process boot one at a time: two
/// at once on a 2-core machine slowed each other's fork-heavy userspace 4-fold (a CI
/// run), three at once under build load did not reach init in 900 s. A test holds its
/// turn until its thread ends (libtest runs each test on a thread of its own; with
/// `--test-threads=1` the one thread keeps it, which is just as serial).
fn take_turn() {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    thread_local! {
        static TURN: RefCell<Option<MutexGuard<'static, ()>>> = const { RefCell::new(None) };
    }
    TURN.with(|turn| {
        let mut turn = turn.borrow_mut();
        if turn.is_none() {
            // A test that panicked while holding its turn poisons the lock; the next
            // test's guest is still fine.
            *turn = Some(ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner()));
        }
    });
}

/// Debian's kernel for the full-Linux tests (`linux_full.rs`), or `None` after a loud
/// SKIPPED line on the emulated KVM (where it stops at its first `int3`; tier 4 runs
/// there in the nested-SVM guest) unless `OXVIRT_FULL_LINUX` forces it. `OXVIRT_LINUX_STOCK_DIR` uses an existing
/// `build.sh --stock` output directory.
pub fn full_guest(test: &str) -> Option<&'static LinuxGuest> {
    if !oxvirt_tests::require_hardware_like_kvm(test) {
        return None;
    }
    Some(built(true))
}

/// The guest of one kind, built once per test process; a failed build fails the test.
fn built(stock: bool) -> &'static LinuxGuest {
    static PATCHED: OnceLock<Result<LinuxGuest, String>> = OnceLock::new();
    static STOCK: OnceLock<Result<LinuxGuest, String>> = OnceLock::new();
    let (cell, dir_var) = if stock {
        (&STOCK, "OXVIRT_LINUX_STOCK_DIR")
    } else {
        (&PATCHED, "OXVIRT_LINUX_GUEST_DIR")
    };
    match cell.get_or_init(|| build(stock, dir_var).map_err(|e| format!("{e:#}"))) {
        Ok(g) => g,
        Err(e) => panic!("building the Linux test guest: {e}"),
    }
}

impl LinuxGuest {
    /// A spec: `cpus` vCPUs, `mem_mib` MiB, ttyS0 on stdout, our command line plus
    /// `params`, every lifecycle event ends the VMM (so the exit status says which).
    pub fn spec(&self, cpus: u32, mem_mib: u64, params: &str) -> MachineSpec {
        let cmdline = format!("{} {params}", self.cmdline);
        let mut s = oxvirt_tests::spec(&self.kernel, cmdline.trim_end(), mem_mib, cpus);
        s.name = "oxvirt-linux-test".into();
        s.boot.initrd = Some(self.initrd.clone());
        s.lifecycle.on_reboot = LifecycleAction::Destroy;
        s
    }

    /// The guest's symbol for a kernel address (from `nm vmlinux`), for crash reports.
    pub fn symbol(&self, addr: u64) -> Option<String> {
        let out = Command::new("nm")
            .args(["-n", "--defined-only"])
            .arg(self.dir.join("vmlinux"))
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut best = None;
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(a), Some(_), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let Ok(a) = u64::from_str_radix(a, 16) else {
                continue;
            };
            if a > addr {
                break;
            }
            best = Some(format!("{name}+{:#x}", addr - a));
        }
        best
    }
}

/// A PCI device at `00:slot.0`.
pub fn pci_device(id: &str, slot: u8, kind: DeviceKind) -> Device {
    Device {
        boot_index: None,
        id: id.into(),
        pci: Some(PciAddress {
            domain: 0,
            bus: 0,
            slot,
            function: 0,
        }),
        kind,
    }
}

/// One `OXVIRT <what> key=value ...` line of the guest's `/init`.
#[derive(Debug, Clone)]
pub struct Line {
    pub what: String,
    pub fields: BTreeMap<String, String>,
}

impl Line {
    /// `what key=value ...`
    fn parse(text: &str) -> Line {
        let mut it = text.split(' ');
        let what = it.next().unwrap_or("").to_string();
        let fields = it
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Line { what, fields }
    }

    pub fn get(&self, key: &str) -> &str {
        self.fields.get(key).map_or("", String::as_str)
    }
}

/// What `/init` reported on a console transcript (its first boot).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub lines: Vec<Line>,
    /// The command's output between `OXVIRT-CMD-BEGIN` and `OXVIRT-CMD-RC=`.
    pub cmd_output: String,
    /// `oxcheck`'s `OXCHECK <what> key=value ...` lines in that output.
    pub checks: Vec<Line>,
    pub cmd_rc: Option<i32>,
}

impl Report {
    pub fn parse(console: &str) -> Report {
        let mut r = Report::default();
        let mut in_cmd = false;
        let mut boots = 0;
        for l in console.lines().map(|l| l.trim_end_matches('\r')) {
            if l.starts_with("OXVIRT init ") {
                boots += 1;
                if boots > 1 {
                    break; // a second boot: keep the first one's report
                }
            }
            if let Some(rc) = l.strip_prefix("OXVIRT-CMD-RC=") {
                if in_cmd && r.cmd_rc.is_none() {
                    r.cmd_rc = rc.trim().parse().ok();
                }
                in_cmd = false;
            } else if l == "OXVIRT-CMD-BEGIN" {
                in_cmd = r.cmd_rc.is_none();
            } else if in_cmd {
                r.cmd_output.push_str(l);
                r.cmd_output.push('\n');
                if let Some(rest) = l.strip_prefix("OXCHECK ") {
                    r.checks.push(Line::parse(rest));
                }
            } else if let Some(rest) = l.strip_prefix("OXVIRT ") {
                r.lines.push(Line::parse(rest));
            }
        }
        r
    }

    /// `oxcheck`'s lines about `what`.
    pub fn check_lines(&self, what: &str) -> Vec<&Line> {
        self.checks.iter().filter(|l| l.what == what).collect()
    }

    pub fn all(&self, what: &str) -> Vec<&Line> {
        self.lines.iter().filter(|l| l.what == what).collect()
    }

    pub fn first(&self, what: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.what == what)
    }

    /// The virtio device of `kind` (`block`, `net`, `rng`, …) the guest found.
    pub fn virtio(&self, kind: &str) -> Option<&Line> {
        self.all("virtio")
            .into_iter()
            .find(|l| l.get("kind") == kind)
    }
}

/// Fails the test with the console and log unless `cond`.
pub fn check(vm: &Vm, cond: bool, what: &str) {
    if !cond {
        vm.fail(what);
    }
}

/// Waits for the guest's ready line; on a VMM crash exit, names the instruction's place
/// in the guest kernel (an emulation failure on kvm_pvm is the usual cause here).
pub fn wait_ready(vm: &Vm, g: &LinuxGuest) -> Report {
    let deadline = Instant::now() + BOOT;
    while Instant::now() < deadline {
        if vm.console_lines().contains("OXVIRT-READY") {
            return Report::parse(&vm.console_lines());
        }
        if let Some(st) = vm.exited() {
            std::thread::sleep(Duration::from_millis(200));
            if vm.console_lines().contains("OXVIRT-READY") {
                return Report::parse(&vm.console_lines());
            }
            vm.fail(&format!(
                "the VMM exited ({st}) before the guest's OXVIRT-READY line{}",
                crash_place(vm, g)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The harness's own wait prints the console and log on timeout.
    vm.wait_for("OXVIRT-READY", Duration::from_secs(1));
    Report::parse(&vm.console_lines())
}

/// " (RIP ... = symbol+off)" when the VMM log names a guest RIP in the kernel.
pub fn crash_place(vm: &Vm, g: &LinuxGuest) -> String {
    let log = vm.log();
    let lower = log.to_ascii_lowercase();
    let Some(i) = lower.rfind("rip") else {
        return String::new();
    };
    let hex: String = lower[i + 3..]
        .trim_start_matches(|c: char| !c.is_ascii_hexdigit() || c == 'x')
        .trim_start_matches("0x")
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    match u64::from_str_radix(&hex, 16) {
        Ok(rip) if rip >= 0xffff_ffff_8000_0000 => match g.symbol(rip) {
            Some(s) => format!(" (guest RIP {rip:#x} = {s} in the guest kernel)"),
            None => format!(" (guest RIP {rip:#x})"),
        },
        _ => String::new(),
    }
}

/// A minimal synchronous QMP client: greeting, `qmp_capabilities`, commands.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to the VMM's `--qmp` socket (retrying while the VMM creates it).
    pub fn connect(path: &Path, vm: &Vm) -> Qmp {
        let deadline = Instant::now() + Duration::from_secs(60);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    if Instant::now() > deadline || vm.exited().is_some() {
                        vm.fail(&format!("connecting to QMP at {}: {e}", path.display()));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("socket timeout");
        let mut q = Qmp {
            reader: BufReader::new(stream.try_clone().expect("clone socket")),
            writer: stream,
        };
        let greeting = q.read(vm);
        check(vm, greeting.get("QMP").is_some(), "QMP greeting");
        q.execute(vm, "qmp_capabilities");
        q
    }

    fn read(&mut self, vm: &Vm) -> serde_json::Value {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(n) if n > 0 => serde_json::from_str(&line)
                .unwrap_or_else(|e| vm.fail(&format!("QMP sent bad JSON {line:?}: {e}"))),
            Ok(_) => vm.fail("QMP connection closed"),
            Err(e) => vm.fail(&format!("reading QMP: {e}")),
        }
    }

    /// Runs `command` and returns its `return` value (events in between are skipped).
    pub fn execute(&mut self, vm: &Vm, command: &str) -> serde_json::Value {
        self.execute_with(vm, command, serde_json::json!({}))
    }

    /// Runs `command` with `arguments`, as [`Qmp::execute`].
    pub fn execute_with(
        &mut self,
        vm: &Vm,
        command: &str,
        arguments: serde_json::Value,
    ) -> serde_json::Value {
        let msg = if arguments.as_object().is_some_and(|a| a.is_empty()) {
            serde_json::json!({ "execute": command })
        } else {
            serde_json::json!({ "execute": command, "arguments": arguments })
        };
        writeln!(self.writer, "{msg}")
            .unwrap_or_else(|e| vm.fail(&format!("writing QMP {command}: {e}")));
        loop {
            let v = self.read(vm);
            if let Some(r) = v.get("return") {
                return r.clone();
            }
            if let Some(e) = v.get("error") {
                vm.fail(&format!("QMP {command} failed: {e}"));
            }
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), for disk patterns.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// sha256 of `data` in hex, by coreutils' `sha256sum`.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("feeding sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

impl LinuxGuest {
    /// A libvirt domain of this guest for oxvirtd: direct kernel boot with the initrd,
    /// `script` run by /init after its ready line (`oxvirt_cmd64`), `mem_mib` MiB, one
    /// vCPU, the serial console on the log file `console`, `on_reboot` destroy.
    pub fn domain_xml(&self, name: &str, script: &str, mem_mib: u64, console: &Path) -> String {
        let cmdline = format!(
            "{} oxvirt_cmd64={}",
            self.cmdline,
            base64(script.as_bytes())
        );
        oxvirt_tests::domain_xml(
            name,
            &self.kernel,
            &cmdline,
            mem_mib,
            1,
            "destroy",
            &oxvirt_tests::spec::serial_xml(&format!("file:{}", console.display())),
        )
        .replace(
            "</kernel>",
            &format!("</kernel>\n    <initrd>{}</initrd>", self.initrd.display()),
        )
    }
}

/// Waits until the console file holds a whole line with `needle`; returns the rest
/// of that line, or the console so far when `within` passes. Only a finished line
/// counts: the guest may be half-way through writing it (a hash read mid-line was
/// a CI flake once).
pub fn console_line(console: &Path, needle: &str, within: Duration) -> Result<String, String> {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if let Some(rest) = text.find(needle).map(|i| &text[i + needle.len()..]) {
            if let Some(end) = rest.find('\n') {
                return Ok(rest[..end].trim().to_string());
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the guest never printed '{needle}'; console:\n{text}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The first 64-hex-digit word of `text`.
pub fn find_sha256(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
}

/// Runs a host command and fails with its output unless it succeeds.
pub fn host(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd} (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard base64 (with padding) of `data`: how tests hand the guest a shell script on
/// its command line (`oxvirt_cmd64=`). Five lines; no crate needed for it.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = u32::from(c[0]) << 16
            | u32::from(*c.get(1).unwrap_or(&0)) << 8
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Guest shell lines that bring eth0 up and take a DHCP lease with busybox `udhcpc`
/// (address and default route set by the lease script, the router's address left in
/// /tmp/router); the script exits 1 with udhcpc's log when no lease comes.
pub const DHCP_ETH0: &str = r#"printf '#!/bin/sh\ncase "$1" in bound) ip addr add $ip/$mask dev $interface; ip route add default via $router; echo "$router" >/tmp/router;; esac\n' >/tmp/u.sh
chmod +x /tmp/u.sh
ip link set eth0 up
udhcpc -i eth0 -n -q -f -t 10 -T 3 -s /tmp/u.sh >/tmp/udhcpc.log 2>&1 || { cat /tmp/udhcpc.log; exit 1; }
"#;

//! A seccomp filter per thread kind: each thread of `oxvirt-vmm` allows only the
//! system calls (and, for `ioctl`, the requests) its kind was seen to make.
//!
//! How it works:
//! 1. `main` calls [`init`] with the `--seccomp` mode before any thread exists; in
//!    `kill` mode it installs the SIGSYS handler.
//! 2. Each thread calls [`enter`] with its [`Thread`] kind once it has done its own
//!    set-up and before it touches guest-controlled data (a vCPU before its first
//!    `KVM_RUN`, a device worker before its first queue, the main thread once the
//!    machine runs). The filters are compiled once per kind, on first use, and
//!    cached (10–70 µs each: `cargo test --release -p vmm seccomp -- --ignored`).
//! 3. A forbidden call returns `SECCOMP_RET_TRAP` (`kill` mode): the kernel sends
//!    SIGSYS to the thread, [`on_sigsys`] writes the call's number, name and the
//!    thread kind to stderr (the daemon's domain log) and the process dies of SIGSYS,
//!    which the daemon reports as `shutoff (crashed)`. In `log` mode the kernel logs
//!    the call (audit, `dmesg`) and lets it run: the way to find a missing entry.
//!
//! Filters stack: a thread spawned by a filtered thread keeps its parent's filter and
//! adds its own, so a thread kind that spawns threads of another kind allows what
//! those need too ([`Thread::Main`] rebuilds the machine on reset; the monitor starts
//! VNC clients handed over by `add_client`). The lists are in one module per kind,
//! built from `strace -f` of the guest tests (see `tests/README.md`, seccomp).

mod allow;
mod ioctls;
mod lists;
mod names;

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use seccompiler::{BpfProgram, SeccompAction};

pub use allow::AllowList;

/// What a filter does with a system call its list does not allow (`--seccomp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No filters: for debugging the VMM under tools that need more (strace is fine
    /// with filters; gdb's inferior calls may not be).
    None,
    /// Allow it, but have the kernel log it (audit/`dmesg`, `type=1326`).
    Log,
    /// Log it to stderr from the SIGSYS handler and kill the process.
    #[default]
    Kill,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "none" => Ok(Mode::None),
            "log" => Ok(Mode::Log),
            "kill" => Ok(Mode::Kill),
            other => Err(format!(
                "unknown seccomp mode '{other}' (expected none, log or kill)"
            )),
        }
    }
}

/// The kinds of thread, each with its own allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thread {
    /// The main thread's event loop: lifecycle, chardev input, reset (which builds a
    /// new machine and starts vCPU and worker threads).
    Main,
    /// A vCPU's `KVM_RUN` loop and the devices it dispatches exits to.
    Vcpu,
    /// A device worker: virtio queues, the e1000 receiver, the INTx resampler.
    Worker,
    /// The QMP monitor (its runtime and its event forwarder).
    Monitor,
    /// The VNC server: refresh, accept and client threads.
    Vnc,
}

impl Thread {
    const ALL: [Thread; 5] = [
        Thread::Main,
        Thread::Vcpu,
        Thread::Worker,
        Thread::Monitor,
        Thread::Vnc,
    ];

    /// The name the SIGSYS report uses.
    pub fn name(self) -> &'static str {
        match self {
            Thread::Main => "main",
            Thread::Vcpu => "vcpu",
            Thread::Worker => "device worker",
            Thread::Monitor => "monitor",
            Thread::Vnc => "vnc",
        }
    }

    /// This kind's allow-list, including what the threads it spawns need.
    pub fn allow_list(self) -> AllowList {
        let mut a = AllowList::default();
        lists::common::allow(&mut a);
        match self {
            Thread::Main => {
                lists::main_thread::allow(&mut a);
                // Reset builds a new machine from this thread.
                lists::vcpu::allow(&mut a);
                lists::worker::allow(&mut a);
                lists::vnc::allow(&mut a);
                lists::monitor::allow(&mut a);
            }
            Thread::Vcpu => {
                lists::vcpu::allow(&mut a);
                // DRIVER_OK starts a device's worker from the vCPU that wrote it.
                lists::worker::allow(&mut a);
            }
            Thread::Worker => lists::worker::allow(&mut a),
            Thread::Monitor => {
                lists::monitor::allow(&mut a);
                // Media changes and blockdev-add open images and start their workers;
                // add_client starts VNC client threads from here.
                lists::worker::allow(&mut a);
                lists::vnc::allow(&mut a);
            }
            Thread::Vnc => lists::vnc::allow(&mut a),
        }
        a
    }

    /// The capabilities this kind keeps ([`crate::capabilities`]): the main
    /// thread hot-plugs NICs (a new tap on its bridge; not under oxvirtd, which
    /// hands taps over open: [`drop_net_admin`]), rebuilds the machine on reset and
    /// stops passt at exit (passt started by root runs as `nobody`);
    /// the monitor opens images for blockdev-add and media changes. Both keep
    /// CAP_DAC_* only where images are opened by path (not under oxvirtd, which
    /// hands them over open: [`drop_dac`]). Guest- and network-facing threads keep
    /// none.
    pub fn capabilities(self) -> u64 {
        use crate::capabilities::{mask, DAC_OVERRIDE, DAC_READ_SEARCH, KILL, NET_ADMIN};
        let dac = if KEEP_DAC.load(Ordering::Relaxed) {
            mask(&[DAC_OVERRIDE, DAC_READ_SEARCH])
        } else {
            0
        };
        let net_admin = if KEEP_NET_ADMIN.load(Ordering::Relaxed) {
            mask(&[NET_ADMIN])
        } else {
            0
        };
        match self {
            Thread::Main => dac | mask(&[KILL]) | net_admin,
            Thread::Monitor => dac,
            Thread::Vcpu | Thread::Worker | Thread::Vnc => 0,
        }
    }

    fn index(self) -> usize {
        Thread::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// Errors installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot install the seccomp filter of the {0} thread")]
    Apply(&'static str, #[source] seccompiler::Error),
    #[error("cannot compile the seccomp filter of the {0} thread")]
    Compile(&'static str, #[source] seccompiler::BackendError),
    #[error("cannot lower the capabilities of the {0} thread")]
    Capabilities(&'static str, #[source] std::io::Error),
    #[error("cannot install the SIGSYS handler")]
    Handler(#[source] nix::Error),
}

static MODE: OnceLock<Mode> = OnceLock::new();
/// Whether the main thread keeps CAP_NET_ADMIN (taps it creates itself).
static KEEP_NET_ADMIN: AtomicBool = AtomicBool::new(true);

/// No thread keeps CAP_NET_ADMIN: every tap comes open from whoever started the VMM
/// (oxvirtd). Call from `main` before [`init`].
pub fn drop_net_admin() {
    KEEP_NET_ADMIN.store(false, Ordering::Relaxed);
}

/// Whether the main and monitor threads keep CAP_DAC_OVERRIDE/READ_SEARCH (images
/// they open by path whatever their owner and mode).
static KEEP_DAC: AtomicBool = AtomicBool::new(true);

/// No thread keeps CAP_DAC_*: the domain's files come open from whoever started the
/// VMM (oxvirtd: `files` in the spec, `add-fd` before `blockdev-add`), and what the
/// VMM still opens by path it opens with the rights of its user alone. Call from
/// `main` before [`init`].
pub fn drop_dac() {
    KEEP_DAC.store(false, Ordering::Relaxed);
}
static PROGRAMS: [OnceLock<BpfProgram>; 5] = [const { OnceLock::new() }; 5];

thread_local! {
    /// The kind this thread entered, for the SIGSYS report (a `const` thread-local
    /// without a destructor: reading it in a signal handler takes no lock).
    static KIND: Cell<&'static str> = const { Cell::new("unfiltered") };
}

/// Sets the mode for the whole process; call once from `main` before any thread
/// is spawned. Later calls keep the first mode.
pub fn init(mode: Mode) -> Result<(), SeccompError> {
    let mode = *MODE.get_or_init(|| mode);
    if mode != Mode::None {
        fix_malloc_arena_limit();
    }
    if mode == Mode::Kill {
        install_sigsys_handler()?;
    }
    Ok(())
}

/// glibc's malloc opens files from whichever thread gets there first: the online CPU
/// list when a thread needs a ninth arena, `/proc/sys/vm/overcommit_memory` the first
/// time a thread's own arena shrinks — possibly a filtered device worker, which may
/// not open files. With one arena (the main one, grown and trimmed by brk) glibc
/// never asks; per-thread caches keep small allocations off its lock, and the few
/// threads of a VMM allocate little on their data paths.
fn fix_malloc_arena_limit() {
    // SAFETY: mallopt only sets a malloc tunable; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// `thread`'s BPF program for the current mode, compiled on first use.
fn program(thread: Thread) -> Result<&'static BpfProgram, SeccompError> {
    let slot = &PROGRAMS[thread.index()];
    if let Some(p) = slot.get() {
        return Ok(p);
    }
    let action = match mode() {
        Mode::Log => SeccompAction::Log,
        Mode::None | Mode::Kill => SeccompAction::Trap,
    };
    let p = thread
        .allow_list()
        .compile(action)
        .map_err(|e| SeccompError::Compile(thread.name(), e))?;
    Ok(slot.get_or_init(|| p))
}

/// The mode [`init`] set ([`Mode::None`] if it was never called: library users and
/// unit tests run unfiltered).
pub fn mode() -> Mode {
    MODE.get().copied().unwrap_or(Mode::None)
}

/// Lowers the calling thread's capabilities to what `thread` keeps and installs
/// its filter (and sets `no_new_privs`). The capabilities go in every mode once
/// [`init`] ran (`--seccomp none` is about filters only); library users and unit
/// tests that never call [`init`] keep theirs.
pub fn enter(thread: Thread) -> Result<(), SeccompError> {
    if MODE.get().is_none() {
        return Ok(());
    }
    crate::capabilities::restrict_thread(thread.capabilities())
        .map_err(|e| SeccompError::Capabilities(thread.name(), e))?;
    if mode() == Mode::None {
        return Ok(());
    }
    seccompiler::apply_filter(program(thread)?)
        .map_err(|e| SeccompError::Apply(thread.name(), e))?;
    KIND.with(|k| k.set(thread.name()));
    Ok(())
}

/// [`enter`] for threads that have no one to return an error to: a thread that
/// cannot be confined stops the VMM rather than run unconfined.
pub fn enter_or_exit(thread: Thread) {
    if let Err(e) = enter(thread) {
        tracing::error!("{}", error_chain(&e));
        std::process::exit(machine_spec::exit::VMM_ERROR);
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let _ = write!(s, ": {c}");
        src = c.source();
    }
    s
}

/// The system call the handler repeats to die: no list allows it (a unit test
/// checks), so it traps again while SIGSYS is blocked in its own handler, and the
/// kernel then kills the process with SIGSYS. Unfiltered it would only fail with
/// EINVAL (a null segment list).
const DEATH_SYSCALL: libc::c_long = libc::SYS_kexec_load;

/// The name of system call `nr`, or `"?"`.
pub fn syscall_name(nr: i64) -> &'static str {
    usize::try_from(nr)
        .ok()
        .and_then(|i| names::NAMES.get(i))
        .filter(|n| !n.is_empty())
        .copied()
        .unwrap_or("?")
}

/// The line the handler writes; also what the daemon's log shows and tests look for.
fn report(buf: &mut FixedBuf, kind: &str, nr: i64) {
    let _ = writeln!(
        buf,
        "oxvirt-vmm: seccomp: the {kind} thread made system call {nr} ({}), which its filter forbids; stopping the VMM",
        syscall_name(nr)
    );
}

/// A stack buffer `write!` can fill without allocating (the handler may not).
struct FixedBuf {
    bytes: [u8; 256],
    len: usize,
}

impl std::fmt::Write for FixedBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.bytes.len() - self.len;
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// SIGSYS from a filter's `SECCOMP_RET_TRAP`: report the call, then die of SIGSYS.
/// Only async-signal-safe work: formatting into a stack buffer, `write`, a syscall.
extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // For a seccomp SIGSYS the siginfo union holds `_sigsys { void *_call_addr; int
    // _syscall; unsigned _arch; }` after si_signo, si_errno, si_code and 4 bytes of
    // padding: `si_syscall` is the int at byte 24 on x86-64 (libc has no accessor).
    // SAFETY: the kernel passes a valid, readable siginfo_t (128 bytes) to an
    // SA_SIGINFO handler; offset 24 + 4 lies inside it and is 4-byte aligned.
    let nr = unsafe { info.cast::<u8>().add(24).cast::<libc::c_int>().read() };
    let mut buf = FixedBuf {
        bytes: [0; 256],
        len: 0,
    };
    report(&mut buf, KIND.with(|k| k.get()), i64::from(nr));
    // SAFETY: writes `len` initialised bytes from a live stack buffer to fd 2.
    unsafe { libc::write(2, buf.bytes.as_ptr().cast(), buf.len) };
    // SAFETY: a system call with null arguments that every filter traps (see
    // DEATH_SYSCALL); it does not return when filtered. `_exit` is the fallback.
    unsafe {
        libc::syscall(DEATH_SYSCALL, 0, 0, 0, 0);
        libc::_exit(128 + libc::SIGSYS);
    }
}

fn install_sigsys_handler() -> Result<(), SeccompError> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::SigAction(on_sigsys),
        // Back to the default disposition on entry, so the repeated trap kills.
        SaFlags::SA_SIGINFO | SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    // SAFETY: `on_sigsys` only does async-signal-safe work (see above); no other
    // code in the VMM handles SIGSYS.
    unsafe { sigaction(Signal::SIGSYS, &action) }
        .map(|_| ())
        .map_err(SeccompError::Handler)
}

/// The test-only HMP command that makes the monitor thread perform a forbidden
/// system call (tests check the whole crash report: SIGSYS, log line, domain state).
pub const TEST_FORBIDDEN_SYSCALL_HMP: &str = "x-oxvirt-test-forbidden-syscall";

/// Performs `personality(0xffffffff)` (only queries the persona, so harmless where
/// no filter stops it), which no thread kind allows. Returns what happened when the
/// process survives (no filter, or `log` mode).
pub fn forbidden_syscall_for_tests() -> String {
    // SAFETY: personality(0xffffffff) reads the execution domain and changes nothing.
    let r = unsafe { libc::personality(0xffff_ffff) };
    format!(
        "personality() returned {r}: no seccomp filter stopped it (mode {:?})\r\n",
        mode()
    )
}

#[cfg(test)]
mod tests;

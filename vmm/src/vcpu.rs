//! vCPU threads: one per vCPU, named `vcpuN`, each running `KVM_RUN` and
//! dispatching port-I/O and MMIO exits to the buses.
//!
//! [`VcpuGate`] is how the rest of the VMM stops them. A thread checks the gate
//! before every `KVM_RUN`; to pause or stop, the gate sets a flag and kicks each
//! thread with a signal. The kick handler sets `immediate_exit` in the thread's
//! `kvm_run`, so a kick that arrives just before `KVM_RUN` still makes it return
//! at once (see `kvm::bind_kick_target`): no kick is ever lost.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::control::VcpuThreadInfo;
use crate::devices::Bus;
use crate::kvm;
use crate::lifecycle::{ExitSink, GuestExit};

struct Registered {
    info: VcpuThreadInfo,
    pthread: libc::pthread_t,
    exited: bool,
}

#[derive(Default)]
struct GateState {
    paused: bool,
    stop: bool,
    parked: usize,
    threads: Vec<Registered>,
}

/// Pause/resume/stop control over the vCPU threads of the current machine.
pub struct VcpuGate {
    state: Mutex<GateState>,
    cv: Condvar,
}

impl Default for VcpuGate {
    fn default() -> Self {
        Self::new()
    }
}

impl VcpuGate {
    /// A gate with no threads, not paused.
    pub fn new() -> Self {
        VcpuGate {
            state: Mutex::new(GateState::default()),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by a vCPU thread when it starts.
    fn register(&self, info: VcpuThreadInfo) {
        let mut g = self.lock();
        g.threads.push(Registered {
            info,
            pthread: kvm::current_pthread(),
            exited: false,
        });
        self.cv.notify_all();
    }

    /// Called by a vCPU thread when its loop ends.
    fn mark_exited(&self, index: u32) {
        let mut g = self.lock();
        if let Some(t) = g.threads.iter_mut().find(|t| t.info.cpu_index == index) {
            t.exited = true;
        }
        self.cv.notify_all();
    }

    /// Called by a vCPU thread before each `KVM_RUN`: parks while paused.
    /// Returns `false` when the thread must stop.
    fn checkpoint(&self) -> bool {
        let mut g = self.lock();
        if g.paused && !g.stop {
            g.parked += 1;
            self.cv.notify_all();
            while g.paused && !g.stop {
                g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            g.parked -= 1;
        }
        !g.stop
    }

    fn kick_all(g: &GateState) {
        for t in g.threads.iter().filter(|t| !t.exited) {
            kvm::kick_thread(t.pthread);
        }
    }

    /// Parks every vCPU; `true` once all are parked, `false` after `timeout`.
    pub fn pause(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        g.paused = true;
        loop {
            let running = g.threads.iter().filter(|t| !t.exited).count();
            if g.parked >= running {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            Self::kick_all(&g);
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(10))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Releases parked vCPUs.
    pub fn resume(&self) {
        let mut g = self.lock();
        g.paused = false;
        self.cv.notify_all();
    }

    /// Whether vCPUs are (to be) parked; new threads honour it too.
    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// Tells every vCPU thread to leave its loop and kicks it out of `KVM_RUN`.
    /// The caller then joins the threads and calls [`VcpuGate::clear`].
    pub fn stop_all(&self) {
        let mut g = self.lock();
        g.stop = true;
        Self::kick_all(&g);
        self.cv.notify_all();
    }

    /// Forgets the (joined) threads and lowers the stop flag for the next run.
    /// The pause flag stays: a machine reset while paused starts paused.
    pub fn clear(&self) {
        let mut g = self.lock();
        g.threads.clear();
        g.stop = false;
        g.parked = 0;
    }

    /// The registered threads, by vCPU index.
    pub fn threads(&self) -> Vec<VcpuThreadInfo> {
        let mut v: Vec<VcpuThreadInfo> =
            self.lock().threads.iter().map(|t| t.info.clone()).collect();
        v.sort_by_key(|t| t.cpu_index);
        v
    }

    /// Waits until `n` threads registered (or `timeout`).
    pub fn wait_registered(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        while g.threads.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// Everything a vCPU thread needs.
pub struct VcpuContext {
    pub index: u32,
    pub vcpu: VcpuFd,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub exits: ExitSink,
    pub mem: GuestMemoryMmap,
    /// Topology position, for `VcpuThreadInfo`.
    pub info: VcpuThreadInfo,
}

/// Describes where the vCPU was when it crashed: RIP and the instruction bytes.
fn crash_site(ctx: &VcpuContext) -> String {
    let regs = match ctx.vcpu.get_regs() {
        Ok(r) => r,
        Err(e) => return format!("(registers unavailable: {e})"),
    };
    let sregs = ctx.vcpu.get_sregs().ok();
    let cs_base = sregs.map(|s| s.cs.base).unwrap_or(0);
    let linear = cs_base.wrapping_add(regs.rip);
    let paging = sregs.is_some_and(|s| s.cr0 & 0x8000_0000 != 0);
    let phys = if paging {
        ctx.vcpu
            .translate_gva(linear)
            .ok()
            .filter(|t| t.valid != 0)
            .map(|t| t.physical_address)
    } else {
        Some(linear)
    };
    let bytes = phys
        .map(|p| {
            let mut b = Vec::new();
            for i in 0..15u64 {
                match ctx.mem.read_obj::<u8>(GuestAddress(p + i)) {
                    Ok(v) => b.push(format!("{v:02x}")),
                    Err(_) => break,
                }
            }
            if b.is_empty() {
                "(not in RAM)".to_string()
            } else {
                b.join(" ")
            }
        })
        .unwrap_or_else(|| "(address not mapped)".to_string());
    format!(
        "vCPU {} at RIP {:#x} (CS base {:#x}), instruction bytes: {}",
        ctx.index, regs.rip, cs_base, bytes
    )
}

/// Describes `KVM_EXIT_INTERNAL_ERROR`.
fn internal_error_message(ctx: &mut VcpuContext) -> String {
    let (sub, data) = kvm::internal_error(&mut ctx.vcpu);
    let what = match sub {
        1 => "emulation failure",
        2 => "simultaneous exceptions",
        3 => "delivery event failure",
        4 => "unexpected exit reason",
        _ => "unknown",
    };
    let data: Vec<String> = data.iter().map(|d| format!("{d:#x}")).collect();
    format!(
        "KVM internal error, suberror {sub} ({what}), data [{}]; {}",
        data.join(", "),
        crash_site(ctx)
    )
}

/// The body of a vCPU thread: runs the vCPU until the gate stops it or the guest ends; gives the vCPU back.
pub fn run_vcpu(mut ctx: VcpuContext, gate: &VcpuGate) -> VcpuContext {
    let mut info = ctx.info.clone();
    info.thread_id = kvm::gettid();
    kvm::bind_kick_target(&mut ctx.vcpu);
    gate.register(info);
    let index = ctx.index;
    if index == 0 {
        crate::vm::lap("vCPU 0 thread running, first KVM_RUN next");
    }
    while gate.checkpoint() {
        // Once the guest asked to power off, reset or crashed, stop running it.
        if ctx.exits.is_pending() {
            // Wait to be stopped rather than spin.
            if !gate_wait_stop(gate) {
                break;
            }
            continue;
        }
        let exit = match ctx.vcpu.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR => {
                ctx.vcpu.set_kvm_immediate_exit(0);
                continue;
            }
            Err(e) if e.errno() == libc::EAGAIN => continue,
            Err(e) => {
                let msg = format!("KVM_RUN failed on vCPU {index}: {e}");
                ctx.exits.request(GuestExit::Crash(msg));
                break;
            }
        };
        match exit {
            VcpuExit::IoIn(port, data) => {
                if !ctx.pio.read(u64::from(port), data) {
                    data.fill(0xff);
                }
            }
            VcpuExit::IoOut(port, data) => {
                if !ctx.pio.write(u64::from(port), data) {
                    tracing::trace!(
                        port = format_args!("{port:#x}"),
                        ?data,
                        "unclaimed port write"
                    );
                }
            }
            VcpuExit::MmioRead(addr, data) => {
                if !ctx.mmio.read(addr, data) {
                    data.fill(0xff);
                }
            }
            VcpuExit::MmioWrite(addr, data) => {
                if !ctx.mmio.write(addr, data) {
                    tracing::trace!(addr = format_args!("{addr:#x}"), "unclaimed MMIO write");
                }
            }
            VcpuExit::Hlt => {}
            VcpuExit::Shutdown => {
                let msg = format!("triple fault (KVM_EXIT_SHUTDOWN): {}", crash_site(&ctx));
                ctx.exits.request(GuestExit::Crash(msg));
            }
            VcpuExit::SystemEvent(kind, _) => {
                let exit = match kind {
                    KVM_SYSTEM_EVENT_SHUTDOWN => GuestExit::PowerOff,
                    KVM_SYSTEM_EVENT_RESET => GuestExit::Reset,
                    KVM_SYSTEM_EVENT_CRASH => {
                        GuestExit::Crash(format!("guest crash event: {}", crash_site(&ctx)))
                    }
                    other => GuestExit::Crash(format!("unknown KVM system event {other}")),
                };
                ctx.exits.request(exit);
            }
            VcpuExit::Hyperv => {
                // SynIC MSR writes and hypercalls KVM leaves to us (kvm.rs).
                let (kind, input) = kvm::answer_hyperv_exit(&mut ctx.vcpu);
                tracing::debug!(vcpu = index, kind, input, "Hyper-V exit");
            }
            VcpuExit::InternalError => {
                let msg = internal_error_message(&mut ctx);
                ctx.exits.request(GuestExit::Crash(msg));
            }
            VcpuExit::FailEntry(reason, cpu) => {
                let msg = format!(
                    "KVM entry failure (hardware reason {reason:#x}, cpu {cpu}): {}",
                    crash_site(&ctx)
                );
                ctx.exits.request(GuestExit::Crash(msg));
            }
            other => {
                let desc = format!("{other:?}");
                let reason = kvm::exit_reason(&mut ctx.vcpu);
                let msg = format!(
                    "unexpected KVM exit {desc} (reason {reason}): {}",
                    crash_site(&ctx)
                );
                ctx.exits.request(GuestExit::Crash(msg));
            }
        }
    }
    // An I/O or MMIO exit completes only at the next KVM_RUN (the value read goes
    // into the register, RIP moves on): enter once with immediate_exit so the vCPU's
    // state is whole for a save (KVM's API documentation asks for this).
    ctx.vcpu.set_kvm_immediate_exit(1);
    let _ = ctx.vcpu.run();
    ctx.vcpu.set_kvm_immediate_exit(0);
    kvm::unbind_kick_target();
    gate.mark_exited(index);
    ctx
}

/// Parks until the gate says stop (or the pause/stop state changes).
fn gate_wait_stop(gate: &VcpuGate) -> bool {
    let mut g = gate.lock();
    if !g.stop {
        g = gate
            .cv
            .wait_timeout(g, Duration::from_millis(50))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    !g.stop
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(i: u32) -> VcpuThreadInfo {
        VcpuThreadInfo {
            cpu_index: i,
            thread_id: 0,
            socket_id: 0,
            die_id: 0,
            core_id: i,
            thread_id_in_core: 0,
        }
    }

    #[test]
    fn pause_waits_for_every_thread_to_park_and_stop_releases_them() {
        kvm::install_kick_handler().unwrap();
        let gate = Arc::new(VcpuGate::new());
        let mut handles = Vec::new();
        for i in 0..3 {
            let g = gate.clone();
            handles.push(std::thread::spawn(move || {
                g.register(info(i));
                let mut spins = 0u64;
                while g.checkpoint() {
                    spins += 1;
                    std::thread::sleep(Duration::from_micros(100));
                }
                g.mark_exited(i);
                spins
            }));
        }
        assert!(gate.wait_registered(3, Duration::from_secs(5)));
        assert!(gate.pause(Duration::from_secs(5)));
        assert_eq!(gate.lock().parked, 3);
        gate.resume();
        gate.stop_all();
        for h in handles {
            h.join().unwrap();
        }
        gate.clear();
        assert!(gate.threads().is_empty());
    }
}

//! The control API of a running machine: what a monitor (QMP) or any other
//! front end may ask of the VMM, and the lifecycle events it reports.
//!
//! [`VmControl`] is a cheap, cloneable, thread-safe handle. It never touches KVM
//! itself: requests that change the machine (quit, reset, power button) are queued
//! for the VMM's main loop; pause and resume act on the vCPU threads directly and
//! return once every vCPU is parked (or released).
//!
//! Events ([`VmEvent`]) are delivered to every subscriber ([`VmControl::subscribe`])
//! in the order they happen, with QEMU's names and reasons so a QMP server can
//! forward them as they are.

use std::collections::VecDeque;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use vmm_sys_util::eventfd::EventFd;

use crate::vcpu::VcpuGate;

/// Errors of control requests.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request needs running vCPUs and the machine has none.
    #[error("the guest is not running (state '{0}')")]
    NotRunning(&'static str),
    /// A vCPU did not stop within the time allowed.
    #[error("vCPU threads did not stop within {0:?}")]
    PauseTimeout(Duration),
    /// The main loop could not be woken.
    #[error("cannot wake the VMM main loop")]
    Wake(#[source] std::io::Error),
}

/// The machine's run state, as QEMU's `RunState` names it (`query-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Built, vCPUs not started yet.
    Prelaunch,
    /// vCPUs running.
    Running,
    /// vCPUs parked by [`VmControl::pause`].
    Paused,
    /// The guest shut down (power-off or reset) and the VMM keeps the process.
    Shutdown,
    /// KVM reported an error it cannot continue from (emulation failure, triple fault).
    InternalError,
    /// The guest reported a panic (pvpanic).
    GuestPanicked,
}

impl RunState {
    /// The QMP `status` string.
    pub fn as_qmp_str(self) -> &'static str {
        match self {
            RunState::Prelaunch => "prelaunch",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Shutdown => "shutdown",
            RunState::InternalError => "internal-error",
            RunState::GuestPanicked => "guest-panicked",
        }
    }

    /// QMP `running`: true only while vCPUs run.
    pub fn is_running(self) -> bool {
        self == RunState::Running
    }
}

/// Why the machine shut down or reset (QEMU's `ShutdownCause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownCause {
    /// The guest powered off (ACPI S5).
    GuestShutdown,
    /// The guest reset itself (reset register, keyboard controller).
    GuestReset,
    /// The guest panicked (pvpanic) and the action was to stop.
    GuestPanic,
    /// QMP `quit`.
    HostQmpQuit,
    /// QMP `system_reset`.
    HostQmpSystemReset,
    /// SIGTERM, SIGINT or SIGHUP.
    HostSignal,
    /// The VMM itself failed (for example a KVM error).
    HostError,
}

impl ShutdownCause {
    /// The QMP `reason` string.
    pub fn as_qmp_str(self) -> &'static str {
        match self {
            ShutdownCause::GuestShutdown => "guest-shutdown",
            ShutdownCause::GuestReset => "guest-reset",
            ShutdownCause::GuestPanic => "guest-panic",
            ShutdownCause::HostQmpQuit => "host-qmp-quit",
            ShutdownCause::HostQmpSystemReset => "host-qmp-system-reset",
            ShutdownCause::HostSignal => "host-signal",
            ShutdownCause::HostError => "host-error",
        }
    }

    /// QMP `guest`: whether the guest caused it.
    pub fn is_guest(self) -> bool {
        matches!(
            self,
            ShutdownCause::GuestShutdown | ShutdownCause::GuestReset | ShutdownCause::GuestPanic
        )
    }
}

/// What the VMM did after a guest panic (QMP `GUEST_PANICKED` `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicAction {
    /// vCPUs stopped, process kept.
    Pause,
    /// The machine was destroyed.
    Poweroff,
    /// The machine was reset.
    Run,
}

impl PanicAction {
    /// The QMP `action` string.
    pub fn as_qmp_str(self) -> &'static str {
        match self {
            PanicAction::Pause => "pause",
            PanicAction::Poweroff => "poweroff",
            PanicAction::Run => "run",
        }
    }
}

/// Lifecycle events, named as the QMP events they become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    /// `STOP`: the vCPUs were paused.
    Stop,
    /// `RESUME`: the vCPUs run again.
    Resume,
    /// `SHUTDOWN`: the machine is going down (or stays down with `preserve`).
    Shutdown { guest: bool, reason: ShutdownCause },
    /// `POWERDOWN`: the ACPI power button was pressed.
    Powerdown,
    /// `RESET`: the machine was reset.
    Reset { guest: bool, reason: ShutdownCause },
    /// `GUEST_PANICKED`.
    GuestPanicked { action: PanicAction },
    /// `VSERPORT_CHANGE`: the guest opened or closed virtio-serial port `id` (how
    /// libvirt learns that a guest agent listens).
    VserportChange { id: String, open: bool },
}

/// One vCPU thread (QMP `query-cpus-fast`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuThreadInfo {
    /// vCPU index, 0-based (`cpu-index`).
    pub cpu_index: u32,
    /// Linux thread id (`thread-id`).
    pub thread_id: i32,
    /// Topology position (`props`).
    pub socket_id: u32,
    pub die_id: u32,
    pub core_id: u32,
    pub thread_id_in_core: u32,
}

/// One character device (QMP `query-chardev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChardevInfo {
    /// QEMU-style id: `char` + the device id (`charserial0`).
    pub label: String,
    /// QEMU-style filename: `pty:/dev/pts/3`, `file:/path`, `unix:/path,server=on`,
    /// `tcp:host:port,server=on`, `stdio`, `null`.
    pub filename: String,
    /// Whether a guest device uses it (always true for our serial ports).
    pub frontend_open: bool,
}

/// Work for the VMM's main loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    Quit,
    Reset,
    PowerButton,
    /// Look at the queued saves ([`VmControl::save`]).
    Save,
}

/// A save the main loop owes: where to write and whom to answer (bytes written, or
/// why not).
pub(crate) struct SaveJob {
    pub(crate) out: std::fs::File,
    pub(crate) reply: Sender<Result<u64, String>>,
}

/// State shared by all handles and the VMM.
pub(crate) struct Shared {
    state: Mutex<RunState>,
    requests: Mutex<VecDeque<Request>>,
    saves: Mutex<Vec<SaveJob>>,
    /// Wakes the main loop when a request is queued.
    pub(crate) wake: EventFd,
    /// Live subscribers, each with the id [`VmControl::unsubscribe`] takes.
    subscribers: Mutex<Subscribers>,
    pub(crate) vcpus: VcpuGate,
    chardevs: Mutex<Vec<ChardevInfo>>,
    memory_size: u64,
}

#[derive(Default)]
struct Subscribers {
    next_id: u64,
    list: Vec<(u64, Sender<VmEvent>)>,
}

/// Names one subscription, for [`VmControl::unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionId(u64);

/// How long [`VmControl::pause`] waits for every vCPU to park.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on a running machine. Clone it freely; every clone controls the same machine.
#[derive(Clone)]
pub struct VmControl {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder leaves plain data behind; keep going with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl VmControl {
    /// A handle for a machine of `memory_size` bytes, in state `prelaunch`.
    pub(crate) fn new(memory_size: u64) -> std::io::Result<Self> {
        Ok(VmControl {
            shared: Arc::new(Shared {
                state: Mutex::new(RunState::Prelaunch),
                requests: Mutex::new(VecDeque::new()),
                saves: Mutex::new(Vec::new()),
                wake: EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
                subscribers: Mutex::new(Subscribers::default()),
                vcpus: VcpuGate::new(),
                chardevs: Mutex::new(Vec::new()),
                memory_size,
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The current run state.
    pub fn status(&self) -> RunState {
        *lock(&self.shared.state)
    }

    /// Keeps the vCPUs parked from their first instruction (QEMU's `-S`): the
    /// machine comes up `paused` and runs on `cont`.
    pub fn start_paused(&self) {
        // No vCPU thread exists yet, so none needs to be waited for.
        self.shared.vcpus.pause(Duration::ZERO);
    }

    /// Parks every vCPU thread and returns once all are parked. Emits `STOP`.
    /// Pausing a paused machine succeeds and changes nothing (as QEMU's `stop`);
    /// before launch it keeps the vCPUs from starting (QEMU accepts `stop` in
    /// `prelaunch` too).
    pub fn pause(&self) -> Result<(), ControlError> {
        let mut state = lock(&self.shared.state);
        match *state {
            RunState::Running => {}
            RunState::Paused => return Ok(()),
            RunState::Prelaunch => {
                self.start_paused();
                return Ok(());
            }
            other => return Err(ControlError::NotRunning(other.as_qmp_str())),
        }
        if !self.shared.vcpus.pause(PAUSE_TIMEOUT) {
            // Leave them to park when they can, but report the failure.
            return Err(ControlError::PauseTimeout(PAUSE_TIMEOUT));
        }
        *state = RunState::Paused;
        drop(state);
        self.emit(VmEvent::Stop);
        Ok(())
    }

    /// Releases parked vCPUs. Emits `RESUME`. Resuming a running machine is a no-op.
    pub fn resume(&self) -> Result<(), ControlError> {
        let mut state = lock(&self.shared.state);
        match *state {
            RunState::Paused => {}
            RunState::Running => return Ok(()),
            other => return Err(ControlError::NotRunning(other.as_qmp_str())),
        }
        self.shared.vcpus.resume();
        *state = RunState::Running;
        drop(state);
        self.emit(VmEvent::Resume);
        Ok(())
    }

    /// Presses the ACPI power button (QMP `system_powerdown`): the guest gets an
    /// SCI and decides what to do. Emits `POWERDOWN`.
    pub fn power_button(&self) -> Result<(), ControlError> {
        self.request(Request::PowerButton)
    }

    /// Resets the machine (QMP `system_reset`): fresh memory, the kernel loaded
    /// again, vCPUs from their reset state. Emits `RESET` (host-qmp-system-reset).
    /// A paused machine stays paused after the reset.
    pub fn reset(&self) -> Result<(), ControlError> {
        self.request(Request::Reset)
    }

    /// Ends the VMM (QMP `quit`): emits `SHUTDOWN` (host-qmp-quit) and the process
    /// exits with `machine_spec::exit::HOST_STOP`.
    pub fn quit(&self) -> Result<(), ControlError> {
        self.request(Request::Quit)
    }

    /// Writes the machine's state to `out` (QMP `migrate`; `crate::vmstate`) and
    /// returns the bytes written once it is complete. A running guest is paused
    /// first and stays paused. Blocks until the main loop has done it.
    pub fn save(&self, out: std::fs::File) -> Result<u64, String> {
        let (reply, rx) = channel();
        lock(&self.shared.saves).push(SaveJob { out, reply });
        self.request(Request::Save).map_err(|e| e.to_string())?;
        rx.recv()
            .unwrap_or_else(|_| Err("the VMM stopped before the save ended".into()))
    }

    /// The vCPU threads of the machine as it runs now (they change on reset).
    pub fn vcpu_threads(&self) -> Vec<VcpuThreadInfo> {
        self.shared.vcpus.threads()
    }

    /// Linux thread ids of the vCPU threads, by vCPU index.
    pub fn vcpu_thread_ids(&self) -> Vec<i32> {
        self.vcpu_threads().iter().map(|t| t.thread_id).collect()
    }

    /// The character devices and where they lead (pty paths and so on).
    pub fn chardevs(&self) -> Vec<ChardevInfo> {
        lock(&self.shared.chardevs).clone()
    }

    /// Guest RAM in bytes (QMP `query-memory-size-summary` `base-memory`).
    pub fn memory_size(&self) -> u64 {
        self.shared.memory_size
    }

    /// A new receiver of every event emitted from now on.
    pub fn subscribe(&self) -> Receiver<VmEvent> {
        self.subscribe_with_id().0
    }

    /// As [`subscribe`](Self::subscribe), with the id that ends the subscription: a
    /// thread blocked in `recv` on it needs no timeout to notice that it should stop.
    pub fn subscribe_with_id(&self) -> (Receiver<VmEvent>, SubscriptionId) {
        let (tx, rx) = channel();
        let mut subs = lock(&self.shared.subscribers);
        let id = subs.next_id;
        subs.next_id += 1;
        subs.list.push((id, tx));
        (rx, SubscriptionId(id))
    }

    /// Drops the sending side of a subscription: its receiver gets what was already
    /// sent, then `Disconnected`.
    pub fn unsubscribe(&self, id: SubscriptionId) {
        lock(&self.shared.subscribers)
            .list
            .retain(|(i, _)| *i != id.0);
    }

    fn request(&self, req: Request) -> Result<(), ControlError> {
        lock(&self.shared.requests).push_back(req);
        self.shared.wake.write(1).map_err(ControlError::Wake)
    }

    // ---- VMM side ----

    pub(crate) fn take_requests(&self) -> Vec<Request> {
        // Drain the eventfd counter; it only says "look at the queue".
        let _ = self.shared.wake.read();
        lock(&self.shared.requests).drain(..).collect()
    }

    pub(crate) fn take_saves(&self) -> Vec<SaveJob> {
        std::mem::take(&mut *lock(&self.shared.saves))
    }

    pub(crate) fn set_status(&self, state: RunState) {
        *lock(&self.shared.state) = state;
    }

    pub(crate) fn set_chardevs(&self, devs: Vec<ChardevInfo>) {
        *lock(&self.shared.chardevs) = devs;
    }

    /// Sends `event` to every live subscriber.
    pub(crate) fn emit(&self, event: VmEvent) {
        tracing::debug!(?event, "event");
        lock(&self.shared.subscribers)
            .list
            .retain(|(_, tx)| tx.send(event.clone()).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmp_names_match_qemu() {
        assert_eq!(RunState::InternalError.as_qmp_str(), "internal-error");
        assert_eq!(ShutdownCause::HostQmpQuit.as_qmp_str(), "host-qmp-quit");
        assert!(ShutdownCause::GuestReset.is_guest());
        assert!(!ShutdownCause::HostSignal.is_guest());
    }

    #[test]
    fn events_reach_every_subscriber_and_requests_queue() {
        let c = VmControl::new(1 << 20).unwrap();
        let a = c.subscribe();
        let b = c.clone().subscribe();
        c.emit(VmEvent::Powerdown);
        assert_eq!(a.try_recv().unwrap(), VmEvent::Powerdown);
        assert_eq!(b.try_recv().unwrap(), VmEvent::Powerdown);
        c.quit().unwrap();
        c.power_button().unwrap();
        assert_eq!(c.take_requests(), vec![Request::Quit, Request::PowerButton]);
        assert!(c.take_requests().is_empty());
    }

    #[test]
    fn unsubscribing_ends_the_receiver_after_what_was_sent() {
        let c = VmControl::new(1 << 20).unwrap();
        let (a, id) = c.subscribe_with_id();
        let b = c.subscribe();
        c.emit(VmEvent::Powerdown);
        c.unsubscribe(id);
        c.emit(VmEvent::Powerdown);
        assert_eq!(a.recv().unwrap(), VmEvent::Powerdown);
        assert!(a.recv().is_err(), "the receiver is still connected");
        assert_eq!(b.try_recv().unwrap(), VmEvent::Powerdown);
        assert_eq!(b.try_recv().unwrap(), VmEvent::Powerdown);
    }

    #[test]
    fn pause_before_launch_keeps_the_vcpus_parked() {
        let c = VmControl::new(1 << 20).unwrap();
        c.pause().unwrap();
        assert_eq!(c.status(), RunState::Prelaunch);
        assert!(c.shared().vcpus.is_paused());
        c.set_status(RunState::Shutdown);
        assert!(matches!(
            c.pause(),
            Err(ControlError::NotRunning("shutdown"))
        ));
    }

    #[test]
    fn pause_and_resume_a_running_machine() {
        let c = VmControl::new(1 << 20).unwrap();
        c.set_status(RunState::Running);
        // No vCPU threads: every one of zero is parked at once.
        c.pause().unwrap();
        assert_eq!(c.status(), RunState::Paused);
        c.resume().unwrap();
        assert_eq!(c.status(), RunState::Running);
    }
}

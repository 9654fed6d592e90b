//! VMM processes: spawning `oxvirt-vmm` for a domain, finding it again after a
//! daemon restart, and the supervisor task that turns its QMP events and its exit
//! into state changes and events.
//!
//! The VMM runs in its own process group, so signals aimed at the daemon (a
//! terminal's Ctrl-C, a service stop) do not reach it, and it outlives the daemon.
//! The exit of a VMM the daemon spawned is read with `wait`; a VMM found again
//! after a restart is not our child, so its end is seen by its pid disappearing,
//! and the last QMP `SHUTDOWN` reason (kept in `status.json`) tells a power-off
//! from a crash.

use command_fds::{CommandFdExt, FdMapping};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use machine_spec::exit;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::event::{detail, kind, Event};
use super::monitor::{Monitor, MonitorError, QmpEvent};
use super::runtime::{self, RuntimeDir, Status};
use super::slot::{Record, Slot};
use super::state::{crashed, paused, shutoff, Change};
use super::{Core, Error, Result};

mod domain_log;

/// How long a new VMM may take to open its QMP socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running VMM.
pub(super) struct Vm {
    pub pid: i32,
    pub rt: RuntimeDir,
    pub monitor: Monitor,
    /// A host-initiated stop (destroy) is under way: the exit is not a crash.
    pub stopping: AtomicBool,
    /// The VMM is ending for a reason the exit cannot tell (its state was saved, a
    /// snapshot is being reverted to): the shut-off reason and STOPPED detail.
    pub stop_as: Mutex<Option<(i32, i32)>>,
    /// The domain is rebooting through a power-off (libvirt's "fake reboot").
    pub rebooting: AtomicBool,
    /// Reason the next `STOP` event stands for (set by suspend).
    pub pause_reason: AtomicI32,
    /// The last QMP `SHUTDOWN` reason.
    pub shutdown_reason: Mutex<Option<String>>,
    /// Becomes `true` once the process is gone and the domain is shut off.
    pub exited: watch::Sender<bool>,
}

impl Vm {
    /// Ends the VMM on purpose, the domain stopping with shut-off `reason` and
    /// STOPPED `detail` (QMP `quit`; killed if it does not go within 30 s).
    pub async fn end_as(&self, reason: i32, detail: i32) {
        *self.stop_as.lock().expect("poisoned") = Some((reason, detail));
        self.stopping.store(true, Ordering::SeqCst);
        if let Err(e) = self.qmp("quit", None).await {
            tracing::debug!(error = %e, "quit");
        }
        if !self.wait_exit(Duration::from_secs(30)).await {
            self.signal(Signal::SIGKILL);
            self.wait_exit(Duration::from_secs(10)).await;
        }
    }

    /// The status file content for this VMM and `rec`.
    pub fn status(&self, uuid: Uuid, rec: &Record) -> Status {
        let mut st = Status::of(uuid, rec, self.pid, &self.rt);
        st.shutdown_reason = self.shutdown_reason.lock().expect("poisoned").clone();
        st.stopping = self.stopping.load(Ordering::SeqCst);
        st
    }

    /// Sends `sig` to the VMM.
    pub fn signal(&self, sig: Signal) {
        if let Err(e) = signal::kill(Pid::from_raw(self.pid), sig) {
            tracing::debug!(pid = self.pid, error = %e, "cannot signal VMM");
        }
    }

    /// Waits until the supervisor has seen the process go, up to `timeout`.
    pub async fn wait_exit(&self, timeout: Duration) -> bool {
        let mut rx = self.exited.subscribe();
        let done = tokio::time::timeout(timeout, rx.wait_for(|done| *done)).await;
        done.is_ok()
    }

    /// Runs a QMP command, turning monitor failures into libvirt errors.
    pub async fn qmp(&self, command: &str, args: Option<Value>) -> Result<Value> {
        self.qmp_with_fds(command, args, &[]).await
    }

    /// [`Vm::qmp`] with file descriptors passed along (`getfd`).
    pub async fn qmp_with_fds(
        &self,
        command: &str,
        args: Option<Value>,
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> Result<Value> {
        self.qmp_fds_within(command, args, fds, super::monitor::COMMAND_TIMEOUT)
            .await
    }

    /// [`Vm::qmp`] with its own time limit.
    pub async fn qmp_within(
        &self,
        command: &str,
        args: Option<Value>,
        limit: Duration,
    ) -> Result<Value> {
        self.qmp_fds_within(command, args, &[], limit).await
    }

    async fn qmp_fds_within(
        &self,
        command: &str,
        args: Option<Value>,
        fds: &[std::os::fd::BorrowedFd<'_>],
        limit: Duration,
    ) -> Result<Value> {
        self.monitor
            .execute_within(command, args, fds, limit)
            .await
            .map_err(|e| match e {
                MonitorError::Command { desc, .. } => Error::OperationFailed(desc),
                MonitorError::Closed => Error::OperationInvalid("domain is not running".into()),
                MonitorError::Timeout(c) => {
                    Error::OperationTimeout(format!("monitor command '{c}' got no reply"))
                }
                other => Error::Internal(other.to_string()),
            })
    }
}

/// How a VMM ended, as far as the daemon could see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExitInfo {
    Code(i32),
    Signal(i32),
    /// Not our child: only that it is gone.
    Gone,
}

/// Where the supervisor learns of the exit.
enum ExitSource {
    Child(tokio::process::Child),
    Pid,
}

impl ExitSource {
    async fn wait(&mut self, pid: i32, qmp: &Path) -> ExitInfo {
        match self {
            ExitSource::Child(child) => match child.wait().await {
                Ok(st) => {
                    use std::os::unix::process::ExitStatusExt;
                    match (st.code(), st.signal()) {
                        (Some(c), _) => ExitInfo::Code(c),
                        (None, Some(s)) => ExitInfo::Signal(s),
                        _ => ExitInfo::Gone,
                    }
                }
                Err(_) => ExitInfo::Gone,
            },
            ExitSource::Pid => {
                while runtime::vmm_alive(pid, qmp) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                ExitInfo::Gone
            }
        }
    }
}

/// The shut-off reason and STOPPED detail for an exit.
pub(super) fn classify(
    info: ExitInfo,
    stopping: bool,
    shutdown_reason: Option<&str>,
) -> (i32, i32) {
    let destroyed = (shutoff::DESTROYED, detail::stopped::DESTROYED);
    let shutdown = (shutoff::SHUTDOWN, detail::stopped::SHUTDOWN);
    let crashed = (shutoff::CRASHED, detail::stopped::CRASHED);
    let failed = (shutoff::CRASHED, detail::stopped::FAILED);
    if stopping {
        return destroyed;
    }
    match info {
        ExitInfo::Code(exit::POWEROFF) | ExitInfo::Code(exit::REBOOT) => shutdown,
        ExitInfo::Code(exit::CRASH) => crashed,
        ExitInfo::Code(exit::HOST_STOP) => destroyed,
        ExitInfo::Code(_) | ExitInfo::Signal(_) => failed,
        ExitInfo::Gone => match shutdown_reason {
            Some("guest-shutdown") | Some("guest-reset") => shutdown,
            Some("guest-panic") => crashed,
            Some("host-signal") | Some("host-qmp-quit") => destroyed,
            _ => failed,
        },
    }
}

impl Core {
    /// Spawns the VMM for `slot` from `spec`, waits for its monitor, and starts
    /// supervising it. The caller holds the domain's job lock and sets the state.
    pub(super) async fn launch(
        &self,
        slot: &Arc<Slot>,
        name: &str,
        mut spec: machine_spec::MachineSpec,
        live_xml: &str,
        paused: bool,
    ) -> Result<Arc<Vm>> {
        let rt = RuntimeDir::new(&self.inner.config.runtime_dir, name);
        // The user database may be slow (NSS, LDAP): off the async workers.
        let run_as = {
            let core = self.clone();
            let label = spec.run_as.clone();
            tokio::task::spawn_blocking(move || core.vmm_ids(label.as_deref()))
                .await
                .map_err(|e| Error::Internal(format!("cannot look up the VMM's user: {e}")))??
        };
        rt.create()?;
        if let Some(user) = &run_as {
            // The VMM makes its sockets and pid file here, as that user.
            if let Err(e) = nix::unistd::chown(rt.path(), Some(user.uid), Some(user.gid)) {
                let _ = rt.remove();
                return Err(Error::System(format!(
                    "cannot give '{}' to user '{}': {e}",
                    rt.path().display(),
                    user.label
                )));
            }
        }
        redirect_stdio_consoles(&mut spec, &rt);
        // The taps, created and on their bridges, go to the VMM as descriptors; ours
        // close when this function returns (the taps live as long as the VMM does).
        let taps = match super::tap::open_for_spec(&self.inner.config.vmm, &mut spec).await {
            Ok(t) => t,
            Err(e) => {
                let _ = rt.remove();
                return Err(e);
            }
        };
        // Images, media, kernel and firmware go to the VMM open too, after the taps.
        let first = super::tap::FIRST_FD + taps.len() as i32;
        let ids = run_as.as_ref().map(|u| (u.uid, u.gid, u.label.clone()));
        let prepared = tokio::task::spawn_blocking(move || {
            super::handover::prepare(&spec, ids.as_ref().map(|(uid, gid, _)| (*uid, *gid)))
                .map_err(|e| match &ids {
                    Some((_, _, user)) => Error::System(format!(
                        "cannot prepare the domain's files for user '{user}': {e}"
                    )),
                    None => Error::System(format!("cannot prepare the domain's files: {e}")),
                })?;
            let files = super::handover::open_for_spec(&mut spec, first, ids.is_some());
            Ok::<_, Error>((spec, files))
        })
        .await
        .map_err(|e| Error::Internal(format!("cannot open the domain's files: {e}")))?;
        let (spec, files) = match prepared {
            Ok(p) => p,
            Err(e) => {
                let _ = rt.remove();
                return Err(e);
            }
        };
        super::fsutil::write_atomic(&rt.spec(), spec.to_json().as_bytes(), 0o600)?;
        super::fsutil::write_atomic(&rt.live_xml(), live_xml.as_bytes(), 0o600)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(rt.log())
            .map_err(|e| Error::io("open log file", &rt.log(), &e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("open log file", &rt.log(), &e))?;
        let vmm = &self.inner.config.vmm;
        let mut command = tokio::process::Command::new(vmm);
        let mappings = taps
            .into_iter()
            .chain(files)
            .zip(super::tap::FIRST_FD..)
            .map(|(parent_fd, child_fd)| FdMapping {
                parent_fd,
                child_fd,
            })
            .collect();
        command
            .fd_mappings(mappings)
            .map_err(|e| Error::Internal(format!("cannot hand the VMM its files: {e}")))?;
        let mut child = command
            // Relative paths in the spec (a unix channel without a path: libvirt's
            // guest agent channel as virt-install writes it) live in the runtime dir.
            .current_dir(rt.path())
            .arg("--spec")
            .arg(rt.spec())
            .arg("--qmp")
            .arg(rt.qmp())
            .arg("--pidfile")
            .arg(rt.pidfile())
            // vCPUs parked from the start, as libvirt starts QEMU with -S.
            .args(paused.then_some("--paused"))
            // Its taps come open (above), so it keeps no CAP_NET_ADMIN.
            .arg("--no-net-admin")
            // Its images, media, kernel and firmware come open too (above; add-fd for
            // hot-plug and media), so it keeps no CAP_DAC_* either.
            .arg("--no-dac")
            // Everything comes open, so the host's files can be read-only to it, its
            // runtime directory the one place it writes (a TPM's state besides).
            .arg("--mount-sandbox")
            .arg(rt.path())
            .args(run_as.as_ref().map(VmmIds::args).into_iter().flatten())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| {
                let _ = rt.remove();
                Error::io("execute", vmm, &e)
            })?;
        let pid = child.id().map(|p| p as i32).unwrap_or(-1);
        tracing::info!(domain = name, pid, "VMM started");
        if let Err(e) = place_in_cgroup(name, pid, live_xml) {
            let _ = child.start_kill();
            let _ = child.wait().await;
            let _ = rt.remove();
            return Err(e);
        }

        // Wait for the monitor socket, then for the machine: the VMM serves its monitor
        // while it builds the machine (both start at once), so a greeting is not yet a
        // start — a disk, kernel or firmware that cannot be opened ends the build and the
        // process. The start is done once the status leaves `prelaunch`; an exit before
        // that is reported with its reason from the domain log.
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut connected = None;
        let (monitor, events) = loop {
            if let Ok(Some(st)) = child.try_wait() {
                let tail = rt.log_tail(2000);
                let _ = rt.remove();
                return Err(Error::Internal(format!(
                    "process exited while connecting to monitor ({st}): {tail}"
                )));
            }
            match &connected {
                None if rt.qmp().exists() => match Monitor::connect(&rt.qmp()).await {
                    Ok(pair) => {
                        connected = Some(pair);
                        continue;
                    }
                    Err(e) => tracing::debug!(error = %e, "monitor not ready"),
                },
                None => {}
                Some((monitor, _)) => match monitor.execute("query-status", None).await {
                    Ok(v) if v["status"] != "prelaunch" => {
                        break connected.take().expect("connected");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "query-status during start"),
                },
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let tail = rt.log_tail(2000);
                let _ = rt.remove();
                let what = match connected {
                    None => "open its monitor",
                    Some(_) => "finish building the machine",
                };
                return Err(Error::OperationTimeout(format!(
                    "VMM for domain '{name}' did not {what}: {tail}"
                )));
            }
            let pause = if connected.is_some() { 5 } else { 20 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        };
        let vm = Arc::new(Vm {
            pid,
            rt,
            monitor,
            stopping: AtomicBool::new(false),
            stop_as: Mutex::new(None),
            rebooting: AtomicBool::new(false),
            pause_reason: AtomicI32::new(paused::UNKNOWN),
            shutdown_reason: Mutex::new(None),
            exited: watch::channel(false).0,
        });
        self.spawn_supervisor(slot.clone(), vm.clone(), events, ExitSource::Child(child));
        Ok(vm)
    }

    /// Who the VMM runs as: the domain's static DAC label (`label`, `USER:GROUP`), else
    /// `vmm_user` from the config; only a root daemon starts VMMs so. Looked up now, so
    /// that a missing user or group fails the start by name. `None`: as the daemon
    /// (root with `vmm_user = "root"` or a label naming root, or a session daemon).
    fn vmm_ids(&self, label: Option<&str>) -> Result<Option<VmmIds>> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let (label, what) = match (label, &self.inner.config.vmm_user) {
            (Some(l), _) => (l, "the domain's <seclabel> user"),
            (None, Some(u)) => (u.as_str(), "vmm_user"),
            (None, None) => return Ok(None),
        };
        VmmIds::resolve(label).map_err(|why| {
            Error::ConfigUnsupported(format!(
                "{what} '{label}': {why}{}",
                if label == crate::config::DEFAULT_VMM_USER {
                    " (the package creates it: systemd-sysusers oxvirt.conf; or set \
                     vmm_user = \"root\" in oxvirtd.toml)"
                } else {
                    ""
                }
            ))
        })
    }

    /// Ends a VMM whose start failed after launch (nothing recorded it yet): kills
    /// it, waits for it so its taps and sockets are gone, and removes its runtime dir.
    pub(super) async fn discard(&self, vm: &Arc<Vm>) {
        vm.stopping.store(true, Ordering::SeqCst);
        vm.signal(Signal::SIGKILL);
        if !vm.wait_exit(Duration::from_secs(10)).await {
            tracing::error!(pid = vm.pid, "a VMM whose start failed did not exit");
        }
        let _ = vm.rt.remove();
    }

    /// Reattaches to a VMM found in `rt` after a daemon restart.
    pub(super) async fn adopt(
        &self,
        slot: &Arc<Slot>,
        rt: RuntimeDir,
        status: &Status,
    ) -> Result<Arc<Vm>> {
        let (monitor, events) = Monitor::connect(&rt.qmp())
            .await
            .map_err(|e| Error::Internal(format!("cannot reconnect to monitor: {e}")))?;
        let vm = Arc::new(Vm {
            pid: status.pid,
            rt,
            monitor,
            stopping: AtomicBool::new(status.stopping),
            stop_as: Mutex::new(None),
            rebooting: AtomicBool::new(false),
            pause_reason: AtomicI32::new(paused::UNKNOWN),
            shutdown_reason: Mutex::new(status.shutdown_reason.clone()),
            exited: watch::channel(false).0,
        });
        self.spawn_supervisor(slot.clone(), vm.clone(), events, ExitSource::Pid);
        Ok(vm)
    }

    fn spawn_supervisor(
        &self,
        slot: Arc<Slot>,
        vm: Arc<Vm>,
        mut events: mpsc::UnboundedReceiver<QmpEvent>,
        mut exit: ExitSource,
    ) {
        let core = self.clone();
        tokio::spawn(async move {
            let qmp = vm.rt.qmp();
            let info = loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Some(ev) => core.on_qmp_event(&slot, &vm, ev),
                        None => break core.wait_after_monitor_loss(&slot, &vm, &mut exit).await,
                    },
                    info = exit.wait(vm.pid, &qmp) => break info,
                }
            };
            core.on_vmm_exit(&slot, &vm, info).await;
        });
    }

    /// The monitor connection ended. A VMM that is exiting is gone within moments;
    /// one that stays without its monitor is reported (`ControlError`) and waited for.
    async fn wait_after_monitor_loss(
        &self,
        slot: &Arc<Slot>,
        vm: &Arc<Vm>,
        exit: &mut ExitSource,
    ) -> ExitInfo {
        let qmp = vm.rt.qmp();
        match tokio::time::timeout(Duration::from_secs(5), exit.wait(vm.pid, &qmp)).await {
            Ok(info) => info,
            Err(_) => {
                tracing::error!(domain = %slot.name(), pid = vm.pid, "lost the monitor of a running VMM");
                self.emit(Event::ControlError {
                    domain: slot.domain_ref(),
                });
                exit.wait(vm.pid, &qmp).await
            }
        }
    }

    fn on_qmp_event(&self, slot: &Arc<Slot>, vm: &Arc<Vm>, ev: QmpEvent) {
        tracing::debug!(domain = %slot.name(), event = ev.name, data = %ev.data, "QMP event");
        let lifecycle = |event: i32, detail: i32| Event::Lifecycle {
            domain: slot.domain_ref(),
            event,
            detail,
        };
        match ev.name.as_str() {
            "STOP" => {
                let reason = vm.shutdown_reason.lock().expect("poisoned").clone();
                let (change, event) = match reason.as_deref() {
                    Some("guest-panic") => (
                        Change::Crash(crashed::PANICKED),
                        lifecycle(kind::CRASHED, detail::crashed::PANICKED),
                    ),
                    Some(_) => (
                        Change::Pause(paused::SHUTTING_DOWN),
                        lifecycle(kind::SUSPENDED, detail::suspended::PAUSED),
                    ),
                    None => (
                        Change::Pause(vm.pause_reason.swap(paused::UNKNOWN, Ordering::SeqCst)),
                        lifecycle(kind::SUSPENDED, detail::suspended::PAUSED),
                    ),
                };
                if let Ok(Some(_)) = slot.apply(change) {
                    self.emit(event);
                }
            }
            "RESUME" => {
                *vm.shutdown_reason.lock().expect("poisoned") = None;
                if let Ok(Some(_)) = slot.apply(Change::Resume) {
                    self.emit(lifecycle(kind::RESUMED, detail::resumed::UNPAUSED));
                }
            }
            "SHUTDOWN" => {
                let reason = ev.data["reason"].as_str().unwrap_or("").to_string();
                let guest = ev.data["guest"].as_bool().unwrap_or(false);
                *vm.shutdown_reason.lock().expect("poisoned") = Some(reason);
                {
                    let r = slot.rec();
                    let _ = vm.rt.write_status(&vm.status(slot.uuid, &r));
                }
                if !vm.rebooting.load(Ordering::SeqCst) {
                    let d = if guest {
                        detail::shutdown::GUEST
                    } else {
                        detail::shutdown::HOST
                    };
                    self.emit(lifecycle(kind::SHUTDOWN, d));
                }
            }
            "RESET" => {
                *vm.shutdown_reason.lock().expect("poisoned") = None;
                self.emit(Event::Reboot {
                    domain: slot.domain_ref(),
                });
            }
            "BALLOON_CHANGE" => {
                if let Some(actual) = ev.data["actual"].as_u64() {
                    self.emit(Event::BalloonChange {
                        domain: slot.domain_ref(),
                        actual_kib: actual / 1024,
                    });
                }
            }
            "BLOCK_IO_ERROR" => {
                let node = ev.data["node-name"].as_str().unwrap_or_default();
                let qdev = ev.data["device"].as_str().unwrap_or_default();
                let disk = slot
                    .rec()
                    .live
                    .as_ref()
                    .and_then(|l| l.translate().ok())
                    .and_then(|spec| {
                        spec.devices.into_iter().find_map(|d| match d.kind {
                            machine_spec::DeviceKind::Disk(disk)
                                if [qdev, node].iter().any(|n| {
                                    !n.is_empty()
                                        && (*n == d.id || *n == disk.target || n.ends_with(&d.id))
                                }) =>
                            {
                                Some((disk.path.display().to_string(), d.id))
                            }
                            _ => None,
                        })
                    });
                let (src_path, device) = disk.unwrap_or_else(|| (String::new(), node.to_string()));
                let action = match ev.data["action"].as_str() {
                    Some("stop") => 1,
                    Some("report") => 2,
                    _ => 0,
                };
                self.emit(Event::IoError {
                    domain: slot.domain_ref(),
                    src_path,
                    device,
                    action,
                    reason: ev.data["reason"].as_str().unwrap_or_default().to_string(),
                });
            }
            "DEVICE_TRAY_MOVED" => self.tray_moved(slot, vm, &ev.data),
            "VSERPORT_CHANGE" => self.vserport_changed(&slot.uuid, &ev.data),
            "DEVICE_DELETED" => self.device_deleted(slot, vm, &ev.data),
            name @ ("VNC_CONNECTED" | "VNC_INITIALIZED" | "VNC_DISCONNECTED") => {
                if let Some(e) = super::graphics_event::from_qmp(slot.domain_ref(), name, &ev.data)
                {
                    self.emit(e);
                }
            }
            "GUEST_PANICKED" => {
                *vm.shutdown_reason.lock().expect("poisoned") = Some("guest-panic".into());
            }
            _ => {}
        }
    }

    /// The VMM is gone: shut the domain off with the reason its exit tells, clean
    /// its runtime dir, drop a transient domain, or restart it for a reboot.
    async fn on_vmm_exit(&self, slot: &Arc<Slot>, vm: &Arc<Vm>, info: ExitInfo) {
        super::vm_cgroup::remove(&slot.name(), vm.pid);
        let stopping = vm.stopping.load(Ordering::SeqCst);
        let reason = vm.shutdown_reason.lock().expect("poisoned").clone();
        let stop_as = *vm.stop_as.lock().expect("poisoned");
        let (shutoff_reason, stopped_detail) =
            stop_as.unwrap_or_else(|| classify(info, stopping, reason.as_deref()));
        let rebooting =
            vm.rebooting.load(Ordering::SeqCst) && !stopping && shutoff_reason == shutoff::SHUTDOWN;
        tracing::info!(domain = %slot.name(), ?info, shutoff_reason, rebooting, "VMM exited");
        let dom = slot.domain_ref();
        let (transient, has_tpm) = {
            let mut r = slot.rec();
            let same_vm = r.vm.as_ref().is_some_and(|v| Arc::ptr_eq(v, vm));
            if !same_vm {
                // A VMM discarded before it was recorded (a start that failed
                // after launch): its waiter is all that is left to tell.
                vm.exited.send_replace(true);
                return;
            }
            r.vm = None;
            r.id = -1;
            let has_tpm = r.live.as_ref().is_some_and(|d| d.has_tpm());
            if !rebooting {
                r.live = None;
            }
            (!r.persistent(), has_tpm)
        };
        let _ = slot.apply(Change::Stop(shutoff_reason));
        match domain_log::keep(&self.inner.config.runtime_dir, &slot.name(), &vm.rt) {
            // A crash's cause (a seccomp kill names the system call) in the daemon's log too.
            Ok(Some(last)) if shutoff_reason == shutoff::CRASHED => {
                tracing::warn!(domain = %slot.name(), "VMM crashed: {last}")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot keep the domain log"),
        }
        if let Err(e) = vm.rt.remove() {
            tracing::warn!(error = %e, "cannot remove runtime dir");
        }
        vm.exited.send_replace(true);
        if rebooting {
            let core = self.clone();
            let slot = slot.clone();
            tokio::spawn(async move { core.restart_after_reboot(&slot).await });
            return;
        }
        self.emit(Event::Lifecycle {
            domain: dom,
            event: kind::STOPPED,
            detail: stopped_detail,
        });
        if transient {
            self.inner
                .domains
                .write()
                .expect("domain map poisoned")
                .remove(&slot.uuid);
            // As libvirt: a transient domain's TPM state ends with it.
            super::tpmstate::on_undefine(&slot.uuid, has_tpm, 0);
        }
    }
}

/// Moves the VMM into its cgroup with the tuning of its live definition.
fn place_in_cgroup(name: &str, pid: i32, live_xml: &str) -> Result<()> {
    let dom = domain_xml::Domain::parse(live_xml)?;
    let tuning = domain_xml::tuning::tuning(&dom)?;
    if pid < 0 {
        return Err(Error::Internal(format!(
            "the VMM of domain '{name}' has no pid"
        )));
    }
    super::vm_cgroup::place(name, pid, &tuning)
}

/// The user and group a VMM runs as (`oxvirt-vmm --run-as LABEL`).
#[derive(Debug, Clone)]
pub(super) struct VmmIds {
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
    /// `USER` or `USER:GROUP` as given (names, or `+UID:+GID`), for messages.
    label: String,
    /// The supplementary groups (the user's own, as libvirt gives QEMU's user).
    groups: Vec<nix::unistd::Gid>,
}

impl VmmIds {
    /// libvirt's DAC label form, `+UID:+GID` (capabilities' `<baselabel>`).
    pub(super) fn numeric(&self) -> String {
        format!("+{}:+{}", self.uid, self.gid)
    }

    /// Looks up `USER[:GROUP]` as libvirt reads DAC labels and qemu.conf's
    /// `user`/`group`: names, or numbers with a leading `+`. A missing group is the
    /// user's primary one. `None` for root (the VMM stays root).
    pub(super) fn resolve(label: &str) -> std::result::Result<Option<VmmIds>, String> {
        use nix::unistd::{Gid, Group, Uid, User};
        let (user, group) = match label.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (label, None),
        };
        let number = |s: &str| s.strip_prefix('+').and_then(|n| n.parse::<u32>().ok());
        let entry = match number(user) {
            Some(uid) => User::from_uid(Uid::from_raw(uid)),
            None => User::from_name(user),
        }
        .map_err(|e| format!("cannot look up user '{user}': {e}"))?;
        let uid = match (&entry, number(user)) {
            (Some(u), _) => u.uid,
            (None, Some(uid)) => Uid::from_raw(uid),
            (None, None) => return Err(format!("no user '{user}' on this host")),
        };
        let gid = match (group, &entry) {
            (Some(g), _) => match number(g) {
                Some(gid) => Gid::from_raw(gid),
                None => {
                    Group::from_name(g)
                        .map_err(|e| format!("cannot look up group '{g}': {e}"))?
                        .ok_or_else(|| format!("no group '{g}' on this host"))?
                        .gid
                }
            },
            (None, Some(u)) => u.gid,
            (None, None) => return Err(format!("uid {user} has no group: name one")),
        };
        if uid.is_root() {
            return Ok(None);
        }
        let groups = match &entry {
            Some(u) => std::ffi::CString::new(u.name.clone())
                .ok()
                .and_then(|n| nix::unistd::getgrouplist(&n, gid).ok())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(Some(VmmIds {
            uid,
            gid,
            label: label.to_string(),
            groups,
        }))
    }

    /// `oxvirt-vmm` arguments: numeric ids and the group list, so that the VMM
    /// looks nothing up (see `vmm::privilege::run_as`).
    fn args(&self) -> [String; 4] {
        let groups: Vec<String> = self.groups.iter().map(|g| g.as_raw().to_string()).collect();
        [
            "--run-as".into(),
            format!("+{}:+{}", self.uid.as_raw(), self.gid.as_raw()),
            "--groups".into(),
            // A lone primary group when the user has no others.
            if groups.is_empty() {
                self.gid.as_raw().to_string()
            } else {
                groups.join(",")
            },
        ]
    }
}

/// Serial consoles on the VMM's stdio would land in its log: send them to
/// `console.log` in the runtime dir instead, where tools and tests read them.
fn redirect_stdio_consoles(spec: &mut machine_spec::MachineSpec, rt: &RuntimeDir) {
    use machine_spec::{CharBackend, DeviceKind};
    for dev in &mut spec.devices {
        let backend = match &mut dev.kind {
            DeviceKind::Serial(s) => &mut s.backend,
            DeviceKind::Console(c) => &mut c.backend,
            _ => continue,
        };
        if matches!(backend, CharBackend::Stdio) {
            *backend = CharBackend::File {
                path: rt.console(),
                append: true,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_tells_poweroff_from_crash() {
        assert_eq!(
            classify(ExitInfo::Code(exit::POWEROFF), false, None),
            (shutoff::SHUTDOWN, detail::stopped::SHUTDOWN)
        );
        assert_eq!(
            classify(ExitInfo::Code(exit::CRASH), false, None),
            (shutoff::CRASHED, detail::stopped::CRASHED)
        );
        assert_eq!(
            classify(ExitInfo::Signal(9), false, None),
            (shutoff::CRASHED, detail::stopped::FAILED)
        );
        assert_eq!(
            classify(ExitInfo::Signal(15), true, None),
            (shutoff::DESTROYED, detail::stopped::DESTROYED)
        );
    }

    #[test]
    fn reattached_exit_uses_the_last_shutdown_reason() {
        assert_eq!(
            classify(ExitInfo::Gone, false, Some("guest-shutdown")).0,
            shutoff::SHUTDOWN
        );
        assert_eq!(classify(ExitInfo::Gone, false, None).0, shutoff::CRASHED);
        assert_eq!(
            classify(ExitInfo::Gone, false, Some("host-signal")).0,
            shutoff::DESTROYED
        );
    }
}

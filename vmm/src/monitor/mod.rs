//! The QMP monitor inside the VMM: serves `--qmp PATH` with the `qmp` crate's server,
//! runs commands against [`VmControl`](crate::control::VmControl), and turns the
//! machine's lifecycle events into QMP events.
//!
//! It runs on its own thread with a single-threaded tokio runtime, so the VMM's main
//! loop and vCPU threads stay free of async code. Commands that block (pausing waits
//! for every vCPU to park) run on the runtime's blocking pool.
//!
//! * [`commands`]: the command table and handlers;
//! * [`hmp`]: the `human-monitor-command` subset;
//! * [`devices`]: what the monitor can see of devices (block, balloon, PCI);
//! * [`events`]: VM events → QMP events;
//! * [`media`]: the CD-ROM tray and medium commands, `DEVICE_TRAY_MOVED`;
//! * [`hotplug`]: `device_add`/`device_del` and their netdevs, `DEVICE_DELETED`.

pub mod commands;
pub mod devices;
pub mod display;
pub mod events;
pub mod hmp;
pub mod hotplug;
pub mod media;
mod migrate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use machine_spec::{CpuMode, MachineSpec};
use qmp::json::Limits;
use qmp::{QmpServer, Schema, ServerConfig, VersionInfo};

use crate::control::{SubscriptionId, VmControl};

pub use devices::{
    BlockCounters, BlockDescription, BlockView, Devices, Nic, PciFunction, PciRegion, PciView,
};

/// The schema of exactly the commands and events served (`query-qmp-schema`).
pub const SCHEMA_JSON: &str = include_str!("../../../schemas/qmp-schema.json");

/// How long shutting the monitor down waits for clients to take their last replies.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Errors starting the monitor.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The bundled schema does not load (a build defect).
    #[error("QMP schema is invalid: {0}")]
    Schema(#[from] qmp::schema::SchemaError),
    /// The socket could not be served.
    #[error(transparent)]
    Server(#[from] qmp::ServerError),
    /// Threads or the runtime could not be created.
    #[error("cannot start the QMP monitor: {0}")]
    Start(#[source] std::io::Error),
}

/// What the monitor reports about the machine that does not change while it runs.
#[derive(Debug, Clone)]
pub struct MachineInfo {
    /// Domain name (`query-name`).
    pub name: String,
    /// Domain UUID (`query-uuid`).
    pub uuid: String,
    /// vCPUs present at start.
    pub vcpus: u32,
    /// Maximum vCPUs.
    pub max_vcpus: u32,
    /// Topology: sockets, dies, cores per die, threads per core.
    pub sockets: u32,
    /// Dies per socket.
    pub dies: u32,
    /// Cores per die.
    pub cores: u32,
    /// Threads per core.
    pub threads: u32,
    /// QOM CPU type name (`host-x86_64-cpu`, …).
    pub cpu_type: String,
}

impl MachineInfo {
    /// From the machine spec.
    pub fn from_spec(spec: &MachineSpec) -> Self {
        let t = &spec.cpus.topology;
        let cpu_type = match spec.cpus.mode {
            CpuMode::HostPassthrough | CpuMode::HostModel => "host-x86_64-cpu",
            CpuMode::Maximum => "max-x86_64-cpu",
            CpuMode::Custom => "qemu64-x86_64-cpu",
        };
        MachineInfo {
            name: spec.name.clone(),
            uuid: spec.uuid.clone(),
            vcpus: spec.cpus.count,
            max_vcpus: spec.cpus.max.max(spec.cpus.count),
            sockets: t.sockets.max(1),
            dies: t.dies.max(1),
            cores: t.cores.max(1),
            threads: t.threads.max(1),
            cpu_type: cpu_type.to_string(),
        }
    }
}

/// A running monitor. Shut it down (or drop it) before the process exits so clients
/// get the last replies and events (e.g. `quit`'s reply, `SHUTDOWN`).
pub struct Monitor {
    path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server_thread: Option<JoinHandle<()>>,
    /// Ending this subscription ends the forwarder (after what is queued).
    control: VmControl,
    vm_events: SubscriptionId,
    forwarder: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Serves QMP on `path` for the machine behind `control`.
    pub fn start(
        path: &Path,
        info: MachineInfo,
        control: VmControl,
        devices: Devices,
    ) -> Result<Monitor, MonitorError> {
        let schema = Arc::new(Schema::parse(SCHEMA_JSON)?);
        let vm_control = control.clone();
        let (vm_events, vm_events_id) = control.subscribe_with_id();
        let (forward_tx, _) = tokio::sync::broadcast::channel(256);
        let handler = Arc::new(commands::Commands::new(
            info,
            control,
            devices,
            schema.clone(),
            forward_tx.clone(),
        ));
        let config = ServerConfig {
            version: VersionInfo::oxvirt(),
            schema,
            limits: Limits::default(),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let sock = path.to_path_buf();
        let h = handler.clone();
        let server_thread = std::thread::Builder::new()
            .name("qmp".into())
            .spawn(move || {
                crate::seccomp::enter_or_exit(crate::seccomp::Thread::Monitor);
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(MonitorError::Start(e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    let server = match QmpServer::bind(&sock, config, h.clone()) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    h.set_events(server.events());
                    let _ = ready_tx.send(Ok(()));
                    let poller = tokio::spawn(commands::watch_devices(h.clone()));
                    let trays = tokio::spawn(h.clone().forward_tray_moves());
                    let unplugs = tokio::spawn(h.clone().forward_unplugs());
                    let _ = stop_rx.await;
                    poller.abort();
                    trays.abort();
                    unplugs.abort();
                    server.shutdown(SHUTDOWN_GRACE).await;
                });
            })
            .map_err(MonitorError::Start)?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = server_thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = server_thread.join();
                return Err(MonitorError::Start(std::io::Error::other(
                    "the QMP thread ended during start-up",
                )));
            }
        }
        // VM events arrive on a std channel; a plain thread forwards them. It sleeps in
        // `recv` until an event comes (an idle VMM has no timer wake-ups) and ends when
        // `stop_now` ends its subscription, after forwarding what was queued.
        let fh = handler.clone();
        let forwarder = std::thread::Builder::new()
            .name("qmp-events".into())
            .spawn(move || {
                crate::seccomp::enter_or_exit(crate::seccomp::Thread::Monitor);
                while let Ok(ev) = vm_events.recv() {
                    fh.forward(&ev);
                    let _ = forward_tx.send(ev);
                }
            })
            .map_err(MonitorError::Start)?;
        tracing::info!(path = %path.display(), "serving QMP");
        Ok(Monitor {
            path: path.to_path_buf(),
            stop: Some(stop_tx),
            server_thread: Some(server_thread),
            control: vm_control,
            vm_events: vm_events_id,
            forwarder: Some(forwarder),
        })
    }

    /// Forwards every event emitted so far, lets clients take their last replies,
    /// closes them and removes the socket.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        // The forwarder drains what is queued, then sees the channel closed.
        self.control.unsubscribe(self.vm_events);
        if let Some(f) = self.forwarder.take() {
            let _ = f.join();
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.server_thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop_now();
    }
}

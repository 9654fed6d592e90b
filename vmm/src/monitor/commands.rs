//! The QMP commands the VMM serves. [`COMMANDS`] is the table `query-commands`
//! reports; a test keeps it equal to the schema file's command list.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use qmp::{ClientFds, CommandFuture, EventSender, Handler, QmpError, Schema, VersionInfo};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use super::devices::{BlockCounters, BlockIoError, BlockView, Devices, PciFunction};
use super::{events, hmp, media, MachineInfo};
use crate::control::{ControlError, RunState, VmControl, VmEvent};

/// Every command served, in the schema's order.
pub const COMMANDS: &[&str] = &[
    "qmp_capabilities",
    "query-version",
    "query-commands",
    "query-status",
    "stop",
    "cont",
    "system_powerdown",
    "system_reset",
    "quit",
    "query-name",
    "query-uuid",
    "query-kvm",
    "query-cpus-fast",
    "query-hotpluggable-cpus",
    "query-block",
    "query-blockstats",
    "query-chardev",
    "query-balloon",
    "balloon",
    "set_link",
    "blockdev-open-tray",
    "blockdev-close-tray",
    "blockdev-remove-medium",
    "blockdev-insert-medium",
    "blockdev-change-medium",
    "eject",
    "blockdev-add",
    "blockdev-del",
    "device_add",
    "device_del",
    "netdev_add",
    "netdev_del",
    "query-pci",
    "query-memory-size-summary",
    "query-target",
    "query-current-machine",
    "human-monitor-command",
    "query-qmp-schema",
    "screendump",
    "send-key",
    "input-send-event",
    "query-vnc",
    "query-vnc-servers",
    "set_password",
    "expire_password",
    "getfd",
    "closefd",
    "add-fd",
    "remove-fd",
    "query-fdsets",
    "add_client",
    "migrate",
    "query-migrate",
];

/// How long a command that asks the main loop for something (power button, reset,
/// quit) waits for the resulting event, so the event precedes the reply as in QEMU.
const EVENT_WAIT: Duration = Duration::from_secs(5);

/// How often device state that has no notification (balloon size, block errors) is
/// looked at for events.
const DEVICE_POLL: Duration = Duration::from_millis(200);

/// The command handler.
pub struct Commands {
    pub(crate) info: MachineInfo,
    pub(crate) control: VmControl,
    pub(crate) devices: Devices,
    schema: Arc<Schema>,
    introspection: OnceLock<Value>,
    /// VM events after they were sent to QMP clients.
    forwarded: broadcast::Sender<VmEvent>,
    events: OnceLock<EventSender>,
    balloon_actual: Mutex<Option<u64>>,
    /// Failed read and write counts per block device at the last poll.
    /// Failed (read, write) operations seen per block device, by its view's address.
    block_failures: Mutex<std::collections::HashMap<usize, (u64, u64)>>,
    /// The last `migrate`'s outcome, for `query-migrate`.
    pub(crate) migration: super::migrate::MigrationInfo,
}

impl Commands {
    pub(crate) fn new(
        info: MachineInfo,
        control: VmControl,
        devices: Devices,
        schema: Arc<Schema>,
        forwarded: broadcast::Sender<VmEvent>,
    ) -> Self {
        Commands {
            info,
            control,
            devices,
            schema,
            introspection: OnceLock::new(),
            forwarded,
            events: OnceLock::new(),
            balloon_actual: Mutex::new(None),
            block_failures: Mutex::new(Default::default()),
            migration: Default::default(),
        }
    }

    pub(crate) fn set_events(&self, events: EventSender) {
        if let Some(v) = &self.devices.vnc {
            v.set_events(events.clone());
        }
        let _ = self.events.set(events);
    }

    /// The event sender, once the server has given it.
    pub(crate) fn event_sender(&self) -> Option<qmp::EventSender> {
        self.events.get().cloned()
    }

    pub(crate) fn emit(&self, name: &str, data: Option<Value>) {
        if let Some(e) = self.events.get() {
            e.emit(name, data);
        }
    }

    /// Sends a VM event to the clients.
    pub(crate) fn forward(&self, ev: &VmEvent) {
        let (name, data) = events::to_qmp(ev);
        self.emit(name, data);
    }

    /// Runs one command (arguments already checked against the schema).
    pub fn run(&self, command: &str, args: Map<String, Value>) -> CommandFuture {
        let ok = |v: Value| qmp::ready(Ok(v));
        match command {
            "qmp_capabilities" => ok(json!({})),
            "query-version" => ok(VersionInfo::oxvirt().to_value()),
            "query-commands" => ok(COMMANDS.iter().map(|c| json!({"name": c})).collect()),
            "query-status" => ok(self.status()),
            "stop" => self.stop(),
            "cont" => self.cont(),
            // Without a machine (shut down, preserved) there is no button to press and
            // no POWERDOWN to wait for.
            "system_powerdown" if !self.has_machine() => {
                qmp::ready(self.control.power_button().map(|_| json!({})).map_err(control_error))
            }
            "system_powerdown" => {
                self.request(|c| c.power_button(), |e| matches!(e, VmEvent::Powerdown))
            }
            "system_reset" => self.request(|c| c.reset(), |e| matches!(e, VmEvent::Reset { .. })),
            "quit" => self.request(|c| c.quit(), |e| matches!(e, VmEvent::Shutdown { .. })),
            "query-name" => ok(if self.info.name.is_empty() {
                json!({})
            } else {
                json!({"name": self.info.name})
            }),
            "query-uuid" => ok(json!({"UUID": self.info.uuid})),
            "query-kvm" => ok(json!({"enabled": true, "present": true})),
            "query-cpus-fast" => ok(self.cpus_fast()),
            "query-hotpluggable-cpus" => ok(self.hotpluggable_cpus()),
            "query-block" => ok(self
                .blocks()
                .iter()
                .map(|b| block_info(b.as_ref(), self.devices.media.as_ref()))
                .collect()),
            "query-blockstats" => ok(self.blockstats()),
            "query-chardev" => ok(self
                .control
                .chardevs()
                .iter()
                .map(|c| json!({"label": c.label, "filename": c.filename, "frontend-open": c.frontend_open}))
                .collect()),
            "query-balloon" => qmp::ready(match &self.devices.balloon {
                Some(b) => Ok(json!({"actual": b.actual_bytes()})),
                None => Err(QmpError::no_balloon()),
            }),
            "balloon" => qmp::ready(self.balloon(args["value"].as_i64().unwrap_or(0))),
            "set_link" => qmp::ready(self.set_link(
                args["name"].as_str().unwrap_or_default(),
                args["up"].as_bool().unwrap_or(true),
            )),
            "query-pci" => ok(self.pci()),
            "query-memory-size-summary" => ok(json!({
                "base-memory": self.control.memory_size(),
                "plugged-memory": 0,
            })),
            "query-target" => ok(json!({"arch": "x86_64"})),
            "query-migrate" => ok(self.migration.get()),
            // We do not implement S3, so the guest cannot be woken from it.
            "query-current-machine" => ok(json!({"wakeup-suspend-support": false})),
            "human-monitor-command" => {
                let line = args["command-line"].as_str().unwrap_or_default().to_string();
                let cpu = args.get("cpu-index").and_then(Value::as_i64);
                hmp::run(self, &line, cpu)
            }
            "query-qmp-schema" => ok(self
                .introspection
                .get_or_init(|| self.schema.introspect())
                .clone()),
            c if media::COMMANDS.contains(&c) => qmp::ready(self.run_media(c, &args)),
            c if super::hotplug::COMMANDS.contains(&c) => self.run_hotplug(c, args),
            c if super::display::COMMANDS.contains(&c) => self.run_display(c, &args),
            // The server runs these with the client's fds; called without any (tests),
            // they fail as they would for a client that passed none.
            c @ ("getfd" | "closefd" | "add_client" | "add-fd" | "migrate") => {
                self.call_with_fds(c, args, &mut ClientFds::default())
            }
            "remove-fd" => {
                let id = args.get("fdset-id").and_then(Value::as_u64).unwrap_or(u64::MAX);
                let fd = args
                    .get("fd")
                    .and_then(Value::as_i64)
                    .map(|n| i32::try_from(n).unwrap_or(-1));
                qmp::ready(
                    crate::files::remove(id, fd)
                        .map(|()| json!({}))
                        .map_err(|e| QmpError::generic(e.to_string())),
                )
            }
            "query-fdsets" => ok(Value::Array(
                crate::files::query()
                    .into_iter()
                    .map(|(id, fds)| {
                        let fds: Vec<Value> = fds
                            .into_iter()
                            .map(|(fd, opaque)| match opaque {
                                Some(o) => json!({"fd": fd, "opaque": o}),
                                None => json!({"fd": fd}),
                            })
                            .collect();
                        json!({"fdset-id": id, "fds": fds})
                    })
                    .collect(),
            )),
            c if crate::vnc::qmp::COMMANDS.contains(&c) => {
                qmp::ready(crate::vnc::qmp::run(c, self.devices.vnc.as_deref(), &args))
            }
            other => qmp::ready(Err(QmpError::command_not_found(other))),
        }
    }

    fn has_machine(&self) -> bool {
        matches!(self.control.status(), RunState::Running | RunState::Paused)
    }

    pub(crate) fn status(&self) -> Value {
        let s = self.control.status();
        json!({"running": s.is_running(), "singlestep": false, "status": s.as_qmp_str()})
    }

    fn stop(&self) -> CommandFuture {
        let c = self.control.clone();
        let mut rx = self.forwarded.subscribe();
        Box::pin(async move {
            let was_running = c.status() == RunState::Running;
            blocking(move || c.pause()).await?;
            if was_running {
                wait_for(&mut rx, |e| matches!(e, VmEvent::Stop)).await;
            }
            Ok(json!({}))
        })
    }

    fn cont(&self) -> CommandFuture {
        let c = self.control.clone();
        let mut rx = self.forwarded.subscribe();
        Box::pin(async move {
            let was_paused = c.status() == RunState::Paused;
            blocking(move || c.resume()).await?;
            if was_paused {
                wait_for(&mut rx, |e| matches!(e, VmEvent::Resume)).await;
            }
            Ok(json!({}))
        })
    }

    /// Queues a request for the main loop and waits for the event that shows it ran.
    fn request(
        &self,
        f: impl FnOnce(&VmControl) -> Result<(), ControlError>,
        done: fn(&VmEvent) -> bool,
    ) -> CommandFuture {
        let mut rx = self.forwarded.subscribe();
        if let Err(e) = f(&self.control) {
            return qmp::ready(Err(control_error(e)));
        }
        Box::pin(async move {
            wait_for(&mut rx, done).await;
            Ok(json!({}))
        })
    }

    pub(crate) fn cpus_fast(&self) -> Value {
        let multi_die = self.info.dies > 1;
        self.control
            .vcpu_threads()
            .iter()
            .map(|t| {
                let mut props = json!({
                    "core-id": t.core_id,
                    "thread-id": t.thread_id_in_core,
                    "socket-id": t.socket_id,
                });
                if multi_die {
                    props["die-id"] = json!(t.die_id);
                }
                json!({
                    "cpu-index": t.cpu_index,
                    "qom-path": qom_cpu_path(t.cpu_index),
                    "thread-id": t.thread_id,
                    "props": props,
                    "target": "x86_64",
                })
            })
            .collect()
    }

    /// Every possible CPU, the present ones with their QOM path (QEMU lists the
    /// highest index first).
    fn hotpluggable_cpus(&self) -> Value {
        let i = &self.info;
        (0..i.max_vcpus)
            .rev()
            .map(|n| {
                let thread = n % i.threads;
                let core = (n / i.threads) % i.cores;
                let die = (n / (i.threads * i.cores)) % i.dies;
                let socket = n / (i.threads * i.cores * i.dies);
                let mut props = json!({"core-id": core, "thread-id": thread, "socket-id": socket});
                if i.dies > 1 {
                    props["die-id"] = json!(die);
                }
                let mut cpu = json!({"props": props, "vcpus-count": 1, "type": i.cpu_type});
                if n < i.vcpus {
                    cpu["qom-path"] = json!(qom_cpu_path(n));
                }
                cpu
            })
            .collect()
    }

    /// The block devices present now: the boot-time ones not hot-removed, then
    /// the hot-added ones (`virtio/hotplug.rs`).
    pub(crate) fn blocks(&self) -> Vec<Arc<dyn BlockView>> {
        let Some(hub) = &self.devices.hotplug else {
            return self.devices.blocks.clone();
        };
        let mut v: Vec<Arc<dyn BlockView>> = if hub.any_removed() {
            self.devices
                .blocks
                .iter()
                .filter(|b| !hub.was_removed(&b.describe().qdev))
                .cloned()
                .collect()
        } else {
            self.devices.blocks.clone()
        };
        v.extend(hub.block_views());
        v
    }

    fn blockstats(&self) -> Value {
        self.blocks()
            .iter()
            .map(|b| {
                let d = b.describe();
                json!({
                    "device": "",
                    "qdev": d.qdev,
                    "node-name": d.node_name,
                    "stats": stats_json(&b.counters()),
                })
            })
            .collect()
    }

    fn balloon(&self, value: i64) -> Result<Value, QmpError> {
        let Some(b) = &self.devices.balloon else {
            return Err(QmpError::no_balloon());
        };
        if value <= 0 {
            return Err(QmpError::generic("Parameter 'target' expects a size"));
        }
        b.set_target(value.min(self.control.memory_size() as i64) as u64);
        Ok(json!({}))
    }

    /// QEMU's `set_link`: the NIC's link status bit and a configuration-change
    /// interrupt; frames are dropped both ways while the link is down.
    fn set_link(&self, name: &str, up: bool) -> Result<Value, QmpError> {
        let nic = self
            .devices
            .nics
            .iter()
            .find(|n| n.answers_to(name))
            .ok_or_else(|| QmpError::device_not_found(name))?;
        tracing::info!(nic = %nic.id, up, "set_link");
        nic.control.set_link(up);
        Ok(json!({}))
    }

    fn pci(&self) -> Value {
        let Some(pci) = &self.devices.pci else {
            return json!([]);
        };
        let funcs = pci.functions();
        let mut buses: Vec<u8> = funcs.iter().map(|f| f.bus).collect();
        buses.sort_unstable();
        buses.dedup();
        buses
            .into_iter()
            .map(|bus| {
                let devices: Vec<Value> = funcs
                    .iter()
                    .filter(|f| f.bus == bus)
                    .map(pci_json)
                    .collect();
                json!({"bus": bus, "devices": devices})
            })
            .collect()
    }

    /// Emits events for device state that changes without telling anyone.
    fn poll_devices(&self) {
        if let Some(b) = &self.devices.balloon {
            let actual = b.actual_bytes();
            let mut last = self
                .balloon_actual
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|l| l != actual) {
                self.emit("BALLOON_CHANGE", Some(json!({"actual": actual})));
            }
            *last = Some(actual);
        }
        let mut seen = self
            .block_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let blocks = self.blocks();
        seen.retain(|k, _| blocks.iter().any(|b| view_key(b) == *k));
        for b in &blocks {
            let seen = seen.entry(view_key(b)).or_default();
            let mut errors = b.take_io_errors();
            // Devices that only count failures still get one event per operation kind
            // and poll, with the generic host error text.
            let c = b.counters();
            let (rd, wr) = (c.failed_rd_operations, c.failed_wr_operations);
            if errors.is_empty() {
                for (now, before, write) in [(rd, seen.0, false), (wr, seen.1, true)] {
                    if now > before {
                        errors.push(BlockIoError {
                            write,
                            reason: "Input/output error".into(),
                            nospace: false,
                        });
                    }
                }
            }
            *seen = (rd, wr);
            if errors.is_empty() {
                continue;
            }
            let d = b.describe();
            for e in errors {
                self.emit(
                    "BLOCK_IO_ERROR",
                    Some(json!({
                        "device": "",
                        "node-name": d.node_name,
                        "operation": if e.write { "write" } else { "read" },
                        "action": "report",
                        "nospace": e.nospace,
                        "reason": e.reason,
                    })),
                );
            }
        }
    }
}

impl Handler for Commands {
    fn call(&self, command: &str, args: Map<String, Value>) -> CommandFuture {
        self.run(command, args)
    }

    fn call_with_fds(
        &self,
        command: &str,
        args: Map<String, Value>,
        fds: &mut ClientFds,
    ) -> CommandFuture {
        let name = args
            .get("fdname")
            .and_then(Value::as_str)
            .unwrap_or_default();
        qmp::ready(match command {
            "getfd" => fds.getfd(name).map(|()| json!({})),
            "closefd" => fds.closefd(name).map(|()| json!({})),
            "add_client" => crate::vnc::qmp::add_client(self.devices.vnc.as_deref(), &args, fds),
            "add-fd" => fds.take_received().map(|fd| {
                let id = args.get("fdset-id").and_then(Value::as_u64);
                let opaque = args.get("opaque").and_then(Value::as_str).map(String::from);
                let added = crate::files::add(fd, id, opaque);
                json!({"fdset-id": added.fdset_id, "fd": added.fd})
            }),
            "netdev_add" if args.contains_key("fd") || args.contains_key("fds") => {
                self.netdev_add_with_fd(&args, fds)
            }
            "migrate" => return self.migrate(&args, fds),
            _ => return self.run(command, args),
        })
    }
}

/// Polls devices for events until aborted.
pub(crate) async fn watch_devices(cmds: Arc<Commands>) {
    if cmds.devices.balloon.is_none()
        && cmds.devices.blocks.is_empty()
        && cmds.devices.hotplug.is_none()
    {
        return;
    }
    let mut tick = tokio::time::interval(DEVICE_POLL);
    loop {
        tick.tick().await;
        cmds.poll_devices();
    }
}

/// Identifies a block view across calls (views live as long as their disk).
fn view_key(b: &Arc<dyn BlockView>) -> usize {
    Arc::as_ptr(b) as *const () as usize
}

fn qom_cpu_path(index: u32) -> String {
    format!("/machine/unattached/device[{index}]")
}

/// Runs a blocking control call on the runtime's blocking pool.
async fn blocking(
    f: impl FnOnce() -> Result<(), ControlError> + Send + 'static,
) -> Result<(), QmpError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(control_error),
        Err(e) => Err(QmpError::generic(format!("internal error: {e}"))),
    }
}

/// Waits (bounded) for a forwarded VM event.
async fn wait_for(rx: &mut broadcast::Receiver<VmEvent>, pred: fn(&VmEvent) -> bool) {
    let _ = tokio::time::timeout(EVENT_WAIT, async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
    .await;
}

/// Control errors in QEMU's words where QEMU has some.
fn control_error(e: ControlError) -> QmpError {
    match e {
        ControlError::NotRunning("shutdown") => {
            QmpError::generic("Resetting the Virtual Machine is required")
        }
        ControlError::NotRunning("internal-error") | ControlError::NotRunning("guest-panicked") => {
            QmpError::generic("Resetting the Virtual Machine is required")
        }
        other => QmpError::generic(other.to_string()),
    }
}

fn block_info(b: &dyn BlockView, drives: Option<&Arc<crate::media::MediaRegistry>>) -> Value {
    let mut d = b.describe();
    let (tray_open, locked) = media::overlay(&mut d, drives);
    let mut image = json!({
        "filename": d.file,
        "format": d.format,
        "virtual-size": d.virtual_size,
        "dirty-flag": false,
    });
    if let Some(a) = d.actual_size {
        image["actual-size"] = json!(a);
    }
    let mut info = json!({
        "device": "",
        "qdev": d.qdev,
        "type": "unknown",
        "removable": d.removable,
        "locked": locked,
        "io-status": "ok",
    });
    if d.removable {
        info["tray_open"] = json!(tray_open);
    }
    if d.empty {
        return info;
    }
    info["inserted"] = json!({
            "file": d.file,
            "node-name": d.node_name,
            "ro": d.read_only,
            "drv": d.format,
            "backing_file_depth": 0,
            "encrypted": false,
            "detect_zeroes": "off",
            "bps": 0, "bps_rd": 0, "bps_wr": 0,
            "iops": 0, "iops_rd": 0, "iops_wr": 0,
            "image": image,
            "cache": {"writeback": d.writeback, "direct": d.direct, "no-flush": d.no_flush},
            "write_threshold": 0,
    });
    info
}

fn stats_json(c: &BlockCounters) -> Value {
    json!({
        "rd_bytes": c.rd_bytes,
        "wr_bytes": c.wr_bytes,
        "unmap_bytes": c.unmap_bytes,
        "rd_operations": c.rd_operations,
        "wr_operations": c.wr_operations,
        "flush_operations": c.flush_operations,
        "unmap_operations": c.unmap_operations,
        "rd_total_time_ns": c.rd_total_time_ns,
        "wr_total_time_ns": c.wr_total_time_ns,
        "flush_total_time_ns": c.flush_total_time_ns,
        "unmap_total_time_ns": c.unmap_total_time_ns,
        "wr_highest_offset": c.wr_highest_offset,
        "rd_merged": 0,
        "wr_merged": 0,
        "unmap_merged": 0,
        "failed_rd_operations": c.failed_rd_operations,
        "failed_wr_operations": c.failed_wr_operations,
        "failed_flush_operations": c.failed_flush_operations,
        "failed_unmap_operations": c.failed_unmap_operations,
        "invalid_rd_operations": c.invalid_rd_operations,
        "invalid_wr_operations": c.invalid_wr_operations,
        "invalid_flush_operations": c.invalid_flush_operations,
        "invalid_unmap_operations": c.invalid_unmap_operations,
        "account_invalid": true,
        "account_failed": true,
        "timed_stats": [],
    })
}

fn pci_json(f: &PciFunction) -> Value {
    let mut class_info = json!({"class": f.class});
    if let Some(d) = &f.class_desc {
        class_info["desc"] = json!(d);
    }
    let regions: Vec<Value> = f
        .regions
        .iter()
        .map(|r| {
            if r.io {
                json!({"bar": r.bar, "type": "io", "address": r.address, "size": r.size})
            } else {
                json!({"bar": r.bar, "type": "memory", "address": r.address, "size": r.size,
                    "prefetch": r.prefetch, "mem_type_64": r.mem_type_64})
            }
        })
        .collect();
    let mut v = json!({
        "bus": f.bus,
        "slot": f.slot,
        "function": f.function,
        "class_info": class_info,
        "id": {"vendor": f.vendor, "device": f.device,
            "subsystem-vendor": f.subsystem_vendor, "subsystem": f.subsystem},
        "irq_pin": f.irq_pin,
        "qdev_id": f.qdev_id,
        "regions": regions,
    });
    if let Some(irq) = f.irq {
        v["irq"] = json!(irq);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands() -> Commands {
        let spec_info = MachineInfo {
            name: "t".into(),
            uuid: "11111111-2222-3333-4444-555555555555".into(),
            vcpus: 2,
            max_vcpus: 4,
            sockets: 1,
            dies: 1,
            cores: 4,
            threads: 1,
            cpu_type: "host-x86_64-cpu".into(),
        };
        let (tx, _) = broadcast::channel(8);
        Commands::new(
            spec_info,
            VmControl::new(64 << 20).unwrap(),
            Devices::default(),
            Arc::new(Schema::parse(super::super::SCHEMA_JSON).unwrap()),
            tx,
        )
    }

    #[test]
    fn schema_lists_exactly_the_command_table() {
        let schema = Schema::parse(super::super::SCHEMA_JSON).unwrap();
        let names: Vec<&str> = schema.commands().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, COMMANDS);
        let events: Vec<&str> = schema.events().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            events,
            [
                "STOP",
                "RESUME",
                "SHUTDOWN",
                "POWERDOWN",
                "RESET",
                "GUEST_PANICKED",
                "VSERPORT_CHANGE",
                "BALLOON_CHANGE",
                "BLOCK_IO_ERROR",
                "DEVICE_TRAY_MOVED",
                "MIGRATION",
                "DEVICE_DELETED",
                "VNC_CONNECTED",
                "VNC_INITIALIZED",
                "VNC_DISCONNECTED"
            ]
        );
        // Every event the VMM can produce is in the schema.
        use crate::control::{PanicAction, ShutdownCause};
        for ev in [
            VmEvent::Stop,
            VmEvent::Resume,
            VmEvent::Powerdown,
            VmEvent::Shutdown {
                guest: true,
                reason: ShutdownCause::GuestShutdown,
            },
            VmEvent::Reset {
                guest: false,
                reason: ShutdownCause::HostQmpSystemReset,
            },
            VmEvent::GuestPanicked {
                action: PanicAction::Pause,
            },
        ] {
            assert!(events.contains(&events::to_qmp(&ev).0));
        }
    }

    #[tokio::test]
    async fn every_command_in_the_table_is_handled() {
        let c = commands();
        for name in COMMANDS {
            // Commands that act on the machine are covered by the guest tests.
            if ["stop", "cont", "system_powerdown", "system_reset", "quit"].contains(name) {
                continue;
            }
            let mut args = Map::new();
            match *name {
                "balloon" => {
                    args.insert("value".into(), json!(1 << 20));
                }
                "human-monitor-command" => {
                    args.insert("command-line".into(), json!("info status"));
                }
                "set_link" => {
                    args.insert("name".into(), json!("net0"));
                    args.insert("up".into(), json!(false));
                }
                "screendump" => {
                    args.insert("filename".into(), json!("/dev/null"));
                }
                "send-key" => {
                    args.insert("keys".into(), json!([{"type": "qcode", "data": "a"}]));
                }
                "input-send-event" => {
                    args.insert("events".into(), json!([]));
                }
                "blockdev-remove-medium" | "blockdev-insert-medium" => {
                    args.insert("id".into(), json!("cd0"));
                    args.insert("node-name".into(), json!("n"));
                    args.retain(|k, _| k == "id" || *name == "blockdev-insert-medium");
                }
                "blockdev-change-medium" => {
                    args.insert("id".into(), json!("cd0"));
                    args.insert("filename".into(), json!("/nonexistent.iso"));
                }
                "blockdev-add" => {
                    args.insert("driver".into(), json!("file"));
                    args.insert("node-name".into(), json!("n"));
                    args.insert("filename".into(), json!("/nonexistent.iso"));
                }
                "blockdev-del" => {
                    args.insert("node-name".into(), json!("n"));
                }
                "device_add" => {
                    args.insert("driver".into(), json!("virtio-blk-pci"));
                    args.insert("id".into(), json!("vd1"));
                    args.insert("bus".into(), json!("pci.1"));
                    args.insert("drive".into(), json!("n"));
                }
                "device_del" | "netdev_del" => {
                    args.insert("id".into(), json!("vd1"));
                }
                "netdev_add" => {
                    args.insert("type".into(), json!("tap"));
                    args.insert("id".into(), json!("hostnet1"));
                }
                "set_password" | "expire_password" => {
                    args.insert("protocol".into(), json!("vnc"));
                    let (k, v) = if *name == "set_password" {
                        ("password", "pw")
                    } else {
                        ("time", "never")
                    };
                    args.insert(k.into(), json!(v));
                }
                "getfd" | "closefd" | "add_client" => {
                    args.insert("fdname".into(), json!("f"));
                    if *name == "add_client" {
                        args.insert("protocol".into(), json!("vnc"));
                    }
                }
                _ if media::COMMANDS.contains(name) => {
                    args.insert("id".into(), json!("cd0"));
                }
                "remove-fd" => {
                    args.insert("fdset-id".into(), json!(424242));
                }
                "migrate" => {
                    args.insert("uri".into(), json!("fd:f"));
                }
                _ => {}
            }
            let cmd = c.schema.command(name).unwrap();
            c.schema.check_args(cmd, &args).unwrap();
            match c.run(name, args).await {
                Ok(_) => {}
                Err(e) if *name == "set_link" => {
                    assert_eq!(e.class, qmp::ErrorClass::DeviceNotFound);
                }
                // No display in this machine.
                Err(e) if super::super::display::COMMANDS.contains(name) => {
                    assert_eq!(e.class, qmp::ErrorClass::GenericError, "{name}");
                }
                // No fd passed with the call.
                Err(e)
                    if ["getfd", "closefd", "add_client", "add-fd", "migrate"].contains(name) =>
                {
                    assert!(
                        e.desc.contains("SCM_RIGHTS") || e.desc.contains("'f'"),
                        "{e:?}"
                    );
                }
                Err(e) if *name == "remove-fd" => {
                    assert!(e.desc.contains("fdset-id:424242"), "{e:?}");
                }
                // No <graphics>: refused as QEMU without -vnc.
                Err(e) if ["set_password", "expire_password"].contains(name) => {
                    assert_eq!(e.desc, "VNC display not active");
                }
                // No hot-plug hub in this test machine.
                Err(e) if super::super::hotplug::COMMANDS.contains(name) => {
                    assert_eq!(e.desc, "this machine has no hot-pluggable bus", "{name}");
                }
                // No drive, no image: refused, by name.
                Err(e) if media::COMMANDS.contains(name) => {
                    assert_ne!(e.class, qmp::ErrorClass::CommandNotFound, "{name}");
                    assert!(
                        e.desc.contains("cd0")
                            || e.desc.contains("/nonexistent.iso")
                            || e.desc.contains("node-name='n'"),
                        "{name}: {e:?}"
                    );
                }
                Err(e) => {
                    assert_ne!(e.class, qmp::ErrorClass::CommandNotFound, "{name}");
                    assert!(["query-balloon", "balloon"].contains(name), "{name}: {e:?}");
                    assert_eq!(e.desc, "No balloon device has been activated");
                }
            }
        }
        assert!(c.run("nope", Map::new()).await.is_err());
    }

    #[tokio::test]
    async fn set_link_finds_the_nic_by_alias_or_netdev_id() {
        let mut c = commands();
        let control = crate::virtio::net::NetControl::new(true);
        c.devices.nics.push(super::super::Nic {
            id: "net0".into(),
            control: control.clone(),
        });
        let args = |name: &str, up: bool| {
            let mut m = Map::new();
            m.insert("name".into(), json!(name));
            m.insert("up".into(), json!(up));
            m
        };
        assert_eq!(
            c.run("set_link", args("net0", false)).await.unwrap(),
            json!({})
        );
        assert!(!control.link_up());
        c.run("set_link", args("hostnet0", true)).await.unwrap();
        assert!(control.link_up());
        // QEMU 7.2: {"class": "DeviceNotFound", "desc": "Device 'nope' not found"}.
        let e = c.run("set_link", args("nope", false)).await.unwrap_err();
        assert_eq!(e.class, qmp::ErrorClass::DeviceNotFound);
        assert_eq!(e.desc, "Device 'nope' not found");
        assert!(control.link_up(), "an unknown name changes nothing");
    }

    #[tokio::test]
    async fn answers_from_the_machine() {
        let c = commands();
        assert_eq!(
            c.run("query-status", Map::new()).await.unwrap(),
            json!({"running": false, "singlestep": false, "status": "prelaunch"})
        );
        assert_eq!(
            c.run("query-name", Map::new()).await.unwrap(),
            json!({"name": "t"})
        );
        let hp = c.run("query-hotpluggable-cpus", Map::new()).await.unwrap();
        assert_eq!(hp.as_array().unwrap().len(), 4);
        assert_eq!(hp[0]["props"]["core-id"], 3);
        assert!(hp[0].get("qom-path").is_none());
        assert_eq!(hp[3]["qom-path"], "/machine/unattached/device[0]");
        assert_eq!(
            c.run("query-memory-size-summary", Map::new())
                .await
                .unwrap(),
            json!({"base-memory": 64 << 20, "plugged-memory": 0})
        );
        let q = c.run("query-commands", Map::new()).await.unwrap();
        assert_eq!(q.as_array().unwrap().len(), COMMANDS.len());
    }
}

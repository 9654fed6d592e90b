//! `device_add`, `device_del`, `netdev_add`, `netdev_del` for virtio disks and
//! NICs behind PCIe root ports (`virtio/hotplug.rs`), and `DEVICE_DELETED`,
//! sent as QEMU sends it: when the guest has released the device, not when
//! `device_del` answers.

use std::sync::Arc;

use qmp::{CommandFuture, ErrorClass, QmpError};
use serde_json::{json, Map, Value};

use super::commands::Commands;
use crate::virtio::hotplug::{HotplugError, HotplugHub};

/// The commands of this module.
pub const COMMANDS: &[&str] = &["device_add", "device_del", "netdev_add", "netdev_del"];

fn qmp_error(e: HotplugError) -> QmpError {
    match e {
        HotplugError::NotFound(_) => QmpError::new(ErrorClass::DeviceNotFound, e.to_string()),
        other => {
            // The chain, as QEMU's messages carry the cause.
            let mut text = other.to_string();
            let mut src = std::error::Error::source(&other);
            while let Some(s) = src {
                text.push_str(": ");
                text.push_str(&s.to_string());
                src = s.source();
            }
            QmpError::generic(text)
        }
    }
}

/// `DEVICE_DELETED` data for device `id` (QEMU's QOM path of a `-device id=`).
pub fn deleted_data(id: &str) -> Value {
    json!({"device": id, "path": format!("/machine/peripheral/{id}")})
}

impl Commands {
    fn hotplug(&self) -> Result<Arc<HotplugHub>, QmpError> {
        self.devices
            .hotplug
            .clone()
            .ok_or_else(|| QmpError::generic("this machine has no hot-pluggable bus"))
    }

    /// Runs one of [`COMMANDS`]. Adding and removing functions is the main
    /// thread's work (`virtio/hotplug.rs`); the reply waits for it.
    pub(crate) fn run_hotplug(&self, command: &str, args: Map<String, Value>) -> CommandFuture {
        let hub = match self.hotplug() {
            Ok(h) => h,
            Err(e) => return qmp::ready(Err(e)),
        };
        let id = args
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let done = |r: Result<(), HotplugError>| r.map(|()| json!({})).map_err(qmp_error);
        match command {
            "device_add" => {
                let media = self.devices.media.clone().unwrap_or_default();
                Box::pin(async move { done(hub.add_on_main(args, media).await) })
            }
            // A device the guest had already powered off goes at once; its event
            // comes from the forwarder like any other.
            "device_del" => Box::pin(async move { done(hub.del_on_main(id).await.map(|_| ())) }),
            // With `fd`, the server runs it with the client's descriptors
            // (`netdev_add_with_fd`); here there are none to name.
            "netdev_add" if args.contains_key("fd") || args.contains_key("fds") => {
                let name = args.get("fd").or_else(|| args.get("fds"));
                qmp::ready(Err(QmpError::generic(format!(
                    "File descriptor named '{}' not found",
                    name.and_then(Value::as_str).unwrap_or_default()
                ))))
            }
            "netdev_add" => qmp::ready(done(hub.netdev_add(&args, Vec::new(), Vec::new()))),
            "netdev_del" => qmp::ready(done(hub.netdev_del(&id))),
            other => qmp::ready(Err(QmpError::command_not_found(other))),
        }
    }

    /// `netdev_add` with `fd`, or `fds` for a multiqueue tap: the tap descriptors
    /// the client passed with `getfd` under those names, `fds` colon-separated, one
    /// per queue (libvirt's way; QEMU's may also be numbers, which are the client's
    /// own descriptor table and mean nothing over a socket here). Named descriptors
    /// are taken only once all of them are found.
    pub(crate) fn netdev_add_with_fd(
        &self,
        args: &Map<String, Value>,
        fds: &mut qmp::ClientFds,
    ) -> Result<Value, QmpError> {
        let hub = self.hotplug()?;
        let (param, names) = match (args.get("fd"), args.get("fds")) {
            (Some(_), Some(_)) => {
                return Err(QmpError::generic(
                    "Parameters 'fd' and 'fds' are mutually exclusive",
                ))
            }
            (Some(v), None) => ("fd", v),
            (None, Some(v)) => ("fds", v),
            (None, None) => return Err(QmpError::generic("Parameter 'fd' is missing")),
        };
        let names = names
            .as_str()
            .ok_or_else(|| QmpError::generic(format!("Parameter '{param}' expects a string")))?;
        let names: Vec<&str> = match param {
            "fds" => names.split(':').collect(),
            _ => vec![names],
        };
        // vhost-net instances the same way (`vhostfd`, `vhostfds`), which QEMU
        // takes with a tap's `fd`/`fds`.
        let vhost_names: Vec<&str> = match (args.get("vhostfd"), args.get("vhostfds")) {
            (Some(_), Some(_)) => {
                return Err(QmpError::generic(
                    "Parameters 'vhostfd' and 'vhostfds' are mutually exclusive",
                ))
            }
            (Some(v), None) => vec![v
                .as_str()
                .ok_or_else(|| QmpError::generic("Parameter 'vhostfd' expects a string"))?],
            (None, Some(v)) => v
                .as_str()
                .ok_or_else(|| QmpError::generic("Parameter 'vhostfds' expects a string"))?
                .split(':')
                .collect(),
            (None, None) => Vec::new(),
        };
        if let Some(missing) = names.iter().chain(&vhost_names).find(|n| !fds.has(n)) {
            return Err(QmpError::generic(format!(
                "File descriptor named '{missing}' has not been found"
            )));
        }
        let taken = names
            .iter()
            .map(|n| fds.take(n))
            .collect::<Result<Vec<_>, _>>()?;
        let vhost = vhost_names
            .iter()
            .map(|n| fds.take(n))
            .collect::<Result<Vec<_>, _>>()?;
        hub.netdev_add(args, taken, vhost)
            .map(|()| json!({}))
            .map_err(qmp_error)
    }

    /// Sends `DEVICE_DELETED` for each device the guest releases, until aborted.
    pub(crate) async fn forward_unplugs(self: Arc<Self>) {
        let Some(hub) = self.devices.hotplug.clone() else {
            return;
        };
        let mut rx = hub.subscribe();
        while let Some(id) = rx.recv().await {
            tracing::info!(%id, "device deleted");
            self.emit("DEVICE_DELETED", Some(deleted_data(&id)));
        }
    }
}

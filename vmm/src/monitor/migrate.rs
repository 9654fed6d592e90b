//! QMP `migrate` to a file descriptor and `query-migrate`: how libvirt saves a
//! domain (`virsh save`, managed save) — `getfd` with the open file, then
//! `migrate uri=fd:NAME`. The machine's state goes into the descriptor
//! (`crate::vmstate`); only `fd:` URIs are served (there is no live migration
//! between hosts). Unlike QEMU, which answers at once and reports completion
//! through `MIGRATION` events and `query-migrate`, the reply comes when the
//! stream is complete; the events (`setup`, `active`, then `completed` or
//! `failed`) come before it, so clients that wait for them work unchanged.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use qmp::{ClientFds, CommandFuture, QmpError};
use serde_json::{json, Map, Value};

use super::commands::Commands;

/// What `query-migrate` answers: the last migration's outcome (`{}` before any).
#[derive(Default)]
pub(crate) struct MigrationInfo(Arc<Mutex<Value>>);

impl MigrationInfo {
    fn set(&self, v: Value) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }

    pub(crate) fn get(&self) -> Value {
        let v = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if v.is_null() {
            json!({})
        } else {
            v
        }
    }

    fn share(&self) -> Self {
        MigrationInfo(self.0.clone())
    }
}

/// The descriptor name of an `fd:NAME` URI, or QEMU's error for the others.
fn fd_name(args: &Map<String, Value>) -> Result<&str, QmpError> {
    if args.get("blk").and_then(Value::as_bool) == Some(true)
        || args.get("inc").and_then(Value::as_bool) == Some(true)
    {
        return Err(QmpError::generic(
            "Block migration is not supported: oxvirt-vmm saves RAM and devices only",
        ));
    }
    let uri = args
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| QmpError::generic("Parameter 'uri' is missing"))?;
    match uri.strip_prefix("fd:") {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(QmpError::generic(format!(
            "Invalid migration URI '{uri}': oxvirt-vmm migrates into a file descriptor only (fd:NAME after getfd)"
        ))),
    }
}

impl Commands {
    /// `migrate uri=fd:NAME`: the machine's state into the client's descriptor.
    pub(crate) fn migrate(&self, args: &Map<String, Value>, fds: &mut ClientFds) -> CommandFuture {
        let fd = match fd_name(args).and_then(|name| fds.take(name)) {
            Ok(fd) => fd,
            Err(e) => return qmp::ready(Err(e)),
        };
        let control = self.control.clone();
        let info = self.migration.share();
        let events = self.event_sender();
        let emit = move |status: &str| {
            if let Some(e) = &events {
                e.emit("MIGRATION", Some(json!({"status": status})));
            }
        };
        Box::pin(async move {
            let start = Instant::now();
            emit("setup");
            info.set(json!({"status": "setup"}));
            emit("active");
            info.set(json!({"status": "active"}));
            let out = std::fs::File::from(fd);
            let r = tokio::task::spawn_blocking(move || control.save(out))
                .await
                .unwrap_or_else(|e| Err(format!("internal error: {e}")));
            let ms = start.elapsed().as_millis() as u64;
            match r {
                Ok(bytes) => {
                    info.set(json!({
                        "status": "completed",
                        "total-time": ms,
                        "downtime": ms,
                        "setup-time": 0,
                        "ram": {
                            "transferred": bytes, "remaining": 0, "total": bytes,
                            "duplicate": 0, "skipped": 0, "normal": bytes / 4096,
                            "normal-bytes": bytes, "dirty-pages-rate": 0,
                            "mbps": if ms > 0 { bytes as f64 * 8.0 / 1000.0 / ms as f64 } else { 0.0 },
                            "dirty-sync-count": 1, "postcopy-requests": 0, "page-size": 4096,
                            "multifd-bytes": 0, "pages-per-second": 0, "precopy-bytes": bytes,
                            "downtime-bytes": 0, "postcopy-bytes": 0,
                            "dirty-sync-missed-zero-copy": 0,
                        },
                    }));
                    emit("completed");
                    Ok(json!({}))
                }
                Err(msg) => {
                    info.set(json!({"status": "failed", "error-desc": msg}));
                    emit("failed");
                    Err(QmpError::generic(msg))
                }
            }
        })
    }
}

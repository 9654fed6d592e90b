//! Domain event callbacks (the "callback" style clients use once the daemon answers
//! feature REMOTE_EVENT_CALLBACK with 1).
//!
//! CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY hands out a callback ID, unique in the
//! daemon; from then on every core event of that family (and domain, when the client
//! named one) is sent as a MESSAGE carrying the ID. One forwarding task per connection
//! subscribes to the core's broadcast when the first callback is registered.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tracing::warn;

use super::conn::Outbox;
use super::domain::wire_domain;
use super::error::VirError;
use super::packet::PROGRAM_REMOTE;
use super::proto::{
    remote, BalloonChangeMsg, LifecycleMsg, MetadataChangeMsg, NonnullDomain, RebootMsg,
    TrayChangeMsg,
};
use super::Shared;
use crate::core::event::Event;

/// `VIR_DOMAIN_EVENT_ID_LAST` in libvirt 9.0: ids 0..=26 exist.
const EVENT_ID_LAST: i32 = 27;

#[derive(Debug, Clone, Copy)]
struct Registration {
    event_id: i32,
    /// Only events of this domain (by UUID), or all when `None`.
    dom: Option<[u8; 16]>,
}

type Registry = Arc<Mutex<HashMap<i32, Registration>>>;

/// The callbacks one connection registered.
pub struct Subscriptions {
    shared: Arc<Shared>,
    out: Outbox,
    domain: Registry,
    /// Network/storage/node-device/secret callbacks: accepted, never fire (oxvirt has
    /// none of those objects), so libvirt-dbus' start-up registrations succeed.
    other: HashSet<i32>,
    task: Option<JoinHandle<()>>,
}

impl Subscriptions {
    pub fn new(shared: Arc<Shared>, out: Outbox) -> Self {
        Self {
            shared,
            out,
            domain: Arc::default(),
            other: HashSet::new(),
            task: None,
        }
    }

    fn next_id(&self) -> i32 {
        self.shared.next_callback_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a domain event callback; returns its ID.
    pub fn register_domain(
        &mut self,
        event_id: i32,
        dom: Option<&NonnullDomain>,
    ) -> Result<i32, VirError> {
        if !(0..EVENT_ID_LAST).contains(&event_id) {
            return Err(VirError::invalid_arg(format!(
                "unsupported event ID {event_id}"
            )));
        }
        let cb = self.next_id();
        self.domain
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                cb,
                Registration {
                    event_id,
                    dom: dom.map(|d| d.uuid),
                },
            );
        if self.task.is_none() {
            self.task = Some(tokio::spawn(forward(
                self.shared.clone(),
                self.domain.clone(),
                self.out.clone(),
            )));
        }
        Ok(cb)
    }

    pub fn deregister_domain(&mut self, cb: i32) -> Result<(), VirError> {
        let removed = self
            .domain
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&cb);
        removed
            .map(|_| ())
            .ok_or_else(|| VirError::invalid_arg(format!("callback {cb} not registered")))
    }

    /// Registers a callback for an object kind oxvirt does not have.
    pub fn register_other(&mut self) -> i32 {
        let cb = self.next_id();
        self.other.insert(cb);
        cb
    }

    pub fn deregister_other(&mut self, cb: i32) -> Result<(), VirError> {
        if self.other.remove(&cb) {
            Ok(())
        } else {
            Err(VirError::invalid_arg(format!(
                "callback {cb} not registered"
            )))
        }
    }

    /// Drops every registration (connection closing).
    pub fn clear(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.domain
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.other.clear();
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Sends every matching core event to the client until the connection goes away.
async fn forward(shared: Arc<Shared>, regs: Registry, out: Outbox) {
    let mut rx = shared.core.subscribe();
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(RecvError::Lagged(n)) => {
                warn!("libvirt RPC client missed {n} domain events (too slow)");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let dom = wire_domain(ev.domain());
        let targets: Vec<i32> = {
            let regs = regs.lock().unwrap_or_else(|e| e.into_inner());
            let mut t: Vec<i32> = regs
                .iter()
                .filter(|(_, r)| r.event_id == ev.id() && r.dom.is_none_or(|u| u == dom.uuid))
                .map(|(cb, _)| *cb)
                .collect();
            t.sort_unstable();
            t
        };
        for cb in targets {
            if !send(&out, cb, &ev, &dom).await {
                return;
            }
        }
    }
}

/// Encodes one event for callback `cb`; false once the connection is gone.
async fn send(out: &Outbox, cb: i32, ev: &Event, dom: &NonnullDomain) -> bool {
    match ev {
        Event::Lifecycle { event, detail, .. } => {
            let m = LifecycleMsg {
                callback_id: cb,
                dom: dom.clone(),
                event: *event,
                detail: *detail,
            };
            out.message(PROGRAM_REMOTE, remote::DOMAIN_EVENT_CALLBACK_LIFECYCLE, &m)
                .await
        }
        Event::Reboot { .. } => {
            let m = RebootMsg {
                callback_id: cb,
                dom: dom.clone(),
            };
            out.message(PROGRAM_REMOTE, remote::DOMAIN_EVENT_CALLBACK_REBOOT, &m)
                .await
        }
        Event::MetadataChange { kind, uri, .. } => {
            let m = MetadataChangeMsg {
                callback_id: cb,
                dom: dom.clone(),
                kind: *kind,
                nsuri: uri.clone(),
            };
            out.message(
                PROGRAM_REMOTE,
                remote::DOMAIN_EVENT_CALLBACK_METADATA_CHANGE,
                &m,
            )
            .await
        }
        Event::BalloonChange { actual_kib, .. } => {
            let m = BalloonChangeMsg {
                callback_id: cb,
                dom: dom.clone(),
                actual: *actual_kib,
            };
            out.message(
                PROGRAM_REMOTE,
                remote::DOMAIN_EVENT_CALLBACK_BALLOON_CHANGE,
                &m,
            )
            .await
        }
        Event::Graphics {
            phase,
            local,
            remote,
            auth_scheme,
            subject,
            ..
        } => {
            use super::graphics::{
                GraphicsIdentityMsg, GraphicsMsg, DOMAIN_EVENT_CALLBACK_GRAPHICS,
            };
            let m = GraphicsMsg {
                callback_id: cb,
                dom: dom.clone(),
                phase: *phase,
                local: local.into(),
                remote: remote.into(),
                auth_scheme: auth_scheme.clone(),
                subject: subject
                    .iter()
                    .map(|(kind, name)| GraphicsIdentityMsg {
                        kind: kind.clone(),
                        name: name.clone(),
                    })
                    .collect(),
            };
            out.message(PROGRAM_REMOTE, DOMAIN_EVENT_CALLBACK_GRAPHICS, &m)
                .await
        }
        // The core reports disk I/O errors (D-Bus `IOError`); the RPC messages
        // DOMAIN_EVENT_CALLBACK_IO_ERROR(_REASON) are not encoded yet.
        Event::IoError { .. } => true,
        Event::TrayChange {
            dev_alias, reason, ..
        } => {
            let m = TrayChangeMsg {
                callback_id: cb,
                dom: dom.clone(),
                dev_alias: dev_alias.clone(),
                reason: *reason,
            };
            out.message(
                PROGRAM_REMOTE,
                remote::DOMAIN_EVENT_CALLBACK_TRAY_CHANGE,
                &m,
            )
            .await
        }
        Event::DeviceAdded { dev_alias, .. } | Event::DeviceRemoved { dev_alias, .. } => {
            let m = super::proto::DeviceEventMsg {
                callback_id: cb,
                dom: dom.clone(),
                dev_alias: dev_alias.clone(),
            };
            let proc = if matches!(ev, Event::DeviceAdded { .. }) {
                remote::DOMAIN_EVENT_CALLBACK_DEVICE_ADDED
            } else {
                remote::DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED
            };
            out.message(PROGRAM_REMOTE, proc, &m).await
        }
        Event::AgentLifecycle { state, reason, .. } => {
            let m = super::agent::AgentLifecycleMsg {
                callback_id: cb,
                dom: dom.clone(),
                state: *state,
                reason: *reason,
            };
            out.message(
                PROGRAM_REMOTE,
                super::agent::DOMAIN_EVENT_CALLBACK_AGENT_LIFECYCLE,
                &m,
            )
            .await
        }
        Event::ControlError { .. } => {
            // `{callbackID; {dom}}`, the same layout as REBOOT.
            let m = RebootMsg {
                callback_id: cb,
                dom: dom.clone(),
            };
            out.message(
                PROGRAM_REMOTE,
                remote::DOMAIN_EVENT_CALLBACK_CONTROL_ERROR,
                &m,
            )
            .await
        }
    }
}

//! The D-Bus front end: libvirt-dbus's `org.libvirt` service on top of the core.
//!
//! One connect object (`org.libvirt.Connect`, default `/org/libvirt/QEMU`), one
//! object per domain (`org.libvirt.Domain`) and one per domain snapshot
//! (`org.libvirt.DomainSnapshot`). Domain objects follow the core's
//! catalog: after every event and catalog call the set of exported objects is
//! brought in line with the core's domain list. Lifecycle events become
//! `Connect.DomainEvent(o, i, i)` signals; reboot, balloon and control-error
//! events become the matching signals on the domain object.

mod auth;
mod connect;
mod domain;
pub mod error;
mod host;
mod interface;
mod network;
mod nodedev;
mod objects;
pub mod path;
pub mod polkit;
mod properties;
mod secret;
mod snapshot;
mod stats;
mod storage_pool;
mod storage_vol;
mod tune;
mod typed;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;
use zbus::object_server::SignalEmitter;
use zbus::OwnedObjectPath;

pub use auth::Gate;
use connect::ConnectIface;
use domain::DomainIface;

use crate::core::{Core, Event};

/// Why the service could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot connect to the D-Bus bus")]
    Connect(#[source] zbus::Error),
    #[error("cannot export object '{path}'")]
    Export {
        path: String,
        #[source]
        source: zbus::Error,
    },
    #[error("cannot own bus name '{name}'")]
    Name {
        name: String,
        #[source]
        source: zbus::Error,
    },
}

/// Where and how to serve.
pub struct ServeOptions {
    /// A connection builder for the chosen bus (session, system or an address).
    pub bus: zbus::connection::Builder<'static>,
    pub bus_name: String,
    pub object_path: String,
    pub gate: Gate,
}

/// What every interface object shares.
#[derive(Clone)]
pub struct Context {
    core: Core,
    base: Arc<str>,
    gate: Arc<Gate>,
    exported: Arc<Mutex<HashSet<Uuid>>>,
    /// Serialises object-set updates.
    sync: Arc<tokio::sync::Mutex<()>>,
    /// The exported storage pool and volume objects.
    storage_objects: Arc<storage_pool::Exported>,
    /// The exported network objects.
    network_objects: Arc<network::Exported>,
    /// The exported secret, node device and host interface objects.
    secret_objects: Arc<objects::Objects<Uuid>>,
    nodedev_objects: Arc<objects::Objects<String>>,
    interface_objects: Arc<objects::Objects<String>>,
    /// The exported domain snapshot objects, by (domain, snapshot name).
    snapshot_objects: Arc<objects::Objects<(Uuid, String)>>,
}

impl Context {
    fn path(&self, uuid: &Uuid) -> OwnedObjectPath {
        OwnedObjectPath::try_from(path::domain_path(&self.base, uuid))
            .expect("domain paths are valid object paths")
    }

    fn path_of_connect(&self) -> zbus::ObjectPath<'static> {
        zbus::ObjectPath::try_from(self.base.to_string()).expect("the connect path was served")
    }

    /// Exports an object for every domain of the core and removes those of
    /// domains that are gone.
    async fn sync_objects(&self, conn: &zbus::Connection) {
        let _guard = self.sync.lock().await;
        let want: HashSet<Uuid> = match self.core.list(0) {
            Ok(list) => list.into_iter().map(|i| i.domain.uuid).collect(),
            Err(_) => return,
        };
        let have = self.exported.lock().expect("poisoned").clone();
        let server = conn.object_server();
        for uuid in want.difference(&have) {
            let iface = DomainIface {
                ctx: self.clone(),
                uuid: *uuid,
            };
            match properties::export(server, &self.path(uuid), iface).await {
                Ok(_) => {
                    self.exported.lock().expect("poisoned").insert(*uuid);
                }
                Err(e) => tracing::error!(%uuid, error = %e, "cannot export domain object"),
            }
        }
        for uuid in have.difference(&want) {
            let _ = server.remove::<DomainIface, _>(self.path(uuid)).await;
            self.exported.lock().expect("poisoned").remove(uuid);
        }
        // Snapshots go with their domain (undefine), and those on disk at start
        // get their objects.
        snapshot::sync(self, conn).await;
    }
}

/// Connects to the bus, exports the objects, owns the name, and forwards core
/// events as signals until the connection ends. Returns the connection.
pub async fn serve(core: Core, opts: ServeOptions) -> Result<zbus::Connection, ServeError> {
    let ctx = Context {
        core: core.clone(),
        base: Arc::from(opts.object_path.as_str()),
        gate: Arc::new(opts.gate),
        exported: Arc::default(),
        sync: Arc::default(),
        storage_objects: Arc::default(),
        network_objects: Arc::default(),
        secret_objects: Arc::default(),
        nodedev_objects: Arc::default(),
        interface_objects: Arc::default(),
        snapshot_objects: Arc::default(),
    };
    // Subscribe before exporting so no event between the two is lost.
    let mut events = core.subscribe();
    let conn = opts
        .bus
        .serve_at(opts.object_path.as_str(), ConnectIface { ctx: ctx.clone() })
        .build()
        .await
        .map_err(ServeError::Connect)?;
    let connect_path = ctx.path_of_connect();
    properties::replace_properties(conn.object_server(), &connect_path)
        .await
        .map_err(|source| ServeError::Export {
            path: opts.object_path.clone(),
            source,
        })?;
    ctx.sync_objects(&conn).await;
    conn.request_name(opts.bus_name.as_str())
        .await
        .map_err(|source| ServeError::Name {
            name: opts.bus_name.clone(),
            source,
        })?;
    storage_pool::spawn_events(ctx.clone(), conn.clone());
    network::spawn_events(ctx.clone(), conn.clone());
    let forward_conn = conn.clone();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(ev) => forward(&ctx, &forward_conn, ev).await,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "D-Bus event forwarder fell behind");
                    ctx.sync_objects(&forward_conn).await;
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    Ok(conn)
}

/// Sends one core event as a D-Bus signal.
async fn forward(ctx: &Context, conn: &zbus::Connection, ev: Event) {
    let uuid = ev.domain().uuid;
    let dom_path = ctx.path(&uuid);
    // A new domain needs its object before the signal that names it.
    ctx.sync_objects(conn).await;
    let result = match &ev {
        Event::Lifecycle { event, detail, .. } => match SignalEmitter::new(conn, &*ctx.base) {
            Ok(em) => ConnectIface::domain_event(&em, dom_path.clone(), *event, *detail).await,
            Err(e) => Err(e),
        },
        Event::AgentLifecycle { state, reason, .. } => {
            match SignalEmitter::new(conn, dom_path.clone()) {
                Ok(em) => DomainIface::agent_event(&em, *state, *reason).await,
                Err(e) => Err(e),
            }
        }
        Event::Reboot { .. } => match SignalEmitter::new(conn, dom_path.clone()) {
            Ok(em) => DomainIface::reboot_signal(&em).await,
            Err(e) => Err(e),
        },
        Event::BalloonChange { actual_kib, .. } => match SignalEmitter::new(conn, dom_path.clone())
        {
            Ok(em) => DomainIface::balloon_change(&em, *actual_kib).await,
            Err(e) => Err(e),
        },
        Event::IoError {
            src_path,
            device,
            action,
            reason,
            ..
        } => match SignalEmitter::new(conn, dom_path.clone()) {
            Ok(em) => {
                DomainIface::io_error(
                    &em,
                    src_path.clone(),
                    device.clone(),
                    *action,
                    reason.clone(),
                )
                .await
            }
            Err(e) => Err(e),
        },
        Event::TrayChange {
            dev_alias, reason, ..
        } => match SignalEmitter::new(conn, dom_path.clone()) {
            Ok(em) => DomainIface::tray_change(&em, dev_alias.clone(), *reason).await,
            Err(e) => Err(e),
        },
        Event::DeviceAdded { dev_alias, .. } => match SignalEmitter::new(conn, dom_path.clone()) {
            Ok(em) => DomainIface::device_added(&em, dev_alias.clone()).await,
            Err(e) => Err(e),
        },
        Event::DeviceRemoved { dev_alias, .. } => {
            match SignalEmitter::new(conn, dom_path.clone()) {
                Ok(em) => DomainIface::device_removed(&em, dev_alias.clone()).await,
                Err(e) => Err(e),
            }
        }
        Event::ControlError { .. } => match SignalEmitter::new(conn, dom_path.clone()) {
            Ok(em) => DomainIface::control_error(&em).await,
            Err(e) => Err(e),
        },
        Event::Graphics {
            phase,
            local,
            remote,
            auth_scheme,
            subject,
            ..
        } => match SignalEmitter::new(conn, dom_path.clone()) {
            Ok(em) => {
                let addr = |a: &crate::core::event::GraphicsAddress| {
                    (a.family, a.node.clone(), a.service.clone())
                };
                DomainIface::graphics(
                    &em,
                    *phase,
                    addr(local),
                    addr(remote),
                    auth_scheme.clone(),
                    subject.clone(),
                )
                .await
            }
            Err(e) => Err(e),
        },
        Event::MetadataChange { kind, uri, .. } => match SignalEmitter::new(conn, dom_path.clone())
        {
            Ok(em) => {
                DomainIface::metadata_change(&em, *kind, uri.clone().unwrap_or_default()).await
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot emit D-Bus signal");
    }
}

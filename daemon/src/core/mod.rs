//! The domain core: definitions, state, lifecycle and VMM supervision, shared by
//! every front end (D-Bus in `crate::dbus`, the libvirt remote protocol in
//! `crate::rpc`). Front ends only decode requests, call a [`Core`] method and
//! encode the answer; the core decides.
//!
//! # Using it from a front end
//!
//! * [`Core::open`] loads the store, finds running VMMs again and autostarts;
//!   the daemon creates one `Core` and clones it (it is an `Arc`) into each front end.
//! * Domains are addressed by UUID ([`uuid::Uuid`]); [`Core::lookup_by_name`],
//!   [`Core::lookup_by_uuid`], [`Core::lookup_by_id`] turn a client's handle into a
//!   [`DomainRef`] (name, uuid, id; id is -1 when inactive, as in `remote_nonnull_domain`).
//! * Operations are `async` and take libvirt's flag bits unchanged ([`flags`]); unknown
//!   bits are refused with libvirt's "unsupported flags" error.
//! * Every error is an [`Error`]: `code()` is libvirt's `virErrorNumber`, `origin()`
//!   its `virErrorDomain`, `to_string()` the full message (`Domain not found: no
//!   domain with matching name 'x'`), ready for `remote_error` or `org.libvirt.Error`.
//! * [`Core::subscribe`] gives a `broadcast::Receiver<Event>`: lifecycle events with
//!   libvirt's event/detail numbers ([`event::kind`], [`event::detail`]), reboot,
//!   balloon change, control error, metadata change.
//!
//! | call | libvirt API |
//! |---|---|
//! | `list(flags)` | virConnectListAllDomains |
//! | `define_xml(xml)` / `create_xml(xml, flags)` | virDomainDefineXML / virDomainCreateXML |
//! | `undefine(uuid, flags)` | virDomainUndefineFlags |
//! | `start(uuid, flags)` | virDomainCreateWithFlags |
//! | `shutdown(uuid, flags)` / `reboot(uuid, flags)` | ACPI power button (QMP `system_powerdown`) |
//! | `destroy(uuid, flags)` | virDomainDestroyFlags (SIGTERM, then SIGKILL) |
//! | `suspend(uuid)` / `resume(uuid)` / `reset(uuid)` | QMP `stop` / `cont` / `system_reset` |
//! | `info(uuid)` / `state(uuid)` | virDomainGetInfo / virDomainGetState |
//! | `xml_desc(uuid, flags)` | virDomainGetXMLDesc |
//! | `set_memory(uuid, kib, flags)` | virDomainSetMemoryFlags |
//! | `autostart` / `set_autostart` | virDomainGet/SetAutostart |
//! | `metadata` / `set_metadata` | virDomainGet/SetMetadata |
//! | `rename(uuid, name, flags)` | virDomainRename |
//! | `update_device(uuid, xml, flags)` | virDomainUpdateDeviceFlags (interface link state) |
//! | `stats(uuid)` / `memory_stats(uuid)` | virDomainGetStats / virDomainMemoryStats |
//! | `capabilities()` / `domain_capabilities(query, flags)` | virConnectGetCapabilities / virConnectGetDomainCapabilities ([`caps`]) |
//!
//! # Inside
//!
//! Each domain lives in a [`slot`]: a job mutex (one operation at a time per domain;
//! different domains run in parallel) and a record (definition, live definition,
//! state, id, the running VMM). State changes go through the transition table in
//! [`state`]. A supervisor task per running VMM ([`supervise`]) turns QMP events
//! and the process exit into state changes and events. Catalog changes (define,
//! create, undefine, rename) are serialised by one catalog lock, so names and
//! UUIDs stay unique.

pub mod affect;
mod agent;
pub mod agent_calls;
pub mod caps;
mod catalog;
pub mod cgroup;
pub mod cpu;
pub mod definition;
mod device;
mod device_config;
mod display;
pub mod error;
pub mod event;
pub mod flags;
pub(crate) mod fsutil;
mod graphics;
mod graphics_event;
mod graphics_fd;
mod handover;
pub mod host_info;
pub mod hostiface;
mod hotplug;
pub mod keycodes;
mod lifecycle;
mod media;
pub mod monitor;
mod netdev;
mod netresolve;
pub mod nodedev;
mod query;
pub mod runtime;
mod save;
mod snapshot;
pub use snapshot::{create as snapshot_create_flags, list as snapshot_list_flags};
pub mod secret;
mod slot;
pub mod state;
pub mod stats;
pub mod store;
mod supervise;
mod tap;
mod tapname;
mod tpmstate;
pub mod tune;
mod vcpus;
mod vm_cgroup;
mod volresolve;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU32};
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;
use uuid::Uuid;

pub use caps::DomainCapsQuery;
pub use error::{Error, Result};
pub use event::Event;
pub use query::{DomainInfo, DomainStats};
pub use state::{State, StateReason};

use slot::Slot;
use store::Store;

/// A client's handle on a domain: what `remote_nonnull_domain` carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainRef {
    pub name: String,
    pub uuid: Uuid,
    /// libvirt's domain id while active, -1 when inactive.
    pub id: i32,
}

/// Paths and programs the core needs.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Persistent definitions (`NAME.xml`, `autostart/`).
    pub domains_dir: PathBuf,
    /// Runtime root (`domains/NAME/` per running domain).
    pub runtime_dir: PathBuf,
    /// The `oxvirt-vmm` executable.
    pub vmm: PathBuf,
    /// Start autostart domains in [`Core::open`].
    pub autostart: bool,
    /// The user VMMs run as (`--run-as`), when the daemon is root.
    pub vmm_user: Option<String>,
}

/// The domain core. Cheap to clone; every clone is the same core.
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

struct Inner {
    config: CoreConfig,
    store: Store,
    /// Every known domain by UUID.
    domains: RwLock<HashMap<Uuid, Arc<Slot>>>,
    /// Serialises catalog changes (define, create, undefine, rename).
    catalog: tokio::sync::Mutex<()>,
    events: broadcast::Sender<Event>,
    /// The next libvirt domain id to hand out.
    next_id: AtomicI32,
    /// The next `vnetN` tap name to try ([`tapname`]).
    next_vnet: AtomicU32,
    /// The virtual network driver (`<interface type='network'>` joins its bridges).
    networks: crate::network::Networks,
    /// The storage driver (`<disk type='volume'>` resolves through it).
    storage: crate::storage::Storage,
}

impl Core {
    /// Opens the store, reattaches to running VMMs, and (if configured) starts the
    /// autostart domains.
    pub async fn open(config: CoreConfig) -> Result<Core> {
        // A VMM running as its own user (vmm_user, or a domain's DAC label) must
        // reach its directory below these; nothing in them is listable by others.
        for d in [
            config.runtime_dir.clone(),
            config.runtime_dir.join("domains"),
        ] {
            use std::os::unix::fs::PermissionsExt;
            fsutil::create_dir(&d, 0o711)?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711))
                .map_err(|e| Error::io("set the mode of", &d, &e))?;
        }
        let store = Store::open(&config.domains_dir)?;
        let networks = netresolve::open_networks(&config)?;
        let storage = volresolve::open_storage(&config)?;
        let (events, _) = broadcast::channel(1024);
        let core = Core {
            inner: Arc::new(Inner {
                config,
                store,
                domains: RwLock::default(),
                catalog: tokio::sync::Mutex::new(()),
                events,
                next_id: AtomicI32::new(1),
                next_vnet: AtomicU32::new(0),
                networks,
                storage,
            }),
        };
        volresolve::hook_in_use(&core);
        // Finds the cgroup hierarchy now: says once in the log whether domains get
        // cgroups (session mode: no), and on v2 leaves the inner node before any child.
        vm_cgroup::hierarchy();
        core.load_store()?;
        core.reattach().await;
        if core.inner.config.autostart {
            core.autostart_all().await;
        }
        Ok(core)
    }

    /// Events from now on. A receiver that falls more than 1024 events behind sees
    /// `RecvError::Lagged` and continues.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The configuration the core runs with.
    pub fn config(&self) -> &CoreConfig {
        &self.inner.config
    }

    fn emit(&self, event: Event) {
        tracing::debug!(?event, "event");
        // No receivers is fine.
        let _ = self.inner.events.send(event);
    }

    fn slot(&self, uuid: &Uuid) -> Result<Arc<Slot>> {
        self.inner
            .domains
            .read()
            .expect("domain map poisoned")
            .get(uuid)
            .cloned()
            .ok_or_else(|| Error::no_domain_uuid(uuid))
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        let mut v: Vec<Arc<Slot>> = self
            .inner
            .domains
            .read()
            .expect("domain map poisoned")
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|s| s.name());
        v
    }

    /// Looks a domain up by name.
    pub fn lookup_by_name(&self, name: &str) -> Result<DomainRef> {
        self.slots()
            .into_iter()
            .find(|s| s.name() == name)
            .map(|s| s.domain_ref())
            .ok_or_else(|| Error::no_domain_name(name))
    }

    /// Looks a domain up by UUID.
    pub fn lookup_by_uuid(&self, uuid: &Uuid) -> Result<DomainRef> {
        Ok(self.slot(uuid)?.domain_ref())
    }

    /// Looks a running domain up by its id.
    pub fn lookup_by_id(&self, id: i32) -> Result<DomainRef> {
        self.slots()
            .into_iter()
            .map(|s| s.domain_ref())
            .find(|d| d.id == id && id > 0)
            .ok_or_else(|| Error::no_domain_id(id))
    }

    /// Parses a UUID string the way libvirt's lookup does.
    pub fn parse_uuid(text: &str) -> Result<Uuid> {
        Uuid::parse_str(text)
            .map_err(|_| Error::InvalidArg(format!("'{text}' is not a valid UUID")))
    }
}

#[cfg(test)]
mod tests;

//! The storage driver: libvirt's storage pools and volumes for directory and LVM
//! (`logical`) pools, beside the domain core (libvirt's `src/storage/` beside
//! `src/qemu/`).
//!
//! * Pools are defined in XML ([`pool_xml`]) and kept like domains: `NAME.xml` and
//!   `autostart/NAME.xml` links in the storage dir (`/var/lib/oxvirt/storage`, or
//!   `$XDG_DATA_HOME/oxvirt/storage`), written atomically by the same store code.
//! * The `default` pool is defined, built and marked autostart the first time the
//!   driver opens a storage dir, at `/var/lib/oxvirt/images` (session:
//!   `$XDG_DATA_HOME/oxvirt/images`), the pool virt-install and virt-manager look for.
//!   Undefining it later is respected (a marker file records that it was made).
//! * An active pool's volumes are the entries of its directory, found on start and
//!   refresh ([`image::probe`]: raw, qcow2 with virtual size and backing file, ISO,
//!   subdirectories) and kept as a name list like libvirt's volume cache. A logical
//!   pool's are its volume group's LVs, with the group's sizes ([`logical`]); what
//!   differs per pool type is in [`backend`].
//! * Changes (define, start, create a volume, …) are serialised by one job lock;
//!   file work runs on blocking threads. Lifecycle and refresh events go to
//!   [`Storage::subscribe`] with libvirt's numbers ([`event`]).
//!
//! Front ends (`crate::rpc::storage`, `crate::dbus::storage_pool`) only decode and call
//! these methods; every error is an [`Error`] with libvirt's code and text.

mod backend;
pub mod error;
pub mod image;
mod logical;
mod lvm;
pub mod pool_caps;
pub mod pool_xml;
pub mod sparse;
pub mod vol_xml;
mod volumes;
pub(crate) mod xmlutil;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::broadcast;
use uuid::Uuid;

pub use error::{Error, Result};
pub use pool_xml::{PoolDef, PoolSizes};
pub use vol_xml::{VolFormat, VolInfo, VolRequest};

use crate::core::store::Store;

/// libvirt's storage pool event numbers.
pub mod event {
    /// `VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE` / `_REFRESH`.
    pub const ID_LIFECYCLE: i32 = 0;
    pub const ID_REFRESH: i32 = 1;
    /// `virStoragePoolEventLifecycleType`.
    pub const DEFINED: i32 = 0;
    pub const UNDEFINED: i32 = 1;
    pub const STARTED: i32 = 2;
    pub const STOPPED: i32 = 3;
    pub const CREATED: i32 = 4;
    pub const DELETED: i32 = 5;
}

/// libvirt's flag bits for the storage APIs.
pub mod flags {
    /// `virConnectListAllStoragePoolsFlags`.
    pub mod list {
        pub const INACTIVE: u32 = 1;
        pub const ACTIVE: u32 = 2;
        pub const PERSISTENT: u32 = 4;
        pub const TRANSIENT: u32 = 8;
        pub const AUTOSTART: u32 = 16;
        pub const NO_AUTOSTART: u32 = 32;
        pub const DIR: u32 = 64;
        pub const LOGICAL: u32 = 512;
        /// Every type bit (DIR … ISCSI_DIRECT): a filter without DIR or LOGICAL lists
        /// nothing.
        pub const TYPES: u32 = 0x7_ffc0;
    }
    /// `virStoragePoolCreateFlags`.
    pub const CREATE_WITH_BUILD: u32 = 1;
    pub const CREATE_WITH_BUILD_OVERWRITE: u32 = 2;
    pub const CREATE_WITH_BUILD_NO_OVERWRITE: u32 = 4;
    /// `virStoragePoolBuildFlags` (REPAIR 1 and RESIZE 2 no backend here takes).
    pub const BUILD_NO_OVERWRITE: u32 = 4;
    pub const BUILD_OVERWRITE: u32 = 8;
    /// `virStorageVolCreateFlags`: PREALLOC_METADATA, REFLINK, VALIDATE.
    pub const VOL_CREATE_KNOWN: u32 = 1 | 2 | 4;
    /// `virStorageVolResizeFlags`.
    pub const RESIZE_ALLOCATE: u32 = 1;
    pub const RESIZE_DELTA: u32 = 2;
    pub const RESIZE_SHRINK: u32 = 4;
    /// `virStorageVolDeleteFlags`: ZEROED, WITH_SNAPSHOTS.
    pub const VOL_DELETE_KNOWN: u32 = 1 | 2;
    /// `VIR_STORAGE_XML_INACTIVE`.
    pub const XML_INACTIVE: u32 = 1;
}

/// A client's handle on a pool (`remote_nonnull_storage_pool`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolRef {
    pub name: String,
    pub uuid: Uuid,
}

/// A client's handle on a volume (`remote_nonnull_storage_vol`): for dir pools the
/// key is the path, for logical pools the LV's UUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VolRef {
    pub pool: String,
    pub name: String,
    pub key: String,
}

/// `virStoragePoolInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolInfo {
    /// 0 inactive, 2 running.
    pub state: i32,
    pub sizes: PoolSizes,
}

/// What [`Storage::list_pools`] reports per pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    pub pool: PoolRef,
    pub active: bool,
    pub persistent: bool,
    pub autostart: bool,
}

/// A storage event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    Lifecycle {
        pool: PoolRef,
        event: i32,
        detail: i32,
    },
    Refresh {
        pool: PoolRef,
    },
}

impl PoolEvent {
    pub fn pool(&self) -> &PoolRef {
        match self {
            PoolEvent::Lifecycle { pool, .. } | PoolEvent::Refresh { pool } => pool,
        }
    }

    /// libvirt's event ID (lifecycle 0, refresh 1).
    pub fn id(&self) -> i32 {
        match self {
            PoolEvent::Lifecycle { .. } => event::ID_LIFECYCLE,
            PoolEvent::Refresh { .. } => event::ID_REFRESH,
        }
    }
}

/// Tells which running domain, if any, uses a file (set by the domain core).
pub type InUse = Box<dyn Fn(&Path) -> Option<String> + Send + Sync>;

/// Where the driver keeps things.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Pool definitions (`NAME.xml`, `autostart/`).
    pub storage_dir: PathBuf,
    /// The `default` pool's directory.
    pub images_dir: PathBuf,
    /// Where active pools are recorded (`NAME.xml`), so a restarted daemon finds them
    /// active again, as libvirtd does with `/run/libvirt/storage`; `None`: not kept.
    pub state_dir: Option<PathBuf>,
}

impl StorageConfig {
    /// The layout beside a domains dir: `…/storage` and `…/images` next to
    /// `…/domains` (`/var/lib/oxvirt/…` or `$XDG_DATA_HOME/oxvirt/…`).
    pub fn beside(domains_dir: &Path) -> StorageConfig {
        let root = domains_dir.parent().unwrap_or(domains_dir);
        StorageConfig {
            storage_dir: root.join("storage"),
            images_dir: root.join("images"),
            state_dir: None,
        }
    }
}

struct Pool {
    def: PoolDef,
    active: bool,
    persistent: bool,
    /// Volume names found by the last refresh plus those created since.
    vols: BTreeSet<String>,
    /// A logical pool's group as last read (sizes, LVs); `None` for a dir pool.
    vg: Option<logical::VgState>,
}

impl Pool {
    fn new(def: PoolDef, persistent: bool) -> Pool {
        Pool {
            def,
            active: false,
            persistent,
            vols: BTreeSet::new(),
            vg: None,
        }
    }

    fn pool_ref(&self) -> PoolRef {
        PoolRef {
            name: self.def.name.clone(),
            uuid: self.def.uuid,
        }
    }

    fn set_scan(&mut self, scan: backend::Scan) {
        self.vols = scan.vols;
        self.vg = scan.vg;
    }

    fn vol_ref(&self, name: &str) -> VolRef {
        let lv = self.vg.as_ref().and_then(|vg| vg.lvs.get(name));
        VolRef {
            pool: self.def.name.clone(),
            name: name.to_string(),
            key: match lv {
                Some(lv) => lv.uuid.clone(),
                None => self.def.path.join(name).to_string_lossy().into_owned(),
            },
        }
    }

    /// What `pool-info` shows: a dir pool's file system, a logical pool's group as
    /// last refreshed (libvirt keeps those figures too).
    fn sizes(&self) -> PoolSizes {
        match &self.vg {
            Some(vg) => vg.sizes,
            None => fs_sizes(&self.def.path),
        }
    }
}

struct Inner {
    store: Store,
    pools: Mutex<BTreeMap<String, Pool>>,
    /// One change at a time (define, start, volume create, …).
    job: tokio::sync::Mutex<()>,
    events: broadcast::Sender<PoolEvent>,
    in_use: OnceLock<InUse>,
    state_dir: Option<PathBuf>,
}

/// The storage driver. Cheap to clone; every clone is the same driver.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

/// Marks that the `default` pool was made once, so an undefined default stays gone.
const DEFAULT_MARKER: &str = ".default-pool-created";

fn store_err(e: crate::core::Error) -> Error {
    Error::System(e.to_string())
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("storage worker failed: {e}")))?
}

impl Storage {
    /// Loads the pool definitions, defines `default` on first use and starts the
    /// autostart pools.
    pub fn open(config: &StorageConfig) -> Result<Storage> {
        let store = Store::open(&config.storage_dir).map_err(store_err)?;
        let (events, _) = broadcast::channel(256);
        let s = Storage {
            inner: Arc::new(Inner {
                store,
                pools: Mutex::default(),
                job: tokio::sync::Mutex::new(()),
                events,
                in_use: OnceLock::new(),
                state_dir: config.state_dir.clone(),
            }),
        };
        for (file, xml) in s.inner.store.load_all().map_err(store_err)? {
            match PoolDef::parse(&xml) {
                Ok(def) => {
                    s.pools().insert(def.name.clone(), Pool::new(def, true));
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "skipping pool definition")
                }
            }
        }
        let marker = config.storage_dir.join(DEFAULT_MARKER);
        if !marker.exists() && !s.pools().contains_key("default") {
            s.define_default(&config.images_dir)?;
            std::fs::write(&marker, b"").map_err(|e| Error::io("write", &marker, &e))?;
        }
        s.restore_active()?;
        let autostart: Vec<String> = s
            .pools()
            .values()
            .filter(|p| !p.active && s.inner.store.autostart(&p.def.name))
            .map(|p| p.def.name.clone())
            .collect();
        for name in autostart {
            if let Err(e) = s.start_sync(&name) {
                tracing::warn!(pool = name, error = %e, "cannot autostart storage pool");
            }
        }
        Ok(s)
    }

    /// Starts again the pools that were active when the daemon stopped (transient
    /// ones are defined again from their record).
    fn restore_active(&self) -> Result<()> {
        let Some(dir) = &self.inner.state_dir else {
            return Ok(());
        };
        crate::core::fsutil::create_dir(dir, 0o700).map_err(store_err)?;
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, &e))?;
        for path in entries.flatten().map(|e| e.path()) {
            if path.extension().is_none_or(|x| x != "xml") {
                continue;
            }
            let Ok(def) = std::fs::read_to_string(&path)
                .map_err(|e| Error::io("read", &path, &e))
                .and_then(|x| PoolDef::parse(&x))
            else {
                tracing::warn!(file = %path.display(), "skipping unreadable pool state");
                continue;
            };
            let name = def.name.clone();
            self.pools()
                .entry(name.clone())
                .or_insert(Pool::new(def, false));
            if let Err(e) = self.start_sync(&name) {
                tracing::warn!(pool = name, error = %e, "cannot restart storage pool");
                self.mark_active(&name, None);
            }
        }
        Ok(())
    }

    /// Records (`Some(def)`) or forgets that a pool is active.
    fn mark_active(&self, name: &str, def: Option<&PoolDef>) {
        let Some(dir) = &self.inner.state_dir else {
            return;
        };
        let file = dir.join(format!("{name}.xml"));
        let result = match def {
            Some(d) => {
                crate::core::fsutil::write_atomic(&file, d.format(None, None).as_bytes(), 0o600)
            }
            None => crate::core::fsutil::remove_file(&file),
        };
        if let Err(e) = result {
            tracing::warn!(pool = name, error = %e, "cannot record storage pool state");
        }
    }

    fn define_default(&self, images: &Path) -> Result<()> {
        let def = PoolDef {
            name: "default".into(),
            uuid: Uuid::new_v4(),
            path: images.to_path_buf(),
            perms: pool_xml::Perms {
                mode: Some(0o711),
                ..Default::default()
            },
            kind: pool_xml::PoolKind::Dir,
        };
        build_dir(&def)?;
        self.inner
            .store
            .save(&def.name, &def.format(None, None))
            .map_err(store_err)?;
        self.inner
            .store
            .set_autostart(&def.name, true)
            .map_err(store_err)?;
        self.pools().insert(def.name.clone(), Pool::new(def, true));
        Ok(())
    }

    /// Lets the domain core say which running domain uses a file (volume delete and
    /// wipe refuse such volumes).
    pub fn set_in_use(&self, f: InUse) {
        let _ = self.inner.in_use.set(f);
    }

    /// Storage events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PoolEvent> {
        self.inner.events.subscribe()
    }

    fn emit(&self, ev: PoolEvent) {
        let _ = self.inner.events.send(ev);
    }

    fn lifecycle(&self, pool: PoolRef, event: i32) {
        self.emit(PoolEvent::Lifecycle {
            pool,
            event,
            detail: 0,
        });
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Pool>> {
        self.inner.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_pool<T>(&self, name: &str, f: impl FnOnce(&mut Pool) -> Result<T>) -> Result<T> {
        let mut pools = self.pools();
        let p = pools
            .get_mut(name)
            .ok_or_else(|| Error::no_pool_name(name))?;
        f(p)
    }

    fn with_active<T>(&self, name: &str, f: impl FnOnce(&mut Pool) -> Result<T>) -> Result<T> {
        self.with_pool(name, |p| {
            if !p.active {
                return Err(Error::pool_inactive(name));
            }
            f(p)
        })
    }

    // ---- pools ----

    /// Every pool matching libvirt's `virConnectListAllStoragePools` filter, by name.
    pub fn list_pools(&self, filter: u32) -> Vec<PoolStatus> {
        use flags::list::*;
        self.pools()
            .values()
            .filter(|p| filter & TYPES == 0 || filter & backend::list_flag(&p.def.kind) != 0)
            .map(|p| PoolStatus {
                pool: p.pool_ref(),
                active: p.active,
                persistent: p.persistent,
                autostart: p.persistent && self.inner.store.autostart(&p.def.name),
            })
            .filter(|s| {
                let f = filter;
                (f & (ACTIVE | INACTIVE) == 0
                    || f & (ACTIVE | INACTIVE) == ACTIVE | INACTIVE
                    || (f & ACTIVE != 0 && s.active)
                    || (f & INACTIVE != 0 && !s.active))
                    && (f & (PERSISTENT | TRANSIENT) == 0
                        || f & (PERSISTENT | TRANSIENT) == PERSISTENT | TRANSIENT
                        || (f & PERSISTENT != 0 && s.persistent)
                        || (f & TRANSIENT != 0 && !s.persistent))
                    && (f & (AUTOSTART | NO_AUTOSTART) == 0
                        || f & (AUTOSTART | NO_AUTOSTART) == AUTOSTART | NO_AUTOSTART
                        || (f & AUTOSTART != 0 && s.autostart)
                        || (f & NO_AUTOSTART != 0 && !s.autostart))
            })
            .collect()
    }

    pub fn lookup_pool_by_name(&self, name: &str) -> Result<PoolRef> {
        self.with_pool(name, |p| Ok(p.pool_ref()))
    }

    pub fn lookup_pool_by_uuid(&self, uuid: &Uuid) -> Result<PoolRef> {
        self.pools()
            .values()
            .find(|p| p.def.uuid == *uuid)
            .map(Pool::pool_ref)
            .ok_or_else(|| Error::no_pool_uuid(uuid))
    }

    /// virStoragePoolLookupByTargetPath.
    pub fn lookup_pool_by_target(&self, path: &str) -> Result<PoolRef> {
        let want = Path::new(path.trim_end_matches('/'));
        self.pools()
            .values()
            .find(|p| p.def.path == want)
            .map(Pool::pool_ref)
            .ok_or_else(|| {
                Error::NoPool(format!(
                    "no storage pool with matching target path '{path}'"
                ))
            })
    }

    /// The pool a name+UUID handle names (UUID first, as libvirt looks pools up).
    pub fn pool_by_ref(&self, name: &str, uuid: &Uuid) -> Result<PoolRef> {
        self.lookup_pool_by_uuid(uuid)
            .or_else(|_| self.lookup_pool_by_name(name))
    }

    /// Checks a new definition against the others: libvirt's duplicate rules.
    fn check_duplicate(&self, def: &PoolDef) -> Result<()> {
        for p in self.pools().values() {
            if p.def.uuid == def.uuid && p.def.name != def.name {
                return Err(Error::OperationFailed(format!(
                    "pool '{}' is already defined with uuid {}",
                    p.def.name, def.uuid
                )));
            }
            if p.def.name == def.name && p.def.uuid != def.uuid {
                return Err(Error::OperationFailed(format!(
                    "pool '{}' already exists with uuid {}",
                    def.name, p.def.uuid
                )));
            }
            if p.def.name != def.name && p.def.path == def.path {
                return Err(Error::OperationFailed(format!(
                    "Storage source conflict with pool: '{}'",
                    p.def.name
                )));
            }
        }
        Ok(())
    }

    /// virStoragePoolDefineXML.
    pub async fn define_pool(&self, xml: &str, flags: u32) -> Result<PoolRef> {
        // VIR_STORAGE_POOL_DEFINE_VALIDATE: we always validate against our model.
        Error::check_flags(flags, 1, "virStoragePoolDefineXML")?;
        let def = PoolDef::parse(xml)?;
        let _job = self.inner.job.lock().await;
        self.check_duplicate(&def)?;
        self.inner
            .store
            .save(&def.name, &def.format(None, None))
            .map_err(store_err)?;
        let r = PoolRef {
            name: def.name.clone(),
            uuid: def.uuid,
        };
        {
            let mut pools = self.pools();
            match pools.get_mut(&def.name) {
                Some(p) => {
                    p.def = def;
                    p.persistent = true;
                }
                None => {
                    pools.insert(def.name.clone(), Pool::new(def, true));
                }
            }
        }
        self.lifecycle(r.clone(), event::DEFINED);
        Ok(r)
    }

    /// virStoragePoolCreateXML: a transient pool, started at once.
    pub async fn create_pool_xml(&self, xml: &str, flags: u32) -> Result<PoolRef> {
        Error::check_flags(
            flags,
            flags::CREATE_WITH_BUILD
                | flags::CREATE_WITH_BUILD_OVERWRITE
                | flags::CREATE_WITH_BUILD_NO_OVERWRITE,
            "virStoragePoolCreateXML",
        )?;
        let def = PoolDef::parse(xml)?;
        let _job = self.inner.job.lock().await;
        self.check_duplicate(&def)?;
        if self.pools().contains_key(&def.name) {
            return Err(Error::OperationInvalid(format!(
                "storage pool '{}' is already defined",
                def.name
            )));
        }
        let def2 = def.clone();
        let scan = blocking(move || {
            if let Some(build_flags) = build_flags(flags) {
                backend::build(&def2, build_flags)?;
            }
            backend::start(&def2)
        })
        .await?;
        let r = PoolRef {
            name: def.name.clone(),
            uuid: def.uuid,
        };
        self.mark_active(&def.name, Some(&def));
        let mut pool = Pool::new(def, false);
        pool.active = true;
        pool.set_scan(scan);
        self.pools().insert(r.name.clone(), pool);
        self.lifecycle(r.clone(), event::STARTED);
        Ok(r)
    }

    /// virStoragePoolCreate: start a defined pool.
    pub async fn start_pool(&self, name: &str, flags: u32) -> Result<()> {
        Error::check_flags(
            flags,
            flags::CREATE_WITH_BUILD
                | flags::CREATE_WITH_BUILD_OVERWRITE
                | flags::CREATE_WITH_BUILD_NO_OVERWRITE,
            "virStoragePoolCreate",
        )?;
        let _job = self.inner.job.lock().await;
        let def = self.inactive_def(name)?;
        let scan = blocking(move || {
            if let Some(build_flags) = build_flags(flags) {
                backend::build(&def, build_flags)?;
            }
            backend::start(&def)
        })
        .await?;
        let r = self.mark_started(name, scan)?;
        self.lifecycle(r, event::STARTED);
        Ok(())
    }

    /// Starts a pool from a plain thread (daemon start: autostart and restore).
    fn start_sync(&self, name: &str) -> Result<PoolRef> {
        let def = self.inactive_def(name)?;
        let scan = backend::start(&def)?;
        self.mark_started(name, scan)
    }

    /// The definition of a pool that is not active (libvirt's error otherwise).
    fn inactive_def(&self, name: &str) -> Result<PoolDef> {
        self.with_pool(name, |p| {
            if p.active {
                return Err(Error::OperationInvalid(format!(
                    "storage pool '{name}' is already active"
                )));
            }
            Ok(p.def.clone())
        })
    }

    fn mark_started(&self, name: &str, scan: backend::Scan) -> Result<PoolRef> {
        let (r, def) = self.with_pool(name, |p| {
            p.active = true;
            p.set_scan(scan);
            Ok((p.pool_ref(), p.def.clone()))
        })?;
        self.mark_active(name, Some(&def));
        Ok(r)
    }

    /// virStoragePoolBuild: make the target directory, or a logical pool's volume group.
    pub async fn build_pool(&self, name: &str, flags: u32) -> Result<()> {
        Error::check_flags(
            flags,
            flags::BUILD_OVERWRITE | flags::BUILD_NO_OVERWRITE,
            "virStoragePoolBuild",
        )?;
        let _job = self.inner.job.lock().await;
        let def = self.inactive_def(name)?;
        blocking(move || backend::build(&def, flags)).await
    }

    /// virStoragePoolDestroy: stop a pool (a transient one disappears).
    pub async fn destroy_pool(&self, name: &str) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let def = self.with_active(name, |p| Ok(p.def.clone()))?;
        // A backend that cannot stop (a logical volume still open) leaves it active.
        blocking(move || backend::stop(&def)).await?;
        let (r, transient) = self.with_active(name, |p| {
            p.active = false;
            p.vols.clear();
            p.vg = None;
            Ok((p.pool_ref(), !p.persistent))
        })?;
        if transient {
            self.pools().remove(name);
        }
        self.mark_active(name, None);
        self.lifecycle(r, event::STOPPED);
        Ok(())
    }

    /// virStoragePoolDelete: remove an inactive pool's (empty) directory, or its volume
    /// group and physical volumes.
    pub async fn delete_pool(&self, name: &str, flags: u32) -> Result<()> {
        Error::check_flags(flags, 1, "virStoragePoolDelete")?;
        let _job = self.inner.job.lock().await;
        let (r, def) = self.with_pool(name, |p| {
            if p.active {
                return Err(Error::OperationInvalid(format!(
                    "storage pool '{name}' is still active"
                )));
            }
            Ok((p.pool_ref(), p.def.clone()))
        })?;
        blocking(move || backend::delete(&def, flags)).await?;
        self.lifecycle(r, event::DELETED);
        Ok(())
    }

    /// virStoragePoolUndefine.
    pub async fn undefine_pool(&self, name: &str) -> Result<()> {
        let _job = self.inner.job.lock().await;
        let r = self.with_pool(name, |p| {
            if p.active {
                return Err(Error::OperationInvalid(format!(
                    "storage pool '{name}' is still active"
                )));
            }
            if !p.persistent {
                return Err(Error::OperationInvalid(format!(
                    "storage pool '{name}' is not persistent"
                )));
            }
            Ok(p.pool_ref())
        })?;
        self.inner.store.remove(name).map_err(store_err)?;
        self.pools().remove(name);
        self.lifecycle(r, event::UNDEFINED);
        Ok(())
    }

    /// virStoragePoolRefresh: find the pool's volumes (and a group's sizes) again.
    pub async fn refresh_pool(&self, name: &str, flags: u32) -> Result<()> {
        Error::check_flags(flags, 0, "virStoragePoolRefresh")?;
        let _job = self.inner.job.lock().await;
        self.rescan(name).await?;
        let r = self.with_active(name, |p| Ok(p.pool_ref()))?;
        self.emit(PoolEvent::Refresh { pool: r });
        Ok(())
    }

    /// Reads an active pool's contents again (the caller holds the job lock).
    async fn rescan(&self, name: &str) -> Result<()> {
        let def = self.with_active(name, |p| Ok(p.def.clone()))?;
        let scan = blocking(move || backend::refresh(&def)).await?;
        self.with_active(name, |p| {
            p.set_scan(scan);
            Ok(())
        })
    }

    pub fn pool_info(&self, name: &str) -> Result<PoolInfo> {
        self.with_pool(name, |p| {
            Ok(PoolInfo {
                state: if p.active { 2 } else { 0 },
                sizes: if p.active {
                    p.sizes()
                } else {
                    PoolSizes::default()
                },
            })
        })
    }

    /// virStoragePoolGetXMLDesc (`INACTIVE`: the stored definition without sizes).
    pub fn pool_xml(&self, name: &str, flags: u32) -> Result<String> {
        Error::check_flags(flags, flags::XML_INACTIVE, "virStoragePoolGetXMLDesc")?;
        let (def, active, sizes) = self.with_pool(name, |p| {
            Ok((p.def.clone(), p.active, p.active.then(|| p.sizes())))
        })?;
        if flags & flags::XML_INACTIVE != 0 || !active {
            return Ok(def.format(None, None));
        }
        // A volume group's /dev/VG is udev's: libvirt shows the defined permissions.
        let actual = def
            .logical()
            .is_none()
            .then(|| dir_perms(&def.path))
            .flatten();
        Ok(def.format(sizes, actual.as_ref()))
    }

    pub fn pool_status(&self, name: &str) -> Result<PoolStatus> {
        self.with_pool(name, |p| {
            Ok(PoolStatus {
                pool: p.pool_ref(),
                active: p.active,
                persistent: p.persistent,
                autostart: p.persistent && self.inner.store.autostart(name),
            })
        })
    }

    pub async fn set_pool_autostart(&self, name: &str, on: bool) -> Result<()> {
        let _job = self.inner.job.lock().await;
        self.with_pool(name, |p| {
            if !p.persistent {
                return Err(Error::InvalidArg(
                    "cannot set autostart for transient pool".into(),
                ));
            }
            Ok(())
        })?;
        self.inner.store.set_autostart(name, on).map_err(store_err)
    }
}

/// virStoragePoolCreate(XML)'s flags as virStoragePoolBuild's; `None`: no build.
fn build_flags(flags: u32) -> Option<u32> {
    if flags & flags::CREATE_WITH_BUILD_OVERWRITE != 0 {
        Some(flags::BUILD_OVERWRITE)
    } else if flags & flags::CREATE_WITH_BUILD_NO_OVERWRITE != 0 {
        Some(flags::BUILD_NO_OVERWRITE)
    } else if flags & flags::CREATE_WITH_BUILD != 0 {
        Some(0)
    } else {
        None
    }
}

/// virConnectFindStoragePoolSources for pool type `kind`: a logical pool's volume
/// groups; the `dir` backend has no discovery, as in libvirt; every other type's
/// backend is missing from this build, so the answer is libvirtd's for that.
pub async fn find_pool_sources(kind: &str, flags: u32) -> Result<String> {
    Error::check_flags(flags, 0, "virConnectFindStoragePoolSources")?;
    match kind {
        "logical" => blocking(logical::find_sources).await,
        "dir" => Err(Error::NoSupport(format!(
            "pool type '{kind}' does not support source discovery"
        ))),
        _ => Err(pool_xml::missing_backend(kind)),
    }
}

/// Makes a pool's directory (libvirt's pool-build for `dir`: mkdir, mode 0711 by
/// default); an existing directory is fine.
pub(super) fn build_dir(def: &PoolDef) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mode = def.perms.mode.unwrap_or(0o711);
    if def.path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(&def.path)
        .and_then(|()| std::fs::set_permissions(&def.path, std::fs::Permissions::from_mode(mode)))
        .map_err(|e| Error::io("create path", &def.path, &e))
}

/// The names of the volumes in `dir`: regular files and subdirectories.
pub(super) fn scan(dir: &Path) -> Result<BTreeSet<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("open directory", dir, &e))?;
    let mut out = BTreeSet::new();
    for e in entries {
        let e = e.map_err(|e| Error::io("read directory", dir, &e))?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let Ok(t) = e.file_type() else { continue };
        // Hidden files are our (and editors') temporaries.
        if name.starts_with('.') {
            continue;
        }
        let t = if t.is_symlink() {
            match std::fs::metadata(e.path()) {
                Ok(m) => m.file_type(),
                Err(_) => continue,
            }
        } else {
            t
        };
        if t.is_file() || t.is_dir() {
            out.insert(name);
        }
    }
    Ok(out)
}

/// The pool's file system sizes (statvfs), as libvirt reports them.
fn fs_sizes(path: &Path) -> PoolSizes {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let frag = s.fragment_size();
            let capacity = s.blocks() * frag;
            let available = s.blocks_available() * frag;
            let free = s.blocks_free() * frag;
            PoolSizes {
                capacity,
                allocation: capacity - free,
                available,
            }
        }
        Err(_) => PoolSizes::default(),
    }
}

/// The pool directory's actual mode and owner.
fn dir_perms(path: &Path) -> Option<pool_xml::Perms> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(pool_xml::Perms {
        mode: Some(m.mode() & 0o7777),
        owner: Some(m.uid()),
        group: Some(m.gid()),
        label: None,
    })
}

#[cfg(test)]
mod tests;

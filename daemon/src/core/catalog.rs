//! Catalog operations: define, create (transient), undefine, rename, autostart,
//! metadata. Each takes the catalog lock so names and UUIDs stay unique, and
//! writes the store before changing memory, so a failure leaves both as they were.

use std::sync::Arc;

use uuid::Uuid;

use super::definition::Definition;
use super::event::{detail, kind, Event};
use super::flags;
use super::slot::{Record, Slot};
use super::state::StateReason;
use super::{Core, DomainRef, Error, Result};

impl Core {
    /// Checks `def` against the catalog: the slot with the same UUID (if any), or
    /// libvirt's error for a name or UUID held by another domain.
    fn find_same(&self, def: &Definition) -> Result<Option<Arc<Slot>>> {
        let (name, uuid) = (def.name(), def.uuid());
        // libvirt checks the UUID first, then the name.
        let slots = self.slots();
        if let Some(slot) = slots.iter().find(|s| s.uuid == uuid) {
            let other = slot.name();
            if other != name {
                return Err(Error::OperationFailed(format!(
                    "domain '{other}' is already defined with uuid {uuid}"
                )));
            }
        }
        if let Some(slot) = slots.iter().find(|s| s.uuid != uuid && s.name() == name) {
            return Err(Error::OperationFailed(format!(
                "domain '{name}' already exists with uuid {}",
                slot.uuid
            )));
        }
        Ok(self.slot(&uuid).ok())
    }

    /// Defines (or redefines) a persistent domain from XML (virDomainDefineXML).
    pub async fn define_xml(&self, xml: &str) -> Result<DomainRef> {
        let def = Definition::parse(xml)?;
        // Refuse what we could never run now, not at start.
        def.translate()?;
        let _catalog = self.inner.catalog.lock().await;
        let name = def.name().to_string();
        let uuid = def.uuid();
        let inactive_xml = def.to_xml(true);
        match self.find_same(&def)? {
            Some(slot) => {
                let _job = slot.job.lock().await;
                self.inner.store.save(&name, &inactive_xml)?;
                let was_persistent = {
                    let mut r = slot.rec();
                    let was = r.persistent();
                    r.def = Some(def);
                    was
                };
                let d = if was_persistent {
                    detail::defined::UPDATED
                } else {
                    detail::defined::ADDED
                };
                self.emit_lifecycle(&slot, kind::DEFINED, d);
                Ok(slot.domain_ref())
            }
            None => {
                self.inner.store.save(&name, &inactive_xml)?;
                let slot = Slot::new(
                    uuid,
                    Record {
                        name,
                        def: Some(def),
                        live: None,
                        state: StateReason::SHUTOFF_UNKNOWN,
                        id: -1,
                        autostart: false,
                        vm: None,
                    },
                );
                self.inner
                    .domains
                    .write()
                    .expect("domain map poisoned")
                    .insert(uuid, slot.clone());
                self.emit_lifecycle(&slot, kind::DEFINED, detail::defined::ADDED);
                Ok(slot.domain_ref())
            }
        }
    }

    /// The inactive domain `def` starts as (same name and UUID), or a new transient
    /// one (`true`: the caller removes it again if the start fails). The catalog
    /// lock is held.
    pub(super) fn slot_to_start(&self, def: &Definition) -> Result<(Arc<Slot>, bool)> {
        let uuid = def.uuid();
        Ok(match self.find_same(def)? {
            Some(slot) => {
                if slot.rec().active() {
                    return Err(Error::OperationInvalid(format!(
                        "domain '{}' is already active",
                        def.name()
                    )));
                }
                (slot, false)
            }
            None => {
                let slot = Slot::new(
                    uuid,
                    Record {
                        name: def.name().to_string(),
                        def: None,
                        live: Some(def.clone()),
                        state: StateReason::SHUTOFF_UNKNOWN,
                        id: -1,
                        autostart: false,
                        vm: None,
                    },
                );
                self.inner
                    .domains
                    .write()
                    .expect("domain map poisoned")
                    .insert(uuid, slot.clone());
                (slot, true)
            }
        })
    }

    /// Creates and starts a transient domain (virDomainCreateXML); it vanishes when
    /// it stops. An inactive persistent domain with the same name and UUID is
    /// started from this XML instead, as libvirt does.
    pub async fn create_xml(&self, xml: &str, flags: u32) -> Result<DomainRef> {
        Error::check_flags(flags, flags::create::START_PAUSED, "virDomainCreateXML")?;
        let paused = flags & flags::create::START_PAUSED != 0;
        let def = Definition::parse(xml)?;
        let _catalog = self.inner.catalog.lock().await;
        let uuid = def.uuid();
        let (slot, fresh) = self.slot_to_start(&def)?;
        let _job = slot.job.lock().await;
        if let Err(e) = self.boot(&slot, def, paused).await {
            if fresh {
                self.inner.domains.write().expect("poisoned").remove(&uuid);
            }
            return Err(e);
        }
        Ok(slot.domain_ref())
    }

    /// Removes a persistent definition (virDomainUndefineFlags). A running domain
    /// becomes transient, as in libvirt: it keeps running on its live definition
    /// and is gone when it stops.
    pub async fn undefine(&self, uuid: &Uuid, flags: u32) -> Result<()> {
        use flags::undefine::*;
        let known = MANAGED_SAVE
            | SNAPSHOTS_METADATA
            | NVRAM
            | KEEP_NVRAM
            | CHECKPOINTS_METADATA
            | TPM
            | KEEP_TPM;
        Error::check_flags(flags, known, "virDomainUndefineFlags")?;
        super::tpmstate::check_flags(flags)?;
        let _catalog = self.inner.catalog.lock().await;
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let (name, has_tpm) = {
            let r = slot.rec();
            if !r.persistent() {
                return Err(Error::OperationInvalid(
                    "cannot undefine transient domain".into(),
                ));
            }
            let has_tpm = r.def.as_ref().is_some_and(|d| d.has_tpm());
            (r.name.clone(), has_tpm)
        };
        // As libvirt: an inactive domain's snapshots, and a managed save image, are
        // forgotten only when the caller says so.
        let snapshots = self.snapshot_count(&name);
        if snapshots > 0 {
            if flags & SNAPSHOTS_METADATA == 0 && !slot.rec().active() {
                return Err(Error::OperationInvalid(format!(
                    "cannot delete inactive domain with {snapshots} snapshots"
                )));
            }
            if flags & SNAPSHOTS_METADATA != 0 {
                self.snapshot_forget_all(&name)?;
            }
        }
        // As libvirt: a managed save image is removed only when the caller says so.
        let image = self.managed_save_path(&name);
        if image.exists() {
            if flags & MANAGED_SAVE == 0 {
                return Err(Error::OperationInvalid(
                    "Refusing to undefine while domain managed save image exists".into(),
                ));
            }
            super::save::remove_image(&image)?;
        }
        self.inner.store.remove(&name)?;
        let still_running = {
            let mut r = slot.rec();
            r.def = None;
            r.autostart = false;
            r.active()
        };
        // A running domain's swtpm still uses its state.
        if !still_running {
            super::tpmstate::on_undefine(uuid, has_tpm, flags);
        }
        // The VMM supervisor drops a transient slot when its VMM exits.
        if !still_running {
            self.inner
                .domains
                .write()
                .expect("domain map poisoned")
                .remove(uuid);
        }
        self.emit_lifecycle(&slot, kind::UNDEFINED, detail::undefined::REMOVED);
        Ok(())
    }

    /// Renames an inactive persistent domain (virDomainRename).
    pub async fn rename(&self, uuid: &Uuid, new_name: &str, flags: u32) -> Result<()> {
        Error::check_flags(flags, 0, "virDomainRename")?;
        let _catalog = self.inner.catalog.lock().await;
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        if new_name.is_empty() || new_name.contains('/') {
            return Err(Error::InvalidArg(format!(
                "invalid domain name '{new_name}'"
            )));
        }
        if let Some(other) = self.slots().into_iter().find(|s| s.name() == new_name) {
            return Err(Error::OperationInvalid(format!(
                "domain with name '{new_name}' already exists (uuid {})",
                other.uuid
            )));
        }
        let (old, mut def) = {
            let r = slot.rec();
            if r.active() {
                return Err(Error::OperationInvalid(
                    "cannot rename active domain".into(),
                ));
            }
            let def = r.def.clone().ok_or_else(|| {
                Error::OperationInvalid("cannot rename a transient domain".into())
            })?;
            (r.name.clone(), def)
        };
        // As libvirt: what is kept by name (a managed save image, snapshots) pins it.
        if self.managed_save_path(&old).exists() {
            return Err(Error::OperationInvalid(
                "domain with a managed saved state can't be renamed".into(),
            ));
        }
        if self.snapshot_count(&old) > 0 {
            return Err(Error::OperationInvalid(
                "cannot rename domain with snapshots".into(),
            ));
        }
        def.set_name(new_name)?;
        self.inner.store.rename(&old, new_name, &def.to_xml(true))?;
        let before = slot.domain_ref();
        {
            let mut r = slot.rec();
            r.name = new_name.to_string();
            r.def = Some(def);
        }
        self.emit(Event::Lifecycle {
            domain: before,
            event: kind::UNDEFINED,
            detail: detail::undefined::RENAMED,
        });
        self.emit_lifecycle(&slot, kind::DEFINED, detail::defined::RENAMED);
        Ok(())
    }

    /// Whether the domain starts with the daemon.
    pub fn autostart(&self, uuid: &Uuid) -> Result<bool> {
        Ok(self.slot(uuid)?.rec().autostart)
    }

    /// Sets autostart (virDomainSetAutostart); persistent domains only.
    pub async fn set_autostart(&self, uuid: &Uuid, on: bool) -> Result<()> {
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let name = {
            let r = slot.rec();
            if !r.persistent() {
                return Err(Error::OperationInvalid(
                    "cannot set autostart for transient domain".into(),
                ));
            }
            r.name.clone()
        };
        self.inner.store.set_autostart(&name, on)?;
        slot.rec().autostart = on;
        Ok(())
    }

    /// Reads metadata (virDomainGetMetadata): `kind` from [`flags::metadata`].
    pub fn metadata(
        &self,
        uuid: &Uuid,
        kind: i32,
        uri: Option<&str>,
        flags: u32,
    ) -> Result<String> {
        use flags::affect::{CONFIG, LIVE};
        Error::check_flags(flags, LIVE | CONFIG, "virDomainGetMetadata")?;
        let slot = self.slot(uuid)?;
        let r = slot.rec();
        let def = if flags & CONFIG != 0 {
            r.def.as_ref().ok_or_else(|| {
                Error::OperationInvalid(
                    "transient domains do not have any persistent config".into(),
                )
            })?
        } else {
            r.current()
        };
        def.metadata(kind, uri)
    }

    /// Sets or clears (`None`) metadata (virDomainSetMetadata).
    pub async fn set_metadata(
        &self,
        uuid: &Uuid,
        kind: i32,
        value: Option<&str>,
        key: Option<&str>,
        uri: Option<&str>,
        flags: u32,
    ) -> Result<()> {
        use flags::affect::{CONFIG, LIVE};
        Error::check_flags(flags, LIVE | CONFIG, "virDomainSetMetadata")?;
        let slot = self.slot(uuid)?;
        {
            let _job = slot.job.lock().await;
            let (active, persistent) = {
                let r = slot.rec();
                (r.active(), r.persistent())
            };
            let (live, config) = match flags & (LIVE | CONFIG) {
                0 => (active, !active || persistent),
                f => (f & LIVE != 0, f & CONFIG != 0),
            };
            if live && !active {
                return Err(Error::OperationInvalid("domain is not running".into()));
            }
            if config && !persistent {
                return Err(Error::OperationInvalid(
                    "transient domains do not have any persistent config".into(),
                ));
            }
            if live {
                let mut r = slot.rec();
                if let Some(d) = r.live.as_mut() {
                    d.set_metadata(kind, value, key, uri)?;
                }
            }
            if config {
                let (name, mut def) = {
                    let r = slot.rec();
                    (r.name.clone(), r.def.clone().expect("persistent checked"))
                };
                def.set_metadata(kind, value, key, uri)?;
                self.inner.store.save(&name, &def.to_xml(true))?;
                slot.rec().def = Some(def);
            }
        }
        self.emit(Event::MetadataChange {
            domain: slot.domain_ref(),
            kind,
            uri: uri.map(str::to_string),
        });
        Ok(())
    }

    /// Applies `edit` to the persistent definition and saves it (job lock held).
    pub(super) async fn update_definition(
        &self,
        slot: &Arc<Slot>,
        edit: impl FnOnce(&mut Definition) -> Result<()>,
    ) -> Result<()> {
        let (name, mut def) = {
            let r = slot.rec();
            let def = r.def.clone().ok_or_else(|| {
                Error::OperationInvalid(
                    "transient domains do not have any persistent config".into(),
                )
            })?;
            (r.name.clone(), def)
        };
        edit(&mut def)?;
        // The edited definition must still be one we accept.
        let def = Definition::parse(&def.to_xml(true))?;
        self.inner.store.save(&name, &def.to_xml(true))?;
        slot.rec().def = Some(def);
        Ok(())
    }

    fn emit_lifecycle(&self, slot: &Slot, event: i32, detail: i32) {
        self.emit(Event::Lifecycle {
            domain: slot.domain_ref(),
            event,
            detail,
        });
    }
}

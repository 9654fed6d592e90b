//! Where domains meet the storage driver ([`crate::storage`]): at start, each
//! `<disk type='volume'><source pool volume/>` is resolved to its volume's file, and
//! the live definition records it as `<disk type='file'><source file=…/>` (a logical
//! volume as `<disk type='block'><source dev=…/>`) with the volume's format, so
//! translation sees a plain file or device and `dumpxml` of the running domain shows
//! the path; and the storage driver asks which running domain uses a file before
//! deleting or wiping a volume.

use std::path::Path;
use std::sync::Arc;

use domain_xml::{DiskDriver, DiskFormat, DiskType};

use super::definition::Definition;
use super::{Core, CoreConfig, Error, Result};
use crate::storage::{Storage, StorageConfig, VolFormat};

/// Opens the storage driver beside the domain store (`storage/` and `images/` next to
/// `domains/`).
pub(super) fn open_storage(config: &CoreConfig) -> Result<Storage> {
    let mut c = StorageConfig::beside(&config.domains_dir);
    c.state_dir = Some(config.runtime_dir.join("storage"));
    Ok(Storage::open(&c)?)
}

/// Lets the storage driver see which running domain uses a file.
pub(super) fn hook_in_use(core: &Core) {
    let weak = Arc::downgrade(&core.inner);
    core.inner.storage.set_in_use(Box::new(move |path: &Path| {
        let inner = weak.upgrade()?;
        let core = Core { inner };
        core.running_user_of(path)
    }));
}

/// Makes each volume disk a file disk named after its pool and volume, for checking a
/// definition before its volumes are resolved (define time).
pub(super) fn stand_in_volumes(disks: &mut [domain_xml::Disk]) {
    for disk in disks.iter_mut().filter(|d| d.disk_type == DiskType::Volume) {
        let source = disk.source.get_or_insert_with(Default::default);
        let name = format!(
            "{}/{}",
            source.get("pool").unwrap_or_default(),
            source.get("volume").unwrap_or_default()
        );
        source
            .attrs
            .retain(|(k, _)| !matches!(k.as_str(), "pool" | "volume" | "mode"));
        source.attrs.insert(0, ("file".to_string(), name));
        disk.disk_type = DiskType::File;
    }
}

impl Core {
    /// The storage driver.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// The running domain whose live definition has a disk on `path`.
    fn running_user_of(&self, path: &Path) -> Option<String> {
        let canon = std::fs::canonicalize(path).ok();
        self.slots().into_iter().find_map(|slot| {
            let r = slot.rec();
            if !r.active() {
                return None;
            }
            let live = r.live.as_ref()?;
            live.disks()
                .iter()
                .filter_map(|d| {
                    d.source
                        .as_ref()?
                        .get("file")
                        .or(d.source.as_ref()?.get("dev"))
                })
                .any(|f| {
                    Path::new(f) == path
                        || canon.is_some() && std::fs::canonicalize(f).ok() == canon
                })
                .then(|| r.name.clone())
        })
    }

    /// Turns every `type='volume'` disk of `def` into the file its volume names (the
    /// pool must be active and hold the volume).
    pub(super) fn resolve_volumes(&self, def: &mut Definition) -> Result<()> {
        for disk in def.disks_mut() {
            if disk.disk_type != DiskType::Volume {
                continue;
            }
            let dev = disk.target.dev.clone();
            let source = disk.source.as_ref();
            let (Some(pool), Some(volume)) = (
                source.and_then(|s| s.get("pool")),
                source.and_then(|s| s.get("volume")),
            ) else {
                return Err(Error::Xml(format!(
                    "disk '{dev}': <source> of a volume disk needs 'pool' and 'volume'"
                )));
            };
            let (path, format, block) = self.storage().resolve(pool, volume)?;
            let format = match format {
                VolFormat::Qcow2 => DiskFormat::Qcow2,
                VolFormat::Raw | VolFormat::Iso => DiskFormat::Raw,
                VolFormat::Dir => {
                    return Err(Error::ConfigUnsupported(format!(
                        "disk '{dev}': volume '{volume}' in pool '{pool}' is a directory"
                    )))
                }
            };
            let driver = disk.driver.get_or_insert_with(DiskDriver::default);
            if driver.format.is_none() {
                driver.name.get_or_insert_with(|| "qemu".to_string());
                driver.format = Some(format);
            }
            let source = disk.source.get_or_insert_with(Default::default);
            source
                .attrs
                .retain(|(k, _)| !matches!(k.as_str(), "pool" | "volume" | "mode"));
            // A logical volume is a block device: `<disk type='block'><source dev>`.
            let (kind, attr) = if block {
                (DiskType::Block, "dev")
            } else {
                (DiskType::File, "file")
            };
            source
                .attrs
                .insert(0, (attr.to_string(), path.to_string_lossy().into_owned()));
            disk.disk_type = kind;
        }
        Ok(())
    }
}

//! Saving a running domain's state into a file and going on from it: libvirt's
//! managed save (`virsh managedsave`, D-Bus `ManagedSave`; the next start restores
//! it and removes the image) and `virsh save FILE` / `virsh restore FILE`.
//!
//! The VMM writes its machine state (QMP `getfd` with the open file, then
//! `migrate uri=fd:NAME`, as libvirt drives QEMU) after a header of ours, as
//! libvirt's QEMU driver puts its own header before QEMU's stream:
//!
//! ```text
//! "OxvirtDomainSave" | version u32 LE | XML length u32 LE | running u32 LE | 0 u32
//! | the domain XML | zeros up to the next 4 KiB | the VMM's stream
//! ```
//!
//! The XML is the live definition as a restore boots it again; `running` says
//! whether the guest ran when saved (a paused one comes back paused). Managed save
//! images live in `save/NAME.save` beside the definitions (libvirt:
//! `/var/lib/libvirt/qemu/save`), 0600.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::definition::Definition;
use super::slot::Slot;
use super::state::State;
use super::{Core, Error, Result};

const MAGIC: &[u8; 16] = b"OxvirtDomainSave";
const VERSION: u32 = 1;
/// The VMM's stream starts on this boundary after the header and XML.
const ALIGN: u64 = 4096;
/// A header's XML longer than this is not ours.
const MAX_XML: u32 = 16 << 20;
/// How long the VMM may take to write its state (RAM at disk speed).
const SAVE_TIMEOUT: Duration = Duration::from_secs(600);

/// `virDomainSaveRestoreFlags`.
pub mod flags {
    pub const BYPASS_CACHE: u32 = 1 << 0;
    pub const RUNNING: u32 = 1 << 1;
    pub const PAUSED: u32 = 1 << 2;
}

/// A saved state to boot from.
#[derive(Debug, Clone)]
pub(super) struct Incoming {
    pub path: PathBuf,
    /// Where the VMM's stream starts.
    pub offset: u64,
    /// The guest ran when it was saved.
    pub running: bool,
    /// It is a snapshot's (the events and reasons say `from snapshot`).
    pub snapshot: bool,
}

/// A save file's header.
#[derive(Debug, Clone)]
pub(super) struct Image {
    pub xml: String,
    pub running: bool,
    pub offset: u64,
}

fn header(xml: &str, running: bool) -> Vec<u8> {
    let mut h = Vec::with_capacity(ALIGN as usize);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&(xml.len() as u32).to_le_bytes());
    h.extend_from_slice(&u32::from(running).to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(xml.as_bytes());
    let padded = (h.len() as u64).div_ceil(ALIGN) * ALIGN;
    h.resize(padded as usize, 0);
    h
}

/// Reads the header of the save file at `path`.
pub(super) fn read_image(path: &Path) -> Result<Image> {
    let bad = |why: &str| {
        Error::OperationInvalid(format!(
            "'{}' is not an oxvirt save image: {why}",
            path.display()
        ))
    };
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, &e))?;
    let mut fixed = [0u8; 32];
    f.read_exact(&mut fixed).map_err(|_| bad("too short"))?;
    if &fixed[..16] != MAGIC {
        return Err(bad("bad magic"));
    }
    let word = |i: usize| u32::from_le_bytes(fixed[i..i + 4].try_into().expect("4 bytes"));
    if word(16) != VERSION {
        return Err(bad(&format!("version {} is not supported", word(16))));
    }
    let len = word(20);
    if len > MAX_XML {
        return Err(bad("XML too long"));
    }
    let mut xml = vec![0u8; len as usize];
    f.read_exact(&mut xml).map_err(|_| bad("XML cut short"))?;
    let xml = String::from_utf8(xml).map_err(|_| bad("XML is not UTF-8"))?;
    let offset = (32 + u64::from(len)).div_ceil(ALIGN) * ALIGN;
    Ok(Image {
        xml,
        running: word(24) != 0,
        offset,
    })
}

/// Removes a save image; one that is not there is fine.
pub(super) fn remove_image(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, &e)),
    }
}

/// Creates the save file (0600, replacing one there) with its header; returns it
/// positioned where the VMM's stream goes, and that offset.
fn create_image(path: &Path, xml: &str, running: bool) -> Result<(std::fs::File, u64)> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("create", path, &e))?;
    let h = header(xml, running);
    f.write_all(&h)
        .and_then(|()| f.seek(SeekFrom::Start(h.len() as u64)).map(|_| ()))
        .map_err(|e| Error::io("write", path, &e))?;
    Ok((f, h.len() as u64))
}

fn check_save_flags(flags: u32, api: &str) -> Result<()> {
    Error::check_flags(
        flags,
        flags::BYPASS_CACHE | flags::RUNNING | flags::PAUSED,
        api,
    )?;
    if flags & flags::RUNNING != 0 && flags & flags::PAUSED != 0 {
        return Err(Error::InvalidArg(
            "running and paused flags are mutually exclusive".into(),
        ));
    }
    Ok(())
}

impl Core {
    /// Where domain `name`'s managed save image lives.
    pub(super) fn managed_save_path(&self, name: &str) -> PathBuf {
        self.inner
            .config
            .domains_dir
            .parent()
            .unwrap_or(Path::new("/"))
            .join("save")
            .join(format!("{name}.save"))
    }

    /// virDomainHasManagedSaveImage.
    pub fn has_managed_save_image(&self, uuid: &Uuid, flags: u32) -> Result<bool> {
        Error::check_flags(flags, 0, "virDomainHasManagedSaveImage")?;
        let slot = self.slot(uuid)?;
        Ok(self.managed_save_path(&slot.name()).exists())
    }

    /// virDomainManagedSaveRemove.
    pub async fn managed_save_remove(&self, uuid: &Uuid, flags: u32) -> Result<()> {
        Error::check_flags(flags, 0, "virDomainManagedSaveRemove")?;
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        remove_image(&self.managed_save_path(&slot.name()))
    }

    /// virDomainManagedSave: the state goes into the domain's managed save image
    /// and the domain stops (`shut off (saved)`); its next start goes on from there.
    pub async fn managed_save(&self, uuid: &Uuid, flags: u32) -> Result<()> {
        check_save_flags(flags, "virDomainManagedSave")?;
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        if !slot.rec().persistent() {
            return Err(Error::OperationInvalid(
                "cannot do managed save for transient domain".into(),
            ));
        }
        let path = self.managed_save_path(&slot.name());
        if let Some(dir) = path.parent() {
            super::fsutil::create_dir(dir, 0o700)?;
        }
        self.save_locked(&slot, &path, flags).await
    }

    /// virDomainSaveFlags (and virDomainSave): the state into `to`, and the domain
    /// stops. Another XML for the restore (`dxml`) is not supported.
    pub async fn save(&self, uuid: &Uuid, to: &str, dxml: Option<&str>, flags: u32) -> Result<()> {
        check_save_flags(flags, "virDomainSaveFlags")?;
        if dxml.is_some_and(|x| !x.is_empty()) {
            return Err(Error::ArgumentUnsupported(
                "an alternative domain XML for the saved image is not supported".into(),
            ));
        }
        let path = absolute(to)?;
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        self.save_locked(&slot, &path, flags).await
    }

    /// virDomainSaveImageGetXMLDesc: the domain XML a save file holds.
    pub fn save_image_xml(&self, file: &str, flags: u32) -> Result<String> {
        Error::check_flags(flags, 1, "virDomainSaveImageGetXMLDesc")?;
        Ok(read_image(&absolute(file)?)?.xml)
    }

    /// virDomainRestoreFlags (and virDomainRestore): starts the domain a save file
    /// holds from its saved state — the inactive domain of that name and UUID, or a
    /// new transient one. The file stays.
    pub async fn restore(&self, from: &str, dxml: Option<&str>, flags: u32) -> Result<()> {
        check_save_flags(flags, "virDomainRestoreFlags")?;
        if dxml.is_some_and(|x| !x.is_empty()) {
            return Err(Error::ArgumentUnsupported(
                "an alternative domain XML for the restore is not supported".into(),
            ));
        }
        let path = absolute(from)?;
        let image = read_image(&path)?;
        let def = Definition::parse(&image.xml)?;
        let _catalog = self.inner.catalog.lock().await;
        let uuid = def.uuid();
        let (slot, fresh) = self.slot_to_start(&def)?;
        let _job = slot.job.lock().await;
        let incoming = Incoming {
            path,
            offset: image.offset,
            running: run_after(image.running, flags),
            snapshot: false,
        };
        if let Err(e) = self.boot_from(&slot, def, false, Some(incoming)).await {
            if fresh {
                self.inner.domains.write().expect("poisoned").remove(&uuid);
            }
            return Err(e);
        }
        Ok(())
    }

    /// The start of a domain with a managed save image (job lock held): it goes on
    /// from the image, which is removed once the domain runs.
    pub(super) async fn restore_managed(
        &self,
        slot: &Arc<Slot>,
        path: &Path,
        paused: bool,
    ) -> Result<()> {
        let image = read_image(path)?;
        let def = Definition::parse(&image.xml)?;
        if def.uuid() != slot.uuid {
            return Err(Error::OperationInvalid(format!(
                "the managed save image '{}' is of another domain (uuid {})",
                path.display(),
                def.uuid()
            )));
        }
        let incoming = Incoming {
            path: path.to_path_buf(),
            offset: image.offset,
            running: image.running,
            snapshot: false,
        };
        self.boot_from(slot, def, paused, Some(incoming)).await?;
        remove_image(path)
    }

    /// Saves the running domain of `slot` into `path` and stops it (job lock held).
    async fn save_locked(&self, slot: &Arc<Slot>, path: &Path, flags: u32) -> Result<()> {
        let vm = Self::running_vm(slot)?;
        let was_running = slot.rec().state.state == State::Running;
        self.save_running(slot, &vm, path, run_after(was_running, flags), false)
            .await?;
        // The state is on disk: the VMM ends, and the domain stops as saved.
        vm.end_as(
            super::state::shutoff::SAVED,
            super::event::detail::stopped::SAVED,
        )
        .await;
        Ok(())
    }

    /// Writes the state of `slot`'s running VMM into `path` (our header with the live
    /// XML and `running`, then the VMM's stream). The VMM pauses the guest for it;
    /// with `resume` a guest that ran runs on (a snapshot), else it stays paused for
    /// the caller to end the VMM. On failure the file goes and the guest runs on.
    pub(super) async fn save_running(
        &self,
        slot: &Arc<Slot>,
        vm: &Arc<super::supervise::Vm>,
        path: &Path,
        running: bool,
        resume: bool,
    ) -> Result<()> {
        let (xml, was_running) = {
            let r = slot.rec();
            let def = r
                .live
                .as_ref()
                .ok_or_else(|| Error::Internal("a running domain without its definition".into()))?;
            (def.to_xml(true), r.state.state == State::Running)
        };
        let p = path.to_path_buf();
        let (file, _) = tokio::task::spawn_blocking(move || create_image(&p, &xml, running))
            .await
            .map_err(|e| Error::Internal(format!("cannot write the save image: {e}")))??;
        let saved = async {
            vm.qmp_with_fds("getfd", Some(json!({"fdname": "migrate"})), &[file.as_fd()])
                .await?;
            vm.qmp_within("migrate", Some(json!({"uri": "fd:migrate"})), SAVE_TIMEOUT)
                .await
        }
        .await;
        drop(file);
        if let Err(e) = &saved {
            let _ = remove_image(path);
            tracing::warn!(domain = %slot.name(), error = %e, "saving the domain's state failed");
        }
        // The VMM paused the guest for the save: it runs on as it was.
        if was_running && (resume || saved.is_err()) {
            vm.qmp("cont", None).await?;
        }
        saved.map(drop)
    }
}

/// Whether the guest runs after a restore: the saved state, unless the flags say.
fn run_after(running: bool, flags: u32) -> bool {
    if flags & flags::RUNNING != 0 {
        true
    } else if flags & flags::PAUSED != 0 {
        false
    } else {
        running
    }
}

/// A save file's path as given: it must be absolute (the daemon's working
/// directory means nothing to the client).
fn absolute(p: &str) -> Result<PathBuf> {
    let path = PathBuf::from(p);
    if !path.is_absolute() {
        return Err(Error::InvalidArg(format!(
            "save image path '{p}' is not absolute"
        )));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_the_stream_starts_aligned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.save");
        let xml = "<domain type='kvm'><name>d</name></domain>";
        let (mut f, offset) = create_image(&path, xml, true).unwrap();
        assert_eq!(offset, ALIGN);
        f.write_all(b"OXVMSTAT").unwrap();
        drop(f);
        let img = read_image(&path).unwrap();
        assert_eq!(img.xml, xml);
        assert!(img.running);
        assert_eq!(img.offset, ALIGN);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[ALIGN as usize..], b"OXVMSTAT");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        std::fs::write(&path, b"LibvirtQemudSave and more bytes here").unwrap();
        let e = read_image(&path).unwrap_err().to_string();
        assert!(e.contains("is not an oxvirt save image: bad magic"), "{e}");
        remove_image(&path).unwrap();
        remove_image(&path).unwrap();
    }

    #[test]
    fn flags_pick_the_state_after_restore() {
        assert!(run_after(true, 0));
        assert!(!run_after(true, flags::PAUSED));
        assert!(run_after(false, flags::RUNNING));
        assert!(check_save_flags(flags::RUNNING | flags::PAUSED, "x").is_err());
        assert!(check_save_flags(1 << 7, "x").is_err());
        assert!(absolute("rel.save").is_err());
    }
}

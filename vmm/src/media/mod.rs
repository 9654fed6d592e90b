//! Removable media: the CD-ROM drives of one VMM process, their tray and the
//! medium in it, as QEMU's block layer keeps them for `blockdev-open-tray`,
//! `blockdev-remove-medium`, `blockdev-insert-medium`, `blockdev-close-tray`,
//! `blockdev-change-medium`, `eject` and `query-block`.
//!
//! A [`Drive`] is one removable-media unit: an MMC [`ScsiDevice`] shared with
//! the transport that carries its commands (virtio-scsi today; ATAPI over AHCI
//! or IDE the same way, since ATAPI is MMC over ATA packets), plus the host
//! side's knowledge of which image is in it. The [`MediaRegistry`] is created
//! once per process, like the other host-side device state (`PciBackends`):
//! a machine rebuilt on reset takes the same drives, so the medium and the
//! tray position survive resets; only the guest's door lock is dropped.
//!
//! Names: a drive answers to its device id (QEMU's qdev id, libvirt's alias:
//! `scsi0-0-0-0`, `sata0-0-0`, `ide0-1-0`) and, as QMP's `device` argument,
//! to its libvirt target name (`sda`, `hdc`) or the legacy drive name
//! `drive-<id>`.
//!
//! Tray moves the guest makes (START STOP UNIT) reach [`MediaRegistry::subscribe`]
//! at once; moves the host makes are reported by the calls' return values, so
//! the monitor can send `DEVICE_TRAY_MOVED` before its reply, as QEMU does.

pub mod nodes;
pub mod spec;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::scsi::{ScsiDevice, SharedDevice};
use crate::virtio::block::backend::DiskBackend;
use crate::virtio::block::{open_backend, BlockError, DiskConfig, ImageLock, OpenFlags};

/// Why a media operation was refused; the texts are QEMU 7.2's.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Two drives claim one name.
    #[error("removable-media drive '{0}' is registered twice")]
    Duplicate(String),
    /// No drive has this name (QMP class DeviceNotFound).
    #[error("Device '{0}' not found")]
    NotFound(String),
    /// The guest holds the door locked; it was asked to release it.
    #[error(
        "Device '{0}' is locked and force was not specified, wait for tray to open and try again"
    )]
    Locked(String),
    /// `device` and `id` both given, or neither.
    #[error("Need exactly one of 'device' and 'id'")]
    NeedOneName,
    /// The drive has a medium already.
    #[error("There already is a medium in the device")]
    HasMedium,
    /// A node named in `blockdev-add` exists already.
    #[error("Duplicate nodes with node-name='{0}'")]
    NodeExists(String),
    /// The node is in a drive (or under another node): it cannot be deleted.
    #[error("Node {0} is in use")]
    NodeBusy(String),
    /// The node is in a drive already: it cannot go into another.
    #[error("Node '{0}' is already in use")]
    NodeInUse(String),
    /// `blockdev-del` of a node that does not exist.
    #[error("Failed to find node with node-name='{0}'")]
    NoSuchNode(String),
    /// No node has this name.
    #[error("Node '{0}' not found")]
    NodeNotFound(String),
    /// The image could not be opened.
    #[error("Could not open '{path}': {reason}")]
    Open { path: String, reason: String },
    /// `blockdev-add` options we do not take.
    #[error("{0}")]
    Options(String),
    /// The tray must be open for this (named by the caller's name for the drive).
    #[error("Tray of device '{0}' is not open")]
    TrayClosed(String),
    /// The tray must be open for this (`blockdev-insert-medium`'s wording).
    #[error("Tray of the device is not open")]
    TrayClosedAnon,
}

/// Image formats a medium may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediumFormat {
    Raw,
    Qcow2,
}

impl MediumFormat {
    /// QEMU's driver name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediumFormat::Raw => "raw",
            MediumFormat::Qcow2 => "qcow2",
        }
    }

    /// From QEMU's driver name.
    pub fn from_driver(name: &str) -> Option<Self> {
        match name {
            "raw" => Some(MediumFormat::Raw),
            "qcow2" => Some(MediumFormat::Qcow2),
            _ => None,
        }
    }
}

/// Which image a medium is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediumFile {
    pub path: PathBuf,
    pub format: MediumFormat,
    /// The block node name `query-block` reports (libvirt's `libvirt-N-format`).
    pub node_name: String,
}

/// An opened medium, ready to go into a drive.
pub struct OpenedMedium {
    pub file: MediumFile,
    backend: Box<dyn DiskBackend>,
    lock: ImageLock,
}

impl OpenedMedium {
    /// Opens `file` read-only (CD media are never written) under a shared lock.
    pub fn open(id: &str, file: MediumFile) -> Result<Self, MediaError> {
        let cfg = DiskConfig {
            path: &file.path,
            qcow2: file.format == MediumFormat::Qcow2,
            readonly: true,
            shareable: false,
            serial: None,
            discard: false,
            flags: OpenFlags::default(),
        };
        let (backend, lock) = open_backend(id, &cfg).map_err(|e| MediaError::Open {
            path: file.path.display().to_string(),
            reason: innermost_io_error(&e),
        })?;
        Ok(OpenedMedium {
            file,
            backend,
            lock,
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.backend.size()
    }
}

/// The OS error under a block-layer error, in QEMU's form ("No such file or
/// directory"), or the error's own text when there is none.
fn innermost_io_error(e: &BlockError) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    let mut io = None;
    loop {
        if let Some(i) = cur.downcast_ref::<std::io::Error>() {
            io = Some(i);
        }
        match cur.source() {
            Some(s) => cur = s,
            None => break,
        }
    }
    match io {
        Some(i) => strip_os_error(i),
        None => e.to_string(),
    }
}

/// "No such file or directory (os error 2)" → "No such file or directory", QEMU's form.
fn strip_os_error(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The names a drive answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveNames {
    /// Device id: QEMU's qdev id, libvirt's alias (`scsi0-0-0-0`).
    pub id: String,
    /// libvirt's target name (`sda`).
    pub target: String,
}

impl DriveNames {
    /// Whether `name` is this drive's id.
    fn is_id(&self, name: &str) -> bool {
        name == self.id
    }

    /// Whether `name` designates this drive as QMP's `device` argument.
    fn is_device(&self, name: &str) -> bool {
        name == self.target || name == self.id || name.strip_prefix("drive-") == Some(&self.id)
    }
}

/// A drive's state as `query-block` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveStatus {
    pub tray_open: bool,
    pub locked: bool,
    /// The medium (in the drive, whether or not the tray is open) and its size.
    pub medium: Option<(MediumFile, u64)>,
}

/// The medium in a drive: its file, and what keeps the image locked.
struct Loaded {
    file: MediumFile,
    size: u64,
    _lock: ImageLock,
}

/// One removable-media drive.
pub struct Drive {
    names: DriveNames,
    unit: SharedDevice,
    /// What the host put in. Lock order: `loaded`, then `unit`.
    loaded: Mutex<Option<Loaded>>,
}

impl std::fmt::Debug for Drive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drive").field("names", &self.names).finish()
    }
}

/// What `open_tray` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayOpen {
    /// The tray opened.
    Opened,
    /// It was open already.
    AlreadyOpen,
}

impl Drive {
    /// A drive over `unit` (an MMC unit) with `medium` in it; the tray starts
    /// open when `tray_open` (libvirt `<target tray='open'>`).
    pub fn new(
        names: DriveNames,
        mut unit: ScsiDevice,
        medium: Option<OpenedMedium>,
        tray_open: bool,
    ) -> Self {
        let loaded = medium.map(|m| {
            let size = m.size();
            unit.change_medium(Some(m.backend));
            Loaded {
                file: m.file,
                size,
                _lock: m.lock,
            }
        });
        // The guest sees the medium at power-on: nothing changed under it yet.
        unit.settle_media_state();
        if tray_open {
            unit.set_tray_open(true);
            unit.settle_media_state();
        }
        Drive {
            names,
            unit: Arc::new(Mutex::new(unit)),
            loaded: Mutex::new(loaded),
        }
    }

    /// Its names.
    pub fn names(&self) -> &DriveNames {
        &self.names
    }

    /// The unit, for the transport that executes the guest's commands.
    pub fn unit(&self) -> SharedDevice {
        self.unit.clone()
    }

    fn lock_unit(&self) -> MutexGuard<'_, ScsiDevice> {
        self.unit.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_loaded(&self) -> MutexGuard<'_, Option<Loaded>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tray, lock and medium now.
    pub fn status(&self) -> DriveStatus {
        let loaded = self.lock_loaded();
        let u = self.lock_unit();
        DriveStatus {
            tray_open: u.tray_open(),
            locked: u.locked(),
            medium: loaded.as_ref().map(|l| (l.file.clone(), l.size)),
        }
    }

    /// Opens the tray (QEMU's `do_open_tray`). A locked door gets an eject
    /// request to the guest; without `force` the tray stays shut and the error
    /// is [`MediaError::Locked`] (named as `shown`), which `blockdev-open-tray`
    /// ignores and `eject`/`blockdev-change-medium` report.
    pub fn open_tray(&self, force: bool, shown: &str) -> Result<TrayOpen, MediaError> {
        let mut u = self.lock_unit();
        if u.tray_open() {
            return Ok(TrayOpen::AlreadyOpen);
        }
        let locked = u.locked();
        if locked {
            u.eject_request(force);
        }
        if locked && !force {
            return Err(MediaError::Locked(shown.to_string()));
        }
        u.set_tray_open(true);
        Ok(TrayOpen::Opened)
    }

    /// Closes the tray; whether it moved.
    pub fn close_tray(&self) -> bool {
        let mut u = self.lock_unit();
        if !u.tray_open() {
            return false;
        }
        u.set_tray_open(false);
        true
    }

    /// Takes the medium out of the open tray (nothing to do when empty).
    pub fn remove_medium(&self, shown: &str) -> Result<(), MediaError> {
        let mut loaded = self.lock_loaded();
        let mut u = self.lock_unit();
        if !u.tray_open() {
            return Err(MediaError::TrayClosed(shown.to_string()));
        }
        if loaded.take().is_some() {
            u.change_medium(None);
            // `change_medium` closes nothing on removal; the tray stays open.
        }
        Ok(())
    }

    /// Puts `medium` into the open, empty tray.
    pub fn insert_medium(&self, medium: OpenedMedium) -> Result<(), MediaError> {
        let mut loaded = self.lock_loaded();
        let mut u = self.lock_unit();
        if !u.tray_open() {
            return Err(MediaError::TrayClosedAnon);
        }
        if loaded.is_some() {
            return Err(MediaError::HasMedium);
        }
        let size = medium.size();
        u.change_medium(Some(medium.backend));
        // `change_medium` loads the tray as a host media change does; the
        // tray stays open until `close_tray`, as QEMU's insert-medium.
        u.set_tray_open(true);
        *loaded = Some(Loaded {
            file: medium.file,
            size,
            _lock: medium.lock,
        });
        Ok(())
    }

    /// Whether node `name` is the medium in this drive.
    pub fn holds_node(&self, name: &str) -> bool {
        self.lock_loaded()
            .as_ref()
            .is_some_and(|l| l.file.node_name == name)
    }

    /// The machine is being rebuilt (reset): the guest's lock goes.
    pub fn machine_reset(&self) {
        self.lock_unit().machine_reset();
    }
}

/// A tray the guest moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayMoved {
    /// The drive's device id.
    pub id: String,
    pub open: bool,
}

/// Every removable-media drive of the process, and the medium nodes the
/// monitor has added (`blockdev-add`).
#[derive(Default)]
pub struct MediaRegistry {
    drives: Mutex<Vec<Arc<Drive>>>,
    listeners: Arc<Mutex<Vec<UnboundedSender<TrayMoved>>>>,
    /// Nodes from `blockdev-add`.
    pub nodes: nodes::NodeTable,
}

impl MediaRegistry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds a drive; its guest-side tray moves go to the subscribers.
    pub fn register(&self, drive: Drive) -> Result<Arc<Drive>, MediaError> {
        let mut drives = self.drives.lock().unwrap_or_else(|e| e.into_inner());
        let n = &drive.names;
        if let Some(d) = drives
            .iter()
            .find(|d| d.names.id == n.id || d.names.target == n.target)
        {
            let dup = if d.names.id == n.id { &n.id } else { &n.target };
            return Err(MediaError::Duplicate(dup.clone()));
        }
        let listeners = self.listeners.clone();
        let id = n.id.clone();
        drive.lock_unit().set_tray_listener(Arc::new(move |open| {
            let ev = TrayMoved {
                id: id.clone(),
                open,
            };
            let mut l = listeners.lock().unwrap_or_else(|e| e.into_inner());
            l.retain(|tx| tx.send(ev.clone()).is_ok());
        }));
        let drive = Arc::new(drive);
        drives.push(drive.clone());
        Ok(drive)
    }

    /// Tray moves the guest makes, from now on.
    pub fn subscribe(&self) -> UnboundedReceiver<TrayMoved> {
        let (tx, rx) = unbounded_channel();
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }

    /// Every drive, in registration order.
    pub fn drives(&self) -> Vec<Arc<Drive>> {
        self.drives
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The drive with device id `id`.
    pub fn by_id(&self, id: &str) -> Option<Arc<Drive>> {
        self.drives().into_iter().find(|d| d.names.is_id(id))
    }

    /// The drive QMP's `device`/`id` pair names (QEMU's `qmp_get_blk`): exactly
    /// one must be given. Returns the drive and the name to show in errors.
    pub fn find(
        &self,
        device: Option<&str>,
        id: Option<&str>,
    ) -> Result<(Arc<Drive>, String), MediaError> {
        match (device, id) {
            (Some(d), None) => self
                .drives()
                .into_iter()
                .find(|x| x.names.is_device(d))
                .map(|x| (x, d.to_string()))
                .ok_or_else(|| MediaError::NotFound(d.to_string())),
            (None, Some(i)) => self
                .by_id(i)
                .map(|x| (x, i.to_string()))
                .ok_or_else(|| MediaError::NotFound(i.to_string())),
            _ => Err(MediaError::NeedOneName),
        }
    }

    /// Whether a drive holds node `name`.
    pub fn node_in_use(&self, name: &str) -> bool {
        self.drives().iter().any(|d| d.holds_node(name))
    }

    /// Every drive's machine is being rebuilt.
    pub fn machine_reset(&self) {
        for d in self.drives() {
            d.machine_reset();
        }
    }
}

//! The removable-media commands as QEMU 7.2 serves them (`block/qapi-sysemu.c`):
//! `blockdev-open-tray`, `blockdev-close-tray`, `blockdev-remove-medium`,
//! `blockdev-insert-medium`, `blockdev-change-medium`, `eject`, and the
//! `blockdev-add`/`blockdev-del` of the medium nodes libvirt 9 inserts. Every
//! tray move sends `DEVICE_TRAY_MOVED {device, id, tray-open}`: those the
//! host makes before the command's reply, those the guest makes (START STOP
//! UNIT) as they happen.

use std::path::PathBuf;
use std::sync::Arc;

use qmp::{ErrorClass, QmpError};
use serde_json::{json, Map, Value};

use super::commands::Commands;
use super::devices::BlockDescription;
use crate::media::{
    Drive, MediaError, MediaRegistry, MediumFile, MediumFormat, OpenedMedium, TrayOpen,
};

/// The commands of this module.
pub const COMMANDS: &[&str] = &[
    "blockdev-open-tray",
    "blockdev-close-tray",
    "blockdev-remove-medium",
    "blockdev-insert-medium",
    "blockdev-change-medium",
    "eject",
    "blockdev-add",
    "blockdev-del",
];

fn qmp_error(e: MediaError) -> QmpError {
    match e {
        MediaError::NotFound(_) => QmpError::new(ErrorClass::DeviceNotFound, e.to_string()),
        other => QmpError::generic(other.to_string()),
    }
}

fn str_arg<'a>(args: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

fn bool_arg(args: &Map<String, Value>, name: &str) -> bool {
    args.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// `DEVICE_TRAY_MOVED` data. `device` is the block backend's name, which
/// drives set up the libvirt way (`-blockdev` + a device id) do not have.
pub fn tray_moved_data(id: &str, open: bool) -> Value {
    json!({"device": "", "id": id, "tray-open": open})
}

impl Commands {
    /// The drives; a machine without any answers as one with none to name.
    fn media(&self) -> Arc<MediaRegistry> {
        self.devices.media.clone().unwrap_or_default()
    }

    fn drive(&self, args: &Map<String, Value>) -> Result<(Arc<Drive>, String), QmpError> {
        self.media()
            .find(str_arg(args, "device"), str_arg(args, "id"))
            .map_err(qmp_error)
    }

    fn tray_moved(&self, drive: &Drive, open: bool) {
        tracing::info!(id = %drive.names().id, open, "tray moved (host)");
        self.emit(
            "DEVICE_TRAY_MOVED",
            Some(tray_moved_data(&drive.names().id, open)),
        );
    }

    /// Opens the tray, reporting the move; a locked door is left to the guest
    /// and reported as [`MediaError::Locked`].
    fn open_tray(&self, drive: &Drive, force: bool, shown: &str) -> Result<(), MediaError> {
        if drive.open_tray(force, shown)? == TrayOpen::Opened {
            self.tray_moved(drive, true);
        }
        Ok(())
    }

    fn close_tray(&self, drive: &Drive) {
        if drive.close_tray() {
            self.tray_moved(drive, false);
        }
    }

    /// Runs one of [`COMMANDS`].
    pub(crate) fn run_media(
        &self,
        command: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, QmpError> {
        match command {
            "blockdev-open-tray" => {
                let (d, shown) = self.drive(args)?;
                match self.open_tray(&d, bool_arg(args, "force"), &shown) {
                    // QEMU answers success and leaves the guest to open it.
                    Ok(()) | Err(MediaError::Locked(_)) => {}
                    Err(e) => return Err(qmp_error(e)),
                }
            }
            "blockdev-close-tray" => {
                let (d, _) = self.drive(args)?;
                self.close_tray(&d);
            }
            "blockdev-remove-medium" => {
                let (d, shown) = self.drive(args)?;
                d.remove_medium(&shown).map_err(qmp_error)?;
            }
            "blockdev-insert-medium" => {
                let (d, _) = self.drive(args)?;
                let media = self.media();
                let name = str_arg(args, "node-name").unwrap_or_default();
                let node = media
                    .nodes
                    .get(name)
                    .ok_or_else(|| qmp_error(MediaError::NodeNotFound(name.to_string())))?;
                if media.node_in_use(name) {
                    return Err(qmp_error(MediaError::NodeInUse(name.to_string())));
                }
                let m = OpenedMedium::open(&d.names().id, node.medium()).map_err(qmp_error)?;
                d.insert_medium(m).map_err(qmp_error)?;
            }
            "blockdev-change-medium" => self.change_medium(args)?,
            "eject" => {
                let (d, shown) = self.drive(args)?;
                self.open_tray(&d, bool_arg(args, "force"), &shown)
                    .map_err(qmp_error)?;
                d.remove_medium(&shown).map_err(qmp_error)?;
            }
            "blockdev-add" => self.media().nodes.add(args).map_err(qmp_error)?,
            "blockdev-del" => {
                let media = self.media();
                let name = str_arg(args, "node-name").unwrap_or_default();
                media
                    .nodes
                    .remove(name, media.node_in_use(name))
                    .map_err(qmp_error)?;
            }
            other => return Err(QmpError::command_not_found(other)),
        }
        Ok(json!({}))
    }

    /// QEMU's `qmp_blockdev_change_medium`: the image is opened first, then the
    /// tray opened (honouring the lock), the old medium removed, the new one
    /// inserted and the tray closed.
    fn change_medium(&self, args: &Map<String, Value>) -> Result<(), QmpError> {
        let (d, shown) = self.drive(args)?;
        let path = PathBuf::from(str_arg(args, "filename").unwrap_or_default());
        let format = match str_arg(args, "format") {
            Some(f) => MediumFormat::from_driver(f).ok_or_else(|| {
                QmpError::generic(format!(
                    "Unknown driver '{f}' (raw and qcow2 are supported)"
                ))
            })?,
            None => probe_format(&path),
        };
        if str_arg(args, "read-only-mode") == Some("read-write") {
            return Err(QmpError::generic(format!(
                "Device '{shown}' is a CD-ROM drive: its media are read-only"
            )));
        }
        let node_name = format!("{}-medium", d.names().id);
        let m = OpenedMedium::open(
            &d.names().id,
            MediumFile {
                path,
                format,
                node_name,
            },
        )
        .map_err(qmp_error)?;
        self.open_tray(&d, bool_arg(args, "force"), &shown)
            .map_err(qmp_error)?;
        d.remove_medium(&shown).map_err(qmp_error)?;
        d.insert_medium(m).map_err(qmp_error)?;
        self.close_tray(&d);
        Ok(())
    }

    /// Sends the guest's tray moves as they happen, until aborted.
    pub(crate) async fn forward_tray_moves(self: Arc<Self>) {
        let Some(media) = self.devices.media.clone() else {
            return;
        };
        let mut rx = media.subscribe();
        while let Some(ev) = rx.recv().await {
            tracing::info!(id = %ev.id, open = ev.open, "tray moved (guest)");
            self.emit("DEVICE_TRAY_MOVED", Some(tray_moved_data(&ev.id, ev.open)));
        }
    }
}

/// qcow2 when the image starts with its magic, else raw (QEMU's probe, for
/// the formats we open).
fn probe_format(path: &std::path::Path) -> MediumFormat {
    use std::io::Read;
    let mut magic = [0u8; 4];
    match crate::files::open(path, crate::files::Access::READ)
        .and_then(|mut f| f.read_exact(&mut magic))
    {
        Ok(()) if &magic == b"QFI\xfb" => MediumFormat::Qcow2,
        _ => MediumFormat::Raw,
    }
}

/// What `query-block` shows of a removable-media drive: its tray and lock,
/// and the medium in it now (rather than the one the machine started with).
pub fn overlay(desc: &mut BlockDescription, registry: Option<&Arc<MediaRegistry>>) -> (bool, bool) {
    let Some(d) = registry.and_then(|r| r.by_id(&desc.qdev)) else {
        return (false, false);
    };
    let s = d.status();
    desc.removable = true;
    desc.read_only = true;
    match s.medium {
        Some((file, size)) => {
            desc.empty = false;
            desc.file = file.path.display().to_string();
            desc.format = file.format.as_str().to_string();
            desc.node_name = file.node_name;
            desc.virtual_size = size;
            desc.actual_size = std::fs::metadata(&file.path)
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512);
        }
        None => desc.empty = true,
    }
    (s.tray_open, s.locked)
}

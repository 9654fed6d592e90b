//! CD-ROM media changes (virDomainUpdateDeviceFlags with a `<disk>`): what
//! `virsh change-media --insert|--eject|--update` and D-Bus `UpdateDevice` call,
//! done the way libvirt 9's QEMU driver does it (`qemuDomainChangeDiskLive`,
//! `qemuDomainChangeMediaBlockdev`):
//!
//! * live: the disk is found by its target; only a CD-ROM's source may change.
//!   The VMM is asked to open the tray (`blockdev-open-tray`, honouring `--force`)
//!   and, without force, the daemon waits up to 5 s for the tray to open (a guest
//!   that locked the door is asked to eject and may refuse: "timed out waiting to
//!   open tray"); then `blockdev-remove-medium`, for a new medium `blockdev-add`
//!   (protocol and format node) and `blockdev-insert-medium`, and last
//!   `blockdev-close-tray`.
//! * config: the persistent definition's disk with that target is replaced.
//!
//! The tray's position in the live XML (`<target tray='open'>`) and libvirt's
//! tray-change event follow the VMM's `DEVICE_TRAY_MOVED` events ([`tray_moved`]).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use domain_xml::{Disk, DiskDevice, DiskFormat, DiskType, Domain, XmlEnum};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::definition::Definition;
use super::device::impact;
use super::event::{tray, Event};
use super::fsutil;
use super::slot::Slot;
use super::supervise::Vm;
use super::{Core, Error, Result};

/// libvirt's `CHANGE_MEDIA_TIMEOUT`: how long the guest has to open a locked tray.
const TRAY_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Numbers the block nodes of new media (`libvirt-N-storage`/`-format`); it starts
/// from the clock so a restarted daemon does not reuse a running VMM's names.
static NEXT_NODE: AtomicU64 = AtomicU64::new(0);

fn next_node_index() -> u64 {
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() % 1_000_000 * 1000)
        .unwrap_or(1000);
    let _ = NEXT_NODE.compare_exchange(0, start, Ordering::SeqCst, Ordering::SeqCst);
    NEXT_NODE.fetch_add(1, Ordering::SeqCst)
}

/// Whether an update's device XML is a `<disk>`.
pub(super) fn is_disk(xml: &str) -> bool {
    roxmltree::Document::parse(xml).is_ok_and(|d| d.root_element().has_tag_name("disk"))
}

/// Parses the `<disk>` of an update with the domain-xml parser.
fn parse_disk(xml: &str) -> Result<Disk> {
    let doc = roxmltree::Document::parse(xml)
        .map_err(|e| Error::Xml(format!("(device_definition):{e}")))?;
    let element = &xml[doc.root_element().range()];
    let dom = Domain::parse(&format!(
        "<domain type='kvm'><name>device</name><memory>1024</memory>\
         <os><type>hvm</type></os><devices>{element}</devices></domain>"
    ))?;
    dom.devices
        .disks
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal("disk element not parsed".into()))
}

/// The image a disk's source names (`file=` or `dev=`), if any.
pub(super) fn source_path(d: &Disk) -> Option<&str> {
    let s = d.source.as_ref()?;
    s.get("file").or_else(|| s.get("dev"))
}

/// `qemuDomainDiskChangeSupported`, for the fields a media change may not touch.
fn check_same_drive(old: &Disk, new: &Disk) -> Result<()> {
    let field = |name: &str| {
        Err(Error::OperationUnsupported(format!(
            "cannot modify field '{name}' of the disk"
        )))
    };
    if old.device != new.device {
        return field("device");
    }
    if new.target.bus.is_some() && old.target.bus != new.target.bus {
        return field("bus");
    }
    Ok(())
}

/// The QMP `blockdev-add` arguments of a new medium: (protocol node, format node),
/// with the format node's name.
fn medium_nodes(new: &Disk) -> Result<(Value, Value, String)> {
    let path = source_path(new).ok_or_else(|| Error::Internal("no source".into()))?;
    if !matches!(new.disk_type, DiskType::File | DiskType::Block) {
        return Err(Error::ConfigUnsupported(format!(
            "disk '{}': media of type '{}' cannot be inserted",
            new.target.dev,
            new.disk_type.as_str()
        )));
    }
    let format = match new.driver.as_ref().and_then(|d| d.format) {
        None | Some(DiskFormat::Raw) | Some(DiskFormat::Iso) => "raw",
        Some(DiskFormat::Qcow2) => "qcow2",
        Some(other) => {
            return Err(Error::ConfigUnsupported(format!(
                "disk '{}': image format '{}' is not supported",
                new.target.dev,
                other.as_str()
            )))
        }
    };
    let n = next_node_index();
    let storage = format!("libvirt-{n}-storage");
    let fmt = format!("libvirt-{n}-format");
    Ok((
        json!({"driver": "file", "filename": path, "node-name": storage,
            "auto-read-only": true, "discard": "unmap"}),
        json!({"node-name": fmt, "read-only": true, "driver": format, "file": storage}),
        fmt,
    ))
}

impl Core {
    /// virDomainUpdateDeviceFlags for a `<disk>` (flags already checked).
    pub(super) async fn update_disk(&self, uuid: &Uuid, xml: &str, flags: u32) -> Result<()> {
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let (active, persistent, name) = {
            let r = slot.rec();
            (r.active(), r.persistent(), r.name.clone())
        };
        let (live, config) = impact(flags, active, persistent)?;
        let new = parse_disk(xml)?;
        let force = flags & super::flags::device::FORCE != 0;

        // The new persistent definition first; saved only after the live change.
        let new_def = if config {
            let mut def = slot.rec().def.clone().expect("persistent checked");
            let i = def
                .disks()
                .iter()
                .position(|d| d.target.dev == new.target.dev)
                .ok_or_else(|| {
                    Error::InvalidArg(format!("target {} doesn't exist.", new.target.dev))
                })?;
            let mut disk = new.clone();
            disk.alias = None;
            disk.target.tray = None;
            def.disks_mut()[i] = disk;
            let def = Definition::parse(&def.to_xml(true))?;
            def.translate()?;
            Some(def)
        } else {
            None
        };

        if live {
            self.change_media_live(&slot, &name, &new, force).await?;
        }

        if let Some(def) = new_def {
            self.inner.store.save(&name, &def.to_xml(true))?;
            slot.rec().def = Some(def);
        }
        Ok(())
    }

    async fn change_media_live(
        &self,
        slot: &Slot,
        name: &str,
        new: &Disk,
        force: bool,
    ) -> Result<()> {
        let (vm, old) = {
            let r = slot.rec();
            let old = r.live.as_ref().and_then(|l| {
                l.disks()
                    .iter()
                    .find(|d| d.target.dev == new.target.dev)
                    .cloned()
            });
            (r.vm.clone(), old)
        };
        let vm = vm.ok_or_else(|| Error::OperationInvalid("domain is not running".into()))?;
        let old =
            old.ok_or_else(|| Error::Internal(format!("disk '{}' not found", new.target.dev)))?;
        check_same_drive(&old, new)?;
        if source_path(&old) == source_path(new) {
            return Ok(());
        }
        if !matches!(old.device, DiskDevice::Cdrom | DiskDevice::Floppy) {
            return Err(Error::OperationUnsupported(
                "disk source can be changed only in removable drives".into(),
            ));
        }
        let alias = old.alias.clone().ok_or_else(|| {
            Error::OperationFailed(format!("disk '{}' has no device alias", old.target.dev))
        })?;
        // libvirt checks the new image before it touches the drive.
        if let Some(path) = source_path(new) {
            if let Err(e) = std::fs::metadata(path) {
                let reason = e.to_string();
                let reason = reason.split(" (os error").next().unwrap_or_default();
                return Err(Error::System(format!(
                    "Cannot access storage file '{path}': {reason}"
                )));
            }
        }
        let nodes = source_path(new).map(|_| medium_nodes(new)).transpose()?;
        let id = json!({"id": alias});

        if old.target.tray.as_deref() != Some("open") {
            let events = self.subscribe();
            vm.qmp(
                "blockdev-open-tray",
                Some(json!({"id": alias, "force": force})),
            )
            .await?;
            if !force {
                wait_tray_open(events, slot.uuid, &alias, &old.target.dev).await?;
            }
        }
        // The node names of the medium that goes, to delete after it is out.
        let old_nodes = inserted_node(&vm, &alias).await;
        vm.qmp("blockdev-remove-medium", Some(id.clone())).await?;
        if let Some(old) = old_nodes {
            for n in [old.replace("-format", "-storage"), old].iter().rev() {
                // Best effort, as libvirt's detach: the initial medium has no node to delete.
                let _ = vm.qmp("blockdev-del", Some(json!({"node-name": n}))).await;
            }
        }
        if let Some((storage, format, node)) = nodes {
            if let Some(path) = source_path(new) {
                let qcow2 = format["driver"] == "qcow2";
                let cache = machine_spec::CacheMode::Default;
                super::handover::add_fdsets(&vm, Path::new(path), qcow2, false, cache).await?;
            }
            vm.qmp("blockdev-add", Some(storage)).await?;
            vm.qmp("blockdev-add", Some(format)).await?;
            vm.qmp(
                "blockdev-insert-medium",
                Some(json!({"id": alias, "node-name": node})),
            )
            .await?;
        }
        vm.qmp("blockdev-close-tray", Some(id)).await?;
        tracing::info!(domain = name, disk = %new.target.dev, source = ?source_path(new), "media changed");

        // The new source in the live definition (the tray follows the events).
        let live_xml = {
            let mut r = slot.rec();
            let Some(def) = r.live.as_mut() else {
                return Ok(());
            };
            let Some(d) = def
                .disks_mut()
                .iter_mut()
                .find(|d| d.target.dev == new.target.dev)
            else {
                return Ok(());
            };
            d.source = new.source.clone();
            d.disk_type = new.disk_type;
            if let Some(f) = new.driver.as_ref().and_then(|dr| dr.format) {
                d.driver.get_or_insert_with(Default::default).format = Some(f);
            }
            def.to_xml(false)
        };
        record_live(&vm, name, &live_xml);
        Ok(())
    }

    /// The VMM reported `DEVICE_TRAY_MOVED`: the disk's tray in the live
    /// definition, and libvirt's tray-change event.
    pub(super) fn tray_moved(&self, slot: &Slot, vm: &Vm, data: &Value) {
        let id = data["id"].as_str().unwrap_or_default();
        let device = data["device"].as_str().unwrap_or_default();
        let open = data["tray-open"].as_bool().unwrap_or(false);
        let (alias, live_xml) = {
            let mut r = slot.rec();
            let Some(def) = r.live.as_mut() else {
                return;
            };
            let Some(d) = def.disks_mut().iter_mut().find(|d| {
                let a = d.alias.as_deref().unwrap_or_default();
                (!id.is_empty() && a == id) || (!device.is_empty() && d.target.dev == device)
            }) else {
                tracing::warn!(id, device, "tray moved on a disk the live definition lacks");
                return;
            };
            d.target.tray = open.then(|| "open".to_string());
            let alias = d.alias.clone().unwrap_or_else(|| id.to_string());
            (alias, def.to_xml(false))
        };
        record_live(vm, &slot.name(), &live_xml);
        self.emit(Event::TrayChange {
            domain: slot.domain_ref(),
            dev_alias: alias,
            reason: if open { tray::OPEN } else { tray::CLOSE },
        });
    }
}

/// A restarted daemon reattaches from the runtime copy: keep it current.
pub(super) fn record_live(vm: &Vm, name: &str, live_xml: &str) {
    if let Err(e) = fsutil::write_atomic(&vm.rt.live_xml(), live_xml.as_bytes(), 0o600) {
        tracing::warn!(domain = name, error = %e, "cannot record the live definition");
    }
}

/// The node name of the medium in drive `alias`, from `query-block`.
async fn inserted_node(vm: &Vm, alias: &str) -> Option<String> {
    let blocks = vm.qmp("query-block", None).await.ok()?;
    blocks
        .as_array()?
        .iter()
        .find(|b| b["qdev"] == alias)
        .and_then(|b| b["inserted"]["node-name"].as_str())
        .map(str::to_string)
}

/// `qemuHotplugWaitForTrayEject`: waits for the tray-open event of `alias`.
async fn wait_tray_open(
    mut events: broadcast::Receiver<Event>,
    uuid: Uuid,
    alias: &str,
    dev: &str,
) -> Result<()> {
    let opened = tokio::time::timeout(TRAY_OPEN_TIMEOUT, async {
        loop {
            match events.recv().await {
                Ok(Event::TrayChange {
                    domain,
                    dev_alias,
                    reason,
                }) if domain.uuid == uuid && dev_alias == alias && reason == tray::OPEN => {
                    return true
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
    })
    .await;
    match opened {
        Ok(true) => Ok(()),
        _ => Err(Error::OperationFailed(format!(
            "timed out waiting to open tray of '{dev}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CD: &str = "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>\
        <source file='/tmp/new.iso'/><target dev='sda' bus='scsi'/><readonly/>\
        <alias name='scsi0-0-0-0'/><address type='drive' controller='0' bus='0' target='0' unit='0'/></disk>";

    #[test]
    fn disk_updates_are_recognised_and_parsed() {
        assert!(is_disk(CD));
        assert!(!is_disk("<interface type='user'/>"));
        let d = parse_disk(CD).unwrap();
        assert_eq!(d.target.dev, "sda");
        assert_eq!(source_path(&d), Some("/tmp/new.iso"));
        assert_eq!(d.alias.as_deref(), Some("scsi0-0-0-0"));
        let (storage, format, node) = medium_nodes(&d).unwrap();
        assert_eq!(storage["driver"], "file");
        assert_eq!(storage["filename"], "/tmp/new.iso");
        assert_eq!(format["driver"], "raw");
        assert_eq!(format["file"], storage["node-name"]);
        assert_eq!(format["node-name"], node.as_str());
        assert!(node.starts_with("libvirt-") && node.ends_with("-format"));
    }

    #[test]
    fn a_media_change_may_not_turn_the_drive_into_another() {
        let old = parse_disk(CD).unwrap();
        let mut new = old.clone();
        new.device = DiskDevice::Disk;
        assert_eq!(
            check_same_drive(&old, &new).unwrap_err().to_string(),
            "Operation not supported: cannot modify field 'device' of the disk"
        );
        let mut fmt = old.clone();
        fmt.driver.as_mut().unwrap().format = Some(DiskFormat::Vmdk);
        assert!(medium_nodes(&fmt)
            .unwrap_err()
            .to_string()
            .contains("image format 'vmdk' is not supported"));
        check_same_drive(&old, &old).unwrap();
    }
}

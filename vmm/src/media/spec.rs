//! The drives of a machine spec: every CD-ROM unit becomes a [`Drive`] in the
//! process's [`MediaRegistry`], its medium opened once for the life of the
//! process (machines rebuilt on reset reuse it, as QEMU keeps its block
//! backends across a system reset).

use std::sync::Arc;

use machine_spec::{DeviceKind, DiskFormat, MachineSpec};

use super::nodes::Node;
use super::{Drive, DriveNames, MediaError, MediaRegistry, MediumFile, MediumFormat, OpenedMedium};
use crate::scsi::{DeviceConfig, DeviceKind as ScsiKind, ScsiDevice};
use crate::virtio::block::BlockStats;

/// The node name of the medium a spec starts with (what `query-block` shows
/// for other disks too).
pub fn initial_node_name(id: &str) -> String {
    format!("libvirt-{id}-format")
}

/// A CD-ROM unit of the spec, whatever its bus.
struct CdUnit<'a> {
    target: &'a str,
    medium: Option<&'a machine_spec::Disk>,
    tray_open: bool,
    vendor: Option<String>,
    product: Option<String>,
    wwn: Option<u64>,
}

fn cd_unit(kind: &DeviceKind) -> Option<CdUnit<'_>> {
    match kind {
        DeviceKind::ScsiDisk(u) if u.cdrom => Some(CdUnit {
            target: &u.name,
            medium: u.medium.as_ref(),
            tray_open: u.tray_open,
            vendor: u.vendor.clone(),
            product: u.product.clone(),
            wwn: u.wwn,
        }),
        DeviceKind::AtaDisk(u) if u.cdrom => Some(CdUnit {
            target: &u.name,
            medium: u.medium.as_ref(),
            tray_open: u.tray_open,
            vendor: None,
            product: None,
            wwn: u.wwn,
        }),
        _ => None,
    }
}

/// Registers a drive for every CD-ROM of `spec`; `stats` gives each unit the
/// counters the monitor reads.
pub fn register_drives(
    spec: &MachineSpec,
    registry: &MediaRegistry,
    stats: impl Fn(&str) -> Option<Arc<BlockStats>>,
) -> Result<(), (String, MediaError)> {
    for d in &spec.devices {
        let Some(cd) = cd_unit(&d.kind) else {
            continue;
        };
        let err = |e| (d.id.clone(), e);
        let medium = match cd.medium {
            Some(k) => {
                let format = match k.format {
                    DiskFormat::Raw => MediumFormat::Raw,
                    DiskFormat::Qcow2 => MediumFormat::Qcow2,
                };
                let name = initial_node_name(&d.id);
                registry.nodes.insert_existing(Node {
                    name: name.clone(),
                    path: k.path.clone(),
                    format: Some(format),
                    child: None,
                    read_only: true,
                });
                let file = MediumFile {
                    path: k.path.clone(),
                    format,
                    node_name: name,
                };
                Some(OpenedMedium::open(&d.id, file).map_err(err)?)
            }
            None => None,
        };
        let cfg = DeviceConfig {
            kind: ScsiKind::Cdrom,
            readonly: true,
            writeback: false,
            serial: cd.medium.and_then(|k| k.serial.clone()),
            device_id: d.id.clone(),
            vendor: cd.vendor,
            product: cd.product,
            wwn: cd.wwn,
        };
        let mut unit = ScsiDevice::new(cfg, None);
        if let Some(s) = stats(&d.id) {
            unit = unit.with_stats(s);
        }
        let names = DriveNames {
            id: d.id.clone(),
            target: cd.target.to_string(),
        };
        registry
            .register(Drive::new(names, unit, medium, cd.tray_open))
            .map_err(err)?;
    }
    Ok(())
}

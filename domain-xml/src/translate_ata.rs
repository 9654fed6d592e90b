//! `<controller type='sata'>` and `<disk bus='sata'>` → the spec's AHCI
//! controllers and ATA drives. The drive address is libvirt's `<address
//! type='drive' controller bus='0' target='0' unit>`, where `unit` is the AHCI
//! port (0-5), as libvirt's QEMU driver maps it (`ide-hd,bus=ide.UNIT`).
//! `<disk bus='ide'>` is refused: the PIIX IDE function is not emulated yet.

use machine_spec as ms;

use crate::error::{Error, Result};
use crate::model::*;

fn unsupported<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::unsupported(msg))
}

/// A disk or CD-ROM on an ATA bus. `medium` is its image (`None`: an empty
/// CD-ROM tray).
pub(crate) fn ata_disk(
    d: &Disk,
    bus: DiskBus,
    cdrom: bool,
    medium: Option<ms::Disk>,
) -> Result<ms::Device> {
    let dev = &d.target.dev;
    if bus != DiskBus::Sata {
        return unsupported(format!(
            "disk bus '{bus}' is not supported (target '{dev}'): the IDE controller is not emulated yet, use bus 'sata' (AHCI), 'virtio' or 'scsi'"
        ));
    }
    let Some(Address::Drive {
        controller,
        bus: drive_bus,
        target,
        unit,
    }) = d.address
    else {
        return unsupported(format!(
            "disk '{dev}': a SATA disk needs a drive address (<address type='drive'>)"
        ));
    };
    if drive_bus != 0 || target != 0 {
        return unsupported(format!(
            "disk '{dev}': SATA drive address bus {drive_bus} target {target} does not exist (bus 0, target 0, unit = port 0-5)"
        ));
    }
    if unit >= u32::from(ms::AHCI_PORTS) {
        return unsupported(format!(
            "disk '{dev}': SATA unit {unit} does not exist (an AHCI controller has ports 0-5)"
        ));
    }
    for (name, v) in [("vendor", &d.vendor), ("product", &d.product)] {
        if v.is_some() {
            return unsupported(format!(
                "disk '{dev}': <{name}> is not supported on bus 'sata' (SCSI only)"
            ));
        }
    }
    let wwn = match &d.wwn {
        None => None,
        Some(w) => {
            let hex = w.strip_prefix("0x").unwrap_or(w);
            match u64::from_str_radix(hex, 16) {
                Ok(n) if hex.len() == 16 => Some(n),
                _ => {
                    return Err(Error::xml(format!(
                        "disk '{dev}': malformed <wwn> '{w}' (16 hex digits)"
                    )))
                }
            }
        }
    };
    if let Some(s) = &d.serial {
        if s.len() > 20 || !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(Error::xml(format!(
                "disk '{dev}': <serial> '{s}' must be at most 20 printable ASCII characters (the ATA serial number field)"
            )));
        }
    }
    Ok(ms::Device {
        boot_index: d.boot_order,
        id: d
            .alias
            .clone()
            .unwrap_or_else(|| format!("sata{controller}-0-{unit}")),
        pci: None,
        kind: ms::DeviceKind::AtaDisk(ms::AtaDisk {
            bus_type: ms::AtaBus::Sata,
            controller,
            bus: unit as u8,
            unit: 0,
            cdrom,
            name: dev.clone(),
            medium,
            wwn,
        }),
    })
}

/// `<controller type='sata'>`: an AHCI adapter (ICH9) at `pci`, the address
/// libvirt gave it (00:1f.2 for index 0 on Q35). Other controller types give `None`.
pub(crate) fn ata_controller(
    c: &Controller,
    pci: Option<ms::PciAddress>,
) -> Result<Option<ms::Device>> {
    if c.controller_type != ControllerType::Sata {
        return Ok(None);
    }
    if let Some(m) = &c.model {
        return unsupported(format!(
            "<controller type='sata' model='{m}'> is not supported (the ICH9 AHCI has no model)"
        ));
    }
    if let Some((k, _)) = c.attrs.first() {
        return unsupported(format!("<controller type='sata' {k}> is not supported"));
    }
    if let Some(e) = c.children.first() {
        return unsupported(format!(
            "<controller type='sata'><{}> is not supported",
            e.name
        ));
    }
    Ok(Some(ms::Device {
        boot_index: None,
        id: c
            .alias
            .clone()
            .unwrap_or_else(|| format!("sata{}", c.index)),
        pci,
        kind: ms::DeviceKind::SataController(ms::AtaController { index: c.index }),
    }))
}

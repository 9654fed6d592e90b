//! `<controller type='sata'|'ide'>` and `<disk bus='sata'|'ide'>` → the spec's
//! AHCI and IDE controllers and ATA drives. The drive address is libvirt's
//! `<address type='drive' controller bus target='0' unit>`: on SATA `unit` is the
//! AHCI port (0-5) and `bus` 0, as libvirt's QEMU driver maps it
//! (`ide-hd,bus=ide.UNIT`); on IDE `bus` is the channel (0 primary, 1 secondary)
//! and `unit` master (0) or slave (1): `hda` = 0:0, `hdc` = 1:0.

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
    let ide = bus == DiskBus::Ide;
    let Some(Address::Drive {
        controller,
        bus: drive_bus,
        target,
        unit,
    }) = d.address
    else {
        return unsupported(format!(
            "disk '{dev}': a {bus} disk needs a drive address (<address type='drive'>)"
        ));
    };
    if ide && (drive_bus > 1 || unit > 1 || target != 0) {
        return unsupported(format!(
            "disk '{dev}': IDE drive address bus {drive_bus} target {target} unit {unit} does not exist (bus 0-1, target 0, unit 0-1)"
        ));
    }
    if !ide && (drive_bus != 0 || target != 0) {
        return unsupported(format!(
            "disk '{dev}': SATA drive address bus {drive_bus} target {target} does not exist (bus 0, target 0, unit = port 0-5)"
        ));
    }
    if !ide && unit >= u32::from(ms::AHCI_PORTS) {
        return unsupported(format!(
            "disk '{dev}': SATA unit {unit} does not exist (an AHCI controller has ports 0-5)"
        ));
    }
    // QEMU's ide-hd refuses a read-only drive; libvirt says so first, in these words.
    if d.readonly && !cdrom {
        return unsupported(format!("readonly {bus} disks are not supported"));
    }
    for (name, v) in [("vendor", &d.vendor), ("product", &d.product)] {
        if v.is_some() {
            return unsupported(format!(
                "disk '{dev}': <{name}> is not supported on bus '{bus}' (SCSI only)"
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
    let (bus_type, at_bus, at_unit, fallback) = if ide {
        (
            ms::AtaBus::Ide,
            drive_bus as u8,
            unit as u8,
            format!("ide{controller}-{drive_bus}-{unit}"),
        )
    } else {
        (
            ms::AtaBus::Sata,
            unit as u8,
            0,
            format!("sata{controller}-0-{unit}"),
        )
    };
    Ok(ms::Device {
        boot_index: d.boot_order,
        id: d.alias.clone().unwrap_or(fallback),
        pci: None,
        kind: ms::DeviceKind::AtaDisk(ms::AtaDisk {
            bus_type,
            controller,
            bus: at_bus,
            unit: at_unit,
            cdrom,
            name: dev.clone(),
            medium,
            wwn,
            tray_open: cdrom && d.target.tray.as_deref() == Some("open"),
        }),
    })
}

/// `<controller type='sata'>`: an AHCI adapter (ICH9) at `pci`, the address
/// libvirt gave it (00:1f.2 for index 0 on Q35); `<controller type='ide'>`: the
/// PIIX3 IDE function (00:01.1 on i440FX). Other controller types give `None`.
pub(crate) fn ata_controller(
    c: &Controller,
    pci: Option<ms::PciAddress>,
) -> Result<Option<ms::Device>> {
    if c.controller_type == ControllerType::Ide {
        return ide_controller(c, pci).map(Some);
    }
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

/// `<controller type='ide'>`: PIIX3's IDE function; one per machine.
fn ide_controller(c: &Controller, pci: Option<ms::PciAddress>) -> Result<ms::Device> {
    match c.model.as_deref() {
        None | Some("piix3") | Some("piix4") => {}
        Some(m) => {
            return unsupported(format!(
                "<controller type='ide' model='{m}'> is not supported (only 'piix3')"
            ))
        }
    }
    if c.index != 0 {
        return unsupported(format!(
            "<controller type='ide' index='{}'> is not supported (one IDE controller, index 0)",
            c.index
        ));
    }
    if let Some((k, _)) = c.attrs.first() {
        return unsupported(format!("<controller type='ide' {k}> is not supported"));
    }
    if let Some(e) = c.children.first() {
        return unsupported(format!(
            "<controller type='ide'><{}> is not supported",
            e.name
        ));
    }
    Ok(ms::Device {
        boot_index: None,
        id: c.alias.clone().unwrap_or_else(|| "ide".into()),
        pci,
        kind: ms::DeviceKind::IdeController(ms::AtaController { index: 0 }),
    })
}

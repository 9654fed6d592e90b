//! `<devices>` → spec devices. Accepted: virtio disks, SCSI disks and CD-ROMs on
//! virtio-scsi controllers, ethernet/bridge virtio interfaces,
//! serial/console/channel character devices, rng, memballoon, vsock, isa panic; and,
//! with no effect, the emulator path, PCI/USB/IDE/SATA/virtio-serial controllers,
//! PS/2 and USB inputs, `<video><model type='none'/>`. Everything else is rejected.

use std::collections::BTreeSet;
use std::path::PathBuf;

use machine_spec as ms;

use crate::error::{Error, Result};
use crate::model::*;
use crate::translate::{vsock_cid, VSOCK_UDS_PATH};

fn unsupported<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::unsupported(msg))
}

fn pci(address: &Option<Address>, what: &str) -> Result<Option<ms::PciAddress>> {
    match address {
        None => Ok(None),
        Some(Address::Pci(p)) => {
            if p.domain != 0 {
                return unsupported(format!(
                    "{what}: PCI address {:04x}:{:02x}:{:02x}.{} is not in PCI domain 0",
                    p.domain, p.bus, p.slot, p.function
                ));
            }
            Ok(Some(ms::PciAddress {
                domain: p.domain,
                bus: p.bus,
                slot: p.slot,
                function: p.function,
            }))
        }
        Some(_) => unsupported(format!("{what}: only PCI addresses are supported")),
    }
}

fn id(alias: &Option<String>, fallback: String) -> String {
    alias.clone().unwrap_or(fallback)
}

pub(crate) fn devices(dom: &Domain) -> Result<Vec<ms::Device>> {
    let d = &dom.devices;
    reject_unsupported_kinds(d)?;
    let mut out = Vec::new();
    out.extend(crate::translate_input::inputs(d)?);
    out.extend(crate::translate_video::videos(d)?);
    out.extend(crate::translate_tpm::tpms(dom)?);
    for (i, s) in d.serials.iter().enumerate() {
        out.push(serial(i, s)?);
    }
    let paired = usize::from(
        !d.serials.is_empty()
            && d.consoles
                .first()
                .is_some_and(|c| c.target.target_type.as_deref() == Some("serial")),
    );
    // Ports on the virtio-serial bus, one virtio-console device each, in XML order.
    let mut ports = Vec::new();
    for (i, c) in d.consoles.iter().enumerate().skip(paired) {
        match c.target.target_type.as_deref() {
            Some("virtio") => ports.push(ms::Device {
                boot_index: None,
                id: id(&c.alias, format!("console{i}")),
                pci: None,
                kind: ms::DeviceKind::Console(ms::Console {
                    backend: char_backend(c, "console", None)?,
                    name: None,
                }),
            }),
            Some("serial") => {
                return unsupported(
                    "<console target type='serial'> other than the first console is not supported",
                )
            }
            other => {
                return unsupported(format!(
                    "<console><target type='{}'> is not supported",
                    other.unwrap_or("")
                ))
            }
        }
    }
    for (i, c) in d.channels.iter().enumerate() {
        if crate::comfort::is_spice_channel(c.char_type) {
            continue; // no effect, with a warning (crate::comfort)
        }
        if c.target.target_type.as_deref() != Some("virtio") {
            return unsupported(format!(
                "<channel><target type='{}'> is not supported (only 'virtio')",
                c.target.target_type.as_deref().unwrap_or("")
            ));
        }
        let name = c.target.name.clone();
        ports.push(ms::Device {
            boot_index: None,
            id: id(&c.alias, format!("channel{i}")),
            pci: None,
            kind: ms::DeviceKind::Console(ms::Console {
                backend: char_backend(c, "channel", name.as_deref())?,
                name,
            }),
        });
    }
    out.extend(ports);
    for disk_def in &d.disks {
        out.push(disk(disk_def)?);
    }
    // After disks, so a disk on an unsupported bus is named rather than its controller.
    for c in &d.controllers {
        controller(c)?;
        out.extend(pci_controller(c)?);
        out.extend(scsi_controller(c)?);
        let at = pci(
            &c.address,
            &format!("{} controller {}", c.controller_type, c.index),
        )?;
        out.extend(crate::translate_ata::ata_controller(c, at)?);
    }
    for n in &d.interfaces {
        out.push(interface(n)?);
    }
    for (i, r) in d.rngs.iter().enumerate() {
        out.push(rng(i, r)?);
    }
    if let Some(m) = &d.memballoon {
        if let Some(dev) = balloon(m)? {
            out.push(dev);
        }
    }
    if let Some(v) = &d.vsock {
        if v.model.as_deref().is_some_and(|m| m != "virtio") {
            return unsupported(format!(
                "<vsock model='{}'> is not supported",
                v.model.as_deref().unwrap_or_default()
            ));
        }
        if v.driver.is_some() {
            return unsupported("<vsock><driver> is not supported");
        }
        out.push(ms::Device {
            boot_index: None,
            id: id(&v.alias, "vsock0".into()),
            pci: pci(&v.address, "vsock")?,
            kind: ms::DeviceKind::Vsock(ms::Vsock {
                guest_cid: vsock_cid(v)?,
                uds_path: PathBuf::from(VSOCK_UDS_PATH),
            }),
        });
    }
    for (i, p) in d.panics.iter().enumerate() {
        if p.model.as_deref().is_some_and(|m| m != "isa") {
            return unsupported(format!(
                "<panic model='{}'> is not supported (only 'isa')",
                p.model.as_deref().unwrap_or_default()
            ));
        }
        if d.panics[..i].iter().any(|q| q.model == p.model) {
            return unsupported("more than one <panic model='isa'> is not supported");
        }
        out.push(ms::Device {
            boot_index: None,
            id: format!("panic{i}"),
            pci: None,
            kind: ms::DeviceKind::Pvpanic,
        });
    }
    place_console_ports(d, &mut out)?;
    check_buses(&out)?;
    Ok(out)
}

/// Gives each virtio-console port device a PCI slot: the first takes the virtio-serial
/// controller's address, the others the lowest free slots on bus 0.
fn place_console_ports(d: &Devices, out: &mut [ms::Device]) -> Result<()> {
    let controller_addr = d
        .controllers
        .iter()
        .find(|c| c.controller_type == ControllerType::VirtioSerial)
        .map(|c| pci(&c.address, "virtio-serial controller"))
        .transpose()?
        .flatten();
    let mut used: BTreeSet<u8> = out.iter().filter_map(|x| x.pci.map(|p| p.slot)).collect();
    // Slots the definition gives to devices that have no spec device (controllers, …).
    used.insert(0);
    for c in &d.controllers {
        if let Some(Address::Pci(p)) = &c.address {
            if p.bus == 0 {
                used.insert(p.slot);
            }
        }
    }
    let mut first = controller_addr;
    for dev in out.iter_mut() {
        if !matches!(dev.kind, ms::DeviceKind::Console(_)) {
            continue;
        }
        if let Some(a) = first.take() {
            dev.pci = Some(a);
            continue;
        }
        let slot = (1..=0x1f)
            .find(|s| !used.contains(s))
            .ok_or_else(|| Error::unsupported("no free PCI slot left for a virtio console port"))?;
        used.insert(slot);
        dev.pci = Some(ms::PciAddress {
            domain: 0,
            bus: 0,
            slot,
            function: 0,
        });
    }
    Ok(())
}

fn reject_unsupported_kinds(d: &Devices) -> Result<()> {
    // <sound>, <audio>, <redirdev>: comfort devices, run without effect (crate::comfort).
    let lists: [(&str, bool); 13] = [
        ("lease", !d.leases.is_empty()),
        ("filesystem", !d.filesystems.is_empty()),
        ("smartcard", !d.smartcards.is_empty()),
        ("parallel", !d.parallels.is_empty()),
        ("hostdev", !d.hostdevs.is_empty()),
        ("redirfilter", !d.redirfilters.is_empty()),
        ("hub", !d.hubs.is_empty()),
        ("watchdog", !d.watchdogs.is_empty()),
        ("nvram", d.nvram.is_some()),
        ("shmem", !d.shmems.is_empty()),
        ("memory", !d.memories.is_empty()),
        ("iommu", d.iommu.is_some()),
        ("crypto", !d.cryptos.is_empty()),
    ];
    for (name, present) in lists {
        if present {
            return unsupported(format!("<{name}> devices are not supported"));
        }
    }
    // <graphics>: translate_graphics.
    Ok(())
}

/// PCI controllers that provide a bus: libvirt's `pcie-root-port` (every device of a
/// Q35 domain libvirt lays out sits behind one) and `pci-bridge`.
fn pci_controller(c: &Controller) -> Result<Option<ms::Device>> {
    if c.controller_type != ControllerType::Pci {
        return Ok(None);
    }
    let model = match c.model.as_deref() {
        Some("pci-root" | "pcie-root") | None => return Ok(None),
        Some("pcie-root-port") => ms::PciControllerModel::PcieRootPort,
        Some("pci-bridge") => ms::PciControllerModel::PciBridge,
        Some(m) => {
            return unsupported(format!(
                "<controller type='pci' model='{m}'> is not supported (only pcie-root-port and pci-bridge)"
            ))
        }
    };
    let index = u8::try_from(c.index)
        .map_err(|_| Error::xml(format!("PCI controller index {} is out of range", c.index)))?;
    let target = c.children.iter().find(|e| e.name == "target");
    let number = |attr: &str| -> Result<u8> {
        match target.and_then(|t| t.get_attr(attr)) {
            None => Ok(0),
            Some(v) => parse_u8(v).ok_or_else(|| {
                Error::xml(format!(
                    "invalid <target {attr}='{v}'> of PCI controller {index}"
                ))
            }),
        }
    };
    let what = format!("PCI controller {index}");
    Ok(Some(ms::Device {
        boot_index: None,
        id: id(&c.alias, format!("pci.{index}")),
        pci: pci(&c.address, &what)?,
        kind: ms::DeviceKind::PciController(ms::PciController {
            model,
            index,
            chassis: number("chassis")?.max(index),
            port: number("port")?,
        }),
    }))
}

/// A decimal or 0x-prefixed hexadecimal byte, as libvirt writes attributes.
fn parse_u8(v: &str) -> Option<u8> {
    match v.strip_prefix("0x") {
        Some(h) => u8::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Every device's bus must be the root or one a controller provides.
fn check_buses(devices: &[ms::Device]) -> Result<()> {
    let buses: Vec<u8> = devices
        .iter()
        .filter_map(|d| match &d.kind {
            ms::DeviceKind::PciController(c) => Some(c.index),
            _ => None,
        })
        .collect();
    for d in devices {
        if let Some(a) = d.pci {
            if a.bus != 0 && !buses.contains(&a.bus) {
                return Err(Error::xml(format!(
                    "device '{}': PCI address {:04x}:{:02x}:{:02x}.{} is on bus {:#04x}, which no PCI controller provides",
                    d.id, a.domain, a.bus, a.slot, a.function, a.bus
                )));
            }
            if a.bus != 0 && matches!(d.kind, ms::DeviceKind::PciController(_)) {
                return unsupported(format!(
                    "PCI controller '{}' behind another bridge (bus {:#04x}) is not supported",
                    d.id, a.bus
                ));
            }
        }
    }
    Ok(())
}

fn controller(c: &Controller) -> Result<()> {
    match c.controller_type {
        ControllerType::Pci
        | ControllerType::Usb
        | ControllerType::Ide
        | ControllerType::Sata
        | ControllerType::Fdc
        | ControllerType::Scsi
        | ControllerType::VirtioSerial => Ok(()),
        other => unsupported(format!("<controller type='{other}'> is not supported")),
    }
}

/// Maps a character device source to a spec backend. `channel_name` gives unnamed unix
/// channels a socket path relative to the VMM runtime directory.
fn char_backend(c: &Chardev, what: &str, channel_name: Option<&str>) -> Result<ms::CharBackend> {
    if c.log.is_some() {
        return unsupported(format!("<{what}><log> is not supported"));
    }
    let src = c.sources.first().cloned().unwrap_or_default();
    let listen = |mode: Option<&str>| mode != Some("connect");
    Ok(match c.char_type {
        CharType::Pty => ms::CharBackend::Pty,
        CharType::Stdio => ms::CharBackend::Stdio,
        CharType::Null => ms::CharBackend::Null,
        CharType::File => ms::CharBackend::File {
            path: PathBuf::from(src.path.unwrap_or_default()),
            append: src.append == Some(OnOff::On),
        },
        CharType::Unix => {
            if src.other.iter().any(|(k, _)| k == "tls") || !src.children.is_empty() {
                return unsupported(format!(
                    "<{what} type='unix'> source options are not supported"
                ));
            }
            let path = match (src.path, channel_name) {
                (Some(p), _) => PathBuf::from(p),
                // libvirt generates a path at start; oxvirt puts it in the runtime dir.
                (None, Some(n)) => PathBuf::from(format!("{n}.sock")),
                (None, None) => {
                    return unsupported(format!("<{what} type='unix'> needs <source path>"))
                }
            };
            ms::CharBackend::Unix {
                path,
                listen: listen(src.mode.as_deref()),
            }
        }
        CharType::Tcp => {
            if c.protocol.as_deref().is_some_and(|p| p != "raw") {
                return unsupported(format!(
                    "<{what} type='tcp'><protocol type='{}'> is not supported (only 'raw')",
                    c.protocol.as_deref().unwrap_or_default()
                ));
            }
            let service = src.service.unwrap_or_default();
            let port: u16 = service
                .parse()
                .map_err(|_| Error::xml(format!("Invalid TCP service '{service}' for <{what}>")))?;
            ms::CharBackend::Tcp {
                host: src.host.unwrap_or_else(|| "localhost".to_string()),
                port,
                listen: src.mode.as_deref() == Some("bind"),
            }
        }
        other => {
            return unsupported(format!("<{what} type='{other}'> is not supported"));
        }
    })
}

fn serial(i: usize, s: &Chardev) -> Result<ms::Device> {
    match (s.target.target_type.as_deref(), s.target.model.as_deref()) {
        (Some("isa-serial") | None, Some("isa-serial") | None) => {}
        (t, m) => {
            return unsupported(format!(
                "<serial><target type='{}'><model name='{}'> is not supported (only isa-serial)",
                t.unwrap_or(""),
                m.unwrap_or("")
            ))
        }
    }
    let port = s.target.port.unwrap_or(i as u32);
    if port > 3 {
        return unsupported(format!(
            "<serial><target port='{port}'> is not supported (COM1..COM4 are ports 0..3)"
        ));
    }
    Ok(ms::Device {
        boot_index: None,
        id: id(&s.alias, format!("serial{i}")),
        pci: None,
        kind: ms::DeviceKind::Serial(ms::Serial {
            port: port as u8,
            backend: char_backend(s, "serial", None)?,
        }),
    })
}

fn disk(d: &Disk) -> Result<ms::Device> {
    let dev = &d.target.dev;
    let bus = d.target.bus.unwrap_or(DiskBus::Virtio);
    let cdrom = d.device == DiskDevice::Cdrom;
    if d.device == DiskDevice::Floppy {
        return unsupported(format!(
            "disk device 'floppy' is not supported (target '{dev}'): oxvirt emulates no floppy controller; use a CD-ROM (device='cdrom') or a disk instead"
        ));
    }
    if matches!(d.device, DiskDevice::Floppy | DiskDevice::Lun) {
        return unsupported(format!(
            "disk device '{}' is not supported (target '{dev}')",
            d.device
        ));
    }
    match bus {
        DiskBus::Virtio if cdrom => {
            return unsupported(format!(
                "disk device 'cdrom' on bus 'virtio' is not supported (target '{dev}'): put CD-ROMs on bus 'scsi'"
            ))
        }
        DiskBus::Virtio | DiskBus::Scsi | DiskBus::Sata | DiskBus::Ide => {}
        other => {
            return unsupported(format!(
                "disk bus '{other}' is not supported (target '{dev}')"
            ))
        }
    }
    let path = match (d.disk_type, &d.source) {
        (DiskType::File, Some(s)) if s.get("file").is_some() => s.get("file"),
        (DiskType::Block, Some(s)) if s.get("dev").is_some() => s.get("dev"),
        // A CD-ROM without a source has an empty tray.
        (DiskType::File | DiskType::Block, _) if cdrom => None,
        (DiskType::File | DiskType::Block, _) => {
            return unsupported(format!(
                "disk '{dev}' has no <source>: empty disks are not supported"
            ))
        }
        (t, _) => return unsupported(format!("disk type '{t}' is not supported (target '{dev}')")),
    };
    if let Some(s) = &d.source {
        if let Some((k, _)) = s
            .attrs
            .iter()
            .find(|(k, _)| k != "file" && k != "dev" && k != "index")
        {
            return unsupported(format!("disk '{dev}': <source {k}> is not supported"));
        }
        if let Some(c) = s.children.first() {
            return unsupported(format!(
                "disk '{dev}': <source><{}> is not supported",
                c.name
            ));
        }
    }
    if let Some(m) = &d.model {
        if m != "virtio" || bus != DiskBus::Virtio {
            return unsupported(format!("disk '{dev}': model '{m}' is not supported"));
        }
    }
    let mut format = ms::DiskFormat::Raw;
    let mut cache = ms::CacheMode::Default;
    let mut discard = false;
    let (mut queues, mut io) = (None, ms::DiskIo::Default);
    if let Some(dr) = &d.driver {
        if dr.name.as_deref().is_some_and(|n| n != "qemu") {
            return unsupported(format!(
                "disk '{dev}': <driver name='{}'> is not supported",
                dr.name.as_deref().unwrap_or_default()
            ));
        }
        format = match dr.format {
            None | Some(DiskFormat::Raw) => ms::DiskFormat::Raw,
            Some(DiskFormat::Qcow2) => ms::DiskFormat::Qcow2,
            Some(f) => {
                return unsupported(format!(
                    "disk '{dev}': format '{f}' is not supported (raw, qcow2)"
                ))
            }
        };
        cache = match dr.cache {
            None | Some(DiskCache::Default) => ms::CacheMode::Default,
            Some(DiskCache::None) => ms::CacheMode::None,
            Some(DiskCache::Writethrough) => ms::CacheMode::Writethrough,
            Some(DiskCache::Writeback) => ms::CacheMode::Writeback,
            Some(DiskCache::Directsync) => ms::CacheMode::Directsync,
            Some(DiskCache::Unsafe) => ms::CacheMode::Unsafe,
        };
        discard = match dr.discard.as_deref() {
            None | Some("ignore") => false,
            Some("unmap") => true,
            Some(x) => return Err(Error::xml(format!("unknown disk discard mode '{x}'"))),
        };
        (queues, io) = crate::translate_disk_queues::queueing(dev, dr, bus == DiskBus::Virtio)?;
        if let Some((k, v)) = dr
            .other
            .iter()
            .find(|(k, _)| !crate::translate_disk_queues::handles(k))
        {
            return unsupported(format!("disk '{dev}': <driver {k}='{v}'> is not supported"));
        }
    }
    // A CD-ROM's tray starts closed, or open with `tray='open'` (libvirt's live XML
    // records the state).
    let tray_ok = cdrom
        && match d.target.tray.as_deref() {
            Some("closed") => true,
            Some("open") => matches!(bus, DiskBus::Scsi | DiskBus::Sata | DiskBus::Ide),
            _ => false,
        };
    if (d.target.tray.is_some() && !tray_ok)
        || d.target.removable.is_some()
        || d.target.rotation_rate.is_some()
    {
        return unsupported(format!(
            "disk '{dev}': <target tray|removable|rotation_rate> is not supported"
        ));
    }
    if d.transient {
        return unsupported(format!("disk '{dev}': <transient/> is not supported"));
    }
    // SCSI units carry them in INQUIRY data; virtio-blk has nowhere to put them.
    if !matches!(bus, DiskBus::Scsi | DiskBus::Sata | DiskBus::Ide) {
        for (name, v) in [
            ("wwn", &d.wwn),
            ("vendor", &d.vendor),
            ("product", &d.product),
        ] {
            if v.is_some() {
                return unsupported(format!("disk '{dev}': <{name}> is not supported"));
            }
        }
    }
    if let Some(e) = d.extra.first() {
        return unsupported(format!("disk '{dev}': <{}> is not supported", e.name));
    }
    let serial_max = if bus == DiskBus::Scsi { 36 } else { 20 };
    if let Some(s) = &d.serial {
        if s.len() > serial_max {
            return Err(Error::xml(format!(
                "disk '{dev}': <serial> '{s}' is longer than {serial_max} bytes ({} limit)",
                if bus == DiskBus::Scsi {
                    "SCSI"
                } else {
                    "virtio-blk"
                }
            )));
        }
    }
    let image = path.map(|path| ms::Disk {
        path: PathBuf::from(path),
        format,
        target: dev.clone(),
        readonly: d.readonly || cdrom,
        shareable: d.shareable,
        serial: d.serial.clone(),
        cache,
        discard,
        queues,
        io,
    });
    if bus == DiskBus::Scsi {
        return scsi_disk(d, cdrom, image);
    }
    if matches!(bus, DiskBus::Sata | DiskBus::Ide) {
        return crate::translate_ata::ata_disk(d, bus, cdrom, image);
    }
    Ok(ms::Device {
        boot_index: d.boot_order,
        id: id(&d.alias, format!("virtio-disk-{dev}")),
        pci: pci(&d.address, &format!("disk '{dev}'"))?,
        kind: ms::DeviceKind::Disk(image.expect("only CD-ROMs lack a source")),
    })
}

/// A disk or CD-ROM on a SCSI controller, at its drive address.
fn scsi_disk(d: &Disk, cdrom: bool, medium: Option<ms::Disk>) -> Result<ms::Device> {
    let dev = &d.target.dev;
    let Some(Address::Drive {
        controller,
        bus,
        target,
        unit,
    }) = d.address
    else {
        return unsupported(format!(
            "disk '{dev}': a SCSI disk needs a drive address (<address type='drive'>)"
        ));
    };
    if bus != 0 {
        return unsupported(format!(
            "disk '{dev}': SCSI bus {bus} is not supported (virtio-scsi has bus 0 only)"
        ));
    }
    let Ok(target) = u8::try_from(target) else {
        return unsupported(format!(
            "disk '{dev}': SCSI target {target} is out of range (0-255)"
        ));
    };
    if unit > 16383 {
        return unsupported(format!(
            "disk '{dev}': SCSI unit {unit} is out of range (0-16383)"
        ));
    }
    // libvirt's limits: printable ASCII, 8 and 16 characters; a WWN of 16 hex digits.
    for (name, v, max) in [("vendor", &d.vendor, 8), ("product", &d.product, 16)] {
        if let Some(v) = v {
            if v.len() > max || !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(Error::xml(format!(
                    "disk '{dev}': <{name}> '{v}' must be at most {max} printable ASCII characters"
                )));
            }
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
    Ok(ms::Device {
        boot_index: d.boot_order,
        id: id(&d.alias, format!("scsi{controller}-{bus}-{target}-{unit}")),
        pci: None,
        kind: ms::DeviceKind::ScsiDisk(ms::ScsiDisk {
            controller,
            target,
            lun: unit as u16,
            cdrom,
            name: dev.clone(),
            medium,
            vendor: d.vendor.clone(),
            product: d.product.clone(),
            wwn,
            tray_open: cdrom && d.target.tray.as_deref() == Some("open"),
        }),
    })
}

/// `<controller type='scsi'>`: a virtio-scsi adapter (the only model oxvirt
/// emulates; a controller without a model is one too).
fn scsi_controller(c: &Controller) -> Result<Option<ms::Device>> {
    if c.controller_type != ControllerType::Scsi {
        return Ok(None);
    }
    match c.model.as_deref() {
        None | Some("virtio-scsi") => {}
        Some(m) => {
            return unsupported(format!(
                "<controller type='scsi' model='{m}'> is not supported (only 'virtio-scsi')"
            ))
        }
    }
    if let Some((k, _)) = c.attrs.first() {
        return unsupported(format!("<controller type='scsi' {k}> is not supported"));
    }
    if let Some(e) = c.children.first() {
        return unsupported(format!(
            "<controller type='scsi'><{}> is not supported",
            e.name
        ));
    }
    Ok(Some(ms::Device {
        boot_index: None,
        id: id(&c.alias, format!("scsi{}", c.index)),
        pci: pci(&c.address, &format!("SCSI controller {}", c.index))?,
        kind: ms::DeviceKind::ScsiController(ms::ScsiController { index: c.index }),
    }))
}

/// `<interface type='network'>`: oxvirtd's network driver resolves the network to its
/// bridge before translation and records it as `<source bridge>` (libvirt's live XML
/// does the same); a tap is then made on that bridge.
fn network_backend(n: &Interface, tap: Option<String>) -> Result<ms::NetBackend> {
    let source = n.source.as_ref();
    let network = source.and_then(|s| s.get_attr("network")).ok_or_else(|| {
        Error::xml("No <source> 'network' attribute specified with <interface type='network'/>")
    })?;
    if source.and_then(|s| s.get_attr("portgroup")).is_some() {
        return unsupported(format!(
            "<interface type='network'><source portgroup> (network '{network}') is not supported"
        ));
    }
    let bridge = source.and_then(|s| s.get_attr("bridge")).ok_or_else(|| {
        Error::unsupported(format!(
            "interface type 'network' (network '{network}') needs oxvirtd's network driver to find its bridge"
        ))
    })?;
    Ok(ms::NetBackend::Bridge {
        bridge: bridge.to_string(),
        tap,
    })
}

fn interface(n: &Interface) -> Result<ms::Device> {
    let what = format!("interface '{}'", n.mac);
    let model = match n.model.as_deref() {
        None | Some("virtio") => ms::NetModel::Virtio,
        Some("e1000") => ms::NetModel::E1000,
        Some("e1000e") => ms::NetModel::E1000e,
        Some(m) => {
            return unsupported(format!(
                "interface model '{m}' is not supported (only 'virtio', 'e1000' and 'e1000e')"
            ))
        }
    };
    // `<backend type='passt'>` names what `type='user'` runs on anyway.
    let passt_backend = |e: &&crate::element::Element| {
        n.interface_type == InterfaceType::User
            && e.name == "backend"
            && e.get_attr("type") == Some("passt")
            && e.attrs.len() == 1
    };
    let user_net = |e: &&crate::element::Element| {
        n.interface_type == InterfaceType::User
            && crate::translate_user_net::is_user_net_element(&e.name)
    };
    let driver = |e: &&crate::element::Element| e.name == "driver";
    if let Some(e) = n
        .extra
        .iter()
        .find(|e| !passt_backend(e) && !user_net(e) && !driver(e))
    {
        return unsupported(format!("<interface><{}> is not supported", e.name));
    }
    if let Some((k, _)) = n.attrs.first() {
        return unsupported(format!("<interface {k}> is not supported"));
    }
    // A generated name (vnetN) is live state: the VMM lets the kernel pick again.
    let tap = n.target_dev.clone().filter(|t| !t.starts_with("vnet"));
    let backend = match n.interface_type {
        InterfaceType::Ethernet => {
            if let Some(s) = &n.source {
                return unsupported(format!(
                    "<interface type='ethernet'><source {}> is not supported",
                    s.attrs.first().map(|(k, _)| k.as_str()).unwrap_or("")
                ));
            }
            ms::NetBackend::Tap { name: tap }
        }
        InterfaceType::Bridge => {
            let bridge = n
                .source
                .as_ref()
                .and_then(|s| s.get_attr("bridge"))
                .ok_or_else(|| Error::xml("Missing source bridge for interface type 'bridge'"))?;
            if let Some(s) = &n.source {
                if let Some(c) = s.child_elements().next() {
                    return unsupported(format!(
                        "<interface><source><{}> is not supported",
                        c.name
                    ));
                }
            }
            ms::NetBackend::Bridge {
                bridge: bridge.to_string(),
                tap,
            }
        }
        InterfaceType::Network => network_backend(n, tap)?,
        // User-mode networking through passt, as libvirt ≥ 9.0 can and what plain
        // `type='user'` (SLIRP on libvirt) becomes here.
        InterfaceType::User => {
            if let Some(s) = &n.source {
                return unsupported(format!(
                    "<interface type='user'><source {}> is not supported",
                    s.attrs.first().map(|(k, _)| k.as_str()).unwrap_or("")
                ));
            }
            ms::NetBackend::User(crate::translate_user_net::user_net(&n.extra, &what)?)
        }
        other => {
            return unsupported(format!(
            "interface type '{other}' is not supported (only 'ethernet', 'bridge', 'network' and 'user')"
        ))
        }
    };
    let (queues, driver) = crate::translate_net_driver::driver(n, &what, model, &backend)?;
    let link_up = match n.link_state.as_deref() {
        None | Some("up") => true,
        Some("down") => false,
        Some(x) => return Err(Error::xml(format!("unknown interface link state '{x}'"))),
    };
    let mtu = match n.mtu {
        None => None,
        Some(m) => Some(u16::try_from(m).map_err(|_| {
            Error::unsupported(format!("{what}: <mtu size='{m}'> is larger than 65535"))
        })?),
    };
    Ok(ms::Device {
        boot_index: n.boot_order,
        id: id(&n.alias, "net".into()),
        pci: pci(&n.address, &what)?,
        kind: ms::DeviceKind::Net(ms::Net {
            mac: n.mac.clone(),
            backend,
            link_up,
            mtu,
            model,
            // The daemon opens the tap and fills this in at start.
            queues,
            tap_fds: Vec::new(),
            vhost_fds: Vec::new(),
            driver,
        }),
    })
}

fn rng(i: usize, r: &Rng) -> Result<ms::Device> {
    if r.model != "virtio" {
        return unsupported(format!(
            "<rng model='{}'> is not supported (only 'virtio')",
            r.model
        ));
    }
    if r.rate.is_some() {
        return unsupported("<rng><rate> is not supported");
    }
    if r.driver.is_some() {
        return unsupported("<rng><driver> is not supported");
    }
    let source = match (r.backend_model.as_str(), r.backend_path.as_deref()) {
        ("random", None) | ("builtin", _) => PathBuf::from("/dev/urandom"),
        ("random", Some(p @ ("/dev/urandom" | "/dev/random" | "/dev/hwrng"))) => PathBuf::from(p),
        ("random", Some(p)) => {
            return unsupported(format!(
                "<rng><backend model='random'>{p}</backend> is not supported"
            ))
        }
        (m, _) => return unsupported(format!("<rng><backend model='{m}'> is not supported")),
    };
    Ok(ms::Device {
        boot_index: None,
        id: id(&r.alias, format!("rng{i}")),
        pci: pci(&r.address, "rng")?,
        kind: ms::DeviceKind::Rng(ms::Rng { source }),
    })
}

fn balloon(m: &Memballoon) -> Result<Option<ms::Device>> {
    match m.model.as_str() {
        "none" => return Ok(None),
        "virtio" => {}
        other => return unsupported(format!("<memballoon model='{other}'> is not supported")),
    }
    if m.free_page_reporting == Some(OnOff::On) {
        return unsupported("<memballoon freePageReporting='on'> is not supported");
    }
    if m.driver.is_some() {
        return unsupported("<memballoon><driver> is not supported");
    }
    Ok(Some(ms::Device {
        boot_index: None,
        id: id(&m.alias, "balloon0".into()),
        pci: pci(&m.address, "memballoon")?,
        kind: ms::DeviceKind::Balloon(ms::Balloon {
            stats_period: m.stats_period.unwrap_or(0),
            deflate_on_oom: m.autodeflate == Some(OnOff::On),
        }),
    }))
}

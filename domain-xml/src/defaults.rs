//! Post-parse defaults, as libvirt fills them when a definition is parsed: currentMemory,
//! os arch/machine, clock, interface MACs and models, disk buses and drive addresses,
//! implicit controllers, the serial↔console pairing, virtio-serial ports, PCI
//! addresses and device aliases. (The UUID is generated during parsing.)
//!
//! oxvirt is its own hypervisor driver, so it fills what *it* needs: it does not add
//! QEMU's default USB controller, PS/2 inputs or memballoon (see the crate docs).

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::model::*;

/// Applies every default, then checks alias uniqueness.
pub(crate) fn apply(dom: &mut Domain) -> Result<()> {
    if dom.current_memory == 0 || dom.current_memory > dom.memory {
        dom.current_memory = dom.memory;
    }
    if dom.os.arch.is_none() {
        dom.os.arch = Some("x86_64".to_string());
    }
    // libvirt boots HVM guests from the first disk unless told otherwise.
    let device_boot = dom.devices.disks.iter().any(|d| d.boot_order.is_some())
        || dom
            .devices
            .interfaces
            .iter()
            .any(|i| i.boot_order.is_some());
    if dom.os.os_type == "hvm" && dom.os.boot.is_empty() && !device_boot {
        dom.os.boot.push("hd".to_string());
    }
    if dom.os.machine.is_none() {
        dom.os.machine = Some("pc".to_string());
    }
    if dom.vcpu.placement.is_none() {
        dom.vcpu.placement = Some(Placement::Static);
    }
    if dom.clock.is_none() {
        dom.clock = Some(Clock {
            offset: "utc".to_string(),
            ..Default::default()
        });
    }
    let q35 = is_q35(dom);
    interfaces(&mut dom.devices);
    disks(&mut dom.devices)?;
    chardevs(&mut dom.devices);
    misc_devices(&mut dom.devices);
    implicit_controllers(&mut dom.devices, q35);
    crate::pci::assign(&mut dom.devices, q35)?;
    aliases(&mut dom.devices, q35);
    check_aliases(&dom.devices)
}

/// Whether the machine type is a Q35 (PCIe) one.
pub(crate) fn is_q35(dom: &Domain) -> bool {
    dom.os
        .machine
        .as_deref()
        .is_some_and(|m| m == "q35" || m.starts_with("pc-q35"))
}

fn random_mac() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

fn interfaces(d: &mut Devices) {
    for i in &mut d.interfaces {
        if i.mac.is_empty() {
            i.mac = random_mac();
        }
        // oxvirt's network device is virtio-net; libvirt's QEMU driver would pick rtl8139.
        if i.model.is_none() && i.interface_type != InterfaceType::Hostdev {
            i.model = Some("virtio".to_string());
        }
    }
}

/// The bus a disk name implies (`vda` → virtio, `hda` → ide, `sda` → scsi, …).
pub(crate) fn bus_from_name(dev: &str) -> Option<DiskBus> {
    Some(match dev {
        d if d.starts_with("hd") => DiskBus::Ide,
        d if d.starts_with("sd") => DiskBus::Scsi,
        d if d.starts_with("vd") => DiskBus::Virtio,
        d if d.starts_with("xvd") => DiskBus::Xen,
        d if d.starts_with("ubd") => DiskBus::Uml,
        d if d.starts_with("fd") => DiskBus::Fdc,
        _ => return None,
    })
}

/// Index of a disk name (`vda` → 0, `sdb` → 1, `hdaa` → 26), as `virDiskNameToIndex`.
pub fn disk_name_index(name: &str) -> Option<u32> {
    let rest = ["fd", "hd", "vd", "sd", "xvd", "ubd"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    let letters: String = rest
        .chars()
        .take_while(|c| c.is_ascii_lowercase())
        .collect();
    if letters.is_empty() || letters.len() != rest.len() {
        return None;
    }
    let mut idx: u64 = 0;
    for (i, c) in letters.bytes().enumerate() {
        if i > 0 {
            idx += 1;
        }
        idx = idx.checked_mul(26)? + u64::from(c - b'a');
        if idx > u64::from(u32::MAX) {
            return None;
        }
    }
    u32::try_from(idx).ok()
}

fn disks(d: &mut Devices) -> Result<()> {
    let mut seen = BTreeSet::new();
    for disk in &mut d.disks {
        let dev = disk.target.dev.clone();
        if !seen.insert(dev.clone()) {
            return Err(Error::xml(format!(
                "target '{dev}' duplicated for disk sources"
            )));
        }
        if disk.target.bus.is_none() {
            disk.target.bus = Some(
                bus_from_name(&dev)
                    .ok_or_else(|| Error::xml(format!("Invalid harddisk device name: {dev}")))?,
            );
        }
        let bus = disk.target.bus.unwrap_or(DiskBus::Virtio);
        let needs_drive = matches!(
            bus,
            DiskBus::Ide | DiskBus::Sata | DiskBus::Scsi | DiskBus::Fdc
        );
        if needs_drive && disk.address.is_none() {
            let idx = disk_name_index(&dev)
                .ok_or_else(|| Error::xml(format!("Invalid harddisk device name: {dev}")))?;
            let (controller, bus_no, unit) = match bus {
                DiskBus::Ide => (idx / 4, (idx % 4) / 2, idx % 2),
                DiskBus::Sata => (idx / 6, 0, idx % 6),
                DiskBus::Scsi => (idx / 7, 0, idx % 7),
                _ => (0, 0, idx),
            };
            disk.address = Some(Address::Drive {
                controller,
                bus: bus_no,
                target: 0,
                unit,
            });
        }
    }
    Ok(())
}

fn serial_default_target(s: &mut Chardev) {
    if s.target.target_type.is_none() {
        s.target.target_type = Some("isa-serial".to_string());
    }
    if s.target.model.is_none() && s.target.target_type.as_deref() == Some("isa-serial") {
        s.target.model = Some("isa-serial".to_string());
    }
}

/// The serial↔console pairing of `virDomainDefAddConsoleCompat`, and port numbering.
fn chardevs(d: &mut Devices) {
    let first_console_is_serial = d
        .consoles
        .first()
        .is_some_and(|c| matches!(c.target.target_type.as_deref(), None | Some("serial")));
    if first_console_is_serial && d.serials.is_empty() {
        let mut s = d.consoles[0].clone();
        s.target = CharTarget::default();
        s.tty = None;
        s.alias = None;
        s.address = None;
        d.serials.push(s);
    }
    // Serial ports: explicit ones first, then the next free number.
    let mut used: BTreeSet<u32> = d.serials.iter().filter_map(|s| s.target.port).collect();
    for s in &mut d.serials {
        serial_default_target(s);
        if s.target.port.is_none() {
            let mut p = 0;
            while used.contains(&p) {
                p += 1;
            }
            used.insert(p);
            s.target.port = Some(p);
        }
    }
    if !d.serials.is_empty() && (d.consoles.is_empty() || first_console_is_serial) {
        // Console 0 mirrors serial 0 (libvirt formats it from the serial's definition).
        let s = &d.serials[0];
        let console = Chardev {
            char_type: s.char_type,
            tty: d.consoles.first().and_then(|c| c.tty.clone()).or_else(|| {
                (s.char_type == CharType::Pty)
                    .then(|| s.sources.first().and_then(|x| x.path.clone()))
                    .flatten()
            }),
            sources: s.sources.clone(),
            protocol: s.protocol.clone(),
            target: CharTarget {
                target_type: Some("serial".to_string()),
                port: s.target.port,
                ..Default::default()
            },
            log: s.log.clone(),
            alias: None,
            address: None,
        };
        if d.consoles.is_empty() {
            d.consoles.push(console);
        } else {
            d.consoles[0] = console;
        }
    }
    for (i, c) in d.consoles.iter_mut().enumerate() {
        if c.target.target_type.is_none() {
            c.target.target_type = Some("serial".to_string());
        }
        if c.target.port.is_none() {
            c.target.port = Some(i as u32);
        }
    }
    let mut used: BTreeSet<u32> = d.parallels.iter().filter_map(|p| p.target.port).collect();
    for p in &mut d.parallels {
        if p.target.port.is_none() {
            let mut n = 0;
            while used.contains(&n) {
                n += 1;
            }
            used.insert(n);
            p.target.port = Some(n);
        }
    }
    let mut used: BTreeSet<u32> = BTreeSet::new();
    for c in &d.channels {
        if let Some(Address::VirtioSerial { port, .. }) = c.address {
            used.insert(port);
        }
    }
    for c in &mut d.channels {
        if c.target.target_type.as_deref() == Some("virtio") && c.address.is_none() {
            let mut p = 1;
            while used.contains(&p) {
                p += 1;
            }
            used.insert(p);
            c.address = Some(Address::VirtioSerial {
                controller: 0,
                bus: 0,
                port: p,
            });
        }
    }
}

fn misc_devices(d: &mut Devices) {
    for p in &mut d.panics {
        if p.model.is_none() {
            p.model = Some("isa".to_string());
        }
    }
    for w in &mut d.watchdogs {
        if w.action.is_none() {
            w.action = Some("reset".to_string());
        }
    }
    for i in &mut d.inputs {
        if i.bus.is_none() {
            i.bus = match i.input_type.as_str() {
                "tablet" => Some("usb".to_string()),
                "mouse" | "keyboard" => Some("ps2".to_string()),
                _ => None,
            };
        }
    }
}

/// Inserts a controller, keeping controllers of one type together and sorted by index.
fn insert_controller(d: &mut Devices, c: Controller) {
    let pos = d
        .controllers
        .iter()
        .position(|x| x.controller_type == c.controller_type && x.index > c.index)
        .or_else(|| {
            d.controllers
                .iter()
                .rposition(|x| x.controller_type == c.controller_type)
                .map(|p| p + 1)
        })
        .unwrap_or(d.controllers.len());
    d.controllers.insert(pos, c);
}

fn has_controller(d: &Devices, ty: ControllerType, index: u32) -> bool {
    d.controllers
        .iter()
        .any(|c| c.controller_type == ty && c.index == index)
}

fn add_controller(d: &mut Devices, ty: ControllerType, index: u32, model: Option<&str>) {
    if !has_controller(d, ty, index) {
        insert_controller(
            d,
            Controller {
                controller_type: ty,
                index,
                model: model.map(str::to_string),
                attrs: Vec::new(),
                children: Vec::new(),
                alias: None,
                address: None,
            },
        );
    }
}

fn implicit_controllers(d: &mut Devices, q35: bool) {
    add_controller(
        d,
        ControllerType::Pci,
        0,
        Some(if q35 { "pcie-root" } else { "pci-root" }),
    );
    // Controllers that disks on drive buses sit on, added type by type in libvirt's
    // order (virDomainDefAddDiskControllers).
    for (ty, bus) in [
        (ControllerType::Scsi, DiskBus::Scsi),
        (ControllerType::Fdc, DiskBus::Fdc),
        (ControllerType::Ide, DiskBus::Ide),
        (ControllerType::Sata, DiskBus::Sata),
    ] {
        let wanted: Vec<u32> = d
            .disks
            .iter()
            .filter(|disk| disk.target.bus == Some(bus))
            .filter_map(|disk| match disk.address {
                Some(Address::Drive { controller, .. }) => Some(controller),
                _ => None,
            })
            .collect();
        for idx in wanted {
            add_controller(d, ty, idx, None);
        }
    }
    let virtio_serial = d
        .channels
        .iter()
        .any(|c| c.target.target_type.as_deref() == Some("virtio"))
        || d.consoles
            .iter()
            .any(|c| c.target.target_type.as_deref() == Some("virtio"));
    if virtio_serial {
        add_controller(d, ControllerType::VirtioSerial, 0, None);
    }
    if !d.smartcards.is_empty() {
        add_controller(d, ControllerType::Ccid, 0, None);
        let mut slot = 0;
        for s in &mut d.smartcards {
            if s.address.is_none() {
                s.address = Some(Address::Other(
                    crate::element::Element::new("address")
                        .attr("type", "ccid")
                        .attr("controller", 0)
                        .attr("slot", slot),
                ));
                slot += 1;
            }
        }
    }
    let usb_devices = d.inputs.iter().any(|i| i.bus.as_deref() == Some("usb"))
        || !d.hubs.is_empty()
        || !d.redirdevs.is_empty()
        || d.disks.iter().any(|x| x.target.bus == Some(DiskBus::Usb));
    if usb_devices
        && !d
            .controllers
            .iter()
            .any(|c| c.controller_type == ControllerType::Usb)
    {
        add_controller(
            d,
            ControllerType::Usb,
            0,
            Some(if q35 { "qemu-xhci" } else { "piix3-uhci" }),
        );
    }
}

/// Device aliases as libvirt's QEMU driver names them; user aliases (`ua-…`) are kept.
fn aliases(d: &mut Devices, q35: bool) {
    fn set(alias: &mut Option<String>, name: String) {
        if alias.is_none() {
            *alias = Some(name);
        }
    }
    for (i, disk) in d.disks.iter_mut().enumerate() {
        let idx = disk_name_index(&disk.target.dev).unwrap_or(i as u32);
        let name = match (disk.target.bus, &disk.address) {
            (
                Some(DiskBus::Ide),
                Some(Address::Drive {
                    controller,
                    bus,
                    unit,
                    ..
                }),
            ) => {
                format!("ide{controller}-{bus}-{unit}")
            }
            (
                Some(DiskBus::Sata),
                Some(Address::Drive {
                    controller,
                    bus,
                    unit,
                    ..
                }),
            ) => {
                format!("sata{controller}-{bus}-{unit}")
            }
            (
                Some(DiskBus::Scsi),
                Some(Address::Drive {
                    controller,
                    bus,
                    target,
                    unit,
                }),
            ) => format!("scsi{controller}-{bus}-{target}-{unit}"),
            (
                Some(DiskBus::Fdc),
                Some(Address::Drive {
                    controller,
                    bus,
                    unit,
                    ..
                }),
            ) => {
                format!("fdc{controller}-{bus}-{unit}")
            }
            (Some(DiskBus::Usb), _) => format!("usb-disk{idx}"),
            (Some(DiskBus::Xen), _) => format!("xenvbd{idx}"),
            (Some(DiskBus::Sd), _) => format!("sd-disk{idx}"),
            _ => format!("virtio-disk{idx}"),
        };
        set(&mut disk.alias, name);
    }
    for c in &mut d.controllers {
        let name = match (c.controller_type, c.index) {
            (ControllerType::Pci, 0) if c.model.as_deref() == Some("pcie-root") => {
                "pcie.0".to_string()
            }
            (ControllerType::Pci, i) => format!("pci.{i}"),
            (ControllerType::Ide, 0) if !q35 => "ide".to_string(),
            (ControllerType::Sata, 0) if q35 => "ide".to_string(),
            (ControllerType::Usb, 0) => "usb".to_string(),
            (t, i) => format!("{t}{i}"),
        };
        set(&mut c.alias, name);
    }
    for (i, n) in d.interfaces.iter_mut().enumerate() {
        let prefix = if n.interface_type == InterfaceType::Hostdev {
            "hostdev"
        } else {
            "net"
        };
        set(&mut n.alias, format!("{prefix}{i}"));
    }
    for (i, s) in d.serials.iter_mut().enumerate() {
        set(&mut s.alias, format!("serial{i}"));
    }
    for (i, s) in d.parallels.iter_mut().enumerate() {
        set(&mut s.alias, format!("parallel{i}"));
    }
    let paired = !d.serials.is_empty();
    for (i, c) in d.consoles.iter_mut().enumerate() {
        let name = if i == 0 && paired && c.target.target_type.as_deref() == Some("serial") {
            "serial0".to_string()
        } else {
            format!("console{i}")
        };
        set(&mut c.alias, name);
    }
    for (i, c) in d.channels.iter_mut().enumerate() {
        set(&mut c.alias, format!("channel{i}"));
    }
    for (i, x) in d.inputs.iter_mut().enumerate() {
        set(&mut x.alias, format!("input{i}"));
    }
    // (Smartcards get no alias: libvirt's schema has no <alias> for them.)
    let generic_lists: [(&mut Vec<GenericDevice>, &str); 8] = [
        (&mut d.filesystems, "fs"),
        (&mut d.tpms, "tpm"),
        (&mut d.sounds, "sound"),
        (&mut d.videos, "video"),
        (&mut d.hostdevs, "hostdev"),
        (&mut d.redirdevs, "redir"),
        (&mut d.hubs, "hub"),
        (&mut d.cryptos, "crypto"),
    ];
    for (list, prefix) in generic_lists {
        for (i, g) in list.iter_mut().enumerate() {
            set(&mut g.alias, format!("{prefix}{i}"));
        }
    }
    for (i, g) in d.memories.iter_mut().enumerate() {
        set(&mut g.alias, format!("dimm{i}"));
    }
    for g in &mut d.shmems {
        let name = g.attr("name").unwrap_or("shmem").to_string();
        set(&mut g.alias, format!("shmem-{name}"));
    }
    for (i, w) in d.watchdogs.iter_mut().enumerate() {
        set(&mut w.alias, format!("watchdog{i}"));
    }
    if let Some(m) = &mut d.memballoon {
        if m.model != "none" {
            set(&mut m.alias, "balloon0".to_string());
        }
    }
    for (i, r) in d.rngs.iter_mut().enumerate() {
        set(&mut r.alias, format!("rng{i}"));
    }
    if let Some(v) = &mut d.vsock {
        set(&mut v.alias, "vsock0".to_string());
    }
}

fn check_aliases(d: &Devices) -> Result<()> {
    let mut seen = BTreeSet::new();
    let consoles = d.consoles.iter().skip(usize::from(!d.serials.is_empty()));
    let all = d
        .disks
        .iter()
        .map(|x| &x.alias)
        .chain(d.controllers.iter().map(|x| &x.alias))
        .chain(d.interfaces.iter().map(|x| &x.alias))
        .chain(d.serials.iter().map(|x| &x.alias))
        .chain(d.parallels.iter().map(|x| &x.alias))
        .chain(consoles.map(|x| &x.alias))
        .chain(d.channels.iter().map(|x| &x.alias))
        .chain(d.inputs.iter().map(|x| &x.alias))
        .chain(d.rngs.iter().map(|x| &x.alias))
        .chain(d.watchdogs.iter().map(|x| &x.alias));
    // Generated aliases are unique by construction (USB companion controllers share
    // their master's, as in libvirt); user aliases must not collide.
    for a in all.flatten().filter(|a| a.starts_with("ua-")) {
        if !seen.insert(a.clone()) {
            return Err(Error::xml(format!("non unique alias detected: {a}")));
        }
    }
    Ok(())
}

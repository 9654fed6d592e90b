//! `<devices>` children → the typed device model.

use roxmltree::Node;

use super::helpers::*;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::model::*;

/// Unmodelled `<disk>` children kept verbatim, in the order they are formatted.
pub(crate) const DISK_EXTRA: &[&str] = &[
    "auth",
    "mirror",
    "geometry",
    "blockio",
    "iotune",
    "throttlefilters",
    "encryption",
];

/// Unmodelled `<interface>` children kept verbatim, in the order they are formatted.
pub(crate) const INTERFACE_EXTRA: &[&str] = &[
    "vlan",
    "virtualport",
    "bandwidth",
    "port",
    "ip",
    "route",
    "portForward",
    "script",
    "downscript",
    "backenddomain",
    "guest",
    "driver",
    "backend",
    "filterref",
    "tune",
    "teaming",
    "coalesce",
    "rom",
    "acpi",
];

pub(super) fn devices(n: Node<'_, '_>) -> Result<Devices> {
    let mut d = Devices::default();
    let mut controllers: Vec<(Controller, bool)> = Vec::new();
    for c in elements(n) {
        match c.tag_name().name() {
            "emulator" => {
                if d.emulator.is_some() {
                    return Err(Error::xml(
                        "element <emulator> appears more than once in <devices>",
                    ));
                }
                d.emulator = Some(text(c).trim().to_string());
            }
            "disk" => insert_disk(&mut d.disks, disk(c)?),
            "controller" => controllers.push(controller(c)?),
            "lease" => d.leases.push(generic(c)?),
            "filesystem" => d.filesystems.push(generic(c)?),
            "interface" => d.interfaces.push(interface(c)?),
            "smartcard" => d.smartcards.push(generic(c)?),
            "serial" => d.serials.push(chardev(c)?),
            "parallel" => d.parallels.push(chardev(c)?),
            "console" => d.consoles.push(chardev(c)?),
            "channel" => d.channels.push(chardev(c)?),
            "input" => d.inputs.push(input(c)?),
            "tpm" => d.tpms.push(generic(c)?),
            "graphics" => d.graphics.push(generic(c)?),
            "sound" => d.sounds.push(generic(c)?),
            "audio" => d.audios.push(generic(c)?),
            "video" => d.videos.push(generic(c)?),
            "hostdev" => d.hostdevs.push(generic(c)?),
            "redirdev" => d.redirdevs.push(generic(c)?),
            "redirfilter" => d.redirfilters.push(generic(c)?),
            "hub" => d.hubs.push(generic(c)?),
            "watchdog" => d.watchdogs.push(Watchdog {
                model: req_attr(c, "model")?.to_string(),
                action: attr_s(c, "action"),
                alias: alias(c)?,
                address: address(c)?,
            }),
            "memballoon" => {
                if d.memballoon.is_some() {
                    return Err(Error::xml(
                        "only a single memory balloon device is supported",
                    ));
                }
                d.memballoon = Some(memballoon(c)?);
            }
            "rng" => d.rngs.push(rng(c)?),
            "nvram" => {
                if d.nvram.is_some() {
                    return Err(Error::xml("only a single nvram device is supported"));
                }
                d.nvram = Some(generic(c)?);
            }
            "panic" => d.panics.push(Panic {
                model: attr_s(c, "model"),
                address: address(c)?,
            }),
            "shmem" => d.shmems.push(generic(c)?),
            "memory" => d.memories.push(generic(c)?),
            "iommu" => {
                if d.iommu.is_some() {
                    return Err(Error::xml("only a single IOMMU device is supported"));
                }
                d.iommu = Some(generic(c)?);
            }
            "vsock" => {
                if d.vsock.is_some() {
                    return Err(Error::xml("only a single vsock device is supported"));
                }
                d.vsock = Some(vsock(c)?);
            }
            "crypto" => d.cryptos.push(generic(c)?),
            _ => {} // unknown to libvirt: dropped, as libvirt drops it
        }
    }
    // Controllers without an index get the next free one of their type, as libvirt does;
    // a USB companion controller (one with <master>) shares its master's index.
    let is_companion = |c: &Controller| {
        c.controller_type == ControllerType::Usb && c.children.iter().any(|e| e.name == "master")
    };
    for i in 0..controllers.len() {
        if controllers[i].1 {
            continue;
        }
        let ty = controllers[i].0.controller_type;
        let idx = if is_companion(&controllers[i].0) {
            controllers[..i]
                .iter()
                .rev()
                .find(|(c, _)| c.controller_type == ty && !is_companion(c))
                .map_or(0, |(c, _)| c.index)
        } else {
            let mut idx = 0;
            while controllers.iter().any(|(c, has)| {
                *has && c.controller_type == ty && c.index == idx && !is_companion(c)
            }) {
                idx += 1;
            }
            idx
        };
        controllers[i].0.index = idx;
        controllers[i].1 = true;
    }
    for (i, (c, _)) in controllers.iter().enumerate() {
        if !is_companion(c)
            && controllers[..i].iter().any(|(o, _)| {
                o.controller_type == c.controller_type && o.index == c.index && !is_companion(o)
            })
        {
            return Err(Error::xml(format!(
                "Multiple '{}' controllers with index '{}'",
                c.controller_type, c.index
            )));
        }
    }
    d.controllers = controllers.into_iter().map(|(c, _)| c).collect();
    Ok(d)
}

/// Inserts a disk where libvirt's `virDomainDiskInsert` puts it: disks on one bus stay
/// together, sorted by their name's index (`vda` < `vdb` < `vdaa`). Unlike libvirt,
/// which compares the bus as written (so a disk without `bus=` is not sorted until the
/// next parse), the bus a name implies counts, which makes the order a fixed point of
/// format → parse.
fn insert_disk(disks: &mut Vec<Disk>, disk: Disk) {
    let bus = |d: &Disk| {
        d.target
            .bus
            .or_else(|| crate::defaults::bus_from_name(&d.target.dev))
    };
    let index = |d: &Disk| crate::defaults::disk_name_index(&d.target.dev).map_or(-1, i64::from);
    let mut insert_at: Option<usize> = None;
    for i in (0..disks.len()).rev() {
        if bus(&disks[i]) != bus(&disk) {
            continue;
        }
        if index(&disks[i]) > index(&disk) {
            insert_at = Some(i);
        } else if insert_at.is_none() {
            insert_at = Some(i + 1);
        }
    }
    disks.insert(insert_at.unwrap_or(disks.len()), disk);
}

/// `<alias name>`; only user aliases (`ua-…`) are kept from input, as libvirt keeps only
/// those when parsing a definition. Other aliases are re-assigned.
fn alias(n: Node<'_, '_>) -> Result<Option<String>> {
    let Some(a) = single(n, "alias")? else {
        return Ok(None);
    };
    let name = req_attr(a, "name")?;
    Ok(name.starts_with("ua-").then(|| name.to_string()))
}

pub(super) fn address(n: Node<'_, '_>) -> Result<Option<Address>> {
    let Some(a) = single(n, "address")? else {
        return Ok(None);
    };
    let ty = req_attr(a, "type")?;
    let num = |name: &str, max: u64| -> Result<u64> { Ok(attr_uint(a, name, max)?.unwrap_or(0)) };
    Ok(Some(match ty {
        "pci" => {
            let slot = attr_uint(a, "slot", u64::MAX)?.unwrap_or(0);
            if slot > 0x1f {
                return Err(Error::xml(format!(
                    "Invalid PCI address slot='{:#x}', must be <= 0x1F",
                    slot
                )));
            }
            let function = attr_uint(a, "function", u64::MAX)?.unwrap_or(0);
            if function > 7 {
                return Err(Error::xml(format!(
                    "Invalid PCI address function='{:#x}', must be <= 7",
                    function
                )));
            }
            Address::Pci(PciAddr {
                domain: num("domain", 0xffff)? as u16,
                bus: num("bus", 0xff)? as u8,
                slot: slot as u8,
                function: function as u8,
                multifunction: attr_enum(a, "multifunction")?,
            })
        }
        "drive" => Address::Drive {
            controller: num("controller", u32::MAX.into())? as u32,
            bus: num("bus", u32::MAX.into())? as u32,
            target: num("target", u32::MAX.into())? as u32,
            unit: num("unit", u32::MAX.into())? as u32,
        },
        "virtio-serial" => Address::VirtioSerial {
            controller: num("controller", u32::MAX.into())? as u32,
            bus: num("bus", u32::MAX.into())? as u32,
            port: num("port", u32::MAX.into())? as u32,
        },
        "ccid" | "usb" | "spapr-vio" | "ccw" | "virtio-mmio" | "isa" | "dimm" | "unassigned"
        | "virtio-s390" => Address::Other(Element::from_node(a)?),
        other => {
            return Err(Error::xml(format!("unknown address type '{other}'")));
        }
    }))
}

fn generic(n: Node<'_, '_>) -> Result<GenericDevice> {
    let mut element = Element::from_node(n)?;
    element.children.retain(|c| match c {
        crate::element::Node::Element(e) => e.name != "alias" && e.name != "address",
        crate::element::Node::Text(_) => true,
    });
    Ok(GenericDevice {
        element,
        alias: alias(n)?,
        address: address(n)?,
    })
}

fn boot_order(n: Node<'_, '_>) -> Result<Option<u32>> {
    match single(n, "boot")? {
        None => Ok(None),
        Some(b) => match attr_u32(b, "order")? {
            Some(0) | None => Err(Error::xml("boot order must be a positive integer")),
            Some(o) => Ok(Some(o)),
        },
    }
}

fn disk(n: Node<'_, '_>) -> Result<Disk> {
    let driver = match single(n, "driver")? {
        None => None,
        Some(d) => Some(DiskDriver {
            name: attr_s(d, "name"),
            format: attr_enum(d, "type")?,
            cache: attr_enum(d, "cache")?,
            io: attr_s(d, "io"),
            discard: attr_s(d, "discard"),
            other: other_attrs(d, &["name", "type", "cache", "io", "discard"]),
        }),
    };
    let source = match single(n, "source")? {
        None => None,
        Some(s) => Some(DiskSource {
            attrs: other_attrs(s, &[]),
            children: kept_children(
                s,
                &[
                    "host",
                    "auth",
                    "seclabel",
                    "reservations",
                    "encryption",
                    "snapshot",
                    "config",
                    "initiator",
                    "cookies",
                    "readahead",
                    "timeout",
                    "ssl",
                    "slices",
                    "dataStore",
                ],
            )?,
        }),
    };
    let t =
        single(n, "target")?.ok_or_else(|| Error::xml("missing target information for device"))?;
    let dev = req_attr(t, "dev")?.to_string();
    let device = attr_enum(n, "device")?.unwrap_or(DiskDevice::Disk);
    Ok(Disk {
        disk_type: attr_enum(n, "type")?.unwrap_or(DiskType::File),
        device,
        model: attr_s(n, "model"),
        snapshot: attr_s(n, "snapshot"),
        driver,
        source,
        backing_store: kept_single(n, "backingStore")?,
        target: DiskTarget {
            dev,
            bus: attr_enum(t, "bus")?,
            tray: attr_s(t, "tray"),
            removable: attr_enum(t, "removable")?,
            rotation_rate: attr_u32(t, "rotation_rate")?,
        },
        // libvirt forces cdroms read-only.
        readonly: flag(n, "readonly")? || device == DiskDevice::Cdrom,
        shareable: flag(n, "shareable")?,
        transient: flag(n, "transient")?,
        serial: single_text(n, "serial")?,
        wwn: single_text(n, "wwn")?,
        vendor: single_text(n, "vendor")?,
        product: single_text(n, "product")?,
        boot_order: boot_order(n)?,
        extra: kept_children_ordered(n, DISK_EXTRA)?,
        alias: alias(n)?,
        address: address(n)?,
    })
}

fn controller(n: Node<'_, '_>) -> Result<(Controller, bool)> {
    let index = attr_u32(n, "index")?;
    Ok((
        Controller {
            controller_type: attr_enum(n, "type")?.unwrap_or(ControllerType::Ide),
            index: index.unwrap_or(0),
            model: attr_s(n, "model"),
            attrs: other_attrs(n, &["type", "index", "model"]),
            children: kept_children(n, &["model", "target", "driver", "master", "pcihole64"])?,
            alias: alias(n)?,
            address: address(n)?,
        },
        index.is_some(),
    ))
}

/// Parses `52:54:00:12:34:56` (any case) into the lower-case canonical form.
fn mac(s: &str) -> Result<String> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    let bytes: Option<Vec<u8>> = (parts.len() == 6)
        .then(|| {
            parts
                .iter()
                .map(|p| {
                    (p.len() <= 2 && !p.is_empty())
                        .then(|| u8::from_str_radix(p, 16).ok())
                        .flatten()
                })
                .collect()
        })
        .flatten();
    let Some(bytes) = bytes else {
        return Err(Error::xml(format!("unable to parse mac address '{s}'")));
    };
    if bytes[0] & 1 == 1 {
        return Err(Error::xml(format!(
            "expected unicast mac address, found multicast '{s}'"
        )));
    }
    Ok(bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

fn interface(n: Node<'_, '_>) -> Result<Interface> {
    let interface_type =
        attr_enum(n, "type")?.ok_or_else(|| Error::xml("missing interface type"))?;
    let mac = match single(n, "mac")? {
        None => String::new(),
        Some(m) => mac(req_attr(m, "address")?)?,
    };
    let target = single(n, "target")?;
    let mtu = match single(n, "mtu")? {
        None => None,
        Some(m) => Some(
            attr_u32(m, "size")?
                .ok_or_else(|| Error::xml("Missing required attribute 'size' in element 'mtu'"))?,
        ),
    };
    Ok(Interface {
        interface_type,
        attrs: other_attrs(n, &["type"]),
        mac,
        source: kept_single(n, "source")?,
        target_dev: target.and_then(|t| attr_s(t, "dev")),
        target_managed: target
            .map(|t| attr_enum(t, "managed"))
            .transpose()?
            .flatten(),
        model: single(n, "model")?.and_then(|m| attr_s(m, "type")),
        link_state: single(n, "link")?.and_then(|l| attr_s(l, "state")),
        mtu,
        boot_order: boot_order(n)?,
        extra: kept_children_ordered(n, INTERFACE_EXTRA)?,
        alias: alias(n)?,
        address: address(n)?,
    })
}

fn chardev(n: Node<'_, '_>) -> Result<Chardev> {
    let char_type = attr_enum(n, "type")?.unwrap_or(CharType::Pty);
    let mut sources = Vec::new();
    for s in elements(n).filter(|c| c.tag_name().name() == "source") {
        sources.push(CharSource {
            mode: attr_s(s, "mode"),
            path: attr_s(s, "path"),
            host: attr_s(s, "host"),
            service: attr_s(s, "service"),
            append: attr_enum(s, "append")?,
            channel: attr_s(s, "channel"),
            other: other_attrs(s, &["mode", "path", "host", "service", "append", "channel"]),
            children: kept_children(s, &["seclabel", "reconnect"])?,
        });
    }
    if char_type == CharType::Unix {
        // A unix source without a path (libvirt generates one at start) is not written
        // back by libvirt; only its mode matters, and `bind` is the default.
        sources.retain(|s| {
            s.path.is_some() || s.mode.as_deref() == Some("connect") || !s.other.is_empty()
        });
    }
    if sources.len() > 2 || (sources.len() == 2 && char_type != CharType::Udp) {
        return Err(Error::xml(format!(
            "element <source> appears more than once in <{}>",
            n.tag_name().name()
        )));
    }
    let target = match single(n, "target")? {
        None => CharTarget::default(),
        Some(t) => CharTarget {
            target_type: attr_s(t, "type"),
            port: if attr(t, "type") == Some("guestfwd") {
                None
            } else {
                attr_u32(t, "port")?
            },
            name: attr_s(t, "name"),
            state: attr_s(t, "state"),
            address: attr_s(t, "address"),
            guestfwd_port: if attr(t, "type") == Some("guestfwd") {
                attr_s(t, "port")
            } else {
                None
            },
            model: single(t, "model")?.and_then(|m| attr_s(m, "name")),
        },
    };
    match char_type {
        CharType::File | CharType::Pipe | CharType::Dev
            if sources.first().and_then(|s| s.path.as_ref()).is_none() =>
        {
            return Err(Error::xml("Missing source path attribute for char device"));
        }
        CharType::Tcp if sources.first().and_then(|s| s.service.as_ref()).is_none() => {
            return Err(Error::xml(
                "Missing source service attribute for char device",
            ));
        }
        _ => {}
    }
    let protocol = single(n, "protocol")?.and_then(|p| attr_s(p, "type"));
    Ok(Chardev {
        char_type,
        tty: attr_s(n, "tty"),
        sources,
        // libvirt always writes the protocol of a tcp source, raw by default.
        protocol: protocol.or_else(|| (char_type == CharType::Tcp).then(|| "raw".to_string())),
        target,
        log: kept_single(n, "log")?,
        alias: alias(n)?,
        address: address(n)?,
    })
}

fn input(n: Node<'_, '_>) -> Result<Input> {
    let input_type = req_attr(n, "type")?;
    if !["mouse", "tablet", "keyboard", "passthrough", "evdev"].contains(&input_type) {
        return Err(Error::xml(format!(
            "Invalid value for attribute 'type' in element 'input': '{input_type}'."
        )));
    }
    Ok(Input {
        input_type: input_type.to_string(),
        bus: attr_s(n, "bus"),
        model: attr_s(n, "model"),
        children: kept_children(n, &["source", "driver"])?,
        alias: alias(n)?,
        address: address(n)?,
    })
}

fn memballoon(n: Node<'_, '_>) -> Result<Memballoon> {
    Ok(Memballoon {
        model: req_attr(n, "model")?.to_string(),
        autodeflate: attr_enum(n, "autodeflate")?,
        free_page_reporting: attr_enum(n, "freePageReporting")?,
        stats_period: match single(n, "stats")? {
            None => None,
            Some(s) => attr_u32(s, "period")?,
        },
        driver: kept_single(n, "driver")?,
        alias: alias(n)?,
        address: address(n)?,
    })
}

fn rng(n: Node<'_, '_>) -> Result<Rng> {
    let backend = single(n, "backend")?.ok_or_else(|| Error::xml("missing RNG device backend"))?;
    let backend_model = req_attr(backend, "model")?.to_string();
    let is_random = backend_model == "random";
    Ok(Rng {
        model: req_attr(n, "model")?.to_string(),
        rate: kept_single(n, "rate")?.map(|mut r| {
            // libvirt writes bytes before period.
            r.attrs.sort_by_key(|(k, _)| k != "bytes");
            r
        }),
        backend_path: if is_random {
            Some(text(backend).trim().to_string()).filter(|s| !s.is_empty())
        } else {
            None
        },
        backend_type: attr_s(backend, "type"),
        backend_children: if is_random {
            Vec::new()
        } else {
            kept_children(backend, &["source", "protocol"])?
        },
        backend_model,
        driver: kept_single(n, "driver")?,
        alias: alias(n)?,
        address: address(n)?,
    })
}

fn vsock(n: Node<'_, '_>) -> Result<Vsock> {
    let cid = single(n, "cid")?;
    Ok(Vsock {
        model: attr_s(n, "model"),
        cid_auto: cid.map(|c| attr_enum(c, "auto")).transpose()?.flatten(),
        cid_address: cid.map(|c| attr_u32(c, "address")).transpose()?.flatten(),
        driver: kept_single(n, "driver")?,
        alias: alias(n)?,
        address: address(n)?,
    })
}

//! Live attach and detach of virtio disks and NICs (`virsh attach-device --live`,
//! `attach-disk`, `attach-interface` and their detach twins; D-Bus `AttachDevice`,
//! `DetachDevice`), the way libvirt's QEMU driver does it: on a Q35 machine
//! behind PCIe root ports (native hot-plug), on an i440FX (`pc`) machine in a
//! slot of the root bus (ACPI PCI hot-plug):
//!
//! * **attach**: on Q35 the device goes behind a free `pcie-root-port` (one no
//!   device names as its bus; libvirt adds no ports live, so a domain needs spare
//!   ones, as virt-install leaves); on `pc` in the slot its `<address>` names, or
//!   else the lowest free slot of bus 0 from 2 up (slot 1 is the PIIX3's), as
//!   libvirt assigns it. The live definition with the device appended is parsed,
//!   resolved (networks, volumes, a `vnetN` tap name) and translated as at start;
//!   the VMM gets `blockdev-add` + `device_add` (disk) or `netdev_add` +
//!   `device_add` (NIC), and the device-added event follows;
//! * **detach**: the device is found as the `--config` detach finds it; the VMM
//!   gets `device_del` (the guest is asked through the port's attention button,
//!   or on `pc` through the hot-plug GPE and the slot's eject request; boot-time
//!   virtio disks and NICs on bus 0 of a `pc` machine can go too, as in libvirt).
//!   When the guest releases it the VMM sends `DEVICE_DELETED`: the device leaves
//!   the live definition, its backend node or netdev goes, device-removed follows.
//!   The call waits up to 5 seconds for that, as libvirt does
//!   (`QEMU_UNPLUG_TIMEOUT`); a guest that has not released it by then leaves the
//!   device in place and the call still succeeds — libvirt's behaviour: the
//!   removal completes whenever the guest does it.
//!
//! **SCSI disks** (`<target bus='scsi'/>`, any machine type) are LUNs on a
//! virtio-scsi controller the domain already has (libvirt would add a missing
//! controller; oxvirt adds none live and says so). The drive address is the one
//! libvirt gives (`<address type='drive'>` as written, else from the target
//! name, `sdb` → unit 1, as at definition); an address in use is refused with
//! libvirt's duplicate-address error. The VMM gets `blockdev-add` + `device_add
//! {driver: scsi-hd, bus: scsi0.0, channel, scsi-id, lun, …}` as libvirt 9 sends
//! it, and the guest hears of it on the controller's event queue. Detach needs
//! no guest cooperation: the VMM removes the LUN at once and sends
//! `DEVICE_DELETED` right away, as QEMU does. SCSI CD-ROMs are neither attached
//! nor detached live (libvirt: "disk device type 'cdrom' cannot be detached").

use std::sync::Arc;
use std::time::Duration;

use machine_spec::{DeviceKind, DiskFormat, MachineSpec, NetModel};
use serde_json::{json, Value};

use super::definition::Definition;
use super::device_config::{attach_to, detach_from};
use super::event::Event;
use super::slot::Slot;
use super::supervise::Vm;
use super::{Core, Error, Result};

/// How long a detach waits for the guest (libvirt's `QEMU_UNPLUG_TIMEOUT`).
const UNPLUG_WAIT: Duration = Duration::from_secs(5);

/// The block node libvirt would name for disk `alias`.
fn node_name(alias: &str) -> String {
    format!("libvirt-{alias}-format")
}

/// The netdev id libvirt gives NIC `alias`.
fn netdev_id(alias: &str) -> String {
    format!("host{alias}")
}

/// Spec bus indexes of root ports nothing sits behind, lowest first.
fn free_root_ports(spec: &MachineSpec) -> Vec<u8> {
    let used: Vec<u8> = spec
        .devices
        .iter()
        .filter_map(|d| d.pci)
        .filter(|a| a.bus != 0)
        .map(|a| a.bus)
        .collect();
    let mut free: Vec<u8> = spec
        .devices
        .iter()
        .filter_map(|d| match &d.kind {
            DeviceKind::PciController(c)
                if c.model == machine_spec::PciControllerModel::PcieRootPort =>
            {
                Some(c.index)
            }
            _ => None,
        })
        .filter(|i| !used.contains(i))
        .collect();
    free.sort_unstable();
    free
}

/// Root-bus slots nothing uses on a `pc` machine, lowest first: from 2 up (0 is
/// the host bridge, 1 the PIIX3), as libvirt's address assignment goes.
fn free_root_slots(spec: &MachineSpec) -> Vec<u8> {
    (2u8..32)
        .filter(|s| {
            !spec
                .devices
                .iter()
                .filter_map(|d| d.pci)
                .any(|a| a.domain == 0 && a.bus == 0 && a.slot == *s)
        })
        .collect()
}

/// The PCI slot an attached device's `<address type='pci'>` names, if any; on a
/// `pc` machine it must be on bus 0, function 0.
fn asked_slot(dev: roxmltree::Node) -> Result<Option<u8>> {
    let Some(a) = dev
        .children()
        .find(|c| c.has_tag_name("address") && c.attribute("type") == Some("pci"))
    else {
        return Ok(None);
    };
    let num = |name: &str| {
        let v = a.attribute(name).unwrap_or("0");
        let parsed = match v.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16),
            None => v.parse(),
        };
        parsed.map_err(|_| Error::Xml(format!("invalid PCI address {name} '{v}'")))
    };
    let (bus, slot, function) = (num("bus")?, num("slot")?, num("function")?);
    if num("domain")? != 0 || bus != 0 || function != 0 || !(2..32).contains(&slot) {
        return Err(Error::OperationUnsupported(format!(
            "cannot hot-plug a device at PCI address {:04x}:{bus:02x}:{slot:02x}.{function}: \
             on i440FX machines only function 0 of slots 0x02-0x1f of bus 0 are hot-pluggable",
            num("domain")?
        )));
    }
    Ok(Some(slot as u8))
}

/// The device element's text with its `<address>` replaced by one at `slot` of
/// bus `bus` (behind a root port: the port's bus, slot 0; `pc`: bus 0).
fn placed_at(xml: &str, dev: roxmltree::Node, bus: u8, slot: u8) -> String {
    let text = &xml[dev.range()];
    let start = dev.range().start;
    let address = format!(
        "<address type='pci' domain='0x0000' bus='{bus:#04x}' slot='{slot:#04x}' function='0x0'/>"
    );
    match dev
        .children()
        .find(|c| c.is_element() && c.has_tag_name("address"))
    {
        Some(a) => {
            let r = a.range();
            format!(
                "{}{address}{}",
                &text[..r.start - start],
                &text[r.end - start..]
            )
        }
        None if text.ends_with("/>") => {
            let open = &text[..text.len() - 2];
            let tag = dev.tag_name().name();
            format!("{open}>{address}</{tag}>")
        }
        None => {
            let end = text.rfind("</").unwrap_or(text.len());
            format!("{}{address}{}", &text[..end], &text[end..])
        }
    }
}

/// Whether a definition's machine type is a Q35 one (`q35`, `pc-q35-…`): where
/// libvirt lays out root ports, and PCIe native hot-plug applies. (The spec's
/// chipset says Generic for a direct kernel boot of either.)
fn is_q35(xml: &str) -> bool {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return false;
    };
    doc.descendants()
        .find(|n| n.has_tag_name("type") && n.parent().is_some_and(|p| p.has_tag_name("os")))
        .and_then(|t| t.attribute("machine"))
        .is_some_and(|m| m == "q35" || m.starts_with("pc-q35"))
}

/// The aliases of the disks and interfaces in a definition's XML.
fn device_aliases(xml: &str) -> Vec<(String, String)> {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return Vec::new();
    };
    let Some(devices) = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("devices"))
    else {
        return Vec::new();
    };
    devices
        .children()
        .filter(|d| d.has_tag_name("disk") || d.has_tag_name("interface"))
        .filter_map(|d| {
            let alias = d
                .children()
                .find(|c| c.has_tag_name("alias"))?
                .attribute("name")?;
            Some((d.tag_name().name().to_string(), alias.to_string()))
        })
        .collect()
}

/// The definition XML without the disk or interface whose alias is `alias`.
fn without_alias(xml: &str, alias: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let dev = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("devices"))?
        .children()
        .filter(|d| d.has_tag_name("disk") || d.has_tag_name("interface"))
        .find(|d| {
            d.children()
                .any(|c| c.has_tag_name("alias") && c.attribute("name") == Some(alias))
        })?;
    let r = dev.range();
    Some(format!("{}{}", &xml[..r.start], &xml[r.end..]))
}

fn unsupported(what: &str, tag: &str) -> Error {
    Error::OperationUnsupported(format!("live {what} of device '{tag}' is not supported"))
}

impl Core {
    /// Attaches the device `xml` to the running domain of `slot` (job lock held).
    pub(super) async fn attach_live(&self, slot: &Arc<Slot>, xml: &str) -> Result<()> {
        let doc = roxmltree::Document::parse(xml)
            .map_err(|e| Error::Xml(format!("(device_definition): {e}")))?;
        let dev = doc.root_element();
        let tag = dev.tag_name().name();
        if tag != "disk" && tag != "interface" {
            return Err(unsupported("attach", tag));
        }
        if tag == "disk" && on_scsi_bus(dev) {
            return self.attach_scsi_live(slot, xml, dev).await;
        }
        let (live, vm) = running(slot)?;
        let live_xml = live.to_xml(false);
        let now = live.translate()?;
        let no_slot = || Error::Internal("No more available PCI slots".into());
        let (bus, pci_slot) = if is_q35(&live_xml) {
            (*free_root_ports(&now).first().ok_or_else(no_slot)?, 0)
        } else if now.platform.acpi_pci_hotplug {
            let free = free_root_slots(&now);
            let s = match asked_slot(dev)? {
                Some(s) if free.contains(&s) => s,
                Some(s) => {
                    return Err(Error::Xml(format!(
                        "Attempted double use of PCI Address 0000:00:{s:02x}.0"
                    )))
                }
                None => *free.first().ok_or_else(no_slot)?,
            };
            (0, s)
        } else {
            return Err(Error::OperationUnsupported(format!(
                "live attach of device '{tag}' needs ACPI (<features><acpi/>) on i440FX machines"
            )));
        };
        let dev_xml = placed_at(xml, dev, bus, pci_slot);
        let dev_doc = roxmltree::Document::parse(&dev_xml)
            .map_err(|e| Error::Internal(format!("device XML: {e}")))?;
        let new_xml = attach_to(&live_xml, &dev_xml, dev_doc.root_element())?;
        let mut def = Definition::parse(&new_xml)?;
        self.resolve_networks(&mut def)?;
        self.resolve_volumes(&mut def)?;
        let mut spec = def.translate()?;
        super::tapname::name_taps(&self.inner.next_vnet, &mut def, &mut spec);
        let d = spec
            .devices
            .iter()
            .find(|d| d.pci.is_some_and(|a| a.bus == bus && a.slot == pci_slot))
            .ok_or_else(|| {
                Error::Internal(format!("the new {tag} is not at {bus:02x}:{pci_slot:02x}"))
            })?;
        let pci_bus = format!("pci.{bus}");
        let addr = format!("{pci_slot:#x}");
        match &d.kind {
            DeviceKind::Disk(k) => {
                let node = blockdev_add(&vm, &d.id, k).await?;
                let mut args = json!({"driver": "virtio-blk-pci", "id": d.id, "bus": pci_bus,
                    "addr": addr, "drive": node});
                if let Some(s) = &k.serial {
                    args["serial"] = json!(s);
                }
                // libvirt sends <driver queues='N'> as num-queues; without it the VMM
                // gives one queue per vCPU, as QEMU >= 5.2 does.
                if let Some(q) = k.queues {
                    args["num-queues"] = json!(q);
                }
                if let Err(e) = vm.qmp("device_add", Some(args)).await {
                    let _ = vm
                        .qmp("blockdev-del", Some(json!({"node-name": node})))
                        .await;
                    return Err(e);
                }
            }
            DeviceKind::Net(n) if n.model == NetModel::Virtio => {
                let netdev = netdev_id(&d.id);
                // The tap comes open, as libvirt passes it (`getfd`, then `netdev_add`
                // with `fd`): the VMM keeps no CAP_NET_ADMIN. It goes when the VMM
                // closes it (netdev_del, exit).
                let Some(tap) = super::tap::open_for(&self.inner.config.vmm, n).await? else {
                    return Err(unsupported("attach", "interface type='user'"));
                };
                tracing::info!(domain = %slot.name(), tap = tap.name, queues = tap.fds.len(),
                    "tap for hot-plug");
                // One `getfd` per queue; a multiqueue tap's go as `fds` (libvirt's form),
                // then the vhost-net instances (one per pair) as `vhostfds`.
                let vhost = super::tap::open_vhost(n);
                let tap_fds = tap.fds.iter().enumerate().map(|(i, fd)| ("tap", i, fd));
                let vhost_fds = vhost.iter().enumerate().map(|(i, fd)| ("vhost", i, fd));
                let mut names = Vec::new();
                for (what, i, fd) in tap_fds.chain(vhost_fds) {
                    let fdname = format!("{what}-{netdev}-{i}");
                    let got = vm
                        .qmp_with_fds(
                            "getfd",
                            Some(json!({"fdname": fdname})),
                            &[std::os::fd::AsFd::as_fd(fd)],
                        )
                        .await;
                    if let Err(e) = got {
                        for fdname in names {
                            let _ = vm.qmp("closefd", Some(json!({"fdname": fdname}))).await;
                        }
                        return Err(e);
                    }
                    names.push(fdname);
                }
                let (tap_names, vhost_names) = names.split_at(tap.fds.len());
                let mut args = match tap_names {
                    [one] => json!({"type": "tap", "id": netdev, "fd": one}),
                    many => json!({"type": "tap", "id": netdev, "fds": many.join(":")}),
                };
                match vhost_names {
                    [] => {}
                    [one] => args["vhostfd"] = json!(one),
                    many => args["vhostfds"] = json!(many.join(":")),
                }
                // `<driver name='vhost'>` without an instance: the VMM tries, and
                // refuses the NIC with the reason.
                if !vhost.is_empty() || n.driver == machine_spec::NetDriver::Vhost {
                    args["vhost"] = json!(true);
                }
                if let Err(e) = vm.qmp("netdev_add", Some(args)).await {
                    for fdname in names {
                        let _ = vm.qmp("closefd", Some(json!({"fdname": fdname}))).await;
                    }
                    return Err(e);
                }
                let mut args = json!({"driver": "virtio-net-pci", "id": d.id, "bus": pci_bus,
                    "addr": addr, "netdev": netdev, "mac": n.mac});
                // As libvirt sends it: mq on, a vector per queue plus config and control.
                if tap.fds.len() > 1 {
                    args["mq"] = json!(true);
                    args["vectors"] = json!(2 * tap.fds.len() + 2);
                }
                if let Err(e) = vm.qmp("device_add", Some(args)).await {
                    let _ = vm.qmp("netdev_del", Some(json!({"id": netdev}))).await;
                    return Err(e);
                }
            }
            _ => return Err(unsupported("attach", tag)),
        }
        let alias = d.id.clone();
        tracing::info!(domain = %slot.name(), device = alias, bus, pci_slot, "device attached live");
        let live_xml = def.to_xml(false);
        slot.rec().live = Some(def);
        super::media::record_live(&vm, &slot.name(), &live_xml);
        self.emit(Event::DeviceAdded {
            domain: slot.domain_ref(),
            dev_alias: alias,
        });
        Ok(())
    }

    /// Detaches the device `xml` names from the running domain of `slot` (job
    /// lock held): asks the guest, waits a while for it (see the module doc).
    pub(super) async fn detach_live(&self, slot: &Arc<Slot>, xml: &str) -> Result<()> {
        let doc = roxmltree::Document::parse(xml)
            .map_err(|e| Error::Xml(format!("(device_definition): {e}")))?;
        let dev = doc.root_element();
        let tag = dev.tag_name().name();
        if tag != "disk" && tag != "interface" {
            return Err(unsupported("detach", tag));
        }
        let (live, vm) = running(slot)?;
        let live_xml = live.to_xml(false);
        let rest = detach_from(&live_xml, dev)?;
        let left = device_aliases(&rest);
        let alias = device_aliases(&live_xml)
            .into_iter()
            .find(|a| !left.contains(a))
            .map(|(_, a)| a)
            .ok_or_else(|| Error::Internal(format!("Cannot detach {tag} device with no alias")))?;
        let spec = live.translate()?;
        let d =
            spec.devices.iter().find(|d| d.id == alias).ok_or_else(|| {
                Error::Internal(format!("device '{alias}' is not in the machine"))
            })?;
        if let DeviceKind::ScsiDisk(u) = &d.kind {
            if u.cdrom {
                return Err(Error::OperationUnsupported(
                    "disk device type 'cdrom' cannot be detached".into(),
                ));
            }
            return self.detach_scsi_live(slot, &vm, &alias).await;
        }
        let hotpluggable = matches!(&d.kind, DeviceKind::Disk(_))
            || matches!(&d.kind, DeviceKind::Net(n) if n.model == NetModel::Virtio);
        let behind_port = d.pci.is_some_and(|a| {
            a.bus != 0
                && spec.devices.iter().any(|c| {
                    matches!(&c.kind,
                DeviceKind::PciController(p) if p.index == a.bus
                    && p.model == machine_spec::PciControllerModel::PcieRootPort)
                })
        });
        // `pc`: a function 0 in a root-bus slot the ACPI hot-plug offers.
        let acpi_slot = spec.platform.acpi_pci_hotplug
            && d.pci
                .is_some_and(|a| a.bus == 0 && a.function == 0 && (2..32).contains(&a.slot));
        if !hotpluggable {
            return Err(unsupported("detach", tag));
        }
        if !behind_port && !acpi_slot {
            let a = d
                .pci
                .map_or((0, 0, 0, 0), |a| (a.domain, a.bus, a.slot, a.function));
            return Err(Error::OperationFailed(format!(
                "cannot hot unplug {tag} device with PCI guest address: \
                 {:04x}:{:02x}:{:02x}.{} - not allowed by controller",
                a.0, a.1, a.2, a.3
            )));
        }
        let removed = self.device_del_and_wait(slot, &vm, &alias).await?;
        if !removed {
            // libvirt: success; the device goes when (if) the guest releases it.
            tracing::warn!(domain = %slot.name(), device = alias,
                "the guest has not released the device yet; it stays until it does");
        }
        Ok(())
    }

    /// Attaches the SCSI disk `xml` (`dev`) to the running domain of `slot` as a
    /// LUN of its virtio-scsi controller (see the module doc).
    async fn attach_scsi_live(
        &self,
        slot: &Arc<Slot>,
        xml: &str,
        dev: roxmltree::Node<'_, '_>,
    ) -> Result<()> {
        let (live, vm) = running(slot)?;
        let live_xml = live.to_xml(false);
        let now = live.translate()?;
        let new_xml = attach_to(&live_xml, xml, dev)?;
        let mut def = Definition::parse(&new_xml)?;
        duplicate_drive_address(&def, dev)?;
        self.resolve_volumes(&mut def)?;
        let spec = def.translate()?;
        let d = spec
            .devices
            .iter()
            .find(|d| {
                matches!(d.kind, DeviceKind::ScsiDisk(_))
                    && !now.devices.iter().any(|n| n.id == d.id)
            })
            .ok_or_else(|| Error::Internal("the new SCSI disk is not in the machine".into()))?;
        let DeviceKind::ScsiDisk(u) = &d.kind else {
            unreachable!("matched above")
        };
        if u.cdrom {
            return Err(unsupported("attach", "disk device='cdrom' bus='scsi'"));
        }
        let controller = now
            .devices
            .iter()
            .find(|c| matches!(&c.kind, DeviceKind::ScsiController(c) if c.index == u.controller))
            .ok_or_else(|| {
                Error::OperationUnsupported(format!(
                    "live attach of disk '{}' needs SCSI controller {} in the running domain \
                     (oxvirt adds no controllers live): attach it to an existing \
                     <controller type='scsi'> with <address type='drive' controller=.../>",
                    u.name, u.controller
                ))
            })?;
        let k = u
            .medium
            .as_ref()
            .ok_or_else(|| Error::Internal(format!("disk '{}' has no source", u.name)))?;
        let node = blockdev_add(&vm, &d.id, k).await?;
        let write_cache = if matches!(
            k.cache,
            machine_spec::CacheMode::Writethrough | machine_spec::CacheMode::Directsync
        ) {
            "off"
        } else {
            "on"
        };
        let mut args = json!({"driver": "scsi-hd", "bus": format!("{}.0", controller.id),
            "channel": 0, "scsi-id": u.target, "lun": u.lun,
            "device_id": format!("drive-{}", d.id), "drive": node, "id": d.id,
            "write-cache": write_cache});
        if let Some(s) = &k.serial {
            args["serial"] = json!(s);
        }
        if let Some(w) = u.wwn {
            args["wwn"] = json!(w);
        }
        for (name, v) in [("vendor", &u.vendor), ("product", &u.product)] {
            if let Some(v) = v {
                args[name] = json!(v);
            }
        }
        if let Err(e) = vm.qmp("device_add", Some(args)).await {
            let _ = vm
                .qmp("blockdev-del", Some(json!({"node-name": node})))
                .await;
            return Err(e);
        }
        let alias = d.id.clone();
        tracing::info!(domain = %slot.name(), device = alias, controller = u.controller,
            target = u.target, lun = u.lun, "SCSI disk attached live");
        let live_xml = def.to_xml(false);
        slot.rec().live = Some(def);
        super::media::record_live(&vm, &slot.name(), &live_xml);
        self.emit(Event::DeviceAdded {
            domain: slot.domain_ref(),
            dev_alias: alias,
        });
        Ok(())
    }

    /// Sends `device_del` for `alias` and waits up to [`UNPLUG_WAIT`] for its
    /// device-removed event (the VMM's `DEVICE_DELETED`, handled by
    /// [`Core::device_deleted`]): whether the device went in that time.
    async fn device_del_and_wait(
        &self,
        slot: &Arc<Slot>,
        vm: &Arc<Vm>,
        alias: &str,
    ) -> Result<bool> {
        let mut events = self.subscribe();
        vm.qmp("device_del", Some(json!({"id": alias}))).await?;
        let uuid = slot.domain_ref().uuid;
        Ok(tokio::time::timeout(UNPLUG_WAIT, async {
            loop {
                match events.recv().await {
                    Ok(Event::DeviceRemoved { domain, dev_alias })
                        if domain.uuid == uuid && dev_alias == alias =>
                    {
                        return true
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                }
            }
        })
        .await
        .unwrap_or(false))
    }

    /// Detaches SCSI disk `alias`: the VMM removes the LUN at once and answers
    /// with `DEVICE_DELETED` (handled by [`Core::device_deleted`]), waited for
    /// here so that the call returns with the disk gone from the live XML.
    async fn detach_scsi_live(&self, slot: &Arc<Slot>, vm: &Arc<Vm>, alias: &str) -> Result<()> {
        let removed = self.device_del_and_wait(slot, vm, alias).await?;
        if !removed {
            return Err(Error::OperationFailed(format!(
                "the VMM did not report the removal of SCSI disk '{alias}'"
            )));
        }
        Ok(())
    }

    /// The VMM's `DEVICE_DELETED`: the guest released device `data.device`.
    pub(super) fn device_deleted(&self, slot: &Slot, vm: &Arc<Vm>, data: &Value) {
        let Some(alias) = data["device"].as_str() else {
            return;
        };
        let (kind, live_xml) = {
            let mut r = slot.rec();
            let Some(def) = r.live.as_ref() else {
                return;
            };
            let xml = def.to_xml(false);
            let Some(kind) = device_aliases(&xml)
                .into_iter()
                .find(|(_, a)| a == alias)
                .map(|(k, _)| k)
            else {
                tracing::warn!(
                    device = alias,
                    "DEVICE_DELETED for a device the live definition lacks"
                );
                return;
            };
            let Some(rest) = without_alias(&xml, alias) else {
                return;
            };
            match Definition::parse(&rest) {
                Ok(def) => {
                    r.live = Some(def);
                    (kind, rest)
                }
                Err(e) => {
                    tracing::error!(device = alias, error = %e, "live definition without the device");
                    return;
                }
            }
        };
        tracing::info!(domain = %slot.name(), device = alias, "device removed");
        super::media::record_live(vm, &slot.name(), &live_xml);
        // The backend goes too, as libvirt's qemuDomainRemove*Device does.
        let (cmd, args) = if kind == "disk" {
            ("blockdev-del", json!({"node-name": node_name(alias)}))
        } else {
            ("netdev_del", json!({"id": netdev_id(alias)}))
        };
        let vm = vm.clone();
        let name = slot.name();
        tokio::spawn(async move {
            if let Err(e) = vm.qmp(cmd, Some(args)).await {
                tracing::warn!(domain = name, error = %e, "{cmd} after unplug");
            }
        });
        self.emit(Event::DeviceRemoved {
            domain: slot.domain_ref(),
            dev_alias: alias.to_string(),
        });
    }
}

/// libvirt's error for a new SCSI disk (`dev`, now in `def`) at the drive
/// address of another one.
fn duplicate_drive_address(def: &Definition, dev: roxmltree::Node) -> Result<()> {
    let target = dev
        .children()
        .find(|c| c.is_element() && c.has_tag_name("target"))
        .and_then(|t| t.attribute("dev"))
        .unwrap_or_default();
    let on_scsi = |d: &&domain_xml::Disk| d.target.bus == Some(domain_xml::DiskBus::Scsi);
    let Some(new) = def
        .disks()
        .iter()
        .filter(on_scsi)
        .find(|d| d.target.dev == target)
    else {
        return Ok(());
    };
    let Some(domain_xml::Address::Drive {
        controller,
        bus,
        target: t,
        unit,
    }) = &new.address
    else {
        return Ok(());
    };
    match def
        .disks()
        .iter()
        .filter(on_scsi)
        .find(|d| d.target.dev != target && d.address == new.address)
    {
        Some(other) => Err(Error::Xml(format!(
            "Found duplicate drive address for disk with target name '{}' controller='{controller}' \
             bus='{bus}' target='{t}' unit='{unit}'",
            other.target.dev
        ))),
        None => Ok(()),
    }
}

/// Whether a `<disk>` element's target names the SCSI bus (or, without a bus,
/// a name libvirt puts there: `sdX`).
fn on_scsi_bus(dev: roxmltree::Node) -> bool {
    dev.children()
        .find(|c| c.is_element() && c.has_tag_name("target"))
        .is_some_and(|t| match t.attribute("bus") {
            Some(bus) => bus == "scsi",
            None => t.attribute("dev").is_some_and(|d| d.starts_with("sd")),
        })
}

/// The live definition and VMM of a running domain.
fn running(slot: &Slot) -> Result<(Definition, Arc<Vm>)> {
    let r = slot.rec();
    match (r.live.clone(), r.vm.clone()) {
        (Some(live), Some(vm)) => Ok((live, vm)),
        _ => Err(Error::OperationInvalid("domain is not running".into())),
    }
}

/// `blockdev-add` of disk `k`'s image as libvirt 9 sends it (format node over a file
/// node); the node's name, for `device_add`'s `drive`.
async fn blockdev_add(vm: &Vm, id: &str, k: &machine_spec::Disk) -> Result<String> {
    let node = node_name(id);
    let format = match k.format {
        DiskFormat::Raw => "raw",
        DiskFormat::Qcow2 => "qcow2",
    };
    // The image and its backing chain go over open first; the VMM's open of the
    // path takes them (it may not open them by path itself).
    super::handover::add_fdsets(
        vm,
        &k.path,
        k.format == DiskFormat::Qcow2,
        !k.readonly,
        k.cache,
    )
    .await?;
    vm.qmp(
        "blockdev-add",
        Some(json!({
            "driver": format, "node-name": node, "read-only": k.readonly,
            "file": {"driver": "file", "filename": k.path.display().to_string()}
        })),
    )
    .await?;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_goes_behind_the_chosen_port() {
        let x = "<disk type='file' device='disk'><source file='/b.img'/><target dev='vdb' bus='virtio'/></disk>";
        let d = roxmltree::Document::parse(x).unwrap();
        let out = placed_at(x, d.root_element(), 3, 0);
        assert!(
            out.ends_with("<address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></disk>"),
            "{out}"
        );
        let x = "<interface type='network'><address type='pci' bus='0x09' slot='0x01'/><source network='default'/></interface>";
        let d = roxmltree::Document::parse(x).unwrap();
        let out = placed_at(x, d.root_element(), 5, 0);
        assert!(!out.contains("0x09") && out.contains("bus='0x05'"), "{out}");
        // pc: a slot of bus 0.
        let out = placed_at(x, d.root_element(), 0, 7);
        assert!(
            out.contains("bus='0x00' slot='0x07' function='0x0'"),
            "{out}"
        );
    }

    #[test]
    fn pc_slots_libvirt_style() {
        let x = "<interface type='network'><address type='pci' domain='0x0000' bus='0x00' slot='0x09' function='0x0'/></interface>";
        let d = roxmltree::Document::parse(x).unwrap();
        assert_eq!(asked_slot(d.root_element()).unwrap(), Some(9));
        let x = "<disk><target dev='vdb'/></disk>";
        let d = roxmltree::Document::parse(x).unwrap();
        assert_eq!(asked_slot(d.root_element()).unwrap(), None);
        for bad in [
            "<disk><address type='pci' bus='0x01' slot='0x00'/></disk>",
            "<disk><address type='pci' bus='0x00' slot='0x01'/></disk>",
            "<disk><address type='pci' bus='0x00' slot='0x05' function='0x1'/></disk>",
        ] {
            let d = roxmltree::Document::parse(bad).unwrap();
            assert!(asked_slot(d.root_element()).is_err(), "{bad}");
        }
        let def = Definition::parse(
            "<domain type='kvm'><name>x</name><memory unit='MiB'>64</memory>\
             <os><type machine='pc'>hvm</type><kernel>/boot/k</kernel></os>\
             <features><acpi/></features><devices/></domain>",
        )
        .unwrap();
        let mut spec = def.translate().unwrap();
        assert!(spec.platform.acpi_pci_hotplug, "pc with ACPI hot-plugs");
        spec.devices.clear();
        assert_eq!(free_root_slots(&spec).first(), Some(&2));
        spec.devices.push(machine_spec::Device {
            id: "video0".into(),
            pci: Some(machine_spec::PciAddress {
                domain: 0,
                bus: 0,
                slot: 2,
                function: 0,
            }),
            boot_index: None,
            kind: DeviceKind::Pvpanic,
        });
        assert_eq!(free_root_slots(&spec).first(), Some(&3));
        assert_eq!(free_root_slots(&spec).len(), 29);
    }

    #[test]
    fn machine_type_decides() {
        let q = |m: &str| format!("<domain><os><type machine='{m}'>hvm</type></os></domain>");
        assert!(is_q35(&q("q35")) && is_q35(&q("pc-q35-7.2")));
        assert!(!is_q35(&q("pc")) && !is_q35(&q("pc-i440fx-7.2")));
    }

    #[test]
    fn aliases_and_removal_by_alias() {
        let def = "<domain><devices><disk><target dev='vda'/><alias name='virtio-disk0'/></disk>\
            <interface type='bridge'><alias name='net0'/></interface></devices></domain>";
        assert_eq!(
            device_aliases(def),
            vec![
                ("disk".to_string(), "virtio-disk0".to_string()),
                ("interface".to_string(), "net0".to_string())
            ]
        );
        let rest = without_alias(def, "net0").unwrap();
        assert!(
            !rest.contains("net0") && rest.contains("virtio-disk0"),
            "{rest}"
        );
        assert!(without_alias(def, "net9").is_none());
    }
}

//! PCI address assignment for devices that need one and lack it.
//!
//! oxvirt puts every PCI device on the root bus (bus 0), one device per slot, function 0,
//! in libvirt's order (primary video, controllers, filesystems, network, sound, disks,
//! host devices, balloon, rng, watchdog, the rest). Slot 0 is the host bridge; on `pc`
//! machines slot 1 is the PIIX3 (its IDE and USB functions get 1.1 and 1.2), on `q35`
//! slot 0x1f is the ICH9 (SATA at 1f.2). Addresses given in the XML are kept.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::model::*;

struct Allocator {
    used: BTreeSet<(u16, u8, u8, u8)>,
    first_slot: u8,
}

impl Allocator {
    fn reserve(&mut self, a: &PciAddr) -> Result<()> {
        if !self.used.insert((a.domain, a.bus, a.slot, a.function)) {
            return Err(Error::xml(format!(
                "Attempted double use of PCI Address {:04x}:{:02x}:{:02x}.{}",
                a.domain, a.bus, a.slot, a.function
            )));
        }
        Ok(())
    }

    fn next(&mut self) -> Result<Address> {
        for slot in self.first_slot..=0x1f {
            let taken = self
                .used
                .iter()
                .any(|(d, b, s, _)| *d == 0 && *b == 0 && *s == slot);
            if !taken {
                self.used.insert((0, 0, slot, 0));
                return Ok(Address::Pci(PciAddr {
                    domain: 0,
                    bus: 0,
                    slot,
                    function: 0,
                    multifunction: None,
                }));
            }
        }
        Err(Error::xml("No more available PCI slots"))
    }

    fn fill(&mut self, address: &mut Option<Address>) -> Result<()> {
        if address.is_none() {
            *address = Some(self.next()?);
        }
        Ok(())
    }
}

fn is_virtio_model(m: &str) -> bool {
    m.starts_with("virtio")
}

/// Assigns addresses in place.
pub(crate) fn assign(d: &mut Devices, q35: bool) -> Result<()> {
    let mut alloc = Allocator {
        used: BTreeSet::new(),
        first_slot: 1,
    };
    // Slot 0 is the host bridge; the chipset's own slot is reserved too.
    alloc.used.insert((0, 0, 0, 0));
    let chipset_slot = if q35 { 0x1f } else { 1 };
    alloc.used.insert((0, 0, chipset_slot, 0));
    for a in existing(d) {
        alloc.reserve(&a)?;
    }
    // Chipset-integrated controllers take their fixed chipset function, unless the
    // definition already put something there (then they get a slot like any device).
    for c in &mut d.controllers {
        if c.address.is_some() || c.index != 0 {
            continue;
        }
        let function = match (c.controller_type, q35) {
            (ControllerType::Ide, false) => 1,
            (ControllerType::Sata, true) => 2,
            (ControllerType::Usb, false) if c.model.as_deref() == Some("piix3-uhci") => 2,
            _ => continue,
        };
        if alloc.used.insert((0, 0, chipset_slot, function)) {
            c.address = Some(Address::Pci(PciAddr {
                domain: 0,
                bus: 0,
                slot: chipset_slot,
                function,
                multifunction: None,
            }));
        }
    }
    // Primary video at slot 2 on pc, as QEMU's i440fx layout has it.
    if let Some(v) = d.videos.first_mut() {
        if v.address.is_none() && v.model_type() != Some("none") {
            if !q35 && !alloc.used.iter().any(|(_, b, s, _)| *b == 0 && *s == 2) {
                alloc.used.insert((0, 0, 2, 0));
                v.address = Some(Address::Pci(PciAddr {
                    domain: 0,
                    bus: 0,
                    slot: 2,
                    function: 0,
                    multifunction: None,
                }));
            } else {
                alloc.fill(&mut v.address)?;
            }
        }
    }
    for c in &mut d.controllers {
        let needs = match c.controller_type {
            ControllerType::Pci => !matches!(c.model.as_deref(), Some("pci-root" | "pcie-root")),
            ControllerType::Usb => c.model.as_deref() != Some("none"),
            ControllerType::VirtioSerial | ControllerType::Scsi | ControllerType::Sata => true,
            ControllerType::Ide => true,
            _ => false,
        };
        if needs {
            alloc.fill(&mut c.address)?;
        }
    }
    for f in &mut d.filesystems {
        alloc.fill(&mut f.address)?;
    }
    for n in &mut d.interfaces {
        if n.model.as_deref() != Some("usb-net") {
            alloc.fill(&mut n.address)?;
        }
    }
    for s in &mut d.sounds {
        if s.attr("model") != Some("usb") {
            alloc.fill(&mut s.address)?;
        }
    }
    for disk in &mut d.disks {
        if disk.target.bus == Some(DiskBus::Virtio) {
            alloc.fill(&mut disk.address)?;
        }
    }
    for h in &mut d.hostdevs {
        if h.attr("type") == Some("pci") || h.attr("type") == Some("mdev") {
            alloc.fill(&mut h.address)?;
        }
    }
    if let Some(m) = &mut d.memballoon {
        if is_virtio_model(&m.model) {
            alloc.fill(&mut m.address)?;
        }
    }
    for r in &mut d.rngs {
        if is_virtio_model(&r.model) {
            alloc.fill(&mut r.address)?;
        }
    }
    for w in &mut d.watchdogs {
        if w.model == "i6300esb" {
            alloc.fill(&mut w.address)?;
        }
    }
    for v in d.videos.iter_mut().skip(1) {
        if v.model_type() != Some("none") {
            alloc.fill(&mut v.address)?;
        }
    }
    for s in &mut d.shmems {
        alloc.fill(&mut s.address)?;
    }
    for i in &mut d.inputs {
        if i.bus.as_deref() == Some("virtio") {
            alloc.fill(&mut i.address)?;
        }
    }
    if let Some(v) = &mut d.vsock {
        alloc.fill(&mut v.address)?;
    }
    if let Some(i) = &mut d.iommu {
        if i.attr("model") == Some("virtio") {
            alloc.fill(&mut i.address)?;
        }
    }
    for c in &mut d.cryptos {
        alloc.fill(&mut c.address)?;
    }
    Ok(())
}

/// PCI addresses already present in the definition.
fn existing(d: &Devices) -> Vec<PciAddr> {
    let mut all: Vec<&Option<Address>> = Vec::new();
    all.extend(d.disks.iter().map(|x| &x.address));
    all.extend(d.controllers.iter().map(|x| &x.address));
    all.extend(d.interfaces.iter().map(|x| &x.address));
    all.extend(d.inputs.iter().map(|x| &x.address));
    all.extend(d.watchdogs.iter().map(|x| &x.address));
    all.extend(d.rngs.iter().map(|x| &x.address));
    all.extend(d.memballoon.iter().map(|x| &x.address));
    all.extend(d.vsock.iter().map(|x| &x.address));
    for list in [
        &d.filesystems,
        &d.sounds,
        &d.videos,
        &d.hostdevs,
        &d.shmems,
        &d.cryptos,
        &d.smartcards,
        &d.tpms,
        &d.memories,
    ] {
        all.extend(list.iter().map(|x| &x.address));
    }
    all.extend(d.iommu.iter().map(|x| &x.address));
    all.into_iter()
        .filter_map(|a| match a {
            Some(Address::Pci(p)) => Some(*p),
            _ => None,
        })
        .collect()
}

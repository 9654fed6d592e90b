//! `virDomainAttachDeviceFlags` / `virDomainDetachDeviceFlags` on the persistent
//! definition (`--config`): any device element the translation accepts is added to,
//! or removed from, `<devices>`; the whole new definition is parsed and translated
//! before it replaces the old one, so a refused change leaves the definition as it
//! was. Live attach and detach answer libvirt's "not supported" error: the VMM has no
//! device hot-plug yet.

use uuid::Uuid;

use super::definition::Definition;
use super::device::impact;
use super::flags::affect;
use super::netdev;
use super::{Core, Error, Result};

/// Children that identify a device's place, not the device, when matching.
const PLACEMENT: [&str; 2] = ["address", "alias"];

impl Core {
    /// Adds the device `xml` to the persistent definition.
    pub async fn attach_device(&self, uuid: &Uuid, xml: &str, flags: u32) -> Result<()> {
        Error::check_flags(
            flags,
            affect::LIVE | affect::CONFIG,
            "virDomainAttachDeviceFlags",
        )?;
        self.change_config(uuid, xml, flags, "attach", |def_xml, dev| {
            attach_to(def_xml, xml, dev)
        })
        .await
    }

    /// Removes the device `xml` names from the persistent definition.
    pub async fn detach_device(&self, uuid: &Uuid, xml: &str, flags: u32) -> Result<()> {
        Error::check_flags(
            flags,
            affect::LIVE | affect::CONFIG,
            "virDomainDetachDeviceFlags",
        )?;
        self.change_config(uuid, xml, flags, "detach", detach_from)
            .await
    }

    async fn change_config(
        &self,
        uuid: &Uuid,
        xml: &str,
        flags: u32,
        what: &str,
        edit: impl FnOnce(&str, roxmltree::Node) -> Result<String>,
    ) -> Result<()> {
        let doc = roxmltree::Document::parse(xml)
            .map_err(|e| Error::Xml(format!("(device_definition): {e}")))?;
        let dev = doc.root_element();
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let (active, persistent, name) = {
            let r = slot.rec();
            (r.active(), r.persistent(), r.name.clone())
        };
        let (live, config) = impact(flags, active, persistent)?;
        if live {
            // Virtio disks and NICs behind root ports (`hotplug.rs`).
            match what {
                "attach" => self.attach_live(&slot, xml).await?,
                _ => self.detach_live(&slot, xml).await?,
            }
            if !config {
                return Ok(());
            }
        }
        let old = slot.rec().def.clone().expect("persistent checked");
        let new_xml = edit(&old.to_xml(true), dev)?;
        // The result must be a definition we accept and can run, as a whole.
        let def = Definition::parse(&new_xml)?;
        def.translate()?;
        self.inner.store.save(&name, &def.to_xml(true))?;
        tracing::info!(
            domain = name,
            device = dev.tag_name().name(),
            what,
            "persistent definition changed"
        );
        slot.rec().def = Some(def);
        Ok(())
    }
}

/// The definition text with `dev_xml` appended to `<devices>`.
pub(super) fn attach_to(def_xml: &str, dev_xml: &str, dev: roxmltree::Node) -> Result<String> {
    let doc = parse(def_xml)?;
    let devices = devices_of(&doc);
    if dev.has_tag_name("disk") {
        let target = target_dev(dev)
            .ok_or_else(|| Error::Xml("missing target information for device".into()))?;
        if devices
            .iter()
            .flat_map(|d| d.children())
            .any(|d| d.has_tag_name("disk") && target_dev(d) == Some(target))
        {
            return Err(Error::OperationInvalid(format!(
                "target {target} already exists"
            )));
        }
    }
    // The device's own text, without an XML declaration.
    let text = &dev_xml[dev.range()];
    Ok(match devices {
        Some(d) if d.children().next().is_some() || def_xml[d.range()].ends_with("</devices>") => {
            let end = d.range().end - "</devices>".len();
            format!("{}{text}\n{}", &def_xml[..end], &def_xml[end..])
        }
        Some(d) => format!(
            "{}<devices>{text}</devices>{}",
            &def_xml[..d.range().start],
            &def_xml[d.range().end..]
        ),
        None => {
            let end = def_xml
                .rfind("</domain>")
                .ok_or_else(|| Error::Internal("definition has no </domain>".into()))?;
            format!(
                "{}<devices>{text}</devices>\n{}",
                &def_xml[..end],
                &def_xml[end..]
            )
        }
    })
}

/// The definition text without the device `dev` matches.
pub(super) fn detach_from(def_xml: &str, dev: roxmltree::Node) -> Result<String> {
    let doc = parse(def_xml)?;
    let candidates: Vec<roxmltree::Node> = devices_of(&doc)
        .into_iter()
        .flat_map(|d| d.children())
        .filter(|d| d.is_element() && d.tag_name().name() == dev.tag_name().name())
        .collect();
    let found: Vec<&roxmltree::Node> = match dev.tag_name().name() {
        // libvirt finds a disk by its target, an interface by its MAC.
        "disk" => {
            let target = target_dev(dev)
                .ok_or_else(|| Error::Xml("missing target information for device".into()))?;
            let hit: Vec<_> = candidates
                .iter()
                .filter(|c| target_dev(**c) == Some(target))
                .collect();
            if hit.is_empty() {
                return Err(Error::DeviceMissing(format!("no target device {target}")));
            }
            hit
        }
        // libvirt's virDomainNetFindIdx (MAC, PCI address, user alias), with its
        // messages; interfaces keep their order in the definition's XML.
        "interface" => {
            let want = netdev::parse_device(dev.document().input_text(), false)?;
            let def = Definition::parse(def_xml)?;
            let i = netdev::find(def.interfaces(), &want, false)?;
            vec![candidates.get(i).ok_or_else(|| {
                Error::Internal(format!("interface {i} not found in the definition XML"))
            })?]
        }
        // Anything else: the device whose attributes and children include all the
        // request gives (placement aside).
        tag => {
            let hit: Vec<_> = candidates.iter().filter(|c| contains(**c, dev)).collect();
            if hit.is_empty() {
                return Err(Error::DeviceMissing(format!(
                    "matching {tag} device was not found in the domain configuration"
                )));
            }
            hit
        }
    };
    let r = found[0].range();
    Ok(format!("{}{}", &def_xml[..r.start], &def_xml[r.end..]))
}

fn parse(xml: &str) -> Result<roxmltree::Document<'_>> {
    roxmltree::Document::parse(xml).map_err(|e| Error::Internal(format!("definition XML: {e}")))
}

fn devices_of<'a, 'i>(doc: &'a roxmltree::Document<'i>) -> Option<roxmltree::Node<'a, 'i>> {
    doc.root_element()
        .children()
        .find(|n| n.has_tag_name("devices"))
}

fn child_attr<'a>(n: roxmltree::Node<'a, '_>, child: &str, attr: &str) -> Option<&'a str> {
    n.children()
        .find(|c| c.has_tag_name(child))
        .and_then(|c| c.attribute(attr))
}

fn target_dev<'a>(n: roxmltree::Node<'a, '_>) -> Option<&'a str> {
    child_attr(n, "target", "dev")
}

/// Whether `have` carries every attribute and child element of `want`, recursively,
/// leaving out the placement children (`<address>`, `<alias>`).
fn contains(have: roxmltree::Node, want: roxmltree::Node) -> bool {
    if have.tag_name().name() != want.tag_name().name() {
        return false;
    }
    if want
        .attributes()
        .any(|a| have.attribute(a.name()) != Some(a.value()))
    {
        return false;
    }
    let want_text = want.text().map(str::trim).unwrap_or_default();
    if !want_text.is_empty() && have.text().map(str::trim) != Some(want_text) {
        return false;
    }
    want.children()
        .filter(|c| c.is_element() && !PLACEMENT.contains(&c.tag_name().name()))
        .all(|wc| {
            have.children()
                .any(|hc| hc.is_element() && contains(hc, wc))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEF: &str = "<domain type='kvm'><name>a</name><memory>65536</memory><os><type>hvm</type></os><devices>\n\
        <disk type='file' device='disk'><source file='/a.img'/><target dev='vda' bus='virtio'/><address type='pci' slot='0x04'/></disk>\n\
        <interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/></interface>\n\
        <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>\n\
        </devices></domain>";

    fn dev(xml: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(xml).unwrap()
    }

    #[test]
    fn attach_appends_and_refuses_a_taken_target() {
        let x = "<disk type='file' device='disk'><source file='/b.img'/><target dev='vdb' bus='virtio'/></disk>";
        let out = attach_to(DEF, x, dev(x).root_element()).unwrap();
        assert!(
            out.contains("<target dev='vdb' bus='virtio'/></disk>\n</devices>"),
            "{out}"
        );
        let dup = "<disk type='file'><source file='/c.img'/><target dev='vda'/></disk>";
        assert_eq!(
            attach_to(DEF, dup, dev(dup).root_element())
                .unwrap_err()
                .to_string(),
            "Requested operation is not valid: target vda already exists"
        );
        let empty = "<domain><name>a</name><devices/></domain>";
        let out = attach_to(empty, x, dev(x).root_element()).unwrap();
        assert!(out.contains("<devices><disk"), "{out}");
    }

    #[test]
    fn detach_matches_like_libvirt() {
        let d = "<disk type='file' device='disk'><source file='/x'/><target dev='vda'/></disk>";
        let out = detach_from(DEF, dev(d).root_element()).unwrap();
        assert!(!out.contains("vda") && out.contains("<interface"), "{out}");
        let i = "<interface type='network'><mac address='52:54:00:00:00:01'/></interface>";
        assert!(!detach_from(DEF, dev(i).root_element())
            .unwrap()
            .contains("<interface"));
        let r = "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>";
        assert!(!detach_from(DEF, dev(r).root_element())
            .unwrap()
            .contains("<rng"));
        let missing = "<disk type='file'><target dev='vdz'/></disk>";
        assert_eq!(
            detach_from(DEF, dev(missing).root_element())
                .unwrap_err()
                .to_string(),
            "device not found: no target device vdz"
        );
        let other_mac = "<interface type='network'><mac address='52:54:00:00:00:09'/></interface>";
        assert_eq!(
            detach_from(DEF, dev(other_mac).root_element())
                .unwrap_err()
                .to_string(),
            "device not found: no device found at address '(<null>)' matching MAC address \
             '52:54:00:00:00:09' and alias '(<null>)'"
        );
        let other_rng = "<rng model='virtio'><backend model='random'>/dev/random</backend></rng>";
        assert!(detach_from(DEF, dev(other_rng).root_element()).is_err());
    }
}

//! libvirt domain XML for oxvirt: a typed model ([`Domain`]), parsing with libvirt's
//! post-parse defaults ([`Domain::parse`]), libvirt's canonical formatting
//! ([`Domain::to_xml`]), and the one translation to the VMM's input
//! ([`translate`], [`spec_from_xml`]).
//!
//! ```text
//! XML ──parse──▶ Domain (defaults filled) ──translate──▶ MachineSpec
//!  ▲                  │
//!  └─────to_xml───────┘   (virsh dumpxml form; live or inactive)
//! ```
//!
//! Policies (libvirt's, unless said otherwise):
//! * **Unknown content is dropped.** Elements and attributes libvirt does not know are
//!   ignored on parse and absent on format, as libvirt does without
//!   `VIR_DOMAIN_DEFINE_VALIDATE`. [`unknown_content`] lists what was dropped
//!   (`oxvirt-xml validate` prints it as warnings). `<metadata>` children (one per
//!   namespace) are kept verbatim.
//! * **Known content is never dropped.** Elements libvirt knows but this crate does not
//!   interpret (`<graphics>`, `<hostdev>`, `<iotune>`, `<seclabel>`, …) are kept verbatim
//!   so they round-trip; [`translate`] rejects them by name. See README.md for the table
//!   of accepted, no-effect and rejected elements.
//! * **Limits.** Documents over [`MAX_DOCUMENT_BYTES`] (10 MiB) or 200 000 nodes are
//!   refused before any model is built; DTDs (and so entity expansion) are refused.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cpuset;
mod defaults;
pub mod element;
mod error;
pub mod firmware;
mod format;
// Model fields are named after the XML element or attribute they hold (libvirt's
// formatdomain documentation describes each); only the non-obvious ones carry docs.
mod comfort;
#[allow(missing_docs)]
pub mod model;
mod parse;
mod pci;
mod translate;
mod translate_ata;
mod translate_devices;
mod translate_disk_queues;
pub mod translate_firmware;
mod translate_graphics;
mod translate_hyperv;
mod translate_input;
mod translate_net_driver;
mod translate_seclabel;
pub mod translate_tpm;
mod translate_user_net;
mod translate_video;
pub mod tuning;
mod units;
mod xmlenum;

pub use defaults::disk_name_index;
pub use element::Element;
pub use error::{
    Error, Result, VIR_ERR_CONFIG_UNSUPPORTED, VIR_ERR_INVALID_ARG, VIR_ERR_XML_DETAIL,
    VIR_ERR_XML_ERROR,
};
pub use model::*;
pub use parse::{MAX_DOCUMENT_BYTES, QEMU_NS};
pub use translate::{translate, MAX_VCPUS, VSOCK_UDS_PATH};
pub use units::{parse_kib, unit_scale};
pub use xmlenum::XmlEnum;

impl Domain {
    /// Parses a domain XML document and fills libvirt's post-parse defaults (uuid, MACs,
    /// currentMemory, implicit controllers, serial↔console pairing, PCI addresses,
    /// aliases).
    pub fn parse(xml: &str) -> Result<Domain> {
        let mut dom = parse::parse_domain(xml)?;
        defaults::apply(&mut dom)?;
        Ok(dom)
    }

    /// Formats the domain as `virsh dumpxml` prints it. The live form (`inactive =
    /// false`) includes `id='N'` (when set), device aliases, pty paths and generated tap
    /// names; the inactive form leaves them out.
    pub fn to_xml(&self, inactive: bool) -> String {
        format::format(self, inactive)
    }

    /// This domain without its live-only state (what parsing the inactive XML gives).
    pub fn inactive_copy(&self) -> Domain {
        let mut d = self.clone();
        d.id = None;
        let devs = &mut d.devices;
        for c in devs
            .serials
            .iter_mut()
            .chain(devs.consoles.iter_mut())
            .chain(devs.channels.iter_mut())
            .chain(devs.parallels.iter_mut())
        {
            c.tty = None;
            c.target.state = None;
            if c.char_type == CharType::Pty {
                c.sources.clear();
            }
        }
        for disk in &mut devs.disks {
            if let Some(s) = &mut disk.source {
                s.attrs.retain(|(k, _)| k != "index");
            }
        }
        for n in &mut devs.interfaces {
            if n.interface_type == InterfaceType::Network {
                if let Some(s) = &mut n.source {
                    s.attrs
                        .retain(|(k, _)| !format::LIVE_NETWORK_SOURCE_ATTRS.contains(&k.as_str()));
                }
            }
            if n.target_dev.as_deref().is_some_and(|t| {
                ["vnet", "vif", "macvtap", "macvlan"]
                    .iter()
                    .any(|p| t.starts_with(p))
            }) {
                n.target_dev = None;
            }
        }
        d
    }
}

/// Parses and translates in one step: what `oxvirt-vmm --xml` and the daemon call.
pub fn spec_from_xml(xml: &str) -> Result<machine_spec::MachineSpec> {
    translate(&Domain::parse(xml)?)
}

/// Elements and attributes of `xml` that libvirt's model (and so this one) does not
/// know, as `/domain/devices/disk/@foo`-style paths; they are dropped on parse.
pub fn unknown_content(xml: &str) -> Result<Vec<String>> {
    let dom = Domain::parse(xml)?;
    let input = parse::document(xml)?;
    let output_text = dom.to_xml(false);
    let output = parse::document(&output_text)?;
    let known = paths(&output);
    let mut unknown: Vec<String> = paths(&input)
        .into_iter()
        .filter(|p| !known.contains(p))
        .collect();
    // Known content libvirt itself normalizes away, so it is missing from the output.
    let normalized: Vec<String> = input
        .descendants()
        .filter(|n| is_pathless_unix_source(*n))
        .map(node_path)
        .collect();
    unknown.retain(|p| {
        !normalized
            .iter()
            .any(|n| p == n || p.starts_with(&format!("{n}/")))
    });
    // Report only the outermost unknown element, not everything under it.
    unknown.sort();
    let mut out: Vec<String> = Vec::new();
    for p in unknown {
        if !out.iter().any(|o| p.starts_with(&format!("{o}/"))) {
            out.push(p);
        }
    }
    Ok(out)
}

/// `<source mode='bind'/>` of a unix character device (what virt-install writes for
/// the guest agent channel): libvirt picks the path at start and does not write the
/// element back, so it is known content even though the formatted XML lacks it.
fn is_pathless_unix_source(n: roxmltree::Node<'_, '_>) -> bool {
    n.is_element()
        && n.tag_name().name() == "source"
        && n.attribute("path").is_none()
        && n.parent().is_some_and(|p| {
            matches!(
                p.tag_name().name(),
                "serial" | "console" | "channel" | "parallel"
            ) && p.attribute("type") == Some("unix")
        })
}

/// `/domain/devices/channel/source`-style path of an element.
fn node_path(n: roxmltree::Node<'_, '_>) -> String {
    let mut parts: Vec<&str> = n
        .ancestors()
        .filter(|a| a.is_element())
        .map(|a| a.tag_name().name())
        .collect();
    parts.reverse();
    format!("/{}", parts.join("/"))
}

fn paths(doc: &roxmltree::Document<'_>) -> std::collections::BTreeSet<String> {
    let mut set = std::collections::BTreeSet::new();
    for n in doc.descendants().filter(|n| n.is_element()) {
        // Verbatim metadata content is kept as-is; nothing under it is "unknown".
        if n.ancestors().any(|a| {
            a.is_element()
                && a.tag_name().name() == "metadata"
                && a.parent().is_some_and(|p| p.tag_name().name() == "domain")
        }) {
            continue;
        }
        let path = node_path(n);
        for a in n.attributes() {
            set.insert(format!("{path}/@{}", a.name()));
        }
        set.insert(path);
    }
    set
}

//! A domain definition as the core keeps it: the typed libvirt model from
//! `domain-xml`, with the few reads and edits the core needs (name, memory,
//! metadata) and the translation to the VMM's `MachineSpec`.

use domain_xml::{Domain, Element, Interface};
use machine_spec::MachineSpec;
use uuid::Uuid;

use super::flags::metadata;
use super::{Error, Result};

/// One parsed, validated domain definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    dom: Domain,
    uuid: Uuid,
}

impl Definition {
    /// Parses and validates libvirt domain XML (a missing UUID is generated).
    pub fn parse(xml: &str) -> Result<Definition> {
        let dom = Domain::parse(xml)?;
        Self::from_domain(dom)
    }

    fn from_domain(dom: Domain) -> Result<Definition> {
        let uuid = Uuid::parse_str(&dom.uuid)
            .map_err(|_| Error::Xml(format!("malformed uuid element '{}'", dom.uuid)))?;
        if dom.name.contains('/') {
            return Err(Error::Xml(format!("name {} cannot contain '/'", dom.name)));
        }
        Ok(Definition { dom, uuid })
    }

    pub fn name(&self) -> &str {
        &self.dom.name
    }

    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// libvirt's canonical XML; `inactive` leaves out live-only parts.
    pub fn to_xml(&self, inactive: bool) -> String {
        self.dom.to_xml(inactive)
    }

    /// The `<graphics>` devices.
    pub fn graphics(&self) -> &[domain_xml::GenericDevice] {
        &self.dom.devices.graphics
    }

    /// The `<cpu>` (live XML rewrites it at start: `cpu::live_cpu`).
    pub fn cpu_mut(&mut self) -> &mut Option<domain_xml::Cpu> {
        &mut self.dom.cpu
    }

    /// The `<graphics>` devices, to edit (their live form).
    pub fn graphics_mut(&mut self) -> &mut Vec<domain_xml::GenericDevice> {
        &mut self.dom.devices.graphics
    }

    /// The live XML of a running domain, carrying its id.
    pub fn to_live_xml(&self, id: i32) -> String {
        let mut dom = self.dom.clone();
        dom.id = u32::try_from(id).ok();
        dom.to_xml(false)
    }

    /// What the VMM runs; fails with libvirt's error for what it cannot run.
    pub fn translate(&self) -> Result<MachineSpec> {
        if super::netresolve::unresolved(&self.dom.devices.interfaces) {
            // Networks are resolved to bridges at start (`netresolve`); before that,
            // check everything else with a stand-in bridge.
            let mut def = self.clone();
            super::netresolve::stand_in_bridges(&mut def.dom.devices.interfaces);
            return def.translate();
        }
        if self
            .dom
            .devices
            .disks
            .iter()
            .any(|d| d.disk_type == domain_xml::DiskType::Volume)
        {
            // Volume disks are resolved to files at start (`volresolve`); before that,
            // check everything else with the volume standing in as a file.
            let mut dom = self.dom.clone();
            super::volresolve::stand_in_volumes(&mut dom.devices.disks);
            return Ok(domain_xml::translate(&dom)?);
        }
        Ok(domain_xml::translate(&self.dom)?)
    }

    /// `<memory>` in KiB.
    pub fn max_memory_kib(&self) -> u64 {
        self.dom.memory
    }

    /// `<currentMemory>` in KiB.
    pub fn memory_kib(&self) -> u64 {
        self.dom.current_memory
    }

    pub fn vcpus(&self) -> u32 {
        self.dom.vcpu.online()
    }

    pub fn max_vcpus(&self) -> u32 {
        self.dom.vcpu.max
    }

    /// Sets the vCPUs online at boot (`<vcpu current>`, dropped when it is the maximum).
    pub fn set_vcpus(&mut self, n: u32) -> Result<()> {
        let max = self.dom.vcpu.max;
        if n == 0 || n > max {
            return Err(Error::InvalidArg(format!(
                "requested vcpus is greater than max allowable vcpus for the persistent domain: {n} > {max}"
            )));
        }
        self.dom.vcpu.current = (n != max).then_some(n);
        Ok(())
    }

    /// Sets the maximum vCPU count (`<vcpu>` text); the current count follows it down.
    pub fn set_max_vcpus(&mut self, n: u32) -> Result<()> {
        let online = self.dom.vcpu.online().min(n);
        self.dom.vcpu.max = n;
        self.dom.vcpu.current = (online != n).then_some(online);
        Ok(())
    }

    pub fn os_type(&self) -> String {
        self.dom.os.os_type.clone()
    }

    /// The `<interface>` devices, in document order.
    pub fn interfaces(&self) -> &[Interface] {
        &self.dom.devices.interfaces
    }

    /// The `<channel>` devices, in document order.
    pub fn channels(&self) -> &[domain_xml::Chardev] {
        &self.dom.devices.channels
    }

    /// The `<channel>` devices, to edit (their live form).
    pub fn channels_mut(&mut self) -> &mut Vec<domain_xml::Chardev> {
        &mut self.dom.devices.channels
    }

    /// Whether a `<channel>` for the QEMU guest agent (`org.qemu.guest_agent.0`) is
    /// configured.
    pub fn has_guest_agent_channel(&self) -> bool {
        self.dom
            .devices
            .channels
            .iter()
            .any(|c| c.target.name.as_deref() == Some("org.qemu.guest_agent.0"))
    }

    /// Whether the domain has a `<tpm>` (its state outlives the definition).
    pub fn has_tpm(&self) -> bool {
        !self.dom.devices.tpms.is_empty()
    }

    /// The `<disk>` devices, in document order.
    pub fn disks(&self) -> &[domain_xml::Disk] {
        &self.dom.devices.disks
    }

    /// The `<disk>` devices, to edit (volume disks resolved at start).
    pub fn disks_mut(&mut self) -> &mut [domain_xml::Disk] {
        &mut self.dom.devices.disks
    }

    /// Replaces interface number `index` (an index from [`Definition::interfaces`]).
    pub fn set_interface(&mut self, index: usize, iface: Interface) {
        self.dom.devices.interfaces[index] = iface;
    }

    /// The `<memtune>`/`<cputune>`/`<blkiotune>` values it sets.
    pub fn tuning(&self) -> Result<domain_xml::tuning::Tuning> {
        Ok(domain_xml::tuning::tuning(&self.dom)?)
    }

    /// Sets the tunables `t` sets (the others stay).
    pub fn set_tuning(&mut self, t: &domain_xml::tuning::Tuning) {
        domain_xml::tuning::set_tuning(&mut self.dom, t)
    }

    pub fn set_name(&mut self, name: &str) -> Result<()> {
        self.dom.name = name.to_string();
        Ok(())
    }

    pub fn set_memory_kib(&mut self, kib: u64) -> Result<()> {
        if kib > self.dom.memory {
            return Err(Error::InvalidArg(
                "cannot set memory higher than max memory".into(),
            ));
        }
        self.dom.current_memory = kib;
        Ok(())
    }

    pub fn set_max_memory_kib(&mut self, kib: u64) -> Result<()> {
        self.dom.memory = kib;
        self.dom.current_memory = self.dom.current_memory.min(kib);
        Ok(())
    }

    /// `virDomainGetMetadata`: description, title, or the `<metadata>` element in
    /// namespace `uri`.
    pub fn metadata(&self, kind: i32, uri: Option<&str>) -> Result<String> {
        let missing =
            || Error::NoDomainMetadata("Requested metadata element is not present".into());
        match kind {
            metadata::DESCRIPTION => self.dom.description.clone().ok_or_else(missing),
            metadata::TITLE => self.dom.title.clone().ok_or_else(missing),
            metadata::ELEMENT => {
                let uri = uri.ok_or_else(|| Error::InvalidArg("uri must not be NULL".into()))?;
                self.dom
                    .metadata
                    .iter()
                    .find(|e| element_namespace(e) == Some(uri))
                    .map(Element::to_xml_string)
                    .ok_or_else(missing)
            }
            other => Err(Error::InvalidArg(format!(
                "unknown metadata type '{other}'"
            ))),
        }
    }

    /// `virDomainSetMetadata`: `None` (or empty) removes.
    pub fn set_metadata(
        &mut self,
        kind: i32,
        value: Option<&str>,
        key: Option<&str>,
        uri: Option<&str>,
    ) -> Result<()> {
        let value = value.filter(|v| !v.is_empty()).map(str::to_string);
        match kind {
            metadata::DESCRIPTION => self.dom.description = value,
            metadata::TITLE => {
                if value.as_deref().is_some_and(|v| v.contains('\n')) {
                    return Err(Error::InvalidArg("title can't contain newlines".into()));
                }
                self.dom.title = value;
            }
            metadata::ELEMENT => {
                let uri = uri.ok_or_else(|| Error::InvalidArg("uri must not be NULL".into()))?;
                self.dom
                    .metadata
                    .retain(|e| element_namespace(e) != Some(uri));
                if let Some(text) = value {
                    let key =
                        key.ok_or_else(|| Error::InvalidArg("key must not be NULL".into()))?;
                    self.dom.metadata.push(namespaced_element(&text, key, uri)?);
                }
            }
            other => {
                return Err(Error::InvalidArg(format!(
                    "unknown metadata type '{other}'"
                )))
            }
        }
        Ok(())
    }
}

/// The namespace URI an element's own prefix (or default namespace) is bound to.
fn element_namespace(e: &Element) -> Option<&str> {
    let decl = match e.name.split_once(':') {
        Some((prefix, _)) => format!("xmlns:{prefix}"),
        None => "xmlns".to_string(),
    };
    e.get_attr(&decl)
}

/// Parses a metadata snippet and puts its root in namespace `uri` with prefix `key`.
fn namespaced_element(text: &str, key: &str, uri: &str) -> Result<Element> {
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| Error::Xml(format!("failed to parse metadata: {e}")))?;
    let mut el = Element::from_node(doc.root_element())?;
    let local = el.name.rsplit(':').next().unwrap_or_default().to_string();
    el.name = format!("{key}:{local}");
    el.attrs
        .retain(|(n, _)| n != "xmlns" && !n.starts_with("xmlns:"));
    el.attrs
        .insert(0, (format!("xmlns:{key}"), uri.to_string()));
    Ok(el)
}

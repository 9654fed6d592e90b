//! A domain definition as the core keeps it.
//!
//! TEMPORARY stand-in until `domain-xml` exports `Domain::parse`, `to_xml` and
//! `translate`: reads the few fields the core needs with roxmltree, keeps the XML
//! text, and refuses to translate. The real adapter replaces this file.

use machine_spec::MachineSpec;
use uuid::Uuid;

use super::flags::metadata;
use super::{Error, Result};

/// One parsed domain definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    xml: String,
    name: String,
    uuid: Uuid,
    memory: u64,
    current: u64,
    vcpus: u32,
    os_type: String,
    title: Option<String>,
    description: Option<String>,
}

impl Definition {
    pub fn parse(xml: &str) -> Result<Definition> {
        let doc = roxmltree::Document::parse(xml).map_err(|e| Error::Xml(e.to_string()))?;
        let root = doc.root_element();
        let text = |n: &str| {
            root.children()
                .find(|c| c.has_tag_name(n))
                .and_then(|c| c.text())
                .map(|t| t.trim().to_string())
        };
        let name = text("name").ok_or_else(|| Error::Xml("missing name".into()))?;
        let uuid = match text("uuid") {
            Some(u) => Uuid::parse_str(&u).map_err(|_| Error::Xml("malformed uuid".into()))?,
            None => Uuid::new_v4(),
        };
        let memory: u64 = text("memory").and_then(|m| m.parse().ok()).unwrap_or(0);
        Ok(Definition {
            xml: xml.to_string(),
            name,
            uuid,
            memory,
            current: text("currentMemory")
                .and_then(|m| m.parse().ok())
                .unwrap_or(memory),
            vcpus: text("vcpu").and_then(|m| m.parse().ok()).unwrap_or(1),
            os_type: "hvm".into(),
            title: text("title"),
            description: text("description"),
        })
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }
    pub fn to_xml(&self, _inactive: bool) -> String {
        self.xml.clone()
    }
    pub fn to_live_xml(&self, _id: i32) -> String {
        self.xml.clone()
    }
    pub fn translate(&self) -> Result<MachineSpec> {
        Err(Error::ConfigUnsupported(
            "domain translation is not available yet".into(),
        ))
    }
    pub fn max_memory_kib(&self) -> u64 {
        self.memory
    }
    pub fn memory_kib(&self) -> u64 {
        self.current
    }
    pub fn vcpus(&self) -> u32 {
        self.vcpus
    }
    pub fn max_vcpus(&self) -> u32 {
        self.vcpus
    }
    pub fn os_type(&self) -> String {
        self.os_type.clone()
    }
    pub fn set_name(&mut self, name: &str) -> Result<()> {
        self.name = name.to_string();
        Ok(())
    }
    pub fn set_memory_kib(&mut self, kib: u64) -> Result<()> {
        self.current = kib;
        Ok(())
    }
    pub fn set_max_memory_kib(&mut self, kib: u64) -> Result<()> {
        self.memory = kib;
        Ok(())
    }
    pub fn metadata(&self, kind: i32, _uri: Option<&str>) -> Result<String> {
        let missing =
            || Error::NoDomainMetadata("Requested metadata element is not present".into());
        match kind {
            metadata::DESCRIPTION => self.description.clone().ok_or_else(missing),
            metadata::TITLE => self.title.clone().ok_or_else(missing),
            _ => Err(missing()),
        }
    }
    pub fn set_metadata(
        &mut self,
        kind: i32,
        value: Option<&str>,
        _key: Option<&str>,
        _uri: Option<&str>,
    ) -> Result<()> {
        match kind {
            metadata::DESCRIPTION => self.description = value.map(str::to_string),
            metadata::TITLE => self.title = value.map(str::to_string),
            _ => return Err(Error::NoSupport("virDomainSetMetadata".into())),
        }
        Ok(())
    }
}

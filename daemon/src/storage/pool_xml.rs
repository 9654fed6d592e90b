//! libvirt storage pool XML (`<pool type='dir'>` and `<pool type='logical'>`): parse
//! what clients send (`virsh pool-define-as`, virt-install, virt-manager, Cockpit) and
//! format what `pool-dumpxml` prints, in libvirt 9.0's layout. Only `dir` and `logical`
//! pools run here; the other types are refused where libvirt refuses a type whose
//! backend is missing.

use std::fmt::Write;
use std::path::PathBuf;

use uuid::Uuid;

use super::error::{Error, Result};
use super::xmlutil::{child, child_text, escape};

/// libvirt's pool types in `virStoragePoolType` order (the number is in its errors).
pub(super) const POOL_TYPES: &[&str] = &[
    "dir",
    "fs",
    "netfs",
    "logical",
    "disk",
    "iscsi",
    "iscsi-direct",
    "scsi",
    "mpath",
    "rbd",
    "sheepdog",
    "gluster",
    "zfs",
    "vstorage",
];

/// libvirt's answer for a pool type whose backend this build lacks.
pub(super) fn missing_backend(kind: &str) -> Error {
    match POOL_TYPES.iter().position(|t| *t == kind) {
        Some(index) => Error::Internal(format!("missing backend for pool type {index} ({kind})")),
        None => Error::Internal(format!("unknown storage pool type {kind}")),
    }
}

/// `<permissions>` of a pool target or a volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Perms {
    pub mode: Option<u32>,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub label: Option<String>,
}

impl Perms {
    /// Parses `<permissions>` (mode in octal, owner/group numeric, as libvirt).
    pub fn parse(node: roxmltree::Node<'_, '_>) -> Result<Perms> {
        let num = |name: &str, radix: u32| -> Result<Option<u32>> {
            match child_text(node, name) {
                None => Ok(None),
                Some(t) => u32::from_str_radix(t.trim(), radix).map(Some).or_else(|_| {
                    if radix == 10 && t.trim() == "-1" {
                        Ok(None)
                    } else {
                        Err(Error::Xml(format!("malformed {name} element")))
                    }
                }),
            }
        };
        let mode = num("mode", 8)?;
        if mode.is_some_and(|m| m > 0o777) {
            return Err(Error::Xml("malformed octal mode".into()));
        }
        Ok(Perms {
            mode,
            owner: num("owner", 10)?,
            group: num("group", 10)?,
            label: child_text(node, "label").map(str::to_string),
        })
    }

    /// `<permissions>` with every value known (mode, owner, group of a file).
    pub fn format(&self, out: &mut String, indent: &str) {
        let _ = writeln!(out, "{indent}<permissions>");
        if let Some(m) = self.mode {
            let _ = writeln!(out, "{indent}  <mode>{m:04o}</mode>");
        }
        if let Some(o) = self.owner {
            let _ = writeln!(out, "{indent}  <owner>{o}</owner>");
        }
        if let Some(g) = self.group {
            let _ = writeln!(out, "{indent}  <group>{g}</group>");
        }
        if let Some(l) = &self.label {
            let _ = writeln!(out, "{indent}  <label>{}</label>", escape(l));
        }
        let _ = writeln!(out, "{indent}</permissions>");
    }
}

/// A pool definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDef {
    pub name: String,
    pub uuid: Uuid,
    /// The directory that holds the volumes (no trailing `/`); a logical pool's is
    /// always `/dev/VG`, as libvirt makes it.
    pub path: PathBuf,
    pub perms: Perms,
    pub kind: PoolKind,
}

/// The pool type and what only that type has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolKind {
    Dir,
    Logical(LogicalSource),
}

/// A logical pool's `<source>`: its LVM volume group and physical volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalSource {
    /// The volume group (`<source><name>`, by default the pool's name).
    pub vg: String,
    /// `<device path>`: the physical volumes pool-build initialises.
    pub devices: Vec<String>,
    /// `<format type>`: `lvm2` (libvirt's default) or `unknown`.
    pub format: LvmFormat,
}

/// `virStoragePoolFormatLogical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LvmFormat {
    Unknown,
    Lvm2,
}

impl LvmFormat {
    /// Every value, in libvirt's order (pool capabilities list them so).
    pub const ALL: [LvmFormat; 2] = [LvmFormat::Unknown, LvmFormat::Lvm2];

    pub fn as_str(self) -> &'static str {
        match self {
            LvmFormat::Unknown => "unknown",
            LvmFormat::Lvm2 => "lvm2",
        }
    }
}

impl PoolKind {
    /// libvirt's name of the type (`<pool type>`).
    pub fn as_str(&self) -> &'static str {
        match self {
            PoolKind::Dir => "dir",
            PoolKind::Logical(_) => "logical",
        }
    }
}

/// Sizes of a pool's file system (statvfs), in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSizes {
    pub capacity: u64,
    pub allocation: u64,
    pub available: u64,
}

impl PoolDef {
    /// Parses pool XML; a missing UUID is generated.
    pub fn parse(xml: &str) -> Result<PoolDef> {
        let doc = roxmltree::Document::parse(xml)
            .map_err(|e| Error::Xml(format!("(storage_pool_definition):{}: {e}", e.pos().row)))?;
        let root = doc.root_element();
        if root.tag_name().name() != "pool" {
            return Err(Error::Xml(format!(
                "unexpected root element <{}>, expecting <pool>",
                root.tag_name().name()
            )));
        }
        let kind = root
            .attribute("type")
            .ok_or_else(|| Error::Xml("storage pool missing type attribute".into()))?;
        if !POOL_TYPES.contains(&kind) {
            return Err(Error::Xml(format!("unknown storage pool type {kind}")));
        }
        if kind != "dir" && kind != "logical" {
            // What libvirtd says for a pool type its build lacks.
            return Err(missing_backend(kind));
        }
        let source = child(root, "source");
        let source_name = source
            .and_then(|s| child_text(s, "name"))
            .map(str::trim)
            .filter(|n| !n.is_empty());
        // A logical pool without <name> is named after its volume group (libvirt's
        // SOURCE_NAME rule).
        let name = child_text(root, "name")
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .or(source_name.filter(|_| kind == "logical"))
            .ok_or_else(|| Error::Xml("missing pool source name element".into()))?
            .to_string();
        if name.contains('/') {
            return Err(Error::Xml(format!("name {name} cannot contain '/'")));
        }
        let uuid = match child_text(root, "uuid") {
            None => Uuid::new_v4(),
            Some(u) => Uuid::parse_str(u.trim())
                .map_err(|_| Error::Xml("malformed uuid element".into()))?,
        };
        let target = child(root, "target");
        let (path, kind) = if kind == "logical" {
            let src = parse_logical_source(source, source_name.unwrap_or(&name))?;
            // libvirt ignores a given target path: a volume group lives at /dev/VG.
            (
                sanitize(&format!("/dev/{}", src.vg)),
                PoolKind::Logical(src),
            )
        } else {
            let path = target
                .and_then(|t| child_text(t, "path"))
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .ok_or_else(|| Error::Xml("missing storage pool target path".into()))?;
            if !path.starts_with('/') {
                return Err(Error::Xml(format!(
                    "storage pool target path '{path}' must be absolute"
                )));
            }
            (sanitize(path), PoolKind::Dir)
        };
        let perms = match target.and_then(|t| child(t, "permissions")) {
            Some(p) => Perms::parse(p)?,
            None => Perms::default(),
        };
        Ok(PoolDef {
            name,
            uuid,
            path,
            perms,
            kind,
        })
    }

    /// The logical pool's source (`None` for a dir pool).
    pub fn logical(&self) -> Option<&LogicalSource> {
        match &self.kind {
            PoolKind::Logical(s) => Some(s),
            PoolKind::Dir => None,
        }
    }

    /// libvirt's `pool-dumpxml` layout; `sizes` is `None` for an inactive pool (zeros).
    pub fn format(&self, sizes: Option<PoolSizes>, actual: Option<&Perms>) -> String {
        let s = sizes.unwrap_or_default();
        let mut out = String::new();
        let _ = writeln!(out, "<pool type='{}'>", self.kind.as_str());
        let _ = writeln!(out, "  <name>{}</name>", escape(&self.name));
        let _ = writeln!(out, "  <uuid>{}</uuid>", self.uuid);
        let _ = writeln!(out, "  <capacity unit='bytes'>{}</capacity>", s.capacity);
        let _ = writeln!(
            out,
            "  <allocation unit='bytes'>{}</allocation>",
            s.allocation
        );
        let _ = writeln!(out, "  <available unit='bytes'>{}</available>", s.available);
        let _ = writeln!(out, "  <source>");
        if let PoolKind::Logical(src) = &self.kind {
            for d in &src.devices {
                let _ = writeln!(out, "    <device path='{}'/>", escape(d));
            }
            let _ = writeln!(out, "    <name>{}</name>", escape(&src.vg));
            let _ = writeln!(out, "    <format type='{}'/>", src.format.as_str());
        }
        let _ = writeln!(out, "  </source>");
        let _ = writeln!(out, "  <target>");
        let _ = writeln!(
            out,
            "    <path>{}</path>",
            escape(&self.path.to_string_lossy())
        );
        let perms = actual.unwrap_or(&self.perms);
        if perms.mode.is_some() || perms.owner.is_some() || perms.group.is_some() {
            perms.format(&mut out, "    ");
        }
        let _ = writeln!(out, "  </target>");
        out.push_str("</pool>\n");
        out
    }
}

/// A logical pool's `<source>`: devices, volume group (default `default_vg`, the pool's
/// name) and format, checked as libvirt checks them.
fn parse_logical_source(
    source: Option<roxmltree::Node<'_, '_>>,
    default_vg: &str,
) -> Result<LogicalSource> {
    let vg = default_vg.to_string();
    // The LVM tools get these as arguments: a leading '-' would read as an option.
    if vg.starts_with('-') {
        return Err(Error::Xml(format!("invalid volume group name '{vg}'")));
    }
    let mut devices = Vec::new();
    let mut format = LvmFormat::Lvm2;
    if let Some(source) = source {
        for d in source
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == "device")
        {
            let path = d
                .attribute("path")
                .ok_or_else(|| Error::Xml("missing storage pool source device path".into()))?;
            if path.starts_with('-') {
                return Err(Error::Xml(format!("invalid source device path '{path}'")));
            }
            devices.push(path.to_string());
        }
        if let Some(t) = child(source, "format").and_then(|f| f.attribute("type")) {
            format = LvmFormat::ALL
                .into_iter()
                .find(|f| f.as_str() == t)
                .ok_or_else(|| Error::ConfigUnsupported(format!("unknown pool format type {t}")))?;
        }
    }
    Ok(LogicalSource {
        vg,
        devices,
        format,
    })
}

/// libvirt's `virFileSanitizePath`: collapse `//`, drop a trailing `/`.
fn sanitize(path: &str) -> PathBuf {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    while out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    PathBuf::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virsh_pool_define_as_xml_parses() {
        let p = PoolDef::parse(
            "<pool type='dir'><name>p1</name><target><path>/srv//x/</path></target></pool>",
        )
        .unwrap();
        assert_eq!(p.name, "p1");
        assert_eq!(p.path, PathBuf::from("/srv/x"));
    }

    #[test]
    fn round_trip_keeps_name_uuid_path_and_mode() {
        let xml = "<pool type='dir'><name>a</name><uuid>e4679589-6b6f-4b3a-9a7b-ffa3a5c6a6e1</uuid>\
                   <target><path>/a</path><permissions><mode>0711</mode></permissions></target></pool>";
        let p = PoolDef::parse(xml).unwrap();
        let again = PoolDef::parse(&p.format(None, None)).unwrap();
        assert_eq!(p, again);
        assert!(p.format(None, None).contains("<mode>0711</mode>"));
    }

    #[test]
    fn other_pool_types_are_refused_as_libvirt_does() {
        let e =
            PoolDef::parse("<pool type='fs'><name>a</name><target><path>/a</path></target></pool>")
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "internal error: missing backend for pool type 1 (fs)"
        );
        let e = PoolDef::parse("<pool type='netfs'><name>a</name></pool>").unwrap_err();
        assert_eq!(
            e.to_string(),
            "internal error: missing backend for pool type 2 (netfs)"
        );
        let e = PoolDef::parse("<pool type='bogus'><name>a</name></pool>").unwrap_err();
        assert_eq!(e.to_string(), "XML error: unknown storage pool type bogus");
        let e = PoolDef::parse("<pool type='dir'><name>a</name></pool>").unwrap_err();
        assert_eq!(e.to_string(), "XML error: missing storage pool target path");
    }

    #[test]
    fn virsh_logical_pool_define_as_xml_parses_and_formats_as_libvirt() {
        // virsh pool-define-as lv logical --source-dev /dev/loop3 --source-name vg0
        //   --target /dev/vg0
        let xml = "<pool type='logical'><name>lv</name><source><device path='/dev/loop3'/>\
                   <name>vg0</name></source><target><path>/dev/vg0</path></target></pool>";
        let p = PoolDef::parse(xml).unwrap();
        assert_eq!(p.name, "lv");
        assert_eq!(p.path, PathBuf::from("/dev/vg0"));
        let src = p.logical().unwrap();
        assert_eq!(src.vg, "vg0");
        assert_eq!(src.devices, ["/dev/loop3"]);
        assert_eq!(src.format, LvmFormat::Lvm2);
        let out = p.format(None, None);
        assert!(
            out.starts_with("<pool type='logical'>\n  <name>lv</name>\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "  <source>\n    <device path='/dev/loop3'/>\n    <name>vg0</name>\n    \
                 <format type='lvm2'/>\n  </source>\n  <target>\n    <path>/dev/vg0</path>\n  </target>\n"
            ),
            "{out}"
        );
        assert_eq!(PoolDef::parse(&out).unwrap(), p);
    }

    #[test]
    fn logical_pool_defaults_follow_libvirt() {
        // No source name: the volume group is the pool's name; the target path is
        // always /dev/VG, whatever was given.
        let p = PoolDef::parse(
            "<pool type='logical'><name>data</name><target><path>/srv/x</path></target></pool>",
        )
        .unwrap();
        assert_eq!(p.logical().unwrap().vg, "data");
        assert_eq!(p.path, PathBuf::from("/dev/data"));
        assert!(p.logical().unwrap().devices.is_empty());
        // No pool name: the volume group's.
        let p = PoolDef::parse(
            "<pool type='logical'><source><name>vgx</name><format type='unknown'/></source></pool>",
        )
        .unwrap();
        assert_eq!(p.name, "vgx");
        assert_eq!(p.logical().unwrap().format, LvmFormat::Unknown);
        assert_eq!(p.kind.as_str(), "logical");
        // A dir pool has no logical source.
        let d = PoolDef::parse(
            "<pool type='dir'><name>a</name><target><path>/a</path></target></pool>",
        )
        .unwrap();
        assert!(d.logical().is_none());
        assert!(d.format(None, None).contains("<source>\n  </source>"));
    }

    #[test]
    fn bad_logical_pools_get_libvirt_errors() {
        let e = PoolDef::parse(
            "<pool type='logical'><name>a</name><source><format type='ext4'/></source></pool>",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported configuration: unknown pool format type ext4"
        );
        let e =
            PoolDef::parse("<pool type='logical'><name>a</name><source><device/></source></pool>")
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "XML error: missing storage pool source device path"
        );
        let e = PoolDef::parse("<pool type='logical'><source/></pool>").unwrap_err();
        assert_eq!(e.to_string(), "XML error: missing pool source name element");
        let e = PoolDef::parse("<pool type='logical'><name>-x</name></pool>").unwrap_err();
        assert_eq!(e.to_string(), "XML error: invalid volume group name '-x'");
        assert_eq!(
            missing_backend("disk").to_string(),
            "internal error: missing backend for pool type 4 (disk)"
        );
    }
}

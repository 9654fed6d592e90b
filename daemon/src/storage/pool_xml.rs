//! libvirt storage pool XML (`<pool type='dir'>`): parse what clients send
//! (`virsh pool-define-as`, virt-install, virt-manager, Cockpit) and format what
//! `pool-dumpxml` prints, in libvirt 9.0's layout. Only `dir` pools run here; the other
//! types parse, and are refused where libvirt refuses a type whose backend is missing.

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

/// virConnectFindStoragePoolSources: source discovery for pool type `kind`. The `dir`
/// backend (the one that runs here) has no discovery, as in libvirt; every other type's
/// backend is missing from this build, so the answer is libvirtd's for a missing backend
/// (what a libvirt host without that storage driver module answers).
pub fn find_pool_sources(kind: &str, flags: u32) -> Result<String> {
    Error::check_flags(flags, 0, "virConnectFindStoragePoolSources")?;
    let Some(index) = POOL_TYPES.iter().position(|t| *t == kind) else {
        return Err(Error::Internal(format!("unknown storage pool type {kind}")));
    };
    if kind == "dir" {
        return Err(Error::NoSupport(format!(
            "pool type '{kind}' does not support source discovery"
        )));
    }
    Err(Error::Internal(format!(
        "missing backend for pool type {index} ({kind})"
    )))
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
    /// The directory that holds the volumes (no trailing `/`).
    pub path: PathBuf,
    pub perms: Perms,
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
        let Some(index) = POOL_TYPES.iter().position(|t| *t == kind) else {
            return Err(Error::Xml(format!("unknown storage pool type {kind}")));
        };
        if kind != "dir" {
            // What libvirtd says for a pool type its build lacks.
            return Err(Error::Internal(format!(
                "missing backend for pool type {index} ({kind})"
            )));
        }
        let name = child_text(root, "name")
            .map(str::trim)
            .filter(|n| !n.is_empty())
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
        let path = sanitize(path);
        let perms = match target.and_then(|t| child(t, "permissions")) {
            Some(p) => Perms::parse(p)?,
            None => Perms::default(),
        };
        Ok(PoolDef {
            name,
            uuid,
            path,
            perms,
        })
    }

    /// libvirt's `pool-dumpxml` layout; `sizes` is `None` for an inactive pool (zeros).
    pub fn format(&self, sizes: Option<PoolSizes>, actual: Option<&Perms>) -> String {
        let s = sizes.unwrap_or_default();
        let mut out = String::new();
        let _ = writeln!(out, "<pool type='dir'>");
        let _ = writeln!(out, "  <name>{}</name>", escape(&self.name));
        let _ = writeln!(out, "  <uuid>{}</uuid>", self.uuid);
        let _ = writeln!(out, "  <capacity unit='bytes'>{}</capacity>", s.capacity);
        let _ = writeln!(
            out,
            "  <allocation unit='bytes'>{}</allocation>",
            s.allocation
        );
        let _ = writeln!(out, "  <available unit='bytes'>{}</available>", s.available);
        let _ = writeln!(out, "  <source>\n  </source>");
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
        let e = find_pool_sources("logical", 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "internal error: missing backend for pool type 3 (logical)"
        );
        let e = find_pool_sources("dir", 0).unwrap_err();
        assert_eq!(e.code(), super::super::error::code::NO_SUPPORT);
        assert!(e
            .to_string()
            .ends_with("pool type 'dir' does not support source discovery"));
        let e = find_pool_sources("bogus", 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "internal error: unknown storage pool type bogus"
        );
        assert!(find_pool_sources("dir", 1)
            .unwrap_err()
            .to_string()
            .contains("unsupported flags"));
        let e = PoolDef::parse("<pool type='bogus'><name>a</name></pool>").unwrap_err();
        assert_eq!(e.to_string(), "XML error: unknown storage pool type bogus");
        let e = PoolDef::parse("<pool type='dir'><name>a</name></pool>").unwrap_err();
        assert_eq!(e.to_string(), "XML error: missing storage pool target path");
    }
}

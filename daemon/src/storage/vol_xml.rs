//! libvirt storage volume XML: the request clients send to create a volume
//! (`vol-create-as`, virt-install, Cockpit) and the description `vol-dumpxml`
//! prints (libvirt 9.0's layout, checked against `storagevol.rng`).

use std::fmt::Write;
use std::path::PathBuf;

use super::error::{Error, Result};
pub use super::lvm::Extent;
use super::pool_xml::Perms;
use super::xmlutil::{child, child_text, escape};

/// Image formats of volumes in a directory pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolFormat {
    Raw,
    Qcow2,
    Iso,
    /// A subdirectory (`type='dir'` volume).
    Dir,
}

impl VolFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            VolFormat::Raw => "raw",
            VolFormat::Qcow2 => "qcow2",
            VolFormat::Iso => "iso",
            VolFormat::Dir => "dir",
        }
    }
}

/// libvirt's file formats (`virStorageFileFormat`): accepted names, of which only
/// raw and qcow2 can be created here.
const KNOWN_FORMATS: &[&str] = &[
    "none", "raw", "dir", "bochs", "cloop", "dmg", "iso", "vpc", "vdi", "fat", "vhd", "ploop",
    "cow", "qcow", "qcow2", "qed", "vmdk",
];

/// Parses a `<format type>` value.
fn parse_format(t: &str) -> Result<VolFormat> {
    match t {
        "raw" | "none" => Ok(VolFormat::Raw),
        "qcow2" => Ok(VolFormat::Qcow2),
        "iso" => Ok(VolFormat::Iso),
        "dir" => Ok(VolFormat::Dir),
        t if KNOWN_FORMATS.contains(&t) => Err(Error::OperationUnsupported(format!(
            "storage volume format '{t}' is not supported (raw, qcow2)"
        ))),
        t => Err(Error::Internal(format!("unknown volume format type {t}"))),
    }
}

/// What a client asks for when it creates a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolRequest {
    pub name: String,
    /// Bytes; `None` only with a backing store (the capacity is then the backing image's).
    pub capacity: Option<u64>,
    /// Bytes to allocate up front; `None` means sparse.
    pub allocation: Option<u64>,
    pub format: VolFormat,
    pub perms: Perms,
    /// `<backingStore>`: path and format.
    pub backing: Option<(PathBuf, Option<VolFormat>)>,
}

/// libvirt's `virScaleInteger` on a `<capacity>`/`<allocation>` element (unit
/// default: bytes).
fn scaled(node: roxmltree::Node<'_, '_>, what: &str) -> Result<u64> {
    let text = node.text().unwrap_or("").trim();
    let value: u64 = text
        .parse()
        .map_err(|_| Error::Xml(format!("malformed {what} element")))?;
    let unit = node.attribute("unit").unwrap_or("bytes");
    let scale =
        domain_xml::unit_scale(unit).ok_or_else(|| Error::UnknownSuffix(unit.to_string()))?;
    value
        .checked_mul(scale)
        .filter(|b| *b <= i64::MAX as u64)
        .ok_or_else(|| Error::Xml(format!("malformed {what} element")))
}

impl VolRequest {
    pub fn parse(xml: &str) -> Result<VolRequest> {
        let doc = roxmltree::Document::parse(xml)
            .map_err(|e| Error::Xml(format!("(storage_volume_definition):{}: {e}", e.pos().row)))?;
        let root = doc.root_element();
        if root.tag_name().name() != "volume" {
            return Err(Error::Xml(format!(
                "unexpected root element <{}>, expecting <volume>",
                root.tag_name().name()
            )));
        }
        let name = child_text(root, "name")
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::Xml("missing volume name element".into()))?
            .to_string();
        if name.contains('/') {
            return Err(Error::OperationInvalid(format!(
                "volume name '{name}' cannot contain '/'"
            )));
        }
        if name == "." || name == ".." {
            return Err(Error::Xml(format!("volume name '{name}' is not allowed")));
        }
        let backing = match child(root, "backingStore") {
            None => None,
            Some(b) => {
                let path = child_text(b, "path")
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| Error::Xml("missing path element in backingStore".into()))?;
                let format = child(b, "format")
                    .and_then(|f| f.attribute("type"))
                    .map(parse_format)
                    .transpose()?;
                Some((PathBuf::from(path), format))
            }
        };
        let capacity = match child(root, "capacity") {
            Some(c) => Some(scaled(c, "capacity")?),
            None if backing.is_some() => None,
            None => return Err(Error::Xml("missing capacity element".into())),
        };
        let allocation = child(root, "allocation")
            .map(|a| scaled(a, "allocation"))
            .transpose()?;
        let target = child(root, "target");
        let format = match target
            .and_then(|t| child(t, "format"))
            .and_then(|f| f.attribute("type"))
        {
            Some(t) => parse_format(t)?,
            None => VolFormat::Raw,
        };
        let perms = match target.and_then(|t| child(t, "permissions")) {
            Some(p) => Perms::parse(p)?,
            None => Perms::default(),
        };
        Ok(VolRequest {
            name,
            capacity,
            allocation,
            format,
            perms,
            backing,
        })
    }
}

/// A volume as found on disk (what `vol-dumpxml` and `vol-info` show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolInfo {
    pub name: String,
    pub path: PathBuf,
    pub format: VolFormat,
    /// Guest-visible size in bytes (a qcow2 image's virtual size).
    pub capacity: u64,
    /// Bytes the file occupies on disk (`st_blocks` × 512).
    pub allocation: u64,
    /// The file's length.
    pub physical: u64,
    pub perms: Perms,
    /// atime, mtime, ctime as `(seconds, nanoseconds)`.
    pub times: [(i64, i64); 3],
    /// qcow2: backing file and its format.
    pub backing: Option<(String, Option<VolFormat>)>,
    /// qcow2: `0.10` (version 2) or `1.1` (version 3).
    pub compat: Option<&'static str>,
    /// A block device volume (a logical pool's LV); `None` for files and directories.
    pub block: Option<BlockVol>,
}

/// What a block volume has beyond a file: its key and where its data lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockVol {
    /// The LV's UUID (libvirt's key for logical volumes).
    pub key: String,
    pub extents: Vec<Extent>,
    /// A thin snapshot made with `--virtualsize`: writing it all would overflow it.
    pub sparse: bool,
}

impl VolInfo {
    /// libvirt's `virStorageVolType`: 0 file, 1 block, 2 dir.
    pub fn vol_type(&self) -> i32 {
        if self.format == VolFormat::Dir {
            2
        } else if self.block.is_some() {
            1
        } else {
            0
        }
    }

    /// libvirt's `vol-dumpxml` layout.
    pub fn format_xml(&self) -> String {
        let path = escape(&self.path.to_string_lossy());
        let mut out = String::new();
        let kind = match self.vol_type() {
            2 => "dir",
            1 => "block",
            _ => "file",
        };
        let _ = writeln!(out, "<volume type='{kind}'>");
        let _ = writeln!(out, "  <name>{}</name>", escape(&self.name));
        match &self.block {
            Some(b) => {
                let _ = writeln!(out, "  <key>{}</key>", escape(&b.key));
                format_extents(&mut out, &b.extents);
            }
            None => {
                let _ = writeln!(out, "  <key>{path}</key>");
            }
        }
        let _ = writeln!(out, "  <capacity unit='bytes'>{}</capacity>", self.capacity);
        let _ = writeln!(
            out,
            "  <allocation unit='bytes'>{}</allocation>",
            self.allocation
        );
        let _ = writeln!(out, "  <physical unit='bytes'>{}</physical>", self.physical);
        let _ = writeln!(out, "  <target>");
        let _ = writeln!(out, "    <path>{path}</path>");
        // A logical pool has no volume formats: libvirt prints none for its volumes.
        if self.block.is_none() {
            let _ = writeln!(out, "    <format type='{}'/>", self.format.as_str());
        }
        self.perms.format(&mut out, "    ");
        let _ = writeln!(out, "    <timestamps>");
        for (name, (s, ns)) in ["atime", "mtime", "ctime"].iter().zip(self.times) {
            let _ = writeln!(out, "      <{name}>{s}.{ns:09}</{name}>");
        }
        let _ = writeln!(out, "    </timestamps>");
        if let Some(c) = self.compat {
            let _ = writeln!(out, "    <compat>{c}</compat>");
        }
        let _ = writeln!(out, "  </target>");
        if let Some((b, f)) = &self.backing {
            let _ = writeln!(out, "  <backingStore>");
            let _ = writeln!(out, "    <path>{}</path>", escape(b));
            let _ = writeln!(
                out,
                "    <format type='{}'/>",
                f.map_or("raw", VolFormat::as_str)
            );
            let _ = writeln!(out, "  </backingStore>");
        }
        out.push_str("</volume>\n");
        out
    }
}

/// libvirt's `<source>` of a volume with extents: one `<device>` per run of extents
/// on the same physical volume.
fn format_extents(out: &mut String, extents: &[Extent]) {
    out.push_str("  <source>\n");
    let mut current: Option<&str> = None;
    for e in extents {
        if current != Some(e.device.as_str()) {
            if current.is_some() {
                out.push_str("    </device>\n");
            }
            let _ = writeln!(out, "    <device path='{}'>", escape(&e.device));
            current = Some(&e.device);
        }
        let _ = writeln!(out, "      <extent start='{}' end='{}'/>", e.start, e.end);
    }
    if current.is_some() {
        out.push_str("    </device>\n");
    }
    out.push_str("  </source>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virt_install_request_parses() {
        // Captured from virt-install 4.1 (research §3.1).
        let r = VolRequest::parse(
            "<volume><name>vm.qcow2</name><capacity>10737418240</capacity><allocation>0</allocation>\
             <target><format type=\"qcow2\"/><features><lazy_refcounts/></features></target></volume>",
        )
        .unwrap();
        assert_eq!(r.name, "vm.qcow2");
        assert_eq!(r.capacity, Some(10 << 30));
        assert_eq!(r.allocation, Some(0));
        assert_eq!(r.format, VolFormat::Qcow2);
    }

    #[test]
    fn cockpit_units_scale() {
        let r = VolRequest::parse(
            "<volume type='file'><name>c</name><capacity unit='MiB'>3</capacity><target><format type='qcow2'/></target></volume>",
        )
        .unwrap();
        assert_eq!(r.capacity, Some(3 << 20));
    }

    #[test]
    fn bad_requests_get_libvirt_errors() {
        let e = VolRequest::parse("<volume><name>a/b</name><capacity>1</capacity></volume>")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Requested operation is not valid: volume name 'a/b' cannot contain '/'"
        );
        let e = VolRequest::parse("<volume><name>a</name><capacity>1x</capacity></volume>")
            .unwrap_err();
        assert_eq!(e.to_string(), "XML error: malformed capacity element");
        let e =
            VolRequest::parse("<volume><name>a</name><capacity unit='zz'>1</capacity></volume>")
                .unwrap_err();
        assert_eq!(e.to_string(), "invalid argument: unknown suffix 'zz'");
        let e = VolRequest::parse("<volume><name>a</name></volume>").unwrap_err();
        assert_eq!(e.to_string(), "XML error: missing capacity element");
    }

    #[test]
    fn block_volumes_format_as_libvirt_logical_volumes() {
        let info = VolInfo {
            name: "v1".into(),
            path: PathBuf::from("/dev/vg/v1"),
            format: VolFormat::Raw,
            capacity: 8 << 20,
            allocation: 8 << 20,
            physical: 8 << 20,
            perms: Perms {
                mode: Some(0o600),
                owner: Some(0),
                group: Some(6),
                label: None,
            },
            times: [(1, 2), (3, 4), (5, 6)],
            backing: None,
            compat: None,
            block: Some(BlockVol {
                key: "abcd-ef".into(),
                extents: vec![
                    Extent {
                        device: "/dev/loop0".into(),
                        start: 0,
                        end: 4 << 20,
                    },
                    Extent {
                        device: "/dev/loop0".into(),
                        start: 8 << 20,
                        end: 12 << 20,
                    },
                    Extent {
                        device: "/dev/loop1".into(),
                        start: 0,
                        end: 1,
                    },
                ],
                sparse: false,
            }),
        };
        assert_eq!(info.vol_type(), 1);
        let x = info.format_xml();
        assert!(x.starts_with(
            "<volume type='block'>\n  <name>v1</name>\n  <key>abcd-ef</key>\n  <source>\n    \
             <device path='/dev/loop0'>\n      <extent start='0' end='4194304'/>\n      \
             <extent start='8388608' end='12582912'/>\n    </device>\n    \
             <device path='/dev/loop1'>\n      <extent start='0' end='1'/>\n    </device>\n  </source>\n  \
             <capacity unit='bytes'>8388608</capacity>\n"
        ), "{x}");
        assert!(
            x.contains("<target>\n    <path>/dev/vg/v1</path>\n    <permissions>"),
            "{x}"
        );
        assert!(!x.contains("<format"), "{x}");
        roxmltree::Document::parse(&x).unwrap();
    }
}

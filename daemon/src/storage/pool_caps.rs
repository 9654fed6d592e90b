//! `virConnectGetStoragePoolCapabilities` (`virsh pool-capabilities`): every pool
//! type libvirt knows, `supported='yes'` only for those this driver runs (dir, and
//! logical where the LVM tools are installed), in the shape of libvirt's
//! `virStoragePoolCapsFormat`. Cockpit's Create storage pool dialog offers only the
//! supported types.

use super::lvm;
use super::pool_xml::{LvmFormat, POOL_TYPES};

/// The volume formats a dir pool creates (`vol_xml::parse_format`; `none` is raw).
const DIR_VOLUME_FORMATS: &[&str] = &["none", "raw", "dir", "iso", "qcow2"];

pub fn capabilities_xml() -> String {
    format_caps(lvm::installed())
}

/// The document, with the logical type supported or not.
fn format_caps(logical: bool) -> String {
    let mut x = String::from("<storagepoolCapabilities>\n");
    for t in POOL_TYPES {
        match *t {
            "dir" => {
                x.push_str("  <pool type='dir' supported='yes'>\n");
                x.push_str("    <volOptions>\n      <defaultFormat type='raw'/>\n");
                x.push_str("      <enum name='targetFormatType'>\n");
                for f in DIR_VOLUME_FORMATS {
                    x.push_str(&format!("        <value>{f}</value>\n"));
                }
                x.push_str("      </enum>\n    </volOptions>\n  </pool>\n");
            }
            // Source formats only: libvirt defines no volume formats for LVs.
            "logical" if logical => {
                x.push_str("  <pool type='logical' supported='yes'>\n");
                x.push_str("    <poolOptions>\n      <defaultFormat type='lvm2'/>\n");
                x.push_str("      <enum name='sourceFormatType'>\n");
                for f in LvmFormat::ALL {
                    x.push_str(&format!("        <value>{}</value>\n", f.as_str()));
                }
                x.push_str("      </enum>\n    </poolOptions>\n  </pool>\n");
            }
            _ => x.push_str(&format!("  <pool type='{t}' supported='no'>\n  </pool>\n")),
        }
    }
    x.push_str("</storagepoolCapabilities>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_is_supported_and_every_type_is_listed() {
        let x = format_caps(false);
        assert!(x.contains("<pool type='dir' supported='yes'>"));
        assert!(x.contains("<pool type='logical' supported='no'>"));
        assert_eq!(x.matches("supported='yes'").count(), 1);
        assert_eq!(x.matches("<pool ").count(), POOL_TYPES.len());
        assert!(x.contains("<value>qcow2</value>"));
        roxmltree::Document::parse(&x).unwrap();
    }

    #[test]
    fn logical_is_supported_with_the_lvm_tools() {
        let x = format_caps(true);
        assert!(
            x.contains(
                "  <pool type='logical' supported='yes'>\n    <poolOptions>\n      \
             <defaultFormat type='lvm2'/>\n      <enum name='sourceFormatType'>\n        \
             <value>unknown</value>\n        <value>lvm2</value>\n      </enum>\n    \
             </poolOptions>\n  </pool>\n"
            ),
            "{x}"
        );
        assert_eq!(x.matches("supported='yes'").count(), 2);
        assert_eq!(x.matches("<pool ").count(), POOL_TYPES.len());
        roxmltree::Document::parse(&x).unwrap();
        assert_eq!(capabilities_xml(), format_caps(lvm::installed()));
    }
}

//! `virConnectGetStoragePoolCapabilities` (`virsh pool-capabilities`): every pool
//! type libvirt knows, `supported='yes'` only for those this driver runs (dir), in
//! the shape of libvirt's `virStoragePoolCapsFormat`. Cockpit's Create storage pool
//! dialog offers only the supported types.

use super::pool_xml::POOL_TYPES;

/// The volume formats a dir pool creates (`vol_xml::parse_format`; `none` is raw).
const DIR_VOLUME_FORMATS: &[&str] = &["none", "raw", "dir", "iso", "qcow2"];

pub fn capabilities_xml() -> String {
    let mut x = String::from("<storagepoolCapabilities>\n");
    for t in POOL_TYPES {
        if *t != "dir" {
            x.push_str(&format!("  <pool type='{t}' supported='no'>\n  </pool>\n"));
            continue;
        }
        x.push_str(&format!("  <pool type='{t}' supported='yes'>\n"));
        x.push_str("    <volOptions>\n      <defaultFormat type='raw'/>\n");
        x.push_str("      <enum name='targetFormatType'>\n");
        for f in DIR_VOLUME_FORMATS {
            x.push_str(&format!("        <value>{f}</value>\n"));
        }
        x.push_str("      </enum>\n    </volOptions>\n  </pool>\n");
    }
    x.push_str("</storagepoolCapabilities>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dir_is_supported_and_every_type_is_listed() {
        let x = capabilities_xml();
        assert!(x.contains("<pool type='dir' supported='yes'>"));
        assert!(x.contains("<pool type='logical' supported='no'>"));
        assert_eq!(x.matches("supported='yes'").count(), 1);
        assert_eq!(x.matches("<pool ").count(), POOL_TYPES.len());
        assert!(x.contains("<value>qcow2</value>"));
    }
}

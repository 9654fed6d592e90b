//! Object paths of domains, `<connect path>/domain/_<uuid with '-' as '_'>`, and of
//! domain snapshots, `<connect path>/domainsnapshot/_<uuid with '_'>_<encoded name>`:
//! libvirt-dbus's schemes (src/util.c), so clients that build or take apart paths
//! the way libvirt-dbus does keep working.

use uuid::Uuid;

/// The object path of domain `uuid` under the connect object `base`.
pub fn domain_path(base: &str, uuid: &Uuid) -> String {
    format!(
        "{base}/domain/_{}",
        uuid.hyphenated().to_string().replace('-', "_")
    )
}

/// The UUID named by a domain object path, if it is one.
pub fn path_uuid(base: &str, path: &str) -> Option<Uuid> {
    let rest = path.strip_prefix(base)?.strip_prefix("/domain/_")?;
    Uuid::parse_str(&rest.replace('_', "-")).ok()
}

/// The folder of every snapshot object: libvirt-dbus's `domainSnapshotPath`.
pub fn snapshot_base(base: &str) -> String {
    format!("{base}/domainsnapshot")
}

/// The object path of snapshot `name` of domain `uuid`
/// (`virtDBusUtilBusPathForVirDomainSnapshot`): the domain's encoded UUID, '_', and
/// the name with every byte but ASCII letters and digits as `_` and two lowercase
/// hex digits.
pub fn snapshot_path(base: &str, uuid: &Uuid, name: &str) -> String {
    format!(
        "{}/_{}_{}",
        snapshot_base(base),
        uuid.hyphenated().to_string().replace('-', "_"),
        super::storage_pool::encode_key(name)
    )
}

/// The domain UUID and snapshot name a snapshot object path names, if it is one
/// (the inverse of [`snapshot_path`]; a `_` must start a two-digit hex escape).
pub fn snapshot_path_parse(base: &str, path: &str) -> Option<(Uuid, String)> {
    let rest = path.strip_prefix(base)?.strip_prefix("/domainsnapshot/_")?;
    // A hyphenated UUID is 36 characters; '_' separates it from the name.
    let (uuid, name) = (rest.get(..36)?, rest.get(36..)?.strip_prefix('_')?);
    let uuid = Uuid::parse_str(&uuid.replace('_', "-")).ok()?;
    let mut bytes = Vec::with_capacity(name.len());
    let mut it = name.bytes();
    while let Some(b) = it.next() {
        if b == b'_' {
            let hex = [it.next()?, it.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
        } else if b.is_ascii_alphanumeric() {
            bytes.push(b);
        } else {
            return None;
        }
    }
    Some((uuid, String::from_utf8(bytes).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_matches_libvirt_dbus_and_round_trips() {
        let u = Uuid::parse_str("6a888e3b-2249-45da-a9c2-c6731e2ebde4").unwrap();
        let p = domain_path("/org/libvirt/QEMU", &u);
        assert_eq!(
            p,
            "/org/libvirt/QEMU/domain/_6a888e3b_2249_45da_a9c2_c6731e2ebde4"
        );
        assert_eq!(path_uuid("/org/libvirt/QEMU", &p), Some(u));
        assert_eq!(
            path_uuid("/org/libvirt/QEMU", "/org/libvirt/QEMU/domain/x"),
            None
        );
    }

    #[test]
    fn snapshot_path_matches_libvirt_dbus_and_round_trips() {
        let base = "/org/libvirt/QEMU";
        let u = Uuid::parse_str("6a888e3b-2249-45da-a9c2-c6731e2ebde4").unwrap();
        assert_eq!(snapshot_base(base), "/org/libvirt/QEMU/domainsnapshot");
        let p = snapshot_path(base, &u, "s1");
        assert_eq!(
            p,
            "/org/libvirt/QEMU/domainsnapshot/_6a888e3b_2249_45da_a9c2_c6731e2ebde4_s1"
        );
        assert_eq!(snapshot_path_parse(base, &p), Some((u, "s1".to_string())));
        // Everything but letters and digits is escaped byte by byte, UTF-8 included.
        let odd = "before-upgrade 1.2_é";
        let p = snapshot_path(base, &u, odd);
        assert!(p.ends_with("_before_2dupgrade_201_2e2_5f_c3_a9"), "{p}");
        assert!(zbus::ObjectPath::try_from(p.as_str()).is_ok());
        assert_eq!(snapshot_path_parse(base, &p), Some((u, odd.to_string())));
        for bad in [
            "/org/libvirt/QEMU/domain/_6a888e3b_2249_45da_a9c2_c6731e2ebde4",
            "/org/libvirt/QEMU/domainsnapshot/_6a888e3b_2249_45da_a9c2_c6731e2ebde4",
            "/org/libvirt/QEMU/domainsnapshot/_6a888e3b_2249_45da_a9c2_c6731e2ebde4_s_2",
            "/org/libvirt/QEMU/domainsnapshot/_6a888e3b_2249_45da_a9c2_c6731e2ebde4_s_zz",
            "/org/libvirt/QEMU/domainsnapshot/_nonsense",
        ] {
            assert_eq!(snapshot_path_parse(base, bad), None, "{bad}");
        }
    }
}

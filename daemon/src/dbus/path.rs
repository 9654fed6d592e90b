//! Object paths of domains: `<connect path>/domain/_<uuid with '-' as '_'>`,
//! libvirt-dbus's scheme.

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
}

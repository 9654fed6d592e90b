//! Domain snapshots on the libvirt protocol, as oxvirt has them today: none are ever
//! made. Creating one answers libvirt's "not supported" (a driver without the API);
//! every list is empty; naming a snapshot answers libvirt's "Domain snapshot not
//! found" (`VIR_ERR_NO_DOMAIN_SNAPSHOT`), after the domain itself is looked up as the
//! QEMU driver does. DOMAIN_SNAPSHOT_NUM and LIST_ALL_SNAPSHOTS are in `domain.rs`.

use uuid::Uuid;

use super::conn::Conn;
use super::dispatch::{args, ret, CallResult};
use super::domain::vir;
use super::error::{code, from, VirError};
use super::packet::Header;
use super::proto::{DomainFlagsArgs, IntValue, NonnullDomain, StringListRet};
use super::xdr::xdr_struct;

/// Procedure numbers (libvirt's `remote_procedure`).
mod proc_ {
    pub const CREATE_XML: i32 = 185;
    pub const GET_XML_DESC: i32 = 186;
    pub const LIST_NAMES: i32 = 188;
    pub const LOOKUP_BY_NAME: i32 = 189;
    pub const HAS_CURRENT: i32 = 190;
    pub const CURRENT: i32 = 191;
    pub const REVERT: i32 = 192;
    pub const DELETE: i32 = 193;
}
use proc_::*;

/// `REMOTE_DOMAIN_SNAPSHOT_LIST_MAX`.
const LIST_MAX: i32 = 16384;
/// `VIR_ERR_NO_DOMAIN_SNAPSHOT`.
const NO_DOMAIN_SNAPSHOT: i32 = 72;

xdr_struct! {
    /// `remote_nonnull_domain_snapshot`.
    pub struct NonnullSnapshot { pub name: String, pub dom: NonnullDomain }
}
xdr_struct! {
    /// DOMAIN_SNAPSHOT_CREATE_XML args.
    pub struct CreateArgs { pub dom: NonnullDomain, pub xml_desc: String, pub flags: u32 }
}
xdr_struct! {
    /// GET_XML_DESC, REVERT_TO_SNAPSHOT and SNAPSHOT_DELETE args.
    pub struct SnapshotFlagsArgs { pub snap: NonnullSnapshot, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_SNAPSHOT_LIST_NAMES args.
    pub struct ListNamesArgs { pub dom: NonnullDomain, pub maxnames: i32, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_SNAPSHOT_LOOKUP_BY_NAME args.
    pub struct LookupArgs { pub dom: NonnullDomain, pub name: String, pub flags: u32 }
}

pub fn handles(p: i32) -> bool {
    (CREATE_XML..=DELETE).contains(&p) && p != 187
}

/// Reading is allowed on a read-only connection; creating, reverting and deleting not.
pub fn read_only_safe(p: i32) -> bool {
    handles(p) && !matches!(p, CREATE_XML | REVERT | DELETE)
}

fn not_found(what: String) -> VirError {
    VirError::new(
        NO_DOMAIN_SNAPSHOT,
        from::QEMU,
        format!("Domain snapshot not found: {what}"),
    )
}

fn no_snapshot_named(name: &str) -> VirError {
    not_found(format!("no domain snapshot with matching name '{name}'"))
}

pub async fn call(conn: &mut Conn, h: &Header, payload: &[u8]) -> CallResult {
    let core = conn.shared.core.clone();
    let p = h.proc_;
    let domain = |d: &NonnullDomain| core.lookup_by_uuid(&Uuid::from_bytes(d.uuid)).map_err(vir);
    match p {
        CREATE_XML => {
            let _: CreateArgs = args(p, payload)?;
            Err(VirError::no_support("virDomainSnapshotCreateXML"))
        }
        LIST_NAMES => {
            let a: ListNamesArgs = args(p, payload)?;
            if a.maxnames > LIST_MAX {
                return Err(VirError::new(
                    code::RPC,
                    from::RPC,
                    "maxnames > REMOTE_DOMAIN_SNAPSHOT_LIST_MAX",
                ));
            }
            domain(&a.dom)?;
            ret(StringListRet { names: Vec::new() })
        }
        LOOKUP_BY_NAME => {
            let a: LookupArgs = args(p, payload)?;
            domain(&a.dom)?;
            Err(no_snapshot_named(&a.name))
        }
        HAS_CURRENT => {
            let a: DomainFlagsArgs = args(p, payload)?;
            domain(&a.dom)?;
            ret(IntValue { value: 0 })
        }
        CURRENT => {
            let a: DomainFlagsArgs = args(p, payload)?;
            domain(&a.dom)?;
            Err(not_found(
                "the domain does not have a current snapshot".into(),
            ))
        }
        GET_XML_DESC | REVERT | DELETE => {
            let a: SnapshotFlagsArgs = args(p, payload)?;
            domain(&a.snap.dom)?;
            Err(no_snapshot_named(&a.snap.name))
        }
        _ => Err(VirError::unknown_procedure(h.prog, p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_the_snapshot_procedures_but_num() {
        assert!((185..=193).filter(|p| *p != 187).all(handles));
        assert!(!handles(187) && !handles(184) && !handles(194));
        assert!(read_only_safe(LIST_NAMES) && !read_only_safe(CREATE_XML));
    }
}

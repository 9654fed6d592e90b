//! Domain snapshots on the libvirt protocol (`virsh snapshot-*`): decode, call the
//! core (`crate::core::Core::snapshot_*`), encode. A snapshot handle is its name
//! and its domain; the domain is looked up by UUID as everywhere else.

use uuid::Uuid;

use super::conn::Conn;
use super::dispatch::{args, ret, void, CallResult};
use super::domain::{vir, wire_domain};
use super::error::{code, from, VirError};
use super::packet::Header;
use super::proto::{
    DomainFlagsArgs, IntValue, ListSnapshotsArgs, NonnullDomain, StringListRet, StringValue,
};
use super::xdr::xdr_struct;

/// Procedure numbers (libvirt's `remote_procedure`).
mod proc_ {
    pub const CREATE_XML: i32 = 185;
    pub const GET_XML_DESC: i32 = 186;
    pub const NUM: i32 = 187;
    pub const LIST_NAMES: i32 = 188;
    pub const LOOKUP_BY_NAME: i32 = 189;
    pub const HAS_CURRENT: i32 = 190;
    pub const CURRENT: i32 = 191;
    pub const REVERT: i32 = 192;
    pub const DELETE: i32 = 193;
    pub const GET_PARENT: i32 = 244;
    pub const NUM_CHILDREN: i32 = 246;
    pub const LIST_CHILDREN_NAMES: i32 = 247;
    pub const IS_CURRENT: i32 = 271;
    pub const HAS_METADATA: i32 = 272;
    pub const LIST_ALL: i32 = 274;
    pub const LIST_ALL_CHILDREN: i32 = 275;
}
use proc_::*;

/// `REMOTE_DOMAIN_SNAPSHOT_LIST_MAX`.
const LIST_MAX: i32 = 16384;

xdr_struct! {
    /// `remote_nonnull_domain_snapshot`.
    pub struct NonnullSnapshot { pub name: String, pub dom: NonnullDomain }
}
xdr_struct! {
    /// DOMAIN_SNAPSHOT_CREATE_XML args.
    pub struct CreateArgs { pub dom: NonnullDomain, pub xml_desc: String, pub flags: u32 }
}
xdr_struct! {
    /// `{ snap; flags }`: GET_XML_DESC, REVERT, DELETE, GET_PARENT, NUM_CHILDREN,
    /// IS_CURRENT, HAS_METADATA args.
    pub struct SnapshotFlagsArgs { pub snap: NonnullSnapshot, pub flags: u32 }
}
xdr_struct! {
    /// `{ snap }`: CREATE_XML, LOOKUP_BY_NAME, CURRENT, GET_PARENT ret.
    pub struct SnapshotRet { pub snap: NonnullSnapshot }
}
xdr_struct! {
    /// DOMAIN_SNAPSHOT_LIST_NAMES args.
    pub struct ListNamesArgs { pub dom: NonnullDomain, pub maxnames: i32, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_SNAPSHOT_LIST_CHILDREN_NAMES args.
    pub struct ListChildrenNamesArgs { pub snap: NonnullSnapshot, pub maxnames: i32, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_SNAPSHOT_LIST_ALL_CHILDREN args.
    pub struct ListAllChildrenArgs { pub snap: NonnullSnapshot, pub need_results: i32, pub flags: u32 }
}
xdr_struct! {
    /// LIST_ALL_SNAPSHOTS / LIST_ALL_CHILDREN ret.
    pub struct ListAllRet { pub snapshots: Vec<NonnullSnapshot>, pub ret: i32 }
}
xdr_struct! {
    /// DOMAIN_SNAPSHOT_LOOKUP_BY_NAME args.
    pub struct LookupArgs { pub dom: NonnullDomain, pub name: String, pub flags: u32 }
}

pub fn handles(p: i32) -> bool {
    (CREATE_XML..=DELETE).contains(&p)
        || matches!(
            p,
            GET_PARENT
                | NUM_CHILDREN
                | LIST_CHILDREN_NAMES
                | IS_CURRENT
                | HAS_METADATA
                | LIST_ALL
                | LIST_ALL_CHILDREN
        )
}

/// Reading is allowed on a read-only connection; creating, reverting and deleting not.
pub fn read_only_safe(p: i32) -> bool {
    handles(p) && !matches!(p, CREATE_XML | REVERT | DELETE)
}

fn too_many(what: &str) -> VirError {
    VirError::new(code::RPC, from::RPC, format!("maxnames > {what}"))
}

/// A LIST_ALL reply: the count, and the handles when the client wants them.
fn list_all(
    names: Vec<String>,
    need_results: i32,
    handle: impl Fn(String) -> Result<NonnullSnapshot, VirError>,
) -> CallResult {
    let n = names.len() as i32;
    let snapshots = if need_results != 0 {
        names.into_iter().map(handle).collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    ret(ListAllRet { snapshots, ret: n })
}

pub async fn call(conn: &mut Conn, h: &Header, payload: &[u8]) -> CallResult {
    let core = conn.shared.core.clone();
    let p = h.proc_;
    let uuid = |d: &NonnullDomain| Uuid::from_bytes(d.uuid);
    // The handle of snapshot `name` of the domain `d` names (fresh domain id).
    let handle = |d: &NonnullDomain, name: String| -> Result<NonnullSnapshot, VirError> {
        let dom = core.lookup_by_uuid(&uuid(d)).map_err(vir)?;
        Ok(NonnullSnapshot {
            name,
            dom: wire_domain(&dom),
        })
    };
    match p {
        CREATE_XML => {
            let a: CreateArgs = args(p, payload)?;
            let name = core
                .snapshot_create(&uuid(&a.dom), &a.xml_desc, a.flags)
                .await
                .map_err(vir)?;
            ret(SnapshotRet {
                snap: handle(&a.dom, name)?,
            })
        }
        GET_XML_DESC => {
            let a: SnapshotFlagsArgs = args(p, payload)?;
            ret(StringValue {
                value: core
                    .snapshot_xml(&uuid(&a.snap.dom), &a.snap.name, a.flags)
                    .map_err(vir)?,
            })
        }
        NUM => {
            let a: DomainFlagsArgs = args(p, payload)?;
            let n = core.snapshot_names(&uuid(&a.dom), a.flags).map_err(vir)?;
            ret(IntValue {
                value: n.len() as i32,
            })
        }
        LIST_NAMES => {
            let a: ListNamesArgs = args(p, payload)?;
            if a.maxnames > LIST_MAX {
                return Err(too_many("REMOTE_DOMAIN_SNAPSHOT_LIST_MAX"));
            }
            let mut names = core.snapshot_names(&uuid(&a.dom), a.flags).map_err(vir)?;
            names.truncate(a.maxnames.max(0) as usize);
            ret(StringListRet { names })
        }
        LIST_ALL => {
            let a: ListSnapshotsArgs = args(p, payload)?;
            let names = core.snapshot_names(&uuid(&a.dom), a.flags).map_err(vir)?;
            list_all(names, a.need_results, |n| handle(&a.dom, n))
        }
        LOOKUP_BY_NAME => {
            let a: LookupArgs = args(p, payload)?;
            core.snapshot_lookup(&uuid(&a.dom), &a.name).map_err(vir)?;
            ret(SnapshotRet {
                snap: handle(&a.dom, a.name)?,
            })
        }
        HAS_CURRENT => {
            let a: DomainFlagsArgs = args(p, payload)?;
            let cur = core.snapshot_current(&uuid(&a.dom)).map_err(vir)?;
            ret(IntValue {
                value: i32::from(cur.is_some()),
            })
        }
        CURRENT => {
            let a: DomainFlagsArgs = args(p, payload)?;
            let cur = core.snapshot_current(&uuid(&a.dom)).map_err(vir)?;
            let name = cur.ok_or_else(|| {
                vir(crate::core::Error::NoSnapshot(
                    "the domain does not have a current snapshot".into(),
                ))
            })?;
            ret(SnapshotRet {
                snap: handle(&a.dom, name)?,
            })
        }
        REVERT => {
            let a: SnapshotFlagsArgs = args(p, payload)?;
            core.snapshot_revert(&uuid(&a.snap.dom), &a.snap.name, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        DELETE => {
            let a: SnapshotFlagsArgs = args(p, payload)?;
            core.snapshot_delete(&uuid(&a.snap.dom), &a.snap.name, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        GET_PARENT => {
            let a: SnapshotFlagsArgs = args(p, payload)?;
            let parent = core
                .snapshot_parent(&uuid(&a.snap.dom), &a.snap.name)
                .map_err(vir)?;
            ret(SnapshotRet {
                snap: handle(&a.snap.dom, parent)?,
            })
        }
        NUM_CHILDREN => {
            let a: SnapshotFlagsArgs = args(p, payload)?;
            let n = core
                .snapshot_children(&uuid(&a.snap.dom), &a.snap.name, a.flags)
                .map_err(vir)?;
            ret(IntValue {
                value: n.len() as i32,
            })
        }
        LIST_CHILDREN_NAMES => {
            let a: ListChildrenNamesArgs = args(p, payload)?;
            if a.maxnames > LIST_MAX {
                return Err(too_many("REMOTE_DOMAIN_SNAPSHOT_LIST_MAX"));
            }
            let mut names = core
                .snapshot_children(&uuid(&a.snap.dom), &a.snap.name, a.flags)
                .map_err(vir)?;
            names.truncate(a.maxnames.max(0) as usize);
            ret(StringListRet { names })
        }
        LIST_ALL_CHILDREN => {
            let a: ListAllChildrenArgs = args(p, payload)?;
            let names = core
                .snapshot_children(&uuid(&a.snap.dom), &a.snap.name, a.flags)
                .map_err(vir)?;
            list_all(names, a.need_results, |n| handle(&a.snap.dom, n))
        }
        IS_CURRENT => {
            let a: SnapshotFlagsArgs = args(p, payload)?;
            let u = uuid(&a.snap.dom);
            core.snapshot_lookup(&u, &a.snap.name).map_err(vir)?;
            let cur = core.snapshot_current(&u).map_err(vir)?;
            ret(IntValue {
                value: i32::from(cur.as_deref() == Some(a.snap.name.as_str())),
            })
        }
        HAS_METADATA => {
            let a: SnapshotFlagsArgs = args(p, payload)?;
            core.snapshot_lookup(&uuid(&a.snap.dom), &a.snap.name)
                .map_err(vir)?;
            // Every snapshot oxvirt makes has its metadata.
            ret(IntValue { value: 1 })
        }
        _ => Err(VirError::unknown_procedure(h.prog, p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_the_snapshot_procedures() {
        assert!((185..=193).all(handles));
        assert!([244, 246, 247, 271, 272, 274, 275].into_iter().all(handles));
        assert!(!handles(184) && !handles(194) && !handles(245));
        assert!(read_only_safe(LIST_NAMES) && !read_only_safe(CREATE_XML));
        assert!(read_only_safe(LIST_ALL) && !read_only_safe(REVERT));
    }
}

//! Storage procedures of libvirt's REMOTE program (remote_protocol.x, libvirt 9.0):
//! numbers and argument/return structures.

use super::xdr::xdr_struct;

/// Procedure numbers.
pub mod proc_ {
    pub const CONNECT_NUM_OF_STORAGE_POOLS: i32 = 71;
    pub const CONNECT_LIST_STORAGE_POOLS: i32 = 72;
    pub const CONNECT_NUM_OF_DEFINED_STORAGE_POOLS: i32 = 73;
    pub const CONNECT_LIST_DEFINED_STORAGE_POOLS: i32 = 74;
    pub const CONNECT_FIND_STORAGE_POOL_SOURCES: i32 = 75;
    pub const POOL_CREATE_XML: i32 = 76;
    pub const POOL_DEFINE_XML: i32 = 77;
    pub const POOL_CREATE: i32 = 78;
    pub const POOL_BUILD: i32 = 79;
    pub const POOL_DESTROY: i32 = 80;
    pub const POOL_DELETE: i32 = 81;
    pub const POOL_UNDEFINE: i32 = 82;
    pub const POOL_REFRESH: i32 = 83;
    pub const POOL_LOOKUP_BY_NAME: i32 = 84;
    pub const POOL_LOOKUP_BY_UUID: i32 = 85;
    pub const POOL_LOOKUP_BY_VOLUME: i32 = 86;
    pub const POOL_GET_INFO: i32 = 87;
    pub const POOL_GET_XML_DESC: i32 = 88;
    pub const POOL_GET_AUTOSTART: i32 = 89;
    pub const POOL_SET_AUTOSTART: i32 = 90;
    pub const POOL_NUM_OF_VOLUMES: i32 = 91;
    pub const POOL_LIST_VOLUMES: i32 = 92;
    pub const VOL_CREATE_XML: i32 = 93;
    pub const VOL_DELETE: i32 = 94;
    pub const VOL_LOOKUP_BY_NAME: i32 = 95;
    pub const VOL_LOOKUP_BY_KEY: i32 = 96;
    pub const VOL_LOOKUP_BY_PATH: i32 = 97;
    pub const VOL_GET_INFO: i32 = 98;
    pub const VOL_GET_XML_DESC: i32 = 99;
    pub const VOL_GET_PATH: i32 = 100;
    pub const VOL_CREATE_XML_FROM: i32 = 125;
    pub const POOL_IS_ACTIVE: i32 = 154;
    pub const POOL_IS_PERSISTENT: i32 = 155;
    pub const VOL_WIPE: i32 = 165;
    pub const VOL_UPLOAD: i32 = 208;
    pub const VOL_DOWNLOAD: i32 = 209;
    pub const VOL_WIPE_PATTERN: i32 = 259;
    pub const VOL_RESIZE: i32 = 260;
    pub const CONNECT_LIST_ALL_STORAGE_POOLS: i32 = 281;
    pub const POOL_LIST_ALL_VOLUMES: i32 = 282;
    pub const CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY: i32 = 368;
    pub const CONNECT_STORAGE_POOL_EVENT_DEREGISTER_ANY: i32 = 369;
    pub const POOL_EVENT_LIFECYCLE: i32 = 370;
    pub const POOL_EVENT_REFRESH: i32 = 373;
    pub const VOL_GET_INFO_FLAGS: i32 = 378;
    pub const POOL_LOOKUP_BY_TARGET_PATH: i32 = 391;
    pub const CONNECT_GET_STORAGE_POOL_CAPABILITIES: i32 = 403;
}

xdr_struct! {
    /// `remote_nonnull_storage_pool`.
    pub struct NonnullPool { pub name: String, pub uuid: [u8; 16] }
}
xdr_struct! {
    /// `remote_nonnull_storage_vol`.
    pub struct NonnullVol { pub pool: String, pub name: String, pub key: String }
}
xdr_struct! {
    pub struct PoolArg { pub pool: NonnullPool }
}
xdr_struct! {
    /// CONNECT_FIND_STORAGE_POOL_SOURCES args.
    pub struct FindPoolSourcesArgs { pub kind: String, pub src_spec: Option<String>, pub flags: u32 }
}
xdr_struct! {
    pub struct PoolFlagsArgs { pub pool: NonnullPool, pub flags: u32 }
}
xdr_struct! {
    pub struct PoolIntArgs { pub pool: NonnullPool, pub value: i32 }
}
xdr_struct! {
    pub struct PoolListAllVolsArgs { pub pool: NonnullPool, pub need_results: i32, pub flags: u32 }
}
xdr_struct! {
    /// `{pool<>; uint ret}`.
    pub struct ListAllPoolsRet { pub pools: Vec<NonnullPool>, pub ret: u32 }
}
xdr_struct! {
    pub struct ListAllVolsRet { pub vols: Vec<NonnullVol>, pub ret: u32 }
}
xdr_struct! {
    /// `{uchar state; uhyper capacity, allocation, available}` (uchar is 4 bytes in XDR).
    pub struct PoolInfoRet { pub state: u32, pub capacity: u64, pub allocation: u64, pub available: u64 }
}
xdr_struct! {
    pub struct VolArg { pub vol: NonnullVol }
}
xdr_struct! {
    pub struct VolFlagsArgs { pub vol: NonnullVol, pub flags: u32 }
}
xdr_struct! {
    pub struct VolCreateArgs { pub pool: NonnullPool, pub xml: String, pub flags: u32 }
}
xdr_struct! {
    pub struct VolCreateFromArgs {
        pub pool: NonnullPool, pub xml: String, pub clonevol: NonnullVol, pub flags: u32,
    }
}
xdr_struct! {
    pub struct VolLookupByNameArgs { pub pool: NonnullPool, pub name: String }
}
xdr_struct! {
    /// `{char type; uhyper capacity; uhyper allocation}`.
    pub struct VolInfoRet { pub kind: i32, pub capacity: u64, pub allocation: u64 }
}
xdr_struct! {
    pub struct VolResizeArgs { pub vol: NonnullVol, pub capacity: u64, pub flags: u32 }
}
xdr_struct! {
    pub struct VolWipePatternArgs { pub vol: NonnullVol, pub algorithm: u32, pub flags: u32 }
}
xdr_struct! {
    /// VOL_UPLOAD / VOL_DOWNLOAD.
    pub struct VolTransferArgs { pub vol: NonnullVol, pub offset: u64, pub length: u64, pub flags: u32 }
}
xdr_struct! {
    pub struct PoolEventRegisterArgs { pub event_id: i32, pub pool: Option<NonnullPool> }
}
xdr_struct! {
    pub struct PoolLifecycleMsg { pub callback_id: i32, pub pool: NonnullPool, pub event: i32, pub detail: i32 }
}
xdr_struct! {
    pub struct PoolRefreshMsg { pub callback_id: i32, pub pool: NonnullPool }
}

#[cfg(test)]
mod tests {
    use super::super::xdr::{from_bytes, to_bytes};
    use super::*;

    #[test]
    fn upload_args_layout() {
        let a = VolTransferArgs {
            vol: NonnullVol {
                pool: "p".into(),
                name: "v".into(),
                key: "/k".into(),
            },
            offset: 1,
            length: 2,
            flags: 0,
        };
        let b = to_bytes(&a);
        // 3 strings of 8 bytes, two hypers, one uint.
        assert_eq!(b.len(), 3 * 8 + 16 + 4);
        assert_eq!(from_bytes::<VolTransferArgs>(&b).unwrap(), a);
    }
}

//! Storage pool and volume procedures: decode, call the storage driver
//! (`crate::storage::Storage`), encode. The driver decides; this only translates.

use uuid::Uuid;

use super::conn::Conn;
use super::dispatch::{args, ret, void, CallResult};
use super::error::VirError;
use super::packet::Header;
use super::proto::XmlFlagsArgs;
use super::proto::{IntValue, ListAllArgs, StringListRet, StringValue, UuidArgs};
use super::storage_proto::{
    proc_::*, ListAllPoolsRet, ListAllVolsRet, NonnullPool, NonnullVol, PoolArg, PoolFlagsArgs,
    PoolInfoRet, PoolIntArgs, PoolListAllVolsArgs, VolArg, VolCreateArgs, VolCreateFromArgs,
    VolFlagsArgs, VolInfoRet, VolLookupByNameArgs, VolResizeArgs, VolTransferArgs,
    VolWipePatternArgs,
};
use crate::storage::{self, flags::list, PoolRef, Storage, VolRef};

/// A storage error as the client sees it.
pub fn vir(e: storage::Error) -> VirError {
    VirError::new(e.code(), e.origin(), e.to_string())
}

pub fn wire_pool(p: &PoolRef) -> NonnullPool {
    NonnullPool {
        name: p.name.clone(),
        uuid: *p.uuid.as_bytes(),
    }
}

pub fn wire_vol(v: &VolRef) -> NonnullVol {
    NonnullVol {
        pool: v.pool.clone(),
        name: v.name.clone(),
        key: v.key.clone(),
    }
}

/// Whether this module serves procedure `p`.
pub fn handles(p: i32) -> bool {
    matches!(
        p,
        71..=100
            | 125
            | 154
            | 155
            | 165
            | 208
            | 209
            | 259
            | 260
            | 281
            | 282
            | 368
            | 369
            | 378
            | 391
            | 403
    )
}

/// Storage procedures a read-only connection may call: lookups, getters, listings,
/// downloads and event registration.
pub fn read_only_safe(p: i32) -> bool {
    matches!(
        p,
        CONNECT_NUM_OF_STORAGE_POOLS
            | CONNECT_LIST_STORAGE_POOLS
            | CONNECT_NUM_OF_DEFINED_STORAGE_POOLS
            | CONNECT_LIST_DEFINED_STORAGE_POOLS
            | POOL_LOOKUP_BY_NAME
            | POOL_LOOKUP_BY_UUID
            | POOL_LOOKUP_BY_VOLUME
            | POOL_LOOKUP_BY_TARGET_PATH
            | POOL_GET_INFO
            | POOL_GET_XML_DESC
            | POOL_GET_AUTOSTART
            | POOL_NUM_OF_VOLUMES
            | POOL_LIST_VOLUMES
            | POOL_IS_ACTIVE
            | POOL_IS_PERSISTENT
            | VOL_LOOKUP_BY_NAME
            | VOL_LOOKUP_BY_KEY
            | VOL_LOOKUP_BY_PATH
            | VOL_GET_INFO
            | VOL_GET_INFO_FLAGS
            | VOL_GET_XML_DESC
            | VOL_GET_PATH
            | CONNECT_LIST_ALL_STORAGE_POOLS
            | POOL_LIST_ALL_VOLUMES
            | CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY
            | CONNECT_STORAGE_POOL_EVENT_DEREGISTER_ANY
            | CONNECT_GET_STORAGE_POOL_CAPABILITIES
    )
}

/// The pool a wire handle names.
fn pool_name(s: &Storage, p: &NonnullPool) -> Result<String, VirError> {
    Ok(s.pool_by_ref(&p.name, &Uuid::from_bytes(p.uuid))
        .map_err(vir)?
        .name)
}

fn pool_ret(p: PoolRef) -> CallResult {
    ret(PoolArg {
        pool: wire_pool(&p),
    })
}

fn vol_ret(v: VolRef) -> CallResult {
    ret(VolArg { vol: wire_vol(&v) })
}

fn names(s: &Storage, filter: u32, max: i32) -> StringListRet {
    let mut names: Vec<String> = s
        .list_pools(filter)
        .into_iter()
        .map(|p| p.pool.name)
        .collect();
    names.truncate(max.max(0) as usize);
    StringListRet { names }
}

/// Runs one storage procedure.
pub async fn call(conn: &mut Conn, h: &Header, payload: &[u8]) -> CallResult {
    let s = conn.shared.core.storage().clone();
    let p = h.proc_;
    match p {
        CONNECT_LIST_ALL_STORAGE_POOLS => {
            let a: ListAllArgs = args(p, payload)?;
            let pools = s.list_pools(a.flags);
            let n = pools.len() as u32;
            ret(ListAllPoolsRet {
                pools: if a.need_results != 0 {
                    pools.iter().map(|p| wire_pool(&p.pool)).collect()
                } else {
                    Vec::new()
                },
                ret: n,
            })
        }
        CONNECT_NUM_OF_STORAGE_POOLS => ret(IntValue {
            value: s.list_pools(list::ACTIVE).len() as i32,
        }),
        CONNECT_NUM_OF_DEFINED_STORAGE_POOLS => ret(IntValue {
            value: s.list_pools(list::INACTIVE).len() as i32,
        }),
        CONNECT_LIST_STORAGE_POOLS => {
            let a: IntValue = args(p, payload)?;
            ret(names(&s, list::ACTIVE, a.value))
        }
        CONNECT_LIST_DEFINED_STORAGE_POOLS => {
            let a: IntValue = args(p, payload)?;
            ret(names(&s, list::INACTIVE, a.value))
        }
        POOL_LOOKUP_BY_NAME => {
            let a: StringValue = args(p, payload)?;
            pool_ret(s.lookup_pool_by_name(&a.value).map_err(vir)?)
        }
        POOL_LOOKUP_BY_UUID => {
            let a: UuidArgs = args(p, payload)?;
            pool_ret(
                s.lookup_pool_by_uuid(&Uuid::from_bytes(a.uuid))
                    .map_err(vir)?,
            )
        }
        POOL_LOOKUP_BY_TARGET_PATH => {
            let a: StringValue = args(p, payload)?;
            pool_ret(s.lookup_pool_by_target(&a.value).map_err(vir)?)
        }
        POOL_LOOKUP_BY_VOLUME => {
            let a: VolArg = args(p, payload)?;
            pool_ret(s.lookup_pool_by_name(&a.vol.pool).map_err(vir)?)
        }
        POOL_DEFINE_XML => {
            let a: XmlFlagsArgs = args(p, payload)?;
            pool_ret(s.define_pool(&a.xml, a.flags).await.map_err(vir)?)
        }
        POOL_CREATE_XML => {
            let a: XmlFlagsArgs = args(p, payload)?;
            pool_ret(s.create_pool_xml(&a.xml, a.flags).await.map_err(vir)?)
        }
        POOL_CREATE => {
            let a: PoolFlagsArgs = args(p, payload)?;
            s.start_pool(&pool_name(&s, &a.pool)?, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        POOL_BUILD => {
            let a: PoolFlagsArgs = args(p, payload)?;
            s.build_pool(&pool_name(&s, &a.pool)?, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        POOL_DESTROY => {
            let a: PoolArg = args(p, payload)?;
            s.destroy_pool(&pool_name(&s, &a.pool)?)
                .await
                .map_err(vir)?;
            void()
        }
        POOL_DELETE => {
            let a: PoolFlagsArgs = args(p, payload)?;
            s.delete_pool(&pool_name(&s, &a.pool)?, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        POOL_UNDEFINE => {
            let a: PoolArg = args(p, payload)?;
            s.undefine_pool(&pool_name(&s, &a.pool)?)
                .await
                .map_err(vir)?;
            void()
        }
        POOL_REFRESH => {
            let a: PoolFlagsArgs = args(p, payload)?;
            s.refresh_pool(&pool_name(&s, &a.pool)?, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        POOL_GET_INFO => {
            let a: PoolArg = args(p, payload)?;
            let i = s.pool_info(&pool_name(&s, &a.pool)?).map_err(vir)?;
            ret(PoolInfoRet {
                state: i.state as u32,
                capacity: i.sizes.capacity,
                allocation: i.sizes.allocation,
                available: i.sizes.available,
            })
        }
        POOL_GET_XML_DESC => {
            let a: PoolFlagsArgs = args(p, payload)?;
            ret(StringValue {
                value: s.pool_xml(&pool_name(&s, &a.pool)?, a.flags).map_err(vir)?,
            })
        }
        POOL_GET_AUTOSTART | POOL_IS_ACTIVE | POOL_IS_PERSISTENT => {
            let a: PoolArg = args(p, payload)?;
            let st = s.pool_status(&pool_name(&s, &a.pool)?).map_err(vir)?;
            let v = match p {
                POOL_GET_AUTOSTART => st.autostart,
                POOL_IS_ACTIVE => st.active,
                _ => st.persistent,
            };
            ret(IntValue {
                value: i32::from(v),
            })
        }
        POOL_SET_AUTOSTART => {
            let a: PoolIntArgs = args(p, payload)?;
            s.set_pool_autostart(&pool_name(&s, &a.pool)?, a.value != 0)
                .await
                .map_err(vir)?;
            void()
        }
        POOL_NUM_OF_VOLUMES => {
            let a: PoolArg = args(p, payload)?;
            ret(IntValue {
                value: s.list_vols(&pool_name(&s, &a.pool)?).map_err(vir)?.len() as i32,
            })
        }
        POOL_LIST_VOLUMES => {
            let a: PoolIntArgs = args(p, payload)?;
            let mut names: Vec<String> = s
                .list_vols(&pool_name(&s, &a.pool)?)
                .map_err(vir)?
                .into_iter()
                .map(|v| v.name)
                .collect();
            names.truncate(a.value.max(0) as usize);
            ret(StringListRet { names })
        }
        POOL_LIST_ALL_VOLUMES => {
            let a: PoolListAllVolsArgs = args(p, payload)?;
            storage::Error::check_flags(a.flags, 0, "virStoragePoolListAllVolumes").map_err(vir)?;
            let vols = s.list_vols(&pool_name(&s, &a.pool)?).map_err(vir)?;
            let n = vols.len() as u32;
            ret(ListAllVolsRet {
                vols: if a.need_results != 0 {
                    vols.iter().map(wire_vol).collect()
                } else {
                    Vec::new()
                },
                ret: n,
            })
        }
        VOL_CREATE_XML => {
            let a: VolCreateArgs = args(p, payload)?;
            let pool = pool_name(&s, &a.pool)?;
            vol_ret(
                s.create_vol(&pool, &a.xml, None, a.flags)
                    .await
                    .map_err(vir)?,
            )
        }
        VOL_CREATE_XML_FROM => {
            let a: VolCreateFromArgs = args(p, payload)?;
            let pool = pool_name(&s, &a.pool)?;
            let from = (a.clonevol.pool.as_str(), a.clonevol.name.as_str());
            vol_ret(
                s.create_vol(&pool, &a.xml, Some(from), a.flags)
                    .await
                    .map_err(vir)?,
            )
        }
        VOL_DELETE => {
            let a: VolFlagsArgs = args(p, payload)?;
            s.delete_vol(&a.vol.pool, &a.vol.name, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        VOL_WIPE => {
            let a: VolFlagsArgs = args(p, payload)?;
            s.wipe_vol(&a.vol.pool, &a.vol.name, 0, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        VOL_WIPE_PATTERN => {
            let a: VolWipePatternArgs = args(p, payload)?;
            s.wipe_vol(&a.vol.pool, &a.vol.name, a.algorithm, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        VOL_LOOKUP_BY_NAME => {
            let a: VolLookupByNameArgs = args(p, payload)?;
            let pool = pool_name(&s, &a.pool)?;
            vol_ret(s.lookup_vol_by_name(&pool, &a.name).map_err(vir)?)
        }
        VOL_LOOKUP_BY_KEY => {
            let a: StringValue = args(p, payload)?;
            vol_ret(s.lookup_vol_by_key(&a.value).map_err(vir)?)
        }
        VOL_LOOKUP_BY_PATH => {
            let a: StringValue = args(p, payload)?;
            vol_ret(s.lookup_vol_by_path(&a.value).map_err(vir)?)
        }
        VOL_GET_INFO | VOL_GET_INFO_FLAGS => {
            let vol = if p == VOL_GET_INFO {
                args::<VolArg>(p, payload)?.vol
            } else {
                let a: VolFlagsArgs = args(p, payload)?;
                // VIR_STORAGE_VOL_GET_PHYSICAL = 1: allocation is the file length.
                storage::Error::check_flags(a.flags, 1, "virStorageVolGetInfoFlags")
                    .map_err(vir)?;
                if a.flags & 1 != 0 {
                    let i = s.vol_info(&a.vol.pool, &a.vol.name).map_err(vir)?;
                    return ret(VolInfoRet {
                        kind: i.vol_type(),
                        capacity: i.capacity,
                        allocation: i.physical,
                    });
                }
                a.vol
            };
            let i = s.vol_info(&vol.pool, &vol.name).map_err(vir)?;
            ret(VolInfoRet {
                kind: i.vol_type(),
                capacity: i.capacity,
                allocation: i.allocation,
            })
        }
        VOL_GET_XML_DESC => {
            let a: VolFlagsArgs = args(p, payload)?;
            ret(StringValue {
                value: s.vol_xml(&a.vol.pool, &a.vol.name, a.flags).map_err(vir)?,
            })
        }
        VOL_GET_PATH => {
            let a: VolArg = args(p, payload)?;
            ret(StringValue {
                value: s.vol_target_path(&a.vol.pool, &a.vol.name).map_err(vir)?,
            })
        }
        VOL_RESIZE => {
            let a: VolResizeArgs = args(p, payload)?;
            s.resize_vol(&a.vol.pool, &a.vol.name, a.capacity, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        VOL_UPLOAD => {
            let a: VolTransferArgs = args(p, payload)?;
            let file = s
                .open_upload(&a.vol.pool, &a.vol.name, a.offset, a.flags)
                .map_err(vir)?;
            conn.reply(h, Ok(Vec::new())).await;
            conn.storage
                .start_upload(file, a.length, (s.clone(), a.vol.pool.clone()), h);
            Ok(None)
        }
        VOL_DOWNLOAD => {
            let a: VolTransferArgs = args(p, payload)?;
            let (file, len) = s
                .open_download(&a.vol.pool, &a.vol.name, a.offset, a.length, a.flags)
                .map_err(vir)?;
            conn.reply(h, Ok(Vec::new())).await;
            conn.storage
                .start_download_sparse(file, len, a.flags & 1 != 0, conn.out.clone(), h);
            Ok(None)
        }
        CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY => {
            let a: super::storage_proto::PoolEventRegisterArgs = args(p, payload)?;
            let cb = conn
                .shared
                .next_callback_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            conn.storage
                .register(cb, a.event_id, a.pool.map(|p| p.uuid), &s, &conn.out)?;
            ret(IntValue { value: cb })
        }
        CONNECT_STORAGE_POOL_EVENT_DEREGISTER_ANY => {
            let a: IntValue = args(p, payload)?;
            conn.storage.deregister(a.value)?;
            void()
        }
        CONNECT_FIND_STORAGE_POOL_SOURCES => {
            let a: super::storage_proto::FindPoolSourcesArgs = args(p, payload)?;
            let xml = storage::find_pool_sources(&a.kind, a.flags)
                .await
                .map_err(vir)?;
            ret(StringValue { value: xml })
        }
        CONNECT_GET_STORAGE_POOL_CAPABILITIES => {
            let a: super::proto::FlagsArgs = args(p, payload)?;
            if a.flags != 0 {
                return Err(VirError::invalid_arg(format!(
                    "unsupported flags (0x{:x}) in function virConnectGetStoragePoolCapabilities",
                    a.flags
                )));
            }
            ret(StringValue {
                value: storage::pool_caps::capabilities_xml(),
            })
        }
        _ => Err(VirError::unknown_procedure(
            super::packet::PROGRAM_REMOTE,
            p,
        )),
    }
}

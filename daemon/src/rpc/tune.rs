//! Memory, blkio and scheduler parameters (`virsh memtune`, `blkiotune`, `schedinfo`):
//! decode, call the core ([`crate::core::Core::tuning`]), encode with libvirt's field
//! names, types and units (qemu_driver.c: memory in KiB as ULLONG, unlimited is
//! `VIR_DOMAIN_MEMORY_PARAM_UNLIMITED`; `weight` UINT; `cpu_shares`/`vcpu_period`
//! ULLONG, `vcpu_quota` LLONG).

use domain_xml::tuning::Tuning;
use uuid::Uuid;

use super::conn::Conn;
use super::dispatch::{args, ret, void, CallResult};
use super::domain::vir;
use super::error::VirError;
use super::packet::Header;
use super::proto::{NonnullDomain, TypedParam, TypedValue};
use super::stats_proto::TypedParamsRet;
use super::xdr::xdr_struct;
use crate::core::tune::{self, Group, Param};

/// Procedure numbers (`remote_protocol.x`).
pub mod proc_ {
    pub const DOMAIN_GET_SCHEDULER_PARAMETERS: i32 = 57;
    pub const DOMAIN_SET_SCHEDULER_PARAMETERS: i32 = 58;
    pub const DOMAIN_SET_MEMORY_PARAMETERS: i32 = 197;
    pub const DOMAIN_GET_MEMORY_PARAMETERS: i32 = 198;
    pub const DOMAIN_SET_BLKIO_PARAMETERS: i32 = 205;
    pub const DOMAIN_GET_BLKIO_PARAMETERS: i32 = 206;
    pub const DOMAIN_SET_SCHEDULER_PARAMETERS_FLAGS: i32 = 219;
    pub const DOMAIN_GET_SCHEDULER_PARAMETERS_FLAGS: i32 = 223;
    pub const DOMAIN_GET_NUMA_PARAMETERS: i32 = 255;
}

pub use crate::core::tune::SCHEDULER_NPARAMS;

xdr_struct! {
    /// `remote_domain_get_{memory,blkio}_parameters_args`, `…scheduler_parameters_flags_args`.
    pub struct GetParamsArgs { pub dom: NonnullDomain, pub nparams: i32, pub flags: u32 }
}
xdr_struct! {
    /// `remote_domain_get_scheduler_parameters_args`.
    pub struct GetSchedArgs { pub dom: NonnullDomain, pub nparams: i32 }
}
xdr_struct! {
    /// `remote_domain_get_scheduler_parameters{,_flags}_ret`.
    pub struct SchedRet { pub params: Vec<TypedParam> }
}
xdr_struct! {
    /// `remote_domain_set_{memory,blkio,scheduler}_parameters_flags_args`.
    pub struct SetParamsArgs { pub dom: NonnullDomain, pub params: Vec<TypedParam>, pub flags: u32 }
}
xdr_struct! {
    /// `remote_domain_set_scheduler_parameters_args`.
    pub struct SetSchedArgs { pub dom: NonnullDomain, pub params: Vec<TypedParam> }
}

/// `VIR_TYPED_PARAM_STRING_OKAY`: clients add it to every typed-parameter getter.
const STRING_OKAY: u32 = 1 << 2;

/// Whether this module serves procedure `p`.
pub fn handles(p: i32) -> bool {
    use proc_::*;
    matches!(
        p,
        DOMAIN_GET_SCHEDULER_PARAMETERS
            | DOMAIN_SET_SCHEDULER_PARAMETERS
            | DOMAIN_SET_MEMORY_PARAMETERS
            | DOMAIN_GET_MEMORY_PARAMETERS
            | DOMAIN_SET_BLKIO_PARAMETERS
            | DOMAIN_GET_BLKIO_PARAMETERS
            | DOMAIN_SET_SCHEDULER_PARAMETERS_FLAGS
            | DOMAIN_GET_SCHEDULER_PARAMETERS_FLAGS
            | DOMAIN_GET_NUMA_PARAMETERS
    )
}

/// The getters, allowed on a read-only connection.
pub fn read_only_safe(p: i32) -> bool {
    use proc_::*;
    matches!(
        p,
        DOMAIN_GET_SCHEDULER_PARAMETERS
            | DOMAIN_GET_MEMORY_PARAMETERS
            | DOMAIN_GET_BLKIO_PARAMETERS
            | DOMAIN_GET_SCHEDULER_PARAMETERS_FLAGS
            | DOMAIN_GET_NUMA_PARAMETERS
    )
}

/// Dispatches one procedure of this module.
pub async fn call(conn: &mut Conn, h: &Header, payload: &[u8]) -> CallResult {
    let core = conn.shared.core.clone();
    let p = h.proc_;
    use proc_::*;
    let get = |dom: &NonnullDomain, flags: u32, group: Group, api: &str| {
        let t = core
            .tuning(&Uuid::from_bytes(dom.uuid), flags & !STRING_OKAY, api)
            .map_err(vir)?;
        params(group, &t, flags & STRING_OKAY != 0)
    };
    match p {
        DOMAIN_GET_MEMORY_PARAMETERS | DOMAIN_GET_BLKIO_PARAMETERS => {
            let a: GetParamsArgs = args(p, payload)?;
            let (group, api) = if p == DOMAIN_GET_MEMORY_PARAMETERS {
                (Group::Memory, "virDomainGetMemoryParameters")
            } else {
                (Group::Blkio, "virDomainGetBlkioParameters")
            };
            let all = get(&a.dom, a.flags, group, api)?;
            // nparams == 0 asks for the count.
            if a.nparams == 0 {
                return ret(TypedParamsRet {
                    params: Vec::new(),
                    nparams: all.len() as i32,
                });
            }
            let params: Vec<TypedParam> = all.into_iter().take(a.nparams.max(0) as usize).collect();
            let nparams = params.len() as i32;
            ret(TypedParamsRet { params, nparams })
        }
        DOMAIN_GET_NUMA_PARAMETERS => {
            let a: GetParamsArgs = args(p, payload)?;
            let api = "virDomainGetNumaParameters";
            core.affects_live(&Uuid::from_bytes(a.dom.uuid), a.flags & !STRING_OKAY, api)
                .map_err(vir)?;
            // <numatune> is refused by translation and domains have no cpuset cgroup:
            // libvirt's default mode (strict, 0) and no nodeset. The nodeset is a
            // string, sent only to clients that accept strings.
            let mut all = vec![TypedParam {
                field: "numa_mode".into(),
                value: TypedValue::Int(0),
            }];
            if a.flags & STRING_OKAY != 0 {
                all.push(TypedParam {
                    field: "numa_nodeset".into(),
                    value: TypedValue::String(String::new()),
                });
            }
            if a.nparams == 0 {
                return ret(TypedParamsRet {
                    params: Vec::new(),
                    nparams: all.len() as i32,
                });
            }
            let params: Vec<TypedParam> = all.into_iter().take(a.nparams.max(0) as usize).collect();
            let nparams = params.len() as i32;
            ret(TypedParamsRet { params, nparams })
        }
        DOMAIN_GET_SCHEDULER_PARAMETERS_FLAGS => {
            let a: GetParamsArgs = args(p, payload)?;
            let all = get(
                &a.dom,
                a.flags,
                Group::Scheduler,
                "virDomainGetSchedulerParametersFlags",
            )?;
            ret(SchedRet {
                params: all.into_iter().take(a.nparams.max(0) as usize).collect(),
            })
        }
        DOMAIN_GET_SCHEDULER_PARAMETERS => {
            let a: GetSchedArgs = args(p, payload)?;
            let all = get(
                &a.dom,
                0,
                Group::Scheduler,
                "virDomainGetSchedulerParameters",
            )?;
            ret(SchedRet {
                params: all.into_iter().take(a.nparams.max(0) as usize).collect(),
            })
        }
        DOMAIN_SET_MEMORY_PARAMETERS
        | DOMAIN_SET_BLKIO_PARAMETERS
        | DOMAIN_SET_SCHEDULER_PARAMETERS_FLAGS => {
            let a: SetParamsArgs = args(p, payload)?;
            let (group, api) = match p {
                DOMAIN_SET_MEMORY_PARAMETERS => (Group::Memory, "virDomainSetMemoryParameters"),
                DOMAIN_SET_BLKIO_PARAMETERS => (Group::Blkio, "virDomainSetBlkioParameters"),
                _ => (Group::Scheduler, "virDomainSetSchedulerParametersFlags"),
            };
            set(&core, &a.dom, &a.params, a.flags, group, api).await
        }
        DOMAIN_SET_SCHEDULER_PARAMETERS => {
            let a: SetSchedArgs = args(p, payload)?;
            set(
                &core,
                &a.dom,
                &a.params,
                0,
                Group::Scheduler,
                "virDomainSetSchedulerParameters",
            )
            .await
        }
        _ => Err(VirError::unknown_procedure(
            super::packet::PROGRAM_REMOTE,
            p,
        )),
    }
}

/// The group's parameters of `t` on the wire; string ones only for clients that
/// accept strings (`VIR_TYPED_PARAM_STRING_OKAY`), as libvirt's daemon filters them.
fn params(group: Group, t: &Tuning, strings: bool) -> Result<Vec<TypedParam>, VirError> {
    Ok(tune::params(group, t)
        .map_err(vir)?
        .into_iter()
        .filter_map(|(field, v)| {
            let value = match v {
                Param::ULLong(x) => TypedValue::ULLong(x),
                Param::UInt(x) => TypedValue::UInt(x),
                Param::LLong(x) => TypedValue::LLong(x),
                Param::Str(s) if strings => TypedValue::String(s.into()),
                Param::Str(_) => return None,
            };
            Some(TypedParam {
                field: field.into(),
                value,
            })
        })
        .collect())
}

/// The setter's parameters as the core reads them.
fn tuning_of(group: Group, params: &[TypedParam]) -> Result<Tuning, VirError> {
    let given: Vec<(String, Option<i64>)> = params
        .iter()
        .map(|p| {
            let int = match p.value {
                TypedValue::Int(v) => Some(i64::from(v)),
                TypedValue::UInt(v) => Some(i64::from(v)),
                TypedValue::LLong(v) => Some(v),
                TypedValue::ULLong(v) => Some(i64::try_from(v).unwrap_or(i64::MAX)),
                _ => None,
            };
            (p.field.clone(), int)
        })
        .collect();
    tune::tuning_from(group, &given).map_err(vir)
}

async fn set(
    core: &crate::core::Core,
    dom: &NonnullDomain,
    params: &[TypedParam],
    flags: u32,
    group: Group,
    api: &str,
) -> CallResult {
    let t = tuning_of(group, params)?;
    core.set_tuning(&Uuid::from_bytes(dom.uuid), flags, api, &t)
        .await
        .map_err(vir)?;
    void()
}

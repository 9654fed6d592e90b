//! CPU model procedures (`virsh cpu-models`, `cpu-baseline`, `cpu-compare`,
//! `hypervisor-cpu-baseline`, `hypervisor-cpu-compare`): decode, call the core
//! ([`crate::core::cpu`]), encode.

use super::conn::Conn;
use super::dispatch::{args, ret, CallResult};
use super::domain::vir;
use super::packet::Header;
use super::proto::{IntValue, StringValue};
use super::xdr::xdr_struct;

/// Procedure numbers (libvirt's `remote_procedure`).
pub mod proc_ {
    pub const CONNECT_COMPARE_CPU: i32 = 158;
    pub const CONNECT_BASELINE_CPU: i32 = 162;
    pub const CONNECT_GET_CPU_MODEL_NAMES: i32 = 312;
    pub const CONNECT_COMPARE_HYPERVISOR_CPU: i32 = 393;
    pub const CONNECT_BASELINE_HYPERVISOR_CPU: i32 = 394;
}
use proc_::*;

xdr_struct! {
    /// `remote_connect_compare_cpu_args`.
    pub struct CompareCpuArgs { pub xml: String, pub flags: u32 }
}
xdr_struct! {
    /// `remote_connect_baseline_cpu_args`.
    pub struct BaselineCpuArgs { pub xml_cpus: Vec<String>, pub flags: u32 }
}
xdr_struct! {
    /// `remote_connect_get_cpu_model_names_args`.
    pub struct CpuModelNamesArgs { pub arch: String, pub need_results: i32, pub flags: u32 }
}
xdr_struct! {
    /// `remote_connect_get_cpu_model_names_ret`.
    pub struct CpuModelNamesRet { pub models: Vec<String>, pub ret: i32 }
}
xdr_struct! {
    /// `remote_connect_compare_hypervisor_cpu_args`.
    pub struct CompareHypervisorCpuArgs {
        pub emulator: Option<String>,
        pub arch: Option<String>,
        pub machine: Option<String>,
        pub virttype: Option<String>,
        pub xml_cpu: String,
        pub flags: u32,
    }
}
xdr_struct! {
    /// `remote_connect_baseline_hypervisor_cpu_args`.
    pub struct BaselineHypervisorCpuArgs {
        pub emulator: Option<String>,
        pub arch: Option<String>,
        pub machine: Option<String>,
        pub virttype: Option<String>,
        pub xml_cpus: Vec<String>,
        pub flags: u32,
    }
}

/// Whether this module serves procedure `p`.
pub fn handles(p: i32) -> bool {
    matches!(
        p,
        CONNECT_COMPARE_CPU
            | CONNECT_BASELINE_CPU
            | CONNECT_GET_CPU_MODEL_NAMES
            | CONNECT_COMPARE_HYPERVISOR_CPU
            | CONNECT_BASELINE_HYPERVISOR_CPU
    )
}

/// Listing model names only reads (libvirt's `connect:read`); comparing and
/// baselining are `connect:write` in libvirt's ACLs, like domain capabilities.
pub fn read_only_safe(p: i32) -> bool {
    p == CONNECT_GET_CPU_MODEL_NAMES
}

/// Dispatches one procedure of this module.
pub async fn call(conn: &mut Conn, h: &Header, payload: &[u8]) -> CallResult {
    let core = conn.shared.core.clone();
    let p = h.proc_;
    match p {
        CONNECT_GET_CPU_MODEL_NAMES => {
            let a: CpuModelNamesArgs = args(p, payload)?;
            let names = core.cpu_model_names(&a.arch, a.flags).map_err(vir)?;
            let n = names.len() as i32;
            ret(CpuModelNamesRet {
                models: if a.need_results != 0 {
                    names
                } else {
                    Vec::new()
                },
                ret: n,
            })
        }
        CONNECT_BASELINE_CPU => {
            let a: BaselineCpuArgs = args(p, payload)?;
            ret(StringValue {
                value: core.baseline_cpu(&a.xml_cpus, a.flags).map_err(vir)?,
            })
        }
        CONNECT_BASELINE_HYPERVISOR_CPU => {
            let a: BaselineHypervisorCpuArgs = args(p, payload)?;
            ret(StringValue {
                value: core
                    .baseline_hypervisor_cpu(
                        a.arch.as_deref(),
                        a.virttype.as_deref(),
                        &a.xml_cpus,
                        a.flags,
                    )
                    .map_err(vir)?,
            })
        }
        CONNECT_COMPARE_CPU => {
            let a: CompareCpuArgs = args(p, payload)?;
            ret(IntValue {
                value: core.compare_cpu(None, None, &a.xml, a.flags).map_err(vir)?,
            })
        }
        CONNECT_COMPARE_HYPERVISOR_CPU => {
            let a: CompareHypervisorCpuArgs = args(p, payload)?;
            ret(IntValue {
                value: core
                    .compare_cpu(
                        a.arch.as_deref(),
                        a.virttype.as_deref(),
                        &a.xml_cpu,
                        a.flags,
                    )
                    .map_err(vir)?,
            })
        }
        _ => Err(super::error::VirError::unknown_procedure(
            super::packet::PROGRAM_REMOTE,
            p,
        )),
    }
}

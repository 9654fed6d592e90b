//! Guest-agent procedures of the REMOTE program (filesystems, guest info, time, user
//! password, guest vCPUs) and the QEMU program's DOMAIN_AGENT_COMMAND (virsh
//! `qemu-agent-command`): decode, call [`crate::core::agent_calls`], encode. Structures
//! as libvirt 9.0's `remote_protocol.x` and `qemu_protocol.x` define them.

use uuid::Uuid;

use super::conn::Conn;
use super::dispatch::{args, ret, void, CallResult};
use super::domain::vir;
use super::packet::Header;
use super::proto::{DomainFlagsArgs, NonnullDomain, TypedParam, TypedValue};
use super::xdr::xdr_struct;
use crate::core::stats::StatValue;

pub const DOMAIN_FSFREEZE: i32 = 335;
pub const DOMAIN_FSTHAW: i32 = 336;
pub const DOMAIN_GET_TIME: i32 = 337;
pub const DOMAIN_SET_TIME: i32 = 338;
/// The event message procedure (`remote_domain_event_callback_agent_lifecycle_msg`).
pub const DOMAIN_EVENT_CALLBACK_AGENT_LIFECYCLE: i32 = 348;
pub const DOMAIN_GET_FSINFO: i32 = 349;
pub const DOMAIN_SET_USER_PASSWORD: i32 = 357;
pub const DOMAIN_GET_GUEST_VCPUS: i32 = 371;
pub const DOMAIN_SET_GUEST_VCPUS: i32 = 372;
pub const DOMAIN_GET_GUEST_INFO: i32 = 418;
/// QEMU program: `qemu_domain_agent_command`.
pub const QEMU_DOMAIN_AGENT_COMMAND: i32 = 3;

xdr_struct! {
    /// `remote_domain_event_callback_agent_lifecycle_msg`.
    pub struct AgentLifecycleMsg { pub callback_id: i32, pub dom: NonnullDomain, pub state: i32, pub reason: i32 }
}
xdr_struct! {
    /// DOMAIN_FSFREEZE and DOMAIN_FSTHAW args.
    pub struct FsFreezeArgs { pub dom: NonnullDomain, pub mountpoints: Vec<String>, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_FSFREEZE and DOMAIN_FSTHAW ret.
    pub struct FsFreezeRet { pub filesystems: i32 }
}
xdr_struct! {
    /// DOMAIN_SET_GUEST_VCPUS args.
    pub struct SetGuestVcpusArgs { pub dom: NonnullDomain, pub cpumap: String, pub state: i32, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_GET_TIME ret.
    pub struct GetTimeRet { pub seconds: i64, pub nseconds: u32 }
}
xdr_struct! {
    /// DOMAIN_SET_TIME args.
    pub struct SetTimeArgs { pub dom: NonnullDomain, pub seconds: i64, pub nseconds: u32, pub flags: u32 }
}
xdr_struct! {
    /// `remote_domain_fsinfo`.
    pub struct WireFsInfo { pub mountpoint: String, pub name: String, pub fstype: String, pub dev_aliases: Vec<String> }
}
xdr_struct! {
    /// DOMAIN_GET_FSINFO ret.
    pub struct FsInfoRet { pub info: Vec<WireFsInfo>, pub ret: u32 }
}
xdr_struct! {
    /// DOMAIN_SET_USER_PASSWORD args.
    pub struct SetUserPasswordArgs { pub dom: NonnullDomain, pub user: Option<String>, pub password: Option<String>, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_GET_GUEST_INFO args.
    pub struct GuestInfoArgs { pub dom: NonnullDomain, pub types: u32, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_GET_GUEST_INFO and DOMAIN_GET_GUEST_VCPUS ret.
    pub struct ParamsRet { pub params: Vec<TypedParam> }
}
xdr_struct! {
    /// QEMU DOMAIN_AGENT_COMMAND args.
    pub struct AgentCommandArgs { pub dom: NonnullDomain, pub cmd: String, pub timeout: i32, pub flags: u32 }
}
xdr_struct! {
    /// QEMU DOMAIN_AGENT_COMMAND ret.
    pub struct AgentCommandRet { pub result: Option<String> }
}

/// Whether this module serves REMOTE procedure `p`.
pub fn handles(p: i32) -> bool {
    matches!(
        p,
        DOMAIN_FSFREEZE
            | DOMAIN_FSTHAW
            | DOMAIN_GET_TIME
            | DOMAIN_SET_TIME
            | DOMAIN_GET_FSINFO
            | DOMAIN_SET_USER_PASSWORD
            | DOMAIN_GET_GUEST_VCPUS
            | DOMAIN_SET_GUEST_VCPUS
            | DOMAIN_GET_GUEST_INFO
    )
}

fn uuid_of(d: &NonnullDomain) -> Uuid {
    Uuid::from_bytes(d.uuid)
}

fn typed(params: Vec<(String, StatValue)>) -> Vec<TypedParam> {
    params
        .into_iter()
        .map(|(field, v)| TypedParam {
            field,
            value: match v {
                StatValue::Int(i) => TypedValue::Int(i),
                StatValue::UInt(i) => TypedValue::UInt(i),
                StatValue::ULLong(i) => TypedValue::ULLong(i),
                StatValue::String(t) => TypedValue::String(t),
                StatValue::Boolean(b) => TypedValue::Boolean(b),
            },
        })
        .collect()
}

/// Dispatches one REMOTE procedure of this module (every one needs a read-write
/// connection: libvirt's ACLs ask for `domain:write` or `fs_freeze`).
pub async fn call(conn: &mut Conn, h: &Header, payload: &[u8]) -> CallResult {
    let core = conn.shared.core.clone();
    let p = h.proc_;
    match p {
        DOMAIN_FSFREEZE | DOMAIN_FSTHAW => {
            let a: FsFreezeArgs = args(p, payload)?;
            let u = uuid_of(&a.dom);
            let n = if p == DOMAIN_FSFREEZE {
                core.agent_fs_freeze(&u, &a.mountpoints, a.flags).await
            } else {
                core.agent_fs_thaw(&u, a.flags).await
            }
            .map_err(vir)?;
            ret(FsFreezeRet {
                filesystems: i32::try_from(n).unwrap_or(i32::MAX),
            })
        }
        DOMAIN_SET_GUEST_VCPUS => {
            let a: SetGuestVcpusArgs = args(p, payload)?;
            core.agent_set_guest_vcpus(&uuid_of(&a.dom), &a.cpumap, a.state, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        DOMAIN_GET_TIME => {
            let a: DomainFlagsArgs = args(p, payload)?;
            let (seconds, nseconds) = core
                .agent_get_time(&uuid_of(&a.dom), a.flags)
                .await
                .map_err(vir)?;
            ret(GetTimeRet { seconds, nseconds })
        }
        DOMAIN_SET_TIME => {
            let a: SetTimeArgs = args(p, payload)?;
            core.agent_set_time(&uuid_of(&a.dom), a.seconds, a.nseconds, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        DOMAIN_GET_FSINFO => {
            let a: DomainFlagsArgs = args(p, payload)?;
            let info: Vec<WireFsInfo> = core
                .agent_fsinfo(&uuid_of(&a.dom), a.flags)
                .await
                .map_err(vir)?
                .into_iter()
                .map(|f| WireFsInfo {
                    mountpoint: f.mountpoint,
                    name: f.name,
                    fstype: f.fstype,
                    dev_aliases: f.dev_aliases,
                })
                .collect();
            ret(FsInfoRet {
                ret: info.len() as u32,
                info,
            })
        }
        DOMAIN_SET_USER_PASSWORD => {
            let a: SetUserPasswordArgs = args(p, payload)?;
            core.agent_set_user_password(
                &uuid_of(&a.dom),
                a.user.as_deref().unwrap_or(""),
                a.password.as_deref().unwrap_or(""),
                a.flags,
            )
            .await
            .map_err(vir)?;
            void()
        }
        DOMAIN_GET_GUEST_VCPUS => {
            let a: DomainFlagsArgs = args(p, payload)?;
            let params = core
                .agent_guest_vcpus(&uuid_of(&a.dom), a.flags)
                .await
                .map_err(vir)?;
            ret(ParamsRet {
                params: typed(params),
            })
        }
        DOMAIN_GET_GUEST_INFO => {
            let a: GuestInfoArgs = args(p, payload)?;
            let params = core
                .agent_guest_info(&uuid_of(&a.dom), a.types, a.flags)
                .await
                .map_err(vir)?;
            ret(ParamsRet {
                params: typed(params),
            })
        }
        _ => Err(super::error::VirError::no_support(&format!(
            "procedure {p}"
        ))),
    }
}

/// QEMU DOMAIN_AGENT_COMMAND: the agent's whole reply as JSON text.
pub async fn agent_command(conn: &mut Conn, a: AgentCommandArgs) -> CallResult {
    let result = conn
        .shared
        .core
        .agent_command(&uuid_of(&a.dom), &a.cmd, a.timeout, a.flags)
        .await
        .map_err(vir)?;
    ret(AgentCommandRet {
        result: Some(result),
    })
}

//! The REMOTE and QEMU programs' procedure numbers and argument/return structures, as
//! libvirt 9.0 defines them (`src/remote/remote_protocol.x`, `qemu_protocol.x`).
//!
//! Only the procedures oxvirtd serves are declared; every other number is answered with
//! VIR_ERR_NO_SUPPORT by the dispatcher. Structures that are wire-identical (every
//! `{ remote_nonnull_domain dom; }` args, every `{ int x; }` ret) share one Rust type.

use super::xdr::{xdr_struct, CharArray, Decoder, Encoder, Xdr, XdrError};

/// REMOTE program procedure numbers (`remote_procedure`).
pub mod remote {
    pub const CONNECT_OPEN: i32 = 1;
    pub const CONNECT_CLOSE: i32 = 2;
    pub const CONNECT_GET_TYPE: i32 = 3;
    pub const CONNECT_GET_VERSION: i32 = 4;
    pub const CONNECT_GET_MAX_VCPUS: i32 = 5;
    pub const NODE_GET_INFO: i32 = 6;
    pub const CONNECT_GET_CAPABILITIES: i32 = 7;
    pub const DOMAIN_ATTACH_DEVICE: i32 = 8;
    pub const DOMAIN_CREATE: i32 = 9;
    pub const DOMAIN_CREATE_XML: i32 = 10;
    pub const DOMAIN_DEFINE_XML: i32 = 11;
    pub const DOMAIN_DESTROY: i32 = 12;
    pub const DOMAIN_DETACH_DEVICE: i32 = 13;
    pub const DOMAIN_GET_XML_DESC: i32 = 14;
    pub const DOMAIN_GET_AUTOSTART: i32 = 15;
    pub const DOMAIN_GET_INFO: i32 = 16;
    pub const DOMAIN_GET_MAX_MEMORY: i32 = 17;
    pub const DOMAIN_GET_MAX_VCPUS: i32 = 18;
    pub const DOMAIN_GET_OS_TYPE: i32 = 19;
    pub const CONNECT_LIST_DEFINED_DOMAINS: i32 = 21;
    pub const DOMAIN_LOOKUP_BY_ID: i32 = 22;
    pub const DOMAIN_LOOKUP_BY_NAME: i32 = 23;
    pub const DOMAIN_LOOKUP_BY_UUID: i32 = 24;
    pub const CONNECT_NUM_OF_DEFINED_DOMAINS: i32 = 25;
    pub const DOMAIN_REBOOT: i32 = 27;
    pub const DOMAIN_RESUME: i32 = 28;
    pub const DOMAIN_SET_AUTOSTART: i32 = 29;
    pub const DOMAIN_SET_MEMORY: i32 = 31;
    pub const DOMAIN_SET_VCPUS: i32 = 32;
    pub const DOMAIN_SHUTDOWN: i32 = 33;
    pub const DOMAIN_SUSPEND: i32 = 34;
    pub const DOMAIN_UNDEFINE: i32 = 35;
    pub const CONNECT_LIST_DOMAINS: i32 = 37;
    pub const CONNECT_NUM_OF_DOMAINS: i32 = 51;
    pub const DOMAIN_RESTORE: i32 = 54;
    pub const DOMAIN_SAVE: i32 = 55;
    pub const DOMAIN_GET_SCHEDULER_TYPE: i32 = 56;
    pub const CONNECT_GET_HOSTNAME: i32 = 59;
    pub const CONNECT_SUPPORTS_FEATURE: i32 = 60;
    pub const AUTH_LIST: i32 = 66;
    pub const AUTH_POLKIT: i32 = 70;
    pub const NODE_GET_FREE_MEMORY: i32 = 102;
    pub const CONNECT_GET_URI: i32 = 110;
    pub const DOMAIN_GET_SECURITY_LABEL: i32 = 121;
    pub const NODE_GET_SECURITY_MODEL: i32 = 122;
    pub const CONNECT_IS_SECURE: i32 = 149;
    pub const DOMAIN_IS_ACTIVE: i32 = 150;
    pub const DOMAIN_IS_PERSISTENT: i32 = 151;
    pub const CONNECT_GET_LIB_VERSION: i32 = 157;
    pub const DOMAIN_MEMORY_STATS: i32 = 159;
    pub const DOMAIN_ATTACH_DEVICE_FLAGS: i32 = 160;
    pub const DOMAIN_DETACH_DEVICE_FLAGS: i32 = 161;
    pub const DOMAIN_UPDATE_DEVICE_FLAGS: i32 = 174;
    pub const DOMAIN_MANAGED_SAVE: i32 = 182;
    pub const DOMAIN_HAS_MANAGED_SAVE_IMAGE: i32 = 183;
    pub const DOMAIN_MANAGED_SAVE_REMOVE: i32 = 184;
    pub const DOMAIN_SNAPSHOT_NUM: i32 = 187;
    pub const DOMAIN_CREATE_WITH_FLAGS: i32 = 196;
    pub const DOMAIN_SET_VCPUS_FLAGS: i32 = 199;
    pub const DOMAIN_GET_VCPUS_FLAGS: i32 = 200;
    pub const DOMAIN_OPEN_CONSOLE: i32 = 201;
    pub const DOMAIN_IS_UPDATED: i32 = 202;
    pub const CONNECT_GET_SYSINFO: i32 = 203;
    pub const DOMAIN_SET_MEMORY_FLAGS: i32 = 204;
    pub const DOMAIN_GET_STATE: i32 = 212;
    pub const DOMAIN_UNDEFINE_FLAGS: i32 = 231;
    pub const DOMAIN_SAVE_FLAGS: i32 = 232;
    pub const DOMAIN_RESTORE_FLAGS: i32 = 233;
    pub const DOMAIN_DESTROY_FLAGS: i32 = 234;
    pub const DOMAIN_SAVE_IMAGE_GET_XML_DESC: i32 = 235;
    pub const DOMAIN_RESET: i32 = 245;
    pub const DOMAIN_SHUTDOWN_FLAGS: i32 = 258;
    pub const DOMAIN_SET_METADATA: i32 = 264;
    pub const DOMAIN_GET_METADATA: i32 = 265;
    pub const CONNECT_LIST_ALL_DOMAINS: i32 = 273;
    pub const DOMAIN_LIST_ALL_SNAPSHOTS: i32 = 274;
    pub const CONNECT_LIST_ALL_STORAGE_POOLS: i32 = 281;
    pub const CONNECT_LIST_ALL_NETWORKS: i32 = 283;
    pub const CONNECT_LIST_ALL_INTERFACES: i32 = 284;
    pub const CONNECT_LIST_ALL_NODE_DEVICES: i32 = 285;
    pub const CONNECT_LIST_ALL_NWFILTERS: i32 = 286;
    pub const CONNECT_LIST_ALL_SECRETS: i32 = 287;
    pub const CONNECT_NETWORK_EVENT_REGISTER_ANY: i32 = 313;
    pub const CONNECT_NETWORK_EVENT_DEREGISTER_ANY: i32 = 314;
    pub const CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: i32 = 316;
    pub const CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY: i32 = 317;
    pub const DOMAIN_EVENT_CALLBACK_LIFECYCLE: i32 = 318;
    pub const DOMAIN_EVENT_CALLBACK_REBOOT: i32 = 319;
    pub const DOMAIN_EVENT_CALLBACK_CONTROL_ERROR: i32 = 325;
    pub const DOMAIN_EVENT_CALLBACK_TRAY_CHANGE: i32 = 328;
    pub const DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED: i32 = 333;
    pub const DOMAIN_EVENT_CALLBACK_DEVICE_ADDED: i32 = 354;
    pub const DOMAIN_EVENT_CALLBACK_BALLOON_CHANGE: i32 = 331;
    pub const CONNECT_GET_DOMAIN_CAPABILITIES: i32 = 342;
    pub const CONNECT_GET_ALL_DOMAIN_STATS: i32 = 344;
    pub const DOMAIN_DEFINE_XML_FLAGS: i32 = 350;
    pub const DOMAIN_INTERFACE_ADDRESSES: i32 = 353;
    pub const DOMAIN_RENAME: i32 = 358;
    pub const CONNECT_REGISTER_CLOSE_CALLBACK: i32 = 360;
    pub const CONNECT_UNREGISTER_CLOSE_CALLBACK: i32 = 361;
    pub const CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY: i32 = 368;
    pub const CONNECT_STORAGE_POOL_EVENT_DEREGISTER_ANY: i32 = 369;
    pub const CONNECT_NODE_DEVICE_EVENT_REGISTER_ANY: i32 = 374;
    pub const CONNECT_NODE_DEVICE_EVENT_DEREGISTER_ANY: i32 = 375;
    pub const DOMAIN_EVENT_CALLBACK_METADATA_CHANGE: i32 = 379;
    pub const CONNECT_SECRET_EVENT_REGISTER_ANY: i32 = 380;
    pub const CONNECT_SECRET_EVENT_DEREGISTER_ANY: i32 = 381;
    pub const DOMAIN_GET_MESSAGES: i32 = 426;
}

/// QEMU program procedure numbers (`qemu_procedure`).
pub mod qemu {
    pub const DOMAIN_MONITOR_COMMAND: i32 = 1;
}

/// KEEPALIVE program procedure numbers.
pub mod keepalive {
    pub const PING: i32 = 1;
    pub const PONG: i32 = 2;
}

/// `virDrvFeature` numbers clients ask about with CONNECT_SUPPORTS_FEATURE.
pub mod feature {
    /// CALL_WITH_FDS / REPLY_WITH_FDS (virDomainOpenGraphicsFD checks it first).
    pub const FD_PASSING: i32 = 8;
    pub const TYPED_PARAM_STRING: i32 = 9;
    pub const PROGRAM_KEEPALIVE: i32 = 10;
    pub const REMOTE_EVENT_CALLBACK: i32 = 14;
    pub const REMOTE_CLOSE_CALLBACK: i32 = 15;
}

xdr_struct! {
    /// `remote_nonnull_domain`; `id` is -1 for an inactive domain.
    pub struct NonnullDomain {
        pub name: String,
        pub uuid: [u8; 16],
        pub id: i32,
    }
}

xdr_struct! {
    /// `remote_nonnull_network`.
    pub struct NonnullNetwork {
        pub name: String,
        pub uuid: [u8; 16],
    }
}

// ---- connection ----

xdr_struct! {
    /// CONNECT_OPEN args (`remote_connect_open_args`).
    pub struct OpenArgs { pub name: Option<String>, pub flags: u32 }
}
xdr_struct! {
    /// Any `{ int x; }`: SUPPORTS_FEATURE args/ret, IS_ACTIVE/IS_PERSISTENT/… ret, etc.
    pub struct IntValue { pub value: i32 }
}
xdr_struct! {
    /// Any `{ unsigned hyper x; }`: GET_VERSION, GET_LIB_VERSION, NODE_GET_FREE_MEMORY,
    /// DOMAIN_GET_MAX_MEMORY ret.
    pub struct U64Value { pub value: u64 }
}
xdr_struct! {
    /// Any `{ remote_nonnull_string x; }`: GET_TYPE, GET_HOSTNAME, GET_URI,
    /// GET_CAPABILITIES, GET_XML_DESC, GET_OS_TYPE, GET_METADATA ret, DEFINE_XML args.
    pub struct StringValue { pub value: String }
}
xdr_struct! {
    /// Any `{ remote_string x; }`: CONNECT_GET_MAX_VCPUS args.
    pub struct OptStringValue { pub value: Option<String> }
}
xdr_struct! {
    /// `{ unsigned int flags; }`: CONNECT_GET_SYSINFO args.
    pub struct FlagsArgs { pub flags: u32 }
}
xdr_struct! {
    /// AUTH_LIST ret: `remote_auth_type types<>`.
    pub struct AuthListRet { pub types: Vec<i32> }
}

/// `char model[32]` of NODE_GET_INFO: 32 chars, each widened to 4 bytes, no count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model32(pub String);

impl Xdr for Model32 {
    fn encode(&self, e: &mut Encoder) {
        let bytes = self.0.as_bytes();
        for i in 0..32 {
            // Always NUL-terminated, like strncpy into a 32-byte buffer minus one.
            let c = if i < 31 {
                bytes.get(i).copied().unwrap_or(0)
            } else {
                0
            };
            e.i32(i32::from(c as i8));
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        let mut out = Vec::new();
        for _ in 0..32 {
            out.push(d.i32()? as u8);
        }
        let end = out.iter().position(|&c| c == 0).unwrap_or(out.len());
        Ok(Self(String::from_utf8_lossy(&out[..end]).into_owned()))
    }
}

xdr_struct! {
    /// NODE_GET_INFO ret; memory in KiB.
    pub struct NodeInfoRet {
        pub model: Model32,
        pub memory: u64,
        pub cpus: i32,
        pub mhz: i32,
        pub nodes: i32,
        pub sockets: i32,
        pub cores: i32,
        pub threads: i32,
    }
}
xdr_struct! {
    /// NODE_GET_SECURITY_MODEL ret.
    pub struct SecurityModelRet { pub model: CharArray, pub doi: CharArray }
}
xdr_struct! {
    /// CONNECT_GET_DOMAIN_CAPABILITIES args.
    pub struct DomainCapsArgs {
        pub emulatorbin: Option<String>,
        pub arch: Option<String>,
        pub machine: Option<String>,
        pub virttype: Option<String>,
        pub flags: u32,
    }
}

// ---- listing and lookup ----

xdr_struct! {
    /// CONNECT_LIST_ALL_DOMAINS (and every other LIST_ALL_*) args.
    pub struct ListAllArgs { pub need_results: i32, pub flags: u32 }
}
xdr_struct! {
    /// CONNECT_LIST_ALL_DOMAINS ret.
    pub struct ListAllDomainsRet { pub domains: Vec<NonnullDomain>, pub ret: u32 }
}
xdr_struct! {
    /// An empty LIST_ALL_{NETWORKS,…} ret: a zero-length array and a zero count
    /// (the element type does not matter when there are none).
    pub struct EmptyListRet { pub count: u32, pub ret: u32 }
}
xdr_struct! {
    /// CONNECT_LIST_DOMAINS ret.
    pub struct IdListRet { pub ids: Vec<i32> }
}
xdr_struct! {
    /// CONNECT_LIST_DEFINED_DOMAINS ret; DOMAIN_GET_MESSAGES ret.
    pub struct StringListRet { pub names: Vec<String> }
}
xdr_struct! {
    /// DOMAIN_LOOKUP_BY_UUID args.
    pub struct UuidArgs { pub uuid: [u8; 16] }
}
xdr_struct! {
    /// `{ remote_nonnull_domain dom; }`: args of CREATE, DESTROY, SUSPEND, … and ret of
    /// every lookup, DEFINE_XML, CREATE_XML, CREATE_WITH_FLAGS.
    pub struct DomainArgs { pub dom: NonnullDomain }
}
xdr_struct! {
    /// `{ dom; unsigned int flags; }`: REBOOT, RESET, DESTROY_FLAGS, GET_STATE, …
    pub struct DomainFlagsArgs { pub dom: NonnullDomain, pub flags: u32 }
}

// ---- lifecycle and config ----

xdr_struct! {
    /// DOMAIN_SAVE args.
    pub struct SaveArgs { pub dom: NonnullDomain, pub to: String }
}
xdr_struct! {
    /// DOMAIN_SAVE_FLAGS args.
    pub struct SaveFlagsArgs {
        pub dom: NonnullDomain,
        pub to: String,
        pub dxml: Option<String>,
        pub flags: u32,
    }
}
xdr_struct! {
    /// DOMAIN_RESTORE_FLAGS args (DOMAIN_RESTORE's is a [`StringValue`]).
    pub struct RestoreFlagsArgs { pub from: String, pub dxml: Option<String>, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_SAVE_IMAGE_GET_XML_DESC args.
    pub struct SaveImageXmlArgs { pub file: String, pub flags: u32 }
}

xdr_struct! {
    /// DOMAIN_CREATE_XML / DOMAIN_DEFINE_XML_FLAGS args.
    pub struct XmlFlagsArgs { pub xml: String, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_ATTACH_DEVICE / DOMAIN_DETACH_DEVICE args.
    pub struct DeviceArgs { pub dom: NonnullDomain, pub xml: String }
}
xdr_struct! {
    /// DOMAIN_UPDATE_DEVICE_FLAGS args (also ATTACH/DETACH_DEVICE_FLAGS' shape).
    pub struct DeviceFlagsArgs { pub dom: NonnullDomain, pub xml: String, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_SET_AUTOSTART args.
    pub struct SetAutostartArgs { pub dom: NonnullDomain, pub autostart: i32 }
}
xdr_struct! {
    /// DOMAIN_SET_MEMORY args.
    pub struct SetMemoryArgs { pub dom: NonnullDomain, pub memory: u64 }
}
xdr_struct! {
    /// DOMAIN_SET_MEMORY_FLAGS args.
    pub struct SetMemoryFlagsArgs { pub dom: NonnullDomain, pub memory: u64, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_SET_VCPUS args.
    pub struct SetVcpusArgs { pub dom: NonnullDomain, pub nvcpus: u32 }
}
xdr_struct! {
    /// DOMAIN_SET_VCPUS_FLAGS args.
    pub struct SetVcpusFlagsArgs { pub dom: NonnullDomain, pub nvcpus: u32, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_SET_METADATA args.
    pub struct SetMetadataArgs {
        pub dom: NonnullDomain,
        pub kind: i32,
        pub metadata: Option<String>,
        pub key: Option<String>,
        pub uri: Option<String>,
        pub flags: u32,
    }
}
xdr_struct! {
    /// DOMAIN_GET_METADATA args.
    pub struct GetMetadataArgs {
        pub dom: NonnullDomain,
        pub kind: i32,
        pub uri: Option<String>,
        pub flags: u32,
    }
}
xdr_struct! {
    /// DOMAIN_RENAME args.
    pub struct RenameArgs { pub dom: NonnullDomain, pub new_name: Option<String>, pub flags: u32 }
}

// ---- state and info ----

xdr_struct! {
    /// DOMAIN_GET_INFO ret: `unsigned char state` and `unsigned short nrVirtCpu` are
    /// 4 bytes each on the wire; memory in KiB, cpuTime in ns.
    pub struct DomainInfoRet {
        pub state: u32,
        pub max_mem: u64,
        pub memory: u64,
        pub nr_virt_cpu: u32,
        pub cpu_time: u64,
    }
}
xdr_struct! {
    /// DOMAIN_GET_STATE ret.
    pub struct StateRet { pub state: i32, pub reason: i32 }
}
xdr_struct! {
    /// DOMAIN_GET_SECURITY_LABEL ret.
    pub struct SecurityLabelRet { pub label: CharArray, pub enforcing: i32 }
}
xdr_struct! {
    /// DOMAIN_GET_SCHEDULER_TYPE ret.
    pub struct SchedulerTypeRet { pub kind: String, pub nparams: i32 }
}
xdr_struct! {
    /// DOMAIN_MEMORY_STATS args.
    pub struct MemoryStatsArgs { pub dom: NonnullDomain, pub max_stats: u32, pub flags: u32 }
}
xdr_struct! {
    /// One `remote_domain_memory_stat` (tags: `VIR_DOMAIN_MEMORY_STAT_*`).
    pub struct MemoryStat { pub tag: i32, pub val: u64 }
}
xdr_struct! {
    /// DOMAIN_MEMORY_STATS ret.
    pub struct MemoryStatsRet { pub stats: Vec<MemoryStat> }
}
xdr_struct! {
    /// DOMAIN_LIST_ALL_SNAPSHOTS args.
    pub struct ListSnapshotsArgs { pub dom: NonnullDomain, pub need_results: i32, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_INTERFACE_ADDRESSES args.
    pub struct InterfaceAddressesArgs { pub dom: NonnullDomain, pub source: u32, pub flags: u32 }
}

/// `remote_typed_param_value`: a union on `VIR_TYPED_PARAM_*`.
#[derive(Debug, Clone, PartialEq)]
pub enum TypedValue {
    Int(i32),
    UInt(u32),
    LLong(i64),
    ULLong(u64),
    Double(f64),
    Boolean(bool),
    String(String),
}

impl Default for TypedValue {
    fn default() -> Self {
        Self::Int(0)
    }
}

impl Xdr for TypedValue {
    fn encode(&self, e: &mut Encoder) {
        match self {
            Self::Int(v) => {
                e.i32(1);
                e.i32(*v)
            }
            Self::UInt(v) => {
                e.i32(2);
                e.u32(*v)
            }
            Self::LLong(v) => {
                e.i32(3);
                e.i64(*v)
            }
            Self::ULLong(v) => {
                e.i32(4);
                e.u64(*v)
            }
            Self::Double(v) => {
                e.i32(5);
                e.f64(*v)
            }
            Self::Boolean(v) => {
                e.i32(6);
                e.i32(i32::from(*v))
            }
            Self::String(v) => {
                e.i32(7);
                e.string(v)
            }
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(match d.i32()? {
            1 => Self::Int(d.i32()?),
            2 => Self::UInt(d.u32()?),
            3 => Self::LLong(d.i64()?),
            4 => Self::ULLong(d.u64()?),
            5 => Self::Double(d.f64()?),
            6 => Self::Boolean(d.i32()? != 0),
            7 => Self::String(String::decode(d)?),
            n => return Err(XdrError::UnknownUnionArm(n)),
        })
    }
}

xdr_struct! {
    /// `remote_typed_param`.
    pub struct TypedParam { pub field: String, pub value: TypedValue }
}
xdr_struct! {
    /// CONNECT_GET_ALL_DOMAIN_STATS args.
    pub struct AllDomainStatsArgs { pub doms: Vec<NonnullDomain>, pub stats: u32, pub flags: u32 }
}
xdr_struct! {
    /// `remote_domain_stats_record`.
    pub struct DomainStatsRecord { pub dom: NonnullDomain, pub params: Vec<TypedParam> }
}
xdr_struct! {
    /// CONNECT_GET_ALL_DOMAIN_STATS ret.
    pub struct AllDomainStatsRet { pub ret_stats: Vec<DomainStatsRecord> }
}

// ---- events, streams, QEMU ----

xdr_struct! {
    /// CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY args.
    pub struct EventRegisterArgs { pub event_id: i32, pub dom: Option<NonnullDomain> }
}
xdr_struct! {
    /// DOMAIN_EVENT_CALLBACK_LIFECYCLE message (the nested `msg` struct flattened: the
    /// wire form is the same).
    pub struct LifecycleMsg { pub callback_id: i32, pub dom: NonnullDomain, pub event: i32, pub detail: i32 }
}
xdr_struct! {
    /// DOMAIN_EVENT_CALLBACK_REBOOT message.
    pub struct RebootMsg { pub callback_id: i32, pub dom: NonnullDomain }
}
xdr_struct! {
    /// DOMAIN_EVENT_CALLBACK_TRAY_CHANGE message: `{callbackID; {dom; devAlias; reason}}`
    /// (the nested message flattens to the same bytes).
    pub struct TrayChangeMsg { pub callback_id: i32, pub dom: NonnullDomain, pub dev_alias: String, pub reason: i32 }
}
xdr_struct! {
    /// DOMAIN_EVENT_CALLBACK_DEVICE_ADDED and _DEVICE_REMOVED message:
    /// `{callbackID; {dom; devAlias}}`.
    pub struct DeviceEventMsg { pub callback_id: i32, pub dom: NonnullDomain, pub dev_alias: String }
}
xdr_struct! {
    /// DOMAIN_EVENT_CALLBACK_BALLOON_CHANGE message; `actual` in KiB.
    pub struct BalloonChangeMsg { pub callback_id: i32, pub dom: NonnullDomain, pub actual: u64 }
}
xdr_struct! {
    /// DOMAIN_EVENT_CALLBACK_METADATA_CHANGE message.
    pub struct MetadataChangeMsg {
        pub callback_id: i32,
        pub dom: NonnullDomain,
        pub kind: i32,
        pub nsuri: Option<String>,
    }
}
xdr_struct! {
    /// DOMAIN_OPEN_CONSOLE args.
    pub struct OpenConsoleArgs { pub dom: NonnullDomain, pub dev_name: Option<String>, pub flags: u32 }
}
xdr_struct! {
    /// QEMU DOMAIN_MONITOR_COMMAND args; flags bit 0 = HMP.
    pub struct MonitorCommandArgs { pub dom: NonnullDomain, pub cmd: String, pub flags: u32 }
}

/// Decodes the arguments of a CALL to `prog`/`proc_` with the structure the dispatcher
/// uses, without running it: the fuzz target's entry point (`fuzz/fuzz_targets/
/// rpc_decode.rs`), so every argument decoder sees hostile input.
pub fn decode_args(prog: u32, proc_: i32, payload: &[u8]) -> Result<(), XdrError> {
    use super::packet::PROGRAM_QEMU;
    use super::xdr::from_bytes as d;
    use remote::*;
    if prog == PROGRAM_QEMU {
        return d::<MonitorCommandArgs>(payload).map(drop);
    }
    match proc_ {
        CONNECT_OPEN => d::<OpenArgs>(payload).map(drop),
        CONNECT_SUPPORTS_FEATURE
        | DOMAIN_LOOKUP_BY_ID
        | CONNECT_LIST_DOMAINS
        | CONNECT_LIST_DEFINED_DOMAINS
        | CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY => d::<IntValue>(payload).map(drop),
        CONNECT_GET_MAX_VCPUS => d::<OptStringValue>(payload).map(drop),
        CONNECT_GET_SYSINFO => d::<FlagsArgs>(payload).map(drop),
        CONNECT_GET_DOMAIN_CAPABILITIES => d::<DomainCapsArgs>(payload).map(drop),
        CONNECT_LIST_ALL_DOMAINS | CONNECT_LIST_ALL_NETWORKS | CONNECT_LIST_ALL_STORAGE_POOLS => {
            d::<ListAllArgs>(payload).map(drop)
        }
        DOMAIN_LOOKUP_BY_NAME | DOMAIN_DEFINE_XML => d::<StringValue>(payload).map(drop),
        DOMAIN_LOOKUP_BY_UUID => d::<UuidArgs>(payload).map(drop),
        DOMAIN_CREATE_XML | DOMAIN_DEFINE_XML_FLAGS => d::<XmlFlagsArgs>(payload).map(drop),
        DOMAIN_CREATE
        | DOMAIN_DESTROY
        | DOMAIN_SHUTDOWN
        | DOMAIN_SUSPEND
        | DOMAIN_RESUME
        | DOMAIN_UNDEFINE
        | DOMAIN_GET_INFO
        | DOMAIN_GET_OS_TYPE
        | DOMAIN_IS_ACTIVE
        | DOMAIN_IS_PERSISTENT
        | DOMAIN_GET_AUTOSTART
        | DOMAIN_GET_SECURITY_LABEL => d::<DomainArgs>(payload).map(drop),
        DOMAIN_CREATE_WITH_FLAGS
        | DOMAIN_DESTROY_FLAGS
        | DOMAIN_SHUTDOWN_FLAGS
        | DOMAIN_REBOOT
        | DOMAIN_RESET
        | DOMAIN_UNDEFINE_FLAGS
        | DOMAIN_GET_XML_DESC
        | DOMAIN_GET_STATE
        | DOMAIN_GET_VCPUS_FLAGS
        | DOMAIN_GET_MESSAGES
        | DOMAIN_MANAGED_SAVE
        | DOMAIN_HAS_MANAGED_SAVE_IMAGE
        | DOMAIN_MANAGED_SAVE_REMOVE => d::<DomainFlagsArgs>(payload).map(drop),
        DOMAIN_SAVE => d::<SaveArgs>(payload).map(drop),
        DOMAIN_SAVE_FLAGS => d::<SaveFlagsArgs>(payload).map(drop),
        DOMAIN_RESTORE => d::<StringValue>(payload).map(drop),
        DOMAIN_RESTORE_FLAGS => d::<RestoreFlagsArgs>(payload).map(drop),
        DOMAIN_SAVE_IMAGE_GET_XML_DESC => d::<SaveImageXmlArgs>(payload).map(drop),
        DOMAIN_SET_AUTOSTART => d::<SetAutostartArgs>(payload).map(drop),
        DOMAIN_UPDATE_DEVICE_FLAGS => d::<DeviceFlagsArgs>(payload).map(drop),
        DOMAIN_SET_MEMORY => d::<SetMemoryArgs>(payload).map(drop),
        DOMAIN_SET_MEMORY_FLAGS => d::<SetMemoryFlagsArgs>(payload).map(drop),
        DOMAIN_SET_VCPUS => d::<SetVcpusArgs>(payload).map(drop),
        DOMAIN_SET_VCPUS_FLAGS => d::<SetVcpusFlagsArgs>(payload).map(drop),
        DOMAIN_SET_METADATA => d::<SetMetadataArgs>(payload).map(drop),
        DOMAIN_GET_METADATA => d::<GetMetadataArgs>(payload).map(drop),
        DOMAIN_RENAME => d::<RenameArgs>(payload).map(drop),
        DOMAIN_MEMORY_STATS => d::<MemoryStatsArgs>(payload).map(drop),
        CONNECT_GET_ALL_DOMAIN_STATS => d::<AllDomainStatsArgs>(payload).map(drop),
        CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY => d::<EventRegisterArgs>(payload).map(drop),
        DOMAIN_OPEN_CONSOLE => d::<OpenConsoleArgs>(payload).map(drop),
        DOMAIN_LIST_ALL_SNAPSHOTS => d::<ListSnapshotsArgs>(payload).map(drop),
        DOMAIN_INTERFACE_ADDRESSES => d::<InterfaceAddressesArgs>(payload).map(drop),
        p if super::network::decode_args(p, payload).is_some() => {
            super::network::decode_args(p, payload).unwrap_or(Ok(()))
        }
        // Replies and messages we send, decoded too so their decoders are exercised.
        _ => {
            let _ = d::<AllDomainStatsRet>(payload);
            let _ = d::<super::error::RemoteError>(payload);
            let _ = d::<NodeInfoRet>(payload);
            d::<()>(payload)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::packet::{hex, Packet};
    use super::super::xdr::{from_bytes, to_bytes};
    use super::*;

    fn payload(s: &str) -> Vec<u8> {
        Packet::parse(&hex(s)).unwrap().payload
    }

    const PROBE1_UUID: [u8; 16] = [
        0x0b, 0xba, 0xbd, 0xbc, 0x67, 0x8c, 0x45, 0x7a, 0xa3, 0x20, 0x83, 0x4f, 0x72, 0x77, 0xfa,
        0x1f,
    ];

    #[test]
    fn connect_open_call_decodes() {
        let p = payload("00000038 20008086 00000001 00000001 00000000 00000002 00000000 00000001 0000000f 71656d753a2f2f2f73657373696f6e 00 00000000");
        let a: OpenArgs = from_bytes(&p).unwrap();
        assert_eq!(a.name.as_deref(), Some("qemu:///session"));
        assert_eq!(a.flags, 0);
    }

    /// virsh 9.0 `update-device cap nic.xml --config`: the REMOTE proc 174 call.
    const UPDATE_DEVICE_CALL: &str =
        "000000a0 20008086 00000001 000000ae 00000000 00000007 00000000 \
         00000003 636170 00 0bbabdbc678c457aa320834f7277fa1f ffffffff \
         0000005e 3c696e7465726661636520747970653d2765746865726e6574273e3c6d61632061646472\
         6573733d2735323a35343a30303a30303a30303a3031272f3e3c6c696e6b2073746174653d2764\
         6f776e272f3e3c2f696e746572666163653e0a 0000 00000002";

    #[test]
    fn update_device_flags_call_matches_capture() {
        let a: DeviceFlagsArgs = from_bytes(&payload(UPDATE_DEVICE_CALL)).unwrap();
        assert_eq!(a.dom.name, "cap");
        assert_eq!(a.dom.uuid, PROBE1_UUID);
        assert_eq!(
            a.xml,
            "<interface type='ethernet'><mac address='52:54:00:00:00:01'/><link state='down'/></interface>\n"
        );
        assert_eq!(a.flags, 2);
        assert_eq!(to_bytes(&a), payload(UPDATE_DEVICE_CALL));
    }

    #[test]
    fn list_all_domains_reply_matches_capture() {
        let ret = ListAllDomainsRet {
            domains: vec![NonnullDomain {
                name: "probe1".into(),
                uuid: PROBE1_UUID,
                id: -1,
            }],
            ret: 1,
        };
        assert_eq!(
            to_bytes(&ret),
            payload("00000044 20008086 00000001 00000111 00000001 00000006 00000000 00000001 00000006 70726f626531 0000 0bbabdbc678c457aa320834f7277fa1f ffffffff 00000001")
        );
        let args: ListAllArgs = from_bytes(&payload(
            "00000024 20008086 00000001 00000111 00000000 00000006 00000000 00000001 00000003",
        ))
        .unwrap();
        assert_eq!((args.need_results, args.flags), (1, 3));
    }

    #[test]
    fn get_state_call_and_reply_match_capture() {
        let a: DomainFlagsArgs = from_bytes(&payload("00000040 20008086 00000001 000000d4 00000000 00000007 00000000 00000006 70726f626531 0000 0bbabdbc678c457aa320834f7277fa1f ffffffff 00000000")).unwrap();
        assert_eq!(a.dom.name, "probe1");
        assert_eq!(a.dom.uuid, PROBE1_UUID);
        let r = StateRet {
            state: 5,
            reason: 0,
        };
        assert_eq!(
            to_bytes(&r),
            payload(
                "00000024 20008086 00000001 000000d4 00000001 00000007 00000000 00000005 00000000"
            )
        );
    }

    #[test]
    fn get_info_reply_matches_capture() {
        let r = DomainInfoRet {
            state: 1,
            max_mem: 0x20000,
            memory: 0x20000,
            nr_virt_cpu: 1,
            cpu_time: 870_000_000,
        };
        assert_eq!(to_bytes(&r), payload("0000003c 20008086 00000001 00000010 00000001 00000008 00000000 00000001 0000000000020000 0000000000020000 00000001 0000000033db2580"));
    }

    #[test]
    fn event_registration_and_lifecycle_message_match_capture() {
        let a: EventRegisterArgs = from_bytes(&payload(
            "00000024 20008086 00000001 0000013c 00000000 00000006 00000000 00000000 00000000",
        ))
        .unwrap();
        assert_eq!((a.event_id, a.dom), (0, None));
        let msg = LifecycleMsg {
            callback_id: 0x51,
            dom: NonnullDomain {
                name: "probe1".into(),
                uuid: [
                    0x6a, 0x88, 0x8e, 0x3b, 0x22, 0x49, 0x45, 0xda, 0xa9, 0xc2, 0xc6, 0x73, 0x1e,
                    0x2e, 0xbd, 0xe4,
                ],
                id: 4,
            },
            event: 4,
            detail: 0,
        };
        assert_eq!(to_bytes(&msg), payload("00000048 20008086 00000001 0000013e 00000002 00000001 00000000 00000051 00000006 70726f626531 0000 6a888e3b224945daa9c2c6731e2ebde4 00000004 00000004 00000000"));
    }

    #[test]
    fn open_console_and_monitor_command_calls_decode() {
        let c: OpenConsoleArgs = from_bytes(&payload("00000044 20008086 00000001 000000c9 00000000 00000008 00000000 00000006 70726f626531 0000 6a888e3b224945daa9c2c6731e2ebde4 00000002 00000000 00000000")).unwrap();
        assert_eq!((c.dev_name, c.flags, c.dom.id), (None, 0, 2));
        let m: MonitorCommandArgs = from_bytes(&payload("00000060 20008087 00000001 00000001 00000000 00000007 00000000 00000006 70726f626531 0000 0bbabdbc678c457aa320834f7277fa1f 00000001 0000001a 7b2265786563757465223a2271756572792d737461747573227d 0000 00000000")).unwrap();
        assert_eq!(m.cmd, r#"{"execute":"query-status"}"#);
        let r = StringValue {
            value: r#"{"return":{"status":"running","singlestep":false,"running":true},"id":"libvirt-415"}"#.into(),
        };
        assert_eq!(to_bytes(&r), payload("00000074 20008087 00000001 00000001 00000001 00000007 00000000 00000054 7b2272657475726e223a7b22737461747573223a2272756e6e696e67222c2273696e676c6573746570223a66616c73652c2272756e6e696e67223a747275657d2c226964223a226c6962766972742d343135227d"));
    }

    #[test]
    fn auth_list_and_feature_replies_match_capture() {
        assert_eq!(
            to_bytes(&AuthListRet { types: vec![0] }),
            payload(
                "00000024 20008086 00000001 00000042 00000001 00000000 00000000 00000001 00000000"
            )
        );
        let f: IntValue = from_bytes(&payload(
            "00000020 20008086 00000001 0000003c 00000000 00000001 00000000 0000000a",
        ))
        .unwrap();
        assert_eq!(f.value, feature::PROGRAM_KEEPALIVE);
    }

    #[test]
    fn typed_params_round_trip_every_arm() {
        let params = vec![
            TypedParam {
                field: "a".into(),
                value: TypedValue::Int(-1),
            },
            TypedParam {
                field: "b".into(),
                value: TypedValue::UInt(2),
            },
            TypedParam {
                field: "c".into(),
                value: TypedValue::LLong(-3),
            },
            TypedParam {
                field: "d".into(),
                value: TypedValue::ULLong(4),
            },
            TypedParam {
                field: "e".into(),
                value: TypedValue::Double(0.5),
            },
            TypedParam {
                field: "f".into(),
                value: TypedValue::Boolean(true),
            },
            TypedParam {
                field: "g".into(),
                value: TypedValue::String("x".into()),
            },
        ];
        let back: Vec<TypedParam> = from_bytes(&to_bytes(&params)).unwrap();
        assert_eq!(back, params);
        assert!(from_bytes::<TypedValue>(&[0, 0, 0, 9, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn node_info_model_is_32_widened_chars() {
        let r = NodeInfoRet {
            model: Model32("x86_64".into()),
            ..Default::default()
        };
        let bytes = to_bytes(&r);
        assert_eq!(bytes.len(), 32 * 4 + 8 + 6 * 4);
        assert_eq!(&bytes[..8], &[0, 0, 0, b'x', 0, 0, 0, b'8']);
        assert_eq!(from_bytes::<NodeInfoRet>(&bytes).unwrap().model.0, "x86_64");
    }
}

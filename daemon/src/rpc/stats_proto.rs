//! Host and domain statistics procedures of libvirt's REMOTE program
//! (`remote_protocol.x`, libvirt 9.0): numbers and argument/return structures.

use super::proto::{NonnullDomain, TypedParam};
use super::xdr::{xdr_struct, Decoder, Encoder, Xdr, XdrError};

/// Procedure numbers.
pub mod proc_ {
    pub const DOMAIN_GET_VCPUS: i32 = 20;
    pub const DOMAIN_PIN_VCPU: i32 = 26;
    pub const DOMAIN_BLOCK_STATS: i32 = 64;
    pub const DOMAIN_INTERFACE_STATS: i32 = 65;
    pub const NODE_GET_CELLS_FREE_MEMORY: i32 = 101;
    pub const DOMAIN_GET_JOB_INFO: i32 = 163;
    pub const DOMAIN_GET_BLOCK_INFO: i32 = 194;
    pub const CONNECT_GET_SYSINFO: i32 = 203;
    pub const DOMAIN_PIN_VCPU_FLAGS: i32 = 225;
    pub const NODE_GET_CPU_STATS: i32 = 227;
    pub const NODE_GET_MEMORY_STATS: i32 = 228;
    pub const DOMAIN_GET_CONTROL_INFO: i32 = 229;
    pub const DOMAIN_GET_VCPU_PIN_INFO: i32 = 230;
    pub const DOMAIN_BLOCK_STATS_FLAGS: i32 = 243;
    pub const DOMAIN_GET_CPU_STATS: i32 = 262;
    pub const DOMAIN_PIN_EMULATOR: i32 = 279;
    pub const DOMAIN_GET_EMULATOR_PIN_INFO: i32 = 280;
    pub const NODE_GET_CPU_MAP: i32 = 293;
    pub const DOMAIN_GET_JOB_STATS: i32 = 298;
    pub const DOMAIN_GET_TIME: i32 = 337;
    pub const CONNECT_GET_ALL_DOMAIN_STATS: i32 = 344;
}

/// `opaque x<MAX>` (CPU maps): a length word, the bytes, padding to 4.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opaque(pub Vec<u8>);

/// `REMOTE_CPUMAPS_MAX`, the largest CPU-map blob.
const OPAQUE_MAX: usize = 16384;

impl Xdr for Opaque {
    fn encode(&self, e: &mut Encoder) {
        e.opaque(&self.0)
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(Self(d.opaque(OPAQUE_MAX)?.to_vec()))
    }
}

xdr_struct! {
    /// NODE_GET_CPU_STATS args.
    pub struct NodeCpuStatsArgs { pub cpu_num: i32, pub nparams: i32, pub flags: u32 }
}
xdr_struct! {
    /// NODE_GET_MEMORY_STATS args (note the order: nparams first).
    pub struct NodeMemoryStatsArgs { pub nparams: i32, pub cell_num: i32, pub flags: u32 }
}
xdr_struct! {
    /// `remote_node_get_cpu_stats` / `remote_node_get_memory_stats`.
    pub struct NodeStat { pub field: String, pub value: u64 }
}
xdr_struct! {
    /// NODE_GET_CPU_STATS / NODE_GET_MEMORY_STATS ret.
    pub struct NodeStatsRet { pub params: Vec<NodeStat>, pub nparams: i32 }
}
xdr_struct! {
    /// NODE_GET_CELLS_FREE_MEMORY args.
    pub struct CellsFreeArgs { pub start_cell: i32, pub maxcells: i32 }
}
xdr_struct! {
    /// NODE_GET_CELLS_FREE_MEMORY ret (bytes per cell).
    pub struct CellsFreeRet { pub cells: Vec<u64> }
}
xdr_struct! {
    /// NODE_GET_CPU_MAP args.
    pub struct CpuMapArgs { pub need_map: i32, pub need_online: i32, pub flags: u32 }
}
xdr_struct! {
    /// NODE_GET_CPU_MAP ret: `ret` is the number of CPUs the map covers.
    pub struct CpuMapRet { pub cpumap: Opaque, pub online: u32, pub ret: i32 }
}
xdr_struct! {
    /// `remote_vcpu_info`.
    pub struct VcpuInfo { pub number: u32, pub state: i32, pub cpu_time: u64, pub cpu: i32 }
}
xdr_struct! {
    /// DOMAIN_GET_VCPUS args.
    pub struct GetVcpusArgs { pub dom: NonnullDomain, pub maxinfo: i32, pub maplen: i32 }
}
xdr_struct! {
    /// DOMAIN_GET_VCPUS ret.
    pub struct GetVcpusRet { pub info: Vec<VcpuInfo>, pub cpumaps: Opaque }
}
xdr_struct! {
    /// DOMAIN_PIN_VCPU args.
    pub struct PinVcpuArgs { pub dom: NonnullDomain, pub vcpu: u32, pub cpumap: Opaque }
}
xdr_struct! {
    /// DOMAIN_PIN_VCPU_FLAGS args.
    pub struct PinVcpuFlagsArgs { pub dom: NonnullDomain, pub vcpu: u32, pub cpumap: Opaque, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_GET_VCPU_PIN_INFO args.
    pub struct VcpuPinInfoArgs { pub dom: NonnullDomain, pub ncpumaps: i32, pub maplen: i32, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_GET_VCPU_PIN_INFO / GET_EMULATOR_PIN_INFO ret.
    pub struct PinInfoRet { pub cpumaps: Opaque, pub num: i32 }
}
xdr_struct! {
    /// DOMAIN_PIN_EMULATOR args.
    pub struct PinEmulatorArgs { pub dom: NonnullDomain, pub cpumap: Opaque, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_GET_EMULATOR_PIN_INFO args.
    pub struct EmulatorPinInfoArgs { pub dom: NonnullDomain, pub maplen: i32, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_BLOCK_STATS / DOMAIN_INTERFACE_STATS args.
    pub struct DomainPathArgs { pub dom: NonnullDomain, pub path: String }
}
xdr_struct! {
    /// DOMAIN_BLOCK_STATS ret.
    pub struct BlockStatsRet { pub rd_req: i64, pub rd_bytes: i64, pub wr_req: i64, pub wr_bytes: i64, pub errs: i64 }
}
xdr_struct! {
    /// DOMAIN_BLOCK_STATS_FLAGS args.
    pub struct BlockStatsFlagsArgs { pub dom: NonnullDomain, pub path: String, pub nparams: i32, pub flags: u32 }
}
xdr_struct! {
    /// Every `{remote_typed_param params<>; int nparams;}` ret.
    pub struct TypedParamsRet { pub params: Vec<TypedParam>, pub nparams: i32 }
}
xdr_struct! {
    /// DOMAIN_INTERFACE_STATS ret.
    pub struct InterfaceStatsRet {
        pub rx_bytes: i64, pub rx_packets: i64, pub rx_errs: i64, pub rx_drop: i64,
        pub tx_bytes: i64, pub tx_packets: i64, pub tx_errs: i64, pub tx_drop: i64,
    }
}
xdr_struct! {
    /// DOMAIN_GET_BLOCK_INFO args.
    pub struct BlockInfoArgs { pub dom: NonnullDomain, pub path: String, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_GET_BLOCK_INFO ret (bytes).
    pub struct BlockInfoRet { pub allocation: u64, pub capacity: u64, pub physical: u64 }
}
xdr_struct! {
    /// DOMAIN_GET_CONTROL_INFO ret.
    pub struct ControlInfoRet { pub state: u32, pub details: u32, pub state_time: u64 }
}
xdr_struct! {
    /// DOMAIN_GET_JOB_INFO ret.
    pub struct JobInfoRet {
        pub kind: i32,
        pub time_elapsed: u64, pub time_remaining: u64,
        pub data_total: u64, pub data_processed: u64, pub data_remaining: u64,
        pub mem_total: u64, pub mem_processed: u64, pub mem_remaining: u64,
        pub file_total: u64, pub file_processed: u64, pub file_remaining: u64,
    }
}
xdr_struct! {
    /// DOMAIN_GET_JOB_STATS ret.
    pub struct JobStatsRet { pub kind: i32, pub params: Vec<TypedParam> }
}
xdr_struct! {
    /// DOMAIN_GET_CPU_STATS args.
    pub struct CpuStatsArgs { pub dom: NonnullDomain, pub nparams: u32, pub start_cpu: i32, pub ncpus: u32, pub flags: u32 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::xdr::{from_bytes, to_bytes};

    #[test]
    fn cpu_map_ret_pads_the_opaque() {
        let r = CpuMapRet {
            cpumap: Opaque(vec![0b11]),
            online: 2,
            ret: 2,
        };
        let b = to_bytes(&r);
        assert_eq!(b, [0, 0, 0, 1, 3, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2]);
        assert_eq!(from_bytes::<CpuMapRet>(&b).unwrap(), r);
    }
}

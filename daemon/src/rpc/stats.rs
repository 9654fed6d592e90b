//! Host and domain statistics procedures: decode, call the core
//! ([`crate::core::host_info`], [`crate::core::stats`]), encode with libvirt 9.0's
//! field names, types and units (the typed-parameter names of `libvirt-host.h` and
//! `libvirt-domain.h`, the bulk-stats names of `qemu_driver.c`).

use uuid::Uuid;

use super::conn::Conn;
use super::dispatch::{args, ret, void, CallResult};
use super::domain::{vir, wire_domain};
use super::error::{from, VirError};
use super::packet::Header;
use super::proto::{
    AllDomainStatsArgs, AllDomainStatsRet, DomainArgs, DomainFlagsArgs, DomainStatsRecord,
    FlagsArgs, NonnullDomain, StringValue, TypedParam, TypedValue,
};
use super::stats_proto::*;
use crate::core::stats::{group, StatValue, VcpuStat};
use crate::core::{self, host_info, Core};

/// Whether this module serves procedure `p`.
pub fn handles(p: i32) -> bool {
    use proc_::*;
    matches!(
        p,
        DOMAIN_GET_VCPUS
            | DOMAIN_PIN_VCPU
            | DOMAIN_BLOCK_STATS
            | DOMAIN_INTERFACE_STATS
            | NODE_GET_CELLS_FREE_MEMORY
            | DOMAIN_GET_JOB_INFO
            | DOMAIN_GET_BLOCK_INFO
            | CONNECT_GET_SYSINFO
            | DOMAIN_PIN_VCPU_FLAGS
            | NODE_GET_CPU_STATS
            | NODE_GET_MEMORY_STATS
            | DOMAIN_GET_CONTROL_INFO
            | DOMAIN_GET_VCPU_PIN_INFO
            | DOMAIN_BLOCK_STATS_FLAGS
            | DOMAIN_GET_CPU_STATS
            | DOMAIN_PIN_EMULATOR
            | DOMAIN_GET_EMULATOR_PIN_INFO
            | NODE_GET_CPU_MAP
            | DOMAIN_GET_JOB_STATS
            | CONNECT_GET_ALL_DOMAIN_STATS
    )
}

/// Everything here reads, except pinning.
pub fn read_only_safe(p: i32) -> bool {
    use proc_::*;
    handles(p)
        && !matches!(
            p,
            DOMAIN_PIN_VCPU | DOMAIN_PIN_VCPU_FLAGS | DOMAIN_PIN_EMULATOR
        )
}

/// `VIR_TYPED_PARAM_STRING_OKAY`: clients add it to every typed-parameter getter.
const STRING_OKAY: u32 = 1 << 2;

/// `VIR_DOMAIN_AFFECT_LIVE` / `_CONFIG`.
const AFFECT_LIVE: u32 = 1;
const AFFECT_CONFIG: u32 = 2;

fn uuid_of(d: &NonnullDomain) -> Uuid {
    Uuid::from_bytes(d.uuid)
}

fn check_flags(flags: u32, allowed: u32, api: &str) -> Result<(), VirError> {
    core::Error::check_flags(flags, allowed, api).map_err(vir)
}

/// Dispatches one procedure of this module.
pub async fn call(conn: &mut Conn, h: &Header, payload: &[u8]) -> CallResult {
    let core = conn.shared.core.clone();
    let p = h.proc_;
    use proc_::*;
    match p {
        NODE_GET_CPU_STATS => {
            let a: NodeCpuStatsArgs = args(p, payload)?;
            check_flags(a.flags, 0, "virNodeGetCPUStats")?;
            node_stats(host_info::cpu_stats(a.cpu_num).map_err(vir)?, a.nparams)
        }
        NODE_GET_MEMORY_STATS => {
            let a: NodeMemoryStatsArgs = args(p, payload)?;
            check_flags(a.flags, 0, "virNodeGetMemoryStats")?;
            node_stats(host_info::memory_stats(a.cell_num).map_err(vir)?, a.nparams)
        }
        NODE_GET_CELLS_FREE_MEMORY => {
            let a: CellsFreeArgs = args(p, payload)?;
            ret(CellsFreeRet {
                cells: host_info::cells_free_memory(a.start_cell, a.maxcells).map_err(vir)?,
            })
        }
        NODE_GET_CPU_MAP => {
            let a: CpuMapArgs = args(p, payload)?;
            check_flags(a.flags, 0, "virNodeGetCPUMap")?;
            let map = host_info::cpu_map().map_err(vir)?;
            ret(CpuMapRet {
                cpumap: Opaque(if a.need_map != 0 {
                    bitmap(&map, map.len().div_ceil(8))
                } else {
                    Vec::new()
                }),
                online: if a.need_online != 0 {
                    map.iter().filter(|&&o| o).count() as u32
                } else {
                    0
                },
                ret: map.len() as i32,
            })
        }
        CONNECT_GET_SYSINFO => {
            let a: FlagsArgs = args(p, payload)?;
            check_flags(a.flags, 0, "virConnectGetSysinfo")?;
            ret(StringValue {
                value: host_info::sysinfo(),
            })
        }
        DOMAIN_GET_VCPUS => {
            let a: GetVcpusArgs = args(p, payload)?;
            get_vcpus(&core, a).await
        }
        DOMAIN_PIN_VCPU => {
            let a: PinVcpuArgs = args(p, payload)?;
            pin_vcpu(&core, &a.dom, a.vcpu, &a.cpumap, AFFECT_LIVE).await
        }
        DOMAIN_PIN_VCPU_FLAGS => {
            let a: PinVcpuFlagsArgs = args(p, payload)?;
            pin_vcpu(&core, &a.dom, a.vcpu, &a.cpumap, a.flags).await
        }
        DOMAIN_GET_VCPU_PIN_INFO => {
            let a: VcpuPinInfoArgs = args(p, payload)?;
            let live = live_or_config(&core, &a.dom, a.flags, "virDomainGetVcpuPinInfo")?;
            let maps = core
                .vcpu_pin_info(&uuid_of(&a.dom), live)
                .await
                .map_err(vir)?;
            let maplen = a.maplen.max(0) as usize;
            let n = maps.len().min(a.ncpumaps.max(0) as usize);
            let mut bytes = vec![0u8; a.ncpumaps.max(0) as usize * maplen];
            for (i, m) in maps.iter().take(n).enumerate() {
                bytes[i * maplen..(i + 1) * maplen].copy_from_slice(&bitmap(m, maplen));
            }
            ret(PinInfoRet {
                cpumaps: Opaque(bytes),
                num: n as i32,
            })
        }
        DOMAIN_GET_EMULATOR_PIN_INFO => {
            let a: EmulatorPinInfoArgs = args(p, payload)?;
            let live = live_or_config(&core, &a.dom, a.flags, "virDomainGetEmulatorPinInfo")?;
            let m = core
                .emulator_pin_info(&uuid_of(&a.dom), live)
                .map_err(vir)?;
            ret(PinInfoRet {
                cpumaps: Opaque(bitmap(&m, a.maplen.max(0) as usize)),
                num: 1,
            })
        }
        DOMAIN_PIN_EMULATOR => {
            let a: PinEmulatorArgs = args(p, payload)?;
            let live = live_or_config(&core, &a.dom, a.flags, "virDomainPinEmulator")?;
            if !live {
                return Err(config_pinning());
            }
            core.pin_emulator(&uuid_of(&a.dom), &unbitmap(&a.cpumap.0))
                .await
                .map_err(vir)?;
            void()
        }
        DOMAIN_BLOCK_STATS => {
            let a: DomainPathArgs = args(p, payload)?;
            let c = core
                .block_counters(&uuid_of(&a.dom), &a.path)
                .await
                .map_err(vir)?;
            ret(BlockStatsRet {
                rd_req: c.rd_req,
                rd_bytes: c.rd_bytes,
                wr_req: c.wr_req,
                wr_bytes: c.wr_bytes,
                // QEMU keeps no error count; libvirt answers -1.
                errs: -1,
            })
        }
        DOMAIN_BLOCK_STATS_FLAGS => {
            let a: BlockStatsFlagsArgs = args(p, payload)?;
            check_flags(a.flags, STRING_OKAY, "virDomainBlockStatsFlags")?;
            let c = core
                .block_counters(&uuid_of(&a.dom), &a.path)
                .await
                .map_err(vir)?;
            let all = [
                ("rd_operations", c.rd_req),
                ("rd_bytes", c.rd_bytes),
                ("rd_total_times", c.rd_total_times),
                ("wr_operations", c.wr_req),
                ("wr_bytes", c.wr_bytes),
                ("wr_total_times", c.wr_total_times),
                ("flush_operations", c.flush_req),
                ("flush_total_times", c.flush_total_times),
            ];
            typed_params(
                all.iter()
                    .map(|(f, v)| param(f, TypedValue::LLong(*v)))
                    .collect(),
                a.nparams,
            )
        }
        DOMAIN_INTERFACE_STATS => {
            let a: DomainPathArgs = args(p, payload)?;
            let c = core
                .interface_counters(&uuid_of(&a.dom), &a.path)
                .map_err(vir)?;
            ret(InterfaceStatsRet {
                rx_bytes: c.rx_bytes,
                rx_packets: c.rx_packets,
                rx_errs: c.rx_errs,
                rx_drop: c.rx_drop,
                tx_bytes: c.tx_bytes,
                tx_packets: c.tx_packets,
                tx_errs: c.tx_errs,
                tx_drop: c.tx_drop,
            })
        }
        DOMAIN_GET_BLOCK_INFO => {
            let a: BlockInfoArgs = args(p, payload)?;
            check_flags(a.flags, 0, "virDomainGetBlockInfo")?;
            let s = core.block_info(&uuid_of(&a.dom), &a.path).map_err(vir)?;
            ret(BlockInfoRet {
                allocation: s.allocation,
                capacity: s.capacity,
                physical: s.physical,
            })
        }
        DOMAIN_GET_CONTROL_INFO => {
            let a: DomainFlagsArgs = args(p, payload)?;
            check_flags(a.flags, 0, "virDomainGetControlInfo")?;
            let ok = core.control_ok(&uuid_of(&a.dom)).await.map_err(vir)?;
            // VIR_DOMAIN_CONTROL_OK = 0, VIR_DOMAIN_CONTROL_ERROR = 4 (details 2:
            // VIR_DOMAIN_CONTROL_ERROR_REASON_MONITOR).
            ret(ControlInfoRet {
                state: if ok { 0 } else { 4 },
                details: if ok { 0 } else { 2 },
                state_time: 0,
            })
        }
        DOMAIN_GET_JOB_INFO => {
            let a: DomainArgs = args(p, payload)?;
            require_active(&core, &a.dom)?;
            // No job ever runs (no migration, save or dump): VIR_DOMAIN_JOB_NONE.
            ret(JobInfoRet::default())
        }
        DOMAIN_GET_JOB_STATS => {
            let a: DomainFlagsArgs = args(p, payload)?;
            // VIR_DOMAIN_JOB_STATS_COMPLETED | _KEEP_COMPLETED.
            check_flags(a.flags, 1 | 2 | STRING_OKAY, "virDomainGetJobStats")?;
            require_active(&core, &a.dom)?;
            ret(JobStatsRet {
                kind: 0,
                params: Vec::new(),
            })
        }
        DOMAIN_GET_CPU_STATS => {
            let a: CpuStatsArgs = args(p, payload)?;
            cpu_stats(&core, a).await
        }
        CONNECT_GET_ALL_DOMAIN_STATS => {
            let a: AllDomainStatsArgs = args(p, payload)?;
            all_domain_stats(&core, a).await
        }
        _ => Err(VirError::no_support(&format!("procedure {p}"))),
    }
}

fn param(field: &str, value: TypedValue) -> TypedParam {
    TypedParam {
        field: field.into(),
        value,
    }
}

/// libvirt's typed-parameter getter convention: `nparams == 0` asks for the count.
fn typed_params(all: Vec<TypedParam>, nparams: i32) -> CallResult {
    if nparams == 0 {
        return ret(TypedParamsRet {
            params: Vec::new(),
            nparams: all.len() as i32,
        });
    }
    let params: Vec<TypedParam> = all.into_iter().take(nparams.max(0) as usize).collect();
    let n = params.len() as i32;
    ret(TypedParamsRet { params, nparams: n })
}

/// NODE_GET_CPU_STATS / NODE_GET_MEMORY_STATS with the same count convention.
fn node_stats(all: Vec<(&'static str, u64)>, nparams: i32) -> CallResult {
    if nparams == 0 {
        return ret(NodeStatsRet {
            params: Vec::new(),
            nparams: all.len() as i32,
        });
    }
    let params: Vec<NodeStat> = all
        .into_iter()
        .take(nparams.max(0) as usize)
        .map(|(f, v)| NodeStat {
            field: f.into(),
            value: v,
        })
        .collect();
    let n = params.len() as i32;
    ret(NodeStatsRet { params, nparams: n })
}

/// libvirt's CPU map: bit `c % 8` of byte `c / 8`, `len` bytes.
fn bitmap(map: &[bool], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (c, _) in map.iter().enumerate().filter(|(_, on)| **on) {
        if let Some(b) = out.get_mut(c / 8) {
            *b |= 1 << (c % 8);
        }
    }
    out
}

fn unbitmap(bytes: &[u8]) -> Vec<bool> {
    (0..bytes.len() * 8)
        .map(|c| bytes[c / 8] & (1 << (c % 8)) != 0)
        .collect()
}

fn require_active(core: &Core, dom: &NonnullDomain) -> Result<(), VirError> {
    if core.info(&uuid_of(dom)).map_err(vir)?.state.is_active() {
        Ok(())
    } else {
        Err(VirError::operation_invalid("domain is not running"))
    }
}

/// `VIR_DOMAIN_AFFECT_*` of a getter or pinning call: whether it means the live
/// domain (`true`) or the persistent definition.
fn live_or_config(
    core: &Core,
    dom: &NonnullDomain,
    flags: u32,
    api: &str,
) -> Result<bool, VirError> {
    check_flags(flags, AFFECT_LIVE | AFFECT_CONFIG, api)?;
    if flags & AFFECT_LIVE != 0 && flags & AFFECT_CONFIG != 0 {
        return Err(VirError::invalid_arg(
            "flags 'affect-live' and 'affect-config' are mutually exclusive",
        ));
    }
    let active = core.info(&uuid_of(dom)).map_err(vir)?.state.is_active();
    if flags & AFFECT_LIVE != 0 && !active {
        return Err(VirError::operation_invalid("domain is not running"));
    }
    Ok(flags & AFFECT_CONFIG == 0 && active)
}

/// Pinning kept in the persistent definition needs `<cputune>`, which the domain
/// model does not carry yet: say so rather than accept and forget it.
fn config_pinning() -> VirError {
    VirError::new(
        super::error::code::CONFIG_UNSUPPORTED,
        from::DOMAIN,
        "unsupported configuration: pinning in the persistent definition (<cputune>) is not supported; pin the running domain (--live)",
    )
}

async fn pin_vcpu(
    core: &Core,
    dom: &NonnullDomain,
    vcpu: u32,
    map: &Opaque,
    flags: u32,
) -> CallResult {
    if !live_or_config(core, dom, flags, "virDomainPinVcpuFlags")? {
        return Err(config_pinning());
    }
    core.pin_vcpu(&uuid_of(dom), vcpu, &unbitmap(&map.0))
        .await
        .map_err(vir)?;
    void()
}

async fn get_vcpus(core: &Core, a: GetVcpusArgs) -> CallResult {
    if a.maxinfo < 1 || a.maplen < 0 {
        return Err(VirError::invalid_arg(
            "maxinfo must be positive and maplen not negative",
        ));
    }
    let vcpus = core.vcpu_stats(&uuid_of(&a.dom)).await.map_err(vir)?;
    let maplen = a.maplen as usize;
    let mut maps = vec![0u8; a.maxinfo as usize * maplen];
    let shown: Vec<&VcpuStat> = vcpus.iter().take(a.maxinfo as usize).collect();
    for (i, v) in shown.iter().enumerate() {
        maps[i * maplen..(i + 1) * maplen].copy_from_slice(&bitmap(&v.affinity, maplen));
    }
    ret(GetVcpusRet {
        info: shown
            .iter()
            .map(|v| VcpuInfo {
                number: v.number,
                state: v.state,
                cpu_time: v.cpu_time_ns,
                cpu: v.cpu,
            })
            .collect(),
        cpumaps: Opaque(maps),
    })
}

/// DOMAIN_GET_CPU_STATS: totals (`start_cpu == -1`) or per host CPU; with
/// `nparams == 0` the count of parameters (or, with `ncpus == 0`, of host CPUs).
async fn cpu_stats(core: &Core, a: CpuStatsArgs) -> CallResult {
    check_flags(a.flags, STRING_OKAY, "virDomainGetCPUStats")?;
    let u = uuid_of(&a.dom);
    require_active(core, &a.dom)?;
    if a.start_cpu == -1 {
        if a.nparams == 0 {
            return ret(TypedParamsRet {
                params: Vec::new(),
                nparams: 3,
            });
        }
        let t = core.cpu_totals(&u).map_err(vir)?;
        return typed_params(
            vec![
                param("cpu_time", TypedValue::ULLong(t.cpu_time)),
                param("user_time", TypedValue::ULLong(t.user_time)),
                param("system_time", TypedValue::ULLong(t.system_time)),
            ],
            a.nparams as i32,
        );
    }
    let host = host_info::host_cpu_count() as i32;
    if a.start_cpu < 0 || (a.ncpus > 0 && a.start_cpu >= host) {
        return Err(VirError::invalid_arg(format!(
            "start_cpu {} larger than maximum of {}",
            a.start_cpu,
            host - 1
        )));
    }
    if a.nparams == 0 {
        return ret(TypedParamsRet {
            params: Vec::new(),
            nparams: if a.ncpus == 0 { host } else { 2 },
        });
    }
    let per = core.cpu_stats_per_cpu(&u).await.map_err(vir)?;
    let n = (a.nparams as usize).min(2);
    let mut params = Vec::new();
    for (cpu, vcpu) in per.iter().skip(a.start_cpu as usize).take(a.ncpus as usize) {
        let both = [
            param("cpu_time", TypedValue::ULLong(*cpu)),
            param("vcpu_time", TypedValue::ULLong(*vcpu)),
        ];
        params.extend(both.into_iter().take(n));
    }
    ret(TypedParamsRet {
        params,
        nparams: n as i32,
    })
}

/// `VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT`, `_BACKING`, `_ENFORCE_STATS`.
const STATS_NOWAIT: u32 = 1 << 29;
const STATS_BACKING: u32 = 1 << 30;
const STATS_ENFORCE: u32 = 1 << 31;

async fn all_domain_stats(core: &Core, a: AllDomainStatsArgs) -> CallResult {
    let extra = STATS_NOWAIT | STATS_BACKING | STATS_ENFORCE;
    let doms = if a.doms.is_empty() {
        check_flags(
            a.flags,
            core::flags::list::ALL | extra,
            "virConnectGetAllDomainStats",
        )?;
        core.list(a.flags & core::flags::list::ALL)
            .map_err(vir)?
            .into_iter()
            .map(|i| i.domain)
            .collect()
    } else {
        check_flags(a.flags, extra, "virDomainListGetStats")?;
        a.doms
            .iter()
            .map(|d| core.lookup_by_uuid(&uuid_of(d)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(vir)?
    };
    if a.flags & STATS_ENFORCE != 0 && a.stats & !group::SERVED != 0 {
        return Err(VirError::new(
            super::error::code::OPERATION_UNSUPPORTED,
            from::DOMAIN,
            format!(
                "Operation not supported: Stats types bits 0x{:x} are not supported by this daemon",
                a.stats & !group::SERVED
            ),
        ));
    }
    let mut records = Vec::new();
    for d in doms {
        // A domain that went away between listing and reading is left out.
        let Ok(params) = domain_stats(core, &d.uuid, a.stats).await else {
            continue;
        };
        records.push(DomainStatsRecord {
            dom: wire_domain(&d),
            params,
        });
    }
    ret(AllDomainStatsRet { ret_stats: records })
}

/// One domain's record as typed parameters ([`Core::stats_record`] has the fields).
pub async fn domain_stats(core: &Core, u: &Uuid, groups: u32) -> Result<Vec<TypedParam>, VirError> {
    Ok(core
        .stats_record(u, groups)
        .await
        .map_err(vir)?
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
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_maps_use_libvirts_bit_order() {
        let m = [true, false, false, true, false, false, false, false, true];
        assert_eq!(bitmap(&m, 2), vec![0b0000_1001, 0b1]);
        assert_eq!(bitmap(&m, 1), vec![0b0000_1001]);
        assert_eq!(&unbitmap(&[0b1001])[..4], &[true, false, false, true]);
    }

    #[test]
    fn pinning_is_not_read_only() {
        assert!(read_only_safe(proc_::NODE_GET_CPU_STATS));
        assert!(read_only_safe(proc_::CONNECT_GET_ALL_DOMAIN_STATS));
        assert!(!read_only_safe(proc_::DOMAIN_PIN_VCPU_FLAGS));
        assert!(!read_only_safe(proc_::DOMAIN_PIN_EMULATOR));
    }
}

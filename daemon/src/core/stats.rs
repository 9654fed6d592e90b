//! Per-domain statistics and thread placement, as libvirt 9.0's QEMU driver answers
//! them: vCPUs (threads from QMP `query-cpus-fast`, times from /proc), CPU time per
//! domain and per host CPU, block counters (QMP `query-blockstats`) and sizes,
//! interface counters (the host side of the tap), vCPU and emulator pinning
//! (`sched_setaffinity` on the VMM's threads). Both front ends call these.

use std::fs;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use serde_json::Value;
use uuid::Uuid;

use super::host_info;
use super::supervise::Vm;
use super::{Core, Error, Result};

/// `VIR_VCPU_RUNNING`: every vCPU of a running domain (libvirt reports the same).
const VCPU_RUNNING: i32 = 1;

/// One vCPU of a running domain (`virVcpuInfo` plus the bulk-stats fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuStat {
    pub number: u32,
    pub state: i32,
    /// utime + stime of the vCPU thread, ns.
    pub cpu_time_ns: u64,
    /// Host CPU the thread last ran on.
    pub cpu: i32,
    /// Time spent runnable but waiting for a host CPU (schedstat), ns.
    pub delay_ns: u64,
    /// `se.statistics.wait_sum` of the thread, ns (0 where the kernel lacks it).
    pub wait_ns: u64,
    /// Host CPUs the thread may run on.
    pub affinity: Vec<bool>,
    pub thread_id: i32,
}

/// `virDomainGetCPUStats` totals (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTotals {
    pub cpu_time: u64,
    pub user_time: u64,
    pub system_time: u64,
}

/// Block counters of one disk, libvirt's `virDomainBlockStatsFlags` fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCounters {
    pub rd_req: i64,
    pub rd_bytes: i64,
    pub rd_total_times: i64,
    pub wr_req: i64,
    pub wr_bytes: i64,
    pub wr_total_times: i64,
    pub flush_req: i64,
    pub flush_total_times: i64,
}

/// `virDomainGetBlockInfo` (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockSizes {
    pub capacity: u64,
    pub allocation: u64,
    pub physical: u64,
}

/// One disk for the bulk `block` group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStat {
    pub target: String,
    pub path: Option<String>,
    pub counters: Option<BlockCounters>,
    pub sizes: Option<BlockSizes>,
}

/// `virDomainInterfaceStats` (guest's view: rx is what the guest received).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub rx_bytes: i64,
    pub rx_packets: i64,
    pub rx_errs: i64,
    pub rx_drop: i64,
    pub tx_bytes: i64,
    pub tx_packets: i64,
    pub tx_errs: i64,
    pub tx_drop: i64,
}

/// One interface for the bulk `interface` group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetStat {
    pub name: String,
    pub counters: NetCounters,
}

impl Core {
    /// vCPU thread ids in vCPU order, from the VMM.
    async fn vcpu_threads(&self, vm: &Vm) -> Result<Vec<(u32, i32)>> {
        let v = vm.qmp("query-cpus-fast", None).await?;
        let mut out: Vec<(u32, i32)> = v
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| {
                Some((
                    c["cpu-index"].as_u64()? as u32,
                    c["thread-id"].as_i64()? as i32,
                ))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// `virDomainGetVcpus` and the bulk `vcpu` group.
    pub async fn vcpu_stats(&self, uuid: &Uuid) -> Result<Vec<VcpuStat>> {
        let vm = self.vm_of(uuid)?;
        let ncpus = host_info::host_cpu_count();
        Ok(self
            .vcpu_threads(&vm)
            .await?
            .into_iter()
            .map(|(number, tid)| {
                let t = ThreadTimes::read(vm.pid, tid);
                VcpuStat {
                    number,
                    state: VCPU_RUNNING,
                    cpu_time_ns: t.cpu_time_ns,
                    cpu: t.last_cpu,
                    delay_ns: t.delay_ns,
                    wait_ns: t.wait_ns,
                    affinity: affinity(tid, ncpus),
                    thread_id: tid,
                }
            })
            .collect())
    }

    /// `virDomainGetVcpuPinInfo`: each vCPU's allowed host CPUs. Running domains
    /// report the threads' affinity; an inactive definition (no `<cputune>` pinning
    /// is kept) allows every host CPU, as libvirt's default.
    pub async fn vcpu_pin_info(&self, uuid: &Uuid, live: bool) -> Result<Vec<Vec<bool>>> {
        let ncpus = host_info::host_cpu_count();
        if !live {
            let n = self.info(uuid)?.vcpus;
            return Ok(vec![vec![true; ncpus as usize]; n as usize]);
        }
        Ok(self
            .vcpu_stats(uuid)
            .await?
            .into_iter()
            .map(|v| v.affinity)
            .collect())
    }

    /// `virDomainPinVcpuFlags` on the running domain: the vCPU thread's affinity.
    pub async fn pin_vcpu(&self, uuid: &Uuid, vcpu: u32, map: &[bool]) -> Result<()> {
        let vm = self.vm_of(uuid)?;
        let threads = self.vcpu_threads(&vm).await?;
        let (_, tid) = threads.iter().find(|(n, _)| *n == vcpu).ok_or_else(|| {
            Error::InvalidArg(format!(
                "vcpu {vcpu} is out of range of live cpu count {}",
                threads.len()
            ))
        })?;
        set_affinity(*tid, map)
    }

    /// `virDomainGetEmulatorPinInfo`: the allowed host CPUs of the VMM's main thread.
    pub fn emulator_pin_info(&self, uuid: &Uuid, live: bool) -> Result<Vec<bool>> {
        let ncpus = host_info::host_cpu_count();
        if !live {
            self.info(uuid)?;
            return Ok(vec![true; ncpus as usize]);
        }
        let vm = self.vm_of(uuid)?;
        Ok(affinity(vm.pid, ncpus))
    }

    /// `virDomainPinEmulator` on the running domain: every VMM thread that is not a
    /// vCPU (main loop, I/O, display) gets the new affinity.
    pub async fn pin_emulator(&self, uuid: &Uuid, map: &[bool]) -> Result<()> {
        let vm = self.vm_of(uuid)?;
        let vcpus: Vec<i32> = self
            .vcpu_threads(&vm)
            .await?
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let tasks = fs::read_dir(format!("/proc/{}/task", vm.pid))
            .map_err(|e| Error::System(format!("cannot list threads of VMM {}: {e}", vm.pid)))?;
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if !vcpus.contains(&tid) {
                set_affinity(tid, map)?;
            }
        }
        Ok(())
    }

    /// `virDomainGetCPUStats` totals: the whole VMM process.
    pub fn cpu_totals(&self, uuid: &Uuid) -> Result<CpuTotals> {
        let vm = self.vm_of(uuid)?;
        let (user, system) = proc_times(&format!("/proc/{}/stat", vm.pid))
            .ok_or_else(|| Error::System(format!("cannot read /proc/{}/stat", vm.pid)))?;
        Ok(CpuTotals {
            cpu_time: user + system,
            user_time: user,
            system_time: system,
        })
    }

    /// `virDomainGetCPUStats` per host CPU: (`cpu_time`, `vcpu_time`) for every
    /// host CPU. Without a cpuacct cgroup per domain, each thread's time is counted
    /// on the host CPU it last ran on (libvirt reads the cgroup's per-CPU usage).
    pub async fn cpu_stats_per_cpu(&self, uuid: &Uuid) -> Result<Vec<(u64, u64)>> {
        let vm = self.vm_of(uuid)?;
        let vcpus: Vec<i32> = self
            .vcpu_threads(&vm)
            .await?
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let n = host_info::host_cpu_count() as usize;
        let mut out = vec![(0u64, 0u64); n];
        let tasks = fs::read_dir(format!("/proc/{}/task", vm.pid))
            .map_err(|e| Error::System(format!("cannot list threads of VMM {}: {e}", vm.pid)))?;
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let times = ThreadTimes::read(vm.pid, tid);
            let Some(slot) = out.get_mut(times.last_cpu.max(0) as usize) else {
                continue;
            };
            slot.0 += times.cpu_time_ns;
            if vcpus.contains(&tid) {
                slot.1 += times.cpu_time_ns;
            }
        }
        Ok(out)
    }

    /// Block counters of the disk with target (or source path) `disk`; an empty name
    /// sums every disk, as libvirt's `virDomainBlockStats` with `""`.
    pub async fn block_counters(&self, uuid: &Uuid, disk: &str) -> Result<BlockCounters> {
        self.vm_of(uuid)?;
        let all = self.disk_stats(uuid).await?;
        if disk.is_empty() {
            return Ok(all
                .iter()
                .filter_map(|d| d.counters)
                .fold(BlockCounters::default(), BlockCounters::plus));
        }
        let d = find_disk(&all, disk)?;
        d.counters.ok_or_else(|| {
            Error::OperationFailed(format!("cannot find statistics for device '{disk}'"))
        })
    }

    /// `virDomainGetBlockInfo` of the disk with target (or source path) `disk`.
    pub fn block_info(&self, uuid: &Uuid, disk: &str) -> Result<BlockSizes> {
        let d = self
            .disks_of(uuid)?
            .into_iter()
            .find(|d| d.target == disk || d.path.as_deref() == Some(disk))
            .ok_or_else(|| {
                Error::InvalidArg(format!("invalid path {disk} not assigned to domain"))
            })?;
        d.sizes.ok_or_else(|| {
            Error::OperationInvalid(format!(
                "disk '{disk}' does not currently have a source assigned"
            ))
        })
    }

    /// Every disk with its sizes and, while running, its counters (bulk `block`).
    pub async fn disk_stats(&self, uuid: &Uuid) -> Result<Vec<DiskStat>> {
        let mut disks = self.disks_of(uuid)?;
        let vm = {
            let slot = self.slot(uuid)?;
            let r = slot.rec();
            r.vm.clone()
        };
        if let Some(vm) = vm {
            let v = vm.qmp("query-blockstats", None).await?;
            let aliases = self.disk_aliases(uuid)?;
            for (d, alias) in disks.iter_mut().zip(aliases) {
                let Some(alias) = alias else { continue };
                d.counters = v
                    .as_array()
                    .and_then(|a| a.iter().find(|b| b["qdev"] == alias.as_str()))
                    .map(|b| BlockCounters::from_qmp(&b["stats"]));
            }
        }
        Ok(disks)
    }

    fn disks_of(&self, uuid: &Uuid) -> Result<Vec<DiskStat>> {
        let slot = self.slot(uuid)?;
        let r = slot.rec();
        Ok(r.current()
            .disks()
            .iter()
            .map(|d| {
                let path = super::media::source_path(d).map(str::to_string);
                DiskStat {
                    target: d.target.dev.clone(),
                    sizes: path.as_deref().and_then(file_sizes),
                    path,
                    counters: None,
                }
            })
            .collect())
    }

    fn disk_aliases(&self, uuid: &Uuid) -> Result<Vec<Option<String>>> {
        let slot = self.slot(uuid)?;
        let r = slot.rec();
        Ok(r.current()
            .disks()
            .iter()
            .map(|d| d.alias.clone())
            .collect())
    }

    /// `virDomainInterfaceStats` of the interface named by its host device (target
    /// dev), MAC or alias.
    pub fn interface_counters(&self, uuid: &Uuid, device: &str) -> Result<NetCounters> {
        self.vm_of(uuid)?;
        self.net_stats(uuid)?
            .into_iter()
            .find(|n| n.name == device)
            .map(|n| n.counters)
            .or_else(|| {
                let slot = self.slot(uuid).ok()?;
                let r = slot.rec();
                let iface = r.current().interfaces().iter().find(|i| {
                    i.mac.eq_ignore_ascii_case(device) || i.alias.as_deref() == Some(device)
                })?;
                tap_counters(iface.target_dev.as_deref()?)
            })
            .ok_or_else(|| Error::InvalidArg(format!("'{device}' is not a known interface")))
    }

    /// Interfaces with a host-side device and their counters (bulk `interface`).
    pub fn net_stats(&self, uuid: &Uuid) -> Result<Vec<NetStat>> {
        let slot = self.slot(uuid)?;
        let r = slot.rec();
        if !r.active() {
            return Ok(Vec::new());
        }
        Ok(r.current()
            .interfaces()
            .iter()
            .filter_map(|i| {
                let dev = i.target_dev.as_deref()?;
                Some(NetStat {
                    name: dev.to_string(),
                    counters: tap_counters(dev)?,
                })
            })
            .collect())
    }
}

/// A value of a bulk-stats record, in the typed-parameter type libvirt gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatValue {
    Int(i32),
    UInt(u32),
    ULLong(u64),
    String(String),
    /// Guest info's `disk.N.partition`.
    Boolean(bool),
}

/// `virConnectGetAllDomainStats` groups (`VIR_DOMAIN_STATS_*`); 0 asks for all.
pub mod group {
    pub const STATE: u32 = 1;
    pub const CPU_TOTAL: u32 = 2;
    pub const BALLOON: u32 = 4;
    pub const VCPU: u32 = 8;
    pub const INTERFACE: u32 = 16;
    pub const BLOCK: u32 = 32;
    pub const PERF: u32 = 64;
    /// The groups a KVM domain of ours has.
    pub const SERVED: u32 = STATE | CPU_TOTAL | BALLOON | VCPU | INTERFACE | BLOCK | PERF;
}

impl Core {
    /// One domain's bulk-stats record (`virConnectGetAllDomainStats`,
    /// `virDomainListGetStats`, D-Bus `GetStats`): the groups asked for, in libvirt
    /// 9.0's order, with its field names and types (`qemuDomainGetStats*`).
    pub async fn stats_record(&self, u: &Uuid, groups: u32) -> Result<Vec<(String, StatValue)>> {
        use group::*;
        use StatValue::*;
        let want = |g: u32| groups == 0 || groups & g != 0;
        let s = self.stats(u).await?;
        let i = &s.info;
        let active = i.state.is_active();
        let mut out = Vec::new();
        let mut put = |field: std::string::String, value: StatValue| out.push((field, value));
        if want(STATE) {
            put("state.state".into(), Int(i.state.state as i32));
            put("state.reason".into(), Int(i.state.reason));
        }
        if want(CPU_TOTAL) && active {
            if let Ok(t) = self.cpu_totals(u) {
                put("cpu.time".into(), ULLong(t.cpu_time));
                put("cpu.user".into(), ULLong(t.user_time));
                put("cpu.system".into(), ULLong(t.system_time));
            }
        }
        if want(BALLOON) {
            let current = s.balloon_current_kib.unwrap_or(i.memory_kib);
            put("balloon.current".into(), ULLong(current));
            put("balloon.maximum".into(), ULLong(i.max_memory_kib));
            // libvirt 9.0 has no `balloon.actual`: `current` is the balloon's size.
            if active {
                if let Some(rss) = s.rss_kib {
                    put("balloon.rss".into(), ULLong(rss));
                }
            }
        }
        if want(VCPU) {
            put("vcpu.current".into(), UInt(i.vcpus));
            put("vcpu.maximum".into(), UInt(i.max_vcpus));
            if active {
                for v in self.vcpu_stats(u).await.unwrap_or_default() {
                    let n = v.number;
                    put(format!("vcpu.{n}.state"), Int(v.state));
                    put(format!("vcpu.{n}.time"), ULLong(v.cpu_time_ns));
                    put(format!("vcpu.{n}.wait"), ULLong(v.wait_ns));
                    put(format!("vcpu.{n}.delay"), ULLong(v.delay_ns));
                }
            }
        }
        if want(INTERFACE) && active {
            let nets = self.net_stats(u).unwrap_or_default();
            put("net.count".into(), UInt(nets.len() as u32));
            for (k, n) in nets.iter().enumerate() {
                let c = &n.counters;
                put(format!("net.{k}.name"), String(n.name.clone()));
                for (f, v) in [
                    ("rx.bytes", c.rx_bytes),
                    ("rx.pkts", c.rx_packets),
                    ("rx.errs", c.rx_errs),
                    ("rx.drop", c.rx_drop),
                    ("tx.bytes", c.tx_bytes),
                    ("tx.pkts", c.tx_packets),
                    ("tx.errs", c.tx_errs),
                    ("tx.drop", c.tx_drop),
                ] {
                    put(format!("net.{k}.{f}"), ULLong(v.max(0) as u64));
                }
            }
        }
        if want(BLOCK) {
            let disks = self.disk_stats(u).await.unwrap_or_default();
            put("block.count".into(), UInt(disks.len() as u32));
            for (k, d) in disks.iter().enumerate() {
                put(format!("block.{k}.name"), String(d.target.clone()));
                if let Some(p) = &d.path {
                    put(format!("block.{k}.path"), String(p.clone()));
                }
                if let Some(c) = &d.counters {
                    for (f, v) in [
                        ("rd.reqs", c.rd_req),
                        ("rd.bytes", c.rd_bytes),
                        ("rd.times", c.rd_total_times),
                        ("wr.reqs", c.wr_req),
                        ("wr.bytes", c.wr_bytes),
                        ("wr.times", c.wr_total_times),
                        ("fl.reqs", c.flush_req),
                        ("fl.times", c.flush_total_times),
                    ] {
                        put(format!("block.{k}.{f}"), ULLong(v.max(0) as u64));
                    }
                }
                if let Some(z) = &d.sizes {
                    put(format!("block.{k}.allocation"), ULLong(z.allocation));
                    put(format!("block.{k}.capacity"), ULLong(z.capacity));
                    put(format!("block.{k}.physical"), ULLong(z.physical));
                }
            }
        }
        // PERF: no perf events are enabled, so the group has no fields (as libvirt
        // without <perf> events).
        Ok(out)
    }
}

fn find_disk<'a>(all: &'a [DiskStat], disk: &str) -> Result<&'a DiskStat> {
    all.iter()
        .find(|d| d.target == disk || d.path.as_deref() == Some(disk))
        .ok_or_else(|| Error::InvalidArg(format!("invalid path: {disk}")))
}

impl BlockCounters {
    fn from_qmp(s: &Value) -> Self {
        let n = |k: &str| s[k].as_i64().unwrap_or(0);
        BlockCounters {
            rd_req: n("rd_operations"),
            rd_bytes: n("rd_bytes"),
            rd_total_times: n("rd_total_time_ns"),
            wr_req: n("wr_operations"),
            wr_bytes: n("wr_bytes"),
            wr_total_times: n("wr_total_time_ns"),
            flush_req: n("flush_operations"),
            flush_total_times: n("flush_total_time_ns"),
        }
    }

    fn plus(self, o: Self) -> Self {
        BlockCounters {
            rd_req: self.rd_req + o.rd_req,
            rd_bytes: self.rd_bytes + o.rd_bytes,
            rd_total_times: self.rd_total_times + o.rd_total_times,
            wr_req: self.wr_req + o.wr_req,
            wr_bytes: self.wr_bytes + o.wr_bytes,
            wr_total_times: self.wr_total_times + o.wr_total_times,
            flush_req: self.flush_req + o.flush_req,
            flush_total_times: self.flush_total_times + o.flush_total_times,
        }
    }
}

/// Sizes of an image file: capacity and physical are the file's length (raw), the
/// allocation what it occupies on disk; qcow2 capacity is the header's virtual size.
fn file_sizes(path: &str) -> Option<BlockSizes> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok()?;
    let physical = if m.file_type().is_file() {
        m.len()
    } else {
        block_device_size(path).unwrap_or(0)
    };
    let capacity = qcow2_virtual_size(path).unwrap_or(physical);
    let allocation = if m.file_type().is_file() {
        m.blocks() * 512
    } else {
        physical
    };
    Some(BlockSizes {
        capacity,
        allocation,
        physical,
    })
}

fn block_device_size(path: &str) -> Option<u64> {
    use std::io::{Seek, SeekFrom};
    fs::File::open(path).ok()?.seek(SeekFrom::End(0)).ok()
}

/// The virtual size (bytes 24..32, big-endian) of a qcow2 image.
fn qcow2_virtual_size(path: &str) -> Option<u64> {
    use std::io::Read;
    let mut head = [0u8; 32];
    fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    (head[..4] == *b"QFI\xfb").then(|| u64::from_be_bytes(head[24..32].try_into().unwrap()))
}

/// Counters of a host tap as the guest sees them: the tap's transmit is the guest's
/// receive (libvirt swaps them the same way for tap-backed interfaces).
fn tap_counters(dev: &str) -> Option<NetCounters> {
    let read = |f: &str| -> Option<i64> {
        fs::read_to_string(format!("/sys/class/net/{dev}/statistics/{f}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(NetCounters {
        rx_bytes: read("tx_bytes")?,
        rx_packets: read("tx_packets")?,
        rx_errs: read("tx_errors")?,
        rx_drop: read("tx_dropped")?,
        tx_bytes: read("rx_bytes")?,
        tx_packets: read("rx_packets")?,
        tx_errs: read("rx_errors")?,
        tx_drop: read("rx_dropped")?,
    })
}

/// Times and placement of one thread.
struct ThreadTimes {
    cpu_time_ns: u64,
    last_cpu: i32,
    delay_ns: u64,
    wait_ns: u64,
}

impl ThreadTimes {
    fn read(pid: i32, tid: i32) -> Self {
        let base = format!("/proc/{pid}/task/{tid}");
        let stat = fs::read_to_string(format!("{base}/stat")).unwrap_or_default();
        let (user, system) = stat_times(&stat).unwrap_or((0, 0));
        let last_cpu = stat_field(&stat, 36)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let delay_ns = fs::read_to_string(format!("{base}/schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        let wait_ns = fs::read_to_string(format!("{base}/sched"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .ends_with("wait_sum")
                        .then(|| v.trim().parse::<f64>().ok())?
                })
            })
            .map(|ms| (ms * 1e6) as u64)
            .unwrap_or(0);
        ThreadTimes {
            cpu_time_ns: user + system,
            last_cpu,
            delay_ns,
            wait_ns,
        }
    }
}

/// Field `i` after the command name of a `/proc/…/stat` line (0 = state).
fn stat_field(stat: &str, i: usize) -> Option<&str> {
    stat.rsplit_once(')')?.1.split_whitespace().nth(i)
}

/// (utime, stime) of a `/proc/…/stat` line, ns.
fn stat_times(stat: &str) -> Option<(u64, u64)> {
    const TICK_NS: u64 = 10_000_000;
    let u: u64 = stat_field(stat, 11)?.parse().ok()?;
    let s: u64 = stat_field(stat, 12)?.parse().ok()?;
    Some((u * TICK_NS, s * TICK_NS))
}

fn proc_times(path: &str) -> Option<(u64, u64)> {
    stat_times(&fs::read_to_string(path).ok()?)
}

/// A thread's allowed CPUs as a flag per host CPU.
fn affinity(tid: i32, ncpus: u32) -> Vec<bool> {
    match sched_getaffinity(Pid::from_raw(tid)) {
        Ok(set) => (0..ncpus as usize)
            .map(|c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => vec![true; ncpus as usize],
    }
}

fn set_affinity(tid: i32, map: &[bool]) -> Result<()> {
    let ncpus = host_info::host_cpu_count() as usize;
    let mut set = CpuSet::new();
    let mut any = false;
    for (c, _) in map.iter().enumerate().filter(|(_, on)| **on) {
        if c >= ncpus {
            continue;
        }
        set.set(c)
            .map_err(|e| Error::InvalidArg(format!("CPU {c} in cpumap: {e}")))?;
        any = true;
    }
    if !any {
        return Err(Error::InvalidArg("Empty cpu list for pinning".into()));
    }
    sched_setaffinity(Pid::from_raw(tid), &set)
        .map_err(|e| Error::System(format!("cannot set CPU affinity of thread {tid}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command_name() {
        // proc(5): utime and stime are fields 14 and 15, processor field 39.
        let mut f: Vec<String> = (1..=52).map(|i| i.to_string()).collect();
        f[1] = "(oxvirt vmm)".into();
        f[13] = "250".into();
        f[14] = "50".into();
        f[38] = "3".into();
        let stat = f.join(" ");
        let stat = stat.as_str();
        assert_eq!(stat_times(stat), Some((2_500_000_000, 500_000_000)));
        assert_eq!(stat_field(stat, 36), Some("3"));
    }

    #[test]
    fn qmp_blockstats_map_to_libvirt_fields() {
        let s = serde_json::json!({"rd_operations": 3, "rd_bytes": 4096, "wr_operations": 1,
            "wr_bytes": 512, "flush_operations": 2, "rd_total_time_ns": 7});
        let c = BlockCounters::from_qmp(&s);
        assert_eq!(
            (c.rd_req, c.rd_bytes, c.wr_req, c.wr_bytes),
            (3, 4096, 1, 512)
        );
        assert_eq!((c.flush_req, c.rd_total_times), (2, 7));
        assert_eq!(c.plus(c).rd_bytes, 8192);
    }

    #[test]
    fn raw_and_qcow2_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("a.img");
        fs::write(&raw, vec![1u8; 8192]).unwrap();
        let s = file_sizes(raw.to_str().unwrap()).unwrap();
        assert_eq!((s.capacity, s.physical), (8192, 8192));
        let q = dir.path().join("b.qcow2");
        let mut h = b"QFI\xfb".to_vec();
        h.resize(24, 0);
        h.extend_from_slice(&(1u64 << 30).to_be_bytes());
        fs::write(&q, &h).unwrap();
        assert_eq!(file_sizes(q.to_str().unwrap()).unwrap().capacity, 1 << 30);
    }
}

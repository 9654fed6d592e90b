//! Each VMM in a cgroup of its own, `machine/oxvirt-NAME` under the daemon's own cgroup
//! in every controller we tune (as libvirt's `machine.slice/machine-qemu-…`), holding the
//! domain's `<memtune>`, `<cputune>` shares/period/quota and `<blkiotune>` weight.
//!
//! Both layouts: cgroup v1 (a mount per controller: `memory`, `cpu`, `blkio`) and the
//! unified v2 hierarchy (one directory, controllers enabled through `cgroup.subtree_control`).
//! The daemon moves the VMM in right after spawning it (the daemon crate forbids the
//! `unsafe` a `pre_exec` hook needs): the VMM is still setting up then, its vCPUs run later. Without a writable hierarchy (session mode as a user
//! without delegation) domains run without one, as libvirt's session mode does.

use std::io;
use std::path::{Path, PathBuf};

use domain_xml::tuning::Tuning;

/// libvirt's VIR_DOMAIN_MEMORY_PARAM_UNLIMITED (KiB): what "no limit" reads as.
pub const MEMORY_UNLIMITED_KIB: u64 = 9_007_199_254_740_991;

/// What a v1 memory limit of -1 reads back as (with 4 KiB pages; larger pages give
/// less, so anything from here on is "no limit").
const V1_UNLIMITED_BYTES: u64 = 0x7FFF_FFFF_FFF0_0000;
/// libvirt's refusal (virCgroupV1GetBlkioWeight, VIR_ERR_OPERATION_INVALID) where the
/// blkio controller has no weight file.
pub const NO_BLKIO_WEIGHT: &str = "blkio device weight is valid only for bfq or cfq scheduler";

/// Which cgroup layout a directory follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The controllers the domain's tuning needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Cpu,
    Blkio,
}

impl Controller {
    const ALL: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Blkio];

    /// Its v1 name (the mount directory and the `/proc/self/cgroup` field).
    fn v1_name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Blkio => "blkio",
        }
    }

    /// Its v2 name (in `cgroup.controllers` / `cgroup.subtree_control`).
    fn v2_name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Blkio => "io",
        }
    }
}

/// The daemon's own cgroups, under which each domain gets its own.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    version: Version,
    /// The daemon's cgroup directory for each controller (one shared directory on v2).
    own: Vec<(Controller, PathBuf)>,
}

/// Where the domains' cgroups go under the daemon's, as libvirt's `machine` partition.
const PARTITION: &str = "machine";

impl Hierarchy {
    /// The host's hierarchy under /sys/fs/cgroup, or why domains run without cgroups.
    pub fn host() -> Result<Hierarchy, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not running as root (no delegated cgroup hierarchy)".into());
        }
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let h = Hierarchy::detect(Path::new("/sys/fs/cgroup"), &own)?;
        h.leave_inner_node(std::process::id())
            .map_err(|e| format!("cannot move the daemon into a leaf cgroup: {e}"))?;
        Ok(h)
    }

    /// v2's "no internal processes" rule: a cgroup that hands controllers to its
    /// children holds no process itself. Under a delegated systemd unit
    /// (`Delegate=yes`) the daemon starts in its unit's cgroup, so it moves itself
    /// into a leaf `daemon` beside `machine` (systemd's advice for delegated
    /// subtrees). Only the daemon: other processes there (a shell's session scope, a
    /// container's init) are not ours to move, and keep controllers from being
    /// enabled (the placement then says why). The root cgroup is exempt; v1 has no
    /// such rule.
    fn leave_inner_node(&self, pid: u32) -> io::Result<()> {
        let Some((_, own)) = self.own.first() else {
            return Ok(());
        };
        // Only non-root v2 cgroups have a `cgroup.type`.
        if self.version != Version::V2 || !own.join("cgroup.type").exists() {
            return Ok(());
        }
        let leaf = own.join("daemon");
        std::fs::create_dir_all(&leaf)?;
        write(&leaf.join("cgroup.procs"), &pid.to_string())
    }

    /// Finds the daemon's cgroups under `root` (a cgroup2 mount, or a tmpfs holding one
    /// v1 mount per controller) from `proc_self_cgroup` (the text of /proc/self/cgroup).
    pub fn detect(root: &Path, proc_self_cgroup: &str) -> Result<Hierarchy, String> {
        // "ID:controllers:path" lines; v2's is "0::path".
        let lines: Vec<(&str, &str)> = proc_self_cgroup
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                Some((ctrls, path.trim_start_matches('/')))
            })
            .collect();
        if root.join("cgroup.controllers").exists() {
            let path = lines
                .iter()
                .find(|(c, _)| c.is_empty())
                .map(|(_, p)| *p)
                .ok_or("no cgroup v2 entry in /proc/self/cgroup")?;
            let dir = root.join(path);
            let own = Controller::ALL.iter().map(|c| (*c, dir.clone())).collect();
            return Ok(Hierarchy {
                version: Version::V2,
                own,
            });
        }
        let mut own = Vec::new();
        for c in Controller::ALL {
            let name = c.v1_name();
            let Some((_, path)) = lines
                .iter()
                .find(|(ctrls, _)| ctrls.split(',').any(|x| x == name))
            else {
                return Err(format!(
                    "no cgroup v1 '{name}' controller in /proc/self/cgroup"
                ));
            };
            // Debian links a co-mounted "cpu,cpuacct" as "cpu" too.
            let mount = root.join(name);
            if !mount.join("cgroup.procs").exists() {
                return Err(format!(
                    "cgroup v1 '{name}' is not mounted at {}",
                    mount.display()
                ));
            }
            own.push((c, mount.join(path)));
        }
        Ok(Hierarchy {
            version: Version::V1,
            own,
        })
    }

    /// The layout in use.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Creates the (empty) cgroup of domain `name`, replacing a stale one left by a crash.
    pub fn create(&self, name: &str) -> io::Result<DomainCgroup> {
        let mut dirs = Vec::new();
        for (c, own) in &self.own {
            let dir = own.join(PARTITION).join(format!("oxvirt-{name}"));
            if !dirs.iter().any(|(_, d)| d == &dir) {
                if self.version == Version::V2 {
                    enable_v2_controllers(own)?;
                }
                std::fs::create_dir_all(&dir)?;
            }
            dirs.push((*c, dir));
        }
        Ok(DomainCgroup {
            version: self.version,
            dirs,
        })
    }

    /// Removes the domain cgroups whose VMM is gone but which nobody removed (a VMM
    /// that outlived its daemon and exited later). Leaves are named `oxvirt-NAME-PID`;
    /// `alive(PID)` says whether that process still exists. A removal that fails (a
    /// process still inside) is left for the next sweep.
    pub fn sweep(&self, alive: impl Fn(i32) -> bool) {
        let mut seen: Vec<PathBuf> = Vec::new();
        for (_, own) in &self.own {
            let partition = own.join(PARTITION);
            if seen.contains(&partition) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&partition) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(leaf) = name.to_str().and_then(|n| n.strip_prefix("oxvirt-")) else {
                    continue;
                };
                let pid = leaf
                    .rsplit_once('-')
                    .and_then(|(_, p)| p.parse::<i32>().ok());
                if pid.is_some_and(|p| !alive(p)) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            seen.push(partition);
        }
    }

    /// The cgroup domain `name` has (or would have).
    pub fn domain(&self, name: &str) -> DomainCgroup {
        DomainCgroup {
            version: self.version,
            dirs: self
                .own
                .iter()
                .map(|(c, own)| (*c, own.join(PARTITION).join(format!("oxvirt-{name}"))))
                .collect(),
        }
    }
}

/// v2: a child cgroup gets a controller only where every parent lists it in
/// `cgroup.subtree_control`. The daemon's own cgroup may hold processes and refuse
/// (EBUSY, "no internal processes"): then it must have been delegated with them on.
fn enable_v2_controllers(own: &Path) -> io::Result<()> {
    let partition = own.join(PARTITION);
    std::fs::create_dir_all(&partition)?;
    for c in Controller::ALL {
        let line = format!("+{}", c.v2_name());
        let _ = std::fs::write(own.join("cgroup.subtree_control"), &line);
        std::fs::write(partition.join("cgroup.subtree_control"), &line).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot enable the '{}' controller in {}: {e}",
                    c.v2_name(),
                    partition.display()
                ),
            )
        })?;
    }
    Ok(())
}

/// One domain's cgroup.
#[derive(Debug, Clone)]
pub struct DomainCgroup {
    version: Version,
    dirs: Vec<(Controller, PathBuf)>,
}

impl DomainCgroup {
    fn dir(&self, c: Controller) -> &Path {
        &self
            .dirs
            .iter()
            .find(|(x, _)| *x == c)
            .expect("every controller has a directory")
            .1
    }

    fn file(&self, c: Controller, name: &str) -> PathBuf {
        self.dir(c).join(name)
    }

    /// Moves process `pid` (every thread of it) into this cgroup.
    pub fn add(&self, pid: i32) -> io::Result<()> {
        let mut done: Vec<&Path> = Vec::new();
        for (_, d) in &self.dirs {
            if !done.contains(&d.as_path()) {
                write(&d.join("cgroup.procs"), &pid.to_string())?;
                done.push(d);
            }
        }
        Ok(())
    }

    /// The directories, one per controller (for logs and tests).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, d)| d.as_path())
    }

    /// Writes every tunable `t` sets; the others keep their value.
    pub fn apply(&self, t: &Tuning) -> io::Result<()> {
        match self.version {
            Version::V1 => self.apply_v1(t),
            Version::V2 => self.apply_v2(t),
        }
    }

    fn apply_v1(&self, t: &Tuning) -> io::Result<()> {
        use Controller::*;
        let bytes = |kib: u64| {
            if kib >= MEMORY_UNLIMITED_KIB {
                "-1".to_string()
            } else {
                (kib * 1024).to_string()
            }
        };
        // memsw (memory+swap) may never be below the memory limit: write it before a
        // lower hard limit and after a higher one (the first try may fail; the second
        // must not).
        let memsw = self.file(Memory, "memory.memsw.limit_in_bytes");
        if let Some(s) = t.swap_hard_limit_kib {
            let _ = write(&memsw, &bytes(s));
        }
        if let Some(h) = t.hard_limit_kib {
            write(&self.file(Memory, "memory.limit_in_bytes"), &bytes(h))?;
        }
        if let Some(s) = t.swap_hard_limit_kib {
            write(&memsw, &bytes(s))?;
        }
        if let Some(s) = t.soft_limit_kib {
            write(&self.file(Memory, "memory.soft_limit_in_bytes"), &bytes(s))?;
        }
        if let Some(v) = t.cpu_shares {
            write(&self.file(Cpu, "cpu.shares"), &v.to_string())?;
        }
        if let Some(v) = t.cpu_period_us {
            write(&self.file(Cpu, "cpu.cfs_period_us"), &v.to_string())?;
        }
        if let Some(v) = t.cpu_quota_us {
            write(&self.file(Cpu, "cpu.cfs_quota_us"), &v.to_string())?;
        }
        if let Some(w) = t.blkio_weight {
            let file = self.blkio_weight_file().ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, NO_BLKIO_WEIGHT.to_string())
            })?;
            write(&file, &w.to_string())?;
        }
        Ok(())
    }

    /// `blkio.bfq.weight` (BFQ) or `blkio.weight` (CFQ), in libvirt's order; `None`
    /// where the disks' I/O scheduler has no weights (mq-deadline, none).
    fn blkio_weight_file(&self) -> Option<PathBuf> {
        ["blkio.bfq.weight", "blkio.weight"]
            .into_iter()
            .map(|f| self.file(Controller::Blkio, f))
            .find(|p| p.exists())
    }

    fn apply_v2(&self, t: &Tuning) -> io::Result<()> {
        use Controller::*;
        let bytes = |kib: u64| {
            if kib >= MEMORY_UNLIMITED_KIB {
                "max".to_string()
            } else {
                (kib * 1024).to_string()
            }
        };
        if let Some(h) = t.hard_limit_kib {
            write(&self.file(Memory, "memory.max"), &bytes(h))?;
        }
        // As libvirt's v2 backend: the soft limit is memory.high.
        if let Some(s) = t.soft_limit_kib {
            write(&self.file(Memory, "memory.high"), &bytes(s))?;
        }
        // memory.swap.max counts swap alone; libvirt's swap_hard_limit is memory+swap.
        if let Some(s) = t.swap_hard_limit_kib {
            let swap = match t.hard_limit_kib.or(self.read_v2_kib("memory.max")?) {
                _ if s >= MEMORY_UNLIMITED_KIB => MEMORY_UNLIMITED_KIB,
                Some(h) if h < MEMORY_UNLIMITED_KIB => s.saturating_sub(h),
                _ => s,
            };
            write(&self.file(Memory, "memory.swap.max"), &bytes(swap))?;
        }
        // cpu.weight is shares as libvirt writes them (1..10000 here, 2..262144 on v1).
        if let Some(v) = t.cpu_shares {
            write(&self.file(Cpu, "cpu.weight"), &v.to_string())?;
        }
        if t.cpu_period_us.is_some() || t.cpu_quota_us.is_some() {
            let (q, p) = self.read_cpu_max()?;
            let q = t.cpu_quota_us.unwrap_or(q);
            let p = t.cpu_period_us.unwrap_or(p);
            let q = if q < 0 {
                "max".to_string()
            } else {
                q.to_string()
            };
            write(&self.file(Cpu, "cpu.max"), &format!("{q} {p}"))?;
        }
        if let Some(w) = t.blkio_weight {
            write(&self.file(Blkio, "io.weight"), &format!("default {w}"))?;
        }
        Ok(())
    }

    /// The values in effect, every field set (unlimited as libvirt reports it).
    pub fn read(&self) -> io::Result<Tuning> {
        match self.version {
            Version::V1 => self.read_v1(),
            Version::V2 => self.read_v2(),
        }
    }

    fn read_v1(&self) -> io::Result<Tuning> {
        use Controller::*;
        let kib = |name: &str| -> io::Result<u64> {
            let b: u64 = parse(&self.file(Memory, name))?;
            // The kernel's "unlimited" is PAGE_COUNTER_MAX pages: 2^63 bytes less a page.
            Ok(if b >= V1_UNLIMITED_BYTES {
                MEMORY_UNLIMITED_KIB
            } else {
                b / 1024
            })
        };
        Ok(Tuning {
            hard_limit_kib: Some(kib("memory.limit_in_bytes")?),
            soft_limit_kib: Some(kib("memory.soft_limit_in_bytes")?),
            swap_hard_limit_kib: Some(kib("memory.memsw.limit_in_bytes")?),
            cpu_shares: Some(parse(&self.file(Cpu, "cpu.shares"))?),
            cpu_period_us: Some(parse(&self.file(Cpu, "cpu.cfs_period_us"))?),
            cpu_quota_us: Some(parse(&self.file(Cpu, "cpu.cfs_quota_us"))?),
            blkio_weight: self.blkio_weight_file().map(|f| parse(&f)).transpose()?,
        })
    }

    fn read_v2_kib(&self, name: &str) -> io::Result<Option<u64>> {
        let text = read(&self.file(Controller::Memory, name))?;
        if text == "max" {
            return Ok(None);
        }
        Ok(Some(
            number::<u64>(&text, &self.file(Controller::Memory, name))? / 1024,
        ))
    }

    fn read_cpu_max(&self) -> io::Result<(i64, u64)> {
        let path = self.file(Controller::Cpu, "cpu.max");
        let text = read(&path)?;
        let mut f = text.split_whitespace();
        let q = match f.next() {
            Some("max") => -1,
            Some(q) => number(q, &path)?,
            None => return Err(bad(&path, &text)),
        };
        let p = number(f.next().ok_or_else(|| bad(&path, &text))?, &path)?;
        Ok((q, p))
    }

    fn read_v2(&self) -> io::Result<Tuning> {
        use Controller::*;
        let unlimited = |v: Option<u64>| v.unwrap_or(MEMORY_UNLIMITED_KIB);
        let hard = self.read_v2_kib("memory.max")?;
        let swap = self.read_v2_kib("memory.swap.max")?;
        let swap_hard = match (hard, swap) {
            (Some(h), Some(s)) => Some(h + s),
            _ => None,
        };
        let (quota, period) = self.read_cpu_max()?;
        // "default N" on the first line, then per-device "MAJ:MIN N"; no file where
        // the I/O scheduler has no weights.
        let io = self.file(Blkio, "io.weight");
        let weight = if io.exists() {
            let io_text = read(&io)?;
            let w = io_text
                .lines()
                .find_map(|l| l.strip_prefix("default "))
                .ok_or_else(|| bad(&io, &io_text))?;
            Some(number(w, &io)?)
        } else {
            None
        };
        Ok(Tuning {
            hard_limit_kib: Some(unlimited(hard)),
            soft_limit_kib: Some(unlimited(self.read_v2_kib("memory.high")?)),
            swap_hard_limit_kib: Some(unlimited(swap_hard)),
            cpu_shares: Some(parse(&self.file(Cpu, "cpu.weight"))?),
            cpu_period_us: Some(period),
            cpu_quota_us: Some(quota),
            blkio_weight: weight,
        })
    }

    /// Whether process `pid` is in this cgroup (in every controller).
    pub fn holds(&self, pid: i32) -> bool {
        self.dirs.iter().all(|(_, d)| {
            read(&d.join("cgroup.procs"))
                .map(|t| t.lines().any(|l| l.trim() == pid.to_string()))
                .unwrap_or(false)
        })
    }

    /// Removes the cgroup once its processes are gone (an empty cgroup's directory
    /// holds only kernel files: rmdir, not a recursive delete).
    pub fn remove(&self) -> io::Result<()> {
        let mut first_err = None;
        for (_, d) in &self.dirs {
            match std::fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_err.get_or_insert(io::Error::new(
                        e.kind(),
                        format!("cannot remove cgroup {}: {e}", d.display()),
                    ));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot write '{value}' to {}: {e}", path.display()),
        )
    })
}

fn read(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())))
}

fn parse<T: std::str::FromStr>(path: &Path) -> io::Result<T> {
    let text = read(path)?;
    number(&text, path)
}

fn number<T: std::str::FromStr>(text: &str, path: &Path) -> io::Result<T> {
    text.trim().parse().map_err(|_| bad(path, text))
}

fn bad(path: &Path, text: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected '{text}' in {}", path.display()),
    )
}

#[cfg(test)]
#[path = "cgroup_tests.rs"]
mod tests;

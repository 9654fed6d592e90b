//! Host-level answers of `org.libvirt.Connect`: sysinfo, node memory and CPU figures,
//! all read from the host (`/proc`, `/sys`), none invented. The capabilities
//! documents come from the core ([`crate::core::caps`]).

use std::collections::HashMap;

use crate::core::Error;

/// The libvirt API level the interface follows (9.0.0, Debian 12's libvirt).
pub const LIBVIRT_API_VERSION: u64 = 9_000_000;

/// oxvirt's version in libvirt's encoding (major * 1,000,000 + minor * 1,000 + micro).
pub fn hypervisor_version() -> u64 {
    let v: Vec<u64> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    v.first().copied().unwrap_or(0) * 1_000_000
        + v.get(1).copied().unwrap_or(0) * 1_000
        + v.get(2).copied().unwrap_or(0)
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

fn online_cpus() -> Result<Vec<usize>, Error> {
    let text = read("/sys/devices/system/cpu/online")
        .ok_or_else(|| Error::System("cannot read '/sys/devices/system/cpu/online'".into()))?;
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.parse()
                .map_err(|_| Error::Internal(format!("bad cpu list '{text}'")))?,
            b.parse()
                .map_err(|_| Error::Internal(format!("bad cpu list '{text}'")))?,
        );
        cpus.extend(a..=b);
    }
    Ok(cpus)
}

/// `virConnectGetSysinfo`: the host's SMBIOS data from `/sys/class/dmi/id`.
pub fn sysinfo() -> String {
    let f = |name: &str, key: &str| {
        read(&format!("/sys/class/dmi/id/{key}"))
            .filter(|v| !v.is_empty())
            .map(|v| format!("    <entry name='{name}'>{}</entry>\n", escape(&v)))
            .unwrap_or_default()
    };
    format!(
        "<sysinfo type='smbios'>\n  <bios>\n{}{}{}  </bios>\n  <system>\n{}{}{}{}  </system>\n</sysinfo>\n",
        f("vendor", "bios_vendor"),
        f("version", "bios_version"),
        f("date", "bios_date"),
        f("manufacturer", "sys_vendor"),
        f("product", "product_name"),
        f("version", "product_version"),
        f("family", "product_family"),
    )
}

fn meminfo() -> HashMap<String, u64> {
    read("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let v = v.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// `virNodeGetFreeMemory` in bytes.
pub fn free_memory_bytes() -> Result<u64, Error> {
    meminfo()
        .get("MemFree")
        .map(|k| k * 1024)
        .ok_or_else(|| Error::System("cannot read '/proc/meminfo'".into()))
}

/// `virNodeGetMemoryStats` (KiB): `total`, `free`, `buffers`, `cached`; one NUMA
/// cell (`-1` or `0`).
pub fn memory_stats(cell: i32) -> Result<HashMap<String, u64>, Error> {
    if cell != -1 && cell != 0 {
        return Err(Error::InvalidArg(format!(
            "Invalid cell number {cell}; valid range is 0 to 0"
        )));
    }
    let m = meminfo();
    let mut out = HashMap::new();
    for (k, name) in [
        ("MemTotal", "total"),
        ("MemFree", "free"),
        ("Buffers", "buffers"),
        ("Cached", "cached"),
    ] {
        let v = m
            .get(k)
            .ok_or_else(|| Error::System(format!("'/proc/meminfo' has no {k}")))?;
        out.insert(name.to_string(), *v);
    }
    Ok(out)
}

/// `virNodeGetCPUStats` (ns): `kernel`, `user`, `idle`, `iowait` for one CPU or,
/// with `-1`, all of them.
pub fn cpu_stats(cpu: i32) -> Result<HashMap<String, u64>, Error> {
    let text =
        read("/proc/stat").ok_or_else(|| Error::System("cannot read '/proc/stat'".into()))?;
    let label = if cpu < 0 {
        "cpu".to_string()
    } else {
        format!("cpu{cpu}")
    };
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label.as_str()))
        .ok_or_else(|| Error::InvalidArg(format!("Invalid cpuNum in virNodeGetCPUStats: {cpu}")))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // /proc/stat counts USER_HZ (100/s) ticks: user nice system idle iowait …
    let ns = |i: usize| ticks.get(i).copied().unwrap_or(0) * 10_000_000;
    Ok(HashMap::from([
        ("user".to_string(), ns(0) + ns(1)),
        ("kernel".to_string(), ns(2)),
        ("idle".to_string(), ns(3)),
        ("iowait".to_string(), ns(4)),
    ]))
}

/// `virNodeGetCPUMap`: one entry per possible CPU, true when online.
pub fn cpu_map() -> Result<Vec<bool>, Error> {
    let online = online_cpus()?;
    let max = online.iter().copied().max().unwrap_or(0);
    Ok((0..=max).map(|i| online.contains(&i)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_figures_come_from_proc() {
        assert!(free_memory_bytes().unwrap() > 0);
        let m = memory_stats(-1).unwrap();
        assert!(m["total"] >= m["free"]);
        assert!(cpu_stats(-1).unwrap()["idle"] > 0);
        assert!(cpu_map().unwrap().iter().any(|b| *b));
        assert!(memory_stats(5).is_err());
    }
}

//! Host facts as libvirt 9.0's Linux node driver reports them (`virHostCPUGetStats`,
//! `virHostMemGetStats`, `virHostMemGetCellsFree`, `virHostCPUGetMap`, the SMBIOS
//! sysinfo): read from /proc and /sys at call time. Both front ends (RPC, D-Bus) call
//! these.
//!
//! Parsed by hand rather than through the `procfs` crate: four small line formats
//! (`/proc/stat`, `meminfo`, the sysfs CPU lists and DMI files) with libvirt's own
//! field mapping, where the crate would add a dependency tree for a few lines.

use std::fs;
use std::path::Path;

use super::{Error, Result};

/// `VIR_NODE_CPU_STATS_ALL_CPUS` / `VIR_NODE_MEMORY_STATS_ALL_CELLS`.
pub const ALL: i32 = -1;

/// Nanoseconds per USER_HZ tick (USER_HZ is 100 on every Linux ABI).
const TICK_NS: u64 = 10_000_000;

/// `virNodeGetCPUStats`: `kernel`, `user`, `idle`, `iowait` in nanoseconds, for one
/// host CPU or all of them (`ALL`), with libvirt's grouping of `/proc/stat` columns
/// (kernel = system + irq + softirq, user = user + nice).
pub fn cpu_stats(cpu: i32) -> Result<Vec<(&'static str, u64)>> {
    let stat = read("/proc/stat")?;
    cpu_stats_from(&stat, cpu)
}

fn cpu_stats_from(stat: &str, cpu: i32) -> Result<Vec<(&'static str, u64)>> {
    if cpu < ALL {
        return Err(Error::InvalidArg(format!(
            "Invalid cpuNum {cpu} in virNodeGetCPUStats"
        )));
    }
    let label = if cpu == ALL {
        "cpu".to_string()
    } else {
        format!("cpu{cpu}")
    };
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label.as_str()))
        .ok_or_else(|| Error::InvalidArg(format!("Invalid cpuNum {cpu} in virNodeGetCPUStats")))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let col = |i: usize| v.get(i).copied().unwrap_or(0) * TICK_NS;
    // user nice system idle iowait irq softirq …
    Ok(vec![
        ("kernel", col(2) + col(5) + col(6)),
        ("user", col(0) + col(1)),
        ("idle", col(3)),
        ("iowait", col(4)),
    ])
}

/// `virNodeGetMemoryStats`: `total`, `free`, `buffers`, `cached` in KiB, for the host
/// (`ALL`) or one NUMA cell (whose sysfs meminfo has no buffers line).
pub fn memory_stats(cell: i32) -> Result<Vec<(&'static str, u64)>> {
    let text = if cell == ALL {
        read("/proc/meminfo")?
    } else {
        let cells = cell_count();
        if cell < 0 || cell >= cells as i32 {
            return Err(Error::InvalidArg(format!(
                "cellNum in virNodeGetMemoryStats must be less than or equal to {}",
                cells.saturating_sub(1)
            )));
        }
        node_meminfo(cell).ok_or_else(|| {
            Error::System(format!(
                "cannot read /sys/devices/system/node/node{cell}/meminfo"
            ))
        })?
    };
    Ok(memory_stats_from(&text))
}

fn memory_stats_from(meminfo: &str) -> Vec<(&'static str, u64)> {
    const FIELDS: [(&str, &str); 4] = [
        ("MemTotal:", "total"),
        ("MemFree:", "free"),
        ("Buffers:", "buffers"),
        ("Cached:", "cached"),
    ];
    let mut out = Vec::new();
    for (key, name) in FIELDS {
        if let Some(v) = meminfo_value(meminfo, key) {
            out.push((name, v));
        }
    }
    out
}

/// A `Key: N kB` value of a meminfo text; node files prefix each line with `Node N `.
fn meminfo_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let mut first = it.next()?;
        if first == "Node" {
            it.next()?;
            first = it.next()?;
        }
        (first == key).then(|| it.next()?.parse().ok())?
    })
}

fn node_meminfo(cell: i32) -> Option<String> {
    fs::read_to_string(format!("/sys/devices/system/node/node{cell}/meminfo")).ok()
}

/// NUMA cells of the host (1 where the kernel has no NUMA sysfs).
pub fn cell_count() -> u32 {
    fs::read_to_string("/sys/devices/system/node/possible")
        .ok()
        .and_then(|s| parse_cpu_list(s.trim()).into_iter().max())
        .map(|m| m + 1)
        .unwrap_or(1)
}

/// `virNodeGetCellsFreeMemory`: free bytes of cells `start..start+max`.
pub fn cells_free_memory(start: i32, max: i32) -> Result<Vec<u64>> {
    let cells = cell_count() as i32;
    if start < 0 || start >= cells {
        return Err(Error::Internal(format!(
            "start cell {start} out of range (0-{})",
            cells - 1
        )));
    }
    let end = start.saturating_add(max.max(0)).min(cells);
    (start..end)
        .map(|c| {
            let free_kib = node_meminfo(c)
                .and_then(|t| meminfo_value(&t, "MemFree:"))
                .or_else(|| {
                    // No NUMA sysfs: the whole host is cell 0.
                    read("/proc/meminfo")
                        .ok()
                        .and_then(|t| meminfo_value(&t, "MemFree:"))
                })
                .ok_or_else(|| Error::System(format!("cannot read free memory of cell {c}")))?;
            Ok(free_kib * 1024)
        })
        .collect()
}

/// `virNodeGetCPUMap`: one flag per present CPU (index = CPU number), set when online.
pub fn cpu_map() -> Result<Vec<bool>> {
    let list = |f: &str| -> Result<Vec<u32>> {
        Ok(parse_cpu_list(
            read(&format!("/sys/devices/system/cpu/{f}"))?.trim(),
        ))
    };
    let present = list("present")?;
    let online = list("online")?;
    let n = present.iter().max().map(|m| m + 1).unwrap_or(0);
    Ok((0..n).map(|c| online.contains(&c)).collect())
}

/// Number of host CPUs libvirt counts for per-CPU statistics (present ones).
pub fn host_cpu_count() -> u32 {
    cpu_map().map(|m| m.len() as u32).unwrap_or(1).max(1)
}

/// A kernel CPU list (`0-3,8,10-11`) as numbers.
pub fn parse_cpu_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// `virConnectGetSysinfo`: the host's SMBIOS tables as libvirt's `<sysinfo
/// type='smbios'>`, from the kernel's DMI export (what libvirt's dmidecode run
/// reads for BIOS, system, base board and chassis). A host without DMI (many
/// microVMs) gets an empty element.
pub fn sysinfo() -> String {
    sysinfo_from(Path::new("/sys/class/dmi/id"))
}

fn sysinfo_from(dmi: &Path) -> String {
    const SECTIONS: [(&str, &[(&str, &str)]); 4] = [
        (
            "bios",
            &[
                ("vendor", "bios_vendor"),
                ("version", "bios_version"),
                ("date", "bios_date"),
                ("release", "bios_release"),
            ],
        ),
        (
            "system",
            &[
                ("manufacturer", "sys_vendor"),
                ("product", "product_name"),
                ("version", "product_version"),
                ("serial", "product_serial"),
                ("uuid", "product_uuid"),
                ("sku", "product_sku"),
                ("family", "product_family"),
            ],
        ),
        (
            "baseBoard",
            &[
                ("manufacturer", "board_vendor"),
                ("product", "board_name"),
                ("version", "board_version"),
                ("serial", "board_serial"),
                ("asset", "board_asset_tag"),
            ],
        ),
        (
            "chassis",
            &[
                ("manufacturer", "chassis_vendor"),
                ("version", "chassis_version"),
                ("serial", "chassis_serial"),
                ("asset", "chassis_asset_tag"),
            ],
        ),
    ];
    let mut body = String::new();
    for (section, entries) in SECTIONS {
        let mut lines = String::new();
        for (name, file) in entries {
            let Ok(v) = fs::read_to_string(dmi.join(file)) else {
                continue;
            };
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            lines += &format!("    <entry name='{name}'>");
            domain_xml::element::escape_text(&mut lines, v);
            lines += "</entry>\n";
        }
        if !lines.is_empty() {
            body += &format!("  <{section}>\n{lines}  </{section}>\n");
        }
    }
    if body.is_empty() {
        "<sysinfo type='smbios'/>\n".into()
    } else {
        format!("<sysinfo type='smbios'>\n{body}</sysinfo>\n")
    }
}

fn read(path: &str) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::System(format!("cannot read {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 2 30 400 5 6 7 0 0 0\ncpu0 1 1 1 1 1 1 1 0 0 0\nintr 1\n";

    #[test]
    fn cpu_stats_group_columns_like_libvirt() {
        let all = cpu_stats_from(STAT, ALL).unwrap();
        assert_eq!(
            all,
            vec![
                ("kernel", 43 * TICK_NS),
                ("user", 12 * TICK_NS),
                ("idle", 400 * TICK_NS),
                ("iowait", 5 * TICK_NS)
            ]
        );
        assert_eq!(cpu_stats_from(STAT, 0).unwrap()[0].1, 3 * TICK_NS);
        assert!(cpu_stats_from(STAT, 1).is_err());
        assert!(cpu_stats_from(STAT, -2).is_err());
    }

    #[test]
    fn meminfo_fields_and_node_prefix() {
        let host =
            "MemTotal: 100 kB\nMemFree: 40 kB\nBuffers: 3 kB\nCached: 20 kB\nSwapCached: 9 kB\n";
        assert_eq!(
            memory_stats_from(host),
            vec![("total", 100), ("free", 40), ("buffers", 3), ("cached", 20)]
        );
        let node = "Node 0 MemTotal:       200 kB\nNode 0 MemFree:        50 kB\n";
        assert_eq!(memory_stats_from(node), vec![("total", 200), ("free", 50)]);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8,10-11"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("0"), vec![0]);
        assert!(parse_cpu_list("").is_empty());
    }

    #[test]
    fn sysinfo_sections_from_dmi_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("bios_vendor"), "SeaBIOS\n").unwrap();
        fs::write(dir.path().join("sys_vendor"), "A&B\n").unwrap();
        let x = sysinfo_from(dir.path());
        assert!(
            x.contains("<bios>\n    <entry name='vendor'>SeaBIOS</entry>"),
            "{x}"
        );
        assert!(
            x.contains("<entry name='manufacturer'>A&amp;B</entry>"),
            "{x}"
        );
        assert!(!x.contains("chassis"));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(sysinfo_from(empty.path()), "<sysinfo type='smbios'/>\n");
    }

    #[test]
    fn host_facts_read() {
        assert_eq!(cpu_stats(ALL).unwrap().len(), 4);
        assert!(memory_stats(ALL).unwrap()[0].1 > 0);
        assert!(!cells_free_memory(0, 1).unwrap().is_empty());
        assert!(cpu_map().unwrap().iter().any(|&o| o));
    }
}

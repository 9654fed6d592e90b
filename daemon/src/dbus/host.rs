//! Host-level answers of `org.libvirt.Connect`: capabilities XML, sysinfo, node
//! memory and CPU figures, all read from the host (`/proc`, `/sys`), none invented.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

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

/// `virConnectGetCapabilities`: the host and the one guest type we run (x86_64
/// hvm under KVM, on `oxvirt-vmm`).
pub fn capabilities(vmm: &Path) -> String {
    let cpus = online_cpus().map(|c| c.len()).unwrap_or(1);
    let mem_kib = meminfo().get("MemTotal").copied().unwrap_or(0);
    let uuid = read("/sys/class/dmi/id/product_uuid")
        .or_else(|| read("/etc/machine-id").map(|m| machine_id_uuid(&m)))
        .unwrap_or_default();
    let mut x = String::new();
    let _ = write!(
        x,
        "<capabilities>\n\n  <host>\n    <uuid>{}</uuid>\n    <cpu>\n      <arch>x86_64</arch>\n    </cpu>\n    \
         <power_management/>\n    <iommu support='no'/>\n    <topology>\n      <cells num='1'>\n        \
         <cell id='0'>\n          <memory unit='KiB'>{mem_kib}</memory>\n          <cpus num='{cpus}'>\n",
        escape(&uuid)
    );
    for id in online_cpus().unwrap_or_default() {
        let _ = writeln!(x, "            <cpu id='{id}'/>");
    }
    let _ = write!(
        x,
        "          </cpus>\n        </cell>\n      </cells>\n    </topology>\n    <secmodel>\n      \
         <model>none</model>\n      <doi>0</doi>\n    </secmodel>\n  </host>\n\n  <guest>\n    \
         <os_type>hvm</os_type>\n    <arch name='x86_64'>\n      <wordsize>64</wordsize>\n      \
         <emulator>{}</emulator>\n      <domain type='kvm'/>\n    </arch>\n    <features>\n      \
         <acpi default='on' toggle='yes'/>\n      <apic default='on' toggle='no'/>\n    </features>\n  \
         </guest>\n\n</capabilities>\n",
        escape(&vmm.display().to_string())
    );
    x
}

fn machine_id_uuid(id: &str) -> String {
    if id.len() != 32 {
        return id.to_string();
    }
    format!(
        "{}-{}-{}-{}-{}",
        &id[0..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    )
}

/// `virConnectGetDomainCapabilities` for x86_64 KVM guests on `oxvirt-vmm`:
/// what the domain XML may ask for and the VMM can run.
pub fn domain_capabilities(
    vmm: &Path,
    emulator: &str,
    arch: &str,
    machine: &str,
    virttype: &str,
) -> Result<String, Error> {
    if !arch.is_empty() && arch != "x86_64" {
        return Err(Error::ConfigUnsupported(format!(
            "Emulator '{}' does not support arch '{arch}'",
            vmm.display()
        )));
    }
    if !virttype.is_empty() && virttype != "kvm" {
        return Err(Error::ConfigUnsupported(format!(
            "virttype '{virttype}' is not supported"
        )));
    }
    let path = if emulator.is_empty() {
        vmm.display().to_string()
    } else {
        emulator.to_string()
    };
    let machine = if machine.is_empty() {
        "oxvirt"
    } else {
        machine
    };
    let vcpus = 255;
    Ok(format!(
        "<domainCapabilities>\n  <path>{}</path>\n  <domain>kvm</domain>\n  <machine>{}</machine>\n  \
         <arch>x86_64</arch>\n  <vcpu max='{vcpus}'/>\n  <iothreads supported='no'/>\n  \
         <os supported='yes'>\n    <loader supported='no'/>\n  </os>\n  <cpu>\n    \
         <mode name='host-passthrough' supported='yes'/>\n    <mode name='maximum' supported='yes'/>\n    \
         <mode name='host-model' supported='yes'/>\n    <mode name='custom' supported='no'/>\n  </cpu>\n  \
         <devices>\n    <disk supported='yes'>\n      <enum name='diskDevice'>\n        <value>disk</value>\n      \
         </enum>\n      <enum name='bus'>\n        <value>virtio</value>\n      </enum>\n      \
         <enum name='model'/>\n    </disk>\n    <graphics supported='no'/>\n    <video supported='no'/>\n    \
         <hostdev supported='no'/>\n    <rng supported='yes'>\n      <enum name='model'>\n        \
         <value>virtio</value>\n      </enum>\n      <enum name='backendModel'>\n        <value>random</value>\n      \
         </enum>\n    </rng>\n  </devices>\n  <features>\n    <gic supported='no'/>\n    \
         <vmcoreinfo supported='no'/>\n    <genid supported='no'/>\n    <sev supported='no'/>\n  \
         </features>\n</domainCapabilities>\n",
        escape(&path),
        escape(machine)
    ))
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

    #[test]
    fn capabilities_name_the_vmm_and_guest_type() {
        let caps = capabilities(Path::new("/usr/bin/oxvirt-vmm"));
        assert!(caps.contains("<emulator>/usr/bin/oxvirt-vmm</emulator>"));
        assert!(caps.contains("<os_type>hvm</os_type>"));
        assert!(roxmltree::Document::parse(&caps).is_ok());
        let dc = domain_capabilities(Path::new("/x"), "", "", "", "").unwrap();
        assert!(roxmltree::Document::parse(&dc).is_ok());
        assert!(domain_capabilities(Path::new("/x"), "", "aarch64", "", "").is_err());
    }
}

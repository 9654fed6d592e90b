//! Host facts the connection-level procedures report: hostname, NODE_GET_INFO,
//! capabilities and domain capabilities XML, version numbers.
//!
//! Read from /proc and /sys at call time (cheap, and always current).

use std::fmt::Write as _;

use super::proto::{Model32, NodeInfoRet};

/// CONNECT_GET_TYPE: the hypervisor driver name virsh prints ("Running hypervisor: …").
pub const DRIVER_TYPE: &str = "OXVIRT";

/// The libvirt API level whose protocol we speak (9.0.0), for CONNECT_GET_LIB_VERSION.
pub const LIB_VERSION: u64 = 9_000_000;

/// CONNECT_GET_VERSION: our version in libvirt's `major * 1e6 + minor * 1e3 + micro`.
pub fn hypervisor_version() -> u64 {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let micro = parts.next().unwrap_or(0);
    major * 1_000_000 + minor * 1_000 + micro
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Total host memory in KiB (`MemTotal`).
fn mem_total_kib() -> u64 {
    meminfo_kib("MemTotal:")
}

/// Free host memory in KiB (`MemAvailable`, what libvirt's NODE_GET_FREE_MEMORY
/// approximates with `MemFree`; we report `MemFree` like libvirt).
pub fn mem_free_bytes() -> u64 {
    meminfo_kib("MemFree:") * 1024
}

fn meminfo_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn online_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

fn cpu_mhz() -> i32 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|m| m as i32)
        .unwrap_or(0)
}

/// NODE_GET_INFO.
pub fn node_info() -> NodeInfoRet {
    let cpus = online_cpus() as i32;
    NodeInfoRet {
        model: Model32(std::env::consts::ARCH.into()),
        memory: mem_total_kib(),
        cpus,
        mhz: cpu_mhz(),
        nodes: 1,
        sockets: 1,
        cores: cpus,
        threads: 1,
    }
}

/// The host UUID libvirt derives from the SMBIOS/machine id; we use /etc/machine-id.
fn host_uuid() -> String {
    let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let id: String = id
        .trim()
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    if id.len() == 32 {
        format!(
            "{}-{}-{}-{}-{}",
            &id[0..8],
            &id[8..12],
            &id[12..16],
            &id[16..20],
            &id[20..32]
        )
    } else {
        "00000000-0000-0000-0000-000000000000".into()
    }
}

/// CONNECT_GET_CAPABILITIES: libvirt's `<capabilities>` document for this host.
pub fn capabilities_xml(emulator: &str) -> String {
    let cpus = online_cpus();
    let mut x = String::new();
    let _ = write!(
        x,
        "<capabilities>\n\n  <host>\n    <uuid>{uuid}</uuid>\n    <cpu>\n      <arch>{arch}</arch>\n      \
         <topology sockets='1' dies='1' cores='{cpus}' threads='1'/>\n    </cpu>\n    \
         <power_management/>\n    <iommu support='no'/>\n    <topology>\n      <cells num='1'>\n        \
         <cell id='0'>\n          <memory unit='KiB'>{mem}</memory>\n          <cpus num='{cpus}'>\n",
        uuid = host_uuid(),
        arch = std::env::consts::ARCH,
        mem = mem_total_kib(),
    );
    for i in 0..cpus {
        let _ = writeln!(
            x,
            "            <cpu id='{i}' socket_id='0' die_id='0' core_id='{i}' siblings='{i}'/>"
        );
    }
    let _ = write!(
        x,
        "          </cpus>\n        </cell>\n      </cells>\n    </topology>\n    <secmodel>\n      \
         <model>none</model>\n      <doi>0</doi>\n    </secmodel>\n  </host>\n\n  <guest>\n    \
         <os_type>hvm</os_type>\n    <arch name='{arch}'>\n      <wordsize>64</wordsize>\n      \
         <emulator>{emulator}</emulator>\n      <machine maxCpus='255'>pc</machine>\n      \
         <domain type='kvm'/>\n    </arch>\n    <features>\n      <acpi default='on' toggle='yes'/>\n      \
         <apic default='on' toggle='no'/>\n    </features>\n  </guest>\n\n</capabilities>\n",
        arch = std::env::consts::ARCH,
        emulator = xml_escape(emulator),
    );
    x
}

/// CONNECT_GET_DOMAIN_CAPABILITIES: what a domain may ask for on this hypervisor.
pub fn domain_capabilities_xml(
    emulator: &str,
    arch: Option<&str>,
    machine: Option<&str>,
) -> String {
    format!(
        "<domainCapabilities>\n  <path>{path}</path>\n  <domain>kvm</domain>\n  <machine>{machine}</machine>\n  \
         <arch>{arch}</arch>\n  <vcpu max='255'/>\n  <iothreads supported='no'/>\n  \
         <os supported='yes'>\n    <enum name='firmware'/>\n    <loader supported='no'/>\n  </os>\n  \
         <cpu>\n    <mode name='host-passthrough' supported='yes'>\n      \
         <enum name='hostPassthroughMigratable'>\n        <value>off</value>\n      </enum>\n    </mode>\n    \
         <mode name='maximum' supported='yes'>\n      <enum name='maximumMigratable'>\n        \
         <value>off</value>\n      </enum>\n    </mode>\n    <mode name='host-model' supported='no'/>\n    \
         <mode name='custom' supported='no'/>\n  </cpu>\n  <memoryBacking supported='yes'>\n    \
         <enum name='sourceType'>\n      <value>anonymous</value>\n      <value>memfd</value>\n    </enum>\n  \
         </memoryBacking>\n  <devices>\n    <disk supported='yes'>\n      <enum name='diskDevice'>\n        \
         <value>disk</value>\n      </enum>\n      <enum name='bus'>\n        <value>virtio</value>\n      \
         </enum>\n      <enum name='model'>\n        <value>virtio</value>\n      </enum>\n    </disk>\n    \
         <graphics supported='no'/>\n    <video supported='no'/>\n    <hostdev supported='no'/>\n    \
         <rng supported='yes'>\n      <enum name='model'>\n        <value>virtio</value>\n      </enum>\n      \
         <enum name='backendModel'>\n        <value>random</value>\n      </enum>\n    </rng>\n  </devices>\n  \
         <features>\n    <gic supported='no'/>\n    <vmcoreinfo supported='no'/>\n    <genid supported='no'/>\n    \
         <sev supported='no'/>\n    <sgx supported='no'/>\n  </features>\n</domainCapabilities>\n",
        path = xml_escape(emulator),
        machine = xml_escape(machine.unwrap_or("pc")),
        arch = xml_escape(arch.unwrap_or(std::env::consts::ARCH)),
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_encoded_like_libvirt() {
        let v = hypervisor_version();
        let mut parts = env!("CARGO_PKG_VERSION").split('.');
        let major: u64 = parts.next().unwrap().parse().unwrap();
        assert_eq!(v / 1_000_000, major);
    }

    #[test]
    fn capabilities_name_the_emulator_and_host_arch() {
        let x = capabilities_xml("/usr/bin/oxvirt-vmm");
        assert!(x.contains("<emulator>/usr/bin/oxvirt-vmm</emulator>"));
        assert!(x.contains(&format!("<arch>{}</arch>", std::env::consts::ARCH)));
        assert!(x.starts_with("<capabilities>") && x.trim_end().ends_with("</capabilities>"));
    }

    #[test]
    fn node_info_reports_memory_and_cpus() {
        let n = node_info();
        assert!(n.cpus >= 1);
        assert!(n.memory > 0);
        assert_eq!(n.nodes * n.sockets * n.cores * n.threads, n.cpus);
    }
}

//! Host facts the connection-level procedures report: hostname, NODE_GET_INFO,
//! version numbers. The capabilities documents come from the core
//! ([`crate::core::caps`]).
//!
//! Read from /proc and /sys at call time (cheap, and always current).

use super::proto::{Model32, NodeInfoRet};

/// CONNECT_GET_TYPE: the hypervisor driver name virsh prints ("Running hypervisor: …").
pub const DRIVER_TYPE: &str = "OXVIRT";

/// The QEMU release whose QMP and machine types we implement (pc-q35-7.2, QMP 7.2).
pub const QEMU_COMPAT_VERSION: u64 = 7_002_000;

/// Whether a connection came in as libvirt's QEMU driver (`qemu:///…`, the drop-in).
fn is_qemu_uri(uri: &str) -> bool {
    uri.starts_with("qemu:")
}

/// CONNECT_GET_TYPE for a connection opened on `uri`: `QEMU` on `qemu:///…`, where
/// tools (virt-manager, virt-install, scripts) key decisions on libvirt's QEMU driver.
pub fn driver_type(uri: &str) -> &'static str {
    if is_qemu_uri(uri) {
        "QEMU"
    } else {
        DRIVER_TYPE
    }
}

/// The libvirt API level whose protocol we speak (9.0.0), for CONNECT_GET_LIB_VERSION.
pub const LIB_VERSION: u64 = 9_000_000;

/// CONNECT_GET_VERSION in libvirt's `major * 1e6 + minor * 1e3 + micro`: on `qemu:///…`
/// the QEMU release we stand in for (virt-install gates features on it), else ours.
pub fn hypervisor_version(uri: &str) -> u64 {
    if is_qemu_uri(uri) {
        return QEMU_COMPAT_VERSION;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_encoded_like_libvirt() {
        let v = hypervisor_version("oxvirt:///system");
        let mut parts = env!("CARGO_PKG_VERSION").split('.');
        let major: u64 = parts.next().unwrap().parse().unwrap();
        assert_eq!(v / 1_000_000, major);
    }

    #[test]
    fn qemu_uris_answer_as_libvirts_qemu_driver() {
        assert_eq!(driver_type("qemu:///system"), "QEMU");
        assert_eq!(hypervisor_version("qemu:///session"), 7_002_000);
        assert_eq!(driver_type("oxvirt:///system"), "OXVIRT");
    }

    #[test]
    fn node_info_reports_memory_and_cpus() {
        let n = node_info();
        assert!(n.cpus >= 1);
        assert!(n.memory > 0);
        assert_eq!(n.nodes * n.sockets * n.cores * n.threads, n.cpus);
    }
}

//! The connect object's identity answers: host name and versions. Host figures
//! (sysinfo, node CPU and memory) come from [`crate::core::host_info`], shared
//! with the libvirt protocol front end.

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

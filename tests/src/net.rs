//! For the NIC tests: whether this host lets a test create taps, and the oxtest
//! guest's `vnet-link` reports (its virtio-net driver prints one at start and one on
//! every configuration-change interrupt: `changes=N status=0|1 …`).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::host::{require_kvm, skip};
use crate::oxtest::{checks, Check};

/// True when KVM is usable and the test may create taps (root, `/dev/net/tun`); else
/// prints SKIPPED with the reason and returns false.
pub fn require_tap(test: &str) -> bool {
    if !require_kvm(test) {
        return false;
    }
    if !nix::unistd::Uid::effective().is_root() {
        skip(test, "needs root to create taps (and network namespaces)");
        return false;
    }
    if !Path::new("/dev/net/tun").exists() {
        skip(test, "no /dev/net/tun");
        return false;
    }
    true
}

/// The `status` (1 up, 0 down) of the guest's `vnet-link` line with `changes=n`
/// (0 = the state at start) among `checks`; `Err` says there is no such line or
/// that it is a FAIL.
pub fn link_status(checks: &[Check], n: usize) -> Result<String, String> {
    let changes = n.to_string();
    let line = checks
        .iter()
        .find(|c| c.name == "vnet-link" && c.field("changes") == Some(&changes))
        .ok_or_else(|| format!("no vnet-link line with changes={n}"))?;
    if !line.ok {
        return Err(format!("vnet-link FAIL {}", line.details));
    }
    Ok(line.field("status").unwrap_or_default().to_string())
}

/// As [`link_status`], reading the console file `console` until the line is there
/// or `within` has passed.
pub fn wait_link_status(console: &Path, n: usize, within: Duration) -> Result<String, String> {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        let r = link_status(&checks(&text), n);
        let missing = r.as_ref().is_err_and(|e| e.starts_with("no "));
        if !missing || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

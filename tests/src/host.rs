//! What this host's KVM can do.

use std::path::Path;

/// KVM is the `kvm_pvm` software hypervisor (guest code runs through the instruction
/// emulator; a stock Linux kernel cannot reach userspace).
pub fn emulated_kvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

/// `/dev/kvm` can be opened read-write; `Err` says why not.
pub fn kvm_usable() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("/dev/kvm: {e}"))
}

/// Prints a loud SKIPPED line for `test` (never skip silently). It goes straight to
/// stderr, past the test harness's output capture, so it shows in a plain `cargo test`.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write;
    let bar = "*".repeat(78);
    let msg = format!("\n{bar}\n*** SKIPPED: {test}: {reason}\n{bar}\n");
    let _ = std::io::stderr().write_all(msg.as_bytes());
}

/// For guest tests: true when KVM can run guests here, else prints SKIPPED and returns false.
pub fn require_kvm(test: &str) -> bool {
    match kvm_usable() {
        Ok(()) => true,
        Err(e) => {
            skip(test, &format!("no usable KVM ({e})"));
            false
        }
    }
}

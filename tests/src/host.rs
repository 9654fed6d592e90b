//! What this host's KVM can do.

use std::path::Path;

/// The three kinds of KVM the tests meet. Tests are the same on all three; only whether
/// a tier can run (and a known artefact or two of the nested path) differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvmKind {
    /// VMX/SVM of the real CPU: every tier runs.
    Hardware,
    /// The `kvm_pvm` software hypervisor of the CI machines: guest code runs through
    /// KVM's instruction emulator, so a stock Linux kernel cannot reach userspace (it
    /// stops at its first `int3`). Tier 4 is skipped here and runs in the nested guest.
    Emulated,
    /// `kvm_amd` inside a QEMU TCG guest whose `-cpu max` has SVM and nested paging
    /// (`tests/nested-svm/run`, tier 4 on the CI machines): hardware-like, slow.
    NestedSvm,
}

impl KvmKind {
    /// Whether a stock Linux kernel reaches userspace under this KVM (tier 4 runs).
    pub fn hardware_like(self) -> bool {
        self != KvmKind::Emulated
    }

    pub fn describe(self) -> &'static str {
        match self {
            KvmKind::Hardware => "hardware KVM",
            KvmKind::Emulated => "emulated KVM (kvm_pvm)",
            KvmKind::NestedSvm => "KVM on nested SVM inside QEMU TCG",
        }
    }
}

/// What kind of KVM this host has: `kvm_pvm` loaded means emulated; the nested-SVM
/// runner's `OXVIRT_NESTED_SVM=1`, or a CPU that QEMU's TCG makes up ("QEMU TCG CPU"
/// model name, AMD with `svm`), means nested SVM; anything else is hardware.
pub fn kvm_kind() -> KvmKind {
    if emulated_kvm() {
        KvmKind::Emulated
    } else if std::env::var("OXVIRT_NESTED_SVM").is_ok_and(|v| v == "1")
        || std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| tcg_cpu(&c))
    {
        KvmKind::NestedSvm
    } else {
        KvmKind::Hardware
    }
}

/// `/proc/cpuinfo` of a QEMU TCG `-cpu max` guest with SVM.
fn tcg_cpu(cpuinfo: &str) -> bool {
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    field("vendor_id") == "AuthenticAMD"
        && field("model name").starts_with("QEMU TCG CPU")
        && has("hypervisor")
        && has("svm")
}

/// KVM is the `kvm_pvm` software hypervisor (guest code runs through the instruction
/// emulator; a stock Linux kernel cannot reach userspace).
pub fn emulated_kvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

/// For tier-4 tests (a stock Linux kernel to userspace): true on hardware KVM and on
/// nested SVM; on the emulated KVM prints SKIPPED (naming the nested tier that runs them
/// there) and returns false, unless `OXVIRT_FULL_LINUX` forces them. Also false, after
/// SKIPPED, without a usable `/dev/kvm`.
pub fn require_hardware_like_kvm(test: &str) -> bool {
    if !require_kvm(test) {
        return false;
    }
    if !kvm_kind().hardware_like() && std::env::var_os("OXVIRT_FULL_LINUX").is_none() {
        skip(
            test,
            "KVM here is emulated (kvm_pvm, /sys/module/kvm_pvm): a stock Linux kernel stops \
             at its first int3 (int3_selftest) with a KVM emulation failure. Tier 4 runs on \
             this machine inside a QEMU TCG guest with nested SVM: scripts/test-nested-svm.sh \
             (.ci/run does); on a host with hardware KVM: \
             cargo test -p oxvirt-tests --test linux_full",
        );
        return false;
    }
    true
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

/// Debian's SeaBIOS, the firmware the firmware-boot tests boot (package `seabios`).
pub const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";

/// For firmware-boot tests: true when KVM can run guests and SeaBIOS is installed,
/// else prints SKIPPED with the reason and returns false.
pub fn require_seabios(test: &str) -> bool {
    if !require_kvm(test) {
        return false;
    }
    if !Path::new(SEABIOS).exists() {
        skip(
            test,
            &format!("{SEABIOS} is missing (apt-get install seabios)"),
        );
        return false;
    }
    true
}

/// Checks that process `pid` (a VMM started with `--mount-sandbox RT`) runs in a
/// mount namespace of its own laid out as the sandbox promises: `/` read-only, `/tmp`
/// a private writable tmpfs, `rt` bound writable at its own path.
pub fn check_mount_sandbox(pid: i32, rt: &Path) {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).unwrap();
    assert_ne!(
        ns(&pid.to_string()),
        ns("self"),
        "the VMM shares our mount namespace"
    );
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    // mountinfo: id parent dev root POINT OPTIONS … - FSTYPE …; the last line for a
    // point is the mount on top.
    let at = |point: &str| {
        mounts
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some(point))
            .unwrap_or_else(|| panic!("no mount on {point} in the VMM's namespace:\n{mounts}"))
    };
    let opts = |point: &str| at(point).split(' ').nth(5).unwrap_or_default();
    assert!(opts("/").starts_with("ro"), "/ is writable: {}", at("/"));
    assert!(at("/tmp").contains(" - tmpfs "), "{}", at("/tmp"));
    assert!(opts("/tmp").starts_with("rw"), "{}", at("/tmp"));
    let rt = rt.to_str().unwrap();
    assert!(opts(rt).starts_with("rw"), "{}", at(rt));
}

#[cfg(test)]
mod tests {
    use super::tcg_cpu;

    #[test]
    fn tcg_cpu_is_recognised() {
        let tcg =
            "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: QEMU TCG CPU version 2.5+\n\
                   flags\t\t: fpu vme hypervisor svm lahf_lm\n";
        assert!(tcg_cpu(tcg));
        assert!(!tcg_cpu(&tcg.replace(" svm", "")));
        let epyc = "vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7763 64-Core Processor\n\
                    flags\t\t: fpu hypervisor svm\n";
        assert!(!tcg_cpu(epyc));
    }
}

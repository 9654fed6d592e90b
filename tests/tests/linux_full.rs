//! Full Linux on hardware KVM: Debian's cloud kernel with a busybox initramfs reaches
//! userspace, sees the vCPUs and memory of the spec, powers off and reboots.
//!
//! These cannot run on an emulated KVM (`kvm_pvm`: the stock kernel stops at an
//! instruction the emulator cannot execute); there they print SKIPPED and return.
//! On a host with VMX/SVM:
//!
//!     cargo build --workspace --bins && cargo test -p oxvirt-tests --test linux_full
//!
//! `OXVIRT_FULL_LINUX=1` forces them to run even where KVM is emulated.

use std::time::Duration;

use machine_spec::{exit, LifecycleAction};
use oxvirt_tests::host::{emulated_kvm, require_kvm, skip};
use oxvirt_tests::linux::{busybox_initramfs, debian_kernel};
use oxvirt_tests::{spec, Vm};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn can_run(test: &str) -> bool {
    if !require_kvm(test) {
        return false;
    }
    if emulated_kvm() && std::env::var_os("OXVIRT_FULL_LINUX").is_none() {
        skip(
            test,
            "KVM here is emulated (kvm_pvm, /sys/module/kvm_pvm): a stock Linux kernel cannot \
             reach userspace under it. Run on a host with hardware KVM (VMX/SVM): \
             cargo test -p oxvirt-tests --test linux_full",
        );
        return false;
    }
    true
}

/// Boots the Debian kernel (bzImage or vmlinux) with the busybox initramfs.
fn boot(pvh: bool, mem_mib: u64, cpus: u32, exit_how: &str, on_reboot: LifecycleAction) -> Vm {
    let kernel = debian_kernel().expect("Debian cloud kernel");
    let initrd = busybox_initramfs().expect("busybox initramfs");
    let image = if pvh {
        &kernel.vmlinux
    } else {
        &kernel.vmlinuz
    };
    let cmdline = format!("console=ttyS0 panic=-1 oxlinux.exit={exit_how}");
    let mut s = spec(image, &cmdline, mem_mib, cpus);
    s.boot.initrd = Some(initrd);
    s.lifecycle.on_reboot = on_reboot;
    Vm::start(&s)
}

fn ready_fields(vm: &Vm) -> (u32, u64) {
    let line = vm.wait_for("OXLINUX READY", BOOT_TIMEOUT);
    let field = |k: &str| -> u64 {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| vm.fail(&format!("no {k} in `{line}`")))
    };
    (field("cpus=") as u32, field("memtotal_kb="))
}

fn check_memory(vm: &Vm, memtotal_kb: u64, mem_mib: u64) {
    let mem_kb = mem_mib << 10;
    // MemTotal excludes the kernel image, the page structs (1.6 %) and early reservations
    // (measured under QEMU TCG: 223632 kB of 256 MiB, 481052 kB of 512 MiB).
    if memtotal_kb > mem_kb || memtotal_kb + (48 << 10) + mem_kb * 3 / 100 < mem_kb {
        vm.fail(&format!(
            "MemTotal {memtotal_kb} kB for a {mem_mib} MiB guest"
        ));
    }
}

#[test]
fn bzimage_reaches_userspace_and_powers_off() {
    if !can_run("bzimage_reaches_userspace_and_powers_off") {
        return;
    }
    let vm = boot(false, 512, 2, "poweroff", LifecycleAction::Destroy);
    let (cpus, mem) = ready_fields(&vm);
    assert_eq!(cpus, 2, "{}", vm.console());
    check_memory(&vm, mem, 512);
    assert_eq!(
        vm.wait_exit(BOOT_TIMEOUT),
        exit::POWEROFF,
        "{}",
        vm.console()
    );
}

#[test]
fn pvh_vmlinux_with_four_cpus_and_4_5_gib() {
    if !can_run("pvh_vmlinux_with_four_cpus_and_4_5_gib") {
        return;
    }
    let vm = boot(true, 4608, 4, "poweroff", LifecycleAction::Destroy);
    let (cpus, mem) = ready_fields(&vm);
    assert_eq!(cpus, 4, "{}", vm.console());
    check_memory(&vm, mem, 4608);
    assert_eq!(
        vm.wait_exit(BOOT_TIMEOUT),
        exit::POWEROFF,
        "{}",
        vm.console()
    );
}

#[test]
fn reboot_with_on_reboot_destroy_exits_reboot() {
    if !can_run("reboot_with_on_reboot_destroy_exits_reboot") {
        return;
    }
    let vm = boot(false, 256, 1, "reboot", LifecycleAction::Destroy);
    vm.wait_for("OXLINUX rebooting", BOOT_TIMEOUT);
    assert_eq!(vm.wait_exit(BOOT_TIMEOUT), exit::REBOOT, "{}", vm.console());
}

#[test]
fn reboot_with_on_reboot_restart_boots_again() {
    if !can_run("reboot_with_on_reboot_restart_boots_again") {
        return;
    }
    let vm = boot(true, 256, 2, "reboot", LifecycleAction::Restart);
    vm.wait_count("OXLINUX READY", 2, BOOT_TIMEOUT * 2);
    assert!(vm.exited().is_none());
}

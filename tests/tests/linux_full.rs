//! Full Linux on hardware-like KVM (tier 4): Debian's cloud kernel reaches userspace, sees the vCPUs
//! and memory of the spec, powers off and reboots (the first four tests, with a small
//! initramfs of `oxvirt_tests::linux`), and drives our devices with its own virtio
//! drivers (the `full_linux_*` tests: the Linux test guest's bodies from
//! `linux_guest/cases.rs`, with `tests/linux-guest/build.sh --stock`, Debian's kernel,
//! its modules and udev in the same busybox initramfs and `/init` the patched guest
//! uses here): `/dev/vda` read/write with checksums (raw and qcow2), each disk's serial
//! in sysfs and as `/dev/disk/by-id/virtio-<serial>`, ping and TCP over a tap through
//! vhost-net with two queue pairs,
//! `/dev/hwrng`, vsock both ways, virtio-console and balloon, the ACPI power button.
//!
//! These cannot run on an emulated KVM (`kvm_pvm`: the stock kernel stops at an
//! instruction the emulator cannot execute); there they print SKIPPED and return, and
//! `scripts/test-nested-svm.sh` runs them inside a QEMU TCG guest with nested SVM
//! (`tests/nested-svm/`). On a host with VMX/SVM (Debian 12, root for the tap test;
//! `build.sh --stock` fetches the kernel with apt-get):
//!
//!     cargo build -p vmm --bins && cargo test -p oxvirt-tests --test linux_full
//!
//! `OXVIRT_FULL_LINUX=1` forces them to run even where KVM is emulated;
//! `OXVIRT_LINUX_STOCK_DIR` uses an existing `build.sh --stock` output directory,
//! `OXVIRT_DEBIAN_KERNEL_DIR` an existing kernel (no apt).

#[path = "linux_guest/cases.rs"]
mod cases;
#[path = "hyperv_common/mod.rs"]
mod hyperv_common;
#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use std::time::Duration;

use machine_spec::{exit, DiskFormat, LifecycleAction};
use oxvirt_tests::host::{kvm_kind, require_hardware_like_kvm};
use oxvirt_tests::linux::{busybox_initramfs, debian_kernel, unexpected_kernel_warnings};
use oxvirt_tests::{spec, Vm};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn can_run(test: &str) -> bool {
    require_hardware_like_kvm(test)
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
    // Kernel WARNINGs up to userspace (this command line is not `quiet`), less the one a
    // nested SVM guest prints (a TCG artefact: tests/README.md).
    let warnings = unexpected_kernel_warnings(&vm.console(), kvm_kind());
    if !warnings.is_empty() {
        vm.fail(&format!("the guest kernel warned: {warnings:?}"));
    }
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

#[test]
fn full_linux_boots_to_userspace_and_powers_off() {
    let Some(g) = support::full_guest("full_linux_boots_to_userspace_and_powers_off") else {
        return;
    };
    cases::boots_to_userspace_and_powers_off(g);
}

#[test]
fn full_linux_sees_two_cpus_and_the_memory() {
    let Some(g) = support::full_guest("full_linux_sees_two_cpus_and_the_memory") else {
        return;
    };
    cases::sees_two_cpus_and_the_memory(g);
}

#[test]
fn full_linux_acpi_power_button_powers_off() {
    let Some(g) = support::full_guest("full_linux_acpi_power_button_powers_off") else {
        return;
    };
    cases::acpi_power_button_powers_off(g);
}

#[test]
fn full_linux_reboot_restarts_the_guest() {
    let Some(g) = support::full_guest("full_linux_reboot_restarts_the_guest") else {
        return;
    };
    cases::reboot_restarts_the_guest(g);
}

#[test]
fn full_linux_virtio_blk_raw_read_write() {
    let Some(g) = support::full_guest("full_linux_virtio_blk_raw_read_write") else {
        return;
    };
    cases::virtio_blk_read_write(g, DiskFormat::Raw);
}

#[test]
fn full_linux_virtio_blk_qcow2_read_write() {
    let Some(g) = support::full_guest("full_linux_virtio_blk_qcow2_read_write") else {
        return;
    };
    cases::virtio_blk_read_write(g, DiskFormat::Qcow2);
}

/// vhost-net (`<driver name='vhost'>`: the kernel of the nested tier has it) with two
/// queue pairs and two vCPUs: ping, and TCP from each vCPU through its own pair.
#[test]
fn full_linux_vhost_net_two_pairs_ping_and_tcp_over_a_tap() {
    let test = "full_linux_vhost_net_two_pairs_ping_and_tcp_over_a_tap";
    let Some(g) = support::full_guest(test) else {
        return;
    };
    cases::virtio_net_reaches_a_tap(test, g, machine_spec::NetDriver::Vhost, 2, false);
}

/// vhost-net on INTA# (`pci=nomsi`): no vector to hand the kernel, so the VMM relays
/// each ring's interrupt.
#[test]
fn full_linux_vhost_net_on_intx_ping_and_tcp_over_a_tap() {
    let test = "full_linux_vhost_net_on_intx_ping_and_tcp_over_a_tap";
    let Some(g) = support::full_guest(test) else {
        return;
    };
    cases::virtio_net_reaches_a_tap(test, g, machine_spec::NetDriver::Vhost, 1, true);
}

#[test]
fn full_linux_virtio_rng_console_balloon() {
    let Some(g) = support::full_guest("full_linux_virtio_rng_console_balloon") else {
        return;
    };
    cases::virtio_rng_console_balloon(g);
}

#[test]
fn full_linux_virtio_on_intx_with_pci_nomsi() {
    let Some(g) = support::full_guest("full_linux_virtio_on_intx_with_pci_nomsi") else {
        return;
    };
    cases::virtio_on_intx_with_pci_nomsi(g);
}

#[test]
fn full_linux_virtio_vsock_both_ways() {
    let Some(g) = support::full_guest("full_linux_virtio_vsock_both_ways") else {
        return;
    };
    cases::virtio_vsock_both_ways(g);
}

/// The Hyper-V enlightenments as a guest sees them, where KVM has Hyper-V support (the
/// oxtest guest, not Linux: `hyperv_common`); on an emulated KVM `hyperv_guest.rs`
/// checks the refusal instead.
#[test]
fn full_hyperv_enlightenments() {
    if !can_run("full_hyperv_enlightenments") {
        return;
    }
    hyperv_common::run("full_hyperv_enlightenments");
}

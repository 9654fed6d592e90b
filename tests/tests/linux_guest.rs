//! Real Linux judges the VMM: the Linux test guest (`tests/linux-guest/`) booted by
//! `oxvirt-vmm` to its busybox user space, with Linux's own ACPI, PCI and virtio
//! drivers. About 25-40 s per boot on the emulated KVM of the CI machines (under a
//! second on hardware KVM), so each test boots once and checks several things. The
//! bodies (`linux_guest/cases.rs`) are shared with `linux_full.rs`, which runs them with
//! Debian's kernel on hardware KVM.
//!
//! `OXVIRT_LINUX_GUEST=stock` runs these tests with Debian's cloud kernel too (on
//! hardware KVM; the emulated KVM cannot run it and the tests say so).

#[path = "linux_guest/cases.rs"]
mod cases;
#[allow(dead_code)] // shared with linux_full.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use machine_spec::DiskFormat;
use support::guest;

#[test]
fn linux_boots_to_userspace_and_powers_off() {
    let Some(g) = guest("linux_boots_to_userspace_and_powers_off") else {
        return;
    };
    cases::boots_to_userspace_and_powers_off(g);
}

#[test]
fn linux_sees_two_cpus_and_the_memory() {
    let Some(g) = guest("linux_sees_two_cpus_and_the_memory") else {
        return;
    };
    cases::sees_two_cpus_and_the_memory(g);
}

#[test]
fn linux_acpi_power_button_powers_off() {
    let Some(g) = guest("linux_acpi_power_button_powers_off") else {
        return;
    };
    cases::acpi_power_button_powers_off(g);
}

#[test]
fn linux_reboot_restarts_the_guest() {
    let Some(g) = guest("linux_reboot_restarts_the_guest") else {
        return;
    };
    cases::reboot_restarts_the_guest(g);
}

#[test]
fn linux_virtio_blk_raw_read_write() {
    let Some(g) = guest("linux_virtio_blk_raw_read_write") else {
        return;
    };
    cases::virtio_blk_read_write(g, DiskFormat::Raw);
}

#[test]
fn linux_virtio_blk_qcow2_read_write() {
    let Some(g) = guest("linux_virtio_blk_qcow2_read_write") else {
        return;
    };
    cases::virtio_blk_read_write(g, DiskFormat::Qcow2);
}

#[test]
fn linux_virtio_on_intx_with_pci_nomsi() {
    let Some(g) = guest("linux_virtio_on_intx_with_pci_nomsi") else {
        return;
    };
    cases::virtio_on_intx_with_pci_nomsi(g);
}

#[test]
fn linux_virtio_net_reaches_a_tap() {
    let test = "linux_virtio_net_reaches_a_tap";
    let Some(g) = guest(test) else { return };
    cases::virtio_net_reaches_a_tap(test, g, machine_spec::NetDriver::Default, 1, false);
}

#[test]
fn linux_virtio_rng_console_balloon_bind() {
    let Some(g) = guest("linux_virtio_rng_console_balloon_bind") else {
        return;
    };
    cases::virtio_rng_console_balloon(g);
}

#[test]
fn linux_virtio_vsock_both_ways() {
    let Some(g) = guest("linux_virtio_vsock_both_ways") else {
        return;
    };
    cases::virtio_vsock_both_ways(g);
}

#[test]
fn linux_firmware_boot_through_a_bootloader_behind_root_ports() {
    let test = "linux_firmware_boot_through_a_bootloader_behind_root_ports";
    let Some(g) = guest(test) else { return };
    cases::firmware_boot_through_a_bootloader_behind_root_ports(test, g);
}

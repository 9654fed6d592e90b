//! The fw_cfg device as the oxtest guest reads it (`oxtest=fwcfg`): signature and id
//! through the ports, the DMA register, the file directory, `etc/e820` by DMA equal to
//! the map the loader handed over, DMA skip/select, and the error bit for a write and
//! for a buffer outside RAM. Direct kernel boot has fw_cfg too (QEMU machines always
//! do), with no ACPI loader files: the VMM places the tables itself.

use machine_spec::exit;
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::{spec, test_guests, Vm, GUEST_TIMEOUT};

fn run_fwcfg(kernel: &std::path::Path, mem_mib: u64, cpus: u32) -> Vm {
    let cmdline = format!("console=ttyS0 oxtest=e820,fwcfg,poweroff mem_expect={mem_mib}");
    let vm = Vm::start(&spec(kernel, &cmdline, mem_mib, cpus));
    vm.wait_for("OXTEST DONE", GUEST_TIMEOUT);
    vm.assert_no_failures();
    vm.expect_exit(exit::POWEROFF, GUEST_TIMEOUT);
    vm
}

#[test]
fn fw_cfg_contract_pvh() {
    if !require_kvm("fw_cfg_contract_pvh") {
        return;
    }
    let vm = run_fwcfg(&test_guests().elf, 128, 1);
    let c = vm.expect_ok("fwcfg", GUEST_TIMEOUT);
    assert_eq!(c.field("sig"), Some("QEMU"), "{}", vm.console());
    assert_eq!(c.field("id"), Some("0x3"), "traditional | DMA");
    // Only etc/e820 on the generic platform: no table loader for direct boot.
    assert_eq!(c.field("names"), Some("etc/e820"), "{}", c.details);
    assert_eq!(c.field("e820_key"), Some("0x20"));
    let entries = c.field("e820_entries").unwrap_or_default();
    assert_ne!(entries, "0");
    assert_eq!(Some(entries), c.field("boot_entries"));
}

#[test]
fn fw_cfg_contract_bzimage_with_high_memory() {
    if !require_kvm("fw_cfg_contract_bzimage_with_high_memory") {
        return;
    }
    // 3.5 GiB: RAM on both sides of the PCI hole, so etc/e820 has a high range too.
    let vm = run_fwcfg(&test_guests().bzimage, 3584, 2);
    let c = vm.expect_ok("fwcfg", GUEST_TIMEOUT);
    let boot = vm.expect_ok("boot", GUEST_TIMEOUT);
    assert_eq!(boot.field("protocol"), Some("bzimage"));
    let e820 = vm.expect_ok("e820", GUEST_TIMEOUT);
    assert_eq!(e820.field("above_4g_mib"), Some("512"), "{}", e820.details);
    assert_eq!(c.field("e820_entries"), c.field("boot_entries"));
}

//! The CFI flash behind `<nvram>` (the UEFI variable store) as OVMF drives it, checked
//! by a firmware image of ours: `guests/flashtest/flashtest.S` is the `code` image of a
//! Q35 machine with `Efi` firmware, so the vCPU starts in it at the reset vector and it
//! runs, against the flash the VMM maps right below it: OVMF's flash detection
//! (`QemuFlashDetected`) step by step, read array, read ID and CFI query, byte program
//! (bits only clear), the status register after program and erase, block erase, clear
//! status (reads 0x00 afterwards, which OVMF's detection needs), and a marker that tells
//! whether an earlier run's writes are still there. Real OVMF cannot run on the emulated
//! KVM of the development machines (it stops at its first `fwait`), so this is what runs
//! its flash contract there.
//!
//! On the host the test checks that the VARS file was created from the template and now
//! holds exactly what the guest wrote, that a second VMM run on the same file sees it
//! (persistence across a VMM restart), and that a second VMM on a store in use is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use machine_spec::{exit, Chipset, Firmware, FirmwareKind, MachineSpec};
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::{spec, test_guests, Vm};

/// The guest's run is ≈ 18 k flash accesses, one VMM exit each: ≈ 2 s on the emulated KVM.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The store: 16 sectors of 4 KiB.
const VARS_SIZE: usize = 0x10000;
const SECTOR: usize = 0x1000;
/// Where the VMM maps it: right below the 64 KiB image, which ends at 4 GiB.
const ROM_SIZE: u64 = 0x10000;
const VARS_BASE: u64 = (1 << 32) - ROM_SIZE - VARS_SIZE as u64;

/// The image's configuration block (offset 0): magic, flash base, flash size, flags.
const CONFIG_MAGIC: &[u8; 16] = b"OXFLASH-CONFIG1\0";
/// Config flag: print `OXFLASH HOLD` and halt instead of powering off.
const FLAG_HOLD: u32 = 1;

/// What the guest programs (offset, template bytes, data, result = template & data).
const PROG: usize = 0x2000;
const PROG_TEMPLATE: [u8; 8] = [0x0f, 0xff, 0xff, 0xff, 0x3c, 0xaa, 0x55, 0x81];
const PROG_RESULT: [u8; 8] = [0x00, b'O', b'X', b'F', 0x3c, 0x0a, 0x50, 0x81];
/// The sector it erases.
const ERASE: usize = 0x3000;
/// The marker it programs into the free space of the last sector.
const MARK: usize = VARS_SIZE - 0x800;
const MARKER: &[u8; 8] = b"OXFLMARK";

/// The template the guest expects (see the comment at the top of flashtest.S): an FV-like
/// zero vector first (the detection probe skips it), the bytes to program, a pattern,
/// and an erased last sector.
fn template_bytes() -> Vec<u8> {
    (0..VARS_SIZE)
        .map(|o| match o {
            0..16 => 0,
            _ if (PROG..PROG + 8).contains(&o) => PROG_TEMPLATE[o - PROG],
            _ if o >= VARS_SIZE - SECTOR => 0xff,
            _ => (o ^ (o >> 8) ^ 0x5a) as u8,
        })
        .collect()
}

/// What a complete run leaves in the store: programmed bytes, the erased sector, the
/// marker.
fn after_run(template: &[u8]) -> Vec<u8> {
    let mut v = template.to_vec();
    v[PROG..PROG + 8].copy_from_slice(&PROG_RESULT);
    v[ERASE..ERASE + SECTOR].fill(0xff);
    v[MARK..MARK + 8].copy_from_slice(MARKER);
    v
}

/// A copy of flashtest.rom in `dir` with its configuration block filled in.
fn image(dir: &Path, flags: u32) -> PathBuf {
    let mut rom = std::fs::read(&test_guests().flashtest).expect("reading flashtest.rom");
    assert_eq!(rom.len() as u64, ROM_SIZE, "flashtest.rom size");
    assert_eq!(
        &rom[..16],
        CONFIG_MAGIC,
        "flashtest.rom configuration block"
    );
    rom[16..20].copy_from_slice(&(VARS_BASE as u32).to_le_bytes());
    rom[20..24].copy_from_slice(&(VARS_SIZE as u32).to_le_bytes());
    rom[24..28].copy_from_slice(&flags.to_le_bytes());
    let path = dir.join(format!("flashtest-{flags}.rom"));
    std::fs::write(&path, rom).expect("writing the patched image");
    path
}

/// A Q35 machine with `code` as its UEFI firmware and `vars` (from `template`) as its
/// variable store: one vCPU, 64 MiB, COM1 on stdio, no ACPI.
fn flash_spec(code: &Path, vars: &Path, template: &Path) -> MachineSpec {
    let mut s = spec(code, "", 64, 1);
    s.name = "flashtest".into();
    s.boot.kernel = None;
    s.boot.firmware = Some(Firmware {
        kind: FirmwareKind::Efi,
        code: code.to_path_buf(),
        vars: Some(vars.to_path_buf()),
        vars_template: Some(template.to_path_buf()),
        boot_menu_timeout_ms: None,
        reboot_timeout_ms: None,
        serial_console: false,
        smbios: None,
    });
    s.platform.chipset = Chipset::Q35;
    s.platform.acpi = false;
    s
}

/// A temporary directory with the template written; the VARS path (not created yet,
/// in a directory that does not exist yet: the VMM makes both, as libvirt does).
fn store() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("FLASHTEST_VARS.fd");
    std::fs::write(&template, template_bytes()).unwrap();
    let vars = dir.path().join("nvram").join("flashtest_VARS.fd");
    (dir, template, vars)
}

/// Waits for the guest's `OXFLASH DONE` and fails on any `OXFLASH … FAIL` line; returns
/// the `OXFLASH` lines.
fn guest_report(vm: &Vm) -> String {
    vm.wait_for("OXFLASH DONE", RUN_TIMEOUT);
    let lines: Vec<String> = vm
        .console_lines()
        .lines()
        .filter(|l| l.starts_with("OXFLASH"))
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    if let Some(bad) = lines.iter().find(|l| l.contains(" FAIL ")) {
        vm.fail(&format!("guest check failed: {bad}"));
    }
    if !lines.iter().any(|l| l == "OXFLASH DONE failures=0") {
        vm.fail("the guest counted failures");
    }
    lines.join("\n")
}

/// Every check the guest makes, `ok`, and the marker line.
fn assert_all_checks(vm: &Vm, report: &str, persisted: &str) {
    for check in [
        // The probe lands past the template's 16 zero bytes, as OVMF's does on a real
        // store (past the FV header's zero vector).
        "OXFLASH detect ok probe=0x00000010",
        "OXFLASH read-array ok bytes=0x00010000",
        "OXFLASH id ok manufacturer=0x89 device=0x18",
        "OXFLASH cfi ok",
        "OXFLASH program-status ok status=0x80",
        "OXFLASH program ok bytes=0x08",
        "OXFLASH erase ok status=0x80",
        "OXFLASH clear-status ok status=0x00",
        &format!("OXFLASH marker ok persisted={persisted}"),
    ] {
        if !report.lines().any(|l| l == check) {
            vm.fail(&format!("no `{check}` line in the guest's report"));
        }
    }
}

#[test]
fn flash_contract_and_persistence_across_a_vmm_restart() {
    if !require_kvm("flash_contract_and_persistence_across_a_vmm_restart") {
        return;
    }
    let (dir, template, vars) = store();
    let code = image(dir.path(), 0);
    let spec = flash_spec(&code, &vars, &template);
    let expected = after_run(&template_bytes());

    // First start: the store is created from the template, the guest finds no marker.
    let vm = Vm::start(&spec);
    let report = guest_report(&vm);
    assert!(
        report.starts_with(&format!(
            "OXFLASH START base={VARS_BASE:#010x} size={VARS_SIZE:#010x}"
        )),
        "{report}"
    );
    assert_all_checks(&vm, &report, "no");
    vm.expect_exit(exit::POWEROFF, RUN_TIMEOUT);
    drop(vm);
    let got = std::fs::read(&vars).expect("the VARS file was created");
    assert_store(&got, &expected, "after the first run");
    assert_eq!(
        std::fs::read(&template).unwrap(),
        template_bytes(),
        "the template is never written"
    );

    // Second start, a new VMM process on the same file: the writes are there.
    let vm = Vm::start(&spec);
    let report = guest_report(&vm);
    assert_all_checks(&vm, &report, "yes");
    vm.expect_exit(exit::POWEROFF, RUN_TIMEOUT);
    assert_store(
        &std::fs::read(&vars).unwrap(),
        &expected,
        "after the second run",
    );
}

#[test]
fn a_second_vmm_on_a_store_in_use_is_refused() {
    if !require_kvm("a_second_vmm_on_a_store_in_use_is_refused") {
        return;
    }
    let (dir, template, vars) = store();
    let holding = flash_spec(&image(dir.path(), FLAG_HOLD), &vars, &template);
    let first = Vm::start(&holding);
    let report = guest_report(&first);
    assert_all_checks(&first, &report, "no");
    first.wait_for("OXFLASH HOLD", RUN_TIMEOUT);

    // The first VMM keeps the store open (and locked) while its guest halts.
    let second = Vm::start(&flash_spec(&image(dir.path(), 0), &vars, &template));
    second.expect_exit(exit::VMM_ERROR, RUN_TIMEOUT);
    let want = format!(
        "NVRAM file '{}' is in use by another process",
        vars.display()
    );
    if !second.log().contains(&want) {
        second.fail(&format!("the VMM log does not say `{want}`"));
    }
    if second.console().contains("OXFLASH") {
        second.fail("the refused VMM ran its guest");
    }
    if first.exited().is_some() {
        first.fail("the first VMM ended while the second was refused");
    }

    // Killing the first VMM loses nothing: every program and erase was written through.
    first.kill();
    assert_store(
        &std::fs::read(&vars).unwrap(),
        &after_run(&template_bytes()),
        "after SIGKILL",
    );
}

/// Compares the store byte for byte, naming the first difference.
fn assert_store(got: &[u8], want: &[u8], when: &str) {
    assert_eq!(got.len(), want.len(), "VARS file size {when}");
    if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
        let n = (0..want.len()).filter(|&i| got[i] != want[i]).count();
        panic!(
            "VARS file {when}: {n} bytes differ, the first at {i:#x}: {:#04x}, expected {:#04x}",
            got[i], want[i]
        );
    }
}

//! SeaBIOS with a TPM (tier 2): Debian's SeaBIOS on Q35 finds the CRB interface (and,
//! in a second boot, the TIS FIFO interface) and the TPM2 table's event-log area (`etc/tpm/log` through the table loader), starts the TPM
//! and measures the boot (TPM2_Startup, TPM2_PCR_Extend), every command answered with
//! success by swtpm, and then boots the boot sector as without a TPM (≈ 5 s). The VMM's
//! debug log of the CRB (`vmm::tpm=debug`) shows the commands. Skipped loudly without
//! SeaBIOS or swtpm.

use std::time::Duration;

use machine_spec::{exit, Chipset, Device, DeviceKind, Firmware, FirmwareKind, Tpm, TpmModel};
use oxvirt_tests::guests::boot_disk;
use oxvirt_tests::host::{require_seabios, skip, SEABIOS};
use oxvirt_tests::spec::{disk_device, raw_disk, spec};
use oxvirt_tests::Vm;

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

#[test]
fn seabios_starts_the_tpm_and_measures_the_boot() {
    run("firmware_tpm", TpmModel::Crb);
}

#[test]
fn seabios_starts_the_tis_tpm_and_measures_the_boot() {
    run("firmware_tpm (tis)", TpmModel::Tis);
}

fn run(test: &str, model: TpmModel) {
    if !require_seabios(test) {
        return;
    }
    if !installed("swtpm") || !installed("swtpm_setup") {
        skip(
            test,
            "swtpm and swtpm_setup are not installed (Debian packages swtpm, swtpm-tools)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("boot.img");
    boot_disk(&image, "tpm").unwrap();
    let mut s = spec(std::path::Path::new(SEABIOS), "", 64, 1);
    s.boot.kernel = None;
    s.boot.firmware = Some(Firmware {
        kind: FirmwareKind::Bios,
        code: SEABIOS.into(),
        vars: None,
        vars_template: None,
        boot_menu_timeout_ms: None,
        reboot_timeout_ms: None,
        serial_console: true,
        smbios: None,
    });
    s.platform.chipset = Chipset::Q35;
    let mut disk = disk_device("virtio-disk0", 2, raw_disk(&image));
    disk.boot_index = Some(1);
    s.devices.push(disk);
    s.devices.push(Device {
        id: "tpm0".into(),
        pci: None,
        boot_index: None,
        kind: DeviceKind::Tpm(Tpm {
            model,
            state_dir: dir.path().join("swtpm"),
            log: None,
        }),
    });
    // The harness passes OXVIRT_LOG on; both tests of this binary set the same value.
    std::env::set_var("OXVIRT_LOG", "info,vmm::tpm=debug");
    let vm = Vm::start(&s);
    vm.wait_for("OXBOOT-SECTOR-OK", BOOT_TIMEOUT);
    vm.expect_exit(exit::POWEROFF, BOOT_TIMEOUT);
    let log = vm.log();
    let commands: Vec<&str> = log.lines().filter(|l| l.contains("TPM command")).collect();
    let ran = |code: &str| {
        commands
            .iter()
            .any(|l| l.contains(&format!("code={code} ")))
    };
    assert!(
        ran("0x144"),
        "no TPM2_Startup from SeaBIOS; VMM log:\n{log}"
    );
    assert!(
        ran("0x182"),
        "no TPM2_PCR_Extend from SeaBIOS; VMM log:\n{log}"
    );
    let failed: Vec<&&str> = commands.iter().filter(|l| !l.contains("rc=0x0 ")).collect();
    assert!(failed.is_empty(), "TPM commands that failed: {failed:#?}");
    assert!(dir.path().join("swtpm/tpm2-00.permall").is_file());
}

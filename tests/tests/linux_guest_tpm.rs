//! Linux's own TPM drivers on the VMM's TPM (tier 3): with `<tpm model='tpm-crb'>`
//! (swtpm behind the CRB interface) the Linux test guest's `tpm_crb`, with
//! `model='tpm-tis'` (the TIS FIFO interface) its `tpm_tis`, binds the ACPI `MSFT0101`
//! device, the TPM core starts the TPM and registers a TPM 2.0 (`tpm0`, `tpmrm0`), a
//! TPM2_GetRandom written to `/dev/tpm0` comes back with 16 bytes, and the sha256
//! PCR 0 reads through sysfs (≈ 30-60 s each). Skipped loudly without swtpm, or when
//! the guest kernel was built without the driver (`CONFIG_TCG_CRB=y`, `CONFIG_TCG_TIS=y`).

#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use machine_spec::{exit, Device, DeviceKind, Tpm, TpmModel};
use oxvirt_tests::{skip, Vm};
use support::{base64, check, guest, wait_ready, EXIT};

/// What the guest reports: the TPM's version and driver, its device nodes, and the
/// answer to TPM2_GetRandom(16) in hex.
const SCRIPT: &str = r#"read -r v </sys/class/tpm/tpm0/tpm_version_major
cd -P /sys/class/tpm/tpm0/device/driver && d=${PWD##*/}; cd /
echo "OXCHECK tpm version=$v driver=$d"
[ -c /dev/tpm0 ] && [ -c /dev/tpmrm0 ] && echo "OXCHECK tpm nodes=yes"
exec 3<>/dev/tpm0
printf '\200\001\000\000\000\014\000\000\001\173\000\020' >&3
r=$(dd bs=64 count=1 <&3 2>/dev/null | od -An -tx1 | tr -d ' \n')
echo "OXCHECK tpm getrandom=$r"
read -r p </sys/class/tpm/tpm0/pcr-sha256/0
echo "OXCHECK tpm pcr0=$p"
"#;

fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

#[test]
fn linux_tpm_crb_drives_the_swtpm_behind_the_crb_interface() {
    run(
        "linux_tpm_crb_drives_the_swtpm_behind_the_crb_interface",
        TpmModel::Crb,
    );
}

#[test]
fn linux_tpm_tis_drives_the_swtpm_behind_the_tis_interface() {
    run(
        "linux_tpm_tis_drives_the_swtpm_behind_the_tis_interface",
        TpmModel::Tis,
    );
}

fn run(test: &str, model: TpmModel) {
    let (driver, option) = match model {
        TpmModel::Crb => ("tpm_crb", "CONFIG_TCG_CRB=y"),
        TpmModel::Tis => ("tpm_tis", "CONFIG_TCG_TIS=y"),
    };
    if !installed("swtpm") || !installed("swtpm_setup") {
        skip(
            test,
            "swtpm and swtpm_setup are not installed (Debian packages swtpm, swtpm-tools)",
        );
        return;
    }
    let Some(g) = guest(test) else {
        return;
    };
    // The driver is built in by tests/linux-guest/config.fragment.
    let config = std::fs::read_to_string(g.dir.join("kernel.config")).unwrap_or_default();
    if !config.lines().any(|l| l == option) {
        skip(
            test,
            &format!("the Linux test guest's kernel has no built-in {driver} ({option})"),
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mem = if g.stock { 256 } else { 128 };
    let mut spec = g.spec(
        1,
        mem,
        &format!("oxvirt_cmd64={}", base64(SCRIPT.as_bytes())),
    );
    spec.devices.push(Device {
        id: "tpm0".into(),
        pci: None,
        boot_index: None,
        kind: DeviceKind::Tpm(Tpm {
            model,
            state_dir: dir.path().join("swtpm"),
            log: None,
        }),
    });
    let vm = Vm::start(&spec);
    wait_ready(&vm, g);
    vm.expect_exit(exit::POWEROFF, EXIT);
    let console = vm.console_lines();
    let line = |prefix: &str| {
        console
            .lines()
            .find(|l| l.starts_with(prefix))
            .map(|l| l.trim_end_matches('\r').to_string())
            .unwrap_or_default()
    };
    let id = line("OXCHECK tpm version=");
    check(
        &vm,
        id == format!("OXCHECK tpm version=2 driver={driver}"),
        &format!("Linux did not register a TPM 2.0 through {driver}: {id:?}"),
    );
    check(
        &vm,
        !line("OXCHECK tpm nodes=yes").is_empty(),
        "no /dev/tpm0 and /dev/tpmrm0",
    );
    // TPM_ST_NO_SESSIONS, 28 bytes, TPM_RC_SUCCESS, 16 random bytes.
    let rnd = line("OXCHECK tpm getrandom=");
    let hex = rnd.trim_start_matches("OXCHECK tpm getrandom=");
    check(
        &vm,
        hex.len() == 56 && hex.starts_with("80010000001c000000000010"),
        &format!("TPM2_GetRandom through /dev/tpm0: {rnd:?}"),
    );
    // Nothing measured into PCR 0 without firmware: 32 zero bytes, in hex.
    let pcr = line("OXCHECK tpm pcr0=");
    check(
        &vm,
        pcr.trim_start_matches("OXCHECK tpm pcr0=") == "0".repeat(64),
        &format!("sha256 PCR 0 through sysfs: {pcr:?}"),
    );
}

//! The CRB interface in front of a real swtpm, without a guest (tier 1, no KVM): the
//! VMM's swtpm backend manufactures the state, brings the TPM up as at power-on, runs
//! TPM2_Startup and TPM2_GetRandom through the CRB registers; when swtpm dies, commands
//! answer TPM_RC_FAILURE and CTRL_STS shows the fatal-error bit, and a machine reset
//! after that still builds (the VM runs on). The TIS FIFO interface in front of swtpm
//! the same way (TPM2_Startup, GetRandom, PCR_Read, byte by byte as Linux's tpm_tis
//! writes them), at locality 0 and then 2. Skipped when swtpm is not installed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use machine_spec::{Tpm, TpmModel};
use vmm::tpm::crb::{Crb, DATA_BUFFER, RC_FAILURE};
use vmm::tpm::swtpm::{has_state, Swtpm, SwtpmHandle};
use vmm::tpm::tis::Tis;

const LOC_CTRL: u64 = 0x08;
const CTRL_REQ: u64 = 0x40;
const CTRL_STS: u64 = 0x44;
const CTRL_START: u64 = 0x4c;

fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

fn rd32(c: &mut Crb<SwtpmHandle>, off: u64) -> u32 {
    let mut b = [0u8; 4];
    c.read(off, &mut b);
    u32::from_le_bytes(b)
}

fn wr32(c: &mut Crb<SwtpmHandle>, off: u64, v: u32) {
    c.write(off, &v.to_le_bytes());
}

/// Runs `cmd` as a driver does; returns the response.
fn command(c: &mut Crb<SwtpmHandle>, cmd: &[u8]) -> Vec<u8> {
    c.write(DATA_BUFFER, cmd);
    wr32(c, CTRL_START, 1);
    assert_eq!(rd32(c, CTRL_START), 0);
    let mut hdr = [0u8; 10];
    c.read(DATA_BUFFER, &mut hdr);
    let len = u32::from_be_bytes(hdr[2..6].try_into().unwrap()) as usize;
    let mut rsp = vec![0u8; len];
    c.read(DATA_BUFFER, &mut rsp);
    rsp
}

fn rc(rsp: &[u8]) -> u32 {
    u32::from_be_bytes(rsp[6..10].try_into().unwrap())
}

const STARTUP_CLEAR: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0];
const GET_RANDOM_16: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 16];

#[test]
fn crb_commands_reach_swtpm_and_its_death_answers_tpm_failure() {
    if !installed("swtpm") || !installed("swtpm_setup") {
        eprintln!(
            "*** SKIPPED: swtpm_crb: swtpm/swtpm_setup not installed (Debian swtpm, swtpm-tools)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tpm = Tpm {
        model: TpmModel::Crb,
        state_dir: dir.path().join("state"),
        log: Some(dir.path().join("swtpm.log")),
    };
    let swtpm = Swtpm::start(&tpm, "swtpm-crb-test:00000000-0000-0000-0000-000000000001")
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(has_state(&tpm.state_dir), "swtpm_setup left no state");
    let pid = swtpm.pid();
    let handle = SwtpmHandle(Arc::new(Mutex::new(swtpm)));
    handle.0.lock().unwrap().machine_start().unwrap();

    let mut crb = Crb::new(handle.clone());
    wr32(&mut crb, LOC_CTRL, 1);
    wr32(&mut crb, CTRL_REQ, 1);
    assert_eq!(rc(&command(&mut crb, &STARTUP_CLEAR)), 0);
    let r = command(&mut crb, &GET_RANDOM_16);
    assert_eq!(rc(&r), 0);
    assert_eq!(r.len(), 12 + 16);
    assert_eq!(u16::from_be_bytes([r[10], r[11]]), 16);
    assert_eq!(rd32(&mut crb, CTRL_STS) & 1, 0, "no fatal error yet");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let r = command(&mut crb, &GET_RANDOM_16);
    assert_eq!(rc(&r), RC_FAILURE);
    assert_eq!(
        rd32(&mut crb, CTRL_STS) & 1,
        1,
        "CTRL_STS tpmSts (fatal error)"
    );
    // A reset builds a new machine on the dead TPM: it comes up failed, not as an error.
    handle.0.lock().unwrap().machine_start().unwrap();
    let mut crb = Crb::new(handle);
    wr32(&mut crb, LOC_CTRL, 1);
    wr32(&mut crb, CTRL_REQ, 1);
    assert_eq!(rc(&command(&mut crb, &STARTUP_CLEAR)), RC_FAILURE);
}

/// TPM2_PCR_Read of sha256 PCR 0.
const PCR_READ_SHA256_0: [u8; 20] = [
    0x80, 0x01, 0, 0, 0, 20, 0, 0, 0x01, 0x7e, 0, 0, 0, 1, 0, 0x0b, 3, 1, 0, 0,
];

/// Runs `cmd` at locality `l` as Linux's `tpm_tis_core` does (commandReady, the
/// command a byte at a time while `expect` stays set, tpmGo, the response out of the
/// FIFO until `dataAvail` clears); returns the response.
fn tis_command(t: &mut Tis<SwtpmHandle>, l: u64, cmd: &[u8]) -> Vec<u8> {
    const STS: u64 = 0x18;
    const FIFO: u64 = 0x24;
    let base = l << 12;
    let sts = |t: &mut Tis<SwtpmHandle>| {
        let mut b = [0u8; 4];
        t.read(base + STS, &mut b);
        u32::from_le_bytes(b)
    };
    t.write(base + STS, &[0x40]);
    for (i, b) in cmd.iter().enumerate() {
        t.write(base + FIFO, &[*b]);
        let expect = sts(t) & 0x08 != 0;
        assert_eq!(expect, i + 1 < cmd.len(), "expect after byte {i}");
    }
    t.write(base + STS, &[0x20]);
    assert_eq!(sts(t) & 0x90, 0x90, "stsValid and dataAvail");
    let mut rsp = Vec::new();
    while sts(t) & 0x10 != 0 {
        let mut b = [0u8; 1];
        t.read(base + FIFO, &mut b);
        rsp.push(b[0]);
    }
    t.write(base + STS, &[0x40]);
    rsp
}

#[test]
fn tis_commands_reach_swtpm_at_the_locality_that_sent_them() {
    if !installed("swtpm") || !installed("swtpm_setup") {
        eprintln!(
            "*** SKIPPED: swtpm_crb (tis): swtpm/swtpm_setup not installed (Debian swtpm, swtpm-tools)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tpm = Tpm {
        model: TpmModel::Tis,
        state_dir: dir.path().join("state"),
        log: Some(dir.path().join("swtpm.log")),
    };
    let swtpm = Swtpm::start(&tpm, "swtpm-tis-test:00000000-0000-0000-0000-000000000002")
        .unwrap_or_else(|e| panic!("{e:?}"));
    let handle = SwtpmHandle(Arc::new(Mutex::new(swtpm)));
    handle.0.lock().unwrap().machine_start().unwrap();
    let mut tis = Tis::new(handle);
    tis.write(0x000, &[0x02]); // ACCESS requestUse, locality 0
    assert_eq!(rc(&tis_command(&mut tis, 0, &STARTUP_CLEAR)), 0);
    let r = tis_command(&mut tis, 0, &GET_RANDOM_16);
    assert_eq!((rc(&r), r.len()), (0, 12 + 16));
    // pcrUpdateCounter, the selection echoed, one 32-byte digest (zero: nothing
    // measured into PCR 0).
    let r = tis_command(&mut tis, 0, &PCR_READ_SHA256_0);
    assert_eq!((rc(&r), r.len()), (0, 62), "{r:02x?}");
    assert_eq!(&r[14..24], &PCR_READ_SHA256_0[10..20]);
    assert_eq!(&r[28..30], &[0, 32]);
    // Locality 2 takes over once 0 lets go; swtpm is told, and answers there too.
    tis.write(0x2000, &[0x02]);
    tis.write(0x000, &[0x20]);
    let r = tis_command(&mut tis, 2, &GET_RANDOM_16);
    assert_eq!((rc(&r), r.len()), (0, 12 + 16));
}

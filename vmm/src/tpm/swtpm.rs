//! The TPM itself: Debian's `swtpm`, started by the VMM and spoken to the way QEMU's
//! `tpm-emulator` backend does (`backends/tpm/tpm_emulator.c`).
//!
//! * First start: the state directory is created (0700) and, while it holds no TPM
//!   2.0 state, `swtpm_setup --tpm2` manufactures the TPM (EK, NVRAM locked; as root
//!   also the EK and platform certificates from swtpm's local CA), as libvirt does.
//! * `swtpm socket --tpm2 --ctrl type=unixio,clientfd=0 --terminate`: the control
//!   channel is swtpm's stdin, one end of a socket pair (so swtpm ends when the VMM's
//!   end closes); the data channel is a second socket pair whose end is handed over
//!   with `CMD_SET_DATAFD` (SCM_RIGHTS), as QEMU does.
//! * Control messages: a 4-byte big-endian command code and its request; the answer
//!   starts with a 4-byte result, and only a 0 result is followed by the rest.
//! * At every machine start (and reset): `CMD_STOP`, `CMD_SET_BUFFERSIZE` (the CRB
//!   buffer), `CMD_INIT`, `CMD_SET_LOCALITY 0`; the guest (firmware or OS) then sends
//!   TPM2_Startup itself.
//! * Data: a TPM command out, a response in (its size from its header).
//!
//! If swtpm dies or stops answering, the VM keeps running: every later command is
//! answered with `TPM_RC_FAILURE` and CTRL_STS shows the fatal-error bit.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use machine_spec::Tpm;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use tracing::{info, warn};

use super::crb::{error_response, TpmBackend, BUFFER_SIZE, HEADER_LEN, RC_FAILURE};
use super::TpmError;

/// Control channel commands (swtpm's `tpm_ioctl.h`).
const CMD_INIT: u32 = 2;
const CMD_GET_TPMESTABLISHED: u32 = 4;
const CMD_SET_LOCALITY: u32 = 5;
const CMD_CANCEL_TPM_CMD: u32 = 9;
const CMD_RESET_TPMESTABLISHED: u32 = 11;
const CMD_STOP: u32 = 14;
const CMD_SET_DATAFD: u32 = 16;
const CMD_SET_BUFFERSIZE: u32 = 17;

/// How long one answer of swtpm may take (key generation included).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The file swtpm keeps a TPM 2.0's permanent state in.
const TPM2_STATE_FILE: &str = "tpm2-00.permall";

/// A running swtpm and the VMM's ends of its two channels.
pub struct Swtpm {
    ctrl: UnixStream,
    data: UnixStream,
    child: Child,
    /// The established flag as last read (LOC_STATE reads it often).
    established: bool,
    /// swtpm stopped answering; it is not asked again.
    failed: bool,
    /// Machines built on this TPM so far (resets make new ones).
    machines: u32,
    /// The locality swtpm was last told commands come from (TIS has five).
    locality: u8,
}

/// The shared handle the CRB device of each machine build talks through.
#[derive(Clone)]
pub struct SwtpmHandle(pub Arc<Mutex<Swtpm>>);

/// swtpm's log: the spec's, or `swtpm.log` in the state directory.
fn log_path(tpm: &Tpm) -> PathBuf {
    tpm.log
        .clone()
        .unwrap_or_else(|| tpm.state_dir.join("swtpm.log"))
}

/// Creates the state directory and manufactures the TPM if it holds no state yet.
fn prepare_state(tpm: &Tpm, vmid: &str) -> Result<(), TpmError> {
    let dir = &tpm.state_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| TpmError::StateDir(dir.clone(), e))?;
    if dir.join(TPM2_STATE_FILE).exists() {
        return Ok(());
    }
    let log = log_path(tpm);
    let mut cmd = Command::new("swtpm_setup");
    cmd.arg("--tpm2")
        .arg("--tpmstate")
        .arg(dir)
        .args([
            "--vmid",
            vmid,
            "--createek",
            "--lock-nvram",
            "--not-overwrite",
        ])
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // swtpm's local CA lives in /var/lib/swtpm-localca, writable by root only.
    if nix::unistd::geteuid().is_root() {
        cmd.args(["--create-ek-cert", "--create-platform-cert"]);
    }
    let status = cmd
        .status()
        .map_err(|e| TpmError::Spawn("swtpm_setup", e))?;
    if !status.success() {
        return Err(TpmError::Setup(dir.clone(), log, status.to_string()));
    }
    info!(dir = %dir.display(), "TPM manufactured by swtpm_setup");
    Ok(())
}

impl Swtpm {
    /// Prepares the state and starts swtpm for the domain `vmid` (`NAME:UUID`).
    pub fn start(tpm: &Tpm, vmid: &str) -> Result<Swtpm, TpmError> {
        prepare_state(tpm, vmid)?;
        let (ctrl, theirs) = UnixStream::pair().map_err(|e| TpmError::Spawn("swtpm", e))?;
        let log = log_path(tpm);
        let child = Command::new("swtpm")
            .args([
                "socket",
                "--tpm2",
                "--ctrl",
                "type=unixio,clientfd=0",
                "--terminate",
            ])
            .arg("--tpmstate")
            .arg(format!("dir={}", tpm.state_dir.display()))
            .arg("--log")
            .arg(format!("file={},level=1", log.display()))
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| TpmError::Spawn("swtpm", e))?;
        info!(pid = child.id(), "swtpm started for the TPM");
        let (data, data_theirs) = UnixStream::pair().map_err(|e| TpmError::Spawn("swtpm", e))?;
        for s in [&ctrl, &data] {
            s.set_read_timeout(Some(ANSWER_TIMEOUT))
                .and_then(|_| s.set_write_timeout(Some(ANSWER_TIMEOUT)))
                .map_err(|e| TpmError::Spawn("swtpm", e))?;
        }
        let mut s = Swtpm {
            ctrl,
            data,
            child,
            established: false,
            failed: false,
            machines: 0,
            locality: 0,
        };
        s.send_data_fd(&data_theirs)
            .map_err(|e| TpmError::Control("CMD_SET_DATAFD", e))?;
        Ok(s)
    }

    /// swtpm's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `CMD_SET_DATAFD`: the command code with the data socket attached.
    fn send_data_fd(&mut self, fd: &UnixStream) -> io::Result<()> {
        let code = CMD_SET_DATAFD.to_be_bytes();
        let fds = [fd.as_raw_fd()];
        sendmsg::<()>(
            self.ctrl.as_raw_fd(),
            &[IoSlice::new(&code)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )?;
        self.result("CMD_SET_DATAFD", 0).map(|_| ())
    }

    /// Reads a control answer: the 4-byte result, then `rest` more bytes if it is 0.
    fn result(&mut self, what: &str, rest: usize) -> io::Result<Vec<u8>> {
        let mut res = [0u8; 4];
        self.ctrl.read_exact(&mut res)?;
        let code = u32::from_be_bytes(res);
        if code != 0 {
            return Err(io::Error::other(format!(
                "swtpm answered {what} with TPM result {code:#x}"
            )));
        }
        let mut more = vec![0u8; rest];
        self.ctrl.read_exact(&mut more)?;
        Ok(more)
    }

    /// One control command: `code`, its request bytes, `rest` answer bytes after the
    /// result. Written in one piece: swtpm reads a message with one read.
    fn control(
        &mut self,
        code: u32,
        what: &str,
        request: &[u8],
        rest: usize,
    ) -> io::Result<Vec<u8>> {
        let mut msg = code.to_be_bytes().to_vec();
        msg.extend_from_slice(request);
        self.ctrl.write_all(&msg)?;
        self.result(what, rest)
    }

    /// Brings the TPM up for a machine build. The first machine does not start
    /// without its TPM; at a later reset a TPM that does not come up leaves the
    /// machine running with a failed TPM (as a dead swtpm does).
    pub fn machine_start(&mut self) -> Result<(), TpmError> {
        let first = self.machines == 0;
        self.machines += 1;
        match self.startup() {
            Err(e) if !first => {
                warn!("the TPM did not come up again after a reset: {e}");
                self.failed = true;
                Ok(())
            }
            r => r,
        }
    }

    /// Brings the TPM up for a new machine: stopped, buffer sized to the CRB's,
    /// initialised, locality 0; reads the established flag.
    fn startup(&mut self) -> Result<(), TpmError> {
        let err = |what: &'static str| move |e| TpmError::Control(what, e);
        self.control(CMD_STOP, "CMD_STOP", &[], 0)
            .map_err(err("CMD_STOP"))?;
        let size = self
            .control(
                CMD_SET_BUFFERSIZE,
                "CMD_SET_BUFFERSIZE",
                &(BUFFER_SIZE as u32).to_be_bytes(),
                12,
            )
            .map_err(err("CMD_SET_BUFFERSIZE"))?;
        let actual = u32::from_be_bytes([size[0], size[1], size[2], size[3]]);
        if (actual as usize) < BUFFER_SIZE {
            warn!(actual, "swtpm's buffer is smaller than the CRB's");
        }
        self.control(CMD_INIT, "CMD_INIT", &0u32.to_be_bytes(), 0)
            .map_err(err("CMD_INIT"))?;
        self.control(CMD_SET_LOCALITY, "CMD_SET_LOCALITY", &[0, 0, 0, 0], 0)
            .map_err(err("CMD_SET_LOCALITY"))?;
        self.locality = 0;
        self.read_established();
        self.failed = false;
        Ok(())
    }

    fn read_established(&mut self) {
        match self.control(CMD_GET_TPMESTABLISHED, "CMD_GET_TPMESTABLISHED", &[], 4) {
            Ok(b) => self.established = b[0] != 0,
            Err(e) => self.fail(&e),
        }
    }

    fn fail(&mut self, e: &io::Error) {
        if !self.failed {
            warn!("swtpm does not answer ({e}): the TPM answers TPM_RC_FAILURE from now on");
        }
        self.failed = true;
    }

    /// Sends one TPM command and reads its response.
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        self.data.write_all(command)?;
        let mut rsp = vec![0u8; HEADER_LEN];
        self.data.read_exact(&mut rsp)?;
        let len = u32::from_be_bytes([rsp[2], rsp[3], rsp[4], rsp[5]]) as usize;
        if !(HEADER_LEN..=BUFFER_SIZE).contains(&len) {
            return Err(io::Error::other(format!(
                "swtpm sent a response of {len} bytes"
            )));
        }
        rsp.resize(len, 0);
        self.data.read_exact(&mut rsp[HEADER_LEN..])?;
        Ok(rsp)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SwtpmHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Swtpm> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TpmBackend for SwtpmHandle {
    fn execute(&mut self, locality: u8, command: &[u8]) -> Vec<u8> {
        let mut s = self.lock();
        if s.failed {
            return error_response(RC_FAILURE);
        }
        // Commands carry no locality: swtpm is told when it changes, as QEMU does.
        if locality != s.locality {
            let req = [locality, 0, 0, 0];
            if let Err(e) = s.control(CMD_SET_LOCALITY, "CMD_SET_LOCALITY", &req, 0) {
                s.fail(&e);
                return error_response(RC_FAILURE);
            }
            s.locality = locality;
        }
        match s.transact(command) {
            Ok(r) => r,
            Err(e) => {
                s.fail(&e);
                error_response(RC_FAILURE)
            }
        }
    }

    fn cancel(&mut self) {
        let mut s = self.lock();
        if !s.failed {
            if let Err(e) = s.control(CMD_CANCEL_TPM_CMD, "CMD_CANCEL_TPM_CMD", &[], 0) {
                s.fail(&e);
            }
        }
    }

    fn established(&mut self) -> bool {
        self.lock().established
    }

    fn reset_established(&mut self, locality: u8) {
        let mut s = self.lock();
        if s.failed {
            return;
        }
        let req = [locality, 0, 0, 0];
        match s.control(
            CMD_RESET_TPMESTABLISHED,
            "CMD_RESET_TPMESTABLISHED",
            &req,
            0,
        ) {
            Ok(_) => s.read_established(),
            Err(e) => s.fail(&e),
        }
    }

    fn failed(&self) -> bool {
        self.lock().failed
    }
}

/// Whether `dir` holds a manufactured TPM 2.0 (tests and the daemon look).
pub fn has_state(dir: &Path) -> bool {
    dir.join(TPM2_STATE_FILE).exists()
}

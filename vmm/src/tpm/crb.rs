//! The TPM Command Response Buffer interface (TCG PC Client Platform TPM Profile
//! specification, "CRB interface"), locality 0 only, as QEMU's `tpm-crb` models it.
//!
//! The guest sees one 4 KiB page at [`CRB_BASE`]:
//!
//! ```text
//! 0x00 LOC_STATE   tpmEstablished(0, inverted) locAssigned(1) activeLocality(2-4) tpmRegValidSts(7)
//! 0x08 LOC_CTRL    write: requestAccess(0) relinquish(1) seize(2) resetEstablishmentBit(3)
//! 0x0c LOC_STS     granted(0) beenSeized(1)
//! 0x30 INTF_ID     64 bits: CRB, version 1, locality 0 only, CRB selected, VID:DID
//! 0x40 CTRL_REQ    write: cmdReady(0) goIdle(1)
//! 0x44 CTRL_STS    tpmSts(0, fatal error) tpmIdle(1)
//! 0x48 CTRL_CANCEL write 1: cancel the running command
//! 0x4c CTRL_START  write 1: run the command in the buffer; reads 1 until the response is there
//! 0x58 CMD_SIZE, 0x5c/0x60 CMD_ADDR, 0x64 RSP_SIZE, 0x68 RSP_ADDR: where the buffer is
//! 0x80 the command/response buffer, to the end of the page
//! ```
//!
//! A driver requests locality 0, sets cmdReady, writes a command into the buffer,
//! writes START and polls it until it reads 0, then reads the response from the same
//! buffer. The command runs on the vCPU thread that wrote START (swtpm answers in
//! well under a millisecond but for key generation); QEMU hands it to a worker thread
//! instead, which would let a paused machine stop while a key is generated.
//!
//! This is the pure register state machine: the TPM behind it is a [`TpmBackend`]
//! (swtpm in the VMM, a fake in the tests).

/// Guest-physical base of the interface (the PC Client PTP's fixed address).
pub const CRB_BASE: u64 = 0xfed4_0000;
/// The register page the guest sees (locality 0).
pub const CRB_SIZE: u64 = 0x1000;
/// Offset of the command/response buffer.
pub const DATA_BUFFER: u64 = 0x80;
/// The command/response buffer's size: the rest of the page.
pub const BUFFER_SIZE: usize = (CRB_SIZE - DATA_BUFFER) as usize;
/// Offset of CTRL_REQ: the TPM2 ACPI table's "control area" address points here.
pub const CTRL_AREA: u64 = REG_CTRL_REQ;

const REG_LOC_STATE: u64 = 0x00;
const REG_LOC_CTRL: u64 = 0x08;
const REG_LOC_STS: u64 = 0x0c;
const REG_INTF_ID: u64 = 0x30;
const REG_CTRL_REQ: u64 = 0x40;
const REG_CTRL_STS: u64 = 0x44;
const REG_CTRL_CANCEL: u64 = 0x48;
const REG_CTRL_START: u64 = 0x4c;
const REG_CMD_SIZE: u64 = 0x58;
const REG_CMD_LADDR: u64 = 0x5c;
const REG_CMD_HADDR: u64 = 0x60;
const REG_RSP_SIZE: u64 = 0x64;
const REG_RSP_ADDR: u64 = 0x68;

const LOC_STATE_ESTABLISHED_CLEAR: u32 = 1 << 0;
const LOC_STATE_ASSIGNED: u32 = 1 << 1;
const LOC_STATE_REG_VALID: u32 = 1 << 7;
const LOC_CTRL_REQUEST: u32 = 1 << 0;
const LOC_CTRL_RELINQUISH: u32 = 1 << 1;
const LOC_CTRL_RESET_ESTABLISHED: u32 = 1 << 3;
const LOC_STS_GRANTED: u32 = 1 << 0;
const CTRL_REQ_CMD_READY: u32 = 1 << 0;
const CTRL_REQ_GO_IDLE: u32 = 1 << 1;
const CTRL_STS_FATAL: u32 = 1 << 0;
const CTRL_STS_IDLE: u32 = 1 << 1;

/// INTF_ID: InterfaceType 1 (CRB), InterfaceVersion 1, CapLocality 0 (locality 0
/// only), CapDataXferSizeSupport 3 (64 bytes), CapCRB, InterfaceSelector 1 (CRB); the
/// high half is QEMU's vendor and device id (IBM, 1), which drivers do not check.
const INTF_ID: u64 = 1 | (1 << 4) | (3 << 11) | (1 << 14) | (1 << 17) | (0x0001_1014 << 32);

/// The smallest TPM 2.0 command or response: tag, size, code.
pub const HEADER_LEN: usize = 10;
/// `TPM_RC_FAILURE`: what a command answers when the TPM behind the interface is gone.
pub const RC_FAILURE: u32 = 0x101;

/// A TPM response header with `rc` and no body (`TPM_ST_NO_SESSIONS`).
pub fn error_response(rc: u32) -> Vec<u8> {
    let mut r = Vec::with_capacity(HEADER_LEN);
    r.extend_from_slice(&0x8001u16.to_be_bytes());
    r.extend_from_slice(&(HEADER_LEN as u32).to_be_bytes());
    r.extend_from_slice(&rc.to_be_bytes());
    r
}

/// The TPM behind the interface.
pub trait TpmBackend: Send {
    /// Runs one command at `locality`; always answers (a [`RC_FAILURE`] response
    /// when the TPM cannot be reached).
    fn execute(&mut self, locality: u8, command: &[u8]) -> Vec<u8>;
    /// Asks the TPM to cancel the command it runs.
    fn cancel(&mut self);
    /// Whether the TPM's "established" flag is set.
    fn established(&mut self) -> bool;
    /// Clears the "established" flag (LOC_CTRL resetEstablishmentBit).
    fn reset_established(&mut self, locality: u8);
    /// Whether the TPM failed for good (CTRL_STS tpmSts).
    fn failed(&self) -> bool;
}

/// The interface's registers and buffer.
pub struct Crb<B: TpmBackend> {
    backend: B,
    /// Locality 0 is assigned to the driver.
    assigned: bool,
    idle: bool,
    buffer: Vec<u8>,
}

impl<B: TpmBackend> Crb<B> {
    /// The interface after a reset: no locality assigned, idle, buffer zeroed.
    pub fn new(backend: B) -> Self {
        Crb {
            backend,
            assigned: false,
            idle: true,
            buffer: vec![0; BUFFER_SIZE],
        }
    }

    /// The backend (tests look at what it got).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn reg(&mut self, offset: u64) -> u64 {
        let buffer = CRB_BASE + DATA_BUFFER;
        match offset & !3 {
            REG_LOC_STATE => {
                let mut v = LOC_STATE_REG_VALID;
                if !self.backend.established() {
                    v |= LOC_STATE_ESTABLISHED_CLEAR;
                }
                if self.assigned {
                    v |= LOC_STATE_ASSIGNED; // activeLocality stays 0
                }
                u64::from(v)
            }
            REG_LOC_STS => u64::from(if self.assigned { LOC_STS_GRANTED } else { 0 }),
            REG_INTF_ID => INTF_ID,
            0x34 => INTF_ID >> 32,
            REG_CTRL_STS => {
                let mut v = 0;
                if self.idle {
                    v |= CTRL_STS_IDLE;
                }
                if self.backend.failed() {
                    v |= CTRL_STS_FATAL;
                }
                u64::from(v)
            }
            REG_CMD_SIZE | REG_RSP_SIZE => BUFFER_SIZE as u64,
            REG_CMD_LADDR => buffer,
            REG_CMD_HADDR => 0,
            REG_RSP_ADDR => buffer,
            // CTRL_START and CTRL_CANCEL read 0: commands complete before the write
            // that starts them returns.
            _ => 0,
        }
    }

    /// A guest read of `data.len()` bytes at `offset` into the page.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= DATA_BUFFER {
            let at = (offset - DATA_BUFFER) as usize;
            for (i, b) in data.iter_mut().enumerate() {
                *b = self.buffer.get(at + i).copied().unwrap_or(0);
            }
            return;
        }
        // Registers: byte-granular reads out of the 32-bit register (64-bit for a
        // wide read of INTF_ID or RSP_ADDR).
        let aligned = offset & !3;
        let mut v = self.reg(aligned);
        if data.len() == 8 || (offset - aligned) + data.len() as u64 > 4 {
            v = (v & 0xffff_ffff) | (self.reg(aligned + 4) << 32);
        }
        let bytes = (v >> (8 * (offset - aligned))).to_le_bytes();
        let n = data.len().min(8);
        data[..n].copy_from_slice(&bytes[..n]);
    }

    /// A guest write of `data` at `offset` into the page.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= DATA_BUFFER {
            let at = (offset - DATA_BUFFER) as usize;
            for (i, b) in data.iter().enumerate() {
                if let Some(slot) = self.buffer.get_mut(at + i) {
                    *slot = *b;
                }
            }
            return;
        }
        let mut raw = [0u8; 4];
        let n = data.len().min(4);
        raw[..n].copy_from_slice(&data[..n]);
        let v = u32::from_le_bytes(raw);
        match offset {
            REG_LOC_CTRL => {
                if v & LOC_CTRL_REQUEST != 0 {
                    self.assigned = true;
                }
                if v & LOC_CTRL_RELINQUISH != 0 {
                    self.assigned = false;
                }
                if v & LOC_CTRL_RESET_ESTABLISHED != 0 {
                    self.backend.reset_established(0);
                }
            }
            REG_CTRL_REQ => {
                if v & CTRL_REQ_CMD_READY != 0 {
                    self.idle = false;
                }
                if v & CTRL_REQ_GO_IDLE != 0 {
                    self.idle = true;
                }
            }
            REG_CTRL_CANCEL if v & 1 != 0 => self.backend.cancel(),
            REG_CTRL_START if v & 1 != 0 => self.start(),
            // Everything else is read-only (QEMU ignores such writes too).
            _ => {}
        }
    }

    /// CTRL_START: runs the command in the buffer if the driver owns locality 0; the
    /// response replaces it. Like QEMU, START does not insist on cmdReady first
    /// (SeaBIOS starts commands from the idle state).
    fn start(&mut self) {
        if !self.assigned {
            tracing::debug!("TPM CRB: START without locality 0 ignored");
            return;
        }
        self.idle = false;
        // The command's own size field, bounded by the buffer.
        let field =
            |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let len = field(&self.buffer, 2) as usize;
        let code = field(&self.buffer, 6);
        let response = if !(HEADER_LEN..=BUFFER_SIZE).contains(&len) {
            // TPM_RC_COMMAND_SIZE: what a TPM answers a size it cannot take.
            error_response(0x142)
        } else {
            self.backend.execute(0, &self.buffer[..len])
        };
        let n = response.len().min(BUFFER_SIZE);
        self.buffer[..n].copy_from_slice(&response[..n]);
        tracing::debug!(
            code = format_args!("{code:#x}"),
            rc = format_args!("{:#x}", field(&self.buffer, 6)),
            len = n,
            "TPM command"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers each command with its code echoed after a success header, and
    /// records what it was asked.
    #[derive(Default)]
    struct Echo {
        commands: Vec<Vec<u8>>,
        cancels: u32,
        established: bool,
    }

    impl TpmBackend for Echo {
        fn execute(&mut self, _locality: u8, command: &[u8]) -> Vec<u8> {
            self.commands.push(command.to_vec());
            let mut r = vec![0x80, 0x01, 0, 0, 0, 14, 0, 0, 0, 0];
            r.extend_from_slice(&command[6..10]);
            r
        }
        fn cancel(&mut self) {
            self.cancels += 1;
        }
        fn established(&mut self) -> bool {
            self.established
        }
        fn reset_established(&mut self, _locality: u8) {
            self.established = false;
        }
        fn failed(&self) -> bool {
            false
        }
    }

    fn rd32(c: &mut Crb<Echo>, off: u64) -> u32 {
        let mut b = [0u8; 4];
        c.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn wr32(c: &mut Crb<Echo>, off: u64, v: u32) {
        c.write(off, &v.to_le_bytes());
    }

    /// TPM2_GetRandom(16): tag, size 12, code 0x17b, bytesRequested.
    const GET_RANDOM: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 16];

    fn load(c: &mut Crb<Echo>, cmd: &[u8]) {
        c.write(DATA_BUFFER, cmd);
    }

    #[test]
    fn identifies_as_crb_with_its_buffer_in_the_page() {
        let mut c = Crb::new(Echo::default());
        let id = rd32(&mut c, REG_INTF_ID);
        assert_eq!(id & 0xf, 1, "interface type CRB");
        assert_eq!((id >> 17) & 3, 1, "CRB selected");
        assert_eq!(id & (1 << 8), 0, "locality 0 only");
        let mut wide = [0u8; 8];
        c.read(REG_RSP_ADDR, &mut wide);
        assert_eq!(u64::from_le_bytes(wide), CRB_BASE + DATA_BUFFER);
        assert_eq!(rd32(&mut c, REG_CMD_LADDR) as u64, CRB_BASE + DATA_BUFFER);
        assert_eq!(rd32(&mut c, REG_CMD_SIZE) as usize, BUFFER_SIZE);
        assert_eq!(rd32(&mut c, REG_RSP_SIZE) as usize, BUFFER_SIZE);
    }

    #[test]
    fn locality_request_and_relinquish_show_in_loc_state_and_sts() {
        let mut c = Crb::new(Echo::default());
        assert_eq!(rd32(&mut c, REG_LOC_STATE), LOC_STATE_REG_VALID | 1);
        wr32(&mut c, REG_LOC_CTRL, LOC_CTRL_REQUEST);
        assert_eq!(
            rd32(&mut c, REG_LOC_STATE) & LOC_STATE_ASSIGNED,
            LOC_STATE_ASSIGNED
        );
        assert_eq!(rd32(&mut c, REG_LOC_STS), LOC_STS_GRANTED);
        wr32(&mut c, REG_LOC_CTRL, LOC_CTRL_RELINQUISH);
        assert_eq!(rd32(&mut c, REG_LOC_STATE) & LOC_STATE_ASSIGNED, 0);
        assert_eq!(rd32(&mut c, REG_LOC_STS), 0);
    }

    #[test]
    fn start_runs_the_buffered_command_and_leaves_the_response() {
        let mut c = Crb::new(Echo::default());
        wr32(&mut c, REG_LOC_CTRL, LOC_CTRL_REQUEST);
        wr32(&mut c, REG_CTRL_REQ, CTRL_REQ_CMD_READY);
        assert_eq!(rd32(&mut c, REG_CTRL_STS) & CTRL_STS_IDLE, 0);
        load(&mut c, &GET_RANDOM);
        wr32(&mut c, REG_CTRL_START, 1);
        assert_eq!(rd32(&mut c, REG_CTRL_START), 0, "done when START reads 0");
        assert_eq!(c.backend().commands, vec![GET_RANDOM.to_vec()]);
        let mut rsp = [0u8; 14];
        c.read(DATA_BUFFER, &mut rsp);
        assert_eq!(rsp, [0x80, 1, 0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 1, 0x7b]);
        wr32(&mut c, REG_CTRL_REQ, CTRL_REQ_GO_IDLE);
        assert_eq!(rd32(&mut c, REG_CTRL_STS), CTRL_STS_IDLE);
    }

    #[test]
    fn start_needs_locality_0_but_not_cmd_ready() {
        let mut c = Crb::new(Echo::default());
        load(&mut c, &GET_RANDOM);
        wr32(&mut c, REG_CTRL_START, 1);
        assert!(c.backend().commands.is_empty(), "no locality: ignored");
        wr32(&mut c, REG_LOC_CTRL, LOC_CTRL_REQUEST);
        wr32(&mut c, REG_CTRL_START, 1); // idle, no cmdReady: runs (as QEMU)
        assert_eq!(c.backend().commands.len(), 1);
        assert_eq!(rd32(&mut c, REG_CTRL_STS) & CTRL_STS_IDLE, 0);
    }

    #[test]
    fn a_size_beyond_the_buffer_answers_command_size_without_reaching_the_tpm() {
        let mut c = Crb::new(Echo::default());
        wr32(&mut c, REG_LOC_CTRL, LOC_CTRL_REQUEST);
        wr32(&mut c, REG_CTRL_REQ, CTRL_REQ_CMD_READY);
        load(&mut c, &[0x80, 0x01, 0, 0, 0x10, 0, 0, 0, 0x01, 0x7b]);
        wr32(&mut c, REG_CTRL_START, 1);
        assert!(c.backend().commands.is_empty());
        let mut rsp = [0u8; 10];
        c.read(DATA_BUFFER, &mut rsp);
        assert_eq!(&rsp[6..], &0x142u32.to_be_bytes());
    }

    #[test]
    fn cancel_and_established_reach_the_backend() {
        let mut c = Crb::new(Echo {
            established: true,
            ..Default::default()
        });
        assert_eq!(rd32(&mut c, REG_LOC_STATE) & LOC_STATE_ESTABLISHED_CLEAR, 0);
        wr32(&mut c, REG_LOC_CTRL, LOC_CTRL_RESET_ESTABLISHED);
        assert_eq!(
            rd32(&mut c, REG_LOC_STATE) & LOC_STATE_ESTABLISHED_CLEAR,
            LOC_STATE_ESTABLISHED_CLEAR
        );
        wr32(&mut c, REG_CTRL_CANCEL, 1);
        assert_eq!(c.backend().cancels, 1);
    }
}

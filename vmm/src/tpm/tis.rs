//! The TPM Interface Specification's FIFO interface (TCG PC Client Platform TPM
//! Profile, "FIFO interface", TIS 1.3 for TPM 2.0), as QEMU's ISA `tpm-tis` models it:
//! five localities of one 4 KiB register page each from [`TIS_BASE`], no interrupt
//! wired (QEMU's ACPI leaves its IRQ out too; drivers poll).
//!
//! ```text
//! 0x000 ACCESS        tpmEstablishment(0, inverted) requestUse(1) pendingRequest(2) seize(3)
//!                     beenSeized(4) activeLocality(5) tpmRegValidSts(7)
//! 0x008 INT_ENABLE    0x00c INT_VECTOR (0: none)   0x010 INT_STATUS
//! 0x014 INTF_CAPABILITY
//! 0x018 STS           responseRetry(1) selfTestDone(2) expect(3) dataAvail(4) tpmGo(5)
//!                     commandReady(6) stsValid(7) burstCount(8-23) cancel(24)
//!                     resetEstablishment(25) tpmFamily(26-27)
//! 0x024 DATA_FIFO     (0x080-0x0bf: the same FIFO, XDATA_FIFO)
//! 0x030 INTERFACE_ID  0xf00 DID_VID   0xf04 RID
//! ```
//!
//! A driver takes a locality (ACCESS requestUse), sets commandReady, writes the command
//! byte by byte into the FIFO while `expect` stays set, writes tpmGo, polls for
//! dataAvail and reads the response out of the FIFO until dataAvail clears. The
//! command runs on the vCPU thread that writes tpmGo, as on the CRB ([`super::crb`]).
//!
//! This is the pure register state machine, over the same [`TpmBackend`] as the CRB.

use super::crb::{TpmBackend, BUFFER_SIZE, HEADER_LEN};

/// Guest-physical base of locality 0 (the PC Client PTP's fixed address).
pub const TIS_BASE: u64 = 0xfed4_0000;
/// Five localities, 4 KiB each.
pub const TIS_SIZE: u64 = 0x5000;
const LOCALITIES: usize = 5;

const REG_ACCESS: u64 = 0x00;
const REG_INT_ENABLE: u64 = 0x08;
const REG_INT_VECTOR: u64 = 0x0c;
const REG_INT_STATUS: u64 = 0x10;
const REG_INTF_CAPABILITY: u64 = 0x14;
const REG_STS: u64 = 0x18;
const REG_DATA_FIFO: u64 = 0x24;
const REG_INTERFACE_ID: u64 = 0x30;
const REG_XDATA_FIFO: u64 = 0x80;
const REG_XDATA_FIFO_END: u64 = 0xbc;
const REG_DID_VID: u64 = 0xf00;
const REG_RID: u64 = 0xf04;

const ACCESS_REQUEST_USE: u8 = 1 << 1;
const ACCESS_PENDING_REQUEST: u8 = 1 << 2;
const ACCESS_SEIZE: u8 = 1 << 3;
const ACCESS_BEEN_SEIZED: u8 = 1 << 4;
const ACCESS_ACTIVE_LOCALITY: u8 = 1 << 5;
const ACCESS_REG_VALID: u8 = 1 << 7;

const STS_RESPONSE_RETRY: u32 = 1 << 1;
const STS_EXPECT: u32 = 1 << 3;
const STS_DATA_AVAILABLE: u32 = 1 << 4;
const STS_GO: u32 = 1 << 5;
const STS_COMMAND_READY: u32 = 1 << 6;
const STS_VALID: u32 = 1 << 7;
const STS_COMMAND_CANCEL: u32 = 1 << 24;
const STS_RESET_ESTABLISHMENT: u32 = 1 << 25;
/// tpmFamily = 1: TPM 2.0.
const STS_FAMILY_TPM2: u32 = 1 << 26;

/// The interrupt sources the interface has (none is ever raised: no IRQ is wired).
const INTERRUPTS: u32 = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 7);
const INT_ENABLED: u32 = 1 << 31;
const INT_POLARITY_MASK: u32 = 3 << 3;
const INT_POLARITY_LOW_LEVEL: u32 = 1 << 3;
/// INTF_CAPABILITY as QEMU's for TPM 2.0: low-level interrupts, static burst count,
/// 64-byte transfers, interface version 1.3 for TPM 2.0, the four interrupt sources.
const CAPABILITIES: u32 = (1 << 4) | (3 << 9) | (3 << 28) | INTERRUPTS;
/// INTERFACE_ID: FIFO interface, version 0, five localities, TIS supported.
const INTERFACE_ID: u32 = (1 << 8) | (1 << 13);
const INTERFACE_ID_INT_SEL_LOCK: u32 = 1 << 19;
/// QEMU's vendor and device id (IBM, 1), which drivers only print.
const DID_VID: u32 = (0x0001 << 16) | 0x1014;
const RID: u32 = 1;
/// What the FIFO reads when there is nothing to read.
const NO_DATA: u8 = 0xff;

/// Where one locality's command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Ready,
    Reception,
    Completion,
}

#[derive(Debug, Clone, Copy)]
struct Locality {
    /// requestUse, seize and beenSeized (activeLocality comes from `Tis::active`).
    access: u8,
    /// STS flags; burstCount is computed on read.
    sts: u32,
    state: State,
    int_enable: u32,
}

impl Locality {
    /// Sets STS to `flags`, keeping the family bits.
    fn set_sts(&mut self, flags: u32) {
        self.sts = STS_FAMILY_TPM2 | flags;
    }
}

/// The interface's registers and its one command/response buffer.
pub struct Tis<B: TpmBackend> {
    backend: B,
    active: Option<usize>,
    loc: [Locality; LOCALITIES],
    buffer: Vec<u8>,
    /// Bytes written (command) or read (response) so far.
    offset: usize,
    /// Length of the response in the buffer.
    response_len: usize,
    int_sel_lock: bool,
}

impl<B: TpmBackend> Tis<B> {
    /// The interface after a reset: no active locality, every locality idle.
    pub fn new(backend: B) -> Self {
        Tis {
            backend,
            active: None,
            loc: [Locality {
                access: 0,
                sts: STS_FAMILY_TPM2,
                state: State::Idle,
                int_enable: INT_POLARITY_LOW_LEVEL,
            }; LOCALITIES],
            buffer: vec![0; BUFFER_SIZE],
            offset: 0,
            response_len: 0,
            int_sel_lock: false,
        }
    }

    /// The backend (tests look at what it got).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// A guest read of `data.len()` bytes at `offset` into the 5 localities' pages.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        let l = (offset >> 12) as usize;
        let reg = offset & 0xffc;
        let shift = 8 * (offset & 3);
        let active = self.active == Some(l);
        let v: u32 = match reg {
            _ if l >= LOCALITIES => u32::MAX,
            REG_ACCESS => u32::from(self.access(l)),
            REG_INT_ENABLE => self.loc[l].int_enable,
            REG_INT_VECTOR | REG_INT_STATUS => 0,
            REG_INTF_CAPABILITY => CAPABILITIES,
            REG_STS if active => {
                let burst = if self.loc[l].sts & STS_DATA_AVAILABLE != 0 {
                    self.response_len - self.offset
                } else if data.len() == 1 {
                    // A byte read must not see 0x100 free bytes as 0x00.
                    (BUFFER_SIZE - self.offset).min(0xff)
                } else {
                    BUFFER_SIZE - self.offset
                };
                self.loc[l].sts | ((burst as u32 & 0xffff) << 8)
            }
            REG_DATA_FIFO | REG_XDATA_FIFO..=REG_XDATA_FIFO_END if active => {
                let n = data.len().min(4 - (offset & 3) as usize);
                for b in &mut data[..n] {
                    *b = self.fifo_read(l);
                }
                data[n..].fill(0);
                return;
            }
            REG_INTERFACE_ID => {
                INTERFACE_ID
                    | if self.int_sel_lock {
                        INTERFACE_ID_INT_SEL_LOCK
                    } else {
                        0
                    }
            }
            REG_DID_VID => DID_VID,
            REG_RID => RID,
            _ => u32::MAX,
        };
        let bytes = u64::from(v >> shift).to_le_bytes();
        let n = data.len().min(8);
        data[..n].copy_from_slice(&bytes[..n]);
    }

    /// A guest write of `data` at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let l = (offset >> 12) as usize;
        // Locality 4 belongs to the platform (the CPU's TXT), never to software.
        if l >= LOCALITIES - 1 || data.is_empty() {
            return;
        }
        let reg = offset & 0xffc;
        let shift = 8 * (offset & 3);
        let mut raw = [0u8; 4];
        let n = data.len().min(4);
        raw[..n].copy_from_slice(&data[..n]);
        let v = u32::from_le_bytes(raw) << shift;
        let active = self.active == Some(l);
        match reg {
            REG_ACCESS => self.write_access(l, v as u8),
            REG_INT_ENABLE if active => {
                self.loc[l].int_enable = v & (INT_ENABLED | INT_POLARITY_MASK | INTERRUPTS);
            }
            REG_STS if active => self.write_sts(l, v),
            REG_DATA_FIFO | REG_XDATA_FIFO..=REG_XDATA_FIFO_END if active => {
                let n = data.len().min(4 - (offset & 3) as usize);
                self.fifo_write(l, &data[..n]);
            }
            REG_INTERFACE_ID if v & INTERFACE_ID_INT_SEL_LOCK != 0 => self.int_sel_lock = true,
            // INT_VECTOR is hard-wired, INT_STATUS has nothing to clear, the rest is
            // read-only.
            _ => {}
        }
    }

    fn access(&mut self, l: usize) -> u8 {
        let mut v = ACCESS_REG_VALID | (self.loc[l].access & !ACCESS_SEIZE);
        if self.active == Some(l) {
            v |= ACCESS_ACTIVE_LOCALITY;
        }
        if (0..LOCALITIES).any(|o| o != l && self.loc[o].access & ACCESS_REQUEST_USE != 0) {
            v |= ACCESS_PENDING_REQUEST;
        }
        if !self.backend.established() {
            v |= 1;
        }
        v
    }

    /// Makes `new` the active locality; the old one's command is abandoned.
    fn activate(&mut self, new: Option<usize>) {
        if self.active != new {
            self.offset = 0;
        }
        self.active = new;
        if let Some(n) = new {
            self.loc[n].access &= !(ACCESS_REQUEST_USE | ACCESS_SEIZE);
        }
    }

    fn write_access(&mut self, l: usize, mut v: u8) {
        if v & ACCESS_SEIZE != 0 {
            v &= !(ACCESS_REQUEST_USE | ACCESS_ACTIVE_LOCALITY);
        }
        if v & ACCESS_ACTIVE_LOCALITY != 0 {
            if self.active == Some(l) {
                // Relinquish: the highest locality waiting gets it.
                let next = (0..LOCALITIES)
                    .rev()
                    .find(|&o| self.loc[o].access & ACCESS_REQUEST_USE != 0);
                self.activate(next);
            } else {
                self.loc[l].access &= !ACCESS_REQUEST_USE;
            }
        }
        if v & ACCESS_BEEN_SEIZED != 0 {
            self.loc[l].access &= !ACCESS_BEEN_SEIZED;
        }
        if v & ACCESS_SEIZE != 0 && self.active.is_none_or(|a| l > a) {
            if let Some(old) = self.active {
                self.loc[old].access |= ACCESS_BEEN_SEIZED;
                self.loc[old].state = State::Idle;
                self.loc[old].set_sts(0);
            }
            self.activate(Some(l));
        }
        if v & ACCESS_REQUEST_USE != 0 && self.active != Some(l) {
            if self.active.is_some() {
                self.loc[l].access |= ACCESS_REQUEST_USE;
            } else {
                self.activate(Some(l));
            }
        }
    }

    fn write_sts(&mut self, l: usize, v: u32) {
        if v & STS_COMMAND_CANCEL != 0 {
            // Commands complete before tpmGo's write returns: nothing runs to cancel.
        }
        if v & STS_RESET_ESTABLISHMENT != 0 && l == 3 {
            self.backend.reset_established(l as u8);
        }
        let loc = &mut self.loc[l];
        match v & (STS_COMMAND_READY | STS_GO | STS_RESPONSE_RETRY) {
            STS_COMMAND_READY => {
                // From any state: ready for a new command, anything half-done dropped.
                self.offset = 0;
                loc.state = State::Ready;
                loc.set_sts(STS_COMMAND_READY);
            }
            STS_GO if loc.state == State::Reception && loc.sts & STS_EXPECT == 0 => {
                self.execute(l);
            }
            STS_RESPONSE_RETRY if loc.state == State::Completion => {
                self.offset = 0;
                loc.set_sts(STS_VALID | STS_DATA_AVAILABLE);
            }
            _ => {}
        }
    }

    fn fifo_write(&mut self, l: usize, bytes: &[u8]) {
        let loc = &mut self.loc[l];
        match loc.state {
            State::Idle | State::Completion => return, // dropped, as QEMU does
            State::Ready => {
                loc.state = State::Reception;
                loc.set_sts(STS_EXPECT | STS_VALID);
            }
            State::Reception => {}
        }
        for &b in bytes {
            if loc.sts & STS_EXPECT == 0 {
                break;
            }
            if self.offset < BUFFER_SIZE {
                self.buffer[self.offset] = b;
                self.offset += 1;
            } else {
                loc.set_sts(STS_VALID); // full: expect no more
            }
        }
        if self.offset > 5 && loc.sts & STS_EXPECT != 0 {
            let b = &self.buffer;
            let len = u32::from_be_bytes([b[2], b[3], b[4], b[5]]) as usize;
            if len <= self.offset {
                loc.set_sts(STS_VALID); // the whole command is in
            }
        }
    }

    fn fifo_read(&mut self, l: usize) -> u8 {
        let loc = &mut self.loc[l];
        if loc.state != State::Completion || loc.sts & STS_DATA_AVAILABLE == 0 {
            return NO_DATA;
        }
        let b = self.buffer[self.offset];
        self.offset += 1;
        if self.offset >= self.response_len {
            loc.set_sts(STS_VALID);
        }
        b
    }

    /// tpmGo: runs the received command; the response replaces it in the buffer.
    fn execute(&mut self, l: usize) {
        let len = self.offset;
        let code = if len >= HEADER_LEN {
            u32::from_be_bytes(self.buffer[6..10].try_into().unwrap_or_default())
        } else {
            0
        };
        let response = if len < HEADER_LEN {
            // TPM_RC_COMMAND_SIZE: what a TPM answers a command it cannot take.
            super::crb::error_response(0x142)
        } else {
            self.backend.execute(l as u8, &self.buffer[..len])
        };
        let n = response.len().min(BUFFER_SIZE);
        self.buffer[..n].copy_from_slice(&response[..n]);
        self.response_len = n;
        self.offset = 0;
        self.loc[l].state = State::Completion;
        self.loc[l].set_sts(STS_VALID | STS_DATA_AVAILABLE);
        let rc = u32::from_be_bytes(self.buffer[6..10].try_into().unwrap_or_default());
        tracing::debug!(
            code = format_args!("{code:#x}"),
            rc = format_args!("{rc:#x}"),
            locality = l,
            len = n,
            "TPM command (TIS)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers each command with its code echoed after a success header, and
    /// records what it was asked and at which locality.
    #[derive(Default)]
    struct Echo {
        commands: Vec<(u8, Vec<u8>)>,
        established: bool,
        resets: Vec<u8>,
    }

    impl TpmBackend for Echo {
        fn execute(&mut self, locality: u8, command: &[u8]) -> Vec<u8> {
            self.commands.push((locality, command.to_vec()));
            let mut r = vec![0x80, 0x01, 0, 0, 0, 14, 0, 0, 0, 0];
            r.extend_from_slice(&command[6..10]);
            r
        }
        fn cancel(&mut self) {}
        fn established(&mut self) -> bool {
            self.established
        }
        fn reset_established(&mut self, locality: u8) {
            self.resets.push(locality);
            self.established = false;
        }
        fn failed(&self) -> bool {
            false
        }
    }

    fn rd8(t: &mut Tis<Echo>, off: u64) -> u8 {
        let mut b = [0u8; 1];
        t.read(off, &mut b);
        b[0]
    }

    fn rd32(t: &mut Tis<Echo>, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn wr8(t: &mut Tis<Echo>, off: u64, v: u8) {
        t.write(off, &[v]);
    }

    /// TPM2_GetRandom(16): tag, size 12, code 0x17b, bytesRequested.
    const GET_RANDOM: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 16];

    /// What Linux's `tpm_tis_core` does for one command at locality `l` (byte-wide
    /// FIFO accesses, `expect` checked after each byte but the last): the response.
    fn command(t: &mut Tis<Echo>, l: u64, cmd: &[u8]) -> Vec<u8> {
        let base = l << 12;
        wr8(t, base + REG_STS, STS_COMMAND_READY as u8);
        assert_ne!(rd32(t, base + REG_STS) & STS_COMMAND_READY, 0);
        let (last, body) = cmd.split_last().unwrap();
        for &b in body {
            let burst = (rd32(t, base + REG_STS) >> 8) & 0xffff;
            assert!(burst > 0);
            wr8(t, base + REG_DATA_FIFO, b);
            let sts = rd32(t, base + REG_STS);
            assert_eq!(sts & (STS_VALID | STS_EXPECT), STS_VALID | STS_EXPECT);
        }
        wr8(t, base + REG_DATA_FIFO, *last);
        assert_eq!(
            rd32(t, base + REG_STS) & (STS_VALID | STS_EXPECT),
            STS_VALID
        );
        wr8(t, base + REG_STS, STS_GO as u8);
        let sts = rd32(t, base + REG_STS);
        assert_eq!(
            sts & (STS_VALID | STS_DATA_AVAILABLE),
            STS_VALID | STS_DATA_AVAILABLE
        );
        let mut rsp: Vec<u8> = (0..HEADER_LEN)
            .map(|_| rd8(t, base + REG_DATA_FIFO))
            .collect();
        let len = u32::from_be_bytes(rsp[2..6].try_into().unwrap()) as usize;
        assert_eq!(((rd32(t, base + REG_STS) >> 8) & 0xffff) as usize, len - 10);
        while rsp.len() < len {
            rsp.push(rd8(t, base + REG_DATA_FIFO));
        }
        assert_eq!(rd32(t, base + REG_STS) & STS_DATA_AVAILABLE, 0, "all read");
        wr8(t, base + REG_STS, STS_COMMAND_READY as u8);
        rsp
    }

    #[test]
    fn identifies_as_a_tpm2_fifo_interface_with_qemus_ids() {
        let mut t = Tis::new(Echo::default());
        assert_eq!(rd32(&mut t, REG_DID_VID), 0x0001_1014);
        assert_eq!(rd8(&mut t, REG_RID), 1);
        assert_eq!(rd32(&mut t, REG_INTERFACE_ID) & 0xf, 0, "FIFO interface");
        assert_eq!(
            rd32(&mut t, REG_INTF_CAPABILITY) >> 28,
            3,
            "1.3 for TPM 2.0"
        );
        // Locality 2's page answers too.
        assert_eq!(rd32(&mut t, 0x2000 + REG_DID_VID), 0x0001_1014);
        assert_eq!(rd8(&mut t, REG_ACCESS), ACCESS_REG_VALID | 1);
    }

    #[test]
    fn a_command_goes_in_through_the_fifo_and_its_response_comes_out() {
        let mut t = Tis::new(Echo::default());
        wr8(&mut t, REG_ACCESS, ACCESS_REQUEST_USE);
        assert_eq!(
            rd8(&mut t, REG_ACCESS) & ACCESS_ACTIVE_LOCALITY,
            ACCESS_ACTIVE_LOCALITY
        );
        assert_eq!(rd32(&mut t, REG_STS) >> 26, 1, "tpmFamily TPM 2.0");
        let rsp = command(&mut t, 0, &GET_RANDOM);
        assert_eq!(rsp, [0x80, 1, 0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 1, 0x7b]);
        assert_eq!(t.backend().commands, vec![(0, GET_RANDOM.to_vec())]);
        // The FIFO is empty now: it reads 0xff.
        wr8(&mut t, REG_STS, STS_COMMAND_READY as u8);
        assert_eq!(rd8(&mut t, REG_DATA_FIFO), 0xff);
    }

    #[test]
    fn wide_fifo_accesses_and_the_xdata_fifo_move_several_bytes() {
        let mut t = Tis::new(Echo::default());
        wr8(&mut t, REG_ACCESS, ACCESS_REQUEST_USE);
        wr8(&mut t, REG_STS, STS_COMMAND_READY as u8);
        for chunk in GET_RANDOM.chunks(4) {
            t.write(REG_XDATA_FIFO, chunk);
        }
        wr8(&mut t, REG_STS, STS_GO as u8);
        let mut rsp = [0u8; 14];
        for c in rsp.chunks_mut(4) {
            t.read(REG_DATA_FIFO, c);
        }
        assert_eq!(&rsp[10..], &[0, 0, 1, 0x7b]);
        // responseRetry: the same response again.
        wr8(&mut t, REG_STS, STS_RESPONSE_RETRY as u8);
        let mut again = [0u8; 14];
        for c in again.chunks_mut(4) {
            t.read(REG_XDATA_FIFO, c);
        }
        assert_eq!(again, rsp);
    }

    #[test]
    fn only_the_active_locality_reaches_the_fifo_and_requests_queue() {
        let mut t = Tis::new(Echo::default());
        wr8(&mut t, REG_ACCESS, ACCESS_REQUEST_USE);
        wr8(&mut t, 0x1000 + REG_ACCESS, ACCESS_REQUEST_USE);
        assert_eq!(
            rd8(&mut t, 0x1000 + REG_ACCESS) & (ACCESS_ACTIVE_LOCALITY | ACCESS_REQUEST_USE),
            ACCESS_REQUEST_USE
        );
        assert_ne!(rd8(&mut t, REG_ACCESS) & ACCESS_PENDING_REQUEST, 0);
        assert_eq!(rd32(&mut t, 0x1000 + REG_STS), u32::MAX, "not active");
        wr8(&mut t, 0x1000 + REG_STS, STS_COMMAND_READY as u8);
        wr8(&mut t, 0x1000 + REG_DATA_FIFO, 0x80);
        assert!(t.backend().commands.is_empty());
        // Locality 0 relinquishes: locality 1 gets it and runs a command there.
        wr8(&mut t, REG_ACCESS, ACCESS_ACTIVE_LOCALITY);
        assert_eq!(rd8(&mut t, REG_ACCESS) & ACCESS_ACTIVE_LOCALITY, 0);
        command(&mut t, 1, &GET_RANDOM);
        assert_eq!(t.backend().commands[0].0, 1, "run at locality 1");
        // Locality 4 is the platform's: software writes are ignored.
        wr8(&mut t, 0x4000 + REG_ACCESS, ACCESS_SEIZE);
        assert_eq!(
            rd8(&mut t, 0x1000 + REG_ACCESS) & ACCESS_ACTIVE_LOCALITY,
            ACCESS_ACTIVE_LOCALITY
        );
    }

    #[test]
    fn a_higher_locality_seizes_and_the_old_one_learns_it() {
        let mut t = Tis::new(Echo::default());
        wr8(&mut t, REG_ACCESS, ACCESS_REQUEST_USE);
        wr8(&mut t, 0x2000 + REG_ACCESS, ACCESS_SEIZE);
        assert_ne!(rd8(&mut t, 0x2000 + REG_ACCESS) & ACCESS_ACTIVE_LOCALITY, 0);
        assert_eq!(
            rd8(&mut t, REG_ACCESS) & (ACCESS_ACTIVE_LOCALITY | ACCESS_BEEN_SEIZED),
            ACCESS_BEEN_SEIZED
        );
        wr8(&mut t, REG_ACCESS, ACCESS_BEEN_SEIZED);
        assert_eq!(rd8(&mut t, REG_ACCESS) & ACCESS_BEEN_SEIZED, 0);
    }

    #[test]
    fn a_short_command_answers_command_size_without_reaching_the_tpm() {
        let mut t = Tis::new(Echo::default());
        wr8(&mut t, REG_ACCESS, ACCESS_REQUEST_USE);
        wr8(&mut t, REG_STS, STS_COMMAND_READY as u8);
        // A header claiming 6 bytes: complete after 6, too short to be a command.
        for b in [0x80, 0x01, 0, 0, 0, 6] {
            wr8(&mut t, REG_DATA_FIFO, b);
        }
        assert_eq!(rd32(&mut t, REG_STS) & STS_EXPECT, 0);
        wr8(&mut t, REG_STS, STS_GO as u8);
        assert!(t.backend().commands.is_empty());
        let rsp: Vec<u8> = (0..10).map(|_| rd8(&mut t, REG_DATA_FIFO)).collect();
        assert_eq!(&rsp[6..], &0x142u32.to_be_bytes());
    }

    #[test]
    fn established_shows_inverted_and_only_locality_3_resets_it() {
        let mut t = Tis::new(Echo {
            established: true,
            ..Default::default()
        });
        assert_eq!(rd8(&mut t, REG_ACCESS) & 1, 0);
        wr8(&mut t, REG_ACCESS, ACCESS_REQUEST_USE);
        t.write(REG_STS, &STS_RESET_ESTABLISHMENT.to_le_bytes());
        assert!(t.backend().resets.is_empty(), "locality 0 may not");
        wr8(&mut t, REG_ACCESS, ACCESS_ACTIVE_LOCALITY);
        wr8(&mut t, 0x3000 + REG_ACCESS, ACCESS_REQUEST_USE);
        t.write(0x3000 + REG_STS, &STS_RESET_ESTABLISHMENT.to_le_bytes());
        assert_eq!(t.backend().resets, [3]);
        assert_eq!(rd8(&mut t, REG_ACCESS) & 1, 1);
    }
}

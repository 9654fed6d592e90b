//! MSI-X: the capability, the vector table and the pending-bit array (PBA).
//!
//! The guest programs each vector's message (address/data) in the table, which
//! lives in a memory BAR, and enables MSI-X in the capability's message control.
//! A device raises vector N with [`MsixState::trigger`]: delivered at once through
//! the [`MsiSink`] when neither the function nor the vector is masked, otherwise
//! latched in the PBA and delivered when unmasked (PCI Local Bus 3.0 §6.8.2).
//! The VMM's sink maps each vector to a KVM GSI route and an irqfd, so delivery
//! from a device thread is one eventfd write.

use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

/// Size of one table entry in bytes.
pub const ENTRY_SIZE: u64 = 16;
/// MSI-X capability ID.
pub const CAP_ID_MSIX: u8 = 0x11;
/// Message control: MSI-X enable.
const CTRL_ENABLE: u16 = 1 << 15;
/// Message control: function mask.
const CTRL_FUNCTION_MASK: u16 = 1 << 14;
/// Vector control: per-vector mask.
const VECTOR_MASKED: u32 = 1;

/// One MSI message as the guest programmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// Where MSI messages go: implemented by the VMM on KVM (GSI routes + irqfd),
/// and by a recorder in tests.
pub trait MsiSink: Send + Sync {
    /// Vector `vector`'s message changed or its mask changed. A masked vector
    /// must not be delivered until programmed again unmasked.
    fn program(&self, vector: u16, msg: MsiMessage, masked: bool);
    /// Delivers vector `vector` (programmed unmasked before).
    fn trigger(&self, vector: u16);
    /// An eventfd whose every write delivers vector `vector` with no exit to the VMM
    /// (KVM's irqfd), for a backend in the host kernel to signal; `None` where there is
    /// none. Such writes bypass the mask: one made while the vector is masked is lost.
    fn irqfd(&self, _vector: u16) -> Option<EventFd> {
        None
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    msg: MsiMessage,
    control: u32,
}

/// MSI-X state of one function.
pub struct MsixState {
    entries: Vec<Entry>,
    pending: Vec<u64>,
    /// Vectors whose irqfd was handed out ([`MsixState::irqfd`]): a signal may have
    /// been lost while one was masked, so unmasking it delivers it.
    direct: Vec<bool>,
    enabled: bool,
    function_masked: bool,
    sink: Arc<dyn MsiSink>,
}

impl std::fmt::Debug for MsixState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsixState")
            .field("vectors", &self.entries.len())
            .field("enabled", &self.enabled)
            .field("function_masked", &self.function_masked)
            .finish()
    }
}

impl MsixState {
    /// `vectors` entries, all masked at reset as the specification requires.
    pub fn new(vectors: u16, sink: Arc<dyn MsiSink>) -> Self {
        assert!((1..=2048).contains(&vectors));
        let entries = vec![
            Entry {
                msg: MsiMessage::default(),
                control: VECTOR_MASKED,
            };
            usize::from(vectors)
        ];
        MsixState {
            entries,
            pending: vec![0; usize::from(vectors).div_ceil(64)],
            direct: vec![false; usize::from(vectors)],
            enabled: false,
            function_masked: false,
            sink,
        }
    }

    /// Number of vectors.
    pub fn vectors(&self) -> u16 {
        self.entries.len() as u16
    }

    /// Table size in bytes.
    pub fn table_size(&self) -> u64 {
        self.entries.len() as u64 * ENTRY_SIZE
    }

    /// PBA size in bytes (whole qwords).
    pub fn pba_size(&self) -> u64 {
        self.pending.len() as u64 * 8
    }

    /// The capability body (12 bytes) for a table at `table_off` and a PBA at
    /// `pba_off`, both in BAR `bir`, and its per-byte write mask.
    pub fn capability(&self, bir: u8, table_off: u32, pba_off: u32) -> ([u8; 12], [u8; 4]) {
        let mut c = [0u8; 12];
        c[0] = CAP_ID_MSIX;
        let ctrl = self.vectors() - 1;
        c[2..4].copy_from_slice(&ctrl.to_le_bytes());
        c[4..8].copy_from_slice(&(table_off | u32::from(bir)).to_le_bytes());
        c[8..12].copy_from_slice(&(pba_off | u32::from(bir)).to_le_bytes());
        // Only the enable and function-mask bits of message control are writable.
        (c, [0, 0, 0, 0xc0])
    }

    /// Whether MSI-X is enabled by the guest.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Takes the new message-control value after a guest write to the capability.
    pub fn set_control(&mut self, ctrl: u16) {
        let was = (self.enabled, self.function_masked);
        self.enabled = ctrl & CTRL_ENABLE != 0;
        self.function_masked = ctrl & CTRL_FUNCTION_MASK != 0;
        if (self.enabled, self.function_masked) != was {
            // Routes follow both bits, so a handed-out irqfd delivers nothing while
            // MSI-X is off or the function is masked.
            let was_open = was.0 && !was.1;
            for v in 0..self.vectors() {
                self.program(v);
                if !was_open && self.enabled {
                    self.note_unmasked(v);
                }
            }
        }
        self.deliver_pending();
    }

    /// Hands out the irqfd of vector `v` ([`MsiSink::irqfd`]) for a kernel backend to
    /// signal; `None` while MSI-X is off or where the sink has none. From then on the
    /// vector counts as pending whenever it is unmasked (a spurious interrupt at
    /// worst, which virtio drivers ignore), since a signal while masked was lost.
    pub fn irqfd(&mut self, v: u16) -> Option<EventFd> {
        if !self.enabled || usize::from(v) >= self.entries.len() {
            return None;
        }
        let fd = self.sink.irqfd(v)?;
        self.direct[usize::from(v)] = true;
        Some(fd)
    }

    /// Vector `v` may have become deliverable: pending if its irqfd was handed out.
    fn note_unmasked(&mut self, v: u16) {
        if self.direct[usize::from(v)] && !self.vector_masked(v) {
            self.pending[usize::from(v) / 64] |= 1 << (v % 64);
        }
    }

    /// Resets to the power-on state (all vectors masked, MSI-X off).
    pub fn reset(&mut self) {
        for e in &mut self.entries {
            *e = Entry {
                msg: MsiMessage::default(),
                control: VECTOR_MASKED,
            };
        }
        self.pending.iter_mut().for_each(|p| *p = 0);
        self.direct.iter_mut().for_each(|d| *d = false);
        self.enabled = false;
        self.function_masked = false;
    }

    fn vector_masked(&self, v: u16) -> bool {
        self.function_masked || self.entries[usize::from(v)].control & VECTOR_MASKED != 0
    }

    fn program(&self, v: u16) {
        let e = self.entries[usize::from(v)];
        let masked = e.control & VECTOR_MASKED != 0 || !self.enabled || self.function_masked;
        self.sink.program(v, e.msg, masked);
    }

    fn deliver_pending(&mut self) {
        if !self.enabled || self.function_masked {
            return;
        }
        for v in 0..self.vectors() {
            let (w, b) = (usize::from(v) / 64, v % 64);
            if self.pending[w] & (1 << b) != 0 && !self.vector_masked(v) {
                self.pending[w] &= !(1 << b);
                self.sink.trigger(v);
            }
        }
    }

    /// Raises vector `v`. Returns false when MSI-X is disabled (nothing happened;
    /// the caller may fall back to INTx).
    pub fn trigger(&mut self, v: u16) -> bool {
        if !self.enabled || usize::from(v) >= self.entries.len() {
            return false;
        }
        if self.vector_masked(v) {
            self.pending[usize::from(v) / 64] |= 1 << (v % 64);
        } else {
            self.sink.trigger(v);
        }
        true
    }

    /// Guest read of the table (`offset` relative to the table start).
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let (idx, field) = ((offset / ENTRY_SIZE) as usize, offset % ENTRY_SIZE);
        let Some(e) = self.entries.get(idx) else {
            return;
        };
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&e.msg.address.to_le_bytes());
        raw[8..12].copy_from_slice(&e.msg.data.to_le_bytes());
        raw[12..16].copy_from_slice(&e.control.to_le_bytes());
        let f = field as usize;
        if f + data.len() <= 16 {
            data.copy_from_slice(&raw[f..f + data.len()]);
        }
    }

    /// Guest write to the table (`offset` relative to the table start).
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        let (idx, field) = ((offset / ENTRY_SIZE) as usize, offset % ENTRY_SIZE);
        let Some(e) = self.entries.get(idx).copied() else {
            return;
        };
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&e.msg.address.to_le_bytes());
        raw[8..12].copy_from_slice(&e.msg.data.to_le_bytes());
        raw[12..16].copy_from_slice(&e.control.to_le_bytes());
        let f = field as usize;
        if f + data.len() > 16 {
            return;
        }
        raw[f..f + data.len()].copy_from_slice(data);
        let new = Entry {
            msg: MsiMessage {
                address: u64::from_le_bytes(raw[0..8].try_into().expect("8 bytes")),
                data: u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes")),
            },
            control: u32::from_le_bytes(raw[12..16].try_into().expect("4 bytes")) & VECTOR_MASKED,
        };
        self.entries[idx] = new;
        let v = idx as u16;
        // Reprogram when the vector is (or becomes) deliverable or its mask
        // changes; address/data writes on a masked vector wait for the unmask.
        if self.enabled && (new.control != e.control || new.control & VECTOR_MASKED == 0) {
            self.program(v);
        }
        if e.control & VECTOR_MASKED != 0 && self.enabled {
            self.note_unmasked(v);
        }
        self.deliver_pending();
    }

    /// Guest read of the PBA.
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let mut raw = Vec::with_capacity(self.pending.len() * 8);
        for p in &self.pending {
            raw.extend_from_slice(&p.to_le_bytes());
        }
        let o = offset as usize;
        if o + data.len() <= raw.len() {
            data.copy_from_slice(&raw[o..o + data.len()]);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what the device asked the interrupt controller to do.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub programmed: Mutex<Vec<(u16, MsiMessage, bool)>>,
        pub fired: Mutex<Vec<u16>>,
    }

    impl MsiSink for Recorder {
        fn program(&self, vector: u16, msg: MsiMessage, masked: bool) {
            self.programmed.lock().unwrap().push((vector, msg, masked));
        }
        fn trigger(&self, vector: u16) {
            self.fired.lock().unwrap().push(vector);
        }
        fn irqfd(&self, _vector: u16) -> Option<EventFd> {
            EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).ok()
        }
    }

    fn program_vector(m: &mut MsixState, v: u64, addr: u64, data: u32, masked: bool) {
        m.write_table(v * 16, &addr.to_le_bytes());
        m.write_table(v * 16 + 8, &data.to_le_bytes());
        m.write_table(v * 16 + 12, &u32::from(masked).to_le_bytes());
    }

    #[test]
    fn a_handed_out_irqfd_vector_is_delivered_when_unmasked() {
        let rec = Arc::new(Recorder::default());
        let mut m = MsixState::new(3, rec.clone());
        assert!(m.irqfd(0).is_none(), "MSI-X off: no irqfd");
        m.set_control(CTRL_ENABLE);
        for v in 0..3 {
            program_vector(&mut m, v, 0xfee0_0000, 0x40 + v as u32, false);
        }
        assert!(m.irqfd(1).is_some());
        assert!(m.irqfd(3).is_none(), "no such vector");
        // A kernel backend's signal while vector 1 is masked went nowhere: the
        // unmask delivers it; vector 2, never handed out, stays quiet.
        m.write_table(16 + 12, &1u32.to_le_bytes());
        m.write_table(2 * 16 + 12, &1u32.to_le_bytes());
        m.write_table(16 + 12, &0u32.to_le_bytes());
        m.write_table(2 * 16 + 12, &0u32.to_le_bytes());
        assert_eq!(*rec.fired.lock().unwrap(), vec![1]);
        // The function mask takes every route away and gives the direct one back.
        rec.programmed.lock().unwrap().clear();
        m.set_control(CTRL_ENABLE | CTRL_FUNCTION_MASK);
        let masked: Vec<bool> = rec.programmed.lock().unwrap().iter().map(|p| p.2).collect();
        assert_eq!(masked, vec![true; 3]);
        m.set_control(CTRL_ENABLE);
        assert_eq!(*rec.fired.lock().unwrap(), vec![1, 1]);
        // A reset forgets the handed-out vectors.
        m.reset();
        m.set_control(CTRL_ENABLE);
        program_vector(&mut m, 1, 0xfee0_0000, 0x41, true);
        m.write_table(16 + 12, &0u32.to_le_bytes());
        assert_eq!(*rec.fired.lock().unwrap(), vec![1, 1]);
    }

    #[test]
    fn disabled_msix_delivers_nothing() {
        let rec = Arc::new(Recorder::default());
        let mut m = MsixState::new(2, rec.clone());
        assert!(!m.trigger(0));
        assert!(rec.fired.lock().unwrap().is_empty());
    }

    #[test]
    fn masked_vector_is_pending_until_unmasked() {
        let rec = Arc::new(Recorder::default());
        let mut m = MsixState::new(3, rec.clone());
        m.set_control(CTRL_ENABLE);
        program_vector(&mut m, 1, 0xfee0_0000, 0x41, true);
        assert!(m.trigger(1));
        assert!(rec.fired.lock().unwrap().is_empty());
        let mut pba = [0u8; 8];
        m.read_pba(0, &mut pba);
        assert_eq!(u64::from_le_bytes(pba), 0b10);
        m.write_table(16 + 12, &0u32.to_le_bytes());
        assert_eq!(*rec.fired.lock().unwrap(), vec![1]);
        m.read_pba(0, &mut pba);
        assert_eq!(u64::from_le_bytes(pba), 0);
        let last = *rec.programmed.lock().unwrap().last().unwrap();
        assert_eq!(
            last,
            (
                1,
                MsiMessage {
                    address: 0xfee0_0000,
                    data: 0x41
                },
                false
            )
        );
    }

    #[test]
    fn function_mask_holds_all_vectors() {
        let rec = Arc::new(Recorder::default());
        let mut m = MsixState::new(2, rec.clone());
        m.set_control(CTRL_ENABLE | CTRL_FUNCTION_MASK);
        program_vector(&mut m, 0, 0xfee0_0000, 0x30, false);
        m.trigger(0);
        assert!(rec.fired.lock().unwrap().is_empty());
        m.set_control(CTRL_ENABLE);
        assert_eq!(*rec.fired.lock().unwrap(), vec![0]);
    }

    #[test]
    fn table_reads_back_and_capability_layout() {
        let rec = Arc::new(Recorder::default());
        let mut m = MsixState::new(4, rec);
        program_vector(&mut m, 2, 0xfee0_1000, 0x55, false);
        let mut d = [0u8; 4];
        m.read_table(2 * 16 + 8, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x55);
        m.read_table(3 * 16 + 12, &mut d);
        assert_eq!(u32::from_le_bytes(d), 1, "vectors start masked");
        let (cap, mask) = m.capability(0, 0x8000, 0xc000);
        assert_eq!(cap[0], CAP_ID_MSIX);
        assert_eq!(u16::from_le_bytes([cap[2], cap[3]]), 3);
        assert_eq!(u32::from_le_bytes(cap[4..8].try_into().unwrap()), 0x8000);
        assert_eq!(mask[3], 0xc0);
        assert_eq!((m.table_size(), m.pba_size()), (64, 8));
    }
}

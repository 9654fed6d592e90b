//! Legacy INTx interrupts for functions whose driver does not enable MSI-X (Linux
//! with `pci=nomsi`, simple drivers): the function's INTA# pin as a level-triggered
//! line.
//!
//! The line is asserted while the function has an interrupt the driver has not
//! taken. For virtio that is a non-zero ISR status (reading it clears it). The VMM
//! wires the line to an irqfd registered with a resample eventfd
//! (`KVM_IRQFD_FLAG_RESAMPLE`): a write to the irqfd asserts the GSI; when the guest
//! EOIs the level-triggered vector, KVM deasserts it and signals the resample fd,
//! and [`IntxPin::resample`] asserts it again if the status is still pending. The
//! device thread raising an interrupt never waits for the vCPU, and nothing needs
//! an exit to userspace on the ISR read.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

/// PCI interrupt pin value for INTA#.
pub const PIN_INTA: u8 = 1;

/// The wire from a function's pin to the interrupt controller.
pub trait IntxLine: Send + Sync {
    /// Asserts the line (the controller deasserts it at the guest's EOI).
    fn assert(&self);
}

/// The INTx pin of one function.
pub struct IntxPin {
    line: Box<dyn IntxLine>,
    /// Pending interrupt status (virtio: the ISR byte, shared with the transport).
    status: Arc<AtomicU8>,
    /// MSI-X is off and the command register's Interrupt Disable bit is clear.
    active: AtomicBool,
    /// GSI the pin is routed to (what the Interrupt Line register and `_PRT` say).
    gsi: u32,
}

impl std::fmt::Debug for IntxPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntxPin")
            .field("gsi", &self.gsi)
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish()
    }
}

impl IntxPin {
    /// A pin routed to `gsi` whose level follows `status != 0`. Active until told
    /// otherwise (MSI-X is off at reset).
    pub fn new(gsi: u32, status: Arc<AtomicU8>, line: Box<dyn IntxLine>) -> Self {
        IntxPin {
            line,
            status,
            active: AtomicBool::new(true),
            gsi,
        }
    }

    /// The GSI the pin is routed to.
    pub fn gsi(&self) -> u32 {
        self.gsi
    }

    /// Whether interrupts go out on this pin now.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// INTx is the function's interrupt mode when MSI-X is disabled and the
    /// command register does not disable INTx (PCI 3.0 §6.2.2, §6.8.2.3).
    pub fn set_mode(&self, msix_enabled: bool, intx_disabled: bool) {
        let was = self
            .active
            .swap(!msix_enabled && !intx_disabled, Ordering::SeqCst);
        if !was {
            // Re-enabled with an interrupt still pending: raise it now.
            self.resample();
        }
    }

    /// The function set a status bit: assert the line if INTx is in use.
    pub fn raise(&self) {
        if self.active() {
            self.line.assert();
        }
    }

    /// The guest acknowledged the interrupt (EOI) and the line was deasserted:
    /// assert it again if the status is still pending.
    pub fn resample(&self) {
        if self.active() && self.status.load(Ordering::SeqCst) != 0 {
            self.line.assert();
        }
    }

    /// The Interrupt Status bit of the PCI status register: pending and routed out.
    pub fn pending(&self) -> bool {
        self.active() && self.status.load(Ordering::SeqCst) != 0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts assertions.
    #[derive(Default, Clone)]
    pub(crate) struct CountingLine(pub Arc<AtomicUsize>);

    impl IntxLine for CountingLine {
        fn assert(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn resample_reasserts_only_while_pending_and_active() {
        let line = CountingLine::default();
        let status = Arc::new(AtomicU8::new(0));
        let pin = IntxPin::new(17, status.clone(), Box::new(line.clone()));
        let n = || line.0.load(Ordering::SeqCst);
        status.store(1, Ordering::SeqCst);
        pin.raise();
        assert_eq!(n(), 1);
        // EOI without reading the status: still pending, asserted again.
        pin.resample();
        assert_eq!(n(), 2);
        // The driver read (cleared) the status before its EOI.
        status.store(0, Ordering::SeqCst);
        pin.resample();
        assert_eq!(n(), 2);
        assert!(!pin.pending());
        // MSI-X on: nothing goes out on the pin.
        pin.set_mode(true, false);
        status.store(2, Ordering::SeqCst);
        pin.raise();
        pin.resample();
        assert_eq!(n(), 2);
        // MSI-X off again with status pending: raised at once.
        pin.set_mode(false, false);
        assert_eq!(n(), 3);
        // Interrupt Disable in the command register.
        pin.set_mode(false, true);
        pin.raise();
        assert_eq!(n(), 3);
        assert_eq!(pin.gsi(), 17);
    }
}

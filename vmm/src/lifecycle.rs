//! Guest-initiated lifecycle changes (power-off, reset, crash, panic), reported
//! by devices and vCPU threads to the VMM's main loop.

use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

/// Something the guest did that ends (or restarts) the current run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestExit {
    /// ACPI S5 (or a KVM system-event shutdown).
    PowerOff,
    /// Reset register, keyboard controller reset, KVM system-event reset.
    Reset,
    /// Triple fault, KVM internal or emulation error: the message says what and where.
    Crash(String),
    /// The guest reported a panic through pvpanic.
    Panicked,
}

struct Inner {
    pending: Mutex<Option<GuestExit>>,
    evt: EventFd,
}

/// Where devices and vCPUs report a [`GuestExit`]. The first report wins until
/// the main loop takes it. Cloning shares the sink.
#[derive(Clone)]
pub struct ExitSink(Arc<Inner>);

impl ExitSink {
    /// A sink with its wake-up eventfd.
    pub fn new() -> std::io::Result<Self> {
        Ok(ExitSink(Arc::new(Inner {
            pending: Mutex::new(None),
            evt: EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
        })))
    }

    /// Reports `exit` unless one is already pending.
    pub fn request(&self, exit: GuestExit) {
        let mut p = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none() {
            tracing::debug!(?exit, "guest exit requested");
            *p = Some(exit);
            let _ = self.0.evt.write(1);
        }
    }

    /// Takes the pending report, if any.
    pub fn take(&self) -> Option<GuestExit> {
        let _ = self.0.evt.read();
        self.0
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Whether a report is pending (vCPUs stop running guest code once one is).
    pub fn is_pending(&self) -> bool {
        self.0
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The eventfd the main loop polls.
    pub fn eventfd(&self) -> &EventFd {
        &self.0.evt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_report_wins_until_taken() {
        let s = ExitSink::new().unwrap();
        s.clone().request(GuestExit::PowerOff);
        s.request(GuestExit::Reset);
        assert!(s.is_pending());
        assert_eq!(s.take(), Some(GuestExit::PowerOff));
        assert_eq!(s.take(), None);
        s.request(GuestExit::Reset);
        assert_eq!(s.take(), Some(GuestExit::Reset));
    }
}

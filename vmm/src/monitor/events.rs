//! VM lifecycle events as QMP events (names and data as QEMU sends them).

use serde_json::{json, Value};

use crate::control::VmEvent;

/// The QMP event name and data for `ev`.
pub fn to_qmp(ev: &VmEvent) -> (&'static str, Option<Value>) {
    match ev {
        VmEvent::Stop => ("STOP", None),
        VmEvent::Resume => ("RESUME", None),
        VmEvent::Powerdown => ("POWERDOWN", None),
        VmEvent::Shutdown { guest, reason } => (
            "SHUTDOWN",
            Some(json!({"guest": guest, "reason": reason.as_qmp_str()})),
        ),
        VmEvent::Reset { guest, reason } => (
            "RESET",
            Some(json!({"guest": guest, "reason": reason.as_qmp_str()})),
        ),
        VmEvent::GuestPanicked { action } => (
            "GUEST_PANICKED",
            Some(json!({"action": action.as_qmp_str()})),
        ),
        VmEvent::VserportChange { id, open } => {
            ("VSERPORT_CHANGE", Some(json!({"id": id, "open": open})))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{PanicAction, ShutdownCause};

    #[test]
    fn shapes_match_qemu() {
        assert_eq!(to_qmp(&VmEvent::Stop), ("STOP", None));
        assert_eq!(
            to_qmp(&VmEvent::Shutdown {
                guest: true,
                reason: ShutdownCause::GuestShutdown
            }),
            (
                "SHUTDOWN",
                Some(json!({"guest": true, "reason": "guest-shutdown"}))
            )
        );
        assert_eq!(
            to_qmp(&VmEvent::Reset {
                guest: false,
                reason: ShutdownCause::HostQmpSystemReset
            }),
            (
                "RESET",
                Some(json!({"guest": false, "reason": "host-qmp-system-reset"}))
            )
        );
        assert_eq!(
            to_qmp(&VmEvent::GuestPanicked {
                action: PanicAction::Pause
            }),
            ("GUEST_PANICKED", Some(json!({"action": "pause"})))
        );
        assert_eq!(
            to_qmp(&VmEvent::VserportChange {
                id: "channel0".into(),
                open: true
            }),
            (
                "VSERPORT_CHANGE",
                Some(json!({"id": "channel0", "open": true}))
            )
        );
    }
}

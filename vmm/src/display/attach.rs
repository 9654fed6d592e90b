//! Building the display and input side of a machine from its spec.

use std::sync::Arc;

use machine_spec::{DeviceKind, MachineSpec};

use super::Console;

/// The console of a machine whose spec has a video device (the first is primary).
pub fn console_for(spec: &MachineSpec) -> Option<Arc<Console>> {
    spec.devices
        .iter()
        .any(|d| matches!(d.kind, DeviceKind::Video(_)))
        .then(|| Arc::new(Console::new()))
}

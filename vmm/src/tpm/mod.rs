//! TPM 2.0 (libvirt `<tpm model='tpm-crb'|'tpm-tis'><backend type='emulator'
//! version='2.0'/>`).
//!
//! What the guest sees: a CRB interface at 0xFED40000 ([`crb`]) or the TIS FIFO
//! interface's five locality pages there ([`tis`]), described by the ACPI TPM2 table
//! (start method 7, "command response buffer", or 6, "memory mapped" for TIS) and an
//! `MSFT0101` device in the DSDT ([`acpi`]), which is how Linux's `tpm_crb` or
//! `tpm_tis`, SeaBIOS and OVMF find it. Behind it, the VMM's own swtpm ([`swtpm`]), started once per VMM and
//! kept across machine resets the way passt is for user-mode networking: one code
//! path for daemon-run domains and `oxvirt-vmm --xml`, and swtpm ends with the VMM.

pub mod acpi;
pub mod crb;
pub mod swtpm;
pub mod tis;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use machine_spec::{DeviceKind, MachineSpec, TpmModel};

use crate::devices::bus::BusDevice;
use crb::{Crb, CRB_BASE};
use swtpm::{Swtpm, SwtpmHandle};
use tis::{Tis, TIS_BASE};

/// Errors of starting the TPM.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// A control command failed.
    #[error("swtpm did not accept {0}")]
    Control(&'static str, #[source] std::io::Error),
    /// swtpm_setup failed.
    #[error("swtpm_setup could not manufacture the TPM in {0} (its log: {1}): {2}")]
    Setup(PathBuf, PathBuf, String),
    /// A program could not be started.
    #[error("cannot start {0} (Debian packages swtpm and swtpm-tools)")]
    Spawn(&'static str, #[source] std::io::Error),
    /// The state directory could not be created.
    #[error("cannot create the TPM state directory {0}")]
    StateDir(PathBuf, #[source] std::io::Error),
}

/// The domain's TPM, if it has one: swtpm started and its state manufactured.
pub fn start_for(spec: &MachineSpec) -> Result<Option<SwtpmHandle>, TpmError> {
    let Some(tpm) = spec.devices.iter().find_map(|d| match &d.kind {
        DeviceKind::Tpm(t) => Some(t),
        _ => None,
    }) else {
        return Ok(None);
    };
    let vmid = format!("{}:{}", spec.name, spec.uuid);
    let s = Swtpm::start(tpm, &vmid)?;
    Ok(Some(SwtpmHandle(Arc::new(Mutex::new(s)))))
}

/// The spec's TPM interface, if it has a TPM (the ACPI tables describe it).
pub fn in_spec(spec: &MachineSpec) -> Option<TpmModel> {
    spec.devices.iter().find_map(|d| match &d.kind {
        DeviceKind::Tpm(t) => Some(t.model),
        _ => None,
    })
}

/// The TPM interface of one machine: the TPM is brought up (as at power-on) first.
pub fn device(tpm: &SwtpmHandle, model: TpmModel) -> Result<Arc<Mutex<TpmDevice>>, TpmError> {
    tpm.0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .machine_start()?;
    Ok(Arc::new(Mutex::new(match model {
        TpmModel::Crb => TpmDevice::Crb(Crb::new(tpm.clone())),
        TpmModel::Tis => TpmDevice::Tis(Tis::new(tpm.clone())),
    })))
}

/// Where the interface's registers go on the MMIO bus.
pub fn mmio_range(model: TpmModel) -> (u64, u64) {
    match model {
        TpmModel::Crb => (CRB_BASE, crb::CRB_SIZE),
        TpmModel::Tis => (TIS_BASE, tis::TIS_SIZE),
    }
}

/// The TPM interface on the MMIO bus.
pub enum TpmDevice {
    /// `tpm-crb`.
    Crb(Crb<SwtpmHandle>),
    /// `tpm-tis`.
    Tis(Tis<SwtpmHandle>),
}

impl BusDevice for TpmDevice {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match self {
            TpmDevice::Crb(c) => c.read(offset, data),
            TpmDevice::Tis(t) => t.read(offset, data),
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match self {
            TpmDevice::Crb(c) => c.write(offset, data),
            TpmDevice::Tis(t) => t.write(offset, data),
        }
    }
}

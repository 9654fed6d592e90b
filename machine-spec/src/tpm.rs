//! The TPM 2.0 device (libvirt `<tpm model='tpm-crb'|'tpm-tis'><backend
//! type='emulator' version='2.0'/>`): a CRB or TIS interface at 0xFED40000 in front of
//! an `swtpm` the VMM starts, whose state lives in a per-domain directory.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A TPM 2.0 emulated by swtpm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tpm {
    /// The interface the guest sees.
    pub model: TpmModel,
    /// swtpm's state directory (`/var/lib/oxvirt/swtpm/UUID`, or under the user's data
    /// dir); the VMM creates it and manufactures the TPM with `swtpm_setup` when it
    /// holds no state yet.
    pub state_dir: PathBuf,
    /// swtpm's log file (libvirt's `/var/log/libvirt/swtpm/libvirt/qemu/NAME-swtpm.log`);
    /// absent: the state dir's `swtpm.log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
}

/// TPM interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TpmModel {
    /// The Command Response Buffer interface (TCG PC Client PTP), QEMU's `tpm-crb`.
    Crb,
    /// The TIS FIFO interface (five locality pages, polled), QEMU's ISA `tpm-tis`.
    Tis,
}

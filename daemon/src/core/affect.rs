//! libvirt's `VIR_DOMAIN_AFFECT_*` rule for calls that read or change either the
//! running domain or its persistent definition (pin info, pinning): which one a
//! call's flags select.

use uuid::Uuid;

use super::error::{Error, Result};
use super::Core;

/// `VIR_DOMAIN_AFFECT_LIVE`.
pub const LIVE: u32 = 1;
/// `VIR_DOMAIN_AFFECT_CONFIG`.
pub const CONFIG: u32 = 2;

impl Core {
    /// Whether `flags` (CURRENT = 0, LIVE, CONFIG) select the running domain:
    /// CURRENT means live while it runs; LIVE on an inactive domain and LIVE with
    /// CONFIG are libvirt's errors.
    pub fn affects_live(&self, uuid: &Uuid, flags: u32, api: &str) -> Result<bool> {
        Error::check_flags(flags, LIVE | CONFIG, api)?;
        if flags & LIVE != 0 && flags & CONFIG != 0 {
            return Err(Error::InvalidArg(
                "flags 'affect-live' and 'affect-config' are mutually exclusive".into(),
            ));
        }
        let active = self.info(uuid)?.state.is_active();
        if flags & LIVE != 0 && !active {
            return Err(Error::OperationInvalid("domain is not running".into()));
        }
        Ok(flags & CONFIG == 0 && active)
    }
}

/// Pinning kept in the persistent definition needs `<cputune>`, which the domain
/// model does not carry: refused by name rather than accepted and forgotten.
pub fn config_pinning() -> Error {
    Error::ConfigUnsupported(
        "pinning in the persistent definition (<cputune>) is not supported; pin the running domain (--live)"
            .into(),
    )
}

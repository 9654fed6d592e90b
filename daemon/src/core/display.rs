//! The guest's screen and keyboard from the management side: `virDomainScreenshot`
//! (QMP `screendump` into the domain's runtime directory, as PNG) and
//! `virDomainSendKey` (key codes of any supported set → QMP `send-key` numbers).

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::keycodes;
use super::supervise::Vm;
use super::{Core, Error, Result};

/// libvirt's limit on keys per `virDomainSendKey` (`VIR_DOMAIN_SEND_KEY_MAX_KEYS`).
pub const SEND_KEY_MAX: usize = 16;

impl Core {
    pub(super) fn vm_of(&self, uuid: &Uuid) -> Result<Arc<Vm>> {
        let slot = self.slot(uuid)?;
        let r = slot.rec();
        r.require_active()?;
        r.vm.clone()
            .ok_or_else(|| Error::OperationInvalid("domain is not running".into()))
    }

    /// A PNG of screen `screen` (only 0 exists): the open file, already unlinked, and
    /// its MIME type.
    pub async fn screenshot(
        &self,
        uuid: &Uuid,
        screen: u32,
        flags: u32,
    ) -> Result<(std::fs::File, &'static str)> {
        Error::check_flags(flags, 0, "virDomainScreenshot")?;
        let vm = self.vm_of(uuid)?;
        if screen != 0 {
            return Err(Error::InvalidArg(format!(
                "Screen ID {screen} is out of range (the domain has one display head)"
            )));
        }
        let path = vm.rt.path().join("screenshot.png");
        vm.qmp(
            "screendump",
            Some(json!({"filename": path.to_string_lossy(), "format": "png"})),
        )
        .await?;
        let file = std::fs::File::open(&path).map_err(|e| {
            Error::Internal(format!("cannot open screenshot {}: {e}", path.display()))
        })?;
        let _ = std::fs::remove_file(&path);
        Ok((file, "image/png"))
    }

    /// Presses `codes` (of `codeset`) together for `holdtime` ms, then releases them.
    pub async fn send_key(
        &self,
        uuid: &Uuid,
        codeset: u32,
        holdtime: u32,
        codes: &[u32],
        flags: u32,
    ) -> Result<()> {
        Error::check_flags(flags, 0, "virDomainSendKey")?;
        if codes.is_empty() || codes.len() > SEND_KEY_MAX {
            return Err(Error::InvalidArg(format!(
                "nkeycodes must be 1-{SEND_KEY_MAX}, got {}",
                codes.len()
            )));
        }
        let keys = codes
            .iter()
            .map(|&c| keycodes::to_qnum(codeset, c).map(|q| json!({"type": "number", "data": q})))
            .collect::<Result<Vec<_>>>()?;
        let vm = self.vm_of(uuid)?;
        let mut args = json!({ "keys": keys });
        if holdtime > 0 {
            args["hold-time"] = json!(holdtime);
        }
        vm.qmp("send-key", Some(args)).await?;
        Ok(())
    }
}

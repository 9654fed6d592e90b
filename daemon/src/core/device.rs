//! Device updates (virDomainUpdateDeviceFlags): what `virsh domif-setlink` and
//! `virsh update-device` call. Only `<interface>` can be updated; live, only its
//! link state (QMP `set_link` on the running VMM), as libvirt's QEMU driver allows
//! without reconnecting the backend. The rules for finding and comparing the
//! interface are in [`super::netdev`].

use serde_json::json;
use uuid::Uuid;

use super::definition::Definition;
use super::flags::{self, affect};
use super::fsutil;
use super::netdev;
use super::{Core, Error, Result};

/// Which definitions a modification touches: libvirt's
/// `virDomainObjUpdateModificationImpact` (CURRENT = live while running, else config).
pub(super) fn impact(flags: u32, active: bool, persistent: bool) -> Result<(bool, bool)> {
    let (live, config) = match flags & (affect::LIVE | affect::CONFIG) {
        0 => (active, !active),
        f => (f & affect::LIVE != 0, f & affect::CONFIG != 0),
    };
    if live && !active {
        return Err(Error::OperationInvalid("domain is not running".into()));
    }
    if config && !persistent {
        return Err(Error::OperationInvalid(
            "transient domains do not have any persistent config".into(),
        ));
    }
    Ok((live, config))
}

impl Core {
    /// Updates a device of the domain (virDomainUpdateDeviceFlags). As libvirt does,
    /// the new persistent definition is prepared first, then the live change is made,
    /// and only then is the definition saved, so a refused live change leaves both as
    /// they were.
    pub async fn update_device(&self, uuid: &Uuid, xml: &str, flags: u32) -> Result<()> {
        Error::check_flags(
            flags,
            affect::LIVE | affect::CONFIG | flags::device::FORCE,
            "virDomainUpdateDeviceFlags",
        )?;
        if super::media::is_disk(xml) {
            return self.update_disk(uuid, xml, flags).await;
        }
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let (active, persistent, name) = {
            let r = slot.rec();
            (r.active(), r.persistent(), r.name.clone())
        };
        let (live, config) = impact(flags, active, persistent)?;
        let dev = netdev::parse_device(xml, live)?;

        let new_def = if config {
            let mut def = slot.rec().def.clone().expect("persistent checked");
            let i = netdev::find(def.interfaces(), &dev, false)?;
            let iface = netdev::config_replacement(&def.interfaces()[i], &dev);
            def.set_interface(i, iface);
            // The result must still be a definition we accept and can run.
            let def = Definition::parse(&def.to_xml(true))?;
            def.translate()?;
            Some(def)
        } else {
            None
        };

        if live {
            let (vm, mut def) = {
                let r = slot.rec();
                (r.vm.clone(), r.live.clone())
            };
            let vm = vm.ok_or_else(|| Error::OperationInvalid("domain is not running".into()))?;
            let def = def.as_mut().ok_or_else(|| {
                Error::Internal(format!("domain '{name}' has no live definition"))
            })?;
            let i = netdev::find(def.interfaces(), &dev, true)?;
            let old = def.interfaces()[i].clone();
            // libvirt validates the device against the domain first (a per-device
            // <boot> next to <os><boot>, …).
            let mut candidate = def.clone();
            candidate.set_interface(i, netdev::config_replacement(&old, &dev));
            Definition::parse(&candidate.to_xml(false))?;
            if let Some(state) = netdev::live_change(&old, &dev)? {
                let alias = old.alias.clone().ok_or_else(|| {
                    Error::OperationFailed("can't change link state: device alias not found".into())
                })?;
                let up = netdev::is_up(state.as_deref());
                vm.qmp("set_link", Some(json!({ "name": alias, "up": up })))
                    .await?;
                tracing::info!(domain = name, alias, up, "interface link state changed");
                let mut iface = old;
                iface.link_state = state;
                def.set_interface(i, iface);
                // A restarted daemon reattaches from the runtime copy: keep it current.
                let live_xml = def.to_xml(false);
                if let Err(e) = fsutil::write_atomic(&vm.rt.live_xml(), live_xml.as_bytes(), 0o600)
                {
                    tracing::warn!(domain = name, error = %e, "cannot record the live definition");
                }
                slot.rec().live = Some(def.clone());
            }
        }

        if let Some(def) = new_def {
            self.inner.store.save(&name, &def.to_xml(true))?;
            slot.rec().def = Some(def);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impact_follows_libvirt() {
        assert_eq!(impact(0, true, true).unwrap(), (true, false));
        assert_eq!(impact(0, false, true).unwrap(), (false, true));
        assert_eq!(impact(3, true, true).unwrap(), (true, true));
        assert_eq!(
            impact(1, false, true).unwrap_err().to_string(),
            "Requested operation is not valid: domain is not running"
        );
        assert_eq!(
            impact(2, true, false).unwrap_err().to_string(),
            "Requested operation is not valid: transient domains do not have any persistent config"
        );
    }
}

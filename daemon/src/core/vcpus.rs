//! `virDomainSetVcpusFlags`: the vCPU count of the persistent definition (current and
//! maximum), and of the running domain where that needs no vCPU hot-plug.
//!
//! libvirt 9.0's QEMU driver (`qemuDomainSetVcpusFlags`) is the model: CURRENT means
//! live while running and config otherwise; LIVE and CONFIG together change both; the
//! maximum of a running domain cannot change; a count above the maximum is refused
//! naming both numbers. oxvirt's VMM has no vCPU hot-plug, so a live change succeeds
//! only when it changes nothing (what libvirt's driver also does for that case) and is
//! refused by name otherwise, leaving the persistent definition alone.

use uuid::Uuid;

use super::error::{Error, Result};
use super::flags::affect::{CONFIG, LIVE};
use super::Core;

/// `VIR_DOMAIN_VCPU_MAXIMUM`.
const MAXIMUM: u32 = 1 << 2;
/// `VIR_DOMAIN_VCPU_GUEST`.
const GUEST: u32 = 1 << 3;
/// `VIR_DOMAIN_VCPU_HOTPLUGGABLE`.
const HOTPLUGGABLE: u32 = 1 << 4;

impl Core {
    /// Sets the vCPU count (virDomainSetVcpusFlags; virDomainSetVcpus is LIVE).
    pub async fn set_vcpus(&self, uuid: &Uuid, nvcpus: u32, flags: u32) -> Result<()> {
        Error::check_flags(
            flags,
            LIVE | CONFIG | MAXIMUM | GUEST | HOTPLUGGABLE,
            "virDomainSetVcpusFlags",
        )?;
        if nvcpus == 0 {
            return Err(Error::InvalidArg(
                "nvcpus in virDomainSetVcpusFlags must not be zero".into(),
            ));
        }
        if flags & GUEST != 0 {
            return Err(Error::ArgumentUnsupported(
                "changing the guest's online vCPUs through the guest agent (VIR_DOMAIN_VCPU_GUEST) is not supported".into(),
            ));
        }
        if flags & HOTPLUGGABLE != 0 {
            return Err(Error::ArgumentUnsupported(
                "hotpluggable vCPUs (VIR_DOMAIN_VCPU_HOTPLUGGABLE) are not supported: the VMM has no vCPU hot-plug".into(),
            ));
        }
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let (active, live_cpus, live_max, persistent_max) = {
            let r = slot.rec();
            let live = r.active().then(|| r.current());
            (
                r.active(),
                live.map(|d| d.vcpus()),
                live.map(|d| d.max_vcpus()),
                r.def.as_ref().map(|d| d.max_vcpus()),
            )
        };
        let (live, config) = match flags & (LIVE | CONFIG) {
            0 => (active, !active),
            f => (f & LIVE != 0, f & CONFIG != 0),
        };
        if live && !active {
            return Err(Error::OperationInvalid("domain is not running".into()));
        }
        if config && persistent_max.is_none() {
            return Err(Error::OperationInvalid(
                "cannot change persistent config of a transient domain".into(),
            ));
        }
        if flags & MAXIMUM != 0 {
            if live {
                return Err(Error::ConfigUnsupported(
                    "maximum vcpu count of a live domain can't be modified".into(),
                ));
            }
            return self
                .update_definition(&slot, |d| d.set_max_vcpus(nvcpus))
                .await;
        }
        if live {
            let (cur, max) = (live_cpus.unwrap_or(0), live_max.unwrap_or(0));
            if nvcpus > max {
                return Err(Error::InvalidArg(format!(
                    "requested vcpus is greater than max allowable vcpus for the live domain: {nvcpus} > {max}"
                )));
            }
            if nvcpus != cur {
                return Err(Error::OperationUnsupported(format!(
                    "changing the vCPU count of a running domain ({cur} -> {nvcpus}) needs vCPU hot-plug, which oxvirt's VMM does not have; change it with --config and restart"
                )));
            }
        }
        if config {
            let max = persistent_max.unwrap_or(0);
            if nvcpus > max {
                return Err(Error::InvalidArg(format!(
                    "requested vcpus is greater than max allowable vcpus for the persistent domain: {nvcpus} > {max}"
                )));
            }
            self.update_definition(&slot, |d| d.set_vcpus(nvcpus))
                .await?;
        }
        Ok(())
    }
}

//! Read-only queries: listing with libvirt's filter flags, info, state, XML, stats.

use serde_json::Value;
use uuid::Uuid;

use super::flags;
use super::runtime;
use super::state::{State, StateReason};
use super::{Core, DomainRef, Error, Result};

/// What `virDomainGetInfo` and listings need about one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    pub domain: DomainRef,
    pub state: StateReason,
    pub persistent: bool,
    pub autostart: bool,
    /// `<memory>` in KiB.
    pub max_memory_kib: u64,
    /// Current memory in KiB (the balloon target while running).
    pub memory_kib: u64,
    pub vcpus: u32,
    /// `<vcpu>`: the maximum vCPUs.
    pub max_vcpus: u32,
    /// CPU time used by the VMM in nanoseconds (0 when inactive).
    pub cpu_time_ns: u64,
    /// `<os><type>`, e.g. `hvm`.
    pub os_type: String,
    /// Whether the live definition differs from the persistent one.
    pub updated: bool,
}

/// `virDomainGetStats`-style statistics of one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainStats {
    pub info: DomainInfo,
    /// Balloon actual size in KiB, from the VMM (running domains with a balloon).
    pub balloon_current_kib: Option<u64>,
    /// The VMM's resident set in KiB.
    pub rss_kib: Option<u64>,
    pub cpu_user_ns: Option<u64>,
}

impl Core {
    /// Domains matching libvirt's `virConnectListAllDomains` flags, by name.
    pub fn list(&self, flags: u32) -> Result<Vec<DomainInfo>> {
        Error::check_flags(flags, flags::list::ALL, "virConnectListAllDomains")?;
        let mut out = Vec::new();
        for slot in self.slots() {
            let info = self.info_of(&slot);
            // Only looked at when a filter asks (one stat per domain).
            let saved = flags & (flags::list::MANAGEDSAVE | flags::list::NO_MANAGEDSAVE) != 0
                && self.managed_save_path(&info.domain.name).exists();
            if matches_filter(&info, flags, saved) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Info about one domain (virDomainGetInfo and the D-Bus properties).
    pub fn info(&self, uuid: &Uuid) -> Result<DomainInfo> {
        Ok(self.info_of(&*self.slot(uuid)?))
    }

    fn info_of(&self, slot: &super::slot::Slot) -> DomainInfo {
        let r = slot.rec();
        let def = r.current();
        let pid = r.vm.as_ref().map(|v| v.pid);
        DomainInfo {
            domain: DomainRef {
                name: r.name.clone(),
                uuid: slot.uuid,
                id: r.id,
            },
            state: r.state,
            persistent: r.persistent(),
            autostart: r.autostart,
            max_memory_kib: def.max_memory_kib(),
            memory_kib: def.memory_kib(),
            vcpus: def.vcpus(),
            max_vcpus: def.max_vcpus(),
            cpu_time_ns: pid.and_then(runtime::cpu_time_ns).unwrap_or(0),
            os_type: def.os_type(),
            updated: r.active()
                && matches!((&r.live, &r.def), (Some(l), Some(d)) if l.to_xml(true) != d.to_xml(true)),
        }
    }

    /// State and reason (virDomainGetState).
    pub fn state(&self, uuid: &Uuid) -> Result<StateReason> {
        Ok(self.slot(uuid)?.rec().state)
    }

    /// The domain XML (virDomainGetXMLDesc): live while active unless `INACTIVE`.
    pub fn xml_desc(&self, uuid: &Uuid, flags: u32) -> Result<String> {
        use flags::xml::*;
        Error::check_flags(
            flags,
            SECURE | INACTIVE | UPDATE_CPU | MIGRATABLE,
            "virDomainGetXMLDesc",
        )?;
        let slot = self.slot(uuid)?;
        let r = slot.rec();
        if flags & INACTIVE != 0 {
            let def = r
                .def
                .as_ref()
                .or(r.live.as_ref())
                .expect("a definition exists");
            return Ok(super::graphics::without_secrets(def, flags & SECURE != 0).to_xml(true));
        }
        if r.active() {
            let live = r
                .live
                .as_ref()
                .expect("an active domain has a live definition");
            Ok(super::graphics::without_secrets(live, flags & SECURE != 0).to_live_xml(r.id))
        } else {
            Ok(super::graphics::without_secrets(r.current(), flags & SECURE != 0).to_xml(true))
        }
    }

    /// Statistics, with live figures from the VMM when running.
    pub async fn stats(&self, uuid: &Uuid) -> Result<DomainStats> {
        let slot = self.slot(uuid)?;
        let info = self.info_of(&slot);
        let vm = slot.rec().vm.clone();
        let mut stats = DomainStats {
            info,
            balloon_current_kib: None,
            rss_kib: None,
            cpu_user_ns: None,
        };
        if let Some(vm) = vm {
            stats.rss_kib = runtime::rss_kib(vm.pid);
            if let Ok(v) = vm.qmp("query-balloon", None).await {
                stats.balloon_current_kib = v["actual"].as_u64().map(|b| b / 1024);
            }
        }
        Ok(stats)
    }

    /// `virDomainMemoryStats` tags and values (KiB), for a running domain.
    pub async fn memory_stats(&self, uuid: &Uuid) -> Result<Vec<(i32, u64)>> {
        /// `VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON`, `…_RSS`.
        const ACTUAL_BALLOON: i32 = 6;
        const RSS: i32 = 7;
        let slot = self.slot(uuid)?;
        let (vm, memory) = {
            let r = slot.rec();
            r.require_active()?;
            (r.vm.clone(), r.current().memory_kib())
        };
        let vm = vm.ok_or_else(|| Error::OperationInvalid("domain is not running".into()))?;
        let balloon = match vm.qmp("query-balloon", None).await {
            Ok(v) => v["actual"].as_u64().map(|b| b / 1024).unwrap_or(memory),
            Err(_) => memory,
        };
        let mut out = vec![(ACTUAL_BALLOON, balloon)];
        if let Some(rss) = runtime::rss_kib(vm.pid) {
            out.push((RSS, rss));
        }
        Ok(out)
    }

    /// vCPU count (virDomainGetVcpusFlags): `MAXIMUM` gives the maximum, `CONFIG`
    /// the persistent definition's, otherwise the current one.
    pub fn vcpus(&self, uuid: &Uuid, flags: u32) -> Result<u32> {
        const MAXIMUM: u32 = 1 << 2;
        use flags::affect::{CONFIG, LIVE};
        Error::check_flags(flags, LIVE | CONFIG | MAXIMUM, "virDomainGetVcpusFlags")?;
        let slot = self.slot(uuid)?;
        let r = slot.rec();
        if flags & LIVE != 0 {
            r.require_active()?;
        }
        let def = if flags & CONFIG != 0 {
            r.def.as_ref().ok_or_else(|| {
                Error::OperationInvalid(
                    "transient domains do not have any persistent config".into(),
                )
            })?
        } else {
            r.current()
        };
        Ok(if flags & MAXIMUM != 0 {
            def.max_vcpus()
        } else {
            def.vcpus()
        })
    }

    /// Whether the core can reach the VMM's monitor (virDomainGetControlInfo).
    pub async fn control_ok(&self, uuid: &Uuid) -> Result<bool> {
        let slot = self.slot(uuid)?;
        let vm = {
            let r = slot.rec();
            r.require_active()?;
            r.vm.clone()
        };
        let Some(vm) = vm else { return Ok(false) };
        Ok(vm
            .qmp("query-status", None)
            .await
            .map(|v: Value| v.is_object())
            .unwrap_or(false))
    }
}

/// libvirt's filter semantics: within each group of flags, a domain must match
/// one of the set bits; groups with no bit set do not filter.
fn matches_filter(info: &DomainInfo, flags: u32, managed_save: bool) -> bool {
    use flags::list::*;
    let group = |a: u32, b: u32, is_a: bool| flags::pair_filter(flags, a, b, is_a);
    let active = info.state.is_active();
    let state_ok = {
        let set = flags & (RUNNING | PAUSED | SHUTOFF | OTHER);
        set == 0
            || match info.state.state {
                State::Running => set & RUNNING != 0,
                State::Paused => set & PAUSED != 0,
                State::Shutoff => set & SHUTOFF != 0,
                _ => set & OTHER != 0,
            }
    };
    group(ACTIVE, INACTIVE, active)
        && group(PERSISTENT, TRANSIENT, info.persistent)
        && state_ok
        && group(MANAGEDSAVE, NO_MANAGEDSAVE, managed_save)
        && group(AUTOSTART, NO_AUTOSTART, info.autostart)
        && group(HAS_SNAPSHOT, NO_SNAPSHOT, false)
        && group(HAS_CHECKPOINT, NO_CHECKPOINT, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::running;

    fn info(state: State, persistent: bool) -> DomainInfo {
        DomainInfo {
            domain: DomainRef {
                name: "a".into(),
                uuid: Uuid::nil(),
                id: -1,
            },
            state: StateReason::new(
                state,
                if state == State::Running {
                    running::BOOTED
                } else {
                    0
                },
            ),
            persistent,
            autostart: false,
            max_memory_kib: 1024,
            memory_kib: 1024,
            vcpus: 1,
            max_vcpus: 1,
            cpu_time_ns: 0,
            os_type: "hvm".into(),
            updated: false,
        }
    }

    #[test]
    fn list_filters_follow_libvirt_groups() {
        use flags::list::*;
        let run = info(State::Running, true);
        let off = info(State::Shutoff, true);
        let trans = info(State::Paused, false);
        assert!(matches_filter(&run, 0, false));
        assert!(matches_filter(&run, ACTIVE, false));
        assert!(!matches_filter(&off, ACTIVE, false));
        assert!(matches_filter(&off, ACTIVE | INACTIVE, false));
        assert!(matches_filter(&trans, TRANSIENT | PAUSED, false));
        assert!(!matches_filter(&trans, PERSISTENT, false));
        assert!(matches_filter(&run, NO_MANAGEDSAVE | NO_SNAPSHOT, false));
        assert!(!matches_filter(&run, MANAGEDSAVE, false));
        assert!(matches_filter(&off, MANAGEDSAVE, true));
        assert!(!matches_filter(&off, NO_MANAGEDSAVE, true));
        assert!(!matches_filter(&run, AUTOSTART, false));
    }
}

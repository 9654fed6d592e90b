//! Domain statistics as libvirt typed parameters (`a{sv}`), keyed as
//! `virConnectGetAllDomainStats` keys them (`state.state`, `cpu.time`, …).

use std::collections::HashMap;

use zbus::OwnedVariant;

use crate::core::DomainStats;

/// `virDomainStatsTypes` bits.
pub const STATE: u32 = 1 << 0;
pub const CPU_TOTAL: u32 = 1 << 1;
pub const BALLOON: u32 = 1 << 2;
pub const VCPU: u32 = 1 << 3;
/// Flags of `virConnectGetAllDomainStats` beyond the listing filters
/// (NOWAIT, BACKING, ENFORCE_STATS).
pub const ALL_STATS_FLAGS: u32 = (1 << 29) | (1 << 30) | (1 << 31);

/// The groups we report; `stats == 0` means all of them, as in libvirt.
pub fn typed_params(s: &DomainStats, stats: u32) -> HashMap<String, OwnedVariant> {
    let want = |bit: u32| stats == 0 || stats & bit != 0;
    let mut m: HashMap<String, OwnedVariant> = HashMap::new();
    let mut put = |k: &str, v: OwnedVariant| {
        m.insert(k.to_string(), v);
    };
    if want(STATE) {
        put("state.state", OwnedVariant::from(s.info.state.state as i32));
        put("state.reason", OwnedVariant::from(s.info.state.reason));
    }
    let active = s.info.state.is_active();
    if want(CPU_TOTAL) && active {
        put("cpu.time", OwnedVariant::from(s.info.cpu_time_ns));
    }
    if want(BALLOON) {
        put(
            "balloon.current",
            OwnedVariant::from(s.balloon_current_kib.unwrap_or(s.info.memory_kib)),
        );
        put("balloon.maximum", OwnedVariant::from(s.info.max_memory_kib));
        if let Some(rss) = s.rss_kib {
            put("balloon.rss", OwnedVariant::from(rss));
        }
    }
    if want(VCPU) && active {
        put("vcpu.current", OwnedVariant::from(s.info.vcpus));
        put("vcpu.maximum", OwnedVariant::from(s.info.max_vcpus));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::{running, State, StateReason};
    use crate::core::{DomainInfo, DomainRef};

    fn stats(state: State) -> DomainStats {
        DomainStats {
            info: DomainInfo {
                domain: DomainRef {
                    name: "a".into(),
                    uuid: uuid::Uuid::nil(),
                    id: 1,
                },
                state: StateReason::new(state, running::BOOTED),
                persistent: true,
                autostart: false,
                max_memory_kib: 65536,
                memory_kib: 32768,
                vcpus: 1,
                max_vcpus: 2,
                cpu_time_ns: 5,
                os_type: "hvm".into(),
                updated: false,
            },
            balloon_current_kib: Some(30000),
            rss_kib: Some(1000),
            cpu_user_ns: None,
        }
    }

    #[test]
    fn all_groups_by_default_with_libvirt_keys() {
        let m = typed_params(&stats(State::Running), 0);
        for k in [
            "state.state",
            "state.reason",
            "cpu.time",
            "balloon.current",
            "balloon.maximum",
            "balloon.rss",
            "vcpu.current",
            "vcpu.maximum",
        ] {
            assert!(m.contains_key(k), "{k} missing");
        }
        assert_eq!(u64::try_from(&m["balloon.current"]).unwrap(), 30000);
        assert_eq!(u32::try_from(&m["vcpu.maximum"]).unwrap(), 2);
    }

    #[test]
    fn groups_are_selected_and_live_figures_need_a_running_domain() {
        let m = typed_params(&stats(State::Running), STATE);
        assert_eq!(m.len(), 2);
        let off = typed_params(&stats(State::Shutoff), 0);
        assert!(!off.contains_key("cpu.time") && !off.contains_key("vcpu.current"));
        assert!(off.contains_key("balloon.maximum"));
    }
}

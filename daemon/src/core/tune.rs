//! `virDomainGet/SetMemoryParameters`, `…BlkioParameters`, `…SchedulerParameters`:
//! the live values are the domain's cgroup files, the persistent ones its definition's
//! `<memtune>`/`<blkiotune>`/`<cputune>`. Setting the running domain writes the cgroup
//! and the live XML; `--config` the persistent XML.

use domain_xml::tuning::{self, Tuning};
use uuid::Uuid;

use super::cgroup::MEMORY_UNLIMITED_KIB;
use super::error::{Error, Result};
use super::Core;

impl Core {
    /// The tuning in effect: read from the cgroup (running, `live`), or the
    /// definition's with libvirt's defaults for what it leaves out.
    pub fn tuning(&self, uuid: &Uuid, flags: u32, api: &str) -> Result<Tuning> {
        if self.affects_live(uuid, flags, api)? {
            let cg = self.live_cgroup(uuid)?;
            return cg
                .read()
                .map_err(|e| Error::System(format!("cannot read the domain's cgroup: {e}")));
        }
        let def = {
            let slot = self.slot(uuid)?;
            let r = slot.rec();
            r.def.clone().or_else(|| r.live.clone())
        }
        .ok_or_else(|| Error::Internal("domain has no definition".into()))?;
        let t = def.tuning()?;
        let unlimited = |v: Option<u64>| Some(v.unwrap_or(MEMORY_UNLIMITED_KIB));
        Ok(Tuning {
            hard_limit_kib: unlimited(t.hard_limit_kib),
            soft_limit_kib: unlimited(t.soft_limit_kib),
            swap_hard_limit_kib: unlimited(t.swap_hard_limit_kib),
            cpu_shares: Some(t.cpu_shares.unwrap_or(0)),
            cpu_period_us: Some(t.cpu_period_us.unwrap_or(0)),
            cpu_quota_us: Some(t.cpu_quota_us.unwrap_or(0)),
            blkio_weight: Some(t.blkio_weight.unwrap_or(0)),
        })
    }

    /// Sets what `t` sets, on the running domain (cgroup and live XML) or in its
    /// persistent definition, as `flags` select.
    pub async fn set_tuning(&self, uuid: &Uuid, flags: u32, api: &str, t: &Tuning) -> Result<()> {
        check(t)?;
        let live = self.affects_live(uuid, flags, api)?;
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        if live {
            let cg = self.live_cgroup(uuid)?;
            cg.apply(t)
                .map_err(|e| Error::System(format!("cannot set the domain's cgroup: {e}")))?;
            if let Some(d) = slot.rec().live.as_mut() {
                d.set_tuning(t);
            }
            return Ok(());
        }
        self.update_definition(&slot, |def| {
            def.set_tuning(t);
            // What a start would refuse is refused now.
            def.tuning().map(|_| ())
        })
        .await
    }

    fn live_cgroup(&self, uuid: &Uuid) -> Result<super::cgroup::DomainCgroup> {
        let vm = self.vm_of(uuid)?;
        let name = self.slot(uuid)?.name();
        super::vm_cgroup::of(&name, vm.pid).ok_or_else(|| {
            Error::OperationInvalid("cgroups are not available to this daemon (see its log)".into())
        })
    }
}

/// The scheduler parameters reported (`virDomainGetSchedulerType`'s count).
pub const SCHEDULER_NPARAMS: i32 = 3;

/// A group of libvirt's typed parameters for the domain's tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// `virDomainGetMemoryParameters`.
    Memory,
    /// `virDomainGetBlkioParameters`.
    Blkio,
    /// `virDomainGetSchedulerParameters`.
    Scheduler,
}

/// A parameter value with libvirt's type for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    ULLong(u64),
    UInt(u32),
    LLong(i64),
    /// A string parameter (sent only to clients that accept strings).
    Str(&'static str),
}

/// The group's parameters of `t` with libvirt's names (qemu_driver.c) and types;
/// memory in KiB (every field set: [`Core::tuning`] fills defaults). A running
/// domain's blkio weight that the host's I/O scheduler does not have is libvirt's
/// error, as is the rest of the group with it.
pub fn params(group: Group, t: &Tuning) -> Result<Vec<(&'static str, Param)>> {
    let v = |x: Option<u64>| Param::ULLong(x.unwrap_or_default());
    Ok(match group {
        Group::Memory => vec![
            ("hard_limit", v(t.hard_limit_kib)),
            ("soft_limit", v(t.soft_limit_kib)),
            ("swap_hard_limit", v(t.swap_hard_limit_kib)),
        ],
        Group::Blkio => {
            let weight = t
                .blkio_weight
                .ok_or_else(|| Error::OperationInvalid(super::cgroup::NO_BLKIO_WEIGHT.into()))?;
            // The per-device lists libvirt formats from <blkiotune><device> (path,value
            // pairs): translation refuses <device>, so they are empty.
            vec![
                ("weight", Param::UInt(weight)),
                ("device_weight", Param::Str("")),
                ("device_read_iops_sec", Param::Str("")),
                ("device_write_iops_sec", Param::Str("")),
                ("device_read_bytes_sec", Param::Str("")),
                ("device_write_bytes_sec", Param::Str("")),
            ]
        }
        Group::Scheduler => vec![
            ("cpu_shares", v(t.cpu_shares)),
            ("vcpu_period", v(t.cpu_period_us)),
            (
                "vcpu_quota",
                Param::LLong(t.cpu_quota_us.unwrap_or_default()),
            ),
        ],
    })
}

/// What a setter's parameters set: each `(name, integer value)`, `None` where the
/// value is not an integer. Unknown names are refused by name, as libvirt's
/// `virTypedParamsValidate`.
pub fn tuning_from(group: Group, given: &[(String, Option<i64>)]) -> Result<Tuning> {
    let mut t = Tuning::default();
    for (name, value) in given {
        let int = value.ok_or_else(|| {
            Error::InvalidArg(format!(
                "invalid type for parameter '{name}', expected an integer"
            ))
        })?;
        let unsigned = || {
            u64::try_from(int)
                .map_err(|_| Error::InvalidArg(format!("parameter '{name}' must not be negative")))
        };
        match (group, name.as_str()) {
            (Group::Memory, "hard_limit") => t.hard_limit_kib = Some(unsigned()?),
            (Group::Memory, "soft_limit") => t.soft_limit_kib = Some(unsigned()?),
            (Group::Memory, "swap_hard_limit") => t.swap_hard_limit_kib = Some(unsigned()?),
            (Group::Blkio, "weight") => {
                t.blkio_weight = Some(u32::try_from(unsigned()?).unwrap_or(u32::MAX))
            }
            (Group::Scheduler, "cpu_shares") => t.cpu_shares = Some(unsigned()?),
            (Group::Scheduler, "vcpu_period") => t.cpu_period_us = Some(unsigned()?),
            (Group::Scheduler, "vcpu_quota") => t.cpu_quota_us = Some(int),
            (_, f) => return Err(Error::InvalidArg(format!("parameter '{f}' not supported"))),
        }
    }
    Ok(t)
}

/// libvirt's ranges for what is set.
fn check(t: &Tuning) -> Result<()> {
    if let Some(p) = t.cpu_period_us {
        tuning::period(p)?;
    }
    if let Some(q) = t.cpu_quota_us {
        tuning::quota(q)?;
    }
    if let Some(w) = t.blkio_weight {
        tuning::weight(u64::from(w))?;
    }
    if let (Some(h), Some(s)) = (t.hard_limit_kib, t.swap_hard_limit_kib) {
        if s < h {
            return Err(Error::InvalidArg(
                "memory hard_limit tunable value must be lower than or equal to swap_hard_limit"
                    .into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setter_reads_libvirts_names_and_refuses_others_by_name() {
        let given = |n: &str, v: Option<i64>| vec![(n.to_string(), v)];
        let mut both = given("cpu_shares", Some(512));
        both.extend(given("vcpu_quota", Some(-1)));
        let t = tuning_from(Group::Scheduler, &both).unwrap();
        assert_eq!((t.cpu_shares, t.cpu_quota_us), (Some(512), Some(-1)));
        for (n, v) in [
            ("min_guarantee", Some(1)),
            ("hard_limit", Some(-5)),
            ("hard_limit", None),
        ] {
            let e = tuning_from(Group::Memory, &given(n, v)).unwrap_err();
            assert!(e.to_string().contains(n), "{e}");
        }
        let names: Vec<_> = params(Group::Scheduler, &t)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["cpu_shares", "vcpu_period", "vcpu_quota"]);
    }

    #[test]
    fn blkio_parameters_are_libvirts_six_or_its_error_without_a_weight() {
        let t = Tuning {
            blkio_weight: Some(500),
            ..Tuning::default()
        };
        let got = params(Group::Blkio, &t).unwrap();
        let names: Vec<_> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "weight",
                "device_weight",
                "device_read_iops_sec",
                "device_write_iops_sec",
                "device_read_bytes_sec",
                "device_write_bytes_sec"
            ]
        );
        assert_eq!(got[0].1, Param::UInt(500));
        let e = params(Group::Blkio, &Tuning::default()).unwrap_err();
        assert!(matches!(e, Error::OperationInvalid(_)), "{e:?}");
        assert!(
            e.to_string()
                .contains("valid only for bfq or cfq scheduler"),
            "{e}"
        );
        assert!(params(Group::Memory, &Tuning::default()).is_ok());
    }
}

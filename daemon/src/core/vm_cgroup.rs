//! The running domains' cgroups: the host's hierarchy found once, each VMM placed in
//! `machine/oxvirt-NAME-PID` under the daemon's cgroup (the pid keeps two daemons —
//! tests run several — from sharing a directory; a restarted daemon finds it again
//! from the name and pid it keeps in the status file), removed when the VMM is gone.

use std::sync::OnceLock;

use domain_xml::tuning::Tuning;

use super::cgroup::{DomainCgroup, Hierarchy};
use super::error::{Error, Result};

/// The host's hierarchy, or `None` (logged once) where domains run without cgroups.
pub fn hierarchy() -> Option<&'static Hierarchy> {
    static HOST: OnceLock<Option<Hierarchy>> = OnceLock::new();
    HOST.get_or_init(|| match Hierarchy::host() {
        Ok(h) => {
            tracing::info!(version = ?h.version(), "domains run in cgroups of their own");
            Some(h)
        }
        Err(why) => {
            tracing::warn!("domains run without cgroups (no resource tuning): {why}");
            None
        }
    })
    .as_ref()
}

fn leaf(name: &str, pid: i32) -> String {
    format!("{name}-{pid}")
}

/// The cgroup of the VMM `pid` of domain `name`, if domains have cgroups here.
pub fn of(name: &str, pid: i32) -> Option<DomainCgroup> {
    hierarchy().map(|h| h.domain(&leaf(name, pid)))
}

/// Moves the just-spawned VMM `pid` into a new cgroup holding `tuning`.
pub fn place(name: &str, pid: i32, tuning: &Tuning) -> Result<()> {
    let Some(h) = hierarchy() else {
        if *tuning != Tuning::default() {
            return Err(Error::ConfigUnsupported(
                "<memtune>, <cputune> and <blkiotune> need cgroups, which this daemon has none of (see its log)".into(),
            ));
        }
        return Ok(());
    };
    // Leftovers of VMMs that outlived their daemon go first.
    h.sweep(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
    let placed = h.create(&leaf(name, pid)).and_then(|cg| {
        let r = cg.apply(tuning).and_then(|()| cg.add(pid));
        if r.is_err() {
            let _ = cg.remove();
        }
        r
    });
    match placed {
        Ok(()) => Ok(()),
        // A domain that asks for no limits still runs (a host whose hierarchy is
        // not delegated to us); one whose limits cannot be set does not.
        Err(e) if *tuning == Tuning::default() => {
            tracing::warn!(domain = name, error = %e, "the domain runs without a cgroup of its own");
            Ok(())
        }
        Err(e) => Err(Error::Internal(format!(
            "cannot set up the cgroup of domain '{name}': {e}"
        ))),
    }
}

/// Removes the cgroup of the VMM `pid` of domain `name` once it has exited.
pub fn remove(name: &str, pid: i32) {
    if let Some(cg) = of(name, pid) {
        if let Err(e) = cg.remove() {
            tracing::warn!(domain = name, error = %e, "cannot remove the domain's cgroup");
        }
    }
}

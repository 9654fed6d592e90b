//! One domain's place in the core: a job mutex that serialises operations on it
//! and the record of its definition and state.

use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use super::definition::Definition;
use super::runtime::{RuntimeDir, Status};
use super::state::{self, Change, StateReason};
use super::supervise::Vm;
use super::{DomainRef, Error, Result};

/// A domain known to the core.
pub(super) struct Slot {
    pub uuid: Uuid,
    /// One job at a time: held for the whole of an operation.
    pub job: tokio::sync::Mutex<()>,
    rec: Mutex<Record>,
}

/// What the core knows about one domain.
pub(super) struct Record {
    pub name: String,
    /// The persistent definition; `None` for a transient domain.
    pub def: Option<Definition>,
    /// The definition the running VMM was started from.
    pub live: Option<Definition>,
    pub state: StateReason,
    /// libvirt id while active, -1 otherwise.
    pub id: i32,
    pub autostart: bool,
    pub vm: Option<Arc<Vm>>,
}

impl Slot {
    pub fn new(uuid: Uuid, rec: Record) -> Arc<Slot> {
        Arc::new(Slot {
            uuid,
            job: tokio::sync::Mutex::new(()),
            rec: Mutex::new(rec),
        })
    }

    /// The record; never held across an `.await`.
    pub fn rec(&self) -> MutexGuard<'_, Record> {
        self.rec.lock().expect("domain record poisoned")
    }

    pub fn name(&self) -> String {
        self.rec().name.clone()
    }

    pub fn domain_ref(&self) -> DomainRef {
        let r = self.rec();
        DomainRef {
            name: r.name.clone(),
            uuid: self.uuid,
            id: r.id,
        }
    }

    /// Applies `change` through the transition table. Returns the new state when it
    /// changed, `None` when the domain was already there; persists the new state in
    /// the runtime dir of a running domain.
    pub fn apply(&self, change: Change) -> Result<Option<StateReason>> {
        let mut r = self.rec();
        let next = state::transition(r.state.state, change).map_err(|e| {
            Error::OperationInvalid(format!(
                "domain '{}' cannot go from state {:?} by {:?}",
                r.name, e.from, e.change
            ))
        })?;
        if let Some(next) = next {
            r.state = next;
            if let Some(vm) = &r.vm {
                let status = vm.status(self.uuid, &r);
                if let Err(e) = vm.rt.write_status(&status) {
                    tracing::warn!(domain = %r.name, error = %e, "cannot record domain status");
                }
            }
        }
        Ok(next)
    }
}

impl Record {
    /// Whether a VMM runs for this domain.
    pub fn active(&self) -> bool {
        self.state.is_active()
    }

    pub fn persistent(&self) -> bool {
        self.def.is_some()
    }

    /// The definition a query should describe: live while active, else the persistent one.
    pub fn current(&self) -> &Definition {
        match (&self.live, &self.def) {
            (Some(live), _) if self.active() => live,
            (_, Some(def)) => def,
            (Some(live), None) => live,
            (None, None) => unreachable!("a domain has a definition or a live definition"),
        }
    }

    /// Fails with libvirt's "domain is not running" unless active.
    pub fn require_active(&self) -> Result<()> {
        if self.active() {
            Ok(())
        } else {
            Err(Error::OperationInvalid("domain is not running".into()))
        }
    }
}

impl Status {
    /// The status file content for `rec`, running in `rt`.
    pub(super) fn of(uuid: Uuid, rec: &Record, pid: i32, rt: &RuntimeDir) -> Status {
        let _ = rt;
        Status {
            uuid,
            name: rec.name.clone(),
            id: rec.id,
            persistent: rec.persistent(),
            state: rec.state,
            pid,
            shutdown_reason: None,
            stopping: false,
        }
    }
}

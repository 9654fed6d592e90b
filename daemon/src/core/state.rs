//! Domain states and reasons with libvirt's numbers, and the transition table
//! every state change goes through.
//!
//! The numbers are libvirt's ABI (`virDomainState`, `virDomain*Reason`), shared by
//! D-Bus `GetState` and the RPC `DOMAIN_GET_STATE` reply.

use serde::{Deserialize, Serialize};

/// `virDomainState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    NoState = 0,
    Running = 1,
    Blocked = 2,
    Paused = 3,
    Shutdown = 4,
    Shutoff = 5,
    Crashed = 6,
    PmSuspended = 7,
}

/// A state with its reason, both as libvirt numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateReason {
    pub state: State,
    /// The reason, in the enum that belongs to `state` (the constants below).
    pub reason: i32,
}

/// `virDomainRunningReason`.
pub mod running {
    pub const UNKNOWN: i32 = 0;
    pub const BOOTED: i32 = 1;
    pub const RESTORED: i32 = 3;
    pub const FROM_SNAPSHOT: i32 = 4;
    pub const UNPAUSED: i32 = 5;
}
/// `virDomainPausedReason`.
pub mod paused {
    pub const UNKNOWN: i32 = 0;
    pub const USER: i32 = 1;
    pub const SHUTTING_DOWN: i32 = 8;
    pub const CRASHED: i32 = 10;
    pub const STARTING_UP: i32 = 11;
}
/// `virDomainShutoffReason`.
pub mod shutoff {
    pub const UNKNOWN: i32 = 0;
    pub const SHUTDOWN: i32 = 1;
    pub const DESTROYED: i32 = 2;
    pub const CRASHED: i32 = 3;
    pub const SAVED: i32 = 5;
    pub const FAILED: i32 = 6;
    pub const FROM_SNAPSHOT: i32 = 7;
    pub const DAEMON: i32 = 8;
}
/// `virDomainCrashedReason`.
pub mod crashed {
    pub const UNKNOWN: i32 = 0;
    pub const PANICKED: i32 = 1;
}

impl StateReason {
    /// A domain that was never started (or whose last run is unknown).
    pub const SHUTOFF_UNKNOWN: StateReason = StateReason::new(State::Shutoff, shutoff::UNKNOWN);

    pub const fn new(state: State, reason: i32) -> Self {
        StateReason { state, reason }
    }

    /// Whether a VMM process exists for this state (libvirt's "active").
    pub fn is_active(self) -> bool {
        !matches!(self.state, State::Shutoff | State::NoState)
    }
}

/// Something that changes a domain's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The VMM is up and the vCPUs run.
    Boot,
    /// The VMM is up with the vCPUs stopped from the start.
    BootPaused,
    /// The VMM is up from a saved state and the vCPUs run (a paused restore is
    /// `BootPaused`): the running reason (restored, from snapshot).
    Restore(i32),
    /// The vCPUs stopped (`reason` from [`paused`]).
    Pause(i32),
    /// The vCPUs run again.
    Resume,
    /// The VMM is gone (`reason` from [`shutoff`]).
    Stop(i32),
    /// The guest crashed and the VMM keeps it for inspection (`on_crash=preserve`).
    Crash(i32),
}

/// Why a change was refused by the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTransition {
    pub from: State,
    pub change: Change,
}

/// The transition table: the state reached from `from` by `change`, or `None`
/// when the change is a no-op there (already in that state), or an error when the
/// change cannot happen in `from`.
pub fn transition(from: State, change: Change) -> Result<Option<StateReason>, InvalidTransition> {
    use State::*;
    let invalid = Err(InvalidTransition { from, change });
    match (from, change) {
        (Shutoff | NoState, Change::Boot) => Ok(Some(StateReason::new(Running, running::BOOTED))),
        (Shutoff | NoState, Change::Restore(r)) => Ok(Some(StateReason::new(Running, r))),
        // libvirt (qemuProcessFinishStartup) leaves a domain started paused in
        // `paused (user)`: the user asked for it.
        (Shutoff | NoState, Change::BootPaused) => Ok(Some(StateReason::new(Paused, paused::USER))),
        (Running | Blocked, Change::Pause(r)) => Ok(Some(StateReason::new(Paused, r))),
        (Paused, Change::Pause(_)) => Ok(None),
        (Paused, Change::Resume) => Ok(Some(StateReason::new(Running, running::UNPAUSED))),
        (Running | Blocked, Change::Resume) => Ok(None),
        (Running | Blocked | Paused | Shutdown | Crashed | PmSuspended, Change::Stop(r)) => {
            Ok(Some(StateReason::new(Shutoff, r)))
        }
        (Shutoff, Change::Stop(_)) => Ok(None),
        (Running | Blocked | Paused | Shutdown, Change::Crash(r)) => {
            Ok(Some(StateReason::new(Crashed, r)))
        }
        (Crashed, Change::Crash(_)) => Ok(None),
        (Running | Blocked | Paused | Shutdown | Crashed | PmSuspended, Change::Boot)
        | (Running | Blocked | Paused | Shutdown | Crashed | PmSuspended, Change::BootPaused)
        | (Running | Blocked | Paused | Shutdown | Crashed | PmSuspended, Change::Restore(_))
        | (Shutoff | NoState | Crashed | Shutdown | PmSuspended, Change::Pause(_))
        | (Shutoff | NoState | Crashed | Shutdown | PmSuspended, Change::Resume)
        | (NoState, Change::Stop(_))
        | (Shutoff | NoState | PmSuspended, Change::Crash(_)) => invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_from_shutoff_runs_booted() {
        let next = transition(State::Shutoff, Change::Boot).unwrap().unwrap();
        assert_eq!(next, StateReason::new(State::Running, running::BOOTED));
    }

    #[test]
    fn boot_of_running_domain_is_invalid() {
        assert!(transition(State::Running, Change::Boot).is_err());
        assert!(transition(State::Paused, Change::Boot).is_err());
    }

    #[test]
    fn pause_and_resume_are_idempotent() {
        assert_eq!(
            transition(State::Running, Change::Pause(paused::USER)).unwrap(),
            Some(StateReason::new(State::Paused, paused::USER))
        );
        assert_eq!(
            transition(State::Paused, Change::Pause(paused::USER)).unwrap(),
            None
        );
        assert_eq!(transition(State::Running, Change::Resume).unwrap(), None);
        assert!(transition(State::Shutoff, Change::Resume).is_err());
    }

    #[test]
    fn every_live_state_can_stop() {
        for s in [
            State::Running,
            State::Paused,
            State::Crashed,
            State::Shutdown,
        ] {
            assert_eq!(
                transition(s, Change::Stop(shutoff::CRASHED)).unwrap(),
                Some(StateReason::new(State::Shutoff, shutoff::CRASHED))
            );
        }
        assert_eq!(transition(State::Shutoff, Change::Stop(1)).unwrap(), None);
    }

    #[test]
    fn active_means_a_process_exists() {
        assert!(!StateReason::SHUTOFF_UNKNOWN.is_active());
        assert!(StateReason::new(State::Paused, paused::USER).is_active());
    }
}

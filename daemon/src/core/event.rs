//! Domain events with libvirt's numbers, broadcast by the core to every front end.
//!
//! Lifecycle events carry `virDomainEventType` and its detail enum; D-Bus sends them
//! as `org.libvirt.Connect.DomainEvent(o, i, i)`, the RPC front end as
//! `DOMAIN_EVENT_CALLBACK_LIFECYCLE`.

use super::DomainRef;

/// `virDomainEventType`.
pub mod kind {
    pub const DEFINED: i32 = 0;
    pub const UNDEFINED: i32 = 1;
    pub const STARTED: i32 = 2;
    pub const SUSPENDED: i32 = 3;
    pub const RESUMED: i32 = 4;
    pub const STOPPED: i32 = 5;
    pub const SHUTDOWN: i32 = 6;
    pub const PMSUSPENDED: i32 = 7;
    pub const CRASHED: i32 = 8;
}

/// Detail values, one module per event type.
pub mod detail {
    pub mod defined {
        pub const ADDED: i32 = 0;
        pub const UPDATED: i32 = 1;
        pub const RENAMED: i32 = 2;
    }
    pub mod undefined {
        pub const REMOVED: i32 = 0;
        pub const RENAMED: i32 = 1;
    }
    pub mod started {
        pub const BOOTED: i32 = 0;
        pub const RESTORED: i32 = 2;
        pub const FROM_SNAPSHOT: i32 = 3;
    }
    pub mod suspended {
        pub const PAUSED: i32 = 0;
    }
    pub mod resumed {
        pub const UNPAUSED: i32 = 0;
    }
    pub mod stopped {
        pub const SHUTDOWN: i32 = 0;
        pub const DESTROYED: i32 = 1;
        pub const CRASHED: i32 = 2;
        pub const SAVED: i32 = 4;
        pub const FAILED: i32 = 5;
        pub const FROM_SNAPSHOT: i32 = 6;
    }
    pub mod shutdown {
        pub const FINISHED: i32 = 0;
        pub const GUEST: i32 = 1;
        pub const HOST: i32 = 2;
    }
    pub mod crashed {
        pub const PANICKED: i32 = 0;
    }
}

/// `virDomainEventTrayChangeReason`.
pub mod tray {
    pub const OPEN: i32 = 0;
    pub const CLOSE: i32 = 1;
}

/// `virDomainEventGraphicsPhase`.
pub mod graphics {
    pub const CONNECT: i32 = 0;
    pub const INITIALIZE: i32 = 1;
    pub const DISCONNECT: i32 = 2;
}

/// `VIR_DOMAIN_EVENT_ID_*`: which callback family an event belongs to.
pub mod id {
    pub const LIFECYCLE: i32 = 0;
    pub const REBOOT: i32 = 1;
    pub const IO_ERROR: i32 = 4;
    pub const GRAPHICS: i32 = 5;
    pub const CONTROL_ERROR: i32 = 7;
    pub const TRAY_CHANGE: i32 = 10;
    pub const BALLOON_CHANGE: i32 = 13;
    pub const DEVICE_REMOVED: i32 = 15;
    pub const DEVICE_ADDED: i32 = 19;
    pub const AGENT_LIFECYCLE: i32 = 18;
    pub const METADATA_CHANGE: i32 = 23;
}

/// One end of a graphics connection (`virDomainEventGraphicsAddress`): `family` is
/// 0 IPv4, 1 IPv6, 2 unix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphicsAddress {
    pub family: i32,
    pub node: String,
    pub service: String,
}

/// One event, as the core broadcasts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A lifecycle change: `event` from [`kind`], `detail` from [`detail`].
    Lifecycle {
        domain: DomainRef,
        event: i32,
        detail: i32,
    },
    /// The guest reset (it keeps running).
    Reboot { domain: DomainRef },
    /// The balloon's actual size changed, in KiB.
    BalloonChange { domain: DomainRef, actual_kib: u64 },
    /// A disk I/O error: `src_path` the image, `device` the libvirt alias, `action`
    /// `virDomainEventIOErrorAction` (0 none, 1 pause, 2 report), `reason` as QEMU
    /// names it (`enospc`, `eio`, …).
    IoError {
        domain: DomainRef,
        src_path: String,
        device: String,
        action: i32,
        reason: String,
    },
    /// The daemon lost its monitor connection to a running VMM.
    ControlError { domain: DomainRef },
    /// A CD-ROM's tray moved: `dev_alias` is the disk's alias (`scsi0-0-0-0`),
    /// `reason` `virDomainEventTrayChangeReason` ([`tray`]).
    TrayChange {
        domain: DomainRef,
        dev_alias: String,
        reason: i32,
    },
    /// A device was hot-plugged (`dev_alias`: its alias, `virtio-disk1`, `net1`).
    DeviceAdded {
        domain: DomainRef,
        dev_alias: String,
    },
    /// A device left the running domain (the guest released it after a detach).
    DeviceRemoved {
        domain: DomainRef,
        dev_alias: String,
    },
    /// A VNC client connected, finished its handshake or left: `phase` from
    /// [`graphics`], `auth_scheme` as QEMU names it (empty on connect), `subject`
    /// the client's identities (`x509dname`, `saslUsername`; none here).
    Graphics {
        domain: DomainRef,
        phase: i32,
        local: GraphicsAddress,
        remote: GraphicsAddress,
        auth_scheme: String,
        subject: Vec<(String, String)>,
    },
    /// Metadata changed: `kind` is `virDomainMetadataType`, `uri` its namespace.
    MetadataChange {
        domain: DomainRef,
        kind: i32,
        uri: Option<String>,
    },
    /// The guest agent connected or went away: `state` and `reason` from
    /// [`super::agent_calls::lifecycle`].
    AgentLifecycle {
        domain: DomainRef,
        state: i32,
        reason: i32,
    },
}

impl Event {
    /// The domain the event is about.
    pub fn domain(&self) -> &DomainRef {
        match self {
            Event::Lifecycle { domain, .. }
            | Event::Reboot { domain }
            | Event::BalloonChange { domain, .. }
            | Event::ControlError { domain }
            | Event::IoError { domain, .. }
            | Event::TrayChange { domain, .. }
            | Event::DeviceAdded { domain, .. }
            | Event::DeviceRemoved { domain, .. }
            | Event::Graphics { domain, .. }
            | Event::MetadataChange { domain, .. }
            | Event::AgentLifecycle { domain, .. } => domain,
        }
    }

    /// The `VIR_DOMAIN_EVENT_ID_*` family.
    pub fn id(&self) -> i32 {
        match self {
            Event::Lifecycle { .. } => id::LIFECYCLE,
            Event::Reboot { .. } => id::REBOOT,
            Event::BalloonChange { .. } => id::BALLOON_CHANGE,
            Event::ControlError { .. } => id::CONTROL_ERROR,
            Event::IoError { .. } => id::IO_ERROR,
            Event::TrayChange { .. } => id::TRAY_CHANGE,
            Event::DeviceAdded { .. } => id::DEVICE_ADDED,
            Event::DeviceRemoved { .. } => id::DEVICE_REMOVED,
            Event::Graphics { .. } => id::GRAPHICS,
            Event::MetadataChange { .. } => id::METADATA_CHANGE,
            Event::AgentLifecycle { .. } => id::AGENT_LIFECYCLE,
        }
    }
}

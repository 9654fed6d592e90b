//! libvirt API flag bits the core understands (same values on D-Bus and RPC).

/// `virConnectListAllDomainsFlags`.
pub mod list {
    pub const ACTIVE: u32 = 1 << 0;
    pub const INACTIVE: u32 = 1 << 1;
    pub const PERSISTENT: u32 = 1 << 2;
    pub const TRANSIENT: u32 = 1 << 3;
    pub const RUNNING: u32 = 1 << 4;
    pub const PAUSED: u32 = 1 << 5;
    pub const SHUTOFF: u32 = 1 << 6;
    pub const OTHER: u32 = 1 << 7;
    pub const MANAGEDSAVE: u32 = 1 << 8;
    pub const NO_MANAGEDSAVE: u32 = 1 << 9;
    pub const AUTOSTART: u32 = 1 << 10;
    pub const NO_AUTOSTART: u32 = 1 << 11;
    pub const HAS_SNAPSHOT: u32 = 1 << 12;
    pub const NO_SNAPSHOT: u32 = 1 << 13;
    pub const HAS_CHECKPOINT: u32 = 1 << 14;
    pub const NO_CHECKPOINT: u32 = 1 << 15;
    pub const ALL: u32 = (1 << 16) - 1;
}

/// `virDomainXMLFlags`.
pub mod xml {
    pub const SECURE: u32 = 1 << 0;
    pub const INACTIVE: u32 = 1 << 1;
    pub const UPDATE_CPU: u32 = 1 << 2;
    pub const MIGRATABLE: u32 = 1 << 3;
}

/// `virDomainCreateFlags`.
pub mod create {
    pub const START_PAUSED: u32 = 1 << 0;
    pub const AUTODESTROY: u32 = 1 << 1;
    pub const BYPASS_CACHE: u32 = 1 << 2;
    pub const FORCE_BOOT: u32 = 1 << 3;
    pub const VALIDATE: u32 = 1 << 4;
}

/// `virDomainUndefineFlagsValues`.
pub mod undefine {
    pub const MANAGED_SAVE: u32 = 1 << 0;
    pub const SNAPSHOTS_METADATA: u32 = 1 << 1;
    pub const NVRAM: u32 = 1 << 2;
    pub const KEEP_NVRAM: u32 = 1 << 3;
    pub const CHECKPOINTS_METADATA: u32 = 1 << 4;
    pub const TPM: u32 = 1 << 5;
    pub const KEEP_TPM: u32 = 1 << 6;
}

/// `virDomainShutdownFlagValues` / `virDomainRebootFlagValues` (same bits).
pub mod shutdown {
    pub const DEFAULT: u32 = 0;
    pub const ACPI_POWER_BTN: u32 = 1 << 0;
    pub const GUEST_AGENT: u32 = 1 << 1;
    pub const INITCTL: u32 = 1 << 2;
    pub const SIGNAL: u32 = 1 << 3;
    pub const PARAVIRT: u32 = 1 << 4;
}

/// `virDomainDestroyFlagsValues`.
pub mod destroy {
    pub const GRACEFUL: u32 = 1 << 0;
}

/// `virDomainModificationImpact` (memory, metadata, vcpus, autostart …).
pub mod affect {
    pub const CURRENT: u32 = 0;
    pub const LIVE: u32 = 1 << 0;
    pub const CONFIG: u32 = 1 << 1;
}

/// `virDomainMemoryModFlags`: `MAXIMUM` changes the maximum instead of the current size.
pub mod memory {
    pub const MAXIMUM: u32 = 1 << 2;
}

/// `virDomainDeviceModifyFlags` beyond the `affect` bits.
pub mod device {
    /// `VIR_DOMAIN_DEVICE_MODIFY_FORCE`: force a CD-ROM eject (no effect on interfaces).
    pub const FORCE: u32 = 1 << 2;
}

/// `virDomainDefineFlags`.
pub mod define {
    pub const VALIDATE: u32 = 1 << 0;
}

/// `virDomainMetadataType`.
pub mod metadata {
    pub const DESCRIPTION: i32 = 0;
    pub const TITLE: i32 = 1;
    pub const ELEMENT: i32 = 2;
}

/// libvirt's paired list filters (ACTIVE/INACTIVE, LEAVES/NO_LEAVES, …): with neither
/// of `a`, `b` in `flags` everything passes, else what the set bit asks for.
pub fn pair_filter(flags: u32, a: u32, b: u32, is_a: bool) -> bool {
    let set = flags & (a | b);
    set == 0 || (is_a && set & a != 0) || (!is_a && set & b != 0)
}

//! Errors of the domain core, each carrying libvirt's error code and domain so
//! that every front end reports them the way libvirt does (D-Bus `org.libvirt.Error`
//! with the message text; libvirt RPC `remote_error` with code, domain, message).

/// libvirt `virErrorNumber` values used by the core.
pub mod code {
    pub const INTERNAL_ERROR: i32 = 1;
    pub const NO_SUPPORT: i32 = 3;
    pub const INVALID_ARG: i32 = 8;
    pub const OPERATION_FAILED: i32 = 9;
    pub const XML_ERROR: i32 = 27;
    pub const OPERATION_DENIED: i32 = 29;
    pub const SYSTEM_ERROR: i32 = 38;
    pub const NO_DOMAIN: i32 = 42;
    pub const NO_NODE_DEVICE: i32 = 53;
    pub const OPERATION_INVALID: i32 = 55;
    pub const NO_INTERFACE: i32 = 57;
    pub const INVALID_SECRET: i32 = 65;
    pub const NO_SECRET: i32 = 66;
    pub const NO_DOMAIN_SNAPSHOT: i32 = 72;
    pub const CONFIG_UNSUPPORTED: i32 = 67;
    pub const OPERATION_TIMEOUT: i32 = 68;
    pub const ARGUMENT_UNSUPPORTED: i32 = 74;
    pub const OPERATION_UNSUPPORTED: i32 = 84;
    pub const AGENT_UNRESPONSIVE: i32 = 86;
    pub const CPU_INCOMPATIBLE: i32 = 91;
    pub const NO_DOMAIN_METADATA: i32 = 80;
    pub const ACCESS_DENIED: i32 = 88;
    pub const DEVICE_MISSING: i32 = 99;
}

/// libvirt `virErrorDomain` values (who raised the error).
pub mod origin {
    pub const NONE: i32 = 0;
    pub const XML: i32 = 5;
    pub const QEMU: i32 = 10;
    pub const DOMAIN: i32 = 20;
    pub const NODEDEV: i32 = 22;
    pub const INTERFACE: i32 = 26;
    pub const SECRET: i32 = 30;
    pub const CPU: i32 = 31;
}

/// Why a core operation failed. The `Display` text is libvirt's full message
/// (what `virsh` prints after `error: `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A caller is not allowed to do this.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The guest agent is configured but does not answer (oxvirt speaks to none).
    #[error("Guest agent is not responding: {0}")]
    AgentUnresponsive(String),
    /// An argument's value is valid in general but not here.
    #[error("argument unsupported: {0}")]
    ArgumentUnsupported(String),
    /// A CPU definition the host cannot run (`virConnectCompareCPU` with
    /// `FAIL_INCOMPATIBLE`).
    #[error("the CPU is incompatible with host CPU: {0}")]
    CpuIncompatible(String),
    /// The definition uses something this hypervisor cannot run.
    #[error("unsupported configuration: {0}")]
    ConfigUnsupported(String),
    /// The device a request names is not in the definition.
    #[error("device not found: {0}")]
    DeviceMissing(String),
    /// An unexpected failure inside the daemon or a VMM.
    #[error("internal error: {0}")]
    Internal(String),
    /// A bad argument (unknown flags, bad UUID, …).
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    /// A secret definition or value request that cannot be honoured.
    #[error("Invalid secret: {0}")]
    InvalidSecret(String),
    /// No domain matches the lookup.
    #[error("Domain not found: {0}")]
    NoDomain(String),
    /// No host interface matches the lookup.
    #[error("Interface not found: {0}")]
    NoInterface(String),
    /// No host device matches the lookup.
    #[error("Node device not found: {0}")]
    NoNodeDevice(String),
    /// No secret matches the lookup.
    #[error("Secret not found: {0}")]
    NoSecret(String),
    /// No snapshot of the domain matches the lookup.
    #[error("Domain snapshot not found: {0}")]
    NoSnapshot(String),
    /// The requested metadata element does not exist.
    #[error("metadata not found: {0}")]
    NoDomainMetadata(String),
    /// The driver does not implement this API (`virDomainXxx` named).
    #[error("this function is not supported by the connection driver: {0}")]
    NoSupport(String),
    /// The operation could not be carried out (duplicate name or UUID, …).
    #[error("operation failed: {0}")]
    OperationFailed(String),
    /// The operation is not valid in the domain's current state.
    #[error("Requested operation is not valid: {0}")]
    OperationInvalid(String),
    /// Waiting for the VMM took too long.
    #[error("Timed out during operation: {0}")]
    OperationTimeout(String),
    /// The operation is known but not supported here.
    #[error("Operation not supported: {0}")]
    OperationUnsupported(String),
    /// The domain XML was refused by the parser or the translator (its own code).
    #[error(transparent)]
    Definition(#[from] domain_xml::Error),
    /// The network driver refused (an interface's network is missing or inactive).
    #[error(transparent)]
    Network(#[from] crate::network::Error),
    /// The storage driver refused (a volume disk's pool or volume is missing).
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
    /// A host call failed (file, process, socket); the text names what and where.
    #[error("{0}")]
    System(String),
    /// The XML could not be parsed.
    #[error("XML error: {0}")]
    Xml(String),
}

impl Error {
    /// libvirt's `virErrorNumber`.
    pub fn code(&self) -> i32 {
        match self {
            Error::AccessDenied(_) => code::ACCESS_DENIED,
            Error::AgentUnresponsive(_) => code::AGENT_UNRESPONSIVE,
            Error::ArgumentUnsupported(_) => code::ARGUMENT_UNSUPPORTED,
            Error::ConfigUnsupported(_) => code::CONFIG_UNSUPPORTED,
            Error::CpuIncompatible(_) => code::CPU_INCOMPATIBLE,
            Error::Definition(e) => e.code(),
            Error::Network(e) => e.code(),
            Error::Storage(e) => e.code(),
            Error::DeviceMissing(_) => code::DEVICE_MISSING,
            Error::Internal(_) => code::INTERNAL_ERROR,
            Error::InvalidArg(_) => code::INVALID_ARG,
            Error::InvalidSecret(_) => code::INVALID_SECRET,
            Error::NoInterface(_) => code::NO_INTERFACE,
            Error::NoNodeDevice(_) => code::NO_NODE_DEVICE,
            Error::NoSecret(_) => code::NO_SECRET,
            Error::NoSnapshot(_) => code::NO_DOMAIN_SNAPSHOT,
            Error::NoDomain(_) => code::NO_DOMAIN,
            Error::NoDomainMetadata(_) => code::NO_DOMAIN_METADATA,
            Error::NoSupport(_) => code::NO_SUPPORT,
            Error::OperationFailed(_) => code::OPERATION_FAILED,
            Error::OperationInvalid(_) => code::OPERATION_INVALID,
            Error::OperationTimeout(_) => code::OPERATION_TIMEOUT,
            Error::OperationUnsupported(_) => code::OPERATION_UNSUPPORTED,
            Error::System(_) => code::SYSTEM_ERROR,
            Error::Xml(_) => code::XML_ERROR,
        }
    }

    /// libvirt's `virErrorDomain` for this error.
    pub fn origin(&self) -> i32 {
        match self {
            Error::Xml(_) | Error::ConfigUnsupported(_) => origin::DOMAIN,
            Error::Network(_) => crate::network::error::ORIGIN,
            Error::InvalidSecret(_) | Error::NoSecret(_) => origin::SECRET,
            Error::NoInterface(_) => origin::INTERFACE,
            Error::NoNodeDevice(_) => origin::NODEDEV,
            Error::CpuIncompatible(_) => origin::CPU,
            Error::Storage(e) => e.origin(),
            Error::NoDomain(_)
            | Error::NoSnapshot(_)
            | Error::Internal(_)
            | Error::OperationTimeout(_)
            | Error::AgentUnresponsive(_)
            | Error::ArgumentUnsupported(_) => origin::QEMU,
            _ => origin::DOMAIN,
        }
    }

    /// "no domain with matching name 'x'".
    pub fn no_domain_name(name: &str) -> Self {
        Error::NoDomain(format!("no domain with matching name '{name}'"))
    }

    /// "no domain with matching uuid 'u' (name)".
    pub fn no_domain_uuid(uuid: &uuid::Uuid) -> Self {
        Error::NoDomain(format!("no domain with matching uuid '{uuid}'"))
    }

    /// "no domain with matching id N".
    pub fn no_domain_id(id: i32) -> Self {
        Error::NoDomain(format!("no domain with matching id {id}"))
    }

    /// libvirt's check for flags an API does not know.
    pub fn unsupported_flags(flags: u32, function: &str) -> Self {
        Error::InvalidArg(format!(
            "unsupported flags (0x{flags:x}) in function {function}"
        ))
    }

    /// Rejects `flags` bits outside `known`.
    pub fn check_flags(flags: u32, known: u32, function: &str) -> Result<(), Self> {
        if flags & !known != 0 {
            Err(Self::unsupported_flags(flags & !known, function))
        } else {
            Ok(())
        }
    }

    /// A failed host call on a path, in libvirt's "cannot … 'path': reason" style.
    pub fn io(what: &str, path: &std::path::Path, err: &std::io::Error) -> Self {
        Error::System(format!("cannot {what} '{}': {err}", path.display()))
    }
}

/// Result of a core operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_use_libvirt_phrasing() {
        assert_eq!(
            Error::no_domain_name("x").to_string(),
            "Domain not found: no domain with matching name 'x'"
        );
        assert_eq!(Error::no_domain_name("x").code(), 42);
        let e = Error::OperationInvalid("domain is already running".into());
        assert_eq!(
            e.to_string(),
            "Requested operation is not valid: domain is already running"
        );
        assert_eq!(e.code(), 55);
        assert_eq!(
            Error::NoSupport("virDomainManagedSave".into()).to_string(),
            "this function is not supported by the connection driver: virDomainManagedSave"
        );
    }

    #[test]
    fn unknown_flags_are_refused_with_their_bits() {
        let e = Error::check_flags(0x11, 0x1, "virDomainCreateWithFlags").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid argument: unsupported flags (0x10) in function virDomainCreateWithFlags"
        );
        assert!(Error::check_flags(1, 1, "f").is_ok());
    }
}

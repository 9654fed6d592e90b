//! Errors of the network driver, each with libvirt's error code and the
//! `VIR_FROM_NETWORK` domain, so front ends report them the way libvirtd does.

/// libvirt `virErrorNumber` values the network driver raises.
pub mod code {
    pub const INTERNAL_ERROR: i32 = 1;
    pub const NO_SUPPORT: i32 = 3;
    pub const INVALID_ARG: i32 = 8;
    pub const OPERATION_FAILED: i32 = 9;
    pub const XML_ERROR: i32 = 27;
    pub const SYSTEM_ERROR: i32 = 38;
    pub const NO_NETWORK: i32 = 43;
    pub const OPERATION_INVALID: i32 = 55;
    pub const CONFIG_UNSUPPORTED: i32 = 67;
    pub const OPERATION_UNSUPPORTED: i32 = 84;
}

/// `VIR_FROM_NETWORK`.
pub const ORIGIN: i32 = 19;

/// Why a network operation failed; `Display` is libvirt's full message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("unsupported configuration: {0}")]
    ConfigUnsupported(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    #[error("Network not found: {0}")]
    NoNetwork(String),
    #[error("this function is not supported by the connection driver: {0}")]
    NoSupport(String),
    #[error("operation failed: {0}")]
    OperationFailed(String),
    #[error("Requested operation is not valid: {0}")]
    OperationInvalid(String),
    #[error("Operation not supported: {0}")]
    OperationUnsupported(String),
    /// A host call failed (file, process, command); the text names what and where.
    #[error("{0}")]
    System(String),
    #[error("XML error: {0}")]
    Xml(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// libvirt's `virErrorNumber`.
    pub fn code(&self) -> i32 {
        match self {
            Self::ConfigUnsupported(_) => code::CONFIG_UNSUPPORTED,
            Self::Internal(_) => code::INTERNAL_ERROR,
            Self::InvalidArg(_) => code::INVALID_ARG,
            Self::NoNetwork(_) => code::NO_NETWORK,
            Self::NoSupport(_) => code::NO_SUPPORT,
            Self::OperationFailed(_) => code::OPERATION_FAILED,
            Self::OperationInvalid(_) => code::OPERATION_INVALID,
            Self::OperationUnsupported(_) => code::OPERATION_UNSUPPORTED,
            Self::System(_) => code::SYSTEM_ERROR,
            Self::Xml(_) => code::XML_ERROR,
        }
    }

    pub fn no_network_name(name: &str) -> Self {
        Self::NoNetwork(format!("no network with matching name '{name}'"))
    }

    pub fn no_network_uuid(uuid: &uuid::Uuid) -> Self {
        Self::NoNetwork(format!("no network with matching uuid '{uuid}'"))
    }

    pub fn io(what: &str, path: &std::path::Path, err: &std::io::Error) -> Self {
        Self::System(format!("cannot {what} '{}': {err}", path.display()))
    }

    /// Unknown flag bits, as libvirt's `virCheckFlags` reports them.
    pub fn check_flags(flags: u32, known: u32, function: &str) -> Result<()> {
        if flags & !known != 0 {
            return Err(Self::InvalidArg(format!(
                "{function}: unsupported flags (0x{:x})",
                flags & !known
            )));
        }
        Ok(())
    }
}

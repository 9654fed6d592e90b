//! Errors of the storage driver, each with libvirt's error code, error domain
//! (`VIR_FROM_STORAGE` unless the text comes from elsewhere) and message, so every
//! front end reports them as libvirtd's storage driver does.

/// libvirt `virErrorNumber` values the storage driver raises.
pub mod code {
    pub const INTERNAL_ERROR: i32 = 1;
    pub const INVALID_ARG: i32 = 8;
    pub const OPERATION_FAILED: i32 = 9;
    pub const XML_ERROR: i32 = 27;
    pub const SYSTEM_ERROR: i32 = 38;
    pub const CONFIG_UNSUPPORTED: i32 = 67;
    pub const STORAGE_PROBE_FAILED: i32 = 75;
    pub const NO_SUPPORT: i32 = 3;
    pub const NO_STORAGE_POOL: i32 = 49;
    pub const NO_STORAGE_VOL: i32 = 50;
    pub const OPERATION_INVALID: i32 = 55;
    pub const STORAGE_POOL_BUILT: i32 = 76;
    pub const OPERATION_UNSUPPORTED: i32 = 84;
    pub const STORAGE_VOL_EXIST: i32 = 90;
}

/// `VIR_FROM_STORAGE`.
pub const FROM_STORAGE: i32 = 18;

/// Why a storage operation failed. `Display` is libvirt's full message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("internal error: {0}")]
    Internal(String),
    /// `VIR_ERR_CONFIG_UNSUPPORTED`: a definition the backend cannot act on.
    #[error("unsupported configuration: {0}")]
    ConfigUnsupported(String),
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    #[error("Storage pool not found: {0}")]
    NoPool(String),
    /// `VIR_ERR_NO_SUPPORT`: the pool type's backend lacks the operation.
    #[error("this function is not supported by the connection driver: {0}")]
    NoSupport(String),
    #[error("Storage volume not found: {0}")]
    NoVol(String),
    #[error("operation failed: {0}")]
    OperationFailed(String),
    #[error("Requested operation is not valid: {0}")]
    OperationInvalid(String),
    #[error("Operation not supported: {0}")]
    OperationUnsupported(String),
    #[error("storage pool already built: {0}")]
    PoolBuilt(String),
    /// `VIR_ERR_STORAGE_PROBE_FAILED`: a source device's contents cannot be told.
    #[error("Storage pool probe failed: {0}")]
    ProbeFailed(String),
    /// A host call failed: "cannot … 'path': strerror".
    #[error("{0}")]
    System(String),
    /// `VIR_ERR_STORAGE_VOL_EXIST`, naming the volume.
    #[error("storage volume '{0}' exists already")]
    VolExists(String),
    /// A size unit libvirt does not know (raised outside the storage driver:
    /// `VIR_FROM_NONE`).
    #[error("invalid argument: unknown suffix '{0}'")]
    UnknownSuffix(String),
    #[error("XML error: {0}")]
    Xml(String),
}

impl Error {
    /// libvirt's `virErrorNumber`.
    pub fn code(&self) -> i32 {
        match self {
            Error::Internal(_) => code::INTERNAL_ERROR,
            Error::ConfigUnsupported(_) => code::CONFIG_UNSUPPORTED,
            Error::InvalidArg(_) => code::INVALID_ARG,
            Error::NoPool(_) => code::NO_STORAGE_POOL,
            Error::NoSupport(_) => code::NO_SUPPORT,
            Error::NoVol(_) => code::NO_STORAGE_VOL,
            Error::OperationFailed(_) => code::OPERATION_FAILED,
            Error::OperationInvalid(_) => code::OPERATION_INVALID,
            Error::OperationUnsupported(_) => code::OPERATION_UNSUPPORTED,
            Error::PoolBuilt(_) => code::STORAGE_POOL_BUILT,
            Error::ProbeFailed(_) => code::STORAGE_PROBE_FAILED,
            Error::System(_) => code::SYSTEM_ERROR,
            Error::VolExists(_) => code::STORAGE_VOL_EXIST,
            Error::UnknownSuffix(_) => code::INVALID_ARG,
            Error::Xml(_) => code::XML_ERROR,
        }
    }

    /// libvirt's `virErrorDomain`: the storage driver.
    pub fn origin(&self) -> i32 {
        match self {
            Error::UnknownSuffix(_) => 0,
            _ => FROM_STORAGE,
        }
    }

    /// libvirt's `virReportSystemError` text: `cannot WHAT 'PATH': strerror`.
    pub fn io(what: &str, path: &std::path::Path, err: &std::io::Error) -> Self {
        Error::System(format!(
            "cannot {what} '{}': {}",
            path.display(),
            strerror(err)
        ))
    }

    /// Rejects `flags` bits outside `known` with libvirt's text.
    pub fn check_flags(flags: u32, known: u32, function: &str) -> Result<(), Self> {
        if flags & !known != 0 {
            Err(Error::InvalidArg(format!(
                "unsupported flags (0x{:x}) in function {function}",
                flags & !known
            )))
        } else {
            Ok(())
        }
    }

    pub fn no_pool_name(name: &str) -> Self {
        Error::NoPool(format!("no storage pool with matching name '{name}'"))
    }

    pub fn no_pool_uuid(uuid: &uuid::Uuid) -> Self {
        Error::NoPool(format!("no storage pool with matching uuid '{uuid}'"))
    }

    pub fn pool_inactive(name: &str) -> Self {
        Error::OperationInvalid(format!("storage pool '{name}' is not active"))
    }
}

/// The C library's text for an I/O error, as libvirt prints it (Rust's `Display`
/// appends " (os error N)").
pub fn strerror(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => err.to_string(),
    }
}

/// Result of a storage operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_errors_read_like_libvirt() {
        let e = Error::io(
            "open directory",
            std::path::Path::new("/nope"),
            &std::io::Error::from_raw_os_error(2),
        );
        assert_eq!(
            e.to_string(),
            "cannot open directory '/nope': No such file or directory"
        );
        assert_eq!((e.code(), e.origin()), (38, 18));
        assert_eq!(
            Error::no_pool_name("x").to_string(),
            "Storage pool not found: no storage pool with matching name 'x'"
        );
    }
}

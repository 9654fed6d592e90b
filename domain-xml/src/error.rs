//! Errors, phrased as libvirt phrases them, with the libvirt error code each maps to.

/// libvirt `VIR_ERR_INVALID_ARG`.
pub const VIR_ERR_INVALID_ARG: i32 = 8;
/// libvirt `VIR_ERR_XML_ERROR`.
pub const VIR_ERR_XML_ERROR: i32 = 27;
/// libvirt `VIR_ERR_XML_DETAIL` (the XML is not well-formed).
pub const VIR_ERR_XML_DETAIL: i32 = 35;
/// libvirt `VIR_ERR_CONFIG_UNSUPPORTED`.
pub const VIR_ERR_CONFIG_UNSUPPORTED: i32 = 67;

/// Why a domain XML document was refused.
///
/// `Display` gives libvirt's wording (`XML error: …`, `unsupported configuration: …`,
/// `invalid argument: …`); [`Error::code`] gives the libvirt error number the RPC front
/// end reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A semantic problem in otherwise well-formed XML (missing name, bad value, …).
    #[error("XML error: {0}")]
    Xml(String),
    /// An argument is out of range or unknown (bad memory unit, value too large, …).
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    /// The XML is not well-formed; carries the 1-based position of the problem.
    #[error("XML error: line {line}, column {column}: {message}")]
    Malformed {
        /// 1-based line of the problem.
        line: u32,
        /// 1-based column of the problem.
        column: u32,
        /// What the XML parser found.
        message: String,
    },
    /// The document exceeds [`crate::MAX_DOCUMENT_BYTES`] or the node limit.
    #[error("XML error: document too large ({0})")]
    TooLarge(String),
    /// Valid libvirt XML that this hypervisor cannot run; the message names the element.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    /// The firmware the domain asks for cannot be found or used; the message and
    /// error number are libvirt's (`operation failed: …`, `internal error: …`).
    #[error("{message}")]
    Firmware {
        /// libvirt's message.
        message: String,
        /// libvirt's `virErrorNumber`.
        code: i32,
    },
}

impl From<crate::firmware::FirmwareError> for Error {
    fn from(e: crate::firmware::FirmwareError) -> Self {
        Error::Firmware {
            message: e.to_string(),
            code: e.code(),
        }
    }
}

impl Error {
    /// The libvirt `virErrorNumber` for this error.
    pub fn code(&self) -> i32 {
        match self {
            Error::Xml(_) | Error::TooLarge(_) => VIR_ERR_XML_ERROR,
            Error::InvalidArg(_) => VIR_ERR_INVALID_ARG,
            Error::Malformed { .. } => VIR_ERR_XML_DETAIL,
            Error::Unsupported(_) => VIR_ERR_CONFIG_UNSUPPORTED,
            Error::Firmware { code, .. } => *code,
        }
    }

    pub(crate) fn xml(msg: impl Into<String>) -> Self {
        Error::Xml(msg.into())
    }

    pub(crate) fn unsupported(msg: impl Into<String>) -> Self {
        Error::Unsupported(msg.into())
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

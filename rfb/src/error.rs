//! What can go wrong with a client.

/// A client broke the protocol; the connection is dropped.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The client's ClientCutText announced more than we accept.
    #[error("client cut text of {0} bytes exceeds the limit")]
    CutTextTooLong(u32),
    /// A SetPixelFormat the server cannot honour.
    #[error("unsupported pixel format: {0}")]
    PixelFormat(&'static str),
    /// The security type the client chose was not offered.
    #[error("security type {0} was not offered")]
    SecurityType(u8),
    /// A message type we do not know (so cannot skip).
    #[error("unknown message type {0}")]
    UnknownMessage(u8),
    /// A QEMU client message (type 255) with an unknown subtype.
    #[error("unknown QEMU client message subtype {0}")]
    UnknownQemuMessage(u8),
    /// The ProtocolVersion line was not `RFB xxx.yyy\n`.
    #[error("malformed protocol version {0:?}")]
    Version(String),
}

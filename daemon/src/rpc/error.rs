//! libvirt errors as they travel in `remote_error` replies.
//!
//! `VirError` is what a procedure handler returns when the call fails: the
//! `virErrorNumber`, the `virErrorDomain` that raised it and the full message virsh
//! prints after `error: `. Numbers are libvirt's (`include/libvirt/virterror.h`).

use super::proto::{NonnullDomain, NonnullNetwork};
use super::xdr::xdr_struct;
use super::xdr::XdrError;

/// `virErrorNumber` values oxvirtd raises.
pub mod code {
    pub const INTERNAL_ERROR: i32 = 1;
    pub const NO_SUPPORT: i32 = 3;
    pub const NO_CONNECT: i32 = 5;
    pub const INVALID_ARG: i32 = 8;
    pub const OPERATION_FAILED: i32 = 9;
    pub const XML_ERROR: i32 = 27;
    pub const OPERATION_DENIED: i32 = 29;
    pub const RPC: i32 = 39;
    pub const NO_DOMAIN: i32 = 42;
    pub const AUTH_FAILED: i32 = 45;
    pub const OPERATION_INVALID: i32 = 55;
    pub const CONFIG_UNSUPPORTED: i32 = 67;
    pub const NO_DOMAIN_METADATA: i32 = 80;
    pub const OPERATION_UNSUPPORTED: i32 = 84;
    pub const RESOURCE_BUSY: i32 = 87;
}

/// `virErrorDomain` values oxvirtd reports.
pub mod from {
    pub const NONE: i32 = 0;
    pub const XML: i32 = 5;
    pub const RPC: i32 = 7;
    pub const QEMU: i32 = 10;
    pub const REMOTE: i32 = 13;
    pub const DOMAIN: i32 = 20;
    pub const STREAMS: i32 = 38;
}

/// `VIR_ERR_ERROR`.
const LEVEL_ERROR: i32 = 2;

/// A failed call, as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirError {
    pub code: i32,
    pub domain: i32,
    pub message: String,
}

impl VirError {
    pub fn new(code: i32, domain: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            domain,
            message: message.into(),
        }
    }

    /// `VIR_ERR_NO_SUPPORT`, worded as libvirt's client prints it.
    pub fn no_support(api: &str) -> Self {
        Self::new(
            code::NO_SUPPORT,
            from::NONE,
            format!("this function is not supported by the connection driver: {api}"),
        )
    }

    /// The answer to a procedure number we do not implement. libvirtd says
    /// "unknown procedure" with VIR_ERR_NO_SUPPORT-compatible handling on the client;
    /// we answer NO_SUPPORT directly so every client version falls back.
    pub fn unknown_procedure(prog: u32, proc_: i32) -> Self {
        Self::new(
            code::NO_SUPPORT,
            from::RPC,
            format!("this function is not supported by the connection driver: procedure {proc_} of program {prog:#x}"),
        )
    }

    pub fn no_domain(what: impl std::fmt::Display) -> Self {
        Self::new(
            code::NO_DOMAIN,
            from::DOMAIN,
            format!("Domain not found: {what}"),
        )
    }

    pub fn invalid_arg(msg: impl std::fmt::Display) -> Self {
        Self::new(
            code::INVALID_ARG,
            from::DOMAIN,
            format!("invalid argument: {msg}"),
        )
    }

    pub fn operation_invalid(msg: impl std::fmt::Display) -> Self {
        Self::new(
            code::OPERATION_INVALID,
            from::DOMAIN,
            format!("Requested operation is not valid: {msg}"),
        )
    }

    pub fn operation_failed(msg: impl std::fmt::Display) -> Self {
        Self::new(
            code::OPERATION_FAILED,
            from::DOMAIN,
            format!("operation failed: {msg}"),
        )
    }

    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Self::new(
            code::INTERNAL_ERROR,
            from::NONE,
            format!("internal error: {msg}"),
        )
    }

    /// A read-only connection tried a procedure that changes something.
    pub fn read_only(api: &str) -> Self {
        Self::new(
            code::OPERATION_DENIED,
            from::NONE,
            format!("operation forbidden: read only access prevents {api}"),
        )
    }

    /// The arguments of a call could not be decoded.
    pub fn bad_args(proc_: i32, e: &XdrError) -> Self {
        Self::new(
            code::RPC,
            from::RPC,
            format!("Unable to decode arguments of procedure {proc_}: {e}"),
        )
    }

    /// The `remote_error` wire form.
    pub fn to_remote(&self) -> RemoteError {
        RemoteError {
            code: self.code,
            domain: self.domain,
            message: Some(self.message.clone()),
            level: LEVEL_ERROR,
            dom: None,
            str1: Some(self.message.clone()),
            str2: None,
            str3: None,
            int1: -1,
            int2: -1,
            net: None,
        }
    }
}

impl std::fmt::Display for VirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for VirError {}

xdr_struct! {
    /// `remote_error`.
    pub struct RemoteError {
        pub code: i32,
        pub domain: i32,
        pub message: Option<String>,
        pub level: i32,
        pub dom: Option<NonnullDomain>,
        pub str1: Option<String>,
        pub str2: Option<String>,
        pub str3: Option<String>,
        pub int1: i32,
        pub int2: i32,
        pub net: Option<NonnullNetwork>,
    }
}

#[cfg(test)]
mod tests {
    use super::super::packet::hex;
    use super::super::xdr::{from_bytes, to_bytes};
    use super::*;

    #[test]
    fn captured_not_found_error_round_trips() {
        // DOMAIN_LOOKUP_BY_NAME("vi1") from libvirtd 9.0 (research §8), payload only.
        let packet = hex("000000c02000808600000001000000170000000100000006000000010000002a0000000a0000000100000034446f6d61696e206e6f7420666f756e643a206e6f20646f6d61696e2077697468206d61746368696e67206e616d6520277669312700000002000000000000000100000014446f6d61696e206e6f7420666f756e643a20257300000001000000226e6f20646f6d61696e2077697468206d61746368696e67206e616d65202776693127000000000000ffffffffffffffff00000000");
        let payload = &packet[28..];
        let e: RemoteError = from_bytes(payload).unwrap();
        assert_eq!(e.code, code::NO_DOMAIN);
        assert_eq!(e.domain, from::QEMU);
        assert_eq!(
            e.message.as_deref(),
            Some("Domain not found: no domain with matching name 'vi1'")
        );
        assert_eq!(e.str1.as_deref(), Some("Domain not found: %s"));
        assert_eq!((e.int1, e.int2, e.level), (-1, -1, 2));
        assert_eq!(to_bytes(&e), payload);
    }

    #[test]
    fn vir_error_encodes_message_and_code() {
        let e = VirError::no_domain("no domain with matching name 'x'").to_remote();
        let back: RemoteError = from_bytes(&to_bytes(&e)).unwrap();
        assert_eq!(back.code, 42);
        assert_eq!(
            back.message.as_deref(),
            Some("Domain not found: no domain with matching name 'x'")
        );
    }
}

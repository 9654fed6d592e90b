//! QMP error replies: QEMU's error classes and descriptions.

use serde::{Deserialize, Serialize};

/// QEMU's `ErrorClass` (qapi/error.json): the whole set QEMU uses today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorClass {
    /// Everything without a more specific class.
    GenericError,
    /// Unknown command, or a command not allowed in the current mode.
    CommandNotFound,
    /// The device exists but is not active (e.g. no balloon).
    DeviceNotActive,
    /// No device by that name.
    DeviceNotFound,
    /// KVM lacks a needed capability.
    #[serde(rename = "KVMMissingCap")]
    KvmMissingCap,
}

impl ErrorClass {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::KvmMissingCap => "KVMMissingCap",
        }
    }
}

/// A QMP error: `{"class": …, "desc": …}`. Handlers return it; the client yields it
/// for `{"error": …}` replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{class:?}: {desc}")]
pub struct QmpError {
    /// The error class.
    pub class: ErrorClass,
    /// QEMU-style human text.
    pub desc: String,
}

impl QmpError {
    /// An error of this class.
    pub fn new(class: ErrorClass, desc: impl Into<String>) -> Self {
        QmpError {
            class,
            desc: desc.into(),
        }
    }

    /// A `GenericError`.
    pub fn generic(desc: impl Into<String>) -> Self {
        Self::new(ErrorClass::GenericError, desc)
    }

    /// QEMU's unknown-command error.
    pub fn command_not_found(name: &str) -> Self {
        Self::new(
            ErrorClass::CommandNotFound,
            format!("The command {name} has not been found"),
        )
    }

    /// QEMU's "no balloon" error, used by `query-balloon` and `balloon`.
    pub fn no_balloon() -> Self {
        Self::new(
            ErrorClass::DeviceNotActive,
            "No balloon device has been activated",
        )
    }

    /// QEMU's `DeviceNotFound` text.
    pub fn device_not_found(id: &str) -> Self {
        Self::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{id}' not found"),
        )
    }
}

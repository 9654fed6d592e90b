//! D-Bus errors as libvirt-dbus sends them: one error name, `org.libvirt.Error`,
//! with libvirt's message text.

use crate::core;

/// The error every `org.libvirt` method returns.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.libvirt")]
pub enum LibvirtError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// `org.libvirt.Error`: libvirt's full message.
    Error(String),
}

impl From<core::Error> for LibvirtError {
    fn from(e: core::Error) -> Self {
        LibvirtError::Error(e.to_string())
    }
}

/// Result of an `org.libvirt` method.
pub type Result<T> = std::result::Result<T, LibvirtError>;

/// libvirt's answer for an API this driver does not implement.
pub fn unsupported(api: &str) -> LibvirtError {
    core::Error::NoSupport(api.to_string()).into()
}

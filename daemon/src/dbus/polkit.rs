//! Asking polkit about a caller on the system bus who is neither root nor in the group.
//!
//! The actions are packaging/polkit/org.oxvirt.policy's: `org.oxvirt.domain.manage` for
//! calls that change something, `org.oxvirt.domain.monitor` for calls that only read.
//! The subject is the caller's unique bus name (polkit's `system-bus-name` kind): polkit
//! resolves it to the process and user itself, so a caller cannot pass for another
//! process, and no pid can be reused in between. The daemon never asks polkit to
//! interact with the user (no authentication dialog from a background service).

use std::collections::HashMap;

use zbus::message::Header;
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

/// What a call does, as polkit's action names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Changes domains or the host (define, start, destroy, set a property …).
    Manage,
    /// Only reads (lookups, lists, XML, state, statistics).
    Monitor,
}

/// Why polkit gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum PolkitError {
    #[error("the call has no sender")]
    NoSender,
    #[error("polkit (org.freedesktop.PolicyKit1) is not available: {0}")]
    Unavailable(#[source] zbus::Error),
}

/// Read-only methods whose names do not start with Get/List/NodeGet/Has and do not
/// contain "LookupBy" (libvirt's ACLs class these as reads too).
const OTHER_READS: &[&str] = &[
    "InterfaceAddresses",
    "MemoryStats",
    "CompareCPU",
    "BaselineCPU",
    "SnapshotCurrent",
    "IsCurrent",
    "MigrateGetMaxSpeed",
    "MigrateGetCompressionCache",
    "DomainSaveImageGetXMLDesc",
    "NodeDeviceLookupSCSIHostByWWN",
];

impl Action {
    /// The polkit action id (packaging/polkit/org.oxvirt.policy).
    pub fn id(self) -> &'static str {
        match self {
            Action::Manage => "org.oxvirt.domain.manage",
            Action::Monitor => "org.oxvirt.domain.monitor",
        }
    }

    /// Classifies a D-Bus call by interface and member. Anything not known to be a
    /// read counts as a change, so a new method is never let through by mistake.
    pub fn for_call(interface: Option<&str>, member: &str) -> Action {
        match interface {
            Some("org.freedesktop.DBus.Properties") => {
                return if member == "Set" {
                    Action::Manage
                } else {
                    Action::Monitor
                };
            }
            Some(
                "org.freedesktop.DBus.Introspectable"
                | "org.freedesktop.DBus.Peer"
                | "org.freedesktop.DBus.ObjectManager",
            ) => return Action::Monitor,
            _ => {}
        }
        let read = ["Get", "List", "NodeGet", "Has"]
            .iter()
            .any(|p| member.starts_with(p))
            || member.contains("LookupBy")
            || OTHER_READS.contains(&member);
        if read {
            Action::Monitor
        } else {
            Action::Manage
        }
    }

    /// The action of the call in `hdr`.
    pub fn for_header(hdr: &Header<'_>) -> Action {
        let member = hdr.member().map(|m| m.as_str()).unwrap_or("");
        Action::for_call(hdr.interface().map(|i| i.as_str()), member)
    }
}

/// polkit's subject for the sender of `hdr`.
pub fn subject(hdr: &Header<'_>) -> Result<Subject, PolkitError> {
    Subject::new_for_message_header(hdr).map_err(|_| PolkitError::NoSender)
}

/// Asks polkit, on the bus the call came in on, whether its sender may do `action`.
pub async fn is_authorized(
    conn: &zbus::Connection,
    hdr: &Header<'_>,
    action: Action,
) -> Result<bool, PolkitError> {
    let subject = subject(hdr)?;
    let authority = AuthorityProxy::new(conn)
        .await
        .map_err(PolkitError::Unavailable)?;
    let result = authority
        .check_authorization(
            &subject,
            action.id(),
            &HashMap::new(),
            CheckAuthorizationFlags::empty(),
            "",
        )
        .await
        .map_err(PolkitError::Unavailable)?;
    Ok(result.is_authorized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_map_to_monitor_and_changes_to_manage() {
        let connect = Some("org.libvirt.Connect");
        let domain = Some("org.libvirt.Domain");
        for m in [
            "ListDomains",
            "DomainLookupByName",
            "DomainLookupByUUID",
            "GetCapabilities",
            "NodeGetFreeMemory",
            "GetAllDomainStats",
        ] {
            assert_eq!(Action::for_call(connect, m), Action::Monitor, "{m}");
        }
        for m in [
            "GetXMLDesc",
            "GetState",
            "GetStats",
            "HasManagedSaveImage",
            "MemoryStats",
        ] {
            assert_eq!(Action::for_call(domain, m), Action::Monitor, "{m}");
        }
        for m in [
            "DomainDefineXML",
            "DomainCreateXML",
            "NodeSetMemoryParameters",
        ] {
            assert_eq!(Action::for_call(connect, m), Action::Manage, "{m}");
        }
        for m in [
            "Create",
            "Destroy",
            "Shutdown",
            "Reboot",
            "Undefine",
            "Suspend",
            "Resume",
            "SetVcpus",
            "SetMemory",
            "AttachDevice",
            "BlockPeek",
            "MemoryPeek",
            "SendKey",
        ] {
            assert_eq!(Action::for_call(domain, m), Action::Manage, "{m}");
        }
        let snap = Some("org.libvirt.DomainSnapshot");
        for m in ["GetParent", "GetXMLDesc", "IsCurrent", "ListChildren"] {
            assert_eq!(Action::for_call(snap, m), Action::Monitor, "{m}");
        }
        for m in ["Delete", "Revert"] {
            assert_eq!(Action::for_call(snap, m), Action::Manage, "{m}");
        }
        assert_eq!(
            Action::for_call(domain, "SnapshotCreateXML"),
            Action::Manage
        );
        for m in [
            "SnapshotCurrent",
            "SnapshotLookupByName",
            "ListDomainSnapshots",
        ] {
            assert_eq!(Action::for_call(domain, m), Action::Monitor, "{m}");
        }
        // Writing a property (Autostart) is a change; reading one is not.
        let props = Some("org.freedesktop.DBus.Properties");
        assert_eq!(Action::for_call(props, "Set"), Action::Manage);
        assert_eq!(Action::for_call(props, "Get"), Action::Monitor);
        assert_eq!(Action::for_call(props, "GetAll"), Action::Monitor);
        // Unknown methods are changes.
        assert_eq!(Action::for_call(domain, "SomethingNew"), Action::Manage);
        assert_eq!(Action::Manage.id(), "org.oxvirt.domain.manage");
        assert_eq!(Action::Monitor.id(), "org.oxvirt.domain.monitor");
    }

    #[test]
    fn actions_are_the_packaged_policy_ones() {
        let policy = include_str!("../../../packaging/polkit/org.oxvirt.policy");
        for a in [Action::Manage, Action::Monitor] {
            assert!(
                policy.contains(&format!("<action id=\"{}\">", a.id())),
                "{} missing from org.oxvirt.policy",
                a.id()
            );
        }
    }

    #[test]
    fn subject_is_the_callers_bus_name() {
        let msg = zbus::Message::method_call("/org/libvirt/QEMU", "DomainDefineXML")
            .interface("org.libvirt.Connect")
            .sender(":1.42")
            .build(&())
            .unwrap();
        let hdr = msg.header();
        assert_eq!(Action::for_header(&hdr), Action::Manage);
        let s = subject(&hdr).unwrap();
        assert_eq!(s.kind(), "system-bus-name");
        // Sent as ("system-bus-name", {"name": ":1.42"}).
        let dbg = format!("{s:?}");
        assert!(dbg.contains(":1.42"), "{dbg}");

        let no_sender = zbus::Message::method_call("/org/libvirt/QEMU", "ListDomains")
            .interface("org.libvirt.Connect")
            .build(&())
            .unwrap();
        assert_eq!(Action::for_header(&no_sender.header()), Action::Monitor);
        assert!(matches!(
            subject(&no_sender.header()),
            Err(PolkitError::NoSender)
        ));
    }
}

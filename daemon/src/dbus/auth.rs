//! Who may call us. On the system bus the bus policy (packaging/dbus) already
//! limits callers to root and the oxvirt group; the daemon checks again from the
//! caller's credentials as the bus reports them, so a permissive policy does not
//! open the door. On the session bus, the bus itself is private to the user.

use std::collections::HashMap;
use std::sync::Mutex;

use zbus::message::Header;
use zbus::names::BusName;

use super::error::{LibvirtError, Result};
use crate::core::Error;

/// The access rule for one bus.
pub struct Gate {
    /// `None`: every caller that reaches us may call (session bus).
    rule: Option<Rule>,
    /// Decisions by unique bus name (a unique name is never reused on a bus).
    seen: Mutex<HashMap<String, bool>>,
}

struct Rule {
    group: Option<u32>,
    group_name: String,
}

impl Gate {
    /// Everyone on the bus may call.
    pub fn open() -> Gate {
        Gate {
            rule: None,
            seen: Mutex::default(),
        }
    }

    /// Root and members of `group` may call.
    pub fn root_or_group(group: &str) -> Gate {
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw());
        if gid.is_none() {
            tracing::warn!(group, "group does not exist: only root may call");
        }
        Gate {
            rule: Some(Rule {
                group: gid,
                group_name: group.to_string(),
            }),
            seen: Mutex::default(),
        }
    }

    /// Fails with libvirt's access-denied error unless the sender of `hdr` may call.
    pub async fn check(&self, conn: &zbus::Connection, hdr: &Header<'_>) -> Result<()> {
        let Some(rule) = &self.rule else {
            return Ok(());
        };
        let Some(sender) = hdr.sender() else {
            return Err(denied(rule));
        };
        let key = sender.to_string();
        if let Some(ok) = self.seen.lock().expect("poisoned").get(&key) {
            return if *ok { Ok(()) } else { Err(denied(rule)) };
        }
        let proxy = zbus::fdo::DBusProxy::new(conn).await?;
        let creds = proxy
            .get_connection_credentials(BusName::Unique(sender.clone()))
            .await
            .map_err(zbus::Error::from)?;
        let uid = creds.unix_user_id();
        let groups = creds.unix_group_ids().cloned().unwrap_or_default();
        let ok = uid == Some(0) || rule.group.is_some_and(|g| groups.contains(&g));
        if !ok {
            tracing::warn!(sender = key, ?uid, "refused caller");
        }
        self.seen.lock().expect("poisoned").insert(key, ok);
        if ok {
            Ok(())
        } else {
            Err(denied(rule))
        }
    }
}

fn denied(rule: &Rule) -> LibvirtError {
    Error::AccessDenied(format!(
        "'org.libvirt' requires root or membership of group '{}'",
        rule.group_name
    ))
    .into()
}

//! Who may call us. On the system bus the bus policy (packaging/dbus) already
//! limits callers to root and the oxvirt group; the daemon checks again from the
//! caller's credentials as the bus reports them, so a permissive policy does not
//! open the door. A caller who is neither root nor in the group is admitted when
//! polkit authorizes it for the call's action ([`super::polkit`]: manage for changes,
//! monitor for reads), as libvirt does with its polkit access driver; without polkit
//! such a caller is refused. On the session bus, the bus itself is private to the user.

use std::collections::HashMap;
use std::sync::Mutex;

use zbus::message::Header;
use zbus::names::BusName;

use super::error::{LibvirtError, Result};
use super::polkit::{self, Action};
use crate::core::Error;

/// The access rule for one bus.
pub struct Gate {
    /// `None`: every caller that reaches us may call (session bus).
    rule: Option<Rule>,
    /// Whether a unique bus name is root or in the group (a unique name is never
    /// reused on a bus). polkit's answers are not kept: they can change (temporary
    /// authorizations expire, rules are edited).
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
            return Err(denied(rule, Action::for_header(hdr), None));
        };
        let key = sender.to_string();
        let cached = self.seen.lock().expect("poisoned").get(&key).copied();
        let privileged = match cached {
            Some(p) => p,
            None => {
                let proxy = zbus::fdo::DBusProxy::new(conn).await?;
                let creds = proxy
                    .get_connection_credentials(BusName::Unique(sender.clone()))
                    .await
                    .map_err(zbus::Error::from)?;
                let uid = creds.unix_user_id();
                let groups = creds.unix_group_ids().cloned().unwrap_or_default();
                let p = uid == Some(0) || rule.group.is_some_and(|g| groups.contains(&g));
                self.seen.lock().expect("poisoned").insert(key.clone(), p);
                p
            }
        };
        if privileged {
            return Ok(());
        }
        let action = Action::for_header(hdr);
        match polkit::is_authorized(conn, hdr, action).await {
            Ok(true) => {
                tracing::debug!(
                    sender = key,
                    action = action.id(),
                    "polkit authorized caller"
                );
                Ok(())
            }
            Ok(false) => {
                tracing::warn!(
                    sender = key,
                    action = action.id(),
                    "refused caller (polkit said no)"
                );
                Err(denied(rule, action, None))
            }
            Err(e) => {
                tracing::warn!(sender = key, action = action.id(), "refused caller: {e}");
                Err(denied(rule, action, Some(&e)))
            }
        }
    }
}

fn denied(rule: &Rule, action: Action, polkit: Option<&polkit::PolkitError>) -> LibvirtError {
    let why = match polkit {
        Some(e) => format!(" ({e})"),
        None => String::new(),
    };
    Error::AccessDenied(format!(
        "'org.libvirt' requires root, membership of group '{}' or polkit authorization for '{}'{why}",
        rule.group_name,
        action.id()
    ))
    .into()
}

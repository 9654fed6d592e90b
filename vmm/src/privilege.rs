//! `--run-as USER`: the VMM started as root takes the files it was handed
//! ([`crate::files`]) and then becomes an unprivileged user for good, before it
//! builds the machine or reads anything the guest controls — QEMU's `-runas`
//! (`-run-with user=`). Its supplementary groups become the user's own
//! (`initgroups`), the bounding set is emptied while the capability to do so is
//! still there, and `setuid` clears every other capability set.

use std::ffi::CString;

use nix::unistd::{initgroups, setgid, setgroups, setuid, Gid, Group, Uid, User};

/// Why the switch failed.
#[derive(Debug, thiserror::Error)]
pub enum RunAsError {
    #[error("--run-as needs the VMM to start as root (it runs as uid {0})")]
    NotRoot(u32),
    #[error("no user '{0}' on this host")]
    NoUser(String),
    #[error("no group '{0}' on this host")]
    NoGroup(String),
    #[error("cannot look up user '{0}'")]
    Lookup(String, #[source] nix::Error),
    #[error("cannot become user '{user}': {step} failed")]
    Switch {
        user: String,
        step: &'static str,
        #[source]
        source: nix::Error,
    },
}

/// Becomes `who`: `USER` or `USER:GROUP` as libvirt writes DAC labels (names, or
/// numbers with or without a leading `+`). The supplementary groups are `groups` where
/// given, else USER's own (`initgroups`; none but GROUP for a uid without an entry).
/// GROUP defaults to the user's primary group. `+UID:+GID` with `groups` — what oxvirtd
/// passes, having looked the user up itself — asks nothing of the user database: a
/// lookup through NSS (modules loaded, systemd's userdb asked) costs more than the
/// rest of the start-up's privilege steps together. Call from `main` before other
/// threads exist.
pub fn run_as(who: &str, groups: Option<&[Gid]>) -> Result<(), RunAsError> {
    let euid = Uid::effective();
    if !euid.is_root() {
        return Err(RunAsError::NotRoot(euid.as_raw()));
    }
    let (user_part, group_part) = match who.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (who, None),
    };
    let number = |s: &str| s.strip_prefix('+').unwrap_or(s).parse::<u32>().ok();
    let numeric = |s: &str| s.starts_with('+') && number(s).is_some();
    let user = if numeric(user_part) && group_part.is_some_and(numeric) && groups.is_some() {
        None
    } else {
        match number(user_part) {
            Some(uid) => User::from_uid(Uid::from_raw(uid)),
            None => User::from_name(user_part),
        }
        .map_err(|e| RunAsError::Lookup(user_part.into(), e))?
    };
    let (uid, name) = match (&user, number(user_part)) {
        (Some(u), _) => (u.uid, u.name.clone()),
        (None, Some(uid)) => (Uid::from_raw(uid), format!("+{uid}")),
        (None, None) => return Err(RunAsError::NoUser(user_part.into())),
    };
    let gid = match group_part {
        Some(g) => match number(g) {
            Some(gid) => Gid::from_raw(gid),
            None => {
                Group::from_name(g)
                    .map_err(|e| RunAsError::Lookup(g.into(), e))?
                    .ok_or_else(|| RunAsError::NoGroup(g.into()))?
                    .gid
            }
        },
        None => match &user {
            Some(u) => u.gid,
            None => return Err(RunAsError::NoGroup(format!("of uid {}", uid.as_raw()))),
        },
    };
    let fail = |step: &'static str| {
        let user = name.clone();
        move |source| RunAsError::Switch { user, step, source }
    };
    match (groups, &user) {
        (Some(list), _) => {
            let mut all = vec![gid];
            all.extend(list.iter().copied().filter(|g| *g != gid));
            setgroups(&all).map_err(fail("setgroups"))?;
        }
        (None, Some(u)) => {
            let cname = CString::new(u.name.clone()).map_err(|_| RunAsError::NoUser(who.into()))?;
            initgroups(&cname, gid).map_err(fail("initgroups"))?;
        }
        (None, None) => setgroups(&[gid]).map_err(fail("setgroups"))?,
    }
    setgid(gid).map_err(fail("setgid"))?;
    // Nothing the process may ever exec can gain a capability back.
    drop_bounding_set();
    setuid(uid).map_err(fail("setuid"))?;
    // setuid from root to another uid clears the permitted and effective sets;
    // check rather than trust it.
    if Uid::current() != uid || Gid::current() != gid {
        return Err(RunAsError::Switch {
            user: name,
            step: "setuid",
            source: nix::Error::EPERM,
        });
    }
    tracing::info!(user = %name, uid = uid.as_raw(), gid = gid.as_raw(), "running as an unprivileged user");
    Ok(())
}

fn drop_bounding_set() {
    for cap in 0..64u32 {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            // EINVAL: past the last capability this kernel knows.
            break;
        }
    }
}

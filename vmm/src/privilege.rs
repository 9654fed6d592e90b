//! `--run-as USER`: the VMM started as root takes the files it was handed
//! ([`crate::files`]) and then becomes an unprivileged user for good, before it
//! builds the machine or reads anything the guest controls — QEMU's `-runas`
//! (`-run-with user=`). Its supplementary groups become the user's own
//! (`initgroups`), the bounding set is emptied while the capability to do so is
//! still there, and `setuid` clears every other capability set.

use std::ffi::CString;

use nix::unistd::{initgroups, setgid, setuid, Gid, Uid, User};

/// Why the switch failed.
#[derive(Debug, thiserror::Error)]
pub enum RunAsError {
    #[error("--run-as needs the VMM to start as root (it runs as uid {0})")]
    NotRoot(u32),
    #[error("no user '{0}' on this host")]
    NoUser(String),
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

/// Becomes `name` (a user name, or a numeric uid) with its primary group and its
/// supplementary groups. Call from `main` before other threads exist.
pub fn run_as(name: &str) -> Result<(), RunAsError> {
    let euid = Uid::effective();
    if !euid.is_root() {
        return Err(RunAsError::NotRoot(euid.as_raw()));
    }
    let user = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(name),
    }
    .map_err(|e| RunAsError::Lookup(name.into(), e))?
    .ok_or_else(|| RunAsError::NoUser(name.into()))?;
    let who = user.name.clone();
    let fail = |step: &'static str| {
        let user = who.clone();
        move |source| RunAsError::Switch { user, step, source }
    };
    let cname = CString::new(user.name.clone()).map_err(|_| RunAsError::NoUser(name.into()))?;
    initgroups(&cname, user.gid).map_err(fail("initgroups"))?;
    setgid(user.gid).map_err(fail("setgid"))?;
    // Nothing the process may ever exec can gain a capability back.
    drop_bounding_set();
    setuid(user.uid).map_err(fail("setuid"))?;
    // setuid from root to another uid clears the permitted and effective sets;
    // check rather than trust it.
    if Uid::current() != user.uid || Gid::current() != user.gid {
        return Err(RunAsError::Switch {
            user: user.name.clone(),
            step: "setuid",
            source: nix::Error::EPERM,
        });
    }
    tracing::info!(user = %user.name, uid = user.uid.as_raw(), gid = user.gid.as_raw(), "running as an unprivileged user");
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

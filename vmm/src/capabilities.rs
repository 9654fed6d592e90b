//! The capabilities each VMM thread keeps once it runs guest code or serves
//! clients: none for vCPU, device-worker and VNC threads; the main thread and the
//! monitor keep only what their later work needs (see [`crate::seccomp::Thread`]'s
//! `capabilities`). A VMM started by root (system mode) would otherwise keep every
//! capability for its whole life.
//!
//! Capabilities are per thread in Linux, so each thread lowers its own when it
//! enters its seccomp filter (threads it spawns later inherit the lowered sets).
//! The bounding set goes too (with `no_new_privs` nothing can raise them again).
//!
//! Written here rather than with the `caps` crate: these are three system calls,
//! made from threads that may already run under an inherited seccomp filter, so
//! the exact calls (and their arguments) must match the allow-lists.

use std::io;

/// `CAP_DAC_OVERRIDE`: open images whatever their owner and mode (libvirt's QEMU
/// gets this by the images being chowned to it; this VMM opens them as root).
pub const DAC_OVERRIDE: u32 = 1;
/// `CAP_DAC_READ_SEARCH`: reach images in directories root cannot search by mode.
pub const DAC_READ_SEARCH: u32 = 2;
/// `CAP_KILL`: stop a helper running as another user (passt drops to `nobody`).
pub const KILL: u32 = 5;
/// `CAP_SETPCAP`: change the bounding set.
const SETPCAP: u32 = 8;
/// `CAP_NET_ADMIN`: create hot-plugged taps and put them on their bridge.
pub const NET_ADMIN: u32 = 12;

/// A set of capabilities as the kernel's bit mask.
pub fn mask(caps: &[u32]) -> u64 {
    caps.iter().fold(0, |m, c| m | 1u64 << c)
}

const VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn get() -> io::Result<[Data; 2]> {
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget writes two Data entries (version 3) into `d`, which outlives it.
    if unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(d)
}

fn set(d: &[Data; 2]) -> io::Result<()> {
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    // SAFETY: capset reads the header and two Data entries, which outlive the call.
    if unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn split(m: u64) -> [u32; 2] {
    [m as u32, (m >> 32) as u32]
}

/// Lowers the calling thread's capabilities to `keep` (a [`mask`]): effective and
/// permitted to what it has of `keep`, inheritable and ambient to none, the
/// bounding set to `keep` where the thread may change it (`CAP_SETPCAP`; a thread
/// without it has an empty permitted set and `no_new_privs` keeps it so).
pub fn restrict_thread(keep: u64) -> io::Result<()> {
    let cur = get()?;
    let has_setpcap = cur[0].effective & (1 << SETPCAP) != 0;
    if has_setpcap {
        for cap in 0..64u32 {
            if keep & (1u64 << cap) != 0 {
                continue;
            }
            // SAFETY: prctl with integer arguments only.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r != 0 {
                let e = io::Error::last_os_error();
                // EINVAL: past the last capability this kernel knows.
                if e.raw_os_error() == Some(libc::EINVAL) {
                    break;
                }
                return Err(e);
            }
        }
    }
    // SAFETY: prctl with integer arguments only. EINVAL on kernels before 4.3
    // (no ambient set): nothing to clear there.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let k = split(keep);
    let mut new = cur;
    for i in 0..2 {
        new[i].effective &= k[i];
        new[i].permitted &= k[i];
        new[i].inheritable = 0;
    }
    set(&new)
}

/// The calling thread's effective capabilities as a [`mask`] (for tests).
pub fn effective() -> io::Result<u64> {
    let d = get()?;
    Ok(d[0].effective as u64 | (d[1].effective as u64) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_only_what_it_asks_for_and_others_keep_theirs() {
        let before = effective().unwrap();
        let keep = mask(&[NET_ADMIN]);
        let (after, bounding_dac) = std::thread::spawn(move || {
            restrict_thread(keep).unwrap();
            // SAFETY: prctl with integer arguments only.
            let bnd = unsafe { libc::prctl(libc::PR_CAPBSET_READ, DAC_OVERRIDE as libc::c_ulong) };
            (effective().unwrap(), bnd)
        })
        .join()
        .unwrap();
        assert_eq!(after, before & keep);
        if before & (1 << SETPCAP) != 0 {
            assert_eq!(bounding_dac, 0, "dropped from the bounding set");
        }
        assert_eq!(effective().unwrap(), before, "other threads keep theirs");
    }
}

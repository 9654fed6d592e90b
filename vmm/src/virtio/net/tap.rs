//! Tap devices: open or create one by name, configure vnet headers and
//! offloads, attach it to a bridge.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// Size of `struct virtio_net_hdr_v1`, which the tap prepends to each frame.
pub const VNET_HDR_LEN: usize = 12;
/// SIOCBRADDIF (linux/sockios.h), not in the libc crate for Linux.
const SIOCBRADDIF: libc::c_ulong = 0x89a2;

/// Errors setting up a tap.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// /dev/net/tun could not be opened.
    #[error("cannot open /dev/net/tun")]
    OpenTun(#[source] io::Error),
    /// TUNSETIFF failed (no such tap and no right to create one, or busy).
    #[error("cannot attach to tap device '{name}'")]
    SetIff {
        name: String,
        #[source]
        source: io::Error,
    },
    /// The interface name is too long or contains NUL.
    #[error("invalid interface name '{0}'")]
    Name(String),
    /// A configuration ioctl failed.
    #[error("tap device '{name}': {what} failed")]
    Ioctl {
        name: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// An open tap queue.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

fn ifreq(name: &str) -> Result<libc::ifreq, TapError> {
    if name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(TapError::Name(name.to_string()));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(r)
}

fn last() -> io::Error {
    io::Error::last_os_error()
}

impl Tap {
    /// Opens the tap `name`, creating it if it does not exist (and we may);
    /// `None` lets the kernel pick `tapN`. The tap carries vnet headers.
    pub fn open(name: Option<&str>) -> Result<Tap, TapError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::OpenTun)?;
        let mut req = ifreq(name.unwrap_or("tap%d"))?;
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which outlives the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
            return Err(TapError::SetIff {
                name: name.unwrap_or("tap%d").to_string(),
                source: last(),
            });
        }
        // SAFETY: the kernel NUL-terminates the name it returns in ifr_name.
        let actual = unsafe { CStr::from_ptr(req.ifr_name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let tap = Tap { file, name: actual };
        let hdr = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int.
        if unsafe { libc::ioctl(tap.file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr) } < 0 {
            return Err(tap.err("TUNSETVNETHDRSZ"));
        }
        tap.set_offload(0)?;
        Ok(tap)
    }

    fn err(&self, what: &'static str) -> TapError {
        TapError::Ioctl {
            name: self.name.clone(),
            what,
            source: last(),
        }
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which offloads the tap may hand us (TUN_F_* bits): what the guest
    /// accepts in received frames.
    pub fn set_offload(&self, flags: libc::c_uint) -> Result<(), TapError> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                flags as libc::c_ulong,
            )
        } < 0
        {
            return Err(self.err("TUNSETOFFLOAD"));
        }
        Ok(())
    }

    fn control_socket(&self) -> Result<OwnedFd, TapError> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(self.err("socket"));
        }
        // SAFETY: fd is a new socket we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Brings the interface up.
    pub fn set_up(&self) -> Result<(), TapError> {
        let sock = self.control_socket()?;
        let mut req = ifreq(&self.name)?;
        // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write one ifreq we own.
        unsafe {
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
                return Err(self.err("SIOCGIFFLAGS"));
            }
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as i16;
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
                return Err(self.err("SIOCSIFFLAGS"));
            }
        }
        Ok(())
    }

    /// Attaches the tap to `bridge` (like `ip link set TAP master BRIDGE`).
    pub fn attach_to_bridge(&self, bridge: &str) -> Result<(), TapError> {
        let sock = self.control_socket()?;
        let mut req = ifreq(&self.name)?;
        // SAFETY: SIOCGIFINDEX reads and writes one ifreq we own.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) } < 0 {
            return Err(self.err("SIOCGIFINDEX"));
        }
        // SAFETY: the union member ifru_ifindex was just written by the kernel.
        let index = unsafe { req.ifr_ifru.ifru_ifindex };
        let mut br = ifreq(bridge)?;
        br.ifr_ifru.ifru_ifindex = index;
        // SAFETY: SIOCBRADDIF reads one ifreq (bridge name, port ifindex).
        if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCBRADDIF, &br) } < 0 {
            return Err(self.err("SIOCBRADDIF"));
        }
        Ok(())
    }

    /// The fd for reads, writes and polling.
    pub fn file(&self) -> &File {
        &self.file
    }
}

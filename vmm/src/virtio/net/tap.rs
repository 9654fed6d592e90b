//! Tap devices: open or create one by name, or take one the daemon opened (an
//! inherited or QMP-passed descriptor); configure vnet headers and offloads, attach
//! it to a bridge.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
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
    /// A descriptor handed to the VMM is not an open tap with a vnet header.
    #[error("descriptor {fd} is not an open tap device with a vnet header")]
    NotATap {
        fd: RawFd,
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
        Tap::open_one(name, false)
    }

    /// Opens `queues` queues of the tap `name` (created if it does not exist, `None`
    /// lets the kernel pick), one descriptor each; more than one makes it a
    /// multiqueue tap (IFF_MULTI_QUEUE), as QEMU opens a tap for `queues=N`.
    pub fn open_queues(name: Option<&str>, queues: u16) -> Result<Vec<Tap>, TapError> {
        let multi = queues > 1;
        let first = Tap::open_one(name, multi)?;
        let actual = first.name.clone();
        let mut taps = vec![first];
        for _ in 1..queues {
            taps.push(Tap::open_one(Some(&actual), multi)?);
        }
        Ok(taps)
    }

    fn open_one(name: Option<&str>, multi_queue: bool) -> Result<Tap, TapError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::OpenTun)?;
        let mut req = ifreq(name.unwrap_or("tap%d"))?;
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        if multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        req.ifr_ifru.ifru_flags = flags as i16;
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
        Tap::configure(file, actual)
    }

    /// A tap of its own on the tap open as descriptor `fd` (a duplicate; `fd` stays
    /// open): one the daemon created with a vnet header, put on its bridge and
    /// brought up, so using it takes no privilege.
    pub fn from_fd(fd: BorrowedFd<'_>) -> Result<Tap, TapError> {
        let raw = fd.as_raw_fd();
        let not_a_tap = |source| TapError::NotATap { fd: raw, source };
        let file = File::from(fd.try_clone_to_owned().map_err(not_a_tap)?);
        // A queue of a multiqueue tap that a previous machine build detached (its
        // pair was off, see `set_queue_enabled`) answers TUNGETIFF only once attached
        // again; on any other tap this fails harmlessly (EINVAL).
        let _ = set_queue(&file, true);
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        // SAFETY: TUNGETIFF writes one ifreq, which outlives the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNGETIFF, &mut req) } < 0 {
            return Err(not_a_tap(last()));
        }
        // SAFETY: TUNGETIFF wrote the flags member of the union.
        let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });
        let want = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        if flags & want != want {
            return Err(not_a_tap(io::Error::other(format!(
                "its flags are {flags:#x}, not IFF_TAP | IFF_NO_PI | IFF_VNET_HDR"
            ))));
        }
        // SAFETY: the kernel NUL-terminates the name it returns in ifr_name.
        let name = unsafe { CStr::from_ptr(req.ifr_name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        // The status flags belong to the open file, which the daemon shares: make
        // sure reads do not block the worker.
        let fl = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)
            .map_err(|e| not_a_tap(e.into()))?;
        let fl = nix::fcntl::OFlag::from_bits_truncate(fl) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(fl))
            .map_err(|e| not_a_tap(e.into()))?;
        Tap::configure(file, name)
    }

    /// The tap the spec names as descriptor `fd`: inherited from the daemon (which
    /// keeps no copy, so the tap goes when the VMM's descriptors close), or a
    /// hot-plugged netdev's (QMP `netdev_add` with `fd`). The descriptor is marked
    /// close-on-exec, so helpers the VMM starts (passt, swtpm) do not keep the tap
    /// alive; each machine build (a reset rebuilds it) takes its own duplicate.
    pub fn from_inherited(fd: RawFd) -> Result<Tap, TapError> {
        // SAFETY: F_GETFD only reads the descriptor table; it fails on a closed fd.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(TapError::NotATap { fd, source: last() });
        }
        // SAFETY: `fd` is open (checked above) and stays open during this call: an
        // inherited one is never closed, a hot-plugged netdev's is held by the netdev,
        // which `netdev_del` keeps while a NIC uses it or one is being added on it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        nix::fcntl::fcntl(
            borrowed,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| TapError::NotATap {
            fd,
            source: e.into(),
        })?;
        Tap::from_fd(borrowed)
    }

    /// `oxvirt-vmm --open-tap`, oxvirtd's tap helper (as QEMU's bridge helper is
    /// libvirt's): creates (or joins) tap `name` with `queues` queues, puts it on
    /// `bridge`, brings it up and sends its descriptors (one per queue, in one
    /// message) with its name over `socket` (the helper's stdout, a unix socket), so
    /// the daemon that forbids `unsafe` code gets the tap ioctls done here and the
    /// VMM that will use the tap needs no privilege for it.
    pub fn hand_over(
        name: &str,
        bridge: Option<&str>,
        queues: u16,
        socket: std::os::fd::BorrowedFd<'_>,
    ) -> Result<(), TapError> {
        let taps = Tap::open_queues(Some(name), queues)?;
        let tap = &taps[0];
        if let Some(b) = bridge {
            tap.attach_to_bridge(b)?;
        }
        tap.set_up()?;
        use std::os::fd::AsFd;
        let fds: Vec<_> = taps.iter().map(|t| t.file.as_fd()).collect();
        qmp::fdpass::send_blocking(socket, tap.name.as_bytes(), &fds).map_err(|source| {
            TapError::Ioctl {
                name: tap.name.clone(),
                what: "passing the descriptors",
                source,
            }
        })
    }

    /// Sets the vnet header size and clears the offloads of a newly taken tap.
    fn configure(file: File, name: String) -> Result<Tap, TapError> {
        let tap = Tap { file, name };
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

    /// Attaches (`true`) or detaches this queue of a multiqueue tap: the kernel
    /// steers received frames only to attached queues, so the queues of pairs the
    /// guest does not use are detached (`VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`).
    pub fn set_queue_enabled(&self, on: bool) -> Result<(), TapError> {
        set_queue(&self.file, on).map_err(|source| TapError::Ioctl {
            name: self.name.clone(),
            what: if on {
                "attaching a queue"
            } else {
                "detaching a queue"
            },
            source,
        })
    }

    /// A second handle on this queue, for switching it on and off from another
    /// thread (the control queue's) than the one that moves its frames.
    pub fn try_clone(&self) -> Result<Tap, TapError> {
        let file = self.file.try_clone().map_err(|source| TapError::Ioctl {
            name: self.name.clone(),
            what: "duplicating the descriptor",
            source,
        })?;
        Ok(Tap {
            file,
            name: self.name.clone(),
        })
    }

    /// The fd for reads, writes and polling.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// TUNSETQUEUE: attaches or detaches the queue open as `file` (no privilege needed:
/// the queue belongs to whoever holds the descriptor).
fn set_queue(file: &File, on: bool) -> io::Result<()> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let flags = if on {
        libc::IFF_ATTACH_QUEUE
    } else {
        libc::IFF_DETACH_QUEUE
    };
    req.ifr_ifru.ifru_flags = flags as i16;
    // SAFETY: TUNSETQUEUE reads one ifreq, which outlives the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETQUEUE, &req) } < 0 {
        return Err(last());
    }
    Ok(())
}

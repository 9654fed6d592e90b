//! User-mode networking through passt (libvirt `<interface type='user'>`): the VMM
//! starts `passt` on one end of a unix stream socket pair and exchanges frames with it
//! in QEMU's `-netdev stream` framing — a 4-byte big-endian length, then the Ethernet
//! frame, no virtio-net header (so the NIC offers no offloads). The link outlives
//! machine rebuilds (one [`PasstLink`] per VMM); passt ends when the VMM's end closes.
//! If passt dies, the NIC's link goes down and the VM keeps running.
//!
//! Written here rather than taken from a crate: the framing is eight lines of code and
//! no crate carries it.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::{recv, MsgFlags};
use tracing::{info, warn};

use machine_spec::UserNet;

use super::passt_args::passt_args;
use super::{FrameIo, NetControl, VNET_HDR_LEN};

/// passt's largest frame (`ETH_MAX_MTU`).
const MAX_FRAME: usize = 65535;

/// A running passt and the VMM's end of its socket, shared by every machine build.
pub struct PasstLink {
    state: Arc<Mutex<Stream>>,
    fd: RawFd,
    child: Mutex<Child>,
}

/// The stream and the bytes read from it that do not make a whole frame yet.
struct Stream {
    /// `None` once passt closed its end: the link is down for good.
    sock: Option<UnixStream>,
    pending: Vec<u8>,
    /// After close: the polled descriptor number, now a pipe nobody writes to, and
    /// that pipe's write end (kept open, or the read end would report EOF).
    quiet: Option<(OwnedFd, OwnedFd)>,
    control: NetControl,
    id: String,
}

impl PasstLink {
    /// Starts `passt` for NIC `id` on a fresh socket pair (passt's end as its stdin:
    /// `--fd 0`, which also makes it quit when our end closes), with the NIC's
    /// addresses and port forwards.
    pub fn start(id: &str, user: &UserNet, control: NetControl) -> io::Result<PasstLink> {
        let (ours, theirs) = UnixStream::pair()?;
        let args = passt_args(user);
        let ready = ReadyFile::new(id)?;
        let mut child = Command::new("passt")
            .args(["--foreground", "--quiet", "--fd", "0", "--pid"])
            .arg(&ready.path)
            .args(&args)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start passt (Debian package passt): {e}"),
                )
            })?;
        if let Err(e) = ready.wait(&mut child) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        info!(
            id,
            pid = child.id(),
            options = args.join(" "),
            "passt started for user-mode networking"
        );
        let fd = ours.as_raw_fd();
        Ok(PasstLink {
            state: Arc::new(Mutex::new(Stream {
                sock: Some(ours),
                pending: Vec::new(),
                quiet: None,
                control,
                id: id.to_string(),
            })),
            fd,
            child: Mutex::new(child),
        })
    }

    /// The frame transport for one machine build's NIC.
    pub fn io(&self) -> StreamIo {
        StreamIo {
            state: self.state.clone(),
            fd: self.fd,
        }
    }
}

/// passt's pid file, which it writes once its setup (addresses, forwarded ports)
/// succeeded: waiting for it, or for passt's exit, tells a bad option or a taken
/// port apart from a running passt, as libvirt's start of passt does.
struct ReadyFile {
    dir: PathBuf,
    path: PathBuf,
}

/// How long passt may take to set up on a loaded host.
const PASST_SETUP: Duration = Duration::from_secs(30);

impl ReadyFile {
    /// An empty file passt can write to: passt started by root drops to `nobody`
    /// before it opens the file, so the file is made writable for it.
    fn new(id: &str) -> io::Result<ReadyFile> {
        let dir = std::env::temp_dir().join(format!(
            "oxvirt-passt-{}-{}",
            std::process::id(),
            id.replace('/', "_")
        ));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("passt.pid");
        std::fs::File::create(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        Ok(ReadyFile { dir, path })
    }

    /// Until passt wrote its pid, or an error naming its exit status (its own
    /// message went to our stderr, the VMM log).
    fn wait(&self, child: &mut Child) -> io::Result<()> {
        let deadline = Instant::now() + PASST_SETUP;
        loop {
            if std::fs::metadata(&self.path).is_ok_and(|m| m.len() > 0) {
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!(
                    "passt exited during its setup ({status}): a bad <ip>, <route> or \
                     <portForward>, or a forwarded port already in use; passt's message is \
                     in the log"
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "passt did not finish its setup within {} s",
                    PASST_SETUP.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ReadyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl Drop for PasstLink {
    fn drop(&mut self) {
        // Our end closing makes passt quit by itself (`--fd 0`); the kill is for a
        // passt that does not. Started by root, passt runs as `nobody`, and a kill
        // across users needs CAP_KILL, which the VMM's threads may have dropped:
        // never wait unbounded for a child that may not have been signalled.
        if let Ok(mut st) = self.state.lock() {
            st.sock = None;
        }
        let Ok(mut c) = self.child.lock() else { return };
        let killed = c.kill().is_ok();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match c.try_wait() {
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Ok(None) => {
                    warn!(pid = c.id(), killed, "passt did not exit; leaving it");
                    return;
                }
                _ => return,
            }
        }
    }
}

/// `frame` without the Ethernet padding after its IP packet. passt (Debian 12's
/// 2023 snapshot) drops IPv4 frames whose IP total length is not the frame's length,
/// and guests pad short frames to 60 bytes (Linux's e1000 driver pads every pure TCP
/// ACK), so unpadded is the only form it takes them in.
fn without_padding(frame: &[u8]) -> &[u8] {
    let be16 = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let len = match be16(12) {
        Some(0x0800) => be16(16).filter(|&l| l >= 20).map(|l| 14 + l),
        Some(0x86dd) => be16(18).map(|l| 14 + 40 + l),
        _ => None,
    };
    match len {
        Some(l) if l < frame.len() => &frame[..l],
        _ => frame,
    }
}

/// [`FrameIo`] over the passt stream: adds and strips the virtio-net header the
/// device's rings carry.
pub struct StreamIo {
    state: Arc<Mutex<Stream>>,
    fd: RawFd,
}

impl Stream {
    /// One whole frame from `pending`, if there is one.
    fn take_frame(&mut self) -> Option<Vec<u8>> {
        let len = u32::from_be_bytes(self.pending.get(..4)?.try_into().ok()?) as usize;
        if self.pending.len() < 4 + len {
            return None;
        }
        let frame = self.pending[4..4 + len].to_vec();
        self.pending.drain(..4 + len);
        Some(frame)
    }

    /// passt is gone: link down, and the polled descriptor number handed to a pipe
    /// that never becomes readable (an EOF socket would wake the worker forever).
    fn close(&mut self) {
        let Some(sock) = self.sock.take() else {
            return;
        };
        warn!(id = %self.id, "passt closed its socket: link down");
        self.control.set_link(false);
        let mut polled = OwnedFd::from(sock);
        if let Ok((rd, wr)) = nix::unistd::pipe() {
            if nix::unistd::dup2(&rd, &mut polled).is_ok() {
                self.quiet = Some((polled, wr));
            }
        }
    }
}

impl FrameIo for StreamIo {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.state.lock().map_err(|_| io::ErrorKind::Other)?;
        loop {
            if let Some(frame) = s.take_frame() {
                if frame.len() > MAX_FRAME || VNET_HDR_LEN + frame.len() > buf.len() {
                    continue; // passt never sends these; drop rather than desync
                }
                buf[..VNET_HDR_LEN].fill(0);
                buf[VNET_HDR_LEN..VNET_HDR_LEN + frame.len()].copy_from_slice(&frame);
                return Ok(VNET_HDR_LEN + frame.len());
            }
            let Some(fd) = s.sock.as_ref().map(|x| x.as_raw_fd()) else {
                return Err(io::ErrorKind::WouldBlock.into());
            };
            let mut chunk = [0u8; 16384];
            // Non-blocking reads on a blocking socket: writes stay blocking, so a
            // frame is never written half.
            match recv(fd, &mut chunk, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => {
                    s.close();
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n) => s.pending.extend_from_slice(&chunk[..n]),
                Err(nix::errno::Errno::EAGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    s.close();
                    return Err(io::Error::from(e));
                }
            }
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let payload = without_padding(frame.get(VNET_HDR_LEN..).unwrap_or_default());
        let mut s = self.state.lock().map_err(|_| io::ErrorKind::Other)?;
        let Some(sock) = s.sock.as_mut() else {
            return Ok(()); // link down: dropped, as with a cable pulled
        };
        let mut msg = Vec::with_capacity(4 + payload.len());
        msg.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        msg.extend_from_slice(payload);
        if let Err(e) = sock.write_all(&msg) {
            s.close();
            return Err(e);
        }
        Ok(())
    }

    fn fd(&self) -> RawFd {
        self.fd
    }

    fn offloads(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A StreamIo on a socket pair, the test playing passt on the other end.
    fn pair() -> (StreamIo, UnixStream, NetControl) {
        let (ours, peer) = UnixStream::pair().unwrap();
        let control = NetControl::new(true);
        let fd = ours.as_raw_fd();
        let io = StreamIo {
            state: Arc::new(Mutex::new(Stream {
                sock: Some(ours),
                pending: Vec::new(),
                quiet: None,
                control: control.clone(),
                id: "net0".into(),
            })),
            fd,
        };
        (io, peer, control)
    }

    #[test]
    fn ethernet_padding_is_not_passed_to_passt() {
        // A pure TCP ACK (IPv4 total length 40) padded to 60 bytes, as Linux's
        // e1000 driver sends it.
        let mut f = vec![0u8; 60];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(without_padding(&f).len(), 54);
        // IPv6 (payload length 20) and non-IP frames.
        let mut g = vec![0u8; 80];
        g[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        g[18..20].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(without_padding(&g).len(), 74);
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(without_padding(&arp).len(), 60);
        // A bogus length never grows the frame.
        f[16..18].copy_from_slice(&1500u16.to_be_bytes());
        assert_eq!(without_padding(&f).len(), 60);
    }

    #[test]
    fn frames_are_length_prefixed_without_the_virtio_header() {
        let (mut io, mut peer, _) = pair();
        let mut frame = vec![0u8; VNET_HDR_LEN];
        frame.extend_from_slice(b"ethernet frame");
        io.send(&frame).unwrap();
        let mut got = [0u8; 18];
        std::io::Read::read_exact(&mut peer, &mut got).unwrap();
        assert_eq!(&got[..4], &14u32.to_be_bytes());
        assert_eq!(&got[4..], b"ethernet frame");
    }

    #[test]
    fn frames_arriving_in_pieces_come_out_whole_with_a_zero_header() {
        let (mut io, mut peer, _) = pair();
        let mut buf = vec![0xffu8; 100];
        assert_eq!(
            io.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        peer.write_all(&5u32.to_be_bytes()[..3]).unwrap();
        assert!(io.recv(&mut buf).is_err());
        peer.write_all(&[5, b'h', b'e']).unwrap();
        assert!(io.recv(&mut buf).is_err());
        // The rest of the first frame and a whole second one.
        peer.write_all(b"llo").unwrap();
        peer.write_all(&2u32.to_be_bytes()).unwrap();
        peer.write_all(b"ok").unwrap();
        let n = io.recv(&mut buf).unwrap();
        assert_eq!(&buf[..VNET_HDR_LEN], &[0u8; VNET_HDR_LEN]);
        assert_eq!(&buf[VNET_HDR_LEN..n], b"hello");
        let n = io.recv(&mut buf).unwrap();
        assert_eq!(&buf[VNET_HDR_LEN..n], b"ok");
    }

    #[test]
    fn passt_going_away_takes_the_link_down_not_the_vm() {
        let (mut io, peer, control) = pair();
        drop(peer);
        let mut buf = [0u8; 64];
        assert_eq!(
            io.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(!control.link_up());
        // Sends are dropped quietly and the polled descriptor no longer wakes anyone.
        io.send(&[0u8; 20]).unwrap();
        let s = io.state.lock().unwrap();
        let (polled, _) = s.quiet.as_ref().expect("the polled descriptor was swapped");
        assert_eq!(polled.as_raw_fd(), io.fd());
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(polled),
            nix::poll::PollFlags::POLLIN,
        )];
        assert_eq!(nix::poll::poll(&mut fds, 0u16).unwrap(), 0);
    }

    /// With Debian's passt: a forwarded port another socket holds makes passt quit
    /// during setup, and the start fails instead of running a NIC with no link; a
    /// free port starts. Skips without passt.
    #[test]
    fn passt_failing_its_setup_fails_the_start() {
        if !std::path::Path::new("/usr/bin/passt").exists() {
            eprintln!("SKIP passt_failing_its_setup_fails_the_start: /usr/bin/passt missing");
            return;
        }
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let forward = |port: u16| UserNet {
            port_forwards: vec![machine_spec::PortForward {
                proto: machine_spec::PortProto::Tcp,
                address: Some("127.0.0.1".parse().unwrap()),
                dev: None,
                ranges: vec![machine_spec::PortRange {
                    start: port,
                    end: None,
                    to: Some(22),
                    exclude: false,
                }],
            }],
            ..UserNet::default()
        };
        let taken = forward(held.local_addr().unwrap().port());
        let e = PasstLink::start("net0", &taken, NetControl::new(true))
            .err()
            .expect("passt started on a taken port");
        assert!(
            e.to_string().contains("passt exited during its setup"),
            "{e}"
        );
        let free_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let link = PasstLink::start("net1", &forward(free_port), NetControl::new(true)).unwrap();
        // passt listens on the forwarded port now.
        assert!(std::net::TcpStream::connect(("127.0.0.1", free_port)).is_ok());
        drop(link);
    }
}

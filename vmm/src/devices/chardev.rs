//! Character-device backends: where a serial port's bytes go and come from.
//!
//! A [`Chardev`] is opened once per process and outlives machine resets, so a
//! pty keeps its path and a socket client stays connected across a reboot.
//! Output goes through a [`ChardevWriter`], which never blocks the guest for
//! long: a backend without a reader (a pty nobody opened, a listening socket
//! without a client) drops bytes, like QEMU does.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use machine_spec::CharBackend;
use nix::sys::termios;

/// Errors opening a backend.
#[derive(Debug, thiserror::Error)]
pub enum ChardevError {
    /// The output file cannot be opened.
    #[error("chardev '{0}': cannot open file '{path}'", path = .1.display())]
    File(String, PathBuf, #[source] io::Error),
    /// A pseudo-terminal could not be allocated.
    #[error("chardev '{0}': cannot allocate a pseudo-terminal")]
    Pty(String, #[source] nix::Error),
    /// A unix socket could not be created or reached.
    #[error("chardev '{0}': cannot {2} unix socket '{path}'", path = .1.display())]
    Unix(String, PathBuf, &'static str, #[source] io::Error),
    /// A TCP socket could not be created or reached.
    #[error("chardev '{0}': cannot {2} tcp {1}")]
    Tcp(String, String, &'static str, #[source] io::Error),
}

type Sink = Arc<Mutex<Option<Box<dyn Write + Send>>>>;

/// The output side, given to the device model. Cloning shares the sink.
#[derive(Clone)]
pub struct ChardevWriter {
    sink: Sink,
    /// Keep the sink after a write error (pty without reader) instead of
    /// treating the error as a disconnect (sockets).
    lossy: bool,
}

impl Write for ChardevWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = sink.as_mut() {
            if let Err(e) = w.write_all(buf) {
                if !self.lossy {
                    tracing::info!(error = %e, "chardev client went away");
                    *sink = None;
                }
            }
        }
        // The guest never sees backend errors: a UART cannot report them.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = sink.as_mut() {
            let _ = w.flush();
        }
        Ok(())
    }
}

/// Where input comes from.
enum Input {
    None,
    /// Readable stream (stdin, pty master, connected socket).
    Stream(Box<dyn ReadFd>),
    /// A listening socket waiting for its one client.
    Listener(Listener),
}

/// Something readable with a file descriptor to poll.
trait ReadFd: Read + Send {
    fn raw_fd(&self) -> RawFd;
}

impl<T: Read + Send + AsRawFd> ReadFd for T {
    fn raw_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// What [`Chardev::on_readable`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum InputEvent {
    /// Bytes for the guest.
    Data(Vec<u8>),
    /// A client connected; the pollable fd changed.
    Connected,
    /// End of input (or the client left); the pollable fd changed.
    Closed,
    /// Nothing to do (spurious wake-up).
    Nothing,
}

/// One opened backend.
pub struct Chardev {
    /// QEMU-style label, `char` + device id.
    pub label: String,
    /// QEMU-style description (`pty:/dev/pts/3`).
    pub filename: String,
    sink: Sink,
    lossy: bool,
    input: Input,
    /// The listener while its one client is connected.
    parked_listener: Option<Listener>,
    /// Terminal settings to restore on drop (stdio on a tty).
    saved_termios: Option<(OwnedFd, termios::Termios)>,
    /// The pty's slave side, held open so the master never reports hang-up.
    _pty_slave: Option<File>,
    /// A socket file this chardev created.
    socket_path: Option<PathBuf>,
}

fn boxed<W: Write + Send + 'static>(w: W) -> Option<Box<dyn Write + Send>> {
    Some(Box::new(w))
}

fn set_nonblocking(fd: &impl AsFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(|_| ())
}

/// Raw mode that still lets Ctrl-C reach the VMM as SIGINT.
fn raw_keep_signals(t: &termios::Termios) -> termios::Termios {
    let mut raw = t.clone();
    termios::cfmakeraw(&mut raw);
    raw.local_flags |= termios::LocalFlags::ISIG;
    // Keep output post-processing so "\n" still returns the carriage on the terminal.
    raw.output_flags |= termios::OutputFlags::OPOST | termios::OutputFlags::ONLCR;
    raw
}

impl Chardev {
    /// Opens the backend for device `id`.
    pub fn open(id: &str, backend: &CharBackend) -> Result<Chardev, ChardevError> {
        let mut c = Chardev {
            label: format!("char{id}"),
            filename: String::new(),
            sink: Arc::new(Mutex::new(None)),
            lossy: false,
            input: Input::None,
            parked_listener: None,
            saved_termios: None,
            _pty_slave: None,
            socket_path: None,
        };
        match backend {
            CharBackend::Stdio => {
                c.filename = "stdio".into();
                *c.sink.lock().unwrap() = boxed(io::stdout());
                let stdin = io::stdin();
                if let Ok(t) = termios::tcgetattr(stdin.as_fd()) {
                    let fd = stdin.as_fd().try_clone_to_owned().ok();
                    if let Some(fd) = fd {
                        if termios::tcsetattr(&fd, termios::SetArg::TCSANOW, &raw_keep_signals(&t))
                            .is_ok()
                        {
                            c.saved_termios = Some((fd, t));
                        }
                    }
                }
                c.input = Input::Stream(Box::new(io::stdin()));
            }
            CharBackend::File { path, append } => {
                // Handed over open (created, truncated or not) where the daemon
                // writes it for us; by path otherwise.
                let f = match crate::files::take(path) {
                    Some(fd) => fd.map(File::from),
                    None => OpenOptions::new()
                        .create(true)
                        .write(true)
                        .append(*append)
                        .truncate(!*append)
                        .open(path),
                }
                .map_err(|e| ChardevError::File(id.into(), path.clone(), e))?;
                c.filename = format!("file:{}", path.display());
                *c.sink.lock().unwrap() = boxed(f);
            }
            CharBackend::Pty => c.open_pty(id)?,
            CharBackend::Unix { path, listen } => {
                let err = |what, e| ChardevError::Unix(id.into(), path.clone(), what, e);
                if *listen {
                    let given = crate::files::is_given(path);
                    let l = crate::files::listen_unix(path).map_err(|e| err("listen on", e))?;
                    l.set_nonblocking(true).map_err(|e| err("listen on", e))?;
                    c.input = Input::Listener(Listener::Unix(l));
                    // A socket the daemon made is the daemon's to remove.
                    c.socket_path = (!given).then(|| path.clone());
                    c.filename = format!("unix:{},server=on", path.display());
                } else {
                    let s = UnixStream::connect(path).map_err(|e| err("connect to", e))?;
                    c.filename = format!("unix:{}", path.display());
                    c.attach_unix(s).map_err(|e| err("connect to", e))?;
                }
            }
            CharBackend::Tcp { host, port, listen } => {
                let addr = format!("{host}:{port}");
                let err = |what, e| ChardevError::Tcp(id.into(), addr.clone(), what, e);
                if *listen {
                    let l = TcpListener::bind(&addr).map_err(|e| err("listen on", e))?;
                    l.set_nonblocking(true).map_err(|e| err("listen on", e))?;
                    // Report the bound address: port 0 means "the kernel picks".
                    let bound = l
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or(addr.clone());
                    c.input = Input::Listener(Listener::Tcp(l));
                    c.filename = format!("tcp:{bound},server=on");
                } else {
                    let s = TcpStream::connect(&addr).map_err(|e| err("connect to", e))?;
                    c.filename = format!("tcp:{addr}");
                    c.attach_tcp(s).map_err(|e| err("connect to", e))?;
                }
            }
            CharBackend::Null => c.filename = "null".into(),
        }
        Ok(c)
    }

    fn open_pty(&mut self, id: &str) -> Result<(), ChardevError> {
        use nix::fcntl::OFlag;
        use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
        let e = |err| ChardevError::Pty(id.into(), err);
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(e)?;
        grantpt(&master).map_err(e)?;
        unlockpt(&master).map_err(e)?;
        let path = ptsname_r(&master).map_err(e)?;
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .map_err(|err| {
                e(nix::Error::from_raw(
                    err.raw_os_error().unwrap_or(libc::EIO),
                ))
            })?;
        // Raw on both ends: no echo, no line editing, bytes pass unchanged.
        if let Ok(mut t) = termios::tcgetattr(&slave) {
            termios::cfmakeraw(&mut t);
            let _ = termios::tcsetattr(&slave, termios::SetArg::TCSANOW, &t);
        }
        let master: OwnedFd = master.into();
        set_nonblocking(&master).map_err(e)?;
        let out = File::from(master.try_clone().map_err(|err| {
            e(nix::Error::from_raw(
                err.raw_os_error().unwrap_or(libc::EIO),
            ))
        })?);
        *self.sink.lock().unwrap() = boxed(out);
        self.lossy = true;
        self.input = Input::Stream(Box::new(File::from(master)));
        self._pty_slave = Some(slave);
        self.filename = format!("pty:{path}");
        tracing::info!(chardev = %self.label, "char device redirected to {path}");
        Ok(())
    }

    fn attach_unix(&mut self, s: UnixStream) -> io::Result<()> {
        let w = s.try_clone()?;
        *self.sink.lock().unwrap() = boxed(w);
        s.set_nonblocking(true)?;
        self.input = Input::Stream(Box::new(s));
        Ok(())
    }

    fn attach_tcp(&mut self, s: TcpStream) -> io::Result<()> {
        let _ = s.set_nodelay(true);
        let w = s.try_clone()?;
        *self.sink.lock().unwrap() = boxed(w);
        s.set_nonblocking(true)?;
        self.input = Input::Stream(Box::new(s));
        Ok(())
    }

    /// The writer for the device model.
    pub fn writer(&self) -> ChardevWriter {
        ChardevWriter {
            sink: self.sink.clone(),
            lossy: self.lossy,
        }
    }

    /// The fd to poll for input or a connecting client, if any.
    pub fn poll_fd(&self) -> Option<RawFd> {
        match &self.input {
            Input::None => None,
            Input::Stream(s) => Some(s.raw_fd()),
            Input::Listener(Listener::Unix(l)) => Some(l.as_raw_fd()),
            Input::Listener(Listener::Tcp(l)) => Some(l.as_raw_fd()),
        }
    }

    /// Handles readability of [`Chardev::poll_fd`]; reads at most `max` bytes.
    pub fn on_readable(&mut self, max: usize) -> InputEvent {
        match &mut self.input {
            Input::None => InputEvent::Nothing,
            Input::Listener(l) => {
                let accepted = match l {
                    Listener::Unix(l) => l.accept().map(|(s, _)| Accepted::Unix(s)),
                    Listener::Tcp(l) => l.accept().map(|(s, _)| Accepted::Tcp(s)),
                };
                match accepted {
                    Ok(s) => {
                        // One client at a time: stop listening until it leaves.
                        let listener = std::mem::replace(&mut self.input, Input::None);
                        let r = match s {
                            Accepted::Unix(s) => self.attach_unix(s),
                            Accepted::Tcp(s) => self.attach_tcp(s),
                        };
                        if let Input::Listener(l) = listener {
                            self.parked_listener = Some(l);
                        }
                        match r {
                            Ok(()) => {
                                tracing::info!(chardev = %self.label, "client connected");
                                InputEvent::Connected
                            }
                            Err(_) => self.client_gone(),
                        }
                    }
                    Err(_) => InputEvent::Nothing,
                }
            }
            Input::Stream(s) => {
                let mut buf = vec![0u8; max.clamp(1, 4096)];
                match s.read(&mut buf) {
                    Ok(0) => self.client_gone(),
                    Ok(n) => {
                        buf.truncate(n);
                        InputEvent::Data(buf)
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::Interrupted =>
                    {
                        InputEvent::Nothing
                    }
                    // A pty without a reader reports EIO: wait for the next one.
                    Err(e) if e.raw_os_error() == Some(libc::EIO) && self.lossy => {
                        InputEvent::Nothing
                    }
                    Err(_) => self.client_gone(),
                }
            }
        }
    }

    /// End of input: a socket client left (listen again) or stdin closed.
    fn client_gone(&mut self) -> InputEvent {
        self.input = match self.parked_listener.take() {
            Some(l) => {
                *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = None;
                tracing::info!(chardev = %self.label, "client disconnected");
                Input::Listener(l)
            }
            None => Input::None,
        };
        InputEvent::Closed
    }
}

enum Accepted {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Drop for Chardev {
    fn drop(&mut self) {
        if let Some((fd, t)) = self.saved_termios.take() {
            let _ = termios::tcsetattr(&fd, termios::SetArg::TCSANOW, &t);
        }
        if let Some(p) = self.socket_path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// The chardev's next input event, polled for up to 0.5 s.
    fn next_event(c: &mut Chardev) -> InputEvent {
        for _ in 0..100 {
            let ev = c.on_readable(16);
            if ev != InputEvent::Nothing {
                return ev;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        InputEvent::Nothing
    }

    #[test]
    fn file_backend_receives_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let c = Chardev::open(
            "serial0",
            &CharBackend::File {
                path: path.clone(),
                append: false,
            },
        )
        .unwrap();
        assert_eq!(c.filename, format!("file:{}", path.display()));
        assert_eq!(c.label, "charserial0");
        c.writer().write_all(b"hello").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert!(c.poll_fd().is_none());
    }

    #[test]
    fn pty_backend_reports_its_path_and_carries_bytes_both_ways() {
        let mut c = Chardev::open("serial0", &CharBackend::Pty).unwrap();
        let path = c.filename.strip_prefix("pty:").unwrap().to_string();
        assert!(path.starts_with("/dev/pts/"), "{path}");
        let mut client = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        c.writer().write_all(b"out").unwrap();
        let mut buf = [0u8; 3];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"out");
        client.write_all(b"in").unwrap();
        let mut got = Vec::new();
        for _ in 0..100 {
            if let InputEvent::Data(d) = c.on_readable(16) {
                got.extend(d);
            }
            if got.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, b"in");
    }

    #[test]
    fn tcp_listener_carries_bytes_both_ways() {
        let mut c = Chardev::open(
            "serial1",
            &CharBackend::Tcp {
                host: "127.0.0.1".into(),
                port: 0,
                listen: true,
            },
        )
        .unwrap();
        let addr = c
            .filename
            .strip_prefix("tcp:")
            .and_then(|s| s.strip_suffix(",server=on"))
            .unwrap()
            .to_string();
        let mut client = TcpStream::connect(&addr).unwrap();
        let ev = next_event(&mut c);
        assert_eq!(ev, InputEvent::Connected);
        c.writer().write_all(b"tcp").unwrap();
        let mut buf = [0u8; 3];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"tcp");
    }

    #[test]
    fn unix_listener_accepts_one_client_and_listens_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let mut c = Chardev::open(
            "serial0",
            &CharBackend::Unix {
                path: path.clone(),
                listen: true,
            },
        )
        .unwrap();
        // No client yet: output is dropped, not an error.
        c.writer().write_all(b"lost").unwrap();
        let mut client = UnixStream::connect(&path).unwrap();
        assert_eq!(c.on_readable(16), InputEvent::Connected);
        c.writer().write_all(b"seen").unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"seen");
        client.write_all(b"k").unwrap();
        let ev = next_event(&mut c);
        assert_eq!(ev, InputEvent::Data(b"k".to_vec()));
        drop(client);
        let ev = next_event(&mut c);
        assert_eq!(ev, InputEvent::Closed);
        let _again = UnixStream::connect(&path).unwrap();
        assert_eq!(c.on_readable(16), InputEvent::Connected);
        drop(c);
        assert!(!path.exists(), "socket file removed on drop");
    }
}

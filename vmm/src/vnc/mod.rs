//! The VNC server of a machine with `<graphics>`: the `rfb` crate's server fed by the
//! [`Console`](crate::display::Console) and feeding its input sink, listening where
//! the spec says, with QMP's VNC commands ([`qmp`]) and events.
//!
//! The refresh rate, the damage and the threads are the `rfb` server's business; here
//! we only adapt: the console's image as an RFB framebuffer, keysyms and QEMU key
//! numbers as Linux key codes ([`keysym`], `display::keycodes`), client events as QMP
//! `VNC_CONNECTED`/`VNC_INITIALIZED`/`VNC_DISCONNECTED`.

pub mod keysym;
pub mod qmp;

use std::net::{TcpListener, ToSocketAddrs};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use machine_spec as ms;
use rfb::{ClientEvent, Framebuffer, Rect};

use crate::display::{keycodes, Console, Image, InputSink};

/// Errors starting the VNC server.
#[derive(Debug, thiserror::Error)]
pub enum VncError {
    /// The listen address does not resolve.
    #[error("cannot resolve the VNC listen address '{0}'")]
    Address(String, #[source] std::io::Error),
    /// Binding failed.
    #[error("cannot listen for VNC on {0}")]
    Bind(String, #[source] std::io::Error),
    /// Every port from 5900 up is taken.
    #[error("no free VNC port on {0} from {min} up", min = ms::VNC_PORT_MIN)]
    NoFreePort(String),
    /// The server's threads could not be confined.
    #[error("cannot confine the VNC server")]
    Seccomp(#[source] crate::seccomp::SeccompError),
    /// The server could not start.
    #[error("cannot start the VNC server")]
    Server(#[source] rfb::server::ServerError),
}

/// A running VNC server.
pub struct Vnc {
    server: rfb::Server,
    events: Arc<OnceLock<::qmp::EventSender>>,
}

impl Vnc {
    /// Listens as `g` says and serves `console`; `name` is the desktop name (the
    /// domain's).
    pub fn start(g: &ms::Graphics, name: &str, console: Arc<Console>) -> Result<Vnc, VncError> {
        let events = Arc::new(OnceLock::new());
        let backend = Arc::new(ConsoleBackend {
            input: console.input(),
            console,
            events: events.clone(),
        });
        let config = rfb::ServerConfig {
            name: name.to_string(),
            security: if g.password.is_some() {
                rfb::Security::VncAuth
            } else {
                rfb::Security::None
            },
            password: g.password.clone(),
            password_expires: g
                .password_valid_to
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
            share_policy: match g.share_policy {
                ms::SharePolicy::AllowExclusive => rfb::SharePolicy::AllowExclusive,
                ms::SharePolicy::ForceShared => rfb::SharePolicy::ForceShared,
                ms::SharePolicy::Ignore => rfb::SharePolicy::Ignore,
            },
        };
        // Bound here, served from threads under the VNC filter (see `serve`).
        let (listener, listening) = match &g.listen {
            ms::GraphicsListen::Address { address, port } => {
                let l = bind_tcp(address, *port)?;
                let local = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
                (Some(Listener::Tcp(l)), local)
            }
            ms::GraphicsListen::Socket { path } => {
                // Handed over by the daemon, or bound here; a socket left by an
                // earlier run of this domain is replaced, as QEMU does.
                let l = crate::files::listen_unix(std::path::Path::new(path))
                    .map_err(|e| VncError::Bind(path.clone(), e))?;
                (Some(Listener::Unix(l)), path.clone())
            }
            ms::GraphicsListen::None => (None, "no socket (QMP add_client only)".to_string()),
        };
        let server = serve(backend, config, listener)?;
        tracing::info!(listen = %listening, "VNC server started");
        Ok(Vnc { server, events })
    }

    /// Where QMP events go (set once the monitor runs).
    pub fn set_events(&self, events: ::qmp::EventSender) {
        let _ = self.events.set(events);
    }

    /// The protocol server (clients, password).
    pub fn server(&self) -> &rfb::Server {
        &self.server
    }
}

impl Drop for Vnc {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

/// A bound listening socket.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Starts the protocol server on `listener` from a thread that has entered the VNC
/// seccomp filter, so rfb's threads (refresh, accept, clients) inherit it.
fn serve(
    backend: Arc<ConsoleBackend>,
    config: rfb::ServerConfig,
    listener: Option<Listener>,
) -> Result<rfb::Server, VncError> {
    std::thread::scope(|s| {
        let starter = std::thread::Builder::new()
            .name("vnc-start".into())
            .spawn_scoped(s, move || {
                crate::seccomp::enter(crate::seccomp::Thread::Vnc).map_err(VncError::Seccomp)?;
                let server = rfb::Server::new(backend, config).map_err(VncError::Server)?;
                match listener {
                    Some(Listener::Tcp(l)) => server.listen_tcp(l),
                    Some(Listener::Unix(l)) => server.listen_unix(l),
                    None => Ok(()),
                }
                .map_err(VncError::Server)?;
                Ok(server)
            })
            .map_err(|e| VncError::Server(e.into()))?;
        starter
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// The VNC server a spec asks for, serving `console` (a black screen without a
/// video device, as QEMU shows).
pub fn start_for(
    spec: &ms::MachineSpec,
    console: Option<Arc<Console>>,
) -> Result<Option<Arc<Vnc>>, VncError> {
    let Some(g) = &spec.graphics else {
        return Ok(None);
    };
    let console = console.unwrap_or_else(|| Arc::new(Console::new()));
    Ok(Some(Arc::new(Vnc::start(g, &spec.name, console)?)))
}

/// Binds `address:port`, or with no port the first free one from 5900 up (libvirt's
/// autoport range, 5900–65535).
fn bind_tcp(address: &str, port: Option<u16>) -> Result<TcpListener, VncError> {
    let resolve = |p: u16| {
        (address, p)
            .to_socket_addrs()
            .map_err(|e| VncError::Address(address.to_string(), e))
            .map(|a| a.collect::<Vec<_>>())
    };
    if let Some(p) = port {
        let addrs = resolve(p)?;
        return TcpListener::bind(&addrs[..])
            .map_err(|e| VncError::Bind(format!("{address}:{p}"), e));
    }
    for p in ms::VNC_PORT_MIN..=u16::MAX {
        let addrs = resolve(p)?;
        match TcpListener::bind(&addrs[..]) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(VncError::Bind(format!("{address}:{p}"), e)),
        }
    }
    Err(VncError::NoFreePort(address.to_string()))
}

/// The console's image as an RFB framebuffer.
struct Frame(Arc<Image>);

impl Framebuffer for Frame {
    fn width(&self) -> u32 {
        self.0.width
    }
    fn height(&self) -> u32 {
        self.0.height
    }
    fn pixels(&self) -> &[u32] {
        &self.0.pixels
    }
}

/// The console as the RFB server's backend.
struct ConsoleBackend {
    console: Arc<Console>,
    input: Arc<dyn InputSink>,
    events: Arc<OnceLock<::qmp::EventSender>>,
}

impl rfb::Backend for ConsoleBackend {
    fn refresh(&self) -> Vec<Rect> {
        self.console
            .refresh()
            .into_iter()
            .map(|r| Rect {
                x: r.x,
                y: r.y,
                w: r.w,
                h: r.h,
            })
            .collect()
    }

    fn frame(&self) -> Arc<dyn Framebuffer> {
        Arc::new(Frame(self.console.image()))
    }

    fn key(&self, down: bool, keysym: u32, qnum: Option<u32>) {
        // The physical key when the client knows it (QEMU extended key event), else
        // the en-us key for the symbol.
        let code = qnum
            .filter(|&q| q != 0)
            .and_then(|q| u16::try_from(q).ok())
            .and_then(keycodes::qnum_to_linux)
            .or_else(|| keysym::to_linux(keysym));
        match code {
            Some(c) => self.input.key(c, down),
            None => tracing::debug!(keysym, ?qnum, "VNC key with no key code dropped"),
        }
    }

    fn pointer_abs(&self, x: u32, y: u32, width: u32, height: u32) {
        self.input.pointer_abs(x, y, width, height);
    }

    fn pointer_rel(&self, dx: i32, dy: i32) {
        self.input.pointer_rel(dx, dy);
    }

    fn buttons(&self, mask: u8) {
        self.input.buttons(mask);
    }

    fn absolute(&self) -> bool {
        // Without a tablet the guest moves its pointer by deltas: clients that know
        // QEMU's pointer type change (gtk-vnc) then grab the pointer and send motion;
        // others' positions become moves from the last one.
        self.console.router().has_absolute()
    }

    fn leds(&self) -> u8 {
        self.input.leds()
    }

    fn event(&self, event: ClientEvent) {
        let (name, data) = qmp::event(&event);
        match &event {
            ClientEvent::Connected(c) => tracing::info!(peer = ?c.peer, "VNC client connected"),
            ClientEvent::Initialized(_) => {}
            ClientEvent::Disconnected(c) => {
                tracing::info!(peer = ?c.peer, "VNC client disconnected")
            }
        }
        if let Some(e) = self.events.get() {
            e.emit(name, Some(data));
        }
    }
}

//! The RFB server: listening sockets, one [`Session`] per client, the share policy,
//! the password, and the refresh loop that turns the backend's damage into updates.
//!
//! Threads: one per listening socket (accept), two per client (reading: parses and
//! delivers input; writing: waits until the client has asked for an update and there is
//! something to send, encodes, writes — so a slow client only ever blocks itself), and
//! one refresh thread that runs only while a client is connected: it calls
//! [`Backend::refresh`] about 30 times a second, slowing down to a few times a second
//! while nothing changes, and sleeps on a condition variable when nobody is connected
//! (an unwatched screen costs nothing).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::auth;
use crate::session::{Event, Security, Session};
use crate::{Framebuffer, Rect};

/// At most this many clients at once (QEMU's default `connections` limit too).
pub const MAX_CLIENTS: usize = 32;
/// Refresh period while the screen changes (~30 Hz).
const FAST_REFRESH: Duration = Duration::from_millis(33);
/// Slowest refresh period while nothing changes and nobody types.
const SLOW_REFRESH: Duration = Duration::from_millis(300);
/// How much each idle refresh slows the next one down.
const REFRESH_BACKOFF: Duration = Duration::from_millis(30);

/// What the server needs from the machine.
pub trait Backend: Send + Sync + 'static {
    /// Re-reads the guest's screen; returns what changed (empty when nothing did).
    fn refresh(&self) -> Vec<Rect>;
    /// The current screen.
    fn frame(&self) -> Arc<dyn Framebuffer>;
    /// A key, as an X keysym and (QEMU extended key event) a qnum key number.
    fn key(&self, down: bool, keysym: u32, qnum: Option<u32>);
    /// An absolute pointer position within a `width`×`height` screen.
    fn pointer_abs(&self, x: u32, y: u32, width: u32, height: u32);
    /// Relative pointer motion.
    fn pointer_rel(&self, dx: i32, dy: i32);
    /// The button mask changed (bit 0 left, 1 middle, 2 right, 3/4 wheel up/down).
    fn buttons(&self, mask: u8);
    /// Whether the guest has an absolute pointer (tablet) to send positions to.
    fn absolute(&self) -> bool;
    /// Keyboard LEDs (bit 0 scroll, 1 num, 2 caps).
    fn leds(&self) -> u8;
    /// A client connected, finished its handshake, or left.
    fn event(&self, event: ClientEvent);
}

/// QEMU's `share` policies (`-vnc share=`); libvirt's `sharePolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SharePolicy {
    /// A client asking for exclusive access disconnects the others; a client asking to
    /// share is refused while an exclusive one is connected (QEMU's default).
    #[default]
    AllowExclusive,
    /// Everyone shares whatever they asked for.
    ForceShared,
    /// The shared flag is ignored: everyone shares.
    Ignore,
}

/// How the server starts.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The desktop name ServerInit announces (the domain name).
    pub name: String,
    /// Security for clients not added with `skip_auth`.
    pub security: Security,
    /// The VNC password (with [`Security::VncAuth`]); `None` refuses every login.
    pub password: Option<String>,
    /// When the password stops working.
    pub password_expires: Option<SystemTime>,
    /// Shared/exclusive handling.
    pub share_policy: SharePolicy,
}

/// Address family of a socket, as QMP names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// A unix socket.
    Unix,
}

impl Family {
    /// QMP's `NetworkAddressFamily` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
            Family::Unix => "unix",
        }
    }
}

/// A socket address as QMP's `VncBasicInfo` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host address (or socket path).
    pub host: String,
    /// Port number as text (empty for unix sockets).
    pub service: String,
    /// Family.
    pub family: Family,
}

impl Endpoint {
    fn from_inet(a: SocketAddr) -> Endpoint {
        Endpoint {
            host: a.ip().to_string(),
            service: a.port().to_string(),
            family: if a.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
        }
    }

    fn from_unix(a: Option<&std::os::unix::net::SocketAddr>) -> Endpoint {
        Endpoint {
            host: a
                .and_then(|a| a.as_pathname())
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            service: String::new(),
            family: Family::Unix,
        }
    }
}

/// A connected client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// Unique for the server's life.
    pub id: u64,
    /// Where it connects from.
    pub peer: Endpoint,
    /// The server socket it came in on (`None` for clients handed over by fd).
    pub server: Option<Endpoint>,
    /// Security the client went through (`none` for skip-auth clients).
    pub security: Security,
}

/// What happened to a client (QMP's `VNC_CONNECTED`, `VNC_INITIALIZED`,
/// `VNC_DISCONNECTED`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The socket was accepted.
    Connected(ClientInfo),
    /// Authentication and ClientInit are done.
    Initialized(ClientInfo),
    /// The client is gone.
    Disconnected(ClientInfo),
}

/// A client connection: TCP or unix.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix socket (listen type='socket', or an fd handed over by QMP `add_client`).
    Unix(UnixStream),
}

impl Stream {
    fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }

    fn peer(&self) -> Endpoint {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(Endpoint::from_inet).unwrap_or(Endpoint {
                host: String::new(),
                service: String::new(),
                family: Family::Ipv4,
            }),
            Stream::Unix(s) => Endpoint::from_unix(s.peer_addr().ok().as_ref()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Errors from the server's management calls.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listening socket could not be served.
    #[error("cannot serve VNC: {0}")]
    Io(#[from] std::io::Error),
    /// set_password on a server without VNC Authentication (QEMU refuses it too).
    #[error("Could not set password")]
    PasswordAuthDisabled,
    /// Too many clients.
    #[error("too many VNC clients (at most {MAX_CLIENTS})")]
    TooManyClients,
}

/// How a client shares the screen after ClientInit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ShareMode {
    Connecting,
    Shared,
    Exclusive,
}

struct ClientState {
    session: Session,
    closed: bool,
    mode: ShareMode,
    info: ClientInfo,
}

struct Client {
    state: Mutex<ClientState>,
    wake: Condvar,
    stream: Stream,
}

impl Client {
    fn lock(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
        self.stream.shutdown();
    }
}

struct Password {
    password: Option<String>,
    expires: Option<SystemTime>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    name: String,
    security: Security,
    share_policy: SharePolicy,
    password: Mutex<Password>,
    clients: Mutex<Vec<Arc<Client>>>,
    /// Wakes the refresh thread (a client came, input arrived, shutdown).
    refresh_wake: Condvar,
    activity: AtomicBool,
    stopped: AtomicBool,
    next_id: AtomicU64,
    leds: AtomicU8,
    absolute: AtomicBool,
    listeners: Mutex<Vec<(Endpoint, std::os::fd::RawFd)>>,
}

/// The VNC server. Cheap to clone; [`Server::shutdown`] ends it.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl Server {
    /// A server with no listening socket yet; starts its refresh thread.
    pub fn new(backend: Arc<dyn Backend>, config: ServerConfig) -> Result<Server, ServerError> {
        let inner = Arc::new(Inner {
            absolute: AtomicBool::new(backend.absolute()),
            leds: AtomicU8::new(backend.leds()),
            backend,
            name: config.name,
            security: config.security,
            share_policy: config.share_policy,
            password: Mutex::new(Password {
                password: config.password,
                expires: config.password_expires,
            }),
            clients: Mutex::new(Vec::new()),
            refresh_wake: Condvar::new(),
            activity: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            listeners: Mutex::new(Vec::new()),
        });
        let i = inner.clone();
        std::thread::Builder::new()
            .name("vnc-refresh".into())
            .spawn(move || refresh_loop(&i))?;
        Ok(Server { inner })
    }

    /// Accepts clients on a bound TCP listener.
    pub fn listen_tcp(&self, listener: TcpListener) -> Result<(), ServerError> {
        let ep = Endpoint::from_inet(listener.local_addr()?);
        self.register_listener(ep.clone(), listener.as_raw_fd());
        let server = self.clone();
        std::thread::Builder::new()
            .name("vnc-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if server.inner.stopped.load(Ordering::Acquire) {
                        return;
                    }
                    match conn {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            server.accept(Stream::Tcp(s), Some(ep.clone()), false);
                        }
                        Err(e) => tracing::warn!(error = %e, "VNC accept failed"),
                    }
                }
            })?;
        Ok(())
    }

    /// Accepts clients on a bound unix-socket listener.
    pub fn listen_unix(&self, listener: UnixListener) -> Result<(), ServerError> {
        let ep = Endpoint::from_unix(listener.local_addr().ok().as_ref());
        self.register_listener(ep.clone(), listener.as_raw_fd());
        let server = self.clone();
        std::thread::Builder::new()
            .name("vnc-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if server.inner.stopped.load(Ordering::Acquire) {
                        return;
                    }
                    match conn {
                        Ok(s) => server.accept(Stream::Unix(s), Some(ep.clone()), false),
                        Err(e) => tracing::warn!(error = %e, "VNC accept failed"),
                    }
                }
            })?;
        Ok(())
    }

    fn register_listener(&self, ep: Endpoint, fd: std::os::fd::RawFd) {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((ep, fd));
    }

    /// Where the server listens.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(e, _)| e.clone())
            .collect()
    }

    /// Serves an already connected client (QMP `add_client`, libvirt's
    /// OpenGraphicsFD); `skip_auth` lets it in without the password.
    pub fn add_client(&self, stream: Stream, skip_auth: bool) -> Result<(), ServerError> {
        if self
            .inner
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
            >= MAX_CLIENTS
        {
            return Err(ServerError::TooManyClients);
        }
        self.accept(stream, None, skip_auth);
        Ok(())
    }

    /// The security clients go through.
    pub fn security(&self) -> Security {
        self.inner.security
    }

    /// The connected clients.
    pub fn clients(&self) -> Vec<ClientInfo> {
        let clients = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        clients.iter().map(|c| c.lock().info.clone()).collect()
    }

    /// Sets the VNC password (QMP `set_password`); refused when the server was not
    /// started with VNC Authentication, as QEMU does.
    pub fn set_password(&self, password: &str) -> Result<(), ServerError> {
        if self.inner.security != Security::VncAuth {
            return Err(ServerError::PasswordAuthDisabled);
        }
        let mut p = self
            .inner
            .password
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        p.password = Some(password.to_string());
        Ok(())
    }

    /// When the password stops working (`None`: never; QMP `expire_password`).
    pub fn expire_password(&self, at: Option<SystemTime>) -> Result<(), ServerError> {
        if self.inner.security != Security::VncAuth {
            return Err(ServerError::PasswordAuthDisabled);
        }
        self.inner
            .password
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expires = at;
        Ok(())
    }

    /// Closes every client and listener; the threads end.
    pub fn shutdown(&self) {
        self.inner.stopped.store(true, Ordering::Release);
        for (_, fd) in self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            // Wakes the accept thread (accept fails with EINVAL on a shut-down listener);
            // the listener itself is owned and closed by that thread.
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
        }
        let clients = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for c in clients {
            c.close();
        }
        self.inner.refresh_wake.notify_all();
    }

    fn accept(&self, stream: Stream, server: Option<Endpoint>, skip_auth: bool) {
        let inner = &self.inner;
        let security = if skip_auth {
            Security::None
        } else {
            inner.security
        };
        let info = ClientInfo {
            id: inner.next_id.fetch_add(1, Ordering::Relaxed),
            peer: stream.peer(),
            server,
            security,
        };
        let reader = match stream.try_clone() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "VNC client dropped: cannot clone its socket");
                return;
            }
        };
        let client = Arc::new(Client {
            state: Mutex::new(ClientState {
                session: Session::new(security),
                closed: false,
                mode: ShareMode::Connecting,
                info: info.clone(),
            }),
            wake: Condvar::new(),
            stream,
        });
        {
            let mut clients = inner.clients.lock().unwrap_or_else(|p| p.into_inner());
            if clients.len() >= MAX_CLIENTS {
                tracing::warn!(peer = ?info.peer, "VNC client refused: too many clients");
                client.stream.shutdown();
                return;
            }
            clients.push(client.clone());
        }
        inner.backend.event(ClientEvent::Connected(info.clone()));
        inner.refresh_wake.notify_all();
        let (i, c) = (inner.clone(), client.clone());
        let spawned = std::thread::Builder::new()
            .name("vnc-read".into())
            .spawn(move || read_loop(&i, &c, reader))
            .and_then(|_| {
                let (i, c) = (inner.clone(), client.clone());
                std::thread::Builder::new()
                    .name("vnc-write".into())
                    .spawn(move || write_loop(&i, &c))
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "VNC client dropped: no thread");
            client.close();
            remove(inner, &client);
        }
    }
}

/// Takes a client out of the list (once) and reports it gone.
fn remove(inner: &Inner, client: &Arc<Client>) {
    let removed = {
        let mut clients = inner.clients.lock().unwrap_or_else(|p| p.into_inner());
        let before = clients.len();
        clients.retain(|c| !Arc::ptr_eq(c, client));
        before != clients.len()
    };
    if removed {
        let info = client.lock().info.clone();
        inner.backend.event(ClientEvent::Disconnected(info));
    }
}

fn read_loop(inner: &Arc<Inner>, client: &Arc<Client>, mut stream: Stream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_buttons = 0u8;
    let mut last_pos: Option<(u16, u16)> = None;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let result = client.lock().session.feed(&buf[..n]);
        let events = match result {
            Ok(ev) => ev,
            Err(e) => {
                let peer = client.lock().info.peer.clone();
                tracing::warn!(error = %e, ?peer, "VNC client dropped: protocol error");
                break;
            }
        };
        for ev in events {
            handle(inner, client, ev, &mut last_buttons, &mut last_pos);
        }
        client.wake.notify_all();
        if client.lock().closed || client.lock().session.is_closed() {
            break;
        }
    }
    // Let the writer send what is queued (a 3.8 failure reason), then close.
    client.lock().closed = true;
    client.wake.notify_all();
    remove(inner, client);
}

fn handle(
    inner: &Arc<Inner>,
    client: &Arc<Client>,
    ev: Event,
    last_buttons: &mut u8,
    last_pos: &mut Option<(u16, u16)>,
) {
    let backend = &inner.backend;
    match ev {
        Event::AuthResponse {
            challenge,
            response,
        } => {
            let verdict = {
                let p = inner.password.lock().unwrap_or_else(|p| p.into_inner());
                let expired = p.expires.is_some_and(|t| SystemTime::now() >= t);
                match &p.password {
                    Some(pw) if !expired && auth::verify(pw, &challenge, &response) => Ok(()),
                    _ => Err("Authentication failed"),
                }
            };
            if verdict.is_err() {
                tracing::warn!(peer = ?client.lock().info.peer, "VNC authentication failed");
            }
            client.lock().session.auth_result(verdict);
        }
        Event::ClientInit { shared } => client_init(inner, client, shared),
        Event::Key { down, keysym } => backend.key(down, keysym, None),
        Event::ExtendedKey { down, keysym, qnum } => backend.key(down, keysym, Some(qnum)),
        Event::Pointer { buttons, x, y } => {
            let frame = backend.frame();
            if inner.absolute.load(Ordering::Relaxed) {
                backend.pointer_abs(u32::from(x), u32::from(y), frame.width(), frame.height());
            } else if client.lock().session.encodings.pointer_type_change {
                // The client grabbed the pointer and sends motion around 0x7fff.
                let (dx, dy) = (i32::from(x) - 0x7fff, i32::from(y) - 0x7fff);
                if dx != 0 || dy != 0 {
                    backend.pointer_rel(dx, dy);
                }
            } else {
                if let Some((lx, ly)) = *last_pos {
                    let (dx, dy) = (i32::from(x) - i32::from(lx), i32::from(y) - i32::from(ly));
                    if dx != 0 || dy != 0 {
                        backend.pointer_rel(dx, dy);
                    }
                }
                *last_pos = Some((x, y));
            }
            if buttons != *last_buttons {
                *last_buttons = buttons;
                backend.buttons(buttons);
            }
        }
        Event::CutText(text) => tracing::debug!(len = text.len(), "VNC client cut text ignored"),
        Event::Activity => {
            if !inner.activity.swap(true, Ordering::AcqRel) {
                inner.refresh_wake.notify_all();
            }
        }
    }
}

/// Applies the share policy to a client that sent ClientInit, then answers it.
fn client_init(inner: &Arc<Inner>, client: &Arc<Client>, shared: bool) {
    let exclusive = match inner.share_policy {
        SharePolicy::AllowExclusive => !shared,
        SharePolicy::ForceShared | SharePolicy::Ignore => false,
    };
    let others: Vec<Arc<Client>> = inner
        .clients
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|c| !Arc::ptr_eq(c, client))
        .cloned()
        .collect();
    if exclusive {
        for other in &others {
            if other.lock().mode != ShareMode::Connecting {
                tracing::info!(peer = ?other.lock().info.peer, "VNC client disconnected: another asked for exclusive access");
                other.close();
            }
        }
    } else if inner.share_policy == SharePolicy::AllowExclusive
        && others.iter().any(|o| o.lock().mode == ShareMode::Exclusive)
    {
        tracing::info!(peer = ?client.lock().info.peer, "VNC client refused: another has exclusive access");
        client.close();
        return;
    }
    // Bring the screen up to date so ServerInit's size and the first update are
    // current; the damage found belongs to the clients already watching.
    let damage = inner.backend.refresh();
    if !damage.is_empty() {
        for other in &others {
            other.lock().session.add_damage(&damage);
            other.wake.notify_all();
        }
    }
    let frame = inner.backend.frame();
    let info = {
        let mut st = client.lock();
        st.mode = if exclusive {
            ShareMode::Exclusive
        } else {
            ShareMode::Shared
        };
        st.session
            .server_init(frame.width(), frame.height(), &inner.name);
        st.info.clone()
    };
    inner.backend.event(ClientEvent::Initialized(info));
}

fn write_loop(inner: &Arc<Inner>, client: &Arc<Client>) {
    let mut stream = match client.stream.try_clone() {
        Ok(s) => s,
        Err(_) => {
            client.close();
            return;
        }
    };
    loop {
        let out = {
            let mut st = client.lock();
            loop {
                if st.session.has_output() || st.closed {
                    break;
                }
                let frame = inner.backend.frame();
                let (leds, abs) = (
                    inner.leds.load(Ordering::Relaxed),
                    inner.absolute.load(Ordering::Relaxed),
                );
                if st
                    .session
                    .wants_update(frame.width(), frame.height(), leds, abs)
                {
                    st.session.write_update(frame.as_ref(), leds, abs);
                    break;
                }
                // Not held while waiting: the console then updates its picture in
                // place instead of copying it (Arc::make_mut) on every refresh.
                drop(frame);
                st = client.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            (st.session.take_output(), st.closed)
        };
        let (bytes, closed) = out;
        if !bytes.is_empty() && stream.write_all(&bytes).is_err() {
            break;
        }
        if closed {
            break;
        }
    }
    client.close();
    remove(inner, client);
}

fn refresh_loop(inner: &Arc<Inner>) {
    let mut period = FAST_REFRESH;
    let mut last = Instant::now();
    loop {
        let clients = {
            let mut clients = inner.clients.lock().unwrap_or_else(|p| p.into_inner());
            while clients.is_empty() && !inner.stopped.load(Ordering::Acquire) {
                period = FAST_REFRESH;
                clients = inner
                    .refresh_wake
                    .wait(clients)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if inner.stopped.load(Ordering::Acquire) {
                return;
            }
            // Sleep one period, or less if input arrives (typing wants a quick echo).
            let (guard, _) = inner
                .refresh_wake
                .wait_timeout_while(clients, period, |_| {
                    !inner.activity.load(Ordering::Acquire)
                        && !inner.stopped.load(Ordering::Acquire)
                })
                .unwrap_or_else(|p| p.into_inner());
            guard.clone()
        };
        // Activity (input, and every update request: a viewer asks again as soon as
        // it has drawn) ends a slow period early, but refreshes stay at most
        // FAST_REFRESH apart: without this a client on a busy screen drove a refresh
        // per round trip, hundreds a second (bench/vnc redraw), where QEMU keeps 30 ms.
        if let Some(rest) = FAST_REFRESH.checked_sub(last.elapsed()) {
            std::thread::sleep(rest);
        }
        last = Instant::now();
        let active = inner.activity.swap(false, Ordering::AcqRel);
        let damage = inner.backend.refresh();
        let leds = inner.backend.leds();
        let absolute = inner.backend.absolute();
        let changed = inner.leds.swap(leds, Ordering::Relaxed) != leds
            || inner.absolute.swap(absolute, Ordering::Relaxed) != absolute;
        if !damage.is_empty() || changed {
            for c in &clients {
                c.lock().session.add_damage(&damage);
                c.wake.notify_all();
            }
        }
        period = if !damage.is_empty() || active {
            FAST_REFRESH
        } else {
            (period + REFRESH_BACKOFF).min(SLOW_REFRESH)
        };
    }
}

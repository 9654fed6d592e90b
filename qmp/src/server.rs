//! The QMP server: a unix socket, any number of clients, each negotiating on its own.
//!
//! Each connection is one tokio task. It reads only while it has nothing to do, runs
//! one command at a time (as QEMU does without OOB), and writes events and replies in
//! the order they happen. A client that stops reading blocks only its own task; one
//! that falls more than [`EVENT_BACKLOG`] events behind is disconnected. Input is
//! bounded by [`Limits`].
//!
//! File descriptors a client passes (SCM_RIGHTS, as QEMU takes them) stay with its
//! connection: `getfd` names the ones that came with the latest message that carried
//! any, `closefd` drops one, and handlers take them by name ([`ClientFds`]).

use std::collections::HashMap;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, watch};

use crate::error::QmpError;
use crate::fdpass;
use crate::json::{Limits, Parsed, Streamer};
use crate::schema::Schema;
use crate::wire::{self, Event, Request, Timestamp, VersionInfo};

/// Events a client may be behind before it is dropped. The broadcast channel
/// allocates all its slots up front (≈ 40 bytes each), once per server, i.e. per VMM:
/// kept small for density (4096 cost 160 KiB of every VMM's heap).
pub const EVENT_BACKLOG: usize = 512;

/// Errors setting up the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding or preparing the socket failed.
    #[error("cannot serve QMP on '{path}': {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Something that is not a socket is in the way.
    #[error("cannot serve QMP on '{0}': a file that is not a socket exists there")]
    NotASocket(PathBuf),
}

/// What a command handler returns: a future, so handlers may wait (e.g. for vCPUs to
/// park) without blocking the server's threads.
pub type CommandFuture = Pin<Box<dyn Future<Output = Result<Value, QmpError>> + Send>>;

/// Wraps an immediate result as a [`CommandFuture`].
pub fn ready(result: Result<Value, QmpError>) -> CommandFuture {
    Box::pin(std::future::ready(result))
}

/// Runs commands. Arguments have been checked against the schema before `call`.
/// `qmp_capabilities` is handled by the server itself.
pub trait Handler: Send + Sync + 'static {
    /// Runs `command` with `args`.
    fn call(&self, command: &str, args: Map<String, Value>) -> CommandFuture;

    /// Runs `command` for a client that may have passed file descriptors (commands
    /// such as `add_client` take theirs from `fds`). By default the fds are not
    /// looked at.
    fn call_with_fds(
        &self,
        command: &str,
        args: Map<String, Value>,
        fds: &mut ClientFds,
    ) -> CommandFuture {
        let _ = fds;
        self.call(command, args)
    }
}

/// The file descriptors one client passed (QEMU's per-monitor fd list).
#[derive(Debug, Default)]
pub struct ClientFds {
    /// The fds of the latest message that carried any, not yet named by `getfd`
    /// (a newer message's fds replace them, as in QEMU's socket chardev).
    received: Vec<OwnedFd>,
    named: HashMap<String, OwnedFd>,
}

impl ClientFds {
    /// Whether an fd is stored as `name`.
    pub fn has(&self, name: &str) -> bool {
        self.named.contains_key(name)
    }

    /// Takes the fd named `name` (`monitor_get_fd`: the caller owns it now).
    pub fn take(&mut self, name: &str) -> Result<OwnedFd, QmpError> {
        self.named.remove(name).ok_or_else(|| {
            QmpError::generic(format!("File descriptor named '{name}' has not been found"))
        })
    }

    /// Fds that arrived with the bytes just read.
    fn arrived(&mut self, fds: Vec<OwnedFd>) {
        if !fds.is_empty() {
            self.received = fds;
        }
    }

    /// `getfd {fdname}`: names the first fd received (the others are closed); an
    /// earlier fd of that name is closed.
    pub fn getfd(&mut self, name: &str) -> Result<(), QmpError> {
        if self.received.is_empty() {
            return Err(QmpError::generic(
                "No file descriptor supplied via SCM_RIGHTS",
            ));
        }
        let fd = self.received.remove(0);
        self.received.clear();
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(QmpError::generic(
                "Parameter 'fdname' expects a name not starting with a digit",
            ));
        }
        self.named.insert(name.to_string(), fd);
        Ok(())
    }

    /// The first fd of the latest message that carried any (the others are
    /// closed): what `add-fd` puts in a set.
    pub fn take_received(&mut self) -> Result<OwnedFd, QmpError> {
        if self.received.is_empty() {
            return Err(QmpError::generic(
                "No file descriptor supplied via SCM_RIGHTS",
            ));
        }
        let fd = self.received.remove(0);
        self.received.clear();
        Ok(fd)
    }

    /// `closefd {fdname}`.
    pub fn closefd(&mut self, name: &str) -> Result<(), QmpError> {
        self.named
            .remove(name)
            .map(drop)
            .ok_or_else(|| QmpError::generic(format!("File descriptor named '{name}' not found")))
    }
}

/// Sends events to every negotiated client. Cheap to clone; usable from any thread.
#[derive(Clone, Debug)]
pub struct EventSender {
    tx: broadcast::Sender<Arc<[u8]>>,
}

impl EventSender {
    /// Emits an event now. `data: None` leaves the `data` member out (QEMU's way for
    /// events without data, e.g. `STOP`).
    pub fn emit(&self, name: &str, data: Option<Value>) {
        let line = Event {
            event: name.to_string(),
            data,
            timestamp: Timestamp::now(),
        }
        .to_line();
        tracing::debug!(event = name, "QMP event");
        // No receivers (no negotiated client) is fine: QEMU drops events then too.
        let _ = self.tx.send(line.into());
    }
}

/// What the server needs besides the handler.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The version in the greeting.
    pub version: VersionInfo,
    /// The commands (argument checking); `qmp_capabilities` must be in it.
    pub schema: Arc<Schema>,
    /// Input limits per client.
    pub limits: Limits,
}

struct Shared {
    config: ServerConfig,
    handler: Arc<dyn Handler>,
    events: broadcast::Sender<Arc<[u8]>>,
}

/// A running server. Dropping it does not stop it; call [`QmpServer::shutdown`].
pub struct QmpServer {
    path: Option<PathBuf>,
    events: EventSender,
    shutdown_tx: watch::Sender<bool>,
    done_rx: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

impl QmpServer {
    /// Binds a unix socket at `path` (mode 0600; a stale socket there is replaced, as
    /// QEMU does) and starts serving on the current tokio runtime.
    pub fn bind(
        path: &Path,
        config: ServerConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<QmpServer, ServerError> {
        let sock_err = |source| ServerError::Socket {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(sock_err)?,
            Ok(_) => return Err(ServerError::NotASocket(path.to_path_buf())),
            Err(_) => {}
        }
        let listener = UnixListener::bind(path).map_err(sock_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(sock_err)?;
        let mut server = Self::serve(listener, config, handler);
        server.path = Some(path.to_path_buf());
        Ok(server)
    }

    /// Serves on an already bound listener.
    pub fn serve(
        listener: UnixListener,
        config: ServerConfig,
        handler: Arc<dyn Handler>,
    ) -> QmpServer {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let shared = Arc::new(Shared {
            config,
            handler,
            events: events.clone(),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        // Every task holds a clone of `done_tx`; shutdown waits until all are dropped.
        let (done_tx, done_rx) = mpsc::channel::<()>(1);
        tokio::spawn(accept_loop(listener, shared, shutdown_rx, done_tx));
        QmpServer {
            path: None,
            events: EventSender { tx: events },
            shutdown_tx,
            done_rx: tokio::sync::Mutex::new(done_rx),
        }
    }

    /// The handle to emit events with.
    pub fn events(&self) -> EventSender {
        self.events.clone()
    }

    /// Stops accepting, lets every client finish its current command and receive the
    /// reply and all events emitted so far, then closes them and removes the socket.
    /// Waits at most `timeout` for slow clients.
    pub async fn shutdown(&self, timeout: Duration) {
        let _ = self.shutdown_tx.send(true);
        let mut rx = self.done_rx.lock().await;
        let _ = tokio::time::timeout(timeout, rx.recv()).await;
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn accept_loop(
    listener: UnixListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tracing::debug!("QMP client connected");
                    let conn = Connection::new(shared.clone(), shutdown.clone(), done.clone());
                    tokio::spawn(conn.run(stream));
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!("QMP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// What to do with one parsed input item.
enum Step {
    /// Write these bytes (an error or an immediate reply).
    Write(Vec<u8>),
    /// Run a command; reply with this id.
    Run(Option<Value>, CommandFuture),
}

struct Connection {
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
    negotiated: bool,
    events: Option<broadcast::Receiver<Arc<[u8]>>>,
    fds: ClientFds,
}

impl Connection {
    fn new(shared: Arc<Shared>, shutdown: watch::Receiver<bool>, done: mpsc::Sender<()>) -> Self {
        Connection {
            shared,
            shutdown,
            _done: done,
            negotiated: false,
            events: None,
            fds: ClientFds::default(),
        }
    }

    async fn run(mut self, stream: UnixStream) {
        match self.serve(stream).await {
            Ok(()) => tracing::debug!("QMP client disconnected"),
            Err(e) => tracing::debug!("QMP client dropped: {e}"),
        }
    }

    async fn serve(&mut self, stream: UnixStream) -> std::io::Result<()> {
        let (rd, mut wr) = stream.into_split();
        wr.write_all(&wire::greeting(&self.shared.config.version))
            .await?;
        let mut streamer = Streamer::new(self.shared.config.limits);
        let mut pending: std::collections::VecDeque<Parsed> = Default::default();
        let mut parsed = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut out: Vec<u8> = Vec::new();
        let mut inflight: Option<(Option<Value>, CommandFuture)> = None;
        let mut eof = false;
        loop {
            // Once the server stops, read input is no longer acted on.
            let stopping = *self.shutdown.borrow();
            while inflight.is_none() && !stopping {
                let Some(item) = pending.pop_front() else {
                    break;
                };
                match self.step(item) {
                    Step::Write(bytes) => out.extend_from_slice(&bytes),
                    Step::Run(id, fut) => inflight = Some((id, fut)),
                }
            }
            if !out.is_empty() {
                wr.write_all(&out).await?;
                out.clear();
            }
            if eof && inflight.is_none() {
                return Ok(());
            }
            let idle = inflight.is_none() && pending.is_empty();
            if stopping && inflight.is_none() {
                self.drain_events(&mut out)?;
                wr.write_all(&out).await?;
                return wr.shutdown().await;
            }
            tokio::select! {
                biased;
                ev = recv_event(&mut self.events) => {
                    out.extend_from_slice(&ev?);
                }
                result = poll_inflight(&mut inflight) => {
                    let (id, result) = result;
                    // Events the command emitted go out before its reply, as in QEMU.
                    self.drain_events(&mut out)?;
                    out.extend_from_slice(&match result {
                        Ok(v) => wire::reply_ok(&v, id.as_ref()),
                        Err(e) => wire::reply_err(&e, id.as_ref()),
                    });
                }
                got = fdpass::recv(rd.as_ref(), &mut buf), if idle && !eof && !stopping => {
                    let (n, fds) = got?;
                    self.fds.arrived(fds);
                    if n == 0 {
                        eof = true;
                    } else {
                        streamer.feed(&buf[..n], &mut parsed);
                        pending.extend(parsed.drain(..));
                    }
                }
                _ = self.shutdown.changed(), if !stopping => {}
            }
        }
    }

    fn drain_events(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let Some(rx) = &mut self.events else {
            return Ok(());
        };
        loop {
            match rx.try_recv() {
                Ok(line) => out.extend_from_slice(&line),
                Err(broadcast::error::TryRecvError::Lagged(n)) => return Err(lagged(n)),
                Err(_) => return Ok(()),
            }
        }
    }

    /// Decides what one input item leads to, like QEMU's `monitor_qmp_dispatch`.
    fn step(&mut self, item: Parsed) -> Step {
        let value = match item {
            Ok(v) => v,
            Err(desc) => return Step::Write(wire::reply_err(&QmpError::generic(desc), None)),
        };
        let req = match Request::from_value(value) {
            Ok(r) => r,
            Err(bad) => return Step::Write(wire::reply_err(&bad.error, bad.id.as_ref())),
        };
        let fail = |e: QmpError| Step::Write(wire::reply_err(&e, req.id.as_ref()));
        let schema = &self.shared.config.schema;
        if req.execute == "qmp_capabilities" {
            if self.negotiated {
                return fail(wire::negotiation_done());
            }
            if let Some(cmd) = schema.command("qmp_capabilities") {
                if let Err(e) = schema.check_args(cmd, &req.arguments) {
                    return fail(e);
                }
            }
            if let Some(Value::Array(caps)) = req.arguments.get("enable") {
                if let Some(cap) = caps.first().and_then(Value::as_str) {
                    // We advertise no capabilities, so none can be enabled.
                    return fail(QmpError::generic(format!(
                        "Capability '{cap}' not available"
                    )));
                }
            }
            self.negotiated = true;
            self.events = Some(self.shared.events.subscribe());
            return Step::Write(wire::reply_ok(&Value::Object(Map::new()), req.id.as_ref()));
        }
        if !self.negotiated {
            return fail(wire::expecting_negotiation());
        }
        let Some(cmd) = schema.command(&req.execute) else {
            return fail(QmpError::command_not_found(&req.execute));
        };
        if let Err(e) = schema.check_args(cmd, &req.arguments) {
            return fail(e);
        }
        tracing::debug!(command = %req.execute, "QMP command");
        let name = || req.arguments["fdname"].as_str().unwrap_or_default();
        let done = match req.execute.as_str() {
            "getfd" => self.fds.getfd(name()),
            "closefd" => self.fds.closefd(name()),
            _ => {
                let fut =
                    self.shared
                        .handler
                        .call_with_fds(&req.execute, req.arguments, &mut self.fds);
                return Step::Run(req.id, fut);
            }
        };
        Step::Write(match done {
            Ok(()) => wire::reply_ok(&Value::Object(Map::new()), req.id.as_ref()),
            Err(e) => wire::reply_err(&e, req.id.as_ref()),
        })
    }
}

fn lagged(n: u64) -> std::io::Error {
    std::io::Error::other(format!("client fell {n} events behind; disconnecting it"))
}

async fn recv_event(rx: &mut Option<broadcast::Receiver<Arc<[u8]>>>) -> std::io::Result<Arc<[u8]>> {
    let Some(r) = rx else {
        return std::future::pending().await;
    };
    match r.recv().await {
        Ok(line) => Ok(line),
        Err(broadcast::error::RecvError::Lagged(n)) => Err(lagged(n)),
        Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
    }
}

async fn poll_inflight(
    inflight: &mut Option<(Option<Value>, CommandFuture)>,
) -> (Option<Value>, Result<Value, QmpError>) {
    let Some((_, fut)) = inflight else {
        return std::future::pending().await;
    };
    let result = fut.await;
    let (id, _) = inflight.take().expect("in-flight command");
    (id, result)
}

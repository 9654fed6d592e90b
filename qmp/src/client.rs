//! An async QMP client: connects to a unix socket, negotiates, runs commands
//! (several may be in flight; replies are matched by id) and hands out events.
//! Used by the daemon to drive its VMMs and by tests.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::error::QmpError;
use crate::wire::Event;

/// Events a [`QmpClient::subscribe`] receiver may be behind before it misses some.
/// tokio's broadcast channel allocates every slot up front (≈ 100 bytes each with an
/// `Event`), so it is made on the first `subscribe` only: oxvirtd keeps one client per
/// running domain and reads [`QmpClient::next_event`], and a 4096-slot broadcast
/// channel per client cost it ≈ 400 KiB a domain (bench/density).
const EVENT_QUEUE: usize = 512;

/// Events not yet taken by [`QmpClient::next_event`] before newer ones are dropped. The
/// queue (tokio's mpsc) allocates its slots in small blocks as events wait, not up front.
const FIRST_EVENTS_QUEUE: usize = 4096;

type Subscribers = Arc<Mutex<Option<broadcast::Sender<Event>>>>;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting to the socket failed.
    #[error("cannot connect to QMP socket '{path}': {source}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("QMP connection I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something that is not QMP.
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    /// The command failed; the server's error.
    #[error("QMP command failed: {0}")]
    Command(#[from] QmpError),
    /// The connection closed before the reply came.
    #[error("QMP connection closed")]
    Disconnected,
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, QmpError>>>>>;

/// A negotiated QMP connection.
pub struct QmpClient {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    waiters: Waiters,
    next_id: AtomicU64,
    /// Made by the first `subscribe`.
    events: Subscribers,
    /// Every event since the connection was made; closed when the connection is.
    first_events: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    greeting: Value,
    closed: watch::Receiver<bool>,
}

impl QmpClient {
    /// Connects to the socket at `path` and negotiates capabilities.
    pub async fn connect(path: &Path) -> Result<QmpClient, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        Self::from_stream(stream).await
    }

    /// Negotiates on an already connected stream.
    pub async fn from_stream(stream: UnixStream) -> Result<QmpClient, ClientError> {
        let (rd, wr) = stream.into_split();
        let mut rd = BufReader::new(rd);
        let mut line = String::new();
        if rd.read_line(&mut line).await? == 0 {
            return Err(ClientError::Disconnected);
        }
        let greeting: Value = serde_json::from_str(line.trim_end())
            .map_err(|e| ClientError::Protocol(format!("bad greeting: {e}")))?;
        if !greeting["QMP"]["version"].is_object() || !greeting["QMP"]["capabilities"].is_array() {
            return Err(ClientError::Protocol(format!(
                "not a QMP greeting: {}",
                line.trim_end()
            )));
        }
        let events: Subscribers = Default::default();
        let (first_tx, first_events) = mpsc::channel(FIRST_EVENTS_QUEUE);
        let waiters: Waiters = Default::default();
        let (closed_tx, closed) = watch::channel(false);
        tokio::spawn(read_loop(
            rd,
            waiters.clone(),
            first_tx,
            events.clone(),
            closed_tx,
        ));
        let client = QmpClient {
            writer: tokio::sync::Mutex::new(wr),
            waiters,
            next_id: AtomicU64::new(0),
            events,
            first_events: tokio::sync::Mutex::new(first_events),
            greeting: greeting["QMP"].clone(),
            closed,
        };
        client.execute("qmp_capabilities", Value::Null).await?;
        Ok(client)
    }

    /// The greeting's `QMP` member (`version`, `capabilities`).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Runs a command. `arguments` is an object, or `Null` for none.
    pub async fn execute(&self, command: &str, arguments: Value) -> Result<Value, ClientError> {
        self.execute_with_fds(command, arguments, &[]).await
    }

    /// Runs a command with `fds` passed along with its bytes (SCM_RIGHTS), as libvirt
    /// sends `getfd`.
    pub async fn execute_with_fds(
        &self,
        command: &str,
        arguments: Value,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut req = json!({"execute": command, "id": id});
        if !arguments.is_null() {
            req["arguments"] = arguments;
        }
        let mut bytes =
            serde_json::to_vec(&req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        bytes.push(b'\n');
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().expect("waiters lock").insert(id, tx);
        if *self.closed.borrow() {
            self.waiters.lock().expect("waiters lock").remove(&id);
            return Err(ClientError::Disconnected);
        }
        let written = {
            let mut w = self.writer.lock().await;
            if fds.is_empty() {
                w.write_all(&bytes).await
            } else {
                crate::fdpass::send(w.as_ref(), &bytes, fds).await
            }
        };
        if let Err(e) = written {
            self.waiters.lock().expect("waiters lock").remove(&id);
            return Err(e.into());
        }
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ClientError::Command(e)),
            Err(_) => Err(ClientError::Disconnected),
        }
    }

    /// The next event since the connection was made (none are missed while fewer than
    /// 4096 wait), or `None` once the connection is closed and every event has been
    /// taken.
    pub async fn next_event(&self) -> Option<Event> {
        self.first_events.lock().await.recv().await
    }

    /// A new subscription to the events from now on (a receiver more than 512 events
    /// behind misses some: `RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events
            .lock()
            .expect("subscribers lock")
            .get_or_insert_with(|| broadcast::channel(EVENT_QUEUE).0)
            .subscribe()
    }

    /// Whether the server has closed the connection.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves once the server closes the connection (e.g. the VMM exited).
    pub async fn closed(&self) {
        let mut rx = self.closed.clone();
        let _ = rx.wait_for(|c| *c).await;
    }
}

async fn read_loop(
    mut rd: BufReader<OwnedReadHalf>,
    waiters: Waiters,
    first_events: mpsc::Sender<Event>,
    subscribers: Subscribers,
    closed: watch::Sender<bool>,
) {
    let mut line = String::new();
    loop {
        line.clear();
        match rd.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let msg: Value = match serde_json::from_str(line.trim_end()) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("QMP: unparsable message from server: {e}");
                continue;
            }
        };
        if msg.get("event").is_some() {
            match serde_json::from_value::<Event>(msg) {
                Ok(ev) => {
                    if let Some(tx) = subscribers.lock().expect("subscribers lock").as_ref() {
                        let _ = tx.send(ev.clone());
                    }
                    if let Err(mpsc::error::TrySendError::Full(ev)) = first_events.try_send(ev) {
                        tracing::warn!(
                            "QMP client: {FIRST_EVENTS_QUEUE} events not taken, dropping {}",
                            ev.event
                        );
                    }
                }
                Err(e) => tracing::warn!("QMP: malformed event: {e}"),
            }
            continue;
        }
        let result = if let Some(v) = msg.get("return") {
            Ok(v.clone())
        } else if let Some(e) = msg.get("error") {
            match serde_json::from_value::<QmpError>(e.clone()) {
                Ok(e) => Err(e),
                Err(err) => {
                    tracing::warn!("QMP: malformed error reply: {err}");
                    continue;
                }
            }
        } else {
            tracing::warn!("QMP: unexpected message: {msg}");
            continue;
        };
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            tracing::warn!("QMP: reply without our id: {msg}");
            continue;
        };
        if let Some(tx) = waiters.lock().expect("waiters lock").remove(&id) {
            let _ = tx.send(result);
        }
    }
    let _ = closed.send(true);
    // Wake everyone still waiting: their replies will never come.
    waiters.lock().expect("waiters lock").clear();
}

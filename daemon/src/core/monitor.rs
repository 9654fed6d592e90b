//! The daemon's QMP connection to one VMM: commands with replies matched by id,
//! and the asynchronous events as a stream that ends when the VMM goes away.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// Why a monitor call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonitorError {
    /// The VMM answered with a QMP error.
    #[error("{desc}")]
    Command { class: String, desc: String },
    /// The connection is gone (the VMM exited).
    #[error("monitor connection closed")]
    Closed,
    /// Socket failure.
    #[error("monitor socket '{path}': {reason}")]
    Io { path: String, reason: String },
    /// The VMM did not speak QMP as expected.
    #[error("unexpected monitor reply: {0}")]
    Protocol(String),
    /// No reply in time.
    #[error("monitor command '{0}' timed out")]
    Timeout(String),
}

/// One QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    pub name: String,
    pub data: Value,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, MonitorError>>>>>;

/// A negotiated QMP connection.
pub struct Monitor {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
}

/// How long one command may take before the daemon gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl Monitor {
    /// Connects to `path`, reads the greeting, negotiates capabilities; returns the
    /// monitor and its event stream.
    pub async fn connect(
        path: &Path,
    ) -> Result<(Monitor, mpsc::UnboundedReceiver<QmpEvent>), MonitorError> {
        let io_err = |e: std::io::Error| MonitorError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let stream = UnixStream::connect(path).await.map_err(io_err)?;
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = tokio::time::timeout(COMMAND_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| MonitorError::Timeout("greeting".into()))?
            .map_err(io_err)?
            .ok_or(MonitorError::Closed)?;
        let greeting: Value = serde_json::from_str(&greeting)
            .map_err(|e| MonitorError::Protocol(format!("greeting: {e}")))?;
        if greeting.get("QMP").is_none() {
            return Err(MonitorError::Protocol(format!("greeting: {greeting}")));
        }
        let pending: Pending = Arc::default();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        tokio::spawn(read_loop(lines, pending.clone(), events_tx));
        let mon = Monitor {
            writer: tokio::sync::Mutex::new(write),
            pending,
            next_id: AtomicU64::new(1),
        };
        mon.execute("qmp_capabilities", None).await?;
        Ok((mon, events_rx))
    }

    /// Runs `command` with `arguments`, returning the `return` value.
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, MonitorError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut req = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            req["arguments"] = args;
        }
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("monitor pending map poisoned")
            .insert(id, tx);
        let mut line = req.to_string();
        line.push('\n');
        let write = async {
            let mut w = self.writer.lock().await;
            w.write_all(line.as_bytes()).await
        };
        if write.await.is_err() {
            self.pending.lock().expect("poisoned").remove(&id);
            return Err(MonitorError::Closed);
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(MonitorError::Closed),
            Err(_) => {
                self.pending.lock().expect("poisoned").remove(&id);
                Err(MonitorError::Timeout(command.to_string()))
            }
        }
    }
}

async fn read_loop(
    mut lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    pending: Pending,
    events: mpsc::UnboundedSender<QmpEvent>,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            tracing::warn!(line, "unparsable QMP message");
            continue;
        };
        if let Some(name) = msg.get("event").and_then(Value::as_str) {
            let data = msg.get("data").cloned().unwrap_or(Value::Null);
            let _ = events.send(QmpEvent {
                name: name.to_string(),
                data,
            });
            continue;
        }
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            tracing::warn!(line, "QMP reply without our id");
            continue;
        };
        let reply = if let Some(ret) = msg.get("return") {
            Ok(ret.clone())
        } else if let Some(err) = msg.get("error") {
            Err(MonitorError::Command {
                class: err["class"].as_str().unwrap_or("GenericError").to_string(),
                desc: err["desc"].as_str().unwrap_or("").to_string(),
            })
        } else {
            Err(MonitorError::Protocol(line.clone()))
        };
        if let Some(tx) = pending.lock().expect("poisoned").remove(&id) {
            let _ = tx.send(reply);
        }
    }
    // EOF: fail whatever is still waiting; dropping `events` ends the stream.
    pending.lock().expect("poisoned").clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixListener;

    /// A real socket peer speaking QMP, scripted.
    async fn serve_once(listener: UnixListener) {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"{\"QMP\":{\"version\":{},\"capabilities\":[]}}\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let mut acc = String::new();
        let mut answered = 0;
        while answered < 3 {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            acc.push_str(std::str::from_utf8(&buf[..n]).unwrap());
            while let Some(pos) = acc.find('\n') {
                let line: String = acc.drain(..=pos).collect();
                let req: Value = serde_json::from_str(&line).unwrap();
                let id = req["id"].clone();
                let reply = match req["execute"].as_str().unwrap() {
                    "qmp_capabilities" => json!({"return": {}, "id": id}),
                    "stop" => {
                        s.write_all(b"{\"event\":\"STOP\",\"data\":{},\"timestamp\":{\"seconds\":1,\"microseconds\":2}}\n")
                            .await
                            .unwrap();
                        json!({"return": {}, "id": id})
                    }
                    other => {
                        json!({"error": {"class": "CommandNotFound", "desc": format!("The command {other} has not been found")}, "id": id})
                    }
                };
                s.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
                answered += 1;
            }
        }
    }

    #[tokio::test]
    async fn commands_events_and_errors_over_a_real_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(serve_once(listener));
        let (mon, mut events) = Monitor::connect(&path).await.unwrap();
        assert_eq!(mon.execute("stop", None).await.unwrap(), json!({}));
        let ev = events.recv().await.unwrap();
        assert_eq!(ev.name, "STOP");
        let err = mon.execute("bogus", None).await.unwrap_err();
        assert_eq!(
            err,
            MonitorError::Command {
                class: "CommandNotFound".into(),
                desc: "The command bogus has not been found".into()
            }
        );
        server.await.unwrap();
        // The server hung up: the event stream ends and calls fail.
        assert!(events.recv().await.is_none());
        assert!(mon.execute("stop", None).await.is_err());
    }
}

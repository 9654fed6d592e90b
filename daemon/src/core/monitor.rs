//! The daemon's QMP connection to one VMM, on the workspace's QMP client
//! (`qmp::QmpClient`): commands with a time limit and libvirt-friendly errors, and
//! the asynchronous events as a stream that ends when the VMM goes away.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use qmp::{ClientError, QmpClient};

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

/// A negotiated QMP connection.
pub struct Monitor {
    client: Arc<QmpClient>,
    path: String,
}

/// How long one command may take before the daemon gives up on it.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl Monitor {
    /// Connects to `path`, reads the greeting, negotiates capabilities; returns the
    /// monitor and its event stream (which ends when the connection closes).
    pub async fn connect(
        path: &Path,
    ) -> Result<(Monitor, mpsc::UnboundedReceiver<QmpEvent>), MonitorError> {
        let shown = path.display().to_string();
        let client = tokio::time::timeout(COMMAND_TIMEOUT, QmpClient::connect(path))
            .await
            .map_err(|_| MonitorError::Timeout("greeting".into()))?
            .map_err(|e| convert(e, &shown))?;
        let client = Arc::new(client);
        let (tx, rx) = mpsc::unbounded_channel();
        let source = client.clone();
        tokio::spawn(async move {
            let forward = |ev: qmp::Event| {
                tx.send(QmpEvent {
                    name: ev.event,
                    data: ev.data.unwrap_or(Value::Null),
                })
                .is_ok()
            };
            // `next_event` ends once the connection is closed and its queue drained;
            // the close is watched too, then what is left is taken (bounded); dropping
            // `tx` ends the stream.
            loop {
                tokio::select! {
                    biased;
                    ev = source.next_event() => match ev {
                        Some(ev) => {
                            if !forward(ev) {
                                return;
                            }
                        }
                        None => return,
                    },
                    _ = source.closed() => break,
                }
            }
            while let Ok(Some(ev)) =
                tokio::time::timeout(Duration::from_millis(10), source.next_event()).await
            {
                if !forward(ev) {
                    return;
                }
            }
        });
        Ok((
            Monitor {
                client,
                path: shown,
            },
            rx,
        ))
    }

    /// Runs `command` with `arguments`, returning the `return` value.
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, MonitorError> {
        self.execute_with_fds(command, arguments, &[]).await
    }

    /// Runs `command` with `fds` passed along (QMP `getfd`).
    pub async fn execute_with_fds(
        &self,
        command: &str,
        arguments: Option<Value>,
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> Result<Value, MonitorError> {
        self.execute_within(command, arguments, fds, COMMAND_TIMEOUT)
            .await
    }

    /// [`Monitor::execute_with_fds`] with its own time limit (a save writes all of
    /// guest RAM before it answers).
    pub async fn execute_within(
        &self,
        command: &str,
        arguments: Option<Value>,
        fds: &[std::os::fd::BorrowedFd<'_>],
        limit: Duration,
    ) -> Result<Value, MonitorError> {
        let args = arguments.unwrap_or(Value::Null);
        let call = self.client.execute_with_fds(command, args, fds);
        match tokio::time::timeout(limit, call).await {
            Ok(r) => r.map_err(|e| convert(e, &self.path)),
            Err(_) => Err(MonitorError::Timeout(command.to_string())),
        }
    }
}

fn convert(e: ClientError, path: &str) -> MonitorError {
    match e {
        ClientError::Command(q) => MonitorError::Command {
            class: serde_json::to_value(q.class)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "GenericError".into()),
            desc: q.desc,
        },
        ClientError::Disconnected => MonitorError::Closed,
        ClientError::Connect { source, .. } | ClientError::Io(source) => MonitorError::Io {
            path: path.to_string(),
            reason: source.to_string(),
        },
        ClientError::Protocol(p) => MonitorError::Protocol(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    /// A real socket peer speaking QMP, scripted.
    async fn serve_once(listener: UnixListener) {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"{\"QMP\":{\"version\":{\"qemu\":{\"major\":7,\"minor\":2,\"micro\":0},\"package\":\"\"},\"capabilities\":[]}}\n")
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

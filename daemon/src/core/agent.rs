//! The QEMU guest agent protocol (QEMU's `qga/` documentation), as the daemon speaks
//! it over the domain's `org.qemu.guest_agent.0` channel: the VMM listens on the
//! channel's unix socket, every byte written reaches the guest's virtio-serial port,
//! and `qemu-ga` in the guest answers.
//!
//! One exchange, step by step (libvirt's `qemu_agent.c` does the same, with
//! `guest-sync`):
//! 1. connect to the socket (one client at a time: the VMM serves one);
//! 2. write a raw `0xFF` byte, which makes the agent's JSON parser drop whatever
//!    half-read request an earlier client left, then
//!    `{"execute":"guest-sync-delimited","arguments":{"id":N}}`;
//! 3. the agent answers `0xFF` followed by `{"return":N}`: skip everything up to the
//!    `0xFF` (an error for the flushed junk, answers an earlier client never read),
//!    and sync answers with another id (a stale request still queued in the guest);
//!    no answer within [`SYNC_TIMEOUT`] means no agent listens;
//! 4. write the command, one JSON object on one line; read lines until one parses
//!    as a reply (`return` or `error`), bounded by the command's timeout.
//!
//! `guest-shutdown` and the `guest-suspend-*` commands answer nothing on success:
//! [`Agent::execute_no_reply`] takes the agent's silence (or its going away) as done.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

/// How long the handshake waits for the agent (libvirt's `QEMU_AGENT_WAIT_TIME`).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(5);
/// The default bound on one command (libvirt blocks without a bound by default; a
/// daemon that never answers again is worse than an error).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a command that answers nothing on success is given to fail instead.
const NO_REPLY_GRACE: Duration = Duration::from_secs(3);
/// The most one reply may hold (a guest is untrusted).
const MAX_REPLY: usize = 16 << 20;

/// Why an exchange with the agent failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The agent answered with an error object.
    #[error("unable to execute QEMU agent command '{command}': {desc}")]
    Command { command: String, desc: String },
    /// No agent answered the handshake: the guest has not opened its port.
    #[error("QEMU guest agent is not connected")]
    NotConnected,
    /// The channel's socket could not be reached.
    #[error("cannot connect to the guest agent socket {path}: {reason}")]
    Socket { path: String, reason: String },
    /// The agent answered the handshake but not the command in time, or went away.
    #[error("Guest agent not available for now")]
    Unavailable,
}

/// A connected, synchronised agent channel.
pub struct Agent {
    stream: UnixStream,
    /// Bytes read past the last reply.
    buf: Vec<u8>,
}

impl Agent {
    /// Connects to the channel socket at `path` and synchronises (steps 1-3).
    pub async fn connect(path: &Path) -> Result<Agent, AgentError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| AgentError::Socket {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let mut agent = Agent {
            stream,
            buf: Vec::new(),
        };
        agent.sync(sync_id(), SYNC_TIMEOUT).await?;
        Ok(agent)
    }

    /// The `guest-sync-delimited` handshake with id `id`, bounded by `timeout`.
    async fn sync(&mut self, id: u64, timeout: Duration) -> Result<(), AgentError> {
        let mut req = vec![0xFF];
        req.extend_from_slice(sync_request(id).as_bytes());
        self.write(&req)
            .await
            .map_err(|_| AgentError::NotConnected)?;
        let deadline = Instant::now() + timeout;
        loop {
            // Everything up to the last delimiter is junk or an older answer.
            if let Some(pos) = self.buf.iter().rposition(|b| *b == 0xFF) {
                self.buf.drain(..=pos);
            }
            while let Some(line) = take_line(&mut self.buf) {
                if sync_matches(&line, id) {
                    return Ok(());
                }
            }
            self.read_some(deadline)
                .await
                .map_err(|_| AgentError::NotConnected)?;
        }
    }

    /// Runs `cmd` (a whole request object) and returns its `return` value.
    pub async fn execute(&mut self, cmd: &Value, timeout: Duration) -> Result<Value, AgentError> {
        let name = command_name(cmd);
        self.write(format!("{cmd}\n").as_bytes())
            .await
            .map_err(|_| AgentError::Unavailable)?;
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(line) = take_line(&mut self.buf) {
                if let Some(reply) = parse_reply(&line, &name)? {
                    return reply;
                }
            }
            self.read_some(deadline).await?;
        }
    }

    /// Runs a command that answers nothing when it succeeds (`guest-shutdown`): an
    /// error reply within a short grace is reported, silence or the agent going away
    /// (the guest shutting down) is success.
    pub async fn execute_no_reply(&mut self, cmd: &Value) -> Result<(), AgentError> {
        match self.execute(cmd, NO_REPLY_GRACE).await {
            Ok(_) | Err(AgentError::Unavailable) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(data).await?;
        self.stream.flush().await
    }

    /// Reads what is there into the buffer, by `deadline`; end of file, an error or
    /// the deadline is [`AgentError::Unavailable`].
    async fn read_some(&mut self, deadline: Instant) -> Result<(), AgentError> {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                if self.buf.len() + n > MAX_REPLY {
                    return Err(AgentError::Unavailable);
                }
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            _ => Err(AgentError::Unavailable),
        }
    }
}

/// A fresh handshake id: different for every exchange, so that an answer to an older
/// one is recognised. Positive and below 2^53 (the agent parses JSON numbers).
fn sync_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    (now.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))) & ((1 << 52) - 1)
}

fn sync_request(id: u64) -> String {
    format!(
        "{}\n",
        json!({"execute": "guest-sync-delimited", "arguments": {"id": id}})
    )
}

/// Whether `line` is the answer to the handshake with `id`.
fn sync_matches(line: &[u8], id: u64) -> bool {
    serde_json::from_slice::<Value>(line)
        .ok()
        .and_then(|v| v.get("return").and_then(Value::as_u64))
        == Some(id)
}

/// Takes one complete line (without its newline, trimmed) off the front of `buf`;
/// blank lines are skipped.
fn take_line(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        let pos = buf.iter().position(|b| *b == b'\n')?;
        let mut line: Vec<u8> = buf.drain(..=pos).collect();
        line.pop();
        line.retain(|b| *b != 0xFF && *b != b'\r');
        if line.iter().any(|b| !b.is_ascii_whitespace()) {
            return Some(line);
        }
    }
}

/// The reply in `line` to command `name`: `None` for a line that is no reply (not an
/// object with `return` or `error`), `Some(Err)` for the agent's error.
fn parse_reply(line: &[u8], name: &str) -> Result<Option<Result<Value, AgentError>>, AgentError> {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(line) else {
        return Ok(None);
    };
    if let Some(r) = obj.remove("return") {
        return Ok(Some(Ok(r)));
    }
    if let Some(e) = obj.remove("error") {
        // libvirt's qemuAgentStringifyError: the description, else the class.
        let desc = e
            .get("desc")
            .and_then(Value::as_str)
            .or_else(|| e.get("class").and_then(Value::as_str))
            .unwrap_or("unknown error")
            .to_string();
        return Ok(Some(Err(AgentError::Command {
            command: name.to_string(),
            desc,
        })));
    }
    Ok(None)
}

/// The `execute` member of a request (for messages).
pub fn command_name(cmd: &Value) -> String {
    cmd.get("execute")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted agent on the other end of a socket pair: answers each line it
    /// reads with `answer(line)`.
    fn fake_agent(
        answer: impl Fn(&Value) -> Option<Vec<u8>> + Send + 'static,
        prefix: &'static [u8],
    ) -> UnixStream {
        let (ours, theirs) = UnixStream::pair().unwrap();
        tokio::spawn(async move {
            let mut s = theirs;
            let _ = s.write_all(prefix).await;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            loop {
                let n = match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(line) = take_line(&mut buf) {
                    let v: Value = serde_json::from_slice(&line).unwrap();
                    if let Some(a) = answer(&v) {
                        let _ = s.write_all(&a).await;
                    }
                }
            }
        });
        ours
    }

    /// Answers as qemu-ga does.
    fn qga(v: &Value) -> Option<Vec<u8>> {
        let line = match v["execute"].as_str()? {
            "guest-sync-delimited" => {
                let mut out = vec![0xFF];
                out.extend(format!("{}\n", json!({"return": v["arguments"]["id"]})).bytes());
                return Some(out);
            }
            "guest-ping" => json!({"return": {}}),
            "guest-get-time" => json!({"return": 1_700_000_000_123_456_789u64}),
            "guest-shutdown" => return None,
            other => json!({"error": {"class": "CommandNotFound",
                             "desc": format!("The command {other} has not been found")}}),
        };
        Some(format!("{line}\n").into_bytes())
    }

    async fn synced(stream: UnixStream) -> Result<Agent, AgentError> {
        let mut a = Agent {
            stream,
            buf: Vec::new(),
        };
        a.sync(42, Duration::from_millis(300)).await?;
        Ok(a)
    }

    #[test]
    fn lines_skip_blanks_and_delimiters() {
        let mut buf = b"\n  \n\xff{\"return\": 1}\r\n{\"ret".to_vec();
        assert_eq!(take_line(&mut buf).unwrap(), b"{\"return\": 1}");
        assert_eq!(take_line(&mut buf), None);
        assert_eq!(buf, b"{\"ret");
    }

    #[test]
    fn replies_and_errors_parse_like_libvirt() {
        let ok = parse_reply(b"{\"return\": {\"a\": 1}}", "x").unwrap();
        assert_eq!(ok, Some(Ok(json!({"a": 1}))));
        let err = parse_reply(
            b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"boom\"}}",
            "guest-x",
        )
        .unwrap()
        .unwrap()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to execute QEMU agent command 'guest-x': boom"
        );
        assert_eq!(parse_reply(b"garbage", "x").unwrap(), None);
        assert_eq!(parse_reply(b"{\"event\": 1}", "x").unwrap(), None);
    }

    #[tokio::test]
    async fn stale_sync_answers_and_junk_are_skipped() {
        // An earlier client's answer and junk arrive before ours.
        let stream = fake_agent(qga, b"{\"return\": 7}\n\xff{\"return\": 9}\njunk\n");
        let mut a = synced(stream).await.unwrap();
        let r = a
            .execute(&json!({"execute": "guest-ping"}), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r, json!({}));
        let t = a
            .execute(
                &json!({"execute": "guest-get-time"}),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(t.as_u64(), Some(1_700_000_000_123_456_789));
        let e = a
            .execute(&json!({"execute": "guest-nope"}), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("has not been found"), "{e}");
        // guest-shutdown answers nothing: success after the grace.
        a.execute_no_reply(&json!({"execute": "guest-shutdown"}))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_silent_channel_is_not_connected() {
        let stream = fake_agent(|_| None, b"");
        assert_eq!(synced(stream).await.err(), Some(AgentError::NotConnected));
    }

    #[tokio::test]
    async fn a_closed_channel_is_not_connected() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        assert_eq!(synced(ours).await.err(), Some(AgentError::NotConnected));
    }
}

//! `virsh qemu-monitor-command`: the QEMU program's DOMAIN_MONITOR_COMMAND passes the
//! user's command to the domain's QMP socket and returns the monitor's reply text.
//!
//! Like libvirt, each command gets our own `"id"` (`libvirt-N`) and the reply is the
//! monitor's complete JSON answer (`{"return":…,"id":…}` or `{"error":…,"id":…}`),
//! events in between are skipped. With the HMP flag the text is wrapped in
//! `human-monitor-command` and the reply is its output string. A fresh monitor
//! connection per command keeps the daemon's own monitor session untouched (the VMM's
//! QMP server takes several clients).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::error::{code, from, VirError};

/// How long a monitor command may take before the call fails.
const TIMEOUT: Duration = Duration::from_secs(30);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn failed(msg: impl std::fmt::Display) -> VirError {
    VirError::new(
        code::OPERATION_FAILED,
        from::QEMU,
        format!("operation failed: {msg}"),
    )
}

/// Runs `cmd` on the QMP socket at `qmp`.
pub async fn passthrough(qmp: &Path, cmd: &str, hmp: bool) -> Result<String, VirError> {
    let mut request: Value = if hmp {
        serde_json::json!({"execute": "human-monitor-command", "arguments": {"command-line": cmd}})
    } else {
        serde_json::from_str(cmd).map_err(|e| {
            VirError::new(
                code::INVALID_ARG,
                from::QEMU,
                format!("internal error: cannot parse json {cmd}: {e}"),
            )
        })?
    };
    let Some(obj) = request.as_object_mut() else {
        return Err(VirError::invalid_arg(
            "monitor command must be a JSON object",
        ));
    };
    let id = format!("libvirt-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    obj.insert("id".into(), Value::String(id.clone()));
    let reply = tokio::time::timeout(TIMEOUT, exchange(qmp, &request, &id))
        .await
        .map_err(|_| {
            VirError::new(
                68,
                from::QEMU,
                "Timed out during operation: cannot acquire state change lock (monitor command)",
            )
        })??;
    if hmp {
        let v: Value = serde_json::from_str(&reply).map_err(failed)?;
        if let Some(s) = v.get("return").and_then(Value::as_str) {
            return Ok(s.to_string());
        }
        return Err(failed(format!("HMP command failed: {reply}")));
    }
    Ok(reply)
}

async fn exchange(qmp: &Path, request: &Value, id: &str) -> Result<String, VirError> {
    let stream = UnixStream::connect(qmp).await.map_err(|e| {
        failed(format!(
            "cannot connect to the monitor socket '{}': {e}",
            qmp.display()
        ))
    })?;
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    // Greeting, then capabilities negotiation.
    let greeting = next(&mut lines).await?;
    if !greeting.contains("\"QMP\"") {
        return Err(failed(format!("unexpected monitor greeting: {greeting}")));
    }
    wr.write_all(b"{\"execute\":\"qmp_capabilities\",\"id\":\"libvirt-neg\"}\n")
        .await
        .map_err(|e| failed(format!("monitor write failed: {e}")))?;
    loop {
        let line = next(&mut lines).await?;
        let v: Value = serde_json::from_str(&line).map_err(failed)?;
        if v.get("id").and_then(Value::as_str) == Some("libvirt-neg") {
            if v.get("error").is_some() {
                return Err(failed(format!("monitor refused qmp_capabilities: {line}")));
            }
            break;
        }
    }
    let mut text = serde_json::to_string(request).map_err(failed)?;
    text.push('\n');
    wr.write_all(text.as_bytes())
        .await
        .map_err(|e| failed(format!("monitor write failed: {e}")))?;
    loop {
        let line = next(&mut lines).await?;
        let v: Value = serde_json::from_str(&line).map_err(failed)?;
        if v.get("id").and_then(Value::as_str) == Some(id) {
            return Ok(line.trim_end().to_string());
        }
    }
}

async fn next(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
) -> Result<String, VirError> {
    lines
        .next_line()
        .await
        .map_err(|e| failed(format!("monitor read failed: {e}")))?
        .ok_or_else(|| failed("monitor closed the connection"))
}

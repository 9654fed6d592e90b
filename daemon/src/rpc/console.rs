//! Finding a running domain's console for DOMAIN_OPEN_CONSOLE.
//!
//! libvirt attaches `virsh console` to the pty QEMU created for the serial port; we do
//! the same through the VMM's QMP `query-chardev` (QEMU's filename syntax):
//! `pty:/dev/pts/N` is opened in raw mode, `unix:PATH,server=on` is connected to, and a
//! serial port writing to a file (`file:PATH`, e.g. the daemon's `console.log`) gives a
//! read-only console that shows the file and follows it, discarding input.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

use super::error::{code, from, VirError};
use super::monitor;

/// A console connection: both directions of the guest's character device.
pub enum ConsoleIo {
    Pty(tokio::fs::File),
    Unix(tokio::net::UnixStream),
    /// Follows a log file; writes are accepted and dropped.
    Follow(DuplexStream),
}

fn failed(msg: impl std::fmt::Display) -> VirError {
    VirError::new(
        code::OPERATION_FAILED,
        from::QEMU,
        format!("operation failed: {msg}"),
    )
}

/// Opens the console `dev_name` (`serial0`, `console0`; the first serial port when
/// `None`) of the domain whose QMP socket is `qmp`.
pub async fn open(qmp: &Path, dev_name: Option<&str>) -> Result<ConsoleIo, VirError> {
    let reply = monitor::passthrough(qmp, r#"{"execute":"query-chardev"}"#, false).await?;
    let v: Value = serde_json::from_str(&reply).map_err(failed)?;
    let devs = v["return"].as_array().cloned().unwrap_or_default();
    let chosen = devs.iter().find(|d| {
        let label = d["label"].as_str().unwrap_or("");
        match dev_name {
            Some(n) => label == format!("char{n}") || label == n,
            None => label.starts_with("charserial") || label.starts_with("charconsole"),
        }
    });
    let Some(dev) = chosen else {
        return Err(failed(format!(
            "cannot find character device {}",
            dev_name.unwrap_or("<null>")
        )));
    };
    let filename = dev["filename"].as_str().unwrap_or("");
    if let Some(pty) = filename.strip_prefix("pty:") {
        return open_pty(Path::new(pty)).map(ConsoleIo::Pty);
    }
    if let Some(rest) = filename.strip_prefix("unix:") {
        let path = rest.split(',').next().unwrap_or(rest);
        let s = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| failed(format!("cannot connect to console socket '{path}': {e}")))?;
        return Ok(ConsoleIo::Unix(s));
    }
    if let Some(path) = filename.strip_prefix("file:") {
        return Ok(ConsoleIo::Follow(follow(PathBuf::from(path))));
    }
    Err(VirError::new(
        code::OPERATION_FAILED,
        from::QEMU,
        format!(
            "operation failed: character device {} is not using a PTY",
            dev["label"]
                .as_str()
                .unwrap_or("?")
                .trim_start_matches("char")
        ),
    ))
}

fn open_pty(path: &Path) -> Result<tokio::fs::File, VirError> {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .map_err(|e| failed(format!("cannot open console pty '{}': {e}", path.display())))?;
    // Bytes must pass unchanged (no echo, no CR/LF translation), as with libvirt.
    if let Ok(mut t) = tcgetattr(&f) {
        cfmakeraw(&mut t);
        let _ = tcsetattr(&f, SetArg::TCSANOW, &t);
    }
    Ok(tokio::fs::File::from_std(f))
}

/// A pipe fed with `path`'s contents, then whatever is appended to it.
fn follow(path: PathBuf) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let (mut rd, mut wr) = tokio::io::split(ours);
        // Drain what the client types; a file has no input side.
        tokio::spawn(async move {
            let mut sink = [0u8; 1024];
            while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let Ok(mut f) = tokio::fs::File::open(&path).await else {
            return;
        };
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match f.read(&mut buf).await {
                Ok(0) => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(n) => {
                    if wr.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    theirs
}

impl AsyncRead for ConsoleIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ConsoleIo::Pty(f) => Pin::new(f).poll_read(cx, buf),
            ConsoleIo::Unix(s) => Pin::new(s).poll_read(cx, buf),
            ConsoleIo::Follow(d) => Pin::new(d).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ConsoleIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ConsoleIo::Pty(f) => Pin::new(f).poll_write(cx, data),
            ConsoleIo::Unix(s) => Pin::new(s).poll_write(cx, data),
            ConsoleIo::Follow(d) => Pin::new(d).poll_write(cx, data),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ConsoleIo::Pty(f) => Pin::new(f).poll_flush(cx),
            ConsoleIo::Unix(s) => Pin::new(s).poll_flush(cx),
            ConsoleIo::Follow(d) => Pin::new(d).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ConsoleIo::Pty(f) => Pin::new(f).poll_shutdown(cx),
            ConsoleIo::Unix(s) => Pin::new(s).poll_shutdown(cx),
            ConsoleIo::Follow(d) => Pin::new(d).poll_shutdown(cx),
        }
    }
}

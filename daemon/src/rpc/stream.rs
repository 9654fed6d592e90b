//! Console streams (`virsh console`): after DOMAIN_OPEN_CONSOLE's void reply, raw bytes
//! flow both ways as STREAM packets carrying the call's procedure and serial with status
//! CONTINUE (no XDR inside). The client ends with an empty STREAM OK, which we echo; when
//! the guest side goes away we send the empty STREAM OK ourselves; when another client
//! takes the console over (`--force`) this one gets STREAM ERROR.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::conn::Outbox;
use super::error::{code, from, VirError};
use super::packet::{Header, MessageType, Status};
use super::xdr::to_bytes;

/// Largest chunk of console output per STREAM packet (libvirt uses 256 KiB; consoles
/// never come close).
const CHUNK: usize = 64 * 1024;

/// The current holder of one console: its session number and the sender that kicks it
/// off.
type Holder = (u64, oneshot::Sender<()>);

/// Who holds each domain's console, so a second client is refused unless it forces.
#[derive(Debug, Default)]
pub struct ConsoleOwners {
    /// Holders by domain UUID.
    inner: Mutex<HashMap<[u8; 16], Holder>>,
    next: std::sync::atomic::AtomicU64,
}

impl ConsoleOwners {
    /// Claims `uuid`'s console; with `force` an existing holder is kicked off.
    pub fn claim(self: &Arc<Self>, uuid: [u8; 16], force: bool) -> Result<Claim, VirError> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, kick)) = map.get(&uuid) {
            if !kick.is_closed() && !force {
                return Err(VirError::new(
                    code::OPERATION_FAILED,
                    from::NONE,
                    "operation failed: Active console session exists for this domain",
                ));
            }
        }
        if let Some((_, kick)) = map.remove(&uuid) {
            let _ = kick.send(());
        }
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        map.insert(uuid, (n, tx));
        Ok(Claim {
            owners: self.clone(),
            uuid,
            session: n,
            kicked: rx,
        })
    }

    fn release(&self, uuid: [u8; 16], session: u64) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&uuid).is_some_and(|(n, _)| *n == session) {
            map.remove(&uuid);
        }
    }
}

/// The right to a domain's console, held by one stream.
pub struct Claim {
    owners: Arc<ConsoleOwners>,
    uuid: [u8; 16],
    session: u64,
    kicked: oneshot::Receiver<()>,
}

/// One open console stream on a connection.
pub struct ConsoleStream {
    input: mpsc::Sender<Vec<u8>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    out: Outbox,
    header: Header,
}

impl ConsoleStream {
    /// Starts forwarding between `io` (the guest console) and the client. `call` is the
    /// header of the DOMAIN_OPEN_CONSOLE call (its reply must already be queued).
    pub fn start<IO>(io: IO, claim: Claim, out: Outbox, call: &Header) -> Self
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let Claim {
            owners,
            uuid,
            session,
            mut kicked,
        } = claim;
        let header = Header {
            kind: MessageType::Stream,
            status: Status::Continue,
            ..*call
        };
        let (mut rd, mut wr) = tokio::io::split(io);
        let (input, mut input_rx) = mpsc::channel::<Vec<u8>>(64);
        let writer = tokio::spawn(async move {
            while let Some(data) = input_rx.recv().await {
                if wr.write_all(&data).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
            }
        });
        let rout = out.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                tokio::select! {
                    r = rd.read(&mut buf) => match r {
                        Ok(0) | Err(_) => {
                            let end = Header { status: Status::Ok, ..header };
                            rout.send(&end, &[]).await;
                            break;
                        }
                        Ok(n) => {
                            if !rout.send(&header, &buf[..n]).await {
                                break;
                            }
                        }
                    },
                    _ = &mut kicked => {
                        let e = VirError::new(code::OPERATION_FAILED, from::STREAMS,
                            "operation failed: console has been taken over by another client");
                        let err = Header { status: Status::Error, ..header };
                        rout.send(&err, &to_bytes(&e.to_remote())).await;
                        break;
                    }
                }
            }
            owners.release(uuid, session);
        });
        Self {
            input,
            reader,
            writer,
            out,
            header,
        }
    }

    /// Forwards client bytes to the guest; false when the console is gone.
    pub async fn write(&mut self, data: Vec<u8>) -> bool {
        if data.is_empty() {
            return true;
        }
        self.input.send(data).await.is_ok()
    }

    /// The client finished the stream: stop, and confirm with an empty STREAM OK.
    pub async fn finish(self) {
        let done = self.reader.is_finished();
        self.reader.abort();
        self.writer.abort();
        if !done {
            let end = Header {
                status: Status::Ok,
                ..self.header
            };
            self.out.send(&end, &[]).await;
        }
    }

    /// The client aborted or disconnected: stop without a word.
    pub fn abort(self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Drop for ConsoleStream {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_console_is_refused_unless_forced() {
        let owners = Arc::new(ConsoleOwners::default());
        let u = [7u8; 16];
        let first = owners.claim(u, false).unwrap();
        let e = owners.claim(u, false).err().unwrap();
        assert!(e.message.contains("Active console session exists"), "{e}");
        // --force takes over and tells the first holder.
        let mut first_kicked = first.kicked;
        let second = owners.claim(u, true).unwrap();
        assert_eq!(first_kicked.try_recv(), Ok(()));
        // Once a holder is gone, anyone may attach.
        drop(second);
        assert!(owners.claim(u, false).is_ok());
        // Other domains are independent.
        assert!(owners.claim([8u8; 16], false).is_ok());
    }
}

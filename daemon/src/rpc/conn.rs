//! One client connection: reads packets, answers calls in order, forwards events and
//! console streams, answers keepalive pings.
//!
//! A reader loop owns the connection state; everything the client receives goes through
//! one bounded queue to a writer task, so replies, event messages and stream data never
//! interleave inside a packet. Framing errors (bad length, unknown message type, a
//! truncated packet) close the connection; a call that cannot be decoded or is unknown
//! gets an error reply and the connection stays up.
//!
//! File descriptors travel as libvirt's `virSocketSendFD`/`virSocketRecvFD` send them:
//! after a CALL_WITH_FDS or REPLY_WITH_FDS packet (whose payload starts with the fd
//! count), one zero byte per fd with the fd attached (SCM_RIGHTS).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::error::VirError;
use super::events::Subscriptions;
use super::packet::{
    self, Header, MessageType, Packet, Status, PROGRAM_KEEPALIVE, PROGRAM_QEMU, PROGRAM_REMOTE,
    PROTOCOL_VERSION,
};
use super::proto::keepalive;
use super::stream::ConsoleStream;
use super::xdr::{to_bytes, Xdr};
use super::Shared;

/// What a client may do, decided when it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
    /// Connected to the read-write socket without the right to (uid shown in errors).
    Denied {
        uid: u32,
    },
}

/// Packets queued for the writer; bounded so a client that stops reading cannot make
/// the daemon buffer without limit (a stalled client stalls only its own connection).
const OUTBOX_DEPTH: usize = 256;

/// Most fds one packet may carry (libvirt's `VIR_NET_MESSAGE_NUM_FDS_MAX`).
const MAX_FDS: u32 = 32;

/// One encoded packet for the writer and the fds that follow it.
#[derive(Debug)]
pub struct Outgoing {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
}

/// The sending side of a connection.
#[derive(Debug, Clone)]
pub struct Outbox(mpsc::Sender<Outgoing>);

impl Outbox {
    /// Queues an encoded packet; false once the connection is gone.
    pub async fn send(&self, header: &Header, payload: &[u8]) -> bool {
        self.send_with_fds(header, payload, Vec::new()).await
    }

    /// Queues a packet followed by `fds` (its header says REPLY_WITH_FDS and its
    /// payload starts with their count).
    pub async fn send_with_fds(&self, header: &Header, payload: &[u8], fds: Vec<OwnedFd>) -> bool {
        let bytes = packet::encode(header, payload);
        self.0.send(Outgoing { bytes, fds }).await.is_ok()
    }

    /// Queues a MESSAGE (event) packet: libvirtd sends these with serial 1.
    pub async fn message<T: Xdr>(&self, prog: u32, proc_: i32, body: &T) -> bool {
        let h = Header {
            prog,
            vers: PROTOCOL_VERSION,
            proc_,
            kind: MessageType::Message,
            serial: 1,
            status: Status::Ok,
        };
        self.send(&h, &to_bytes(body)).await
    }

    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// Per-connection state the procedures see.
pub struct Conn {
    pub shared: Arc<Shared>,
    pub access: Access,
    pub out: Outbox,
    /// CONNECT_OPEN succeeded.
    pub opened: bool,
    /// The URI the client opened (for CONNECT_GET_URI).
    pub uri: String,
    /// Domain event callbacks registered on this connection.
    pub events: Subscriptions,
    /// Network event callbacks registered on this connection.
    pub net_events: super::network::NetSubscriptions,
    /// Open console streams by the serial of the call that opened them.
    pub streams: HashMap<u32, ConsoleStream>,
    /// Volume upload/download streams and storage pool event callbacks.
    pub storage: super::storage_stream::ConnStorage,
    /// The fds that came with the CALL_WITH_FDS being handled.
    fds: Vec<OwnedFd>,
}

/// Serves one client until it disconnects or breaks the framing. `uri` is what
/// CONNECT_GET_URI answers when the client opens with an empty name: the socket it
/// came through decides (`oxvirt:///…`, or `qemu:///…` on libvirt's QEMU sockets).
pub async fn serve(shared: Arc<Shared>, stream: UnixStream, access: Access, uri: String) {
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(OUTBOX_DEPTH);
    let writer = tokio::spawn(write_loop(wr, rx));
    let out = Outbox(tx);
    let mut conn = Conn {
        uri,
        events: Subscriptions::new(shared.clone(), out.clone()),
        net_events: Default::default(),
        shared,
        access,
        out,
        opened: false,
        streams: HashMap::new(),
        storage: Default::default(),
        fds: Vec::new(),
    };
    loop {
        match Packet::read(&mut rd).await {
            Ok(Some(p)) => {
                if p.header.kind == MessageType::CallWithFds {
                    match recv_fds(&rd, &p.payload).await {
                        Ok(fds) => conn.fds = fds,
                        Err(e) => {
                            warn!("closing libvirt RPC connection: {e}");
                            break;
                        }
                    }
                }
                let go_on = conn.handle(p).await;
                // Fds the procedure did not take are closed now.
                conn.fds.clear();
                if !go_on {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                warn!("closing libvirt RPC connection: {e}");
                break;
            }
        }
    }
    conn.events.clear();
    conn.net_events.clear();
    for (_, s) in conn.streams.drain() {
        s.abort();
    }
    drop(conn);
    let _ = writer.await;
}

/// The fds announced at the start of a CALL_WITH_FDS payload, each of which follows
/// the packet with one byte.
async fn recv_fds(
    rd: &tokio::net::unix::OwnedReadHalf,
    payload: &[u8],
) -> std::io::Result<Vec<OwnedFd>> {
    let count = payload
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| std::io::Error::other("CALL_WITH_FDS packet without an fd count"))?;
    if count > MAX_FDS {
        return Err(std::io::Error::other(format!(
            "CALL_WITH_FDS announces {count} fds (at most {MAX_FDS})"
        )));
    }
    let mut fds = Vec::new();
    for i in 0..count {
        let mut byte = [0u8; 1];
        let (n, got) = qmp::fdpass::recv(rd.as_ref(), &mut byte).await?;
        match (n, got.into_iter().next()) {
            (1, Some(fd)) => fds.push(fd),
            _ => {
                return Err(std::io::Error::other(format!(
                    "fd {i} of {count} announced by CALL_WITH_FDS did not come"
                )))
            }
        }
    }
    Ok(fds)
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(out) = rx.recv().await {
        if wr.write_all(&out.bytes).await.is_err() {
            break;
        }
        for fd in &out.fds {
            if let Err(e) = qmp::fdpass::send(wr.as_ref(), &[0], &[fd.as_fd()]).await {
                warn!("cannot pass a file descriptor to the client: {e}");
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
}

impl Conn {
    /// Handles one packet; false when the connection should close.
    async fn handle(&mut self, p: Packet) -> bool {
        let h = p.header;
        match (h.prog, h.kind) {
            (PROGRAM_KEEPALIVE, MessageType::Message) => {
                if h.proc_ == keepalive::PING {
                    let pong = Header {
                        proc_: keepalive::PONG,
                        serial: 0,
                        ..h
                    };
                    return self.out.send(&pong, &[]).await;
                }
                true
            }
            (PROGRAM_REMOTE | PROGRAM_QEMU, MessageType::Call)
            | (PROGRAM_REMOTE, MessageType::CallWithFds)
                if h.vers == PROTOCOL_VERSION =>
            {
                // With fds (they came after the packet: serve), the arguments follow
                // their count.
                let args = match h.kind {
                    MessageType::CallWithFds => p.payload.get(4..).unwrap_or_default(),
                    _ => &p.payload,
                };
                match self.call(&h, args).await {
                    Ok(None) => true,
                    Ok(Some(payload)) => self.reply(&h, Ok(payload)).await,
                    Err(e) => self.reply(&h, Err(e)).await,
                }
            }
            (_, MessageType::Call | MessageType::CallWithFds) => {
                let e = if h.kind == MessageType::CallWithFds {
                    VirError::no_support("file descriptor passing")
                } else {
                    VirError::new(
                        super::error::code::RPC,
                        super::error::from::RPC,
                        format!("cannot find program {} version {}", h.prog as i32, h.vers),
                    )
                };
                self.reply(&h, Err(e)).await
            }
            (PROGRAM_REMOTE, MessageType::Stream) => {
                self.stream_packet(&h, p.payload).await;
                true
            }
            // A hole in a sparse volume upload.
            (PROGRAM_REMOTE, MessageType::StreamHole) if self.storage.owns(h.serial) => {
                let out = self.out.clone();
                self.storage.hole(&h, &p.payload, &out).await;
                true
            }
            // Replies/messages from a client, stream holes: nothing to do.
            _ => {
                debug!(?h, "ignoring packet");
                true
            }
        }
    }

    /// Sends the reply to a call.
    pub async fn reply(&self, h: &Header, result: Result<Vec<u8>, VirError>) -> bool {
        match result {
            Ok(payload) => self.out.send(&h.reply(Status::Ok), &payload).await,
            Err(e) => {
                debug!(proc_ = h.proc_, "call failed: {}", e.message);
                self.out
                    .send(&h.reply(Status::Error), &to_bytes(&e.to_remote()))
                    .await
            }
        }
    }

    /// Sends a successful reply whose fds follow it (REPLY_WITH_FDS: the payload
    /// starts with their count, as `virNetMessageEncodeNumFDs` writes it).
    pub async fn reply_with_fds(&self, h: &Header, payload: Vec<u8>, fds: Vec<OwnedFd>) -> bool {
        let mut header = h.reply(Status::Ok);
        header.kind = MessageType::ReplyWithFds;
        let mut body = (fds.len() as u32).to_be_bytes().to_vec();
        body.extend_from_slice(&payload);
        self.out.send_with_fds(&header, &body, fds).await
    }

    /// The first fd that came with the call being handled (`virNetMessageDupFD`).
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        (!self.fds.is_empty()).then(|| self.fds.remove(0))
    }

    /// Routes client STREAM packets to the console they belong to.
    async fn stream_packet(&mut self, h: &Header, payload: Vec<u8>) {
        if self.storage.owns(h.serial) {
            let out = self.out.clone();
            self.storage.packet(h, payload, &out).await;
            return;
        }
        let Some(s) = self.streams.get_mut(&h.serial) else {
            return;
        };
        match h.status {
            Status::Continue => {
                if !s.write(payload).await {
                    let s = self.streams.remove(&h.serial);
                    if let Some(s) = s {
                        s.abort();
                    }
                }
            }
            Status::Ok => {
                // virStreamFinish: confirm with an empty OK, like libvirtd.
                if let Some(s) = self.streams.remove(&h.serial) {
                    s.finish().await;
                }
            }
            Status::Error => {
                if let Some(s) = self.streams.remove(&h.serial) {
                    s.abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fds_after_a_call_are_received_and_bad_counts_refused() {
        let (client, server) = UnixStream::pair().unwrap();
        let (rd, _wr) = server.into_split();
        let (keep, give) = std::os::unix::net::UnixStream::pair().unwrap();
        // virSocketSendFD: one zero byte carrying the fd.
        qmp::fdpass::send(&client, &[0], &[give.as_fd()])
            .await
            .unwrap();
        let fds = recv_fds(&rd, &1u32.to_be_bytes()).await.unwrap();
        assert_eq!(fds.len(), 1);
        drop(keep);
        let e = recv_fds(&rd, &33u32.to_be_bytes()).await.unwrap_err();
        assert!(e.to_string().contains("33 fds"), "{e}");
        assert!(recv_fds(&rd, &[0, 0]).await.is_err());
        // A plain byte where an fd was announced.
        qmp::fdpass::send(&client, &[0], &[]).await.unwrap();
        let e = recv_fds(&rd, &1u32.to_be_bytes()).await.unwrap_err();
        assert!(e.to_string().contains("did not come"), "{e}");
    }
}

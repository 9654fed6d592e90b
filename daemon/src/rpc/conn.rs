//! One client connection: reads packets, answers calls in order, forwards events and
//! console streams, answers keepalive pings.
//!
//! A reader loop owns the connection state; everything the client receives goes through
//! one bounded queue to a writer task, so replies, event messages and stream data never
//! interleave inside a packet. Framing errors (bad length, unknown message type, a
//! truncated packet) close the connection; a call that cannot be decoded or is unknown
//! gets an error reply and the connection stays up.

use std::collections::HashMap;
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

/// The sending side of a connection.
#[derive(Debug, Clone)]
pub struct Outbox(mpsc::Sender<Vec<u8>>);

impl Outbox {
    /// Queues an encoded packet; false once the connection is gone.
    pub async fn send(&self, header: &Header, payload: &[u8]) -> bool {
        self.0.send(packet::encode(header, payload)).await.is_ok()
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
    };
    loop {
        match Packet::read(&mut rd).await {
            Ok(Some(p)) => {
                if !conn.handle(p).await {
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

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = rx.recv().await {
        if wr.write_all(&bytes).await.is_err() {
            break;
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
            (PROGRAM_REMOTE | PROGRAM_QEMU, MessageType::Call) if h.vers == PROTOCOL_VERSION => {
                match self.call(&h, &p.payload).await {
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

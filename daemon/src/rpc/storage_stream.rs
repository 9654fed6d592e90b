//! Per-connection storage state: volume upload/download streams and storage pool
//! event callbacks.
//!
//! Upload (`vol-upload`): after VOL_UPLOAD's void reply the client sends STREAM
//! CONTINUE packets of raw bytes (≤ 262120 each) and an empty STREAM OK; a blocking
//! thread writes them to the file in order (a bounded queue holds the client back when
//! the disk is slower), and once all is written the OK is echoed. Download
//! (`vol-download`) mirrors it: we send CONTINUE packets, then an empty CONTINUE
//! (end of data, as libvirtd marks it), and echo the client's closing OK. A failed write or read ends the stream with STREAM ERROR.
//! Sparse streams (the SPARSE_STREAM flag, `--sparse` in virsh): holes travel as
//! STREAM_HOLE packets (`{hyper length; uint flags}`) both ways; a download finds them
//! with `SEEK_DATA`/`SEEK_HOLE`, an upload skips them so they read as zeros
//! ([`crate::storage::sparse`]).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::conn::Outbox;
use super::error::{code, from, VirError};
use super::packet::{Header, MessageType, Status, PROGRAM_REMOTE};
use super::storage::wire_pool;
use super::storage_proto::{proc_, PoolLifecycleMsg, PoolRefreshMsg};
use super::xdr::{from_bytes, to_bytes, xdr_struct};
use crate::storage::sparse::Extent;
use crate::storage::{PoolEvent, Storage};

/// libvirt's largest stream payload (`VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX`).
const CHUNK: usize = 262_120;

/// Upload chunks queued for the writer thread.
const UPLOAD_QUEUE: usize = 16;

/// What the client sent on an upload stream.
enum Piece {
    Data(Vec<u8>),
    Hole(u64),
}

xdr_struct! {
    /// `remote_stream_hole`.
    pub struct StreamHole { pub length: i64, pub flags: u32 }
}

enum VolStream {
    Upload {
        data: mpsc::Sender<Piece>,
        writer: JoinHandle<std::io::Result<()>>,
        /// Refreshed once the upload is complete (libvirt does the same, with a pool
        /// refresh event).
        pool: (Storage, String),
    },
    Download {
        reader: JoinHandle<()>,
    },
}

type Registry = Arc<Mutex<HashMap<i32, (i32, Option<[u8; 16]>)>>>;

/// What one connection holds of the storage front end.
#[derive(Default)]
pub struct ConnStorage {
    streams: HashMap<u32, (VolStream, Header)>,
    regs: Registry,
    task: Option<JoinHandle<()>>,
}

fn stream_header(call: &Header, status: Status) -> Header {
    Header {
        kind: MessageType::Stream,
        status,
        ..*call
    }
}

async fn send_error(out: &Outbox, call: &Header, msg: String) {
    let e = VirError::new(code::OPERATION_FAILED, from::STREAMS, msg);
    out.send(
        &stream_header(call, Status::Error),
        &to_bytes(&e.to_remote()),
    )
    .await;
}

impl ConnStorage {
    /// Starts receiving `vol-upload` data into `file` (at most `length` bytes when
    /// not 0). The call's void reply must already be queued.
    pub fn start_upload(
        &mut self,
        mut file: std::fs::File,
        length: u64,
        pool: (Storage, String),
        call: &Header,
    ) {
        let (data, mut rx) = mpsc::channel::<Piece>(UPLOAD_QUEUE);
        let writer = tokio::task::spawn_blocking(move || {
            let mut left = if length == 0 { u64::MAX } else { length };
            while let Some(piece) = rx.blocking_recv() {
                match piece {
                    Piece::Data(buf) => {
                        let n = (buf.len() as u64).min(left) as usize;
                        file.write_all(&buf[..n])?;
                        left -= n as u64;
                    }
                    Piece::Hole(len) => {
                        let n = len.min(left);
                        crate::storage::sparse::skip_hole(&mut file, n)?;
                        left -= n;
                    }
                }
            }
            file.flush()
        });
        self.streams.insert(
            call.serial,
            (VolStream::Upload { data, writer, pool }, *call),
        );
    }

    /// Starts sending `len` bytes of `file` as a `vol-download` stream.
    pub fn start_download(&mut self, file: std::fs::File, len: u64, out: Outbox, call: &Header) {
        self.start_download_sparse(file, len, false, out, call);
    }

    /// As [`ConnStorage::start_download`]; with `sparse`, holes are sent as STREAM_HOLE
    /// packets (VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM).
    pub fn start_download_sparse(
        &mut self,
        file: std::fs::File,
        len: u64,
        sparse: bool,
        out: Outbox,
        call: &Header,
    ) {
        let handle = tokio::runtime::Handle::current();
        let call2 = *call;
        let reader = tokio::task::spawn_blocking(move || {
            let data = stream_header(&call2, Status::Continue);
            let hole = Header {
                kind: MessageType::StreamHole,
                ..data
            };
            if let Err(e) = send_file(&handle, &out, &data, &hole, file, len, sparse) {
                handle.block_on(send_error(&out, &call2, format!("cannot read volume: {e}")));
                return;
            }
            // End of data: an empty CONTINUE (libvirtd's EOF); the client then finishes
            // with OK, which we confirm.
            handle.block_on(out.send(&data, &[]));
        });
        self.streams
            .insert(call.serial, (VolStream::Download { reader }, *call));
    }

    /// Handles a client STREAM_HOLE packet of a sparse upload.
    pub async fn hole(&mut self, h: &Header, payload: &[u8], out: &Outbox) {
        let Some((VolStream::Upload { data, .. }, call)) = self.streams.get(&h.serial) else {
            return;
        };
        let call = *call;
        let hole = match from_bytes::<StreamHole>(payload) {
            Ok(hh) if hh.length >= 0 => hh,
            _ => {
                send_error(out, &call, "malformed stream hole".into()).await;
                self.streams.remove(&h.serial);
                return;
            }
        };
        if data.send(Piece::Hole(hole.length as u64)).await.is_err() {
            self.streams.remove(&h.serial);
            send_error(out, &call, "volume writer stopped".into()).await;
        }
    }

    /// Whether a client STREAM packet with this serial belongs to a volume stream.
    pub fn owns(&self, serial: u32) -> bool {
        self.streams.contains_key(&serial)
    }

    /// Handles a client STREAM packet of a volume stream.
    pub async fn packet(&mut self, h: &Header, payload: Vec<u8>, out: &Outbox) {
        let Some((stream, call)) = self.streams.remove(&h.serial) else {
            return;
        };
        match (stream, h.status) {
            (VolStream::Upload { data, writer, pool }, Status::Continue) => {
                if data.send(Piece::Data(payload)).await.is_ok() {
                    self.streams
                        .insert(h.serial, (VolStream::Upload { data, writer, pool }, call));
                    return;
                }
                // The writer stopped: tell the client why.
                let why = match writer.await {
                    Ok(Err(e)) => format!("cannot write volume: {e}"),
                    _ => "volume writer stopped".to_string(),
                };
                send_error(out, &call, why).await;
            }
            (VolStream::Upload { data, writer, pool }, Status::Ok) => {
                drop(data);
                match writer.await {
                    Ok(Ok(())) => {
                        out.send(&stream_header(&call, Status::Ok), &[]).await;
                        let (storage, name) = pool;
                        tokio::spawn(async move {
                            if let Err(e) = storage.refresh_pool(&name, 0).await {
                                tracing::debug!(pool = name, error = %e, "refresh after upload");
                            }
                        });
                    }
                    Ok(Err(e)) => send_error(out, &call, format!("cannot write volume: {e}")).await,
                    Err(e) => send_error(out, &call, format!("volume writer failed: {e}")).await,
                }
            }
            (VolStream::Download { reader }, Status::Ok) => {
                // virStreamFinish after our end of stream: confirm it.
                let _ = reader.await;
                out.send(&stream_header(&call, Status::Ok), &[]).await;
            }
            (VolStream::Download { reader }, Status::Continue) => {
                // Data from the client on a download: ignore it, keep going.
                self.streams
                    .insert(h.serial, (VolStream::Download { reader }, call));
            }
            (VolStream::Upload { writer, .. }, Status::Error) => writer.abort(),
            (VolStream::Download { reader }, Status::Error) => reader.abort(),
        }
    }

    /// Registers a storage pool event callback.
    pub fn register(
        &mut self,
        cb: i32,
        event_id: i32,
        pool: Option<[u8; 16]>,
        storage: &Storage,
        out: &Outbox,
    ) -> Result<(), VirError> {
        if !(0..=1).contains(&event_id) {
            return Err(VirError::invalid_arg(format!(
                "unsupported storage pool event ID {event_id}"
            )));
        }
        self.regs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cb, (event_id, pool));
        if self.task.is_none() {
            self.task = Some(tokio::spawn(forward(
                storage.subscribe(),
                self.regs.clone(),
                out.clone(),
            )));
        }
        Ok(())
    }

    pub fn deregister(&mut self, cb: i32) -> Result<(), VirError> {
        self.regs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&cb)
            .map(|_| ())
            .ok_or_else(|| VirError::invalid_arg(format!("callback {cb} not registered")))
    }

    /// Drops every callback and stream (connection closing).
    pub fn clear(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.regs.lock().unwrap_or_else(|e| e.into_inner()).clear();
        for (_, (s, _)) in self.streams.drain() {
            match s {
                VolStream::Upload { writer, .. } => writer.abort(),
                VolStream::Download { reader } => reader.abort(),
            }
        }
    }
}

impl Drop for ConnStorage {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Sends `len` bytes of `file` from its position: data in CONTINUE packets, holes
/// (when `sparse`) as STREAM_HOLE packets. Returns early when the client is gone.
fn send_file(
    handle: &tokio::runtime::Handle,
    out: &Outbox,
    data: &Header,
    hole: &Header,
    mut file: std::fs::File,
    len: u64,
    sparse: bool,
) -> std::io::Result<()> {
    use std::io::Seek;
    use std::os::unix::fs::FileExt;
    let start = file.stream_position()?;
    let extents = if sparse {
        crate::storage::sparse::extents(&file, start, start + len)?
    } else {
        vec![Extent::Data { offset: start, len }]
    };
    let mut buf = vec![0u8; CHUNK];
    for e in extents {
        match e {
            Extent::Hole { len } => {
                let h = StreamHole {
                    length: len as i64,
                    flags: 0,
                };
                if !handle.block_on(out.send(hole, &to_bytes(&h))) {
                    return Ok(());
                }
            }
            Extent::Data { mut offset, len } => {
                let end = offset + len;
                while offset < end {
                    let want = (end - offset).min(CHUNK as u64) as usize;
                    let n = file.read_at(&mut buf[..want], offset)?;
                    if n == 0 {
                        return Ok(());
                    }
                    if !handle.block_on(out.send(data, &buf[..n])) {
                        return Ok(());
                    }
                    offset += n as u64;
                }
            }
        }
    }
    Ok(())
}

/// Sends matching storage events to the client until the connection goes away.
async fn forward(mut rx: tokio::sync::broadcast::Receiver<PoolEvent>, regs: Registry, out: Outbox) {
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let pool = wire_pool(ev.pool());
        let mut targets: Vec<i32> = regs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, (id, p))| *id == ev.id() && p.is_none_or(|u| u == pool.uuid))
            .map(|(cb, _)| *cb)
            .collect();
        targets.sort_unstable();
        for cb in targets {
            let ok = match &ev {
                PoolEvent::Lifecycle { event, detail, .. } => {
                    let m = PoolLifecycleMsg {
                        callback_id: cb,
                        pool: pool.clone(),
                        event: *event,
                        detail: *detail,
                    };
                    out.message(PROGRAM_REMOTE, proc_::POOL_EVENT_LIFECYCLE, &m)
                        .await
                }
                PoolEvent::Refresh { .. } => {
                    let m = PoolRefreshMsg {
                        callback_id: cb,
                        pool: pool.clone(),
                    };
                    out.message(PROGRAM_REMOTE, proc_::POOL_EVENT_REFRESH, &m)
                        .await
                }
            };
            if !ok {
                return;
            }
        }
    }
}

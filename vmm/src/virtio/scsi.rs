//! virtio-scsi (virtio 1.2 §5.6): a SCSI host adapter whose targets are the
//! [`ScsiTarget`]s of `crate::scsi`.
//!
//! Queues: 0 control (task management, asynchronous notification queries),
//! 1 event, 2 requests. A request chain is the driver's header (8-byte LUN, tag,
//! task attributes, CDB of `cdb_size` bytes) and data-out buffers, then the
//! device's response (sense length, residual, status, response, `sense_size`
//! bytes of sense) and data-in buffers. The LUN field is SAM's single-level
//! format as Linux and SeaBIOS write it: byte 0 = 1, byte 1 = target id, bytes
//! 2-3 = the LUN (flat space). A request to a target id no unit uses is
//! answered `VIRTIO_SCSI_S_BAD_TARGET` without a SCSI status (SeaBIOS scans all
//! 256 ids this way).
//!
//! Hot-plug (`VIRTIO_SCSI_F_HOTPLUG`, QEMU's default): the units live in a
//! [`ScsiBus`] shared by the worker and the host side, which adds and removes
//! LUNs live (`virtio/hotplug.rs`, QMP `device_add scsi-hd` / `device_del`).
//! Each change is reported on the event queue as QEMU reports it:
//! `VIRTIO_SCSI_T_TRANSPORT_RESET` with `VIRTIO_SCSI_EVT_RESET_RESCAN` (added)
//! or `VIRTIO_SCSI_EVT_RESET_REMOVED` (removed), the LUN in the request
//! format. A removal takes effect at once: the next command to that LUN gets
//! what a missing LUN gets. Events wait in the device while the driver has
//! given no event buffer, up to [`MAX_PENDING_EVENTS`]; beyond that they are
//! dropped and the next event reported carries `VIRTIO_SCSI_T_EVENTS_MISSED`
//! (alone, as `VIRTIO_SCSI_T_NO_EVENT`, when nothing else is left to report),
//! whereupon the driver rescans (virtio 1.2 §5.6.6.3). Drivers that did not
//! negotiate the feature get no events (they find the change on their next
//! scan); events are not kept across a device reset, after which the driver
//! scans anyway.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, RwLock};

use tracing::{debug, info, warn};
use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::block::{guest_slices, sub_range, ImageLock};
use super::queue_util::{drain, notify_if_needed, segments, Segment};
use super::worker::{DeviceCtx, Worker, WorkerHandler};
use super::{
    device_type, read_config_bytes, ActivateError, Activation, ActiveQueue, GuestMem, VirtioDevice,
    VirtioInterrupt, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use crate::scsi::{Data, ScsiTarget, SharedDevice};

/// Queue indexes.
const CONTROL_QUEUE: u16 = 0;
const EVENT_QUEUE: u16 = 1;
const REQUEST_QUEUE: u16 = 2;
/// Queue sizes: control, event, request (QEMU's).
const QUEUE_SIZES: [u16; 3] = [128, 128, 256];
/// Defaults of the configurable CDB and sense sizes.
const CDB_SIZE: u32 = 32;
const SENSE_SIZE: u32 = 96;
/// Data segments per request we advertise (queue size - 2, as QEMU).
const SEG_MAX: u32 = 254;
/// Highest target id and LUN we advertise (QEMU's).
pub const MAX_TARGET: u16 = 255;
pub const MAX_LUN: u32 = 16383;

/// The device reports LUNs coming and going on the event queue.
pub const VIRTIO_SCSI_F_HOTPLUG: u64 = 1 << 1;

/// Events kept for a driver that has no event buffer posted; more are dropped
/// (and reported missed).
pub const MAX_PENDING_EVENTS: usize = 16;

/// Event types and reasons (virtio 1.2 §5.6.6.3).
pub mod event {
    pub const NO_EVENT: u32 = 0;
    pub const TRANSPORT_RESET: u32 = 1;
    /// Or-ed into the type: events were lost.
    pub const EVENTS_MISSED: u32 = 0x8000_0000;
    pub const RESET_RESCAN: u32 = 1;
    pub const RESET_REMOVED: u32 = 2;
    /// `struct virtio_scsi_event`: event, lun[8], reason.
    pub const LEN: usize = 16;
}

/// Response codes (virtio 1.2 §5.6.6.1).
pub mod response {
    pub const OK: u8 = 0;
    pub const BAD_TARGET: u8 = 3;
    pub const FAILURE: u8 = 9;
    pub const FUNCTION_COMPLETE: u8 = 0;
    pub const FUNCTION_REJECTED: u8 = 11;
}

/// Control request types.
const T_TMF: u32 = 0;
const T_AN_QUERY: u32 = 1;
const T_AN_SUBSCRIBE: u32 = 2;

/// Target id and LUN of an 8-byte LUN field, `None` when it names no
/// single-level LUN of ours.
pub fn decode_lun(lun: &[u8; 8]) -> Option<(u8, u16)> {
    if lun[0] != 1 {
        return None;
    }
    let l = u16::from_be_bytes([lun[2], lun[3]]);
    // Peripheral (0x00xx) or flat (0x40xx-0x7fxx) addressing.
    if lun[2] != 0 && !(0x40..0x80).contains(&lun[2]) {
        return None;
    }
    Some((lun[1], l & 0x3fff))
}

/// The 8-byte LUN field of `target`:`lun`, as REPORT LUNS and QEMU's events
/// write it (flat addressing from LUN 256 on).
pub fn encode_lun(target: u8, lun: u16) -> [u8; 8] {
    let mut l = [0u8; 8];
    l[0] = 1;
    l[1] = target;
    if lun >= 256 {
        l[2] = 0x40 | (lun >> 8) as u8;
    }
    l[3] = lun as u8;
    l
}

/// One `struct virtio_scsi_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiEvent {
    pub event: u32,
    pub lun: [u8; 8],
    pub reason: u32,
}

impl ScsiEvent {
    /// `VIRTIO_SCSI_T_TRANSPORT_RESET` for `target`:`lun` with `reason`.
    pub fn transport_reset(target: u8, lun: u16, reason: u32) -> Self {
        ScsiEvent {
            event: event::TRANSPORT_RESET,
            lun: encode_lun(target, lun),
            reason,
        }
    }

    /// The little-endian wire form.
    pub fn bytes(&self) -> [u8; event::LEN] {
        let mut b = [0u8; event::LEN];
        b[0..4].copy_from_slice(&self.event.to_le_bytes());
        b[4..12].copy_from_slice(&self.lun);
        b[12..16].copy_from_slice(&self.reason.to_le_bytes());
        b
    }
}

/// Events waiting for event-queue buffers.
#[derive(Debug, Default)]
pub struct EventQueue {
    /// The driver negotiated `VIRTIO_SCSI_F_HOTPLUG` and the device is active.
    enabled: bool,
    pending: VecDeque<ScsiEvent>,
    /// Events were dropped: the next one reported says so.
    missed: bool,
}

impl EventQueue {
    /// A fresh queue, taking events or not (device activated / reset).
    pub fn reset(&mut self, enabled: bool) {
        *self = EventQueue {
            enabled,
            ..Default::default()
        };
    }

    /// Queues `e` (dropped, and marked missed, when [`MAX_PENDING_EVENTS`]
    /// already wait; ignored while events are off).
    pub fn push(&mut self, e: ScsiEvent) {
        if !self.enabled {
            return;
        }
        if self.pending.len() >= MAX_PENDING_EVENTS {
            self.missed = true;
        } else {
            self.pending.push_back(e);
        }
    }

    /// Whether there is anything to report.
    pub fn has_work(&self) -> bool {
        !self.pending.is_empty() || self.missed
    }

    /// The next event to report: the oldest waiting one, with `EVENTS_MISSED`
    /// or-ed in if events were dropped; a bare `NO_EVENT | EVENTS_MISSED`
    /// when only the loss is left to report.
    pub fn take(&mut self) -> Option<ScsiEvent> {
        let mut e = match self.pending.pop_front() {
            Some(e) => e,
            None if self.missed => ScsiEvent {
                event: event::NO_EVENT,
                lun: [0; 8],
                reason: 0,
            },
            None => return None,
        };
        if std::mem::take(&mut self.missed) {
            e.event |= event::EVENTS_MISSED;
        }
        Some(e)
    }

    /// An event could not be delivered (a buffer too short for it).
    pub fn lost(&mut self) {
        self.missed = true;
    }
}

/// Puts waiting events into the driver's event buffers, as many as there are
/// of both; returns how many buffers were used. Notifications stay enabled so
/// that a driver posting buffers later wakes the device.
pub fn deliver_events(
    aq: &mut ActiveQueue,
    mem: &GuestMem,
    interrupt: &dyn VirtioInterrupt,
    events: &mut EventQueue,
) -> usize {
    let mut used = 0;
    while events.has_work() {
        let Some(chain) = aq.queue.pop_descriptor_chain(mem) else {
            break;
        };
        let head = chain.head_index();
        let segs = segments(chain);
        let writable: Vec<Segment> = segs.into_iter().filter(|s| s.write).collect();
        let room: u64 = writable.iter().map(|s| u64::from(s.len)).sum();
        let len = match events.take() {
            Some(e) if room >= event::LEN as u64 => write_bytes(mem, &writable, &e.bytes()),
            Some(_) => {
                warn!("virtio-scsi: event buffer of {room} bytes is too short");
                events.lost();
                0
            }
            None => 0,
        };
        if aq.queue.add_used(mem, head, len).is_err() {
            break;
        }
        used += 1;
    }
    if used > 0 {
        notify_if_needed(aq, mem, interrupt);
    }
    used
}

/// Why a LUN cannot be added.
#[derive(Debug, thiserror::Error)]
pub enum ScsiBusError {
    /// Something sits at that address already (QEMU's words).
    #[error("lun already used by '{0}'")]
    LunUsed(String),
}

/// A unit's bookkeeping beside its target: its device id and its image lock.
struct UnitRecord {
    target: u8,
    lun: u16,
    id: String,
    _lock: Option<ImageLock>,
}

/// The adapter's units and events, shared by the device's worker and the host
/// side (hot-plug). Commands hold the unit table for reading while they run,
/// so a unit removed is no longer being served when [`ScsiBus::remove`]
/// returns.
pub struct ScsiBus {
    /// (target id, target), sorted by id; a target with no LUN left goes.
    targets: RwLock<Vec<(u8, ScsiTarget)>>,
    units: Mutex<Vec<UnitRecord>>,
    events: Mutex<EventQueue>,
    /// Wakes the worker to deliver events.
    wake: EventFd,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ScsiBus {
    /// A bus with `targets` (units without records: tests, CD-ROMs).
    fn new(mut targets: Vec<(u8, ScsiTarget)>) -> std::io::Result<Arc<Self>> {
        targets.sort_by_key(|(t, _)| *t);
        Ok(Arc::new(ScsiBus {
            targets: RwLock::new(targets),
            units: Mutex::new(Vec::new()),
            events: Mutex::new(EventQueue::default()),
            wake: EventFd::new(EFD_NONBLOCK)?,
        }))
    }

    /// Whether `target`:`lun` has a unit.
    pub fn occupied(&self, target: u8, lun: u16) -> bool {
        self.targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(t, tg)| *t == target && tg.lun(lun).is_some())
    }

    /// Records `id` and the image lock of the unit at `target`:`lun`.
    fn record(&self, target: u8, lun: u16, id: &str, lock: Option<ImageLock>) {
        let mut u = lock_units(self);
        u.retain(|r| (r.target, r.lun) != (target, lun));
        u.push(UnitRecord {
            target,
            lun,
            id: id.to_string(),
            _lock: lock,
        });
    }

    /// Adds unit `id` at `target`:`lun` (its image lock kept with it) and
    /// tells the driver (`RESET_RESCAN`).
    pub fn add(
        &self,
        target: u8,
        lun: u16,
        id: &str,
        dev: SharedDevice,
        lock: Option<ImageLock>,
    ) -> Result<(), ScsiBusError> {
        {
            let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
            if targets
                .iter()
                .any(|(t, tg)| *t == target && tg.lun(lun).is_some())
            {
                let by = lock_units(self)
                    .iter()
                    .find(|r| (r.target, r.lun) == (target, lun))
                    .map(|r| r.id.clone())
                    .unwrap_or_default();
                return Err(ScsiBusError::LunUsed(by));
            }
            match targets.iter_mut().find(|(t, _)| *t == target) {
                Some((_, t)) => t.insert_shared(lun, dev),
                None => {
                    let mut t = ScsiTarget::new();
                    t.insert_shared(lun, dev);
                    targets.push((target, t));
                    targets.sort_by_key(|(t, _)| *t);
                }
            }
        }
        self.record(target, lun, id, lock);
        info!(id, target, lun, "SCSI unit hot-added");
        self.notify(ScsiEvent::transport_reset(target, lun, event::RESET_RESCAN));
        Ok(())
    }

    /// Removes the unit at `target`:`lun` at once (no command to it runs after
    /// this returns; its image lock is released) and tells the driver
    /// (`RESET_REMOVED`). Returns the unit, `None` if there was none.
    pub fn remove(&self, target: u8, lun: u16) -> Option<SharedDevice> {
        let dev = {
            let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
            let i = targets.iter().position(|(t, _)| *t == target)?;
            let dev = targets[i].1.remove(lun)?;
            if targets[i].1.is_empty() {
                targets.remove(i);
            }
            dev
        };
        lock_units(self).retain(|r| (r.target, r.lun) != (target, lun));
        info!(target, lun, "SCSI unit removed");
        self.notify(ScsiEvent::transport_reset(
            target,
            lun,
            event::RESET_REMOVED,
        ));
        Some(dev)
    }

    fn notify(&self, e: ScsiEvent) {
        let mut ev = lock(&self.events);
        ev.push(e);
        if ev.has_work() {
            let _ = self.wake.write(1);
        }
    }
}

fn lock_units(bus: &ScsiBus) -> std::sync::MutexGuard<'_, Vec<UnitRecord>> {
    lock(&bus.units)
}

/// The adapter's request logic over its [`ScsiBus`].
pub struct ScsiHost {
    bus: Arc<ScsiBus>,
    cdb_size: u32,
    sense_size: u32,
}

impl ScsiHost {
    /// A host over `targets`.
    #[cfg(test)]
    pub fn new(targets: Vec<(u8, ScsiTarget)>) -> Self {
        Self::on(ScsiBus::new(targets).unwrap())
    }

    fn on(bus: Arc<ScsiBus>) -> Self {
        ScsiHost {
            bus,
            cdb_size: CDB_SIZE,
            sense_size: SENSE_SIZE,
        }
    }

    /// The units, shared with the host side.
    pub fn bus(&self) -> &Arc<ScsiBus> {
        &self.bus
    }

    /// Serves one request-queue chain; returns the used length.
    pub fn request(&mut self, mem: &GuestMem, chain: DescriptorChain<&GuestMem>) -> u32 {
        let segs = segments(chain);
        let split = segs.iter().position(|s| s.write).unwrap_or(segs.len());
        let (out, inn) = segs.split_at(split);
        let out_len: u64 = out.iter().map(|s| u64::from(s.len)).sum();
        let in_len: u64 = inn.iter().map(|s| u64::from(s.len)).sum();
        let req_len = 19 + u64::from(self.cdb_size);
        let resp_len = 12 + u64::from(self.sense_size);
        if out_len < req_len || in_len < resp_len || inn.iter().any(|s| !s.write) {
            warn!("virtio-scsi: malformed request ({out_len} out, {in_len} in)");
            return 0;
        }
        // Found by the guest fuzzer (seed 201, fuzzops=50000 fuzzvq=400, q35): a
        // buffer ending past 2^64 overflowed the segment arithmetic.
        if super::block::wraps(&segs) {
            warn!("virtio-scsi: malformed request (a buffer wraps the address space)");
            return 0;
        }
        let Some(hdr) = read_bytes(mem, &sub_range(out, 0, req_len)) else {
            return 0;
        };
        let resp = sub_range(inn, 0, resp_len);
        let lun: [u8; 8] = hdr[0..8].try_into().expect("8 bytes");
        let cdb = &hdr[19..];
        let data_out = sub_range(out, req_len, out_len);
        let data_in = sub_range(inn, resp_len, in_len);
        let mut r = Response::default();
        match decode_lun(&lun) {
            None => r.response = response::BAD_TARGET,
            Some((target, l)) => {
                let (dout, din) = (out_len - req_len, in_len - resp_len);
                let targets = self.bus.targets.read().unwrap_or_else(|e| e.into_inner());
                let Some((_, t)) = targets.iter().find(|(id, _)| *id == target) else {
                    r.response = response::BAD_TARGET;
                    return write_response(mem, &resp, &r, self.sense_size);
                };
                if dout > 0 && din > 0 {
                    // Bidirectional commands: none of ours.
                    r.response = response::FAILURE;
                    return write_response(mem, &resp, &r, self.sense_size);
                }
                let (Some(dout_s), Some(din_s)) =
                    (guest_slices(mem, &data_out), guest_slices(mem, &data_in))
                else {
                    r.response = response::FAILURE;
                    return write_response(mem, &resp, &r, self.sense_size);
                };
                let data = if din > 0 {
                    Data::In(&din_s)
                } else if dout > 0 {
                    Data::Out(&dout_s)
                } else {
                    Data::None
                };
                let c = t.execute(l, cdb, data);
                debug!(
                    "virtio-scsi: {target}:{l} op {:#04x} → status {:#x}{}",
                    cdb[0],
                    c.status,
                    c.sense
                        .map(|s| format!(" sense {:x}/{:02x}/{:02x}", s.key, s.asc, s.ascq))
                        .unwrap_or_default()
                );
                r.status = c.status;
                r.sense = c.sense.map(|s| s.fixed().to_vec()).unwrap_or_default();
                r.residual = (din.max(dout)).saturating_sub(c.transferred) as u32;
                if din > 0 {
                    r.data_in = c.transferred.min(din) as u32;
                }
            }
        }
        write_response(mem, &resp, &r, self.sense_size)
    }

    /// Serves one control-queue chain; returns the used length.
    pub fn control(&mut self, mem: &GuestMem, chain: DescriptorChain<&GuestMem>) -> u32 {
        let segs = segments(chain);
        let split = segs.iter().position(|s| s.write).unwrap_or(segs.len());
        let (out, inn) = segs.split_at(split);
        let out_len: u64 = out.iter().map(|s| u64::from(s.len)).sum();
        let Some(hdr) = read_bytes(mem, &sub_range(out, 0, out_len.min(24))) else {
            return 0;
        };
        if hdr.len() < 4 {
            return 0;
        }
        let t = u32::from_le_bytes(hdr[0..4].try_into().expect("4 bytes"));
        let lun_at = match t {
            T_TMF => 8,
            T_AN_QUERY | T_AN_SUBSCRIBE => 4,
            _ => {
                warn!("virtio-scsi: unknown control request type {t}");
                return 0;
            }
        };
        let Some(lun) = hdr.get(lun_at..lun_at + 8) else {
            return 0;
        };
        let lun: [u8; 8] = lun.try_into().expect("8 bytes");
        let known = decode_lun(&lun).is_some_and(|(tg, _)| {
            self.bus
                .targets
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|(t, _)| *t == tg)
        });
        let answer: Vec<u8> = if t == T_TMF {
            // Requests complete before the next one is read, so every task
            // function finds nothing left to do.
            let subtype = u32::from_le_bytes(hdr[4..8].try_into().expect("4 bytes"));
            vec![match (known, subtype) {
                (false, _) => response::BAD_TARGET,
                (true, 0..=7) => response::FUNCTION_COMPLETE,
                (true, _) => response::FUNCTION_REJECTED,
            }]
        } else {
            // No asynchronous notification classes are supported.
            let mut a = 0u32.to_le_bytes().to_vec();
            a.push(if known {
                response::OK
            } else {
                response::BAD_TARGET
            });
            a
        };
        write_bytes(mem, inn, &answer)
    }
}

/// A response header's fields.
#[derive(Default)]
struct Response {
    residual: u32,
    status: u8,
    response: u8,
    sense: Vec<u8>,
    /// Bytes the command put into the data-in buffers.
    data_in: u32,
}

/// Writes the response header; returns the used length (header + data-in).
fn write_response(mem: &GuestMem, resp: &[Segment], r: &Response, sense_size: u32) -> u32 {
    let mut b = vec![0u8; 12 + sense_size as usize];
    let sense_len = r.sense.len().min(sense_size as usize);
    b[0..4].copy_from_slice(&(sense_len as u32).to_le_bytes());
    b[4..8].copy_from_slice(&r.residual.to_le_bytes());
    b[10] = r.status;
    b[11] = r.response;
    b[12..12 + sense_len].copy_from_slice(&r.sense[..sense_len]);
    write_bytes(mem, resp, &b) + r.data_in
}

/// Gathers the bytes of `segs`.
fn read_bytes(mem: &GuestMem, segs: &[Segment]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for s in segs {
        let mut b = vec![0u8; s.len as usize];
        mem.read_slice(&mut b, s.addr).ok()?;
        out.extend_from_slice(&b);
    }
    Some(out)
}

/// Scatters `src` over `segs`; returns the bytes written.
fn write_bytes(mem: &GuestMem, segs: &[Segment], src: &[u8]) -> u32 {
    let mut left = src;
    let mut done = 0;
    for s in segs {
        if left.is_empty() {
            break;
        }
        let n = left.len().min(s.len as usize);
        if mem.write_slice(&left[..n], GuestAddress(s.addr.0)).is_err() {
            break;
        }
        left = &left[n..];
        done += n as u32;
    }
    done
}

struct ScsiWorker {
    host: ScsiHost,
}

impl ScsiWorker {
    /// Reports waiting events, if the driver enabled the event queue.
    fn deliver(&self, ctx: &mut DeviceCtx) {
        let Some(pos) = ctx.queue(EVENT_QUEUE) else {
            return;
        };
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        let mut events = lock(&self.host.bus.events);
        deliver_events(&mut queues[pos], mem, interrupt.as_ref(), &mut events);
    }
}

impl WorkerHandler for ScsiWorker {
    fn extra_fds(&self) -> Vec<(RawFd, EventSet)> {
        vec![(self.host.bus.wake.as_raw_fd(), EventSet::IN)]
    }
    fn started(&mut self, ctx: &mut DeviceCtx) {
        self.deliver(ctx);
    }
    fn fd_event(&mut self, ctx: &mut DeviceCtx, _i: usize, _events: EventSet) {
        let _ = self.host.bus.wake.read();
        self.deliver(ctx);
    }
    fn queue_event(&mut self, ctx: &mut DeviceCtx, pos: usize) {
        if ctx.queues[pos].index == EVENT_QUEUE {
            // New event buffers: anything waiting goes into them.
            self.deliver(ctx);
            return;
        }
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        let host = &mut self.host;
        match queues[pos].index {
            CONTROL_QUEUE => drain(&mut queues[pos], mem, interrupt.as_ref(), |c| {
                host.control(mem, c)
            }),
            REQUEST_QUEUE => drain(&mut queues[pos], mem, interrupt.as_ref(), |c| {
                host.request(mem, c)
            }),
            _ => 0,
        };
    }
}

/// The virtio-scsi device.
pub struct VirtioScsi {
    id: String,
    bus: Arc<ScsiBus>,
    host: Option<ScsiHost>,
    worker: Option<Worker<ScsiWorker>>,
    cdb_size: u32,
    sense_size: u32,
}

impl VirtioScsi {
    /// An adapter with `targets` (fails only if no eventfd can be made).
    pub fn new(id: &str, targets: Vec<(u8, ScsiTarget)>) -> std::io::Result<Self> {
        let host = ScsiHost::on(ScsiBus::new(targets)?);
        Ok(VirtioScsi {
            id: id.to_string(),
            bus: host.bus.clone(),
            host: Some(host),
            worker: None,
            cdb_size: CDB_SIZE,
            sense_size: SENSE_SIZE,
        })
    }

    /// Records the device id and image lock of the unit at `target`:`lun`
    /// (the lock is held until the unit is removed or the device dropped).
    pub fn with_unit(self, target: u8, lun: u16, id: &str, lock: Option<ImageLock>) -> Self {
        self.bus.record(target, lun, id, lock);
        self
    }

    /// The units, for live hot-plug.
    pub fn bus(&self) -> Arc<ScsiBus> {
        self.bus.clone()
    }

    fn config_bytes(&self) -> [u8; 36] {
        let mut c = [0u8; 36];
        c[0..4].copy_from_slice(&1u32.to_le_bytes());
        c[4..8].copy_from_slice(&SEG_MAX.to_le_bytes());
        c[8..12].copy_from_slice(&0xffffu32.to_le_bytes());
        c[12..16].copy_from_slice(&128u32.to_le_bytes());
        c[16..20].copy_from_slice(&16u32.to_le_bytes());
        c[20..24].copy_from_slice(&self.sense_size.to_le_bytes());
        c[24..28].copy_from_slice(&self.cdb_size.to_le_bytes());
        c[30..32].copy_from_slice(&MAX_TARGET.to_le_bytes());
        c[32..36].copy_from_slice(&MAX_LUN.to_le_bytes());
        c
    }
}

impl VirtioDevice for VirtioScsi {
    fn device_type(&self) -> u32 {
        device_type::SCSI
    }
    fn name(&self) -> &'static str {
        "virtio-scsi"
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        QUEUE_SIZES.to_vec()
    }
    fn features(&self) -> u64 {
        VIRTIO_RING_F_EVENT_IDX | VIRTIO_RING_F_INDIRECT_DESC | VIRTIO_SCSI_F_HOTPLUG
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_bytes(), offset, data);
    }
    /// The driver may set `sense_size` and `cdb_size` (within reason).
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        if data.len() != 4 {
            return;
        }
        let v = u32::from_le_bytes(data.try_into().expect("4 bytes"));
        match offset {
            20 if v <= 252 => self.sense_size = v,
            24 if (6..=255).contains(&v) => self.cdb_size = v,
            _ => {}
        }
    }
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        if !act.queues.iter().any(|q| q.index == REQUEST_QUEUE) {
            return Err(ActivateError::MissingQueue {
                device: "virtio-scsi",
                queue: REQUEST_QUEUE,
            });
        }
        let mut host = self.host.take().ok_or(ActivateError::NoBackend {
            device: "virtio-scsi",
        })?;
        host.cdb_size = self.cdb_size;
        host.sense_size = self.sense_size;
        lock(&self.bus.events).reset(act.features & VIRTIO_SCSI_F_HOTPLUG != 0);
        let w = Worker::spawn(&format!("_{}", self.id), ScsiWorker { host }, act).map_err(
            |source| ActivateError::Worker {
                device: "virtio-scsi",
                source,
            },
        )?;
        self.worker = Some(w);
        Ok(())
    }
    fn reset(&mut self) {
        if let Some(w) = self.worker.take() {
            self.host = w.stop().map(|w| w.host);
        }
        lock(&self.bus.events).reset(false);
        self.cdb_size = CDB_SIZE;
        self.sense_size = SENSE_SIZE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::{DeviceConfig, DeviceKind, ScsiDevice};
    use crate::virtio::block::OpenFlags;
    use crate::virtio::block::RawDisk;
    use crate::virtio::queue_util::testing::{
        add_chain, memory, queue, used, used_idx, CountingInterrupt,
    };
    use std::io::Write;

    const HDR: u64 = 0x10_0000;
    const RESP: u64 = 0x11_0000;
    const DATA: u64 = 0x12_0000;

    fn host_with_disk() -> (ScsiHost, tempfile::NamedTempFile) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let img: Vec<u8> = (0..64 * 512).map(|i| (i / 512) as u8).collect();
        f.write_all(&img).unwrap();
        let backend = RawDisk::open(f.path(), OpenFlags::default()).unwrap();
        let dev = ScsiDevice::new(
            DeviceConfig {
                kind: DeviceKind::Disk,
                readonly: false,
                writeback: true,
                serial: None,
                device_id: "scsi0-0-2-0".into(),
                vendor: None,
                product: None,
                wwn: None,
            },
            Some(Box::new(backend)),
        );
        let mut t = ScsiTarget::new();
        t.insert(0, dev);
        (ScsiHost::new(vec![(2, t)]), f)
    }

    fn request_header(mem: &GuestMem, lun: [u8; 8], cdb: &[u8]) {
        let mut h = vec![0u8; 51];
        h[0..8].copy_from_slice(&lun);
        h[19..19 + cdb.len()].copy_from_slice(cdb);
        mem.write_slice(&h, GuestAddress(HDR)).unwrap();
    }

    #[test]
    fn decodes_single_level_luns() {
        assert_eq!(decode_lun(&[1, 2, 0, 0, 0, 0, 0, 0]), Some((2, 0)));
        assert_eq!(decode_lun(&[1, 0, 0x40, 5, 0, 0, 0, 0]), Some((0, 5)));
        assert_eq!(decode_lun(&[0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(decode_lun(&[1, 0, 0xc1, 0, 0, 0, 0, 0]), None);
    }

    /// READ(10) of sectors 5 and 6 from target 2, LUN 0, in the request header.
    fn read_10_header(mem: &GuestMem) {
        request_header(
            mem,
            [1, 2, 0, 0, 0, 0, 0, 0],
            &[0x28, 0, 0, 0, 0, 5, 0, 0, 2, 0],
        );
    }

    #[test]
    fn read_10_through_the_request_queue() {
        let mem = memory();
        let (mock, mut aq) = queue(&mem, 0, REQUEST_QUEUE);
        let (mut host, _f) = host_with_disk();
        read_10_header(&mem);
        add_chain(
            &mock,
            0,
            &[(HDR, 51, false), (RESP, 108, true), (DATA, 1024, true)],
        );
        let intr = CountingInterrupt::default();
        drain(&mut aq, &mem, &intr, |c| host.request(&mem, c));
        assert_eq!(used(&mem, &mock, 0), (0, 108 + 1024));
        let mut r = [0u8; 12];
        mem.read_slice(&mut r, GuestAddress(RESP)).unwrap();
        assert_eq!(r, [0; 12], "no sense, no residual, GOOD, OK");
        let mut d = vec![0u8; 1024];
        mem.read_slice(&mut d, GuestAddress(DATA)).unwrap();
        assert!(d[..512].iter().all(|&b| b == 5) && d[512..].iter().all(|&b| b == 6));
    }

    #[test]
    fn write_10_from_data_out_buffers() {
        let mem = memory();
        let (mock, mut aq) = queue(&mem, 0, REQUEST_QUEUE);
        let (mut host, f) = host_with_disk();
        request_header(
            &mem,
            [1, 2, 0, 0, 0, 0, 0, 0],
            &[0x2a, 0, 0, 0, 0, 9, 0, 0, 1, 0],
        );
        mem.write_slice(&[0x5au8; 512], GuestAddress(DATA)).unwrap();
        // The data-out buffer is longer than the transfer: the rest is residual.
        add_chain(
            &mock,
            0,
            &[(HDR, 51, false), (DATA, 1024, false), (RESP, 108, true)],
        );
        let intr = CountingInterrupt::default();
        drain(&mut aq, &mem, &intr, |c| host.request(&mem, c));
        assert_eq!(used(&mem, &mock, 0), (0, 108));
        let mut r = [0u8; 12];
        mem.read_slice(&mut r, GuestAddress(RESP)).unwrap();
        assert_eq!(
            u32::from_le_bytes(r[4..8].try_into().unwrap()),
            512,
            "residual"
        );
        assert_eq!((r[10], r[11]), (0, response::OK));
        let img = std::fs::read(f.path()).unwrap();
        assert!(img[9 * 512..10 * 512].iter().all(|&b| b == 0x5a));
        assert!(img[10 * 512..11 * 512].iter().all(|&b| b == 10));
    }

    /// A data-in buffer ending past 2^64 is a malformed request, returned unused —
    /// not an overflow panic in the worker (the guest fuzzer's seed 201); the control
    /// queue's parsing of such a buffer fails the same quiet way.
    #[test]
    fn a_buffer_wrapping_the_address_space_is_malformed() {
        let mem = memory();
        let (mock, mut aq) = queue(&mem, 0, REQUEST_QUEUE);
        let (mut host, _f) = host_with_disk();
        read_10_header(&mem);
        add_chain(
            &mock,
            0,
            &[
                (HDR, 51, false),
                (RESP, 108, true),
                (u64::MAX - 8, 4096, true),
            ],
        );
        let intr = CountingInterrupt::default();
        drain(&mut aq, &mem, &intr, |c| host.request(&mem, c));
        assert_eq!(used(&mem, &mock, 0), (0, 0));
        let (mock, mut cq) = queue(&mem, 0, CONTROL_QUEUE);
        add_chain(&mock, 0, &[(u64::MAX - 8, 24, false), (RESP, 1, true)]);
        drain(&mut cq, &mem, &intr, |c| host.control(&mem, c));
    }

    #[test]
    fn absent_target_is_bad_target_and_errors_carry_sense() {
        let mem = memory();
        let (mock, mut aq) = queue(&mem, 0, REQUEST_QUEUE);
        let (mut host, _f) = host_with_disk();
        request_header(&mem, [1, 7, 0, 0, 0, 0, 0, 0], &[0, 0, 0, 0, 0, 0]);
        add_chain(&mock, 0, &[(HDR, 51, false), (RESP, 108, true)]);
        let intr = CountingInterrupt::default();
        drain(&mut aq, &mem, &intr, |c| host.request(&mem, c));
        let mut r = [0u8; 12];
        mem.read_slice(&mut r, GuestAddress(RESP)).unwrap();
        assert_eq!(r[11], response::BAD_TARGET);

        // An unknown opcode on the disk: CHECK CONDITION with fixed sense.
        request_header(&mem, [1, 2, 0, 0, 0, 0, 0, 0], &[0xff, 0, 0, 0, 0, 0]);
        add_chain(&mock, 2, &[(HDR, 51, false), (RESP, 108, true)]);
        drain(&mut aq, &mem, &intr, |c| host.request(&mem, c));
        assert_eq!(used(&mem, &mock, 1).1, 108);
        let mut r = [0u8; 30];
        mem.read_slice(&mut r, GuestAddress(RESP)).unwrap();
        assert_eq!(u32::from_le_bytes(r[0..4].try_into().unwrap()), 18);
        assert_eq!((r[10], r[11]), (0x02, response::OK));
        assert_eq!((r[12], r[14], r[24]), (0x70, 0x05, 0x20));
    }

    #[test]
    fn task_management_and_an_query() {
        let mem = memory();
        let (mock, mut aq) = queue(&mem, 0, CONTROL_QUEUE);
        let (mut host, _f) = host_with_disk();
        let mut tmf = vec![0u8; 24];
        tmf[4..8].copy_from_slice(&5u32.to_le_bytes()); // LOGICAL UNIT RESET
        tmf[8..10].copy_from_slice(&[1, 2]);
        mem.write_slice(&tmf, GuestAddress(HDR)).unwrap();
        mem.write_slice(&[0xee], GuestAddress(RESP)).unwrap();
        add_chain(&mock, 0, &[(HDR, 24, false), (RESP, 1, true)]);
        let intr = CountingInterrupt::default();
        drain(&mut aq, &mem, &intr, |c| host.control(&mem, c));
        assert_eq!(used(&mem, &mock, 0).1, 1);
        let r: u8 = mem.read_obj(GuestAddress(RESP)).unwrap();
        assert_eq!(r, response::FUNCTION_COMPLETE);

        let mut an = vec![0u8; 16];
        an[0..4].copy_from_slice(&T_AN_QUERY.to_le_bytes());
        an[4..6].copy_from_slice(&[1, 9]);
        mem.write_slice(&an, GuestAddress(HDR)).unwrap();
        add_chain(&mock, 2, &[(HDR, 16, false), (RESP, 5, true)]);
        drain(&mut aq, &mem, &intr, |c| host.control(&mem, c));
        let mut r = [0u8; 5];
        mem.read_slice(&mut r, GuestAddress(RESP)).unwrap();
        assert_eq!(r, [0, 0, 0, 0, response::BAD_TARGET]);
    }

    fn disk_unit(id: &str) -> (SharedDevice, tempfile::NamedTempFile) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![7u8; 8 * 512]).unwrap();
        let backend = RawDisk::open(f.path(), OpenFlags::default()).unwrap();
        let dev = ScsiDevice::new(
            DeviceConfig {
                kind: DeviceKind::Disk,
                readonly: false,
                writeback: true,
                serial: None,
                device_id: id.into(),
                vendor: None,
                product: None,
                wwn: None,
            },
            Some(Box::new(backend)),
        );
        (Arc::new(Mutex::new(dev)), f)
    }

    /// The event in the 16 bytes at `at`.
    fn event_at(mem: &GuestMem, at: u64) -> ScsiEvent {
        let mut b = [0u8; 16];
        mem.read_slice(&mut b, GuestAddress(at)).unwrap();
        ScsiEvent {
            event: u32::from_le_bytes(b[0..4].try_into().unwrap()),
            lun: b[4..12].try_into().unwrap(),
            reason: u32::from_le_bytes(b[12..16].try_into().unwrap()),
        }
    }

    #[test]
    fn hot_added_and_removed_luns_are_reported_once_buffers_come() {
        let mem = memory();
        let (mock, mut eq) = queue(&mem, 0, EVENT_QUEUE);
        let (host, _f) = host_with_disk();
        let bus = host.bus().clone();
        lock(&bus.events).reset(true);
        let intr = CountingInterrupt::default();
        let (unit, _g) = disk_unit("scsi0-0-2-300");
        bus.add(2, 300, "scsi0-0-2-300", unit, None).unwrap();
        assert!(bus.occupied(2, 300));
        // No buffer yet: the event waits.
        let deliver =
            |eq: &mut ActiveQueue| deliver_events(eq, &mem, &intr, &mut lock(&bus.events));
        assert_eq!(deliver(&mut eq), 0);
        assert!(lock(&bus.events).has_work());
        bus.remove(2, 300).unwrap();
        assert!(!bus.occupied(2, 300));
        add_chain(&mock, 0, &[(DATA, 16, true)]);
        add_chain(&mock, 1, &[(DATA + 16, 16, true)]);
        add_chain(&mock, 2, &[(DATA + 32, 16, true)]);
        assert_eq!(deliver(&mut eq), 2, "two events, two buffers used");
        assert_eq!(used(&mem, &mock, 0), (0, 16));
        assert_eq!(
            event_at(&mem, DATA),
            ScsiEvent {
                event: event::TRANSPORT_RESET,
                // LUN 300: flat addressing, as REPORT LUNS and QEMU write it.
                lun: [1, 2, 0x41, 0x2c, 0, 0, 0, 0],
                reason: event::RESET_RESCAN,
            }
        );
        let e = event_at(&mem, DATA + 16);
        assert_eq!(
            (e.event, e.reason),
            (event::TRANSPORT_RESET, event::RESET_REMOVED)
        );
        assert_eq!(decode_lun(&e.lun), Some((2, 300)));
        assert_eq!(*intr.queues.lock().unwrap(), vec![EVENT_QUEUE]);
        // The third buffer stays with the device for the next event.
        assert!(!lock(&bus.events).has_work());
        assert_eq!(used_idx(&mem, &mock), 2);
    }

    #[test]
    fn dropped_events_are_reported_missed() {
        let mut q = EventQueue::default();
        // Events off (no driver, or one without VIRTIO_SCSI_F_HOTPLUG): nothing kept.
        q.push(ScsiEvent::transport_reset(0, 0, event::RESET_RESCAN));
        assert!(!q.has_work());
        q.reset(true);
        for lun in 0..MAX_PENDING_EVENTS as u16 + 3 {
            q.push(ScsiEvent::transport_reset(0, lun, event::RESET_RESCAN));
        }
        let first = q.take().unwrap();
        assert_eq!(
            first.event,
            event::TRANSPORT_RESET | event::EVENTS_MISSED,
            "the next event reported says events were lost"
        );
        assert_eq!(decode_lun(&first.lun), Some((0, 0)));
        let rest: Vec<ScsiEvent> = std::iter::from_fn(|| q.take()).collect();
        assert_eq!(rest.len(), MAX_PENDING_EVENTS - 1);
        assert!(rest.iter().all(|e| e.event == event::TRANSPORT_RESET));
        assert_eq!(decode_lun(&rest.last().unwrap().lun), Some((0, 15)));
        // A loss with nothing else to report: NO_EVENT | EVENTS_MISSED alone.
        q.lost();
        let e = q.take().unwrap();
        assert_eq!(e.event, event::NO_EVENT | event::EVENTS_MISSED);
        assert!(q.take().is_none());

        // Through the queue: a buffer too short loses the event, the next says so.
        let mem = memory();
        let (mock, mut eq) = queue(&mem, 0, EVENT_QUEUE);
        let intr = CountingInterrupt::default();
        q.push(ScsiEvent::transport_reset(1, 0, event::RESET_REMOVED));
        add_chain(&mock, 0, &[(DATA, 8, true)]);
        add_chain(&mock, 1, &[(DATA + 16, 16, true)]);
        assert_eq!(deliver_events(&mut eq, &mem, &intr, &mut q), 2);
        assert_eq!(used(&mem, &mock, 0), (0, 0));
        assert_eq!(used(&mem, &mock, 1), (1, 16));
        assert_eq!(
            event_at(&mem, DATA + 16).event,
            event::NO_EVENT | event::EVENTS_MISSED
        );
        // A device reset forgets what was waiting.
        q.push(ScsiEvent::transport_reset(1, 0, event::RESET_RESCAN));
        q.reset(false);
        assert!(!q.has_work());
    }

    #[test]
    fn removed_lun_answers_as_a_missing_one_at_once() {
        let mem = memory();
        let (mock, mut aq) = queue(&mem, 0, REQUEST_QUEUE);
        let (mut host, _f) = host_with_disk();
        let bus = host.bus().clone();
        let (unit, _g) = disk_unit("scsi0-0-2-1");
        bus.add(2, 1, "scsi0-0-2-1", unit.clone(), None).unwrap();
        // The address is taken: refused with QEMU's words.
        let e = bus.add(2, 1, "other", unit, None).unwrap_err();
        assert_eq!(e.to_string(), "lun already used by 'scsi0-0-2-1'");
        let intr = CountingInterrupt::default();
        let inquiry = |host: &mut ScsiHost, aq: &mut ActiveQueue, lun: [u8; 8], at: u16| {
            request_header(&mem, lun, &[0x12, 0, 0, 0, 36, 0]);
            add_chain(
                &mock,
                at,
                &[(HDR, 51, false), (RESP, 108, true), (DATA, 36, true)],
            );
            drain(aq, &mem, &intr, |c| host.request(&mem, c));
            let mut r = [0u8; 12];
            mem.read_slice(&mut r, GuestAddress(RESP)).unwrap();
            let pq: u8 = mem.read_obj(GuestAddress(DATA)).unwrap();
            (r[11], pq)
        };
        assert_eq!(
            inquiry(&mut host, &mut aq, [1, 2, 0, 1, 0, 0, 0, 0], 0),
            (response::OK, 0x00)
        );
        // Removed: INQUIRY says "no unit here" (LUN 0 is still on the target).
        bus.remove(2, 1).unwrap();
        assert_eq!(
            inquiry(&mut host, &mut aq, [1, 2, 0, 1, 0, 0, 0, 0], 3),
            (response::OK, 0x7f)
        );
        // The target's last LUN gone: the target is gone too.
        mem.write_obj(0xeeu8, GuestAddress(DATA)).unwrap();
        bus.remove(2, 0).unwrap();
        assert!(bus.remove(2, 0).is_none());
        assert_eq!(
            inquiry(&mut host, &mut aq, [1, 2, 0, 0, 0, 0, 0, 0], 6).0,
            response::BAD_TARGET
        );
    }

    #[test]
    fn config_space_is_qemus() {
        let d = VirtioScsi::new("scsi0", Vec::new()).unwrap();
        let mut b = [0u8; 36];
        d.read_config(0, &mut b);
        assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 96);
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 32);
        assert_eq!(u16::from_le_bytes(b[30..32].try_into().unwrap()), 255);
        assert_eq!(d.device_type(), 8);
    }
}

//! virtio-scsi (virtio 1.2 §5.6): a SCSI host adapter whose targets are the
//! [`ScsiTarget`]s of `crate::scsi`.
//!
//! Queues: 0 control (task management, asynchronous notification queries),
//! 1 event (buffers kept for events; none are sent yet), 2 requests. A request
//! chain is the driver's header (8-byte LUN, tag, task attributes, CDB of
//! `cdb_size` bytes) and data-out buffers, then the device's response (sense
//! length, residual, status, response, `sense_size` bytes of sense) and data-in
//! buffers. The LUN field is SAM's single-level format as Linux and SeaBIOS
//! write it: byte 0 = 1, byte 1 = target id, bytes 2-3 = the LUN (flat space).
//! A request to a target id no unit uses is answered `VIRTIO_SCSI_S_BAD_TARGET`
//! without a SCSI status (SeaBIOS scans all 256 ids this way).

use tracing::{debug, warn};
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress};

use super::block::{guest_slices, sub_range, ImageLock};
use super::queue_util::{drain, segments, Segment};
use super::worker::{DeviceCtx, Worker, WorkerHandler};
use super::{
    device_type, read_config_bytes, ActivateError, Activation, GuestMem, VirtioDevice,
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use crate::scsi::{Data, ScsiTarget};

/// Queue indexes.
const CONTROL_QUEUE: u16 = 0;
const REQUEST_QUEUE: u16 = 2;
/// Queue sizes: control, event, request (QEMU's).
const QUEUE_SIZES: [u16; 3] = [128, 128, 256];
/// Defaults of the configurable CDB and sense sizes.
const CDB_SIZE: u32 = 32;
const SENSE_SIZE: u32 = 96;
/// Data segments per request we advertise (queue size - 2, as QEMU).
const SEG_MAX: u32 = 254;
/// Highest target id and LUN we advertise (QEMU's).
const MAX_TARGET: u16 = 255;
const MAX_LUN: u32 = 16383;

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

/// The adapter's targets and the request logic.
pub struct ScsiHost {
    /// (target id, target), sorted by id.
    targets: Vec<(u8, ScsiTarget)>,
    cdb_size: u32,
    sense_size: u32,
}

impl ScsiHost {
    /// A host over `targets`.
    pub fn new(mut targets: Vec<(u8, ScsiTarget)>) -> Self {
        targets.sort_by_key(|(t, _)| *t);
        ScsiHost {
            targets,
            cdb_size: CDB_SIZE,
            sense_size: SENSE_SIZE,
        }
    }

    fn target(&mut self, id: u8) -> Option<&mut ScsiTarget> {
        self.targets
            .iter_mut()
            .find(|(t, _)| *t == id)
            .map(|(_, t)| t)
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
                let Some(t) = self.target(target) else {
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
        let known = decode_lun(&lun).is_some_and(|(tg, _)| self.target(tg).is_some());
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

impl WorkerHandler for ScsiWorker {
    fn queue_event(&mut self, ctx: &mut DeviceCtx, pos: usize) {
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
            // Event buffers stay with the device until there is an event.
            _ => 0,
        };
    }
}

/// The virtio-scsi device.
pub struct VirtioScsi {
    id: String,
    host: Option<ScsiHost>,
    worker: Option<Worker<ScsiWorker>>,
    cdb_size: u32,
    sense_size: u32,
    /// Locks of the images the units use, held as long as the device.
    _locks: Vec<ImageLock>,
}

impl VirtioScsi {
    /// An adapter with `targets`.
    pub fn new(id: &str, targets: Vec<(u8, ScsiTarget)>) -> Self {
        VirtioScsi {
            id: id.to_string(),
            host: Some(ScsiHost::new(targets)),
            worker: None,
            cdb_size: CDB_SIZE,
            sense_size: SENSE_SIZE,
            _locks: Vec::new(),
        }
    }

    /// Keeps the units' image locks with the device.
    pub fn with_locks(mut self, locks: Vec<ImageLock>) -> Self {
        self._locks = locks;
        self
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
        VIRTIO_RING_F_EVENT_IDX | VIRTIO_RING_F_INDIRECT_DESC
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
    use crate::virtio::queue_util::testing::{add_chain, memory, queue, used, CountingInterrupt};
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

    #[test]
    fn read_10_through_the_request_queue() {
        let mem = memory();
        let (mock, mut aq) = queue(&mem, 0, REQUEST_QUEUE);
        let (mut host, _f) = host_with_disk();
        request_header(
            &mem,
            [1, 2, 0, 0, 0, 0, 0, 0],
            &[0x28, 0, 0, 0, 0, 5, 0, 0, 2, 0],
        );
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

    #[test]
    fn config_space_is_qemus() {
        let d = VirtioScsi::new("scsi0", Vec::new());
        let mut b = [0u8; 36];
        d.read_config(0, &mut b);
        assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 96);
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 32);
        assert_eq!(u16::from_le_bytes(b[30..32].try_into().unwrap()), 255);
        assert_eq!(d.device_type(), 8);
    }
}

//! virtio-input (virtio 1.2 §5.8) keyboards, tablets and mice, as QEMU's
//! `virtio-keyboard-pci`, `virtio-tablet-pci` and `virtio-mouse-pci` present them:
//! the driver reads the device's name, ids and evdev capability bitmaps from the
//! configuration (select/subsel), then receives Linux input events (`type`, `code`,
//! `value`, each batch ended by `EV_SYN`) in buffers it posts on the event queue.
//! LED changes the guest writes to the status queue are kept for the VNC LED
//! extension.
//!
//! Events come from the console's input router on other threads: they are queued
//! here and an eventfd wakes the device's worker, which copies them into the
//! driver's buffers (events wait, up to a bound, while the driver has none posted).

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use machine_spec::InputKind;
use virtio_queue::QueueT;
use vm_memory::Bytes;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::display::input::{Keyboard, Pointer, ABS_MAX};
use crate::display::keycodes;
use crate::virtio::queue_util::{notify_if_needed, segments};
use crate::virtio::worker::{DeviceCtx, Worker, WorkerHandler};
use crate::virtio::{
    read_config_bytes, ActivateError, Activation, VirtioDevice, VIRTIO_RING_F_EVENT_IDX,
};

/// virtio device id of input devices.
pub const DEVICE_TYPE: u32 = 18;
/// Configuration selectors.
const CFG_ID_NAME: u8 = 0x01;
const CFG_ID_SERIAL: u8 = 0x02;
const CFG_ID_DEVIDS: u8 = 0x03;
const CFG_PROP_BITS: u8 = 0x10;
const CFG_EV_BITS: u8 = 0x11;
const CFG_ABS_INFO: u8 = 0x12;
/// Linux event types and codes (linux/input-event-codes.h).
const EV_SYN: u16 = 0x00;
const EV_KEY: u16 = 0x01;
const EV_REL: u16 = 0x02;
const EV_ABS: u16 = 0x03;
const EV_LED: u16 = 0x11;
const REL_X: u16 = 0x00;
const REL_Y: u16 = 0x01;
const REL_WHEEL: u16 = 0x08;
const ABS_X: u16 = 0x00;
const ABS_Y: u16 = 0x01;
const BTN_LEFT: u16 = 0x110;
const BTN_RIGHT: u16 = 0x111;
const BTN_MIDDLE: u16 = 0x112;
const LED_NUML: u16 = 0;
const LED_CAPSL: u16 = 1;
const LED_SCROLLL: u16 = 2;
/// Events kept while the driver has no buffers posted.
const PENDING_MAX: usize = 1024;

/// One Linux input event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub kind: u16,
    pub code: u16,
    pub value: u32,
}

impl Event {
    fn bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&self.kind.to_le_bytes());
        b[2..4].copy_from_slice(&self.code.to_le_bytes());
        b[4..8].copy_from_slice(&self.value.to_le_bytes());
        b
    }
}

const SYN: Event = Event {
    kind: EV_SYN,
    code: 0,
    value: 0,
};

/// What the device reports: its configuration space answers.
#[derive(Debug, Clone)]
pub struct Identity {
    kind: InputKind,
}

impl Identity {
    pub fn new(kind: InputKind) -> Identity {
        Identity { kind }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            InputKind::Keyboard => "QEMU Virtio Keyboard",
            InputKind::Tablet => "QEMU Virtio Tablet",
            InputKind::Mouse => "QEMU Virtio Mouse",
        }
    }

    /// The answer to selector `select`, sub-selector `subsel` (empty: none).
    pub fn answer(&self, select: u8, subsel: u8) -> Vec<u8> {
        let bitmap = |codes: &[u16]| {
            let mut b = vec![0u8; 128];
            for &c in codes {
                b[usize::from(c / 8)] |= 1 << (c % 8);
            }
            while b.last() == Some(&0) {
                b.pop();
            }
            b
        };
        let buttons = [BTN_LEFT, BTN_RIGHT, BTN_MIDDLE];
        match (select, self.kind) {
            (CFG_ID_NAME, _) => self.name().as_bytes().to_vec(),
            (CFG_ID_SERIAL, _) => Vec::new(),
            (CFG_ID_DEVIDS, k) => {
                let product: u16 = match k {
                    InputKind::Keyboard => 1,
                    InputKind::Mouse => 2,
                    InputKind::Tablet => 3,
                };
                [0x06u16, 0x0627, product, 1]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect()
            }
            (CFG_PROP_BITS, _) => Vec::new(),
            (CFG_EV_BITS, InputKind::Keyboard) => match u16::from(subsel) {
                EV_KEY => {
                    let keys: Vec<u16> = (1..256)
                        .filter(|&k| keycodes::linux_to_qnum(k).is_some())
                        .collect();
                    bitmap(&keys)
                }
                EV_LED => bitmap(&[LED_NUML, LED_CAPSL, LED_SCROLLL]),
                _ => Vec::new(),
            },
            (CFG_EV_BITS, k) => match u16::from(subsel) {
                EV_KEY => bitmap(&buttons),
                EV_REL if k == InputKind::Mouse => bitmap(&[REL_X, REL_Y, REL_WHEEL]),
                EV_REL => bitmap(&[REL_WHEEL]),
                EV_ABS if k == InputKind::Tablet => bitmap(&[ABS_X, ABS_Y]),
                _ => Vec::new(),
            },
            (CFG_ABS_INFO, InputKind::Tablet) if matches!(u16::from(subsel), ABS_X | ABS_Y) => {
                [0u32, ABS_MAX, 0, 0, 0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

/// The host side: where the router puts events, and what the guest reported.
pub struct Shared {
    kind: InputKind,
    pending: Mutex<VecDeque<Event>>,
    wake: EventFd,
    /// The driver is up (DRIVER_OK reached, not reset since).
    active: AtomicBool,
    leds: AtomicU8,
    /// Buttons as last reported (RFB mask), to send only changes.
    buttons: AtomicU8,
}

impl Shared {
    /// Whether this is a tablet or mouse (else a keyboard).
    pub fn is_pointer(&self) -> bool {
        self.kind != InputKind::Keyboard
    }

    fn send(&self, events: &[Event]) {
        if !self.active.load(Ordering::Acquire) {
            tracing::debug!(kind = ?self.kind, "virtio-input: driver not ready; events dropped");
            return;
        }
        {
            let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() + events.len() + 1 > PENDING_MAX {
                return;
            }
            q.extend(events.iter().copied());
            q.push_back(SYN);
        }
        let _ = self.wake.write(1);
    }
}

impl Keyboard for Shared {
    fn key(&self, linux_keycode: u16, down: bool) {
        self.send(&[Event {
            kind: EV_KEY,
            code: linux_keycode,
            value: u32::from(down),
        }]);
    }
    fn active(&self) -> bool {
        self.kind == InputKind::Keyboard && self.active.load(Ordering::Acquire)
    }
    fn leds(&self) -> u8 {
        self.leds.load(Ordering::Relaxed)
    }
}

impl Pointer for Shared {
    fn absolute(&self) -> bool {
        self.kind == InputKind::Tablet
    }
    fn active(&self) -> bool {
        self.kind != InputKind::Keyboard && self.active.load(Ordering::Acquire)
    }
    fn abs(&self, x: u32, y: u32) {
        self.send(&[
            Event {
                kind: EV_ABS,
                code: ABS_X,
                value: x,
            },
            Event {
                kind: EV_ABS,
                code: ABS_Y,
                value: y,
            },
        ]);
    }
    fn rel(&self, dx: i32, dy: i32) {
        self.send(&[
            Event {
                kind: EV_REL,
                code: REL_X,
                value: dx as u32,
            },
            Event {
                kind: EV_REL,
                code: REL_Y,
                value: dy as u32,
            },
        ]);
    }
    fn buttons(&self, mask: u8) {
        let old = self.buttons.swap(mask & 7, Ordering::AcqRel);
        let mut ev = Vec::new();
        for (bit, code) in [(1u8, BTN_LEFT), (2, BTN_MIDDLE), (4, BTN_RIGHT)] {
            if (old ^ mask) & bit != 0 {
                ev.push(Event {
                    kind: EV_KEY,
                    code,
                    value: u32::from(mask & bit != 0),
                });
            }
        }
        // Wheel: RFB sends a press per notch.
        if mask & 0x08 != 0 {
            ev.push(Event {
                kind: EV_REL,
                code: REL_WHEEL,
                value: 1,
            });
        }
        if mask & 0x10 != 0 {
            ev.push(Event {
                kind: EV_REL,
                code: REL_WHEEL,
                value: (-1i32) as u32,
            });
        }
        if !ev.is_empty() {
            self.send(&ev);
        }
    }
}

struct InputWorker {
    shared: Arc<Shared>,
}

impl InputWorker {
    /// Copies pending events into posted event-queue buffers.
    fn deliver(&mut self, ctx: &mut DeviceCtx) {
        let Some(pos) = ctx.queue(0) else {
            return;
        };
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        let aq = &mut queues[pos];
        let mut used = 0;
        loop {
            let mut pending = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let Some(&ev) = pending.front() else {
                break;
            };
            let Some(chain) = aq.queue.pop_descriptor_chain(&*mem) else {
                break;
            };
            let head = chain.head_index();
            let seg = segments(chain).into_iter().find(|s| s.write && s.len >= 8);
            let len = match seg {
                Some(s) if mem.write_slice(&ev.bytes(), s.addr).is_ok() => {
                    pending.pop_front();
                    8
                }
                _ => 0,
            };
            drop(pending);
            if aq.queue.add_used(&*mem, head, len).is_err() {
                break;
            }
            used += 1;
        }
        tracing::debug!(kind = ?self.shared.kind, used, "virtio-input: events delivered");
        if used > 0 {
            notify_if_needed(aq, &*mem, interrupt.as_ref());
        }
    }

    /// Reads LED events from the status queue.
    fn status(&mut self, ctx: &mut DeviceCtx, pos: usize) {
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        let aq = &mut queues[pos];
        let mut used = 0;
        while let Some(chain) = aq.queue.pop_descriptor_chain(&*mem) {
            let head = chain.head_index();
            for s in segments(chain)
                .into_iter()
                .filter(|s| !s.write && s.len >= 8)
            {
                let mut b = [0u8; 8];
                if mem.read_slice(&mut b, s.addr).is_ok() {
                    let kind = u16::from_le_bytes([b[0], b[1]]);
                    let code = u16::from_le_bytes([b[2], b[3]]);
                    let on = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) != 0;
                    let bit = match code {
                        LED_SCROLLL => 1,
                        LED_NUML => 2,
                        LED_CAPSL => 4,
                        _ => 0,
                    };
                    if kind == EV_LED && bit != 0 {
                        if on {
                            self.shared.leds.fetch_or(bit, Ordering::Relaxed);
                        } else {
                            self.shared.leds.fetch_and(!bit, Ordering::Relaxed);
                        }
                    }
                }
            }
            if aq.queue.add_used(&*mem, head, 0).is_err() {
                break;
            }
            used += 1;
        }
        if used > 0 {
            notify_if_needed(aq, &*mem, interrupt.as_ref());
        }
    }
}

impl WorkerHandler for InputWorker {
    fn extra_fds(&self) -> Vec<(RawFd, EventSet)> {
        vec![(self.shared.wake.as_raw_fd(), EventSet::IN)]
    }
    fn queue_event(&mut self, ctx: &mut DeviceCtx, pos: usize) {
        if ctx.queues[pos].index == 1 {
            self.status(ctx, pos);
        } else {
            self.deliver(ctx);
        }
    }
    fn fd_event(&mut self, ctx: &mut DeviceCtx, _i: usize, _events: EventSet) {
        let _ = self.shared.wake.read();
        self.deliver(ctx);
    }
}

/// A virtio-input function.
pub struct VirtioInput {
    id: String,
    identity: Identity,
    select: u8,
    subsel: u8,
    shared: Arc<Shared>,
    worker: Option<Worker<InputWorker>>,
}

impl VirtioInput {
    /// A device of `kind`; `shared()` is what the input router drives.
    pub fn new(id: &str, kind: InputKind) -> std::io::Result<VirtioInput> {
        Ok(VirtioInput {
            id: id.to_string(),
            identity: Identity::new(kind),
            select: 0,
            subsel: 0,
            shared: Arc::new(Shared {
                kind,
                pending: Mutex::new(VecDeque::new()),
                wake: EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
                active: AtomicBool::new(false),
                leds: AtomicU8::new(0),
                buttons: AtomicU8::new(0),
            }),
            worker: None,
        })
    }

    /// The host side, for the input router.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn config(&self) -> Vec<u8> {
        let data = self.identity.answer(self.select, self.subsel);
        let mut c = vec![0u8; 8 + 128];
        c[0] = self.select;
        c[1] = self.subsel;
        c[2] = data.len().min(128) as u8;
        let n = data.len().min(128);
        c[8..8 + n].copy_from_slice(&data[..n]);
        c
    }
}

impl VirtioDevice for VirtioInput {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE
    }
    fn name(&self) -> &'static str {
        "virtio-input"
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![64, 64]
    }
    fn features(&self) -> u64 {
        VIRTIO_RING_F_EVENT_IDX
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config(), offset, data);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            match offset + i as u64 {
                0 => self.select = b,
                1 => self.subsel = b,
                _ => {}
            }
        }
    }
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        let w = Worker::spawn(
            &format!("_{}", self.id),
            InputWorker {
                shared: self.shared.clone(),
            },
            act,
        )
        .map_err(|source| ActivateError::Worker {
            device: "virtio-input",
            source,
        })?;
        self.worker = Some(w);
        self.shared.active.store(true, Ordering::Release);
        Ok(())
    }
    fn reset(&mut self) {
        self.shared.active.store(false, Ordering::Release);
        if let Some(w) = self.worker.take() {
            w.stop();
        }
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_answers_like_qemu() {
        let mut d = VirtioInput::new("input0", InputKind::Tablet).unwrap();
        d.write_config(0, &[CFG_ID_NAME, 0]);
        let mut size = [0u8];
        d.read_config(2, &mut size);
        let mut name = vec![0u8; usize::from(size[0])];
        d.read_config(8, &mut name);
        assert_eq!(name, b"QEMU Virtio Tablet");
        d.write_config(0, &[CFG_ABS_INFO, ABS_X as u8]);
        let mut info = [0u8; 8];
        d.read_config(8, &mut info);
        assert_eq!(u32::from_le_bytes(info[4..8].try_into().unwrap()), 0x7fff);
        d.write_config(0, &[CFG_EV_BITS, EV_KEY as u8]);
        let mut bits = [0u8; 128];
        d.read_config(8, &mut bits);
        assert_eq!(bits[0x110 / 8], 0x07, "left, right, middle");
        let k = Identity::new(InputKind::Keyboard);
        let keys = k.answer(CFG_EV_BITS, EV_KEY as u8);
        assert_ne!(keys[30 / 8] & (1 << (30 % 8)), 0, "KEY_A");
        assert!(k.answer(CFG_EV_BITS, EV_ABS as u8).is_empty());
    }

    #[test]
    fn events_wait_for_an_active_driver_and_end_with_syn() {
        let d = VirtioInput::new("input0", InputKind::Tablet).unwrap();
        let s = d.shared();
        s.abs(1, 2);
        assert!(s.pending.lock().unwrap().is_empty(), "no driver: dropped");
        s.active.store(true, Ordering::Release);
        s.abs(1, 2);
        s.buttons(1);
        s.buttons(1);
        let q: Vec<Event> = s.pending.lock().unwrap().iter().copied().collect();
        assert_eq!(q.len(), 5, "{q:?}");
        assert_eq!(q[2], SYN);
        assert_eq!((q[3].kind, q[3].code, q[3].value), (EV_KEY, BTN_LEFT, 1));
    }
}

//! The device worker thread: waits on queue notifications and backend file
//! descriptors with epoll and hands each event to the device's handler.
//!
//! A device's handler owns its backend while the device is active. Stopping the
//! worker (device reset, VMM shutdown) joins the thread and returns the handler,
//! so the backend survives a guest driver reset and re-initialisation.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::warn;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{Activation, ActiveQueue, GuestMem, VirtioInterrupt};

const STOP_TOKEN: u64 = 0;
const QUEUE_TOKEN_BASE: u64 = 1;
const FD_TOKEN_BASE: u64 = 1 << 32;

/// What a handler works with: memory, its queues and the interrupt.
pub struct DeviceCtx {
    pub mem: GuestMem,
    pub features: u64,
    /// Enabled queues in index order (see [`DeviceCtx::queue`]).
    pub queues: Vec<ActiveQueue>,
    pub interrupt: Arc<dyn VirtioInterrupt>,
    epoll: Epoll,
    extra: Vec<RawFd>,
}

impl DeviceCtx {
    /// A context outside a worker thread, for unit tests that drive a handler.
    #[cfg(test)]
    pub fn for_test(
        mem: GuestMem,
        features: u64,
        queues: Vec<ActiveQueue>,
        interrupt: Arc<dyn VirtioInterrupt>,
        epoll: Epoll,
    ) -> Self {
        DeviceCtx {
            mem,
            features,
            queues,
            interrupt,
            epoll,
            extra: Vec::new(),
        }
    }

    /// Position in `queues` of the queue with virtio index `index`.
    pub fn queue(&self, index: u16) -> Option<usize> {
        self.queues.iter().position(|q| q.index == index)
    }

    /// Changes which readiness events wake the worker for extra fd `i`
    /// (empty set = not watched, e.g. a tap while the guest gave no buffers).
    pub fn watch_fd(&mut self, i: usize, events: EventSet) {
        let Some(&fd) = self.extra.get(i).filter(|fd| **fd >= 0) else {
            return;
        };
        let ev = EpollEvent::new(events, FD_TOKEN_BASE + i as u64);
        if let Err(e) = self.epoll.ctl(ControlOperation::Modify, fd, ev) {
            warn!("epoll modify fd {fd}: {e}");
        }
    }
}

impl DeviceCtx {
    /// Replaces extra fd `i` (a socket backend whose client came or went):
    /// stops watching the old fd and watches `fd` for `events`, if any.
    pub fn replace_fd(&mut self, i: usize, fd: Option<RawFd>, events: EventSet) {
        let Some(slot) = self.extra.get_mut(i) else {
            return;
        };
        if *slot >= 0 {
            let _ = self
                .epoll
                .ctl(ControlOperation::Delete, *slot, EpollEvent::default());
        }
        *slot = -1;
        if let Some(fd) = fd {
            let ev = EpollEvent::new(events, FD_TOKEN_BASE + i as u64);
            match self.epoll.ctl(ControlOperation::Add, fd, ev) {
                Ok(()) => *slot = fd,
                Err(e) => warn!("epoll add fd {fd}: {e}"),
            }
        }
    }
}

/// A device's data-path logic.
pub trait WorkerHandler: Send + 'static {
    /// Host fds to watch besides the queue notifications, and the initial
    /// events for each (a negative fd reserves slot `i` for later).
    fn extra_fds(&self) -> Vec<(RawFd, EventSet)> {
        Vec::new()
    }
    /// Called once on the worker thread before waiting.
    fn started(&mut self, _ctx: &mut DeviceCtx) {}
    /// The driver notified the queue at position `pos` in `ctx.queues`.
    fn queue_event(&mut self, ctx: &mut DeviceCtx, pos: usize);
    /// Extra fd `i` is ready with `events`.
    fn fd_event(&mut self, _ctx: &mut DeviceCtx, _i: usize, _events: EventSet) {}
    /// The worker stops for a machine save ([`Worker::stop_for_save`]): complete
    /// whatever was taken from the queues onto their used rings.
    fn stopping_for_save(&mut self, _ctx: &mut DeviceCtx) {}
}

/// A running worker thread.
pub struct Worker<H> {
    stop: EventFd,
    /// Set before `stop` is signalled when the stop is for a save.
    saving: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<H>>,
}

impl<H: WorkerHandler> Worker<H> {
    /// Starts `handler` on a thread named `name`.
    pub fn spawn(name: &str, handler: H, act: Activation) -> std::io::Result<Self> {
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let epoll = Epoll::new()?;
        epoll.ctl(
            ControlOperation::Add,
            stop.as_raw_fd(),
            EpollEvent::new(EventSet::IN, STOP_TOKEN),
        )?;
        for (pos, q) in act.queues.iter().enumerate() {
            epoll.ctl(
                ControlOperation::Add,
                q.kick.as_raw_fd(),
                EpollEvent::new(EventSet::IN, QUEUE_TOKEN_BASE + pos as u64),
            )?;
        }
        let mut extra = Vec::new();
        for (i, (fd, events)) in handler.extra_fds().into_iter().enumerate() {
            if fd < 0 {
                extra.push(fd);
                continue;
            }
            epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(events, FD_TOKEN_BASE + i as u64),
            )?;
            extra.push(fd);
        }
        let ctx = DeviceCtx {
            mem: act.mem,
            features: act.features,
            queues: act.queues,
            interrupt: act.interrupt,
            epoll,
            extra,
        };
        let stop_fd = stop.try_clone()?;
        let saving = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let saving_seen = saving.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                crate::seccomp::enter_or_exit(crate::seccomp::Thread::Worker);
                run(handler, ctx, stop_fd, &saving_seen)
            })?;
        Ok(Worker {
            stop,
            saving,
            thread: Some(thread),
        })
    }

    /// Stops the thread and returns the handler (and with it the backend).
    pub fn stop(mut self) -> Option<H> {
        let _ = self.stop.write(1);
        self.thread.take()?.join().ok()
    }

    /// [`Worker::stop`] for a machine save: the handler completes what it took
    /// from the queues first ([`WorkerHandler::stopping_for_save`]).
    pub fn stop_for_save(self) -> Option<H> {
        self.saving.store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop()
    }
}

impl<H> Drop for Worker<H> {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.stop.write(1);
            let _ = t.join();
        }
    }
}

fn run<H: WorkerHandler>(
    mut handler: H,
    mut ctx: DeviceCtx,
    stop: EventFd,
    saving: &std::sync::atomic::AtomicBool,
) -> H {
    handler.started(&mut ctx);
    let mut events = vec![EpollEvent::default(); 32];
    loop {
        let n = match ctx.epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!("virtio worker epoll: {e}");
                return handler;
            }
        };
        for ev in &events[..n] {
            match ev.data() {
                STOP_TOKEN => {
                    let _ = stop.read();
                    if saving.load(std::sync::atomic::Ordering::SeqCst) {
                        handler.stopping_for_save(&mut ctx);
                    }
                    return handler;
                }
                t if t >= FD_TOKEN_BASE => {
                    handler.fd_event(&mut ctx, (t - FD_TOKEN_BASE) as usize, ev.event_set());
                }
                t => {
                    let pos = (t - QUEUE_TOKEN_BASE) as usize;
                    // Non-blocking read: a spurious wake-up reads EAGAIN.
                    let _ = ctx.queues[pos].kick.read();
                    handler.queue_event(&mut ctx, pos);
                }
            }
        }
    }
}

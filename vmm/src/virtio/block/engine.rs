//! Asynchronous reads and writes for virtio-blk: many requests in flight per
//! queue, submitted through io_uring where the kernel offers it, else through a
//! small pool of threads doing blocking `preadv`/`pwritev` (what QEMU calls
//! `aio=threads`). Either way completions are signalled on an eventfd the queue
//! worker waits on beside the queue's notification, and they come back in any
//! order, tagged with what the submitter gave.
//!
//! The engine owns each transfer's iovec array until it completes; the buffers
//! the iovecs point at (guest memory) must stay mapped until then, which the
//! queue worker guarantees by draining the engine before it lets go of guest
//! memory (device reset, VMM exit). Dropping an engine waits for everything in
//! flight for the same reason.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use io_uring::{opcode, types, IoUring};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Which submission path to use (`<driver io=…>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// io_uring when the kernel allows it, else threads.
    #[default]
    Auto,
    /// io_uring, falling back to threads (with a warning) when unavailable.
    IoUring,
    /// The thread pool.
    Threads,
}

impl From<machine_spec::DiskIo> for IoMode {
    fn from(io: machine_spec::DiskIo) -> Self {
        match io {
            machine_spec::DiskIo::Default => IoMode::Auto,
            machine_spec::DiskIo::Native | machine_spec::DiskIo::IoUring => IoMode::IoUring,
            machine_spec::DiskIo::Threads => IoMode::Threads,
        }
    }
}

/// Threads per queue's pool: enough to keep a host NVMe queue busy for one
/// guest queue without a thread per request.
pub const POOL_THREADS: usize = 4;

/// One read or write: `iov` (guest buffers) at byte `offset` of `fd`.
#[derive(Debug)]
pub struct Transfer {
    pub fd: RawFd,
    pub write: bool,
    pub offset: u64,
    pub iov: Vec<libc::iovec>,
}

// SAFETY: the iovecs point into guest memory, which is shared with the guest
// anyway and accessed only through the kernel's reads and writes (never through
// Rust references); the engine keeps the array alive until the I/O completes.
unsafe impl Send for Transfer {}

impl Transfer {
    /// Bytes the transfer moves when it completes in full.
    pub fn len(&self) -> usize {
        self.iov.iter().map(|v| v.iov_len).sum()
    }

    /// Whether there is nothing to move.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A finished transfer: its tag and the bytes moved (or the error).
#[derive(Debug)]
pub struct Completion {
    pub tag: u64,
    pub result: io::Result<usize>,
}

/// The submission path in use.
enum Path {
    Uring(Box<IoUring>),
    Pool(Pool),
}

/// Submits transfers and hands back their completions.
pub struct Engine {
    path: Path,
    /// Signalled when completions are ready (registered with io_uring, written by
    /// the pool threads).
    ready: EventFd,
    /// Transfers in flight by tag: their iovec arrays must outlive the I/O.
    inflight: HashMap<u64, Transfer>,
    /// io_uring entries pushed but not yet submitted.
    unsubmitted: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.describe())
            .field("inflight", &self.inflight.len())
            .finish()
    }
}

impl Engine {
    /// An engine for up to `depth` transfers in flight, on the path `mode`
    /// asks for; the second value says why io_uring was not used when it was
    /// wanted (for the domain log).
    pub fn new(mode: IoMode, depth: u32) -> io::Result<(Self, Option<String>)> {
        let ready = EventFd::new(EFD_NONBLOCK)?;
        let mut why_not = None;
        if mode != IoMode::Threads {
            match Self::uring(depth, &ready) {
                Ok(ring) => {
                    return Ok((
                        Engine {
                            path: Path::Uring(Box::new(ring)),
                            ready,
                            inflight: HashMap::new(),
                            unsubmitted: 0,
                        },
                        None,
                    ))
                }
                Err(e) => why_not = Some(format!("io_uring unavailable ({e})")),
            }
        }
        let pool = Pool::start(POOL_THREADS, ready.try_clone()?)?;
        Ok((
            Engine {
                path: Path::Pool(pool),
                ready,
                inflight: HashMap::new(),
                unsubmitted: 0,
            },
            why_not,
        ))
    }

    fn uring(depth: u32, ready: &EventFd) -> io::Result<IoUring> {
        let ring = IoUring::new(depth.next_power_of_two().max(8))?;
        ring.submitter().register_eventfd(ready.as_raw_fd())?;
        Ok(ring)
    }

    /// "io_uring" or "a pool of N threads".
    pub fn describe(&self) -> String {
        match &self.path {
            Path::Uring(_) => "io_uring".to_string(),
            Path::Pool(p) => format!("a pool of {} threads", p.threads.len()),
        }
    }

    /// The fd that becomes readable when completions are ready.
    pub fn ready_fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }

    /// Transfers submitted and not yet reaped.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Starts `t` under `tag` (unique among those in flight). With io_uring the
    /// request is queued until [`Engine::submit`] (one system call per batch).
    pub fn push(&mut self, tag: u64, t: Transfer) -> io::Result<()> {
        let iov_ptr = t.iov.as_ptr();
        let cnt = t.iov.len();
        let (fd, write, offset) = (t.fd, t.write, t.offset);
        // The Vec's heap buffer does not move when the Vec is moved into the map.
        self.inflight.insert(tag, t);
        let r = match &mut self.path {
            Path::Uring(ring) => {
                let cnt = cnt as u32;
                let entry = if write {
                    opcode::Writev::new(types::Fd(fd), iov_ptr, cnt)
                        .offset(offset)
                        .build()
                } else {
                    opcode::Readv::new(types::Fd(fd), iov_ptr, cnt)
                        .offset(offset)
                        .build()
                }
                .user_data(tag);
                if ring.submission().is_full() {
                    ring.submit()?;
                    self.unsubmitted = 0;
                }
                // SAFETY: the iovec array (owned by `self.inflight` until the
                // completion is reaped) and the guest buffers it points at (kept
                // mapped by the caller until the engine is drained) outlive the
                // I/O; the fd stays open as long (see RawDisk::retired).
                let pushed = unsafe { ring.submission().push(&entry) };
                self.unsubmitted += 1;
                pushed.map_err(|_| io::Error::other("io_uring submission queue full"))
            }
            Path::Pool(pool) => pool.send(Job {
                tag,
                fd,
                write,
                offset,
                iov: iov_ptr,
                cnt,
            }),
        };
        if r.is_err() {
            self.inflight.remove(&tag);
        }
        r
    }

    /// Hands queued io_uring entries to the kernel.
    pub fn submit(&mut self) -> io::Result<()> {
        if let Path::Uring(ring) = &mut self.path {
            if self.unsubmitted > 0 {
                ring.submit()?;
                self.unsubmitted = 0;
            }
        }
        Ok(())
    }

    /// Completions ready now, without waiting; each reaped transfer is returned
    /// with its completion.
    pub fn reap(&mut self, out: &mut Vec<(Completion, Transfer)>) {
        let _ = self.ready.read();
        let mut done = Vec::new();
        match &mut self.path {
            Path::Uring(ring) => {
                for cqe in ring.completion() {
                    let res = cqe.result();
                    done.push(Completion {
                        tag: cqe.user_data(),
                        result: if res < 0 {
                            Err(io::Error::from_raw_os_error(-res))
                        } else {
                            Ok(res as usize)
                        },
                    });
                }
            }
            Path::Pool(pool) => done.extend(pool.done.try_iter()),
        }
        for c in done {
            if let Some(t) = self.inflight.remove(&c.tag) {
                out.push((c, t));
            }
        }
    }

    /// Waits until at least one completion is ready (returns at once when
    /// nothing is in flight), then reaps.
    pub fn wait(&mut self, out: &mut Vec<(Completion, Transfer)>) -> io::Result<()> {
        if self.inflight.is_empty() {
            return Ok(());
        }
        let before = out.len();
        self.submit()?;
        loop {
            self.reap(out);
            if out.len() > before {
                return Ok(());
            }
            match &mut self.path {
                Path::Uring(ring) => match ring.submit_and_wait(1) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                },
                Path::Pool(pool) => {
                    let c = pool
                        .done
                        .recv()
                        .map_err(|_| io::Error::other("I/O threads gone"))?;
                    if let Some(t) = self.inflight.remove(&c.tag) {
                        out.push((c, t));
                    }
                }
            }
        }
    }

    /// Waits for everything in flight.
    pub fn drain(&mut self, out: &mut Vec<(Completion, Transfer)>) -> io::Result<()> {
        while !self.inflight.is_empty() {
            self.wait(out)?;
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let mut sink = Vec::new();
        if let Err(e) = self.drain(&mut sink) {
            // Cannot happen short of a kernel bug; the memory may still be in use.
            tracing::error!("virtio-blk: waiting for I/O in flight: {e}");
        }
    }
}

/// A transfer handed to a pool thread.
struct Job {
    tag: u64,
    fd: RawFd,
    write: bool,
    offset: u64,
    iov: *const libc::iovec,
    cnt: usize,
}

// SAFETY: a Job's iovec array is owned by the Engine (`inflight`) until the
// job's completion is reaped, and the memory it points at stays mapped until the
// engine is drained; the receiving thread only passes the pointers to the kernel.
unsafe impl Send for Job {}

impl Job {
    fn run(&self) -> io::Result<usize> {
        loop {
            let cnt = self.cnt.min(libc::UIO_MAXIOV as usize) as libc::c_int;
            // SAFETY: see `unsafe impl Send for Job`: the iovecs and the buffers
            // are valid for the call; the kernel moves at most their lengths.
            let n = unsafe {
                if self.write {
                    libc::pwritev(self.fd, self.iov, cnt, self.offset as libc::off_t)
                } else {
                    libc::preadv(self.fd, self.iov, cnt, self.offset as libc::off_t)
                }
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// A pool thread: runs jobs until the pool is dropped.
fn pool_thread(rx: &Mutex<Receiver<Job>>, done: &Sender<Completion>, ready: &EventFd) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = job.run();
        if done
            .send(Completion {
                tag: job.tag,
                result,
            })
            .is_err()
        {
            return;
        }
        let _ = ready.write(1);
    }
}

/// Threads taking jobs from one channel.
struct Pool {
    jobs: Option<Sender<Job>>,
    done: Receiver<Completion>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start(n: usize, ready: EventFd) -> io::Result<Self> {
        let (jobs, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let (done_tx, done) = channel();
        let ready = Arc::new(ready);
        let mut threads = Vec::new();
        for i in 0..n {
            let (rx, done_tx, ready) = (rx.clone(), done_tx.clone(), ready.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("blk-io{i}"))
                    .spawn(move || {
                        // Started before the VMM's threads confine themselves
                        // (Block::with_queueing, at attach): confine this one now.
                        crate::seccomp::enter_or_exit(crate::seccomp::Thread::Worker);
                        pool_thread(&rx, &done_tx, &ready)
                    })?,
            );
        }
        Ok(Pool {
            jobs: Some(jobs),
            done,
            threads,
        })
    }

    fn send(&self, job: Job) -> io::Result<()> {
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| io::Error::other("I/O threads gone"))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn iov(buf: &mut [u8]) -> Vec<libc::iovec> {
        vec![libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        }]
    }

    /// Many reads in flight at once come back, each with its own data, on both paths.
    #[test]
    fn many_reads_in_flight_complete_with_their_data() {
        let data: Vec<u8> = (0..64 * 512).map(|i| (i / 512) as u8).collect();
        let f = file(&data);
        let fd = std::fs::File::open(f.path()).unwrap();
        for mode in [IoMode::IoUring, IoMode::Threads] {
            let (mut e, why) = Engine::new(mode, 64).unwrap();
            if mode == IoMode::IoUring && why.is_some() {
                eprintln!("SKIP io_uring part: {why:?}");
                continue;
            }
            let mut bufs = vec![vec![0u8; 512]; 64];
            for (i, b) in bufs.iter_mut().enumerate() {
                let t = Transfer {
                    fd: fd.as_raw_fd(),
                    write: false,
                    offset: (63 - i as u64) * 512,
                    iov: iov(b),
                };
                e.push(i as u64, t).unwrap();
            }
            assert_eq!(e.in_flight(), 64);
            let mut out = Vec::new();
            e.drain(&mut out).unwrap();
            assert_eq!(out.len(), 64, "{}", e.describe());
            let mut tags: Vec<u64> = out.iter().map(|(c, _)| c.tag).collect();
            tags.sort();
            assert_eq!(tags, (0..64).collect::<Vec<_>>(), "each completion once");
            for (c, t) in &out {
                assert_eq!(c.result.as_ref().unwrap(), &t.len());
            }
            for (i, b) in bufs.iter().enumerate() {
                assert!(b.iter().all(|&x| x == 63 - i as u8), "buffer {i}");
            }
        }
    }

    /// An error completes its own transfer only.
    #[test]
    fn errors_come_back_per_transfer() {
        let f = file(&[0u8; 4096]);
        let ro = std::fs::File::open(f.path()).unwrap();
        for mode in [IoMode::Auto, IoMode::Threads] {
            let (mut e, _) = Engine::new(mode, 8).unwrap();
            let mut a = vec![1u8; 512];
            let mut b = vec![0u8; 512];
            e.push(
                1,
                Transfer {
                    fd: ro.as_raw_fd(),
                    write: true,
                    offset: 0,
                    iov: iov(&mut a),
                },
            )
            .unwrap();
            e.push(
                2,
                Transfer {
                    fd: ro.as_raw_fd(),
                    write: false,
                    offset: 512,
                    iov: iov(&mut b),
                },
            )
            .unwrap();
            let mut out = Vec::new();
            e.drain(&mut out).unwrap();
            out.sort_by_key(|(c, _)| c.tag);
            assert_eq!(
                out[0].0.result.as_ref().unwrap_err().raw_os_error(),
                Some(libc::EBADF),
                "{}",
                e.describe()
            );
            assert_eq!(out[1].0.result.as_ref().unwrap(), &512);
        }
    }
}

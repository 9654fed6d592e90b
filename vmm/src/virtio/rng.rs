//! virtio-rng (virtio 1.2 §5.4): one queue of device-writable buffers, filled
//! from the host entropy source (`/dev/urandom` or the XML's `<backend>`).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use tracing::warn;
use virtio_queue::DescriptorChain;
use vm_memory::Bytes;

use super::queue_util::{drain, segments};
use super::worker::{DeviceCtx, Worker, WorkerHandler};
use super::{
    device_type, ActivateError, Activation, GuestMem, VirtioDevice, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
};

/// Most bytes handed out per request, so one request cannot stall the worker.
const MAX_PER_REQUEST: usize = 64 << 10;

/// Fills request chains from an entropy source.
pub struct Entropy {
    source: Box<dyn Read + Send>,
}

impl Entropy {
    /// Wraps an entropy source.
    pub fn new(source: Box<dyn Read + Send>) -> Self {
        Entropy { source }
    }

    /// Serves one chain; returns the bytes written.
    pub fn process(&mut self, mem: &GuestMem, chain: DescriptorChain<&GuestMem>) -> u32 {
        let mut written = 0usize;
        let mut buf = Vec::new();
        for s in segments(chain).into_iter().filter(|s| s.write) {
            let n = (s.len as usize).min(MAX_PER_REQUEST - written);
            if n == 0 {
                break;
            }
            buf.resize(n, 0);
            if let Err(e) = self.source.read_exact(&mut buf) {
                warn!("virtio-rng: entropy source: {e}");
                break;
            }
            if mem.write_slice(&buf, s.addr).is_err() {
                break;
            }
            written += n;
        }
        written as u32
    }
}

struct RngWorker {
    entropy: Entropy,
}

impl WorkerHandler for RngWorker {
    fn queue_event(&mut self, ctx: &mut DeviceCtx, pos: usize) {
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        let e = &mut self.entropy;
        drain(&mut queues[pos], mem, interrupt.as_ref(), |c| {
            e.process(mem, c)
        });
    }
}

/// The virtio-rng device.
pub struct Rng {
    id: String,
    entropy: Option<Entropy>,
    worker: Option<Worker<RngWorker>>,
}

impl Rng {
    /// Opens `source` (a character device or file).
    pub fn open(id: &str, source: &Path) -> std::io::Result<Self> {
        Ok(Self::with_source(id, Box::new(File::open(source)?)))
    }

    /// A device over any byte source (tests).
    pub fn with_source(id: &str, source: Box<dyn Read + Send>) -> Self {
        Rng {
            id: id.to_string(),
            entropy: Some(Entropy::new(source)),
            worker: None,
        }
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        device_type::RNG
    }
    fn name(&self) -> &'static str {
        "virtio-rng"
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![64]
    }
    fn features(&self) -> u64 {
        VIRTIO_RING_F_EVENT_IDX | VIRTIO_RING_F_INDIRECT_DESC
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        let entropy = self.entropy.take().ok_or(ActivateError::NoBackend {
            device: "virtio-rng",
        })?;
        let w = Worker::spawn(&format!("_{}", self.id), RngWorker { entropy }, act).map_err(
            |source| ActivateError::Worker {
                device: "virtio-rng",
                source,
            },
        )?;
        self.worker = Some(w);
        Ok(())
    }
    fn reset(&mut self) {
        if let Some(w) = self.worker.take() {
            self.entropy = w.stop().map(|w| w.entropy);
        }
    }
    /// Each request is served whole on the worker: nothing is ever in flight.
    fn can_save(&self) -> bool {
        true
    }
    fn reset_for_save(&mut self) -> bool {
        self.reset();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::queue_util::testing::{add_chain, memory, queue, used, CountingInterrupt};
    use vm_memory::GuestAddress;

    #[test]
    fn fills_writable_buffers_only() {
        let mem = memory();
        let (mock, mut aq) = queue(&mem, 0, 0);
        mem.write_slice(&[0u8; 64], GuestAddress(0x10_0000))
            .unwrap();
        add_chain(&mock, 0, &[(0x10_0000, 8, false), (0x10_0010, 32, true)]);
        let mut e = Entropy::new(Box::new(std::io::repeat(0x42)));
        let intr = CountingInterrupt::default();
        drain(&mut aq, &mem, &intr, |c| e.process(&mem, c));
        assert_eq!(used(&mem, &mock, 0), (0, 32));
        let mut b = [0u8; 64];
        mem.read_slice(&mut b, GuestAddress(0x10_0000)).unwrap();
        assert!(
            b[..16].iter().all(|&x| x == 0),
            "read-only buffer untouched"
        );
        assert!(b[16..48].iter().all(|&x| x == 0x42));
        assert!(b[48..].iter().all(|&x| x == 0));
    }

    #[test]
    fn urandom_gives_varied_bytes() {
        let mem = memory();
        let (mock, mut aq) = queue(&mem, 0, 0);
        add_chain(&mock, 0, &[(0x10_0000, 256, true)]);
        let mut e = Entropy::new(Box::new(File::open("/dev/urandom").unwrap()));
        let intr = CountingInterrupt::default();
        drain(&mut aq, &mem, &intr, |c| e.process(&mem, c));
        assert_eq!(used(&mem, &mock, 0).1, 256);
        let mut b = [0u8; 256];
        mem.read_slice(&mut b, GuestAddress(0x10_0000)).unwrap();
        let distinct = b.iter().collect::<std::collections::HashSet<_>>().len();
        assert!(distinct > 100, "{distinct} distinct byte values");
    }
}

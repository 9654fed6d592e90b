//! virtio-gpu in 2D mode (virtio 1.2 §5.7), as QEMU's `virtio-gpu-pci` and the GPU
//! half of `virtio-vga` present it to Linux's `virtio_gpu` DRM driver and OVMF's
//! VirtioGpuDxe: a control queue with the 2D command set ([`protocol`], executed in
//! [`state`]) and a cursor queue whose requests are consumed (the VNC client draws
//! its own pointer). One scanout; `VIRTIO_GPU_F_EDID` is offered (the EDID the
//! 1234:1111 adapters have). The scanout resource is what the console shows
//! ([`screen`]); RESOURCE_FLUSH marks the damage, so an idle screen costs nothing.
//! [`pci`] makes it `virtio-vga` (with the std VGA parts) or `virtio-gpu-pci`.

pub mod pci;
pub mod protocol;
pub mod screen;
pub mod state;

use std::sync::{Arc, Mutex, MutexGuard};

use virtio_queue::DescriptorChain;
use vm_memory::Bytes;

use super::queue_util::{drain, segments};
use super::worker::{DeviceCtx, Worker, WorkerHandler};
use super::{
    read_config_bytes, ActivateError, Activation, GuestMem, VirtioDevice, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
};
use state::GpuState;

/// virtio device id of GPUs.
pub const DEVICE_TYPE: u32 = super::device_type::GPU;
/// Feature bit: GET_EDID is supported.
pub const VIRTIO_GPU_F_EDID: u64 = 1 << 1;
/// Queue indices.
const CONTROL_QUEUE: u16 = 0;
const QUEUE_SIZE: u16 = 256;

/// The state as the worker and the console share it.
pub type SharedGpu = Arc<Mutex<GpuState>>;

/// Locks the shared state (a poisoned lock still holds consistent data: every
/// command finishes its changes before it can fail).
pub fn lock(s: &SharedGpu) -> MutexGuard<'_, GpuState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves one request chain: reads the request from the readable descriptors,
/// executes it and writes the response into the writable ones. Returns the bytes
/// written.
pub fn process(gpu: &SharedGpu, mem: &GuestMem, chain: DescriptorChain<&GuestMem>) -> u32 {
    let segs = segments(chain);
    let mut req = Vec::new();
    for s in segs.iter().filter(|s| !s.write) {
        let n = (s.len as usize).min(protocol::MAX_REQUEST - req.len());
        let at = req.len();
        req.resize(at + n, 0);
        if mem.read_slice(&mut req[at..], s.addr).is_err() {
            req.truncate(at);
            break;
        }
    }
    let response = lock(gpu).execute(mem, &req);
    let mut written = 0usize;
    for s in segs.iter().filter(|s| s.write) {
        let n = (s.len as usize).min(response.len() - written);
        if n == 0
            || mem
                .write_slice(&response[written..written + n], s.addr)
                .is_err()
        {
            break;
        }
        written += n;
    }
    written as u32
}

struct GpuWorker {
    gpu: SharedGpu,
}

impl WorkerHandler for GpuWorker {
    fn queue_event(&mut self, ctx: &mut DeviceCtx, pos: usize) {
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        let gpu = &self.gpu;
        if queues[pos].index == CONTROL_QUEUE {
            drain(&mut queues[pos], mem, interrupt.as_ref(), |c| {
                process(gpu, mem, c)
            });
        } else {
            // Cursor queue: UPDATE_CURSOR/MOVE_CURSOR carry no response.
            drain(&mut queues[pos], mem, interrupt.as_ref(), |_| 0);
        }
    }
}

/// The virtio-gpu device.
pub struct VirtioGpu {
    id: String,
    gpu: SharedGpu,
    worker: Option<Worker<GpuWorker>>,
}

impl VirtioGpu {
    /// A GPU offering a `preferred` (width, height) display.
    pub fn new(id: &str, preferred: (u32, u32)) -> VirtioGpu {
        VirtioGpu {
            id: id.to_string(),
            gpu: Arc::new(Mutex::new(GpuState::new(preferred))),
            worker: None,
        }
    }

    /// The state the console reads.
    pub fn shared(&self) -> SharedGpu {
        self.gpu.clone()
    }
}

impl VirtioDevice for VirtioGpu {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE
    }
    fn name(&self) -> &'static str {
        "virtio-gpu"
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }
    fn features(&self) -> u64 {
        VIRTIO_GPU_F_EDID | VIRTIO_RING_F_EVENT_IDX | VIRTIO_RING_F_INDIRECT_DESC
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // events_read, events_clear, num_scanouts, num_capsets: no display events
        // (the size never changes under the driver), one scanout, no 3D capsets.
        let mut cfg = [0u8; 16];
        cfg[8..12].copy_from_slice(&1u32.to_le_bytes());
        read_config_bytes(&cfg, offset, data);
    }
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        let w = Worker::spawn(
            &format!("_{}", self.id),
            GpuWorker {
                gpu: self.gpu.clone(),
            },
            act,
        )
        .map_err(|source| ActivateError::Worker {
            device: "virtio-gpu",
            source,
        })?;
        self.worker = Some(w);
        Ok(())
    }
    fn reset(&mut self) {
        if let Some(w) = self.worker.take() {
            w.stop();
        }
        // The driver starts over: its resources and scanout are gone (virtio-vga
        // shows its VGA side again).
        lock(&self.gpu).reset();
    }
}

#[cfg(test)]
mod tests;

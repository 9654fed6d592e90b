//! Small helpers shared by the devices for walking descriptor chains and
//! returning used buffers.

use std::num::Wrapping;
use std::ops::Deref;
use std::sync::atomic::Ordering;

use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::{GuestAddress, GuestMemory};

use super::{ActiveQueue, VirtioInterrupt};

/// One descriptor of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
    /// Device-writable (the device fills it).
    pub write: bool,
}

/// The descriptors of `chain`, indirect tables followed.
pub fn segments<M>(chain: DescriptorChain<M>) -> Vec<Segment>
where
    M: Deref,
    M::Target: GuestMemory,
{
    chain
        .map(|d| Segment {
            addr: d.addr(),
            len: d.len(),
            write: d.is_write_only(),
        })
        .collect()
}

/// Serves every available chain of `aq` with `handle` (which returns the number
/// of bytes it wrote into the chain), re-checking after re-enabling
/// notifications so no kick is lost, and interrupts the driver if it asked.
/// Returns how many chains were used.
pub fn drain<M, F>(
    aq: &mut ActiveQueue,
    mem: &M,
    interrupt: &dyn VirtioInterrupt,
    mut handle: F,
) -> usize
where
    M: GuestMemory,
    F: FnMut(DescriptorChain<&M>) -> u32,
{
    let mut used = 0;
    loop {
        if aq.queue.disable_notification(mem).is_err() {
            break;
        }
        while let Some(chain) = aq.queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let len = handle(chain);
            if aq.queue.add_used(mem, head, len).is_err() {
                break;
            }
            used += 1;
        }
        if !more_work(aq, mem) {
            break;
        }
    }
    if used > 0 {
        notify_if_needed(aq, mem, interrupt);
    }
    used
}

/// Re-enables notifications after a drain and says whether the driver made more
/// chains available meanwhile (serve again) — false too when the available index is
/// more than the queue size ahead of the device's position: such a ring is invalid
/// (virtio 1.2 §2.7.6, at most queue-size entries are ever outstanding),
/// `pop_descriptor_chain` refuses it, and serving "again" would spin forever. The
/// queue is then left alone until the driver fixes the index or resets the device.
/// Found by the guest fuzzer (`oxtest=fuzz fuzzseed=1`).
pub fn more_work<M: GuestMemory>(aq: &mut ActiveQueue, mem: &M) -> bool {
    if !matches!(aq.queue.enable_notification(mem), Ok(true)) {
        return false;
    }
    match aq.queue.avail_idx(mem, Ordering::Acquire) {
        Ok(avail) => (avail - Wrapping(aq.queue.next_avail())).0 <= aq.queue.size(),
        Err(_) => false,
    }
}

/// Interrupts the driver for `aq` unless it suppressed notifications.
pub fn notify_if_needed<M: GuestMemory>(
    aq: &mut ActiveQueue,
    mem: &M,
    interrupt: &dyn VirtioInterrupt,
) {
    if aq.queue.needs_notification(mem).unwrap_or(true) {
        interrupt.notify_queue(aq.index);
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress};

    use super::testing::{add_chain, memory, queue, used_idx, CountingInterrupt};
    use super::*;

    /// An available index far ahead of the ring (a hostile driver) ends the drain:
    /// nothing is served, and it returns instead of spinning.
    #[test]
    fn drain_returns_on_an_avail_index_past_the_queue_size() {
        let mem = memory();
        let (mock, mut aq) = queue(&mem, 0x10000, 0);
        add_chain(&mock, 0, &[(0x20000, 16, false)]);
        let avail_idx = GuestAddress(mock.avail_addr().0 + 2);
        mem.write_obj(1000u16, avail_idx).unwrap();
        // On a thread of its own, so that a drain that spins fails the test instead of
        // hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        let m = mem.clone();
        std::thread::spawn(move || {
            let irq = CountingInterrupt::default();
            let n = drain(&mut aq, &m, &irq, |_| 0);
            tx.send((n, aq)).unwrap();
        });
        let (served, mut aq) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("drain spins on an invalid available index");
        assert_eq!(served, 0);
        assert_eq!(used_idx(&mem, &mock), 0);
        // A sane index afterwards is served again.
        mem.write_obj(1u16, avail_idx).unwrap();
        let irq = CountingInterrupt::default();
        assert_eq!(drain(&mut aq, &mem, &irq, |_| 0), 1);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A driver-side harness for device unit tests: guest memory, mock split
    //! queues from `virtio-queue`, and an interrupt recorder.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::Queue;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    use super::super::{ActiveQueue, GuestMem, VirtioInterrupt};

    /// Counts notifications per queue and config changes.
    #[derive(Default)]
    pub struct CountingInterrupt {
        pub queues: Mutex<Vec<u16>>,
        pub config: AtomicUsize,
    }

    impl VirtioInterrupt for CountingInterrupt {
        fn notify_queue(&self, queue: u16) {
            self.queues.lock().unwrap().push(queue);
        }
        fn notify_config(&self) {
            self.config.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// 16 MiB of guest memory at 0.
    pub fn memory() -> GuestMem {
        GuestMem::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap()
    }

    /// A mock queue of 16 entries at `base` and the device-side queue for it.
    pub fn queue(
        mem: &GuestMem,
        base: u64,
        index: u16,
    ) -> (MockSplitQueue<'_, GuestMem>, ActiveQueue) {
        let mock = MockSplitQueue::create(mem, GuestAddress(base), 16);
        let queue: Queue = mock.create_queue().unwrap();
        let aq = ActiveQueue {
            index,
            queue,
            kick: EventFd::new(EFD_NONBLOCK).unwrap(),
        };
        (mock, aq)
    }

    /// Used ring entry `i`: (descriptor head, length written).
    pub fn used(mem: &GuestMem, mock: &MockSplitQueue<'_, GuestMem>, i: u16) -> (u32, u32) {
        let base = mock.used_addr().0 + 4 + 8 * u64::from(i);
        let id: u32 = mem.read_obj(GuestAddress(base)).unwrap();
        let len: u32 = mem.read_obj(GuestAddress(base + 4)).unwrap();
        (id, len)
    }

    /// The used ring's index.
    pub fn used_idx(mem: &GuestMem, mock: &MockSplitQueue<'_, GuestMem>) -> u16 {
        mem.read_obj(GuestAddress(mock.used_addr().0 + 2)).unwrap()
    }

    /// Publishes one chain of `parts` (address, length, device-writable) using
    /// descriptor slots from `first`, linking them with NEXT.
    pub fn add_chain(mock: &MockSplitQueue<'_, GuestMem>, first: u16, parts: &[(u64, u32, bool)]) {
        let descs: Vec<RawDescriptor> = parts
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, write))| {
                let mut flags = if write {
                    virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16
                } else {
                    0
                };
                if i + 1 < parts.len() {
                    flags |= virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
                }
                RawDescriptor::from(SplitDescriptor::new(addr, len, flags, first + i as u16 + 1))
            })
            .collect();
        mock.add_desc_chains(&descs, first).unwrap();
    }
}

//! vhost-net (`/dev/vhost-net`): the host kernel moves a queue pair's frames between
//! the guest's rings and the pair's tap queue, so no frame passes through the VMM —
//! QEMU's data path under libvirt by default. One instance serves one pair (its vring
//! 0 receives, 1 transmits). The VMM keeps the control queue, the configuration space
//! and the interrupts: the kernel reads the guest's kicks straight from the queues'
//! ioeventfds and signals a "call" eventfd per ring, which the device's worker relays
//! as that queue's interrupt, so MSI-X masking, INTx and the ISR behave as for every
//! other device. The receive filter is not applied (the kernel does not see it), as
//! with QEMU's vhost-net.
//!
//! The ioctls are rust-vmm's `vhost` crate's (its `VhostBackend` over a
//! `VhostKernBackend`). Its own `Net` opens `/dev/vhost-net` once it has guest
//! memory; here the instance is opened when the NIC is built (a thread that may open
//! files) and bound to memory at each activation (on a vCPU thread, which may not).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use tracing::info;
use vhost::vhost_kern::vhost_binding::{vhost_vring_file, VHOST_NET_SET_BACKEND};
use vhost::vhost_kern::VhostKernBackend;
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::ioctl::ioctl_with_ref;

use super::features::MRG_RXBUF;
use crate::virtio::{
    GuestMem, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};

/// The device node.
pub const DEVICE: &str = "/dev/vhost-net";

/// The ring features the device offers that the kernel must implement for it; the
/// rest of virtio-net's features are the tap's offloads and the control queue's.
const RING_FEATURES: u64 =
    VIRTIO_F_VERSION_1 | MRG_RXBUF | VIRTIO_RING_F_EVENT_IDX | VIRTIO_RING_F_INDIRECT_DESC;

/// Receive and transmit ring of a pair, as vhost-net numbers them.
const RINGS: [u32; 2] = [0, 1];

/// vhost-net could not be opened or set up.
#[derive(Debug, thiserror::Error)]
pub enum VhostError {
    #[error("cannot open {DEVICE}")]
    Open(#[source] io::Error),
    #[error("vhost-net {what}")]
    Call {
        what: &'static str,
        #[source]
        source: vhost::Error,
    },
    #[error("vhost-net: the kernel lacks the ring features {0:#x}")]
    Features(u64),
    #[error("vhost-net: cannot attach the tap (VHOST_NET_SET_BACKEND)")]
    Backend(#[source] io::Error),
}

fn call(what: &'static str) -> impl FnOnce(vhost::Error) -> VhostError {
    move |source| VhostError::Call { what, source }
}

/// One queue pair's vhost-net instance, owned by this process.
#[derive(Debug)]
pub struct VhostNet {
    file: File,
}

/// The instance with the guest memory its ring addresses are translated in.
struct Bound<'a> {
    file: &'a File,
    mem: Arc<GuestMem>,
}

impl VhostKernBackend for Bound<'_> {
    type AS = Arc<GuestMem>;
    fn mem(&self) -> &Arc<GuestMem> {
        &self.mem
    }
}

impl AsRawFd for Bound<'_> {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// One ring handed to the kernel: the driver's queue, the eventfd the driver's
/// notifications land on, and the eventfd the kernel signals for interrupts.
pub struct Ring<'a> {
    pub queue: &'a Queue,
    pub kick: &'a EventFd,
    pub call: &'a EventFd,
}

impl VhostNet {
    /// Opens an instance and makes this process its owner; fails where the host has
    /// no vhost-net (no module, no access) or one without the ring features we offer.
    pub fn open() -> Result<Self, VhostError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(DEVICE)
            .map_err(VhostError::Open)?;
        let v = VhostNet { file };
        // Owner and features need no memory yet.
        v.bind(&GuestMem::default())
            .set_owner()
            .map_err(call("VHOST_SET_OWNER"))?;
        v.check_features()?;
        Ok(v)
    }

    /// Takes the instance handed over as descriptor `fd` (the daemon opened
    /// `/dev/vhost-net`, root's: libvirt's `vhostfds`) and makes this process its
    /// owner. The descriptor stays with whoever handed it over (the spec's, kept for
    /// the VMM's life; a netdev's): a machine rebuilt at reset takes it again, and
    /// then the instance is still ours from the last build, so it is released first
    /// (`VHOST_RESET_OWNER` drops the old rings and memory table).
    pub fn from_inherited(fd: RawFd) -> Result<Self, VhostError> {
        // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor table; it fails on a
        // closed fd, and the duplicate is a new descriptor this process owns.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if dup < 0 {
            return Err(VhostError::Open(io::Error::last_os_error()));
        }
        // SAFETY: `dup` was just created above and nothing else owns it.
        let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(dup) };
        let v = VhostNet { file };
        let b = v.bind(&GuestMem::default());
        match b.set_owner() {
            Err(vhost::Error::IoctlError(e)) if e.raw_os_error() == Some(libc::EBUSY) => {
                b.reset_owner().map_err(call("VHOST_RESET_OWNER"))?;
                b.set_owner().map_err(call("VHOST_SET_OWNER"))?;
            }
            r => r.map_err(call("VHOST_SET_OWNER"))?,
        }
        v.check_features()?;
        Ok(v)
    }

    fn check_features(&self) -> Result<(), VhostError> {
        let have = self
            .bind(&GuestMem::default())
            .get_features()
            .map_err(call("VHOST_GET_FEATURES"))?;
        if have & RING_FEATURES != RING_FEATURES {
            return Err(VhostError::Features(RING_FEATURES & !have));
        }
        Ok(())
    }

    fn bind(&self, mem: &GuestMem) -> Bound<'_> {
        Bound {
            file: &self.file,
            mem: Arc::new(mem.clone()),
        }
    }

    /// Hands the kernel the pair's rings: the negotiated ring features, the guest's
    /// memory map, each ring's size, addresses, next index and eventfds. No frame
    /// moves until [`VhostNet::set_backend`] attaches the tap.
    pub fn start(
        &self,
        mem: &GuestMem,
        features: u64,
        rings: [Ring<'_>; 2],
    ) -> Result<(), VhostError> {
        let b = self.bind(mem);
        b.set_features(features & RING_FEATURES)
            .map_err(call("VHOST_SET_FEATURES"))?;
        let regions: Vec<VhostUserMemoryRegionInfo> = mem
            .iter()
            .map(|r| VhostUserMemoryRegionInfo {
                guest_phys_addr: r.start_addr().0,
                memory_size: r.len(),
                userspace_addr: r.as_ptr() as u64,
                mmap_offset: 0,
                mmap_handle: -1,
            })
            .collect();
        b.set_mem_table(&regions)
            .map_err(call("VHOST_SET_MEM_TABLE"))?;
        for (index, ring) in RINGS.into_iter().zip(rings) {
            let i = index as usize;
            let q = ring.queue;
            b.set_vring_num(i, q.size())
                .map_err(call("VHOST_SET_VRING_NUM"))?;
            let addrs = VringConfigData {
                queue_max_size: q.max_size(),
                queue_size: q.size(),
                flags: 0,
                desc_table_addr: q.desc_table(),
                used_ring_addr: q.used_ring(),
                avail_ring_addr: q.avail_ring(),
                log_addr: None,
            };
            b.set_vring_addr(i, &addrs)
                .map_err(call("VHOST_SET_VRING_ADDR"))?;
            b.set_vring_base(i, q.next_avail())
                .map_err(call("VHOST_SET_VRING_BASE"))?;
            b.set_vring_kick(i, ring.kick)
                .map_err(call("VHOST_SET_VRING_KICK"))?;
            b.set_vring_call(i, ring.call)
                .map_err(call("VHOST_SET_VRING_CALL"))?;
        }
        Ok(())
    }

    /// Attaches the tap queue `tap` to both rings (frames move), or detaches it
    /// (`None`: the kernel stops touching the rings; link down, device reset).
    pub fn set_backend(&self, tap: Option<RawFd>) -> Result<(), VhostError> {
        for index in RINGS {
            let f = vhost_vring_file {
                index,
                fd: tap.unwrap_or(-1),
            };
            // SAFETY: the vhost fd is open, and the kernel only reads `f`, which
            // outlives the call; the return value is checked.
            let rc = unsafe { ioctl_with_ref(&self.file, VHOST_NET_SET_BACKEND(), &f) };
            if rc < 0 {
                return Err(VhostError::Backend(io::Error::last_os_error()));
            }
        }
        Ok(())
    }
}

/// The vhost-net instances of NIC `id`, one per queue pair, as `driver` asks: none
/// for `name='qemu'` or a passt backend; for the default, none where the host has no
/// usable vhost-net (the VMM moves the frames, and the log says why); for
/// `name='vhost'`, an error there.
pub fn open_for(id: &str, n: &machine_spec::Net) -> Result<Vec<VhostNet>, VhostError> {
    use machine_spec::NetDriver;
    if n.driver == NetDriver::Qemu
        || n.backend.tap().is_none()
        || n.model != machine_spec::NetModel::Virtio
    {
        return Ok(Vec::new());
    }
    let pairs = n.queue_pairs();
    // Handed over by the daemon (a VMM running as its own user may not open the
    // node), else opened here.
    let opened: Result<Vec<VhostNet>, VhostError> = match n.vhost_fds.as_slice() {
        [] => (0..pairs).map(|_| VhostNet::open()).collect(),
        fds if fds.len() < usize::from(pairs) => Err(VhostError::Open(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} descriptors handed over for {pairs} queue pairs",
                fds.len()
            ),
        ))),
        fds => fds
            .iter()
            .take(usize::from(pairs))
            .map(|fd| VhostNet::from_inherited(*fd))
            .collect(),
    };
    match opened {
        Ok(v) => {
            info!(id, pairs, "virtio-net data path: vhost-net");
            Ok(v)
        }
        Err(e) if n.driver == NetDriver::Default => {
            let why = crate::seccomp::error_chain(&e);
            info!(
                id,
                "virtio-net data path: the VMM's own (vhost-net unavailable: {why})"
            );
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use machine_spec::{Net, NetBackend, NetDriver, NetModel};

    fn nic(driver: NetDriver, backend: NetBackend, queues: Option<u16>) -> Net {
        Net {
            mac: "52:54:00:00:00:01".into(),
            backend,
            link_up: true,
            mtu: None,
            model: NetModel::Virtio,
            queues,
            tap_fds: Vec::new(),
            vhost_fds: Vec::new(),
            driver,
        }
    }

    fn tap() -> NetBackend {
        NetBackend::Tap { name: None }
    }

    /// Whether this host lets us use vhost-net (these development machines do not:
    /// no module).
    fn host_has_vhost() -> bool {
        VhostNet::open().is_ok()
    }

    #[test]
    fn qemu_and_passt_and_emulated_models_keep_the_vmm_data_path() {
        let user = NetBackend::User(Default::default());
        assert!(open_for("n", &nic(NetDriver::Qemu, tap(), None))
            .unwrap()
            .is_empty());
        assert!(open_for("n", &nic(NetDriver::Default, user, None))
            .unwrap()
            .is_empty());
        let mut e1000 = nic(NetDriver::Default, tap(), None);
        e1000.model = NetModel::E1000;
        assert!(open_for("n", &e1000).unwrap().is_empty());
    }

    #[test]
    fn the_default_takes_vhost_net_where_the_host_has_it_one_per_pair() {
        let got = open_for("n", &nic(NetDriver::Default, tap(), Some(3))).unwrap();
        match host_has_vhost() {
            true => assert_eq!(got.len(), 3),
            false => assert!(got.is_empty()),
        }
    }

    #[test]
    fn vhost_required_fails_with_the_reason_where_the_host_has_none() {
        let got = open_for("n", &nic(NetDriver::Vhost, tap(), Some(2)));
        if host_has_vhost() {
            assert_eq!(got.unwrap().len(), 2);
            eprintln!("note: this host has vhost-net; the refusal is not exercised");
            return;
        }
        let e = got.unwrap_err();
        let chain = crate::seccomp::error_chain(&e);
        assert!(chain.starts_with("cannot open /dev/vhost-net: "), "{chain}");
    }
}

//! The virtio-pci transport driven the way a guest driver drives it: PCI
//! configuration through ECAM, capabilities, BAR 0 accesses, MSI-X — with a real
//! virtio-blk device behind it and a real worker thread, but no KVM.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};

use super::block::{req, Block, DiskBackend, OpenFlags, RawDisk};
use super::pci_transport::{status, VirtioPciDevice, NOTIFY_CFG};
use super::queue_util::testing::{add_chain, memory};
use super::GuestMem;
use crate::pci::intx::tests::CountingLine;
use crate::pci::intx::IntxPin;
use crate::pci::msix::tests::Recorder;
use crate::pci::{PciRoot, PciWindows};

const SLOT: u8 = 4;

struct Driver {
    root: PciRoot,
    cfg_base: u64,
    bar0: u64,
    common: u64,
    device_cfg: u64,
    notify: u64,
    msix_cap: usize,
}

impl Driver {
    fn cfg_read(&mut self, off: u64) -> u32 {
        let mut d = [0u8; 4];
        self.root.ecam_read(self.cfg_base + off, &mut d);
        u32::from_le_bytes(d)
    }
    fn cfg_write(&mut self, off: u64, d: &[u8]) {
        self.root.ecam_write(self.cfg_base + off, d);
    }
    fn r(&mut self, addr: u64, n: usize) -> u64 {
        let mut d = [0u8; 8];
        assert!(
            self.root.mmio_read(addr, &mut d[..n]),
            "no BAR at {addr:#x}"
        );
        u64::from_le_bytes(d)
    }
    fn w(&mut self, addr: u64, v: u64, n: usize) {
        assert!(self.root.mmio_write(addr, &v.to_le_bytes()[..n]));
    }

    /// Enumerates slot 4 like an OS: IDs, BAR, capability walk.
    fn probe(mut root: PciRoot) -> Driver {
        let cfg_base = u64::from(SLOT) << 15;
        let mut d = Driver {
            root,
            cfg_base,
            bar0: 0,
            common: 0,
            device_cfg: 0,
            notify: 0,
            msix_cap: 0,
        };
        assert_eq!(d.cfg_read(0), 0x1042_1af4, "virtio-blk modern ID");
        let lo = d.cfg_read(0x10);
        assert_eq!(lo & 0x6, 0x4, "64-bit memory BAR");
        d.bar0 = u64::from(lo & !0xf) | u64::from(d.cfg_read(0x14)) << 32;
        d.cfg_write(4, &[0x06, 0]);
        let mut cap = d.cfg_read(0x34) as u64 & 0xff;
        while cap != 0 {
            let head = d.cfg_read(cap);
            match head & 0xff {
                0x09 => {
                    let off = u64::from(d.cfg_read(cap + 8));
                    match (head >> 24) as u8 {
                        1 => d.common = d.bar0 + off,
                        2 => {
                            d.notify = d.bar0 + off;
                            assert_eq!(d.cfg_read(cap + 16), 4, "notify_off_multiplier");
                        }
                        4 => d.device_cfg = d.bar0 + off,
                        _ => {}
                    }
                }
                0x11 => d.msix_cap = cap as usize,
                _ => {}
            }
            cap = u64::from(head >> 8) & 0xff;
        }
        assert!(d.common != 0 && d.notify != 0 && d.device_cfg != 0 && d.msix_cap != 0);
        root = std::mem::replace(&mut d.root, PciRoot::new(windows()));
        d.root = root;
        d
    }

    fn status(&mut self) -> u8 {
        self.r(self.common + 0x14, 1) as u8
    }

    /// Feature negotiation + one queue + MSI-X; returns the status reached.
    fn init(&mut self, accept: u64, q: (u64, u64, u64)) -> u8 {
        self.init_with(accept, q, true)
    }

    /// As [`Driver::init`], with MSI-X or (`msix` false) leaving it off for INTx.
    fn init_with(&mut self, accept: u64, q: (u64, u64, u64), msix: bool) -> u8 {
        let c = self.common;
        self.w(c + 0x14, 0, 1);
        self.w(c + 0x14, u64::from(status::ACKNOWLEDGE | status::DRIVER), 1);
        self.w(c, 0, 4);
        let lo = self.r(c + 4, 4);
        self.w(c, 1, 4);
        let hi = self.r(c + 4, 4);
        let offered = lo | hi << 32;
        assert_ne!(offered & (1 << 32), 0, "VERSION_1 offered");
        let want = accept;
        self.w(c + 8, 0, 4);
        self.w(c + 0xc, want & 0xffff_ffff, 4);
        self.w(c + 8, 1, 4);
        self.w(c + 0xc, want >> 32, 4);
        self.w(
            c + 0x14,
            u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK),
            1,
        );
        if self.status() & status::FEATURES_OK == 0 {
            return self.status();
        }
        // MSI-X: enable, vector 0 -> queue, vector 1 -> config.
        let ctrl = self.msix_cap as u64 + 2;
        let vector = if msix {
            self.cfg_write(ctrl, &0x8000u16.to_le_bytes());
            let table = self.bar0 + 0x8000;
            self.w(table, 0xfee0_0000, 8);
            self.w(table + 8, 0x31, 4);
            self.w(table + 12, 0, 4);
            self.w(c + 0x10, 1, 2);
            0
        } else {
            self.cfg_write(ctrl, &0u16.to_le_bytes());
            self.w(c + 0x10, 0xffff, 2);
            0xffff
        };
        self.w(c + 0x16, 0, 2);
        assert_eq!(self.r(c + 0x18, 2), 256, "max queue size");
        self.w(c + 0x18, 16, 2);
        self.w(c + 0x1a, vector, 2);
        assert_eq!(self.r(c + 0x1a, 2), vector, "vector accepted");
        self.w(c + 0x20, q.0, 8);
        self.w(c + 0x28, q.1 & 0xffff_ffff, 4);
        self.w(c + 0x2c, q.1 >> 32, 4);
        self.w(c + 0x30, q.2, 8);
        self.w(c + 0x1c, 1, 2);
        self.w(
            c + 0x14,
            u64::from(
                status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
            ),
            1,
        );
        self.status()
    }
}

fn windows() -> PciWindows {
    PciWindows {
        mmio32: (0xc000_0000, 0x2000_0000),
        mmio64: (0, 0),
    }
}

fn setup(disk_bytes: usize) -> (tempfile::NamedTempFile, Driver, Arc<Recorder>, GuestMem) {
    let (f, d, rec, mem, _) = setup_with_intx(disk_bytes, None);
    (f, d, rec, mem)
}

type Setup = (
    tempfile::NamedTempFile,
    Driver,
    Arc<Recorder>,
    GuestMem,
    Option<Arc<IntxPin>>,
);

/// A virtio-blk function at slot 4, with INTA# on `intx` (GSI, line) when given.
fn setup_with_intx(disk_bytes: usize, intx: Option<(u8, CountingLine)>) -> Setup {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&vec![0u8; disk_bytes]).unwrap();
    let flags = OpenFlags::default();
    let backend: Box<dyn DiskBackend> = Box::new(RawDisk::open(f.path(), flags).unwrap());
    let blk = Block::with_backend("vda", backend, false, false, Some("SER1"));
    let mem = memory();
    let rec = Arc::new(Recorder::default());
    let mut root = PciRoot::new(windows());
    let mut dev =
        VirtioPciDevice::new(Box::new(blk), mem.clone(), &mut root, rec.clone(), None).unwrap();
    let pin = intx.map(|(gsi, line)| dev.attach_intx(gsi, Box::new(line)));
    root.add_device(SLOT, 0, Box::new(dev)).unwrap();
    (f, Driver::probe(root), rec, mem, pin)
}

fn wait_fired(rec: &Recorder, n: usize) {
    wait_until("no MSI-X interrupt", || {
        rec.fired.lock().unwrap().len() >= n
    });
}

/// Queue at 0x1000 (desc), avail and used as `MockSplitQueue` lays them out.
fn mock(mem: &GuestMem) -> virtio_queue::mock::MockSplitQueue<'_, GuestMem> {
    virtio_queue::mock::MockSplitQueue::create(mem, GuestAddress(0x1000), 16)
}

/// The (descriptor table, avail ring, used ring) addresses of `m`, as a driver
/// programs them.
fn rings(m: &virtio_queue::mock::MockSplitQueue<'_, GuestMem>) -> (u64, u64, u64) {
    (m.desc_table_addr().0, m.avail_addr().0, m.used_addr().0)
}

/// Puts a request as descriptor chain `head` of `m`: header at 0x10_0000, `len` data
/// bytes at 0x20_0000 (device-writable with `data_in`), status byte at 0x30_0000.
fn add_request(
    m: &virtio_queue::mock::MockSplitQueue<'_, GuestMem>,
    head: u16,
    len: u32,
    data_in: bool,
) {
    add_chain(
        m,
        head,
        &[
            (0x10_0000, 16, false),
            (0x20_0000, len, data_in),
            (0x30_0000, 1, true),
        ],
    );
}

/// Polls `done` every 2 ms; panics with `what` after 10 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn request(mem: &GuestMem, rtype: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&rtype.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&h, GuestAddress(0x10_0000)).unwrap();
    mem.write_obj(0xffu8, GuestAddress(0x30_0000)).unwrap();
}

#[test]
fn driver_writes_through_msix_and_survives_reset() {
    let (file, mut d, rec, mem) = setup(1 << 20);
    let m = mock(&mem);
    let q = rings(&m);
    let st = d.init((1 << 32) | (1 << 9), q);
    assert_ne!(
        st & status::DRIVER_OK,
        0,
        "device accepted DRIVER_OK: {st:#x}"
    );
    assert_eq!(st & status::DEVICE_NEEDS_RESET, 0);
    let programmed = rec.programmed.lock().unwrap().clone();
    assert!(programmed
        .iter()
        .any(|&(v, m, masked)| v == 0 && m.data == 0x31 && !masked));

    // Write 4 KiB of pattern at sector 8 and kick through the notify area.
    mem.write_slice(&[0xa5; 4096], GuestAddress(0x20_0000))
        .unwrap();
    request(&mem, req::OUT, 8);
    add_request(&m, 0, 4096, false);
    d.w(d.notify, 0, 2);
    wait_fired(&rec, 1);
    assert_eq!(rec.fired.lock().unwrap()[0], 0);
    assert_eq!(mem.read_obj::<u8>(GuestAddress(0x30_0000)).unwrap(), 0);
    let disk = std::fs::read(file.path()).unwrap();
    assert!(disk[8 * 512..8 * 512 + 4096].iter().all(|&b| b == 0xa5));

    // Reset and initialise again: the backend is still there.
    d.w(d.common + 0x14, 0, 1);
    assert_eq!(d.status(), 0);
    mem.write_slice(&[0u8; 0x3000], GuestAddress(0x1000))
        .unwrap();
    let m = mock(&mem);
    let st = d.init((1 << 32) | (1 << 9), q);
    assert_ne!(st & status::DRIVER_OK, 0);
    request(&mem, req::GET_ID, 0);
    add_request(&m, 0, 20, true);
    d.w(d.bar0 + NOTIFY_CFG, 0, 2);
    wait_fired(&rec, 2);
    let mut id = [0u8; 4];
    mem.read_slice(&mut id, GuestAddress(0x20_0000)).unwrap();
    assert_eq!(&id, b"SER1");
}

#[test]
fn unknown_features_are_refused_and_config_reads_capacity() {
    let (_f, mut d, _rec, _mem) = setup(1 << 20);
    let st = d.init((1 << 32) | (1 << 60), (0x1000, 0x2000, 0x3000));
    assert_eq!(
        st & status::FEATURES_OK,
        0,
        "FEATURES_OK refused for unoffered bits"
    );
    let st = d.init(1 << 9, (0x1000, 0x2000, 0x3000));
    assert_eq!(
        st & status::FEATURES_OK,
        0,
        "FEATURES_OK refused without VERSION_1"
    );
    assert_eq!(d.r(d.device_cfg, 8), 2048, "capacity in sectors");
    // Number of queues and the queue's notify offset.
    assert_eq!(d.r(d.common + 0x12, 2), 1);
    assert_eq!(d.r(d.common + 0x1e, 2), 0);
}

#[test]
fn invalid_queue_setup_sets_needs_reset() {
    let (_f, mut d, _rec, _mem) = setup(1 << 20);
    // Used ring outside guest memory.
    let st = d.init(1 << 32, (0x1000, 0x2000, 0x10_0000_0000));
    assert_ne!(st & status::DEVICE_NEEDS_RESET, 0, "status {st:#x}");
}

#[test]
fn without_msix_the_function_interrupts_on_inta_until_the_isr_is_read() {
    let line = CountingLine::default();
    let asserted = || line.0.load(std::sync::atomic::Ordering::SeqCst);
    let (_f, mut d, rec, mem, pin) = setup_with_intx(1 << 20, Some((20, line.clone())));
    let pin = pin.unwrap();
    // Interrupt Line 20 (the GSI), Interrupt Pin 1 (INTA#).
    assert_eq!(d.cfg_read(0x3c) & 0xffff, 0x0114);
    let m = mock(&mem);
    let q = rings(&m);
    let st = d.init_with(1 << 32, q, false);
    assert_ne!(st & status::DRIVER_OK, 0, "status {st:#x}");
    assert!(pin.active(), "MSI-X off: INTx is the interrupt");

    request(&mem, req::IN, 0);
    add_request(&m, 0, 512, true);
    d.w(d.notify, 0, 2);
    wait_until("INTx never asserted", || asserted() != 0);
    assert!(
        rec.fired.lock().unwrap().is_empty(),
        "no MSI-X with MSI-X off"
    );
    assert_eq!(mem.read_obj::<u8>(GuestAddress(0x30_0000)).unwrap(), 0);
    // Status register: Interrupt Status while the ISR is pending.
    assert_ne!(d.cfg_read(4) & (1 << 19), 0);
    // EOI without reading the ISR: the line comes back.
    pin.resample();
    assert_eq!(asserted(), 2);
    // The driver reads the ISR (queue bit); the read clears it and the line stays low.
    let isr = d.bar0 + 0x1000;
    assert_eq!(d.r(isr, 1), 1);
    assert_eq!(d.r(isr, 1), 0);
    assert_eq!(d.cfg_read(4) & (1 << 19), 0);
    pin.resample();
    assert_eq!(asserted(), 2);

    // Interrupt Disable (command bit 10): the ISR is set, the pin stays quiet.
    d.cfg_write(4, &(0x0406u16).to_le_bytes());
    assert!(!pin.active());
    request(&mem, req::IN, 0);
    add_request(&m, 1, 512, true);
    mem.write_obj(0xffu8, GuestAddress(0x30_0000)).unwrap();
    d.w(d.notify, 0, 2);
    wait_until("request not served", || {
        mem.read_obj::<u8>(GuestAddress(0x30_0000)).unwrap() == 0
    });
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(asserted(), 2);
    // Enabled again with the interrupt still pending: asserted at once.
    d.cfg_write(4, &(0x0006u16).to_le_bytes());
    assert_eq!(asserted(), 3);
    assert_eq!(d.r(isr, 1), 1);
}

/// An ioeventfd registrar that keeps the addresses currently registered.
#[derive(Default)]
struct Doorbells(std::sync::Mutex<Vec<u64>>);

impl super::pci_transport::IoEventRegistrar for Doorbells {
    fn register(&self, addr: u64, _evt: &vmm_sys_util::eventfd::EventFd) -> std::io::Result<()> {
        self.0.lock().unwrap().push(addr);
        Ok(())
    }
    fn unregister(&self, addr: u64, _evt: &vmm_sys_util::eventfd::EventFd) -> std::io::Result<()> {
        let mut v = self.0.lock().unwrap();
        let i = v
            .iter()
            .position(|a| *a == addr)
            .expect("unregistering what was registered");
        v.remove(i);
        Ok(())
    }
}

/// Firmware and a hot-plug driver program BAR 0 with decoding off, then turn
/// decoding on: the doorbells' ioeventfds must follow to where the BAR decodes,
/// leaving nothing at the address the device started at (a stale one would swallow
/// writes of whatever device lands there).
#[test]
fn ioeventfds_follow_a_bar_programmed_before_decoding_is_on() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    let backend: Box<dyn DiskBackend> =
        Box::new(RawDisk::open(f.path(), OpenFlags::default()).unwrap());
    let blk = Block::with_backend("vda", backend, false, false, None)
        .with_queueing(2, Default::default());
    let mem = memory();
    let bells = Arc::new(Doorbells::default());
    let mut root = PciRoot::new(windows());
    let dev = VirtioPciDevice::new(
        Box::new(blk),
        mem,
        &mut root,
        Arc::new(Recorder::default()),
        Some(bells.clone()),
    )
    .unwrap();
    root.add_device(SLOT, 0, Box::new(dev)).unwrap();
    let cfg = u64::from(SLOT) << 15;
    let mut d = [0u8; 4];
    root.ecam_read(cfg + 0x10, &mut d);
    let first = u64::from(u32::from_le_bytes(d) & !0xf);
    let at = |base: u64| vec![base + NOTIFY_CFG, base + NOTIFY_CFG + 4];
    assert_eq!(
        *bells.0.lock().unwrap(),
        at(first),
        "bound where the VMM placed BAR 0"
    );
    // Move BAR 0 while not decoding, then enable memory space.
    let moved = first + 0x0100_0000;
    root.ecam_write(cfg + 0x10, &(moved as u32 | 0x4).to_le_bytes());
    root.ecam_write(cfg + 0x14, &((moved >> 32) as u32).to_le_bytes());
    root.ecam_write(cfg + 4, &[0x06, 0]);
    assert_eq!(*bells.0.lock().unwrap(), at(moved));
    // Decoding off and on again at the same place changes nothing.
    root.ecam_write(cfg + 4, &[0x00, 0]);
    root.ecam_write(cfg + 4, &[0x06, 0]);
    assert_eq!(*bells.0.lock().unwrap(), at(moved));
}

//! The function driven the way Linux's e1000 driver drives it, over a datagram
//! socket pair standing in for the tap.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};

use super::regs::{self, icr, mdic, rctl, tctl};
use super::{E1000Function, Model};
use crate::pci::intx::tests::CountingLine;
use crate::pci::{PciDevice, PciRoot, PciWindows};
use crate::virtio::net::{FrameIo, NetControl, VNET_HDR_LEN};
use crate::virtio::queue_util::testing::memory;
use crate::virtio::GuestMem;

struct Dgram(UnixDatagram);

impl FrameIo for Dgram {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.recv(buf)
    }
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.0.send(frame).map(|_| ())
    }
    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xe1, 0x00, 0x01];
const TX_RING: u64 = 0x10000;
const RX_RING: u64 = 0x20000;
const RX_BUFS: u64 = 0x100000;
const TX_BUF: u64 = 0x80000;
const RING_LEN: u32 = 8;

struct Nic {
    f: E1000Function,
    mem: GuestMem,
    peer: UnixDatagram,
    irqs: CountingLine,
    link: NetControl,
}

fn nic() -> Nic {
    nic_of(Model::I82540EM)
}

fn nic_of(model: Model) -> Nic {
    let mem = memory();
    let mut root = PciRoot::new(PciWindows {
        mmio32: (0xc000_0000, 0x2000_0000),
        mmio64: (0, 0),
    });
    let (a, b) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let link = NetControl::new(true);
    let mut f = E1000Function::new(
        "net0",
        model,
        MAC,
        Box::new(Dgram(a)),
        link.clone(),
        mem.clone(),
        &mut root,
    )
    .unwrap();
    let irqs = CountingLine::default();
    f.attach_intx(11, Box::new(irqs.clone()));
    // Memory decoding and bus mastering on, as the driver's pci_enable_device does.
    f.write_config(1, 0, &[0x06, 0]);
    Nic {
        f,
        mem,
        peer: b,
        irqs,
        link,
    }
}

impl Nic {
    fn rd(&self, off: u64) -> u32 {
        self.f.read_reg(off)
    }
    fn wr(&self, off: u64, v: u32) {
        self.f.write_reg(off, v)
    }

    /// What e1000_configure_tx/rx and e1000_alloc_rx_buffers do.
    fn bring_up(&self) {
        self.wr(regs::TDBAL, TX_RING as u32);
        self.wr(regs::TDBAH, 0);
        self.wr(regs::TDLEN, RING_LEN * 16);
        self.wr(regs::TDH, 0);
        self.wr(regs::TDT, 0);
        self.wr(regs::TCTL, tctl::EN);
        self.wr(regs::RDBAL, RX_RING as u32);
        self.wr(regs::RDLEN, RING_LEN * 16);
        self.wr(regs::RDH, 0);
        self.wr(regs::RDT, 0);
        for i in 0..u64::from(RING_LEN) {
            self.mem
                .write_obj(RX_BUFS + i * 2048, GuestAddress(RX_RING + i * 16))
                .unwrap();
        }
        self.wr(regs::RCTL, rctl::EN | rctl::BAM);
        self.wr(regs::RDT, RING_LEN - 1);
        self.wr(regs::IMS, icr::RXT0 | icr::TXDW | icr::LSC);
    }

    fn phy(&self, reg: u32) -> u32 {
        self.wr(
            regs::MDIC,
            mdic::OP_READ | 1 << mdic::PHY_SHIFT | reg << mdic::REG_SHIFT,
        );
        let v = self.rd(regs::MDIC);
        assert_ne!(v & mdic::READY, 0);
        assert_eq!(v & mdic::ERROR, 0);
        v & 0xffff
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let t = Instant::now();
        while !done() {
            assert!(t.elapsed() < Duration::from_secs(5), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn eeprom_and_phy_identify_an_82540em_with_our_mac() {
    let n = nic();
    let mut words = Vec::new();
    for a in 0..64u32 {
        n.wr(regs::EERD, 1 | a << 8);
        let v = n.rd(regs::EERD);
        assert_ne!(v & 1 << 4, 0, "EERD done");
        words.push((v >> 16) as u16);
    }
    assert_eq!(words.iter().fold(0u16, |s, &w| s.wrapping_add(w)), 0xbaba);
    assert_eq!(&words[..3], &[0x5452, 0xe100, 0x0100]);
    assert_eq!((n.phy(2), n.phy(3)), (0x0141, 0x0c20));
    assert_ne!(n.phy(1) & 1 << 2, 0, "PHY link up");
    assert_ne!(n.rd(regs::STATUS) & 2, 0, "STATUS.LU");
    // RA[0] holds the MAC, valid.
    assert_eq!(n.rd(regs::RA), 0xe100_5452);
    assert_eq!(n.rd(regs::RA + 4), 0x8000_0100);
}

#[test]
fn transmit_sends_the_frame_and_writes_back_done() {
    let n = nic();
    n.bring_up();
    let frame: Vec<u8> = (0..100u8).collect();
    n.mem.write_slice(&frame, GuestAddress(TX_BUF)).unwrap();
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&TX_BUF.to_le_bytes());
    d[8..10].copy_from_slice(&100u16.to_le_bytes());
    d[11] = 0x01 | 0x02 | 0x08; // EOP, IFCS, RS
    n.mem.write_slice(&d, GuestAddress(TX_RING)).unwrap();
    let before = n.irqs.0.load(Ordering::SeqCst);
    n.wr(regs::TDT, 1);
    let mut got = [0u8; 2048];
    let len = n.peer.recv(&mut got).unwrap();
    assert_eq!(len, VNET_HDR_LEN + 100);
    assert_eq!(&got[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
    assert_eq!(&got[VNET_HDR_LEN..len], &frame[..]);
    assert_eq!(n.rd(regs::TDH), 1);
    let status: u8 = n.mem.read_obj(GuestAddress(TX_RING + 12)).unwrap();
    assert_eq!(status & 1, 1, "DD written back");
    assert!(n.irqs.0.load(Ordering::SeqCst) > before, "interrupt raised");
    assert_ne!(n.rd(regs::ICR) & icr::TXDW, 0);
    assert_eq!(n.rd(regs::ICR), 0, "ICR clears on read");
}

fn frame_to(dst: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x52, 0x54, 0, 9, 9, 9]);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..len - 14).map(|i| i as u8));
    f
}

#[test]
fn receive_fills_descriptors_filters_and_waits_for_room() {
    let n = nic();
    n.bring_up();
    // For another MAC: filtered out. For ours: stored.
    n.peer
        .send(&frame_to([0x52, 0x54, 0, 1, 1, 1], 200))
        .unwrap();
    n.peer.send(&frame_to(MAC, 200)).unwrap();
    n.wait_for("first frame stored", || n.rd(regs::RDH) == 1);
    let len: u16 = n.mem.read_obj(GuestAddress(RX_RING + 8)).unwrap();
    let st: u8 = n.mem.read_obj(GuestAddress(RX_RING + 12)).unwrap();
    assert_eq!(len, 200 + 4, "frame plus the FCS the driver strips");
    assert_eq!(st & 0x03, 0x03, "DD and EOP");
    let mut buf = vec![0u8; 200];
    n.mem.read_slice(&mut buf, GuestAddress(RX_BUFS)).unwrap();
    assert_eq!(&buf[..6], &MAC);
    assert_eq!(buf[199], (199 - 14) as u8);
    assert_ne!(n.rd(regs::ICR) & icr::RXT0, 0);
    // Fill the ring: 7 descriptors were given (tail 7), one used; six more fit.
    for _ in 0..8 {
        n.peer.send(&frame_to([0xff; 6], 64)).unwrap();
    }
    n.wait_for("ring full", || n.rd(regs::RDH) == 7);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(n.rd(regs::RDH), 7, "no descriptor past the tail");
    // The driver returns descriptors: the held frames go in.
    n.wr(regs::RDT, 3);
    n.wait_for("held frames stored", || n.rd(regs::RDH) == 1);
}

#[test]
fn link_changes_raise_lsc_and_show_in_status() {
    let n = nic();
    n.bring_up();
    n.rd(regs::ICR);
    n.link.set_link(false);
    assert_eq!(n.rd(regs::STATUS) & 2, 0);
    assert_ne!(n.rd(regs::ICR) & icr::LSC, 0);
    n.link.set_link(true);
    assert_ne!(n.rd(regs::STATUS) & 2, 0);
}

#[test]
fn software_reset_restores_defaults() {
    let n = nic();
    n.bring_up();
    n.wr(regs::CTRL, 1 << 26);
    assert_eq!(n.rd(regs::RCTL), 0);
    assert_eq!(n.rd(regs::IMS), 0);
    assert_eq!(n.rd(regs::RA + 4), 0x8000_0100);
}

/// What Linux's e1000e (82571.c, netdev.c) reads from an 82574L at probe and reset.
#[test]
fn the_82574l_answers_what_e1000e_probes() {
    let mut n = nic_of(Model::I82574L);
    let mut cfg = |reg: usize| n.f.read_config(reg);
    assert_eq!(cfg(0), 0x10d3_8086, "device and vendor");
    assert_eq!(cfg(11), 0x0000_8086, "subsystem 8086:0000");
    // The capability list holds the PCI Express capability.
    let cap = (cfg(13) & 0xff) as usize;
    assert_eq!(cfg(cap / 4) & 0xff, 0x10);
    // EERD in the 82571 layout: start bit 0, done bit 1, address from bit 2.
    let mut words = Vec::new();
    for a in 0..64u32 {
        n.wr(regs::EERD, 1 | a << 2);
        let v = n.rd(regs::EERD);
        assert_ne!(v & 1 << 1, 0, "EERD done");
        words.push((v >> 16) as u16);
    }
    assert_eq!(words.iter().fold(0u16, |s, &w| s.wrapping_add(w)), 0xbaba);
    assert_eq!(&words[..3], &[0x5452, 0xe100, 0x0100]);
    // NVM auto-read done, configuration done, no GIO master pending.
    assert_ne!(n.rd(regs::EECD) & 1 << 9, 0, "EECD.AUTO_RD");
    assert_ne!(n.rd(regs::EEMNGCTL) & 1 << 18, 0, "EEMNGCTL config done");
    assert_eq!(n.rd(regs::STATUS) & 1 << 19, 0, "STATUS.GIO_MASTER_ENABLE");
    // The software semaphore latches.
    n.wr(regs::EXTCNF_CTRL, 1 << 5);
    assert_ne!(n.rd(regs::EXTCNF_CTRL) & 1 << 5, 0);
    // BM PHY, revision 1; a page select on register 22 is accepted.
    assert_eq!((n.phy(2), n.phy(3)), (0x0141, 0x0cb1));
    n.wr(
        regs::MDIC,
        mdic::OP_WRITE | 1 << mdic::PHY_SHIFT | 22 << mdic::REG_SHIFT,
    );
    assert_eq!(n.rd(regs::MDIC) & mdic::ERROR, 0);
    // RA[0] holds the NVM's MAC after reset; timestamp registers keep their value.
    assert_eq!(n.rd(regs::RA), 0xe100_5452);
    n.wr(0xb620, 0x10);
    assert_eq!(n.rd(0xb620), 0x10, "TSYNCTXCTL");
}

#[test]
fn the_82574l_asserts_and_auto_masks_on_icr_read() {
    let n = nic_of(Model::I82574L);
    n.bring_up();
    n.rd(regs::ICR);
    n.wr(regs::IAM, 0xffff_ffff);
    n.wr(regs::CTRL_EXT, 1 << 27);
    n.wr(regs::ICS, icr::LSC);
    let v = n.rd(regs::ICR);
    assert_eq!(v, icr::LSC | icr::INT_ASSERTED);
    assert_eq!(n.rd(regs::IMS), 0, "IAME masked the causes");
    // Nothing enabled pending: no INT_ASSERTED.
    n.wr(regs::ICS, icr::LSC);
    assert_eq!(n.rd(regs::ICR), icr::LSC);
    // The 82540EM never sets it.
    let old = nic();
    old.bring_up();
    old.rd(regs::ICR);
    old.wr(regs::ICS, icr::LSC);
    assert_eq!(old.rd(regs::ICR), icr::LSC);
}

#[test]
fn the_82574l_writes_extended_receive_descriptors() {
    let n = nic_of(Model::I82574L);
    n.wr(regs::RFCTL, regs::RFCTL_EXSTEN);
    n.bring_up();
    n.peer.send(&frame_to(MAC, 200)).unwrap();
    n.wait_for("frame stored", || n.rd(regs::RDH) == 1);
    let mut d = [0u8; 16];
    n.mem.read_slice(&mut d, GuestAddress(RX_RING)).unwrap();
    let status = u32::from_le_bytes(d[8..12].try_into().unwrap());
    assert_eq!(status & 0x03, 0x03, "DD and EOP in the status/error dword");
    assert_eq!(u16::from_le_bytes([d[12], d[13]]), 200 + 4, "length at 12");
    assert_eq!(&d[..8], &[0; 8], "RSS words");
    let mut buf = vec![0u8; 6];
    n.mem.read_slice(&mut buf, GuestAddress(RX_BUFS)).unwrap();
    assert_eq!(&buf[..], &MAC);
}

//! virtio-net data path over a datagram socket pair standing in for the tap.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::virtio::queue_util::testing::{
    add_chain, memory, queue, used, used_idx, CountingInterrupt,
};

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

fn pair() -> (Box<dyn FrameIo>, UnixDatagram) {
    let (a, b) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    (Box::new(Dgram(a)), b)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&[0x52, 0x54, 0, 1, 2, 3]);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn transmitted_frame_reaches_the_backend_whole() {
    let mem = memory();
    let (io, host) = pair();
    let mut core = NetCore::new(io, Arc::new(AtomicBool::new(true)));
    let (mock, mut aq) = queue(&mem, 0, TXQ);
    let f = frame(b"guest to host");
    mem.write_slice(&f[..VNET_HDR_LEN], GuestAddress(0x10_0000))
        .unwrap();
    mem.write_slice(&f[VNET_HDR_LEN..], GuestAddress(0x11_0000))
        .unwrap();
    add_chain(
        &mock,
        0,
        &[
            (0x10_0000, VNET_HDR_LEN as u32, false),
            (0x11_0000, (f.len() - VNET_HDR_LEN) as u32, false),
        ],
    );
    let intr = CountingInterrupt::default();
    core.transmit(&mut aq, &mem, &intr);
    let mut got = [0u8; 128];
    let n = host.recv(&mut got).unwrap();
    assert_eq!(&got[..n], &f[..]);
    assert_eq!(used(&mem, &mock, 0), (0, 0));
}

#[test]
fn link_down_drops_both_ways() {
    let mem = memory();
    let (io, host) = pair();
    let link = Arc::new(AtomicBool::new(false));
    let mut core = NetCore::new(io, link);
    let (mock, mut tx) = queue(&mem, 0, TXQ);
    mem.write_slice(&frame(b"x"), GuestAddress(0x10_0000))
        .unwrap();
    add_chain(&mock, 0, &[(0x10_0000, frame(b"x").len() as u32, false)]);
    let intr = CountingInterrupt::default();
    core.transmit(&mut tx, &mem, &intr);
    host.set_nonblocking(true).unwrap();
    assert!(
        host.recv(&mut [0u8; 64]).is_err(),
        "nothing sent while link is down"
    );
    host.send(&frame(b"in")).unwrap();
    let (mock_rx, mut rx) = queue(&mem, 0x8000, RXQ);
    add_chain(&mock_rx, 0, &[(0x20_0000, 2048, true)]);
    assert!(!core.receive(&mut rx, &mem, &intr));
    assert_eq!(used_idx(&mem, &mock_rx), 0);
    assert_eq!(core.dropped, 2);
}

#[test]
fn received_frame_waits_for_buffers_then_merges() {
    let mem = memory();
    let (io, host) = pair();
    let mut core = NetCore::new(io, Arc::new(AtomicBool::new(true)));
    core.negotiate(features::MRG_RXBUF);
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let f = frame(&payload);
    host.send(&f).unwrap();
    let (mock, mut rx) = queue(&mem, 0, RXQ);
    let intr = CountingInterrupt::default();
    assert!(
        core.receive(&mut rx, &mem, &intr),
        "frame held without buffers"
    );
    add_chain(&mock, 0, &[(0x20_0000, 2048, true)]);
    assert!(
        core.receive(&mut rx, &mem, &intr),
        "one 2 KiB buffer is not enough"
    );
    assert_eq!(used_idx(&mem, &mock), 0, "partial buffers given back");
    add_chain(&mock, 1, &[(0x30_0000, 2048, true)]);
    assert!(!core.receive(&mut rx, &mem, &intr));
    assert_eq!(used_idx(&mem, &mock), 2);
    assert_eq!(used(&mem, &mock, 0), (0, 2048));
    assert_eq!(used(&mem, &mock, 1).1 as usize, f.len() - 2048);
    let nbuf: u16 = mem.read_obj(GuestAddress(0x20_0000 + 10)).unwrap();
    assert_eq!(nbuf, 2, "num_buffers");
    let mut got = vec![0u8; f.len()];
    mem.read_slice(&mut got[..2048], GuestAddress(0x20_0000))
        .unwrap();
    mem.read_slice(&mut got[2048..], GuestAddress(0x30_0000))
        .unwrap();
    assert_eq!(&got[VNET_HDR_LEN..], &f[VNET_HDR_LEN..]);
    assert_eq!(*intr.queues.lock().unwrap(), vec![RXQ]);
}

#[test]
fn config_has_mac_and_link_and_set_link_interrupts() {
    let (io, _host) = pair();
    let mac = parse_mac("52:54:00:ab:cd:ef").unwrap();
    let net = Net::new("net0", mac, Some(9000), true, io);
    let mut c = [0u8; 12];
    net.read_config(0, &mut c);
    assert_eq!(&c[..6], &mac);
    assert_eq!(u16::from_le_bytes([c[6], c[7]]), 1);
    assert_eq!(u16::from_le_bytes([c[10], c[11]]), 9000);
    assert_ne!(net.features() & features::MTU, 0);
    let ctl = net.control();
    let intr = Arc::new(CountingInterrupt::default());
    *ctl.interrupt.lock().unwrap() = Some(intr.clone());
    ctl.set_link(false);
    net.read_config(6, &mut c[..2]);
    assert_eq!(&c[..2], &[0, 0]);
    assert_eq!(intr.config.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(parse_mac("52:54:00:ab:cd").is_none());
    assert!(parse_mac("52:54:00:ab:cd:ef:01").is_none());
}

#[test]
fn tap_open_creates_a_tap_when_permitted() {
    if !std::path::Path::new("/dev/net/tun").exists() {
        eprintln!("SKIPPED tap_open_creates_a_tap_when_permitted: no /dev/net/tun");
        return;
    }
    match Tap::open(None) {
        Ok(t) => {
            assert!(t.name().starts_with("tap"), "{}", t.name());
            t.set_up().unwrap();
            t.set_offload(libc::TUN_F_CSUM | libc::TUN_F_TSO4).unwrap();
        }
        Err(e) => {
            eprintln!("SKIPPED tap_open_creates_a_tap_when_permitted: {e} (needs CAP_NET_ADMIN)")
        }
    }
}

/// Posts one control command (class, command, data) and returns the device's ack.
fn command(
    core: &mut NetCore,
    mem: &GuestMem,
    ctrl: &mut ActiveQueue,
    mock: &virtio_queue::mock::MockSplitQueue<'_, GuestMem>,
    n: u16,
    req: &[u8],
) -> u8 {
    mem.write_slice(req, GuestAddress(0x40_0000)).unwrap();
    mem.write_obj(0xeeu8, GuestAddress(0x41_0000)).unwrap();
    add_chain(
        mock,
        n,
        &[
            (0x40_0000, 2, false),
            (0x40_0002, (req.len() - 2) as u32, false),
            (0x41_0000, 1, true),
        ],
    );
    core.control(ctrl, mem, &CountingInterrupt::default());
    assert_eq!(used(mem, mock, n).1, 1, "the ack byte is the used length");
    mem.read_obj(GuestAddress(0x41_0000)).unwrap()
}

fn frame_to(dest: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = frame(payload);
    f[VNET_HDR_LEN..VNET_HDR_LEN + 6].copy_from_slice(&dest);
    f
}

#[test]
fn control_queue_programs_the_receive_filter_and_the_mac() {
    let mem = memory();
    let (io, host) = pair();
    let mac = parse_mac("52:54:00:00:00:01").unwrap();
    let net = Net::new("net0", mac, None, true, io);
    let offered = net.features();
    for f in [
        features::CTRL_VQ,
        features::CTRL_RX,
        features::CTRL_MAC_ADDR,
    ] {
        assert_ne!(offered & f, 0, "feature {f:#x} offered");
    }
    let current = net.current_mac.clone();
    let mut core = net.core.unwrap();
    core.negotiate(offered);
    let (mock_c, mut ctrl) = queue(&mem, 0x1_0000, CTRLQ);
    let (mock_rx, mut rx) = queue(&mem, 0x2_0000, RXQ);
    let intr = CountingInterrupt::default();
    let other = [0x52, 0x54, 0, 0, 0, 2];
    let deliver = |core: &mut NetCore, rx: &mut ActiveQueue, n: u16, dest: [u8; 6]| {
        host.send(&frame_to(dest, b"x")).unwrap();
        add_chain(
            &mock_rx,
            n,
            &[(0x20_0000 + u64::from(n) * 0x1000, 2048, true)],
        );
        core.receive(rx, &mem, &intr);
        used_idx(&mem, &mock_rx)
    };
    assert_eq!(
        deliver(&mut core, &mut rx, 0, other),
        1,
        "promiscuous at reset"
    );
    // Promiscuous off (class RX, command PROMISC, 0).
    assert_eq!(
        command(&mut core, &mem, &mut ctrl, &mock_c, 0, &[0, 0, 0]),
        0
    );
    assert_eq!(deliver(&mut core, &mut rx, 1, other), 1, "filtered");
    assert_eq!(core.filtered, 1);
    assert_eq!(deliver(&mut core, &mut rx, 1, mac), 2, "our MAC passes");
    // A new MAC address (class MAC, command ADDR_SET): config space shows it.
    let mut req = vec![1, 1];
    req.extend_from_slice(&other);
    assert_eq!(command(&mut core, &mem, &mut ctrl, &mock_c, 1, &req), 0);
    assert_eq!(*current.lock().unwrap(), other);
    assert_eq!(deliver(&mut core, &mut rx, 2, other), 3);
    assert_eq!(
        deliver(&mut core, &mut rx, 3, mac),
        3,
        "the old MAC is filtered"
    );
    // Refused: an unknown class, and a command cut short.
    assert_eq!(
        command(&mut core, &mem, &mut ctrl, &mock_c, 2, &[9, 0, 0]),
        1
    );
    assert_eq!(command(&mut core, &mem, &mut ctrl, &mock_c, 3, &[0, 0]), 1);
}

#[test]
fn device_reset_restores_the_configured_mac() {
    let (io, _host) = pair();
    let mac = parse_mac("52:54:00:00:00:01").unwrap();
    let mut net = Net::new("net0", mac, None, true, io);
    *net.current_mac.lock().unwrap() = [2; 6];
    let mut c = [0u8; 6];
    net.read_config(0, &mut c);
    assert_eq!(c, [2; 6]);
    net.reset();
    net.read_config(0, &mut c);
    assert_eq!(c, mac);
}

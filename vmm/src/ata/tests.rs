//! The AHCI adapter driven as a guest driver drives it (registers, command
//! lists, FISes, PRD tables in guest memory), with ATA disks and ATAPI
//! CD-ROMs over in-memory images.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};

use super::ahci::Ahci;
use super::device::{cmd, error, status, AtaDevice, DriveConfig, SIGNATURE_ATA, SIGNATURE_ATAPI};
use crate::pci::intx::tests::CountingLine;
use crate::pci::{MsiMessage, MsiSink, PciDevice, PciRoot, PciWindows};
use crate::scsi::{DeviceConfig, DeviceKind, ScsiDevice};
use crate::virtio::block::backend::{Bufs, DiskBackend};
use crate::virtio::queue_util::testing::memory;
use crate::virtio::GuestMem;

/// An image in a shared vector; discards are recorded.
#[derive(Clone, Default)]
struct MemDisk {
    data: Arc<Mutex<Vec<u8>>>,
    discards: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl DiskBackend for MemDisk {
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
    fn read_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()> {
        let d = self.data.lock().unwrap();
        let mut o = offset as usize;
        for b in bufs {
            b.write_slice(&d[o..o + b.len()], 0).unwrap();
            o += b.len();
        }
        Ok(())
    }
    fn write_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()> {
        let mut d = self.data.lock().unwrap();
        let mut o = offset as usize;
        for b in bufs {
            let n = b.len();
            b.read_slice(&mut d[o..o + n], 0).unwrap();
            o += n;
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.discards.lock().unwrap().push((offset, len));
        Ok(())
    }
    fn write_zeroes(&mut self, _: u64, _: u64, _: bool) -> io::Result<()> {
        Ok(())
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i / 512 + i).wrapping_mul(7) as u8 ^ seed)
        .collect()
}

fn unit(kind: DeviceKind, medium: Option<MemDisk>) -> Arc<Mutex<ScsiDevice>> {
    let u = ScsiDevice::new(
        DeviceConfig {
            kind,
            readonly: kind == DeviceKind::Cdrom,
            writeback: true,
            serial: None,
            device_id: "sata0-0-0".into(),
            vendor: None,
            product: None,
            wwn: None,
        },
        medium.map(|m| Box::new(m) as Box<dyn DiskBackend>),
    );
    Arc::new(Mutex::new(u))
}

fn drive(kind: DeviceKind, medium: Option<MemDisk>, discard: bool) -> AtaDevice {
    AtaDevice::new(
        unit(kind, medium),
        DriveConfig {
            serial: Some("OXSERIAL".into()),
            discard,
            wwn: Some(0x5000_c500_1234_5678),
            ncq_depth: Some(32),
        },
        0,
    )
}

/// Guest memory layout of the test driver, per port `n`.
const CLB: u64 = 0x10_000;
const FB: u64 = 0x20_000;
const TABLE: u64 = 0x30_000;
const BUF: u64 = 0x100_000;

/// A guest driver for the adapter.
struct Driver {
    hba: Ahci,
    mem: GuestMem,
    irqs: CountingLine,
}

impl Driver {
    fn new(drives: Vec<Option<AtaDevice>>) -> Self {
        let mem = memory();
        let mut root = PciRoot::new(PciWindows {
            mmio32: (0xc000_0000, 0x2000_0000),
            mmio64: (0, 0),
        });
        let mut hba = Ahci::new(drives, mem.clone(), &mut root).unwrap();
        let irqs = CountingLine::default();
        hba.attach_intx(20, Box::new(irqs.clone()));
        // Memory decoding on, as firmware leaves it.
        hba.write_config(1, 0, &[0x06, 0]);
        Driver { hba, mem, irqs }
    }

    fn r(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.hba.bar_read(5, off, &mut b);
        u32::from_le_bytes(b)
    }

    fn w(&mut self, off: u64, v: u32) {
        self.hba.bar_write(5, off, &v.to_le_bytes());
    }

    fn port(n: usize, reg: u64) -> u64 {
        0x100 + 0x80 * n as u64 + reg
    }

    /// Linux's port bring-up: FIS area and command list, COMRESET, start.
    fn start_port(&mut self, n: usize) {
        let (clb, fb) = (CLB + 0x1000 * n as u64, FB + 0x1000 * n as u64);
        self.w(Self::port(n, 0x00), clb as u32);
        self.w(Self::port(n, 0x08), fb as u32);
        self.w(Self::port(n, 0x18), 0x16); // FRE, POD, SUD
        self.w(Self::port(n, 0x2c), 0x301); // COMRESET
        self.w(Self::port(n, 0x2c), 0x300);
        self.w(Self::port(n, 0x30), 0xffff_ffff); // SERR
        self.w(Self::port(n, 0x10), 0xffff_ffff); // IS
        self.w(Self::port(n, 0x14), 0xfdc0_00ff); // IE
        self.w(Self::port(n, 0x18), 0x17); // ST
    }

    /// Issues `fis` (+ `packet`) in `slot` of port `n` with PRDs `prds`.
    fn issue(
        &mut self,
        n: usize,
        slot: u32,
        fis: &[u8],
        packet: &[u8],
        prds: &[(u64, u32)],
        write: bool,
    ) {
        let clb = CLB + 0x1000 * n as u64;
        let table = TABLE + 0x1000 * n as u64 + 0x200 * u64::from(slot);
        let mut dw0 = 5u32 | (prds.len() as u32) << 16;
        if write {
            dw0 |= 1 << 6;
        }
        if !packet.is_empty() {
            dw0 |= 1 << 5;
        }
        let mut header = [0u8; 32];
        header[0..4].copy_from_slice(&dw0.to_le_bytes());
        header[8..16].copy_from_slice(&table.to_le_bytes());
        self.mem
            .write_slice(&header, GuestAddress(clb + 32 * u64::from(slot)))
            .unwrap();
        let mut t = vec![0u8; 0x80 + 16 * prds.len()];
        t[..fis.len()].copy_from_slice(fis);
        t[0x40..0x40 + packet.len()].copy_from_slice(packet);
        for (i, &(addr, len)) in prds.iter().enumerate() {
            let e = &mut t[0x80 + 16 * i..0x90 + 16 * i];
            e[0..8].copy_from_slice(&addr.to_le_bytes());
            e[12..16].copy_from_slice(&(len - 1).to_le_bytes());
        }
        self.mem.write_slice(&t, GuestAddress(table)).unwrap();
        self.w(Self::port(n, 0x38), 1 << slot);
    }

    fn rfis(&self, n: usize) -> [u8; 20] {
        let mut f = [0u8; 20];
        self.mem
            .read_slice(&mut f, GuestAddress(FB + 0x1000 * n as u64 + 0x40))
            .unwrap();
        f
    }

    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// Acknowledges every interrupt as Linux's handler does.
    fn ack(&mut self, n: usize) -> u32 {
        let is = self.r(Self::port(n, 0x10));
        self.w(Self::port(n, 0x10), is);
        let hba_is = self.r(0x08);
        self.w(0x08, hba_is);
        is
    }
}

/// A register FIS (H2D) with the command bit set.
fn h2d(command: u8, features: u16, lba: u64, count: u16) -> [u8; 20] {
    let mut f = [0u8; 20];
    f[0] = 0x27;
    f[1] = 0x80;
    f[2] = command;
    f[3] = features as u8;
    f[4] = lba as u8;
    f[5] = (lba >> 8) as u8;
    f[6] = (lba >> 16) as u8;
    f[7] = 0x40; // LBA mode
    f[8] = (lba >> 24) as u8;
    f[9] = (lba >> 32) as u8;
    f[10] = (lba >> 40) as u8;
    f[11] = (features >> 8) as u8;
    f[12] = count as u8;
    f[13] = (count >> 8) as u8;
    f
}

fn words(b: &[u8]) -> Vec<u16> {
    b.chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn ata_string(w: &[u16]) -> String {
    w.iter()
        .flat_map(|w| w.to_be_bytes())
        .map(char::from)
        .collect::<String>()
        .trim_end()
        .to_string()
}

#[test]
fn host_registers_describe_an_ich9_adapter_with_six_ports() {
    let mut d = Driver::new(vec![]);
    let cap = d.r(0x00);
    assert_eq!(cap & 0x1f, 5, "six ports");
    assert_eq!((cap >> 8) & 0x1f, 31, "32 command slots");
    assert_ne!(cap & (1 << 30), 0, "NCQ");
    assert_ne!(cap & (1 << 18), 0, "AHCI only");
    assert_eq!(d.r(0x0c), 0x3f);
    assert_eq!(d.r(0x10), 0x0001_0000);
    assert_ne!(d.r(0x04) & (1 << 31), 0, "AE");
    // No device: no link, the task file floats.
    assert_eq!(d.r(Driver::port(0, 0x28)), 0);
    assert_eq!(d.r(Driver::port(0, 0x20)), 0x7f);
    assert_eq!(d.hba.read_config(0), 0x2922_8086);
    assert_eq!(d.hba.read_config(2) >> 8, 0x01_06_01);
}

#[test]
fn comreset_reports_disk_and_atapi_signatures() {
    let mut d = Driver::new(vec![
        Some(drive(DeviceKind::Disk, Some(MemDisk::default()), false)),
        Some(drive(DeviceKind::Cdrom, None, false)),
    ]);
    d.start_port(0);
    d.start_port(1);
    assert_eq!(d.r(Driver::port(0, 0x24)), SIGNATURE_ATA);
    assert_eq!(d.r(Driver::port(1, 0x24)), SIGNATURE_ATAPI);
    assert_eq!(d.r(Driver::port(0, 0x28)), 0x113);
    assert_eq!(d.r(Driver::port(0, 0x20)) & 0x88, 0, "not busy");
    // The signature FIS landed in the received-FIS area.
    let f = d.rfis(1);
    assert_eq!((f[0], f[5], f[6]), (0x34, 0x14, 0xeb));
    // FR and CR follow FRE and ST.
    assert_eq!(d.r(Driver::port(0, 0x18)) & 0xc011, 0xc011);
    d.w(Driver::port(0, 0x18), 0x06);
    assert_eq!(d.r(Driver::port(0, 0x18)) & 0xc011, 0);
}

#[test]
fn identify_device_fills_the_prd_buffer_and_interrupts() {
    let img = MemDisk::default();
    img.data.lock().unwrap().resize(8 << 20, 0);
    let mut d = Driver::new(vec![Some(drive(DeviceKind::Disk, Some(img), true))]);
    d.start_port(0);
    d.w(0x04, 1 << 1); // GHC.IE
    d.issue(
        0,
        0,
        &h2d(cmd::IDENTIFY_DEVICE, 0, 0, 0),
        &[],
        &[(BUF, 512)],
        false,
    );
    assert_eq!(d.r(Driver::port(0, 0x38)), 0, "CI cleared");
    assert_eq!(d.irqs.0.load(Ordering::SeqCst), 1);
    assert_eq!(d.ack(0) & 1, 1, "D2H register FIS interrupt");
    let id = words(&d.read(BUF, 512));
    assert_eq!(ata_string(&id[27..47]), "QEMU HARDDISK");
    assert_eq!(ata_string(&id[10..20]), "OXSERIAL");
    let sectors = (0..4).fold(0u64, |a, i| a | u64::from(id[100 + i]) << (16 * i));
    assert_eq!(sectors, (8 << 20) / 512);
    assert_ne!(id[76] & (1 << 8), 0, "NCQ");
    assert_eq!(id[75], 31);
    assert_eq!(id[169] & 1, 1, "TRIM with discard='unmap'");
    assert_eq!(id[108..112], [0x5000, 0xc500, 0x1234, 0x5678]);
    // The integrity word makes the 512 bytes sum to 0.
    let sum = d.read(BUF, 512).iter().fold(0u8, |a, b| a.wrapping_add(*b));
    assert_eq!((id[255] & 0xff, sum), (0xa5, 0));
    // PRDBC: 512 bytes moved.
    assert_eq!(d.read(CLB + 4, 4), 512u32.to_le_bytes());
    let f = d.rfis(0);
    assert_eq!((f[0], f[1], f[2] & 0xc9), (0x34, 0x40, 0x40));
    // Interrupt line low once acknowledged.
    assert_eq!(d.hba.read_config(1) & (1 << 19), 0);
}

/// An MSI route that counts its messages.
#[derive(Default)]
struct Messages(Mutex<u32>);

impl MsiSink for Messages {
    fn program(&self, _vector: u16, _msg: MsiMessage, _masked: bool) {}
    fn trigger(&self, _vector: u16) {
        *self.0.lock().unwrap() += 1;
    }
}

#[test]
fn msi_takes_over_from_intx_while_the_driver_enables_it() {
    let img = MemDisk::default();
    img.data.lock().unwrap().resize(1 << 20, 0);
    let mut d = Driver::new(vec![Some(drive(DeviceKind::Disk, Some(img), false))]);
    let msgs = Arc::new(Messages::default());
    d.hba.attach_msi(msgs.clone());
    d.start_port(0);
    d.w(0x04, 1 << 1); // GHC.IE
                       // Linux walks the capability list to the MSI capability (ID 5).
    let mut at = (d.hba.read_config(0x34 / 4) & 0xff) as usize;
    while d.hba.read_config(at / 4) & 0xff != 0x05 {
        at = ((d.hba.read_config(at / 4) >> 8) & 0xff) as usize;
        assert_ne!(at, 0, "no MSI capability");
    }
    let reg = at / 4;
    d.hba
        .write_config(reg + 1, 0, &0xfee0_0000u32.to_le_bytes());
    d.hba.write_config(reg + 3, 0, &0x0041u16.to_le_bytes());
    d.hba.write_config(reg, 2, &[1]);
    let identify = h2d(cmd::IDENTIFY_DEVICE, 0, 0, 0);
    d.issue(0, 0, &identify, &[], &[(BUF, 512)], false);
    assert_eq!(*msgs.0.lock().unwrap(), 1, "one message per completion");
    d.ack(0);
    assert_eq!(*msgs.0.lock().unwrap(), 1, "acknowledging sends nothing");
    d.issue(0, 1, &identify, &[], &[(BUF, 512)], false);
    assert_eq!(*msgs.0.lock().unwrap(), 2);
    assert_eq!(
        d.irqs.0.load(Ordering::SeqCst),
        0,
        "no INTx while MSI is on"
    );
    d.ack(0);
    // MSI off again (pci=nomsi, a driver unbinding): back to INTA#.
    d.hba.write_config(reg, 2, &[0]);
    d.issue(0, 2, &identify, &[], &[(BUF, 512)], false);
    assert_eq!(d.irqs.0.load(Ordering::SeqCst), 1);
    assert_eq!(*msgs.0.lock().unwrap(), 2);
}

#[test]
fn dma_writes_and_reads_move_data_through_scattered_prds() {
    let img = MemDisk::default();
    img.data.lock().unwrap().resize(1 << 20, 0);
    let mut d = Driver::new(vec![Some(drive(
        DeviceKind::Disk,
        Some(img.clone()),
        false,
    ))]);
    d.start_port(0);
    let data = pattern(8 * 512, 0x3c);
    d.mem.write_slice(&data[..1024], GuestAddress(BUF)).unwrap();
    d.mem
        .write_slice(&data[1024..], GuestAddress(BUF + 0x10_000))
        .unwrap();
    let prds = [(BUF, 1024), (BUF + 0x10_000, 3072)];
    d.issue(0, 3, &h2d(cmd::WRITE_DMA_EXT, 0, 100, 8), &[], &prds, true);
    assert_eq!(d.r(Driver::port(0, 0x20)) & 0xff, 0x50);
    assert_eq!(&img.data.lock().unwrap()[100 * 512..108 * 512], &data[..]);
    // 28-bit READ DMA into one buffer.
    d.issue(
        0,
        4,
        &h2d(cmd::READ_DMA, 0, 100, 8),
        &[],
        &[(BUF + 0x40_000, 4096)],
        false,
    );
    assert_eq!(d.read(BUF + 0x40_000, 4096), data);
}

#[test]
fn ncq_reads_complete_with_a_set_device_bits_fis() {
    let img = MemDisk::default();
    *img.data.lock().unwrap() = pattern(1 << 20, 0x11);
    let mut d = Driver::new(vec![Some(drive(
        DeviceKind::Disk,
        Some(img.clone()),
        false,
    ))]);
    d.start_port(0);
    let tag = 5u16;
    d.w(Driver::port(0, 0x34), 1 << tag);
    // FPDMA: count in the features register, the tag in count[7:3].
    d.issue(
        0,
        u32::from(tag),
        &h2d(cmd::READ_FPDMA_QUEUED, 2, 7, tag << 3),
        &[],
        &[(BUF, 1024)],
        false,
    );
    assert_eq!(d.r(Driver::port(0, 0x34)), 0, "SACT cleared");
    assert_eq!(d.r(Driver::port(0, 0x38)), 0, "CI cleared");
    assert_eq!(d.ack(0) & (1 << 3), 1 << 3, "SDB FIS interrupt");
    let sdb = d.read(FB + 0x58, 8);
    assert_eq!(sdb[0], 0xa1);
    assert_eq!(sdb[4..8], (1u32 << tag).to_le_bytes());
    assert_eq!(
        d.read(BUF, 1024),
        img.data.lock().unwrap()[7 * 512..9 * 512]
    );
}

#[test]
fn out_of_range_reads_fail_with_idnf_and_a_task_file_error() {
    let img = MemDisk::default();
    img.data.lock().unwrap().resize(64 * 512, 0);
    let mut d = Driver::new(vec![Some(drive(DeviceKind::Disk, Some(img), false))]);
    d.start_port(0);
    d.issue(
        0,
        0,
        &h2d(cmd::READ_DMA_EXT, 0, 60, 8),
        &[],
        &[(BUF, 4096)],
        false,
    );
    let tfd = d.r(Driver::port(0, 0x20));
    assert_eq!(tfd & u32::from(status::ERR), 1);
    assert_eq!((tfd >> 8) as u8, error::IDNF | error::ABRT);
    assert_ne!(d.r(Driver::port(0, 0x10)) & (1 << 30), 0, "TFES");
}

#[test]
fn trim_passes_ranges_to_the_image() {
    let img = MemDisk::default();
    img.data.lock().unwrap().resize(1 << 20, 0);
    let mut d = Driver::new(vec![Some(drive(DeviceKind::Disk, Some(img.clone()), true))]);
    d.start_port(0);
    let mut ranges = [0u8; 512];
    ranges[0..8].copy_from_slice(&(16u64 | 8 << 48).to_le_bytes());
    ranges[8..16].copy_from_slice(&(100u64 | 1 << 48).to_le_bytes());
    d.mem.write_slice(&ranges, GuestAddress(BUF)).unwrap();
    d.issue(
        0,
        0,
        &h2d(cmd::DATA_SET_MANAGEMENT, 1, 0, 1),
        &[],
        &[(BUF, 512)],
        true,
    );
    assert_eq!(d.r(Driver::port(0, 0x20)) & 1, 0);
    assert_eq!(
        *img.discards.lock().unwrap(),
        vec![(16 * 512, 8 * 512), (100 * 512, 512)]
    );
}

#[test]
fn atapi_packets_reach_the_mmc_unit() {
    let iso = MemDisk::default();
    *iso.data.lock().unwrap() = pattern(64 * 2048, 0x77);
    let mut d = Driver::new(vec![
        Some(drive(DeviceKind::Cdrom, Some(iso.clone()), false)),
        Some(drive(DeviceKind::Cdrom, None, false)),
    ]);
    d.start_port(0);
    d.start_port(1);
    // IDENTIFY DEVICE aborts on a packet device; IDENTIFY PACKET DEVICE answers.
    d.issue(
        0,
        0,
        &h2d(cmd::IDENTIFY_DEVICE, 0, 0, 0),
        &[],
        &[(BUF, 512)],
        false,
    );
    assert_eq!((d.r(Driver::port(0, 0x20)) >> 8) as u8, error::ABRT);
    d.start_port(0);
    d.issue(
        0,
        0,
        &h2d(cmd::IDENTIFY_PACKET_DEVICE, 0, 0, 0),
        &[],
        &[(BUF, 512)],
        false,
    );
    let id = words(&d.read(BUF, 512));
    assert_eq!(id[0] >> 8 & 0x1f, 5, "CD-ROM");
    assert_eq!(ata_string(&id[27..47]), "QEMU DVD-ROM");
    // READ(10) of blocks 16-17 through DMA.
    let mut cdb = [0u8; 12];
    cdb[0] = 0x28;
    cdb[5] = 16;
    cdb[8] = 2;
    d.issue(
        0,
        1,
        &h2d(cmd::PACKET, 1, 0, 0),
        &cdb,
        &[(BUF, 4096)],
        false,
    );
    assert_eq!(d.r(Driver::port(0, 0x20)) & 1, 0);
    assert_eq!(
        d.read(BUF, 4096),
        iso.data.lock().unwrap()[16 * 2048..18 * 2048]
    );
    // The empty drive: TEST UNIT READY fails with NOT READY in the error
    // register; REQUEST SENSE says MEDIUM NOT PRESENT.
    d.issue(1, 0, &h2d(cmd::PACKET, 0, 0, 0), &[0; 12], &[], false);
    let tfd = d.r(Driver::port(1, 0x20));
    assert_eq!((tfd & 1, (tfd >> 8) >> 4), (1, 0x02));
    d.start_port(1);
    let mut rs = [0u8; 12];
    rs[0] = 0x03;
    rs[4] = 18;
    d.issue(1, 0, &h2d(cmd::PACKET, 1, 0, 0), &rs, &[(BUF, 18)], false);
    let sense = d.read(BUF, 18);
    assert_eq!((sense[2], sense[12]), (0x02, 0x3a));
}

#[test]
fn software_reset_and_hba_reset_restore_the_signature() {
    let mut d = Driver::new(vec![Some(drive(DeviceKind::Cdrom, None, false))]);
    d.start_port(0);
    let mut srst = [0u8; 20];
    srst[0] = 0x27;
    srst[15] = 0x04;
    d.issue(0, 0, &srst, &[], &[], false);
    srst[15] = 0;
    d.issue(0, 1, &srst, &[], &[], false);
    assert_eq!(d.r(Driver::port(0, 0x24)), SIGNATURE_ATAPI);
    assert_eq!(d.r(Driver::port(0, 0x20)) & 0x80, 0);
    d.w(0x04, 1 << 1);
    d.w(0x04, 1);
    assert_eq!(d.r(0x04) & 3, 0, "HR done, IE off");
    assert_eq!(d.r(Driver::port(0, 0x18)) & 1, 0, "ports stopped");
    assert_eq!(d.r(Driver::port(0, 0x24)), SIGNATURE_ATAPI);
}

mod ide {
    use super::*;
    use crate::ata::ide::IdeChannel;

    fn read_block(c: &mut IdeChannel, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..len / 2 {
            let mut w = [0u8; 2];
            c.read_reg(0, &mut w);
            out.extend_from_slice(&w);
        }
        out
    }

    fn status(c: &mut IdeChannel) -> u8 {
        let mut b = [0u8];
        c.read_reg(7, &mut b);
        b[0]
    }

    #[test]
    fn pio_identify_and_read_sectors_on_the_master() {
        let img = MemDisk::default();
        *img.data.lock().unwrap() = pattern(64 * 512, 0x42);
        let mut c = IdeChannel::new(
            Some(drive(DeviceKind::Disk, Some(img.clone()), false)),
            None,
            None,
        );
        // The signature after reset: an ATA disk.
        let mut b = [0u8];
        c.read_reg(4, &mut b);
        assert_eq!(b[0], 0);
        c.write_reg(7, &[cmd::IDENTIFY_DEVICE]);
        assert_eq!(status(&mut c) & 0x88, 0x08, "DRQ, not busy");
        let id = words(&read_block(&mut c, 512));
        assert_eq!(ata_string(&id[27..47]), "QEMU HARDDISK");
        assert_eq!(status(&mut c) & 0x08, 0, "DRQ off after the block");
        // READ SECTORS, LBA 3, 2 sectors.
        c.write_reg(2, &[2]);
        c.write_reg(3, &[3]);
        c.write_reg(4, &[0]);
        c.write_reg(5, &[0]);
        c.write_reg(6, &[0xe0]);
        c.write_reg(7, &[cmd::READ_SECTORS]);
        let got = read_block(&mut c, 1024);
        assert_eq!(got, img.data.lock().unwrap()[3 * 512..5 * 512]);
        // WRITE SECTORS of one sector at LBA 10.
        c.write_reg(2, &[1]);
        c.write_reg(3, &[10]);
        c.write_reg(7, &[cmd::WRITE_SECTORS]);
        for i in 0..256u16 {
            c.write_reg(0, &i.to_le_bytes());
        }
        assert_eq!(status(&mut c) & 0x89, 0);
        assert_eq!(img.data.lock().unwrap()[10 * 512 + 2], 1);
        // The slave position is empty: its status reads 0.
        c.write_reg(6, &[0xf0]);
        assert_eq!(status(&mut c), 0);
    }

    #[test]
    fn atapi_packet_reads_in_byte_count_pieces() {
        let iso = MemDisk::default();
        *iso.data.lock().unwrap() = pattern(32 * 2048, 0x99);
        let mut c = IdeChannel::new(
            None,
            Some(drive(DeviceKind::Cdrom, Some(iso.clone()), false)),
            None,
        );
        c.write_reg(6, &[0xb0]);
        let (mut mid, mut high) = ([0u8], [0u8]);
        c.read_reg(4, &mut mid);
        c.read_reg(5, &mut high);
        assert_eq!((mid[0], high[0]), (0x14, 0xeb), "ATAPI signature");
        // Byte count limit 2048: READ(10) of two blocks comes in two pieces.
        c.write_reg(1, &[0]);
        c.write_reg(4, &[0x00]);
        c.write_reg(5, &[0x08]);
        c.write_reg(7, &[cmd::PACKET]);
        let mut cdb = [0u8; 12];
        cdb[0] = 0x28;
        cdb[5] = 5;
        cdb[8] = 2;
        for w in cdb.chunks(2) {
            c.write_reg(0, w);
        }
        let mut got = Vec::new();
        for _ in 0..2 {
            assert_eq!(status(&mut c) & 0x08, 0x08);
            c.read_reg(4, &mut mid);
            c.read_reg(5, &mut high);
            assert_eq!(u16::from_le_bytes([mid[0], high[0]]), 2048);
            got.extend(read_block(&mut c, 2048));
        }
        let mut reason = [0u8];
        c.read_reg(2, &mut reason);
        assert_eq!(reason[0], 3, "I/O and C/D: completion");
        assert_eq!(status(&mut c) & 0x89, 0);
        assert_eq!(got, iso.data.lock().unwrap()[5 * 2048..7 * 2048]);
    }

    use crate::ata::bmdma::{CMD_START, CMD_TO_MEMORY, STATUS_ACTIVE, STATUS_INTERRUPT};
    use vmm_sys_util::eventfd::EventFd;

    /// A PRD table at 0x1000 with one entry per (address, bytes) pair.
    fn prd_table(mem: &GuestMem, bufs: &[(u32, u16)]) {
        for (i, &(addr, len)) in bufs.iter().enumerate() {
            let at = 0x1000 + 8 * i as u64;
            let eot = if i + 1 == bufs.len() { 1u32 << 31 } else { 0 };
            mem.write_obj(addr, GuestAddress(at)).unwrap();
            mem.write_obj(u32::from(len) | eot, GuestAddress(at + 4))
                .unwrap();
        }
    }

    fn set_prd(c: &mut IdeChannel, at: u32) {
        for (i, b) in at.to_le_bytes().iter().enumerate() {
            c.write_bus_master(4 + i as u64, *b);
        }
    }

    /// The task file of an LBA28 command on the master.
    fn lba28(c: &mut IdeChannel, lba: u32, count: u8, command: u8) {
        c.write_reg(2, &[count]);
        c.write_reg(3, &[lba as u8]);
        c.write_reg(4, &[(lba >> 8) as u8]);
        c.write_reg(5, &[(lba >> 16) as u8]);
        c.write_reg(6, &[0xe0]);
        c.write_reg(7, &[command]);
    }

    #[test]
    fn bus_master_dma_reads_and_writes_through_the_prd_table() {
        let img = MemDisk::default();
        *img.data.lock().unwrap() = pattern(64 * 512, 0x17);
        let mem = memory();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut c = IdeChannel::new(
            Some(drive(DeviceKind::Disk, Some(img.clone()), false)),
            None,
            Some(irq.try_clone().unwrap()),
        )
        .with_bus_master(mem.clone());
        // READ DMA of 3 sectors at LBA 5 into two buffers, as Linux orders it:
        // PRD table and direction, the command, then the start bit.
        prd_table(&mem, &[(0x4000, 1024), (0x8000, 512)]);
        set_prd(&mut c, 0x1000);
        c.write_bus_master(0, CMD_TO_MEMORY);
        lba28(&mut c, 5, 3, cmd::READ_DMA);
        assert_eq!(status(&mut c) & 0x08, 0x08, "DRQ until the bus master runs");
        assert!(irq.read().is_err(), "no interrupt before the start bit");
        c.write_bus_master(0, CMD_TO_MEMORY | CMD_START);
        assert_eq!(irq.read().unwrap(), 1, "one completion interrupt");
        assert_eq!(
            c.read_bus_master(2) & (STATUS_ACTIVE | STATUS_INTERRUPT),
            STATUS_INTERRUPT
        );
        assert_eq!(status(&mut c) & 0x89, 0, "done, no error");
        let mut got = vec![0u8; 1536];
        mem.read_slice(&mut got[..1024], GuestAddress(0x4000))
            .unwrap();
        mem.read_slice(&mut got[1024..], GuestAddress(0x8000))
            .unwrap();
        assert_eq!(got, img.data.lock().unwrap()[5 * 512..8 * 512]);
        // Stop, clear the interrupt bit (write 1), as the driver does.
        c.write_bus_master(0, 0);
        c.write_bus_master(2, STATUS_INTERRUPT);
        assert_eq!(c.read_bus_master(2) & STATUS_INTERRUPT, 0);

        // WRITE DMA of one sector at LBA 40; the start bit first this time.
        let sector = pattern(512, 0xee);
        mem.write_slice(&sector, GuestAddress(0x6000)).unwrap();
        prd_table(&mem, &[(0x6000, 512)]);
        c.write_bus_master(0, CMD_START);
        lba28(&mut c, 40, 1, cmd::WRITE_DMA);
        assert_eq!(irq.read().unwrap(), 1);
        assert_eq!(img.data.lock().unwrap()[40 * 512..41 * 512], sector[..]);
    }

    #[test]
    fn read_dma_of_256_sectors_ignores_the_previous_count_byte() {
        let img = MemDisk::default();
        *img.data.lock().unwrap() = pattern(512 * 512, 0x61);
        let mem = memory();
        let mut c = IdeChannel::new(
            Some(drive(DeviceKind::Disk, Some(img.clone()), false)),
            None,
            None,
        )
        .with_bus_master(mem.clone());
        // Count 0 (= 256 sectors) written after a count of 8: the register's
        // previous half holds 8, which a 28-bit command must not see.
        c.write_reg(2, &[8]);
        prd_table(&mem, &[(0x20000, 0), (0x30000, 0)]);
        set_prd(&mut c, 0x1000);
        c.write_bus_master(0, CMD_TO_MEMORY);
        lba28(&mut c, 16, 0, cmd::READ_DMA);
        c.write_bus_master(0, CMD_TO_MEMORY | CMD_START);
        assert_eq!(status(&mut c) & 0x89, 0);
        let mut got = vec![0u8; 256 * 512];
        mem.read_slice(&mut got, GuestAddress(0x20000)).unwrap();
        assert_eq!(got, img.data.lock().unwrap()[16 * 512..272 * 512]);
    }

    #[test]
    fn atapi_packet_with_the_dma_bit_reads_through_the_bus_master() {
        let iso = MemDisk::default();
        *iso.data.lock().unwrap() = pattern(16 * 2048, 0x3c);
        let mem = memory();
        let mut c = IdeChannel::new(
            Some(drive(DeviceKind::Cdrom, Some(iso.clone()), false)),
            None,
            None,
        )
        .with_bus_master(mem.clone());
        prd_table(&mem, &[(0x10000, 4096)]);
        set_prd(&mut c, 0x1000);
        c.write_bus_master(0, CMD_TO_MEMORY);
        c.write_reg(1, &[1]); // DMA
        c.write_reg(7, &[cmd::PACKET]);
        let mut cdb = [0u8; 12];
        cdb[0] = 0x28; // READ(10) of blocks 3-4
        cdb[5] = 3;
        cdb[8] = 2;
        for w in cdb.chunks(2) {
            c.write_reg(0, w);
        }
        c.write_bus_master(0, CMD_TO_MEMORY | CMD_START);
        let mut reason = [0u8];
        c.read_reg(2, &mut reason);
        assert_eq!(reason[0], 3, "I/O and C/D: completion");
        assert_eq!(status(&mut c) & 0x89, 0);
        let mut got = vec![0u8; 4096];
        mem.read_slice(&mut got, GuestAddress(0x10000)).unwrap();
        assert_eq!(got, iso.data.lock().unwrap()[3 * 2048..5 * 2048]);
    }

    #[test]
    fn dma_without_a_bus_master_is_aborted() {
        let mut c = IdeChannel::new(
            Some(drive(DeviceKind::Disk, Some(MemDisk::default()), false)),
            None,
            None,
        );
        lba28(&mut c, 0, 1, cmd::READ_DMA);
        assert_eq!(status(&mut c) & 0x01, 0x01);
        let mut e = [0u8];
        c.read_reg(1, &mut e);
        assert_eq!(e[0], error::ABRT);
    }
}

//! Transmit: the three descriptor kinds the drivers use (legacy; context and data
//! of the extended format), packet assembly across descriptors, and the offloads the
//! hardware performs on the way out — checksum insertion and TCP segmentation (TSO),
//! done here in software because the frame leaves as a plain Ethernet frame (the
//! backend is told no offloads).

use vm_memory::{Bytes, GuestAddress};

use crate::virtio::GuestMem;

/// Descriptor command bits (byte 3 of the second dword).
mod cmd {
    pub const EOP: u8 = 1 << 0;
    /// Legacy: insert checksum at CSO.
    pub const IC: u8 = 1 << 2;
    pub const RS: u8 = 1 << 3;
    /// Extended descriptor (context or data, told by DTYP).
    pub const DEXT: u8 = 1 << 5;
    /// Insert the VLAN tag in `special`.
    pub const VLE: u8 = 1 << 6;
    /// Context: TCP (else UDP); IPv4 (else IPv6); data: TCP segmentation enable.
    pub const TCP: u8 = 1 << 0;
    pub const IP: u8 = 1 << 1;
    pub const TSE: u8 = 1 << 2;
}
/// Data descriptor options: insert IP / TCP-UDP checksum.
const POPTS_IXSM: u8 = 1 << 0;
const POPTS_TXSM: u8 = 1 << 1;
/// Descriptor type of an extended descriptor: context 0, data 1.
const DTYP_DATA: u32 = 1;
/// Status: descriptor done.
pub const STATUS_DD: u8 = 1 << 0;
/// Largest packet assembled before segmentation (a 64 KiB TSO send plus headers).
const MAX_PACKET: usize = 0x10000 + 256;

/// One transmit descriptor as the driver wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxDesc {
    Legacy {
        addr: u64,
        len: usize,
        cso: usize,
        cmd: u8,
        css: usize,
        special: u16,
    },
    Context(Context),
    Data {
        addr: u64,
        len: usize,
        dcmd: u8,
        popts: u8,
        special: u16,
    },
}

/// Where the offloads apply, from the last context descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Context {
    ipcss: usize,
    ipcso: usize,
    ipcse: usize,
    tucss: usize,
    tucso: usize,
    tucse: usize,
    tcp: bool,
    ipv4: bool,
    hdr_len: usize,
    mss: usize,
}

impl TxDesc {
    /// Decodes the 16 bytes of a descriptor.
    pub fn parse(d: &[u8; 16]) -> TxDesc {
        let addr = u64::from_le_bytes(d[0..8].try_into().unwrap());
        let lower = u32::from_le_bytes(d[8..12].try_into().unwrap());
        let cmd = d[11];
        if cmd & cmd::DEXT == 0 {
            return TxDesc::Legacy {
                addr,
                len: usize::from(u16::from_le_bytes([d[8], d[9]])),
                cso: usize::from(d[10]),
                cmd,
                css: usize::from(d[13]),
                special: u16::from_le_bytes([d[14], d[15]]),
            };
        }
        if (lower >> 20) & 0xf == DTYP_DATA {
            return TxDesc::Data {
                addr,
                len: (lower & 0xf_ffff) as usize,
                dcmd: cmd,
                popts: d[13],
                special: u16::from_le_bytes([d[14], d[15]]),
            };
        }
        TxDesc::Context(Context {
            ipcss: usize::from(d[0]),
            ipcso: usize::from(d[1]),
            ipcse: usize::from(u16::from_le_bytes([d[2], d[3]])),
            tucss: usize::from(d[4]),
            tucso: usize::from(d[5]),
            tucse: usize::from(u16::from_le_bytes([d[6], d[7]])),
            tcp: cmd & cmd::TCP != 0,
            ipv4: cmd & cmd::IP != 0,
            hdr_len: usize::from(d[13]),
            mss: usize::from(u16::from_le_bytes([d[14], d[15]])),
        })
    }

    /// Whether the driver asked for the status to be written back.
    pub fn report_status(&self) -> bool {
        match self {
            TxDesc::Legacy { cmd, .. } | TxDesc::Data { dcmd: cmd, .. } => cmd & cmd::RS != 0,
            // A context descriptor carries RS in the same byte as TCP/IP/TSE and
            // drivers don't wait on it; write it back anyway, harmless.
            TxDesc::Context(_) => true,
        }
    }
}

/// The packet being assembled and the offload context.
#[derive(Debug, Default)]
pub struct TxState {
    ctx: Context,
    pkt: Vec<u8>,
    /// Offloads asked for by the first data descriptor of the packet.
    popts: u8,
    tse: bool,
    /// Legacy checksum insertion (CSS, CSO).
    legacy_sum: Option<(usize, usize)>,
    vlan: Option<u16>,
    /// Packet grew past [`MAX_PACKET`]: dropped at its end.
    oversized: bool,
}

impl TxState {
    /// Takes descriptor `d`; at the end of a packet returns its frames (one, or
    /// one per segment under TSO). `vlan_type` is VET when CTRL.VME is set.
    pub fn push(&mut self, d: &TxDesc, mem: &GuestMem, vlan_type: Option<u16>) -> Vec<Vec<u8>> {
        let (addr, len, command, special) = match *d {
            TxDesc::Context(c) => {
                self.ctx = c;
                return Vec::new();
            }
            TxDesc::Legacy {
                addr,
                len,
                cso,
                cmd,
                css,
                special,
            } => {
                if cmd & cmd::IC != 0 {
                    self.legacy_sum = Some((css, cso));
                }
                (addr, len, cmd, special)
            }
            TxDesc::Data {
                addr,
                len,
                dcmd,
                popts,
                special,
            } => {
                if self.pkt.is_empty() {
                    self.popts = popts;
                    self.tse = dcmd & cmd::TSE != 0;
                }
                (addr, len, dcmd, special)
            }
        };
        if self.pkt.len() + len > MAX_PACKET {
            self.oversized = true;
        } else {
            let at = self.pkt.len();
            self.pkt.resize(at + len, 0);
            if mem
                .read_slice(&mut self.pkt[at..], GuestAddress(addr))
                .is_err()
            {
                self.pkt.truncate(at);
            }
        }
        if command & cmd::VLE != 0 {
            self.vlan = Some(special);
        }
        if command & cmd::EOP == 0 {
            return Vec::new();
        }
        let mut pkt = std::mem::take(&mut self.pkt);
        let frames = if self.oversized || pkt.len() < 14 {
            Vec::new()
        } else if self.tse && self.ctx.mss > 0 && self.ctx.hdr_len < pkt.len() {
            segment(&pkt, &self.ctx, self.popts)
        } else {
            if let Some((css, cso)) = self.legacy_sum.take() {
                insert_checksum(&mut pkt, css, cso, 0);
            }
            self.offload_checksums(&mut pkt);
            vec![pkt]
        };
        let vlan = self.vlan.take();
        self.popts = 0;
        self.tse = false;
        self.legacy_sum = None;
        self.oversized = false;
        match (vlan, vlan_type) {
            (Some(tci), Some(tpid)) => frames.into_iter().map(|f| tag(f, tpid, tci)).collect(),
            _ => frames,
        }
    }

    fn offload_checksums(&self, f: &mut [u8]) {
        let c = &self.ctx;
        if self.popts & POPTS_TXSM != 0 {
            insert_checksum(f, c.tucss, c.tucso, c.tucse);
        }
        if self.popts & POPTS_IXSM != 0 {
            insert_checksum(f, c.ipcss, c.ipcso, c.ipcse);
        }
    }
}

/// Cuts a TSO packet into segments of at most MSS payload bytes, each with the
/// header template fixed up (lengths, IPv4 id, TCP sequence, flags) and its
/// checksums inserted as the context asks.
pub fn segment(pkt: &[u8], c: &Context, popts: u8) -> Vec<Vec<u8>> {
    let (hdr, payload) = pkt.split_at(c.hdr_len);
    let chunks = payload.chunks(c.mss).count();
    let mut out = Vec::with_capacity(chunks);
    for (i, chunk) in payload.chunks(c.mss).enumerate() {
        let mut f = Vec::with_capacity(hdr.len() + chunk.len());
        f.extend_from_slice(hdr);
        f.extend_from_slice(chunk);
        let last = i + 1 == chunks;
        if c.ipv4 {
            let total = (f.len() - c.ipcss) as u16;
            put16(&mut f, c.ipcss + 2, total);
            let id = get16(&f, c.ipcss + 4).wrapping_add(i as u16);
            put16(&mut f, c.ipcss + 4, id);
        } else {
            // IPv6: payload length excludes the 40-byte fixed header.
            let payload_len = f.len().saturating_sub(c.ipcss + 40) as u16;
            put16(&mut f, c.ipcss + 4, payload_len);
        }
        let l4_len = f.len() - c.tucss;
        if c.tcp {
            let seq = get32(&f, c.tucss + 4).wrapping_add((i * c.mss) as u32);
            put32(&mut f, c.tucss + 4, seq);
            if !last {
                // FIN and PSH belong to the last segment only.
                if let Some(flags) = f.get_mut(c.tucss + 13) {
                    *flags &= !0x09;
                }
            }
        } else {
            put16(&mut f, c.tucss + 4, l4_len as u16);
        }
        if popts & POPTS_TXSM != 0 {
            // The driver left the pseudo-header sum without the length in the
            // checksum field; each segment adds its own.
            let partial = u32::from(get16(&f, c.tucso)) + l4_len as u32;
            put16(&mut f, c.tucso, fold(partial));
            insert_checksum(&mut f, c.tucss, c.tucso, c.tucse);
        }
        if popts & POPTS_IXSM != 0 {
            insert_checksum(&mut f, c.ipcss, c.ipcso, c.ipcse);
        }
        out.push(f);
    }
    out
}

/// Stores at `cso` the Internet checksum of bytes `css..=cse` (`cse` 0: to the
/// end), summed with whatever the field holds (a pseudo-header sum, or zero).
pub fn insert_checksum(f: &mut [u8], css: usize, cso: usize, cse: usize) {
    let end = if cse == 0 || cse >= f.len() {
        f.len()
    } else {
        cse + 1
    };
    if css >= end || cso + 2 > f.len() {
        return;
    }
    let mut sum = 0u32;
    for pair in f[css..end].chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        sum += hi | u32::from(pair.get(1).copied().unwrap_or(0));
    }
    let c = !fold(sum);
    put16(f, cso, if c == 0 { 0xffff } else { c });
}

/// Inserts an 802.1Q tag after the two MAC addresses.
fn tag(f: Vec<u8>, tpid: u16, tci: u16) -> Vec<u8> {
    let mut t = Vec::with_capacity(f.len() + 4);
    t.extend_from_slice(&f[..12]);
    t.extend_from_slice(&tpid.to_be_bytes());
    t.extend_from_slice(&tci.to_be_bytes());
    t.extend_from_slice(&f[12..]);
    t
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn get16(f: &[u8], at: usize) -> u16 {
    f.get(at..at + 2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    if let Some(b) = f.get_mut(at..at + 2) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

fn get32(f: &[u8], at: usize) -> u32 {
    f.get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn put32(f: &mut [u8], at: usize, v: u32) {
    if let Some(b) = f.get_mut(at..at + 4) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 (20) + TCP (20) headers of a packet with `payload` bytes,
    /// checksums zero, the TCP checksum field holding the pseudo-header sum
    /// without length as Linux leaves it for TSO.
    fn tcp_packet(payload: usize, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 54 + payload];
        p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        p[14] = 0x45;
        put16(&mut p, 18, 0x1234); // id
        p[22] = 64;
        p[23] = 6;
        p[26..30].copy_from_slice(&[10, 0, 0, 1]);
        p[30..34].copy_from_slice(&[10, 0, 0, 2]);
        put32(&mut p, 38, 1000); // seq
        p[46] = 0x50;
        p[47] = flags;
        let pseudo = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6;
        put16(&mut p, 50, fold(pseudo));
        for (i, b) in p[54..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    fn verify(sum_over: &[u8]) -> u16 {
        let mut s = 0u32;
        for c in sum_over.chunks(2) {
            s += u32::from(c[0]) << 8 | u32::from(c.get(1).copied().unwrap_or(0));
        }
        fold(s)
    }

    fn tso_context(mss: usize) -> Context {
        Context {
            ipcss: 14,
            ipcso: 24,
            ipcse: 33,
            tucss: 34,
            tucso: 50,
            tucse: 0,
            tcp: true,
            ipv4: true,
            hdr_len: 54,
            mss,
        }
    }

    #[test]
    fn tso_cuts_into_mss_segments_with_valid_checksums() {
        let pkt = tcp_packet(3000, 0x18 | 0x01);
        let segs = segment(&pkt, &tso_context(1448), POPTS_TXSM | POPTS_IXSM);
        assert_eq!(segs.len(), 3);
        let mut next_seq = 1000u32;
        for (i, s) in segs.iter().enumerate() {
            let plen = s.len() - 54;
            assert_eq!(plen, if i < 2 { 1448 } else { 3000 - 2 * 1448 });
            assert_eq!(usize::from(get16(s, 16)), s.len() - 14, "IP total length");
            assert_eq!(get16(s, 18), 0x1234 + i as u16, "IP id");
            assert_eq!(verify(&s[14..34]), 0xffff, "IP header checksum");
            assert_eq!(get32(s, 38), next_seq);
            next_seq += plen as u32;
            let fin_psh = s[47] & 0x09;
            assert_eq!(fin_psh, if i == 2 { 0x09 } else { 0 });
            // TCP checksum over pseudo header + segment.
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&s[26..34]);
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&((s.len() - 34) as u16).to_be_bytes());
            pseudo.extend_from_slice(&s[34..]);
            assert_eq!(verify(&pseudo), 0xffff, "TCP checksum of segment {i}");
        }
    }

    #[test]
    fn descriptors_decode() {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&0x1000u64.to_le_bytes());
        d[8..10].copy_from_slice(&60u16.to_le_bytes());
        d[11] = cmd::EOP | cmd::RS;
        assert!(matches!(
            TxDesc::parse(&d),
            TxDesc::Legacy {
                addr: 0x1000,
                len: 60,
                ..
            }
        ));
        let lower: u32 = 1500 | DTYP_DATA << 20 | u32::from(cmd::DEXT | cmd::EOP) << 24;
        d[8..12].copy_from_slice(&lower.to_le_bytes());
        d[13] = POPTS_TXSM;
        assert!(matches!(
            TxDesc::parse(&d),
            TxDesc::Data {
                len: 1500,
                popts: POPTS_TXSM,
                ..
            }
        ));
        let mut c = [
            14u8,
            24,
            33,
            0,
            34,
            50,
            0,
            0,
            0,
            0,
            0,
            cmd::DEXT | cmd::TCP | cmd::IP,
            0,
            54,
            0,
            0,
        ];
        c[14..16].copy_from_slice(&1448u16.to_le_bytes());
        assert_eq!(TxDesc::parse(&c), TxDesc::Context(tso_context(1448)));
    }

    #[test]
    fn checksum_offload_without_tso() {
        let mut pkt = tcp_packet(100, 0x18);
        // Non-TSO: the driver's pseudo-header sum includes the length.
        let partial = u32::from(get16(&pkt, 50)) + (pkt.len() - 34) as u32;
        put16(&mut pkt, 50, fold(partial));
        let st = TxState {
            ctx: tso_context(0),
            popts: POPTS_TXSM,
            ..Default::default()
        };
        st.offload_checksums(&mut pkt);
        let mut pseudo = pkt[26..34].to_vec();
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&((pkt.len() - 34) as u16).to_be_bytes());
        pseudo.extend_from_slice(&pkt[34..]);
        assert_eq!(verify(&pseudo), 0xffff);
    }

    #[test]
    fn vlan_tag_goes_after_the_addresses() {
        let f = tag(vec![1u8; 14], 0x8100, 0x0005);
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 0x05]);
        assert_eq!(f.len(), 18);
    }
}

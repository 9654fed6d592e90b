//! virtio-net's control virtqueue (virtio 1.2 §5.1.6.5): the commands a driver sends
//! on it, and the receive filter they program (promiscuous and multicast modes, the MAC
//! tables, the VLAN table, the MAC address), applied to every frame from the backend
//! the way QEMU's userspace virtio-net applies it, so a guest sees on a shared bridge
//! what it would see under QEMU without vhost.

use super::features;

/// Command classes and commands (`VIRTIO_NET_CTRL_*`).
mod class {
    pub const RX: u8 = 0;
    pub const MAC: u8 = 1;
    pub const VLAN: u8 = 2;
    pub const ANNOUNCE: u8 = 3;
    pub const MQ: u8 = 4;
    pub const GUEST_OFFLOADS: u8 = 5;
}

/// `VIRTIO_NET_OK` / `VIRTIO_NET_ERR`, the ack byte the device writes.
pub const ACK_OK: u8 = 0;
pub const ACK_ERR: u8 = 1;

/// Entries of each MAC table kept; a larger table makes that kind of address pass
/// unfiltered (QEMU's `MAC_TABLE_ENTRIES` and overflow rule).
const MAC_TABLE_ENTRIES: usize = 64;
/// VLAN IDs (12 bits).
const VLANS: usize = 4096;

/// Receive offloads the guest may switch on and off (`VIRTIO_NET_CTRL_GUEST_OFFLOADS`).
pub const GUEST_OFFLOAD_BITS: u64 =
    features::GUEST_CSUM | features::GUEST_TSO4 | features::GUEST_TSO6 | features::GUEST_ECN;

/// One decoded command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// A receive mode (`VIRTIO_NET_CTRL_RX_*`) on or off.
    RxMode(RxMode, bool),
    /// `VIRTIO_NET_CTRL_MAC_TABLE_SET`: the unicast and multicast tables.
    MacTable {
        uni: Vec<[u8; 6]>,
        multi: Vec<[u8; 6]>,
    },
    /// `VIRTIO_NET_CTRL_MAC_ADDR_SET`.
    MacAddr([u8; 6]),
    /// `VIRTIO_NET_CTRL_VLAN_ADD` / `_DEL` with the VLAN ID.
    Vlan(u16, bool),
    /// `VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET` with the offload feature bits.
    GuestOffloads(u64),
    /// `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`: how many queue pairs the driver uses (at
    /// least 1; the device checks the upper bound, its `max_virtqueue_pairs`).
    QueuePairs(u16),
}

/// Receive modes, in `VIRTIO_NET_CTRL_RX_*` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxMode {
    Promisc,
    AllMulti,
    AllUni,
    NoMulti,
    NoUni,
    NoBcast,
}

/// Decodes a command under the `negotiated` features; the error says why the device
/// answers `VIRTIO_NET_ERR` (logged at debug level: a driver probing is not a fault).
pub fn parse(class: u8, cmd: u8, data: &[u8], negotiated: u64) -> Result<Command, String> {
    let has = |f: u64| negotiated & f != 0;
    match class {
        class::RX => {
            let mode = match cmd {
                0 => RxMode::Promisc,
                1 => RxMode::AllMulti,
                2 => RxMode::AllUni,
                3 => RxMode::NoMulti,
                4 => RxMode::NoUni,
                5 => RxMode::NoBcast,
                _ => return Err(format!("unknown rx command {cmd}")),
            };
            let allowed = if cmd <= 1 {
                has(features::CTRL_RX)
            } else {
                has(features::CTRL_RX_EXTRA)
            };
            if !allowed {
                return Err(format!("rx command {cmd} without its feature"));
            }
            match data {
                [on] => Ok(Command::RxMode(mode, *on != 0)),
                _ => Err(format!("rx command with {} bytes of data", data.len())),
            }
        }
        class::MAC => match cmd {
            0 if has(features::CTRL_RX) => {
                let (uni, rest) = mac_table(data)?;
                let (multi, rest) = mac_table(rest)?;
                if !rest.is_empty() {
                    return Err(format!("{} bytes after the MAC tables", rest.len()));
                }
                Ok(Command::MacTable { uni, multi })
            }
            1 if has(features::CTRL_MAC_ADDR) => {
                let mac: [u8; 6] = data
                    .try_into()
                    .map_err(|_| format!("MAC address of {} bytes", data.len()))?;
                Ok(Command::MacAddr(mac))
            }
            _ => Err(format!("mac command {cmd} unknown or without its feature")),
        },
        class::VLAN if has(features::CTRL_VLAN) && cmd <= 1 => {
            let vid: [u8; 2] = data
                .try_into()
                .map_err(|_| format!("VLAN ID of {} bytes", data.len()))?;
            let vid = u16::from_le_bytes(vid);
            if usize::from(vid) >= VLANS {
                return Err(format!("VLAN ID {vid} out of range"));
            }
            Ok(Command::Vlan(vid, cmd == 0))
        }
        class::GUEST_OFFLOADS if has(features::CTRL_GUEST_OFFLOADS) && cmd == 0 => {
            let bits: [u8; 8] = data
                .try_into()
                .map_err(|_| format!("offloads of {} bytes", data.len()))?;
            let bits = u64::from_le_bytes(bits);
            // Only receive offloads that were negotiated can be switched back on.
            if bits & !(negotiated & GUEST_OFFLOAD_BITS) != 0 {
                return Err(format!("offloads {bits:#x} beyond the negotiated ones"));
            }
            Ok(Command::GuestOffloads(bits))
        }
        class::MQ if has(features::MQ) && cmd == 0 => {
            let pairs: [u8; 2] = data
                .try_into()
                .map_err(|_| format!("queue pairs of {} bytes", data.len()))?;
            match u16::from_le_bytes(pairs) {
                0 => Err("zero queue pairs".into()),
                n => Ok(Command::QueuePairs(n)),
            }
        }
        class::ANNOUNCE => Err(format!("class {class} is not offered")),
        _ => Err(format!(
            "class {class} command {cmd} unknown or without its feature"
        )),
    }
}

/// One `virtio_net_ctrl_mac` table (le32 count, then the addresses) and what follows.
fn mac_table(data: &[u8]) -> Result<(Vec<[u8; 6]>, &[u8]), String> {
    let (count, rest) = data
        .split_first_chunk::<4>()
        .ok_or_else(|| "MAC table without its entry count".to_string())?;
    let n = u32::from_le_bytes(*count) as usize;
    let len = n
        .checked_mul(6)
        .filter(|l| *l <= rest.len())
        .ok_or_else(|| format!("MAC table of {n} entries in {} bytes", rest.len()))?;
    let macs = rest[..len]
        .chunks_exact(6)
        .map(|m| m.try_into().unwrap_or_default())
        .collect();
    Ok((macs, &rest[len..]))
}

/// What the driver programmed, as `virtio_net_reset` leaves it: promiscuous (drivers
/// without `CTRL_RX` cannot ask for it), empty tables, every VLAN passing unless the
/// driver negotiated VLAN filtering.
#[derive(Debug, Clone)]
pub struct RxFilter {
    pub mac: [u8; 6],
    promisc: bool,
    allmulti: bool,
    alluni: bool,
    nomulti: bool,
    nouni: bool,
    nobcast: bool,
    uni: Vec<[u8; 6]>,
    multi: Vec<[u8; 6]>,
    uni_overflow: bool,
    multi_overflow: bool,
    /// One bit per VLAN ID; `None` while the driver has not negotiated `CTRL_VLAN`.
    vlans: Option<Box<[u64; VLANS / 64]>>,
}

impl RxFilter {
    /// The filter after a device reset, for a driver that negotiated `negotiated`.
    pub fn new(mac: [u8; 6], negotiated: u64) -> Self {
        RxFilter {
            mac,
            promisc: true,
            allmulti: false,
            alluni: false,
            nomulti: false,
            nouni: false,
            nobcast: false,
            uni: Vec::new(),
            multi: Vec::new(),
            uni_overflow: false,
            multi_overflow: false,
            vlans: (negotiated & features::CTRL_VLAN != 0).then(|| Box::new([0; VLANS / 64])),
        }
    }

    /// Applies a filter command; `GuestOffloads` and `QueuePairs` are the data path's.
    pub fn apply(&mut self, cmd: &Command) {
        match cmd {
            Command::RxMode(mode, on) => {
                let flag = match mode {
                    RxMode::Promisc => &mut self.promisc,
                    RxMode::AllMulti => &mut self.allmulti,
                    RxMode::AllUni => &mut self.alluni,
                    RxMode::NoMulti => &mut self.nomulti,
                    RxMode::NoUni => &mut self.nouni,
                    RxMode::NoBcast => &mut self.nobcast,
                };
                *flag = *on;
            }
            Command::MacTable { uni, multi } => {
                self.uni_overflow = uni.len() > MAC_TABLE_ENTRIES;
                self.multi_overflow = multi.len() > MAC_TABLE_ENTRIES;
                self.uni = if self.uni_overflow {
                    Vec::new()
                } else {
                    uni.clone()
                };
                self.multi = if self.multi_overflow {
                    Vec::new()
                } else {
                    multi.clone()
                };
            }
            Command::MacAddr(mac) => self.mac = *mac,
            Command::Vlan(vid, add) => {
                if let Some(v) = self.vlans.as_mut() {
                    let (word, bit) = (usize::from(*vid) / 64, u64::from(*vid) % 64);
                    if *add {
                        v[word] |= 1 << bit;
                    } else {
                        v[word] &= !(1 << bit);
                    }
                }
            }
            Command::GuestOffloads(_) | Command::QueuePairs(_) => {}
        }
    }

    /// The MAC address frames to the guest are for (config space shows it).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Whether a frame (Ethernet header first, no virtio-net header) reaches the guest.
    pub fn accepts(&self, frame: &[u8]) -> bool {
        if self.promisc {
            return true;
        }
        let Some(dest) = frame.first_chunk::<6>() else {
            return false;
        };
        if let (Some(v), Some(&[0x81, 0x00, hi, lo])) = (&self.vlans, frame.get(12..16)) {
            let vid = usize::from(u16::from_be_bytes([hi, lo]) & 0xfff);
            if v[vid / 64] & (1 << (vid % 64)) == 0 {
                return false;
            }
        }
        if dest[0] & 1 != 0 {
            if *dest == [0xff; 6] {
                !self.nobcast
            } else if self.nomulti {
                false
            } else {
                self.allmulti || self.multi_overflow || self.multi.contains(dest)
            }
        } else if self.nouni {
            false
        } else {
            self.alluni || self.uni_overflow || *dest == self.mac || self.uni.contains(dest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u64 = features::CTRL_RX
        | features::CTRL_RX_EXTRA
        | features::CTRL_VLAN
        | features::CTRL_MAC_ADDR
        | features::CTRL_GUEST_OFFLOADS
        | features::GUEST_CSUM
        | features::GUEST_TSO4;
    const OURS: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];

    fn to(dest: [u8; 6]) -> Vec<u8> {
        let mut f = dest.to_vec();
        f.extend_from_slice(&[0x52, 0x54, 0, 9, 9, 9, 0x08, 0x00]);
        f
    }

    fn tagged(dest: [u8; 6], vid: u16) -> Vec<u8> {
        let mut f = dest.to_vec();
        f.extend_from_slice(&[0x52, 0x54, 0, 9, 9, 9, 0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
        f.extend_from_slice(&[0x08, 0x00]);
        f
    }

    fn table(macs: &[[u8; 6]]) -> Vec<u8> {
        let mut d = (macs.len() as u32).to_le_bytes().to_vec();
        macs.iter().for_each(|m| d.extend_from_slice(m));
        d
    }

    fn run(f: &mut RxFilter, class: u8, cmd: u8, data: &[u8]) {
        f.apply(&parse(class, cmd, data, ALL).unwrap());
    }

    #[test]
    fn reset_state_is_promiscuous_until_the_driver_programs_it() {
        let mut f = RxFilter::new(OURS, ALL);
        let other = [0x52, 0x54, 0, 0, 0, 2];
        assert!(f.accepts(&to(other)));
        run(&mut f, 0, 0, &[0]);
        assert!(!f.accepts(&to(other)), "not ours once promiscuous is off");
        assert!(f.accepts(&to(OURS)));
        assert!(f.accepts(&to([0xff; 6])), "broadcast");
        let mcast = [0x33, 0x33, 0, 0, 0, 1];
        assert!(!f.accepts(&to(mcast)), "multicast not in the table");
        let mut data = table(&[other]);
        data.extend(table(&[mcast]));
        run(&mut f, 1, 0, &data);
        assert!(f.accepts(&to(other)) && f.accepts(&to(mcast)));
        assert!(!f.accepts(&to([0x01, 0, 0x5e, 0, 0, 0xfb])));
        run(&mut f, 0, 1, &[1]);
        assert!(f.accepts(&to([0x01, 0, 0x5e, 0, 0, 0xfb])), "allmulti");
        run(&mut f, 0, 5, &[1]);
        assert!(!f.accepts(&to([0xff; 6])), "nobcast");
        run(&mut f, 0, 4, &[1]);
        assert!(!f.accepts(&to(OURS)), "nouni");
        run(&mut f, 0, 0, &[1]);
        assert!(f.accepts(&to(OURS)), "promiscuous wins");
    }

    #[test]
    fn mac_address_and_overflowing_tables() {
        let mut f = RxFilter::new(OURS, ALL);
        run(&mut f, 0, 0, &[0]);
        let new = [0x52, 0x54, 0, 0xab, 0xcd, 0xef];
        run(&mut f, 1, 1, &new);
        assert!(f.accepts(&to(new)) && !f.accepts(&to(OURS)));
        let many: Vec<[u8; 6]> = (0..=MAC_TABLE_ENTRIES as u8)
            .map(|i| [0x52, 0x54, 1, 0, 0, i])
            .collect();
        let mut data = table(&many);
        data.extend(table(&[]));
        run(&mut f, 1, 0, &data);
        assert!(f.accepts(&to([0x52, 0x54, 7, 7, 7, 7])), "unicast overflow");
        assert!(!f.accepts(&to([0x33, 0x33, 0, 0, 0, 1])));
    }

    #[test]
    fn vlan_table_filters_tagged_frames_when_negotiated() {
        let mut f = RxFilter::new(OURS, ALL);
        run(&mut f, 0, 0, &[0]);
        assert!(!f.accepts(&tagged(OURS, 5)));
        run(&mut f, 2, 0, &5u16.to_le_bytes());
        assert!(f.accepts(&tagged(OURS, 5)) && !f.accepts(&tagged(OURS, 6)));
        run(&mut f, 2, 1, &5u16.to_le_bytes());
        assert!(!f.accepts(&tagged(OURS, 5)));
        let mut plain = RxFilter::new(OURS, ALL & !features::CTRL_VLAN);
        plain.apply(&Command::RxMode(RxMode::Promisc, false));
        assert!(
            plain.accepts(&tagged(OURS, 6)),
            "no VLAN filtering negotiated"
        );
    }

    #[test]
    fn malformed_or_unoffered_commands_are_refused() {
        assert!(parse(0, 0, &[], ALL).is_err(), "rx without its byte");
        assert!(parse(0, 2, &[1], features::CTRL_RX).is_err(), "rx extra");
        assert!(parse(0, 9, &[1], ALL).is_err());
        assert!(
            parse(1, 0, &[9, 0, 0, 0, 1, 2], ALL).is_err(),
            "short table"
        );
        assert!(parse(1, 0, &[0xff, 0xff, 0xff, 0xff], ALL).is_err());
        let mut two = table(&[]);
        two.extend(table(&[]));
        two.push(0);
        assert!(parse(1, 0, &two, ALL).is_err(), "trailing bytes");
        assert!(parse(1, 1, &[1, 2, 3], ALL).is_err());
        assert!(parse(1, 1, &OURS, ALL & !features::CTRL_MAC_ADDR).is_err());
        assert!(parse(2, 0, &4096u16.to_le_bytes(), ALL).is_err());
        assert!(parse(3, 0, &[], ALL).is_err(), "announce not offered");
        assert!(
            parse(4, 0, &1u16.to_le_bytes(), ALL).is_err(),
            "mq not negotiated"
        );
        let mq = ALL | features::MQ;
        assert_eq!(
            parse(4, 0, &3u16.to_le_bytes(), mq),
            Ok(Command::QueuePairs(3))
        );
        assert!(parse(4, 0, &0u16.to_le_bytes(), mq).is_err(), "no pairs");
        assert!(parse(4, 0, &[1], mq).is_err(), "short");
        assert!(
            parse(4, 1, &1u16.to_le_bytes(), mq).is_err(),
            "RSS not offered"
        );
        let tso6 = features::GUEST_TSO6.to_le_bytes();
        assert!(parse(5, 0, &tso6, ALL).is_err(), "not negotiated");
        let csum = features::GUEST_CSUM.to_le_bytes();
        assert_eq!(
            parse(5, 0, &csum, ALL),
            Ok(Command::GuestOffloads(features::GUEST_CSUM))
        );
        assert!(parse(200, 0, &[], ALL).is_err());
    }
}

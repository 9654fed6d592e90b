//! An MC146818-style CMOS RTC at ports 0x70 (index) / 0x71 (data).
//!
//! vm-superio's RTC is the ARM PL031, so this small one is ours. The clock
//! registers show the host's UTC time (plus whatever offset the guest set), in
//! BCD or binary and 12/24-hour form as register B asks. The other 114 bytes
//! are plain NVRAM. No RTC interrupts are generated.

use std::time::{SystemTime, UNIX_EPOCH};

use super::bus::BusDevice;

/// CMOS index port; the data port follows it.
pub const CMOS_PORT: u16 = 0x70;

const REG_SECONDS: usize = 0x00;
const REG_MINUTES: usize = 0x02;
const REG_HOURS: usize = 0x04;
const REG_WEEKDAY: usize = 0x06;
const REG_DAY: usize = 0x07;
const REG_MONTH: usize = 0x08;
const REG_YEAR: usize = 0x09;
const REG_A: usize = 0x0a;
const REG_B: usize = 0x0b;
const REG_C: usize = 0x0c;
const REG_D: usize = 0x0d;
/// Century register, as the FADT `century` field says.
pub const REG_CENTURY: usize = 0x32;

/// Register B: 24-hour mode.
const B_24H: u8 = 0x02;
/// Register B: binary (not BCD) values.
const B_BINARY: u8 = 0x04;
/// Register D: RAM and time valid.
const D_VRT: u8 = 0x80;

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 1 = Sunday … 7 = Saturday, as the RTC counts.
    pub weekday: u32,
}

/// Converts seconds since the Unix epoch to a civil UTC date (proleptic Gregorian).
pub fn civil_from_unix(secs: i64) -> DateTime {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    DateTime {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem / 60 % 60) as u32,
        second: (rem % 60) as u32,
        // 1970-01-01 was a Thursday (RTC weekday 5).
        weekday: ((days + 4).rem_euclid(7) + 1) as u32,
    }
}

fn to_bcd(v: u32) -> u8 {
    (((v / 10) << 4) | (v % 10)) as u8
}

/// The CMOS device.
pub struct Cmos {
    index: u8,
    data: [u8; 128],
    /// Seconds added to the host clock (the guest set the time).
    offset: i64,
    now: fn() -> i64,
}

fn host_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Default for Cmos {
    fn default() -> Self {
        Self::new()
    }
}

/// A `<clock>` whose start cannot be computed.
#[derive(Debug, thiserror::Error)]
#[error("<clock offset='timezone' timezone='{zone}'>: unknown time zone")]
pub struct RtcError {
    zone: String,
    #[source]
    source: jiff::Error,
}

/// Seconds between the host's UTC and what the RTC starts at, now: the zone's UTC
/// offset (host local time, or a named IANA zone) plus the adjustment.
pub fn start_offset(rtc: &machine_spec::Rtc) -> Result<i64, RtcError> {
    use jiff::tz::TimeZone;
    let zone = match &rtc.base {
        machine_spec::RtcBase::Utc => return Ok(rtc.adjustment_s),
        machine_spec::RtcBase::Localtime => TimeZone::system(),
        machine_spec::RtcBase::Timezone(name) => {
            TimeZone::get(name).map_err(|source| RtcError {
                zone: name.clone(),
                source,
            })?
        }
    };
    let offset = zone.to_offset(jiff::Timestamp::now()).seconds();
    Ok(i64::from(offset) + rtc.adjustment_s)
}

/// The CMOS bytes, the index register and the clock's offset from the host's
/// (the clock itself reads the host's, as QEMU's `rtc clock=host` does after a restore).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedCmos {
    index: u8,
    data: Vec<u8>,
    offset: i64,
}

impl crate::vmstate::Stateful for Cmos {
    fn save_state(&self) -> serde_json::Value {
        crate::vmstate::to_value(&SavedCmos {
            index: self.index,
            data: self.data.to_vec(),
            offset: self.offset,
        })
    }

    fn restore_state(&mut self, v: &serde_json::Value) -> Result<(), String> {
        let s: SavedCmos = crate::vmstate::from_value(v)?;
        self.data = s
            .data
            .try_into()
            .map_err(|d: Vec<u8>| format!("{} CMOS bytes, not 128", d.len()))?;
        self.index = s.index;
        self.offset = s.offset;
        Ok(())
    }
}

impl Cmos {
    /// A CMOS showing the host clock, 24-hour BCD, as a PC BIOS leaves it.
    pub fn new() -> Self {
        Self::with_clock(host_now)
    }

    /// A CMOS showing the host's UTC plus `offset` seconds ([`start_offset`]).
    pub fn with_offset(offset: i64) -> Self {
        let mut c = Self::new();
        c.offset = offset;
        c
    }

    fn with_clock(now: fn() -> i64) -> Self {
        let mut data = [0u8; 128];
        data[REG_A] = 0x26;
        data[REG_B] = B_24H;
        data[REG_D] = D_VRT;
        Cmos {
            index: 0,
            data,
            offset: 0,
            now,
        }
    }

    fn encode(&self, v: u32) -> u8 {
        if self.data[REG_B] & B_BINARY != 0 {
            v as u8
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u32 {
        if self.data[REG_B] & B_BINARY != 0 {
            u32::from(v)
        } else {
            u32::from(v >> 4) * 10 + u32::from(v & 0xf)
        }
    }

    fn clock_register(&self, reg: usize) -> u8 {
        let t = civil_from_unix((self.now)() + self.offset);
        match reg {
            REG_SECONDS => self.encode(t.second),
            REG_MINUTES => self.encode(t.minute),
            REG_HOURS => {
                if self.data[REG_B] & B_24H != 0 {
                    self.encode(t.hour)
                } else {
                    let h12 = if t.hour.is_multiple_of(12) {
                        12
                    } else {
                        t.hour % 12
                    };
                    self.encode(h12) | if t.hour >= 12 { 0x80 } else { 0 }
                }
            }
            REG_WEEKDAY => self.encode(t.weekday),
            REG_DAY => self.encode(t.day),
            REG_MONTH => self.encode(t.month),
            REG_YEAR => self.encode((t.year.rem_euclid(100)) as u32),
            REG_CENTURY => self.encode((t.year / 100) as u32),
            _ => self.data[reg],
        }
    }

    /// The guest writes a clock field: move our offset so that field reads back.
    fn set_clock_field(&mut self, reg: usize, value: u8) {
        let t = civil_from_unix((self.now)() + self.offset);
        let v = i64::from(self.decode(value & 0x7f));
        let delta = match reg {
            REG_SECONDS => v - i64::from(t.second),
            REG_MINUTES => (v - i64::from(t.minute)) * 60,
            REG_HOURS => (v - i64::from(t.hour)) * 3600,
            REG_DAY => (v - i64::from(t.day)) * 86_400,
            // Months and years vary in length; approximate, as guests set the
            // whole date at once and only seconds-level accuracy is visible.
            REG_MONTH => (v - i64::from(t.month)) * 30 * 86_400,
            REG_YEAR => (v - t.year.rem_euclid(100)) * 365 * 86_400,
            _ => 0,
        };
        self.offset += delta;
    }

    fn read_data(&mut self) -> u8 {
        let reg = usize::from(self.index & 0x7f);
        match reg {
            REG_A => self.data[REG_A] & 0x7f, // update never in progress
            REG_C => {
                let v = self.data[REG_C];
                self.data[REG_C] = 0; // read-to-clear flags
                v
            }
            REG_D => D_VRT,
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
            | REG_YEAR | REG_CENTURY => self.clock_register(reg),
            _ => self.data[reg],
        }
    }

    fn write_data(&mut self, v: u8) {
        let reg = usize::from(self.index & 0x7f);
        match reg {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_DAY | REG_MONTH | REG_YEAR => {
                self.set_clock_field(reg, v)
            }
            REG_C | REG_D => {}
            _ => self.data[reg] = v,
        }
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = match offset {
                0 => self.index,
                _ => self.read_data(),
            };
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if let Some(&b) = data.first() {
            match offset {
                // Bit 7 of the index port is the NMI mask; keep only the index.
                0 => self.index = b & 0x7f,
                _ => self.write_data(b),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-24 19:45:30 UTC, a Tuesday.
    fn fixed() -> i64 {
        1_795_549_530
    }

    fn read(c: &mut Cmos, reg: u8) -> u8 {
        c.write(0x70, 0, &[reg]);
        let mut v = [0u8];
        c.read(0x70, 1, &mut v);
        v[0]
    }

    #[test]
    fn start_offsets_follow_the_clock_base() {
        use machine_spec::{Rtc, RtcBase};
        let utc = Rtc::default();
        assert_eq!(start_offset(&utc).unwrap(), 0);
        let adjusted = Rtc {
            base: RtcBase::Utc,
            adjustment_s: 3600,
        };
        assert_eq!(start_offset(&adjusted).unwrap(), 3600);
        // Fixed-offset zones (POSIX sign convention: Etc/GMT-5 is UTC+5).
        let zone = |z: &str| Rtc {
            base: RtcBase::Timezone(z.into()),
            adjustment_s: 0,
        };
        assert_eq!(start_offset(&zone("Etc/GMT-5")).unwrap(), 5 * 3600);
        assert_eq!(start_offset(&zone("Asia/Kolkata")).unwrap(), 19800);
        let e = start_offset(&zone("Mars/Olympus")).unwrap_err();
        assert!(e.to_string().contains("'Mars/Olympus'"), "{e}");
        // The offset shows in the clock registers.
        let mut c = Cmos::with_clock(fixed);
        c.offset = 5 * 3600;
        assert_eq!(read(&mut c, 0x04), 0x00); // 19:45 UTC reads 00:45 the next day
    }

    #[test]
    fn civil_dates_are_right() {
        let t = civil_from_unix(0);
        assert_eq!((t.year, t.month, t.day, t.weekday), (1970, 1, 1, 5));
        let t = civil_from_unix(951_782_400); // 2000-02-29
        assert_eq!((t.year, t.month, t.day), (2000, 2, 29));
        let t = civil_from_unix(fixed());
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second, t.weekday),
            (2026, 11, 24, 19, 45, 30, 3)
        );
    }

    #[test]
    fn clock_reads_in_bcd_then_binary_and_12_hour() {
        let mut c = Cmos::with_clock(fixed);
        assert_eq!(read(&mut c, 0x00), 0x30);
        assert_eq!(read(&mut c, 0x04), 0x19);
        assert_eq!(read(&mut c, 0x09), 0x26);
        assert_eq!(read(&mut c, 0x32), 0x20);
        assert_eq!(read(&mut c, 0x0d), 0x80);
        c.write(0x70, 0, &[0x0b]);
        c.write(0x70, 1, &[B_BINARY]); // binary, 12-hour
        assert_eq!(read(&mut c, 0x08), 11);
        assert_eq!(read(&mut c, 0x04), 0x80 | 7, "7 PM");
    }

    #[test]
    fn nvram_keeps_values_and_the_nmi_bit_is_ignored() {
        let mut c = Cmos::with_clock(fixed);
        c.write(0x70, 0, &[0x80 | 0x40]);
        c.write(0x70, 1, &[0xab]);
        assert_eq!(read(&mut c, 0x40), 0xab);
    }

    #[test]
    fn guest_can_set_the_time() {
        let mut c = Cmos::with_clock(fixed);
        c.write(0x70, 0, &[0x02]);
        c.write(0x70, 1, &[0x50]); // minutes = 50 (BCD)
        assert_eq!(read(&mut c, 0x02), 0x50);
        assert_eq!(read(&mut c, 0x04), 0x19);
    }
}

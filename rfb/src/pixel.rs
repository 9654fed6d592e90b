//! RFB pixel formats (RFC 6143 §7.4): parsing the client's `SetPixelFormat`, the server's
//! default, and converting the 0x00RRGGBB frames we hold into whatever true-colour format
//! the client asked for.

use crate::error::ProtocolError;

/// A true-colour pixel format as RFB describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelFormat {
    /// Bits per pixel on the wire: 8, 16 or 32.
    pub bits_per_pixel: u8,
    /// Useful bits.
    pub depth: u8,
    /// Multi-byte pixels are big-endian.
    pub big_endian: bool,
    /// Maximum red value (2^n - 1 in practice, any value accepted).
    pub red_max: u16,
    /// Maximum green value.
    pub green_max: u16,
    /// Maximum blue value.
    pub blue_max: u16,
    /// Shift of red within the pixel value.
    pub red_shift: u8,
    /// Shift of green.
    pub green_shift: u8,
    /// Shift of blue.
    pub blue_shift: u8,
}

impl PixelFormat {
    /// What QEMU announces in ServerInit: 32 bpp, depth 24, little-endian, 0x00RRGGBB.
    pub const SERVER_DEFAULT: PixelFormat = PixelFormat {
        bits_per_pixel: 32,
        depth: 24,
        big_endian: false,
        red_max: 255,
        green_max: 255,
        blue_max: 255,
        red_shift: 16,
        green_shift: 8,
        blue_shift: 0,
    };

    /// The 16 bytes of a PIXEL_FORMAT structure.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bits_per_pixel;
        b[1] = self.depth;
        b[2] = u8::from(self.big_endian);
        b[3] = 1; // true colour
        b[4..6].copy_from_slice(&self.red_max.to_be_bytes());
        b[6..8].copy_from_slice(&self.green_max.to_be_bytes());
        b[8..10].copy_from_slice(&self.blue_max.to_be_bytes());
        b[10] = self.red_shift;
        b[11] = self.green_shift;
        b[12] = self.blue_shift;
        b
    }

    /// Parses and checks a client's PIXEL_FORMAT. Colour-map formats are refused: every
    /// client we serve asks for true colour, and a palette would need SetColourMapEntries.
    pub fn parse(b: &[u8; 16]) -> Result<PixelFormat, ProtocolError> {
        let pf = PixelFormat {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        };
        if b[3] == 0 {
            return Err(ProtocolError::PixelFormat(
                "colour-map formats are not supported",
            ));
        }
        if !matches!(pf.bits_per_pixel, 8 | 16 | 32) {
            return Err(ProtocolError::PixelFormat(
                "bits-per-pixel must be 8, 16 or 32",
            ));
        }
        let bpp = u32::from(pf.bits_per_pixel);
        for (max, shift) in [
            (pf.red_max, pf.red_shift),
            (pf.green_max, pf.green_shift),
            (pf.blue_max, pf.blue_shift),
        ] {
            if max == 0 || u32::from(shift) >= bpp || (u64::from(max) << shift) >= (1u64 << bpp) {
                return Err(ProtocolError::PixelFormat(
                    "a colour's max and shift do not fit in bits-per-pixel",
                ));
            }
        }
        Ok(pf)
    }

    /// Bytes per pixel on the wire.
    pub fn bytes_per_pixel(&self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }

    /// The client's pixel value for a 0x00RRGGBB colour.
    pub fn value(&self, rgb: u32) -> u32 {
        let scale = |c: u32, max: u16| (c * u32::from(max) + 127) / 255;
        let r = scale((rgb >> 16) & 0xff, self.red_max);
        let g = scale((rgb >> 8) & 0xff, self.green_max);
        let b = scale(rgb & 0xff, self.blue_max);
        (r << self.red_shift) | (g << self.green_shift) | (b << self.blue_shift)
    }

    /// Appends one pixel (PIXEL in RFB's terms).
    pub fn put(&self, rgb: u32, out: &mut Vec<u8>) {
        let v = self.value(rgb);
        match (self.bits_per_pixel, self.big_endian) {
            (32, false) => out.extend_from_slice(&v.to_le_bytes()),
            (32, true) => out.extend_from_slice(&v.to_be_bytes()),
            (16, false) => out.extend_from_slice(&(v as u16).to_le_bytes()),
            (16, true) => out.extend_from_slice(&(v as u16).to_be_bytes()),
            _ => out.push(v as u8),
        }
    }

    /// ZRLE's compressed pixel (CPIXEL, RFC 6143 §7.7.6): 3 bytes when a 32 bpp format
    /// keeps all colour bits in the low or the high three bytes; `None` means a CPIXEL
    /// is a whole PIXEL.
    pub fn cpixel_bytes(&self) -> Option<std::ops::Range<usize>> {
        if self.bits_per_pixel != 32 || self.depth > 24 {
            return None;
        }
        let mask = (u64::from(self.red_max) << self.red_shift)
            | (u64::from(self.green_max) << self.green_shift)
            | (u64::from(self.blue_max) << self.blue_shift);
        let fits_low = mask < (1 << 24);
        let fits_high = mask & 0xff == 0;
        // Which bytes of the wire representation hold the colour.
        match (fits_low, fits_high, self.big_endian) {
            (true, _, false) => Some(0..3),
            (true, _, true) => Some(1..4),
            (false, true, false) => Some(1..4),
            (false, true, true) => Some(0..3),
            (false, false, _) => None,
        }
    }

    /// Appends one CPIXEL.
    pub fn put_cpixel(&self, rgb: u32, cpixel: &Option<std::ops::Range<usize>>, out: &mut Vec<u8>) {
        match cpixel {
            Some(range) => {
                let mut full = Vec::with_capacity(4);
                self.put(rgb, &mut full);
                out.extend_from_slice(&full[range.clone()]);
            }
            None => self.put(rgb, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_default_round_trips_through_bytes() {
        let b = PixelFormat::SERVER_DEFAULT.to_bytes();
        assert_eq!(b, [32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
        assert_eq!(PixelFormat::parse(&b).unwrap(), PixelFormat::SERVER_DEFAULT);
    }

    #[test]
    fn rgb565_big_endian_converts() {
        let pf =
            PixelFormat::parse(&[16, 16, 1, 1, 0, 31, 0, 63, 0, 31, 11, 5, 0, 0, 0, 0]).unwrap();
        let mut out = Vec::new();
        pf.put(0x00ff_0000, &mut out);
        pf.put(0x0000_ff00, &mut out);
        pf.put(0x0000_00ff, &mut out);
        pf.put(0x0080_8080, &mut out);
        assert_eq!(out, [0xf8, 0x00, 0x07, 0xe0, 0x00, 0x1f, 0x84, 0x10]);
    }

    #[test]
    fn novnc_format_red_in_low_byte() {
        // noVNC: 32 bpp, depth 24, little-endian, red shift 0, blue shift 16.
        let pf =
            PixelFormat::parse(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0]).unwrap();
        let mut out = Vec::new();
        pf.put(0x0011_2233, &mut out);
        assert_eq!(out, [0x11, 0x22, 0x33, 0x00]);
        assert_eq!(pf.cpixel_bytes(), Some(0..3));
    }

    #[test]
    fn bgr233_8bpp() {
        let pf = PixelFormat::parse(&[8, 8, 0, 1, 0, 7, 0, 7, 0, 3, 0, 3, 6, 0, 0, 0]).unwrap();
        let mut out = Vec::new();
        pf.put(0x00ff_ffff, &mut out);
        pf.put(0x00ff_0000, &mut out);
        assert_eq!(out, [0xff, 0x07]);
        assert_eq!(pf.cpixel_bytes(), None);
    }

    #[test]
    fn high_bytes_cpixel() {
        // Colour in the top three bytes of a big-endian pixel: the first three on the wire.
        let pf = PixelFormat::parse(&[32, 24, 1, 1, 0, 255, 0, 255, 0, 255, 24, 16, 8, 0, 0, 0])
            .unwrap();
        assert_eq!(pf.cpixel_bytes(), Some(0..3));
        let mut out = Vec::new();
        pf.put_cpixel(0x00aa_bbcc, &pf.cpixel_bytes(), &mut out);
        assert_eq!(out, [0xaa, 0xbb, 0xcc]);
    }

    #[test]
    fn bad_formats_are_refused() {
        let colour_map = [8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(PixelFormat::parse(&colour_map).is_err());
        let bpp24 = [24, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0];
        assert!(PixelFormat::parse(&bpp24).is_err());
        let overflow = [16, 16, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0];
        assert!(PixelFormat::parse(&overflow).is_err());
    }
}

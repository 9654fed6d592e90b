//! The EDID block at BAR2 + 0 of PCI 1234:1111, from which SeaBIOS's vgabios, OVMF
//! and Linux's bochs driver learn the preferred screen size (VESA E-EDID 1.4,
//! one 128-byte base block, no extensions).

/// A 128-byte EDID whose preferred (first detailed) timing is `width`×`height` at 60 Hz.
pub fn edid(width: u32, height: u32) -> [u8; 128] {
    let mut e = [0u8; 128];
    e[..8].copy_from_slice(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
    // Manufacturer "RHT" (QEMU's), compressed ASCII: 5 bits per letter, 'A' = 1.
    let id = |c: u8| u16::from(c - b'A' + 1);
    let m = id(b'R') << 10 | id(b'H') << 5 | id(b'T');
    e[8..10].copy_from_slice(&m.to_be_bytes());
    e[10..12].copy_from_slice(&0x1234u16.to_le_bytes()); // product
    e[16] = 1; // week
    e[17] = 34; // year: 1990 + 34
    e[18] = 1; // EDID 1.4
    e[19] = 4;
    e[20] = 0xa5; // digital, 8 bits per colour, DisplayPort
    e[21] = 40; // 40 × 30 cm
    e[22] = 30;
    e[23] = 120; // gamma 2.2
    e[24] = 0x06; // RGB 4:4:4, preferred timing is native, continuous frequency
                  // sRGB-ish chromaticity.
    e[25..35].copy_from_slice(&[0xee, 0x91, 0xa3, 0x54, 0x4c, 0x99, 0x26, 0x0f, 0x50, 0x54]);
    // Established timings: 640×480@60, 800×600@60, 1024×768@60.
    e[35] = 0x21;
    e[36] = 0x08;
    e[38..54].fill(0x01); // no standard timings
    detailed_timing(&mut e[54..72], width, height);
    text_descriptor(&mut e[72..90], 0xfc, b"QEMU Monitor");
    // Range limits: 50-125 Hz vertical, 30-160 kHz horizontal, 300 MHz.
    e[90..108].copy_from_slice(&[
        0, 0, 0, 0xfd, 0, 50, 125, 30, 160, 30, 0x01, 0x0a, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    ]);
    text_descriptor(&mut e[108..126], 0xff, b"0");
    e[126] = 0; // no extensions
    let sum = e[..127].iter().fold(0u8, |a, &b| a.wrapping_add(b));
    e[127] = 0u8.wrapping_sub(sum);
    e
}

/// A detailed timing descriptor with CVT-like blanking.
fn detailed_timing(d: &mut [u8], width: u32, height: u32) {
    let (hblank, vblank) = (160u32, 30u32);
    let (hfront, hsync, vfront, vsync) = (48u32, 32u32, 3u32, 5u32);
    let clock = ((width + hblank) * (height + vblank) * 60 / 10_000).min(0xffff) as u16;
    d[0..2].copy_from_slice(&clock.to_le_bytes());
    d[2] = width as u8;
    d[3] = hblank as u8;
    d[4] = ((width >> 8) as u8 & 0xf) << 4 | (hblank >> 8) as u8 & 0xf;
    d[5] = height as u8;
    d[6] = vblank as u8;
    d[7] = ((height >> 8) as u8 & 0xf) << 4 | (vblank >> 8) as u8 & 0xf;
    d[8] = hfront as u8;
    d[9] = hsync as u8;
    d[10] = (vfront as u8 & 0xf) << 4 | vsync as u8 & 0xf;
    d[11] = 0;
    d[12] = 0x90; // 400 × 300 mm
    d[13] = 0x2c;
    d[14] = 0x11;
    d[17] = 0x18; // digital separate sync
}

/// A display descriptor of kind `tag` holding `text` (up to 13 bytes, LF-terminated).
fn text_descriptor(d: &mut [u8], tag: u8, text: &[u8]) {
    d[..5].copy_from_slice(&[0, 0, 0, tag, 0]);
    let n = text.len().min(13);
    d[5..5 + n].copy_from_slice(&text[..n]);
    if n < 13 {
        d[5 + n] = 0x0a;
        d[6 + n..18].fill(0x20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_header_and_preferred_mode() {
        let e = edid(1280, 800);
        assert_eq!(e.iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0);
        assert_eq!(&e[..8], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
        let d = &e[54..72];
        let w = u32::from(d[2]) | u32::from(d[4] >> 4) << 8;
        let h = u32::from(d[5]) | u32::from(d[7] >> 4) << 8;
        assert_eq!((w, h), (1280, 800));
        assert_eq!(&e[77..89], b"QEMU Monitor");
    }
}

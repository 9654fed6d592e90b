//! ZRLE encoding (RFC 6143 §7.7.6): the rectangle in 64×64 tiles, each tile solid, a
//! packed palette, palette RLE, plain RLE or raw CPIXELs (whichever is smallest), and the
//! whole through one zlib stream that lives as long as the connection.

use flate2::{Compress, Compression, FlushCompress};

use crate::pixel::PixelFormat;
use crate::Rect;

/// ZRLE tile edge.
const TILE: u32 = 64;

/// A client's ZRLE state: its zlib stream.
pub struct ZrleEncoder {
    zlib: Compress,
}

impl Default for ZrleEncoder {
    fn default() -> Self {
        ZrleEncoder {
            // Level 1: QEMU's default for ZRLE too; the tiles are already RLE'd.
            zlib: Compress::new(Compression::new(1), true),
        }
    }
}

impl ZrleEncoder {
    /// Appends the ZRLE payload (u32 length + zlib data) of `rect` of a frame
    /// `stride` pixels wide.
    pub fn encode(
        &mut self,
        pixels: &[u32],
        stride: u32,
        rect: Rect,
        pf: &PixelFormat,
        out: &mut Vec<u8>,
    ) {
        let cpixel = pf.cpixel_bytes();
        let mut raw = Vec::new();
        let mut tile = Vec::with_capacity((TILE * TILE) as usize);
        for ty in (rect.y..rect.y + rect.h).step_by(TILE as usize) {
            let th = TILE.min(rect.y + rect.h - ty);
            for tx in (rect.x..rect.x + rect.w).step_by(TILE as usize) {
                let tw = TILE.min(rect.x + rect.w - tx);
                tile.clear();
                for y in ty..ty + th {
                    let row = (y * stride + tx) as usize;
                    tile.extend_from_slice(&pixels[row..row + tw as usize]);
                }
                encode_tile(&tile, tw as usize, pf, &cpixel, &mut raw);
            }
        }
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        self.deflate(&raw, out);
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Compresses `input` onto `out` and sync-flushes, so the client can decode this
    /// rectangle now while the dictionary carries over to the next one.
    fn deflate(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut consumed = 0usize;
        loop {
            out.reserve(input.len() / 2 + 64);
            let before_in = self.zlib.total_in();
            let status = self
                .zlib
                .compress_vec(&input[consumed..], out, FlushCompress::Sync);
            consumed += (self.zlib.total_in() - before_in) as usize;
            match status {
                // A full output buffer leaves spare capacity at zero: go round again.
                Ok(_) if consumed < input.len() || out.capacity() == out.len() => continue,
                Ok(_) => return,
                // Compressing from memory into memory cannot fail short of a bug.
                Err(e) => panic!("zlib compression failed: {e}"),
            }
        }
    }
}

/// Appends one RLE run length (RFC 6143: 255s then the remainder, of length-1).
fn put_run(len: usize, out: &mut Vec<u8>) {
    let mut n = len - 1;
    while n >= 255 {
        out.push(255);
        n -= 255;
    }
    out.push(n as u8);
}

/// Runs of equal pixels in a tile, row-major and crossing rows as ZRLE allows.
fn runs(tile: &[u32]) -> Vec<(u32, usize)> {
    let mut v: Vec<(u32, usize)> = Vec::new();
    for &p in tile {
        match v.last_mut() {
            Some((c, n)) if *c == p => *n += 1,
            _ => v.push((p, 1)),
        }
    }
    v
}

fn encode_tile(
    tile: &[u32],
    width: usize,
    pf: &PixelFormat,
    cpixel: &Option<std::ops::Range<usize>>,
    out: &mut Vec<u8>,
) {
    let cp_len = cpixel.as_ref().map_or(pf.bytes_per_pixel(), |r| r.len());
    let height = tile.len() / width;
    let mut palette: Vec<u32> = Vec::with_capacity(16);
    for &p in tile {
        if !palette.contains(&p) {
            if palette.len() == 16 {
                palette.clear();
                break;
            }
            palette.push(p);
        }
    }
    if palette.len() == 1 {
        out.push(1);
        pf.put_cpixel(palette[0], cpixel, out);
        return;
    }
    let runs = runs(tile);
    let run_bytes = |r: &[(u32, usize)]| r.iter().map(|(_, n)| (n - 1) / 255 + 1).sum::<usize>();
    let raw_size = tile.len() * cp_len;
    if !palette.is_empty() {
        let bits = match palette.len() {
            2 => 1,
            3..=4 => 2,
            _ => 4,
        };
        let packed_size = palette.len() * cp_len + height * (width * bits).div_ceil(8);
        let rle_size = palette.len() * cp_len
            + runs.len()
            + runs
                .iter()
                .filter(|(_, n)| *n > 1)
                .map(|(_, n)| (n - 1) / 255 + 1)
                .sum::<usize>();
        let index = |p: u32| palette.iter().position(|&c| c == p).unwrap_or(0) as u8;
        if packed_size <= rle_size && packed_size < raw_size {
            out.push(palette.len() as u8);
            for &c in &palette {
                pf.put_cpixel(c, cpixel, out);
            }
            for row in tile.chunks_exact(width) {
                let (mut acc, mut nbits) = (0u8, 0);
                for &p in row {
                    acc = (acc << bits) | index(p);
                    nbits += bits;
                    if nbits == 8 {
                        out.push(acc);
                        acc = 0;
                        nbits = 0;
                    }
                }
                if nbits > 0 {
                    out.push(acc << (8 - nbits));
                }
            }
            return;
        }
        if rle_size < raw_size {
            out.push(128 + palette.len() as u8);
            for &c in &palette {
                pf.put_cpixel(c, cpixel, out);
            }
            for &(c, n) in &runs {
                if n == 1 {
                    out.push(index(c));
                } else {
                    out.push(128 | index(c));
                    put_run(n, out);
                }
            }
            return;
        }
    } else {
        let rle_size = runs.len() * cp_len + run_bytes(&runs);
        if rle_size < raw_size {
            out.push(128);
            for &(c, n) in &runs {
                pf.put_cpixel(c, cpixel, out);
                put_run(n, out);
            }
            return;
        }
    }
    out.push(0);
    for &p in tile {
        pf.put_cpixel(p, cpixel, out);
    }
}

/// A ZRLE decoder for tests: the inverse of [`ZrleEncoder`] for the CPIXEL forms the
/// server produces (3-byte little-endian or whole 32-bit little-endian pixels).
#[cfg(test)]
pub(crate) mod decode {
    use flate2::{Decompress, FlushDecompress};

    pub struct ZrleDecoder {
        z: Decompress,
    }

    impl ZrleDecoder {
        pub fn new() -> Self {
            ZrleDecoder {
                z: Decompress::new(true),
            }
        }

        /// Decodes one rectangle's payload (after the rectangle header) into
        /// 0x00RRGGBB pixels; `cp` is the CPIXEL length (3 or 4, little-endian
        /// 0x00RRGGBB). Returns the pixels and the bytes consumed.
        pub fn decode(&mut self, data: &[u8], w: usize, h: usize, cp: usize) -> (Vec<u32>, usize) {
            let len = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
            let mut raw = Vec::with_capacity(w * h * 4 + 1024);
            let before = self.z.total_in();
            loop {
                raw.reserve(65536);
                let consumed = (self.z.total_in() - before) as usize;
                self.z
                    .decompress_vec(
                        &data[4 + consumed..4 + len],
                        &mut raw,
                        FlushDecompress::Sync,
                    )
                    .unwrap();
                if (self.z.total_in() - before) as usize == len && raw.capacity() > raw.len() {
                    break;
                }
            }
            let mut pos = 0;
            let px = |pos: &mut usize| {
                let mut b = [0u8; 4];
                b[..cp].copy_from_slice(&raw[*pos..*pos + cp]);
                *pos += cp;
                u32::from_le_bytes(b) & 0x00ff_ffff
            };
            let mut img = vec![0u32; w * h];
            for ty in (0..h).step_by(64) {
                for tx in (0..w).step_by(64) {
                    let tw = 64.min(w - tx);
                    let th = 64.min(h - ty);
                    let mut tile = Vec::with_capacity(tw * th);
                    let sub = raw[pos];
                    pos += 1;
                    match sub {
                        0 => (0..tw * th).for_each(|_| tile.push(px(&mut pos))),
                        1 => {
                            let c = px(&mut pos);
                            tile.resize(tw * th, c);
                        }
                        2..=16 => {
                            let pal: Vec<u32> = (0..sub).map(|_| px(&mut pos)).collect();
                            let bits = match sub {
                                2 => 1,
                                3..=4 => 2,
                                _ => 4,
                            };
                            for _ in 0..th {
                                let mut bitpos = 0usize;
                                for _ in 0..tw {
                                    let byte = raw[pos + bitpos / 8];
                                    let shift = 8 - bits - (bitpos % 8);
                                    let i = (byte >> shift) & ((1 << bits) - 1);
                                    tile.push(pal[i as usize]);
                                    bitpos += bits;
                                }
                                pos += (tw * bits).div_ceil(8);
                            }
                        }
                        128 => {
                            while tile.len() < tw * th {
                                let c = px(&mut pos);
                                let n = run(&raw, &mut pos);
                                tile.extend(std::iter::repeat_n(c, n));
                            }
                        }
                        130..=255 => {
                            let pal: Vec<u32> = (0..sub - 128).map(|_| px(&mut pos)).collect();
                            while tile.len() < tw * th {
                                let i = raw[pos];
                                pos += 1;
                                if i & 128 == 0 {
                                    tile.push(pal[i as usize]);
                                } else {
                                    let n = run(&raw, &mut pos);
                                    tile.extend(std::iter::repeat_n(pal[(i & 127) as usize], n));
                                }
                            }
                        }
                        other => panic!("bad ZRLE subencoding {other}"),
                    }
                    assert_eq!(tile.len(), tw * th, "tile overran");
                    for y in 0..th {
                        img[(ty + y) * w + tx..(ty + y) * w + tx + tw]
                            .copy_from_slice(&tile[y * tw..(y + 1) * tw]);
                    }
                }
            }
            assert_eq!(pos, raw.len(), "trailing ZRLE data");
            (img, 4 + len)
        }
    }

    fn run(raw: &[u8], pos: &mut usize) -> usize {
        let mut n = 1;
        loop {
            let b = raw[*pos];
            *pos += 1;
            n += b as usize;
            if b != 255 {
                return n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decode::ZrleDecoder;
    use super::*;

    fn roundtrip(pixels: &[u32], w: u32, h: u32, pf: PixelFormat) {
        let mut enc = ZrleEncoder::default();
        let mut dec = ZrleDecoder::new();
        let cp = pf.cpixel_bytes().map_or(4, |r| r.len());
        // Twice: the second rectangle reuses the zlib dictionary.
        for _ in 0..2 {
            let mut out = Vec::new();
            enc.encode(pixels, w, Rect { x: 0, y: 0, w, h }, &pf, &mut out);
            let (img, used) = dec.decode(&out, w as usize, h as usize, cp);
            assert_eq!(used, out.len());
            assert_eq!(img, pixels);
        }
    }

    #[test]
    fn every_subencoding_round_trips() {
        let (w, h) = (200u32, 130u32);
        let mut px = vec![0u32; (w * h) as usize];
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) as usize;
                px[i] = match (x / 64, y / 64) {
                    (0, 0) => 0x0012_3456,                                           // solid
                    (1, 0) => [0xff0000, 0x00ff00][(x % 2) as usize], // packed, 1 bit
                    (2, 0) => [0x10, 0x20, 0x30, 0x40, 0x50][(x / 13) as usize % 5], // palette RLE
                    (0, 1) => (x * 0x010203 + y * 0x030201) & 0xffffff, // raw
                    (1, 1) => ((x / 7) * 0x050505) & 0xffffff,        // plain RLE
                    _ => ((x ^ y) * 0x0101) & 0xffffff,
                };
            }
        }
        roundtrip(&px, w, h, PixelFormat::SERVER_DEFAULT);
        let whole = PixelFormat {
            depth: 32,
            red_max: 255,
            ..PixelFormat::SERVER_DEFAULT
        };
        // depth 32 → CPIXEL is the whole 4-byte pixel
        roundtrip(&px, w, h, whole);
    }

    #[test]
    fn tile_choices_are_the_small_ones() {
        let pf = PixelFormat::SERVER_DEFAULT;
        let mut out = Vec::new();
        encode_tile(&[7; 64 * 64], 64, &pf, &pf.cpixel_bytes(), &mut out);
        assert_eq!(out, [1, 7, 0, 0]);
        out.clear();
        encode_tile(&[1, 2, 1, 2], 2, &pf, &pf.cpixel_bytes(), &mut out);
        // two colours, one bit per pixel, each row padded to a byte: 0b01.., 0b01..
        assert_eq!(out, [2, 1, 0, 0, 2, 0, 0, 0b0100_0000, 0b0100_0000]);
        out.clear();
        let mut v = vec![5u32; 300];
        v.extend([9u32; 2]);
        encode_tile(&v, 302, &pf, &pf.cpixel_bytes(), &mut out);
        // palette RLE: 2 colours, run of 300 (255 + 44), then index 1 run of 2
        assert_eq!(out, [130, 5, 0, 0, 9, 0, 0, 128, 255, 44, 129, 1]);
        out.clear();
        put_run(256, &mut out);
        assert_eq!(out, [255, 0]);
    }
}

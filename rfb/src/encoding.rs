//! Encoding numbers (RFC 6143 §7.7, rfbproto.rst), what a client's SetEncodings allows,
//! the Raw encoding and the ExtendedDesktopSize pseudo-rectangle.

use crate::pixel::PixelFormat;
use crate::Rect;

/// Raw.
pub const RAW: i32 = 0;
/// ZRLE.
pub const ZRLE: i32 = 16;
/// DesktopSize pseudo-encoding.
pub const DESKTOP_SIZE: i32 = -223;
/// QEMU pointer motion change.
pub const POINTER_TYPE_CHANGE: i32 = -257;
/// QEMU extended key event.
pub const QEMU_EXT_KEY: i32 = -258;
/// QEMU LED state.
pub const LED_STATE: i32 = -261;
/// ExtendedDesktopSize pseudo-encoding.
pub const EXT_DESKTOP_SIZE: i32 = -308;
/// ExtendedDesktopSize status "resize is administratively prohibited".
pub const EXT_DESKTOP_PROHIBITED: u32 = 1;

/// The pixel encoding updates use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preferred {
    /// Raw: what every client decodes (the default until SetEncodings).
    #[default]
    Raw,
    /// ZRLE.
    Zrle,
}

/// What a client said it understands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encodings {
    /// The first pixel encoding in the client's list that we implement.
    pub preferred: Preferred,
    /// DesktopSize (-223).
    pub desktop_size: bool,
    /// ExtendedDesktopSize (-308).
    pub ext_desktop_size: bool,
    /// QEMU extended key event (-258).
    pub qemu_ext_key: bool,
    /// QEMU pointer type change (-257).
    pub pointer_type_change: bool,
    /// QEMU LED state (-261).
    pub led_state: bool,
}

impl Encodings {
    /// From a SetEncodings list (client's order of preference).
    pub fn from_list(list: &[i32]) -> Encodings {
        Encodings {
            preferred: list
                .iter()
                .find_map(|&n| match n {
                    RAW => Some(Preferred::Raw),
                    ZRLE => Some(Preferred::Zrle),
                    _ => None,
                })
                .unwrap_or_default(),
            desktop_size: list.contains(&DESKTOP_SIZE),
            ext_desktop_size: list.contains(&EXT_DESKTOP_SIZE),
            qemu_ext_key: list.contains(&QEMU_EXT_KEY),
            pointer_type_change: list.contains(&POINTER_TYPE_CHANGE),
            led_state: list.contains(&LED_STATE),
        }
    }
}

/// Appends `r` of a frame `stride` pixels wide in the client's pixel format.
pub fn raw(pixels: &[u32], stride: u32, r: Rect, pf: &PixelFormat, out: &mut Vec<u8>) {
    out.reserve((r.w * r.h) as usize * pf.bytes_per_pixel());
    // The frame's own 0x00RRGGBB little-endian (what most clients keep from ServerInit):
    // the bytes as they are, without per-channel scaling (bench/vnc's redraw case).
    let native = pf.bits_per_pixel == 32
        && !pf.big_endian
        && (pf.red_max, pf.green_max, pf.blue_max) == (255, 255, 255)
        && (pf.red_shift, pf.green_shift, pf.blue_shift) == (16, 8, 0);
    for y in r.y..r.y + r.h {
        let row = (y * stride + r.x) as usize;
        let row = &pixels[row..row + r.w as usize];
        if native {
            out.extend(row.iter().flat_map(|p| (p & 0xff_ffff).to_le_bytes()));
        } else {
            for &p in row {
                pf.put(p, out);
            }
        }
    }
}

/// The ExtendedDesktopSize rectangle: `reason` in x (0 server change, 1 this client's
/// request), `status` in y, one screen covering the whole frame.
pub fn ext_desktop_size(w: u32, h: u32, reason: u32, status: u32) -> (Rect, i32, Vec<u8>) {
    let mut d = vec![1, 0, 0, 0];
    d.extend_from_slice(&0u32.to_be_bytes()); // screen id
    d.extend_from_slice(&0u16.to_be_bytes()); // x
    d.extend_from_slice(&0u16.to_be_bytes()); // y
    d.extend_from_slice(&(w as u16).to_be_bytes());
    d.extend_from_slice(&(h as u16).to_be_bytes());
    d.extend_from_slice(&0u32.to_be_bytes()); // flags
    (
        Rect {
            x: reason,
            y: status,
            w,
            h,
        },
        EXT_DESKTOP_SIZE,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_in_the_server_format_is_the_frame_bytes_and_other_formats_convert() {
        // A 3×2 frame; the rectangle is its right column.
        let px = [
            0x00ff_0000,
            0x0000_ff00,
            0xff12_3456,
            0x0000_00ff,
            0,
            0x0001_0203,
        ];
        let r = Rect {
            x: 2,
            y: 0,
            w: 1,
            h: 2,
        };
        let mut out = Vec::new();
        raw(&px, 3, r, &PixelFormat::SERVER_DEFAULT, &mut out);
        // The unused top byte goes out as 0 (gtk-vnc takes depth 24 as 3 bytes of colour).
        assert_eq!(out, [0x56, 0x34, 0x12, 0, 0x03, 0x02, 0x01, 0]);
        let be = PixelFormat {
            big_endian: true,
            ..PixelFormat::SERVER_DEFAULT
        };
        out.clear();
        raw(&px, 3, r, &be, &mut out);
        assert_eq!(out, [0, 0x12, 0x34, 0x56, 0, 0x01, 0x02, 0x03]);
    }

    #[test]
    fn gtk_vnc_list_picks_zrle_and_the_qemu_extensions() {
        // gtk-vnc 1.3.1's order (research/display.md §2.1), Tight first.
        let list = [
            -27, 7, -309, -258, -261, -308, -223, -307, -224, -312, -259, -314, -239, -240, -257,
            16, 5, 2, 1, 0,
        ];
        let e = Encodings::from_list(&list);
        assert_eq!(e.preferred, Preferred::Zrle);
        assert!(
            e.qemu_ext_key
                && e.led_state
                && e.ext_desktop_size
                && e.desktop_size
                && e.pointer_type_change
        );
        assert_eq!(Encodings::from_list(&[5, 0, 16]).preferred, Preferred::Raw);
        assert_eq!(Encodings::from_list(&[]).preferred, Preferred::Raw);
    }

    #[test]
    fn raw_rect_bytes() {
        let px = [0x00010203, 0x00040506, 0x00070809, 0x000a0b0c];
        let mut out = Vec::new();
        raw(
            &px,
            2,
            Rect {
                x: 1,
                y: 0,
                w: 1,
                h: 2,
            },
            &PixelFormat::SERVER_DEFAULT,
            &mut out,
        );
        assert_eq!(out, [6, 5, 4, 0, 0xc, 0xb, 0xa, 0]);
    }
}

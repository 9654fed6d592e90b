//! Key code tables: QEMU's key names ("qcode", QMP `send-key`), QEMU's key numbers
//! ("qnum": XT scancode set 1, 0x80 added for E0-prefixed keys; QMP `send-key`
//! `number`, libvirt's `xt`/`qnum` paths, RFB's QEMU extended key event), Linux
//! evdev key codes (the VMM's internal currency), and PS/2 scancode set 2.
//!
//! Written from the published scancode tables (IBM PC AT keyboard set 1 and 2, the
//! USB HID usage tables' PS/2 columns) and linux/input-event-codes.h; the names are
//! QEMU's `QKeyCode` enumeration (qapi/ui.json). Keys with no PC scancode (F13-F24,
//! most media keys) are left out.

/// (qcode, Linux key code, qnum).
const KEYS: &[(&str, u16, u16)] = &[
    ("esc", 1, 0x01),
    ("1", 2, 0x02),
    ("2", 3, 0x03),
    ("3", 4, 0x04),
    ("4", 5, 0x05),
    ("5", 6, 0x06),
    ("6", 7, 0x07),
    ("7", 8, 0x08),
    ("8", 9, 0x09),
    ("9", 10, 0x0a),
    ("0", 11, 0x0b),
    ("minus", 12, 0x0c),
    ("equal", 13, 0x0d),
    ("backspace", 14, 0x0e),
    ("tab", 15, 0x0f),
    ("q", 16, 0x10),
    ("w", 17, 0x11),
    ("e", 18, 0x12),
    ("r", 19, 0x13),
    ("t", 20, 0x14),
    ("y", 21, 0x15),
    ("u", 22, 0x16),
    ("i", 23, 0x17),
    ("o", 24, 0x18),
    ("p", 25, 0x19),
    ("bracket_left", 26, 0x1a),
    ("bracket_right", 27, 0x1b),
    ("ret", 28, 0x1c),
    ("ctrl", 29, 0x1d),
    ("a", 30, 0x1e),
    ("s", 31, 0x1f),
    ("d", 32, 0x20),
    ("f", 33, 0x21),
    ("g", 34, 0x22),
    ("h", 35, 0x23),
    ("j", 36, 0x24),
    ("k", 37, 0x25),
    ("l", 38, 0x26),
    ("semicolon", 39, 0x27),
    ("apostrophe", 40, 0x28),
    ("grave_accent", 41, 0x29),
    ("shift", 42, 0x2a),
    ("backslash", 43, 0x2b),
    ("z", 44, 0x2c),
    ("x", 45, 0x2d),
    ("c", 46, 0x2e),
    ("v", 47, 0x2f),
    ("b", 48, 0x30),
    ("n", 49, 0x31),
    ("m", 50, 0x32),
    ("comma", 51, 0x33),
    ("dot", 52, 0x34),
    ("slash", 53, 0x35),
    ("shift_r", 54, 0x36),
    ("kp_multiply", 55, 0x37),
    ("alt", 56, 0x38),
    ("spc", 57, 0x39),
    ("caps_lock", 58, 0x3a),
    ("f1", 59, 0x3b),
    ("f2", 60, 0x3c),
    ("f3", 61, 0x3d),
    ("f4", 62, 0x3e),
    ("f5", 63, 0x3f),
    ("f6", 64, 0x40),
    ("f7", 65, 0x41),
    ("f8", 66, 0x42),
    ("f9", 67, 0x43),
    ("f10", 68, 0x44),
    ("num_lock", 69, 0x45),
    ("scroll_lock", 70, 0x46),
    ("kp_7", 71, 0x47),
    ("kp_8", 72, 0x48),
    ("kp_9", 73, 0x49),
    ("kp_subtract", 74, 0x4a),
    ("kp_4", 75, 0x4b),
    ("kp_5", 76, 0x4c),
    ("kp_6", 77, 0x4d),
    ("kp_add", 78, 0x4e),
    ("kp_1", 79, 0x4f),
    ("kp_2", 80, 0x50),
    ("kp_3", 81, 0x51),
    ("kp_0", 82, 0x52),
    ("kp_decimal", 83, 0x53),
    ("sysrq", 99, 0x54),
    ("less", 86, 0x56),
    ("f11", 87, 0x57),
    ("f12", 88, 0x58),
    ("kp_equals", 117, 0x59),
    ("hiragana", 93, 0x70),
    ("henkan", 92, 0x79),
    ("muhenkan", 94, 0x7b),
    ("ro", 89, 0x73),
    ("yen", 124, 0x7d),
    ("kp_comma", 121, 0x7e),
    ("kp_enter", 96, 0x9c),
    ("ctrl_r", 97, 0x9d),
    ("audiomute", 113, 0xa0),
    ("volumedown", 114, 0xae),
    ("volumeup", 115, 0xb0),
    ("kp_divide", 98, 0xb5),
    ("print", 99, 0xb7),
    ("alt_r", 100, 0xb8),
    ("pause", 119, 0xc6),
    ("home", 102, 0xc7),
    ("up", 103, 0xc8),
    ("pgup", 104, 0xc9),
    ("left", 105, 0xcb),
    ("right", 106, 0xcd),
    ("end", 107, 0xcf),
    ("down", 108, 0xd0),
    ("pgdn", 109, 0xd1),
    ("insert", 110, 0xd2),
    ("delete", 111, 0xd3),
    ("meta_l", 125, 0xdb),
    ("meta_r", 126, 0xdc),
    ("menu", 127, 0xdd),
    ("compose", 127, 0xdd),
    ("power", 116, 0xde),
    ("sleep", 142, 0xdf),
    ("wake", 143, 0xe3),
];

/// Linux key code of QEMU key number `qnum` (XT set 1, +0x80 for E0 keys).
pub fn qnum_to_linux(qnum: u16) -> Option<u16> {
    KEYS.iter().find(|k| k.2 == qnum).map(|k| k.1)
}

/// Linux key code of QMP qcode `name` (`ctrl`, `alt_r`, `a`, `f1`, …).
pub fn qcode_to_linux(name: &str) -> Option<u16> {
    KEYS.iter().find(|k| k.0 == name).map(|k| k.1)
}

/// QEMU key number (XT set 1, +0x80 for E0 keys) of a Linux key code.
pub fn linux_to_qnum(linux: u16) -> Option<u16> {
    KEYS.iter().find(|k| k.1 == linux).map(|k| k.2)
}

/// Set-2 make codes of set-1 codes 0x00..=0x7f (index: set-1 code); 0 = none.
/// E0-prefixed keys use the same set-2 code after an E0 byte.
const SET1_TO_SET2: [u8; 128] = [
    0x00, 0x76, 0x16, 0x1e, 0x26, 0x25, 0x2e, 0x36, // 00-07
    0x3d, 0x3e, 0x46, 0x45, 0x4e, 0x55, 0x66, 0x0d, // 08-0f
    0x15, 0x1d, 0x24, 0x2d, 0x2c, 0x35, 0x3c, 0x43, // 10-17
    0x44, 0x4d, 0x54, 0x5b, 0x5a, 0x14, 0x1c, 0x1b, // 18-1f
    0x23, 0x2b, 0x34, 0x33, 0x3b, 0x42, 0x4b, 0x4c, // 20-27
    0x52, 0x0e, 0x12, 0x5d, 0x1a, 0x22, 0x21, 0x2a, // 28-2f
    0x32, 0x31, 0x3a, 0x41, 0x49, 0x4a, 0x59, 0x7c, // 30-37
    0x11, 0x29, 0x58, 0x05, 0x06, 0x04, 0x0c, 0x03, // 38-3f
    0x0b, 0x83, 0x0a, 0x01, 0x09, 0x77, 0x7e, 0x6c, // 40-47
    0x75, 0x7d, 0x7b, 0x6b, 0x73, 0x74, 0x79, 0x69, // 48-4f
    0x72, 0x7a, 0x70, 0x71, 0x84, 0x00, 0x61, 0x78, // 50-57
    0x07, 0x0f, 0x00, 0x1f, 0x27, 0x2f, 0x37, 0x3f, // 58-5f
    0x47, 0x4f, 0x56, 0x5e, 0x08, 0x10, 0x18, 0x20, // 60-67
    0x28, 0x30, 0x38, 0x40, 0x48, 0x50, 0x57, 0x6f, // 68-6f
    0x13, 0x00, 0x00, 0x51, 0x00, 0x00, 0x00, 0x00, // 70-77
    0x00, 0x64, 0x00, 0x67, 0x00, 0x6a, 0x6d, 0x00, // 78-7f
];

/// The bytes a PS/2 keyboard sends for Linux key `linux` going down or up:
/// set 1 when the controller translates (`translated`), else set 2.
pub fn ps2_bytes(linux: u16, down: bool, translated: bool) -> Vec<u8> {
    let Some(q) = linux_to_qnum(linux) else {
        return Vec::new();
    };
    let e0 = q & 0x80 != 0;
    let code = (q & 0x7f) as u8;
    let mut out = Vec::with_capacity(3);
    if q == 0xc6 {
        // Pause has no break code and its own make sequence.
        if down {
            if translated {
                out.extend_from_slice(&[0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5]);
            } else {
                out.extend_from_slice(&[0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77]);
            }
        }
        return out;
    }
    if e0 {
        out.push(0xe0);
    }
    if translated {
        out.push(if down { code } else { code | 0x80 });
    } else {
        let s2 = SET1_TO_SET2[usize::from(code)];
        if s2 == 0 {
            return Vec::new();
        }
        if !down {
            out.push(0xf0);
        }
        out.push(s2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qnum_and_qcode_agree_with_linux_codes() {
        assert_eq!(qnum_to_linux(0x1d), Some(29)); // KEY_LEFTCTRL
        assert_eq!(qnum_to_linux(0x9d), Some(97)); // KEY_RIGHTCTRL (E0 1D)
        assert_eq!(qnum_to_linux(0xd3), Some(111)); // KEY_DELETE
        assert_eq!(qnum_to_linux(0x55), None);
        assert_eq!(qcode_to_linux("ctrl"), Some(29));
        assert_eq!(qcode_to_linux("alt"), Some(56));
        assert_eq!(qcode_to_linux("delete"), Some(111));
        assert_eq!(qcode_to_linux("a"), Some(30));
        assert_eq!(qcode_to_linux("f12"), Some(88));
        assert_eq!(qcode_to_linux("nonsense"), None);
        // Every qcode's qnum maps back to its Linux code.
        for &(name, linux, qnum) in KEYS {
            assert_eq!(qcode_to_linux(name), Some(linux), "{name}");
            let back = qnum_to_linux(qnum).unwrap();
            assert_eq!(back, linux, "{name}: qnum {qnum:#x}");
        }
    }

    #[test]
    fn ps2_sequences_in_both_sets() {
        // 'a': set 1 1E / 9E, set 2 1C / F0 1C.
        assert_eq!(ps2_bytes(30, true, true), [0x1e]);
        assert_eq!(ps2_bytes(30, false, true), [0x9e]);
        assert_eq!(ps2_bytes(30, true, false), [0x1c]);
        assert_eq!(ps2_bytes(30, false, false), [0xf0, 0x1c]);
        // Right Ctrl: E0 1D / E0 9D; set 2 E0 14 / E0 F0 14.
        assert_eq!(ps2_bytes(97, true, true), [0xe0, 0x1d]);
        assert_eq!(ps2_bytes(97, false, false), [0xe0, 0xf0, 0x14]);
        // Up arrow in set 2: E0 75.
        assert_eq!(ps2_bytes(103, true, false), [0xe0, 0x75]);
        assert!(ps2_bytes(119, false, true).is_empty(), "pause has no break");
        assert!(ps2_bytes(999, true, true).is_empty());
    }
}

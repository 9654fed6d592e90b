//! libvirt's `virDomainSendKey` key code sets (`virKeycodeSet`) → QEMU's "number" key
//! values (qnum: the XT scancode, 0x80 | code for E0-prefixed keys), which QMP
//! `send-key` takes; libvirt converts the same way before calling `send-key`.
//!
//! Sets whose codes are XT scancodes in some form convert by rule; the Linux set uses
//! the table below (Linux key codes 1–88 are the XT scancodes themselves). The sets
//! that need large tables (atset2, atset3, os_x, usb, win32) are refused by name.

use super::{Error, Result};

/// `VIR_KEYCODE_SET_*` numbers.
pub mod set {
    pub const LINUX: u32 = 0;
    pub const XT: u32 = 1;
    pub const ATSET1: u32 = 2;
    pub const ATSET2: u32 = 3;
    pub const ATSET3: u32 = 4;
    pub const OSX: u32 = 5;
    pub const XT_KBD: u32 = 6;
    pub const USB: u32 = 7;
    pub const WIN32: u32 = 8;
    pub const QNUM: u32 = 9;
}

/// libvirt's name of a key code set.
fn name(codeset: u32) -> &'static str {
    match codeset {
        set::LINUX => "linux",
        set::XT => "xt",
        set::ATSET1 => "atset1",
        set::ATSET2 => "atset2",
        set::ATSET3 => "atset3",
        set::OSX => "os_x",
        set::XT_KBD => "xt_kbd",
        set::USB => "usb",
        set::WIN32 => "win32",
        set::QNUM => "qnum",
        _ => "unknown",
    }
}

/// Linux key codes above 88 that have an XT scancode (E0-prefixed ones as 0x80 | code).
const LINUX_EXTENDED: &[(u32, u32)] = &[
    (96, 0x9c),  // KEY_KPENTER
    (97, 0x9d),  // KEY_RIGHTCTRL
    (98, 0xb5),  // KEY_KPSLASH
    (99, 0xb7),  // KEY_SYSRQ
    (100, 0xb8), // KEY_RIGHTALT
    (102, 0xc7), // KEY_HOME
    (103, 0xc8), // KEY_UP
    (104, 0xc9), // KEY_PAGEUP
    (105, 0xcb), // KEY_LEFT
    (106, 0xcd), // KEY_RIGHT
    (107, 0xcf), // KEY_END
    (108, 0xd0), // KEY_DOWN
    (109, 0xd1), // KEY_PAGEDOWN
    (110, 0xd2), // KEY_INSERT
    (111, 0xd3), // KEY_DELETE
    (113, 0xa0), // KEY_MUTE
    (114, 0xae), // KEY_VOLUMEDOWN
    (115, 0xb0), // KEY_VOLUMEUP
    (116, 0xde), // KEY_POWER
    (119, 0xc6), // KEY_PAUSE
    (125, 0xdb), // KEY_LEFTMETA
    (126, 0xdc), // KEY_RIGHTMETA
    (127, 0xdd), // KEY_COMPOSE
    (142, 0xdf), // KEY_SLEEP
    (143, 0xe3), // KEY_WAKEUP
];

/// The qnum of `code` in `codeset`; an error in libvirt's words for what cannot be.
pub fn to_qnum(codeset: u32, code: u32) -> Result<u32> {
    let bad = || {
        Error::InvalidArg(format!(
            "invalid keycode {code} of {} codeset",
            name(codeset)
        ))
    };
    match codeset {
        // Base XT scancodes; the E0 set is qnum's 0x80 bit.
        set::XT | set::XT_KBD | set::QNUM => (1..=0xff).contains(&code).then_some(code).ok_or_else(bad),
        // Set 1 as bytes on the wire: 0xE0xx for extended keys.
        set::ATSET1 => match code {
            1..=0x7f => Ok(code),
            0xe001..=0xe07f => Ok(0x80 | (code & 0x7f)),
            _ => Err(bad()),
        },
        set::LINUX => match code {
            1..=88 => Ok(code),
            _ => LINUX_EXTENDED
                .iter()
                .find(|(l, _)| *l == code)
                .map(|(_, q)| *q)
                .ok_or_else(bad),
        },
        set::ATSET2 | set::ATSET3 | set::OSX | set::USB | set::WIN32 => Err(Error::OperationUnsupported(format!(
            "keycode set '{}' is not supported by oxvirt (use linux, xt, atset1, xt_kbd, qnum or rfb)",
            name(codeset)
        ))),
        other => Err(Error::InvalidArg(format!("unsupported codeset: {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_and_set1_codes_become_qnums() {
        assert_eq!(to_qnum(set::LINUX, 29).unwrap(), 0x1d); // KEY_LEFTCTRL
        assert_eq!(to_qnum(set::LINUX, 56).unwrap(), 0x38); // KEY_LEFTALT
        assert_eq!(to_qnum(set::LINUX, 111).unwrap(), 0xd3); // KEY_DELETE
        assert_eq!(to_qnum(set::LINUX, 59).unwrap(), 0x3b); // KEY_F1
        assert_eq!(to_qnum(set::ATSET1, 0xe053).unwrap(), 0xd3); // Delete
        assert_eq!(to_qnum(set::XT, 0x1e).unwrap(), 0x1e);
        assert_eq!(to_qnum(set::QNUM, 0xd3).unwrap(), 0xd3);
    }

    #[test]
    fn bad_codes_and_sets_are_named() {
        assert!(to_qnum(set::LINUX, 600)
            .unwrap_err()
            .to_string()
            .contains("invalid keycode 600 of linux codeset"));
        assert!(to_qnum(set::USB, 4)
            .unwrap_err()
            .to_string()
            .contains("'usb'"));
        assert!(to_qnum(42, 1).is_err());
    }
}

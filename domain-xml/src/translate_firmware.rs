//! `<os>` without `<kernel>`: firmware boot (SeaBIOS or OVMF) on Q35 or i440FX.
//!
//! * the chipset comes from `<type machine>`: `q35`/`pc-q35-*` → Q35,
//!   `pc`/`pc-i440fx-*` → i440FX;
//! * the firmware from `<os firmware>` and `<loader>` (libvirt's rules: a
//!   `pflash` loader is UEFI, a `rom` loader or none is a BIOS image); without a
//!   loader path, Debian's SeaBIOS or the OVMF build the firmware descriptors name;
//! * `<boot dev>` gives the first device of each kind a boot index, in order
//!   (libvirt turns `<boot dev>` into `bootindex` the same way); per-device
//!   `<boot order>` is taken as it is;
//! * `<bootmenu>` and `<bios useserial rebootTimeout>` reach the firmware through fw_cfg.

use std::path::PathBuf;

use machine_spec as ms;

use crate::error::{Error, Result};
use crate::model::*;

/// Debian's SeaBIOS (package `seabios`): the 256 KiB build QEMU uses for q35 and pc.
pub const SEABIOS_PATH: &str = "/usr/share/seabios/bios-256k.bin";

fn unsupported<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::unsupported(msg))
}

/// The chipset a machine type names, for firmware boot.
pub fn chipset(machine: Option<&str>) -> Result<ms::Chipset> {
    match machine.unwrap_or("pc") {
        "q35" => Ok(ms::Chipset::Q35),
        m if m.starts_with("pc-q35-") => Ok(ms::Chipset::Q35),
        "pc" => Ok(ms::Chipset::I440fx),
        m if m.starts_with("pc-i440fx-") => Ok(ms::Chipset::I440fx),
        m => unsupported(format!(
            "machine type '{m}' is not supported for firmware boot (use 'q35' or 'pc')"
        )),
    }
}

/// The firmware half of `<os>`, for a domain without `<kernel>`.
pub fn firmware(os: &Os, has_video: bool) -> Result<ms::Firmware> {
    let loader = os.loader.as_ref();
    if loader.and_then(|l| l.secure) == Some(YesNo::Yes) {
        return unsupported(
            "<loader secure='yes'>: secure boot requires SMM, which oxvirt does not provide yet",
        );
    }
    let loader_type = loader.and_then(|l| l.loader_type.as_deref());
    let kind = match (os.firmware.as_deref(), loader_type) {
        (Some("efi"), _) | (None, Some("pflash")) => ms::FirmwareKind::Efi,
        (Some("bios"), Some("pflash")) => {
            return Err(Error::xml(
                "<os firmware='bios'> cannot use a pflash <loader> (that is UEFI)",
            ))
        }
        (Some("bios") | None, Some("rom") | None) => ms::FirmwareKind::Bios,
        (_, Some(t)) => {
            return unsupported(format!("<loader type='{t}'> is not supported"));
        }
        (Some(f), _) => {
            return Err(Error::xml(format!("unknown firmware value '{f}'")));
        }
    };
    if let Some(f) = &os.firmware_features {
        let secure = f.child_elements().any(|c| {
            c.name == "feature"
                && c.get_attr("name") == Some("secure-boot")
                && c.get_attr("enabled") == Some("yes")
        });
        if secure {
            return unsupported(
                "<os><firmware><feature name='secure-boot' enabled='yes'>: secure boot requires SMM, which oxvirt does not provide yet",
            );
        }
    }
    if kind == ms::FirmwareKind::Efi {
        return unsupported(
            "<os firmware='efi'> (UEFI, OVMF) is not supported yet; use BIOS boot (SeaBIOS)",
        );
    }
    if os.nvram.is_some() {
        return unsupported("<os><nvram> is only meaningful for UEFI");
    }
    let code = loader
        .and_then(|l| l.path.as_deref())
        .unwrap_or(SEABIOS_PATH);
    let boot_menu_timeout_ms = match &os.bootmenu {
        Some(m) if m.enable == YesNo::Yes => Some(m.timeout.unwrap_or(DEFAULT_MENU_MS)),
        _ => None,
    };
    let (mut serial_console, mut reboot_timeout_ms) = (false, None);
    if let Some(b) = &os.bios {
        match b.get_attr("useserial") {
            Some("yes") => serial_console = true,
            Some("no") | None => {}
            Some(v) => return Err(Error::xml(format!("invalid <bios useserial='{v}'>"))),
        }
        if let Some(t) = b.get_attr("rebootTimeout") {
            let ms: i32 = t
                .parse()
                .ok()
                .filter(|v| (-1..=65535).contains(v))
                .ok_or_else(|| {
                    Error::xml(format!(
                        "invalid value for rebootTimeout '{t}', must be in range [-1,65535]"
                    ))
                })?;
            reboot_timeout_ms = Some(ms);
        }
    }
    Ok(ms::Firmware {
        kind,
        code: PathBuf::from(code),
        vars: None,
        vars_template: None,
        boot_menu_timeout_ms,
        reboot_timeout_ms,
        // Without a display, the firmware's screen goes to COM1 (SeaBIOS sercon),
        // as QEMU does with -nographic.
        serial_console: serial_console || !has_video,
        smbios: None,
    })
}

/// SeaBIOS's own default menu wait.
const DEFAULT_MENU_MS: u32 = 2500;

/// Gives boot indexes for `<os><boot dev>`: the first device of each kind, in the
/// order the `<boot>` elements come (libvirt's `bootindex` translation). Devices
/// with their own `<boot order>` keep it.
pub fn boot_indexes(os: &Os, devices: &mut [ms::Device]) -> Result<()> {
    let mut next = 1;
    for dev in &os.boot {
        let pick = match dev.as_str() {
            "hd" => devices
                .iter_mut()
                .find(|d| matches!(d.kind, ms::DeviceKind::Disk(_))),
            "network" => devices
                .iter_mut()
                .find(|d| matches!(d.kind, ms::DeviceKind::Net(_))),
            // No CD-ROM or floppy devices exist yet; nothing to boot from there.
            "cdrom" | "fd" => None,
            other => return Err(Error::xml(format!("unknown boot device '{other}'"))),
        };
        if let Some(d) = pick {
            if d.boot_index.is_none() {
                d.boot_index = Some(next);
                next += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_types_pick_the_chipset() {
        assert_eq!(chipset(Some("q35")).unwrap(), ms::Chipset::Q35);
        assert_eq!(chipset(Some("pc-q35-7.2")).unwrap(), ms::Chipset::Q35);
        assert_eq!(chipset(Some("pc")).unwrap(), ms::Chipset::I440fx);
        assert_eq!(chipset(Some("pc-i440fx-7.2")).unwrap(), ms::Chipset::I440fx);
        let e = chipset(Some("microvm")).unwrap_err().to_string();
        assert!(e.contains("'microvm'"), "{e}");
    }
}

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

/// Where a domain's UEFI variable store goes when `<nvram>` names no file (libvirt's
/// rule, per daemon): [`crate::firmware::SYSTEM_NVRAM_DIR`] for root (the system
/// daemon), `$XDG_DATA_HOME/oxvirt/nvram` (`~/.local/share/…`) for anyone else.
pub fn default_nvram_dir() -> PathBuf {
    if effective_uid() == Some(0) {
        return PathBuf::from(crate::firmware::SYSTEM_NVRAM_DIR);
    }
    user_data_home().join("oxvirt/nvram")
}

/// `$XDG_DATA_HOME`, or `~/.local/share`: where a session daemon keeps per-domain state.
pub(crate) fn user_data_home() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Descriptor directories for this process: the user's own first for a non-root
/// caller (a session daemon), then the system ones. Translation and the daemon's
/// domain capabilities search the same ones.
pub fn descriptor_dirs() -> Vec<PathBuf> {
    let user = (effective_uid() != Some(0))
        .then(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        })
        .flatten();
    crate::firmware::descriptor_dirs(user.as_deref())
}

/// The effective uid, from /proc (this crate has no libc binding).
pub(crate) fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `<os><firmware><feature name enabled>`: Some(true/false) when the feature is named.
fn firmware_feature(os: &Os, name: &str) -> Option<bool> {
    os.firmware_features
        .as_ref()?
        .child_elements()
        .find(|c| c.name == "feature" && c.get_attr("name") == Some(name))
        .map(|c| c.get_attr("enabled") == Some("yes"))
}

/// `<os><smbios mode>` with the domain's `<sysinfo type='smbios'>`: the strings the
/// firmware's SMBIOS tables carry (`emulate`, the default, gives oxvirt's own).
fn smbios(dom: &Domain) -> Result<Option<ms::Smbios>> {
    match dom.os.smbios.as_deref() {
        None | Some("emulate") => return Ok(None),
        Some("sysinfo") => {}
        Some(m) => return unsupported(format!("<os><smbios mode='{m}'> is not supported")),
    }
    let sysinfo = dom
        .extra
        .iter()
        .find(|e| e.name == "sysinfo" && e.get_attr("type") == Some("smbios"))
        .ok_or_else(|| {
            Error::xml("<os><smbios mode='sysinfo'> needs a <sysinfo type='smbios'> element")
        })?;
    let mut out = ms::Smbios::default();
    for block in sysinfo.child_elements() {
        let list = match block.name.as_str() {
            "bios" => &mut out.bios,
            "system" => &mut out.system,
            "baseBoard" => &mut out.baseboard,
            "chassis" => &mut out.chassis,
            other => return unsupported(format!("<sysinfo><{other}> is not supported")),
        };
        for e in block.child_elements().filter(|e| e.name == "entry") {
            let key = e.get_attr("name").ok_or_else(|| {
                Error::xml(format!("<sysinfo><{}><entry> needs a name", block.name))
            })?;
            list.push((key.to_string(), e.text_content()));
        }
    }
    Ok(Some(out))
}

/// The firmware half of `<os>`, for a domain without `<kernel>`.
pub fn firmware(dom: &Domain, has_video: bool) -> Result<ms::Firmware> {
    let (name, os) = (dom.name.as_str(), &dom.os);
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
    if firmware_feature(os, "secure-boot") == Some(true) {
        return unsupported(
            "<os><firmware><feature name='secure-boot' enabled='yes'>: secure boot requires SMM, which oxvirt does not provide yet",
        );
    }
    let machine = os.machine.as_deref().unwrap_or("pc");
    let loader_path = loader.and_then(|l| l.path.as_deref()).map(PathBuf::from);
    let (code, vars, vars_template) = match kind {
        ms::FirmwareKind::Bios => {
            if os.nvram.is_some() {
                return Err(Error::xml("<nvram> is only meaningful for UEFI firmware"));
            }
            let code = loader_path.unwrap_or_else(|| PathBuf::from(crate::firmware::DEFAULT_BIOS));
            (code, None, None)
        }
        ms::FirmwareKind::Efi => {
            if chipset(Some(machine))? == ms::Chipset::I440fx {
                // OVMF moves the PIIX4 PM block to 0xB000; ours stays at 0x600.
                return unsupported(format!(
                    "UEFI firmware on machine type '{machine}' is not supported yet (use 'q35')"
                ));
            }
            let nvram = os.nvram.as_ref();
            let template = nvram
                .and_then(|n| n.get_attr("template"))
                .map(PathBuf::from);
            let (code, template) = match (loader_path, template) {
                (Some(code), Some(t)) => (code, Some(t)),
                (Some(code), None) => {
                    let sel =
                        crate::firmware::select_for_loader(&descriptor_dirs(), &code, machine)?;
                    (code, sel.vars_template)
                }
                (None, t) => {
                    let want = crate::firmware::FirmwareRequest {
                        efi: true,
                        secure_boot: firmware_feature(os, "secure-boot"),
                        enrolled_keys: firmware_feature(os, "enrolled-keys"),
                        machine,
                    };
                    let sel = crate::firmware::select(&descriptor_dirs(), &want)?;
                    (sel.code, t.or(sel.vars_template))
                }
            };
            let vars = nvram
                .map(|n| n.text_content())
                .filter(|p| !p.trim().is_empty())
                .map(|p| PathBuf::from(p.trim()))
                .unwrap_or_else(|| crate::firmware::default_nvram_path(&default_nvram_dir(), name));
            (code, Some(vars), template)
        }
    };
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
        code,
        vars,
        vars_template,
        boot_menu_timeout_ms,
        reboot_timeout_ms,
        // Without a display, the firmware's screen goes to COM1 (SeaBIOS sercon),
        // as QEMU does with -nographic.
        serial_console: serial_console || !has_video,
        smbios: smbios(dom)?,
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
            "hd" => devices.iter_mut().find(|d| {
                matches!(
                    d.kind,
                    ms::DeviceKind::Disk(_)
                        | ms::DeviceKind::ScsiDisk(ms::ScsiDisk { cdrom: false, .. })
                        | ms::DeviceKind::AtaDisk(ms::AtaDisk { cdrom: false, .. })
                )
            }),
            "cdrom" => devices.iter_mut().find(|d| {
                matches!(
                    d.kind,
                    ms::DeviceKind::ScsiDisk(ms::ScsiDisk { cdrom: true, .. })
                        | ms::DeviceKind::AtaDisk(ms::AtaDisk { cdrom: true, .. })
                )
            }),
            "network" => devices
                .iter_mut()
                .find(|d| matches!(d.kind, ms::DeviceKind::Net(_))),
            // No floppy devices exist; nothing to boot from there.
            "fd" => None,
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

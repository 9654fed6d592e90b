//! Firmware auto-selection from QEMU firmware descriptors, the way libvirt does it
//! (`qemu_firmware.c`, `qemu_interop_config.c`), and libvirt's per-domain NVRAM path.
//!
//! Distributions describe the firmware they ship in JSON files (QEMU's
//! `docs/interop/firmware.json`); Debian's `ovmf` installs three:
//!
//! ```text
//! /usr/share/qemu/firmware/40-edk2-x86_64-secure-enrolled.json   SB + MS keys, requires-smm, q35
//! /usr/share/qemu/firmware/50-edk2-x86_64-secure.json            SB, requires-smm, q35
//! /usr/share/qemu/firmware/60-edk2-x86_64.json                   no SB, no SMM, q35 and i440fx
//! ```
//!
//! Each names its interface (`bios`, `uefi`), how it is mapped (`flash`: a code image
//! plus an NVRAM template; `memory`: one image), the machines it runs on (globs such as
//! `pc-q35-*`) and its features (`secure-boot`, `enrolled-keys`, `requires-smm`, …).
//!
//! The search, as libvirt's:
//! 1. Directories in priority order: `$XDG_CONFIG_HOME/qemu/firmware` (session
//!    daemons only), `/etc/qemu/firmware`, `/usr/share/qemu/firmware`
//!    ([`descriptor_dirs`]). A file in a higher directory replaces the file of the same
//!    name below it; an empty file hides it. Files are then taken in file-name order.
//!    (libvirt reads every non-hidden file; we read the `*.json` ones, so editor and
//!    package-manager leftovers such as `x.json.dpkg-old` cannot win.)
//! 2. The first descriptor whose interface, machine (x86_64) and features fit wins.
//!
//! Where oxvirt differs on purpose: it has no SMM, so descriptors with `requires-smm`
//! are passed over. libvirt would take Debian's `40-…-secure-enrolled` for a plain
//! `<os firmware='efi'>` (it sorts first) and turn SMM on; oxvirt lands on
//! `60-edk2-x86_64.json`, and refuses secure boot with a clear error until SMM exists.
//! Only raw split flash (code + NVRAM template) is usable for UEFI: a combined,
//! stateless or qcow2 image is passed over.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// System-wide descriptor directories, highest priority first.
pub const SYSTEM_DESCRIPTOR_DIRS: [&str; 2] = ["/etc/qemu/firmware", "/usr/share/qemu/firmware"];
/// The BIOS when nothing else is asked for: QEMU's default, from Debian's `seabios`.
pub const DEFAULT_BIOS: &str = "/usr/share/seabios/bios-256k.bin";
/// Per-domain NVRAM files of the system daemon (libvirt: `/var/lib/libvirt/qemu/nvram`);
/// a session daemon uses `$XDG_DATA_HOME/oxvirt/nvram`.
pub const SYSTEM_NVRAM_DIR: &str = "/var/lib/oxvirt/nvram";
/// libvirt reads at most this much of a descriptor.
const MAX_DESCRIPTOR_BYTES: u64 = 1 << 20;
/// The only architecture oxvirt runs.
const ARCH: &str = "x86_64";

/// libvirt `VIR_ERR_INTERNAL_ERROR`.
const VIR_ERR_INTERNAL_ERROR: i32 = 1;
/// libvirt `VIR_ERR_OPERATION_FAILED`.
const VIR_ERR_OPERATION_FAILED: i32 = 9;
/// libvirt `VIR_ERR_SYSTEM_ERROR`.
const VIR_ERR_SYSTEM_ERROR: i32 = 38;

/// Why no firmware could be chosen; `Display` is libvirt's wording where libvirt has
/// one, [`FirmwareError::code`] its error number.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// A descriptor maps flash in split mode without an NVRAM template.
    #[error("internal error: missing 'nvram-template' in '{}'", path.display())]
    MissingTemplate {
        /// The descriptor.
        path: PathBuf,
    },
    /// The chosen firmware image is not installed.
    #[error("operation failed: firmware file '{}' does not exist{}", path.display(), package_hint(package))]
    MissingFile {
        /// The image that is missing.
        path: PathBuf,
        /// The Debian package that ships it, when known.
        package: Option<&'static str>,
    },
    /// Nothing fits the request (`what` is `efi` or `bios`).
    #[error("operation failed: Unable to find any firmware to satisfy '{what}'")]
    NoMatch {
        /// `efi` or `bios`, as libvirt names the request.
        what: &'static str,
    },
    /// An explicit `<loader>` that no descriptor names, and no `<nvram template>`.
    #[error("operation failed: unable to find any master var store for loader: {}", loader.display())]
    NoVarsTemplate {
        /// The `<loader>` path.
        loader: PathBuf,
    },
    /// A descriptor is not valid JSON of the expected shape.
    #[error("internal error: unable to parse json file '{}'", path.display())]
    Parse {
        /// The descriptor.
        path: PathBuf,
        /// What the JSON parser found.
        #[source]
        source: serde_json::Error,
    },
    /// A descriptor or descriptor directory cannot be read.
    #[error("unable to read firmware descriptor '{}'", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// An explicit `<loader>` whose descriptor needs SMM.
    #[error("unsupported configuration: firmware '{}' requires SMM, which oxvirt does not provide yet", loader.display())]
    RequiresSmm {
        /// The `<loader>` path.
        loader: PathBuf,
    },
    /// Secure boot (or enrolled keys) asked for; every build that has it needs SMM.
    #[error(
        "unsupported configuration: secure boot requires SMM, which oxvirt does not provide yet"
    )]
    SecureBootNeedsSmm,
    /// A descriptor is larger than libvirt accepts.
    #[error("internal error: firmware descriptor '{}' is larger than 1 MiB", path.display())]
    TooLarge {
        /// The descriptor.
        path: PathBuf,
    },
}

fn package_hint(package: &Option<&'static str>) -> String {
    package
        .map(|p| format!(" (install the Debian package '{p}')"))
        .unwrap_or_default()
}

impl FirmwareError {
    /// The libvirt `virErrorNumber` for this error.
    pub fn code(&self) -> i32 {
        match self {
            FirmwareError::MissingTemplate { .. }
            | FirmwareError::Parse { .. }
            | FirmwareError::TooLarge { .. } => VIR_ERR_INTERNAL_ERROR,
            FirmwareError::MissingFile { .. }
            | FirmwareError::NoMatch { .. }
            | FirmwareError::NoVarsTemplate { .. } => VIR_ERR_OPERATION_FAILED,
            FirmwareError::Read { .. } => VIR_ERR_SYSTEM_ERROR,
            FirmwareError::RequiresSmm { .. } | FirmwareError::SecureBootNeedsSmm => {
                crate::VIR_ERR_CONFIG_UNSUPPORTED
            }
        }
    }
}

/// A QEMU firmware descriptor (`docs/interop/firmware.json`); `description` and `tags`
/// are not interpreted, as in libvirt.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Descriptor {
    /// `bios`, `uefi`, `openfirmware`, `uboot`.
    pub interface_types: Vec<String>,
    /// How the images are mapped.
    pub mapping: Mapping,
    /// Architectures and machine types the firmware runs on.
    pub targets: Vec<Target>,
    /// `acpi-s3`, `secure-boot`, `enrolled-keys`, `requires-smm`, … (unknown ones kept).
    #[serde(default)]
    pub features: Vec<String>,
}

/// How the firmware is put into the machine.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "device", rename_all = "kebab-case")]
pub enum Mapping {
    /// Pflash: code (read-only) and, in split mode, a variable store template.
    Flash(FlashMapping),
    /// One image loaded into memory (a BIOS, or a stateless UEFI build).
    Memory {
        /// The image.
        filename: PathBuf,
    },
    /// A kernel-like image (`-kernel`), not used by oxvirt.
    Kernel {
        /// The image.
        filename: PathBuf,
    },
}

/// `mapping` for `device: flash`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FlashMapping {
    /// Split (the default), combined or stateless.
    #[serde(default)]
    pub mode: FlashMode,
    /// The code image.
    pub executable: FlashFile,
    /// The variable store template (split mode).
    #[serde(default)]
    pub nvram_template: Option<FlashFile>,
}

/// Flash layouts; `split` (code + separate variable store) is the historical default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlashMode {
    /// Read-only code plus a per-domain variable store copied from a template.
    #[default]
    Split,
    /// One writable image holding both.
    Combined,
    /// Code only; variables live in RAM.
    Stateless,
}

/// A flash image and its format (`raw`, `qcow2`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FlashFile {
    /// Absolute path of the image.
    pub filename: PathBuf,
    /// `raw` or `qcow2`.
    pub format: String,
}

/// An architecture and the machine-type globs the firmware runs on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Target {
    /// QEMU's architecture name (`x86_64`).
    pub architecture: String,
    /// Machine-type globs (`pc-q35-*`).
    pub machines: Vec<String>,
}

impl Descriptor {
    fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }

    fn runs_on(&self, machine: &str) -> bool {
        self.targets.iter().any(|t| {
            t.architecture == ARCH && t.machines.iter().any(|m| machine_matches(m, machine))
        })
    }

    /// The usable (code, NVRAM template) of a UEFI descriptor: raw split flash.
    fn uefi_images(&self) -> Option<(&Path, &Path)> {
        match &self.mapping {
            Mapping::Flash(FlashMapping {
                mode: FlashMode::Split,
                executable,
                nvram_template: Some(template),
            }) if executable.format == "raw" && template.format == "raw" => {
                Some((&executable.filename, &template.filename))
            }
            Mapping::Flash(_) | Mapping::Memory { .. } | Mapping::Kernel { .. } => None,
        }
    }
}

/// What the domain asks of its firmware (libvirt `<os firmware>` and `<firmware>
/// <feature enabled name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareRequest<'a> {
    /// `firmware='efi'`; false for `firmware='bios'` or no firmware and no loader.
    pub efi: bool,
    /// `<feature name='secure-boot'>`: Some(true) wants it, Some(false) refuses it.
    pub secure_boot: Option<bool>,
    /// `<feature name='enrolled-keys'>`, likewise.
    pub enrolled_keys: Option<bool>,
    /// `<type machine>`: `q35`, `pc`, `pc-q35-7.2`, `pc-i440fx-7.2`, …
    pub machine: &'a str,
}

/// The firmware interface of a selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    /// A legacy BIOS (SeaBIOS).
    Bios,
    /// UEFI (OVMF).
    Uefi,
}

/// The chosen firmware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The read-only image (`<loader>`).
    pub code: PathBuf,
    /// The NVRAM template (`<nvram template>`), UEFI only.
    pub vars_template: Option<PathBuf>,
    /// BIOS or UEFI.
    pub interface: Interface,
    /// The build enforces secure boot (descriptor feature `secure-boot`).
    pub secure: bool,
    /// The descriptor it came from; `None` for the built-in SeaBIOS default.
    pub descriptor: Option<PathBuf>,
}

/// Descriptor directories, highest priority first: the user's
/// (`<user_config>/qemu/firmware`, where `user_config` is `$XDG_CONFIG_HOME` or
/// `~/.config` of a session daemon; `None` for the system daemon, which, like
/// libvirt's, does not read root's home), then [`SYSTEM_DESCRIPTOR_DIRS`].
pub fn descriptor_dirs(user_config: Option<&Path>) -> Vec<PathBuf> {
    user_config
        .map(|c| c.join("qemu/firmware"))
        .into_iter()
        .chain(SYSTEM_DESCRIPTOR_DIRS.iter().map(PathBuf::from))
        .collect()
}

/// libvirt's default `<nvram>` path: `<dir>/<domain name>_VARS.fd`, where `dir` is
/// [`SYSTEM_NVRAM_DIR`] for the system daemon or `$XDG_DATA_HOME/oxvirt/nvram` for a
/// session one. Domain names never contain `/` (define refuses them).
pub fn default_nvram_path(dir: &Path, domain_name: &str) -> PathBuf {
    dir.join(format!("{domain_name}_VARS.fd"))
}

/// Reads the descriptors of `dirs` (highest priority first), applying overrides and
/// masks, in the order selection tries them (by file name). Missing directories are
/// skipped. Also what `virsh domcapabilities` lists as `<loader>` values.
pub fn load_descriptors(dirs: &[PathBuf]) -> Result<Vec<(PathBuf, Descriptor)>, FirmwareError> {
    // File name -> path from the highest-priority directory that has it.
    let mut files: std::collections::BTreeMap<std::ffi::OsString, PathBuf> = Default::default();
    for dir in dirs.iter().rev() {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(FirmwareError::Read {
                    path: dir.clone(),
                    source,
                })
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| FirmwareError::Read {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let name_str = name.to_string_lossy();
            if name_str.starts_with('.') || !name_str.ends_with(".json") {
                continue;
            }
            files.insert(name, entry.path());
        }
    }
    let mut out = Vec::new();
    for path in files.into_values() {
        let read_err = |source| FirmwareError::Read {
            path: path.clone(),
            source,
        };
        let meta = fs::metadata(&path).map_err(read_err)?;
        if !meta.is_file() {
            continue;
        }
        if meta.len() == 0 {
            continue; // masks a lower-priority file of the same name
        }
        if meta.len() > MAX_DESCRIPTOR_BYTES {
            return Err(FirmwareError::TooLarge { path });
        }
        let text = fs::read(&path).map_err(read_err)?;
        let d: Descriptor =
            serde_json::from_slice(&text).map_err(|source| FirmwareError::Parse {
                path: path.clone(),
                source,
            })?;
        if let Mapping::Flash(f) = &d.mapping {
            if f.mode == FlashMode::Split && f.nvram_template.is_none() {
                return Err(FirmwareError::MissingTemplate { path });
            }
        }
        out.push((path, d));
    }
    Ok(out)
}

/// Picks the firmware for `want` from the descriptors in `dirs` (see the module docs
/// for the order). A BIOS request no descriptor serves gets [`DEFAULT_BIOS`]; the
/// chosen image must exist.
pub fn select(dirs: &[PathBuf], want: &FirmwareRequest<'_>) -> Result<Selected, FirmwareError> {
    select_with_default_bios(dirs, want, Path::new(DEFAULT_BIOS))
}

fn select_with_default_bios(
    dirs: &[PathBuf],
    want: &FirmwareRequest<'_>,
    default_bios: &Path,
) -> Result<Selected, FirmwareError> {
    let interface = if want.efi { "uefi" } else { "bios" };
    let mut only_with_smm = false;
    for (path, d) in load_descriptors(dirs)? {
        if !d.interface_types.iter().any(|i| i == interface) || !d.runs_on(want.machine) {
            continue;
        }
        let (code, vars_template) = if want.efi {
            match d.uefi_images() {
                Some((code, template)) => (code.to_owned(), Some(template.to_owned())),
                None => continue,
            }
        } else {
            match &d.mapping {
                Mapping::Memory { filename } => (filename.clone(), None),
                Mapping::Flash(_) | Mapping::Kernel { .. } => continue,
            }
        };
        let secure = d.has("secure-boot");
        if want.secure_boot.is_some_and(|sb| sb != secure)
            || want
                .enrolled_keys
                .is_some_and(|k| k != d.has("enrolled-keys"))
        {
            continue;
        }
        if d.has("requires-smm") {
            only_with_smm = true;
            continue;
        }
        check_exists(&code)?;
        return Ok(Selected {
            code,
            vars_template,
            interface: if want.efi {
                Interface::Uefi
            } else {
                Interface::Bios
            },
            secure,
            descriptor: Some(path),
        });
    }
    if want.efi {
        let wants_secure = want.secure_boot == Some(true) || want.enrolled_keys == Some(true);
        return Err(if only_with_smm && wants_secure {
            FirmwareError::SecureBootNeedsSmm
        } else {
            FirmwareError::NoMatch { what: "efi" }
        });
    }
    check_exists(default_bios)?;
    Ok(Selected {
        code: default_bios.to_owned(),
        vars_template: None,
        interface: Interface::Bios,
        secure: false,
        descriptor: None,
    })
}

/// For an explicit `<loader type='pflash'>` without `<nvram template>`: the UEFI
/// descriptor whose code image is `loader` (compared as written, as libvirt does),
/// which gives the template.
pub fn select_for_loader(
    dirs: &[PathBuf],
    loader: &Path,
    machine: &str,
) -> Result<Selected, FirmwareError> {
    for (path, d) in load_descriptors(dirs)? {
        if !d.interface_types.iter().any(|i| i == "uefi") || !d.runs_on(machine) {
            continue;
        }
        let Some((code, template)) = d.uefi_images() else {
            continue;
        };
        if code != loader {
            continue;
        }
        if d.has("requires-smm") {
            return Err(FirmwareError::RequiresSmm {
                loader: loader.to_owned(),
            });
        }
        return Ok(Selected {
            code: code.to_owned(),
            vars_template: Some(template.to_owned()),
            interface: Interface::Uefi,
            secure: d.has("secure-boot"),
            descriptor: Some(path),
        });
    }
    Err(FirmwareError::NoVarsTemplate {
        loader: loader.to_owned(),
    })
}

fn check_exists(path: &Path) -> Result<(), FirmwareError> {
    if path.is_file() {
        return Ok(());
    }
    let package = if path.starts_with("/usr/share/seabios") {
        Some("seabios")
    } else if path.starts_with("/usr/share/OVMF") {
        Some("ovmf")
    } else {
        None
    };
    Err(FirmwareError::MissingFile {
        path: path.to_owned(),
        package,
    })
}

/// Whether the descriptor's machine glob `pattern` covers the domain's `machine`.
/// Bare `q35` and `pc` (QEMU's aliases for the newest versioned types) are treated as
/// `pc-q35-*` and `pc-i440fx-*`: they match a pattern that covers every version of
/// their family (`pc-q35-*`, `pc-*`, `*`), not one naming particular versions.
fn machine_matches(pattern: &str, machine: &str) -> bool {
    let family = match machine {
        "q35" => Some("pc-q35-"),
        "pc" => Some("pc-i440fx-"),
        _ => None,
    };
    glob(pattern.as_bytes(), machine.as_bytes())
        || family.is_some_and(|f| glob(pattern.as_bytes(), f.as_bytes()))
}

/// GLib's `g_pattern_match_simple`: `*` matches any run (also empty), `?` one byte.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with one backtrack point (the last `*`).
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A descriptor of Debian's shape.
    fn descriptor(code: &Path, vars: &Path, machines: &[&str], features: &[&str]) -> String {
        serde_json::json!({
            "description": "UEFI firmware for x86_64",
            "interface-types": ["uefi"],
            "mapping": {
                "device": "flash",
                "executable": { "filename": code, "format": "raw" },
                "nvram-template": { "filename": vars, "format": "raw" }
            },
            "targets": [{ "architecture": "x86_64", "machines": machines }],
            "features": features,
            "tags": []
        })
        .to_string()
    }

    /// A temp tree like Debian's: /usr/share/qemu/firmware with the three edk2
    /// descriptors, the images they name, an empty /etc/qemu/firmware and a SeaBIOS.
    struct Tree {
        root: tempfile::TempDir,
    }

    impl Tree {
        fn debian() -> Tree {
            let root = tempfile::tempdir().unwrap();
            let t = Tree { root };
            for d in ["etc", "share", "OVMF", "seabios"] {
                fs::create_dir_all(t.p(d)).unwrap();
            }
            for f in [
                "OVMF_CODE_4M.fd",
                "OVMF_CODE_4M.ms.fd",
                "OVMF_CODE_4M.secboot.fd",
                "OVMF_VARS_4M.fd",
                "OVMF_VARS_4M.ms.fd",
            ] {
                fs::write(t.p("OVMF").join(f), [0u8; 16]).unwrap();
            }
            fs::write(t.p("seabios/bios-256k.bin"), [0u8; 16]).unwrap();
            let q35 = ["pc-q35-*"];
            let both = ["pc-i440fx-*", "pc-q35-*"];
            let common = ["acpi-s3", "amd-sev", "verbose-dynamic"];
            let smm_sb = [&common[..], &["requires-smm", "secure-boot"]].concat();
            let smm_sb_keys = [&smm_sb[..], &["enrolled-keys"]].concat();
            t.write_descriptor(
                "share",
                "40-edk2-x86_64-secure-enrolled.json",
                "OVMF_CODE_4M.ms.fd",
                "OVMF_VARS_4M.ms.fd",
                &q35,
                &smm_sb_keys,
            );
            t.write_descriptor(
                "share",
                "50-edk2-x86_64-secure.json",
                "OVMF_CODE_4M.secboot.fd",
                "OVMF_VARS_4M.fd",
                &q35,
                &smm_sb,
            );
            t.write_descriptor(
                "share",
                "60-edk2-x86_64.json",
                "OVMF_CODE_4M.fd",
                "OVMF_VARS_4M.fd",
                &both,
                &common,
            );
            t
        }

        fn p(&self, rel: &str) -> PathBuf {
            self.root.path().join(rel)
        }

        fn write_descriptor(
            &self,
            dir: &str,
            name: &str,
            code: &str,
            vars: &str,
            machines: &[&str],
            features: &[&str],
        ) {
            let text = descriptor(
                &self.p("OVMF").join(code),
                &self.p("OVMF").join(vars),
                machines,
                features,
            );
            fs::write(self.p(dir).join(name), text).unwrap();
        }

        fn dirs(&self) -> Vec<PathBuf> {
            vec![self.p("etc"), self.p("share")]
        }

        fn select(&self, want: &FirmwareRequest<'_>) -> Result<Selected, FirmwareError> {
            select_with_default_bios(&self.dirs(), want, &self.p("seabios/bios-256k.bin"))
        }
    }

    fn efi(machine: &str) -> FirmwareRequest<'_> {
        FirmwareRequest {
            efi: true,
            secure_boot: None,
            enrolled_keys: None,
            machine,
        }
    }

    #[test]
    fn plain_efi_skips_the_smm_builds_and_picks_60_edk2() {
        let t = Tree::debian();
        for machine in ["q35", "pc-q35-7.2", "pc", "pc-i440fx-7.2"] {
            let s = t.select(&efi(machine)).unwrap();
            assert_eq!(s.code, t.p("OVMF/OVMF_CODE_4M.fd"), "{machine}");
            assert_eq!(s.vars_template, Some(t.p("OVMF/OVMF_VARS_4M.fd")));
            assert_eq!(s.interface, Interface::Uefi);
            assert!(!s.secure);
            assert_eq!(s.descriptor, Some(t.p("share/60-edk2-x86_64.json")));
        }
        // Refusing secure boot explicitly lands on the same build.
        let want = FirmwareRequest {
            secure_boot: Some(false),
            ..efi("q35")
        };
        assert_eq!(t.select(&want).unwrap().code, t.p("OVMF/OVMF_CODE_4M.fd"));
    }

    #[test]
    fn secure_boot_is_refused_for_want_of_smm() {
        let t = Tree::debian();
        for want in [
            FirmwareRequest {
                secure_boot: Some(true),
                ..efi("q35")
            },
            FirmwareRequest {
                enrolled_keys: Some(true),
                ..efi("pc-q35-7.2")
            },
        ] {
            let e = t.select(&want).unwrap_err();
            assert!(matches!(e, FirmwareError::SecureBootNeedsSmm), "{e}");
            assert_eq!(
                e.to_string(),
                "unsupported configuration: secure boot requires SMM, which oxvirt does not provide yet"
            );
            assert_eq!(e.code(), crate::VIR_ERR_CONFIG_UNSUPPORTED);
        }
        // A secure-boot build without SMM (a user's own) would be taken.
        t.write_descriptor(
            "etc",
            "30-my-sb.json",
            "OVMF_CODE_4M.fd",
            "OVMF_VARS_4M.ms.fd",
            &["pc-q35-*"],
            &["secure-boot"],
        );
        let s = t
            .select(&FirmwareRequest {
                secure_boot: Some(true),
                ..efi("q35")
            })
            .unwrap();
        assert!(s.secure);
        assert_eq!(s.vars_template, Some(t.p("OVMF/OVMF_VARS_4M.ms.fd")));
    }

    #[test]
    fn nothing_matching_gives_libvirts_error() {
        let t = Tree::debian();
        let e = t.select(&efi("microvm")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "operation failed: Unable to find any firmware to satisfy 'efi'"
        );
        assert_eq!(e.code(), 9);
        // No descriptors at all.
        let empty = tempfile::tempdir().unwrap();
        let e = select(&[empty.path().join("none")], &efi("q35")).unwrap_err();
        assert!(matches!(e, FirmwareError::NoMatch { what: "efi" }));
    }

    #[test]
    fn user_dir_overrides_and_masks_by_file_name() {
        let t = Tree::debian();
        // Same name in /etc: replaces the packaged 60-edk2 (i440fx only now).
        t.write_descriptor(
            "etc",
            "60-edk2-x86_64.json",
            "OVMF_CODE_4M.ms.fd",
            "OVMF_VARS_4M.fd",
            &["pc-i440fx-*"],
            &[],
        );
        assert!(matches!(
            t.select(&efi("q35")),
            Err(FirmwareError::NoMatch { .. })
        ));
        let s = t.select(&efi("pc")).unwrap();
        assert_eq!(s.code, t.p("OVMF/OVMF_CODE_4M.ms.fd"));
        assert_eq!(s.descriptor, Some(t.p("etc/60-edk2-x86_64.json")));
        // An empty file masks it entirely.
        fs::write(t.p("etc/60-edk2-x86_64.json"), "").unwrap();
        assert!(t.select(&efi("pc")).is_err());
        let names: Vec<_> = load_descriptors(&t.dirs())
            .unwrap()
            .into_iter()
            .map(|(p, _)| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            vec![
                "40-edk2-x86_64-secure-enrolled.json",
                "50-edk2-x86_64-secure.json"
            ]
        );
        // A lower file name sorts first and wins.
        t.write_descriptor(
            "share",
            "10-first.json",
            "OVMF_CODE_4M.secboot.fd",
            "OVMF_VARS_4M.ms.fd",
            &["pc-*"],
            &[],
        );
        // Not *.json: ignored.
        fs::write(t.p("etc/05-broken.json.dpkg-old"), "{").unwrap();
        let s = t.select(&efi("q35")).unwrap();
        assert_eq!(s.descriptor, Some(t.p("share/10-first.json")));
    }

    #[test]
    fn bios_defaults_to_seabios_and_names_the_package_when_missing() {
        let t = Tree::debian();
        let want = FirmwareRequest {
            efi: false,
            secure_boot: None,
            enrolled_keys: None,
            machine: "pc-q35-7.2",
        };
        let s = t.select(&want).unwrap();
        assert_eq!(s.code, t.p("seabios/bios-256k.bin"));
        assert_eq!(
            (s.interface, s.vars_template, s.descriptor),
            (Interface::Bios, None, None)
        );
        let e = select_with_default_bios(
            &t.dirs(),
            &want,
            Path::new(DEFAULT_BIOS).with_extension("nope").as_path(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "operation failed: firmware file '/usr/share/seabios/bios-256k.nope' does not exist (install the Debian package 'seabios')"
        );
        // A BIOS descriptor (Fedora ships one) is preferred to the default.
        let bios = serde_json::json!({
            "interface-types": ["bios"],
            "mapping": { "device": "memory", "filename": t.p("seabios/bios-256k.bin") },
            "targets": [{ "architecture": "x86_64", "machines": ["pc-*"] }],
            "features": [], "tags": []
        });
        fs::write(t.p("share/50-seabios-256k.json"), bios.to_string()).unwrap();
        let s = t.select(&want).unwrap();
        assert_eq!(s.descriptor, Some(t.p("share/50-seabios-256k.json")));
    }

    #[test]
    fn chosen_image_must_exist() {
        let t = Tree::debian();
        fs::remove_file(t.p("OVMF/OVMF_CODE_4M.fd")).unwrap();
        let e = t.select(&efi("q35")).unwrap_err();
        assert!(
            matches!(e, FirmwareError::MissingFile { package: None, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("OVMF_CODE_4M.fd"), "{e}");
    }

    #[test]
    fn bad_descriptors_are_named() {
        let t = Tree::debian();
        fs::write(t.p("etc/70-bad.json"), "{\"interface-types\": [\"uefi\"]}").unwrap();
        let e = t.select(&efi("q35")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "internal error: unable to parse json file '{}'",
                t.p("etc/70-bad.json").display()
            )
        );
        let no_template = serde_json::json!({
            "interface-types": ["uefi"],
            "mapping": { "device": "flash", "executable": { "filename": "/x", "format": "raw" } },
            "targets": [], "features": []
        });
        fs::write(t.p("etc/70-bad.json"), no_template.to_string()).unwrap();
        let e = t.select(&efi("q35")).unwrap_err();
        assert!(matches!(e, FirmwareError::MissingTemplate { .. }), "{e}");
        // Stateless, combined and qcow2 flash parse but are never chosen.
        let stateless = serde_json::json!({
            "interface-types": ["uefi"],
            "mapping": { "device": "flash", "mode": "stateless",
                         "executable": { "filename": t.p("OVMF/OVMF_CODE_4M.ms.fd"), "format": "raw" } },
            "targets": [{ "architecture": "x86_64", "machines": ["*"] }], "features": []
        });
        fs::write(t.p("etc/70-bad.json"), stateless.to_string()).unwrap();
        t.write_descriptor("etc", "01-qcow2.json", "a.qcow2", "b.qcow2", &["*"], &[]);
        let text = fs::read_to_string(t.p("etc/01-qcow2.json"))
            .unwrap()
            .replace("\"raw\"", "\"qcow2\"");
        fs::write(t.p("etc/01-qcow2.json"), text).unwrap();
        let s = t.select(&efi("q35")).unwrap();
        assert_eq!(s.descriptor, Some(t.p("share/60-edk2-x86_64.json")));
    }

    #[test]
    fn explicit_loader_finds_its_template() {
        let t = Tree::debian();
        let code = t.p("OVMF/OVMF_CODE_4M.fd");
        let s = select_for_loader(&t.dirs(), &code, "q35").unwrap();
        assert_eq!(s.vars_template, Some(t.p("OVMF/OVMF_VARS_4M.fd")));
        let e =
            select_for_loader(&t.dirs(), &t.p("OVMF/OVMF_CODE_4M.secboot.fd"), "q35").unwrap_err();
        assert!(matches!(e, FirmwareError::RequiresSmm { .. }), "{e}");
        let e = select_for_loader(&t.dirs(), Path::new("/opt/fw/CODE.fd"), "q35").unwrap_err();
        assert_eq!(
            e.to_string(),
            "operation failed: unable to find any master var store for loader: /opt/fw/CODE.fd"
        );
    }

    #[test]
    fn machine_globs() {
        assert!(machine_matches("pc-q35-*", "pc-q35-7.2"));
        assert!(machine_matches("pc-q35-*", "q35"));
        assert!(machine_matches("pc-i440fx-*", "pc"));
        assert!(machine_matches("pc-*", "q35"));
        assert!(machine_matches("*", "pc"));
        assert!(machine_matches("pc-q35-?.2", "pc-q35-7.2"));
        assert!(!machine_matches("pc-q35-*", "pc"));
        assert!(!machine_matches("pc-i440fx-*", "q35"));
        assert!(!machine_matches("pc-q35-7.*", "q35"));
        assert!(!machine_matches("pc-q35-*", "pc-i440fx-7.2"));
        assert!(!machine_matches("pc-q35-*", "microvm"));
        assert!(glob(b"a*b*c", b"aXXbYYc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
        assert!(glob(b"", b""));
        assert!(!glob(b"", b"a"));
    }

    #[test]
    fn nvram_paths_follow_libvirt() {
        assert_eq!(
            default_nvram_path(Path::new(SYSTEM_NVRAM_DIR), "win11"),
            Path::new("/var/lib/oxvirt/nvram/win11_VARS.fd")
        );
        assert_eq!(
            default_nvram_path(Path::new("/home/u/.local/share/oxvirt/nvram"), "deb"),
            Path::new("/home/u/.local/share/oxvirt/nvram/deb_VARS.fd")
        );
        assert_eq!(
            descriptor_dirs(Some(Path::new("/home/u/.config"))),
            vec![
                PathBuf::from("/home/u/.config/qemu/firmware"),
                PathBuf::from("/etc/qemu/firmware"),
                PathBuf::from("/usr/share/qemu/firmware"),
            ]
        );
        assert_eq!(descriptor_dirs(None).len(), 2);
    }

    /// Against the real system directories: Debian's `ovmf` must give 60-edk2.
    #[test]
    fn system_descriptors_select_the_non_smm_build() {
        let dirs = descriptor_dirs(None);
        let debian = Path::new("/usr/share/qemu/firmware/60-edk2-x86_64.json");
        if !debian.exists() {
            use std::io::Write;
            let bar = "*".repeat(78);
            let _ = std::io::stderr().write_all(
                format!(
                    "\n{bar}\n*** SKIPPED: firmware::system_descriptors_select_the_non_smm_build: {} is absent (apt-get install ovmf)\n{bar}\n",
                    debian.display()
                )
                .as_bytes(),
            );
            return;
        }
        let s = select(&dirs, &efi("q35")).unwrap();
        assert_eq!(s.code, Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd"));
        assert_eq!(
            s.vars_template.as_deref(),
            Some(Path::new("/usr/share/OVMF/OVMF_VARS_4M.fd"))
        );
        assert!(!s.secure);
        let sb = FirmwareRequest {
            secure_boot: Some(true),
            ..efi("q35")
        };
        assert!(matches!(
            select(&dirs, &sb),
            Err(FirmwareError::SecureBootNeedsSmm)
        ));
        let s =
            select_for_loader(&dirs, Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd"), "pc").unwrap();
        assert!(s.vars_template.is_some());
    }
}

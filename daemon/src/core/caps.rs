//! The capabilities documents (`virConnectGetCapabilities`,
//! `virConnectGetDomainCapabilities`), one builder for every front end, saying only
//! what oxvirt runs: what the translation (`domain_xml::translate`) accepts and the
//! firmware installed on this host.
//!
//! Shapes follow libvirt 9.0's QEMU driver (`virsh capabilities`, `virsh
//! domcapabilities` against Debian 12's libvirtd); the values are oxvirt's:
//!
//! * machine types: `pc-i440fx-7.2` (alias `pc`, the default) and `pc-q35-7.2` (alias
//!   `q35`), named as QEMU 7.2 names them; versioned names of both families are
//!   accepted and echoed as libvirt does;
//! * firmware: `bios` (SeaBIOS) whenever it is installed, `efi` on Q35 only and only
//!   when the firmware descriptors name an OVMF build that needs no SMM (oxvirt has
//!   none); the `<loader>` values are those builds, found through the descriptors
//!   exactly as `<os firmware='efi'>` finds them at define time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use domain_xml::firmware::{self, FirmwareRequest, Interface, Mapping};
use machine_spec::Chipset;

use super::{Core, Error, Result};

/// QEMU's current machine types (the version Debian 12 ships), as libvirt names them:
/// `(canonical, alias, chipset)`, in the order `virsh capabilities` lists them.
const MACHINES: [(&str, &str, Chipset); 2] = [
    ("pc-i440fx-7.2", "pc", Chipset::I440fx),
    ("pc-q35-7.2", "q35", Chipset::Q35),
];

/// The one guest architecture oxvirt runs.
const ARCH: &str = "x86_64";

/// What a `virConnectGetDomainCapabilities` call asks about; empty strings (D-Bus
/// passes them for "default") count as absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct DomainCapsQuery<'a> {
    pub emulatorbin: Option<&'a str>,
    pub arch: Option<&'a str>,
    pub machine: Option<&'a str>,
    pub virttype: Option<&'a str>,
}

impl Core {
    /// `virConnectGetCapabilities`.
    pub fn capabilities(&self) -> String {
        capabilities(&self.config().vmm, &self.dac_baselabel())
    }

    /// Who VMMs run as, libvirt's `+UID:+GID` (its DAC driver's base label): the
    /// configured `vmm_user` of a root daemon, else the daemon's own ids.
    fn dac_baselabel(&self) -> String {
        let own = || format!("+{}:+{}", nix::unistd::geteuid(), nix::unistd::getegid());
        match &self.config().vmm_user {
            Some(u) if nix::unistd::geteuid().is_root() => {
                match super::supervise::VmmIds::resolve(u) {
                    Ok(Some(ids)) => ids.numeric(),
                    _ => own(),
                }
            }
            _ => own(),
        }
    }

    /// `virConnectGetDomainCapabilities` (libvirt 9.0 knows no flags).
    pub fn domain_capabilities(&self, q: &DomainCapsQuery<'_>, flags: u32) -> Result<String> {
        Error::check_flags(flags, 0, "virConnectGetDomainCapabilities")?;
        let vmm = &self.config().vmm;
        domain_capabilities(
            vmm,
            &domain_xml::translate_firmware::descriptor_dirs(),
            q,
            super::cpu::probe(vmm).ok().as_ref(),
        )
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Online host CPUs from `/sys/devices/system/cpu/online` (`0-3,6`).
fn online_cpus() -> Vec<u32> {
    let Some(text) = read("/sys/devices/system/cpu/online") else {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        return (0..n).collect();
    };
    let mut cpus = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
            cpus.extend(a..=b);
        }
    }
    cpus
}

fn mem_total_kib() -> u64 {
    read("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The host UUID: SMBIOS's (what libvirt reports, readable by root), else
/// `/etc/machine-id` in UUID form.
fn host_uuid() -> String {
    if let Some(u) = read("/sys/class/dmi/id/product_uuid").filter(|u| !u.is_empty()) {
        return u.to_ascii_lowercase();
    }
    let id: String = read("/etc/machine-id")
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    if id.len() != 32 {
        return "00000000-0000-0000-0000-000000000000".into();
    }
    format!(
        "{}-{}-{}-{}-{}",
        &id[0..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    )
}

/// `virConnectGetCapabilities`: the host and the one guest type oxvirt runs (x86_64
/// hvm under KVM on `vmm`), with the machine types it runs.
pub fn capabilities(vmm: &Path, dac_label: &str) -> String {
    let cpus = online_cpus();
    let n = cpus.len().max(1);
    let mut x = String::new();
    let host = super::cpu::probe(vmm).ok();
    let (model, features) = super::cpu::host_caps_cpu(host.as_ref());
    let _ = write!(
        x,
        "<capabilities>\n\n  <host>\n    <uuid>{uuid}</uuid>\n    <cpu>\n      <arch>{ARCH}</arch>\n\
         {model}      <topology sockets='1' dies='1' cores='{n}' threads='1'/>\n{features}    </cpu>\n    \
         <power_management/>\n    <iommu support='no'/>\n    <topology>\n      <cells num='1'>\n        \
         <cell id='0'>\n          <memory unit='KiB'>{mem}</memory>\n          <cpus num='{n}'>\n",
        uuid = escape(&host_uuid()),
        mem = mem_total_kib(),
    );
    for (core, id) in cpus.iter().enumerate() {
        let _ = writeln!(
            x,
            "            <cpu id='{id}' socket_id='0' die_id='0' core_id='{core}' siblings='{id}'/>"
        );
    }
    let _ = write!(
        x,
        "          </cpus>\n        </cell>\n      </cells>\n    </topology>\n    <secmodel>\n      \
         <model>none</model>\n      <doi>0</doi>\n    </secmodel>\n    <secmodel>\n      \
         <model>dac</model>\n      <doi>0</doi>\n      \
         <baselabel type='kvm'>{dac}</baselabel>\n      \
         <baselabel type='qemu'>{dac}</baselabel>\n    </secmodel>\n  </host>\n\n  <guest>\n    \
         <os_type>hvm</os_type>\n    <arch name='{ARCH}'>\n      <wordsize>64</wordsize>\n      \
         <emulator>{}</emulator>\n",
        escape(&vmm.display().to_string()),
        dac = escape(dac_label),
    );
    let max = domain_xml::MAX_VCPUS;
    for (canonical, alias, _) in MACHINES {
        let _ = write!(
            x,
            "      <machine maxCpus='{max}'>{canonical}</machine>\n      \
             <machine canonical='{canonical}' maxCpus='{max}'>{alias}</machine>\n"
        );
    }
    x.push_str(
        "      <domain type='kvm'/>\n    </arch>\n    <features>\n      \
         <acpi default='on' toggle='yes'/>\n      <apic default='on' toggle='no'/>\n    \
         </features>\n  </guest>\n\n</capabilities>\n",
    );
    x
}

/// The machine type a domain-capabilities call is about, as libvirt names it in the
/// answer (aliases resolved, versioned names kept), and its chipset.
fn machine(vmm: &Path, asked: Option<&str>) -> Result<(String, Chipset)> {
    let Some(m) = asked else {
        let (canonical, _, chipset) = MACHINES[0];
        return Ok((canonical.into(), chipset));
    };
    if let Some((canonical, _, chipset)) = MACHINES.iter().find(|(_, alias, _)| *alias == m) {
        return Ok(((*canonical).into(), *chipset));
    }
    // The versioned names translation runs (`pc-q35-*`, `pc-i440fx-*`).
    let chipset = if m.strip_prefix("pc-q35-").is_some_and(|v| !v.is_empty()) {
        Chipset::Q35
    } else if m.strip_prefix("pc-i440fx-").is_some_and(|v| !v.is_empty()) {
        Chipset::I440fx
    } else {
        return Err(Error::InvalidArg(format!(
            "the machine '{m}' is not supported by emulator '{}'",
            vmm.display()
        )));
    };
    Ok((m.into(), chipset))
}

/// What the firmware of one machine type can be.
#[derive(Debug, Default, PartialEq, Eq)]
struct FirmwareCaps {
    /// `<os firmware='bios'>` (or no firmware) finds a BIOS image.
    bios: bool,
    /// `<os firmware='efi'>` finds an OVMF build oxvirt runs.
    efi: bool,
    /// `<loader>` images the descriptors name for this machine, usable by oxvirt.
    loaders: Vec<PathBuf>,
}

fn firmware_caps(dirs: &[PathBuf], machine: &str, chipset: Chipset) -> FirmwareCaps {
    let want = |efi| FirmwareRequest {
        efi,
        secure_boot: None,
        enrolled_keys: None,
        machine,
    };
    let bios = firmware::select(dirs, &want(false)).ok();
    // UEFI runs on Q35 only (translation refuses it on i440FX).
    let uefi_ok = chipset == Chipset::Q35;
    let efi = uefi_ok && firmware::select(dirs, &want(true)).is_ok();
    let descriptors = firmware::load_descriptors(dirs).unwrap_or_else(|e| {
        tracing::warn!("firmware descriptors: {e}");
        Vec::new()
    });
    let mut loaders: Vec<PathBuf> = Vec::new();
    for (_, d) in &descriptors {
        let image = match &d.mapping {
            // A UEFI build: usable when the descriptor that names this code image is
            // one translation takes for an explicit <loader> (split raw flash, this
            // machine, no SMM).
            Mapping::Flash(f) if uefi_ok => {
                let code = &f.executable.filename;
                firmware::select_for_loader(dirs, code, machine)
                    .ok()
                    .map(|_| code.clone())
            }
            // A BIOS image from a descriptor: the one `firmware='bios'` picks.
            Mapping::Memory { filename } => bios
                .as_ref()
                .filter(|s| {
                    s.interface == Interface::Bios && s.descriptor.is_some() && &s.code == filename
                })
                .map(|s| s.code.clone()),
            Mapping::Flash(_) | Mapping::Kernel { .. } => None,
        };
        if let Some(image) = image {
            // libvirt lists each image once, and only when it exists.
            if image.is_file() && !loaders.contains(&image) {
                loaders.push(image);
            }
        }
    }
    FirmwareCaps {
        bios: bios.is_some(),
        efi,
        loaders,
    }
}

/// An argument that was given: absent and empty are the same.
/// The `<devices>` of domain capabilities: exactly what translates and runs, because
/// virt-install and virt-manager pick every default from it (a value listed here that
/// does not run makes them write XML we refuse). `None` is `supported='no'`.
type DeviceCaps = (
    &'static str,
    Option<Vec<(&'static str, &'static [&'static str])>>,
);

fn device_caps() -> Vec<DeviceCaps> {
    // AHCI exists on both chipsets (built in on Q35, a PCI function on i440FX).
    vec![
        (
            "disk",
            Some(vec![
                ("diskDevice", &["disk", "cdrom"][..]),
                ("bus", &["virtio", "scsi", "sata"][..]),
                ("model", &["virtio"][..]),
            ]),
        ),
        // VNC only (SPICE domains are served as VNC, but offering spice would make
        // virt-install add spicevmc channels and usbredirs for it).
        ("graphics", Some(vec![("type", &["vnc"][..])])),
        (
            "video",
            Some(vec![("modelType", &["vga", "bochs", "virtio", "none"][..])]),
        ),
        ("hostdev", None),
        (
            "rng",
            Some(vec![
                ("model", &["virtio"][..]),
                ("backendModel", &["random"][..]),
            ]),
        ),
        ("filesystem", None),
        ("tpm", super::tpmstate::caps()),
        ("redirdev", None),
    ]
}

fn given(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

/// `virConnectGetDomainCapabilities` for x86_64 KVM guests on `vmm`: what a domain
/// may ask for and oxvirt can run; `dirs` are the firmware descriptor directories.
pub fn domain_capabilities(
    vmm: &Path,
    dirs: &[PathBuf],
    q: &DomainCapsQuery<'_>,
    host_cpu: Option<&machine_spec::cpu_models::HostCpu>,
) -> Result<String> {
    if let Some(bin) = given(q.emulatorbin) {
        // Any existing binary gets oxvirt's answer: a domain's <emulator> has no
        // effect, every domain runs on oxvirt-vmm.
        if let Err(e) = std::fs::metadata(bin) {
            return Err(Error::System(format!(
                "Cannot check QEMU binary {bin}: {e}"
            )));
        }
    }
    if let Some(arch) = given(q.arch) {
        if arch != ARCH {
            return Err(Error::ConfigUnsupported(format!(
                "unable to find any emulator to serve '{arch}' architecture"
            )));
        }
    }
    // `qemu` domains are accepted too (and run under KVM like `kvm` ones).
    let virttype = given(q.virttype).unwrap_or("kvm");
    if virttype != "kvm" && virttype != "qemu" {
        return Err(Error::InvalidArg(format!(
            "the accel '{virttype}' is not supported by '{}' on this host",
            vmm.display()
        )));
    }
    let (machine, chipset) = machine(vmm, given(q.machine))?;
    let fw = firmware_caps(dirs, &machine, chipset);

    let mut x = String::new();
    let _ = write!(
        x,
        "<domainCapabilities>\n  <path>{path}</path>\n  <domain>{virttype}</domain>\n  \
         <machine>{machine}</machine>\n  <arch>{ARCH}</arch>\n  <vcpu max='{max}'/>\n  \
         <iothreads supported='no'/>\n  <os supported='yes'>\n",
        path = escape(&vmm.display().to_string()),
        machine = escape(&machine),
        max = domain_xml::MAX_VCPUS,
    );
    let enum_ = |x: &mut String, indent: &str, name: &str, values: &[&str]| {
        if values.is_empty() {
            let _ = writeln!(x, "{indent}<enum name='{name}'/>");
            return;
        }
        let _ = writeln!(x, "{indent}<enum name='{name}'>");
        for v in values {
            let _ = writeln!(x, "{indent}  <value>{v}</value>");
        }
        let _ = writeln!(x, "{indent}</enum>");
    };
    let mut firmwares = Vec::new();
    if fw.bios {
        firmwares.push("bios");
    }
    if fw.efi {
        firmwares.push("efi");
    }
    enum_(&mut x, "    ", "firmware", &firmwares);
    x.push_str("    <loader supported='yes'>\n");
    for l in &fw.loaders {
        let _ = writeln!(
            x,
            "      <value>{}</value>",
            escape(&l.display().to_string())
        );
    }
    // `rom` is a BIOS image; `pflash` means UEFI, which needs Q35 and an OVMF build.
    let types: &[&str] = if fw.efi { &["rom", "pflash"] } else { &["rom"] };
    enum_(&mut x, "      ", "type", types);
    // The code image is always mapped read-only; no secure boot without SMM.
    enum_(&mut x, "      ", "readonly", &["yes"]);
    enum_(&mut x, "      ", "secure", &["no"]);
    x.push_str("    </loader>\n  </os>\n");
    // `migratable='on'` (what virt-install writes when it is offered) hides the
    // features that pin a guest to this host; both values translate.
    x.push_str(&super::cpu::domcaps_cpu(host_cpu));
    x.push_str(
        "  <memoryBacking supported='yes'>\n    \
         <enum name='sourceType'>\n      <value>anonymous</value>\n      <value>memfd</value>\n    </enum>\n  \
         </memoryBacking>\n  <devices>\n",
    );
    for (element, enums) in device_caps() {
        let Some(enums) = enums else {
            let _ = writeln!(x, "    <{element} supported='no'/>");
            continue;
        };
        let _ = writeln!(x, "    <{element} supported='yes'>");
        for (name, values) in enums {
            enum_(&mut x, "      ", name, values);
        }
        let _ = writeln!(x, "    </{element}>");
    }
    x.push_str(
        "  </devices>\n  <features>\n    <gic supported='no'/>\n    <vmcoreinfo supported='no'/>\n    \
         <genid supported='no'/>\n    <backingStoreInput supported='no'/>\n    <backup supported='no'/>\n    \
         <sev supported='no'/>\n    <sgx supported='no'/>\n  </features>\n</domainCapabilities>\n",
    );
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A descriptor directory with Debian's three OVMF descriptors (pointing at
    /// images under `root`) and the images themselves.
    fn debian_like(root: &Path) -> Vec<PathBuf> {
        let dir = root.join("firmware");
        std::fs::create_dir_all(&dir).unwrap();
        let img = |name: &str| {
            let p = root.join(name);
            std::fs::write(&p, b"x").unwrap();
            p.display().to_string()
        };
        let desc = |file: &str, code: &str, vars: &str, machines: &str, features: &str| {
            let json = format!(
                r#"{{"description":"x","interface-types":["uefi"],
                "mapping":{{"device":"flash","mode":"split",
                  "executable":{{"filename":"{}","format":"raw"}},
                  "nvram-template":{{"filename":"{}","format":"raw"}}}},
                "targets":[{{"architecture":"x86_64","machines":[{machines}]}}],
                "features":[{features}],"tags":[]}}"#,
                img(code),
                img(vars)
            );
            std::fs::write(dir.join(file), json).unwrap();
        };
        desc(
            "40-edk2-x86_64-secure-enrolled.json",
            "OVMF_CODE_4M.ms.fd",
            "OVMF_VARS_4M.ms.fd",
            r#""pc-q35-*""#,
            r#""requires-smm","secure-boot","enrolled-keys""#,
        );
        desc(
            "50-edk2-x86_64-secure.json",
            "OVMF_CODE_4M.secboot.fd",
            "OVMF_VARS_4M.fd",
            r#""pc-q35-*""#,
            r#""requires-smm","secure-boot""#,
        );
        desc(
            "60-edk2-x86_64.json",
            "OVMF_CODE_4M.fd",
            "OVMF_VARS_4M.fd",
            r#""pc-i440fx-*","pc-q35-*""#,
            r#""acpi-s3""#,
        );
        vec![dir]
    }

    fn q(machine: &str) -> DomainCapsQuery<'_> {
        DomainCapsQuery {
            machine: Some(machine),
            ..Default::default()
        }
    }

    fn doc(x: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(x).unwrap_or_else(|e| panic!("{e}\n{x}"))
    }

    fn values(d: &roxmltree::Document<'_>, parent: &str, name: &str) -> Vec<String> {
        d.descendants()
            .filter(|n| n.has_tag_name("enum") && n.attribute("name") == Some(name))
            .filter(|n| n.parent().is_some_and(|p| p.has_tag_name(parent)))
            .flat_map(|n| n.children().filter(|c| c.has_tag_name("value")))
            .map(|v| v.text().unwrap_or("").to_string())
            .collect()
    }

    fn loaders(d: &roxmltree::Document<'_>) -> Vec<String> {
        d.descendants()
            .filter(|n| n.has_tag_name("value"))
            .filter(|n| n.parent().is_some_and(|p| p.has_tag_name("loader")))
            .map(|v| v.text().unwrap_or("").to_string())
            .collect()
    }

    fn text<'a>(d: &'a roxmltree::Document<'_>, tag: &str) -> &'a str {
        d.descendants()
            .find(|n| n.has_tag_name(tag))
            .and_then(|n| n.text())
            .unwrap_or("")
    }

    const VMM: &str = "/usr/lib/oxvirt/oxvirt-vmm";

    /// `bios` (when Debian's SeaBIOS is installed here) followed by `more`.
    fn with_bios(more: &[&str]) -> Vec<String> {
        let bios = Path::new(firmware::DEFAULT_BIOS).is_file();
        bios.then_some("bios")
            .into_iter()
            .chain(more.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn q35_offers_bios_and_the_ovmf_build_without_smm() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = debian_like(tmp.path());
        let x = domain_capabilities(Path::new(VMM), &dirs, &q("q35"), None).unwrap();
        let d = doc(&x);
        assert_eq!(text(&d, "machine"), "pc-q35-7.2");
        assert_eq!(text(&d, "path"), VMM);
        assert_eq!(text(&d, "domain"), "kvm");
        assert_eq!(values(&d, "os", "firmware"), with_bios(&["efi"]));
        // Only the non-SMM build: the secure ones need SMM.
        let code = tmp.path().join("OVMF_CODE_4M.fd").display().to_string();
        assert_eq!(loaders(&d), [code]);
        assert_eq!(values(&d, "loader", "type"), ["rom", "pflash"]);
        assert_eq!(values(&d, "loader", "readonly"), ["yes"]);
        assert_eq!(values(&d, "loader", "secure"), ["no"]);
        // A versioned name is echoed and answered the same way.
        let v = domain_capabilities(Path::new(VMM), &dirs, &q("pc-q35-6.0"), None).unwrap();
        assert!(v.contains("<machine>pc-q35-6.0</machine>"), "{v}");
        assert_eq!(loaders(&doc(&v)).len(), 1);
    }

    #[test]
    fn i440fx_offers_bios_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = debian_like(tmp.path());
        for m in [None, Some("pc"), Some("pc-i440fx-7.2")] {
            let query = DomainCapsQuery {
                machine: m,
                ..Default::default()
            };
            let x = domain_capabilities(Path::new(VMM), &dirs, &query, None).unwrap();
            let d = doc(&x);
            assert_eq!(text(&d, "machine"), "pc-i440fx-7.2", "{m:?}");
            assert_eq!(values(&d, "os", "firmware"), with_bios(&[]));
            assert!(loaders(&d).is_empty(), "{x}");
            assert_eq!(values(&d, "loader", "type"), ["rom"]);
        }
    }

    #[test]
    fn no_efi_without_an_installed_ovmf_that_needs_no_smm() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = debian_like(tmp.path());
        // Without its image, the non-SMM build is gone; the SMM ones do not count.
        std::fs::remove_file(tmp.path().join("OVMF_CODE_4M.fd")).unwrap();
        let x = domain_capabilities(Path::new(VMM), &dirs, &q("q35"), None).unwrap();
        let d = doc(&x);
        assert!(
            !values(&d, "os", "firmware").contains(&"efi".to_string()),
            "{x}"
        );
        assert!(loaders(&d).is_empty(), "{x}");
        assert_eq!(values(&d, "loader", "type"), ["rom"]);
        // No descriptors at all: the same.
        let none = domain_capabilities(
            Path::new(VMM),
            &[tmp.path().join("nothing")],
            &q("q35"),
            None,
        )
        .unwrap();
        assert!(!none.contains("<value>efi</value>"), "{none}");
    }

    #[test]
    fn arguments_are_checked_like_libvirt() {
        let dirs: Vec<PathBuf> = Vec::new();
        let vmm = Path::new(VMM);
        let call = |q: DomainCapsQuery<'_>| domain_capabilities(vmm, &dirs, &q, None);
        let e = call(q("microvm")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("invalid argument: the machine 'microvm' is not supported by emulator '{VMM}'")
        );
        let e = call(DomainCapsQuery {
            arch: Some("aarch64"),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported configuration: unable to find any emulator to serve 'aarch64' architecture"
        );
        let e = call(DomainCapsQuery {
            virttype: Some("xen"),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.code(), super::super::error::code::INVALID_ARG);
        let e = call(DomainCapsQuery {
            emulatorbin: Some("/nonexistent/qemu"),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Cannot check QEMU binary /nonexistent/qemu: "),
            "{e}"
        );
        // Empty strings (D-Bus) are defaults; explicit defaults are fine too.
        let ok = call(DomainCapsQuery {
            emulatorbin: Some(""),
            arch: Some("x86_64"),
            machine: Some(""),
            virttype: Some("qemu"),
        })
        .unwrap();
        assert!(ok.contains("<domain>qemu</domain>"), "{ok}");
        assert!(ok.contains("<machine>pc-i440fx-7.2</machine>"), "{ok}");
    }

    #[test]
    fn capabilities_list_the_machine_types_with_their_aliases() {
        let caps = capabilities(Path::new("/usr/bin/oxvirt-vmm"), "+994:+994");
        doc(&caps);
        // libvirt's DAC driver beside `none`, with the VMMs' user as its base label.
        assert!(caps.contains(
            "<secmodel>\n      <model>dac</model>\n      <doi>0</doi>\n      \
             <baselabel type='kvm'>+994:+994</baselabel>\n      \
             <baselabel type='qemu'>+994:+994</baselabel>\n    </secmodel>"
        ));
        assert!(caps.contains("<emulator>/usr/bin/oxvirt-vmm</emulator>"));
        assert!(caps.contains("<os_type>hvm</os_type>"));
        assert!(caps.contains("<machine maxCpus='255'>pc-q35-7.2</machine>"));
        assert!(caps.contains("<machine canonical='pc-q35-7.2' maxCpus='255'>q35</machine>"));
        assert!(caps.contains("<machine maxCpus='255'>pc-i440fx-7.2</machine>"));
        assert!(caps.contains("<machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>"));
        assert!(caps.contains(&format!("<arch>{ARCH}</arch>")));
    }
}

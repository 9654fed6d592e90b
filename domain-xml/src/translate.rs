//! [`Domain`] → [`MachineSpec`]: the one place where support is decided. Everything the
//! domain says either reaches the spec, is listed in the crate docs as having no effect
//! on this hypervisor, or is rejected here with `unsupported configuration: …` naming
//! the element.

use std::path::PathBuf;

use machine_spec as ms;

use crate::element::Element;
use crate::error::{Error, Result};
use crate::model::*;

/// The most vCPUs a guest may have (x2APIC-less MADT/APIC id limit).
pub const MAX_VCPUS: u32 = 255;
/// Host socket path for the vsock device, relative to the VMM's runtime directory.
pub const VSOCK_UDS_PATH: &str = "vsock.sock";
/// The first guest CID usable by guests (0-2 are reserved).
const FIRST_GUEST_CID: u32 = 3;

fn unsupported<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::unsupported(msg))
}

/// Translates a parsed (defaulted) domain into the VMM's machine spec.
pub fn translate(dom: &Domain) -> Result<ms::MachineSpec> {
    match dom.domain_type {
        DomainType::Kvm | DomainType::Qemu => {}
        other => {
            return unsupported(format!(
                "domain type '{other}' is not supported (use 'kvm')"
            ))
        }
    }
    if dom.genid.is_some() {
        return unsupported("<genid> (VM generation ID device) is not supported");
    }
    if dom.max_memory.is_some() {
        return unsupported("<maxMemory> (memory hotplug) is not supported");
    }
    for e in &dom.extra {
        extra_element(e)?;
    }
    // Applied by the daemon in the domain's cgroup, not by the VMM.
    let tuned = crate::tuning::tuning(dom)? != crate::tuning::Tuning::default();
    crate::translate_disk_queues::check_iothreads(dom)?;
    let boot = boot(dom)?;
    let mut platform = platform(dom)?;
    platform.rtc = clock(dom)?;
    platform.hyperv = crate::translate_hyperv::hyperv(dom)?;
    if boot.firmware.is_some() {
        platform.chipset = crate::translate_firmware::chipset(dom.os.machine.as_deref())?;
    }
    let mut devices = crate::translate_devices::devices(dom)?;
    if boot.firmware.is_some() {
        crate::translate_firmware::boot_indexes(&dom.os, &mut devices)?;
    } else {
        // Direct kernel boot boots the kernel; boot order means nothing.
        devices.iter_mut().for_each(|d| d.boot_index = None);
    }
    let (graphics, graphics_warnings) = crate::translate_graphics::graphics(&dom.devices)?;
    let spec = ms::MachineSpec {
        version: ms::SPEC_VERSION,
        name: dom.name.clone(),
        uuid: dom.uuid.clone(),
        memory: memory(dom)?,
        cpus: cpus(dom)?,
        boot,
        platform,
        lifecycle: ms::Lifecycle {
            on_poweroff: action(dom.on_poweroff),
            on_reboot: action(dom.on_reboot),
            on_crash: action(dom.on_crash),
        },
        devices,
        graphics,
        warnings: crate::comfort::warnings(dom)
            .into_iter()
            .chain(graphics_warnings)
            .chain(crate::translate_video::warnings(&dom.devices))
            .chain(tuned.then(|| crate::tuning::WARNING.to_string()))
            .collect(),
        files: Vec::new(),
        run_as: crate::translate_seclabel::dac_label(dom)?,
        incoming: None,
    };
    pm(dom)?;
    spec.check().map_err(|e| Error::InvalidArg(e.to_string()))?;
    Ok(spec)
}

fn extra_element(e: &Element) -> Result<()> {
    match e.name.as_str() {
        // The default partition; oxvirt places guests in no cgroup partition of its own.
        "resource" => {
            let partition = e.get_child("partition").map(|p| p.text_content());
            match partition.as_deref() {
                None | Some("/machine") => Ok(()),
                Some(p) => unsupported(format!(
                    "<resource><partition>{p}</partition> is not supported"
                )),
            }
        }
        // Read by crate::translate_seclabel (the user the VMM runs as).
        "seclabel" => Ok(()),
        // Used by firmware boot with <os><smbios mode='sysinfo'> (translate_firmware).
        "sysinfo" => Ok(()),
        // Counted by translate_disk_queues::check_iothreads (queues have their own workers).
        "iothreads" => Ok(()),
        // Checked by crate::tuning (the daemon applies them in the domain's cgroup).
        "memtune" | "blkiotune" => Ok(()),
        name => unsupported(format!("<{name}> is not supported")),
    }
}

fn memory(dom: &Domain) -> Result<ms::Memory> {
    let size_bytes = dom
        .memory
        .checked_mul(1024)
        .ok_or_else(|| Error::InvalidArg(format!("memory size {} KiB is too large", dom.memory)))?;
    let mut m = ms::Memory {
        size_bytes,
        shared: false,
        hugepages: false,
    };
    if let Some(b) = &dom.memory_backing {
        if let Some(pages) = &b.hugepages {
            if !pages.is_empty() {
                return unsupported(
                    "<memoryBacking><hugepages><page> (explicit page sizes) is not supported",
                );
            }
            m.hugepages = true;
        }
        if b.locked {
            return unsupported("<memoryBacking><locked/> is not supported");
        }
        if b.discard {
            return unsupported("<memoryBacking><discard/> is not supported");
        }
        if b.allocation.is_some() {
            return unsupported("<memoryBacking><allocation> is not supported");
        }
        match b.source_type.as_deref() {
            None | Some("anonymous") | Some("memfd") => {}
            Some(t) => {
                return unsupported(format!(
                    "<memoryBacking><source type='{t}'> is not supported"
                ))
            }
        }
        match b.access_mode.as_deref() {
            None | Some("private") => {}
            Some("shared") => m.shared = true,
            Some(x) => {
                return unsupported(format!(
                    "<memoryBacking><access mode='{x}'> is not supported"
                ))
            }
        }
    }
    Ok(m)
}

fn cpus(dom: &Domain) -> Result<ms::Cpus> {
    let v = &dom.vcpu;
    if v.max > MAX_VCPUS {
        return unsupported(format!(
            "<vcpu> {} exceeds the maximum of {MAX_VCPUS} vCPUs",
            v.max
        ));
    }
    if v.placement == Some(Placement::Auto) {
        return unsupported("<vcpu placement='auto'> (numad placement) is not supported");
    }
    if v.cpuset.is_some() {
        return unsupported("<vcpu cpuset> (host CPU pinning) is not supported");
    }
    // <cputune> is checked by crate::tuning (shares/period/quota go to the cgroup).
    let mut cpus = ms::Cpus {
        count: v.online(),
        max: v.max,
        topology: ms::Topology {
            sockets: v.max,
            dies: 1,
            cores: 1,
            threads: 1,
        },
        mode: ms::CpuMode::HostPassthrough,
        features: Vec::new(),
        model: None,
    };
    let Some(c) = &dom.cpu else {
        return Ok(cpus);
    };
    if let Some(t) = c.topology {
        cpus.topology = ms::Topology {
            sockets: t.sockets,
            dies: t.dies,
            cores: t.cores,
            threads: t.threads,
        };
    }
    cpus.mode = match c.mode {
        Some(CpuModeAttr::HostPassthrough) => ms::CpuMode::HostPassthrough,
        Some(CpuModeAttr::HostModel) => ms::CpuMode::HostModel,
        Some(CpuModeAttr::Maximum) => ms::CpuMode::Maximum,
        Some(CpuModeAttr::Custom) | None => {
            if c.model.as_ref().is_some_and(|m| m.name.is_some()) {
                ms::CpuMode::Custom
            } else {
                ms::CpuMode::HostPassthrough
            }
        }
    };
    if let Some(m) = &c.model {
        if m.vendor_id.is_some() {
            return unsupported("<cpu><model vendor_id> is not supported");
        }
    }
    cpus.model = cpu_model(c)?;
    if let Some(v) = &c.vendor {
        // The live XML of a custom or host-model CPU names the vendor (as libvirt
        // writes it): the model's own, or for a vendor-neutral model (qemu64,
        // pentium3, …) the host's, which the guest keeps. Any other vendor would
        // ask for a host check the translation cannot make.
        let model = cpus
            .model
            .as_ref()
            .and_then(|m| ms::cpu_models::find(&m.name));
        let fits =
            model.is_some_and(|m| m.vendor.is_none_or(|mv| mv.name().eq_ignore_ascii_case(v)));
        if !fits {
            return unsupported("<cpu><vendor> other than the model's vendor is not supported");
        }
    }
    if c.cache.is_some() {
        return unsupported("<cpu><cache> is not supported");
    }
    if c.numa.is_some() {
        return unsupported("<cpu><numa> (guest NUMA topology) is not supported");
    }
    cpus.features = c
        .features
        .iter()
        .map(|f| ms::CpuFeature {
            name: f.name.clone(),
            policy: match f.policy {
                FeaturePolicy::Force => ms::FeaturePolicy::Force,
                FeaturePolicy::Require => ms::FeaturePolicy::Require,
                FeaturePolicy::Optional => ms::FeaturePolicy::Optional,
                FeaturePolicy::Disable => ms::FeaturePolicy::Disable,
                FeaturePolicy::Forbid => ms::FeaturePolicy::Forbid,
            },
        })
        .collect();
    Ok(cpus)
}

/// `<cpu mode='custom' match check><model>NAME</model>`: a model of our table.
fn cpu_model(c: &Cpu) -> Result<Option<ms::CpuModelRef>> {
    let Some(name) = c.model.as_ref().and_then(|m| m.name.as_deref()) else {
        return Ok(None);
    };
    if !matches!(c.mode, Some(CpuModeAttr::Custom) | None) {
        return Ok(None);
    }
    if ms::cpu_models::find(name).is_none() {
        return unsupported(format!("CPU model '{name}' is not supported by hypervisor"));
    }
    let minimum = match c.match_.as_deref() {
        None | Some("exact") | Some("strict") => false,
        Some("minimum") => true,
        Some(x) => return unsupported(format!("<cpu match='{x}'> is not supported")),
    };
    Ok(Some(ms::CpuModelRef {
        name: name.to_string(),
        minimum,
        enforce: c.check.as_deref() != Some("none"),
    }))
}

fn boot(dom: &Domain) -> Result<ms::Boot> {
    let os = &dom.os;
    if os.os_type != "hvm" {
        return unsupported(format!(
            "<os><type>{}</type> is not supported (only 'hvm')",
            os.os_type
        ));
    }
    if let Some(a) = &os.arch {
        if a != "x86_64" {
            return unsupported(format!(
                "<os><type arch='{a}'> is not supported (only 'x86_64')"
            ));
        }
    }
    if os.dtb.is_some() {
        return unsupported("<os><dtb> is not supported");
    }
    if os.acpi.is_some() {
        return unsupported("<os><acpi><table> is not supported");
    }
    let Some(kernel) = &os.kernel else {
        let has_video = dom
            .devices
            .videos
            .iter()
            .any(|v| v.model_type() != Some("none"));
        return Ok(ms::Boot {
            kernel: None,
            initrd: None,
            cmdline: String::new(),
            firmware: Some(crate::translate_firmware::firmware(dom, has_video)?),
        });
    };
    if let Some(m) = &os.smbios {
        return unsupported(format!(
            "<os><smbios mode='{m}'> is not supported with direct kernel boot (SMBIOS comes from firmware)"
        ));
    }
    if os.loader.is_some()
        || os.firmware.as_deref() == Some("efi")
        || os.nvram.is_some()
        || os.firmware_features.is_some()
    {
        return unsupported(
            "<kernel> together with firmware (<loader>, <nvram>, <os firmware>) is not supported: \
             oxvirt boots a <kernel> directly",
        );
    }
    Ok(ms::Boot {
        firmware: None,
        kernel: Some(PathBuf::from(kernel)),
        initrd: os.initrd.as_ref().map(PathBuf::from),
        cmdline: os.cmdline.clone().unwrap_or_default(),
    })
}

/// `<features>` children with no effect on this hypervisor.
const NO_EFFECT_FEATURES: &[&str] = &["pae", "hap", "privnet", "vmcoreinfo"];

fn platform(dom: &Domain) -> Result<ms::Platform> {
    let mut p = ms::Platform {
        chipset: Default::default(),
        acpi_pci_hotplug: false,
        rtc: Default::default(),
        hyperv: None,
        acpi: false,
        apic: false,
    };
    for f in dom.features.iter().flatten() {
        let state_off = f.get_attr("state") == Some("off");
        match f.name.as_str() {
            "acpi" => p.acpi = true,
            "apic" => {
                if let Some(eoi) = f.get_attr("eoi") {
                    return unsupported(format!("<features><apic eoi='{eoi}'> is not supported"));
                }
                p.apic = true;
            }
            name if NO_EFFECT_FEATURES.contains(&name) => {}
            // Enlightenments: translate_hyperv.
            "hyperv" => {}
            // Features turned off that oxvirt never provides anyway.
            "vmport" | "smm" | "pvspinlock" | "ps2" | "pmu" if state_off => {}
            name => return unsupported(format!("<features><{name}> is not supported")),
        }
    }
    // i440FX machines hot-plug on the root bus through ACPI (QEMU's PIIX4 PM), with
    // firmware or with a kernel booted directly alike; Q35 uses its root ports.
    let i440fx = matches!(
        crate::translate_firmware::chipset(dom.os.machine.as_deref()),
        Ok(ms::Chipset::I440fx)
    );
    p.acpi_pci_hotplug = p.acpi && i440fx;
    Ok(p)
}

fn clock(dom: &Domain) -> Result<ms::Rtc> {
    let Some(c) = &dom.clock else {
        return Ok(ms::Rtc::default());
    };
    let attr = |name: &str| {
        c.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let allowed: &[&str] = match c.offset.as_str() {
        "utc" | "localtime" => &["adjustment"],
        "timezone" => &["timezone"],
        "variable" => &["adjustment", "basis"],
        other => {
            return unsupported(format!(
                "<clock offset='{other}'> is not supported (only 'utc', 'localtime', 'timezone' and 'variable')"
            ))
        }
    };
    if let Some((k, _)) = c.attrs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return unsupported(format!(
            "<clock offset='{}' {k}> is not supported",
            c.offset
        ));
    }
    let adjustment_s = match attr("adjustment") {
        // `reset` (utc/localtime only) means "no adjustment kept across starts".
        None | Some("reset") => 0,
        Some(v) => v.parse::<i64>().map_err(|_| {
            Error::xml(format!(
                "invalid <clock adjustment='{v}'>: not a number of seconds"
            ))
        })?,
    };
    let base = match (c.offset.as_str(), attr("basis")) {
        ("utc", _) | ("variable", None | Some("utc")) => ms::RtcBase::Utc,
        ("localtime", _) | ("variable", Some("localtime")) => ms::RtcBase::Localtime,
        ("variable", Some(b)) => {
            return Err(Error::xml(format!(
                "invalid <clock basis='{b}'> (only 'utc' or 'localtime')"
            )))
        }
        ("timezone", _) => match attr("timezone") {
            Some(tz) if !tz.is_empty() => ms::RtcBase::Timezone(tz.to_string()),
            _ => {
                return Err(Error::xml(
                    "<clock offset='timezone'> needs a timezone".to_string(),
                ))
            }
        },
        _ => unreachable!("offsets were checked above"),
    };
    for t in &c.timers {
        let present = t.present != Some(YesNo::No);
        let ok = match t.name.as_str() {
            // Tick policies have no effect: KVM's in-kernel PIT and the RTC deliver ticks.
            "rtc" | "pit" => present && t.track.as_deref().is_none_or(|x| x == "guest"),
            "kvmclock" => present,
            "hpet" | "tsc" | "platform" | "armvtimer" => !present,
            // Hyper-V's reference clock: translate_hyperv.
            "hypervclock" => true,
            _ => false,
        };
        if !ok || t.frequency.is_some() || t.mode.is_some() || t.catchup.is_some() {
            return unsupported(format!(
                "<clock><timer name='{}'{}> is not supported",
                t.name,
                match t.present {
                    Some(p) => format!(" present='{p}'"),
                    None => String::new(),
                }
            ));
        }
    }
    Ok(ms::Rtc { base, adjustment_s })
}

fn pm(dom: &Domain) -> Result<()> {
    let Some(p) = &dom.pm else { return Ok(()) };
    if p.suspend_to_mem == Some(YesNo::Yes) {
        return unsupported("<pm><suspend-to-mem enabled='yes'> is not supported");
    }
    if p.suspend_to_disk == Some(YesNo::Yes) {
        return unsupported("<pm><suspend-to-disk enabled='yes'> is not supported");
    }
    Ok(())
}

fn action(a: LifecycleAction) -> ms::LifecycleAction {
    match a {
        LifecycleAction::Destroy => ms::LifecycleAction::Destroy,
        LifecycleAction::Restart => ms::LifecycleAction::Restart,
        LifecycleAction::Preserve => ms::LifecycleAction::Preserve,
        LifecycleAction::RenameRestart => ms::LifecycleAction::RenameRestart,
        LifecycleAction::CoredumpDestroy => ms::LifecycleAction::CoredumpDestroy,
        LifecycleAction::CoredumpRestart => ms::LifecycleAction::CoredumpRestart,
    }
}

/// The guest CID for a `<vsock>`: the given address, or the first guest CID.
pub(crate) fn vsock_cid(v: &Vsock) -> Result<u32> {
    match (v.cid_auto, v.cid_address) {
        (Some(YesNo::Yes), Some(a)) | (None, Some(a)) | (Some(YesNo::No), Some(a)) => {
            if a < FIRST_GUEST_CID {
                return Err(Error::xml(format!(
                    "vsock CID {a} is reserved; guest CIDs start at {FIRST_GUEST_CID}"
                )));
            }
            Ok(a)
        }
        _ => Ok(FIRST_GUEST_CID),
    }
}

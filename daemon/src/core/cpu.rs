//! CPU models for every front end: `virConnectGetCPUModelNames`, the baseline and
//! compare calls (`virConnectBaselineCPU`, `…HypervisorCPU`, `virConnectCompareCPU`,
//! `…HypervisorCPU`) and the `<cpu>` of domain capabilities.
//!
//! The host comes from `oxvirt-vmm --probe-cpu` (the daemon never opens
//! `/dev/kvm`; libvirt likewise asks QEMU), read once and kept. The model table
//! and the set arithmetic are `machine_spec::cpu_models`; this module parses the
//! `<cpu>` elements callers pass and writes libvirt 9.0's XML.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;

use machine_spec::cpu_models::{self, Comparison, FeatureSet, HostCpu, ModelFit, Vendor};

use super::{Core, Error, Result};

/// `virConnectBaselineCPUFlags`.
pub const BASELINE_EXPAND_FEATURES: u32 = 1;
pub const BASELINE_MIGRATABLE: u32 = 2;
/// `virConnectCompareCPUFlags`.
pub const COMPARE_FAIL_INCOMPATIBLE: u32 = 1;
pub const COMPARE_VALIDATE_XML: u32 = 2;

/// `virCPUCompareResult`.
pub const CPU_COMPARE_INCOMPATIBLE: i32 = 0;
pub const CPU_COMPARE_IDENTICAL: i32 = 1;
pub const CPU_COMPARE_SUPERSET: i32 = 2;

/// Features that tie a guest to this host (QEMU's `migratable=off` ones) and that
/// `BASELINE_MIGRATABLE` leaves out.
const NON_MIGRATABLE: &[&str] = &["invtsc"];

/// The probed host, once it has been read successfully.
static HOST: Mutex<Option<HostCpu>> = Mutex::new(None);

/// The host CPU as `vmm --probe-cpu` reports it (cached after the first success).
pub fn probe(vmm: &Path) -> Result<HostCpu> {
    let mut cached = HOST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = cached.as_ref() {
        return Ok(h.clone());
    }
    let out = std::process::Command::new(vmm)
        .arg("--probe-cpu")
        .output()
        .map_err(|e| Error::System(format!("cannot run '{} --probe-cpu': {e}", vmm.display())))?;
    if !out.status.success() {
        return Err(Error::Internal(format!(
            "'{} --probe-cpu' failed: {}",
            vmm.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let host: HostCpu = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Internal(format!("bad '{} --probe-cpu' output: {e}", vmm.display())))?;
    *cached = Some(host.clone());
    Ok(host)
}

/// One `<cpu>` element a caller passed: a host CPU (`<arch>`, `<model>`,
/// `<vendor>`, `<feature name>`) or a guest one (`mode`, `match`, policies).
#[derive(Debug, Default)]
struct CpuXml {
    mode: Option<String>,
    match_: Option<String>,
    model: Option<String>,
    vendor: Option<String>,
    /// `(name, policy)`; a host CPU's features count as `require`.
    features: Vec<(String, String)>,
}

fn parse_cpu(xml: &str) -> Result<CpuXml> {
    let doc =
        roxmltree::Document::parse(xml).map_err(|e| Error::Xml(format!("(CPU_definition):{e}")))?;
    let root = doc.root_element();
    let cpu = if root.has_tag_name("cpu") {
        root
    } else {
        root.descendants()
            .find(|n| n.has_tag_name("cpu"))
            .ok_or_else(|| Error::Xml("missing <cpu> element".into()))?
    };
    let child_text = |name: &str| {
        cpu.children()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
            .map(|t| t.trim().to_string())
    };
    let mut c = CpuXml {
        mode: cpu.attribute("mode").map(str::to_string),
        match_: cpu.attribute("match").map(str::to_string),
        model: child_text("model"),
        vendor: child_text("vendor"),
        features: Vec::new(),
    };
    for f in cpu.children().filter(|n| n.has_tag_name("feature")) {
        let name = f
            .attribute("name")
            .ok_or_else(|| Error::Xml("missing CPU feature name".into()))?;
        if cpu_models::libvirt_name(name).is_none() {
            return Err(Error::Internal(format!("unknown CPU feature {name}")));
        }
        let policy = f.attribute("policy").unwrap_or("require");
        if !["force", "require", "optional", "disable", "forbid"].contains(&policy) {
            return Err(Error::Xml(format!("Invalid CPU feature policy '{policy}'")));
        }
        c.features.push((name.to_string(), policy.to_string()));
    }
    if let Some(v) = &c.vendor {
        if Vendor::parse(v).is_none() {
            return Err(Error::Internal(format!("Unknown CPU vendor {v}")));
        }
    }
    Ok(c)
}

impl CpuXml {
    fn feature_set(&self) -> Result<FeatureSet> {
        cpu_models::expand(self.model.as_deref(), &self.features)
            .map_err(|m| Error::Internal(format!("Unknown CPU model {m}")))
    }
}

/// `<cpu mode='custom' match='exact'>` with the model, vendor and features of
/// `fit`, as libvirt writes a baseline CPU (and the live XML of a host-model one).
pub fn custom_cpu_xml(
    fit: &ModelFit,
    vendor: Option<Vendor>,
    expand: bool,
    indent: &str,
) -> String {
    let mut x = format!("{indent}<cpu mode='custom' match='exact'>\n");
    x.push_str(&model_body(fit, vendor, expand, &format!("{indent}  ")));
    let _ = writeln!(x, "{indent}</cpu>");
    x
}

/// `<model fallback='forbid'>`, `<vendor>` and `<feature policy='require'>` lines.
fn model_body(fit: &ModelFit, vendor: Option<Vendor>, expand: bool, indent: &str) -> String {
    let mut x = format!(
        "{indent}<model fallback='forbid'>{}</model>\n",
        fit.model.name
    );
    if let Some(v) = vendor.or(fit.model.vendor) {
        let _ = writeln!(x, "{indent}<vendor>{}</vendor>", v.name());
    }
    let mut names: Vec<String> = fit.extra.clone();
    if expand {
        let mut all: FeatureSet = fit.model.features.iter().copied().collect();
        for f in &fit.extra {
            all.insert(f);
        }
        names = all.libvirt_names();
    }
    for f in names {
        let _ = writeln!(x, "{indent}<feature policy='require' name='{f}'/>");
    }
    x
}

/// The host `<cpu>`'s lines of `virsh capabilities` around `<topology>`: model,
/// vendor and signature before it, the features beyond the model after it (what
/// `virsh cpu-baseline` of a capabilities file reads). From KVM's view of the host.
pub fn host_caps_cpu(host: Option<&HostCpu>) -> (String, String) {
    let Some((h, fit)) = host.and_then(|h| cpu_models::host_model(h).map(|f| (h, f))) else {
        return (String::new(), String::new());
    };
    let mut model = format!("      <model>{}</model>\n", fit.model.name);
    if let Some(v) = Vendor::parse(&h.vendor) {
        let _ = writeln!(model, "      <vendor>{}</vendor>", v.name());
    }
    let _ = writeln!(
        model,
        "      <signature family='{}' model='{}' stepping='{}'/>",
        h.family, h.model, h.stepping
    );
    let features = fit
        .extra
        .iter()
        .map(|f| format!("      <feature name='{f}'/>\n"))
        .collect();
    (model, features)
}

/// The `<cpu>` element of domain capabilities for this host (`None`: no probe).
pub fn domcaps_cpu(host: Option<&HostCpu>) -> String {
    let mut x = String::from(
        "  <cpu>\n    <mode name='host-passthrough' supported='yes'>\n      \
         <enum name='hostPassthroughMigratable'>\n        <value>on</value>\n        \
         <value>off</value>\n      </enum>\n    </mode>\n    \
         <mode name='maximum' supported='yes'>\n      <enum name='maximumMigratable'>\n        \
         <value>off</value>\n      </enum>\n    </mode>\n",
    );
    match host.and_then(|h| cpu_models::host_model(h).map(|f| (h, f))) {
        Some((h, fit)) => {
            x.push_str("    <mode name='host-model' supported='yes'>\n");
            x.push_str(&model_body(&fit, Vendor::parse(&h.vendor), false, "      "));
            x.push_str("    </mode>\n");
        }
        None => x.push_str("    <mode name='host-model' supported='no'/>\n"),
    }
    x.push_str("    <mode name='custom' supported='yes'>\n");
    let features = host.map(HostCpu::feature_set);
    for m in cpu_models::models() {
        let usable = match &features {
            Some(f) if m.missing_on(f).is_empty() => "yes",
            Some(_) => "no",
            None => "unknown",
        };
        let vendor = m.vendor.map(Vendor::name).unwrap_or("unknown");
        let _ = writeln!(
            x,
            "      <model usable='{usable}' vendor='{vendor}'>{}</model>",
            m.name
        );
    }
    x.push_str("    </mode>\n  </cpu>\n");
    x
}

/// Baseline of `cpus` (and of `host`, for the hypervisor variant): the best model
/// for the features all of them have, as a custom `<cpu>`.
pub fn baseline(cpus: &[String], flags: u32, host: Option<&HostCpu>) -> Result<String> {
    if cpus.is_empty() {
        return Err(Error::InvalidArg("nonzero ncpus".into()));
    }
    let parsed = cpus
        .iter()
        .map(|x| parse_cpu(x))
        .collect::<Result<Vec<_>>>()?;
    let mut common: Option<FeatureSet> = None;
    let mut vendor: Option<Option<Vendor>> = None;
    for (i, c) in parsed.iter().enumerate() {
        if c.model.is_none() {
            return Err(Error::OperationFailed(format!(
                "no CPU model specified at index {i}"
            )));
        }
        let set = c.feature_set()?;
        common = Some(match common {
            None => set,
            Some(prev) => prev.intersect(&set),
        });
        let v = c.vendor.as_deref().and_then(Vendor::parse).or_else(|| {
            c.model
                .as_deref()
                .and_then(cpu_models::find)
                .and_then(|m| m.vendor)
        });
        vendor = Some(match vendor {
            None => v,
            Some(prev) if prev == v => prev,
            Some(_) => return Err(Error::OperationFailed("CPU vendors do not match".into())),
        });
    }
    let mut common = common.unwrap_or_default();
    if let Some(h) = host {
        common = common.intersect(&h.feature_set());
    }
    if flags & BASELINE_MIGRATABLE != 0 {
        for f in NON_MIGRATABLE {
            common.remove(f);
        }
    }
    let vendor = vendor.flatten();
    let fit = cpu_models::closest_model(&common, vendor, None).ok_or_else(|| {
        Error::OperationFailed("Cannot find suitable CPU model for given data".into())
    })?;
    Ok(custom_cpu_xml(
        &fit,
        vendor,
        flags & BASELINE_EXPAND_FEATURES != 0,
        "",
    ))
}

/// Compares the `<cpu>` in `xml` with `host`: a `virCPUCompareResult`, or with
/// `COMPARE_FAIL_INCOMPATIBLE` an error saying why it is incompatible.
pub fn compare(xml: &str, flags: u32, host: &HostCpu) -> Result<i32> {
    if xml.trim().is_empty() {
        return Err(Error::InvalidArg(
            "xmlDesc in virConnectCompareCPU must not be NULL".into(),
        ));
    }
    let c = parse_cpu(xml)?;
    if matches!(
        c.mode.as_deref(),
        Some("host-passthrough" | "host-model" | "maximum")
    ) {
        return Ok(CPU_COMPARE_IDENTICAL);
    }
    let result = if c.model.is_none() && c.features.is_empty() {
        Comparison::Identical
    } else {
        let host_vendor = Vendor::parse(&host.vendor);
        match c.vendor.as_deref().and_then(Vendor::parse) {
            Some(v) if Some(v) != host_vendor => Comparison::Incompatible(format!(
                "host CPU vendor does not match required CPU vendor {}",
                v.name()
            )),
            _ => {
                let forbidden: Vec<String> = c
                    .features
                    .iter()
                    .filter(|(_, p)| p == "forbid")
                    .map(|(n, _)| n.clone())
                    .collect();
                let mut guest = c.feature_set()?;
                for (n, p) in &c.features {
                    if p == "optional" {
                        guest.remove(n);
                    }
                }
                cpu_models::compare(
                    &host.feature_set(),
                    &guest,
                    &forbidden,
                    c.match_.as_deref() == Some("strict"),
                )
            }
        }
    };
    match result {
        Comparison::Identical => Ok(CPU_COMPARE_IDENTICAL),
        Comparison::Superset => Ok(CPU_COMPARE_SUPERSET),
        Comparison::Incompatible(why) if flags & COMPARE_FAIL_INCOMPATIBLE != 0 => {
            Err(Error::CpuIncompatible(why))
        }
        Comparison::Incompatible(_) => Ok(CPU_COMPARE_INCOMPATIBLE),
    }
}

/// `virConnectGetCPUModelNames`: every model for x86 (`x86_64`, `i686`).
pub fn model_names(arch: &str) -> Result<Vec<String>> {
    match arch {
        "x86_64" | "i686" => Ok(cpu_models::models()
            .iter()
            .map(|m| m.name.to_string())
            .collect()),
        "aarch64" | "armv7l" | "ppc64" | "ppc64le" | "s390x" | "riscv64" => {
            Err(Error::ArgumentUnsupported(format!(
                "cannot find any CPU models for architecture {arch}"
            )))
        }
        _ => Err(Error::InvalidArg(format!(
            "cannot find architecture {arch}"
        ))),
    }
}

/// The hypervisor variants' `emulator`/`arch`/`machine`/`virttype` arguments:
/// only oxvirt's own (empty means default).
fn check_hypervisor_args(arch: Option<&str>, virttype: Option<&str>) -> Result<()> {
    if let Some(a) = arch.filter(|a| !a.is_empty() && *a != "x86_64") {
        return Err(Error::ConfigUnsupported(format!(
            "unable to find any emulator to serve '{a}' architecture"
        )));
    }
    if let Some(v) = virttype.filter(|v| !v.is_empty() && *v != "kvm" && *v != "qemu") {
        return Err(Error::InvalidArg(format!("unknown virttype: {v}")));
    }
    Ok(())
}

/// The `<cpu>` of a running domain as libvirt writes it once QEMU has started
/// the vCPUs: `host-model` becomes the custom CPU it ran as (the closest model,
/// this host's vendor, the host's other features required), a custom model is
/// marked `check='full'` (the VMM checked every feature at start), and
/// `host-passthrough` gets libvirt's `check='none' migratable='on'` defaults.
pub fn live_cpu(cpu: &mut Option<domain_xml::Cpu>, host: Option<&HostCpu>) {
    use domain_xml::{CpuModeAttr, OnOff};
    let Some(c) = cpu.as_mut() else { return };
    match c.mode {
        Some(CpuModeAttr::HostModel) => {
            let Some((h, fit)) = host.and_then(|h| cpu_models::host_model(h).map(|f| (h, f)))
            else {
                return;
            };
            c.mode = Some(CpuModeAttr::Custom);
            c.match_ = Some("exact".into());
            c.check = Some("full".into());
            c.migratable = None;
            c.model = Some(domain_xml::CpuModel {
                name: Some(fit.model.name.into()),
                fallback: Some("forbid".into()),
                vendor_id: None,
            });
            c.vendor = Vendor::parse(&h.vendor).map(|v| v.name().to_string());
            let mut features: Vec<domain_xml::CpuFeature> = fit
                .extra
                .iter()
                .filter(|f| {
                    !c.features
                        .iter()
                        .any(|p| cpu_models::normalize(&p.name) == cpu_models::normalize(f))
                })
                .map(|f| domain_xml::CpuFeature {
                    policy: domain_xml::FeaturePolicy::Require,
                    name: f.clone(),
                })
                .collect();
            // The domain's own policies stay, after the host's features.
            features.append(&mut c.features);
            c.features = features;
        }
        Some(CpuModeAttr::Custom) | None if c.model.as_ref().is_some_and(|m| m.name.is_some()) => {
            c.mode = Some(CpuModeAttr::Custom);
            c.match_.get_or_insert_with(|| "exact".into());
            if c.check.as_deref() != Some("none") {
                c.check = Some("full".into());
            }
        }
        Some(CpuModeAttr::HostPassthrough) => {
            c.check.get_or_insert_with(|| "none".into());
            c.migratable.get_or_insert(OnOff::On);
        }
        Some(CpuModeAttr::Custom | CpuModeAttr::Maximum) | None => {}
    }
}

impl Core {
    /// Rewrites a starting domain's `<cpu>` into its live form ([`live_cpu`]).
    pub(super) fn live_cpu(&self, cpu: &mut Option<domain_xml::Cpu>) {
        let needs_host = cpu
            .as_ref()
            .is_some_and(|c| c.mode == Some(domain_xml::CpuModeAttr::HostModel));
        let host = if needs_host {
            self.host_cpu().ok()
        } else {
            None
        };
        live_cpu(cpu, host.as_ref());
    }

    fn host_cpu(&self) -> Result<HostCpu> {
        probe(&self.config().vmm)
    }

    /// `virConnectGetCPUModelNames`.
    pub fn cpu_model_names(&self, arch: &str, flags: u32) -> Result<Vec<String>> {
        Error::check_flags(flags, 0, "virConnectGetCPUModelNames")?;
        model_names(arch)
    }

    /// `virConnectBaselineCPU`: the CPUs alone, no host involved.
    pub fn baseline_cpu(&self, cpus: &[String], flags: u32) -> Result<String> {
        Error::check_flags(
            flags,
            BASELINE_EXPAND_FEATURES | BASELINE_MIGRATABLE,
            "virConnectBaselineCPU",
        )?;
        baseline(cpus, flags, None)
    }

    /// `virConnectBaselineHypervisorCPU`: also limited to what KVM here can run.
    pub fn baseline_hypervisor_cpu(
        &self,
        arch: Option<&str>,
        virttype: Option<&str>,
        cpus: &[String],
        flags: u32,
    ) -> Result<String> {
        Error::check_flags(
            flags,
            BASELINE_EXPAND_FEATURES | BASELINE_MIGRATABLE,
            "virConnectBaselineHypervisorCPU",
        )?;
        check_hypervisor_args(arch, virttype)?;
        baseline(cpus, flags, Some(&self.host_cpu()?))
    }

    /// `virConnectCompareCPU` and `virConnectCompareHypervisorCPU` (the host is
    /// KVM's view of it either way: what oxvirt can give a guest).
    pub fn compare_cpu(
        &self,
        arch: Option<&str>,
        virttype: Option<&str>,
        xml: &str,
        flags: u32,
    ) -> Result<i32> {
        Error::check_flags(
            flags,
            COMPARE_FAIL_INCOMPATIBLE | COMPARE_VALIDATE_XML,
            "virConnectCompareCPU",
        )?;
        check_hypervisor_args(arch, virttype)?;
        compare(xml, flags, &self.host_cpu()?)
    }

    /// The `<cpu>` of domain capabilities (host-model and usability need the probe;
    /// without KVM they say so rather than fail the whole document).
    pub fn domcaps_cpu(&self) -> String {
        domcaps_cpu(self.host_cpu().ok().as_ref())
    }
}

#[cfg(test)]
mod tests;

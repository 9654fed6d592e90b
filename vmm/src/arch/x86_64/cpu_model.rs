//! Named CPU models in CPUID: the host as [`HostCpu`] (what `--probe-cpu` prints
//! and `host-model` starts from), and the base CPUID of a guest whose `<cpu>` is
//! `mode='custom'` with a model or `mode='host-model'`: the model's vendor and
//! family/model/stepping, and exactly its features (with the policies applied),
//! masked against what KVM supports. A model feature KVM cannot give refuses the
//! start, in libvirt's words, unless `check='none'` asked to drop it.

use kvm_bindings::kvm_cpuid_entry2;
use machine_spec::cpu_models::{self, CpuModelDef, FeatureSet, HostCpu};
use machine_spec::{CpuFeature, CpuMode, Cpus, FeaturePolicy};

use super::cpuid::{self, bit_is_set, find, set_bit, CpuidError};
use super::features;

/// Features that are the OS's state, not the CPU's (`CR4.OSXSAVE`, `CR4.PKE`):
/// never part of a model or of the host description.
const OS_BITS: [&str; 2] = ["osxsave", "ospke"];

/// KVM's paravirtual leaf: not model data, left to [`cpuid::apply_features`].
const KVM_FEATURES_LEAF: u32 = 0x4000_0001;

/// The guest's base CPUID (before the per-vCPU topology) for `cpus`.
pub fn base_cpuid(
    supported: &[kvm_cpuid_entry2],
    cpus: &Cpus,
) -> Result<Vec<kvm_cpuid_entry2>, CpuidError> {
    match (cpus.mode, &cpus.model) {
        (CpuMode::Custom, Some(m)) => {
            let def = cpu_models::find(&m.name)
                .ok_or_else(|| CpuidError::UnknownModel(m.name.clone()))?;
            let mut want: FeatureSet = def.cpuid_features().collect();
            if m.minimum {
                want = union(want, &host_features(supported));
            }
            model_cpuid(supported, def, want, m.enforce, &cpus.features)
        }
        (CpuMode::HostModel, _) => {
            let host = host_cpu(supported);
            let fit = cpu_models::host_model(&host).ok_or(CpuidError::NoHostModel)?;
            let mut want: FeatureSet = fit.model.cpuid_features().collect();
            for f in &fit.extra {
                want.insert(f);
            }
            model_cpuid(supported, fit.model, want, true, &cpus.features)
        }
        (CpuMode::Custom | CpuMode::HostPassthrough | CpuMode::Maximum, _) => {
            cpuid::apply_features(supported, &cpus.features)
        }
    }
}

fn union(mut a: FeatureSet, b: &FeatureSet) -> FeatureSet {
    for f in b.libvirt_names() {
        a.insert(&f);
    }
    a
}

/// The libvirt-named features set in `supported`.
fn host_features(supported: &[kvm_cpuid_entry2]) -> FeatureSet {
    let mut entries = supported.to_vec();
    cpu_models::cpuid_feature_names()
        .iter()
        .copied()
        .filter(|name| !OS_BITS.contains(name))
        .filter(|name| features::lookup(name).is_some_and(|b| bit_is_set(&mut entries, b)))
        .collect()
}

/// The host as KVM offers it: leaf 0's vendor, leaf 1's signature, the features.
pub fn host_cpu(supported: &[kvm_cpuid_entry2]) -> HostCpu {
    let mut entries = supported.to_vec();
    let vendor = find(&mut entries, 0, 0)
        .map(|e| {
            let mut b = Vec::with_capacity(12);
            for r in [e.ebx, e.edx, e.ecx] {
                b.extend_from_slice(&r.to_le_bytes());
            }
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .to_string()
        })
        .unwrap_or_default();
    let eax = find(&mut entries, 1, 0).map(|e| e.eax).unwrap_or(0);
    let (family, model, stepping) = decode_signature(eax);
    HostCpu {
        vendor,
        family,
        model,
        stepping,
        features: host_features(supported).libvirt_names(),
    }
}

/// [`host_cpu`] of this host's KVM (`oxvirt-vmm --probe-cpu`).
pub fn probe_host() -> Result<HostCpu, kvm_ioctls::Error> {
    let kvm = kvm_ioctls::Kvm::new()?;
    let supported = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)?;
    Ok(host_cpu(supported.as_slice()))
}

/// CPUID.1:EAX → (family, model, stepping), with the extended fields folded in.
fn decode_signature(eax: u32) -> (u32, u32, u32) {
    let base_family = (eax >> 8) & 0xf;
    let family = if base_family == 0xf {
        base_family + ((eax >> 20) & 0xff)
    } else {
        base_family
    };
    let model = if base_family == 0x6 || base_family == 0xf {
        ((eax >> 4) & 0xf) | (((eax >> 16) & 0xf) << 4)
    } else {
        (eax >> 4) & 0xf
    };
    (family, model, eax & 0xf)
}

/// (family, model, stepping) → CPUID.1:EAX, as Intel's SDM and QEMU encode it.
fn encode_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (base, ext) = if family > 0xf {
        (0xf, family - 0xf)
    } else {
        (family, 0)
    };
    (ext << 20) | ((model >> 4) << 16) | (base << 8) | ((model & 0xf) << 4) | (stepping & 0xf)
}

fn incompatible(what: &str, names: &[String]) -> CpuidError {
    CpuidError::Incompatible(format!("{what}: {}", names.join(", ")))
}

/// CPUID for `model` with feature set `want` (the model's, plus `minimum`'s or
/// `host-model`'s), then `policies` applied as [`cpuid::apply_features`] does.
fn model_cpuid(
    supported: &[kvm_cpuid_entry2],
    model: &CpuModelDef,
    mut want: FeatureSet,
    enforce: bool,
    policies: &[CpuFeature],
) -> Result<Vec<kvm_cpuid_entry2>, CpuidError> {
    let host = host_features(supported);
    let mut forbidden = Vec::new();
    let mut required_missing = Vec::new();
    for p in policies {
        if features::lookup(&p.name).is_none() {
            return Err(CpuidError::UnknownFeature(p.name.clone()));
        }
        match p.policy {
            FeaturePolicy::Forbid if host.has(&p.name) => forbidden.push(p.name.clone()),
            FeaturePolicy::Disable | FeaturePolicy::Forbid => want.remove(&p.name),
            FeaturePolicy::Require if !host.has(&p.name) => required_missing.push(p.name.clone()),
            FeaturePolicy::Require | FeaturePolicy::Force => want.insert(&p.name),
            FeaturePolicy::Optional if host.has(&p.name) => want.insert(&p.name),
            FeaturePolicy::Optional => want.remove(&p.name),
        }
    }
    if !forbidden.is_empty() {
        return Err(incompatible(
            "Host CPU provides forbidden features",
            &forbidden,
        ));
    }
    // The model's own features the host lacks, and the required ones.
    let mut missing: Vec<String> = want
        .libvirt_names()
        .into_iter()
        .filter(|f| !host.has(f) && !cpu_models::is_msr_feature(f) && f != "hypervisor")
        .filter(|f| features::lookup(f).is_some())
        .collect();
    if enforce {
        missing.retain(|f| !required_missing.contains(f));
        required_missing.extend(missing);
    }
    if !required_missing.is_empty() {
        return Err(incompatible(
            "Host CPU does not provide required features",
            &required_missing,
        ));
    }

    let mut entries = supported.to_vec();
    // Every named bit off, then the wanted ones KVM supports back on.
    for (_, b) in features::all().filter(|(_, b)| b.leaf != KVM_FEATURES_LEAF) {
        set_bit(&mut entries, b, false);
    }
    let mut host_entries = supported.to_vec();
    for name in want.libvirt_names() {
        if let Some(b) = features::lookup(&name) {
            if bit_is_set(&mut host_entries, b) {
                set_bit(&mut entries, b, true);
            }
        }
    }
    if let Some(v) = model.vendor {
        let s = v.cpuid_string().as_bytes();
        let word = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
        for leaf in [0, 0x8000_0000] {
            if let Some(e) = find(&mut entries, leaf, 0) {
                (e.ebx, e.edx, e.ecx) = (word(0), word(4), word(8));
            }
        }
    }
    if let Some(e) = find(&mut entries, 1, 0) {
        e.eax = encode_signature(model.family, model.model, model.stepping);
    }
    // Hypervisor and KVM leaves, and the policies on bits outside the model table.
    cpuid::apply_features(&entries, policies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    use machine_spec::{CpuModelRef, Topology};

    fn e(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            flags: if function == 7 || function == 0xd {
                KVM_CPUID_FLAG_SIGNIFCANT_INDEX
            } else {
                0
            },
            eax: regs[0],
            ebx: regs[1],
            ecx: regs[2],
            edx: regs[3],
            ..Default::default()
        }
    }

    /// KVM's supported CPUID of a host with every feature Skylake-Client names
    /// (and AVX-512F beyond it), signature 6/85/4, GenuineIntel.
    fn skylake_host() -> Vec<kvm_cpuid_entry2> {
        let mut v = vec![
            e(0, 0, [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]),
            e(1, 0, [encode_signature(6, 85, 4), 0, 0, 0]),
            e(6, 0, [0; 4]),
            e(7, 0, [0; 4]),
            e(7, 1, [0; 4]),
            e(0xd, 1, [0; 4]),
            e(0x4000_0000, 0, [0x4000_0001, 0, 0, 0]),
            e(0x4000_0001, 0, [1, 0, 0, 0]),
            e(0x8000_0000, 0, [0x8000_0008, 0, 0, 0]),
            e(0x8000_0001, 0, [0; 4]),
            e(0x8000_0008, 0, [0; 4]),
        ];
        for f in cpu_models::find("Skylake-Client")
            .unwrap()
            .cpuid_features()
            .chain(["avx512f", "x2apic"])
        {
            set_bit(&mut v, features::lookup(f).unwrap(), true);
        }
        v
    }

    fn cpus(mode: CpuMode, model: Option<&str>, policies: &[(&str, FeaturePolicy)]) -> Cpus {
        Cpus {
            count: 1,
            max: 1,
            topology: Topology {
                sockets: 1,
                dies: 1,
                cores: 1,
                threads: 1,
            },
            mode,
            features: policies
                .iter()
                .map(|(n, p)| CpuFeature {
                    name: n.to_string(),
                    policy: *p,
                })
                .collect(),
            model: model.map(|m| CpuModelRef {
                name: m.into(),
                minimum: false,
                enforce: true,
            }),
        }
    }

    fn has(v: &[kvm_cpuid_entry2], name: &str) -> bool {
        bit_is_set(&mut v.to_vec(), features::lookup(name).unwrap())
    }

    #[test]
    fn signature_round_trips() {
        for (f, m, s) in [
            (6, 94, 3),
            (23, 49, 0),
            (25, 1, 1),
            (15, 107, 1),
            (6, 26, 3),
        ] {
            assert_eq!(decode_signature(encode_signature(f, m, s)), (f, m, s));
        }
        // Skylake-Client as real hardware reports it.
        assert_eq!(encode_signature(6, 94, 3), 0x0005_06e3);
        assert_eq!(encode_signature(23, 1, 2), 0x0080_0f12);
    }

    #[test]
    fn probe_reads_vendor_signature_features() {
        let h = host_cpu(&skylake_host());
        assert_eq!(h.vendor, "GenuineIntel");
        assert_eq!((h.family, h.model, h.stepping), (6, 85, 4));
        assert!(h.features.contains(&"avx512f".to_string()));
        assert!(h.features.contains(&"lahf_lm".to_string()));
    }

    #[test]
    fn custom_model_sets_signature_vendor_and_only_its_features() {
        let c = cpus(
            CpuMode::Custom,
            Some("Nehalem"),
            &[("sse4.2", FeaturePolicy::Disable)],
        );
        let v = base_cpuid(&skylake_host(), &c).unwrap();
        let l1 = v.iter().find(|x| x.function == 1).unwrap();
        assert_eq!(decode_signature(l1.eax), (6, 26, 3));
        assert!(has(&v, "sse4.1") && !has(&v, "sse4.2"), "policy disable");
        assert!(!has(&v, "avx2") && !has(&v, "avx512f"), "beyond Nehalem");
        assert!(has(&v, "hypervisor"));
        // An AMD model on an Intel host (check='none': svm is dropped, not refused).
        let mut amd = cpus(CpuMode::Custom, Some("Opteron_G2"), &[]);
        amd.model.as_mut().unwrap().enforce = false;
        let v = base_cpuid(&skylake_host(), &amd).unwrap();
        let l0 = v.into_iter().find(|x| x.function == 0).unwrap();
        assert_eq!(l0.ebx.to_le_bytes(), *b"Auth");
    }

    #[test]
    fn missing_model_features_refuse_unless_check_none() {
        let mut c = cpus(CpuMode::Custom, Some("Skylake-Server"), &[]);
        let err = base_cpuid(&skylake_host(), &c).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "the CPU is incompatible with host CPU: Host CPU does not provide required features: "
            ) && err.contains("avx512dq"),
            "{err}"
        );
        c.model.as_mut().unwrap().enforce = false;
        let v = base_cpuid(&skylake_host(), &c).unwrap();
        assert!(has(&v, "avx512f") && !has(&v, "avx512dq"));
    }

    #[test]
    fn match_minimum_adds_the_hosts_other_features() {
        let mut c = cpus(CpuMode::Custom, Some("Nehalem"), &[]);
        c.model.as_mut().unwrap().minimum = true;
        let v = base_cpuid(&skylake_host(), &c).unwrap();
        let l1 = v.iter().find(|x| x.function == 1).unwrap();
        assert_eq!(decode_signature(l1.eax), (6, 26, 3), "still Nehalem");
        assert!(has(&v, "avx2") && has(&v, "avx512f"), "host features kept");
    }

    #[test]
    fn forbid_and_require_are_checked_by_name() {
        let c = cpus(
            CpuMode::Custom,
            Some("Nehalem"),
            &[("avx2", FeaturePolicy::Forbid)],
        );
        let err = base_cpuid(&skylake_host(), &c).unwrap_err().to_string();
        assert!(
            err.ends_with("Host CPU provides forbidden features: avx2"),
            "{err}"
        );
        let c = cpus(
            CpuMode::Custom,
            Some("Nehalem"),
            &[("avx512dq", FeaturePolicy::Require)],
        );
        let err = base_cpuid(&skylake_host(), &c).unwrap_err().to_string();
        assert!(
            err.ends_with("does not provide required features: avx512dq"),
            "{err}"
        );
    }

    #[test]
    fn host_model_is_the_closest_model_plus_host_extras() {
        let v = base_cpuid(&skylake_host(), &cpus(CpuMode::HostModel, None, &[])).unwrap();
        let l1 = v.iter().find(|x| x.function == 1).unwrap();
        assert_eq!(
            decode_signature(l1.eax),
            (6, 94, 3),
            "Skylake-Client's signature"
        );
        assert!(has(&v, "avx512f") && has(&v, "x2apic"), "host extras kept");
    }
}

//! Hyper-V CPUID leaves 0x40000000..0x4000000A for the enlightenments a spec enables,
//! checked against what the host's KVM supports (`KVM_GET_SUPPORTED_HV_CPUID`).
//!
//! Windows looks for "Microsoft Hv" at 0x40000000 and "Hv#1" at 0x40000001, then reads
//! which synthetic MSRs and hypercalls exist (0x40000003), what it should use
//! (0x40000004) and the limits (0x40000005). KVM implements every enlightenment in the
//! kernel; the VMM only says which are on, exactly as QEMU's `hv-*` flags do
//! (QEMU `target/i386/kvm/kvm.c`, `kvm_hyperv_properties`, `hyperv_fill_cpuids`): the
//! same bits, the same dependencies, and a refusal naming each enlightenment the host
//! lacks, so a domain never starts half-enlightened. KVM's own leaves move up to
//! 0x40000100, where Linux guests and KVM itself still find them.

use kvm_bindings::kvm_cpuid_entry2;
use machine_spec::{HvFeature, HyperV};

/// Errors of building the Hyper-V leaves.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HypervError {
    /// Enlightenments the host's KVM does not provide, by libvirt and QEMU name.
    #[error("unsupported configuration: the host's KVM lacks Hyper-V enlightenment(s) {0} (KVM_GET_SUPPORTED_HV_CPUID); the domain is not started without them")]
    Unsupported(String),
    /// A set that misses an enlightenment another one needs.
    #[error("unsupported configuration: Hyper-V enlightenment '{0}' requires '{1}'")]
    Dependency(&'static str, &'static str),
}

/// Vendor and maximum leaf.
pub const LEAF_VENDOR: u32 = 0x4000_0000;
/// Interface signature, "Hv#1".
pub const LEAF_INTERFACE: u32 = 0x4000_0001;
/// Hypervisor version.
pub const LEAF_VERSION: u32 = 0x4000_0002;
/// Partition privileges and features.
pub const LEAF_FEATURES: u32 = 0x4000_0003;
/// Implementation recommendations (and the spinlock retry count).
pub const LEAF_RECOMMENDATIONS: u32 = 0x4000_0004;
/// Implementation limits.
pub const LEAF_LIMITS: u32 = 0x4000_0005;
/// Nested features (enlightened VMCS version).
pub const LEAF_NESTED: u32 = 0x4000_000A;
/// Where KVM's own leaves move when Hyper-V's take 0x40000000 (QEMU does the same).
pub const KVM_LEAVES_OFFSET: u32 = 0x100;

/// 0x40000003 EAX: partition privileges (synthetic MSRs the guest may use).
mod eax {
    pub const VP_RUNTIME: u32 = 1 << 0;
    pub const TIME_REF_COUNT: u32 = 1 << 1;
    pub const SYNIC: u32 = 1 << 2;
    pub const SYNTIMERS: u32 = 1 << 3;
    pub const APIC_ACCESS: u32 = 1 << 4;
    pub const HYPERCALL: u32 = 1 << 5;
    pub const VP_INDEX: u32 = 1 << 6;
    pub const RESET: u32 = 1 << 7;
    pub const REFERENCE_TSC: u32 = 1 << 9;
    pub const ACCESS_FREQUENCY: u32 = 1 << 11;
    pub const REENLIGHTENMENT: u32 = 1 << 13;
}

/// 0x40000003 EDX: features.
mod edx {
    pub const CPU_DYNAMIC_PARTITIONING: u32 = 1 << 3;
    pub const FREQUENCY_MSRS: u32 = 1 << 8;
    pub const STIMER_DIRECT: u32 = 1 << 19;
}

/// 0x40000004 EAX: recommendations.
mod rec {
    pub const REMOTE_TLB_FLUSH: u32 = 1 << 2;
    pub const APIC_ACCESS: u32 = 1 << 3;
    pub const RELAXED_TIMING: u32 = 1 << 5;
    pub const DEPRECATING_AEOI: u32 = 1 << 9;
    pub const CLUSTER_IPI: u32 = 1 << 10;
    pub const EX_PROCESSOR_MASKS: u32 = 1 << 11;
    pub const ENLIGHTENED_VMCS: u32 = 1 << 14;
}

/// A register of a Hyper-V leaf that an enlightenment sets bits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    FeaturesEax,
    FeaturesEdx,
    RecommendationsEax,
}

/// The bits an enlightenment sets; each must be in what KVM supports.
fn bits(f: HvFeature) -> &'static [(Word, u32)] {
    use Word::*;
    match f {
        HvFeature::Relaxed => &[(RecommendationsEax, rec::RELAXED_TIMING)],
        HvFeature::Vapic => &[(FeaturesEax, eax::APIC_ACCESS)],
        // No bit of its own: the retry count goes in 0x40000004 EBX. It needs only the
        // hypercall interface every Hyper-V-capable KVM has.
        HvFeature::Spinlocks => &[(FeaturesEax, eax::HYPERCALL)],
        HvFeature::Vpindex => &[(FeaturesEax, eax::VP_INDEX)],
        HvFeature::Runtime => &[(FeaturesEax, eax::VP_RUNTIME)],
        HvFeature::Synic => &[(FeaturesEax, eax::SYNIC)],
        HvFeature::Stimer => &[(FeaturesEax, eax::SYNTIMERS)],
        HvFeature::StimerDirect => &[(FeaturesEdx, edx::STIMER_DIRECT)],
        HvFeature::Reset => &[(FeaturesEax, eax::RESET)],
        HvFeature::Frequencies => &[
            (FeaturesEax, eax::ACCESS_FREQUENCY),
            (FeaturesEdx, edx::FREQUENCY_MSRS),
        ],
        HvFeature::Reenlightenment => &[(FeaturesEax, eax::REENLIGHTENMENT)],
        HvFeature::Tlbflush => &[(
            RecommendationsEax,
            rec::REMOTE_TLB_FLUSH | rec::EX_PROCESSOR_MASKS,
        )],
        HvFeature::Ipi => &[(
            RecommendationsEax,
            rec::CLUSTER_IPI | rec::EX_PROCESSOR_MASKS,
        )],
        HvFeature::Evmcs => &[(RecommendationsEax, rec::ENLIGHTENED_VMCS)],
        HvFeature::Avic => &[(RecommendationsEax, rec::DEPRECATING_AEOI)],
        HvFeature::Time => &[(FeaturesEax, eax::TIME_REF_COUNT | eax::REFERENCE_TSC)],
    }
}

fn entry(supported: &[kvm_cpuid_entry2], function: u32) -> Option<&kvm_cpuid_entry2> {
    supported.iter().find(|e| e.function == function)
}

fn word(supported: &[kvm_cpuid_entry2], w: Word) -> u32 {
    match w {
        Word::FeaturesEax => entry(supported, LEAF_FEATURES).map_or(0, |e| e.eax),
        Word::FeaturesEdx => entry(supported, LEAF_FEATURES).map_or(0, |e| e.edx),
        Word::RecommendationsEax => entry(supported, LEAF_RECOMMENDATIONS).map_or(0, |e| e.eax),
    }
}

/// The enlightenments of `hv` that `supported` (KVM_GET_SUPPORTED_HV_CPUID; empty
/// when the host's KVM has no Hyper-V support at all) lacks.
pub fn missing(hv: &HyperV, supported: &[kvm_cpuid_entry2]) -> Vec<HvFeature> {
    hv.features
        .iter()
        .copied()
        .filter(|&f| bits(f).iter().any(|&(w, b)| word(supported, w) & b != b))
        .collect()
}

fn leaf(function: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function,
        eax,
        ebx,
        ecx,
        edx,
        ..Default::default()
    }
}

/// Checks `hv` against `supported` and builds the Hyper-V leaves: vendor, interface,
/// version, features, recommendations, limits, and with evmcs the nested leaf.
pub fn leaves(
    hv: &HyperV,
    supported: &[kvm_cpuid_entry2],
) -> Result<Vec<kvm_cpuid_entry2>, HypervError> {
    if let Some((f, needs)) = HvFeature::missing_requirement(&hv.features) {
        return Err(HypervError::Dependency(
            f.libvirt_name(),
            needs.libvirt_name(),
        ));
    }
    let lacking = missing(hv, supported);
    if !lacking.is_empty() {
        let names: Vec<String> = lacking
            .iter()
            .map(|f| format!("'{}' ({})", f.libvirt_name(), f.qemu_name()))
            .collect();
        return Err(HypervError::Unsupported(names.join(", ")));
    }

    let mut words = [0u32; 3];
    for &f in &hv.features {
        for &(w, b) in bits(f) {
            words[w as usize] |= b;
        }
    }
    let [mut features_eax, mut features_edx, mut recommendations] = words;
    // Every enlightenment goes through the hypercall page and GUEST_OS_ID.
    features_eax |= eax::HYPERCALL;
    // Not a KVM feature, but Windows needs it to hot-add CPUs (QEMU sets it too).
    features_edx |= edx::CPU_DYNAMIC_PARTITIONING;
    if hv.has(HvFeature::Vapic) && !hv.has(HvFeature::Avic) {
        recommendations |= rec::APIC_ACCESS;
    }
    let evmcs = hv.has(HvFeature::Evmcs);

    let vendor = hv.vendor_id.as_deref().unwrap_or("Microsoft Hv").as_bytes();
    let mut sig = [0u8; 12];
    let n = vendor.len().min(12);
    sig[..n].copy_from_slice(&vendor[..n]);
    let sig_word = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);

    let max_leaf = if evmcs { LEAF_NESTED } else { LEAF_LIMITS };
    // Limits: KVM's maximum of virtual processors; 64 logical processors, as QEMU.
    let max_vps = entry(supported, LEAF_LIMITS).map_or(0, |e| e.eax);
    let mut out = vec![
        leaf(LEAF_VENDOR, max_leaf, sig_word(0), sig_word(4), sig_word(8)),
        leaf(LEAF_INTERFACE, u32::from_le_bytes(*b"Hv#1"), 0, 0, 0),
        // Windows Server 2016 / Windows 10 1607: build 14393, version 10.0 (QEMU's
        // default hv-version-id).
        leaf(LEAF_VERSION, 14393, 10 << 16, 0, 0),
        leaf(LEAF_FEATURES, features_eax, 0, 0, features_edx),
        leaf(
            LEAF_RECOMMENDATIONS,
            recommendations,
            hv.spinlock_retries.unwrap_or(u32::MAX),
            0,
            0,
        ),
        leaf(LEAF_LIMITS, max_vps, 0x40, 0, 0),
    ];
    if evmcs {
        out.extend((LEAF_LIMITS + 1..LEAF_NESTED).map(|f| leaf(f, 0, 0, 0, 0)));
        let nested = entry(supported, LEAF_NESTED).map_or(0, |e| e.eax);
        out.push(leaf(LEAF_NESTED, nested, 0, 0, 0));
    }
    Ok(out)
}

/// Moves KVM's own leaves (0x40000000..0x400000FF) up by [`KVM_LEAVES_OFFSET`],
/// keeping their maximum-leaf word consistent, so Hyper-V's can take their place.
pub fn relocate_kvm_leaves(entries: &mut [kvm_cpuid_entry2]) {
    for e in entries.iter_mut() {
        if (LEAF_VENDOR..LEAF_VENDOR + KVM_LEAVES_OFFSET).contains(&e.function) {
            if e.function == LEAF_VENDOR {
                e.eax = e.eax.max(LEAF_VENDOR) + KVM_LEAVES_OFFSET;
            }
            e.function += KVM_LEAVES_OFFSET;
        }
    }
}

/// The CPUID of a vCPU with Hyper-V enlightenments: KVM's leaves moved up, Hyper-V's
/// `hv_leaves` (from [`leaves`]) added.
pub fn merge(entries: &mut Vec<kvm_cpuid_entry2>, hv_leaves: &[kvm_cpuid_entry2]) {
    relocate_kvm_leaves(entries);
    entries.extend_from_slice(hv_leaves);
}

#[cfg(test)]
mod tests {
    use super::*;
    use HvFeature::*;

    /// What KVM_GET_SUPPORTED_HV_CPUID reports on a 6.1 kernel without evmcs
    /// (an AMD host, or Intel before the cap is enabled).
    fn kvm_6_1() -> Vec<kvm_cpuid_entry2> {
        vec![
            leaf(LEAF_VENDOR, LEAF_LIMITS, 0, 0, 0),
            leaf(LEAF_INTERFACE, u32::from_le_bytes(*b"Hv#1"), 0, 0, 0),
            leaf(LEAF_VERSION, 0x3839, 0xa0000, 0, 0),
            leaf(LEAF_FEATURES, 0x2fff, 0x30, 0, 0x000b_b9bf),
            leaf(LEAF_RECOMMENDATIONS, 0xe2c, 0xfff, 0, 0),
            leaf(LEAF_LIMITS, 1024, 64, 0, 0),
            leaf(LEAF_NESTED, 0, 0, 0, 0),
        ]
    }

    fn hv(features: &[HvFeature]) -> HyperV {
        HyperV {
            features: features.to_vec(),
            spinlock_retries: features.contains(&Spinlocks).then_some(8191),
            vendor_id: None,
        }
    }

    fn get(v: &[kvm_cpuid_entry2], f: u32) -> kvm_cpuid_entry2 {
        *v.iter().find(|e| e.function == f).unwrap()
    }

    fn sig(e: &kvm_cpuid_entry2) -> Vec<u8> {
        [e.ebx, e.ecx, e.edx]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect()
    }

    #[test]
    fn virt_install_set_gives_exactly_its_bits() {
        let set = [
            Relaxed,
            Vapic,
            Spinlocks,
            Vpindex,
            Runtime,
            Synic,
            Stimer,
            Reset,
            Frequencies,
            Tlbflush,
            Ipi,
            Time,
        ];
        let v = leaves(&hv(&set), &kvm_6_1()).unwrap();
        let vendor = get(&v, LEAF_VENDOR);
        assert_eq!(vendor.eax, LEAF_LIMITS);
        assert_eq!(sig(&vendor), b"Microsoft Hv");
        assert_eq!(&get(&v, LEAF_INTERFACE).eax.to_le_bytes(), b"Hv#1");
        let f = get(&v, LEAF_FEATURES);
        // runtime, time ref, synic, stimer, apic, hypercall, vp index, reset, ref TSC,
        // frequencies; not reenlightenment (bit 13).
        assert_eq!(f.eax, 0b0000_1010_1111_1111);
        assert_eq!(f.edx, (1 << 3) | (1 << 8));
        let r = get(&v, LEAF_RECOMMENDATIONS);
        assert_eq!(
            r.eax,
            (1 << 2) | (1 << 3) | (1 << 5) | (1 << 10) | (1 << 11),
            "remote TLB flush, APIC access, relaxed timing, cluster IPI, ex masks"
        );
        assert_eq!(r.ebx, 8191);
        assert_eq!(
            (get(&v, LEAF_LIMITS).eax, get(&v, LEAF_LIMITS).ebx),
            (1024, 64)
        );
        assert!(
            v.iter().all(|e| e.function <= LEAF_LIMITS),
            "no nested leaf"
        );
    }

    #[test]
    fn minimal_set_has_hypercall_and_spinlocks_off() {
        let v = leaves(&hv(&[Relaxed]), &kvm_6_1()).unwrap();
        assert_eq!(get(&v, LEAF_FEATURES).eax, eax::HYPERCALL);
        assert_eq!(get(&v, LEAF_RECOMMENDATIONS).eax, rec::RELAXED_TIMING);
        assert_eq!(get(&v, LEAF_RECOMMENDATIONS).ebx, u32::MAX);
        let mut custom = hv(&[Vapic, Avic, StimerDirect, Stimer, Synic, Vpindex, Time]);
        custom.vendor_id = Some("KVM Hv".into());
        let v = leaves(&custom, &kvm_6_1()).unwrap();
        assert_eq!(sig(&get(&v, LEAF_VENDOR)), b"KVM Hv\0\0\0\0\0\0");
        assert_eq!(
            get(&v, LEAF_RECOMMENDATIONS).eax & rec::APIC_ACCESS,
            0,
            "avic: no APIC-access recommendation"
        );
        assert_ne!(get(&v, LEAF_FEATURES).edx & edx::STIMER_DIRECT, 0);
    }

    #[test]
    fn evmcs_adds_nested_leaves_when_supported() {
        let mut host = kvm_6_1();
        host.iter_mut()
            .find(|e| e.function == LEAF_RECOMMENDATIONS)
            .unwrap()
            .eax |= rec::ENLIGHTENED_VMCS;
        host.iter_mut()
            .find(|e| e.function == LEAF_NESTED)
            .unwrap()
            .eax = 0x0101;
        let v = leaves(&hv(&[Vapic, Evmcs]), &host).unwrap();
        assert_eq!(get(&v, LEAF_VENDOR).eax, LEAF_NESTED);
        assert_eq!(get(&v, LEAF_NESTED).eax, 0x0101);
        assert_eq!(v.len(), 11, "0x40000000..=0x4000000A");
        // Without the cap (AMD), evmcs is refused by name.
        assert_eq!(
            leaves(&hv(&[Vapic, Evmcs]), &kvm_6_1()),
            Err(HypervError::Unsupported("'evmcs' (hv-evmcs)".into()))
        );
    }

    #[test]
    fn a_host_without_hyperv_refuses_every_enlightenment_by_name() {
        let e = leaves(&hv(&[Relaxed, Vapic, Spinlocks, Time]), &[]).unwrap_err();
        assert_eq!(
            e,
            HypervError::Unsupported(
                "'relaxed' (hv-relaxed), 'vapic' (hv-vapic), 'spinlocks' (hv-spinlocks), \
                 'hypervclock' (hv-time)"
                    .into()
            )
        );
        assert!(e.to_string().contains("not started"));
        assert_eq!(
            leaves(&hv(&[Stimer, Synic, Vpindex]), &kvm_6_1()),
            Err(HypervError::Dependency("stimer", "hypervclock"))
        );
    }

    #[test]
    fn kvm_leaves_move_above_hyperv() {
        let mut entries = vec![
            leaf(1, 0, 0, 0, 0),
            leaf(LEAF_VENDOR, 0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d),
            leaf(0x4000_0001, 0x1, 0, 0, 0),
        ];
        let hv_leaves = leaves(&hv(&[Relaxed]), &kvm_6_1()).unwrap();
        merge(&mut entries, &hv_leaves);
        let kvm = get(&entries, 0x4000_0100);
        assert_eq!(kvm.eax, 0x4000_0101);
        assert_eq!(&sig(&kvm)[..9], b"KVMKVMKVM");
        assert_eq!(get(&entries, 0x4000_0101).eax, 1);
        assert_eq!(sig(&get(&entries, LEAF_VENDOR)), b"Microsoft Hv");
        assert_eq!(
            entries.iter().filter(|e| e.function == LEAF_VENDOR).count(),
            1
        );
    }
}

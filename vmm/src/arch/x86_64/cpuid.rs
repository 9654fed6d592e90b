//! The CPUID each vCPU sees: what KVM supports (`KVM_GET_SUPPORTED_CPUID`), with
//! the spec's feature policies applied, the hypervisor and KVM leaves set, and the
//! topology leaves (1, 4, 0xB, 0x1F) describing this vCPU's place in the machine.

use kvm_bindings::{kvm_cpuid_entry2, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};
use machine_spec::{CpuFeature, FeaturePolicy, Topology};

use super::features::{self, FeatureBit, Reg};

/// Errors of CPUID construction.
#[derive(Debug, thiserror::Error)]
pub enum CpuidError {
    /// A feature name that is not in our table.
    #[error("unsupported configuration: unknown CPU feature '{0}'")]
    UnknownFeature(String),
    /// `require` on a feature this host's KVM cannot give the guest.
    #[error(
        "guest CPU does not match the host: host CPU (KVM) does not provide required feature '{0}'"
    )]
    MissingRequired(String),
    /// A named model's needs or a policy the host cannot honour (libvirt's
    /// `VIR_ERR_CPU_INCOMPATIBLE` text).
    #[error("the CPU is incompatible with host CPU: {0}")]
    Incompatible(String),
    /// No named model fits the host (`host-model`).
    #[error("unsupported configuration: no CPU model describes this host's CPU")]
    NoHostModel,
    /// A model name that is not in our table.
    #[error("unsupported configuration: CPU model '{0}' is not supported by hypervisor")]
    UnknownModel(String),
}

/// `CPUID.1:ECX` hypervisor-present bit.
const ECX_HYPERVISOR: u32 = 1 << 31;
/// `CPUID.1:EDX` HTT (more than one logical processor per package).
const EDX_HTT: u32 = 1 << 28;
/// KVM's signature leaf and its feature leaf.
const KVM_SIGNATURE_LEAF: u32 = 0x4000_0000;
const KVM_FEATURES_LEAF: u32 = 0x4000_0001;

/// Where one vCPU sits, and the APIC id that encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuPosition {
    pub socket: u32,
    pub die: u32,
    pub core: u32,
    pub thread: u32,
    pub apic_id: u32,
}

/// Bits needed to number `n` things (ceil(log2 n)).
fn bits_for(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

/// APIC-id field widths for a topology.
#[derive(Debug, Clone, Copy)]
struct Widths {
    thread: u32,
    core: u32,
    die: u32,
}

fn widths(t: &Topology) -> Widths {
    Widths {
        thread: bits_for(t.threads),
        core: bits_for(t.cores),
        die: bits_for(t.dies),
    }
}

/// The position of vCPU `index`: threads vary fastest, then cores, dies, sockets.
pub fn position(t: &Topology, index: u32) -> CpuPosition {
    let w = widths(t);
    let thread = index % t.threads;
    let core = (index / t.threads) % t.cores;
    let die = (index / (t.threads * t.cores)) % t.dies;
    let socket = index / (t.threads * t.cores * t.dies);
    let apic_id = (((socket << w.die | die) << w.core | core) << w.thread) | thread;
    CpuPosition {
        socket,
        die,
        core,
        thread,
        apic_id,
    }
}

fn reg_mut(e: &mut kvm_cpuid_entry2, r: Reg) -> &mut u32 {
    match r {
        Reg::Eax => &mut e.eax,
        Reg::Ebx => &mut e.ebx,
        Reg::Ecx => &mut e.ecx,
        Reg::Edx => &mut e.edx,
    }
}

pub(super) fn find(
    entries: &mut [kvm_cpuid_entry2],
    leaf: u32,
    subleaf: u32,
) -> Option<&mut kvm_cpuid_entry2> {
    entries.iter_mut().find(|e| {
        e.function == leaf && (e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX == 0 || e.index == subleaf)
    })
}

pub(super) fn bit_is_set(entries: &mut [kvm_cpuid_entry2], b: FeatureBit) -> bool {
    find(entries, b.leaf, b.subleaf)
        .map(|e| *reg_mut(e, b.reg) & (1 << b.bit) != 0)
        .unwrap_or(false)
}

pub(super) fn set_bit(entries: &mut [kvm_cpuid_entry2], b: FeatureBit, on: bool) {
    if let Some(e) = find(entries, b.leaf, b.subleaf) {
        let r = reg_mut(e, b.reg);
        if on {
            *r |= 1 << b.bit;
        } else {
            *r &= !(1 << b.bit);
        }
    }
}

/// The feature bits named `name`: one, except `kvmclock` which QEMU maps onto
/// both KVM clock-source bits (0 and 3).
fn bits_of(name: &str) -> Result<Vec<FeatureBit>, CpuidError> {
    let b = features::lookup(name).ok_or_else(|| CpuidError::UnknownFeature(name.to_string()))?;
    let mut v = vec![b];
    if features::normalize(name) == "kvmclock" {
        v.push(FeatureBit { bit: 3, ..b });
    }
    Ok(v)
}

/// Applies the spec's feature policies and our fixed choices to KVM's supported
/// CPUID. The result is the same for every vCPU; [`for_vcpu`] adds the topology.
pub fn apply_features(
    supported: &[kvm_cpuid_entry2],
    policies: &[CpuFeature],
) -> Result<Vec<kvm_cpuid_entry2>, CpuidError> {
    let mut entries = supported.to_vec();
    let host = supported.to_vec();

    // A hypervisor is present, and it is KVM.
    if let Some(e) = find(&mut entries, 1, 0) {
        e.ecx |= ECX_HYPERVISOR;
    }
    if let Some(e) = find(&mut entries, KVM_SIGNATURE_LEAF, 0) {
        e.eax = e.eax.max(KVM_FEATURES_LEAF);
        e.ebx = u32::from_le_bytes(*b"KVMK");
        e.ecx = u32::from_le_bytes(*b"VMKV");
        e.edx = u32::from_le_bytes(*b"M\0\0\0");
    }
    for name in features::KVM_HIDDEN_BY_DEFAULT {
        for b in bits_of(name)? {
            set_bit(&mut entries, b, false);
        }
    }

    for p in policies {
        let bits = bits_of(&p.name)?;
        for b in bits {
            let on_host = bit_is_set(&mut host.clone(), b);
            match p.policy {
                FeaturePolicy::Disable | FeaturePolicy::Forbid => set_bit(&mut entries, b, false),
                FeaturePolicy::Require if !on_host => {
                    return Err(CpuidError::MissingRequired(p.name.clone()))
                }
                FeaturePolicy::Require | FeaturePolicy::Force => {
                    if on_host || b.leaf == 1 && b.reg == Reg::Ecx && b.bit == 31 {
                        set_bit(&mut entries, b, true);
                    } else {
                        tracing::warn!(feature = %p.name, "KVM cannot provide CPU feature; not forced");
                    }
                }
                // `optional`: whatever the host has, which is already there.
                FeaturePolicy::Optional => {}
            }
        }
    }
    Ok(entries)
}

fn topo_entry(leaf: u32, subleaf: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function: leaf,
        index: subleaf,
        flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
        eax,
        ebx,
        ecx,
        edx,
        ..Default::default()
    }
}

/// The CPUID of vCPU `index`: `base` (from [`apply_features`]) with the topology
/// leaves filled in for its position.
pub fn for_vcpu(base: &[kvm_cpuid_entry2], t: &Topology, index: u32) -> Vec<kvm_cpuid_entry2> {
    let pos = position(t, index);
    let w = widths(t);
    let per_core = t.threads;
    let per_die = t.threads * t.cores;
    let per_pkg = per_die * t.dies;
    let max_basic = base
        .iter()
        .find(|e| e.function == 0)
        .map(|e| e.eax)
        .unwrap_or(0);

    let mut out: Vec<kvm_cpuid_entry2> = base
        .iter()
        .filter(|e| e.function != 0xb && e.function != 0x1f)
        .copied()
        .collect();
    for e in out.iter_mut() {
        match e.function {
            1 => {
                // EBX: initial APIC id [31:24], logical processors per package [23:16].
                e.ebx = (e.ebx & 0xffff) | (pos.apic_id.min(255) << 24) | (per_pkg.min(255) << 16);
                if per_pkg > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            4 => {
                // Deterministic cache parameters: cores per package [31:26], logical
                // processors sharing this cache [25:14].
                let level = (e.eax >> 5) & 7;
                let sharing = if level >= 3 { per_pkg } else { per_core };
                e.eax = (e.eax & 0x3fff)
                    | ((sharing - 1).min(0xfff) << 14)
                    | (((t.cores * t.dies) - 1).min(0x3f) << 26);
            }
            _ => {}
        }
    }
    if max_basic >= 0xb {
        let x2 = pos.apic_id;
        out.push(topo_entry(0xb, 0, w.thread, per_core, 1 << 8, x2));
        out.push(topo_entry(
            0xb,
            1,
            w.thread + w.core + w.die,
            per_pkg,
            1 | (2 << 8),
            x2,
        ));
        out.push(topo_entry(0xb, 2, 0, 0, 2, x2));
    }
    if max_basic >= 0x1f {
        let x2 = pos.apic_id;
        out.push(topo_entry(0x1f, 0, w.thread, per_core, 1 << 8, x2));
        out.push(topo_entry(
            0x1f,
            1,
            w.thread + w.core,
            per_die,
            1 | (2 << 8),
            x2,
        ));
        out.push(topo_entry(
            0x1f,
            2,
            w.thread + w.core + w.die,
            per_pkg,
            2 | (5 << 8),
            x2,
        ));
        out.push(topo_entry(0x1f, 3, 0, 0, 3, x2));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(function: u32, index: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            flags: if function == 4 || function == 7 || function == 0xb {
                KVM_CPUID_FLAG_SIGNIFCANT_INDEX
            } else {
                0
            },
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    /// A plausible slice of KVM_GET_SUPPORTED_CPUID.
    fn host() -> Vec<kvm_cpuid_entry2> {
        vec![
            e(0, 0, 0x1f, 0, 0, 0),
            e(
                1,
                0,
                0x806f8,
                0x0800,
                (1 << 21) | (1 << 13) | (1 << 23),
                1 << 28,
            ),
            e(4, 0, (1 << 5) | 1, 0, 0, 0),
            e(4, 3, (3 << 5) | 3, 0, 0, 0),
            e(7, 0, 0, (1 << 5) | (1 << 9), 0, 0),
            e(0xb, 0, 1, 2, 0x100, 7),
            e(KVM_SIGNATURE_LEAF, 0, 0x4000_0001, 0, 0, 0),
            e(
                KVM_FEATURES_LEAF,
                0,
                (1 << 0) | (1 << 3) | (1 << 7) | (1 << 11),
                0,
                0,
                0,
            ),
        ]
    }

    fn topo(sockets: u32, dies: u32, cores: u32, threads: u32) -> Topology {
        Topology {
            sockets,
            dies,
            cores,
            threads,
        }
    }

    fn get(v: &[kvm_cpuid_entry2], f: u32, i: u32) -> kvm_cpuid_entry2 {
        *v.iter().find(|x| x.function == f && x.index == i).unwrap()
    }

    #[test]
    fn apic_ids_pack_thread_core_die_socket() {
        let t = topo(2, 1, 3, 2);
        assert_eq!(position(&t, 0).apic_id, 0);
        assert_eq!(position(&t, 1).apic_id, 1);
        // Core 1 thread 0: thread field is 1 bit wide.
        assert_eq!(position(&t, 2).apic_id, 2);
        // Socket 1: 3 cores need 2 bits, so socket starts at bit 3.
        let p = position(&t, 6);
        assert_eq!((p.socket, p.core, p.thread, p.apic_id), (1, 0, 0, 8));
        let flat = topo(1, 1, 4, 1);
        assert_eq!(
            (0..4)
                .map(|i| position(&flat, i).apic_id)
                .collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn disable_clears_and_hypervisor_and_kvm_signature_are_set() {
        let base = apply_features(
            &host(),
            &[CpuFeature {
                name: "x2apic".into(),
                policy: FeaturePolicy::Disable,
            }],
        )
        .unwrap();
        let l1 = get(&base, 1, 0);
        assert_eq!(l1.ecx & (1 << 21), 0, "x2apic cleared");
        assert_ne!(l1.ecx & (1 << 13), 0, "cx16 kept");
        assert_ne!(l1.ecx & ECX_HYPERVISOR, 0);
        let sig = get(&base, KVM_SIGNATURE_LEAF, 0);
        let mut s = Vec::new();
        for r in [sig.ebx, sig.ecx, sig.edx] {
            s.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&s[..9], b"KVMKVMKVM");
        let kvm = get(&base, KVM_FEATURES_LEAF, 0);
        assert_eq!(kvm.eax & (1 << 7), 0, "pv-unhalt hidden by default");
        assert_eq!(kvm.eax & (1 << 11), 0, "pv-ipi hidden by default");
        assert_ne!(kvm.eax & 1, 0, "kvmclock kept");
    }

    #[test]
    fn policies_force_require_and_errors() {
        let force = |name: &str, policy| CpuFeature {
            name: name.into(),
            policy,
        };
        let b = apply_features(&host(), &[force("kvm-pv-unhalt", FeaturePolicy::Force)]).unwrap();
        assert_ne!(get(&b, KVM_FEATURES_LEAF, 0).eax & (1 << 7), 0);
        let b = apply_features(&host(), &[force("kvmclock", FeaturePolicy::Disable)]).unwrap();
        assert_eq!(get(&b, KVM_FEATURES_LEAF, 0).eax & 0b1001, 0);
        // avx512f is not in the host slice: force is ignored, require fails.
        let b = apply_features(&host(), &[force("avx512f", FeaturePolicy::Force)]).unwrap();
        assert_eq!(get(&b, 7, 0).ebx & (1 << 16), 0);
        assert!(matches!(
            apply_features(&host(), &[force("avx512f", FeaturePolicy::Require)]),
            Err(CpuidError::MissingRequired(_))
        ));
        assert!(matches!(
            apply_features(&host(), &[force("warp-drive", FeaturePolicy::Disable)]),
            Err(CpuidError::UnknownFeature(_))
        ));
    }

    #[test]
    fn topology_leaves_describe_each_vcpu() {
        let t = topo(1, 1, 2, 2);
        let base = apply_features(&host(), &[]).unwrap();
        let v = for_vcpu(&base, &t, 3);
        let l1 = get(&v, 1, 0);
        assert_eq!(l1.ebx >> 24, 3, "initial APIC id");
        assert_eq!((l1.ebx >> 16) & 0xff, 4, "logical processors per package");
        assert_ne!(l1.edx & EDX_HTT, 0);
        let smt = get(&v, 0xb, 0);
        assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (1, 2, 0x100, 3));
        let core = get(&v, 0xb, 1);
        assert_eq!((core.eax, core.ebx, core.ecx), (2, 4, 0x201));
        assert_eq!(get(&v, 0xb, 2).ecx, 2);
        // One 0xB leaf per sub-leaf: KVM's own entries were replaced.
        assert_eq!(v.iter().filter(|x| x.function == 0xb).count(), 3);
        assert_eq!(get(&v, 0x1f, 2).ecx, 2 | (5 << 8));
        let l3 = get(&v, 4, 3);
        assert_eq!((l3.eax >> 14) & 0xfff, 3, "L3 shared by all 4 threads");
        assert_eq!(l3.eax >> 26, 1, "2 cores per package");
        assert_eq!(
            (get(&v, 4, 0).eax >> 14) & 0xfff,
            1,
            "L1 shared by 2 threads"
        );
        let single = for_vcpu(&base, &topo(1, 1, 1, 1), 0);
        assert_eq!(get(&single, 1, 0).edx & EDX_HTT, 0);
    }
}

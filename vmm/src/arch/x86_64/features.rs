//! libvirt/QEMU CPU feature names and where each lives in CPUID.

/// A CPUID register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

/// Where a feature bit lives: leaf, sub-leaf, register, bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureBit {
    pub leaf: u32,
    pub subleaf: u32,
    pub reg: Reg,
    pub bit: u8,
}

const fn f(leaf: u32, subleaf: u32, reg: Reg, bit: u8) -> FeatureBit {
    FeatureBit {
        leaf,
        subleaf,
        reg,
        bit,
    }
}

use Reg::*;

/// Feature names as libvirt writes them (`<feature name=…>`), with QEMU's spellings.
/// Names are compared after [`normalize`] (lower case, `_` as `-`).
const TABLE: &[(&str, FeatureBit)] = &[
    // CPUID.1:ECX
    ("pni", f(1, 0, Ecx, 0)),
    ("sse3", f(1, 0, Ecx, 0)),
    ("pclmuldq", f(1, 0, Ecx, 1)),
    ("pclmulqdq", f(1, 0, Ecx, 1)),
    ("dtes64", f(1, 0, Ecx, 2)),
    ("monitor", f(1, 0, Ecx, 3)),
    ("ds-cpl", f(1, 0, Ecx, 4)),
    ("vmx", f(1, 0, Ecx, 5)),
    ("smx", f(1, 0, Ecx, 6)),
    ("est", f(1, 0, Ecx, 7)),
    ("tm2", f(1, 0, Ecx, 8)),
    ("ssse3", f(1, 0, Ecx, 9)),
    ("cid", f(1, 0, Ecx, 10)),
    ("fma", f(1, 0, Ecx, 12)),
    ("cx16", f(1, 0, Ecx, 13)),
    ("xtpr", f(1, 0, Ecx, 14)),
    ("pdcm", f(1, 0, Ecx, 15)),
    ("pcid", f(1, 0, Ecx, 17)),
    ("dca", f(1, 0, Ecx, 18)),
    ("sse4.1", f(1, 0, Ecx, 19)),
    ("sse4-1", f(1, 0, Ecx, 19)),
    ("sse4.2", f(1, 0, Ecx, 20)),
    ("sse4-2", f(1, 0, Ecx, 20)),
    ("x2apic", f(1, 0, Ecx, 21)),
    ("movbe", f(1, 0, Ecx, 22)),
    ("popcnt", f(1, 0, Ecx, 23)),
    ("tsc-deadline", f(1, 0, Ecx, 24)),
    ("aes", f(1, 0, Ecx, 25)),
    ("xsave", f(1, 0, Ecx, 26)),
    ("osxsave", f(1, 0, Ecx, 27)),
    ("avx", f(1, 0, Ecx, 28)),
    ("f16c", f(1, 0, Ecx, 29)),
    ("rdrand", f(1, 0, Ecx, 30)),
    ("hypervisor", f(1, 0, Ecx, 31)),
    // CPUID.6:EAX
    ("arat", f(6, 0, Eax, 2)),
    // CPUID.1:EDX
    ("fpu", f(1, 0, Edx, 0)),
    ("vme", f(1, 0, Edx, 1)),
    ("de", f(1, 0, Edx, 2)),
    ("pse", f(1, 0, Edx, 3)),
    ("tsc", f(1, 0, Edx, 4)),
    ("msr", f(1, 0, Edx, 5)),
    ("pae", f(1, 0, Edx, 6)),
    ("mce", f(1, 0, Edx, 7)),
    ("cx8", f(1, 0, Edx, 8)),
    ("apic", f(1, 0, Edx, 9)),
    ("sep", f(1, 0, Edx, 11)),
    ("mtrr", f(1, 0, Edx, 12)),
    ("pge", f(1, 0, Edx, 13)),
    ("mca", f(1, 0, Edx, 14)),
    ("cmov", f(1, 0, Edx, 15)),
    ("pat", f(1, 0, Edx, 16)),
    ("pse36", f(1, 0, Edx, 17)),
    ("pn", f(1, 0, Edx, 18)),
    ("clflush", f(1, 0, Edx, 19)),
    ("ds", f(1, 0, Edx, 21)),
    ("acpi", f(1, 0, Edx, 22)),
    ("mmx", f(1, 0, Edx, 23)),
    ("fxsr", f(1, 0, Edx, 24)),
    ("sse", f(1, 0, Edx, 25)),
    ("sse2", f(1, 0, Edx, 26)),
    ("ss", f(1, 0, Edx, 27)),
    ("ht", f(1, 0, Edx, 28)),
    ("tm", f(1, 0, Edx, 29)),
    ("ia64", f(1, 0, Edx, 30)),
    ("pbe", f(1, 0, Edx, 31)),
    // CPUID.(7,0):EBX
    ("fsgsbase", f(7, 0, Ebx, 0)),
    ("tsc-adjust", f(7, 0, Ebx, 1)),
    ("sgx", f(7, 0, Ebx, 2)),
    ("bmi1", f(7, 0, Ebx, 3)),
    ("hle", f(7, 0, Ebx, 4)),
    ("avx2", f(7, 0, Ebx, 5)),
    ("smep", f(7, 0, Ebx, 7)),
    ("bmi2", f(7, 0, Ebx, 8)),
    ("erms", f(7, 0, Ebx, 9)),
    ("invpcid", f(7, 0, Ebx, 10)),
    ("rtm", f(7, 0, Ebx, 11)),
    ("mpx", f(7, 0, Ebx, 14)),
    ("avx512f", f(7, 0, Ebx, 16)),
    ("avx512dq", f(7, 0, Ebx, 17)),
    ("rdseed", f(7, 0, Ebx, 18)),
    ("adx", f(7, 0, Ebx, 19)),
    ("smap", f(7, 0, Ebx, 20)),
    ("avx512ifma", f(7, 0, Ebx, 21)),
    ("clflushopt", f(7, 0, Ebx, 23)),
    ("clwb", f(7, 0, Ebx, 24)),
    ("intel-pt", f(7, 0, Ebx, 25)),
    ("avx512pf", f(7, 0, Ebx, 26)),
    ("avx512er", f(7, 0, Ebx, 27)),
    ("avx512cd", f(7, 0, Ebx, 28)),
    ("sha-ni", f(7, 0, Ebx, 29)),
    ("avx512bw", f(7, 0, Ebx, 30)),
    ("avx512vl", f(7, 0, Ebx, 31)),
    // CPUID.(7,0):ECX
    ("avx512vbmi", f(7, 0, Ecx, 1)),
    ("umip", f(7, 0, Ecx, 2)),
    ("pku", f(7, 0, Ecx, 3)),
    ("ospke", f(7, 0, Ecx, 4)),
    ("waitpkg", f(7, 0, Ecx, 5)),
    ("avx512vbmi2", f(7, 0, Ecx, 6)),
    ("gfni", f(7, 0, Ecx, 8)),
    ("vaes", f(7, 0, Ecx, 9)),
    ("vpclmulqdq", f(7, 0, Ecx, 10)),
    ("avx512vnni", f(7, 0, Ecx, 11)),
    ("avx512bitalg", f(7, 0, Ecx, 12)),
    ("avx512-vpopcntdq", f(7, 0, Ecx, 14)),
    ("la57", f(7, 0, Ecx, 16)),
    ("rdpid", f(7, 0, Ecx, 22)),
    ("cldemote", f(7, 0, Ecx, 25)),
    ("movdiri", f(7, 0, Ecx, 27)),
    ("movdir64b", f(7, 0, Ecx, 28)),
    // CPUID.(7,0):EDX
    ("avx512-4vnniw", f(7, 0, Edx, 2)),
    ("avx512-4fmaps", f(7, 0, Edx, 3)),
    ("fsrm", f(7, 0, Edx, 4)),
    ("md-clear", f(7, 0, Edx, 10)),
    ("serialize", f(7, 0, Edx, 14)),
    ("tsx-ldtrk", f(7, 0, Edx, 16)),
    ("pconfig", f(7, 0, Edx, 18)),
    ("arch-lbr", f(7, 0, Edx, 19)),
    ("amx-bf16", f(7, 0, Edx, 22)),
    ("avx512-fp16", f(7, 0, Edx, 23)),
    ("amx-tile", f(7, 0, Edx, 24)),
    ("amx-int8", f(7, 0, Edx, 25)),
    ("spec-ctrl", f(7, 0, Edx, 26)),
    ("stibp", f(7, 0, Edx, 27)),
    ("arch-capabilities", f(7, 0, Edx, 29)),
    ("core-capability", f(7, 0, Edx, 30)),
    ("ssbd", f(7, 0, Edx, 31)),
    // CPUID.(7,1):EAX
    ("avx512-bf16", f(7, 1, Eax, 5)),
    // CPUID.(0xD,1):EAX
    ("xsaveopt", f(0xd, 1, Eax, 0)),
    ("xsavec", f(0xd, 1, Eax, 1)),
    ("xgetbv1", f(0xd, 1, Eax, 2)),
    ("xsaves", f(0xd, 1, Eax, 3)),
    // CPUID.0x80000001:ECX
    ("lahf-lm", f(0x8000_0001, 0, Ecx, 0)),
    ("cmp-legacy", f(0x8000_0001, 0, Ecx, 1)),
    ("svm", f(0x8000_0001, 0, Ecx, 2)),
    ("extapic", f(0x8000_0001, 0, Ecx, 3)),
    ("cr8legacy", f(0x8000_0001, 0, Ecx, 4)),
    ("abm", f(0x8000_0001, 0, Ecx, 5)),
    ("sse4a", f(0x8000_0001, 0, Ecx, 6)),
    ("misalignsse", f(0x8000_0001, 0, Ecx, 7)),
    ("3dnowprefetch", f(0x8000_0001, 0, Ecx, 8)),
    ("osvw", f(0x8000_0001, 0, Ecx, 9)),
    ("ibs", f(0x8000_0001, 0, Ecx, 10)),
    ("xop", f(0x8000_0001, 0, Ecx, 11)),
    ("skinit", f(0x8000_0001, 0, Ecx, 12)),
    ("wdt", f(0x8000_0001, 0, Ecx, 13)),
    ("lwp", f(0x8000_0001, 0, Ecx, 15)),
    ("fma4", f(0x8000_0001, 0, Ecx, 16)),
    ("tce", f(0x8000_0001, 0, Ecx, 17)),
    ("nodeid-msr", f(0x8000_0001, 0, Ecx, 19)),
    ("tbm", f(0x8000_0001, 0, Ecx, 21)),
    ("topoext", f(0x8000_0001, 0, Ecx, 22)),
    ("perfctr-core", f(0x8000_0001, 0, Ecx, 23)),
    ("perfctr-nb", f(0x8000_0001, 0, Ecx, 24)),
    // CPUID.0x80000001:EDX
    ("syscall", f(0x8000_0001, 0, Edx, 11)),
    ("nx", f(0x8000_0001, 0, Edx, 20)),
    ("xd", f(0x8000_0001, 0, Edx, 20)),
    ("mmxext", f(0x8000_0001, 0, Edx, 22)),
    ("fxsr-opt", f(0x8000_0001, 0, Edx, 25)),
    ("pdpe1gb", f(0x8000_0001, 0, Edx, 26)),
    ("rdtscp", f(0x8000_0001, 0, Edx, 27)),
    ("lm", f(0x8000_0001, 0, Edx, 29)),
    ("3dnowext", f(0x8000_0001, 0, Edx, 30)),
    ("3dnow", f(0x8000_0001, 0, Edx, 31)),
    // CPUID.0x80000008:EBX
    ("clzero", f(0x8000_0008, 0, Ebx, 0)),
    ("xsaveerptr", f(0x8000_0008, 0, Ebx, 2)),
    ("wbnoinvd", f(0x8000_0008, 0, Ebx, 9)),
    ("ibpb", f(0x8000_0008, 0, Ebx, 12)),
    ("ibrs", f(0x8000_0008, 0, Ebx, 14)),
    ("amd-stibp", f(0x8000_0008, 0, Ebx, 15)),
    ("amd-ssbd", f(0x8000_0008, 0, Ebx, 24)),
    ("virt-ssbd", f(0x8000_0008, 0, Ebx, 25)),
    // CPUID.0x8000000A:EDX (SVM features)
    ("npt", f(0x8000_000a, 0, Edx, 0)),
    ("nrip-save", f(0x8000_000a, 0, Edx, 3)),
    ("svme-addr-chk", f(0x8000_000a, 0, Edx, 28)),
    // KVM paravirtual features, CPUID.0x40000001:EAX
    ("kvmclock", f(0x4000_0001, 0, Eax, 0)),
    ("kvm-nopiodelay", f(0x4000_0001, 0, Eax, 1)),
    ("kvm-mmu", f(0x4000_0001, 0, Eax, 2)),
    ("kvm-asyncpf", f(0x4000_0001, 0, Eax, 4)),
    ("kvm-steal-time", f(0x4000_0001, 0, Eax, 5)),
    ("kvm-pv-eoi", f(0x4000_0001, 0, Eax, 6)),
    ("kvm-pv-unhalt", f(0x4000_0001, 0, Eax, 7)),
    ("kvm-pv-tlb-flush", f(0x4000_0001, 0, Eax, 9)),
    ("kvm-asyncpf-vmexit", f(0x4000_0001, 0, Eax, 10)),
    ("kvm-pv-ipi", f(0x4000_0001, 0, Eax, 11)),
    ("kvm-poll-control", f(0x4000_0001, 0, Eax, 12)),
    ("kvm-pv-sched-yield", f(0x4000_0001, 0, Eax, 13)),
    ("kvm-asyncpf-int", f(0x4000_0001, 0, Eax, 14)),
    ("kvm-msi-ext-dest-id", f(0x4000_0001, 0, Eax, 15)),
    ("kvmclock-stable-bit", f(0x4000_0001, 0, Eax, 24)),
];

/// KVM paravirtual features hidden unless a `force`/`require` policy asks for
/// them (QEMU's named models leave them off as well): they rely on hypercalls and
/// an emulating host (kvm_pvm) has been seen to hang SMP guests that use them.
pub const KVM_HIDDEN_BY_DEFAULT: &[&str] = &[
    "kvm-pv-unhalt",
    "kvm-pv-tlb-flush",
    "kvm-pv-ipi",
    "kvm-pv-sched-yield",
];

/// Canonical spelling for comparisons: lower case, `_` written as `-`.
pub fn normalize(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('_', "-")
}

/// Every named feature bit: `(canonical name, bit)`; one bit may have two names.
pub fn all() -> impl Iterator<Item = (&'static str, FeatureBit)> {
    TABLE.iter().copied()
}

/// Looks a feature up by its libvirt or QEMU name.
pub fn lookup(name: &str) -> Option<FeatureBit> {
    let n = normalize(name);
    TABLE.iter().find(|(k, _)| *k == n).map(|(_, b)| *b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_and_qemu_spellings_resolve() {
        assert_eq!(lookup("x2apic"), Some(f(1, 0, Ecx, 21)));
        assert_eq!(lookup("sse4.2"), lookup("sse4_2"));
        assert_eq!(lookup("lahf_lm"), Some(f(0x8000_0001, 0, Ecx, 0)));
        assert_eq!(lookup("TSC_ADJUST"), Some(f(7, 0, Ebx, 1)));
        assert_eq!(lookup("no-such-feature"), None);
    }

    #[test]
    fn names_are_unique_after_normalising() {
        for (i, (a, _)) in TABLE.iter().enumerate() {
            assert_eq!(normalize(a), *a, "{a} is not in canonical form");
            assert!(
                TABLE[i + 1..].iter().all(|(b, _)| a != b),
                "{a} listed twice"
            );
        }
        for name in KVM_HIDDEN_BY_DEFAULT {
            assert!(lookup(name).is_some());
        }
    }
}

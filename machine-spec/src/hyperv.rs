//! Hyper-V enlightenments (libvirt `<features><hyperv>` and `<clock><timer
//! name='hypervclock'>`): the paravirtual interfaces Windows uses when it finds a
//! Hyper-V CPUID signature. KVM implements them in the kernel; the VMM only describes
//! the enabled set in CPUID leaves 0x40000000.. and switches on the per-vCPU parts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The enlightenments one machine gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HyperV {
    /// Enabled enlightenments, each once, in [`HvFeature`] order.
    pub features: Vec<HvFeature>,
    /// `<spinlocks state='on' retries=N>`: the spinlock retry count the guest is told
    /// (CPUID 0x40000004 EBX); absent: spinlocks off (0xFFFFFFFF, "never notify").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spinlock_retries: Option<u32>,
    /// `<vendor_id state='on' value=…>`: the signature in CPUID 0x40000000 (at most 12
    /// bytes); absent: "Microsoft Hv".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
}

impl HyperV {
    /// Whether `f` is enabled.
    pub fn has(&self, f: HvFeature) -> bool {
        self.features.contains(&f)
    }
}

/// One enlightenment; the names are libvirt's (and QEMU's `hv-*` without the prefix).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum HvFeature {
    /// Relaxed timing: the guest does not bugcheck on watchdog timeouts.
    Relaxed,
    /// Virtual APIC assist MSRs (EOI, ICR, TPR by MSR).
    Vapic,
    /// Spinlock notification hints (with [`HyperV::spinlock_retries`]).
    Spinlocks,
    /// VP_INDEX MSR: each vCPU's index.
    Vpindex,
    /// VP_RUNTIME MSR: time this vCPU has run.
    Runtime,
    /// Synthetic interrupt controller.
    Synic,
    /// Synthetic timers (need synic and time).
    Stimer,
    /// Synthetic timers in direct mode (an interrupt vector, not a SynIC message).
    StimerDirect,
    /// Reset MSR: the guest resets the machine by MSR write.
    Reset,
    /// TSC and APIC frequency MSRs.
    Frequencies,
    /// Re-enlightenment notifications (TSC frequency changes after migration).
    Reenlightenment,
    /// Paravirtual TLB flush hypercalls (need vpindex).
    Tlbflush,
    /// Paravirtual IPI hypercalls (need vpindex).
    Ipi,
    /// Enlightened VMCS for nested guests (Intel hosts; needs vapic).
    Evmcs,
    /// Tells the guest the host's APIC virtualization (AVIC/APICv) works best without
    /// auto-EOI (QEMU's `hv-avic`).
    Avic,
    /// The reference time counter and reference TSC page (libvirt's
    /// `<timer name='hypervclock'>`, QEMU's `hv-time`).
    Time,
}

impl HvFeature {
    /// The name libvirt uses (the element under `<hyperv>`, or `hypervclock`).
    pub fn libvirt_name(self) -> &'static str {
        match self {
            HvFeature::Relaxed => "relaxed",
            HvFeature::Vapic => "vapic",
            HvFeature::Spinlocks => "spinlocks",
            HvFeature::Vpindex => "vpindex",
            HvFeature::Runtime => "runtime",
            HvFeature::Synic => "synic",
            HvFeature::Stimer => "stimer",
            HvFeature::StimerDirect => "stimer direct",
            HvFeature::Reset => "reset",
            HvFeature::Frequencies => "frequencies",
            HvFeature::Reenlightenment => "reenlightenment",
            HvFeature::Tlbflush => "tlbflush",
            HvFeature::Ipi => "ipi",
            HvFeature::Evmcs => "evmcs",
            HvFeature::Avic => "avic",
            HvFeature::Time => "hypervclock",
        }
    }

    /// QEMU's property name (`hv-relaxed`, …), which libvirt users meet in QEMU's errors.
    pub fn qemu_name(self) -> &'static str {
        match self {
            HvFeature::Relaxed => "hv-relaxed",
            HvFeature::Vapic => "hv-vapic",
            HvFeature::Spinlocks => "hv-spinlocks",
            HvFeature::Vpindex => "hv-vpindex",
            HvFeature::Runtime => "hv-runtime",
            HvFeature::Synic => "hv-synic",
            HvFeature::Stimer => "hv-stimer",
            HvFeature::StimerDirect => "hv-stimer-direct",
            HvFeature::Reset => "hv-reset",
            HvFeature::Frequencies => "hv-frequencies",
            HvFeature::Reenlightenment => "hv-reenlightenment",
            HvFeature::Tlbflush => "hv-tlbflush",
            HvFeature::Ipi => "hv-ipi",
            HvFeature::Evmcs => "hv-evmcs",
            HvFeature::Avic => "hv-avic",
            HvFeature::Time => "hv-time",
        }
    }

    /// The enlightenments this one needs; QEMU refuses a set without them ("Hyper-V …
    /// requires Hyper-V …"), and so do we.
    pub fn requires(self) -> &'static [HvFeature] {
        match self {
            HvFeature::Synic | HvFeature::Tlbflush | HvFeature::Ipi => &[HvFeature::Vpindex],
            HvFeature::Stimer => &[HvFeature::Synic, HvFeature::Time],
            HvFeature::StimerDirect => &[HvFeature::Stimer],
            HvFeature::Evmcs => &[HvFeature::Vapic],
            HvFeature::Relaxed
            | HvFeature::Vapic
            | HvFeature::Spinlocks
            | HvFeature::Vpindex
            | HvFeature::Runtime
            | HvFeature::Reset
            | HvFeature::Frequencies
            | HvFeature::Reenlightenment
            | HvFeature::Avic
            | HvFeature::Time => &[],
        }
    }

    /// The first enlightenment of `set` whose requirement is missing from it, with
    /// that requirement.
    pub fn missing_requirement(set: &[HvFeature]) -> Option<(HvFeature, HvFeature)> {
        set.iter().find_map(|&f| {
            f.requires()
                .iter()
                .find(|r| !set.contains(r))
                .map(|&r| (f, r))
        })
    }
}

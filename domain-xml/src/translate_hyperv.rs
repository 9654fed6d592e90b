//! `<features><hyperv>` and `<clock><timer name='hypervclock'>` → [`ms::HyperV`]: the
//! Hyper-V enlightenments virt-install and virt-manager write for Windows guests.
//!
//! What runs is `mode='custom'` (libvirt's default) with each child `state='on'|'off'`,
//! as libvirt's QEMU driver turns them into `hv-*` CPU flags. Whether the host's KVM
//! has them is decided when the VMM starts (`KVM_GET_SUPPORTED_HV_CPUID`); here only
//! what the XML itself says: values, and the dependencies QEMU enforces (stimer needs
//! synic and hypervclock, …). Children we do not run (`tlbflush` `<direct>`/`<extended>`,
//! `emsr_bitmap`, `xmm_input`) are refused by name.

use machine_spec::{self as ms, HvFeature};

use crate::element::Element;
use crate::error::{Error, Result};
use crate::model::{Domain, YesNo};

/// libvirt's lower bound for `<spinlocks retries>`.
const MIN_SPINLOCK_RETRIES: u32 = 4095;

fn unsupported<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::unsupported(msg))
}

/// The simple on/off children and what each enables.
const SIMPLE: &[(&str, HvFeature)] = &[
    ("relaxed", HvFeature::Relaxed),
    ("vapic", HvFeature::Vapic),
    ("vpindex", HvFeature::Vpindex),
    ("runtime", HvFeature::Runtime),
    ("synic", HvFeature::Synic),
    ("reset", HvFeature::Reset),
    ("frequencies", HvFeature::Frequencies),
    ("reenlightenment", HvFeature::Reenlightenment),
    ("ipi", HvFeature::Ipi),
    ("evmcs", HvFeature::Evmcs),
    ("avic", HvFeature::Avic),
];

/// `state='on'|'off'` of a `<hyperv>` child (required by libvirt's schema).
fn state_on(e: &Element, path: &str) -> Result<bool> {
    match e.get_attr("state") {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(v) => Err(Error::xml(format!(
            "invalid value of state argument for HyperV Enlightenment feature '{path}': '{v}'"
        ))),
        None => Err(Error::xml(format!(
            "missing 'state' attribute for HyperV Enlightenment feature '{path}'"
        ))),
    }
}

/// Refuses any child of `e` (features whose sub-options we do not run).
fn no_children(e: &Element) -> Result<()> {
    match e.child_elements().next() {
        Some(c) => unsupported(format!(
            "<features><hyperv><{}><{}> is not supported",
            e.name, c.name
        )),
        None => Ok(()),
    }
}

/// The enlightenments of `dom`, or `None` when it asks for none.
pub(crate) fn hyperv(dom: &Domain) -> Result<Option<ms::HyperV>> {
    let mut hv = ms::HyperV::default();
    let element = dom.features.iter().flatten().find(|f| f.name == "hyperv");
    if let Some(h) = element {
        match h.get_attr("mode") {
            None | Some("custom") => {}
            Some(m) => {
                return unsupported(format!(
                    "<features><hyperv mode='{m}'> is not supported (only 'custom': name each enlightenment)"
                ))
            }
        }
        for c in h.child_elements() {
            custom_child(c, &mut hv)?;
        }
    }
    let clock = dom.clock.iter().flat_map(|c| &c.timers);
    if clock
        .filter(|t| t.name == "hypervclock")
        .any(|t| t.present == Some(YesNo::Yes))
    {
        hv.features.push(HvFeature::Time);
    }
    if hv.features.is_empty() {
        return Ok(None);
    }
    hv.features.sort();
    hv.features.dedup();
    if let Some((f, needs)) = HvFeature::missing_requirement(&hv.features) {
        return unsupported(format!(
            "Hyper-V enlightenment '{}' requires '{}' ({} needs {})",
            f.libvirt_name(),
            needs.libvirt_name(),
            f.qemu_name(),
            needs.qemu_name()
        ));
    }
    Ok(Some(hv))
}

fn custom_child(c: &Element, hv: &mut ms::HyperV) -> Result<()> {
    let name = c.name.as_str();
    if let Some(&(_, f)) = SIMPLE.iter().find(|(n, _)| *n == name) {
        no_children(c)?;
        if state_on(c, name)? {
            hv.features.push(f);
        }
        return Ok(());
    }
    match name {
        "spinlocks" => {
            if !state_on(c, name)? {
                return Ok(());
            }
            let retries = c
                .get_attr("retries")
                .ok_or_else(|| Error::xml("missing HyperV spinlock retry count".to_string()))?;
            let retries: u32 = retries.parse().map_err(|_| {
                Error::xml(format!("invalid HyperV spinlock retry count '{retries}'"))
            })?;
            if retries < MIN_SPINLOCK_RETRIES {
                return Err(Error::xml(format!(
                    "HyperV spinlock retry count must be at least {MIN_SPINLOCK_RETRIES} (got {retries})"
                )));
            }
            hv.features.push(HvFeature::Spinlocks);
            hv.spinlock_retries = Some(retries);
        }
        "stimer" => {
            let on = state_on(c, name)?;
            for d in c.child_elements() {
                if d.name != "direct" {
                    return unsupported(format!(
                        "<features><hyperv><stimer><{}> is not supported",
                        d.name
                    ));
                }
                if on && state_on(d, "stimer/direct")? {
                    hv.features.push(HvFeature::StimerDirect);
                }
            }
            if on {
                hv.features.push(HvFeature::Stimer);
            }
        }
        "tlbflush" => {
            no_children(c)?;
            if state_on(c, name)? {
                hv.features.push(HvFeature::Tlbflush);
            }
        }
        "vendor_id" => {
            if !state_on(c, name)? {
                return Ok(());
            }
            let v = c.get_attr("value").unwrap_or("");
            if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
            {
                return Err(Error::xml(format!(
                    "HyperV vendor_id value must be 1 to 12 printable ASCII characters (got '{v}')"
                )));
            }
            hv.vendor_id = Some(v.to_string());
        }
        other => {
            return unsupported(format!("<features><hyperv><{other}> is not supported"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(features: &str, clock: &str) -> Result<Option<ms::HyperV>> {
        let xml = format!(
            "<domain type='kvm'><name>t</name><memory>65536</memory>\
             <os><type arch='x86_64'>hvm</type></os><features>{features}</features>{clock}</domain>"
        );
        hyperv(&Domain::parse(&xml).unwrap())
    }

    #[test]
    fn virt_install_windows_set_translates() {
        let hv = translate(
            "<hyperv mode='custom'><relaxed state='on'/><vapic state='on'/>\
             <spinlocks state='on' retries='8191'/><vpindex state='on'/><runtime state='on'/>\
             <synic state='on'/><stimer state='on'><direct state='on'/></stimer>\
             <reset state='on'/><frequencies state='on'/><reenlightenment state='on'/>\
             <tlbflush state='on'/><ipi state='on'/><evmcs state='off'/></hyperv>",
            "<clock offset='localtime'><timer name='hypervclock' present='yes'/></clock>",
        )
        .unwrap()
        .unwrap();
        use HvFeature::*;
        assert_eq!(
            hv.features,
            vec![
                Relaxed,
                Vapic,
                Spinlocks,
                Vpindex,
                Runtime,
                Synic,
                Stimer,
                StimerDirect,
                Reset,
                Frequencies,
                Reenlightenment,
                Tlbflush,
                Ipi,
                Time
            ]
        );
        assert_eq!(hv.spinlock_retries, Some(8191));
        assert_eq!(hv.vendor_id, None);
    }

    #[test]
    fn nothing_on_means_no_enlightenments() {
        assert_eq!(translate("<acpi/>", "").unwrap(), None);
        assert_eq!(
            translate("<hyperv><relaxed state='off'/></hyperv>", "").unwrap(),
            None
        );
        let only_clock = translate(
            "",
            "<clock offset='utc'><timer name='hypervclock' present='yes'/></clock>",
        )
        .unwrap()
        .unwrap();
        assert_eq!(only_clock.features, vec![HvFeature::Time]);
        assert_eq!(
            translate(
                "",
                "<clock offset='utc'><timer name='hypervclock' present='no'/></clock>"
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn bad_values_and_unsupported_children_are_named() {
        let err = |f: &str| translate(f, "").unwrap_err().to_string();
        assert!(
            err("<hyperv><spinlocks state='on' retries='100'/></hyperv>").contains("at least 4095")
        );
        assert!(err("<hyperv><spinlocks state='on'/></hyperv>").contains("retry count"));
        assert!(err("<hyperv><relaxed/></hyperv>").contains("'relaxed'"));
        assert_eq!(
            err("<hyperv><tlbflush state='on'><direct state='on'/></tlbflush></hyperv>"),
            "unsupported configuration: <features><hyperv><tlbflush><direct> is not supported"
        );
        assert_eq!(
            err("<hyperv><xmm_input state='on'/></hyperv>"),
            "unsupported configuration: <features><hyperv><xmm_input> is not supported"
        );
        assert!(err("<hyperv mode='passthrough'/>").contains("mode='passthrough'"));
        assert!(
            err("<hyperv><vendor_id state='on' value='0123456789abc'/></hyperv>")
                .contains("vendor_id")
        );
        let v = translate(
            "<hyperv><relaxed state='on'/><vendor_id state='on' value='KVM Hv'/></hyperv>",
            "",
        )
        .unwrap()
        .unwrap();
        assert_eq!(v.vendor_id.as_deref(), Some("KVM Hv"));
    }

    #[test]
    fn dependencies_are_checked_as_qemu_does() {
        let err = |f: &str, c: &str| translate(f, c).unwrap_err().to_string();
        assert_eq!(
            err(
                "<hyperv><vpindex state='on'/><synic state='on'/><stimer state='on'/></hyperv>",
                ""
            ),
            "unsupported configuration: Hyper-V enlightenment 'stimer' requires 'hypervclock' \
             (hv-stimer needs hv-time)"
        );
        assert!(
            err("<hyperv><synic state='on'/></hyperv>", "").contains("'synic' requires 'vpindex'")
        );
        assert!(err("<hyperv><ipi state='on'/></hyperv>", "").contains("'ipi' requires 'vpindex'"));
        assert!(
            err("<hyperv><evmcs state='on'/></hyperv>", "").contains("'evmcs' requires 'vapic'")
        );
    }
}

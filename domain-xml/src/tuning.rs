//! Resource tuning for the domain's cgroup: `<memtune>`, `<blkiotune>` and the
//! scheduler part of `<cputune>` (`shares`, `period`, `quota`). The VMM never sees
//! these: the daemon writes them into the cgroup it places the VMM in. Anything else
//! in these elements is refused by name, so nothing is parsed and then ignored.

use crate::element::Element;
use crate::error::{Error, Result};
use crate::model::Domain;

/// What the domain's cgroup is given. Memory in KiB, as libvirt's API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tuning {
    /// `<memtune><hard_limit>`.
    pub hard_limit_kib: Option<u64>,
    /// `<memtune><soft_limit>`.
    pub soft_limit_kib: Option<u64>,
    /// `<memtune><swap_hard_limit>` (memory plus swap).
    pub swap_hard_limit_kib: Option<u64>,
    /// `<cputune><shares>`.
    pub cpu_shares: Option<u64>,
    /// `<cputune><period>`.
    pub cpu_period_us: Option<u64>,
    /// -1 (or absent) is unlimited, as in libvirt.
    pub cpu_quota_us: Option<i64>,
    /// `<blkiotune><weight>`.
    pub blkio_weight: Option<u32>,
}

/// Valid `<cputune><period>` values.
pub const PERIOD_RANGE: std::ops::RangeInclusive<u64> = 1000..=1_000_000;
/// The largest `<cputune><quota>`.
pub const QUOTA_MAX: i64 = 17_592_186_044_415;
/// Valid `<blkiotune><weight>` values.
pub const WEIGHT_RANGE: std::ops::RangeInclusive<u32> = 100..=1000;

/// Logged by the VMM: the limits are oxvirtd's to set (`oxvirt-vmm --xml` alone has none).
pub const WARNING: &str = "<memtune>, <cputune> and <blkiotune> take effect only when oxvirtd starts the domain (in its cgroup)";

/// Reads the tuning of `dom`, refusing what oxvirt cannot apply.
pub fn tuning(dom: &Domain) -> Result<Tuning> {
    let mut t = Tuning::default();
    for e in &dom.extra {
        match e.name.as_str() {
            "memtune" => memtune(e, &mut t)?,
            "blkiotune" => blkiotune(e, &mut t)?,
            _ => {}
        }
    }
    if let Some(c) = &dom.cputune {
        if !c.vcpupins.is_empty() {
            return unsupported("<cputune><vcpupin> is not supported");
        }
        for e in &c.other {
            let v = e.text_content();
            match e.name.as_str() {
                "shares" => t.cpu_shares = Some(number(&v, "cputune/shares")?),
                "period" => t.cpu_period_us = Some(period(number(&v, "cputune/period")?)?),
                "quota" => t.cpu_quota_us = Some(quota(signed(&v, "cputune/quota")?)?),
                name => return unsupported(format!("<cputune><{name}> is not supported")),
            }
        }
    }
    Ok(t)
}

/// Writes every tunable `t` sets into `dom`'s `<memtune>`, `<blkiotune>` and
/// `<cputune>` (KiB and microseconds, as libvirt formats them); the others stay.
pub fn set_tuning(dom: &mut Domain, t: &Tuning) {
    let mem = [
        ("hard_limit", t.hard_limit_kib),
        ("soft_limit", t.soft_limit_kib),
        ("swap_hard_limit", t.swap_hard_limit_kib),
    ];
    if mem.iter().any(|(_, v)| v.is_some()) {
        let e = extra_element(dom, "memtune");
        for (name, v) in mem {
            if let Some(kib) = v {
                set_child(e, name, Element::new(name).attr("unit", "KiB").text(kib));
            }
        }
        // libvirt's order.
        let order = |n: &str| mem.iter().position(|(m, _)| *m == n);
        e.children.sort_by_key(|c| match c {
            crate::element::Node::Element(c) => order(&c.name),
            _ => None,
        });
    }
    if let Some(w) = t.blkio_weight {
        let e = extra_element(dom, "blkiotune");
        set_child(e, "weight", Element::new("weight").text(w));
    }
    let cpu = [
        ("shares", t.cpu_shares.map(|v| v.to_string())),
        ("period", t.cpu_period_us.map(|v| v.to_string())),
        ("quota", t.cpu_quota_us.map(|v| v.to_string())),
    ];
    if cpu.iter().any(|(_, v)| v.is_some()) {
        let c = dom.cputune.get_or_insert_with(Default::default);
        for (name, v) in &cpu {
            if let Some(v) = v {
                c.other.retain(|e| e.name != *name);
                c.other.push(Element::new(*name).text(v));
            }
        }
        let order = |n: &str| cpu.iter().position(|(m, _)| *m == n).unwrap_or(usize::MAX);
        c.other.sort_by_key(|e| order(&e.name));
    }
}

/// The top-level element `name` of `dom`, added where missing.
fn extra_element<'a>(dom: &'a mut Domain, name: &str) -> &'a mut Element {
    if let Some(i) = dom.extra.iter().position(|e| e.name == name) {
        return &mut dom.extra[i];
    }
    dom.extra.push(Element::new(name));
    dom.extra.last_mut().expect("just pushed")
}

fn set_child(e: &mut Element, name: &str, child: Element) {
    e.children
        .retain(|c| !matches!(c, crate::element::Node::Element(c) if c.name == name));
    e.children.push(crate::element::Node::Element(child));
}

fn memtune(e: &Element, t: &mut Tuning) -> Result<()> {
    for c in e.child_elements() {
        let what = format!("memtune/{}", c.name);
        let kib = crate::units::parse_kib(&c.text_content(), c.get_attr("unit"), &what)?;
        match c.name.as_str() {
            "hard_limit" => t.hard_limit_kib = Some(kib),
            "soft_limit" => t.soft_limit_kib = Some(kib),
            "swap_hard_limit" => t.swap_hard_limit_kib = Some(kib),
            name => return unsupported(format!("<memtune><{name}> is not supported")),
        }
    }
    if let (Some(hard), Some(swap)) = (t.hard_limit_kib, t.swap_hard_limit_kib) {
        if swap < hard {
            return Err(Error::InvalidArg(
                "memory hard_limit tunable value must be lower than or equal to swap_hard_limit"
                    .into(),
            ));
        }
    }
    Ok(())
}

fn blkiotune(e: &Element, t: &mut Tuning) -> Result<()> {
    for c in e.child_elements() {
        match c.name.as_str() {
            "weight" => {
                t.blkio_weight = Some(weight(number(&c.text_content(), "blkiotune/weight")?)?)
            }
            name => return unsupported(format!("<blkiotune><{name}> is not supported")),
        }
    }
    Ok(())
}

/// Checks a `<cputune><period>` value.
pub fn period(v: u64) -> Result<u64> {
    if PERIOD_RANGE.contains(&v) {
        Ok(v)
    } else {
        Err(Error::InvalidArg(format!(
            "cputune period must be in range [1000, 1000000], got {v}"
        )))
    }
}

/// Checks a `<cputune><quota>` value.
pub fn quota(v: i64) -> Result<i64> {
    if v == -1 || (1000..=QUOTA_MAX).contains(&v) {
        Ok(v)
    } else {
        Err(Error::InvalidArg(format!(
            "cputune quota must be -1 or in range [1000, {QUOTA_MAX}], got {v}"
        )))
    }
}

/// Checks a `<blkiotune><weight>` value.
pub fn weight(v: u64) -> Result<u32> {
    match u32::try_from(v) {
        Ok(w) if WEIGHT_RANGE.contains(&w) => Ok(w),
        _ => Err(Error::InvalidArg(format!(
            "blkiotune weight must be in range [100, 1000], got {v}"
        ))),
    }
}

fn number(text: &str, what: &str) -> Result<u64> {
    text.trim().parse().map_err(|_| {
        Error::xml(format!(
            "Invalid value '{}' for element '{what}': expected a non-negative integer",
            text.trim()
        ))
    })
}

fn signed(text: &str, what: &str) -> Result<i64> {
    text.trim().parse().map_err(|_| {
        Error::xml(format!(
            "Invalid value '{}' for element '{what}': expected an integer",
            text.trim()
        ))
    })
}

fn unsupported<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Unsupported(msg.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(inner: &str) -> Domain {
        Domain::parse(&format!(
            "<domain type='kvm'><name>t</name><memory>65536</memory><vcpu>1</vcpu>\
             <os><type>hvm</type></os>{inner}</domain>"
        ))
        .unwrap()
    }

    #[test]
    fn every_supported_tunable_is_read_in_kib_and_microseconds() {
        let t = tuning(&dom(
            "<memtune><hard_limit unit='MiB'>512</hard_limit><soft_limit>262144</soft_limit>\
             <swap_hard_limit unit='GiB'>1</swap_hard_limit></memtune>\
             <blkiotune><weight>300</weight></blkiotune>\
             <cputune><shares>2048</shares><period>100000</period><quota>50000</quota></cputune>",
        ))
        .unwrap();
        assert_eq!(
            t,
            Tuning {
                hard_limit_kib: Some(524288),
                soft_limit_kib: Some(262144),
                swap_hard_limit_kib: Some(1048576),
                cpu_shares: Some(2048),
                cpu_period_us: Some(100000),
                cpu_quota_us: Some(50000),
                blkio_weight: Some(300),
            }
        );
    }

    #[test]
    fn set_values_read_back_and_format_as_libvirt() {
        let mut d = dom("<cputune><shares>10</shares></cputune>");
        set_tuning(
            &mut d,
            &Tuning {
                soft_limit_kib: Some(1024),
                hard_limit_kib: Some(2048),
                cpu_quota_us: Some(-1),
                blkio_weight: Some(500),
                ..Tuning::default()
            },
        );
        let t = tuning(&d).unwrap();
        assert_eq!(
            (t.hard_limit_kib, t.soft_limit_kib),
            (Some(2048), Some(1024))
        );
        assert_eq!((t.cpu_shares, t.cpu_quota_us), (Some(10), Some(-1)));
        assert_eq!(t.blkio_weight, Some(500));
        let xml = d.to_xml(false);
        assert!(
            xml.contains("<hard_limit unit='KiB'>2048</hard_limit>\n    <soft_limit unit='KiB'>1024</soft_limit>"),
            "{xml}"
        );
        assert!(
            xml.contains("<shares>10</shares>\n    <quota>-1</quota>"),
            "{xml}"
        );
        let again = Domain::parse(&xml).unwrap();
        assert_eq!(tuning(&again).unwrap(), t);
    }

    #[test]
    fn what_cannot_be_applied_is_refused_by_name() {
        for (xml, name) in [
            (
                "<memtune><min_guarantee>1</min_guarantee></memtune>",
                "min_guarantee",
            ),
            (
                "<blkiotune><device><path>/dev/sda</path></device></blkiotune>",
                "device",
            ),
            (
                "<cputune><emulator_period>1000</emulator_period></cputune>",
                "emulator_period",
            ),
            (
                "<cputune><vcpupin vcpu='0' cpuset='0'/></cputune>",
                "vcpupin",
            ),
        ] {
            let e = tuning(&dom(xml)).unwrap_err().to_string();
            assert!(e.contains(name), "{xml}: {e}");
        }
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for (xml, what) in [
            ("<cputune><period>10</period></cputune>", "period"),
            ("<cputune><quota>5</quota></cputune>", "quota"),
            ("<blkiotune><weight>5000</weight></blkiotune>", "weight"),
            (
                "<memtune><hard_limit>200</hard_limit><swap_hard_limit>100</swap_hard_limit></memtune>",
                "swap_hard_limit",
            ),
        ] {
            let e = tuning(&dom(xml)).unwrap_err().to_string();
            assert!(e.contains(what), "{xml}: {e}");
        }
    }
}

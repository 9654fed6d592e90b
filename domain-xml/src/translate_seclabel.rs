//! `<seclabel>`: libvirt's security labels. oxvirt's one security driver is DAC: the
//! user and group a domain's VMM runs as — oxvirtd.toml's `vmm_user`/`vmm_group`, as
//! qemu.conf's `user`/`group` — with the domain's files handed to it open and the
//! VMM in a sandbox of its own, so there is nothing to relabel.
//!
//! * `type='dynamic'` (libvirt's default, with `model='dac'` or no model) and
//!   `type='none'`: the configured user.
//! * `type='static' model='dac'` with `<label>USER:GROUP</label>` (names, or
//!   `+UID:+GID`): that user and group, as libvirt runs QEMU for such a domain.
//! * Other models (`selinux`, `apparmor`) name drivers oxvirt does not have: refused,
//!   as libvirt refuses a model its host lacks.

use crate::error::{Error, Result};
use crate::model::Domain;

/// The static DAC label of `dom` (`USER:GROUP`), or `None` for the configured user.
pub fn dac_label(dom: &Domain) -> Result<Option<String>> {
    let mut label = None;
    for e in dom.extra.iter().filter(|e| e.name == "seclabel") {
        let ty = e.get_attr("type").unwrap_or("dynamic");
        let model = e.get_attr("model");
        match (model, ty) {
            (_, "none") => {}
            (None | Some("dac"), "dynamic") => {}
            (None | Some("dac"), "static") => {
                let text = e
                    .get_child("label")
                    .map(|l| l.text_content())
                    .unwrap_or_default();
                let text = text.trim();
                match text.split_once(':') {
                    Some((user, group)) if valid(user) && valid(group) => {
                        label = Some(text.to_string())
                    }
                    _ => {
                        return Err(Error::InvalidArg(format!(
                            "<seclabel type='static' model='dac'>: label '{text}' is not \
                             USER:GROUP (names, or +UID:+GID)"
                        )))
                    }
                }
            }
            (None | Some("dac"), other) => {
                return Err(Error::InvalidArg(format!(
                    "<seclabel type='{other}'> is not a label type (dynamic, static, none)"
                )))
            }
            (Some(m), _) => {
                return Err(Error::Unsupported(format!(
                    "<seclabel model='{m}'>: security driver '{m}' is not available (oxvirt's \
                     is dac: the VMM runs as its own user, sandboxed)"
                )))
            }
        }
    }
    Ok(label)
}

/// A user or group as libvirt writes it: a name, or `+` and a number.
fn valid(s: &str) -> bool {
    match s.strip_prefix('+') {
        Some(n) => !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
        None => {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(seclabels: &str) -> Result<Option<String>> {
        let xml = format!(
            "<domain type='kvm'><name>s</name><memory unit='MiB'>64</memory>\
             <os><type>hvm</type><kernel>/k</kernel></os>{seclabels}</domain>"
        );
        let dom = Domain::parse(&xml).unwrap();
        dac_label(&dom)
    }

    #[test]
    fn dynamic_and_none_take_the_configured_user() {
        assert_eq!(label("").unwrap(), None);
        assert_eq!(
            label("<seclabel type='dynamic' model='dac' relabel='yes'/>").unwrap(),
            None
        );
        // As libvirt writes it into a running domain's XML.
        let live = "<seclabel type='dynamic' model='dac' relabel='yes'>\
                    <label>+64055:+108</label><imagelabel>+64055:+108</imagelabel></seclabel>";
        assert_eq!(label(live).unwrap(), None);
        assert_eq!(label("<seclabel type='none'/>").unwrap(), None);
        assert_eq!(
            label("<seclabel type='none' model='selinux'/>").unwrap(),
            None
        );
    }

    #[test]
    fn a_static_dac_label_names_user_and_group() {
        let l =
            "<seclabel type='static' model='dac' relabel='no'><label>qemu:kvm</label></seclabel>";
        assert_eq!(label(l).unwrap().as_deref(), Some("qemu:kvm"));
        let l = "<seclabel type='static' model='dac'><label>+107:+108</label></seclabel>";
        assert_eq!(label(l).unwrap().as_deref(), Some("+107:+108"));
        for bad in ["qemu", "qemu:", ":kvm", "+x:+1", "a b:c"] {
            let l = format!("<seclabel type='static' model='dac'><label>{bad}</label></seclabel>");
            let e = label(&l).unwrap_err().to_string();
            assert!(e.contains("USER:GROUP"), "{bad}: {e}");
        }
    }

    #[test]
    fn other_security_drivers_are_refused_by_name() {
        let e = label("<seclabel type='dynamic' model='selinux'/>")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("security driver 'selinux' is not available"),
            "{e}"
        );
        let e = label("<seclabel type='static' model='apparmor'><label>x</label></seclabel>")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'apparmor'"), "{e}");
    }
}

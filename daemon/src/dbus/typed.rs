//! Typed parameters on the wire as libvirt-dbus puts them.
//!
//! libvirt-dbus (`virtDBusUtilTypedParamsToGVariant`) builds each `a{sv}` entry
//! with `g_variant_new_variant(value)` under a `{sv}` format, so every value
//! arrives as a variant holding a variant holding the value (`v` → `v` → `t`).
//! Clients are written against that: Cockpit reads `.v.v`. The same double wrap
//! is in its `Properties.GetAll` ([`super::properties`]). Arguments going the
//! other way (`Set…Parameters`) are plain `a{sv}`.

use std::collections::HashMap;

use zbus::{OwnedVariant, Variant};

/// One value in a second variant.
pub fn wrap(v: OwnedVariant) -> OwnedVariant {
    OwnedVariant::try_from(Variant::Variant(Box::new(Variant::from(v))))
        .expect("a variant without file descriptors is always owned")
}

/// A typed-parameter map as libvirt-dbus answers it.
pub fn to_wire(params: HashMap<String, OwnedVariant>) -> HashMap<String, OwnedVariant> {
    params.into_iter().map(|(k, v)| (k, wrap(v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_sits_in_two_variants() {
        let m = to_wire(HashMap::from([(
            "cpu.time".to_string(),
            OwnedVariant::from(5u64),
        )]));
        let v = &m["cpu.time"];
        let Variant::Variant(inner) = &**v else {
            panic!("not a variant in a variant: {v:?}");
        };
        assert_eq!(**inner, Variant::U64(5));
        // The dictionary's value signature stays `v`, the outer level `v` too.
        assert_eq!(v.value_signature().to_string(), "v");
    }
}

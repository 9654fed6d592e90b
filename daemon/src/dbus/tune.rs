//! libvirt-dbus's Get/Set{Memory,BlockIO,Scheduler}Parameters on the core's tuning
//! ([`crate::core::tune`]): values out double-wrapped as libvirt-dbus sends typed
//! parameters ([`super::typed`]), plain `a{sv}` in.

use std::collections::HashMap;

use domain_xml::tuning::Tuning;
use zbus::{OwnedVariant, Variant};

use crate::core::tune::{self, Group, Param};

/// The group's parameters of `t` as libvirt-dbus answers them (it asks for strings).
pub fn to_wire(
    group: Group,
    t: &Tuning,
) -> crate::core::error::Result<HashMap<String, OwnedVariant>> {
    Ok(super::typed::to_wire(
        tune::params(group, t)?
            .into_iter()
            .map(|(name, v)| {
                let v = match v {
                    Param::ULLong(x) => OwnedVariant::from(x),
                    Param::UInt(x) => OwnedVariant::from(x),
                    Param::LLong(x) => OwnedVariant::from(x),
                    Param::Str(s) => OwnedVariant::try_from(Variant::from(s))
                        .expect("a string variant has no file descriptors"),
                };
                (name.to_string(), v)
            })
            .collect(),
    ))
}

/// A setter's `a{sv}` as the core reads it: each integer value, `None` for others.
pub fn given(params: &HashMap<String, OwnedVariant>) -> Vec<(String, Option<i64>)> {
    params
        .iter()
        .map(|(k, v)| (k.clone(), integer(v)))
        .collect()
}

fn integer(v: &Variant<'_>) -> Option<i64> {
    Some(match v {
        Variant::U8(x) => i64::from(*x),
        Variant::I16(x) => i64::from(*x),
        Variant::U16(x) => i64::from(*x),
        Variant::I32(x) => i64::from(*x),
        Variant::U32(x) => i64::from(*x),
        Variant::I64(x) => *x,
        Variant::U64(x) => i64::try_from(*x).unwrap_or(i64::MAX),
        // A client that wrapped the value once more.
        Variant::Variant(inner) => return integer(inner),
        _ => return None,
    })
}

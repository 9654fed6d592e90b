//! Domain statistics on D-Bus: the core's bulk-stats record
//! ([`crate::core::Core::stats_record`], the same one `virConnectGetAllDomainStats`
//! answers on the libvirt protocol) as libvirt-dbus's typed-parameter map.

use std::collections::HashMap;

use zbus::OwnedVariant;

use super::typed;
use crate::core::stats::StatValue;

/// Flags of `virConnectGetAllDomainStats` beyond the listing filters
/// (NOWAIT, BACKING, ENFORCE_STATS).
pub const ALL_STATS_FLAGS: u32 = (1 << 29) | (1 << 30) | (1 << 31);

/// A record as `a{sv}`, each value in libvirt-dbus's two variant levels.
pub fn to_wire(record: Vec<(String, StatValue)>) -> HashMap<String, OwnedVariant> {
    typed::to_wire(
        record
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    StatValue::Int(i) => OwnedVariant::from(i),
                    StatValue::UInt(u) => OwnedVariant::from(u),
                    StatValue::ULLong(u) => OwnedVariant::from(u),
                    StatValue::String(s) => OwnedVariant::try_from(zbus::Variant::from(s))
                        .expect("a string variant is always owned"),
                    StatValue::Boolean(b) => OwnedVariant::from(b),
                };
                (k, v)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_values_keep_their_typed_parameter_types() {
        let m = to_wire(vec![
            ("state.state".into(), StatValue::Int(1)),
            ("vcpu.current".into(), StatValue::UInt(2)),
            ("balloon.current".into(), StatValue::ULLong(3)),
            ("block.0.name".into(), StatValue::String("vda".into())),
        ]);
        let inner = |k: &str| match &*m[k] {
            zbus::Variant::Variant(v) => (**v).clone(),
            other => panic!("{k}: one variant level only: {other:?}"),
        };
        assert_eq!(inner("state.state"), zbus::Variant::I32(1));
        assert_eq!(inner("vcpu.current"), zbus::Variant::U32(2));
        assert_eq!(inner("balloon.current"), zbus::Variant::U64(3));
        assert_eq!(inner("block.0.name").value_signature().to_string(), "s");
    }
}

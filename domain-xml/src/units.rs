//! libvirt scaled integers (`<memory unit='GiB'>4</memory>`), following `virScaleInteger`:
//! `b`/`bytes` are bytes, `KB`/`MB`/… are powers of 1000, `k`/`KiB`/`M`/`MiB`/… are powers
//! of 1024; unit names are case-insensitive. Memory sizes are kept in KiB, rounded up.

use crate::error::{Error, Result};

/// Bytes in one unit, or `None` for an unknown unit.
pub fn unit_scale(unit: &str) -> Option<u64> {
    if unit.eq_ignore_ascii_case("b") || unit.eq_ignore_ascii_case("bytes") {
        return Some(1);
    }
    let mut chars = unit.chars();
    let first = chars.next()?.to_ascii_lowercase();
    let rest = chars.as_str();
    let base: u64 = if rest.is_empty() || rest.eq_ignore_ascii_case("ib") {
        1024
    } else if rest.eq_ignore_ascii_case("b") {
        1000
    } else {
        return None;
    };
    let power = match first {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        'e' => 6,
        _ => return None,
    };
    Some(base.pow(power))
}

/// Parses `text` in `unit` (KiB when absent) into KiB, rounding up as libvirt does.
/// `what` names the element for error messages.
pub fn parse_kib(text: &str, unit: Option<&str>, what: &str) -> Result<u64> {
    let text = text.trim();
    let value: u64 = text.parse().map_err(|_| {
        Error::xml(format!(
            "Invalid value '{text}' for element or attribute '{what}': expected a non-negative integer"
        ))
    })?;
    let unit = unit.unwrap_or("KiB");
    let scale =
        unit_scale(unit).ok_or_else(|| Error::InvalidArg(format!("unknown suffix '{unit}'")))?;
    let bytes = value
        .checked_mul(scale)
        .filter(|b| *b <= i64::MAX as u64)
        .ok_or_else(|| Error::InvalidArg(format!("value too large: {value}{unit}")))?;
    Ok(bytes.div_ceil(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_libvirt_unit_scales_as_documented() {
        let cases: &[(&str, u64)] = &[
            ("b", 1),
            ("bytes", 1),
            ("KB", 1000),
            ("k", 1024),
            ("KiB", 1024),
            ("MB", 1000 * 1000),
            ("M", 1 << 20),
            ("MiB", 1 << 20),
            ("GB", 1_000_000_000),
            ("G", 1 << 30),
            ("GiB", 1 << 30),
            ("TB", 1_000_000_000_000),
            ("T", 1 << 40),
            ("TiB", 1 << 40),
            ("PB", 1_000_000_000_000_000),
            ("P", 1 << 50),
            ("PiB", 1 << 50),
            ("EB", 1_000_000_000_000_000_000),
            ("E", 1 << 60),
            ("EiB", 1 << 60),
            ("gib", 1 << 30),
        ];
        for (unit, scale) in cases {
            assert_eq!(unit_scale(unit), Some(*scale), "unit {unit}");
        }
    }

    #[test]
    fn sizes_round_up_to_kib() {
        assert_eq!(parse_kib("1", Some("b"), "memory").unwrap(), 1);
        assert_eq!(parse_kib("1000", Some("KB"), "memory").unwrap(), 977);
        assert_eq!(parse_kib("524288", None, "memory").unwrap(), 524288);
        assert_eq!(parse_kib(" 2 ", Some("GiB"), "memory").unwrap(), 2 << 20);
    }

    #[test]
    fn bad_units_and_overflow_are_errors() {
        assert_eq!(
            parse_kib("1", Some("XB"), "memory")
                .unwrap_err()
                .to_string(),
            "invalid argument: unknown suffix 'XB'"
        );
        assert!(parse_kib("16", Some("EiB"), "memory").is_err());
        assert!(parse_kib("99999999999999999999", None, "memory").is_err());
        assert!(parse_kib("-1", None, "memory").is_err());
        assert!(parse_kib("1.5", Some("G"), "memory").is_err());
        assert!(parse_kib("", None, "memory").is_err());
    }
}

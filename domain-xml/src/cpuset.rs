//! libvirt CPU sets (`cpuset='0-3,^2,8'`), parsed and written back in libvirt's canonical
//! form (`0-1,3,8`), as `virBitmapParse`/`virBitmapFormat` do.

use std::collections::BTreeSet;

use crate::error::{Error, Result};

/// The highest CPU number libvirt accepts in a domain CPU mask (`VIR_DOMAIN_CPUMASK_LEN`).
const MAX_CPU: u32 = 16383;

/// Parses a CPU set; `^N` removes a CPU added earlier.
pub fn parse(text: &str) -> Result<BTreeSet<u32>> {
    let bad = || Error::InvalidArg(format!("Failed to parse bitmap '{text}'"));
    let num = |s: &str| -> Result<u32> {
        let n: u32 = s.trim().parse().map_err(|_| bad())?;
        if n > MAX_CPU {
            return Err(bad());
        }
        Ok(n)
    };
    let mut set = BTreeSet::new();
    for item in text.split(',') {
        let item = item.trim();
        if let Some(neg) = item.strip_prefix('^') {
            set.remove(&num(neg)?);
        } else if let Some((a, b)) = item.split_once('-') {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(bad());
            }
            set.extend(a..=b);
        } else {
            set.insert(num(item)?);
        }
    }
    if set.is_empty() {
        return Err(Error::xml(format!("Invalid value of 'cpuset': {text}")));
    }
    Ok(set)
}

/// Writes a CPU set as ranges.
pub fn format(set: &BTreeSet<u32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// Parses and re-writes a CPU set in canonical form.
pub fn canonical(text: &str) -> Result<String> {
    Ok(format(&parse(text)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpusets_are_canonicalised_like_libvirt() {
        assert_eq!(canonical("0-3,^2").unwrap(), "0-1,3");
        assert_eq!(canonical("5,1,2,3").unwrap(), "1-3,5");
        assert_eq!(canonical(" 7 ").unwrap(), "7");
    }

    #[test]
    fn bad_cpusets_are_errors() {
        for bad in ["", "a", "3-1", "1,,2", "99999", "-1", "^0"] {
            assert!(canonical(bad).is_err(), "{bad:?}");
        }
    }
}

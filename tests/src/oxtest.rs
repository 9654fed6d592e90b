//! The oxtest guest's console protocol: `OXTEST <check> ok|FAIL <details>` lines.

/// One result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub details: String,
}

impl Check {
    /// The value of `key=` in the details (`cpus=4` → `"4"`).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.details.split(' ').find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v)
        })
    }
}

/// Every `OXTEST <check> ok|FAIL …` line of a console transcript, in order.
pub fn checks(console: &str) -> Vec<Check> {
    console
        .lines()
        .filter_map(|l| {
            let l = l.trim_end_matches('\r');
            let rest = l.strip_prefix("OXTEST ")?;
            let mut it = rest.splitn(3, ' ');
            let name = it.next()?;
            let ok = match it.next()? {
                "ok" => true,
                "FAIL" => false,
                _ => return None,
            };
            Some(Check {
                name: name.to_string(),
                ok,
                details: it.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_result_lines() {
        let c = checks(
            "OXTEST READY proto=pvh\r\nOXTEST smp ok cpus=2 apic_ids=0,1\nOXTEST e820 FAIL reason=x\nOXTEST DONE failures=1\n",
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].name, "smp");
        assert!(c[0].ok);
        assert_eq!(c[0].field("apic_ids"), Some("0,1"));
        assert!(!c[1].ok);
    }
}

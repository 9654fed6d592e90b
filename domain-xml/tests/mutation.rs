//! Deterministic random mutation of the corpus (the fuzz target's property, run in the
//! normal test suite without libFuzzer): every mutated document parses or errors without
//! panicking; whatever parses formats to XML that parses back to an equal model (live
//! and inactive), and translation does not panic. `OXVIRT_MUTATIONS=N` sets the number
//! of mutants per corpus file (default 100), `OXVIRT_MUTATION_SEED=S` another sequence.

use std::path::Path;

use domain_xml::Domain;

/// xorshift64*: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Fragments that push parsing into interesting corners.
const TOKENS: &[&str] = &[
    "<",
    ">",
    "/>",
    "'",
    "\"",
    "&amp;",
    "&",
    "&#0;",
    "=",
    " ",
    "\n",
    "</devices>",
    "<devices>",
    "<disk type='file'>",
    "</disk>",
    "<target dev='vda'/>",
    "<address type='pci' slot='0x1f'/>",
    "<alias name='ua-x'/>",
    "<serial type='pty'/>",
    "<console type='pty'/>",
    "<memory>1</memory>",
    "unit='EiB'",
    "unit='b'",
    "99999999999999999999",
    "-1",
    "0x",
    "<vcpu current='0'>",
    "<cpu><topology sockets='1' dies='1' cores='1' threads='1'/></cpu>",
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "<metadata><x:y xmlns:x='urn:x'>t</x:y></metadata>",
    "é",
    "\u{0}",
    "<channel type='unix'><target type='virtio' name='n'/></channel>",
    "<controller type='pci'/>",
    "<interface type='bridge'><source bridge='b'/></interface>",
    "placement='auto'",
];

/// Attribute values and texts that stress value parsing.
const VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "4294967296",
    "18446744073709551616",
    "0x1f",
    "0x20",
    "yes",
    "no",
    "on",
    "off",
    "virtio",
    "pty",
    "unix",
    "ide",
    "none",
    "auto",
    "static",
    "KiB",
    "EiB",
    "XB",
    "vda",
    "hda",
    "sda",
    "52:54:00:00:00:01",
    "01:00:00:00:00:00",
    "ua-a",
    "serial",
    "isa",
    "pci",
    "drive",
    "virtio-serial",
    "usb",
    "x y",
    "&lt;&amp;&gt;",
    "é\u{1F600}",
];

/// A structural mutation: delete, duplicate or move one element, or replace one
/// attribute value or text, using the parsed document's byte ranges.
fn mutate_structure(rng: &mut Rng, input: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(input).ok()?;
    let elements: Vec<_> = doc
        .descendants()
        .filter(|n| n.is_element())
        .skip(1)
        .collect();
    let el = elements.get(rng.below(elements.len()))?;
    let r = el.range();
    let mut out = input.to_string();
    match rng.below(5) {
        0 => out.replace_range(r, ""),
        1 => out.insert_str(r.end, &input[r.clone()]),
        2 => {
            let other = elements.get(rng.below(elements.len()))?;
            let at = other.range().start;
            if at >= r.start && at < r.end {
                return None;
            }
            let moved = input[r.clone()].to_string();
            out.replace_range(r.clone(), "");
            let at = if at > r.start {
                at - (r.end - r.start)
            } else {
                at
            };
            out.insert_str(at, &moved);
        }
        3 => {
            let attrs: Vec<_> = el.attributes().collect();
            let a = attrs.get(rng.below(attrs.len()))?;
            let v = VALUES[rng.below(VALUES.len())].replace('\'', "&apos;");
            out.replace_range(a.range_value(), &v);
        }
        _ => {
            let text = el.children().find(|c| c.is_text())?;
            out.replace_range(text.range(), VALUES[rng.below(VALUES.len())]);
        }
    }
    Some(out)
}

fn mutate(rng: &mut Rng, input: &str) -> String {
    if rng.below(3) > 0 {
        let mut s = input.to_string();
        for _ in 0..=rng.below(3) {
            if let Some(m) = mutate_structure(rng, &s) {
                s = m;
            }
        }
        return s;
    }
    let mut s: Vec<char> = input.chars().collect();
    for _ in 0..=rng.below(4) {
        let len = s.len();
        let at = rng.below(len + 1);
        match rng.below(6) {
            0 if len > 0 => {
                // Delete a span.
                let end = (at + 1 + rng.below(40)).min(len);
                s.drain(at.min(len)..end.max(at.min(len)));
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                s.splice(at..at, t.chars());
            }
            2 if len > 1 => {
                // Duplicate a span elsewhere.
                let a = rng.below(len);
                let b = (a + 1 + rng.below(200)).min(len);
                let span: Vec<char> = s[a..b].to_vec();
                let at = rng.below(s.len() + 1);
                s.splice(at..at, span);
            }
            3 if len > 0 => {
                // Replace a character with a random printable one.
                let i = rng.below(len);
                s[i] = char::from(b' ' + (rng.below(95) as u8));
            }
            4 => s.truncate(at),
            _ => {
                // Swap a digit for a large number.
                if let Some(i) = s.iter().position(|c| c.is_ascii_digit()) {
                    s.splice(i..i + 1, "4294967296".chars());
                }
            }
        }
    }
    s.into_iter().collect()
}

/// The first lines where two models' debug forms differ.
fn model_diff(a: &Domain, b: &Domain) -> String {
    let (a, b) = (format!("{a:#?}"), format!("{b:#?}"));
    a.lines()
        .zip(b.lines())
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .take(8)
        .map(|(i, (x, y))| format!("line {i}:\n  - {x}\n  + {y}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn mutated_corpus_never_panics_and_round_trips() {
    let per_file: usize = std::env::var("OXVIRT_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    let seed = std::env::var("OXVIRT_MUTATION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15u64);
    let mut rng = Rng(seed | 1);
    let (mut total, mut parsed, mut translated) = (0usize, 0usize, 0usize);
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for i in 0..per_file {
            let m = mutate(&mut rng, &text);
            total += 1;
            let Ok(dom) = Domain::parse(&m) else { continue };
            parsed += 1;
            let ctx = || format!("{} mutant {i}:\n{m}", path.display());
            let live = dom.to_xml(false);
            let again = Domain::parse(&live).unwrap_or_else(|e| {
                panic!("formatted output does not parse: {e}\n{live}\n{}", ctx())
            });
            assert!(
                again == dom,
                "live round trip differs\n{}\n{live}\n{}",
                model_diff(&dom, &again),
                ctx()
            );
            let inactive = dom.to_xml(true);
            let again = Domain::parse(&inactive).unwrap_or_else(|e| {
                panic!(
                    "formatted inactive output does not parse: {e}\n{inactive}\n{}",
                    ctx()
                )
            });
            assert!(
                again == dom.inactive_copy(),
                "inactive round trip differs\n{}\n{inactive}\n{}",
                model_diff(&dom.inactive_copy(), &again),
                ctx()
            );
            if domain_xml::translate(&dom).is_ok() {
                translated += 1;
            }
        }
    }
    println!(
        "{total} mutants of {} corpus files: {parsed} parsed and round-tripped, {translated} translated",
        files.len()
    );
    assert!(
        parsed > total / 20,
        "too few mutants parsed ({parsed}/{total}): mutations too destructive"
    );
}

//! Peak memory stays bounded on hostile 10 MB inputs. This file holds one test so that
//! the process's peak RSS (`VmHWM`) measures only this work.

use domain_xml::{Domain, MAX_DOCUMENT_BYTES};

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

fn wrap(inner: &str) -> String {
    format!(
        "<domain type='kvm'><name>m</name><memory unit='MiB'>64</memory>\
         <os><type>hvm</type><kernel>/k</kernel></os>{inner}</domain>"
    )
}

#[test]
fn ten_megabyte_inputs_parse_in_bounded_memory() {
    let limit = MAX_DOCUMENT_BYTES - 1024;
    let fill = |unit: &str| unit.repeat((limit - 200) / unit.len());
    let inputs = [
        // Elements at the node limit's edge, attributes, text, and devices.
        wrap(&format!(
            "<metadata><a:x xmlns:a='urn:a'>{}</a:x></metadata>",
            fill("<a:b/>")
        )),
        wrap(&format!(
            "<metadata><a:x xmlns:a='urn:a' {}/></metadata>",
            {
                let mut s = String::new();
                let mut i = 0;
                while s.len() < limit - 300 {
                    s.push_str(&format!("a{i}='{}' ", "v".repeat(1000)));
                    i += 1;
                }
                s
            }
        )),
        wrap(&format!("<description>{}</description>", fill("&amp;"))),
        wrap(&format!(
            "<devices>{}</devices>",
            fill("<serial type='null'/>")
        )),
        wrap(&format!("<devices>{}</devices>", fill("<gizmo/>"))),
    ];
    let before = peak_rss_kib();
    for xml in &inputs {
        assert!(xml.len() <= MAX_DOCUMENT_BYTES, "{}", xml.len());
        if let Ok(d) = Domain::parse(xml) {
            let _ = d.to_xml(false);
            let _ = domain_xml::translate(&d);
        }
    }
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    println!(
        "peak RSS grew by {grown_mib} MiB over {} inputs",
        inputs.len()
    );
    assert!(grown_mib < 512, "peak RSS grew by {grown_mib} MiB");
}

//! The corpus: every file under `tests/corpus/` parses, formats back to libvirt's
//! canonical form, round-trips to an equal model (live and inactive forms), and the
//! formatted output passes libvirt's own schema (`virt-xml-validate`).

use std::path::{Path, PathBuf};
use std::process::Command;

use domain_xml::Domain;

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    files
}

#[test]
fn corpus_has_at_least_40_files_including_virt_install_output() {
    let files = corpus();
    assert!(files.len() >= 40, "only {} corpus files", files.len());
    let virt_install = files
        .iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .contains("virt-install")
        })
        .count();
    assert!(virt_install >= 5, "only {virt_install} virt-install files");
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
fn every_corpus_file_round_trips_to_an_equal_model() {
    for path in corpus() {
        let name = path.display();
        let text = std::fs::read_to_string(&path).unwrap();
        let dom = Domain::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));

        let live = dom.to_xml(false);
        let again = Domain::parse(&live).unwrap_or_else(|e| panic!("{name} (live): {e}\n{live}"));
        assert!(
            dom == again,
            "{name}: live form did not round-trip:\n{}\n{live}",
            model_diff(&dom, &again)
        );
        assert_eq!(
            live,
            again.to_xml(false),
            "{name}: live formatting is not stable"
        );

        let inactive = dom.to_xml(true);
        let again = Domain::parse(&inactive)
            .unwrap_or_else(|e| panic!("{name} (inactive): {e}\n{inactive}"));
        assert!(
            dom.inactive_copy() == again,
            "{name}: inactive form did not round-trip:\n{}\n{inactive}",
            model_diff(&dom.inactive_copy(), &again)
        );
        assert_eq!(
            inactive,
            again.to_xml(true),
            "{name}: inactive formatting is not stable"
        );
    }
}

/// Runs libvirt's `virt-xml-validate` on `xml`; the tool must exist (CI installs
/// libvirt-clients and libxml2-utils), so a missing tool fails the test.
fn virt_xml_validate(xml: &str, label: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("domain.xml");
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("virt-xml-validate")
        .arg(&file)
        .arg("domain")
        .output()
        .unwrap_or_else(|e| {
            panic!("virt-xml-validate could not be run ({e}): install libvirt-clients and libxml2-utils")
        });
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{label}: virt-xml-validate failed:\n{}{}\n{xml}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn formatted_output_passes_libvirt_schema() {
    let mut failures = Vec::new();
    for path in corpus() {
        let name = path.display().to_string();
        let dom = Domain::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (form, xml) in [("live", dom.to_xml(false)), ("inactive", dom.to_xml(true))] {
            if let Err(e) = virt_xml_validate(&xml, &format!("{name} ({form})")) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn corpus_inputs_themselves_are_valid_libvirt_xml() {
    // Guards the corpus: a file libvirt's schema rejects would prove nothing.
    // (028 deliberately carries unknown elements, which the schema rejects.)
    let mut failures = Vec::new();
    for path in corpus() {
        let name = path.display().to_string();
        if name.contains("028-unknown") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = virt_xml_validate(&text, &name) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

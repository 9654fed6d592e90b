//! XML fidelity cases found in libvirt's own test corpus: what we format parses again
//! and means the same.

use domain_xml::Domain;

/// libvirt's `tests/qemuxml2argvdata/qemu-ns-commandline-ns1.xml`: the QEMU namespace
/// bound twice, under two prefixes, on the element and on its child.
#[test]
fn a_namespace_bound_under_two_prefixes_formats_with_one_declared_prefix() {
    let xml = "<domain type='qemu'>
  <name>QEMUGuest1</name>
  <memory unit='KiB'>219136</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <ns0:commandline xmlns:ns0='http://libvirt.org/schemas/domain/qemu/1.0'>
    <ns1:arg value='ARGUMENT' xmlns:ns1='http://libvirt.org/schemas/domain/qemu/1.0'/>
  </ns0:commandline>
</domain>";
    let out = Domain::parse(xml).unwrap().to_xml(false);
    assert!(
        out.contains(
            "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n    <qemu:arg value='ARGUMENT'/>\n  </qemu:commandline>"
        ),
        "{out}"
    );
    // It parses again to the same thing (it did not: `ns1:` was left undeclared).
    let again = Domain::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(again.to_xml(false), out);
}

/// Formats `metadata` inside a minimal domain, checks the metadata comes out as
/// `expected`, and that the output parses again to the same text.
fn metadata_round_trip(metadata: &str, expected: &str) {
    let xml = format!(
        "<domain type='kvm'><name>m</name><memory>65536</memory>\
         <os><type>hvm</type><kernel>/k</kernel></os><metadata>{metadata}</metadata></domain>"
    );
    let out = Domain::parse(&xml).unwrap().to_xml(false);
    let start = out.find("  <metadata>\n").unwrap() + "  <metadata>\n".len();
    let end = out.find("  </metadata>").unwrap();
    assert_eq!(&out[start..end], expected, "{metadata}");
    let again = Domain::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(again.to_xml(false), out);
}

// Siblings of the case above, in verbatim (metadata) content: a prefix bound to two
// namespaces, a default namespace undeclared below, one namespace under two prefixes,
// and `xml:` attributes. Each came out meaning something else (a child moved into its
// parent's namespace, the whole element lost its namespace, `xml:lang` became `lang`).

#[test]
fn a_prefix_rebound_below_keeps_both_namespaces() {
    metadata_round_trip(
        "<a:x xmlns:a='urn:a'><a:y xmlns:a='urn:other'/></a:x>",
        "    <a:x xmlns:a=\"urn:a\">\n      <a:y xmlns:a=\"urn:other\"/>\n    </a:x>\n",
    );
}

#[test]
fn a_default_namespace_undeclared_below_stays_undeclared() {
    metadata_round_trip(
        "<x xmlns='urn:a'><y xmlns=''/></x>",
        "    <x xmlns=\"urn:a\">\n      <y xmlns=\"\"/>\n    </x>\n",
    );
}

#[test]
fn a_namespace_under_two_prefixes_keeps_the_prefix_written() {
    metadata_round_trip(
        "<x xmlns='urn:a'><b:y xmlns:b='urn:a' b:q='1'/></x>",
        "    <x xmlns=\"urn:a\" xmlns:b=\"urn:a\">\n      <b:y b:q=\"1\"/>\n    </x>\n",
    );
}

#[test]
fn xml_prefixed_attributes_keep_their_prefix() {
    metadata_round_trip(
        "<a:x xmlns:a='urn:a' xml:lang='en'><y xmlns='urn:b'><a:z/></y></a:x>",
        "    <a:x xmlns:a=\"urn:a\" xmlns=\"urn:b\" xml:lang=\"en\">\n      <y>\n        <a:z/>\n      </y>\n    </a:x>\n",
    );
}

/// The corpus sweep for the second bug's siblings: known content is never reported as
/// unknown (028 is the file that carries unknown content on purpose).
#[test]
fn no_corpus_file_but_the_unknown_content_one_reports_unknown_content() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut reported = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "xml") {
            continue;
        }
        let unknown = domain_xml::unknown_content(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !unknown.is_empty() && !name.starts_with("028-") {
            reported.push(format!("{name}: {unknown:?}"));
        }
    }
    assert!(reported.is_empty(), "{}", reported.join("\n"));
}

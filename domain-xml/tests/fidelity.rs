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

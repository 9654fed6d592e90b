//! Fuzzes the domain XML parser, formatter and translator: any input must give a value
//! or an error, never a panic; whatever parses must format to XML that parses back to
//! the same model, in both the live and the inactive form.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(dom) = domain_xml::Domain::parse(text) else {
        return;
    };
    let live = dom.to_xml(false);
    let again = domain_xml::Domain::parse(&live).expect("formatted live XML parses");
    assert_eq!(dom, again, "live round trip");
    let inactive = dom.to_xml(true);
    let again = domain_xml::Domain::parse(&inactive).expect("formatted inactive XML parses");
    assert_eq!(dom.inactive_copy(), again, "inactive round trip");
    let _ = domain_xml::translate(&dom);
});

//! `<clock offset>` values that are not libvirt's are XML errors naming the attribute.

use domain_xml::spec_from_xml;

fn with_clock(clock: &str) -> String {
    format!(
        "<domain type='kvm'><name>c</name><memory unit='MiB'>64</memory>\
         <os><type arch='x86_64'>hvm</type><kernel>/k</kernel></os>{clock}</domain>"
    )
}

#[test]
fn bad_clock_values_are_named() {
    for (clock, msg) in [
        (
            "<clock offset='variable' adjustment='1' basis='mars'/>",
            "XML error: invalid <clock basis='mars'> (only 'utc' or 'localtime')",
        ),
        (
            "<clock offset='variable' adjustment='soon'/>",
            "XML error: invalid <clock adjustment='soon'>: not a number of seconds",
        ),
        (
            "<clock offset='timezone'/>",
            "XML error: <clock offset='timezone'> needs a timezone",
        ),
        (
            "<clock offset='utc' timezone='Europe/Paris'/>",
            "unsupported configuration: <clock offset='utc' timezone> is not supported",
        ),
    ] {
        let e = spec_from_xml(&with_clock(clock)).unwrap_err();
        assert_eq!(e.to_string(), msg, "{clock}");
    }
}

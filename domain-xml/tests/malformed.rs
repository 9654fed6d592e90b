//! Malformed and hostile input: every case gives an error (of the right kind, with
//! libvirt's wording where it has one), never a panic.

use domain_xml::{Domain, Error};

fn base(top: &str, devices: &str) -> String {
    format!(
        "<domain type='kvm'><name>m</name><memory unit='MiB'>64</memory>{top}\
         <os><type>hvm</type><kernel>/k</kernel></os><devices>{devices}</devices></domain>"
    )
}

fn err(xml: &str) -> Error {
    match Domain::parse(xml) {
        Ok(d) => panic!("accepted:\n{xml}\n{d:?}"),
        Err(e) => e,
    }
}

#[test]
fn not_well_formed_xml_reports_line_and_column() {
    let e = err("<domain type='kvm'>\n  <name>x</name>\n  <memory>1</memry>\n</domain>");
    match &e {
        Error::Malformed { line, column, .. } => {
            assert_eq!(*line, 3);
            assert!(*column > 1, "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string().starts_with("XML error: line 3, column "),
        "{e}"
    );
    assert_eq!(e.code(), domain_xml::VIR_ERR_XML_DETAIL);
    for xml in [
        "",
        "   ",
        "<",
        "<domain",
        "<domain type='kvm'>",
        "not xml at all",
        "<a></b>",
        "<domain type='kvm' type='qemu'/>",
    ] {
        assert!(matches!(err(xml), Error::Malformed { .. }), "{xml:?}");
    }
}

#[test]
fn every_truncation_of_a_domain_is_an_error() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/002-kernel-boot-full.xml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let end = text.trim_end().len();
    for cut in (0..end).filter(|i| text.is_char_boundary(*i)) {
        assert!(
            Domain::parse(&text[..cut]).is_err(),
            "truncated at {cut} parsed"
        );
    }
}

#[test]
fn wrong_root_and_missing_required_parts() {
    let cases: &[(&str, &str)] = &[
        ("<network><name>n</name></network>", "XML error: unexpected root element <network>, expecting <domain>"),
        ("<domain><name>a</name><memory>1024</memory><os><type>hvm</type></os></domain>", "XML error: Missing required attribute 'type' in element 'domain'"),
        ("<domain type='kvm'><memory>1024</memory><os><type>hvm</type></os></domain>", "XML error: missing name information"),
        ("<domain type='kvm'><name>  </name><memory>1024</memory><os><type>hvm</type></os></domain>", "XML error: missing name information"),
        ("<domain type='kvm'><name>a/b</name><memory>1024</memory><os><type>hvm</type></os></domain>", "XML error: name a/b cannot contain '/'"),
        ("<domain type='kvm'><name>a</name><os><type>hvm</type></os></domain>", "XML error: missing element memory"),
        ("<domain type='kvm'><name>a</name><memory>1024</memory></domain>", "XML error: missing element os"),
        ("<domain type='kvm'><name>a</name><memory>1024</memory><os/></domain>", "XML error: an os <type> must be specified"),
        ("<domain type='bogus'><name>a</name><memory>1024</memory><os><type>hvm</type></os></domain>", "XML error: Invalid value for attribute 'type' in element 'domain': 'bogus'."),
    ];
    for (xml, want) in cases {
        assert_eq!(err(xml).to_string(), *want, "{xml}");
    }
}

#[test]
fn wrong_types_are_xml_errors() {
    let cases: &[(&str, &str, &str)] = &[
        ("<vcpu>abc</vcpu>", "", "XML error: maximum vcpus count must be an integer"),
        ("<vcpu>-1</vcpu>", "", "XML error: maximum vcpus count must be an integer"),
        ("<vcpu>0</vcpu>", "", "XML error: Invalid number of vCPUs: 0"),
        ("<vcpu current='x'>2</vcpu>", "", "XML error: current vcpus count must be an integer"),
        ("<vcpu current='3'>2</vcpu>", "", "XML error: maxvcpus must not be less than current vcpus (2 < 3)"),
        ("<vcpu placement='sometimes'>2</vcpu>", "", "XML error: Invalid value for attribute 'placement' in element 'vcpu': 'sometimes'."),
        ("<uuid>not-a-uuid</uuid>", "", "XML error: malformed uuid element 'not-a-uuid'"),
        ("<on_crash>explode</on_crash>", "", "XML error: invalid on_crash value: 'explode'"),
        ("<vcpu>4</vcpu><cpu><topology sockets='1' cores='2' threads='1'/></cpu>", "", "XML error: CPU topology doesn't match maximum vcpu count (1x1x2x1 != 4)"),
        ("<cpu><topology sockets='0' cores='1' threads='1'/></cpu>", "", "XML error: Invalid 'sockets' value in CPU topology: must be at least 1"),
        ("<cpu><feature policy='sometimes' name='x'/></cpu>", "", "XML error: Invalid value for attribute 'policy' in element 'feature': 'sometimes'."),
        ("", "<disk type='file'><source file='/a'/></disk>", "XML error: missing target information for device"),
        ("", "<disk type='file'><source file='/a'/><target dev='vda'/><driver cache='sometimes'/></disk>", "XML error: Invalid value for attribute 'cache' in element 'driver': 'sometimes'."),
        ("", "<disk type='file'><source file='/a'/><target dev='vda'/></disk><disk type='file'><source file='/b'/><target dev='vda'/></disk>", "XML error: target 'vda' duplicated for disk sources"),
        ("", "<disk type='file'><source file='/a'/><target dev='qqq'/></disk>", "XML error: Invalid harddisk device name: qqq"),
        ("", "<disk type='file'><source file='/a'/><target dev='vda'/><address type='pci' slot='0x20'/></disk>", "XML error: Invalid PCI address slot='0x20', must be <= 0x1F"),
        ("", "<disk type='file'><source file='/a'/><target dev='vda'/><address type='pci' slot='zz'/></disk>", "XML error: Invalid value for attribute 'slot' in element 'address': 'zz'. Expected non-negative integer value"),
        ("", "<disk type='file'><source file='/a'/><target dev='vda'/><address type='pci' slot='3'/></disk><disk type='file'><source file='/b'/><target dev='vdb'/><address type='pci' slot='3'/></disk>", "XML error: Attempted double use of PCI Address 0000:00:03.0"),
        ("", "<interface type='bridge'><mac address='52:54:00:zz:00:01'/></interface>", "XML error: unable to parse mac address '52:54:00:zz:00:01'"),
        ("", "<interface type='bridge'><mac address='01:00:5e:00:00:01'/></interface>", "XML error: expected unicast mac address, found multicast '01:00:5e:00:00:01'"),
        ("", "<interface type='teleport'/>", "XML error: Invalid value for attribute 'type' in element 'interface': 'teleport'."),
        ("", "<serial type='file'/>", "XML error: Missing source path attribute for char device"),
        ("", "<serial type='tcp'><source host='h'/></serial>", "XML error: Missing source service attribute for char device"),
        ("", "<controller type='usb' index='0'/><controller type='usb' index='0'/>", "XML error: Multiple 'usb' controllers with index '0'"),
        ("", "<controller type='usb' index='-1'/>", "XML error: Invalid value for attribute 'index' in element 'controller': '-1'. Expected non-negative integer value"),
        ("", "<rng model='virtio'/>", "XML error: missing RNG device backend"),
        ("", "<input type='trackball'/>", "XML error: Invalid value for attribute 'type' in element 'input': 'trackball'."),
        ("", "<disk type='file'><source file='/a'/><target dev='vda'/><alias name='ua-x'/></disk><disk type='file'><source file='/b'/><target dev='vdb'/><alias name='ua-x'/></disk>", "XML error: non unique alias detected: ua-x"),
        ("", "<address type='warp'/>", ""),
    ];
    for (top, devices, want) in cases {
        let xml = base(top, devices);
        if want.is_empty() {
            // Unknown device elements are dropped, so this one parses.
            Domain::parse(&xml).unwrap();
            continue;
        }
        let e = err(&xml);
        assert_eq!(e.to_string(), *want, "{xml}");
        assert_eq!(e.code(), domain_xml::VIR_ERR_XML_ERROR);
    }
}

#[test]
fn huge_numbers_and_bad_units() {
    let cases: &[(&str, &str)] = &[
        ("<memory unit='KiB'>99999999999999999999</memory>", "XML error: Invalid value '99999999999999999999' for element or attribute 'memory': expected a non-negative integer"),
        ("<memory unit='EiB'>16</memory>", "invalid argument: value too large: 16EiB"),
        ("<memory unit='EiB'>8</memory>", "invalid argument: value too large: 8EiB"),
        ("<memory unit='XB'>1</memory>", "invalid argument: unknown suffix 'XB'"),
        ("<memory unit=''>1</memory>", "invalid argument: unknown suffix ''"),
        ("<memory unit='KiBB'>1</memory>", "invalid argument: unknown suffix 'KiBB'"),
        ("<memory unit='MiB'>1.5</memory>", "XML error: Invalid value '1.5' for element or attribute 'memory': expected a non-negative integer"),
        ("<memory unit='MiB'>0</memory>", "XML error: Memory size must be specified via <memory> or in the <numa> configuration"),
        ("<memory unit='MiB'>64</memory><vcpu>4294967296</vcpu>", "XML error: maximum vcpus count must be an integer"),
        ("<memory unit='MiB'>64</memory><maxMemory unit='MiB'>32</maxMemory>", "XML error: maximum memory size must be equal or greater than the actual memory size"),
    ];
    for (top, want) in cases {
        let xml = format!(
            "<domain type='kvm'><name>m</name>{top}<os><type>hvm</type><kernel>/k</kernel></os></domain>"
        );
        let e = err(&xml);
        assert_eq!(e.to_string(), *want, "{xml}");
    }
    let e = err("<domain type='kvm'><name>m</name><memory unit='XB'>1</memory><os><type>hvm</type></os></domain>");
    assert_eq!(e.code(), domain_xml::VIR_ERR_INVALID_ARG);
    let e = err(&base("", "<controller type='pci' index='99999999999'/>"));
    assert!(
        e.to_string()
            .starts_with("XML error: Invalid value for attribute 'index'"),
        "{e}"
    );
}

#[test]
fn duplicate_singleton_elements_are_errors() {
    let cases: &[(&str, &str)] = &[
        ("<domain type='kvm'><name>a</name><name>b</name><memory>1024</memory><os><type>hvm</type></os></domain>", "XML error: element <name> appears more than once in <domain>"),
        ("<domain type='kvm'><name>a</name><memory>1024</memory><memory>2048</memory><os><type>hvm</type></os></domain>", "XML error: element <memory> appears more than once in <domain>"),
        ("<domain type='kvm'><name>a</name><memory>1024</memory><os><type>hvm</type></os><os><type>hvm</type></os></domain>", "XML error: element <os> appears more than once in <domain>"),
        ("<domain type='kvm'><name>a</name><memory>1024</memory><os><type>hvm</type><kernel>/a</kernel><kernel>/b</kernel></os></domain>", "XML error: element <kernel> appears more than once in <os>"),
        ("<domain type='kvm'><name>a</name><memory>1024</memory><os><type>hvm</type></os><devices/><devices/></domain>", "XML error: element <devices> appears more than once in <domain>"),
        ("<domain type='kvm'><name>a</name><memory>1024</memory><os><type>hvm</type></os><features><acpi/><acpi/></features></domain>", "XML error: element <acpi> appears more than once in <features>"),
        ("<domain type='kvm'><name>a</name><memory>1024</memory><os><type>hvm</type></os><cpu><feature name='x'/><feature name='x'/></cpu></domain>", "XML error: CPU feature 'x' specified more than once"),
    ];
    for (xml, want) in cases {
        assert_eq!(err(xml).to_string(), *want, "{xml}");
    }
    let dup_devices: &[(&str, &str)] = &[
        (
            "<memballoon model='virtio'/><memballoon model='none'/>",
            "XML error: only a single memory balloon device is supported",
        ),
        (
            "<vsock model='virtio'/><vsock model='virtio'/>",
            "XML error: only a single vsock device is supported",
        ),
        (
            "<iommu model='intel'/><iommu model='intel'/>",
            "XML error: only a single IOMMU device is supported",
        ),
        (
            "<disk type='file'><source file='/a'/><source file='/b'/><target dev='vda'/></disk>",
            "XML error: element <source> appears more than once in <disk>",
        ),
        (
            "<emulator>/a</emulator><emulator>/b</emulator>",
            "XML error: element <emulator> appears more than once in <devices>",
        ),
    ];
    for (devices, want) in dup_devices {
        assert_eq!(err(&base("", devices)).to_string(), *want, "{devices}");
    }
}

#[test]
fn entity_tricks_are_refused() {
    let billion_laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<domain type='kvm'><name>&lol9;</name><memory>1024</memory><os><type>hvm</type></os></domain>"#;
    let external = r#"<?xml version="1.0"?>
<!DOCTYPE d [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<domain type='kvm'><name>&xxe;</name><memory>1024</memory><os><type>hvm</type></os></domain>"#;
    let parameter =
        r#"<!DOCTYPE d [ <!ENTITY % p SYSTEM "http://example.invalid/x.dtd"> %p; ]><domain/>"#;
    for xml in [billion_laughs, external, parameter] {
        let e = err(xml);
        assert!(matches!(e, Error::Malformed { .. }), "{e:?}");
    }
    // Undefined entities and the NUL character reference. (Surrogate and out-of-range
    // references such as &#xD800; are read as U+FFFD by roxmltree, which is harmless.)
    for name in ["&undefined;", "&#0;"] {
        let xml = format!(
            "<domain type='kvm'><name>{name}</name><memory>1024</memory><os><type>hvm</type></os></domain>"
        );
        assert!(matches!(err(&xml), Error::Malformed { .. }), "{name}");
    }
}

#[test]
fn oversized_documents_are_refused_before_parsing() {
    let mut xml = base("", "");
    xml.push_str(&" ".repeat(domain_xml::MAX_DOCUMENT_BYTES));
    let e = err(&xml);
    assert!(matches!(e, Error::TooLarge(_)), "{e:?}");
    assert!(
        e.to_string().starts_with("XML error: document too large"),
        "{e}"
    );
}

#[test]
fn node_bombs_and_deep_nesting_are_bounded() {
    // Just under the size limit, but millions of elements: refused by the node limit.
    let n = (domain_xml::MAX_DOCUMENT_BYTES - 1000) / 4;
    let bomb = base(
        &format!(
            "<metadata><a:x xmlns:a='urn:a'>{}</a:x></metadata>",
            "<b/>".repeat(n)
        ),
        "",
    );
    assert!(matches!(err(&bomb), Error::TooLarge(_)));
    // Deep nesting inside verbatim content: refused, no stack overflow.
    let depth = 50_000;
    let deep = base(
        &format!(
            "<metadata><a:x xmlns:a='urn:a'>{}{}</a:x></metadata>",
            "<a:y>".repeat(depth),
            "</a:y>".repeat(depth)
        ),
        "",
    );
    let e = err(&deep);
    assert!(e.to_string().contains("nested more than"), "{e}");
    // Thousands of attributes on one element: refused before the (quadratic) duplicate
    // attribute check.
    let attrs: String = (0..5000).map(|i| format!("a{i}='x' ")).collect();
    let e = err(&base(
        &format!("<metadata><a:x xmlns:a='urn:a' {attrs}/></metadata>"),
        "",
    ));
    assert!(e.to_string().contains("more than 256 attributes"), "{e}");
    // '=' in comments, CDATA and attribute values does not count.
    let eqs = "=".repeat(1000);
    let ok = base(
        &format!("<!-- {eqs} --><description><![CDATA[{eqs}]]></description><title>{eqs}</title>"),
        &format!("<serial type='file'><source path='/{eqs}'/></serial>"),
    );
    Domain::parse(&ok).unwrap();
    // A large but legitimate document parses.
    let big_text = base(
        &format!("<description>{}</description>", "x".repeat(8 << 20)),
        "",
    );
    let dom = Domain::parse(&big_text).unwrap();
    assert_eq!(dom.description.as_ref().map(String::len), Some(8 << 20));
}

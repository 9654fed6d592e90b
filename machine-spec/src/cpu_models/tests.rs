use super::*;

fn set_of(model: &str) -> FeatureSet {
    find(model).unwrap().cpuid_features().collect()
}

#[test]
fn table_has_the_models_libvirt_and_qemu_name() {
    for name in [
        "qemu64",
        "kvm64",
        "Nehalem",
        "Westmere",
        "SandyBridge",
        "IvyBridge",
        "Haswell",
        "Haswell-noTSX",
        "Broadwell",
        "Skylake-Client",
        "Skylake-Server",
        "Cascadelake-Server",
        "Icelake-Server",
        "Cooperlake",
        "EPYC",
        "EPYC-Rome",
        "EPYC-Milan",
        "Opteron_G1",
        "Opteron_G5",
    ] {
        assert!(find(name).is_some(), "{name} missing");
    }
    assert!(find("skylake-client").is_none(), "model names are exact");
}

#[test]
fn signatures_and_vendors_are_qemus() {
    let s = find("Skylake-Client").unwrap();
    assert_eq!((s.family, s.model, s.stepping), (6, 94, 3));
    assert_eq!(s.vendor, Some(Vendor::Intel));
    let e = find("EPYC-Rome").unwrap();
    assert_eq!(
        (e.family, e.model, e.stepping, e.vendor),
        (23, 49, 0, Some(Vendor::Amd))
    );
    assert_eq!(find("qemu64").unwrap().vendor, None);
}

#[test]
fn names_unique_and_every_feature_known() {
    for (i, m) in models().iter().enumerate() {
        assert!(
            models()[i + 1..].iter().all(|o| o.name != m.name),
            "{} twice",
            m.name
        );
        assert!(!m.features.is_empty(), "{} has no features", m.name);
        for f in m.features {
            assert!(libvirt_name(f).is_some(), "{}: unknown feature {f}", m.name);
        }
    }
}

#[test]
fn missing_features_make_a_model_unusable() {
    let mut host = set_of("Haswell");
    assert!(find("Haswell").unwrap().missing_on(&host).is_empty());
    assert!(find("Nehalem").unwrap().missing_on(&host).is_empty());
    host.remove("avx2");
    assert_eq!(find("Haswell").unwrap().missing_on(&host), vec!["avx2"]);
    // MSR features never block: Cooperlake names ARCH_CAPABILITIES bits.
    let cl = find("Cooperlake").unwrap();
    assert!(cl.features.contains(&"mds-no") || cl.features.contains(&"rdctl-no"));
    assert!(cl.missing_on(&set_of("Cooperlake")).is_empty());
}

#[test]
fn closest_model_prefers_signature_then_fewest_extras() {
    let mut host = set_of("Skylake-Client");
    host.insert("hypervisor");
    let fit = closest_model(&host, Some(Vendor::Intel), Some((6, 94))).unwrap();
    assert_eq!(fit.model.name, "Skylake-Client");
    assert_eq!(fit.extra, vec!["hypervisor"]);
    // Without a matching signature the model with fewest extras still wins.
    let fit = closest_model(&host, Some(Vendor::Intel), None).unwrap();
    assert_eq!(fit.model.name, "Skylake-Client");
    // An AMD host is never described by an Intel model when an AMD one fits.
    let epyc = set_of("EPYC");
    let fit = closest_model(&epyc, Some(Vendor::Amd), None).unwrap();
    assert_eq!(fit.model.name, "EPYC");
    assert!(fit.extra.is_empty(), "{:?}", fit.extra);
}

#[test]
fn host_model_reads_the_probe() {
    let host = HostCpu {
        vendor: "GenuineIntel".into(),
        family: 6,
        model: 60,
        stepping: 3,
        features: find("Haswell-noTSX")
            .unwrap()
            .features
            .iter()
            .map(|f| f.to_string())
            .chain(["x2apic".to_string(), "lahf-lm".to_string()])
            .collect(),
    };
    let fit = host_model(&host).unwrap();
    assert_eq!(fit.model.name, "Haswell-noTSX");
    assert!(fit.extra.is_empty(), "{:?}", fit.extra);
}

#[test]
fn expand_applies_policies_and_names_unknown_models() {
    let p = |n: &str, pol: &str| (n.to_string(), pol.to_string());
    let s = expand(
        Some("Nehalem"),
        &[p("sse4.2", "disable"), p("avx", "require")],
    )
    .unwrap();
    assert!(!s.has("sse4.2") && s.has("avx") && s.has("sse4.1"));
    assert_eq!(expand(Some("Pentium9"), &[]), Err("Pentium9".to_string()));
}

#[test]
fn compare_identical_superset_incompatible() {
    let host = set_of("Haswell");
    assert_eq!(
        compare(&host, &set_of("Haswell"), &[], false),
        Comparison::Identical
    );
    assert_eq!(
        compare(&host, &set_of("Nehalem"), &[], false),
        Comparison::Superset
    );
    assert!(matches!(
        compare(&host, &set_of("Nehalem"), &[], true),
        Comparison::Incompatible(_)
    ));
    let Comparison::Incompatible(why) = compare(&host, &set_of("Skylake-Client"), &[], false)
    else {
        panic!("Skylake-Client on a Haswell host")
    };
    assert!(
        why.starts_with("Host CPU does not provide required features: ") && why.contains("mpx"),
        "{why}"
    );
    assert_eq!(
        compare(&host, &set_of("Nehalem"), &["avx2".into()], false),
        Comparison::Incompatible("Host CPU provides forbidden features: avx2".into())
    );
}

#[test]
fn libvirt_spelling_round_trips() {
    let s: FeatureSet = ["lahf-lm", "SSE4.1", "tsc-adjust"].into_iter().collect();
    assert_eq!(s.libvirt_names(), vec!["sse4.1", "tsc_adjust", "lahf_lm"]);
    assert_eq!(Vendor::parse("AuthenticAMD"), Some(Vendor::Amd));
    assert_eq!(Vendor::parse("Intel"), Some(Vendor::Intel));
}

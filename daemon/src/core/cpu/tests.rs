use super::*;
use domain_xml::XmlEnum;

/// A Haswell-noTSX host with x2apic and hypervisor beyond the model.
fn host() -> HostCpu {
    HostCpu {
        vendor: "GenuineIntel".into(),
        family: 6,
        model: 60,
        stepping: 1,
        features: cpu_models::find("Haswell-noTSX")
            .unwrap()
            .features
            .iter()
            .map(|f| f.to_string())
            .chain(["hypervisor".to_string()])
            .collect(),
    }
}

#[test]
fn model_names_are_the_table_for_x86_only() {
    let names = model_names("x86_64").unwrap();
    assert!(names.iter().any(|n| n == "Skylake-Client"));
    assert_eq!(names.len(), cpu_models::models().len());
    assert!(model_names("aarch64").is_err());
    assert_eq!(
        model_names("vax").unwrap_err().to_string(),
        "invalid argument: cannot find architecture vax"
    );
}

#[test]
fn domcaps_lists_host_model_and_usability() {
    let x = domcaps_cpu(Some(&host()));
    assert!(x.contains(
        "<mode name='host-model' supported='yes'>\n      <model fallback='forbid'>Haswell-noTSX</model>\n      <vendor>Intel</vendor>\n      <feature policy='require' name='hypervisor'/>\n    </mode>"
    ), "{x}");
    assert!(
        x.contains("<model usable='yes' vendor='Intel'>Nehalem</model>"),
        "{x}"
    );
    assert!(
        x.contains("<model usable='no' vendor='Intel'>Skylake-Client</model>"),
        "{x}"
    );
    assert!(
        x.contains("<model usable='yes' vendor='unknown'>kvm64</model>"),
        "{x}"
    );
    let none = domcaps_cpu(None);
    assert!(none.contains("<mode name='host-model' supported='no'/>"));
    assert!(none.contains("<model usable='unknown' vendor='AMD'>EPYC</model>"));
}

#[test]
fn baseline_intersects_and_names_the_best_model() {
    let a = "<cpu><arch>x86_64</arch><model>Haswell-noTSX</model><vendor>Intel</vendor></cpu>";
    let b = "<cpu mode='custom' match='exact'><model>Skylake-Client</model></cpu>";
    let x = baseline(&[a.into(), b.into()], 0, None).unwrap();
    assert!(x.starts_with("<cpu mode='custom' match='exact'>\n  <model fallback='forbid'>Haswell-noTSX</model>\n  <vendor>Intel</vendor>\n"), "{x}");
    let expanded = baseline(&[a.into()], BASELINE_EXPAND_FEATURES, None).unwrap();
    assert!(
        expanded.contains("<feature policy='require' name='avx2'/>"),
        "{expanded}"
    );
    // The hypervisor variant drops what the host lacks.
    let sky = "<cpu><model>Skylake-Client</model><feature name='avx512f'/></cpu>";
    let x = baseline(&[sky.into()], 0, Some(&host())).unwrap();
    assert!(
        x.contains(">Haswell-noTSX</model>") && !x.contains("avx512f"),
        "{x}"
    );
    assert!(
        baseline(&["<cpu><model>Nope</model></cpu>".into()], 0, None)
            .unwrap_err()
            .to_string()
            .contains("Unknown CPU model Nope")
    );
}

#[test]
fn compare_answers_and_explains() {
    let h = host();
    let ident = "<cpu mode='custom' match='exact'><model>Haswell-noTSX</model><feature policy='require' name='hypervisor'/></cpu>";
    assert_eq!(compare(ident, 0, &h).unwrap(), CPU_COMPARE_IDENTICAL);
    assert_eq!(
        compare("<cpu><model>Nehalem</model></cpu>", 0, &h).unwrap(),
        CPU_COMPARE_SUPERSET
    );
    let sky = "<cpu mode='custom' match='exact'><model>Nehalem</model><feature policy='require' name='avx512f'/></cpu>";
    assert_eq!(compare(sky, 0, &h).unwrap(), CPU_COMPARE_INCOMPATIBLE);
    let err = compare(sky, COMPARE_FAIL_INCOMPATIBLE, &h).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the CPU is incompatible with host CPU: Host CPU does not provide required features: avx512f"
    );
    assert_eq!(err.code(), 91);
    let forbid = "<cpu><model>Nehalem</model><feature policy='forbid' name='avx2'/></cpu>";
    assert_eq!(
        compare(forbid, COMPARE_FAIL_INCOMPATIBLE, &h)
            .unwrap_err()
            .to_string(),
        "the CPU is incompatible with host CPU: Host CPU provides forbidden features: avx2"
    );
    let amd = "<cpu><model>Nehalem</model><vendor>AMD</vendor></cpu>";
    assert_eq!(compare(amd, 0, &h).unwrap(), CPU_COMPARE_INCOMPATIBLE);
    assert!(compare(
        "<cpu><model>Nehalem</model><feature name='bogus'/></cpu>",
        0,
        &h
    )
    .is_err());
}

#[test]
fn live_xml_writes_host_model_as_the_custom_cpu_it_ran() {
    let dom = |cpu: &str| {
        domain_xml::Domain::parse(&format!(
            "<domain type='kvm'><name>a</name><memory>65536</memory><os><type>hvm</type><kernel>/k</kernel></os>{cpu}</domain>"
        ))
        .unwrap()
    };
    let mut d =
        dom("<cpu mode='host-model' check='partial'><feature policy='disable' name='vme'/></cpu>");
    live_cpu(&mut d.cpu, Some(&host()));
    let c = d.cpu.as_ref().unwrap();
    assert_eq!(c.mode, Some(domain_xml::CpuModeAttr::Custom));
    assert_eq!(
        (c.match_.as_deref(), c.check.as_deref()),
        (Some("exact"), Some("full"))
    );
    let m = c.model.as_ref().unwrap();
    assert_eq!(
        (m.name.as_deref(), m.fallback.as_deref()),
        (Some("Haswell-noTSX"), Some("forbid"))
    );
    assert_eq!(c.vendor.as_deref(), Some("Intel"));
    let f: Vec<(&str, &str)> = c
        .features
        .iter()
        .map(|f| (f.policy.as_str(), f.name.as_str()))
        .collect();
    assert_eq!(f, vec![("require", "hypervisor"), ("disable", "vme")]);
    // The live form translates again (a reboot starts from it) to the same model.
    let spec = domain_xml::translate(&d).unwrap();
    assert_eq!(spec.cpus.model.unwrap().name, "Haswell-noTSX");

    let mut d = dom("<cpu mode='custom'><model>Nehalem</model></cpu>");
    live_cpu(&mut d.cpu, None);
    let c = d.cpu.as_ref().unwrap();
    assert_eq!(
        (c.match_.as_deref(), c.check.as_deref()),
        (Some("exact"), Some("full"))
    );
    let mut d = dom("<cpu mode='host-passthrough'/>");
    live_cpu(&mut d.cpu, None);
    let c = d.cpu.as_ref().unwrap();
    assert_eq!(c.check.as_deref(), Some("none"));
    assert_eq!(c.migratable, Some(domain_xml::OnOff::On));
}

#[test]
fn capabilities_host_cpu_names_model_signature_and_extras() {
    let (model, features) = host_caps_cpu(Some(&host()));
    assert_eq!(
        model,
        "      <model>Haswell-noTSX</model>\n      <vendor>Intel</vendor>\n      \
         <signature family='6' model='60' stepping='1'/>\n"
    );
    assert_eq!(features, "      <feature name='hypervisor'/>\n");
    assert_eq!(host_caps_cpu(None), (String::new(), String::new()));
}

//! `<tpm>` → [`ms::Tpm`]: a TPM 2.0 on the CRB or TIS interface, emulated by swtpm.
//!
//! A TPM holds the guest's identity (keys, sealed secrets), so it is never dropped:
//! what runs is `<tpm model='tpm-crb'|'tpm-tis'><backend type='emulator' version='2.0'/>`
//! (what virt-install writes for UEFI guests); everything else is refused by name. Its
//! state lives where libvirt keeps it, per domain UUID: [`SYSTEM_SWTPM_DIR`] for the
//! system daemon, `$XDG_DATA_HOME/oxvirt/swtpm` for a session one.

use std::path::PathBuf;

use machine_spec as ms;

use crate::error::{Error, Result};
use crate::model::{Domain, GenericDevice};

/// Where the system daemon keeps each domain's TPM state (`UUID/` below it).
pub const SYSTEM_SWTPM_DIR: &str = "/var/lib/oxvirt/swtpm";

fn unsupported<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::unsupported(msg))
}

/// The TPM state directory of the domain `uuid` for this process (root: the
/// system daemon's, anyone else: the user's data dir). The daemon removes it on
/// undefine unless asked to keep it.
pub fn state_dir(uuid: &str) -> PathBuf {
    use crate::translate_firmware::{effective_uid, user_data_home};
    let base = if effective_uid() == Some(0) {
        PathBuf::from(SYSTEM_SWTPM_DIR)
    } else {
        user_data_home().join("oxvirt/swtpm")
    };
    base.join(uuid)
}

/// The domain's TPM device, if it has one.
pub(crate) fn tpms(dom: &Domain) -> Result<Option<ms::Device>> {
    let tpms = &dom.devices.tpms;
    let Some(t) = tpms.first() else {
        return Ok(None);
    };
    if tpms.len() > 1 {
        return unsupported("more than one <tpm> device is not supported");
    }
    let model = match t.attr("model") {
        Some("tpm-crb") => ms::TpmModel::Crb,
        // No model: libvirt's QEMU driver picks tpm-tis on x86.
        Some("tpm-tis") | None => ms::TpmModel::Tis,
        Some(m) => {
            return unsupported(format!(
                "<tpm model='{m}'> is not supported (only 'tpm-crb' and 'tpm-tis')"
            ))
        }
    };
    backend(t)?;
    Ok(Some(ms::Device {
        id: t.alias.clone().unwrap_or_else(|| "tpm0".into()),
        pci: None,
        boot_index: None,
        kind: ms::DeviceKind::Tpm(ms::Tpm {
            model,
            state_dir: state_dir(&dom.uuid),
            log: None,
        }),
    }))
}

/// `<backend type='emulator' version='2.0'/>`, optionally `persistent_state`.
fn backend(t: &GenericDevice) -> Result<()> {
    let Some(b) = t.element.get_child("backend") else {
        return Err(Error::xml("<tpm> needs a <backend>".to_string()));
    };
    match b.get_attr("type") {
        Some("emulator") => {}
        Some(ty) => {
            return unsupported(format!(
                "<tpm><backend type='{ty}'> is not supported (only 'emulator', through swtpm)"
            ))
        }
        None => return Err(Error::xml("<tpm><backend> needs a type".to_string())),
    }
    match b.get_attr("version") {
        None | Some("2.0") => {}
        Some(v) => {
            return unsupported(format!(
                "<tpm><backend version='{v}'> is not supported (only TPM '2.0')"
            ))
        }
    }
    for (name, _) in &b.attrs {
        match name.as_str() {
            "type" | "version" => {}
            other => return unsupported(format!("<tpm><backend {other}=…> is not supported")),
        }
    }
    if let Some(c) = b.child_elements().next() {
        return unsupported(format!("<tpm><backend><{}> is not supported", c.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(devices: &str) -> Result<ms::MachineSpec> {
        crate::spec_from_xml(&format!(
            "<domain type='kvm'><name>t</name><uuid>11111111-2222-3333-4444-555555555555</uuid>
             <memory unit='MiB'>64</memory><os><type>hvm</type><kernel>/k</kernel></os>
             <devices>{devices}</devices></domain>"
        ))
    }

    #[test]
    fn crb_emulator_runs_with_its_state_under_the_domain_uuid() {
        let s =
            spec("<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>").unwrap();
        let tpm = s
            .devices
            .iter()
            .find_map(|d| match &d.kind {
                ms::DeviceKind::Tpm(t) => Some((d.id.clone(), t.clone())),
                _ => None,
            })
            .expect("a TPM device");
        assert_eq!(tpm.0, "tpm0");
        assert_eq!(tpm.1.model, ms::TpmModel::Crb);
        assert_eq!(
            tpm.1.state_dir,
            state_dir("11111111-2222-3333-4444-555555555555")
        );
        assert!(tpm
            .1
            .state_dir
            .ends_with("oxvirt/swtpm/11111111-2222-3333-4444-555555555555"));
    }

    #[test]
    fn tis_and_the_default_model_run_as_tis_and_other_models_are_refused_by_name() {
        let model = |xml: &str| match &spec(xml).unwrap().devices[0].kind {
            ms::DeviceKind::Tpm(t) => t.model,
            k => panic!("{k:?}"),
        };
        let tis = "<tpm model='tpm-tis'><backend type='emulator' version='2.0'/></tpm>";
        assert_eq!(model(tis), ms::TpmModel::Tis);
        assert_eq!(
            model("<tpm><backend type='emulator'/></tpm>"),
            ms::TpmModel::Tis
        );
        let e = spec("<tpm model='tpm-spapr'><backend type='emulator'/></tpm>")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("<tpm model='tpm-spapr'> is not supported"),
            "{e}"
        );
    }

    #[test]
    fn two_tpms_and_a_missing_backend_are_refused() {
        let one = "<tpm model='tpm-crb'><backend type='emulator'/></tpm>";
        let e = spec(&format!("{one}{one}")).unwrap_err().to_string();
        assert!(e.contains("more than one <tpm>"), "{e}");
        let e = spec("<tpm model='tpm-crb'/>").unwrap_err().to_string();
        assert!(e.contains("<tpm> needs a <backend>"), "{e}");
    }
}

//! A domain's TPM beyond its definition: whether this host can run one (domain
//! capabilities), and its state directory's end at undefine.
//!
//! The VMM starts swtpm and manufactures the state (`vmm/src/tpm/`); the directory
//! is `domain_xml::translate_tpm::state_dir(UUID)`. libvirt removes it when a domain
//! with an emulated TPM is undefined, unless `VIR_DOMAIN_UNDEFINE_KEEP_TPM` asks to
//! keep it (`virsh undefine --keep-tpm`); `VIR_DOMAIN_UNDEFINE_TPM` removes it
//! explicitly, and the two together are an error. A transient domain's state goes when
//! the domain does (its VMM exits), as libvirt removes it.

use std::path::Path;

use uuid::Uuid;

use super::error::{Error, Result};
use super::flags::undefine::{KEEP_TPM, TPM};

/// Domain-capability enums for `<tpm>` when swtpm and swtpm_setup are installed
/// (libvirt 9.0's names); `None` (`supported='no'`) otherwise.
pub fn caps() -> Option<Vec<(&'static str, &'static [&'static str])>> {
    if !(in_path("swtpm") && in_path("swtpm_setup")) {
        return None;
    }
    Some(vec![
        ("model", &["tpm-tis", "tpm-crb"][..]),
        ("backendModel", &["emulator"][..]),
        ("backendVersion", &["2.0"][..]),
    ])
}

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Refuses KEEP_TPM together with TPM, before anything is removed.
pub fn check_flags(flags: u32) -> Result<()> {
    if flags & TPM != 0 && flags & KEEP_TPM != 0 {
        return Err(Error::InvalidArg("cannot both keep and delete TPM".into()));
    }
    Ok(())
}

/// At undefine of a domain that has a `<tpm>` (or the end of a transient one, `flags`
/// 0): removes its state unless kept.
pub fn on_undefine(uuid: &Uuid, has_tpm: bool, flags: u32) {
    if !has_tpm || flags & KEEP_TPM != 0 {
        return;
    }
    remove(&domain_xml::translate_tpm::state_dir(&uuid.to_string()));
}

fn remove(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::info!(dir = %dir.display(), "TPM state removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // The definition is gone already; what is left is logged, as libvirt does.
        Err(e) => tracing::warn!(dir = %dir.display(), "cannot remove the TPM state: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_and_delete_together_are_refused() {
        let e = check_flags(TPM | KEEP_TPM).unwrap_err().to_string();
        assert!(e.contains("cannot both keep and delete TPM"), "{e}");
        check_flags(TPM).unwrap();
        check_flags(KEEP_TPM).unwrap();
    }

    #[test]
    fn remove_takes_the_whole_directory_and_tolerates_none() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("u");
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join("tpm2-00.permall"), b"x").unwrap();
        remove(&state);
        assert!(!state.exists());
        remove(&state);
    }
}

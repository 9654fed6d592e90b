//! Secrets, as libvirt's secret driver keeps them: a definition
//! (`<secret ephemeral private><uuid/><description/><usage type=…/></secret>`) and
//! an optional value, both in files readable by the daemon only (mode 0600):
//! `UUID.xml` and `UUID.base64` in the `secrets` directory beside the domain
//! store (libvirt: `/etc/libvirt/secrets`). Ephemeral secrets live under the
//! runtime directory instead, so they are gone after a host reboot.
//!
//! Both front ends call these; a `private='yes'` secret's value is never given
//! to a client (libvirt's "secret is private").

use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::error::{Error, Result};
use super::{fsutil, Core};

/// `virSecretUsageType`.
pub mod usage {
    pub const NONE: i32 = 0;
    pub const VOLUME: i32 = 1;
    pub const CEPH: i32 = 2;
    pub const ISCSI: i32 = 3;
    pub const TLS: i32 = 4;
    pub const VTPM: i32 = 5;
}

/// `virConnectListAllSecretsFlags`.
pub mod list {
    pub const EPHEMERAL: u32 = 1;
    pub const NO_EPHEMERAL: u32 = 2;
    pub const PRIVATE: u32 = 4;
    pub const NO_PRIVATE: u32 = 8;
    pub const ALL: u32 = 15;
}

/// A client's handle on a secret: what `remote_nonnull_secret` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub uuid: Uuid,
    pub usage_type: i32,
    /// The usage's identifying string (volume path, ceph/tls/vtpm name, iSCSI
    /// target); empty for usage `none`.
    pub usage_id: String,
}

/// A parsed secret definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDef {
    pub ephemeral: bool,
    pub private: bool,
    pub uuid: Uuid,
    pub description: Option<String>,
    pub usage_type: i32,
    pub usage_id: String,
}

/// The usage type names and the element holding each one's id.
const USAGES: [(i32, &str, &str); 5] = [
    (usage::VOLUME, "volume", "volume"),
    (usage::CEPH, "ceph", "name"),
    (usage::ISCSI, "iscsi", "target"),
    (usage::TLS, "tls", "name"),
    (usage::VTPM, "vtpm", "name"),
];

/// A usage type's name in the XML (`none` for none or an unknown number).
fn usage_name(usage_type: i32) -> &'static str {
    USAGES
        .iter()
        .find(|(t, ..)| *t == usage_type)
        .map_or("none", |(_, n, _)| n)
}

fn yes_no(v: Option<&str>, what: &str) -> Result<bool> {
    match v {
        None | Some("no") => Ok(false),
        Some("yes") => Ok(true),
        Some(o) => Err(Error::Xml(format!("invalid value of '{what}': {o}"))),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl SecretDef {
    /// Parses libvirt's secret XML; a missing `<uuid>` gets a fresh one.
    pub fn parse(xml: &str) -> Result<SecretDef> {
        let doc = roxmltree::Document::parse(xml).map_err(|e| Error::Xml(e.to_string()))?;
        let root = doc.root_element();
        if root.tag_name().name() != "secret" {
            return Err(Error::Xml(format!(
                "unexpected root element <{}>, expecting <secret>",
                root.tag_name().name()
            )));
        }
        let child = |name: &str| root.children().find(|n| n.has_tag_name(name));
        let uuid = match child("uuid").and_then(|n| n.text()) {
            Some(t) => Uuid::parse_str(t.trim())
                .map_err(|_| Error::Xml(format!("malformed uuid element '{}'", t.trim())))?,
            None => Uuid::new_v4(),
        };
        let (usage_type, usage_id) = match child("usage") {
            None => (usage::NONE, String::new()),
            Some(u) => {
                let kind = u.attribute("type").ok_or_else(|| {
                    Error::Xml("unknown secret usage type (missing 'type')".into())
                })?;
                let (t, _, element) = USAGES
                    .iter()
                    .find(|(_, name, _)| *name == kind)
                    .ok_or_else(|| Error::Xml(format!("unknown secret usage type {kind}")))?;
                let id = u
                    .children()
                    .find(|n| n.has_tag_name(*element))
                    .and_then(|n| n.text())
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        Error::Xml(format!("{kind} usage specified, but {element} is missing"))
                    })?;
                (*t, id.to_string())
            }
        };
        Ok(SecretDef {
            ephemeral: yes_no(root.attribute("ephemeral"), "ephemeral")?,
            private: yes_no(root.attribute("private"), "private")?,
            uuid,
            description: child("description")
                .and_then(|n| n.text())
                .map(str::to_string),
            usage_type,
            usage_id,
        })
    }

    /// The definition as libvirt's `virSecretDefFormat` writes it.
    pub fn to_xml(&self) -> String {
        let yn = |b: bool| if b { "yes" } else { "no" };
        let mut s = format!(
            "<secret ephemeral='{}' private='{}'>\n  <uuid>{}</uuid>\n",
            yn(self.ephemeral),
            yn(self.private),
            self.uuid
        );
        if let Some(d) = &self.description {
            s += &format!("  <description>{}</description>\n", escape(d));
        }
        if let Some((_, name, element)) = USAGES.iter().find(|(t, ..)| *t == self.usage_type) {
            s += &format!(
                "  <usage type='{name}'>\n    <{element}>{}</{element}>\n  </usage>\n",
                escape(&self.usage_id)
            );
        }
        s + "</secret>\n"
    }

    pub fn secret_ref(&self) -> SecretRef {
        SecretRef {
            uuid: self.uuid,
            usage_type: self.usage_type,
            usage_id: self.usage_id.clone(),
        }
    }
}

fn no_secret_uuid(uuid: &Uuid) -> Error {
    Error::NoSecret(format!("no secret with matching uuid '{uuid}'"))
}

/// Serialises changes to the secret directories (one daemon per store).
static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Core {
    fn secret_dirs(&self) -> [PathBuf; 2] {
        let c = &self.inner.config;
        let persistent = c
            .domains_dir
            .parent()
            .unwrap_or(Path::new("/"))
            .join("secrets");
        [persistent, c.runtime_dir.join("secrets")]
    }

    fn secret_dir(&self, ephemeral: bool) -> PathBuf {
        let [persistent, runtime] = self.secret_dirs();
        if ephemeral {
            runtime
        } else {
            persistent
        }
    }

    /// Every defined secret with its directory.
    fn secret_defs(&self) -> Result<Vec<(SecretDef, PathBuf)>> {
        let mut out = Vec::new();
        for dir in self.secret_dirs() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "xml") {
                    continue;
                }
                let xml =
                    std::fs::read_to_string(&p).map_err(|e| Error::io("read file", &p, &e))?;
                match SecretDef::parse(&xml) {
                    Ok(d) => out.push((d, dir.clone())),
                    Err(e) => {
                        tracing::error!(file = %p.display(), error = %e, "skipping unreadable secret")
                    }
                }
            }
        }
        out.sort_by_key(|(d, _)| d.uuid);
        Ok(out)
    }

    fn secret_def(&self, uuid: &Uuid) -> Result<(SecretDef, PathBuf)> {
        self.secret_defs()?
            .into_iter()
            .find(|(d, _)| d.uuid == *uuid)
            .ok_or_else(|| no_secret_uuid(uuid))
    }

    /// `virSecretDefineXML`: defines or redefines a secret (its value stays).
    pub fn secret_define_xml(&self, xml: &str, flags: u32) -> Result<SecretRef> {
        Error::check_flags(flags, 0, "virSecretDefineXML")?;
        let def = SecretDef::parse(xml)?;
        let _guard = LOCK.lock().expect("poisoned");
        let all = self.secret_defs()?;
        if def.usage_type != usage::NONE {
            if let Some((other, _)) = all.iter().find(|(o, _)| {
                o.uuid != def.uuid && o.usage_type == def.usage_type && o.usage_id == def.usage_id
            }) {
                return Err(Error::InvalidSecret(format!(
                    "a secret with UUID {} already defined for use with {}",
                    other.uuid, def.usage_id
                )));
            }
        }
        if let Some((old, old_dir)) = all.iter().find(|(o, _)| o.uuid == def.uuid) {
            if old.usage_type != def.usage_type || old.usage_id != def.usage_id {
                return Err(Error::InvalidSecret(format!(
                    "a secret with UUID {} is already defined for use with {}",
                    def.uuid, old.usage_id
                )));
            }
            if old.private && !def.private {
                return Err(Error::InvalidSecret(
                    "cannot change private flag on existing secret".into(),
                ));
            }
            // Ephemeral to persistent (or back): the value moves with it.
            let dir = self.secret_dir(def.ephemeral);
            if *old_dir != dir {
                fsutil::create_dir(&dir, 0o700)?;
                let value = old_dir.join(format!("{}.base64", def.uuid));
                if let Ok(v) = std::fs::read(&value) {
                    fsutil::write_atomic(&dir.join(format!("{}.base64", def.uuid)), &v, 0o600)?;
                }
                fsutil::remove_file(&value)?;
                fsutil::remove_file(&old_dir.join(format!("{}.xml", def.uuid)))?;
            }
        }
        let dir = self.secret_dir(def.ephemeral);
        fsutil::create_dir(&dir, 0o700)?;
        fsutil::write_atomic(
            &dir.join(format!("{}.xml", def.uuid)),
            def.to_xml().as_bytes(),
            0o600,
        )?;
        Ok(def.secret_ref())
    }

    /// `virSecretUndefine`: removes the definition and its value.
    pub fn secret_undefine(&self, uuid: &Uuid) -> Result<()> {
        let _guard = LOCK.lock().expect("poisoned");
        let (_, dir) = self.secret_def(uuid)?;
        fsutil::remove_file(&dir.join(format!("{uuid}.base64")))?;
        fsutil::remove_file(&dir.join(format!("{uuid}.xml")))
    }

    /// `virSecretGetXMLDesc`.
    pub fn secret_xml_desc(&self, uuid: &Uuid, flags: u32) -> Result<String> {
        Error::check_flags(flags, 0, "virSecretGetXMLDesc")?;
        Ok(self.secret_def(uuid)?.0.to_xml())
    }

    /// `virSecretSetValue`.
    pub fn secret_set_value(&self, uuid: &Uuid, value: &[u8], flags: u32) -> Result<()> {
        Error::check_flags(flags, 0, "virSecretSetValue")?;
        let _guard = LOCK.lock().expect("poisoned");
        let (_, dir) = self.secret_def(uuid)?;
        fsutil::write_atomic(
            &dir.join(format!("{uuid}.base64")),
            base64::encode(value).as_bytes(),
            0o600,
        )
    }

    /// `virSecretGetValue` for a client: refused for a private secret.
    pub fn secret_get_value(&self, uuid: &Uuid, flags: u32) -> Result<Vec<u8>> {
        Error::check_flags(flags, 0, "virSecretGetValue")?;
        let (def, dir) = self.secret_def(uuid)?;
        if def.private {
            return Err(Error::InvalidSecret("secret is private".into()));
        }
        let path = dir.join(format!("{uuid}.base64"));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoSecret(format!(
                    "secret '{uuid}' does not have a value"
                )))
            }
            Err(e) => return Err(Error::io("read file", &path, &e)),
        };
        base64::decode(text.trim())
            .ok_or_else(|| Error::Internal(format!("invalid base64 in '{}'", path.display())))
    }

    /// `virConnectListAllSecrets` with its filter flags.
    pub fn secrets(&self, flags: u32) -> Result<Vec<SecretRef>> {
        Error::check_flags(flags, list::ALL, "virConnectListAllSecrets")?;
        let keep = |want: u32, not: u32, has: bool| {
            !(flags & want != 0 && !has || flags & not != 0 && has)
        };
        Ok(self
            .secret_defs()?
            .into_iter()
            .filter(|(d, _)| {
                keep(list::EPHEMERAL, list::NO_EPHEMERAL, d.ephemeral)
                    && keep(list::PRIVATE, list::NO_PRIVATE, d.private)
            })
            .map(|(d, _)| d.secret_ref())
            .collect())
    }

    /// `virSecretLookupByUUID`.
    pub fn secret_lookup_by_uuid(&self, uuid: &Uuid) -> Result<SecretRef> {
        Ok(self.secret_def(uuid)?.0.secret_ref())
    }

    /// `virSecretLookupByUsage`.
    pub fn secret_lookup_by_usage(&self, usage_type: i32, usage_id: &str) -> Result<SecretRef> {
        self.secret_defs()?
            .into_iter()
            .map(|(d, _)| d)
            .find(|d| d.usage_type == usage_type && d.usage_id == usage_id)
            .map(|d| d.secret_ref())
            .ok_or_else(|| {
                Error::NoSecret(format!(
                    "no secret with matching usage '{usage_id}' (type {})",
                    usage_name(usage_type)
                ))
            })
    }
}

/// Standard base64 (RFC 4648, padded) for the `.base64` value files: a few
/// lines here instead of a new dependency for two calls.
pub(super) mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(4) {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        for chunk in bytes.chunks(4) {
            let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
            if pad > 2 {
                return None;
            }
            let mut n = 0u32;
            for &c in &chunk[..4 - pad] {
                let v = ALPHABET.iter().position(|&a| a == c)?;
                n = n << 6 | v as u32;
            }
            n <<= 6 * pad as u32;
            let all = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&all[..3 - pad]);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_padding() {
        for data in [&b""[..], b"a", b"ab", b"abc", b"abcd", &[0, 255, 128, 7, 9]] {
            let e = base64::encode(data);
            assert_eq!(base64::decode(&e).as_deref(), Some(data), "{e}");
        }
        assert_eq!(base64::encode(b"hello"), "aGVsbG8=");
        assert_eq!(base64::decode("a"), None);
    }

    #[test]
    fn secret_xml_round_trips_as_libvirt_writes_it() {
        let d = SecretDef::parse(
            "<secret ephemeral='no' private='yes'><uuid>0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f</uuid>\
             <description>vnc</description><usage type='volume'><volume>/v/a.img</volume></usage></secret>",
        )
        .unwrap();
        assert!(d.private && !d.ephemeral);
        assert_eq!(
            (d.usage_type, d.usage_id.as_str()),
            (usage::VOLUME, "/v/a.img")
        );
        assert_eq!(
            d.to_xml(),
            "<secret ephemeral='no' private='yes'>\n  <uuid>0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f</uuid>\n  \
             <description>vnc</description>\n  <usage type='volume'>\n    <volume>/v/a.img</volume>\n  \
             </usage>\n</secret>\n"
        );
        assert_eq!(SecretDef::parse(&d.to_xml()).unwrap(), d);
        assert_eq!(usage_name(d.usage_type), "volume");
    }

    #[test]
    fn bad_secret_xml_names_what_is_wrong() {
        let e = SecretDef::parse("<secret><usage type='floppy'/></secret>").unwrap_err();
        assert_eq!(e.to_string(), "XML error: unknown secret usage type floppy");
        let e = SecretDef::parse("<secret><usage type='ceph'/></secret>").unwrap_err();
        assert!(
            e.to_string()
                .contains("ceph usage specified, but name is missing"),
            "{e}"
        );
        let e = SecretDef::parse("<secret private='maybe'/>").unwrap_err();
        assert!(e.to_string().contains("'private'"), "{e}");
    }
}

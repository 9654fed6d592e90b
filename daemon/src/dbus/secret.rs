//! `org.libvirt.Secret` objects (`<connect path>/secret/_<uuid with '_'>`) and
//! the Connect methods that list, define and look them up; each calls the
//! core's secret store ([`crate::core::secret`]).

use uuid::Uuid;
use zbus::message::Header;
use zbus::OwnedObjectPath;

use super::error::Result;
use super::Context;
use crate::core::secret::SecretRef;
use crate::core::Core;

/// The object path of a secret.
pub fn secret_path(base: &str, uuid: &Uuid) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!(
        "{base}/secret/_{}",
        uuid.hyphenated().to_string().replace('-', "_")
    ))
    .expect("secret paths are valid object paths")
}

/// One secret's object.
pub struct SecretIface {
    ctx: Context,
    uuid: Uuid,
}

impl SecretIface {
    fn secret(&self) -> Result<SecretRef> {
        Ok(self.ctx.core.secret_lookup_by_uuid(&self.uuid)?)
    }
}

/// Brings the exported secret objects in line with the store.
async fn sync(ctx: &Context, conn: &zbus::Connection) -> Result<Vec<SecretRef>> {
    let all = ctx.core.secrets(0)?;
    let want = all
        .iter()
        .map(|s| (s.uuid, secret_path(&ctx.base, &s.uuid)))
        .collect();
    ctx.secret_objects
        .sync(conn.object_server(), want, |uuid| SecretIface {
            ctx: ctx.clone(),
            uuid: *uuid,
        })
        .await;
    Ok(all)
}

/// `Connect.ListSecrets`.
pub(super) async fn list(
    ctx: &Context,
    conn: &zbus::Connection,
    hdr: &Header<'_>,
    flags: u32,
) -> Result<Vec<OwnedObjectPath>> {
    ctx.gate.check(conn, hdr).await?;
    sync(ctx, conn).await?;
    Ok(ctx
        .core
        .secrets(flags)?
        .iter()
        .map(|s| secret_path(&ctx.base, &s.uuid))
        .collect())
}

/// `Connect.SecretDefineXML`.
pub(super) async fn define(
    ctx: &Context,
    conn: &zbus::Connection,
    hdr: &Header<'_>,
    xml: &str,
    flags: u32,
) -> Result<OwnedObjectPath> {
    ctx.gate.check(conn, hdr).await?;
    let s = ctx.core.secret_define_xml(xml, flags)?;
    sync(ctx, conn).await?;
    Ok(secret_path(&ctx.base, &s.uuid))
}

/// `Connect.SecretLookupByUUID` (`uuid` given) or `SecretLookupByUsage`.
pub(super) async fn lookup(
    ctx: &Context,
    conn: &zbus::Connection,
    hdr: &Header<'_>,
    uuid: Option<&str>,
    usage: Option<(i32, &str)>,
) -> Result<OwnedObjectPath> {
    ctx.gate.check(conn, hdr).await?;
    let s = match (uuid, usage) {
        (Some(u), _) => ctx.core.secret_lookup_by_uuid(&Core::parse_uuid(u)?)?,
        (None, Some((t, id))) => ctx.core.secret_lookup_by_usage(t, id)?,
        (None, None) => unreachable!("a lookup names the secret"),
    };
    sync(ctx, conn).await?;
    Ok(secret_path(&ctx.base, &s.uuid))
}

#[zbus::interface(name = "org.libvirt.Secret")]
impl SecretIface {
    #[zbus(property(emits_changed_signal = "const"), name = "UUID")]
    async fn uuid_prop(&self) -> Result<String> {
        Ok(self.uuid.hyphenated().to_string())
    }

    #[zbus(property(emits_changed_signal = "const"), name = "UsageID")]
    async fn usage_id(&self) -> Result<String> {
        Ok(self.secret()?.usage_id)
    }

    #[zbus(property(emits_changed_signal = "const"), name = "UsageType")]
    async fn usage_type(&self) -> Result<i32> {
        Ok(self.secret()?.usage_type)
    }

    #[zbus(name = "GetValue", out_args("value"))]
    async fn get_value(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<Vec<u8>> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.secret_get_value(&self.uuid, flags)?)
    }

    #[zbus(name = "GetXMLDesc", out_args("xml"))]
    async fn get_xml_desc(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<String> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.secret_xml_desc(&self.uuid, flags)?)
    }

    #[zbus(name = "SetValue")]
    async fn set_value(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        value: Vec<u8>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.secret_set_value(&self.uuid, &value, flags)?)
    }

    #[zbus(name = "Undefine")]
    async fn undefine(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        self.ctx.core.secret_undefine(&self.uuid)?;
        sync(&self.ctx, conn).await?;
        Ok(())
    }
}

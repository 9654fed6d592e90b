//! `org.libvirt.StorageVol` objects (`<connect path>/storagevol/<encoded key>`), with
//! libvirt-dbus's members; each calls the storage driver.

use zbus::message::Header;

use super::error::Result;
use super::Context;
use crate::storage::{self, VolRef};

/// One volume object.
pub struct StorageVolIface {
    pub(super) ctx: Context,
    pub(super) vol: VolRef,
}

#[zbus::interface(name = "org.libvirt.StorageVol")]
impl StorageVolIface {
    #[zbus(property(emits_changed_signal = "const"), name = "Name")]
    async fn name(&self) -> Result<String> {
        Ok(self.vol.name.clone())
    }

    #[zbus(property(emits_changed_signal = "const"), name = "Key")]
    async fn key(&self) -> Result<String> {
        Ok(self.vol.key.clone())
    }

    #[zbus(property(emits_changed_signal = "const"), name = "Path")]
    async fn path(&self) -> Result<String> {
        Ok(self
            .ctx
            .core
            .storage()
            .vol_target_path(&self.vol.pool, &self.vol.name)?)
    }

    #[zbus(name = "Delete")]
    async fn delete(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        self.ctx
            .core
            .storage()
            .delete_vol(&self.vol.pool, &self.vol.name, flags)
            .await?;
        self.ctx.sync_storage(conn).await;
        Ok(())
    }

    #[zbus(name = "GetInfo", out_args("info"))]
    async fn get_info(&self, flags: u32) -> Result<((i32, u64, u64),)> {
        // VIR_STORAGE_VOL_GET_PHYSICAL = 1: allocation is the file length.
        storage::Error::check_flags(flags, 1, "virStorageVolGetInfoFlags")?;
        let i = self
            .ctx
            .core
            .storage()
            .vol_info(&self.vol.pool, &self.vol.name)?;
        let alloc = if flags & 1 != 0 {
            i.physical
        } else {
            i.allocation
        };
        Ok(((i.vol_type(), i.capacity, alloc),))
    }

    #[zbus(name = "GetXMLDesc", out_args("xml"))]
    async fn get_xml_desc(&self, flags: u32) -> Result<String> {
        Ok(self
            .ctx
            .core
            .storage()
            .vol_xml(&self.vol.pool, &self.vol.name, flags)?)
    }

    #[zbus(name = "Resize")]
    async fn resize(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        capacity: u64,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self
            .ctx
            .core
            .storage()
            .resize_vol(&self.vol.pool, &self.vol.name, capacity, flags)
            .await?)
    }

    #[zbus(name = "Wipe")]
    async fn wipe(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        pattern: u32,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self
            .ctx
            .core
            .storage()
            .wipe_vol(&self.vol.pool, &self.vol.name, pattern, flags)
            .await?)
    }
}

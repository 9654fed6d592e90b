//! `org.libvirt.Connect` on the connect object (`/org/libvirt/QEMU` by default),
//! with exactly the members of libvirt-dbus's interface file. Members the core
//! implements call it; the others answer libvirt's "this function is not
//! supported by the connection driver: virXxx" (`org.libvirt.Error`).

use std::collections::HashMap;

use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{OwnedFd, OwnedObjectPath, OwnedVariant};

use super::error::{unsupported, Result};
use super::{host, stats, Context};
use crate::core::{flags, host_info, Core, DomainCapsQuery, Error};

/// The connect object.
pub struct ConnectIface {
    pub(super) ctx: Context,
}

#[zbus::interface(name = "org.libvirt.Connect")]
impl ConnectIface {
    #[zbus(property(emits_changed_signal = "const"), name = "Encrypted")]
    async fn encrypted(&self) -> Result<bool> {
        // The D-Bus connection is local; nothing is encrypted on the wire.
        Ok(false)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "Hostname")]
    async fn hostname(&self) -> Result<String> {
        Ok(host::hostname())
    }

    #[zbus(property(emits_changed_signal = "false"), name = "LibVersion")]
    async fn lib_version(&self) -> Result<u64> {
        Ok(host::LIBVIRT_API_VERSION)
    }

    #[zbus(property(emits_changed_signal = "const"), name = "Secure")]
    async fn secure(&self) -> Result<bool> {
        // A local bus connection cannot be snooped on the network.
        Ok(true)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "Version")]
    async fn version(&self) -> Result<u64> {
        Ok(host::hypervisor_version())
    }

    #[zbus(name = "BaselineCPU", out_args("cpu"))]
    async fn baseline_cpu(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml_cpus: Vec<String>,
        flags: u32,
    ) -> Result<String> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.baseline_cpu(&xml_cpus, flags)?)
    }

    #[zbus(name = "CompareCPU", out_args("compareResult"))]
    async fn compare_cpu(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml_desc: String,
        flags: u32,
    ) -> Result<i32> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.compare_cpu(None, None, &xml_desc, flags)?)
    }

    #[zbus(name = "DomainCreateXML", out_args("domain"))]
    async fn domain_create_xml(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml: String,
        flags: u32,
    ) -> Result<OwnedObjectPath> {
        self.ctx.gate.check(conn, &hdr).await?;
        let d = self.ctx.core.create_xml(&xml, flags).await?;
        self.ctx.sync_objects(conn).await;
        Ok(self.ctx.path(&d.uuid))
    }

    #[zbus(name = "DomainCreateXMLWithFiles", out_args("domain"))]
    async fn domain_create_xml_with_files(
        &self,
        _xml: String,
        _files: Vec<OwnedFd>,
        _flags: u32,
    ) -> Result<OwnedObjectPath> {
        Err(unsupported("virDomainCreateXMLWithFiles"))
    }

    #[zbus(name = "DomainDefineXML", out_args("domain"))]
    async fn domain_define_xml(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml: String,
    ) -> Result<OwnedObjectPath> {
        self.ctx.gate.check(conn, &hdr).await?;
        let d = self.ctx.core.define_xml(&xml).await?;
        self.ctx.sync_objects(conn).await;
        Ok(self.ctx.path(&d.uuid))
    }

    #[zbus(name = "DomainLookupByID", out_args("domain"))]
    async fn domain_lookup_by_id(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        id: i32,
    ) -> Result<OwnedObjectPath> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.path(&self.ctx.core.lookup_by_id(id)?.uuid))
    }

    #[zbus(name = "DomainLookupByName", out_args("domain"))]
    async fn domain_lookup_by_name(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        name: String,
    ) -> Result<OwnedObjectPath> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.path(&self.ctx.core.lookup_by_name(&name)?.uuid))
    }

    #[zbus(name = "DomainLookupByUUID", out_args("domain"))]
    async fn domain_lookup_by_uuid(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        uuid: String,
    ) -> Result<OwnedObjectPath> {
        self.ctx.gate.check(conn, &hdr).await?;
        let uuid = Core::parse_uuid(&uuid)?;
        Ok(self.ctx.path(&self.ctx.core.lookup_by_uuid(&uuid)?.uuid))
    }

    /// An empty `xml` is libvirt-dbus's NULL.
    #[zbus(name = "DomainRestore")]
    async fn domain_restore(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        from: String,
        xml: String,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        let xml = Some(xml.as_str()).filter(|x| !x.is_empty());
        Ok(self.ctx.core.restore(&from, xml, flags).await?)
    }

    #[zbus(name = "DomainSaveImageDefineXML")]
    async fn domain_save_image_define_xml(
        &self,
        _file: String,
        _xml: String,
        _flags: u32,
    ) -> Result<()> {
        Err(unsupported("virDomainSaveImageDefineXML"))
    }

    #[zbus(name = "DomainSaveImageGetXMLDesc", out_args("xml"))]
    async fn domain_save_image_get_xml_desc(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        file: String,
        flags: u32,
    ) -> Result<String> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.save_image_xml(&file, flags)?)
    }

    #[zbus(name = "FindStoragePoolSources", out_args("storagePoolSources"))]
    async fn find_storage_pool_sources(
        &self,
        type_: String,
        _src_spec: String,
        flags: u32,
    ) -> Result<String> {
        Ok(crate::storage::find_pool_sources(&type_, flags).await?)
    }

    #[zbus(name = "GetAllDomainStats", out_args("records"))]
    async fn get_all_domain_stats(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        stats: u32,
        flags: u32,
    ) -> Result<Vec<(String, HashMap<String, OwnedVariant>)>> {
        self.ctx.gate.check(conn, &hdr).await?;
        Error::check_flags(
            flags,
            flags::list::ALL | stats::ALL_STATS_FLAGS,
            "virConnectGetAllDomainStats",
        )?;
        let mut out = Vec::new();
        for info in self.ctx.core.list(flags & flags::list::ALL)? {
            let uuid = info.domain.uuid;
            // A domain that goes away meanwhile is left out, as libvirt does.
            let Ok(record) = self.ctx.core.stats_record(&uuid, stats).await else {
                continue;
            };
            out.push((info.domain.name.clone(), stats::to_wire(record)));
        }
        Ok(out)
    }

    #[zbus(name = "GetCapabilities", out_args("capabilities"))]
    async fn get_capabilities(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<String> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.capabilities())
    }

    #[zbus(name = "GetCPUModelNames", out_args("models"))]
    async fn get_cpu_model_names(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        arch: String,
        flags: u32,
    ) -> Result<Vec<String>> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.cpu_model_names(&arch, flags)?)
    }

    #[zbus(name = "GetDomainCapabilities", out_args("domCapabilities"))]
    // The D-Bus signature fixes the argument list.
    #[allow(clippy::too_many_arguments)]
    async fn get_domain_capabilities(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        emulatorbin: String,
        arch: String,
        machine: String,
        virttype: String,
        flags: u32,
    ) -> Result<String> {
        self.ctx.gate.check(conn, &hdr).await?;
        let q = DomainCapsQuery {
            emulatorbin: Some(&emulatorbin),
            arch: Some(&arch),
            machine: Some(&machine),
            virttype: Some(&virttype),
        };
        Ok(self.ctx.core.domain_capabilities(&q, flags)?)
    }

    #[zbus(name = "GetSysinfo", out_args("sysinfo"))]
    async fn get_sysinfo(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<String> {
        self.ctx.gate.check(conn, &hdr).await?;
        Error::check_flags(flags, 0, "virConnectGetSysinfo")?;
        Ok(host_info::sysinfo())
    }

    #[zbus(name = "InterfaceChangeBegin")]
    async fn interface_change_begin(&self, _flags: u32) -> Result<()> {
        Err(unsupported("virInterfaceChangeBegin"))
    }

    #[zbus(name = "InterfaceChangeCommit")]
    async fn interface_change_commit(&self, _flags: u32) -> Result<()> {
        Err(unsupported("virInterfaceChangeCommit"))
    }

    #[zbus(name = "InterfaceChangeRollback")]
    async fn interface_change_rollback(&self, _flags: u32) -> Result<()> {
        Err(unsupported("virInterfaceChangeRollback"))
    }

    #[zbus(name = "InterfaceDefineXML", out_args("interface"))]
    async fn interface_define_xml(&self, _xml: String, _flags: u32) -> Result<OwnedObjectPath> {
        Err(unsupported("virInterfaceDefineXML"))
    }

    #[zbus(name = "InterfaceLookupByMAC", out_args("interface"))]
    async fn interface_lookup_by_mac(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        mac: String,
    ) -> Result<OwnedObjectPath> {
        super::interface::lookup(&self.ctx, conn, &hdr, None, Some(&mac)).await
    }

    #[zbus(name = "InterfaceLookupByName", out_args("interface"))]
    async fn interface_lookup_by_name(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        name: String,
    ) -> Result<OwnedObjectPath> {
        super::interface::lookup(&self.ctx, conn, &hdr, Some(&name), None).await
    }

    #[zbus(name = "ListDomains", out_args("domains"))]
    async fn list_domains(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<Vec<OwnedObjectPath>> {
        self.ctx.gate.check(conn, &hdr).await?;
        let list = self.ctx.core.list(flags)?;
        Ok(list.iter().map(|i| self.ctx.path(&i.domain.uuid)).collect())
    }

    #[zbus(name = "ListInterfaces", out_args("interfaces"))]
    async fn list_interfaces(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<Vec<OwnedObjectPath>> {
        super::interface::list(&self.ctx, conn, &hdr, flags).await
    }

    #[zbus(name = "ListNetworks", out_args("networks"))]
    async fn list_networks(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        flags: u32,
    ) -> Result<Vec<OwnedObjectPath>> {
        super::network::list(&self.ctx, conn, flags).await
    }

    #[zbus(name = "ListNodeDevices", out_args("devs"))]
    async fn list_node_devices(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<Vec<OwnedObjectPath>> {
        super::nodedev::list(&self.ctx, conn, &hdr, flags).await
    }

    #[zbus(name = "ListNWFilters", out_args("nwfilters"))]
    async fn list_nw_filters(&self, _flags: u32) -> Result<Vec<OwnedObjectPath>> {
        Ok(Vec::new())
    }

    #[zbus(name = "ListSecrets", out_args("secrets"))]
    async fn list_secrets(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<Vec<OwnedObjectPath>> {
        super::secret::list(&self.ctx, conn, &hdr, flags).await
    }

    #[zbus(name = "ListStoragePools", out_args("storagePools"))]
    async fn list_storage_pools(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        flags: u32,
    ) -> Result<Vec<OwnedObjectPath>> {
        super::storage_pool::list_pools(&self.ctx, conn, flags).await
    }

    #[zbus(name = "NetworkCreateXML", out_args("network"))]
    async fn network_create_xml(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml: String,
    ) -> Result<OwnedObjectPath> {
        super::network::define(&self.ctx, conn, &hdr, xml, true).await
    }

    #[zbus(name = "NetworkDefineXML", out_args("network"))]
    async fn network_define_xml(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml: String,
    ) -> Result<OwnedObjectPath> {
        super::network::define(&self.ctx, conn, &hdr, xml, false).await
    }

    #[zbus(name = "NetworkLookupByName", out_args("network"))]
    async fn network_lookup_by_name(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> Result<OwnedObjectPath> {
        super::network::lookup(&self.ctx, conn, Some(&name), None).await
    }

    #[zbus(name = "NetworkLookupByUUID", out_args("network"))]
    async fn network_lookup_by_uuid(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        uuid: String,
    ) -> Result<OwnedObjectPath> {
        super::network::lookup(&self.ctx, conn, None, Some(&uuid)).await
    }

    #[zbus(name = "NodeDeviceCreateXML", out_args("dev"))]
    async fn node_device_create_xml(&self, _xml: String, _flags: u32) -> Result<OwnedObjectPath> {
        Err(unsupported("virNodeDeviceCreateXML"))
    }

    #[zbus(name = "NodeDeviceLookupByName", out_args("dev"))]
    async fn node_device_lookup_by_name(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        name: String,
    ) -> Result<OwnedObjectPath> {
        super::nodedev::lookup(&self.ctx, conn, &hdr, &name).await
    }

    #[zbus(name = "NodeDeviceLookupSCSIHostByWWN", out_args("dev"))]
    async fn node_device_lookup_scsi_host_by_wwn(
        &self,
        _wwnn: String,
        _wwpn: String,
        _flags: u32,
    ) -> Result<OwnedObjectPath> {
        Err(unsupported("virNodeDeviceLookupSCSIHostByWWN"))
    }

    #[zbus(name = "NWFilterDefineXML", out_args("nwfilter"))]
    async fn nw_filter_define_xml(&self, _xml: String) -> Result<OwnedObjectPath> {
        Err(unsupported("virNWFilterDefineXML"))
    }

    #[zbus(name = "NWFilterLookupByName", out_args("nwfilter"))]
    async fn nw_filter_lookup_by_name(&self, _name: String) -> Result<OwnedObjectPath> {
        Err(unsupported("virNWFilterLookupByName"))
    }

    #[zbus(name = "NWFilterLookupByUUID", out_args("nwfilter"))]
    async fn nw_filter_lookup_by_uuid(&self, _uuid: String) -> Result<OwnedObjectPath> {
        Err(unsupported("virNWFilterLookupByUUIDString"))
    }

    #[zbus(name = "NodeGetCPUMap", out_args("res"))]
    async fn node_get_cpu_map(&self, flags: u32) -> Result<Vec<bool>> {
        Error::check_flags(flags, 0, "virNodeGetCPUMap")?;
        Ok(host_info::cpu_map()?)
    }

    #[zbus(name = "NodeGetCPUStats", out_args("cpuStats"))]
    async fn node_get_cpu_stats(&self, cpu_num: i32, flags: u32) -> Result<HashMap<String, u64>> {
        Error::check_flags(flags, 0, "virNodeGetCPUStats")?;
        Ok(host_info::cpu_stats(cpu_num)?
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect())
    }

    #[zbus(name = "NodeGetFreeMemory", out_args("freemem"))]
    async fn node_get_free_memory(&self) -> Result<u64> {
        let free_kib = host_info::memory_stats(host_info::ALL)?
            .into_iter()
            .find(|(k, _)| *k == "free")
            .map_or(0, |(_, v)| v);
        Ok(free_kib * 1024)
    }

    #[zbus(name = "NodeGetMemoryParameters", out_args("memoryParameters"))]
    async fn node_get_memory_parameters(
        &self,
        _flags: u32,
    ) -> Result<HashMap<String, OwnedVariant>> {
        Err(unsupported("virNodeGetMemoryParameters"))
    }

    #[zbus(name = "NodeGetMemoryStats", out_args("stats"))]
    async fn node_get_memory_stats(
        &self,
        cell_num: i32,
        flags: u32,
    ) -> Result<HashMap<String, u64>> {
        Error::check_flags(flags, 0, "virNodeGetMemoryStats")?;
        Ok(host_info::memory_stats(cell_num)?
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect())
    }

    #[zbus(name = "NodeGetSecurityModel", out_args("securityModel"))]
    async fn node_get_security_model(&self) -> Result<((String, String),)> {
        // No security driver (SELinux/AppArmor labelling) is used.
        Ok((("none".to_string(), "0".to_string()),))
    }

    #[zbus(name = "NodeSetMemoryParameters")]
    async fn node_set_memory_parameters(
        &self,
        _params: HashMap<String, OwnedVariant>,
        _flags: u32,
    ) -> Result<()> {
        Err(unsupported("virNodeSetMemoryParameters"))
    }

    #[zbus(name = "SecretDefineXML", out_args("secret"))]
    async fn secret_define_xml(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml: String,
        flags: u32,
    ) -> Result<OwnedObjectPath> {
        super::secret::define(&self.ctx, conn, &hdr, &xml, flags).await
    }

    #[zbus(name = "SecretLookupByUUID", out_args("secret"))]
    async fn secret_lookup_by_uuid(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        uuid: String,
    ) -> Result<OwnedObjectPath> {
        super::secret::lookup(&self.ctx, conn, &hdr, Some(&uuid), None).await
    }

    #[zbus(name = "SecretLookupByUsage", out_args("secret"))]
    async fn secret_lookup_by_usage(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        usage_type: i32,
        usage_id: String,
    ) -> Result<OwnedObjectPath> {
        super::secret::lookup(&self.ctx, conn, &hdr, None, Some((usage_type, &usage_id))).await
    }

    #[zbus(name = "StoragePoolCreateXML", out_args("storagePool"))]
    async fn storage_pool_create_xml(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml: String,
        flags: u32,
    ) -> Result<OwnedObjectPath> {
        super::storage_pool::define_pool(&self.ctx, conn, &hdr, &xml, flags, true).await
    }

    #[zbus(name = "StoragePoolDefineXML", out_args("storagePool"))]
    async fn storage_pool_define_xml(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml: String,
        flags: u32,
    ) -> Result<OwnedObjectPath> {
        super::storage_pool::define_pool(&self.ctx, conn, &hdr, &xml, flags, false).await
    }

    #[zbus(name = "StoragePoolLookupByName", out_args("storagePool"))]
    async fn storage_pool_lookup_by_name(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> Result<OwnedObjectPath> {
        super::storage_pool::lookup_pool(&self.ctx, conn, Some(&name), None).await
    }

    #[zbus(name = "StoragePoolLookupByUUID", out_args("storagePool"))]
    async fn storage_pool_lookup_by_uuid(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        uuid: String,
    ) -> Result<OwnedObjectPath> {
        super::storage_pool::lookup_pool(&self.ctx, conn, None, Some(&uuid)).await
    }

    #[zbus(name = "StorageVolLookupByKey", out_args("storageVol"))]
    async fn storage_vol_lookup_by_key(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        key: String,
    ) -> Result<OwnedObjectPath> {
        super::storage_pool::lookup_vol(&self.ctx, conn, Some(&key), None).await
    }

    #[zbus(name = "StorageVolLookupByPath", out_args("storageVol"))]
    async fn storage_vol_lookup_by_path(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        path: String,
    ) -> Result<OwnedObjectPath> {
        super::storage_pool::lookup_vol(&self.ctx, conn, None, Some(&path)).await
    }

    #[zbus(signal, name = "DomainEvent")]
    pub async fn domain_event(
        emitter: &SignalEmitter<'_>,
        domain: OwnedObjectPath,
        event: i32,
        detail: i32,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "NetworkEvent")]
    pub async fn network_event(
        emitter: &SignalEmitter<'_>,
        network: OwnedObjectPath,
        event: i32,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "NodeDeviceEvent")]
    pub async fn node_device_event(
        emitter: &SignalEmitter<'_>,
        dev: OwnedObjectPath,
        event: i32,
        detail: i32,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "SecretEvent")]
    pub async fn secret_event(
        emitter: &SignalEmitter<'_>,
        secret: OwnedObjectPath,
        event: i32,
        detail: i32,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "StoragePoolEvent")]
    pub async fn storage_pool_event(
        emitter: &SignalEmitter<'_>,
        storage_pool: OwnedObjectPath,
        event: i32,
        detail: i32,
    ) -> zbus::Result<()>;
}

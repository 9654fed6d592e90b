//! `org.libvirt.Domain`, one object per domain at
//! `<connect path>/domain/_<uuid with '_'>`, with exactly the members of
//! libvirt-dbus's interface file. Members the core implements call it; the
//! others answer libvirt's "this function is not supported by the connection
//! driver: virXxx" (`org.libvirt.Error`).

use std::collections::HashMap;

use uuid::Uuid;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{OwnedFd, OwnedObjectPath, OwnedVariant};

use super::error::{unsupported, LibvirtError, Result};
use super::{snapshot, stats, Context};
use crate::core::tune::{self, Group};
use crate::core::{affect, flags, DomainInfo, Error};

/// One domain's object.
pub struct DomainIface {
    pub(super) ctx: Context,
    pub(super) uuid: Uuid,
}

impl DomainIface {
    fn info(&self) -> Result<DomainInfo> {
        self.ctx.core.info(&self.uuid).map_err(LibvirtError::from)
    }

    /// libvirt's "domain is not running" for calls about a live domain.
    /// A `Get…Parameters` of the tuning `group` (flags: `VIR_DOMAIN_AFFECT_*`, and
    /// `VIR_TYPED_PARAM_STRING_OKAY` which changes nothing here).
    async fn get_tuning(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        flags: u32,
        group: Group,
        api: &str,
    ) -> Result<HashMap<String, OwnedVariant>> {
        self.ctx.gate.check(conn, hdr).await?;
        let t = self.ctx.core.tuning(&self.uuid, flags & !(1 << 2), api)?;
        Ok(super::tune::to_wire(group, &t)?)
    }

    /// The served object path of this domain's snapshot `name`.
    async fn snapshot_object(&self, conn: &zbus::Connection, name: String) -> OwnedObjectPath {
        snapshot::paths(&self.ctx, conn, &self.uuid, &[name])
            .await
            .remove(0)
    }

    fn require_active(&self) -> Result<()> {
        if !self.info()?.state.is_active() {
            return Err(Error::OperationInvalid("domain is not running".into()).into());
        }
        Ok(())
    }
}

/// libvirt-dbus passes "" for a NULL string argument.
fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[zbus::interface(name = "org.libvirt.Domain")]
impl DomainIface {
    #[zbus(property(emits_changed_signal = "false"), name = "Active")]
    async fn active(&self) -> Result<bool> {
        Ok(self.info()?.state.is_active())
    }

    #[zbus(property(emits_changed_signal = "false"), name = "Autostart")]
    async fn autostart(&self) -> Result<bool> {
        self.ctx
            .core
            .autostart(&self.uuid)
            .map_err(LibvirtError::from)
    }

    #[zbus(property, name = "Autostart")]
    async fn set_autostart(
        &self,
        value: bool,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> Result<()> {
        // Writing a property changes state: the same caller check as methods.
        let Some(hdr) = hdr else {
            return Err(LibvirtError::Error("no caller".into()));
        };
        self.ctx.gate.check(conn, &hdr).await?;
        self.ctx
            .core
            .set_autostart(&self.uuid, value)
            .await
            .map_err(LibvirtError::from)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "Id")]
    async fn id(&self) -> Result<u32> {
        // libvirt-dbus shows 0 for an inactive domain (id -1).
        Ok(u32::try_from(self.info()?.domain.id).unwrap_or(0))
    }

    #[zbus(property(emits_changed_signal = "false"), name = "Name")]
    async fn name(&self) -> Result<String> {
        Ok(self.info()?.domain.name)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "OSType")]
    async fn os_type(&self) -> Result<String> {
        Ok(self.info()?.os_type)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "Persistent")]
    async fn persistent(&self) -> Result<bool> {
        Ok(self.info()?.persistent)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "SchedulerType")]
    async fn scheduler_type(&self) -> Result<(String, i32)> {
        // As the libvirt protocol side answers: the POSIX scheduler and its tunables.
        self.info()?;
        Ok(("posix".to_string(), tune::SCHEDULER_NPARAMS))
    }

    #[zbus(property(emits_changed_signal = "false"), name = "Updated")]
    async fn updated(&self) -> Result<bool> {
        Ok(self.info()?.updated)
    }

    #[zbus(property(emits_changed_signal = "const"), name = "UUID")]
    async fn uuid(&self) -> Result<String> {
        Ok(self.uuid.hyphenated().to_string())
    }

    #[zbus(name = "AbortJob")]
    async fn abort_job(&self) -> Result<()> {
        Err(unsupported("virDomainAbortJob"))
    }

    #[zbus(name = "AddIOThread")]
    async fn add_io_thread(&self, _iothread_id: u32, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainAddIOThread"))
    }

    #[zbus(name = "AttachDevice")]
    async fn attach_device(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml: String,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.attach_device(&self.uuid, &xml, flags).await?)
    }

    #[zbus(name = "BlockCommit")]
    async fn block_commit(
        &self,
        _disk: String,
        _base: String,
        _top: String,
        _bandwidth: u64,
        _flags: u32,
    ) -> Result<()> {
        Err(unsupported("virDomainBlockCommit"))
    }

    #[zbus(name = "BlockCopy")]
    async fn block_copy(
        &self,
        _disk: String,
        _destxml: String,
        _params: HashMap<String, OwnedVariant>,
        _flags: u32,
    ) -> Result<()> {
        Err(unsupported("virDomainBlockCopy"))
    }

    #[zbus(name = "BlockJobAbort")]
    async fn block_job_abort(&self, _disk: String, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainBlockJobAbort"))
    }

    #[zbus(name = "BlockPeek", out_args("buffer"))]
    async fn block_peek(
        &self,
        _disk: String,
        _offset: u64,
        _size: u64,
        _flags: u32,
    ) -> Result<Vec<u8>> {
        Err(unsupported("virDomainBlockPeek"))
    }

    #[zbus(name = "BlockPull")]
    async fn block_pull(&self, _disk: String, _bandwidth: u64, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainBlockPull"))
    }

    #[zbus(name = "BlockRebase")]
    async fn block_rebase(
        &self,
        _disk: String,
        _base: String,
        _bandwidth: u64,
        _flags: u32,
    ) -> Result<()> {
        Err(unsupported("virDomainBlockRebase"))
    }

    #[zbus(name = "BlockResize")]
    async fn block_resize(&self, _disk: String, _size: u64, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainBlockResize"))
    }

    #[zbus(name = "BlockJobSetSpeed")]
    async fn block_job_set_speed(&self, _disk: String, _bandwidth: u64, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainBlockJobSetSpeed"))
    }

    #[zbus(name = "CoreDump")]
    async fn core_dump(&self, _to: String, _dumpformat: u32, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainCoreDumpWithFormat"))
    }

    #[zbus(name = "Create")]
    async fn create(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.start(&self.uuid, flags).await?)
    }

    #[zbus(name = "CreateWithFiles")]
    async fn create_with_files(&self, _files: Vec<OwnedFd>, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainCreateWithFiles"))
    }

    #[zbus(name = "DelIOThread")]
    async fn del_io_thread(&self, _iothread_id: u32, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainDelIOThread"))
    }

    #[zbus(name = "Destroy")]
    async fn destroy(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.destroy(&self.uuid, flags).await?)
    }

    #[zbus(name = "DetachDevice")]
    async fn detach_device(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml: String,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.detach_device(&self.uuid, &xml, flags).await?)
    }

    /// Through the guest agent ([`crate::core::Core::agent_fs_freeze`]).
    #[zbus(name = "FSFreeze", out_args("frozenFilesystems"))]
    async fn fs_freeze(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        mountpoints: Vec<String>,
        flags: u32,
    ) -> Result<u32> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self
            .ctx
            .core
            .agent_fs_freeze(&self.uuid, &mountpoints, flags)
            .await?)
    }

    /// Through the guest agent ([`crate::core::Core::agent_fs_thaw`]).
    #[zbus(name = "FSThaw", out_args("thawedFilesystems"))]
    async fn fs_thaw(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        _mountpoints: Vec<String>,
        flags: u32,
    ) -> Result<u32> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.agent_fs_thaw(&self.uuid, flags).await?)
    }

    #[zbus(name = "FSTrim")]
    async fn fs_trim(&self, _mountpoint: String, _minimum: u64, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainFSTrim"))
    }

    #[zbus(name = "GetBlockIOParameters", out_args("BlkioParameters"))]
    async fn get_block_io_parameters(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<HashMap<String, OwnedVariant>> {
        self.get_tuning(
            conn,
            &hdr,
            flags,
            Group::Blkio,
            "virDomainGetBlkioParameters",
        )
        .await
    }

    #[zbus(name = "GetBlockIOTune", out_args("blockIOTune"))]
    async fn get_block_io_tune(
        &self,
        _disk: String,
        _flags: u32,
    ) -> Result<HashMap<String, OwnedVariant>> {
        Err(unsupported("virDomainGetBlockIoTune"))
    }

    #[zbus(name = "GetBlockJobInfo", out_args("blockJobInfo"))]
    async fn get_block_job_info(
        &self,
        _disk: String,
        _flags: u32,
    ) -> Result<((i32, u64, u64, u64),)> {
        Err(unsupported("virDomainGetBlockJobInfo"))
    }

    #[zbus(name = "GetControlInfo", out_args("controlInfo"))]
    async fn get_control_info(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<((u32, u32, u64),)> {
        self.ctx.gate.check(conn, &hdr).await?;
        Error::check_flags(flags, 0, "virDomainGetControlInfo")?;
        // VIR_DOMAIN_CONTROL_OK = 0, VIR_DOMAIN_CONTROL_ERROR = 3 (details 0 = none).
        let ok = self.ctx.core.control_ok(&self.uuid).await?;
        Ok(((if ok { 0 } else { 3 }, 0, 0),))
    }

    #[zbus(name = "GetDiskErrors", out_args("diskErrors"))]
    async fn get_disk_errors(&self, _flags: u32) -> Result<Vec<(String, i32)>> {
        Err(unsupported("virDomainGetDiskErrors"))
    }

    #[zbus(name = "GetEmulatorPinInfo", out_args("cpumap"))]
    async fn get_emulator_pin_info(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<Vec<bool>> {
        self.ctx.gate.check(conn, &hdr).await?;
        let core = &self.ctx.core;
        let live = core.affects_live(&self.uuid, flags, "virDomainGetEmulatorPinInfo")?;
        Ok(core.emulator_pin_info(&self.uuid, live)?)
    }

    /// Through the guest agent ([`crate::core::Core::agent_fsinfo`]).
    #[zbus(name = "GetFSInfo", out_args("fsInfo"))]
    async fn get_fs_info(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<Vec<(String, String, String, Vec<String>)>> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self
            .ctx
            .core
            .agent_fsinfo(&self.uuid, flags)
            .await?
            .into_iter()
            .map(|f| (f.mountpoint, f.name, f.fstype, f.dev_aliases))
            .collect())
    }

    /// Through the guest agent ([`crate::core::Core::agent_guest_vcpus`]).
    #[zbus(name = "GetGuestVcpus", out_args("vcpus"))]
    async fn get_guest_vcpus(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<HashMap<String, OwnedVariant>> {
        self.ctx.gate.check(conn, &hdr).await?;
        let params = self.ctx.core.agent_guest_vcpus(&self.uuid, flags).await?;
        Ok(super::stats::to_wire(params))
    }

    #[zbus(name = "GetHostname", out_args("hostname"))]
    async fn get_hostname(&self, _flags: u32) -> Result<String> {
        Err(unsupported("virDomainGetHostname"))
    }

    #[zbus(name = "GetInterfaceParameters", out_args("interfaceParameters"))]
    async fn get_interface_parameters(
        &self,
        _device: String,
        _flags: u32,
    ) -> Result<HashMap<String, OwnedVariant>> {
        Err(unsupported("virDomainGetInterfaceParameters"))
    }

    #[zbus(name = "GetIOThreadInfo", out_args("ioThreadInfo"))]
    async fn get_io_thread_info(&self, _flags: u32) -> Result<Vec<(u32, Vec<bool>)>> {
        Err(unsupported("virDomainGetIOThreadInfo"))
    }

    /// No job ever runs (no migration, save or dump): VIR_DOMAIN_JOB_NONE, as the
    /// libvirt protocol side answers.
    #[zbus(name = "GetJobInfo", out_args("jobInfo"))]
    async fn get_job_info(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<((i32, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64),)> {
        self.ctx.gate.check(conn, &hdr).await?;
        self.require_active()?;
        Ok(((0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),))
    }

    #[zbus(name = "GetJobStats", out_args("stats"))]
    async fn get_job_stats(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<((i32, HashMap<String, OwnedVariant>),)> {
        self.ctx.gate.check(conn, &hdr).await?;
        // VIR_DOMAIN_JOB_STATS_COMPLETED | _KEEP_COMPLETED.
        Error::check_flags(flags, 1 | 2, "virDomainGetJobStats")?;
        self.require_active()?;
        Ok(((0, HashMap::new()),))
    }

    #[zbus(name = "GetMemoryParameters", out_args("memoryParameters"))]
    async fn get_memory_parameters(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<HashMap<String, OwnedVariant>> {
        self.get_tuning(
            conn,
            &hdr,
            flags,
            Group::Memory,
            "virDomainGetMemoryParameters",
        )
        .await
    }

    #[zbus(name = "GetMetadata", out_args("metadata"))]
    async fn get_metadata(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        type_: i32,
        uri: String,
        flags: u32,
    ) -> Result<String> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self
            .ctx
            .core
            .metadata(&self.uuid, type_, non_empty(&uri), flags)?)
    }

    /// `<numatune>` is refused by translation and domains have no cpuset cgroup:
    /// libvirt's default mode (strict, 0) and no nodeset, as the RPC answers.
    #[zbus(name = "GetNumaParameters", out_args("numaParameters"))]
    async fn get_numa_parameters(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<HashMap<String, OwnedVariant>> {
        self.ctx.gate.check(conn, &hdr).await?;
        // VIR_TYPED_PARAM_STRING_OKAY (libvirt-dbus always asks for strings).
        self.ctx
            .core
            .affects_live(&self.uuid, flags & !(1 << 2), "virDomainGetNumaParameters")?;
        let nodeset = OwnedVariant::try_from(zbus::zvariant::Variant::from(""))
            .expect("a string variant has no file descriptors");
        Ok(super::typed::to_wire(HashMap::from([
            ("numa_mode".to_string(), OwnedVariant::from(0i32)),
            ("numa_nodeset".to_string(), nodeset),
        ])))
    }

    #[zbus(name = "GetPerfEvents", out_args("perfEvents"))]
    async fn get_perf_events(&self, _flags: u32) -> Result<HashMap<String, OwnedVariant>> {
        Err(unsupported("virDomainGetPerfEvents"))
    }

    #[zbus(name = "GetSchedulerParameters", out_args("SchedulerParameters"))]
    async fn get_scheduler_parameters(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<HashMap<String, OwnedVariant>> {
        let api = "virDomainGetSchedulerParametersFlags";
        self.get_tuning(conn, &hdr, flags, Group::Scheduler, api)
            .await
    }

    #[zbus(name = "GetSecurityLabelList", out_args("securityLabels"))]
    async fn get_security_label_list(&self) -> Result<Vec<(String, bool)>> {
        Err(unsupported("virDomainGetSecurityLabelList"))
    }

    #[zbus(name = "GetState", out_args("state"))]
    async fn get_state(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<((i32, i32),)> {
        self.ctx.gate.check(conn, &hdr).await?;
        Error::check_flags(flags, 0, "virDomainGetState")?;
        let s = self.ctx.core.state(&self.uuid)?;
        Ok(((s.state as i32, s.reason),))
    }

    #[zbus(name = "GetStats", out_args("records"))]
    async fn get_stats(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        stats: u32,
        flags: u32,
    ) -> Result<HashMap<String, OwnedVariant>> {
        self.ctx.gate.check(conn, &hdr).await?;
        Error::check_flags(
            flags,
            flags::list::ALL | stats::ALL_STATS_FLAGS,
            "virDomainListGetStats",
        )?;
        Ok(stats::to_wire(
            self.ctx.core.stats_record(&self.uuid, stats).await?,
        ))
    }

    #[zbus(name = "GetTime", out_args("time"))]
    async fn get_time(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<((u64, u32),)> {
        self.ctx.gate.check(conn, &hdr).await?;
        let (secs, nsecs) = self.ctx.core.agent_get_time(&self.uuid, flags).await?;
        // libvirt-dbus hands the seconds over as `t`.
        Ok(((secs.max(0) as u64, nsecs),))
    }

    #[zbus(name = "GetVcpuPinInfo", out_args("vcpuPinInfo"))]
    async fn get_vcpu_pin_info(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<Vec<Vec<bool>>> {
        self.ctx.gate.check(conn, &hdr).await?;
        let core = &self.ctx.core;
        let live = core.affects_live(&self.uuid, flags, "virDomainGetVcpuPinInfo")?;
        Ok(core.vcpu_pin_info(&self.uuid, live).await?)
    }

    #[zbus(name = "GetVcpus", out_args("vcpus"))]
    async fn get_vcpus(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<u32> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.vcpus(&self.uuid, flags)?)
    }

    #[zbus(name = "GetXMLDesc", out_args("xml"))]
    async fn get_xml_desc(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<String> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.xml_desc(&self.uuid, flags)?)
    }

    #[zbus(name = "HasManagedSaveImage", out_args("managedSaveImage"))]
    async fn has_managed_save_image(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<bool> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.has_managed_save_image(&self.uuid, flags)?)
    }

    #[zbus(name = "InjectNMI")]
    async fn inject_nmi(&self, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainInjectNMI"))
    }

    /// Sources `lease`, `agent` and `arp`, from
    /// [`crate::core::Core::domain_interface_addresses`].
    #[zbus(name = "InterfaceAddresses", out_args("ifaces"))]
    async fn interface_addresses(
        &self,
        source: u32,
        flags: u32,
    ) -> Result<Vec<(String, String, Vec<(i32, String, u32)>)>> {
        Ok(self
            .ctx
            .core
            .domain_interface_addresses(&self.uuid, source, flags)
            .await?
            .into_iter()
            .map(|i| {
                let addrs = i
                    .addrs
                    .iter()
                    .map(|(ip, prefix)| (i32::from(ip.is_ipv6()), ip.to_string(), *prefix))
                    .collect();
                (i.name, i.mac, addrs)
            })
            .collect())
    }

    #[zbus(name = "ListDomainSnapshots", out_args("domainSnapshots"))]
    async fn list_domain_snapshots(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<Vec<OwnedObjectPath>> {
        self.ctx.gate.check(conn, &hdr).await?;
        let names = self.ctx.core.snapshot_names(&self.uuid, flags)?;
        Ok(snapshot::paths(&self.ctx, conn, &self.uuid, &names).await)
    }

    #[zbus(name = "ManagedSave")]
    async fn managed_save(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.managed_save(&self.uuid, flags).await?)
    }

    #[zbus(name = "ManagedSaveRemove")]
    async fn managed_save_remove(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.managed_save_remove(&self.uuid, flags).await?)
    }

    #[zbus(name = "MemoryPeek", out_args("buffer"))]
    async fn memory_peek(&self, _offset: u64, _size: u64, _flags: u32) -> Result<Vec<u8>> {
        Err(unsupported("virDomainMemoryPeek"))
    }

    #[zbus(name = "MemoryStats", out_args("stats"))]
    async fn memory_stats(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<HashMap<i32, u64>> {
        self.ctx.gate.check(conn, &hdr).await?;
        Error::check_flags(flags, 0, "virDomainMemoryStats")?;
        Ok(self
            .ctx
            .core
            .memory_stats(&self.uuid)
            .await?
            .into_iter()
            .collect())
    }

    #[zbus(name = "MigrateGetCompressionCache", out_args("cacheSize"))]
    async fn migrate_get_compression_cache(&self, _flags: u32) -> Result<u64> {
        Err(unsupported("virDomainMigrateGetCompressionCache"))
    }

    #[zbus(name = "MigrateGetMaxSpeed", out_args("bandwidth"))]
    async fn migrate_get_max_speed(&self, _flags: u32) -> Result<u64> {
        Err(unsupported("virDomainMigrateGetMaxSpeed"))
    }

    #[zbus(name = "MigrateSetCompressionCache")]
    async fn migrate_set_compression_cache(&self, _cache_size: u64, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainMigrateSetCompressionCache"))
    }

    #[zbus(name = "MigrateSetMaxDowntime")]
    async fn migrate_set_max_downtime(&self, _downtime: u64, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainMigrateSetMaxDowntime"))
    }

    #[zbus(name = "MigrateSetMaxSpeed")]
    async fn migrate_set_max_speed(&self, _bandwidth: u64, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainMigrateSetMaxSpeed"))
    }

    #[zbus(name = "MigrateStartPostCopy")]
    async fn migrate_start_post_copy(&self, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainMigrateStartPostCopy"))
    }

    #[zbus(name = "MigrateToURI3")]
    async fn migrate_to_uri3(
        &self,
        _dconuri: String,
        _params: HashMap<String, OwnedVariant>,
        _flags: u32,
    ) -> Result<()> {
        Err(unsupported("virDomainMigrateToURI3"))
    }

    /// A socket connected to the VNC server (virt-manager's local console path).
    #[zbus(name = "OpenGraphicsFD", out_args("fd"))]
    async fn open_graphics_fd(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        idx: u32,
        flags: u32,
    ) -> Result<OwnedFd> {
        self.ctx.gate.check(conn, &hdr).await?;
        let fd = self
            .ctx
            .core
            .open_graphics_fd(&self.uuid, idx, flags)
            .await?;
        Ok(OwnedFd::from(fd))
    }

    #[zbus(name = "PinEmulator")]
    async fn pin_emulator(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        cpumap: Vec<bool>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        let core = &self.ctx.core;
        if !core.affects_live(&self.uuid, flags, "virDomainPinEmulator")? {
            return Err(affect::config_pinning().into());
        }
        Ok(core.pin_emulator(&self.uuid, &cpumap).await?)
    }

    #[zbus(name = "PinIOThread")]
    async fn pin_io_thread(
        &self,
        _iothread_id: u32,
        _cpumap: Vec<bool>,
        _flags: u32,
    ) -> Result<()> {
        Err(unsupported("virDomainPinIOThread"))
    }

    #[zbus(name = "PinVcpu")]
    async fn pin_vcpu(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        vcpu: u32,
        cpumap: Vec<bool>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        let core = &self.ctx.core;
        if !core.affects_live(&self.uuid, flags, "virDomainPinVcpuFlags")? {
            return Err(affect::config_pinning().into());
        }
        Ok(core.pin_vcpu(&self.uuid, vcpu, &cpumap).await?)
    }

    #[zbus(name = "PMWakeup")]
    async fn pm_wakeup(&self, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainPMWakeup"))
    }

    #[zbus(name = "Reboot")]
    async fn reboot(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.reboot(&self.uuid, flags).await?)
    }

    #[zbus(name = "Rename")]
    async fn rename(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        name: String,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.rename(&self.uuid, &name, flags).await?)
    }

    #[zbus(name = "Reset")]
    async fn reset(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.reset(&self.uuid, flags).await?)
    }

    #[zbus(name = "Resume")]
    async fn resume(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.resume(&self.uuid).await?)
    }

    /// An empty `xml` is libvirt-dbus's NULL.
    #[zbus(name = "Save")]
    async fn save(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        to: String,
        xml: String,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        let xml = Some(xml.as_str()).filter(|x| !x.is_empty());
        Ok(self.ctx.core.save(&self.uuid, &to, xml, flags).await?)
    }

    #[zbus(name = "SendKey")]
    async fn send_key(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        codeset: u32,
        holdtime: u32,
        keycodes: Vec<u32>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self
            .ctx
            .core
            .send_key(&self.uuid, codeset, holdtime, &keycodes, flags)
            .await?)
    }

    #[zbus(name = "SendProcessSignal")]
    async fn send_process_signal(&self, _pid_value: i64, _sig_num: u32, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainSendProcessSignal"))
    }

    #[zbus(name = "SetBlockIOParameters")]
    async fn set_block_io_parameters(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        params: HashMap<String, OwnedVariant>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        let t = tune::tuning_from(Group::Blkio, &super::tune::given(&params))?;
        Ok(self
            .ctx
            .core
            .set_tuning(&self.uuid, flags, "virDomainSetBlkioParameters", &t)
            .await?)
    }

    #[zbus(name = "SetBlockIOTune")]
    async fn set_block_io_tune(
        &self,
        _disk: String,
        _params: HashMap<String, OwnedVariant>,
        _flags: u32,
    ) -> Result<()> {
        Err(unsupported("virDomainSetBlockIoTune"))
    }

    /// Through the guest agent ([`crate::core::Core::agent_set_guest_vcpus`]); the map
    /// is libvirt-dbus's one boolean per vCPU.
    #[zbus(name = "SetGuestVcpus")]
    async fn set_guest_vcpus(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        vcpumap: Vec<bool>,
        state: i32,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        let list: Vec<String> = vcpumap
            .iter()
            .enumerate()
            .filter(|(_, on)| **on)
            .map(|(i, _)| i.to_string())
            .collect();
        Ok(self
            .ctx
            .core
            .agent_set_guest_vcpus(&self.uuid, &list.join(","), state, flags)
            .await?)
    }

    #[zbus(name = "SetInterfaceParameters")]
    async fn set_interface_parameters(
        &self,
        _device: String,
        _params: HashMap<String, OwnedVariant>,
        _flags: u32,
    ) -> Result<()> {
        Err(unsupported("virDomainSetInterfaceParameters"))
    }

    #[zbus(name = "SetMemory")]
    async fn set_memory(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        memory: u64,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.set_memory(&self.uuid, memory, flags).await?)
    }

    #[zbus(name = "SetMemoryParameters")]
    async fn set_memory_parameters(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        params: HashMap<String, OwnedVariant>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        let t = tune::tuning_from(Group::Memory, &super::tune::given(&params))?;
        Ok(self
            .ctx
            .core
            .set_tuning(&self.uuid, flags, "virDomainSetMemoryParameters", &t)
            .await?)
    }

    #[zbus(name = "SetMemoryStatsPeriod")]
    async fn set_memory_stats_period(&self, _period: i32, _flags: u32) -> Result<()> {
        Err(unsupported("virDomainSetMemoryStatsPeriod"))
    }

    #[zbus(name = "SetMetadata")]
    // The D-Bus signature fixes the argument list.
    #[allow(clippy::too_many_arguments)]
    async fn set_metadata(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        type_: i32,
        metadata: String,
        key: String,
        uri: String,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self
            .ctx
            .core
            .set_metadata(
                &self.uuid,
                type_,
                non_empty(&metadata),
                non_empty(&key),
                non_empty(&uri),
                flags,
            )
            .await?)
    }

    #[zbus(name = "SetNumaParameters")]
    async fn set_numa_parameters(
        &self,
        _params: HashMap<String, OwnedVariant>,
        _flags: u32,
    ) -> Result<()> {
        Err(unsupported("virDomainSetNumaParameters"))
    }

    #[zbus(name = "SetPerfEvents")]
    async fn set_perf_events(
        &self,
        _params: HashMap<String, OwnedVariant>,
        _flags: u32,
    ) -> Result<()> {
        Err(unsupported("virDomainSetPerfEvents"))
    }

    #[zbus(name = "SetSchedulerParameters")]
    async fn set_scheduler_parameters(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        params: HashMap<String, OwnedVariant>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        let t = tune::tuning_from(Group::Scheduler, &super::tune::given(&params))?;
        Ok(self
            .ctx
            .core
            .set_tuning(
                &self.uuid,
                flags,
                "virDomainSetSchedulerParametersFlags",
                &t,
            )
            .await?)
    }

    /// Through the guest agent ([`crate::core::Core::agent_set_user_password`]).
    #[zbus(name = "SetUserPassword")]
    async fn set_user_password(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        password: String,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self
            .ctx
            .core
            .agent_set_user_password(&self.uuid, &user, &password, flags)
            .await?)
    }

    /// Through the guest agent ([`crate::core::Core::agent_set_time`]).
    #[zbus(name = "SetTime")]
    async fn set_time(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        seconds: u64,
        nseconds: u32,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        let secs = i64::try_from(seconds).map_err(|_| {
            Error::InvalidArg(format!("Time '{seconds}' is too big for guest agent"))
        })?;
        Ok(self
            .ctx
            .core
            .agent_set_time(&self.uuid, secs, nseconds, flags)
            .await?)
    }

    #[zbus(name = "SetVcpus")]
    async fn set_vcpus(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        vcpus: u32,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.set_vcpus(&self.uuid, vcpus, flags).await?)
    }

    #[zbus(name = "Shutdown")]
    async fn shutdown(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.shutdown(&self.uuid, flags).await?)
    }

    #[zbus(name = "SnapshotCurrent", out_args("domainSnapshot"))]
    async fn snapshot_current(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<OwnedObjectPath> {
        self.ctx.gate.check(conn, &hdr).await?;
        Error::check_flags(flags, 0, "virDomainSnapshotCurrent")?;
        // libvirt's VIR_ERR_NO_DOMAIN_SNAPSHOT words, as RPC's SNAPSHOT_CURRENT.
        let name = self.ctx.core.snapshot_current(&self.uuid)?.ok_or_else(|| {
            Error::NoSnapshot("the domain does not have a current snapshot".into())
        })?;
        Ok(self.snapshot_object(conn, name).await)
    }

    #[zbus(name = "SnapshotCreateXML", out_args("domainSnapshot"))]
    async fn snapshot_create_xml(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml: String,
        flags: u32,
    ) -> Result<OwnedObjectPath> {
        self.ctx.gate.check(conn, &hdr).await?;
        let name = self
            .ctx
            .core
            .snapshot_create(&self.uuid, &xml, flags)
            .await?;
        Ok(self.snapshot_object(conn, name).await)
    }

    #[zbus(name = "SnapshotLookupByName", out_args("domainSnapshot"))]
    async fn snapshot_lookup_by_name(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        name: String,
        flags: u32,
    ) -> Result<OwnedObjectPath> {
        self.ctx.gate.check(conn, &hdr).await?;
        Error::check_flags(flags, 0, "virDomainSnapshotLookupByName")?;
        self.ctx.core.snapshot_lookup(&self.uuid, &name)?;
        Ok(self.snapshot_object(conn, name).await)
    }

    #[zbus(name = "Suspend")]
    async fn suspend(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.suspend(&self.uuid).await?)
    }

    #[zbus(name = "Undefine")]
    async fn undefine(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        self.ctx.core.undefine(&self.uuid, flags).await?;
        self.ctx.sync_objects(conn).await;
        Ok(())
    }

    #[zbus(name = "UpdateDevice")]
    async fn update_device(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml: String,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.update_device(&self.uuid, &xml, flags).await?)
    }

    #[zbus(signal, name = "AgentEvent")]
    pub async fn agent_event(
        emitter: &SignalEmitter<'_>,
        state: i32,
        reason: i32,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "BalloonChange")]
    pub async fn balloon_change(emitter: &SignalEmitter<'_>, actual: u64) -> zbus::Result<()>;

    #[zbus(signal, name = "BlockJob")]
    pub async fn block_job(
        emitter: &SignalEmitter<'_>,
        disk: String,
        type_: i32,
        status: i32,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "ControlError")]
    pub async fn control_error(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    #[zbus(signal, name = "DeviceAdded")]
    pub async fn device_added(emitter: &SignalEmitter<'_>, device: String) -> zbus::Result<()>;

    #[zbus(signal, name = "DeviceRemovalFailed")]
    pub async fn device_removal_failed(
        emitter: &SignalEmitter<'_>,
        device: String,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "DeviceRemoved")]
    pub async fn device_removed(emitter: &SignalEmitter<'_>, device: String) -> zbus::Result<()>;

    #[zbus(signal, name = "DiskChange")]
    pub async fn disk_change(
        emitter: &SignalEmitter<'_>,
        old_src_path: String,
        new_src_path: String,
        device: String,
        reason: i32,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "Graphics")]
    pub async fn graphics(
        emitter: &SignalEmitter<'_>,
        phase: i32,
        local: (i32, String, String),
        remote: (i32, String, String),
        auth_scheme: String,
        identities: Vec<(String, String)>,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "IOError")]
    pub async fn io_error(
        emitter: &SignalEmitter<'_>,
        src_path: String,
        device: String,
        action: i32,
        reason: String,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "JobCompleted")]
    pub async fn job_completed(
        emitter: &SignalEmitter<'_>,
        params: HashMap<String, OwnedVariant>,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "MetadataChange")]
    pub async fn metadata_change(
        emitter: &SignalEmitter<'_>,
        type_: i32,
        nsuri: String,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "MigrationIteration")]
    pub async fn migration_iteration(
        emitter: &SignalEmitter<'_>,
        iteration: i32,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "PMSuspend")]
    pub async fn pm_suspend(emitter: &SignalEmitter<'_>, reason: i32) -> zbus::Result<()>;

    #[zbus(signal, name = "PMSuspendDisk")]
    pub async fn pm_suspend_disk(emitter: &SignalEmitter<'_>, reason: i32) -> zbus::Result<()>;

    #[zbus(signal, name = "Reboot")]
    pub async fn reboot_signal(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    #[zbus(signal, name = "PMWakeup")]
    pub async fn pm_wakeup_signal(emitter: &SignalEmitter<'_>, reason: i32) -> zbus::Result<()>;

    #[zbus(signal, name = "RTCChange")]
    pub async fn rtc_change(emitter: &SignalEmitter<'_>, utcoffset: i64) -> zbus::Result<()>;

    #[zbus(signal, name = "TrayChange")]
    pub async fn tray_change(
        emitter: &SignalEmitter<'_>,
        device: String,
        reason: i32,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "Tunable")]
    pub async fn tunable(
        emitter: &SignalEmitter<'_>,
        params: HashMap<String, OwnedVariant>,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "Watchdog")]
    pub async fn watchdog(emitter: &SignalEmitter<'_>, action: i32) -> zbus::Result<()>;
}

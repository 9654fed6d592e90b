//! Domain procedures: decode, call the core, encode. No decisions are made here; the
//! core (`crate::core::Core`) owns state, rules and errors.

use uuid::Uuid;

use super::conn::Conn;
use super::dispatch::{args, ret, void, CallResult};
use super::error::VirError;
use super::packet::{Header, PROGRAM_REMOTE};
use super::proto::{
    remote, DeviceArgs, DeviceFlagsArgs, DomainArgs, DomainFlagsArgs, DomainInfoRet,
    GetMetadataArgs, IdListRet, IntValue, InterfaceAddressesArgs, ListAllArgs, ListAllDomainsRet,
    MemoryStat, MemoryStatsArgs, MemoryStatsRet, MonitorCommandArgs, NonnullDomain,
    OpenConsoleArgs, RenameArgs, RestoreFlagsArgs, SaveArgs, SaveFlagsArgs, SaveImageXmlArgs,
    SchedulerTypeRet, SecurityLabelRet, SetAutostartArgs, SetMemoryArgs, SetMemoryFlagsArgs,
    SetMetadataArgs, SetVcpusArgs, SetVcpusFlagsArgs, StateRet, StringListRet, StringValue,
    U64Value, UuidArgs, XmlFlagsArgs,
};
use super::stream::ConsoleStream;
use super::xdr::CharArray;
use super::{console, monitor};
use crate::core::{self, DomainRef};

/// The wire form of a core domain handle.
pub fn wire_domain(d: &DomainRef) -> NonnullDomain {
    NonnullDomain {
        name: d.name.clone(),
        uuid: *d.uuid.as_bytes(),
        id: d.id,
    }
}

/// A core error as the client sees it.
pub fn vir(e: core::Error) -> VirError {
    VirError::new(e.code(), e.origin(), e.to_string())
}

/// The domain a call names. libvirt identifies it by UUID; name and id are the
/// client's cached copy.
fn uuid_of(d: &NonnullDomain) -> Uuid {
    Uuid::from_bytes(d.uuid)
}

fn dom_ret(d: DomainRef) -> CallResult {
    ret(DomainArgs {
        dom: wire_domain(&d),
    })
}

/// Dispatches a domain procedure of the REMOTE program.
pub async fn call(conn: &mut Conn, h: &Header, payload: &[u8]) -> CallResult {
    let core = conn.shared.core.clone();
    let p = h.proc_;
    match p {
        remote::CONNECT_LIST_ALL_DOMAINS => {
            let a: ListAllArgs = args(p, payload)?;
            let doms = core.list(a.flags).map_err(vir)?;
            let n = doms.len() as u32;
            ret(ListAllDomainsRet {
                domains: if a.need_results != 0 {
                    doms.iter().map(|i| wire_domain(&i.domain)).collect()
                } else {
                    Vec::new()
                },
                ret: n,
            })
        }
        remote::CONNECT_NUM_OF_DOMAINS => ret(IntValue {
            value: core.list(core::flags::list::ACTIVE).map_err(vir)?.len() as i32,
        }),
        remote::CONNECT_LIST_DOMAINS => {
            let a: IntValue = args(p, payload)?;
            let mut ids: Vec<i32> = core
                .list(core::flags::list::ACTIVE)
                .map_err(vir)?
                .iter()
                .map(|i| i.domain.id)
                .collect();
            ids.truncate(a.value.max(0) as usize);
            ret(IdListRet { ids })
        }
        remote::CONNECT_NUM_OF_DEFINED_DOMAINS => ret(IntValue {
            value: core.list(core::flags::list::INACTIVE).map_err(vir)?.len() as i32,
        }),
        remote::CONNECT_LIST_DEFINED_DOMAINS => {
            let a: IntValue = args(p, payload)?;
            let mut names: Vec<String> = core
                .list(core::flags::list::INACTIVE)
                .map_err(vir)?
                .into_iter()
                .map(|i| i.domain.name)
                .collect();
            names.truncate(a.value.max(0) as usize);
            ret(StringListRet { names })
        }
        remote::DOMAIN_LOOKUP_BY_NAME => {
            let a: StringValue = args(p, payload)?;
            dom_ret(core.lookup_by_name(&a.value).map_err(vir)?)
        }
        remote::DOMAIN_LOOKUP_BY_UUID => {
            let a: UuidArgs = args(p, payload)?;
            dom_ret(
                core.lookup_by_uuid(&Uuid::from_bytes(a.uuid))
                    .map_err(vir)?,
            )
        }
        remote::DOMAIN_LOOKUP_BY_ID => {
            let a: IntValue = args(p, payload)?;
            dom_ret(core.lookup_by_id(a.value).map_err(vir)?)
        }
        remote::DOMAIN_DEFINE_XML => {
            let a: StringValue = args(p, payload)?;
            dom_ret(core.define_xml(&a.value).await.map_err(vir)?)
        }
        remote::DOMAIN_DEFINE_XML_FLAGS => {
            let a: XmlFlagsArgs = args(p, payload)?;
            // VIR_DOMAIN_DEFINE_VALIDATE: the core always validates against our model.
            core::Error::check_flags(
                a.flags,
                core::flags::define::VALIDATE,
                "virDomainDefineXMLFlags",
            )
            .map_err(vir)?;
            dom_ret(core.define_xml(&a.xml).await.map_err(vir)?)
        }
        remote::DOMAIN_CREATE_XML => {
            let a: XmlFlagsArgs = args(p, payload)?;
            dom_ret(core.create_xml(&a.xml, a.flags).await.map_err(vir)?)
        }
        remote::DOMAIN_CREATE => {
            let a: DomainArgs = args(p, payload)?;
            core.start(&uuid_of(&a.dom), 0).await.map_err(vir)?;
            void()
        }
        remote::DOMAIN_CREATE_WITH_FLAGS => {
            let a: DomainFlagsArgs = args(p, payload)?;
            let u = uuid_of(&a.dom);
            core.start(&u, a.flags).await.map_err(vir)?;
            dom_ret(core.lookup_by_uuid(&u).map_err(vir)?)
        }
        remote::DOMAIN_DESTROY => {
            let a: DomainArgs = args(p, payload)?;
            core.destroy(&uuid_of(&a.dom), 0).await.map_err(vir)?;
            void()
        }
        remote::DOMAIN_DESTROY_FLAGS => {
            let a: DomainFlagsArgs = args(p, payload)?;
            core.destroy(&uuid_of(&a.dom), a.flags).await.map_err(vir)?;
            void()
        }
        remote::DOMAIN_SHUTDOWN => {
            let a: DomainArgs = args(p, payload)?;
            core.shutdown(&uuid_of(&a.dom), 0).await.map_err(vir)?;
            void()
        }
        remote::DOMAIN_SHUTDOWN_FLAGS => {
            let a: DomainFlagsArgs = args(p, payload)?;
            core.shutdown(&uuid_of(&a.dom), a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_REBOOT => {
            let a: DomainFlagsArgs = args(p, payload)?;
            core.reboot(&uuid_of(&a.dom), a.flags).await.map_err(vir)?;
            void()
        }
        remote::DOMAIN_RESET => {
            let a: DomainFlagsArgs = args(p, payload)?;
            core.reset(&uuid_of(&a.dom), a.flags).await.map_err(vir)?;
            void()
        }
        remote::DOMAIN_SUSPEND => {
            let a: DomainArgs = args(p, payload)?;
            core.suspend(&uuid_of(&a.dom)).await.map_err(vir)?;
            void()
        }
        remote::DOMAIN_RESUME => {
            let a: DomainArgs = args(p, payload)?;
            core.resume(&uuid_of(&a.dom)).await.map_err(vir)?;
            void()
        }
        remote::DOMAIN_UNDEFINE => {
            let a: DomainArgs = args(p, payload)?;
            core.undefine(&uuid_of(&a.dom), 0).await.map_err(vir)?;
            void()
        }
        remote::DOMAIN_UNDEFINE_FLAGS => {
            let a: DomainFlagsArgs = args(p, payload)?;
            core.undefine(&uuid_of(&a.dom), a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_GET_XML_DESC => {
            let a: DomainFlagsArgs = args(p, payload)?;
            ret(StringValue {
                value: core.xml_desc(&uuid_of(&a.dom), a.flags).map_err(vir)?,
            })
        }
        remote::DOMAIN_GET_INFO => {
            let a: DomainArgs = args(p, payload)?;
            let i = core.info(&uuid_of(&a.dom)).map_err(vir)?;
            ret(DomainInfoRet {
                state: i.state.state as u32,
                max_mem: i.max_memory_kib,
                memory: i.memory_kib,
                nr_virt_cpu: i.vcpus,
                cpu_time: i.cpu_time_ns,
            })
        }
        remote::DOMAIN_GET_STATE => {
            let a: DomainFlagsArgs = args(p, payload)?;
            let s = core.state(&uuid_of(&a.dom)).map_err(vir)?;
            ret(StateRet {
                state: s.state as i32,
                reason: s.reason,
            })
        }
        remote::DOMAIN_GET_OS_TYPE => {
            let a: DomainArgs = args(p, payload)?;
            ret(StringValue {
                value: core.info(&uuid_of(&a.dom)).map_err(vir)?.os_type,
            })
        }
        remote::DOMAIN_GET_MAX_MEMORY => {
            let a: DomainArgs = args(p, payload)?;
            let i = core.info(&uuid_of(&a.dom)).map_err(vir)?;
            ret(U64Value {
                value: i.max_memory_kib,
            })
        }
        remote::DOMAIN_IS_ACTIVE => {
            let a: DomainArgs = args(p, payload)?;
            let i = core.info(&uuid_of(&a.dom)).map_err(vir)?;
            ret(IntValue {
                value: i32::from(i.state.is_active()),
            })
        }
        remote::DOMAIN_IS_PERSISTENT => {
            let a: DomainArgs = args(p, payload)?;
            let i = core.info(&uuid_of(&a.dom)).map_err(vir)?;
            ret(IntValue {
                value: i32::from(i.persistent),
            })
        }
        remote::DOMAIN_IS_UPDATED => {
            let a: DomainArgs = args(p, payload)?;
            let i = core.info(&uuid_of(&a.dom)).map_err(vir)?;
            ret(IntValue {
                value: i32::from(i.updated),
            })
        }
        remote::DOMAIN_GET_AUTOSTART => {
            let a: DomainArgs = args(p, payload)?;
            ret(IntValue {
                value: i32::from(core.autostart(&uuid_of(&a.dom)).map_err(vir)?),
            })
        }
        remote::DOMAIN_SET_AUTOSTART => {
            let a: SetAutostartArgs = args(p, payload)?;
            core.set_autostart(&uuid_of(&a.dom), a.autostart != 0)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_GET_VCPUS_FLAGS => {
            let a: DomainFlagsArgs = args(p, payload)?;
            ret(IntValue {
                value: vcpus(&core, &uuid_of(&a.dom), a.flags)? as i32,
            })
        }
        remote::DOMAIN_GET_MAX_VCPUS => {
            let a: DomainArgs = args(p, payload)?;
            // VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_VCPU_MAXIMUM, as libvirt's own fallback.
            ret(IntValue {
                value: vcpus(
                    &core,
                    &uuid_of(&a.dom),
                    vcpu_flags::LIVE | vcpu_flags::MAXIMUM,
                )? as i32,
            })
        }
        remote::DOMAIN_SET_VCPUS => {
            let a: SetVcpusArgs = args(p, payload)?;
            // virDomainSetVcpus = SetVcpusFlags(VIR_DOMAIN_AFFECT_LIVE).
            core.set_vcpus(&uuid_of(&a.dom), a.nvcpus, core::flags::affect::LIVE)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_SET_VCPUS_FLAGS => {
            let a: SetVcpusFlagsArgs = args(p, payload)?;
            core.set_vcpus(&uuid_of(&a.dom), a.nvcpus, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_SET_MEMORY => {
            let a: SetMemoryArgs = args(p, payload)?;
            // virDomainSetMemory = SetMemoryFlags(VIR_DOMAIN_AFFECT_LIVE).
            core.set_memory(&uuid_of(&a.dom), a.memory, core::flags::affect::LIVE)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_SET_MEMORY_FLAGS => {
            let a: SetMemoryFlagsArgs = args(p, payload)?;
            core.set_memory(&uuid_of(&a.dom), a.memory, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_ATTACH_DEVICE => {
            let a: DeviceArgs = args(p, payload)?;
            // virDomainAttachDevice = AttachDeviceFlags(VIR_DOMAIN_AFFECT_LIVE).
            core.attach_device(&uuid_of(&a.dom), &a.xml, core::flags::affect::LIVE)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_ATTACH_DEVICE_FLAGS => {
            let a: DeviceFlagsArgs = args(p, payload)?;
            core.attach_device(&uuid_of(&a.dom), &a.xml, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_DETACH_DEVICE => {
            let a: DeviceArgs = args(p, payload)?;
            core.detach_device(&uuid_of(&a.dom), &a.xml, core::flags::affect::LIVE)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_DETACH_DEVICE_FLAGS => {
            let a: DeviceFlagsArgs = args(p, payload)?;
            core.detach_device(&uuid_of(&a.dom), &a.xml, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_UPDATE_DEVICE_FLAGS => {
            let a: DeviceFlagsArgs = args(p, payload)?;
            core.update_device(&uuid_of(&a.dom), &a.xml, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_GET_METADATA => {
            let a: GetMetadataArgs = args(p, payload)?;
            ret(StringValue {
                value: core
                    .metadata(&uuid_of(&a.dom), a.kind, a.uri.as_deref(), a.flags)
                    .map_err(vir)?,
            })
        }
        remote::DOMAIN_SET_METADATA => {
            let a: SetMetadataArgs = args(p, payload)?;
            core.set_metadata(
                &uuid_of(&a.dom),
                a.kind,
                a.metadata.as_deref(),
                a.key.as_deref(),
                a.uri.as_deref(),
                a.flags,
            )
            .await
            .map_err(vir)?;
            void()
        }
        remote::DOMAIN_RENAME => {
            let a: RenameArgs = args(p, payload)?;
            let name = a.new_name.ok_or_else(|| {
                VirError::invalid_arg("new_name in virDomainRename must not be NULL")
            })?;
            core.rename(&uuid_of(&a.dom), &name, a.flags)
                .await
                .map_err(vir)?;
            ret(IntValue { value: 0 })
        }
        remote::DOMAIN_MEMORY_STATS => {
            let a: MemoryStatsArgs = args(p, payload)?;
            let stats = core.memory_stats(&uuid_of(&a.dom)).await.map_err(vir)?;
            ret(MemoryStatsRet {
                stats: stats
                    .into_iter()
                    .take(a.max_stats as usize)
                    .map(|(tag, val)| MemoryStat { tag, val })
                    .collect(),
            })
        }
        remote::DOMAIN_HAS_MANAGED_SAVE_IMAGE => {
            let a: DomainFlagsArgs = args(p, payload)?;
            let has = core
                .has_managed_save_image(&uuid_of(&a.dom), a.flags)
                .map_err(vir)?;
            ret(IntValue {
                value: i32::from(has),
            })
        }
        remote::DOMAIN_MANAGED_SAVE => {
            let a: DomainFlagsArgs = args(p, payload)?;
            core.managed_save(&uuid_of(&a.dom), a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_MANAGED_SAVE_REMOVE => {
            let a: DomainFlagsArgs = args(p, payload)?;
            core.managed_save_remove(&uuid_of(&a.dom), a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_SAVE => {
            let a: SaveArgs = args(p, payload)?;
            core.save(&uuid_of(&a.dom), &a.to, None, 0)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_SAVE_FLAGS => {
            let a: SaveFlagsArgs = args(p, payload)?;
            core.save(&uuid_of(&a.dom), &a.to, a.dxml.as_deref(), a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_RESTORE => {
            let a: StringValue = args(p, payload)?;
            core.restore(&a.value, None, 0).await.map_err(vir)?;
            void()
        }
        remote::DOMAIN_RESTORE_FLAGS => {
            let a: RestoreFlagsArgs = args(p, payload)?;
            core.restore(&a.from, a.dxml.as_deref(), a.flags)
                .await
                .map_err(vir)?;
            void()
        }
        remote::DOMAIN_SAVE_IMAGE_GET_XML_DESC => {
            let a: SaveImageXmlArgs = args(p, payload)?;
            ret(StringValue {
                value: core.save_image_xml(&a.file, a.flags).map_err(vir)?,
            })
        }
        remote::DOMAIN_GET_SECURITY_LABEL => {
            let a: DomainArgs = args(p, payload)?;
            core.lookup_by_uuid(&uuid_of(&a.dom)).map_err(vir)?;
            ret(SecurityLabelRet {
                label: CharArray::c_string(""),
                enforcing: 0,
            })
        }
        remote::DOMAIN_GET_MESSAGES => {
            let a: DomainFlagsArgs = args(p, payload)?;
            core.lookup_by_uuid(&uuid_of(&a.dom)).map_err(vir)?;
            ret(StringListRet { names: Vec::new() })
        }
        remote::DOMAIN_GET_SCHEDULER_TYPE => {
            let a: DomainArgs = args(p, payload)?;
            core.lookup_by_uuid(&uuid_of(&a.dom)).map_err(vir)?;
            ret(SchedulerTypeRet {
                kind: "posix".into(),
                nparams: super::tune::SCHEDULER_NPARAMS,
            })
        }
        remote::DOMAIN_INTERFACE_ADDRESSES => {
            let a: InterfaceAddressesArgs = args(p, payload)?;
            super::network::interface_addresses(conn, a).await
        }
        remote::DOMAIN_OPEN_CONSOLE => {
            let a: OpenConsoleArgs = args(p, payload)?;
            open_console(conn, h, a).await
        }
        _ => Err(VirError::unknown_procedure(PROGRAM_REMOTE, p)),
    }
}

/// `virDomainVcpuFlags`.
mod vcpu_flags {
    pub const LIVE: u32 = 1;
    pub const CONFIG: u32 = 2;
    pub const MAXIMUM: u32 = 4;
    pub const GUEST: u32 = 8;
}

/// virDomainGetVcpusFlags: the current or maximum vCPU count of the live or the
/// persistent definition (`setvcpus --config` makes them differ until the next start).
fn vcpus(core: &core::Core, u: &Uuid, flags: u32) -> Result<u32, VirError> {
    use vcpu_flags::*;
    core::Error::check_flags(
        flags,
        LIVE | CONFIG | MAXIMUM | GUEST,
        "virDomainGetVcpusFlags",
    )
    .map_err(vir)?;
    if flags & LIVE != 0 && flags & CONFIG != 0 {
        return Err(VirError::invalid_arg(
            "flags 'affect-live' and 'affect-config' are mutually exclusive",
        ));
    }
    if flags & GUEST != 0 {
        return Err(VirError::no_support(
            "virDomainGetVcpusFlags with VIR_DOMAIN_VCPU_GUEST",
        ));
    }
    // The core picks the live or the persistent definition from the flags.
    core.vcpus(u, flags).map_err(vir)
}

/// DOMAIN_OPEN_CONSOLE: claim the console, reply, then start the stream (the reply
/// must reach the client before any stream data).
async fn open_console(conn: &mut Conn, h: &Header, a: OpenConsoleArgs) -> CallResult {
    let u = uuid_of(&a.dom);
    let qmp = qmp_socket(&conn.shared.core, &u)?;
    let io = console::open(&qmp, a.dev_name.as_deref()).await?;
    // VIR_DOMAIN_CONSOLE_FORCE = 1.
    let claim = conn
        .shared
        .consoles
        .claim(*u.as_bytes(), a.flags & 1 != 0)?;
    conn.reply(h, Ok(Vec::new())).await;
    let s = ConsoleStream::start(io, claim, conn.out.clone(), h);
    conn.streams.insert(h.serial, s);
    Ok(None)
}

/// QEMU DOMAIN_MONITOR_COMMAND: pass the command to the domain's QMP socket.
pub async fn monitor_command(conn: &mut Conn, a: MonitorCommandArgs) -> CallResult {
    let core = conn.shared.core.clone();
    let u = uuid_of(&a.dom);
    let qmp = qmp_socket(&core, &u)?;
    let hmp = a.flags & 1 != 0;
    let result = monitor::passthrough(&qmp, &a.cmd, hmp).await?;
    ret(StringValue { value: result })
}

/// The QMP socket of a running domain (its runtime directory's `qmp.sock`).
fn qmp_socket(core: &core::Core, u: &Uuid) -> Result<std::path::PathBuf, VirError> {
    let info = core.info(u).map_err(vir)?;
    if !info.state.is_active() {
        return Err(VirError::operation_invalid("domain is not running"));
    }
    Ok(core::runtime::RuntimeDir::new(&core.config().runtime_dir, &info.domain.name).qmp())
}

//! The `logical` pool backend: a pool is an LVM volume group, its volumes the group's
//! logical volumes (`/dev/VG/LV`, raw block devices keyed by LV UUID), driven through
//! the LVM tools ([`lvm`]) as libvirt 9.0's `storage_backend_logical.c` drives them.
//! Everything here blocks; the driver calls it on blocking threads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Seek, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::error::{Error, Result};
use super::flags;
use super::lvm::{self, Lv, VgSource};
use super::pool_xml::{LogicalSource, Perms, PoolDef, PoolSizes};
use super::vol_xml::{BlockVol, VolFormat, VolInfo, VolRequest};
use super::xmlutil::escape;

/// What a refresh finds: the group's sizes and its active volumes by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VgState {
    pub sizes: PoolSizes,
    pub lvs: BTreeMap<String, Lv>,
}

/// libvirt's default mode of a new volume (`VIR_STORAGE_DEFAULT_VOL_PERM_MODE`).
const DEFAULT_VOL_MODE: u32 = 0o600;

/// What blkid calls an LVM physical volume (libvirt probes for this name).
const PV_TYPE: &str = "LVM2_member";

/// virStoragePoolBuild: every source device is checked (unless OVERWRITE), its
/// partition table zeroed and `pvcreate`d, then `vgcreate VG DEVICES…`. On failure the
/// devices already initialised are `pvremove`d, so a later build can start over.
pub fn build(src: &LogicalSource, flags: u32) -> Result<()> {
    if flags & flags::BUILD_OVERWRITE != 0 && flags & flags::BUILD_NO_OVERWRITE != 0 {
        return Err(Error::InvalidArg(
            "Flags 'VIR_STORAGE_POOL_BUILD_OVERWRITE' and 'VIR_STORAGE_POOL_BUILD_NO_OVERWRITE' are mutually exclusive"
                .into(),
        ));
    }
    let mut done: Vec<&str> = Vec::new();
    let result = (|| {
        for dev in &src.devices {
            if flags & flags::BUILD_OVERWRITE == 0 {
                check_empty(dev)?;
            }
            zero_ends(Path::new(dev))?;
            done.push(dev);
            lvm::run("pvcreate", &[dev])?;
        }
        let mut args = vec![src.vg.as_str()];
        args.extend(src.devices.iter().map(String::as_str));
        lvm::run("vgcreate", &args).map(drop)
    })();
    if result.is_err() {
        for dev in done {
            remove_pv(dev);
        }
    }
    result
}

/// libvirt's blkid check before writing a label: a device that already carries a
/// physical volume, a file system or a partition table needs `--overwrite`.
fn check_empty(dev: &str) -> Result<()> {
    let blkid = Path::new(lvm::SBIN).join("blkid");
    let out = std::process::Command::new(&blkid)
        .args(["-p", "-o", "export", dev])
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(_) => {
            return Err(Error::ProbeFailed(format!(
                "Not capable of probing for format type '{PV_TYPE}', requires build --overwrite"
            )))
        }
    };
    // blkid -p: 0 found something, 2 found nothing.
    match out.status.code() {
        Some(2) => return Ok(()),
        Some(0) => {}
        _ => {
            return Err(Error::ProbeFailed(format!(
                "Failed to probe for format type '{PV_TYPE}'"
            )))
        }
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let found = text.lines().find_map(|l| {
        l.strip_prefix("TYPE=")
            .or_else(|| l.strip_prefix("PTTYPE="))
    });
    match found {
        None => Ok(()),
        Some(PV_TYPE) => Err(Error::PoolBuilt(format!(
            "Device '{dev}' already formatted using '{PV_TYPE}'"
        ))),
        Some(_) => Err(Error::PoolBuilt(format!(
            "Format of device '{dev}' does not match the expected format '{PV_TYPE}', forced overwrite is necessary"
        ))),
    }
}

/// Zeroes the first and last MiB of a device: LVM wants a whole disk's partition
/// table gone (libvirt's `virStorageBackendZeroPartitionTable`).
fn zero_ends(dev: &Path) -> Result<()> {
    const SPAN: u64 = 1 << 20;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .map_err(|e| Error::io("open device", dev, &e))?;
    let size = f
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::io("seek", dev, &e))?;
    let zeros = vec![0u8; SPAN.min(size) as usize];
    for at in [0, size.saturating_sub(SPAN)] {
        f.seek(SeekFrom::Start(at))
            .and_then(|_| f.write_all(&zeros))
            .map_err(|e| Error::io("clear device header of", dev, &e))?;
    }
    f.sync_all().map_err(|e| Error::io("sync device", dev, &e))
}

fn remove_pv(dev: &str) {
    if let Err(e) = lvm::run("pvremove", &[dev]) {
        tracing::info!(device = dev, error = %e, "cannot pvremove logical device");
    }
}

/// The volume groups and their physical volumes (`vgscan` first, as libvirt, so
/// groups on new devices show; its failure only means they might not).
fn sources() -> Result<Vec<VgSource>> {
    if let Err(e) = lvm::run("vgscan", &[]) {
        tracing::warn!(error = %e, "vgscan failed");
    }
    Ok(lvm::parse_pvs(&lvm::run("pvs", lvm::PVS_ARGS)?))
}

/// libvirt's `virStorageBackendLogicalMatchPoolSource`: the group must exist and, if
/// the pool names devices, hold at least one of them.
fn match_source(src: &LogicalSource) -> Result<()> {
    let found = sources()?;
    let Some(vg) = found.iter().find(|s| s.vg == src.vg) else {
        return Err(Error::ConfigUnsupported(format!(
            "cannot find logical volume group name '{}'",
            src.vg
        )));
    };
    if src.devices.is_empty() {
        return Ok(());
    }
    let matched = src
        .devices
        .iter()
        .filter(|d| vg.devices.contains(d))
        .count();
    if matched == 0 {
        return Err(Error::ConfigUnsupported(format!(
            "cannot find any matching source devices for logical volume group '{}'",
            src.vg
        )));
    }
    if matched != src.devices.len() || matched != vg.devices.len() {
        tracing::warn!(
            vg = src.vg,
            "pool device list count doesn't match pvs device list count"
        );
    }
    Ok(())
}

/// virStoragePoolCreate: check the group, activate its volumes (`vgchange -aly`) and
/// read it; a group that cannot be read is deactivated again.
pub fn start(src: &LogicalSource) -> Result<VgState> {
    match_source(src)?;
    lvm::run("vgchange", &["-aly", &src.vg])?;
    refresh(src).inspect_err(|_| {
        let _ = stop(src);
    })
}

/// virStoragePoolDestroy: deactivate the group's volumes (`vgchange -aln`); it fails
/// while a volume is open.
pub fn stop(src: &LogicalSource) -> Result<()> {
    lvm::run("vgchange", &["-aln", &src.vg]).map(drop)
}

/// virStoragePoolDelete: `vgremove -f VG`, then `pvremove` each source device.
pub fn delete(src: &LogicalSource, flags: u32) -> Result<()> {
    Error::check_flags(flags, 0, "virStorageBackendLogicalDeletePool")?;
    lvm::run("vgremove", &["-f", &src.vg])?;
    for dev in &src.devices {
        remove_pv(dev);
    }
    Ok(())
}

/// virStoragePoolRefresh: the volumes (`lvs`) and sizes (`vgs`) of the group.
pub fn refresh(src: &LogicalSource) -> Result<VgState> {
    let mut args = lvm::LVS_ARGS.to_vec();
    args.push(&src.vg);
    let lvs = lvm::parse_lvs(&lvm::run("lvs", &args)?)?;
    let mut args = lvm::VGS_ARGS.to_vec();
    args.push(&src.vg);
    let (capacity, free) = lvm::parse_vgs(&lvm::run("vgs", &args)?)?;
    Ok(VgState {
        sizes: PoolSizes {
            capacity,
            allocation: capacity - free,
            available: free,
        },
        lvs: lvs.into_iter().map(|l| (l.name.clone(), l)).collect(),
    })
}

/// `lvcreate`'s arguments for `req` in group `vg`, as libvirt builds them: sizes in
/// KiB rounded up; an allocation below the capacity makes a sparse volume (a
/// `--virtualsize` snapshot); a backing store makes a snapshot of it.
pub fn lvcreate_args(vg: &str, req: &VolRequest) -> Result<Vec<String>> {
    if req.format != VolFormat::Raw {
        return Err(Error::OperationUnsupported(format!(
            "logical volumes are raw block devices: format '{}' is not supported",
            req.format.as_str()
        )));
    }
    let capacity = req
        .capacity
        .ok_or_else(|| Error::Xml("missing capacity element".into()))?;
    let allocation = req.allocation.unwrap_or(capacity).min(capacity);
    let kib = |b: u64| format!("{}K", b.div_ceil(1024));
    let mut args = vec!["--name".to_string(), req.name.clone(), "-L".to_string()];
    if allocation != capacity {
        args.push(kib(allocation.max(1)));
        args.extend(["--type", "snapshot", "--virtualsize"].map(String::from));
    }
    args.push(kib(capacity));
    match &req.backing {
        Some((path, _)) => {
            args.push("-s".to_string());
            args.push(path.to_string_lossy().into_owned());
        }
        None => args.push(vg.to_string()),
    }
    args.push("--yes".to_string());
    Ok(args)
}

/// virStorageVolCreateXML: `lvcreate`, then the requested mode and owner on the
/// device (libvirt's default 0600); on failure the new volume is removed again.
pub fn create_vol(def: &PoolDef, vg: &str, req: &VolRequest) -> Result<()> {
    let args = lvcreate_args(vg, req)?;
    lvm::run(
        "lvcreate",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let path = def.path.join(&req.name);
    set_perms(&path, &req.perms).inspect_err(|_| {
        let _ = delete_vol(&path);
    })
}

fn set_perms(path: &Path, perms: &Perms) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if perms.owner.is_some() || perms.group.is_some() {
        std::os::unix::fs::chown(path, perms.owner, perms.group)
            .map_err(|e| Error::io("set file owner", path, &e))?;
    }
    let mode = perms.mode.unwrap_or(DEFAULT_VOL_MODE);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("set file mode", path, &e))
}

/// virStorageVolDelete: `lvremove -f`; a volume that will not go is deactivated
/// (`lvchange -aln`) and removed again, as libvirt does.
pub fn delete_vol(path: &Path) -> Result<()> {
    let p = path.to_string_lossy();
    if lvm::run("lvremove", &["-f", &p]).is_ok() {
        return Ok(());
    }
    lvm::run("lvchange", &["-aln", &p])?;
    lvm::run("lvremove", &["-f", &p]).map(drop)
}

/// A volume's description: the device node's owner, mode and times, its size
/// (capacity and physical), and the allocation and extents `lvs` reported.
pub fn vol_info(name: &str, path: &Path, lv: &Lv) -> Result<VolInfo> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("stat", path, &e))?;
    let size = std::fs::File::open(path)
        .and_then(|mut f| f.seek(SeekFrom::End(0)))
        .map_err(|e| Error::io("open", path, &e))?;
    Ok(VolInfo {
        name: name.to_string(),
        path: path.to_path_buf(),
        format: VolFormat::Raw,
        capacity: size,
        allocation: lv.size,
        physical: size,
        perms: Perms {
            mode: Some(meta.mode() & 0o7777),
            owner: Some(meta.uid()),
            group: Some(meta.gid()),
            label: None,
        },
        times: [
            (meta.atime(), meta.atime_nsec()),
            (meta.mtime(), meta.mtime_nsec()),
            (meta.ctime(), meta.ctime_nsec()),
        ],
        backing: None,
        compat: None,
        block: Some(BlockVol {
            key: lv.uuid.clone(),
            extents: lv.extents.clone(),
            sparse: lv.sparse(),
        }),
    })
}

/// virConnectFindStoragePoolSources for `logical`: each volume group with its physical
/// volumes; a host without the LVM tools has none.
pub fn find_sources() -> Result<String> {
    if !lvm::installed() {
        return Ok(format_sources(&[]));
    }
    Ok(format_sources(&sources()?))
}

/// libvirt's `virStoragePoolSourceListFormat` for logical sources.
pub fn format_sources(vgs: &[VgSource]) -> String {
    let mut out = String::from("<sources>\n");
    for s in vgs {
        out.push_str("  <source>\n");
        for d in &s.devices {
            let _ = writeln!(out, "    <device path='{}'/>", escape(d));
        }
        let _ = writeln!(out, "    <name>{}</name>", escape(&s.vg));
        out.push_str("    <format type='lvm2'/>\n  </source>\n");
    }
    out.push_str("</sources>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(xml: &str) -> VolRequest {
        VolRequest::parse(xml).unwrap()
    }

    #[test]
    fn lvcreate_gets_libvirts_arguments() {
        // virsh vol-create-as lv v1 8M: no allocation, a plain LV.
        let r = req("<volume><name>v1</name><capacity>8388608</capacity></volume>");
        assert_eq!(
            lvcreate_args("vg", &r).unwrap().join(" "),
            "--name v1 -L 8192K vg --yes"
        );
        // Sizes round up to KiB; allocation equal to capacity is not sparse.
        let r = req(
            "<volume><name>a</name><capacity>1025</capacity><allocation>1025</allocation></volume>",
        );
        assert_eq!(
            lvcreate_args("vg", &r).unwrap().join(" "),
            "--name a -L 2K vg --yes"
        );
        // --allocation 0: a sparse (thin snapshot) volume.
        let r = req("<volume><name>s</name><capacity unit='M'>8</capacity><allocation>0</allocation></volume>");
        assert_eq!(
            lvcreate_args("vg", &r).unwrap().join(" "),
            "--name s -L 1K --type snapshot --virtualsize 8192K vg --yes"
        );
        // A backing store: a snapshot of that volume.
        let r = req("<volume><name>b</name><capacity>4096</capacity>\
                     <backingStore><path>/dev/vg/base</path></backingStore></volume>");
        assert_eq!(
            lvcreate_args("vg", &r).unwrap().join(" "),
            "--name b -L 4K -s /dev/vg/base --yes"
        );
        let r = req("<volume><name>q</name><capacity>1</capacity><target><format type='qcow2'/></target></volume>");
        assert_eq!(
            lvcreate_args("vg", &r).unwrap_err().to_string(),
            "Operation not supported: logical volumes are raw block devices: format 'qcow2' is not supported"
        );
    }

    #[test]
    fn found_sources_format_as_libvirt() {
        let x = format_sources(&[
            VgSource {
                vg: "vg1".into(),
                devices: vec!["/dev/loop0".into(), "/dev/loop2".into()],
            },
            VgSource {
                vg: "v&g".into(),
                devices: vec!["/dev/sdb".into()],
            },
        ]);
        assert_eq!(
            x,
            "<sources>\n  <source>\n    <device path='/dev/loop0'/>\n    <device path='/dev/loop2'/>\n    \
             <name>vg1</name>\n    <format type='lvm2'/>\n  </source>\n  <source>\n    \
             <device path='/dev/sdb'/>\n    <name>v&amp;g</name>\n    <format type='lvm2'/>\n  </source>\n</sources>\n"
        );
        assert_eq!(format_sources(&[]), "<sources>\n</sources>\n");
        roxmltree::Document::parse(&x).unwrap();
    }

    #[test]
    fn build_refuses_contradicting_flags() {
        let src = LogicalSource {
            vg: "vg".into(),
            devices: vec![],
            format: super::super::pool_xml::LvmFormat::Lvm2,
        };
        // libvirt's virStoragePoolBuildFlags values, as virsh sends them.
        assert_eq!((flags::BUILD_NO_OVERWRITE, flags::BUILD_OVERWRITE), (4, 8));
        let e = build(&src, flags::BUILD_OVERWRITE | flags::BUILD_NO_OVERWRITE).unwrap_err();
        assert_eq!(e.code(), super::super::error::code::INVALID_ARG);
    }
}

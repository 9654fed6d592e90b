//! libvirt's `logical` (LVM) storage pools through Debian's real virsh against oxvirtd,
//! as root on a loop device: define, build (pvcreate + vgcreate), start, pool-info
//! sizes from `vgs`, volumes (`lvcreate`, vol-list/vol-info/vol-dumpxml with the LV's
//! UUID as key, `lvremove`), find-storage-pool-sources, destroy, delete (vgremove +
//! pvremove) and undefine. The volume group's name is unique per run, and a guard
//! removes the group, the physical volume and the loop device whatever happens.
//! Skips loudly without root, the LVM tools or a loop device; the volume steps need
//! device-mapper in the kernel (without it, lvcreate's own error must come back).

mod rpc_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use oxvirt_tests::host::skip;
use rpc_common::{field, Daemon};

const TEST: &str = "rpc_storage_logical_pool_lifecycle";

/// Runs a host tool; `Err` is its stderr.
fn sh(prog: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(prog)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{prog} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A loop device on a sparse file, with whatever LVM put on it removed on drop.
struct LoopVg {
    dev: String,
    vg: String,
    _dir: tempfile::TempDir,
}

impl LoopVg {
    fn new(vg: &str) -> Result<LoopVg, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let img = dir.path().join("pv.img");
        let f = std::fs::File::create(&img).map_err(|e| e.to_string())?;
        f.set_len(64 << 20).map_err(|e| e.to_string())?;
        let dev = sh("losetup", &["--find", "--show", img.to_str().unwrap()])?
            .trim()
            .to_string();
        Ok(LoopVg {
            dev,
            vg: vg.to_string(),
            _dir: dir,
        })
    }
}

impl Drop for LoopVg {
    fn drop(&mut self) {
        // Each step may find nothing to do (the test got that far, or not).
        let _ = sh("/usr/sbin/vgchange", &["-aln", &self.vg]);
        let _ = sh("/usr/sbin/vgremove", &["-f", &self.vg]);
        let _ = sh("/usr/sbin/pvremove", &["-ff", "-y", &self.dev]);
        let _ = sh("losetup", &["-d", &self.dev]);
    }
}

/// Why this host cannot run the test, if it cannot.
fn unusable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (LVM and loop devices)".into());
    }
    for t in ["pvcreate", "vgcreate", "lvcreate", "vgs", "lvs", "pvs"] {
        if !Path::new("/usr/sbin").join(t).exists() {
            return Some(format!("/usr/sbin/{t} is missing (apt-get install lvm2)"));
        }
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no loop devices (/dev/loop-control)".into());
    }
    None
}

/// Whether the kernel has device-mapper, which activating an LV needs.
fn device_mapper() -> bool {
    std::fs::read_to_string("/proc/misc").is_ok_and(|m| m.contains("device-mapper"))
}

#[test]
fn rpc_storage_logical_pool_lifecycle() {
    if let Some(why) = unusable() {
        skip(TEST, &why);
        return;
    }
    let vg = format!(
        "oxvg_test{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let lo = match LoopVg::new(&vg) {
        Ok(l) => l,
        Err(e) => {
            skip(TEST, &format!("no loop device: {e}"));
            return;
        }
    };
    let d = Daemon::start();
    let target = format!("/dev/{vg}");

    // The type is offered once the LVM tools are there.
    let caps = d.virsh_ok(&["pool-capabilities"]);
    assert!(
        caps.contains("<pool type='logical' supported='yes'>"),
        "{caps}"
    );

    d.virsh_ok(&[
        "pool-define-as",
        "lv",
        "logical",
        "--source-dev",
        &lo.dev,
        "--source-name",
        &vg,
        "--target",
        &target,
    ]);
    let xml = d.virsh_ok(&["pool-dumpxml", "lv"]);
    assert!(xml.contains("<pool type='logical'>"), "{xml}");
    assert!(
        xml.contains(&format!(
            "<device path='{}'/>\n    <name>{vg}</name>\n    <format type='lvm2'/>",
            lo.dev
        )),
        "{xml}"
    );
    assert!(xml.contains(&format!("<path>{target}</path>")), "{xml}");

    // Starting before the group exists names the group.
    let r = d.virsh(&["pool-start", "lv"]);
    assert!(!r.ok);
    assert!(
        r.stderr
            .contains(&format!("cannot find logical volume group name '{vg}'")),
        "{}",
        r.stderr
    );

    d.virsh_ok(&["pool-build", "lv"]);
    let pvs = sh(
        "/usr/sbin/pvs",
        &["--noheadings", "-o", "pv_name,vg_name", "--separator", ","],
    )
    .unwrap();
    assert!(pvs.contains(&format!("{},{vg}", lo.dev)), "{pvs}");
    // A second build finds the physical volume and refuses without --overwrite.
    let r = d.virsh(&["pool-build", "lv", "--no-overwrite"]);
    assert!(!r.ok, "{}\n{}", r.stdout, d.log());
    assert!(
        r.stderr.contains(&format!(
            "Device '{}' already formatted using 'LVM2_member'",
            lo.dev
        )),
        "{}",
        r.stderr
    );

    d.virsh_ok(&["pool-start", "lv"]);
    let info = d.virsh_ok(&["pool-info", "--bytes", "lv"]);
    assert_eq!(field(&info, "State"), "running");
    let capacity: u64 = field(&info, "Capacity").parse().unwrap();
    // 64 MiB less LVM's metadata, in 4 MiB extents.
    assert!(
        (56 << 20..=64 << 20).contains(&capacity),
        "capacity {capacity}:\n{info}"
    );
    assert_eq!(field(&info, "Allocation"), "0", "{info}");
    assert_eq!(field(&info, "Available"), capacity.to_string(), "{info}");

    // Discovery lists the group with its physical volume.
    let found = d.virsh_ok(&["find-storage-pool-sources", "logical"]);
    assert!(
        found.contains(&format!(
            "<device path='{}'/>\n    <name>{vg}</name>\n    <format type='lvm2'/>",
            lo.dev
        )),
        "{found}"
    );

    if device_mapper() {
        volumes(&d, &vg, capacity);
    } else {
        // Without device-mapper LVM cannot activate a new LV: its own words come back.
        let r = d.virsh(&["vol-create-as", "lv", "v1", "8M"]);
        assert!(!r.ok);
        assert!(
            r.stderr
                .contains("Child process (/usr/sbin/lvcreate --name v1 -L 8192K")
                && r.stderr.contains("device-mapper"),
            "{}",
            r.stderr
        );
        assert!(!d.virsh_ok(&["vol-list", "lv"]).contains("v1"));
        skip(
            TEST,
            "volume steps: no device-mapper in this kernel (/proc/misc), so LVM cannot \
             activate LVs; pool steps ran",
        );
    }

    d.virsh_ok(&["pool-destroy", "lv"]);
    let info = d.virsh_ok(&["pool-info", "lv"]);
    assert_eq!(field(&info, "State"), "inactive");
    d.virsh_ok(&["pool-delete", "lv"]);
    let pvs = sh("/usr/sbin/pvs", &["--noheadings", "-o", "pv_name"]).unwrap_or_default();
    assert!(!pvs.contains(&lo.dev), "{pvs}");
    assert!(sh("/usr/sbin/vgs", &[&vg]).is_err());
    d.virsh_ok(&["pool-undefine", "lv"]);
    let list = d.virsh_ok(&["pool-list", "--all"]);
    assert!(!list.contains(" lv "), "{list}");
}

/// vol-create-as, vol-list, vol-info, vol-dumpxml, vol-key and vol-delete on the
/// started pool (group `vg` of `capacity` bytes).
fn volumes(d: &Daemon, vg: &str, capacity: u64) {
    d.virsh_ok(&["vol-create-as", "lv", "v1", "8M"]);
    let list = d.virsh_ok(&["vol-list", "lv"]);
    let path = PathBuf::from(format!("/dev/{vg}/v1"));
    assert!(
        list.contains("v1") && list.contains(path.to_str().unwrap()),
        "{list}"
    );
    assert!(path.exists(), "{} is missing", path.display());
    let info = d.virsh_ok(&["vol-info", "--bytes", "v1", "--pool", "lv"]);
    assert_eq!(field(&info, "Type"), "block", "{info}");
    assert_eq!(field(&info, "Capacity"), (8u64 << 20).to_string(), "{info}");
    assert_eq!(
        field(&info, "Allocation"),
        (8u64 << 20).to_string(),
        "{info}"
    );
    let uuid = sh(
        "/usr/sbin/lvs",
        &["--noheadings", "-o", "uuid", &format!("{vg}/v1")],
    )
    .unwrap()
    .trim()
    .to_string();
    let xml = d.virsh_ok(&["vol-dumpxml", "v1", "--pool", "lv"]);
    assert!(xml.starts_with("<volume type='block'>"), "{xml}");
    assert!(xml.contains(&format!("<key>{uuid}</key>")), "{xml}");
    assert!(
        xml.contains(&format!("<path>{}</path>", path.display())),
        "{xml}"
    );
    assert!(xml.contains("<extent start='"), "{xml}");
    assert_eq!(d.virsh_ok(&["vol-key", "v1", "--pool", "lv"]).trim(), uuid);
    assert_eq!(
        d.virsh_ok(&["vol-path", "v1", "--pool", "lv"]).trim(),
        path.to_str().unwrap()
    );
    assert_eq!(
        d.virsh_ok(&["vol-name", &uuid]).trim(),
        "v1",
        "lookup by key"
    );
    let info = d.virsh_ok(&["pool-info", "--bytes", "lv"]);
    assert_eq!(field(&info, "Allocation"), (8u64 << 20).to_string());
    assert_eq!(
        field(&info, "Available"),
        (capacity - (8 << 20)).to_string()
    );
    // An existing name is refused; so is a format an LV cannot have.
    assert!(!d.virsh(&["vol-create-as", "lv", "v1", "4M"]).ok);
    let r = d.virsh(&["vol-create-as", "lv", "q", "4M", "--format", "qcow2"]);
    assert!(
        r.stderr.contains("format 'qcow2' is not supported"),
        "{}",
        r.stderr
    );
    d.virsh_ok(&["vol-wipe", "v1", "--pool", "lv"]);
    d.virsh_ok(&["vol-delete", "v1", "--pool", "lv"]);
    assert!(!path.exists());
    assert!(!d.virsh_ok(&["vol-list", "lv"]).contains("v1"));
    let info = d.virsh_ok(&["pool-info", "--bytes", "lv"]);
    assert_eq!(field(&info, "Allocation"), "0");
}

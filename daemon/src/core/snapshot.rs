//! Domain snapshots, libvirt's internal kind: a named point a domain can go back to,
//! with its domain XML, its parent (the current snapshot when it was taken), and
//!
//! * for a **running or paused** domain, the machine's state (RAM and devices,
//!   written by the VMM as for a save, `save.rs`) — libvirt's
//!   `<memory snapshot='internal'/>`. The guest runs on afterwards. Writable disks
//!   cannot be frozen with it yet (their images are open in the VMM), so a running
//!   domain with one is refused, naming the disk;
//! * for a **shut-off** domain, an internal snapshot in each writable qcow2 disk
//!   (`qemu-img snapshot -c`, as libvirt's QEMU driver does for inactive domains);
//!   a writable raw disk is refused, as libvirt refuses it.
//!
//! Reverting stops a running domain (`shut off (from snapshot)`), puts the disks
//! back (`qemu-img snapshot -a`) and, for a running snapshot, starts the domain
//! from its saved state (`running (from snapshot)`). Metadata lives in
//! `snapshot/DOMAIN/NAME.xml` beside the definitions (libvirt:
//! `/var/lib/libvirt/qemu/snapshot`), the state in `NAME.state`, the current
//! snapshot's name in `.current`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use super::definition::Definition;
use super::save::{self, Incoming};
use super::slot::Slot;
use super::state::State;
use super::{Core, Error, Result};
use crate::storage::xmlutil::{child, child_text, escape};

/// `virDomainSnapshotCreateFlags`.
pub mod create {
    pub const REDEFINE: u32 = 1 << 0;
    pub const CURRENT: u32 = 1 << 1;
    pub const NO_METADATA: u32 = 1 << 2;
    pub const HALT: u32 = 1 << 3;
    pub const DISK_ONLY: u32 = 1 << 4;
    pub const ATOMIC: u32 = 1 << 7;
    pub const VALIDATE: u32 = 1 << 9;
}

/// `virDomainSnapshotListFlags` (the children calls read bit 0 as DESCENDANTS).
pub mod list {
    pub const ROOTS: u32 = 1 << 0;
    pub const DESCENDANTS: u32 = 1 << 0;
    pub const METADATA: u32 = 1 << 1;
    pub const LEAVES: u32 = 1 << 2;
    pub const NO_LEAVES: u32 = 1 << 3;
    pub const NO_METADATA: u32 = 1 << 4;
    pub const INACTIVE: u32 = 1 << 5;
    pub const ACTIVE: u32 = 1 << 6;
    pub const DISK_ONLY: u32 = 1 << 7;
    pub const INTERNAL: u32 = 1 << 8;
    pub const EXTERNAL: u32 = 1 << 9;
    pub const TOPOLOGICAL: u32 = 1 << 10;
    pub const ALL: u32 = (1 << 11) - 1;
}

/// `virDomainSnapshotRevertFlags`.
pub mod revert {
    pub const RUNNING: u32 = 1 << 0;
    pub const PAUSED: u32 = 1 << 1;
    pub const FORCE: u32 = 1 << 2;
}

/// `virDomainSnapshotDeleteFlags`.
pub mod delete {
    pub const CHILDREN: u32 = 1 << 0;
    pub const METADATA_ONLY: u32 = 1 << 1;
    pub const CHILDREN_ONLY: u32 = 1 << 2;
}

/// One snapshot's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snap {
    name: String,
    description: Option<String>,
    /// `running`, `paused` or `shutoff`: the domain's state when taken.
    state: String,
    parent: Option<String>,
    creation_time: i64,
    /// Disks with an internal snapshot (target names); the rest are `no`.
    disks: Vec<(String, bool)>,
    /// The domain XML when taken.
    domain: String,
}

impl Snap {
    fn has_memory(&self) -> bool {
        self.state != "shutoff"
    }

    /// libvirt's `<domainsnapshot>` as `snapshot-dumpxml` shows it.
    fn to_xml(&self) -> String {
        let mut x = String::from("<domainsnapshot>\n");
        x += &format!("  <name>{}</name>\n", escape(&self.name));
        if let Some(d) = &self.description {
            x += &format!("  <description>{}</description>\n", escape(d));
        }
        x += &format!("  <state>{}</state>\n", self.state);
        if let Some(p) = &self.parent {
            x += &format!("  <parent>\n    <name>{}</name>\n  </parent>\n", escape(p));
        }
        x += &format!("  <creationTime>{}</creationTime>\n", self.creation_time);
        x += &format!(
            "  <memory snapshot='{}'/>\n",
            if self.has_memory() { "internal" } else { "no" }
        );
        x += "  <disks>\n";
        for (name, internal) in &self.disks {
            x += &format!(
                "    <disk name='{}' snapshot='{}'/>\n",
                escape(name),
                if *internal { "internal" } else { "no" }
            );
        }
        x += "  </disks>\n";
        for line in self.domain.trim_end().lines() {
            x += &format!("  {line}\n");
        }
        x += "</domainsnapshot>\n";
        x
    }

    /// Reads our own metadata file back.
    fn parse(xml: &str) -> Result<Snap> {
        let doc = roxmltree::Document::parse(xml).map_err(|e| Error::Xml(e.to_string()))?;
        let root = doc.root_element();
        let name = child_text(root, "name")
            .ok_or_else(|| Error::Xml("a snapshot without a name".into()))?
            .to_string();
        // Written indented by two inside <domainsnapshot>: take that back off.
        let domain = child(root, "domain")
            .map(|d| {
                xml[d.range()]
                    .lines()
                    .map(|l| l.strip_prefix("  ").unwrap_or(l))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .ok_or_else(|| Error::Xml(format!("snapshot '{name}' has no domain")))?;
        let disks = child(root, "disks")
            .map(|d| {
                d.children()
                    .filter(|c| c.has_tag_name("disk"))
                    .filter_map(|c| {
                        Some((
                            c.attribute("name")?.to_string(),
                            c.attribute("snapshot") == Some("internal"),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Snap {
            name,
            description: child_text(root, "description").map(str::to_string),
            state: child_text(root, "state").unwrap_or("shutoff").to_string(),
            parent: child(root, "parent")
                .and_then(|p| child_text(p, "name"))
                .map(str::to_string),
            creation_time: child_text(root, "creationTime")
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0),
            disks,
            domain,
        })
    }
}

/// What a `SnapshotCreateXML` request asks for.
#[derive(Debug)]
struct Request {
    name: Option<String>,
    description: Option<String>,
}

/// Reads a client's `<domainsnapshot>`: a name and description; memory and disk
/// choices other than what this driver makes are refused by name.
fn parse_request(xml: &str) -> Result<Request> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| Error::Xml(e.to_string()))?;
    let root = doc.root_element();
    if !root.has_tag_name("domainsnapshot") {
        return Err(Error::Xml(format!(
            "unexpected root element <{}>, expecting <domainsnapshot>",
            root.tag_name().name()
        )));
    }
    if let Some(m) = child(root, "memory").and_then(|m| m.attribute("snapshot")) {
        if m == "external" {
            return Err(Error::ArgumentUnsupported(
                "external memory snapshots are not supported".into(),
            ));
        }
    }
    if let Some(disks) = child(root, "disks") {
        for d in disks.children().filter(|c| c.has_tag_name("disk")) {
            if d.attribute("snapshot") == Some("external") {
                return Err(Error::ArgumentUnsupported(format!(
                    "external snapshot of disk '{}' is not supported",
                    d.attribute("name").unwrap_or("?")
                )));
            }
        }
    }
    let name = child_text(root, "name").map(|n| n.trim().to_string());
    if let Some(n) = &name {
        if n.is_empty() || n.contains('/') || n.starts_with('.') {
            return Err(Error::InvalidArg(format!("invalid snapshot name '{n}'")));
        }
    }
    Ok(Request {
        name,
        description: child_text(root, "description").map(str::to_string),
    })
}

/// A disk of a definition: target, image, whether writable and qcow2.
struct DiskImage {
    target: String,
    path: PathBuf,
    writable: bool,
    qcow2: bool,
}

fn disk_images(spec: &machine_spec::MachineSpec) -> Vec<DiskImage> {
    use machine_spec::{DeviceKind, DiskFormat};
    spec.devices
        .iter()
        .filter_map(|d| match &d.kind {
            DeviceKind::Disk(k) => Some(k),
            DeviceKind::AtaDisk(u) => u.medium.as_ref(),
            DeviceKind::ScsiDisk(u) => u.medium.as_ref(),
            _ => None,
        })
        .map(|k| DiskImage {
            target: k.target.clone(),
            path: k.path.clone(),
            writable: !k.readonly,
            qcow2: matches!(k.format, DiskFormat::Qcow2),
        })
        .collect()
}

/// Runs `qemu-img snapshot OP NAME IMAGE` (the image is not open anywhere).
fn qemu_img_snapshot(op: &str, name: &str, image: &Path) -> Result<()> {
    let out = std::process::Command::new("qemu-img")
        .args(["snapshot", op, name])
        .arg(image)
        .output()
        .map_err(|e| Error::System(format!("cannot run qemu-img: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::OperationFailed(format!(
            "qemu-img snapshot {op} {name} {}: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn no_snapshot(name: &str) -> Error {
    Error::NoSnapshot(format!("no domain snapshot with matching name '{name}'"))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One domain's snapshot directory.
struct Dir(PathBuf);

impl Dir {
    fn xml(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.xml"))
    }
    fn state(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.state"))
    }

    /// Every snapshot, oldest first.
    fn all(&self) -> Result<Vec<Snap>> {
        let entries = match std::fs::read_dir(&self.0) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read", &self.0, &e)),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "xml") {
                let text = std::fs::read_to_string(&p).map_err(|e| Error::io("read", &p, &e))?;
                out.push(Snap::parse(&text)?);
            }
        }
        out.sort_by(|a, b| (a.creation_time, &a.name).cmp(&(b.creation_time, &b.name)));
        Ok(out)
    }

    fn get(&self, name: &str) -> Result<Snap> {
        let p = self.xml(name);
        match std::fs::read_to_string(&p) {
            Ok(t) => Snap::parse(&t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(no_snapshot(name)),
            Err(e) => Err(Error::io("read", &p, &e)),
        }
    }

    fn put(&self, s: &Snap) -> Result<()> {
        super::fsutil::create_dir(&self.0, 0o700)?;
        super::fsutil::write_atomic(&self.xml(&s.name), s.to_xml().as_bytes(), 0o600)
    }

    fn current(&self) -> Option<String> {
        std::fs::read_to_string(self.0.join(".current"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && self.xml(s).exists())
    }

    fn set_current(&self, name: Option<&str>) -> Result<()> {
        let p = self.0.join(".current");
        match name {
            Some(n) => super::fsutil::write_atomic(&p, n.as_bytes(), 0o600),
            None => save::remove_image(&p),
        }
    }
}

/// Whether `s` passes the list filter `flags` (within `all`, for leaves).
fn listed(s: &Snap, all: &[Snap], flags: u32) -> bool {
    let leaf = !all.iter().any(|o| o.parent.as_deref() == Some(&s.name));
    let group = |a: u32, b: u32, is_a: bool| super::flags::pair_filter(flags, a, b, is_a);
    let state_set = flags & (list::INACTIVE | list::ACTIVE | list::DISK_ONLY);
    let state_ok = state_set == 0
        || (s.has_memory() && state_set & list::ACTIVE != 0)
        || (!s.has_memory() && state_set & list::INACTIVE != 0);
    group(list::LEAVES, list::NO_LEAVES, leaf)
        && group(list::METADATA, list::NO_METADATA, true)
        && group(list::INTERNAL, list::EXTERNAL, true)
        && state_ok
}

impl Core {
    fn snapshot_dir(&self, domain: &str) -> Dir {
        Dir(self
            .inner
            .config
            .domains_dir
            .parent()
            .unwrap_or(Path::new("/"))
            .join("snapshot")
            .join(domain))
    }

    fn snap_dir_of(&self, uuid: &Uuid) -> Result<(Arc<Slot>, Dir)> {
        let slot = self.slot(uuid)?;
        let dir = self.snapshot_dir(&slot.name());
        Ok((slot, dir))
    }

    /// virDomainSnapshotCreateXML: returns the new snapshot's name.
    pub async fn snapshot_create(&self, uuid: &Uuid, xml: &str, flags: u32) -> Result<String> {
        use create::*;
        Error::check_flags(
            flags,
            REDEFINE | CURRENT | NO_METADATA | HALT | DISK_ONLY | ATOMIC | VALIDATE,
            "virDomainSnapshotCreateXML",
        )?;
        if flags & (REDEFINE | CURRENT | NO_METADATA | DISK_ONLY) != 0 {
            return Err(Error::ArgumentUnsupported(
                "redefining, metadata-less and disk-only snapshots are not supported".into(),
            ));
        }
        let req = parse_request(xml)?;
        let (slot, dir) = self.snap_dir_of(uuid)?;
        let _job = slot.job.lock().await;
        let name = req.name.unwrap_or_else(|| now().to_string());
        if dir.xml(&name).exists() {
            return Err(Error::OperationInvalid(format!(
                "snapshot '{name}' already exists"
            )));
        }
        let (state, mut def) = {
            let r = slot.rec();
            (r.state.state, r.current().clone())
        };
        let active = !matches!(state, State::Shutoff | State::NoState);
        self.resolve_volumes(&mut def)?;
        let disks = disk_images(&def.translate()?);
        let mut snap = Snap {
            name: name.clone(),
            description: req.description,
            state: match state {
                State::Running => "running",
                State::Paused => "paused",
                _ => "shutoff",
            }
            .into(),
            parent: dir.current(),
            creation_time: now(),
            disks: Vec::new(),
            domain: def.to_xml(true),
        };
        if active {
            if let Some(d) = disks.iter().find(|d| d.writable) {
                return Err(Error::OperationUnsupported(format!(
                    "a snapshot of a running domain cannot include its writable disk '{}' yet; shut the domain off to snapshot its disks",
                    d.target
                )));
            }
            snap.disks = disks.iter().map(|d| (d.target.clone(), false)).collect();
            super::fsutil::create_dir(&dir.0, 0o700)?;
            let vm = Self::running_vm(&slot)?;
            self.save_running(&slot, &vm, &dir.state(&name), state == State::Running, true)
                .await?;
        } else {
            if let Some(d) = disks.iter().find(|d| d.writable && !d.qcow2) {
                return Err(Error::ConfigUnsupported(format!(
                    "internal snapshot for disk {} unsupported for storage type raw",
                    d.target
                )));
            }
            let mut done: Vec<&DiskImage> = Vec::new();
            for d in disks.iter().filter(|d| d.writable) {
                if let Err(e) = qemu_img_snapshot("-c", &name, &d.path) {
                    for u in done {
                        let _ = qemu_img_snapshot("-d", &name, &u.path);
                    }
                    return Err(e);
                }
                done.push(d);
            }
            snap.disks = disks
                .iter()
                .map(|d| (d.target.clone(), d.writable))
                .collect();
        }
        dir.put(&snap)?;
        dir.set_current(Some(&name))?;
        if active && flags & HALT != 0 {
            let vm = Self::running_vm(&slot)?;
            vm.end_as(
                super::state::shutoff::FROM_SNAPSHOT,
                super::event::detail::stopped::FROM_SNAPSHOT,
            )
            .await;
        }
        Ok(name)
    }

    /// The names of the domain's snapshots that pass `flags` (ROOTS: those without
    /// a parent), oldest first.
    pub fn snapshot_names(&self, uuid: &Uuid, flags: u32) -> Result<Vec<String>> {
        Error::check_flags(flags, list::ALL, "virDomainListAllSnapshots")?;
        let (_, dir) = self.snap_dir_of(uuid)?;
        let all = dir.all()?;
        Ok(all
            .iter()
            .filter(|s| flags & list::ROOTS == 0 || s.parent.is_none())
            .filter(|s| listed(s, &all, flags))
            .map(|s| s.name.clone())
            .collect())
    }

    /// The children of snapshot `name` (all descendants with DESCENDANTS).
    pub fn snapshot_children(&self, uuid: &Uuid, name: &str, flags: u32) -> Result<Vec<String>> {
        Error::check_flags(flags, list::ALL, "virDomainSnapshotListAllChildren")?;
        let (_, dir) = self.snap_dir_of(uuid)?;
        dir.get(name)?;
        let all = dir.all()?;
        let mut parents = vec![name.to_string()];
        let mut out = Vec::new();
        while let Some(p) = parents.pop() {
            for s in all.iter().filter(|s| s.parent.as_deref() == Some(&p)) {
                if listed(s, &all, flags) {
                    out.push(s.name.clone());
                }
                if flags & list::DESCENDANTS != 0 {
                    parents.push(s.name.clone());
                }
            }
        }
        Ok(out)
    }

    /// virDomainSnapshotGetXMLDesc.
    pub fn snapshot_xml(&self, uuid: &Uuid, name: &str, flags: u32) -> Result<String> {
        // SECURE (1), MIGRATABLE (8): nothing secret or host-specific is kept.
        Error::check_flags(flags, 1 | 8, "virDomainSnapshotGetXMLDesc")?;
        let (_, dir) = self.snap_dir_of(uuid)?;
        Ok(dir.get(name)?.to_xml())
    }

    /// Snapshot `name` exists (virDomainSnapshotLookupByName).
    pub fn snapshot_lookup(&self, uuid: &Uuid, name: &str) -> Result<()> {
        self.snap_dir_of(uuid)?.1.get(name).map(drop)
    }

    /// The current snapshot, if any.
    pub fn snapshot_current(&self, uuid: &Uuid) -> Result<Option<String>> {
        Ok(self.snap_dir_of(uuid)?.1.current())
    }

    /// virDomainSnapshotGetParent, with libvirt's error for a root.
    pub fn snapshot_parent(&self, uuid: &Uuid, name: &str) -> Result<String> {
        let (_, dir) = self.snap_dir_of(uuid)?;
        dir.get(name)?
            .parent
            .ok_or_else(|| Error::NoSnapshot(format!("snapshot '{name}' does not have a parent")))
    }

    /// virDomainRevertToSnapshot.
    pub async fn snapshot_revert(&self, uuid: &Uuid, name: &str, flags: u32) -> Result<()> {
        use revert::*;
        Error::check_flags(flags, RUNNING | PAUSED | FORCE, "virDomainRevertToSnapshot")?;
        if flags & RUNNING != 0 && flags & PAUSED != 0 {
            return Err(Error::InvalidArg(
                "running and paused flags are mutually exclusive".into(),
            ));
        }
        let (slot, dir) = self.snap_dir_of(uuid)?;
        let _job = slot.job.lock().await;
        let snap = dir.get(name)?;
        let def = Definition::parse(&snap.domain)?;
        // Whatever runs now stops, as libvirt's revert does.
        if let Ok(vm) = Self::running_vm(&slot) {
            vm.end_as(
                super::state::shutoff::FROM_SNAPSHOT,
                super::event::detail::stopped::FROM_SNAPSHOT,
            )
            .await;
        }
        let mut resolved = def.clone();
        self.resolve_volumes(&mut resolved)?;
        let images = disk_images(&resolved.translate()?);
        for (target, internal) in &snap.disks {
            if !internal {
                continue;
            }
            let d = images.iter().find(|d| &d.target == target).ok_or_else(|| {
                Error::OperationInvalid(format!(
                    "disk '{target}' of snapshot '{name}' is not in its domain definition"
                ))
            })?;
            qemu_img_snapshot("-a", name, &d.path)?;
        }
        dir.set_current(Some(name))?;
        let run = if snap.has_memory() {
            Some(Incoming {
                path: dir.state(name),
                offset: save::read_image(&dir.state(name))?.offset,
                running: match (flags & RUNNING != 0, flags & PAUSED != 0) {
                    (true, _) => true,
                    (_, true) => false,
                    _ => snap.state == "running",
                },
                snapshot: true,
            })
        } else {
            None
        };
        match run {
            Some(incoming) => self.boot_from(&slot, def, false, Some(incoming)).await,
            // A shut-off snapshot stays off unless asked to run.
            None if flags & (RUNNING | PAUSED) != 0 => {
                self.boot(&slot, def, flags & PAUSED != 0).await
            }
            None => Ok(()),
        }
    }

    /// virDomainSnapshotDelete: its metadata, state and disk snapshots go; its
    /// children move to its parent (or go too with CHILDREN, only they with
    /// CHILDREN_ONLY).
    pub async fn snapshot_delete(&self, uuid: &Uuid, name: &str, flags: u32) -> Result<()> {
        use delete::*;
        Error::check_flags(
            flags,
            CHILDREN | METADATA_ONLY | CHILDREN_ONLY,
            "virDomainSnapshotDelete",
        )?;
        let (slot, dir) = self.snap_dir_of(uuid)?;
        let _job = slot.job.lock().await;
        let snap = dir.get(name)?;
        let mut doomed = Vec::new();
        if flags & (CHILDREN | CHILDREN_ONLY) != 0 {
            doomed = self.snapshot_children(uuid, name, list::DESCENDANTS)?;
        }
        if flags & CHILDREN_ONLY == 0 {
            doomed.push(name.to_string());
        }
        let all = dir.all()?;
        let current = dir.current();
        for n in &doomed {
            let s = all.iter().find(|s| &s.name == n).unwrap_or(&snap);
            if flags & METADATA_ONLY == 0 {
                self.remove_snapshot_data(&dir, s)?;
            }
            // Children left behind move up to the parent.
            for c in all.iter().filter(|c| c.parent.as_deref() == Some(n)) {
                if !doomed.contains(&c.name) {
                    let mut c = c.clone();
                    c.parent = s.parent.clone();
                    dir.put(&c)?;
                }
            }
            save::remove_image(&dir.xml(n))?;
            if current.as_deref() == Some(n) {
                let up = s.parent.clone().filter(|p| !doomed.contains(p));
                dir.set_current(up.as_deref())?;
            }
        }
        Ok(())
    }

    /// The state file and disk snapshots of `s`.
    fn remove_snapshot_data(&self, dir: &Dir, s: &Snap) -> Result<()> {
        save::remove_image(&dir.state(&s.name))?;
        if s.disks.iter().any(|(_, internal)| *internal) {
            let mut def = Definition::parse(&s.domain)?;
            self.resolve_volumes(&mut def)?;
            for d in disk_images(&def.translate()?) {
                if s.disks
                    .iter()
                    .any(|(t, internal)| *internal && *t == d.target)
                    && d.path.exists()
                {
                    qemu_img_snapshot("-d", &s.name, &d.path)?;
                }
            }
        }
        Ok(())
    }

    /// How many snapshots the domain has (for undefine's check).
    pub(super) fn snapshot_count(&self, name: &str) -> usize {
        self.snapshot_dir(name).all().map(|v| v.len()).unwrap_or(0)
    }

    /// Forgets every snapshot's metadata and state of domain `name` (undefine with
    /// SNAPSHOTS_METADATA; disk snapshots stay in the images, as libvirt leaves them).
    pub(super) fn snapshot_forget_all(&self, name: &str) -> Result<()> {
        let dir = self.snapshot_dir(name);
        match std::fs::remove_dir_all(&dir.0) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &dir.0, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, parent: Option<&str>, state: &str) -> Snap {
        Snap {
            name: name.into(),
            description: Some("a <test>".into()),
            state: state.into(),
            parent: parent.map(str::to_string),
            creation_time: 1_700_000_000,
            disks: vec![("vda".into(), true), ("hdc".into(), false)],
            domain: "<domain type='kvm'>\n  <name>d</name>\n</domain>".into(),
        }
    }

    #[test]
    fn metadata_round_trips_as_libvirt_writes_it() {
        let s = snap("s1", Some("s0"), "running");
        let x = s.to_xml();
        assert!(x.contains("<memory snapshot='internal'/>"), "{x}");
        assert!(x.contains("<disk name='vda' snapshot='internal'/>"), "{x}");
        assert!(x.contains("<parent>\n    <name>s0</name>"), "{x}");
        assert!(
            x.contains("<description>a &lt;test&gt;</description>"),
            "{x}"
        );
        assert_eq!(Snap::parse(&x).unwrap(), s);
        assert!(snap("s", None, "shutoff")
            .to_xml()
            .contains("<memory snapshot='no'/>"));
    }

    #[test]
    fn requests_take_a_name_and_refuse_external_parts() {
        let r = parse_request("<domainsnapshot><name>a</name></domainsnapshot>").unwrap();
        assert_eq!(r.name.as_deref(), Some("a"));
        assert!(parse_request("<domainsnapshot/>").unwrap().name.is_none());
        assert!(parse_request("<domain/>").is_err());
        assert!(parse_request("<domainsnapshot><name>a/b</name></domainsnapshot>").is_err());
        let e = parse_request(
            "<domainsnapshot><memory snapshot='external' file='/x'/></domainsnapshot>",
        )
        .unwrap_err();
        assert!(matches!(e, Error::ArgumentUnsupported(_)), "{e}");
    }

    #[test]
    fn list_filters_leaves_and_kinds() {
        let all = vec![snap("a", None, "shutoff"), snap("b", Some("a"), "running")];
        assert!(!listed(&all[0], &all, list::LEAVES));
        assert!(listed(&all[1], &all, list::LEAVES));
        assert!(listed(&all[0], &all, list::INACTIVE));
        assert!(!listed(&all[0], &all, list::ACTIVE));
        assert!(listed(&all[1], &all, list::ACTIVE | list::INACTIVE));
    }
}

//! Block nodes added over QMP (`blockdev-add`), the way libvirt 9 brings a new
//! CD medium: a protocol node (`driver: file`, `filename`) and a format node
//! (`driver: raw|qcow2`, `file`: the protocol node's name, or the protocol
//! node inline), then `blockdev-insert-medium` with the format node's name.
//!
//! A node here only names an image and its format; the image is opened (and
//! checked) when the node is added, and again when it goes into a drive.

use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{Map, Value};

use super::{MediaError, MediumFile, MediumFormat, OpenedMedium};

/// One named node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub path: PathBuf,
    /// `None`: a protocol (`file`) node, read as raw when inserted itself.
    pub format: Option<MediumFormat>,
    /// The protocol node a format node sits on, when it was named.
    pub child: Option<String>,
    /// `read-only` (a hot-plugged disk's, `virtio/hotplug.rs`).
    pub read_only: bool,
}

impl Node {
    /// The medium this node is.
    pub fn medium(&self) -> MediumFile {
        MediumFile {
            path: self.path.clone(),
            format: self.format.unwrap_or(MediumFormat::Raw),
            node_name: self.name.clone(),
        }
    }
}

/// The nodes added so far.
#[derive(Default)]
pub struct NodeTable {
    nodes: Mutex<Vec<Node>>,
}

/// Options of `blockdev-add` that change nothing for a read-only CD medium.
const IGNORED: &[&str] = &[
    "read-only",
    "auto-read-only",
    "discard",
    "cache",
    "detect-zeroes",
    "force-share",
    "aio",
    "locking",
];

impl NodeTable {
    /// `blockdev-add`: adds the node `args` describe (and an inline child).
    pub fn add(&self, args: &Map<String, Value>) -> Result<(), MediaError> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let node = parse(args, &nodes, true)?;
        if let Some(n) = nodes.iter().find(|n| n.name == node.name) {
            return Err(MediaError::NodeExists(n.name.clone()));
        }
        // Open it now, as QEMU does, so a bad image fails here.
        match node.format {
            Some(_) => drop(OpenedMedium::open(&node.name, node.medium())?),
            None => {
                crate::files::open(&node.path, crate::files::Access::READ).map_err(|e| {
                    MediaError::Open {
                        path: node.path.display().to_string(),
                        reason: super::strip_os_error(&e),
                    }
                })?;
            }
        }
        nodes.push(node);
        Ok(())
    }

    /// Names the medium a drive starts with, as libvirt's `-blockdev` would, so
    /// that `blockdev-del` after its removal finds it.
    pub fn insert_existing(&self, node: Node) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|n| n.name != node.name);
        nodes.push(node);
    }

    /// `blockdev-del`: removes a node no drive and no other node uses.
    pub fn remove(&self, name: &str, in_a_drive: bool) -> Result<(), MediaError> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let i = nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| MediaError::NoSuchNode(name.to_string()))?;
        if in_a_drive || nodes.iter().any(|n| n.child.as_deref() == Some(name)) {
            return Err(MediaError::NodeBusy(name.to_string()));
        }
        nodes.remove(i);
        Ok(())
    }

    /// The node called `name`.
    pub fn get(&self, name: &str) -> Option<Node> {
        self.nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|n| n.name == name)
            .cloned()
    }
}

/// The node's `read-only` option.
fn read_only(args: &Map<String, Value>) -> bool {
    args.get("read-only")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Reads one node's options; `top` says whether it needs a node name (an
/// inline child does not).
fn parse(args: &Map<String, Value>, nodes: &[Node], top: bool) -> Result<Node, MediaError> {
    let driver = args
        .get("driver")
        .and_then(Value::as_str)
        .ok_or_else(|| MediaError::Options("Parameter 'driver' is missing".into()))?;
    let name = match args.get("node-name") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(MediaError::Options(
                "Invalid parameter type for 'node-name', expected: string".into(),
            ))
        }
        None if top => {
            return Err(MediaError::Options(
                "A block device must be given a name (node-name) when added".into(),
            ))
        }
        None => String::new(),
    };
    let known = |extra: &[&str]| -> Result<(), MediaError> {
        match args.keys().find(|k| {
            !["driver", "node-name"].contains(&k.as_str())
                && !IGNORED.contains(&k.as_str())
                && !extra.contains(&k.as_str())
        }) {
            Some(k) => Err(MediaError::Options(format!("Invalid parameter '{k}'"))),
            None => Ok(()),
        }
    };
    match driver {
        "file" | "host_device" | "host_cdrom" => {
            known(&["filename"])?;
            let path = args
                .get("filename")
                .and_then(Value::as_str)
                .ok_or_else(|| MediaError::Options("Parameter 'filename' is missing".into()))?;
            Ok(Node {
                name,
                path: PathBuf::from(path),
                format: None,
                child: None,
                read_only: read_only(args),
            })
        }
        "raw" | "qcow2" => {
            known(&["file"])?;
            let format = MediumFormat::from_driver(driver);
            let (path, child) = match args.get("file") {
                Some(Value::String(child)) => {
                    let c = nodes
                        .iter()
                        .find(|n| &n.name == child)
                        .ok_or_else(|| MediaError::NodeNotFound(child.clone()))?;
                    if c.format.is_some() {
                        return Err(MediaError::Options(format!(
                            "Node '{child}' is a format node; 'file' must name a protocol node"
                        )));
                    }
                    (c.path.clone(), Some(child.clone()))
                }
                Some(Value::Object(inline)) => {
                    let c = parse(inline, nodes, false)?;
                    if c.format.is_some() {
                        return Err(MediaError::Options(
                            "'file' must be a protocol node (driver 'file')".into(),
                        ));
                    }
                    (c.path, None)
                }
                _ => {
                    return Err(MediaError::Options(
                        "Parameter 'file' is missing".to_string(),
                    ))
                }
            };
            Ok(Node {
                name,
                path,
                format,
                child,
                read_only: read_only(args),
            })
        }
        other => Err(MediaError::Options(format!(
            "Block driver '{other}' is not supported by oxvirt-vmm (file, host_device, host_cdrom, raw and qcow2 are)"
        ))),
    }
}

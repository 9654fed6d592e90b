//! Per-domain runtime directories: `<runtime>/domains/NAME/` holds what a running
//! domain needs and what a restarted daemon reads to find it again:
//! `spec.json` (the VMM's input), `pid`, `qmp.sock`, `console.log` (serial output
//! sent to the daemon), `log` (the VMM's stderr), `domain.xml` (the live
//! definition) and `status.json` ([`Status`]).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::fsutil;
use super::state::StateReason;

/// What the daemon records about a running domain, rewritten on every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub uuid: uuid::Uuid,
    pub name: String,
    pub id: i32,
    pub persistent: bool,
    pub state: StateReason,
    /// The VMM's pid (also in `pid`, which the VMM writes itself).
    pub pid: i32,
    /// The last QMP `SHUTDOWN` reason seen (`guest-shutdown`, `guest-panic`, …),
    /// used to classify the exit of a VMM the daemon cannot `wait` for.
    #[serde(default)]
    pub shutdown_reason: Option<String>,
    /// A host-initiated stop is in progress (destroy), so an exit is not a crash.
    #[serde(default)]
    pub stopping: bool,
}

/// One domain's runtime directory.
#[derive(Debug, Clone)]
pub struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// The directory of domain `name` under the runtime root.
    pub fn new(root: &Path, name: &str) -> RuntimeDir {
        RuntimeDir {
            path: root.join("domains").join(name),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn spec(&self) -> PathBuf {
        self.path.join("spec.json")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.path.join("pid")
    }
    pub fn qmp(&self) -> PathBuf {
        self.path.join("qmp.sock")
    }
    pub fn console(&self) -> PathBuf {
        self.path.join("console.log")
    }
    pub fn log(&self) -> PathBuf {
        self.path.join("log")
    }
    pub fn live_xml(&self) -> PathBuf {
        self.path.join("domain.xml")
    }
    fn status_file(&self) -> PathBuf {
        self.path.join("status.json")
    }

    /// Creates the directory (0700), clearing what a previous run left behind.
    pub fn create(&self) -> Result<()> {
        if self.path.exists() {
            self.remove()?;
        }
        fsutil::create_dir(&self.path, 0o700)
    }

    /// Removes the directory and everything in it.
    pub fn remove(&self) -> Result<()> {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove directory", &self.path, &e)),
        }
    }

    pub fn write_status(&self, status: &Status) -> Result<()> {
        let json = serde_json::to_vec_pretty(status)
            .map_err(|e| Error::Internal(format!("cannot serialise status: {e}")))?;
        fsutil::write_atomic(&self.status_file(), &json, 0o600)
    }

    pub fn read_status(&self) -> Result<Status> {
        let p = self.status_file();
        let text = fs::read_to_string(&p).map_err(|e| Error::io("read file", &p, &e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Internal(format!("malformed status file '{}': {e}", p.display())))
    }

    /// The last `bytes` of the VMM log, for error messages about a failed start.
    pub fn log_tail(&self, bytes: usize) -> String {
        let text = fs::read(self.log()).unwrap_or_default();
        let start = text.len().saturating_sub(bytes);
        String::from_utf8_lossy(&text[start..]).trim().to_string()
    }
}

/// Every domain runtime dir under `root`.
pub fn scan(root: &Path) -> Vec<RuntimeDir> {
    let dir = root.join("domains");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<RuntimeDir> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| RuntimeDir { path: e.path() })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Whether `pid` is still the VMM that serves `qmp`: the process exists and its
/// command line names that QMP socket (a recycled pid would not).
pub fn vmm_alive(pid: i32, qmp: &Path) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    if is_zombie(pid) {
        return false;
    }
    let want = qmp.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == want)
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// CPU time (user + system) of a process in nanoseconds, from `/proc/PID/stat`.
pub fn cpu_time_ns(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the comm: state is index 0, utime 11, stime 12 (proc(5) 14 and 15).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let hz = 100u64; // USER_HZ is 100 on every Linux ABI we run on.
    Some((utime + stime) * (1_000_000_000 / hz))
}

/// Resident set size of a process in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::{running, State};

    #[test]
    fn status_round_trips_and_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::new(root.path(), "vm1");
        rt.create().unwrap();
        let mode = fs::metadata(rt.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let st = Status {
            uuid: uuid::Uuid::new_v4(),
            name: "vm1".into(),
            id: 3,
            persistent: true,
            state: StateReason::new(State::Running, running::BOOTED),
            pid: 42,
            shutdown_reason: None,
            stopping: false,
        };
        rt.write_status(&st).unwrap();
        assert_eq!(rt.read_status().unwrap(), st);
        assert_eq!(scan(root.path()).len(), 1);
        rt.remove().unwrap();
        assert!(scan(root.path()).is_empty());
    }

    #[test]
    fn own_process_is_not_a_vmm_for_another_socket() {
        let me = std::process::id() as i32;
        assert!(!vmm_alive(me, Path::new("/nonexistent/qmp.sock")));
        assert!(cpu_time_ns(me).is_some());
        assert!(rss_kib(me).unwrap() > 0);
    }
}

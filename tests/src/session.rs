//! An unprivileged user's oxvirtd, as a desktop runs it: `oxvirtd --session` as
//! `nobody` (with the `kvm` group, like a desktop user), its own session bus, XDG
//! directories in a temporary home, and clients run as the same user with the same
//! environment, so `qemu:///session` and `oxvirt:///session` resolve to that daemon
//! through libvirt's own socket lookup (no `?socket=`).

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bin_path;
use crate::cmd::Run;

/// The unprivileged user (Debian's `nobody`/`nogroup`).
pub const UID: u32 = 65534;

/// A session daemon run as [`UID`].
pub struct SessionDaemon {
    pub dir: tempfile::TempDir,
    daemon: Option<Child>,
    dbus: Child,
}

impl SessionDaemon {
    /// Starts dbus-daemon and `oxvirtd --session ARGS…` as [`UID`]; waits for the
    /// read-write socket. Returns the daemon's log as the error when it exits first.
    pub fn start(args: &[&str]) -> Result<SessionDaemon, String> {
        let dir = tempfile::Builder::new()
            .prefix("oxvirt-session-")
            .tempdir()
            .expect("temporary directory");
        let p = dir.path();
        for sub in ["run", "home", "files"] {
            std::fs::create_dir(p.join(sub)).unwrap();
        }
        let st = Command::new("chown")
            .args(["-R", &format!("{UID}:{UID}")])
            .arg(p)
            .status()
            .expect("chown");
        assert!(st.success());
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let bus = p.join("bus");
        let dbus = as_user(
            Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--nopidfile"])
                .arg(format!("--address=unix:path={}", bus.display())),
            p,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon as nobody (Debian package dbus)");
        let mut s = SessionDaemon {
            dir,
            daemon: None,
            dbus,
        };
        s.wait_for(&bus, "dbus-daemon");
        let log = std::fs::File::create(s.dir.path().join("oxvirtd.log")).unwrap();
        let daemon = as_user(
            Command::new(bin_path("oxvirtd")).arg("--session"),
            s.dir.path(),
        )
        .args(args)
        .env("OXVIRTD_LOG", "info,daemon::rpc=debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("oxvirtd as nobody");
        s.daemon = Some(daemon);
        let sock = s.socket_dir().join("virtoxvirtd-sock");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_socket(&sock) {
            if let Some(Ok(Some(st))) = s.daemon.as_mut().map(Child::try_wait) {
                return Err(format!("oxvirtd exited ({st}):\n{}", s.log()));
            }
            assert!(
                Instant::now() < deadline,
                "oxvirtd did not start:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(s)
    }

    /// `$XDG_RUNTIME_DIR/libvirt`: where libvirt's client looks for session sockets.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("run/libvirt")
    }

    /// A directory the user owns, for guest kernels and images.
    pub fn files(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    /// Copies `src` into [`Self::files`] (readable by the user); returns the copy's path.
    pub fn give(&self, src: &Path) -> PathBuf {
        let dst = self.files().join(src.file_name().unwrap());
        std::fs::copy(src, &dst).expect("copying a file for the session user");
        let _ = Command::new("chown")
            .arg(format!("{UID}:{UID}"))
            .arg(&dst)
            .status();
        dst
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("oxvirtd.log")).unwrap_or_default()
    }

    /// Runs `PROGRAM ARGS…` as the user, in its environment, killed after `limit`.
    pub fn run(&self, program: &str, args: &[&str], limit: Duration) -> Run {
        let mut c = Command::new(program);
        c.args(args);
        as_user(&mut c, self.dir.path());
        run_bounded(c, limit)
    }

    /// `program` as the user, in its environment, for servers a test runs beside the
    /// daemon (cockpit-ws); add arguments and spawn it.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        as_user(&mut c, self.dir.path());
        c
    }

    /// `virsh -c URI ARGS…` as the user; fails the test with the daemon log on error.
    pub fn virsh_ok(&self, uri: &str, args: &[&str]) -> String {
        let mut all = vec!["-c", uri];
        all.extend_from_slice(args);
        let r = self.run("virsh", &all, Duration::from_secs(90));
        assert!(
            r.ok,
            "virsh {all:?} failed:\n{}\n{}\n--- oxvirtd log:\n{}",
            r.stdout,
            r.stderr,
            self.log()
        );
        r.stdout
    }

    fn wait_for(&self, path: &Path, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_socket(path) {
            assert!(Instant::now() < deadline, "{what} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SessionDaemon {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.as_mut() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
        // Domains' VMMs are children of the daemon's session; stop any left — only
        // this session's (their runtime files are under its directory), so tests that
        // run beside this one as the same user keep theirs.
        let _ = Command::new("pkill")
            .args(["-KILL", "-U", &UID.to_string(), "-f"])
            .arg(format!("oxvirt-vmm .*{}/", self.dir.path().display()))
            .status();
    }
}

/// Makes `c` run as [`UID`] with the `kvm` group and a session environment under `home`.
fn as_user<'a>(c: &'a mut Command, home: &Path) -> &'a mut Command {
    let program = c.get_program().to_owned();
    let args: Vec<_> = c.get_args().map(|a| a.to_owned()).collect();
    let kvm_gid = nix::unistd::Group::from_name("kvm")
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
        .unwrap_or(UID);
    *c = Command::new("setpriv");
    c.args([
        &format!("--reuid={UID}"),
        &format!("--regid={UID}"),
        &format!("--groups={kvm_gid}"),
        "--",
    ])
    .arg(program)
    .args(args)
    .env_clear()
    .env("HOME", home.join("home"))
    .env("XDG_RUNTIME_DIR", home.join("run"))
    .env("XDG_CONFIG_HOME", home.join("home/.config"))
    .env("XDG_DATA_HOME", home.join("home/.local/share"))
    .env(
        "DBUS_SESSION_BUS_ADDRESS",
        format!("unix:path={}", home.join("bus").display()),
    )
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    // No real libvirt daemon may be spawned to answer in our place.
    .env("LIBVIRT_AUTOSTART", "0")
    .env("LANG", "C.UTF-8")
}

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// Runs `c`, killing it after `limit`.
fn run_bounded(mut c: Command, limit: Duration) -> Run {
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {:?}: {e}", c.get_program()));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("waiting for a client").into(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            Run {
                ok: false,
                stdout: String::new(),
                stderr: format!("timed out after {limit:?}"),
            }
        }
    }
}

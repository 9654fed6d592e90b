//! A private libvirtd (Debian's libvirt-daemon) run as `nobody` in a temporary
//! directory: an unprivileged session daemon that touches nothing of the host's, for
//! tests that compare oxvirtd's answers with libvirt's own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxvirt_tests::{skip, test_guests};

use super::{is_socket, virsh};

/// Which of libvirtd's drivers the test talks to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// `test:///default`: built in, no guests run.
    Test,
    /// `qemu:///session`: domains run on QEMU (TCG) with user-mode networking; the
    /// oxtest guest is copied to [`Libvirtd::guest_kernel`], where `nobody` can read it.
    Qemu,
}

pub struct Libvirtd {
    pub dir: tempfile::TempDir,
    driver: Driver,
    child: Child,
}

impl Libvirtd {
    /// Starts libvirtd for `driver`, or prints SKIPPED for `test` (naming the Debian
    /// package) and returns `None` when the host lacks it.
    pub fn start(test: &str, driver: Driver) -> Option<Libvirtd> {
        let mut needs = vec![("/usr/sbin/libvirtd", "libvirt-daemon")];
        if driver == Driver::Qemu {
            needs.extend([
                (
                    "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so",
                    "libvirt-daemon-driver-qemu",
                ),
                ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
            ]);
        }
        for (path, package) in needs {
            if !Path::new(path).exists() {
                skip(test, &format!("{path} missing (Debian package {package})"));
                return None;
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("oxvirt-libvirtd-")
            .tempdir()
            .unwrap();
        let p = dir.path();
        for sub in ["sock", "run", "home"] {
            std::fs::create_dir(p.join(sub)).unwrap();
        }
        std::fs::write(
            p.join("libvirtd.conf"),
            format!(
                "unix_sock_dir = \"{}/sock\"\nunix_sock_rw_perms = \"0777\"\n\
                 auth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n",
                p.display()
            ),
        )
        .unwrap();
        if driver == Driver::Qemu {
            std::fs::copy(&test_guests().elf, p.join("oxtest.elf")).unwrap();
        }
        // The unprivileged user must own its directories.
        let st = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let log = std::fs::File::create(p.join("libvirtd.log")).unwrap();
        let child = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/sbin/libvirtd",
            ])
            .arg("--config")
            .arg(p.join("libvirtd.conf"))
            .arg("--pid-file")
            .arg(p.join("run/pid"))
            .args(["--timeout", "0"])
            .env_clear()
            .env("HOME", p.join("home"))
            .env("XDG_RUNTIME_DIR", p.join("run"))
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("setpriv + libvirtd");
        let lv = Libvirtd { dir, driver, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_socket(&lv.socket()) {
            assert!(
                Instant::now() < deadline,
                "libvirtd did not start:\n{}",
                lv.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(lv)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("sock/libvirt-sock")
    }

    /// The URI of the driver it was started for, on its private socket.
    pub fn uri(&self) -> String {
        let base = match self.driver {
            Driver::Test => "test+unix:///default",
            Driver::Qemu => "qemu+unix:///session",
        };
        format!("{base}?socket={}", self.socket().display())
    }

    /// The oxtest guest's kernel where QEMU (as `nobody`) can read it ([`Driver::Qemu`]).
    pub fn guest_kernel(&self) -> PathBuf {
        self.dir.path().join("oxtest.elf")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("libvirtd.log")).unwrap_or_default()
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        // QEMU processes first (they would outlive the daemon).
        if self.driver == Driver::Qemu {
            let r = virsh(&self.uri(), &["list", "--name"]);
            for name in r.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let _ = virsh(&self.uri(), &["destroy", name]);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

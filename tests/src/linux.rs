//! Debian's cloud kernel and busybox, fetched with `apt-get download` into the cache.
//!
//! The kernel package ships a bzImage whose payload is the LZ4-compressed ELF vmlinux;
//! we take that ELF out (like `scripts/extract-vmlinux`) to boot it through its PVH note.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{bail, ensure, Context};

use crate::cache::{build_once, cache_dir};
use crate::cpio::{archive, Entry};

/// The Debian metapackage that names the current cloud kernel.
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";

/// A Debian cloud kernel in both boot formats.
#[derive(Debug, Clone)]
pub struct DebianKernel {
    /// Binary package, e.g. `linux-image-6.1.0-56-cloud-amd64`.
    pub package: String,
    /// The bzImage from `/boot`.
    pub vmlinuz: PathBuf,
    /// The ELF vmlinux from inside it (has the PVH note).
    pub vmlinux: PathBuf,
}

/// Names a directory with the kernel's `vmlinuz` and `vmlinux` (the cache's
/// `linux/<package>/`, whose name is the package's): then neither apt-cache nor
/// apt-get runs (the nested-SVM guest has no apt).
pub const KERNEL_DIR_VAR: &str = "OXVIRT_DEBIAN_KERNEL_DIR";

/// Fetches (once) and returns the Debian cloud kernel, or takes it from the directory
/// [`KERNEL_DIR_VAR`] names.
pub fn debian_kernel() -> anyhow::Result<&'static DebianKernel> {
    static KERNEL: OnceLock<Result<DebianKernel, String>> = OnceLock::new();
    KERNEL
        .get_or_init(|| fetch_kernel().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The binary package the metapackage depends on (apt's package lists must be present).
fn kernel_package() -> anyhow::Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", KERNEL_METAPACKAGE])
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .with_context(|| {
            format!(
                "apt-cache depends {KERNEL_METAPACKAGE} names no kernel (run apt-get update?): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

fn fetch_kernel() -> anyhow::Result<DebianKernel> {
    if let Some(dir) = std::env::var_os(KERNEL_DIR_VAR) {
        return given_kernel(Path::new(&dir));
    }
    let package = kernel_package()?;
    let dir = cache_dir().join("linux").join(&package);
    build_once(&dir, |tmp| {
        let deb = apt_download(&package, tmp)?;
        let sh = format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -xO --wildcards './boot/vmlinuz-*' > '{}'",
            deb.display(),
            tmp.join("vmlinuz").display()
        );
        run_sh(&sh).context("extracting /boot/vmlinuz from the kernel package")?;
        std::fs::remove_file(&deb)?;
        let bz = std::fs::read(tmp.join("vmlinuz"))?;
        let elf = vmlinux_from_bzimage(&bz)?;
        std::fs::write(tmp.join("vmlinux"), elf)?;
        Ok(())
    })?;
    Ok(DebianKernel {
        package,
        vmlinuz: dir.join("vmlinuz"),
        vmlinux: dir.join("vmlinux"),
    })
}

fn given_kernel(dir: &Path) -> anyhow::Result<DebianKernel> {
    let k = DebianKernel {
        package: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        vmlinuz: dir.join("vmlinuz"),
        vmlinux: dir.join("vmlinux"),
    };
    for f in [&k.vmlinuz, &k.vmlinux] {
        ensure!(
            f.is_file(),
            "{KERNEL_DIR_VAR}={}: no {}",
            dir.display(),
            f.display()
        );
    }
    Ok(k)
}

/// The one kernel WARNING a guest kernel prints under nested SVM inside QEMU TCG, a TCG
/// artefact (after the guest's XSETBV, CPUID 0xD.0 EBX still gives the XCR0=x87|SSE
/// size): `WARNING: CPU: 0 PID: 0 at arch/x86/kernel/fpu/xstate.c:… XSAVE consistency
/// problem …`. Not seen on hardware KVM.
pub const NESTED_SVM_XSAVE_WARNING: &str = "XSAVE consistency problem";

/// The kernel `WARNING:` lines of a guest console, less the one [`NESTED_SVM_XSAVE_WARNING`] when
/// `kind` is nested SVM: a test that checks a guest log for warnings checks this is empty.
pub fn unexpected_kernel_warnings(console: &str, kind: crate::KvmKind) -> Vec<String> {
    let lines: Vec<&str> = console.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut tolerated = kind == crate::KvmKind::NestedSvm;
    let mut found = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !l.contains("WARNING:") {
            continue;
        }
        // WARN()'s message is printed on the line before `WARNING: CPU: … at file:line`.
        let prev = if i > 0 { lines[i - 1] } else { "" };
        let xsave = l.contains(NESTED_SVM_XSAVE_WARNING) || prev.contains(NESTED_SVM_XSAVE_WARNING);
        if xsave && tolerated {
            tolerated = false; // exactly one
            continue;
        }
        found.push(l.to_string());
    }
    found
}

/// `apt-get download PKG` into `dir`; returns the .deb path.
fn apt_download(package: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new("apt-get")
        .args(["download", "-q", package])
        .current_dir(dir)
        .output()
        .context("running apt-get download")?;
    ensure!(
        out.status.success(),
        "apt-get download {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))
}

fn run_sh(script: &str) -> anyhow::Result<()> {
    let out = Command::new("sh").args(["-c", script]).output()?;
    ensure!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The ELF vmlinux inside a bzImage: the setup header's `payload_offset`/`payload_length`
/// locate the compressed kernel (LZ4 legacy frames here, plus a 4-byte size trailer);
/// `lz4` decompresses it and the relocation table after the ELF is cut off.
pub fn vmlinux_from_bzimage(bz: &[u8]) -> anyhow::Result<Vec<u8>> {
    ensure!(
        bz.len() > 0x270 && &bz[0x202..0x206] == b"HdrS",
        "not a bzImage"
    );
    let setup_sects = match bz[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let off = u32::from_le_bytes(bz[0x248..0x24c].try_into()?) as usize;
    let len = u32::from_le_bytes(bz[0x24c..0x250].try_into()?) as usize;
    let start = (setup_sects + 1) * 512 + off;
    let payload = bz
        .get(start..start + len)
        .context("bzImage payload out of range")?;
    if payload.starts_with(&[0x02, 0x21, 0x4c, 0x18])
        || payload.starts_with(&[0x04, 0x22, 0x4d, 0x18])
    {
        let mut elf = lz4_decompress(&payload[..payload.len() - 4])?;
        trim_elf(&mut elf)?;
        Ok(elf)
    } else if payload.starts_with(b"\x7fELF") {
        Ok(payload.to_vec())
    } else {
        bail!(
            "bzImage payload is compressed with something other than LZ4 (magic {:02x?})",
            &payload[..4.min(payload.len())]
        )
    }
}

fn lz4_decompress(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new("lz4")
        .args(["-d", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running lz4 (Debian package lz4)")?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output()?;
    writer.join().expect("writer thread")?;
    ensure!(
        out.status.success() && out.stdout.starts_with(b"\x7fELF"),
        "lz4 -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// Cuts whatever follows the ELF file (the kernel's relocation table).
fn trim_elf(elf: &mut Vec<u8>) -> anyhow::Result<()> {
    ensure!(elf.len() > 64 && elf[4] == 2, "not an ELF64 file");
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    let u16_at = |o: usize| u64::from(u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()));
    let (phoff, shoff) = (u64_at(0x20), u64_at(0x28));
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    let (shentsize, shnum) = (u16_at(0x3a), u16_at(0x3c));
    let mut end = (shoff + shentsize * shnum).max(phoff + phentsize * phnum);
    for i in 0..phnum {
        let p = (phoff + i * phentsize) as usize;
        end = end.max(u64_at(p + 8) + u64_at(p + 32));
    }
    ensure!(end as usize <= elf.len(), "ELF is truncated");
    elf.truncate(end as usize);
    Ok(())
}

/// Debian's static busybox binary (package busybox-static), fetched once.
pub fn busybox() -> anyhow::Result<PathBuf> {
    let dir = cache_dir().join("busybox-static");
    build_once(&dir, |tmp| {
        let deb = apt_download("busybox-static", tmp)?;
        let sh = format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -xO ./bin/busybox > '{}' && chmod 755 '{}'",
            deb.display(),
            tmp.join("busybox").display(),
            tmp.join("busybox").display()
        );
        run_sh(&sh).context("extracting busybox")?;
        std::fs::remove_file(deb)?;
        Ok(())
    })?;
    Ok(dir.join("busybox"))
}

/// The `/init` of [`busybox_initramfs`]: prints what Linux sees, then powers off or
/// reboots as the kernel command line's `oxlinux.exit=poweroff|reboot|stay` says.
pub const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
cpus=$(grep -c ^processor /proc/cpuinfo)
mem=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
echo "OXLINUX READY cpus=$cpus memtotal_kb=$mem uptime=$(cut -d' ' -f1 /proc/uptime)"
case " $(cat /proc/cmdline) " in
  *" oxlinux.exit=reboot "*) echo "OXLINUX rebooting"; reboot -f ;;
  *" oxlinux.exit=stay "*) exec sh ;;
  *) echo "OXLINUX powering off"; poweroff -f ;;
esac
sleep 1000
"#;

/// An uncompressed initramfs with busybox and [`INIT_SCRIPT`], cached by content.
pub fn busybox_initramfs() -> anyhow::Result<PathBuf> {
    let bb = std::fs::read(busybox()?)?;
    let cpio = archive(&[
        Entry::Dir("bin"),
        Entry::Dir("dev"),
        Entry::Dir("proc"),
        Entry::Dir("sys"),
        Entry::CharDev {
            path: "dev/console",
            major: 5,
            minor: 1,
        },
        Entry::File {
            path: "bin/busybox",
            mode: 0o755,
            data: &bb,
        },
        Entry::Symlink {
            path: "bin/sh",
            target: "busybox",
        },
        Entry::File {
            path: "init",
            mode: 0o755,
            data: INIT_SCRIPT.as_bytes(),
        },
    ]);
    let mut h = crate::cache::Fnv::default();
    h.write(&cpio);
    let path = cache_dir().join(format!("initramfs-{}.cpio", h.hex()));
    if !path.is_file() {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &cpio)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::unexpected_kernel_warnings;
    use crate::KvmKind;

    const XSAVE: &str = "[    0.000000] ------------[ cut here ]------------\r\n\
        [    0.000000] XSAVE consistency problem: size 2696 != kernel_size 576\r\n\
        [    0.000000] WARNING: CPU: 0 PID: 0 at arch/x86/kernel/fpu/xstate.c:606 fpu__init_system_xstate+0x4a7/0x5c0\r\n";
    const OTHER: &str = "[    1.0] WARNING: CPU: 1 PID: 1 at kernel/foo.c:1 bar+0x1/0x2\n";

    #[test]
    fn nested_svm_tolerates_exactly_the_xsave_warning() {
        assert!(unexpected_kernel_warnings(XSAVE, KvmKind::NestedSvm).is_empty());
        assert_eq!(
            unexpected_kernel_warnings(XSAVE, KvmKind::Hardware).len(),
            1
        );
        let twice = format!("{XSAVE}{XSAVE}");
        assert_eq!(
            unexpected_kernel_warnings(&twice, KvmKind::NestedSvm).len(),
            1
        );
        let both = format!("{XSAVE}{OTHER}");
        let found = unexpected_kernel_warnings(&both, KvmKind::NestedSvm);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("kernel/foo.c"));
    }
}

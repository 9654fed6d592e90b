//! Prepares the test assets and prints their paths (for humans, `scripts/demo`, bench/):
//!
//!     oxvirt-test-assets guests      # oxtest.elf and oxtest.bzImage, built from tests/guests
//!     oxvirt-test-assets kernel      # Debian cloud kernel: vmlinuz and vmlinux
//!     oxvirt-test-assets initramfs   # busybox initramfs for the full Linux tests

use anyhow::bail;

fn main() -> anyhow::Result<()> {
    let what = std::env::args().nth(1).unwrap_or_else(|| "guests".into());
    match what.as_str() {
        "guests" => {
            let g = oxvirt_tests::test_guests();
            println!("{}\n{}", g.elf.display(), g.bzimage.display());
        }
        "kernel" => {
            let k = oxvirt_tests::linux::debian_kernel()?;
            println!("{}\n{}", k.vmlinuz.display(), k.vmlinux.display());
        }
        "initramfs" => println!("{}", oxvirt_tests::linux::busybox_initramfs()?.display()),
        other => bail!("unknown asset {other:?}: guests | kernel | initramfs"),
    }
    Ok(())
}

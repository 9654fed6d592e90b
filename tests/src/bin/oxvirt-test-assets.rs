//! Prepares the test assets and prints their paths (for humans, `scripts/demo`, bench/):
//!
//!     oxvirt-test-assets guests      # oxtest.elf and oxtest.bzImage, built from tests/guests
//!     oxvirt-test-assets kernel      # Debian cloud kernel: vmlinuz and vmlinux
//!     oxvirt-test-assets initramfs   # busybox initramfs for the full Linux tests
//!     oxvirt-test-assets bootsector  # the 512-byte BIOS boot sector (guests/bootsector)
//!     oxvirt-test-assets bootdisk PATH [TAG]  # writes a 1 MiB bootable disk image there
//!     oxvirt-test-assets esp PATH    # writes a UEFI disk image (ESP with guests/efi's app)

use anyhow::bail;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "guests".into());
    match what.as_str() {
        "guests" => {
            let g = oxvirt_tests::test_guests();
            // One write for both lines: a reader that stops after the first (`head -1`)
            // must not make the second one fail on a closed pipe.
            let lines = format!("{}\n{}\n", g.elf.display(), g.bzimage.display());
            std::io::Write::write_all(&mut std::io::stdout(), lines.as_bytes())?;
        }
        "kernel" => {
            let k = oxvirt_tests::linux::debian_kernel()?;
            let lines = format!("{}\n{}\n", k.vmlinuz.display(), k.vmlinux.display());
            std::io::Write::write_all(&mut std::io::stdout(), lines.as_bytes())?;
        }
        "initramfs" => println!("{}", oxvirt_tests::linux::busybox_initramfs()?.display()),
        "bootsector" => println!("{}", oxvirt_tests::test_guests().bootsector.display()),
        "bootdisk" => {
            let Some(path) = args.next() else {
                bail!("usage: oxvirt-test-assets bootdisk PATH [TAG]");
            };
            let tag = args.next().unwrap_or_else(|| "A".into());
            oxvirt_tests::guests::boot_disk(path.as_ref(), &tag)?;
            println!("{path}");
        }
        "esp" => {
            let Some(path) = args.next() else {
                bail!("usage: oxvirt-test-assets esp PATH");
            };
            oxvirt_tests::guests::esp_disk(path.as_ref())?;
            println!("{path}");
        }
        other => bail!(
            "unknown asset {other:?}: guests | kernel | initramfs | bootsector | bootdisk PATH [TAG] | esp PATH"
        ),
    }
    Ok(())
}

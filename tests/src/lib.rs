//! Integration-test harness: guest images, VMM processes, consoles, timeouts.
//!
//! * [`guests`] builds our own test guests (`tests/guests/`) once per source change into
//!   `${OXVIRT_CACHE:-$HOME/.cache/oxvirt}/guests/<hash>/`.
//! * [`spec`] makes `MachineSpec`s and domain XML for a guest.
//! * [`vm::Vm`] runs `oxvirt-vmm`, collects the serial console from whichever backend the
//!   spec names (stdio, file, pty, unix socket) and the log, waits with timeouts, and
//!   prints both when a wait fails.
//! * [`linux`] fetches Debian's cloud kernel (bzImage and the ELF vmlinux inside it) and
//!   builds busybox initramfs images, for the Linux tests.
//! * [`host`] tells what this host's KVM can do, for tests that must skip; [`net`]
//!   whether a test may create taps, and the guest's link reports.
//! * [`disk`] writes the images the guest's virtio-blk driver checks.
//! * [`rfb_client`] speaks RFB to the VNC server as a viewer does (keys, pointer).
//! * [`oxvirtd`] writes the configuration of a private daemon; [`cmd::Run`] is what a
//!   client command did.
#![forbid(unsafe_code)]

pub mod cache;
pub mod cmd;
pub mod cpio;
pub mod disk;
pub mod guests;
pub mod host;
pub mod linux;
pub mod net;
pub mod oxtest;
pub mod oxvirtd;
pub mod rfb_client;
pub mod session;
pub mod spec;
pub mod vm;

pub use guests::{test_guests, TestGuests};
pub use host::{emulated_kvm, kvm_kind, kvm_usable, require_hardware_like_kvm, skip, KvmKind};
pub use spec::{domain_xml, oxtest_spec, spec, SerialBackend};
pub use vm::{bin_path, Vm, GUEST_TIMEOUT};

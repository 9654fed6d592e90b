//! A machine's state in a file: what QMP `migrate` to a descriptor writes and what a
//! spec's `incoming` reads back (libvirt's `virsh save`/`restore` and managed save,
//! which drive QEMU the same way).
//!
//! The stream is ours, not QEMU's migration format (libvirt never looks inside it):
//!
//! ```text
//! "OXVMSTAT" | version: u32 LE | header length: u64 LE | header (JSON) | RAM regions
//! ```
//!
//! The header holds the KVM state of the VM (PIC, IOAPIC, PIT, kvmclock) and of each
//! vCPU (registers, XSAVE, LAPIC, MSRs, pending events), every device's state by
//! name, and the RAM layout; the regions follow in that order, each as runs of up to
//! 256 pages: a 32-byte bitmap of the pages that are not all zero, then those pages
//! (a restored machine's RAM starts zeroed, so zero pages cost 1 bit). A machine
//! with a device that cannot save its state refuses to save, naming the device
//! (QEMU's migration blockers), rather than writing a stream that restores wrong.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use kvm_bindings::{
    kvm_clock_data, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry,
    kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs,
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::{VcpuFd, VmFd};
use serde::{Deserialize, Serialize};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

const MAGIC: &[u8; 8] = b"OXVMSTAT";
const VERSION: u32 = 1;
/// A header larger than this is not ours (it is a few hundred KiB with many vCPUs).
const MAX_HEADER: u64 = 256 << 20;
/// RAM goes in runs of this many pages, each led by a bitmap of its non-zero pages.
const PAGE: usize = 4096;
const RUN_PAGES: usize = 256;
const RUN: usize = PAGE * RUN_PAGES;

/// Errors of saving or restoring.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("KVM refused {0}")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    #[error("cannot {0} the state stream")]
    Io(&'static str, #[source] std::io::Error),
    #[error("not an oxvirt machine state stream (bad magic)")]
    Magic,
    #[error("machine state stream version {0} is not supported (this VMM reads {VERSION})")]
    Version(u32),
    #[error("the state stream's header is damaged: {0}")]
    Header(String),
    #[error("the saved machine does not match this one: {0}")]
    Mismatch(String),
    #[error("device '{0}' cannot save its state; the machine cannot be saved")]
    Blocked(String),
    #[error("device '{0}': {1}")]
    Device(String, String),
    #[error("guest memory: {0}")]
    Memory(String),
}

/// What KVM keeps of the VM outside the vCPUs.
#[derive(Serialize, Deserialize)]
pub struct VmState {
    pic_master: kvm_irqchip,
    pic_slave: kvm_irqchip,
    ioapic: kvm_irqchip,
    pit: kvm_pit_state2,
    clock: kvm_clock_data,
}

/// What KVM keeps of one vCPU.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    mp_state: kvm_mp_state,
    regs: kvm_regs,
    sregs: kvm_sregs,
    xsave: kvm_xsave,
    xcrs: kvm_xcrs,
    debugregs: kvm_debugregs,
    lapic: kvm_lapic_state,
    msrs: Vec<kvm_msr_entry>,
    events: kvm_vcpu_events,
}

/// The header of a state stream.
#[derive(Serialize, Deserialize)]
pub struct MachineState {
    /// RAM regions: (guest address, length), in stream order.
    pub regions: Vec<(u64, u64)>,
    pub vm: VmState,
    pub vcpus: Vec<VcpuState>,
    /// Device states by device name (the serial ports, the PCI functions, …).
    pub devices: BTreeMap<String, serde_json::Value>,
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> StateError {
    move |e| StateError::Kvm(what, e)
}

fn irqchip(vm: &VmFd, chip: u32) -> Result<kvm_irqchip, StateError> {
    let mut c = kvm_irqchip {
        chip_id: chip,
        ..Default::default()
    };
    vm.get_irqchip(&mut c).map_err(kvm("KVM_GET_IRQCHIP"))?;
    Ok(c)
}

impl VmState {
    /// Reads the in-kernel PIC, IOAPIC, PIT and clock (vCPUs stopped).
    pub fn capture(vm: &VmFd) -> Result<Self, StateError> {
        Ok(VmState {
            pic_master: irqchip(vm, KVM_IRQCHIP_PIC_MASTER)?,
            pic_slave: irqchip(vm, KVM_IRQCHIP_PIC_SLAVE)?,
            ioapic: irqchip(vm, KVM_IRQCHIP_IOAPIC)?,
            pit: vm.get_pit2().map_err(kvm("KVM_GET_PIT2"))?,
            clock: vm.get_clock().map_err(kvm("KVM_GET_CLOCK"))?,
        })
    }

    /// Writes it back into a new VM, before its vCPUs run.
    pub fn apply(&self, vm: &VmFd) -> Result<(), StateError> {
        // The clock as it was, without the flags KVM_SET_CLOCK rejects.
        let clock = kvm_clock_data {
            clock: self.clock.clock,
            ..Default::default()
        };
        vm.set_clock(&clock).map_err(kvm("KVM_SET_CLOCK"))?;
        vm.set_pit2(&self.pit).map_err(kvm("KVM_SET_PIT2"))?;
        for c in [&self.pic_master, &self.pic_slave, &self.ioapic] {
            vm.set_irqchip(c).map_err(kvm("KVM_SET_IRQCHIP"))?;
        }
        Ok(())
    }
}

/// Reads the MSRs of `indices` that this vCPU has; those KVM lists but cannot read
/// here (a feature the guest's CPUID hides) are skipped.
fn read_msrs(vcpu: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, StateError> {
    let mut out = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(256)];
        let entries: Vec<kvm_msr_entry> = chunk
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries)
            .map_err(|_| StateError::Kvm("KVM_GET_MSRS", kvm_ioctls::Error::new(libc::E2BIG)))?;
        let n = vcpu.get_msrs(&mut msrs).map_err(kvm("KVM_GET_MSRS"))?;
        out.extend_from_slice(&msrs.as_slice()[..n]);
        // KVM stops at the first MSR it cannot read: skip that one and go on.
        let used = if n < chunk.len() { n + 1 } else { n };
        rest = &rest[used..];
    }
    Ok(out)
}

impl VcpuState {
    /// Reads a stopped vCPU. `msr_indices` are KVM's list of MSRs to save.
    pub fn capture(vcpu: &VcpuFd, msr_indices: &[u32]) -> Result<Self, StateError> {
        Ok(VcpuState {
            mp_state: vcpu.get_mp_state().map_err(kvm("KVM_GET_MP_STATE"))?,
            regs: vcpu.get_regs().map_err(kvm("KVM_GET_REGS"))?,
            sregs: vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?,
            xsave: vcpu.get_xsave().map_err(kvm("KVM_GET_XSAVE"))?,
            xcrs: vcpu.get_xcrs().map_err(kvm("KVM_GET_XCRS"))?,
            debugregs: vcpu.get_debug_regs().map_err(kvm("KVM_GET_DEBUGREGS"))?,
            lapic: vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?,
            msrs: read_msrs(vcpu, msr_indices)?,
            events: vcpu.get_vcpu_events().map_err(kvm("KVM_GET_VCPU_EVENTS"))?,
        })
    }

    /// Writes it into a new vCPU whose CPUID is set, in the order KVM needs:
    /// special registers before MSRs (EFER), the LAPIC before pending events.
    pub fn apply(&self, vcpu: &VcpuFd) -> Result<(), StateError> {
        vcpu.set_sregs(&self.sregs).map_err(kvm("KVM_SET_SREGS"))?;
        vcpu.set_regs(&self.regs).map_err(kvm("KVM_SET_REGS"))?;
        // SAFETY: the buffer came from KVM_GET_XSAVE on a vCPU with the same CPUID.
        unsafe { vcpu.set_xsave(&self.xsave) }.map_err(kvm("KVM_SET_XSAVE"))?;
        vcpu.set_xcrs(&self.xcrs).map_err(kvm("KVM_SET_XCRS"))?;
        vcpu.set_debug_regs(&self.debugregs)
            .map_err(kvm("KVM_SET_DEBUGREGS"))?;
        vcpu.set_lapic(&self.lapic).map_err(kvm("KVM_SET_LAPIC"))?;
        let msrs = Msrs::from_entries(&self.msrs)
            .map_err(|_| StateError::Kvm("KVM_SET_MSRS", kvm_ioctls::Error::new(libc::E2BIG)))?;
        let n = vcpu.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
        if n != self.msrs.len() {
            let bad = self.msrs[n].index;
            return Err(StateError::Mismatch(format!(
                "KVM refused MSR {bad:#x} ({n} of {} restored)",
                self.msrs.len()
            )));
        }
        vcpu.set_vcpu_events(&self.events)
            .map_err(kvm("KVM_SET_VCPU_EVENTS"))?;
        vcpu.set_mp_state(self.mp_state)
            .map_err(kvm("KVM_SET_MP_STATE"))?;
        Ok(())
    }
}

/// The RAM regions of `mem`: (guest address, length).
pub fn regions(mem: &GuestMemoryMmap) -> Vec<(u64, u64)> {
    mem.iter().map(|r| (r.start_addr().0, r.len())).collect()
}

/// Writes the stream: header, then every RAM region of `mem`.
pub fn write(
    out: &mut impl Write,
    state: &MachineState,
    mem: &GuestMemoryMmap,
) -> Result<u64, StateError> {
    let header = serde_json::to_vec(state).map_err(|e| StateError::Header(e.to_string()))?;
    let io = |e| StateError::Io("write", e);
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&VERSION.to_le_bytes()).map_err(io)?;
    out.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(io)?;
    out.write_all(&header).map_err(io)?;
    let mut total = (MAGIC.len() + 12 + header.len()) as u64;
    let mut buf = vec![0u8; RUN];
    let mut pagemap = Pagemap::open();
    for &(addr, len) in &state.regions {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(RUN as u64) as usize;
            let at = GuestAddress(addr + done);
            // Pages the kernel never backed (neither present nor swapped) are zero
            // without reading them; the others are read and looked at.
            let backed = mem
                .get_host_address(at)
                .ok()
                .and_then(|host| pagemap.as_mut()?.backed(host as u64, n.div_ceil(PAGE)));
            let mut bitmap = [0u8; RUN_PAGES / 8];
            for (i, start) in (0..n).step_by(PAGE).enumerate() {
                if backed.is_some_and(|b| b[i / 64] & (1 << (i % 64)) == 0) {
                    continue;
                }
                let page = &mut buf[start..(start + PAGE).min(n)];
                mem.read_slice(page, GuestAddress(at.0 + start as u64))
                    .map_err(|e| StateError::Memory(e.to_string()))?;
                if !is_zero(page) {
                    bitmap[i / 8] |= 1 << (i % 8);
                }
            }
            out.write_all(&bitmap).map_err(io)?;
            total += bitmap.len() as u64;
            for (i, start) in (0..n).step_by(PAGE).enumerate() {
                if bitmap[i / 8] & (1 << (i % 8)) != 0 {
                    let page = &buf[start..(start + PAGE).min(n)];
                    out.write_all(page).map_err(io)?;
                    total += page.len() as u64;
                }
            }
            done += n as u64;
        }
    }
    out.flush().map_err(io)?;
    Ok(total)
}

/// Reads a stream's header; the RAM follows in `input`.
pub fn read_header(input: &mut impl Read) -> Result<MachineState, StateError> {
    let io = |e| StateError::Io("read", e);
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic).map_err(io)?;
    if &magic != MAGIC {
        return Err(StateError::Magic);
    }
    let mut word = [0u8; 4];
    input.read_exact(&mut word).map_err(io)?;
    let version = u32::from_le_bytes(word);
    if version != VERSION {
        return Err(StateError::Version(version));
    }
    let mut len = [0u8; 8];
    input.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER {
        return Err(StateError::Header(format!("{len} bytes long")));
    }
    let mut header = vec![0u8; len as usize];
    input.read_exact(&mut header).map_err(io)?;
    serde_json::from_slice(&header).map_err(|e| StateError::Header(e.to_string()))
}

/// Reads the RAM that follows the header into `mem`, whose layout must match and
/// which must be all zeros (a new machine's, nothing loaded): zero pages are skipped.
pub fn read_memory(
    input: &mut impl Read,
    state: &MachineState,
    mem: &GuestMemoryMmap,
) -> Result<(), StateError> {
    let have = regions(mem);
    if have != state.regions {
        return Err(StateError::Mismatch(format!(
            "RAM regions {:x?}, this machine has {have:x?}",
            state.regions
        )));
    }
    let mut page = vec![0u8; PAGE];
    for &(addr, len) in &state.regions {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(RUN as u64) as usize;
            let mut bitmap = [0u8; RUN_PAGES / 8];
            input
                .read_exact(&mut bitmap)
                .map_err(|e| StateError::Io("read", e))?;
            for (i, start) in (0..n).step_by(PAGE).enumerate() {
                if bitmap[i / 8] & (1 << (i % 8)) == 0 {
                    continue;
                }
                let len = PAGE.min(n - start);
                input
                    .read_exact(&mut page[..len])
                    .map_err(|e| StateError::Io("read", e))?;
                mem.write_slice(&page[..len], GuestAddress(addr + done + start as u64))
                    .map_err(|e| StateError::Memory(e.to_string()))?;
            }
            done += n as u64;
        }
    }
    Ok(())
}

/// `/proc/self/pagemap`: which pages of the VMM's own memory the kernel backs. Guest
/// RAM is a private or memfd mapping whose pages the guest never touched are neither
/// present nor swapped out, and read as zeros: a save skips them without reading
/// (with most of a large guest's RAM untouched, reading it is most of the time).
struct Pagemap(std::fs::File);

impl Pagemap {
    fn open() -> Option<Pagemap> {
        std::fs::File::open("/proc/self/pagemap").ok().map(Pagemap)
    }

    /// A bit per page (up to 256) from host address `host`: set when the page is
    /// present or swapped, i.e. may hold something. `None` when it cannot be read.
    fn backed(&mut self, host: u64, pages: usize) -> Option<[u64; 4]> {
        use std::os::unix::fs::FileExt;
        let mut raw = vec![0u8; pages * 8];
        self.0
            .read_exact_at(&mut raw, host / PAGE as u64 * 8)
            .ok()?;
        let mut bits = [0u64; 4];
        for (i, e) in raw.chunks_exact(8).enumerate() {
            let e = u64::from_le_bytes(e.try_into().expect("8 bytes"));
            // Bit 63: present; bit 62: swapped.
            if e & (3 << 62) != 0 {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        Some(bits)
    }
}

/// Whether a page is all zeros (sixteen bytes at a time).
fn is_zero(page: &[u8]) -> bool {
    let mut words = page.chunks_exact(16);
    words.all(|w| u128::from_ne_bytes(w.try_into().expect("16 bytes")) == 0)
        && words.remainder().iter().all(|&b| b == 0)
}

/// A device whose state goes into the stream under its name.
pub trait Stateful {
    /// Its state now (the vCPUs are stopped).
    fn save_state(&self) -> serde_json::Value;
    /// Takes a saved state; the device was just built from the same spec.
    fn restore_state(&mut self, state: &serde_json::Value) -> Result<(), String>;
}

/// Serialises a plain state struct (cannot fail for the structs devices use).
pub fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Deserialises a device's saved state.
pub fn from_value<T: for<'de> Deserialize<'de>>(v: &serde_json::Value) -> Result<T, String> {
    T::deserialize(v).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_has_magic_version_header_and_ram() {
        // 2 MiB (two runs of 256 pages), one page not zero.
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap();
        mem.write_slice(b"hello", GuestAddress(0x10_1000)).unwrap();
        let state = MachineState {
            regions: regions(&mem),
            vm: VmState {
                pic_master: Default::default(),
                pic_slave: Default::default(),
                ioapic: Default::default(),
                pit: Default::default(),
                clock: Default::default(),
            },
            vcpus: Vec::new(),
            devices: BTreeMap::from([("serial0".to_string(), serde_json::json!({"a": 1}))]),
        };
        let mut out = Vec::new();
        let n = write(&mut out, &state, &mem).unwrap();
        assert_eq!(n, out.len() as u64);
        assert_eq!(&out[..8], MAGIC);
        let header = u64::from_le_bytes(out[12..20].try_into().unwrap()) as usize;
        assert_eq!(
            out.len(),
            20 + header + 2 * 32 + 4096,
            "only the one page is in it"
        );

        let mut input = &out[..];
        let back = read_header(&mut input).unwrap();
        assert_eq!(back.devices["serial0"]["a"], 1);
        let fresh = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap();
        read_memory(&mut input, &back, &fresh).unwrap();
        let mut got = [0u8; 5];
        fresh.read_slice(&mut got, GuestAddress(0x10_1000)).unwrap();
        assert_eq!(&got, b"hello");
        assert!(input.is_empty());

        // Another layout, another magic, another version: refused by name.
        let other = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let mut input = &out[..];
        let back = read_header(&mut input).unwrap();
        assert!(matches!(
            read_memory(&mut input, &back, &other),
            Err(StateError::Mismatch(_))
        ));
        let mut bad = out.clone();
        bad[0] = b'X';
        assert!(matches!(read_header(&mut &bad[..]), Err(StateError::Magic)));
        let mut bad = out.clone();
        bad[8] = 9;
        assert!(matches!(
            read_header(&mut &bad[..]),
            Err(StateError::Version(9))
        ));
    }
}

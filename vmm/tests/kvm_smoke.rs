//! KVM smoke tests with tiny inline guests (hand-assembled 32-bit code in an
//! ELF32 PVH image), driving the VMM through its library API and control handle:
//! serial output, ACPI S5, the power button, pause/resume, reset, quit, and a
//! crash report with RIP and instruction bytes.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use machine_spec::*;
use vmm::{Outcome, RunState, VmControl, VmEvent, Vmm};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Guest physical address the code is loaded at and entered.
const LOAD: u32 = 0x10_0000;

fn kvm_available(test: &str) -> bool {
    if Path::new("/dev/kvm").exists() {
        return true;
    }
    eprintln!("SKIPPED {test}: /dev/kvm does not exist on this host");
    false
}

/// An ELF32 image with one PT_LOAD of `code` at `LOAD` and a PVH entry note.
fn pvh_elf32(code: &[u8]) -> Vec<u8> {
    let mut note = Vec::new();
    for v in [4u32, 4, 18] {
        note.extend_from_slice(&v.to_le_bytes());
    }
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&LOAD.to_le_bytes());
    let note_off = 52 + 2 * 32;
    let code_off = note_off + note.len() as u32;
    let mut f = vec![0u8; 52];
    f[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
    f[16..18].copy_from_slice(&2u16.to_le_bytes());
    f[18..20].copy_from_slice(&3u16.to_le_bytes());
    f[24..28].copy_from_slice(&LOAD.to_le_bytes());
    f[28..32].copy_from_slice(&52u32.to_le_bytes());
    f[42..44].copy_from_slice(&32u16.to_le_bytes());
    f[44..46].copy_from_slice(&2u16.to_le_bytes());
    for (kind, off, addr, size) in [
        (1u32, code_off, LOAD, code.len() as u32),
        (4, note_off, 0, note.len() as u32),
    ] {
        let mut p = [0u8; 32];
        p[0..4].copy_from_slice(&kind.to_le_bytes());
        p[4..8].copy_from_slice(&off.to_le_bytes());
        p[8..12].copy_from_slice(&addr.to_le_bytes());
        p[12..16].copy_from_slice(&addr.to_le_bytes());
        p[16..20].copy_from_slice(&size.to_le_bytes());
        p[20..24].copy_from_slice(&size.to_le_bytes());
        f.extend_from_slice(&p);
    }
    f.extend_from_slice(&note);
    f.extend_from_slice(code);
    f
}

/// `mov dx, 0x3f8` then `mov al, c; out dx, al` for each byte.
fn print(s: &[u8]) -> Vec<u8> {
    let mut c = vec![0x66, 0xba, 0xf8, 0x03];
    for &b in s {
        c.extend_from_slice(&[0xb0, b, 0xee]);
    }
    c
}

/// ACPI S5 through PM1a_CNT (SLP_TYP=5, SLP_EN), then halt forever.
fn poweroff() -> Vec<u8> {
    vec![
        0x66, 0xba, 0x04, 0x06, // mov dx, 0x604
        0x66, 0xb8, 0x00, 0x34, // mov ax, 0x3400
        0x66, 0xef, // out dx, ax
        0xf4, // hlt
        0xeb, 0xfd, // jmp hlt
    ]
}

fn spec(dir: &Path, code: &[u8], cpus: u32) -> MachineSpec {
    let kernel = dir.join("guest.elf");
    std::fs::write(&kernel, pvh_elf32(code)).unwrap();
    MachineSpec {
        version: SPEC_VERSION,
        name: "smoke".into(),
        uuid: "c7a5fdbd-cdaf-9455-926a-d65c16db1809".into(),
        memory: Memory {
            size_bytes: 64 << 20,
            shared: false,
            hugepages: false,
        },
        cpus: Cpus {
            count: cpus,
            max: cpus,
            topology: Topology {
                sockets: 1,
                dies: 1,
                cores: cpus,
                threads: 1,
            },
            mode: CpuMode::HostPassthrough,
            features: vec![],
            model: None,
        },
        boot: Boot {
            firmware: None,
            kernel: Some(kernel),
            initrd: None,
            cmdline: String::new(),
        },
        platform: Platform {
            chipset: Default::default(),
            acpi_pci_hotplug: false,
            rtc: Default::default(),
            acpi: true,
            apic: true,
            hyperv: None,
        },
        lifecycle: Lifecycle {
            on_poweroff: LifecycleAction::Destroy,
            on_reboot: LifecycleAction::Restart,
            on_crash: LifecycleAction::Destroy,
        },
        devices: vec![Device {
            boot_index: None,
            id: "serial0".into(),
            pci: None,
            kind: DeviceKind::Serial(Serial {
                port: 0,
                backend: CharBackend::File {
                    path: console(dir),
                    append: false,
                },
            }),
        }],
        graphics: None,
        warnings: Vec::new(),
        files: Vec::new(),
        run_as: None,
        incoming: None,
    }
}

fn console(dir: &Path) -> PathBuf {
    dir.join("console.log")
}

fn read_console(dir: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(console(dir)).unwrap_or_default()).into_owned()
}

/// Starts the VMM on its own thread; returns the control handle, an event
/// receiver and the thread.
fn start(s: MachineSpec) -> (VmControl, Receiver<VmEvent>, JoinHandle<Outcome>) {
    let mut vmm = Vmm::new(s).expect("VMM starts");
    let control = vmm.control();
    let events = control.subscribe();
    let t = std::thread::spawn(move || vmm.run().expect("VMM runs"));
    (control, events, t)
}

fn wait_for(dir: &Path, needle: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !read_console(dir).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {needle:?}; console:\n{}",
            read_console(dir)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn join(t: JoinHandle<Outcome>, dir: &Path) -> Outcome {
    let deadline = Instant::now() + TIMEOUT;
    while !t.is_finished() {
        assert!(
            Instant::now() < deadline,
            "VMM did not end; console:\n{}",
            read_console(dir)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    t.join().unwrap()
}

#[test]
fn serial_output_then_s5_poweroff_exits_0() {
    if !kvm_available("serial_output_then_s5_poweroff_exits_0") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut code = print(b"HELLO\n");
    code.extend(poweroff());
    let (_c, events, t) = start(spec(dir.path(), &code, 1));
    let o = join(t, dir.path());
    assert_eq!(
        o.status,
        exit::POWEROFF,
        "{o:?}; console:\n{}",
        read_console(dir.path())
    );
    assert_eq!(read_console(dir.path()), "HELLO\n");
    let ev: Vec<VmEvent> = events.try_iter().collect();
    assert!(
        ev.contains(&VmEvent::Shutdown {
            guest: true,
            reason: vmm::ShutdownCause::GuestShutdown
        }),
        "{ev:?}"
    );
}

#[test]
fn crash_reports_rip_and_instruction_bytes() {
    if !kvm_available("crash_reports_rip_and_instruction_bytes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut code = print(b"X");
    let ud2_at = LOAD as usize + code.len();
    // ud2 with an empty IDT: #UD → #GP → double fault → triple fault.
    code.extend_from_slice(&[0x0f, 0x0b]);
    let (_c, _e, t) = start(spec(dir.path(), &code, 1));
    let o = join(t, dir.path());
    assert_eq!(o.status, exit::CRASH, "{o:?}");
    assert!(
        o.message.contains(&format!("RIP {ud2_at:#x}")),
        "{}",
        o.message
    );
    assert!(
        o.message.contains("instruction bytes: 0f 0b"),
        "{}",
        o.message
    );
}

/// Prints '.' roughly every few milliseconds (a busy delay between bytes), and
/// powers off once the power button's status bit shows up in PM1_STS.
fn ticker_until_power_button() -> Vec<u8> {
    let mut c = vec![
        0x66, 0xba, 0x02, 0x06, // mov dx, 0x602 (PM1_EN)
        0x66, 0xb8, 0x00, 0x01, // mov ax, 0x100 (PWRBTN_EN)
        0x66, 0xef, // out dx, ax
    ];
    let top = c.len();
    c.extend_from_slice(&[
        0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xb0, b'.', 0xee, // mov al, '.'; out dx, al
        0xb9, 0x00, 0x08, 0x00, 0x00, // mov ecx, 2048
        0xe2, 0xfe, // loop $
        0x66, 0xba, 0x00, 0x06, // mov dx, 0x600 (PM1_STS)
        0x66, 0xed, // in ax, dx
        0x66, 0xa9, 0x00, 0x01, // test ax, 0x100
    ]);
    // jz top (rel8 from the end of this 2-byte instruction)
    let rel = top as isize - (c.len() as isize + 2);
    c.extend_from_slice(&[0x74, rel as i8 as u8]);
    c.extend(print(b"\nBUTTON\n"));
    c.extend(poweroff());
    c
}

#[test]
fn pause_stops_the_guest_resume_continues_and_power_button_reaches_pm1() {
    if !kvm_available("pause_stops_the_guest_resume_continues_and_power_button_reaches_pm1") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (c, events, t) = start(spec(dir.path(), &ticker_until_power_button(), 2));
    wait_for(dir.path(), "..");
    assert_eq!(c.status(), RunState::Running);
    // vCPU 0 prints before vCPU 1's thread has necessarily registered: wait for both.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut threads = c.vcpu_threads();
    while threads.len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        threads = c.vcpu_threads();
    }
    assert_eq!(threads.len(), 2, "{threads:?}");
    assert!(threads.iter().all(|t| t.thread_id > 0));
    for t in &threads {
        let comm =
            std::fs::read_to_string(format!("/proc/self/task/{}/comm", t.thread_id)).unwrap();
        assert_eq!(comm.trim(), format!("vcpu{}", t.cpu_index));
    }

    c.pause().unwrap();
    assert_eq!(c.status(), RunState::Paused);
    let frozen = read_console(dir.path()).len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        read_console(dir.path()).len(),
        frozen,
        "output while paused"
    );
    c.resume().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while read_console(dir.path()).len() <= frozen {
        assert!(Instant::now() < deadline, "no output after resume");
        std::thread::sleep(Duration::from_millis(5));
    }

    c.power_button().unwrap();
    let o = join(t, dir.path());
    assert_eq!(o.status, exit::POWEROFF, "{o:?}");
    assert!(read_console(dir.path()).ends_with("\nBUTTON\n"));
    let ev: Vec<VmEvent> = events.try_iter().collect();
    let pos = |e: &VmEvent| ev.iter().position(|x| x == e);
    assert!(pos(&VmEvent::Stop) < pos(&VmEvent::Resume), "{ev:?}");
    assert!(pos(&VmEvent::Powerdown).is_some(), "{ev:?}");
}

#[test]
fn host_reset_reboots_in_process_and_quit_exits_host_stop() {
    if !kvm_available("host_reset_reboots_in_process_and_quit_exits_host_stop") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Print once, then halt with interrupts off (the vCPU sleeps in the kernel).
    let mut code = print(b"BOOT\n");
    code.extend_from_slice(&[0xfa, 0xf4, 0xeb, 0xfd]);
    let (c, events, t) = start(spec(dir.path(), &code, 2));
    wait_for(dir.path(), "BOOT\n");
    let before = c.vcpu_thread_ids();
    c.reset().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while read_console(dir.path()).matches("BOOT").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "no second boot: {}",
            read_console(dir.path())
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_ne!(c.vcpu_thread_ids(), before, "new vCPU threads after reset");
    // Paused across nothing: pause works on halted vCPUs too.
    c.pause().unwrap();
    c.quit().unwrap();
    let o = join(t, dir.path());
    assert_eq!(o.status, exit::HOST_STOP);
    let ev: Vec<VmEvent> = events.try_iter().collect();
    assert!(ev.contains(&VmEvent::Reset {
        guest: false,
        reason: vmm::ShutdownCause::HostQmpSystemReset
    }));
    assert_eq!(
        ev.last(),
        Some(&VmEvent::Shutdown {
            guest: false,
            reason: vmm::ShutdownCause::HostQmpQuit
        })
    );
}

/// Echoes every byte received on COM1 (polling LSR.DR) and powers off on 'q'.
fn echo_until_q() -> Vec<u8> {
    let mut c = Vec::new();
    let top = c.len();
    c.extend_from_slice(&[0x66, 0xba, 0xfd, 0x03]); // mov dx, 0x3fd (LSR)
    let poll = c.len();
    c.extend_from_slice(&[0xec, 0xa8, 0x01]); // in al, dx; test al, 1
    let rel = poll as isize - (c.len() as isize + 2);
    c.extend_from_slice(&[0x74, rel as i8 as u8]); // jz poll
    c.extend_from_slice(&[0x66, 0xba, 0xf8, 0x03, 0xec]); // mov dx, 0x3f8; in al, dx
    c.extend_from_slice(&[0x3c, b'q', 0x74, 0x03]); // cmp al, 'q'; je +3 (past out + jmp)
    c.push(0xee); // out dx, al
    let rel = top as isize - (c.len() as isize + 2);
    c.extend_from_slice(&[0xeb, rel as i8 as u8]); // jmp top
    c.extend(poweroff());
    c
}

#[test]
fn serial_input_from_a_unix_socket_client_reaches_the_guest() {
    use std::io::{Read, Write};
    if !kvm_available("serial_input_from_a_unix_socket_client_reaches_the_guest") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let mut s = spec(dir.path(), &echo_until_q(), 1);
    s.devices[0].kind = DeviceKind::Serial(Serial {
        port: 0,
        backend: CharBackend::Unix {
            path: sock.clone(),
            listen: true,
        },
    });
    let (_c, _e, t) = start(s);
    let mut client = std::os::unix::net::UnixStream::connect(&sock).expect("VMM listens");
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.write_all(b"hello").unwrap();
    let mut got = [0u8; 5];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    client.write_all(b"q").unwrap();
    let o = join(t, dir.path());
    assert_eq!(o.status, exit::POWEROFF, "{o:?}");
}

#[test]
fn shared_memory_backing_boots() {
    if !kvm_available("shared_memory_backing_boots") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut code = print(b"SHARED\n");
    code.extend(poweroff());
    let mut s = spec(dir.path(), &code, 1);
    s.memory.shared = true;
    let (_c, _e, t) = start(s);
    let o = join(t, dir.path());
    assert_eq!(o.status, exit::POWEROFF, "{o:?}");
    assert_eq!(read_console(dir.path()), "SHARED\n");
}

//! Hyper-V enlightenments (tier 2): `hyperv_common` has the guest body. Here, on the CI
//! machines' emulated KVM, it proves the refusal by name; the guest's view of the
//! leaves and MSRs runs where KVM has Hyper-V (hardware, and the nested SVM tier through
//! `linux_full`'s `full_hyperv_enlightenments`). The second test starts such a domain
//! through oxvirtd with Debian's virsh: where KVM has Hyper-V it runs, where not
//! `virsh start` fails with the names and the domain stays shut off.
//!
//!     cargo build -p vmm --bins && cargo test -p oxvirt-tests --test hyperv_guest

mod hyperv_common;
mod rpc_common;

use oxvirt_tests::{kvm_kind, KvmKind};
use rpc_common::{guest_xml, Daemon};

#[test]
fn hyperv_enlightenments() {
    hyperv_common::run("hyperv_enlightenments");
}

#[test]
fn hyperv_virsh_start() {
    if !oxvirt_tests::host::require_kvm("hyperv_virsh_start") {
        return;
    }
    let d = Daemon::start();
    let name = "hyperv-virsh";
    let xml = guest_xml(name)
        .replace("<apic/>", &format!("<apic/>{}", hyperv_common::WINDOWS))
        .replace(
            "  <on_poweroff>",
            "  <clock offset='localtime'><timer name='hypervclock' present='yes'/></clock>\n  <on_poweroff>",
        );
    let file = d.xml_file(name, &xml);
    d.virsh_ok(&["define", file.to_str().unwrap()]);
    // The definition keeps every enlightenment as written.
    let dumped = d.virsh_ok(&["dumpxml", name]);
    for e in [
        "<relaxed state='on'/>",
        "<spinlocks state='on' retries='8191'/>",
        "<direct state='on'/>",
        "<timer name='hypervclock' present='yes'/>",
    ] {
        assert!(dumped.contains(e), "dumpxml lost {e}:\n{dumped}");
    }
    let r = d.virsh(&["start", name]);
    if kvm_kind() == KvmKind::Emulated {
        assert!(!r.ok, "virsh start ran a domain this KVM cannot enlighten");
        for n in hyperv_common::NAMES {
            assert!(
                r.stderr.contains(n),
                "virsh start's error does not name {n}:\n{}",
                r.stderr
            );
        }
        eprintln!("virsh start: {}", r.stderr);
        assert_eq!(d.virsh_ok(&["domstate", name]).trim(), "shut off");
    } else {
        assert!(r.ok, "virsh start failed:\n{}\n{}", r.stdout, r.stderr);
        d.wait_state(name, "running");
        d.virsh_ok(&["destroy", name]);
    }
}

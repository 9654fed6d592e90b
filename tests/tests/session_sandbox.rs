//! The VMM of an unprivileged user's session daemon runs sandboxed too (#20): in a
//! user namespace of its own that maps only that user, with a private mount
//! namespace (`--mount-sandbox`): the host's tree read-only, `/tmp` and `/home`
//! its own — the guest kernel and the console log in the user's files directory are
//! not there, they came open from the daemon — and no effective capability in any
//! thread, although the user namespace made it root over itself. The guest runs and
//! its console output reaches the log file the daemon handed over.

use std::path::Path;
use std::time::{Duration, Instant};

use oxvirt_tests::host::require_kvm;
use oxvirt_tests::session::{SessionDaemon, UID};
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::{domain_xml, test_guests};

const URI: &str = "oxvirt:///session";

fn status_field(pid: i32, task: &Path, key: &str) -> String {
    let s =
        std::fs::read_to_string(task.join("status")).unwrap_or_else(|e| panic!("/proc/{pid}: {e}"));
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_session_vmm_runs_in_its_own_user_and_mount_namespace() {
    let test = "a_session_vmm_runs_in_its_own_user_and_mount_namespace";
    if !require_kvm(test) {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("*** SKIPPED: {test}: the session user is nobody, which needs root to set up");
        return;
    }
    let s = SessionDaemon::start(&[]).unwrap_or_else(|e| panic!("{e}"));
    let kernel = s.give(&test_guests().elf);
    let console = s.files().join("sandboxed-console.log");
    let xml = domain_xml(
        "sandboxed",
        &kernel,
        "console=ttyS0 oxtest=count",
        64,
        1,
        "destroy",
        &serial_xml(&format!("file:{}", console.display())),
    );
    let xml_path = s.files().join("sandboxed.xml");
    std::fs::write(&xml_path, xml).unwrap();
    s.virsh_ok(URI, &["define", xml_path.to_str().unwrap()]);
    s.virsh_ok(URI, &["start", "sandboxed"]);
    let rt = s.dir.path().join("run/oxvirt/domains/sandboxed");
    let pid: i32 = std::fs::read_to_string(rt.join("pid"))
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", rt.display(), s.log()))
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&console).is_ok_and(|t| t.contains("OXTEST")) {
        assert!(
            Instant::now() < deadline,
            "no guest output in {}:\n{}",
            console.display(),
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/user")).unwrap();
    assert_ne!(ns(&pid.to_string()), ns("self"), "user namespace");
    oxvirt_tests::host::check_mount_sandbox(pid, &rt);
    // Its view of the files directory (under the host's /tmp): not there.
    let view = Path::new("/proc")
        .join(pid.to_string())
        .join("root")
        .join(kernel.strip_prefix("/").unwrap());
    assert!(!view.exists(), "the VMM sees {}", kernel.display());
    let log = std::fs::read_to_string(rt.join("log")).unwrap_or_default();
    assert!(log.contains("in a private mount namespace"), "{log}");
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let t = task.path();
        assert_eq!(
            status_field(pid, &t, "CapEff:"),
            "0000000000000000",
            "{}",
            t.display()
        );
        assert!(
            status_field(pid, &t, "Uid:")
                .split(' ')
                .all(|u| u == UID.to_string()),
            "{}",
            t.display()
        );
        assert_eq!(status_field(pid, &t, "NoNewPrivs:"), "1", "{}", t.display());
    }
    s.virsh_ok(URI, &["destroy", "sandboxed"]);
    s.virsh_ok(URI, &["undefine", "sandboxed"]);
}

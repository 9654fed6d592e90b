//! `virsh event --all --loop` against oxvirtd prints the lifecycle events of a start,
//! suspend, resume and shutdown as they happen.

mod rpc_common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oxvirt_tests::host::require_kvm;
use rpc_common::{guest_xml, Daemon, STEP};

#[test]
fn rpc_virsh_event_loop_shows_lifecycle() {
    if !require_kvm("rpc_virsh_event_loop_shows_lifecycle") {
        return;
    }
    let d = Daemon::start();
    let name = "rpc-events";
    let f = d.xml_file(name, &guest_xml(name));
    d.virsh_ok(&["define", f.to_str().unwrap()]);

    let mut ev = Command::new("virsh")
        .arg("-c")
        .arg(d.uri())
        .args(["event", "--all", "--loop", "--timestamp"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("virsh event");
    let mut stdout = ev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let mut text = String::new();
    let wait_for = |needle: &str, d: &Daemon, text: &mut String| {
        let deadline = Instant::now() + STEP;
        while !text.contains(needle) {
            if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
                text.push_str(&chunk);
            }
            if Instant::now() > deadline {
                d.fail(&format!(
                    "virsh event never printed '{needle}'; it printed:\n{text}"
                ));
            }
        }
    };
    // virsh registers all 27 event IDs before it prints anything; give it that moment
    // by waiting for a first event of our own making.
    std::thread::sleep(Duration::from_millis(500));
    d.virsh_ok(&["start", name]);
    wait_for(
        &format!("event 'lifecycle' for domain '{name}': Started Booted"),
        &d,
        &mut text,
    );
    d.wait_state(name, "running");
    d.virsh_ok(&["suspend", name]);
    wait_for(
        &format!("event 'lifecycle' for domain '{name}': Suspended Paused"),
        &d,
        &mut text,
    );
    d.virsh_ok(&["resume", name]);
    wait_for(
        &format!("event 'lifecycle' for domain '{name}': Resumed Unpaused"),
        &d,
        &mut text,
    );
    d.shutdown_until_off(name);
    wait_for(
        &format!("event 'lifecycle' for domain '{name}': Shutdown Finished"),
        &d,
        &mut text,
    );
    wait_for(
        &format!("event 'lifecycle' for domain '{name}': Stopped Shutdown"),
        &d,
        &mut text,
    );
    d.virsh_ok(&["undefine", name]);
    wait_for(
        &format!("event 'lifecycle' for domain '{name}': Undefined Removed"),
        &d,
        &mut text,
    );
    // Events arrive in the order they happened, each with a timestamp.
    let order = [
        "Started Booted",
        "Suspended Paused",
        "Resumed Unpaused",
        "Stopped Shutdown",
    ];
    let pos: Vec<usize> = order.iter().map(|o| text.find(o).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "out of order:\n{text}");
    let _ = ev.kill();
    let _ = ev.wait();
}

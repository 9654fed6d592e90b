//! Many QMP clients on one running guest: 100 clients, 1,000 commands each, all
//! answered; every client sees every event; clients that flood the socket or vanish
//! mid-command hurt neither the guest nor the others.

mod qmp_common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use oxvirt_tests::host::require_kvm;
use oxvirt_tests::{spec, test_guests, GUEST_TIMEOUT};
use qmp::QmpClient;
use qmp_common::QmpVm;
use serde_json::Value;

const CLIENTS: usize = 100;
const COMMANDS: usize = 1000;
const CYCLES: usize = 10;

#[test]
fn hundred_clients_thousand_commands_every_event_delivered() {
    if !require_kvm("hundred_clients_thousand_commands_every_event_delivered") {
        return;
    }
    let s = spec(&test_guests().elf, "console=ttyS0 oxtest=count", 64, 1);
    let q = QmpVm::start(&s);
    q.vm.wait_for("OXTEST tick 1", GUEST_TIMEOUT);
    let sock = q.sock.clone();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async move {
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            clients.push(Arc::new(QmpClient::connect(&sock).await.unwrap()));
        }
        let controller = QmpClient::connect(&sock).await.unwrap();

        // A client that floods garbage without ever reading, and one that leaves while
        // its command runs.
        let flood_sock = sock.clone();
        let flooder = std::thread::spawn(move || {
            let mut s = std::os::unix::net::UnixStream::connect(&flood_sock).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            let junk = vec![b'['; 64 * 1024];
            for _ in 0..256 {
                if s.write_all(&junk).is_err() {
                    break; // the server stopped reading us (bounded input): fine
                }
            }
        });
        {
            let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
            s.write_all(b"{\"execute\":\"qmp_capabilities\"}{\"execute\":\"query-cpus-fast\"}")
                .unwrap();
        }

        let mut tasks = Vec::new();
        for c in &clients {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..COMMANDS {
                    let (cmd, check): (&str, fn(&Value) -> bool) = match i % 3 {
                        0 => ("query-status", |v| {
                            v["status"] == "running" || v["status"] == "paused"
                        }),
                        1 => ("query-name", |v| v["name"] == "oxtest"),
                        _ => ("query-kvm", |v| v["present"] == true),
                    };
                    let v = c.execute(cmd, Value::Null).await.unwrap();
                    assert!(check(&v), "{cmd} answered {v}");
                }
            }));
        }
        // Meanwhile pause and resume the guest: each cycle is a STOP and a RESUME.
        for _ in 0..CYCLES {
            controller.execute("stop", Value::Null).await.unwrap();
            controller.execute("cont", Value::Null).await.unwrap();
        }
        for t in tasks {
            t.await.unwrap();
        }
        flooder.join().unwrap();
        let mut missing = Vec::new();
        for (n, c) in clients.iter().enumerate() {
            for i in 0..2 * CYCLES {
                let want = if i % 2 == 0 { "STOP" } else { "RESUME" };
                match tokio::time::timeout(Duration::from_secs(10), c.next_event()).await {
                    Ok(Some(ev)) if ev.event == want => {}
                    other => {
                        missing.push(format!("client {n}: event {i}: {other:?}"));
                        break;
                    }
                }
            }
        }
        let st = controller
            .execute("query-status", Value::Null)
            .await
            .unwrap();
        (missing, st)
    });
    let (missing, st) = result;
    assert!(missing.is_empty(), "events lost:\n{}", missing.join("\n"));
    assert_eq!(st["status"], "running");
    // The guest runs on after all of it.
    let ticks = q.vm.console_lines().matches("OXTEST tick").count();
    q.vm.wait_count("OXTEST tick", ticks + 1, GUEST_TIMEOUT);
    assert!(q.vm.exited().is_none());
}

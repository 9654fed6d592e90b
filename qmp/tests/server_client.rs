//! The server and client over real unix sockets, with an in-process handler.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use qmp::json::Limits;
use qmp::{
    ClientError, ErrorClass, EventSender, Handler, QmpClient, QmpError, QmpServer, Schema,
    ServerConfig, VersionInfo,
};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const SCHEMA: &str = r#"[
    {"enum": "QMPCapability", "data": ["oob"]},
    {"command": "qmp_capabilities", "data": {"*enable": ["QMPCapability"]}},
    {"command": "query-status", "returns": "any"},
    {"command": "stop"},
    {"command": "count"},
    {"command": "slow", "data": {"ms": "int"}},
    {"command": "balloon", "data": {"value": "int"}},
    {"command": "getfd", "data": {"fdname": "str"}},
    {"command": "closefd", "data": {"fdname": "str"}},
    {"command": "greet-fd", "data": {"fdname": "str"}},
    {"event": "STOP"}
]"#;

/// A small machine: a run state, a counter, STOP events.
struct TestMachine {
    events: std::sync::OnceLock<EventSender>,
    running: std::sync::atomic::AtomicBool,
    calls: AtomicU64,
}

impl Handler for TestMachine {
    fn call(&self, command: &str, args: Map<String, Value>) -> qmp::CommandFuture {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match command {
            "query-status" => {
                let running = self.running.load(Ordering::SeqCst);
                qmp::ready(Ok(json!({"running": running, "singlestep": false,
                    "status": if running { "running" } else { "paused" }})))
            }
            "stop" => {
                self.running.store(false, Ordering::SeqCst);
                self.events.get().unwrap().emit("STOP", None);
                qmp::ready(Ok(json!({})))
            }
            "count" => qmp::ready(Ok(json!(self.calls.load(Ordering::SeqCst)))),
            "slow" => {
                let ms = args["ms"].as_u64().unwrap();
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(json!({"slept": ms}))
                })
            }
            "balloon" => qmp::ready(Err(QmpError::no_balloon())),
            other => qmp::ready(Err(QmpError::command_not_found(other))),
        }
    }

    fn call_with_fds(
        &self,
        command: &str,
        args: Map<String, Value>,
        fds: &mut qmp::ClientFds,
    ) -> qmp::CommandFuture {
        if command != "greet-fd" {
            return self.call(command, args);
        }
        // Like add_client: take the named fd and use it.
        qmp::ready(fds.take(args["fdname"].as_str().unwrap()).map(|fd| {
            use std::io::Write;
            let mut s = std::os::unix::net::UnixStream::from(fd);
            s.write_all(b"hello over a passed fd").unwrap();
            json!({})
        }))
    }
}

fn start(path: &Path) -> (QmpServer, Arc<TestMachine>) {
    let machine = Arc::new(TestMachine {
        events: Default::default(),
        running: true.into(),
        calls: 0.into(),
    });
    let config = ServerConfig {
        version: VersionInfo::oxvirt(),
        schema: Arc::new(Schema::parse(SCHEMA).unwrap()),
        limits: Limits {
            max_bytes: 64 * 1024,
            ..Limits::default()
        },
    };
    let server = QmpServer::bind(path, config, machine.clone()).unwrap();
    machine.events.set(server.events()).unwrap();
    (server, machine)
}

/// A raw client: send bytes, read what comes within a short while.
struct Raw(UnixStream);

impl Raw {
    async fn connect(path: &Path) -> Raw {
        Raw(UnixStream::connect(path).await.unwrap())
    }
    async fn line(&mut self) -> String {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        while !out.ends_with(b"\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), self.0.read(&mut b))
                .await
                .expect("reply within 10 s")
                .unwrap();
            assert_eq!(
                n,
                1,
                "connection closed after {:?}",
                String::from_utf8_lossy(&out)
            );
            out.push(b[0]);
        }
        String::from_utf8(out).unwrap()
    }
    async fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).await.unwrap();
    }
    async fn ask(&mut self, bytes: &[u8]) -> String {
        self.send(bytes).await;
        self.line().await
    }
}

#[tokio::test]
async fn greeting_negotiation_and_replies_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let (_server, _m) = start(&path);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let mut c = Raw::connect(&path).await;
    let g = c.line().await;
    assert_eq!(
        g,
        format!(
            "{{\"QMP\": {{\"version\": {{\"qemu\": {{\"micro\": 0, \"minor\": 2, \"major\": 7}}, \"package\": \"oxvirt {}\"}}, \"capabilities\": []}}}}\r\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(
        c.ask(b"{\"execute\":\"query-status\",\"id\":5}\n").await,
        "{\"id\": 5, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n"
    );
    assert_eq!(
        c.ask(b"{\"execute\":\"no-such\"}\n").await,
        "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n"
    );
    assert_eq!(
        c.ask(b"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}\n").await,
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Capability 'oob' not available\"}}\r\n"
    );
    assert_eq!(
        c.ask(b"{\"execute\":\"qmp_capabilities\",\"id\":[1,2]}\n")
            .await,
        "{\"return\": {}, \"id\": [1, 2]}\r\n"
    );
    assert_eq!(
        c.ask(b"{\"execute\":\"qmp_capabilities\",\"id\":1}\n").await,
        "{\"id\": 1, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Capabilities negotiation is already complete, command ignored\"}}\r\n"
    );
    assert_eq!(
        c.ask(b"{\"execute\":\"no-such\",\"id\":{\"a\":1}}\n").await,
        "{\"id\": {\"a\": 1}, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command no-such has not been found\"}}\r\n"
    );
    assert_eq!(
        c.ask(b"{'execute':'query-status','id':'\xc3\xa9'}").await,
        "{\"return\": {\"running\": true, \"singlestep\": false, \"status\": \"running\"}, \"id\": \"\\u00E9\"}\r\n"
    );
    assert_eq!(
        c.ask(b"{\"execute\":\"balloon\",\"id\":1}\n").await,
        "{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'value' is missing\"}}\r\n"
    );
    assert_eq!(
        c.ask(b"{\"execute\":\"balloon\",\"arguments\":{\"value\":1,\"foo\":2},\"id\":1}\n").await,
        "{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'foo' is unexpected\"}}\r\n"
    );
    assert_eq!(
        c.ask(b"{\"execute\":\"balloon\",\"arguments\":{\"value\":1},\"id\":1}\n").await,
        "{\"id\": 1, \"error\": {\"class\": \"DeviceNotActive\", \"desc\": \"No balloon device has been activated\"}}\r\n"
    );
    // Malformed input: QEMU's errors, no id, and the stream goes on.
    c.send(b"}\n{\"execute\": bogus}\n[1]\n\xff\n").await;
    assert_eq!(c.line().await, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, expecting value\"}}\r\n");
    assert_eq!(c.line().await, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, invalid keyword 'bogus'\"}}\r\n");
    assert_eq!(c.line().await, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}\r\n");
    assert_eq!(c.line().await, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\uFFFD'\"}}\r\n");
    assert!(c
        .ask(b"{\"execute\":\"query-status\",\"id\":9}")
        .await
        .ends_with("\"id\": 9}\r\n"));
}

#[tokio::test]
async fn events_reach_negotiated_clients_before_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let (_server, _m) = start(&path);
    let mut raw = Raw::connect(&path).await;
    raw.line().await;
    raw.ask(b"{\"execute\":\"qmp_capabilities\"}").await;
    let mut unnegotiated = Raw::connect(&path).await;
    unnegotiated.line().await;
    let other = QmpClient::connect(&path).await.unwrap();

    let stop = raw.ask(b"{\"execute\":\"stop\",\"id\":\"s\"}").await;
    assert!(stop.starts_with("{\"timestamp\": {\"seconds\": "), "{stop}");
    assert!(stop.ends_with(", \"event\": \"STOP\"}\r\n"), "{stop}");
    assert_eq!(raw.line().await, "{\"return\": {}, \"id\": \"s\"}\r\n");

    let ev = tokio::time::timeout(Duration::from_secs(10), other.next_event())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.event, "STOP");
    assert_eq!(ev.data, None);
    assert!(ev.timestamp.seconds > 1_700_000_000);
    // The client that never negotiated gets no event; its next line is its reply.
    assert_eq!(
        unnegotiated
            .ask(b"{\"execute\":\"qmp_capabilities\"}")
            .await,
        "{\"return\": {}}\r\n"
    );
    let st = other.execute("query-status", Value::Null).await.unwrap();
    assert_eq!(st["status"], "paused");
}

#[tokio::test]
async fn client_reports_errors_and_concurrent_commands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let (_server, _m) = start(&path);
    let c = Arc::new(QmpClient::connect(&path).await.unwrap());
    assert_eq!(c.greeting()["capabilities"], json!([]));
    match c.execute("balloon", json!({"value": "x"})).await {
        Err(ClientError::Command(e)) => {
            assert_eq!(e.class, ErrorClass::GenericError);
            assert_eq!(
                e.desc,
                "Invalid parameter type for 'value', expected: integer"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // Commands from one client run in order; a slow one holds back the next.
    let (a, b) = tokio::join!(
        c.execute("slow", json!({"ms": 200})),
        c.execute("slow", json!({"ms": 1}))
    );
    assert_eq!(a.unwrap()["slept"], 200);
    assert_eq!(b.unwrap()["slept"], 1);
}

#[tokio::test]
async fn flooding_and_vanishing_clients_do_not_hurt_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let (_server, machine) = start(&path);
    let good = QmpClient::connect(&path).await.unwrap();

    // A client sends 4 MiB of one never-ending string: bounded, answered with QEMU's
    // limit error, and the connection keeps working after a resync.
    let mut flood = Raw::connect(&path).await;
    flood.line().await;
    flood.ask(b"{\"execute\":\"qmp_capabilities\"}").await;
    let chunk = vec![b'a'; 64 * 1024];
    flood.send(b"{\"execute\":\"").await;
    let writer = async {
        for _ in 0..64 {
            flood.0.write_all(&chunk).await.unwrap();
        }
    };
    let checker = async {
        for _ in 0..20 {
            good.execute("query-status", Value::Null).await.unwrap();
        }
    };
    tokio::join!(writer, checker);
    assert_eq!(
        flood.line().await,
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON token size limit exceeded\"}}\r\n"
    );
    assert!(flood
        .ask(b"\n{\"execute\":\"query-status\",\"id\":2}")
        .await
        .ends_with("\"id\": 2}\r\n"));

    // A client that disconnects while its command runs: the command completes, the
    // server and other clients carry on.
    let before = machine.calls.load(Ordering::SeqCst);
    let mut quitter = Raw::connect(&path).await;
    quitter.line().await;
    quitter.ask(b"{\"execute\":\"qmp_capabilities\"}").await;
    quitter
        .send(b"{\"execute\":\"slow\",\"arguments\":{\"ms\":300}}")
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(quitter);
    // A client that sends commands and never reads its replies.
    let mut deaf = Raw::connect(&path).await;
    for _ in 0..2000 {
        deaf.send(b"{\"execute\":\"qmp_capabilities\"}").await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(machine.calls.load(Ordering::SeqCst) > before);
    assert!(good.execute("count", Value::Null).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_clients_thousand_commands_no_event_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let (server, _m) = start(&path);
    let events = server.events();
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(Arc::new(QmpClient::connect(&path).await.unwrap()));
    }
    let emitter = tokio::spawn(async move {
        for _ in 0..200 {
            events.emit("STOP", None);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let mut tasks = Vec::new();
    for c in &clients {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..1000 {
                let st = c.execute("query-status", Value::Null).await.unwrap();
                assert!(st["status"].is_string());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    emitter.await.unwrap();
    for c in &clients {
        for _ in 0..200 {
            let ev = tokio::time::timeout(Duration::from_secs(10), c.next_event())
                .await
                .expect("event within 10 s")
                .unwrap();
            assert_eq!(ev.event, "STOP");
        }
    }
}

#[tokio::test]
async fn shutdown_delivers_the_last_reply_and_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let (server, _m) = start(&path);
    let c = Arc::new(QmpClient::connect(&path).await.unwrap());
    let c2 = c.clone();
    let pending = tokio::spawn(async move { c2.execute("slow", json!({"ms": 300})).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.events().emit("STOP", None);
    server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(pending.await.unwrap().unwrap()["slept"], 300);
    assert_eq!(c.next_event().await.unwrap().event, "STOP");
    tokio::time::timeout(Duration::from_secs(5), c.closed())
        .await
        .unwrap();
    assert!(matches!(
        c.execute("query-status", Value::Null).await,
        Err(ClientError::Disconnected | ClientError::Io(_))
    ));
    assert!(!path.exists());
}

#[test]
fn client_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _g = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    let f = QmpClient::connect(&p);
    is_send(&f);
}

#[tokio::test]
async fn getfd_names_a_passed_fd_that_a_command_then_takes() {
    use std::io::Read;
    use std::os::fd::AsFd;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let (_server, _m) = start(&path);
    let c = QmpClient::connect(&path).await.unwrap();
    let desc = |r: Result<Value, ClientError>| match r {
        Err(ClientError::Command(e)) => e.desc,
        other => panic!("expected an error, got {other:?}"),
    };
    // QEMU's errors: no fd came, a name starting with a digit, unknown names.
    assert_eq!(
        desc(c.execute("getfd", json!({"fdname": "a"})).await),
        "No file descriptor supplied via SCM_RIGHTS"
    );
    assert_eq!(
        desc(c.execute("greet-fd", json!({"fdname": "a"})).await),
        "File descriptor named 'a' has not been found"
    );
    assert_eq!(
        desc(c.execute("closefd", json!({"fdname": "a"})).await),
        "File descriptor named 'a' not found"
    );
    let (mut mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    assert_eq!(
        desc(
            c.execute_with_fds("getfd", json!({"fdname": "1x"}), &[theirs.as_fd()])
                .await
        ),
        "Parameter 'fdname' expects a name not starting with a digit"
    );
    // An fd is claimed once: after the failed getfd it is gone.
    assert_eq!(
        desc(c.execute("getfd", json!({"fdname": "a"})).await),
        "No file descriptor supplied via SCM_RIGHTS"
    );
    c.execute_with_fds("getfd", json!({"fdname": "a"}), &[theirs.as_fd()])
        .await
        .unwrap();
    drop(theirs);
    c.execute("greet-fd", json!({"fdname": "a"})).await.unwrap();
    let mut got = String::new();
    mine.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello over a passed fd");
    // Taken: the name is free again; closefd drops a named fd.
    assert!(c.execute("greet-fd", json!({"fdname": "a"})).await.is_err());
    let (_keep, other) = std::os::unix::net::UnixStream::pair().unwrap();
    c.execute_with_fds("getfd", json!({"fdname": "b"}), &[other.as_fd()])
        .await
        .unwrap();
    c.execute("closefd", json!({"fdname": "b"})).await.unwrap();
    assert!(c.execute("closefd", json!({"fdname": "b"})).await.is_err());
}

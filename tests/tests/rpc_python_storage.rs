//! python3-libvirt's storage API against oxvirtd, and the same script against a private
//! libvirtd (`qemu:///session`, libvirt's own storage driver): both must report the
//! same things — pool and volume lifecycle, lookups, upload/download streams, resize,
//! clone, pool events and libvirt's error codes for bad input.

mod rpc_common;

use std::path::Path;
use std::process::Command;

use rpc_common::libvirtd::{Driver, Libvirtd};
use rpc_common::{run_with_timeout, Daemon, STEP};
use serde_json::Value;

fn run_script(uri: &str, pool_dir: &Path) -> Result<Value, String> {
    let script = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/rpc/storage_script.py"
    ));
    let mut c = Command::new("/usr/bin/python3");
    c.arg(script).arg(uri).arg(pool_dir);
    let r = run_with_timeout(c, STEP);
    if !r.ok {
        return Err(format!("script failed:\n{}\n{}", r.stdout, r.stderr));
    }
    serde_json::from_str(r.stdout.trim()).map_err(|e| format!("bad JSON ({e}): {}", r.stdout))
}

/// Keys whose values legitimately differ between the two daemons.
const DIFFERENT: &[(&str, &str)] = &[(
    "raw_info",
    "allocation of a sparse file depends on the file system's block accounting",
)];

#[test]
fn rpc_python_storage_matches_libvirtd() {
    let d = Daemon::start();
    let pool_dir = d.dir.path().join("pypool");
    std::fs::create_dir(&pool_dir).unwrap();
    let ours = run_script(&d.uri(), &pool_dir).unwrap_or_else(|e| d.fail(&e));

    // Our own answers, in full.
    assert_eq!(ours["pool_state"], 2, "{ours}");
    assert_eq!(ours["qcow2_info"], serde_json::json!([0, 16 << 20]));
    assert_eq!(ours["download_matches"], true);
    assert_eq!(ours["download_len"], 2 << 20);
    assert_eq!(ours["resized"], 4 << 20);
    assert_eq!(ours["clone_info"], 4 << 20);
    // libvirt's codes and texts (the libvirtd run below must agree).
    let err = |k: &str| {
        (
            ours[k][0].as_i64().unwrap(),
            ours[k][1].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        err("missing_vol"),
        (
            50,
            "Storage volume not found: no storage vol with matching name 'nope'".into()
        )
    );
    assert_eq!(err("missing_pool").0, 49);
    assert_eq!(
        err("duplicate_vol"),
        (90, "storage volume 'b.img' exists already".into())
    );
    assert_eq!(
        err("bad_capacity"),
        (27, "XML error: malformed capacity element".into())
    );
    assert_eq!(
        err("slash_name"),
        (
            55,
            "Requested operation is not valid: volume name 'a/b' cannot contain '/'".into()
        )
    );
    assert_eq!(
        ours["files_after_errors"],
        serde_json::json!(["a.qcow2", "b.img", "c.img"])
    );
    // Defined, Started, a refresh after the upload (as libvirt does), our refresh,
    // Stopped, Undefined.
    assert_eq!(
        ours["events"],
        serde_json::json!([
            ["lifecycle", 0, 0],
            ["lifecycle", 2, 0],
            ["refresh"],
            ["refresh"],
            ["lifecycle", 3, 0],
            ["lifecycle", 1, 0]
        ])
    );

    // The same script against libvirtd's storage driver.
    let Some(lv) = Libvirtd::start(
        "rpc_python_storage_matches_libvirtd (libvirtd part)",
        Driver::Qemu,
    ) else {
        return;
    };
    let lv_dir = lv.dir.path().join("pypool");
    std::fs::create_dir(&lv_dir).unwrap();
    let st = Command::new("chown")
        .arg("65534:65534")
        .arg(&lv_dir)
        .status()
        .unwrap();
    assert!(st.success());
    let theirs = run_script(&lv.uri(), &lv_dir).unwrap_or_else(|e| panic!("{e}\n{}", lv.log()));
    let (o, t) = (ours.as_object().unwrap(), theirs.as_object().unwrap());
    let mut keys: Vec<&String> = o.keys().collect();
    keys.sort();
    let mut tkeys: Vec<&String> = t.keys().collect();
    tkeys.sort();
    assert_eq!(keys, tkeys, "both runs report the same things");
    for k in keys {
        if DIFFERENT.iter().any(|(d, _)| d == k) {
            continue;
        }
        assert_eq!(
            o[k], t[k],
            "'{k}' differs: oxvirtd {} vs libvirtd {}",
            o[k], t[k]
        );
    }
}

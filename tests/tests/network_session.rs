//! Virtual networks on a session daemon: `oxvirtd --session --qemu-uri` as `nobody`
//! (no CAP_NET_ADMIN), driven by virsh and python3-libvirt on `qemu:///session`. As
//! libvirt 9.0's session daemon does (measured: `libvirtd` as `nobody` in a private
//! network namespace), `net-define` stores the network, while `net-start` and
//! `net-create` fail with "error creating bridge interface NAME: Operation not
//! permitted" (VIR_ERR_SYSTEM_ERROR) and leave nothing behind: no bridge, no runtime
//! or dnsmasq files, no transient network. No guest boots; no bridge can be made, so
//! nothing reaches the host's network.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oxvirt_tests::session::SessionDaemon;

const URI: &str = "qemu:///session";

fn net_xml(name: &str, bridge: &str) -> String {
    format!(
        "<network><name>{name}</name><bridge name='{bridge}'/><forward/>\
         <ip address='10.97.0.1' prefix='24'><dhcp><range start='10.97.0.2' end='10.97.0.9'/>\
         </dhcp></ip></network>"
    )
}

/// Every file below `dir` whose name contains `needle`.
fn files_named(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_named(&p, needle));
        } else if p.file_name().unwrap().to_string_lossy().contains(needle) {
            out.push(p);
        }
    }
    out
}

#[test]
fn session_networks_are_defined_but_cannot_start_without_privileges() {
    let s = SessionDaemon::start(&["--qemu-uri"]).unwrap_or_else(|e| panic!("{e}"));
    let xml = s.files().join("sessnet.xml");
    std::fs::write(&xml, net_xml("sessnet", "oxsess0")).unwrap();
    s.virsh_ok(URI, &["net-define", xml.to_str().unwrap()]);

    let virsh = |args: &[&str]| {
        let mut all = vec!["-c", URI];
        all.extend_from_slice(args);
        s.run("virsh", &all, Duration::from_secs(60))
    };
    let r = virsh(&["net-start", "sessnet"]);
    assert!(
        !r.ok
            && r.stderr.contains("Failed to start network sessnet")
            && r.stderr
                .contains("error creating bridge interface oxsess0: Operation not permitted"),
        "{}\n--- oxvirtd log:\n{}",
        r.stderr,
        s.log()
    );
    assert!(!Path::new("/sys/class/net/oxsess0").exists());
    let list = s.virsh_ok(URI, &["net-list", "--all"]);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["sessnet", "inactive", "no", "yes"]),
        "{list}"
    );
    // Only the definition is on disk: no status, pid, dnsmasq config or lease files.
    let files = files_named(s.dir.path(), "sessnet");
    assert!(
        files
            .iter()
            .all(|f| f == &xml || f.parent().is_some_and(|d| d.ends_with("networks"))),
        "files left by the failed start: {files:?}"
    );
    assert_eq!(
        files.len(),
        2,
        "expected the XML given and the stored definition: {files:?}"
    );

    // python3-libvirt: net-create fails the same way (code 38) and leaves no
    // transient network; the defined one fails to start likewise.
    let create = s.files().join("sesscreate.xml");
    std::fs::write(&create, net_xml("sesscreate", "oxsess1")).unwrap();
    let py = format!(
        "import libvirt\n\
         c = libvirt.open('{URI}')\n\
         for f in (lambda: c.networkCreateXML(open('{create}').read()),\n\
                   lambda: c.networkLookupByName('sessnet').create()):\n\
         \x20   try:\n\
         \x20       f()\n\
         \x20       print('started')\n\
         \x20   except libvirt.libvirtError as e:\n\
         \x20       print(e.get_error_code(), e.get_error_message())\n\
         print(sorted(n.name() for n in c.listAllNetworks()))\n",
        create = create.display()
    );
    let r = s.run("/usr/bin/python3", &["-c", &py], Duration::from_secs(60));
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "38 error creating bridge interface oxsess1: Operation not permitted",
            "38 error creating bridge interface oxsess0: Operation not permitted",
            "['sessnet']",
        ],
        "{}",
        r.stderr
    );
    assert!(!Path::new("/sys/class/net/oxsess1").exists());
    assert_eq!(
        files_named(s.dir.path(), "sesscreate"),
        [create],
        "files left by the failed net-create"
    );

    s.virsh_ok(URI, &["net-undefine", "sessnet"]);
    let list = s.virsh_ok(URI, &["net-list", "--all", "--name"]);
    assert!(list.trim().is_empty(), "{list}");
}

//! `human-monitor-command`: a useful subset of QEMU's HMP, with QEMU's output texts
//! (lines end in `\r\n` as QEMU's QMP answer carries them).

use std::fmt::Write;

use qmp::{CommandFuture, QmpError, VersionInfo};
use serde_json::{json, Map, Value};

use super::commands::Commands;

/// `(names as QEMU's help shows them, arguments, help text)`.
const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "balloon",
        "target",
        "request VM to change its memory allocation (in MB)",
    ),
    ("cont|c", "", "resume emulation"),
    ("help|?", "[cmd]", "show the help"),
    (
        "info",
        "[subcommand]",
        "show various information about the system state",
    ),
    ("quit|q", "", "quit the emulator"),
    (
        "set_link",
        "name on|off",
        "change the link status of a network adapter",
    ),
    ("stop|s", "", "stop emulation"),
    ("system_powerdown", "", "send system power down event"),
    ("system_reset", "", "reset the system"),
];

const INFO: &[(&str, &str)] = &[
    ("balloon", "show balloon information"),
    ("block", "show info of one block device or all block devices"),
    ("chardev", "show the character devices"),
    ("cpus", "show infos for each CPU"),
    ("kvm", "show KVM information"),
    ("memory_size_summary", "show the amount of initially allocated and present hotpluggable (if enabled) memory in bytes."),
    ("name", "show the current VM name"),
    ("status", "show the current VM status (running|paused)"),
    ("uuid", "show the current VM UUID"),
    ("version", "show the version of QEMU"),
];

fn text(s: String) -> CommandFuture {
    qmp::ready(Ok(Value::String(s)))
}

fn help_line(out: &mut String, (names, args, help): (&str, &str, &str)) {
    let _ = write!(out, "{names} {args} -- {help}\r\n");
}

/// Runs one HMP command line.
pub fn run(cmds: &Commands, line: &str, cpu_index: Option<i64>) -> CommandFuture {
    let cpu = match cpu_index {
        None => 0,
        Some(i) if i >= 0 && (i as usize) < cmds.control.vcpu_threads().len().max(1) => i as u32,
        Some(_) => {
            return qmp::ready(Err(QmpError::generic(
                "Parameter 'cpu-index' expects a CPU number",
            )))
        }
    };
    let mut words = line.split_whitespace();
    let Some(name) = words.next() else {
        return text(String::new());
    };
    let rest: Vec<&str> = words.collect();
    if name == crate::seccomp::TEST_FORBIDDEN_SYSCALL_HMP {
        return text(crate::seccomp::forbidden_syscall_for_tests());
    }
    let Some(&(names, _, _)) = COMMANDS
        .iter()
        .find(|(names, _, _)| names.split('|').any(|n| n == name))
    else {
        return text(format!("unknown command: '{}'\r\n", line.trim()));
    };
    let extraneous = || {
        text(format!(
            "{names}: extraneous characters at the end of line\r\nTry \"help {name}\" for more information\r\n"
        ))
    };
    match names {
        "help|?" => {
            let mut out = String::new();
            match rest.first() {
                Some(&"info") => INFO.iter().for_each(|(n, h)| {
                    let _ = write!(out, "info {n}  -- {h}\r\n");
                }),
                Some(c) => COMMANDS
                    .iter()
                    .filter(|(n, _, _)| n.split('|').any(|x| x == *c))
                    .for_each(|&e| help_line(&mut out, e)),
                None => COMMANDS.iter().for_each(|&e| help_line(&mut out, e)),
            }
            text(out)
        }
        "info" => match rest.as_slice() {
            [] => {
                let mut out = String::new();
                for (n, h) in INFO {
                    let _ = write!(out, "info {n}  -- {h}\r\n");
                }
                text(out)
            }
            [sub] => match info(cmds, sub, cpu) {
                Some(s) => text(s),
                None => text(format!("unknown command: '{}'\r\n", line.trim())),
            },
            [sub, ..] if INFO.iter().any(|(n, _)| n == sub) => text(
                "info: extraneous characters at the end of line\r\nTry \"help info\" for more information\r\n"
                    .to_string(),
            ),
            _ => text(format!("unknown command: '{}'\r\n", line.trim())),
        },
        "balloon" => match rest.as_slice() {
            [mb] => match mb.parse::<i64>() {
                Ok(mb) => {
                    let mut args = Map::new();
                    args.insert("value".into(), json!(mb.saturating_mul(1 << 20)));
                    as_hmp(cmds.run("balloon", args))
                }
                Err(_) => text(format!(
                    "balloon: invalid integer '{mb}'\r\nTry \"help balloon\" for more information\r\n"
                )),
            },
            [] => text(
                "balloon: integer expected\r\nTry \"help balloon\" for more information\r\n".into(),
            ),
            _ => extraneous(),
        },
        "set_link" => match rest.as_slice() {
            [name, state @ ("on" | "off")] => {
                let mut args = Map::new();
                args.insert("name".into(), json!(name));
                args.insert("up".into(), json!(*state == "on"));
                as_hmp(cmds.run("set_link", args))
            }
            [_, _, _, ..] => extraneous(),
            _ => text(
                "Expected 'on' or 'off'\r\nTry \"help set_link\" for more information\r\n"
                    .into(),
            ),
        },
        _ if !rest.is_empty() => extraneous(),
        "cont|c" => as_hmp(cmds.run("cont", Map::new())),
        "stop|s" => as_hmp(cmds.run("stop", Map::new())),
        "quit|q" => as_hmp(cmds.run("quit", Map::new())),
        "system_powerdown" => as_hmp(cmds.run("system_powerdown", Map::new())),
        "system_reset" => as_hmp(cmds.run("system_reset", Map::new())),
        _ => text(format!("unknown command: '{}'\r\n", line.trim())),
    }
}

/// A QMP command run from HMP: no output on success, `Error: …` on failure.
fn as_hmp(fut: CommandFuture) -> CommandFuture {
    Box::pin(async move {
        Ok(Value::String(match fut.await {
            Ok(_) => String::new(),
            Err(e) => format!("Error: {}\r\n", e.desc),
        }))
    })
}

fn info(cmds: &Commands, sub: &str, current_cpu: u32) -> Option<String> {
    let mut out = String::new();
    match sub {
        "status" => {
            let st = cmds.status();
            let running = st["running"].as_bool().unwrap_or(false);
            let status = st["status"].as_str().unwrap_or_default();
            out.push_str(if running {
                "VM status: running"
            } else {
                "VM status: paused"
            });
            if !running && status != "paused" {
                let _ = write!(out, " ({status})");
            }
            out.push_str("\r\n");
        }
        "version" => {
            let v = VersionInfo::oxvirt();
            let _ = write!(
                out,
                "{}.{}.{} ({})\r\n",
                v.qemu.major, v.qemu.minor, v.qemu.micro, v.package
            );
        }
        "name" => {
            if !cmds.info.name.is_empty() {
                let _ = write!(out, "{}\r\n", cmds.info.name);
            }
        }
        "uuid" => {
            let _ = write!(out, "{}\r\n", cmds.info.uuid);
        }
        "kvm" => out.push_str("kvm support: enabled\r\n"),
        "cpus" => {
            for t in cmds.control.vcpu_threads() {
                let mark = if t.cpu_index == current_cpu { '*' } else { ' ' };
                let _ = write!(
                    out,
                    "{mark} CPU #{}: thread_id={}\r\n",
                    t.cpu_index, t.thread_id
                );
            }
        }
        "chardev" => {
            for c in cmds.control.chardevs() {
                let _ = write!(out, "{}: filename={}\r\n", c.label, c.filename);
            }
        }
        "balloon" => match &cmds.devices.balloon {
            Some(b) => {
                let _ = write!(out, "balloon: actual={}\r\n", b.actual_bytes() >> 20);
            }
            None => out.push_str("Error: No balloon device has been activated\r\n"),
        },
        "memory_size_summary" => {
            let _ = write!(
                out,
                "base memory: {}\r\nplugged memory: 0\r\n",
                cmds.control.memory_size()
            );
        }
        "block" => {
            for (i, b) in cmds.blocks().iter().enumerate() {
                let mut d = b.describe();
                // A CD-ROM's medium and tray as they are now.
                let (tray_open, locked) =
                    super::media::overlay(&mut d, cmds.devices.media.as_ref());
                let removable = if d.removable {
                    format!(
                        "    Removable device: {}locked, tray {}\r\n",
                        if locked { "" } else { "not " },
                        if tray_open { "open" } else { "closed" }
                    )
                } else {
                    String::new()
                };
                if i > 0 {
                    out.push_str("\r\n");
                }
                if d.empty {
                    // QEMU's words for a drive without a medium.
                    let _ = write!(
                        out,
                        "{}: [not inserted]\r\n    Attached to:      {}\r\n{removable}",
                        d.qdev, d.qdev
                    );
                    continue;
                }
                let _ =
                    write!(
                    out,
                    "{}: {} ({}{})\r\n    Attached to:      {}\r\n{removable}    Cache mode:       {}{}{}\r\n",
                    d.node_name,
                    d.file,
                    d.format,
                    if d.read_only { ", read-only" } else { "" },
                    d.qdev,
                    if d.writeback { "writeback" } else { "writethrough" },
                    if d.direct { ", direct" } else { "" },
                    if d.no_flush { ", ignore flushes" } else { "" },
                );
            }
        }
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::control::VmControl;
    use crate::monitor::{Devices, MachineInfo};

    fn cmds() -> Commands {
        let (tx, _) = tokio::sync::broadcast::channel(8);
        Commands::new(
            MachineInfo {
                name: "vm1".into(),
                uuid: "u".into(),
                vcpus: 1,
                max_vcpus: 1,
                sockets: 1,
                dies: 1,
                cores: 1,
                threads: 1,
                cpu_type: "host-x86_64-cpu".into(),
            },
            VmControl::new(1 << 30).unwrap(),
            Devices::default(),
            Arc::new(qmp::Schema::parse(crate::monitor::SCHEMA_JSON).unwrap()),
            tx,
        )
    }

    async fn hmp(line: &str) -> String {
        run(&cmds(), line, None)
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn qemu_texts() {
        // Observed on QEMU 7.2 for the same lines.
        assert_eq!(hmp("foo").await, "unknown command: 'foo'\r\n");
        assert_eq!(hmp("info foo").await, "unknown command: 'info foo'\r\n");
        assert_eq!(hmp("").await, "");
        assert_eq!(
            hmp("cont extra").await,
            "cont|c: extraneous characters at the end of line\r\nTry \"help cont\" for more information\r\n"
        );
        assert_eq!(
            hmp("info status").await,
            "VM status: paused (prelaunch)\r\n"
        );
        assert_eq!(hmp("info name").await, "vm1\r\n");
        assert_eq!(hmp("info kvm").await, "kvm support: enabled\r\n");
        assert_eq!(
            hmp("info balloon").await,
            "Error: No balloon device has been activated\r\n"
        );
        assert!(hmp("help")
            .await
            .contains("cont|c  -- resume emulation\r\n"));
        assert!(hmp("info")
            .await
            .contains("info status  -- show the current VM status (running|paused)\r\n"));
        assert!(hmp("info version").await.starts_with("7.2.0 (oxvirt "));
        assert_eq!(
            hmp("help set_link").await,
            "set_link name on|off -- change the link status of a network adapter\r\n"
        );
        assert_eq!(
            hmp("set_link nope off").await,
            "Error: Device 'nope' not found\r\n"
        );
        let expected = "Expected 'on' or 'off'\r\nTry \"help set_link\" for more information\r\n";
        assert_eq!(hmp("set_link net0").await, expected);
        assert_eq!(hmp("set_link net0 maybe").await, expected);
        assert_eq!(
            hmp("set_link net0 off x").await,
            "set_link: extraneous characters at the end of line\r\nTry \"help set_link\" for more information\r\n"
        );
        assert_eq!(
            run(&cmds(), "info cpus", Some(7)).await.unwrap_err().desc,
            "Parameter 'cpu-index' expects a CPU number"
        );
    }
}

//! The LVM command-line tools as the logical pool backend uses them: running one
//! (blocking; errors read like libvirt's `virCommandRun`, with the tool's stderr) and
//! parsing what `vgs`, `lvs` and `pvs` print, with the options libvirt 9.0's
//! `storage_backend_logical.c` passes them.

use std::path::Path;
use std::process::{Command, Stdio};

use super::error::{Error, Result};

/// Where Debian's lvm2 package installs the tools (libvirt runs them by full path too).
pub const SBIN: &str = "/usr/sbin";

/// The tools the backend runs; all must be there for the pool type to be offered.
const TOOLS: &[&str] = &[
    "pvcreate", "pvremove", "pvs", "vgcreate", "vgchange", "vgremove", "vgs", "vgscan", "lvcreate",
    "lvchange", "lvremove", "lvs",
];

/// Whether the LVM tools are installed.
pub fn installed() -> bool {
    TOOLS.iter().all(|t| Path::new(SBIN).join(t).is_file())
}

/// Runs `/usr/sbin/TOOL ARGS…` and returns its stdout; a failure is libvirt's
/// "Child process (…) unexpected exit status N: STDERR".
pub fn run(tool: &str, args: &[&str]) -> Result<String> {
    let bin = Path::new(SBIN).join(tool);
    let out = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        // Messages in English for our errors; no "File descriptor leaked" noise from
        // descriptors the daemon holds.
        .env("LC_ALL", "C")
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .map_err(|e| Error::io("execute binary", &bin, &e))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let cmdline = std::iter::once(bin.to_string_lossy().into_owned())
        .chain(args.iter().map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let status = match out.status.code() {
        Some(c) => format!("exit status {c}"),
        None => "fatal signal".to_string(),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr = stderr.trim();
    Err(Error::Internal(if stderr.is_empty() {
        format!("Child process ({cmdline}) unexpected {status}")
    } else {
        format!("Child process ({cmdline}) unexpected {status}: {stderr}")
    }))
}

/// `vgs --separator : --noheadings --units b --unbuffered --nosuffix --options
/// vg_size,vg_free VG`: size and free bytes.
pub const VGS_ARGS: &[&str] = &[
    "--separator",
    ":",
    "--noheadings",
    "--units",
    "b",
    "--unbuffered",
    "--nosuffix",
    "--options",
    "vg_size,vg_free",
];

/// Parses [`VGS_ARGS`] output (`  10603200512:4328521728`, perhaps with a trailing `:`).
pub fn parse_vgs(out: &str) -> Result<(u64, u64)> {
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| Error::Internal("vgs printed nothing".into()))?;
    let mut fields = line.split(':');
    let mut num = || -> Option<u64> { fields.next()?.trim().parse().ok() };
    match (num(), num()) {
        (Some(size), Some(free)) if free <= size => Ok((size, free)),
        _ => Err(Error::Internal(format!("malformed vgs output '{line}'"))),
    }
}

/// `lvs` with libvirt's options: one row per segment, fields split by `#` (LV names
/// may hold `:`, and the devices field holds `,`).
pub const LVS_ARGS: &[&str] = &[
    "--separator",
    "#",
    "--noheadings",
    "--units",
    "b",
    "--unbuffered",
    "--nosuffix",
    "--options",
    "lv_name,origin,uuid,devices,segtype,stripes,seg_size,vg_extent_size,size,lv_attr",
];

/// A logical volume as `lvs` describes it (segments merged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lv {
    pub name: String,
    /// The LV's UUID: the volume's key, as libvirt makes it.
    pub uuid: String,
    /// Bytes allocated (`size`).
    pub size: u64,
    /// `lv_attr`, e.g. `-wi-a-----`.
    pub attr: String,
    /// A snapshot's origin LV (`None` for a plain LV or a `--virtualsize` one).
    pub origin: Option<String>,
    /// Where the LV's data lies on the physical volumes.
    pub extents: Vec<Extent>,
}

impl Lv {
    /// A sparse volume: libvirt's thin snapshot made with `--virtualsize` (attr `s`).
    pub fn sparse(&self) -> bool {
        self.attr.starts_with('s')
    }
}

/// One extent of a volume on a physical volume, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extent {
    pub device: String,
    pub start: u64,
    pub end: u64,
}

/// Parses [`LVS_ARGS`] output into volumes, in order, skipping what libvirt skips:
/// inactive LVs (attr[4] is not `a`) and thin pools (attr[0] `t`), which have no
/// device node.
pub fn parse_lvs(out: &str) -> Result<Vec<Lv>> {
    let mut lvs: Vec<Lv> = Vec::new();
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let bad = |what: &str| Error::Internal(format!("malformed volume extent {what} value"));
        let f: Vec<&str> = line.strip_suffix('#').unwrap_or(line).split('#').collect();
        let [name, origin, uuid, devices, segtype, stripes, seg_size, extent_size, size, attr] =
            f[..]
        else {
            return Err(Error::Internal(format!("malformed lvs output '{line}'")));
        };
        if attr.as_bytes().get(4) != Some(&b'a') || attr.starts_with('t') {
            continue;
        }
        let seg_size: u64 = seg_size.parse().map_err(|_| bad("length"))?;
        let extent_size: u64 = extent_size.parse().map_err(|_| bad("size"))?;
        let size: u64 = size
            .parse()
            .map_err(|_| Error::Internal("malformed volume allocation value".into()))?;
        // Striped, mirrored and raid segments list one device per stripe.
        let count = if segtype == "striped" || segtype == "mirror" || segtype.starts_with("raid") {
            stripes.parse::<usize>().map_err(|_| bad("stripes"))?
        } else {
            1
        };
        let extents = parse_devices(devices, count, seg_size, extent_size)?;
        // Skip the hidden origin of a --virtualsize LV ("[lv_vorigin]").
        let origin = Some(origin)
            .filter(|o| !o.is_empty() && !o.starts_with('['))
            .map(str::to_string);
        match lvs.iter_mut().find(|l| l.name == name) {
            Some(lv) => lv.extents.extend(extents),
            None => lvs.push(Lv {
                name: name.to_string(),
                uuid: uuid.to_string(),
                size,
                attr: attr.to_string(),
                origin,
                extents,
            }),
        }
    }
    Ok(lvs)
}

/// The devices field, `PATH(FIRST_EXTENT)[,PATH(FIRST_EXTENT)…]`, as extents.
fn parse_devices(field: &str, count: usize, length: u64, extent_size: u64) -> Result<Vec<Extent>> {
    let bad = || Error::Internal("malformed volume extent devices value".into());
    let mut out = Vec::new();
    let mut rest = field;
    for i in 0..count {
        let open = rest.find('(').ok_or_else(bad)?;
        let close = open + rest[open..].find(')').ok_or_else(bad)?;
        let first: u64 = rest[open + 1..close]
            .parse()
            .map_err(|_| Error::Internal("malformed volume extent offset value".into()))?;
        let start = first.checked_mul(extent_size).ok_or_else(bad)?;
        out.push(Extent {
            device: rest[..open].to_string(),
            start,
            end: start.checked_add(length).ok_or_else(bad)?,
        });
        rest = &rest[close + 1..];
        if i + 1 < count {
            rest = rest.strip_prefix(',').ok_or_else(bad)?;
        }
    }
    Ok(out)
}

/// `pvs --noheadings -o pv_name,vg_name --separator ,`: every physical volume.
pub const PVS_ARGS: &[&str] = &["--noheadings", "-o", "pv_name,vg_name", "--separator", ","];

/// A volume group and its physical volumes, as `pvs` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgSource {
    pub vg: String,
    pub devices: Vec<String>,
}

/// Parses [`PVS_ARGS`] output into volume groups in order of first appearance; a
/// physical volume in no group is left out (libvirt's regex needs both fields).
pub fn parse_pvs(out: &str) -> Vec<VgSource> {
    let mut vgs: Vec<VgSource> = Vec::new();
    for line in out.lines() {
        let Some((pv, vg)) = line.trim().split_once(',') else {
            continue;
        };
        let (pv, vg) = (pv.trim(), vg.trim().trim_end_matches(','));
        if pv.is_empty() || vg.is_empty() {
            continue;
        }
        match vgs.iter_mut().find(|s| s.vg == vg) {
            Some(s) => s.devices.push(pv.to_string()),
            None => vgs.push(VgSource {
                vg: vg.to_string(),
                devices: vec![pv.to_string()],
            }),
        }
    }
    vgs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vgs_output_parses() {
        assert_eq!(
            parse_vgs("  62914560:54525952\n").unwrap(),
            (62914560, 54525952)
        );
        // SLES-style trailing separator.
        assert_eq!(parse_vgs("  10:4:\n").unwrap(), (10, 4));
        assert!(parse_vgs("").is_err());
        assert!(parse_vgs("  x:1\n").is_err());
        assert!(parse_vgs("  1:2\n").is_err());
    }

    #[test]
    fn lvs_output_parses_like_libvirt() {
        // libvirt's own examples (storage_backend_logical.c), plus an inactive LV and a
        // thin pool, which are skipped.
        let out = "\
  RootLV##06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky#/dev/hda2(0)#linear#1#5234491392#33554432#5234491392#-wi-ao
  Test3##UB5hFw-kmlm-LSoX-EI1t-ioVd-h7GL-M0W8Ht#/dev/hda2(251)#linear#1#2181038080#33554432#2181038080#-wi-a-
  Test3#Test2#UB5hFw-kmlm-LSoX-EI1t-ioVd-h7GL-M0W8Ht#/dev/hda2(187)#linear#1#1040187392#33554432#1040187392#swi-a-
  test_stripes##fSLSZH-zAS2-yAIb-n4mV-Al9u-HA3V-oo9K1B#/dev/sdc1(10240),/dev/sdd1(0)#striped#2#42949672960#4194304#42949672960#-wi-a-
  off##aaaaaa-zAS2-yAIb-n4mV-Al9u-HA3V-oo9K1B#/dev/sdc1(5)#linear#1#4194304#4194304#4194304#-wi-----
  tp##bbbbbb-zAS2-yAIb-n4mV-Al9u-HA3V-oo9K1B#tp_tdata(0)#thin-pool#1#4194304#4194304#4194304#twi-a-tz--
  sp#[sp_vorigin]#cccccc-zAS2-yAIb-n4mV-Al9u-HA3V-oo9K1B#/dev/loop0(2)#linear#1#4194304#4194304#4194304#swi-a-s---#
";
        let lvs = parse_lvs(out).unwrap();
        let names: Vec<&str> = lvs.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["RootLV", "Test3", "test_stripes", "sp"]);
        assert_eq!(lvs[0].uuid, "06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky");
        assert_eq!(lvs[0].size, 5234491392);
        assert_eq!(
            lvs[0].extents,
            [Extent {
                device: "/dev/hda2".into(),
                start: 0,
                end: 5234491392
            }]
        );
        // Two segments of one LV: both extents, the first row's other fields.
        assert_eq!(lvs[1].extents.len(), 2);
        assert_eq!(lvs[1].extents[1].start, 187 * 33554432);
        assert_eq!(lvs[1].origin, None);
        let s = &lvs[2];
        assert_eq!(s.extents.len(), 2);
        assert_eq!(s.extents[0].device, "/dev/sdc1");
        assert_eq!(s.extents[0].start, 10240 * 4194304);
        assert_eq!(s.extents[1].device, "/dev/sdd1");
        assert_eq!(s.extents[1].end, 42949672960);
        assert!(lvs[3].sparse() && !lvs[0].sparse());
        assert_eq!(lvs[3].origin, None);
        assert_eq!(parse_lvs("").unwrap(), []);
        let e = parse_lvs("  a##u#/dev/x#linear#1#1#1#1#-wi-a-\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("malformed volume extent devices value"),
            "{e}"
        );
        assert!(parse_lvs("  a#b\n").is_err());
    }

    #[test]
    fn pvs_output_groups_devices_by_volume_group() {
        let out = "  /dev/loop0,vg1\n  /dev/sdb,\n  /dev/loop1,vg2\n  /dev/loop2,vg1\n";
        assert_eq!(
            parse_pvs(out),
            [
                VgSource {
                    vg: "vg1".into(),
                    devices: vec!["/dev/loop0".into(), "/dev/loop2".into()]
                },
                VgSource {
                    vg: "vg2".into(),
                    devices: vec!["/dev/loop1".into()]
                },
            ]
        );
        assert!(parse_pvs("").is_empty());
    }

    #[test]
    fn failed_tools_report_their_command_line_and_stderr() {
        // `false` stands in for a tool: a failure names the command and status.
        let e = run("../../bin/false", &["-x", "vg"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "internal error: Child process (/usr/sbin/../../bin/false -x vg) unexpected exit status 1"
        );
        let e = run("../../bin/sh", &["-c", "echo '  oops' >&2; exit 5"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "internal error: Child process (/usr/sbin/../../bin/sh -c echo '  oops' >&2; exit 5) unexpected exit status 5: oops"
        );
        assert_eq!(run("../../bin/sh", &["-c", "echo ok"]).unwrap(), "ok\n");
        let e = run("no-such-lvm-tool", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot execute binary '/usr/sbin/no-such-lvm-tool': No such file or directory"
        );
    }
}

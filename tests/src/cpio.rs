//! A minimal `newc` cpio writer (the initramfs format), with fixed metadata so that the
//! same inputs give the same bytes. Device nodes need no privileges: they are headers.

/// One archive member.
pub enum Entry<'a> {
    Dir(&'a str),
    File {
        path: &'a str,
        mode: u32,
        data: &'a [u8],
    },
    Symlink {
        path: &'a str,
        target: &'a str,
    },
    CharDev {
        path: &'a str,
        major: u32,
        minor: u32,
    },
}

/// The archive bytes for `entries`, followed by the trailer.
pub fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            Entry::Dir(p) => member(&mut out, ino, p, 0o040_755, &[], 0, 0),
            Entry::File { path, mode, data } => {
                member(&mut out, ino, path, 0o100_000 | mode, data, 0, 0)
            }
            Entry::Symlink { path, target } => {
                member(&mut out, ino, path, 0o120_777, target.as_bytes(), 0, 0)
            }
            Entry::CharDev { path, major, minor } => {
                member(&mut out, ino, path, 0o020_600, &[], *major, *minor)
            }
        }
    }
    member(&mut out, 0, "TRAILER!!!", 0, &[], 0, 0);
    out
}

fn member(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8], rmaj: u32, rmin: u32) {
    let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        data.len() as u32,
        0,
        0,
        rmaj,
        rmin,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_newc() {
        let a = archive(&[Entry::File {
            path: "init",
            mode: 0o755,
            data: b"hi",
        }]);
        assert!(a.starts_with(b"070701"));
        // header (110) + "init\0" (5) padded to 116, data 2 padded to 4
        assert_eq!(&a[110..114], b"init");
        assert_eq!(&a[116..118], b"hi");
        assert_eq!(a.len() % 4, 0);
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}

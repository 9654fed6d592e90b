//! Holes in volume files, for sparse streams (`vol-upload --sparse`,
//! `vol-download --sparse`): where a file's data and holes lie (`SEEK_DATA` /
//! `SEEK_HOLE`), and skipping a hole while writing so that it reads as zeros.

use std::fs::File;
use std::io::{Seek, SeekFrom};

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

/// A stretch of a file: `len` bytes of data at `offset`, or a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    Data { offset: u64, len: u64 },
    Hole { len: u64 },
}

/// The data and holes of `file` between `start` and `end`, in order. A file system
/// without `SEEK_DATA` gives one data extent.
pub fn extents(file: &File, start: u64, end: u64) -> std::io::Result<Vec<Extent>> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        let data = match lseek(file, pos as i64, Whence::SeekData) {
            Ok(d) => (d as u64).min(end),
            // No data after pos: the rest is a hole.
            Err(Errno::ENXIO) => end,
            Err(Errno::EINVAL) => {
                out.push(Extent::Data {
                    offset: pos,
                    len: end - pos,
                });
                break;
            }
            Err(e) => return Err(e.into()),
        };
        if data > pos {
            out.push(Extent::Hole { len: data - pos });
            pos = data;
            continue;
        }
        let hole = match lseek(file, pos as i64, Whence::SeekHole) {
            Ok(h) => (h as u64).min(end),
            Err(e) => return Err(e.into()),
        };
        out.push(Extent::Data {
            offset: pos,
            len: hole - pos,
        });
        pos = hole;
    }
    Ok(out)
}

/// Skips `len` bytes of a file being written at its current position, leaving them
/// reading as zeros (punched out when the file already had data there); a file that
/// ends inside the hole grows to its end.
pub fn skip_hole(file: &mut File, len: u64) -> std::io::Result<()> {
    let pos = file.stream_position()?;
    let size = file.metadata()?.len();
    let end = pos.saturating_add(len);
    if pos < size {
        let punch = end.min(size) - pos;
        let mode = nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
            | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
        nix::fcntl::fallocate(&*file, mode, pos as i64, punch as i64)?;
    }
    if end > size {
        file.set_len(end)?;
    }
    file.seek(SeekFrom::Start(end))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    #[test]
    fn extents_find_data_and_holes_and_skip_hole_zeroes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 1 << 20).unwrap();
        let ext = extents(&f, 0, 8 << 20).unwrap();
        let data: u64 = ext
            .iter()
            .map(|e| match e {
                Extent::Data { len, .. } => *len,
                Extent::Hole { .. } => 0,
            })
            .sum();
        let total: u64 = ext
            .iter()
            .map(|e| match e {
                Extent::Data { len, .. } | Extent::Hole { len } => *len,
            })
            .sum();
        assert_eq!(total, 8 << 20);
        assert!((4096..8 << 20).contains(&data), "{ext:?}");
        // Skipping over the data makes it zeros; skipping past the end grows the file.
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        skip_hole(&mut f, 4096).unwrap();
        let mut b = [9u8; 4096];
        f.read_exact_at(&mut b, 1 << 20).unwrap();
        assert!(b.iter().all(|x| *x == 0));
        f.seek(SeekFrom::Start(8 << 20)).unwrap();
        skip_hole(&mut f, 4096).unwrap();
        f.write_all(b"x").unwrap();
        assert_eq!(f.metadata().unwrap().len(), (8 << 20) + 4097);
    }
}

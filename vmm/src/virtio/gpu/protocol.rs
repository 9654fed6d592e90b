//! The virtio-gpu 2D wire format (virtio 1.2 §5.7.6): command and response codes,
//! the control header, and the request structures the 2D command set uses, decoded
//! from the bytes the driver put in a request's readable descriptors.

/// Command types (`enum virtio_gpu_ctrl_type`).
pub mod cmd {
    pub const GET_DISPLAY_INFO: u32 = 0x0100;
    pub const RESOURCE_CREATE_2D: u32 = 0x0101;
    pub const RESOURCE_UNREF: u32 = 0x0102;
    pub const SET_SCANOUT: u32 = 0x0103;
    pub const RESOURCE_FLUSH: u32 = 0x0104;
    pub const TRANSFER_TO_HOST_2D: u32 = 0x0105;
    pub const RESOURCE_ATTACH_BACKING: u32 = 0x0106;
    pub const RESOURCE_DETACH_BACKING: u32 = 0x0107;
    pub const GET_EDID: u32 = 0x010a;
    pub const UPDATE_CURSOR: u32 = 0x0300;
    pub const MOVE_CURSOR: u32 = 0x0301;
}

/// Response types.
pub mod resp {
    pub const OK_NODATA: u32 = 0x1100;
    pub const OK_DISPLAY_INFO: u32 = 0x1101;
    pub const OK_EDID: u32 = 0x1104;
    pub const ERR_UNSPEC: u32 = 0x1200;
    pub const ERR_OUT_OF_MEMORY: u32 = 0x1201;
    pub const ERR_INVALID_SCANOUT_ID: u32 = 0x1202;
    pub const ERR_INVALID_RESOURCE_ID: u32 = 0x1203;
    pub const ERR_INVALID_PARAMETER: u32 = 0x1205;
}

/// Header flag: the driver wants a fence; the response echoes it with `fence_id`.
pub const FLAG_FENCE: u32 = 1;
/// Size of `struct virtio_gpu_ctrl_hdr`.
pub const HDR_SIZE: usize = 24;
/// Scanouts the protocol can describe in GET_DISPLAY_INFO.
pub const MAX_SCANOUTS: usize = 16;
/// Size of the EDID blob in a GET_EDID response.
pub const EDID_BLOB: usize = 1024;
/// Most memory entries one ATTACH_BACKING may carry (QEMU's limit too).
pub const MAX_BACKING_ENTRIES: u32 = 16384;

/// `struct virtio_gpu_ctrl_hdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub kind: u32,
    pub flags: u32,
    pub fence_id: u64,
    pub ctx_id: u32,
}

/// `struct virtio_gpu_rect`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuRect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl GpuRect {
    /// Whether the rectangle lies inside a `width`×`height` area (no overflow).
    pub fn inside(&self, width: u32, height: u32) -> bool {
        u64::from(self.x) + u64::from(self.width) <= u64::from(width)
            && u64::from(self.y) + u64::from(self.height) <= u64::from(height)
    }
}

/// One guest memory range of a resource's backing (`struct virtio_gpu_mem_entry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemEntry {
    pub addr: u64,
    pub len: u32,
}

/// A decoded control or cursor queue request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    GetDisplayInfo,
    GetEdid {
        scanout: u32,
    },
    ResourceCreate2d {
        resource: u32,
        format: u32,
        width: u32,
        height: u32,
    },
    ResourceUnref {
        resource: u32,
    },
    SetScanout {
        rect: GpuRect,
        scanout: u32,
        resource: u32,
    },
    ResourceFlush {
        rect: GpuRect,
        resource: u32,
    },
    TransferToHost2d {
        rect: GpuRect,
        offset: u64,
        resource: u32,
    },
    AttachBacking {
        resource: u32,
        entries: Vec<MemEntry>,
    },
    DetachBacking {
        resource: u32,
    },
    /// UPDATE_CURSOR and MOVE_CURSOR: consumed, the VNC pointer is the host's.
    Cursor,
}

/// Why a request could not be decoded: the error response it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than its structure, or an unknown command: ERR_UNSPEC.
    Unspec,
    /// ATTACH_BACKING with more entries than allowed or than the request holds.
    BadEntries,
}

/// Little-endian reader over a request's bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(self.0.get(at..at + 4)?.try_into().ok()?))
    }
    fn u64(&self, at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(self.0.get(at..at + 8)?.try_into().ok()?))
    }
    fn rect(&self, at: usize) -> Option<GpuRect> {
        Some(GpuRect {
            x: self.u32(at)?,
            y: self.u32(at + 4)?,
            width: self.u32(at + 8)?,
            height: self.u32(at + 12)?,
        })
    }
}

/// Decodes the header at the start of `b` (None: shorter than a header).
pub fn header(b: &[u8]) -> Option<Header> {
    let r = Reader(b);
    Some(Header {
        kind: r.u32(0)?,
        flags: r.u32(4)?,
        fence_id: r.u64(8)?,
        ctx_id: r.u32(16)?,
    })
}

/// Decodes the request after the header (`b` is the whole request).
pub fn decode(kind: u32, b: &[u8]) -> Result<Request, DecodeError> {
    let r = Reader(b);
    let h = HDR_SIZE;
    let u = |at| r.u32(at).ok_or(DecodeError::Unspec);
    let rect = |at| r.rect(at).ok_or(DecodeError::Unspec);
    Ok(match kind {
        cmd::GET_DISPLAY_INFO => Request::GetDisplayInfo,
        cmd::GET_EDID => Request::GetEdid { scanout: u(h)? },
        cmd::RESOURCE_CREATE_2D => Request::ResourceCreate2d {
            resource: u(h)?,
            format: u(h + 4)?,
            width: u(h + 8)?,
            height: u(h + 12)?,
        },
        cmd::RESOURCE_UNREF => Request::ResourceUnref { resource: u(h)? },
        cmd::SET_SCANOUT => Request::SetScanout {
            rect: rect(h)?,
            scanout: u(h + 16)?,
            resource: u(h + 20)?,
        },
        cmd::RESOURCE_FLUSH => Request::ResourceFlush {
            rect: rect(h)?,
            resource: u(h + 16)?,
        },
        cmd::TRANSFER_TO_HOST_2D => Request::TransferToHost2d {
            rect: rect(h)?,
            offset: r.u64(h + 16).ok_or(DecodeError::Unspec)?,
            resource: u(h + 24)?,
        },
        cmd::RESOURCE_ATTACH_BACKING => {
            let resource = u(h)?;
            let n = u(h + 4)?;
            if n > MAX_BACKING_ENTRIES {
                return Err(DecodeError::BadEntries);
            }
            let entries = (0..n as usize)
                .map(|i| {
                    let at = h + 8 + i * 16;
                    Some(MemEntry {
                        addr: r.u64(at)?,
                        len: r.u32(at + 8)?,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .ok_or(DecodeError::BadEntries)?;
            Request::AttachBacking { resource, entries }
        }
        cmd::RESOURCE_DETACH_BACKING => Request::DetachBacking { resource: u(h)? },
        cmd::UPDATE_CURSOR | cmd::MOVE_CURSOR => Request::Cursor,
        _ => return Err(DecodeError::Unspec),
    })
}

/// A response header answering `req` with `kind` (a fenced request's fence is echoed).
pub fn response_header(req: &Header, kind: u32) -> [u8; HDR_SIZE] {
    let mut b = [0u8; HDR_SIZE];
    b[0..4].copy_from_slice(&kind.to_le_bytes());
    if req.flags & FLAG_FENCE != 0 {
        b[4..8].copy_from_slice(&FLAG_FENCE.to_le_bytes());
        b[8..16].copy_from_slice(&req.fence_id.to_le_bytes());
        b[16..20].copy_from_slice(&req.ctx_id.to_le_bytes());
    }
    b
}

/// Largest request read from the driver: ATTACH_BACKING with every entry allowed.
pub const MAX_REQUEST: usize = HDR_SIZE + 8 + MAX_BACKING_ENTRIES as usize * 16;

#[cfg(test)]
pub(crate) mod encode {
    //! Requests as a driver writes them, for the tests.
    use super::*;

    pub fn hdr(kind: u32, fence: Option<u64>) -> Vec<u8> {
        let mut b = vec![0u8; HDR_SIZE];
        b[0..4].copy_from_slice(&kind.to_le_bytes());
        if let Some(f) = fence {
            b[4..8].copy_from_slice(&FLAG_FENCE.to_le_bytes());
            b[8..16].copy_from_slice(&f.to_le_bytes());
        }
        b
    }

    pub fn words(kind: u32, w: &[u32]) -> Vec<u8> {
        let mut b = hdr(kind, None);
        for x in w {
            b.extend_from_slice(&x.to_le_bytes());
        }
        b
    }

    pub fn transfer(rect: [u32; 4], offset: u64, resource: u32) -> Vec<u8> {
        let mut b = words(cmd::TRANSFER_TO_HOST_2D, &rect);
        b.extend_from_slice(&offset.to_le_bytes());
        b.extend_from_slice(&resource.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b
    }

    pub fn attach(resource: u32, entries: &[(u64, u32)]) -> Vec<u8> {
        let mut b = words(
            cmd::RESOURCE_ATTACH_BACKING,
            &[resource, entries.len() as u32],
        );
        for (a, l) in entries {
            b.extend_from_slice(&a.to_le_bytes());
            b.extend_from_slice(&l.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::encode::*;
    use super::*;

    #[test]
    fn decodes_the_2d_commands() {
        let b = words(cmd::RESOURCE_CREATE_2D, &[7, 2, 640, 480]);
        assert_eq!(
            decode(header(&b).unwrap().kind, &b),
            Ok(Request::ResourceCreate2d {
                resource: 7,
                format: 2,
                width: 640,
                height: 480
            })
        );
        let b = words(cmd::SET_SCANOUT, &[0, 0, 640, 480, 0, 7]);
        assert_eq!(
            decode(cmd::SET_SCANOUT, &b),
            Ok(Request::SetScanout {
                rect: GpuRect {
                    x: 0,
                    y: 0,
                    width: 640,
                    height: 480
                },
                scanout: 0,
                resource: 7
            })
        );
        let b = transfer([1, 2, 3, 4], 0x1234, 7);
        assert_eq!(
            decode(cmd::TRANSFER_TO_HOST_2D, &b),
            Ok(Request::TransferToHost2d {
                rect: GpuRect {
                    x: 1,
                    y: 2,
                    width: 3,
                    height: 4
                },
                offset: 0x1234,
                resource: 7
            })
        );
        let b = attach(7, &[(0x1000, 4096), (0x8000, 100)]);
        assert_eq!(
            decode(cmd::RESOURCE_ATTACH_BACKING, &b),
            Ok(Request::AttachBacking {
                resource: 7,
                entries: vec![
                    MemEntry {
                        addr: 0x1000,
                        len: 4096
                    },
                    MemEntry {
                        addr: 0x8000,
                        len: 100
                    }
                ]
            })
        );
    }

    #[test]
    fn short_unknown_and_oversized_requests_are_refused() {
        let b = words(cmd::RESOURCE_CREATE_2D, &[7, 2]);
        assert_eq!(
            decode(cmd::RESOURCE_CREATE_2D, &b),
            Err(DecodeError::Unspec)
        );
        assert_eq!(decode(0x0200, &hdr(0x0200, None)), Err(DecodeError::Unspec));
        // More entries claimed than the request carries, or than allowed.
        let mut b = attach(7, &[(0x1000, 4096)]);
        b[HDR_SIZE + 4..HDR_SIZE + 8].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            decode(cmd::RESOURCE_ATTACH_BACKING, &b),
            Err(DecodeError::BadEntries)
        );
        let b = words(cmd::RESOURCE_ATTACH_BACKING, &[7, MAX_BACKING_ENTRIES + 1]);
        assert_eq!(
            decode(cmd::RESOURCE_ATTACH_BACKING, &b),
            Err(DecodeError::BadEntries)
        );
        assert_eq!(header(&[0u8; 10]), None);
    }

    #[test]
    fn responses_echo_the_fence() {
        let h = header(&hdr(cmd::RESOURCE_FLUSH, Some(99))).unwrap();
        let r = response_header(&h, resp::OK_NODATA);
        assert_eq!(&r[0..4], &resp::OK_NODATA.to_le_bytes());
        assert_eq!(&r[4..8], &FLAG_FENCE.to_le_bytes());
        assert_eq!(&r[8..16], &99u64.to_le_bytes());
        let h = header(&hdr(cmd::RESOURCE_FLUSH, None)).unwrap();
        assert_eq!(&response_header(&h, resp::OK_NODATA)[4..16], &[0u8; 12]);
    }
}

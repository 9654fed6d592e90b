//! The 2D command set executed against the device's resources: a host copy per
//! resource (what TRANSFER_TO_HOST_2D fills from the guest's backing pages), the one
//! scanout, and the damage RESOURCE_FLUSH reports for the console to pick up.
//!
//! Everything the guest controls is bounded: resource sizes count against
//! [`MAX_HOST_MEMORY`] (QEMU's `max_hostmem` default), each side is at most
//! [`MAX_DIMENSION`] pixels, there are at most [`MAX_RESOURCES`] resources and
//! [`protocol::MAX_BACKING_ENTRIES`] backing entries per resource, and every
//! backing range must lie in guest RAM.

use std::collections::BTreeMap;

use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use super::protocol::{self, resp, DecodeError, GpuRect, Header, MemEntry, Request};
use crate::display::{Image, Rect};
use crate::virtio::GuestMem;

/// Host memory all resources together may take.
pub const MAX_HOST_MEMORY: u64 = 256 << 20;
/// Largest width or height of a resource.
pub const MAX_DIMENSION: u32 = 16384;
/// Most resources alive at once.
pub const MAX_RESOURCES: usize = 16384;
/// Smallest scanout QEMU accepts (and so drivers use).
const MIN_SCANOUT: u32 = 16;
/// Damage rectangles kept before they collapse into their bounding box.
const MAX_DAMAGE: usize = 64;

/// Pixel layouts of the 2D formats (all 4 bytes per pixel): which byte holds
/// red, green and blue.
fn rgb_bytes(format: u32) -> Option<[usize; 3]> {
    Some(match format {
        // B8G8R8A8, B8G8R8X8: Linux's XRGB8888 on a little-endian guest.
        1 | 2 => [2, 1, 0],
        // A8R8G8B8, X8R8G8B8.
        3 | 4 => [1, 2, 3],
        // R8G8B8A8, R8G8B8X8.
        67 | 134 => [0, 1, 2],
        // X8B8G8R8, A8B8G8R8.
        68 | 121 => [3, 2, 1],
        _ => return None,
    })
}

/// A resource's guest pages, in order.
#[derive(Debug)]
struct Backing {
    entries: Vec<MemEntry>,
    /// Offset of each entry within the backing.
    starts: Vec<u64>,
    len: u64,
}

impl Backing {
    fn new(entries: Vec<MemEntry>) -> Backing {
        let mut starts = Vec::with_capacity(entries.len());
        let mut len = 0u64;
        for e in &entries {
            starts.push(len);
            len += u64::from(e.len);
        }
        Backing {
            entries,
            starts,
            len,
        }
    }

    /// Reads `buf.len()` bytes at `offset` of the backing; false when they are not
    /// all inside it or guest memory refuses.
    fn read(&self, mem: &GuestMem, offset: u64, buf: &mut [u8]) -> bool {
        if offset + buf.len() as u64 > self.len {
            return false;
        }
        let mut i = self.starts.partition_point(|&s| s <= offset) - 1;
        let (mut at, mut done) = (offset - self.starts[i], 0usize);
        while done < buf.len() {
            let Some(e) = self.entries.get(i) else {
                return false;
            };
            let n = ((u64::from(e.len) - at) as usize).min(buf.len() - done);
            if mem
                .read_slice(&mut buf[done..done + n], GuestAddress(e.addr + at))
                .is_err()
            {
                return false;
            }
            done += n;
            i += 1;
            at = 0;
        }
        true
    }
}

/// One 2D resource: its format, size, host copy and backing.
#[derive(Debug)]
struct Resource {
    rgb: [usize; 3],
    width: u32,
    height: u32,
    pixels: Vec<u8>,
    backing: Option<Backing>,
}

impl Resource {
    fn stride(&self) -> usize {
        self.width as usize * 4
    }

    /// The pixel at (`x`, `y`) as 0x00RRGGBB.
    fn rgb(&self, x: u32, y: u32) -> u32 {
        let at = y as usize * self.stride() + x as usize * 4;
        let p = &self.pixels[at..at + 4];
        u32::from(p[self.rgb[0]]) << 16 | u32::from(p[self.rgb[1]]) << 8 | u32::from(p[self.rgb[2]])
    }
}

/// What scanout 0 shows: a rectangle of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanout {
    pub resource: u32,
    pub rect: GpuRect,
}

/// The device's resources and scanout, shared by the worker and the console.
#[derive(Debug)]
pub struct GpuState {
    resources: BTreeMap<u32, Resource>,
    host_memory: u64,
    scanout: Option<Scanout>,
    /// Flushed rectangles of the scanout (scanout coordinates) not yet shown.
    damage: Vec<Rect>,
    /// Bumped whenever the scanout is set or changes size: the console redraws all.
    pub generation: u64,
    /// The size GET_DISPLAY_INFO offers and its EDID.
    preferred: (u32, u32),
    edid: [u8; 128],
}

/// An error response code.
type Fail = u32;

impl GpuState {
    /// A device that offers `preferred` (width, height) as its display.
    pub fn new(preferred: (u32, u32)) -> GpuState {
        GpuState {
            resources: BTreeMap::new(),
            host_memory: 0,
            scanout: None,
            damage: Vec::new(),
            generation: 0,
            preferred,
            edid: crate::display::edid::edid(preferred.0, preferred.1),
        }
    }

    /// Forgets every resource and the scanout (device reset).
    pub fn reset(&mut self) {
        self.resources.clear();
        self.host_memory = 0;
        self.set_scanout(None);
    }

    /// The scanout, if the driver set one.
    pub fn scanout(&self) -> Option<Scanout> {
        self.scanout
    }

    /// Host memory the resources take now.
    pub fn host_memory(&self) -> u64 {
        self.host_memory
    }

    fn set_scanout(&mut self, s: Option<Scanout>) {
        if s != self.scanout {
            self.scanout = s;
            self.generation += 1;
            self.damage.clear();
        }
    }

    /// Executes one request (`req` as read from the descriptors) and returns the
    /// response bytes.
    pub fn execute(&mut self, mem: &GuestMem, req: &[u8]) -> Vec<u8> {
        let Some(h) = protocol::header(req) else {
            return protocol::response_header(&Header::default(), resp::ERR_UNSPEC).to_vec();
        };
        let request = match protocol::decode(h.kind, req) {
            Ok(r) => r,
            Err(DecodeError::Unspec) | Err(DecodeError::BadEntries) => {
                tracing::debug!("virtio-gpu: bad or unknown request {:#x}", h.kind);
                return protocol::response_header(&h, resp::ERR_UNSPEC).to_vec();
            }
        };
        let result = match request {
            Request::GetDisplayInfo => Ok(self.display_info(&h)),
            Request::GetEdid { scanout } => self.get_edid(&h, scanout),
            Request::ResourceCreate2d {
                resource,
                format,
                width,
                height,
            } => self
                .create(resource, format, width, height)
                .map(|()| Vec::new()),
            Request::ResourceUnref { resource } => self.unref(resource).map(|()| Vec::new()),
            Request::SetScanout {
                rect,
                scanout,
                resource,
            } => self
                .set_scanout_cmd(rect, scanout, resource)
                .map(|()| Vec::new()),
            Request::ResourceFlush { rect, resource } => {
                self.flush(rect, resource).map(|()| Vec::new())
            }
            Request::TransferToHost2d {
                rect,
                offset,
                resource,
            } => self
                .transfer(mem, rect, offset, resource)
                .map(|()| Vec::new()),
            Request::AttachBacking { resource, entries } => {
                self.attach(mem, resource, entries).map(|()| Vec::new())
            }
            Request::DetachBacking { resource } => self.detach(resource).map(|()| Vec::new()),
            Request::Cursor => Ok(Vec::new()),
        };
        match result {
            Ok(body) if body.is_empty() => protocol::response_header(&h, resp::OK_NODATA).to_vec(),
            Ok(full) => full,
            Err(code) => {
                tracing::debug!("virtio-gpu: request {:#x} refused: {code:#x}", h.kind);
                protocol::response_header(&h, code).to_vec()
            }
        }
    }

    fn display_info(&self, h: &Header) -> Vec<u8> {
        let mut b = protocol::response_header(h, resp::OK_DISPLAY_INFO).to_vec();
        for i in 0..protocol::MAX_SCANOUTS {
            let (w, h, on) = if i == 0 {
                (self.preferred.0, self.preferred.1, 1u32)
            } else {
                (0, 0, 0)
            };
            for v in [0u32, 0, w, h, on, 0] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    fn get_edid(&self, h: &Header, scanout: u32) -> Result<Vec<u8>, Fail> {
        if scanout != 0 {
            return Err(resp::ERR_INVALID_PARAMETER);
        }
        let mut b = protocol::response_header(h, resp::OK_EDID).to_vec();
        b.extend_from_slice(&(self.edid.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        let mut blob = [0u8; protocol::EDID_BLOB];
        blob[..self.edid.len()].copy_from_slice(&self.edid);
        b.extend_from_slice(&blob);
        Ok(b)
    }

    fn create(&mut self, id: u32, format: u32, width: u32, height: u32) -> Result<(), Fail> {
        if id == 0 || self.resources.contains_key(&id) {
            return Err(resp::ERR_INVALID_RESOURCE_ID);
        }
        let rgb = rgb_bytes(format).ok_or(resp::ERR_INVALID_PARAMETER)?;
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(resp::ERR_INVALID_PARAMETER);
        }
        let size = u64::from(width) * u64::from(height) * 4;
        if self.host_memory + size > MAX_HOST_MEMORY || self.resources.len() >= MAX_RESOURCES {
            tracing::warn!(
                "virtio-gpu: resource {id} ({width}x{height}) refused: {} MiB of {} MiB in use",
                self.host_memory >> 20,
                MAX_HOST_MEMORY >> 20
            );
            return Err(resp::ERR_OUT_OF_MEMORY);
        }
        self.host_memory += size;
        self.resources.insert(
            id,
            Resource {
                rgb,
                width,
                height,
                pixels: vec![0; size as usize],
                backing: None,
            },
        );
        Ok(())
    }

    fn unref(&mut self, id: u32) -> Result<(), Fail> {
        let r = self
            .resources
            .remove(&id)
            .ok_or(resp::ERR_INVALID_RESOURCE_ID)?;
        self.host_memory -= r.pixels.len() as u64;
        if self.scanout.is_some_and(|s| s.resource == id) {
            self.set_scanout(None);
        }
        Ok(())
    }

    fn set_scanout_cmd(&mut self, rect: GpuRect, scanout: u32, id: u32) -> Result<(), Fail> {
        if scanout != 0 {
            return Err(resp::ERR_INVALID_SCANOUT_ID);
        }
        if id == 0 {
            self.set_scanout(None);
            return Ok(());
        }
        let r = self
            .resources
            .get(&id)
            .ok_or(resp::ERR_INVALID_RESOURCE_ID)?;
        if !rect.inside(r.width, r.height) || rect.width < MIN_SCANOUT || rect.height < MIN_SCANOUT
        {
            return Err(resp::ERR_INVALID_PARAMETER);
        }
        self.set_scanout(Some(Scanout { resource: id, rect }));
        Ok(())
    }

    fn flush(&mut self, rect: GpuRect, id: u32) -> Result<(), Fail> {
        let r = self
            .resources
            .get(&id)
            .ok_or(resp::ERR_INVALID_RESOURCE_ID)?;
        if !rect.inside(r.width, r.height) {
            return Err(resp::ERR_INVALID_PARAMETER);
        }
        let Some(s) = self.scanout.filter(|s| s.resource == id) else {
            return Ok(());
        };
        // The flushed part of the scanout, in scanout coordinates.
        let x0 = rect.x.max(s.rect.x);
        let y0 = rect.y.max(s.rect.y);
        let x1 = (rect.x + rect.width).min(s.rect.x + s.rect.width);
        let y1 = (rect.y + rect.height).min(s.rect.y + s.rect.height);
        if x0 >= x1 || y0 >= y1 {
            return Ok(());
        }
        self.damage.push(Rect {
            x: x0 - s.rect.x,
            y: y0 - s.rect.y,
            w: x1 - x0,
            h: y1 - y0,
        });
        if self.damage.len() > MAX_DAMAGE {
            let all = self.damage.drain(..).reduce(union).unwrap_or(Rect {
                x: 0,
                y: 0,
                w: 0,
                h: 0,
            });
            self.damage.push(all);
        }
        Ok(())
    }

    fn transfer(
        &mut self,
        mem: &GuestMem,
        rect: GpuRect,
        offset: u64,
        id: u32,
    ) -> Result<(), Fail> {
        let r = self
            .resources
            .get_mut(&id)
            .ok_or(resp::ERR_INVALID_RESOURCE_ID)?;
        if !rect.inside(r.width, r.height) {
            return Err(resp::ERR_INVALID_PARAMETER);
        }
        let stride = r.stride();
        let Some(backing) = &r.backing else {
            return Err(resp::ERR_UNSPEC);
        };
        let row = rect.width as usize * 4;
        for y in 0..rect.height as usize {
            let dst = (rect.y as usize + y) * stride + rect.x as usize * 4;
            let src = offset + (y * stride) as u64;
            if !backing.read(mem, src, &mut r.pixels[dst..dst + row]) {
                return Err(resp::ERR_INVALID_PARAMETER);
            }
        }
        Ok(())
    }

    fn attach(&mut self, mem: &GuestMem, id: u32, entries: Vec<MemEntry>) -> Result<(), Fail> {
        let r = self
            .resources
            .get_mut(&id)
            .ok_or(resp::ERR_INVALID_RESOURCE_ID)?;
        if r.backing.is_some() {
            return Err(resp::ERR_UNSPEC);
        }
        if !entries
            .iter()
            .all(|e| mem.check_range(GuestAddress(e.addr), e.len as usize, Permissions::Read))
        {
            return Err(resp::ERR_UNSPEC);
        }
        r.backing = Some(Backing::new(entries));
        Ok(())
    }

    fn detach(&mut self, id: u32) -> Result<(), Fail> {
        let r = self
            .resources
            .get_mut(&id)
            .ok_or(resp::ERR_INVALID_RESOURCE_ID)?;
        r.backing.take().map(|_| ()).ok_or(resp::ERR_UNSPEC)
    }

    /// Brings `image` up to date with the scanout: all of it when `full`, when the
    /// scanout changed since `shown_generation` or when `image` has another size;
    /// else the flushed rectangles. Returns the damage (empty: untouched).
    pub fn render(
        &mut self,
        image: &mut std::sync::Arc<Image>,
        full: bool,
        shown: u64,
    ) -> Vec<Rect> {
        let Some(s) = self.scanout else {
            return Vec::new();
        };
        let Some(r) = self.resources.get(&s.resource) else {
            return Vec::new();
        };
        let (w, h) = (s.rect.width, s.rect.height);
        let whole = full || shown != self.generation || image.width != w || image.height != h;
        let rects = if whole {
            self.damage.clear();
            if image.width != w || image.height != h {
                *image = std::sync::Arc::new(Image::black(w, h));
            }
            vec![Rect { x: 0, y: 0, w, h }]
        } else {
            std::mem::take(&mut self.damage)
        };
        if rects.is_empty() {
            return rects;
        }
        let img = std::sync::Arc::make_mut(image);
        for d in &rects {
            for y in d.y..d.y + d.h {
                let line = &mut img.pixels[(y * w) as usize..][..w as usize];
                for x in d.x..d.x + d.w {
                    line[x as usize] = r.rgb(s.rect.x + x, s.rect.y + y);
                }
            }
        }
        rects
    }
}

/// The bounding box of two rectangles.
fn union(a: Rect, b: Rect) -> Rect {
    let x = a.x.min(b.x);
    let y = a.y.min(b.y);
    Rect {
        x,
        y,
        w: (a.x + a.w).max(b.x + b.w) - x,
        h: (a.y + a.h).max(b.y + b.h) - y,
    }
}

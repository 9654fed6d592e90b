//! An RFB (VNC) server as QEMU's clients expect it — RFB 3.8 (answering 3.3 and 3.7
//! clients too), security None and VNC Authentication, any true-colour pixel format,
//! Raw and ZRLE, DesktopSize/ExtendedDesktopSize, QEMU's extended key event, pointer
//! type change and LED state — written for oxvirt because no crate has the fd-based
//! clients, the QEMU extensions and the share policy we need (research: display.md §2.5).
//!
//! It knows nothing of KVM: the VMM hands [`server::Server`] a [`server::Backend`] (a
//! framebuffer that reports damage, and an input sink) and listening sockets or
//! connected clients.
//!
//! * [`session`]: one connection as a state machine without I/O (the protocol itself);
//! * [`server`]: sockets and threads, several clients, share policy, password, events;
//! * [`pixel`], [`encoding`], [`zrle`], [`auth`]: the pieces the session uses.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod encoding;
pub mod error;
pub mod pixel;
pub mod server;
pub mod session;
#[cfg(test)]
mod session_tests;
pub mod zrle;

pub use error::ProtocolError;
pub use server::{
    Backend, ClientEvent, ClientInfo, Family, Server, ServerConfig, SharePolicy, Stream,
};
pub use session::{Event, Security, Session};

/// A rectangle of the screen, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// Whether `other` lies wholly inside this one.
    pub fn contains(&self, other: &Rect) -> bool {
        other.x >= self.x
            && other.y >= self.y
            && other.x + other.w <= self.x + self.w
            && other.y + other.h <= self.y + self.h
    }

    /// The smallest rectangle holding both.
    pub fn union(&self, other: &Rect) -> Rect {
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        let r = (self.x + self.w).max(other.x + other.w);
        let b = (self.y + self.h).max(other.y + other.h);
        Rect {
            x,
            y,
            w: r - x,
            h: b - y,
        }
    }

    /// The part inside a `width`×`height` screen, if any.
    pub fn clip(&self, width: u32, height: u32) -> Option<Rect> {
        let r = (self.x.saturating_add(self.w)).min(width);
        let b = (self.y.saturating_add(self.h)).min(height);
        (self.x < r && self.y < b).then(|| Rect {
            x: self.x,
            y: self.y,
            w: r - self.x,
            h: b - self.y,
        })
    }
}

/// A screen image: `width`×`height` pixels, row-major, 0x00RRGGBB.
pub trait Framebuffer: Send + Sync {
    /// Width in pixels.
    fn width(&self) -> u32;
    /// Height in pixels.
    fn height(&self) -> u32;
    /// The pixels, `width * height` of them.
    fn pixels(&self) -> &[u32];
}

/// A framebuffer held in memory (tests, and whoever has no type of their own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Row-major 0x00RRGGBB pixels.
    pub pixels: Vec<u32>,
}

impl Framebuffer for Image {
    fn width(&self) -> u32 {
        self.width
    }
    fn height(&self) -> u32 {
        self.height
    }
    fn pixels(&self) -> &[u32] {
        &self.pixels
    }
}

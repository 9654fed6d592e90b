//! QMP (QEMU Machine Protocol) as QEMU 7.2 speaks it: the wire format, a schema-driven
//! async server for the VMM, and an async client for the daemon and tests.
//!
//! * [`json`] — QEMU's JSON stream reader (errors, limits, resynchronisation) and writer.
//! * [`wire`]: greeting, request envelope, replies, events.
//! * [`schema`]: the QAPI-style schema: argument checks with QEMU's texts, introspection.
//! * [`server`]: [`QmpServer`], the [`Handler`] trait and the [`EventSender`].
//! * [`client`]: the [`QmpClient`].
//! * [`fdpass`]: file descriptors over unix sockets (QMP `getfd`, libvirt's RPC).
#![forbid(unsafe_code)]

pub mod client;
pub mod error;
pub mod fdpass;
pub mod json;
pub mod schema;
pub mod server;
pub mod wire;

pub use client::{ClientError, QmpClient};
pub use error::{ErrorClass, QmpError};
pub use schema::Schema;
pub use server::{
    ready, ClientFds, CommandFuture, EventSender, Handler, QmpServer, ServerConfig, ServerError,
};
pub use wire::{Event, Timestamp, VersionInfo};

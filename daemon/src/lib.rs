//! oxvirtd: the domain lifecycle daemon.
//!
//! [`core`] owns definitions, state and the VMM processes; [`dbus`] serves
//! libvirt-dbus's `org.libvirt` interface on top of it; the libvirt remote
//! protocol front end ([`rpc`]) uses the same core. [`config`] holds the
//! daemon's configuration.
#![forbid(unsafe_code)]

pub mod config;
pub mod core;
pub mod dbus;
pub mod network;
pub mod rpc;
pub mod storage;

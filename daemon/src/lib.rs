//! oxvirtd.
#![forbid(unsafe_code)]

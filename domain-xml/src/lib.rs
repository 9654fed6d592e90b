//! libvirt domain XML (filled by the foundation issue).
#![forbid(unsafe_code)]

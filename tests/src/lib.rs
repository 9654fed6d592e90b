//! Integration-test harness: guest images, processes, timeouts.
#![forbid(unsafe_code)]

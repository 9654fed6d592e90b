//! QMP wire types, server and client.
#![forbid(unsafe_code)]

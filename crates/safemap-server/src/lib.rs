//! safemap-server: the HTTP service over the `safemap` library, and the
//! `safemap` command-line client.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod error;
pub mod limits;
pub mod names;
pub mod storage;
pub mod trace;

//! safemap-server: the HTTP service over the `safemap` library (`safemap serve`),
//! and the `safemap` command-line client.
//!
//! - [`server::run`] serves on a listener until a shutdown future resolves;
//!   `main` only parses arguments, sets up tracing and calls it (tests bind
//!   `127.0.0.1:0`).
//! - [`state`] holds the maps over one shared journal and recovers them at start.
//! - [`storage`] is the durable redb store with a group-commit writer thread
//!   (layout in `STORAGE.md`).
//! - [`routes`] has one file per route group: parse → library call → wait until
//!   durable → respond. Behaviour lives in the library.
//! - [`references`] is the server's side of references between maps
//!   (references.md): declared in the configuration, enforced by the library.
//! - [`console`] is the web console at `/ui` (embedded page, read-only data views).
//! - [`cli`] is the etcdctl-like client.
//!
//! Limits (all named here and in the config docs): request body 1 MiB, key
//! 1024 bytes, list/audit page 1000, refresh 1000 entries, reason 512
//! characters, 1024 concurrent connections, 10 000 maps, 1000 tokens, profiles
//! up to 60 s, 20 referrers listed in a 409 `referenced`.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
#[cfg(feature = "etcd")]
pub mod cluster;
pub mod config;
pub mod console;
pub mod error;
pub mod etcd_access;
pub mod etcd_limits;
pub mod extract;
pub mod library_errors;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod openapi;
#[cfg(feature = "otlp")]
pub mod otel;
pub mod references;
pub mod routes;
pub mod server;
pub mod state;
pub mod storage;
pub mod trace;

pub use server::{ServeOptions, run};

//! What Receptor's `etcd` watcher and `etcd` reactor share: a blocking client of etcd's
//! v3 gRPC API, the key layout, the connection config and the backoff.
//!
//! The client speaks etcd's gRPC API, the one etcd's own tools use: protobuf over
//! HTTP/2 (tonic), with the few messages the plugins need written by hand with
//! `prost`'s derive macros ([`proto`]). Generating them from etcd's `.proto` files, as
//! the `etcd-client` crate does, would need `protoc` on the build machine; Receptor
//! builds with the Rust toolchain alone. An earlier client used etcd's JSON gateway
//! (HTTP/1.1, base64 keys); the gateway is a second hop inside etcd and its JSON
//! coding was most of the time of a large read (100,000 keys: 1.2-3.1 s through the
//! gateway, 0.2-0.6 s over gRPC, on a shared 2-core machine).
//!
//! # Layout
//! - [`proto`]: the gRPC messages and method paths, with etcd's field numbers.
//! - [`client`]: [`Client`] (range, watch, txn, put, delete, leases).
//! - [`error`]: [`EtcdError`], sorted into retry or refusal.
//! - [`watch`]: [`WatchStream`], a running watch read message by message.
//! - [`layout`]: `<prefix><node name>` → `{"host","port","meta"?}`.
//! - [`config`]: the `endpoints`, `dial_timeout`, `username`, `password` keys.
//! - [`backoff`]: 100 ms doubling to 10 s, jittered.
//! - [`testing`]: a real etcd server on loopback ports for tests and benches.
#![warn(missing_docs)]

pub mod backoff;
pub mod client;
pub mod config;
pub mod error;
pub mod layout;
pub mod proto;
pub mod testing;
pub mod watch;

pub use backoff::Backoff;
pub use client::{Client, Op, Snapshot};
pub use config::{ClientConfig, Settings};
pub use error::EtcdError;
pub use watch::{WatchEvent, WatchMessage, WatchStream, WatchWake};

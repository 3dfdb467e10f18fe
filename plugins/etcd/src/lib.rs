//! What Receptor's `etcd` watcher and `etcd` reactor share: a blocking client of etcd's
//! v3 API over its JSON gateway, the key layout, the connection config and the backoff.
//!
//! Why the JSON gateway and not gRPC: every Rust gRPC client of etcd generates its code
//! from etcd's `.proto` files at build time, which needs `protoc` on the build machine;
//! Receptor builds with the Rust toolchain alone. The gateway serves the same v3 API
//! (range, watch, lease, txn) as HTTP/1.1 and JSON, so a small client on `std::net`
//! covers what the plugins need, with blocking calls that fit the SDK's threads.
//!
//! # Layout
//! - [`http`]: just enough HTTP/1.1 (kept-alive requests, chunked streams).
//! - [`client`]: [`Client`] (range, watch, txn, put, delete, leases) and [`EtcdError`].
//! - [`watch`]: [`WatchStream`], a running watch read message by message.
//! - [`layout`]: `<prefix><node name>` → `{"host","port","meta"?}`.
//! - [`config`]: the `endpoints`, `dial_timeout`, `username`, `password` keys.
//! - [`backoff`]: 100 ms doubling to 10 s, jittered.
//! - [`testing`]: a real etcd server on loopback ports for tests and benches.
#![warn(missing_docs)]

pub mod backoff;
pub mod client;
pub mod config;
pub mod http;
pub mod layout;
pub mod testing;
pub mod watch;

pub use backoff::Backoff;
pub use client::{Client, EtcdError, Op, Snapshot};
pub use config::{ClientConfig, Settings};
pub use watch::{WatchEvent, WatchMessage, WatchStream};

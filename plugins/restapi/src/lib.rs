//! The `restapi` watcher: node changes POSTed over HTTP.
//!
//! One HTTP/1.1 server (hyper on a tokio runtime inside the plugin process) per plugin
//! process, shared by every service that uses the type:
//!
//! ```toml
//! [watchers.restapi]
//! listen = "127.0.0.1:8001"   # the default is 127.0.0.1:8080
//! max_connections = 1024      # more wait in the accept queue
//! request_timeout = "10s"     # one request's head and body, from its first byte
//! idle_timeout = "60s"        # a keep-alive connection without a request
//!
//! [services.web.watchers.api]
//! type = "restapi"
//! cfg = { service = "web" }   # the name in the URL
//! ```
//!
//! `POST /service/<service>` with a JSON body
//! `{"name": "node1", "type": "nodeup", "host": "10.0.0.1", "port": 8080}` (`type` is
//! `nodeup` or `nodedown`; an optional `meta` object of strings), or a JSON array of
//! them sent on as one event, answers `200 OK`. See [`api`] for every refusal.
//! Connections are kept alive; chunked bodies and `Expect: 100-continue` work.
//!
//! ```sh
//! curl -X POST http://127.0.0.1:8001/service/web \
//!      -d '{"name":"node9","type":"nodeup","host":"127.0.0.1","port":9000}'
//! ```
//!
//! # Layout
//! - [`watcher`]: the [`Watcher`](plugin_sdk::Watcher): setup, endpoints, the stop.
//! - [`config`]: the keys and their defaults.
//! - [`api`]: the route and its answers; [`body`]: what a body may hold.
//! - [`registry`]: service name to the running endpoint's sender.
//! - [`server`]: the runtime, the listener, the connection cap, the graceful stop.
//! - [`connection`]: one connection under its deadlines; [`clock`]: the deadlines.
//! - [`answer`]: the handler interface, text answers, reading a body.

pub mod answer;
pub mod api;
pub mod body;
pub mod clock;
pub mod config;
pub mod connection;
pub mod registry;
pub mod server;
pub mod watcher;

pub use api::MAX_BODY;
pub use body::NodeChange;
pub use config::Settings;
pub use server::Server;
pub use watcher::RestApi;

/// The plugin type name users write as `type = "restapi"`.
pub const TYPE: &str = "restapi";

#[cfg(test)]
mod tests;

//! The `restapi` watcher: node changes POSTed over HTTP.
//!
//! One HTTP server per plugin process, shared by every service that uses the type:
//!
//! ```toml
//! [watchers.restapi]
//! listen = "127.0.0.1:8001"   # the default is 127.0.0.1:8080
//!
//! [services.web.watchers.api]
//! type = "restapi"
//! cfg = { service = "web" }   # the name in the URL
//! ```
//!
//! `POST /service/<service>` with a JSON body
//! `{"name": "node1", "type": "nodeup", "host": "10.0.0.1", "port": 8080}` (`type` is
//! `nodeup` or `nodedown`) reports one node and answers `200 OK`. Malformed JSON, a
//! missing field, an unknown type or a body over 64 KiB answer `400` with the reason; a
//! service no instance serves answers `404`. Connections are closed after each answer.
//!
//! ```sh
//! curl -X POST http://127.0.0.1:8001/service/web \
//!      -d '{"name":"node9","type":"nodeup","host":"127.0.0.1","port":9000}'
//! ```

mod http;
mod server;

pub use server::{NodeChange, RestApi, MAX_BODY};

/// The plugin type name users write as `type = "restapi"`.
pub const TYPE: &str = "restapi";

#[cfg(test)]
mod tests;

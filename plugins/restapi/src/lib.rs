//! The `restapi` watcher: nodes reported by `POST /service/<service>` over HTTP.
//!
//! Its behaviour arrives with the end-to-end issue; this crate holds its place in the
//! layout and tells the host the type name it serves.

/// The plugin type name users write as `type = "restapi"`.
pub const TYPE: &str = "restapi";

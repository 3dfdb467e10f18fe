//! The actor-free API plugin authors use to write Receptor watchers and reactors.
//!
//! The traits and `serve_watcher` / `serve_reactor` arrive with the end-to-end issue;
//! until then this crate re-exports the event model plugins work with.

pub use ipc::event::{Event, NodeInfo, NodeStatus};

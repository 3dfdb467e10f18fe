//! Receptor's host: the configuration it runs, the plugins it starts, and the actor
//! system that moves events from watchers to reactors.
//!
//! The binary (`receptor`) loads a [`config::Config`], resolves every plugin type it uses
//! through [`lookup::PluginCatalog`], and hands both to the actors.
//!
//! # Layout
//! - [`host`]: `run`, the actix system with signal handling around a [`receptor::Receptor`].
//! - [`receptor`]: start-up and shutdown of every plugin, service and endpoint.
//! - [`config`]: `Receptor.toml` plus `RECEPTOR_*` overrides, loading and validation.
//! - [`endpoint`]: watcher and reactor sessions: the threads that move events.
//! - [`lookup`]: which built-in or executable serves a plugin type.
//! - [`plugin`]: plugin processes: spawning, output, stopping.
//! - [`service`]: a service: its actor (life cycle, status, supervision), its state and
//!   the event hot path through it.
//! - [`supervise`]: the restart budget and the panic boundary every supervisor uses.
#![warn(missing_docs)]

pub mod config;
pub mod endpoint;
pub mod host;
pub mod lookup;
pub mod plugin;
pub mod receptor;
pub mod service;
pub mod supervise;

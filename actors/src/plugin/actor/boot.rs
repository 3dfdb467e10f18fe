//! Booting one incarnation of a plugin: launch, `Setup`, one `Accept` per instance with
//! a fresh ring. Blocking work, run on tokio's blocking pool.

use std::sync::Arc;

use crate::endpoint::actor::{EndpointName, Session};
use crate::endpoint::{rings, ServiceCore};
use crate::lookup::PluginKind;
use crate::plugin::connection::{
    AcceptSpec, EndpointId, PluginConnection, PluginSpec, PluginStartError,
};

/// One instance this plugin serves: what its `Accept` replays.
#[derive(Clone)]
pub struct Instance {
    /// Kind, service and instance name.
    pub name: EndpointName,
    /// The instance's `cfg` as JSON.
    pub cfg: String,
    /// The service the instance belongs to.
    pub core: Arc<ServiceCore>,
}

/// Why booting a plugin failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BootError {
    /// The process could not be started or failed its handshake.
    #[error("{0}")]
    Launch(String),
    /// `Setup` failed: the plugin's message.
    #[error("{0}")]
    Setup(String),
    /// An `Accept` failed: the instance and the plugin's message.
    #[error("{endpoint}: {message}")]
    Accept {
        /// Which instance.
        endpoint: EndpointName,
        /// The plugin's message (or the host's).
        message: String,
    },
}

/// What one boot produced, before its endpoints' actors exist.
pub(super) struct Booted {
    pub(super) conn: Arc<PluginConnection>,
    pub(super) sessions: Vec<(EndpointName, EndpointId, Session)>,
}

/// Launch, `Setup`, and an `Accept` with a fresh ring per instance (blocking).
pub(super) fn boot_blocking(
    spec: &PluginSpec,
    global_cfg: &str,
    instances: &[Instance],
) -> Result<Booted, BootError> {
    let conn = PluginConnection::launch(spec)
        .map_err(|e: PluginStartError| BootError::Launch(e.to_string()))?;
    let conn = Arc::new(conn);
    conn.setup(global_cfg)
        .map_err(|e| BootError::Setup(e.to_string()))?;
    let mut sessions = Vec::with_capacity(instances.len());
    for inst in instances {
        let fail = |message: String| BootError::Accept {
            endpoint: inst.name.clone(),
            message,
        };
        let (ring, session) = match inst.name.kind {
            PluginKind::Watcher => {
                let (ring, end) = rings::create_watcher_ring().map_err(|e| fail(e.to_string()))?;
                (ring, Session::Watcher(end, inst.core.clone()))
            }
            PluginKind::Reactor => {
                let (ring, end) = rings::create_reactor_ring().map_err(|e| fail(e.to_string()))?;
                (ring, Session::Reactor(end, inst.core.clone()))
            }
        };
        let accept = AcceptSpec {
            service: inst.name.service.clone(),
            instance: inst.name.instance.clone(),
            cfg: inst.cfg.clone(),
            ring,
        };
        let id = conn.accept(&accept).map_err(|e| fail(e.to_string()))?;
        sessions.push((inst.name.clone(), id, session));
    }
    Ok(Booted { conn, sessions })
}

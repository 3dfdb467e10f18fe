//! The restapi watcher: the shared HTTP server and the services registered on it.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use plugin_sdk::{
    watcher_endpoint, Config, EventSender, NodeInfo, NodeStatus, SendError, Watcher,
    WatcherEndpoint,
};
use serde::Deserialize;

use crate::http::{read_request, write_answer, Answer, Request};

/// The largest request body accepted: 64 KiB.
pub const MAX_BODY: usize = 64 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection lingers after the answer for the client to finish.
const LINGER: Duration = Duration::from_millis(500);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GlobalConfig {
    #[serde(default = "default_listen")]
    listen: String,
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceConfig {
    service: String,
}

/// The body of a POST.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeChange {
    /// The node's name.
    pub name: String,
    /// `nodeup` or `nodedown`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The node's address.
    pub host: String,
    /// The node's port.
    pub port: u16,
}

impl NodeChange {
    fn node(&self) -> Result<NodeInfo, String> {
        let status = match self.kind.as_str() {
            "nodeup" => NodeStatus::Up,
            "nodedown" => NodeStatus::Down,
            other => {
                return Err(format!(
                    "unknown type '{other}': expected nodeup or nodedown"
                ))
            }
        };
        Ok(NodeInfo::new(&self.name, status, &self.host, self.port))
    }
}

type Registry = Arc<Mutex<HashMap<String, EventSender>>>;

/// The restapi watcher.
#[derive(Default)]
pub struct RestApi {
    registry: Registry,
    accepted: HashSet<String>,
    addr: Option<SocketAddr>,
}

impl RestApi {
    /// The address the server listens on, once set up.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }
}

impl Watcher for RestApi {
    fn setup(&mut self, cfg: Config) -> plugin_sdk::Result<()> {
        let cfg: GlobalConfig = cfg.parse()?;
        let listener = TcpListener::bind(&cfg.listen)
            .map_err(|e| format!("listen: cannot listen on {}: {e}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let registry = self.registry.clone();
        std::thread::Builder::new()
            .name("restapi-http".into())
            .spawn(move || serve(listener, registry))?;
        tracing::info!("listening on http://{addr}");
        self.addr = Some(addr);
        Ok(())
    }

    fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<WatcherEndpoint> {
        let cfg: InstanceConfig = cfg.parse()?;
        if self.addr.is_none() {
            return Err("restapi was not set up".into());
        }
        if !self.accepted.insert(cfg.service.clone()) {
            return Err(format!("service: '{}' already has a restapi watcher", cfg.service).into());
        }
        let registry = self.registry.clone();
        Ok(watcher_endpoint(move |events, close| {
            let service = cfg.service;
            registry
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(service.clone(), events);
            close.wait();
            registry
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&service);
            Ok(())
        }))
    }
}

fn serve(listener: TcpListener, registry: Registry) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let registry = registry.clone();
                let spawned = std::thread::Builder::new()
                    .name("restapi-conn".into())
                    .spawn(move || handle_connection(stream, &registry));
                if let Err(e) = spawned {
                    tracing::warn!("cannot start a connection thread: {e}");
                }
            }
            Err(e) => tracing::warn!("accept failed: {e}"),
        }
    }
}

fn handle_connection(stream: TcpStream, registry: &Registry) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let answer = match read_request(&stream, MAX_BODY) {
        Ok(request) => route(&request, registry),
        Err(answer) => answer,
    };
    if answer.status != 200 {
        tracing::info!(status = answer.status, "request refused: {}", answer.body);
    }
    if let Err(e) = write_answer(&stream, &answer) {
        tracing::debug!("cannot answer: {e}");
    }
    // Read what the client still sends (a refused body) before closing, so the close
    // does not reset the connection before the client has read the answer.
    let _ = stream.set_read_timeout(Some(LINGER));
    let _ = std::io::copy(
        &mut std::io::Read::take(&stream, MAX_BODY as u64 * 16),
        &mut std::io::sink(),
    );
}

fn route(request: &Request, registry: &Registry) -> Answer {
    let Some(service) = request.path.strip_prefix("/service/") else {
        return Answer::new(
            404,
            format!("no such path '{}': POST /service/<service>", request.path),
        );
    };
    if request.method != "POST" {
        return Answer::new(
            405,
            format!("{} not allowed: POST /service/<service>", request.method),
        );
    }
    let change: NodeChange = match serde_json::from_slice(&request.body) {
        Ok(change) => change,
        Err(e) => return Answer::new(400, format!("invalid JSON body: {e}")),
    };
    let node = match change.node() {
        Ok(node) => node,
        Err(reason) => return Answer::new(400, reason),
    };
    let sender = registry
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(service)
        .cloned();
    let Some(sender) = sender else {
        return Answer::new(404, format!("unknown service '{service}'"));
    };
    match sender.send_node(node) {
        Ok(()) => Answer::new(200, "OK"),
        // The node breaks a rule (an empty name, a control character, port 0): the
        // message names the field.
        Err(SendError::BadNode(e)) => Answer::new(400, e.to_string()),
        Err(e) => Answer::new(404, format!("service '{service}' is closing: {e}")),
    }
}

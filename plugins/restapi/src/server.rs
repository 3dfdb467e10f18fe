//! The HTTP server: a tokio runtime of its own, the listener, a cap on open
//! connections, and a bounded graceful stop.
//!
//! The runtime lives inside the plugin process only (the SDK stays runtime-free): the
//! SDK's threads call in through [`Server::start`] and [`Server::shutdown`], which
//! block. Over `max_connections`, the server accepts nothing more until a connection
//! closes: new clients wait in the kernel's accept queue (their connect succeeds, their
//! request is answered once a slot frees). A stop is one signal out and the count of
//! open connections back: stop accepting, let each connection answer the request it
//! is in (idle ones close at once), and after the grace period close the rest.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::answer::Handler;
use crate::config::Settings;
use crate::connection::{self, Timeouts, ABORT, DRAIN, RUN};

/// How long the server waits before accepting again after a failed `accept` (out of
/// file descriptors, most likely).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A running server.
pub struct Server {
    runtime: Option<Runtime>,
    addr: std::net::SocketAddr,
    stop: watch::Sender<u8>,
    slots: Arc<Semaphore>,
    max_connections: u32,
    /// The accept loop until a stop took it; then the stop's outcome.
    stopping: Mutex<Stopping>,
}

enum Stopping {
    Running(JoinHandle<()>),
    Stopped { drained: bool },
}

impl Server {
    /// Binds `settings.listen` and starts serving with `handler`. The error names the
    /// `listen` key.
    pub fn start<H: Handler>(settings: &Settings, handler: H) -> Result<Server, String> {
        let max_connections = u32::try_from(settings.max_connections)
            .ok()
            .filter(|&n| n as usize <= Semaphore::MAX_PERMITS)
            .ok_or_else(|| format!("max_connections: {} is too many", settings.max_connections))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("restapi")
            .build()
            .map_err(|e| format!("cannot start the HTTP server's runtime: {e}"))?;
        // tokio's bind sets SO_REUSEADDR: a restarted plugin gets its port back even
        // while connections of the old process linger in TIME_WAIT.
        let listener = runtime
            .block_on(TcpListener::bind(&settings.listen))
            .map_err(|e| format!("listen: cannot listen on {}: {e}", settings.listen))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("listen: {}: {e}", settings.listen))?;
        let (stop, stop_rx) = watch::channel(RUN);
        let slots = Arc::new(Semaphore::new(max_connections as usize));
        let timeouts = Timeouts {
            request: settings.request_timeout,
            idle: settings.idle_timeout,
        };
        let accepting = runtime.spawn(accept_loop(
            listener,
            Arc::new(handler),
            timeouts,
            slots.clone(),
            stop_rx,
        ));
        Ok(Server {
            runtime: Some(runtime),
            addr,
            stop,
            slots,
            max_connections,
            stopping: Mutex::new(Stopping::Running(accepting)),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Stops gracefully: closes the listener, lets every connection finish the request
    /// it is in, and closes what is still open after `grace`. Returns whether every
    /// connection closed in time. Blocks (call it from a plain thread); a second call
    /// waits for the first and returns its outcome.
    pub fn shutdown(&self, grace: Duration) -> bool {
        let mut stopping = self.stopping.lock().unwrap_or_else(PoisonError::into_inner);
        let accepting = match &mut *stopping {
            Stopping::Stopped { drained } => return *drained,
            Stopping::Running(accepting) => accepting,
        };
        let Some(runtime) = &self.runtime else {
            return false;
        };
        self.stop.send_replace(DRAIN);
        let drained = runtime.block_on(async {
            let _ = accepting.await;
            // Every open connection holds a slot: all slots back means all closed.
            tokio::time::timeout(grace, self.slots.acquire_many(self.max_connections))
                .await
                .is_ok()
        });
        if !drained {
            tracing::warn!("connections still open {grace:?} after the stop: closing them");
            self.stop.send_replace(ABORT);
        }
        *stopping = Stopping::Stopped { drained };
        drained
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.send_replace(ABORT);
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime waits for its threads; nothing here needs that.
            runtime.shutdown_background();
        }
    }
}

/// Accepts connections while slots are free, until the stop signal.
async fn accept_loop<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    timeouts: Timeouts,
    slots: Arc<Semaphore>,
    mut stop: connection::Stop,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|level| *level != RUN) => break,
            accepted = async {
                // Never fails: the semaphore is never closed.
                let slot = slots.clone().acquire_owned().await.map_err(std::io::Error::other)?;
                listener.accept().await.map(|(stream, _)| (stream, slot))
            } => accepted,
        };
        match accepted {
            Ok((stream, slot)) => {
                let (handler, stop) = (handler.clone(), stop.clone());
                tokio::spawn(async move {
                    connection::serve(stream, handler, timeouts, stop).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    // The listener closes here: new clients are refused from now on.
}

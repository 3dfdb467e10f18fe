//! The services the server can reach: service name to the running endpoint's sender.
//!
//! An endpoint registers its service when it starts and unregisters it when it closes.
//! A request holds its service's entry for as long as it uses the sender, so a closing
//! endpoint can wait for the requests already in flight (they finish with their `200`)
//! before it returns: [`Registry::unregister`] hands back a [`Drained`] that tells when
//! the last of them let go. Nothing polls: the entry's drop is the signal.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use plugin_sdk::EventSender;

/// One registered service.
pub struct Service {
    /// Where its nodes go.
    pub sender: EventSender,
    /// Dropped with the last holder of the entry; the endpoint waits for that.
    _alive: Sender<()>,
}

/// Service name to its entry; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Registry {
    services: Arc<RwLock<HashMap<String, Arc<Service>>>>,
}

impl Registry {
    /// Makes `service` reachable through `sender`. Returns the waiter for its
    /// requests in flight, for [`Registry::unregister`].
    pub fn register(&self, service: &str, sender: EventSender) -> Drained {
        let (alive, gone) = mpsc::channel();
        let entry = Arc::new(Service {
            sender,
            _alive: alive,
        });
        self.services
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(service.to_owned(), entry);
        Drained(gone)
    }

    /// The entry of `service`, held for the request's duration.
    pub fn get(&self, service: &str) -> Option<Arc<Service>> {
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
            .cloned()
    }

    /// Makes `service` unreachable (new requests get 404).
    pub fn unregister(&self, service: &str) {
        self.services
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(service);
    }
}

/// Tells when every holder of a service's entry let go.
pub struct Drained(Receiver<()>);

impl Drained {
    /// Waits up to `timeout` for the requests still holding the entry (call after
    /// [`Registry::unregister`]); whether they all finished.
    pub fn wait(&self, timeout: Duration) -> bool {
        matches!(
            self.0.recv_timeout(timeout),
            Err(RecvTimeoutError::Disconnected)
        )
    }
}

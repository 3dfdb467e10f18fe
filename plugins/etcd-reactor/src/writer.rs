//! The thread that writes an endpoint's registrations to etcd and keeps its lease.
//!
//! It alone talks to etcd, so the endpoint's thread only records events and never
//! waits. Its loop: hold a lease (grant one when there is none, and then mark every
//! node up to be put again, since the keys of a lost lease are gone); renew it every
//! third of the TTL; write the dirty names in transactions of at most 128 operations
//! (etcd's default limit). A failure is retried after a backoff, the names staying
//! dirty meanwhile. When the registry stops, the lease is revoked, which removes every
//! key put with it.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use receptor_etcd::layout::value_of;
use receptor_etcd::{Backoff, Client, EtcdError, Op, Settings};

use crate::registry::{Registry, Write};

/// The most operations in one transaction (etcd's default `--max-txn-ops`).
const TXN_OPS: usize = 128;

/// Starts the writer thread.
pub fn spawn(
    settings: Settings,
    ttl: Duration,
    prefix: String,
    registry: Registry,
) -> std::io::Result<JoinHandle<()>> {
    let writer = Writer {
        client: Client::new(settings),
        ttl,
        prefix,
        registry,
        lease: None,
        next_keep_alive: Instant::now(),
        backoff: Backoff::default(),
    };
    std::thread::Builder::new()
        .name("etcd-writer".into())
        .spawn(move || writer.run())
}

struct Writer {
    client: Client,
    ttl: Duration,
    prefix: String,
    registry: Registry,
    /// The lease the keys are put with, once granted.
    lease: Option<i64>,
    next_keep_alive: Instant,
    backoff: Backoff,
}

impl Writer {
    fn run(mut self) {
        while !self.registry.is_stopped() {
            let Some(lease) = self.lease else {
                self.grant();
                continue;
            };
            if Instant::now() >= self.next_keep_alive {
                self.keep_alive(lease);
                continue;
            }
            let writes = self.registry.take(TXN_OPS, self.next_keep_alive);
            if writes.is_empty() {
                continue;
            }
            let ops: Vec<Op> = writes.iter().map(|w| self.op(w, lease)).collect();
            match self.client.txn(&ops) {
                Ok(()) => {
                    self.backoff.reset();
                    tracing::debug!(prefix = %self.prefix, writes = ops.len(), "written");
                }
                Err(e) => {
                    if e.is_lease_not_found() {
                        self.lease_lost(lease);
                    }
                    self.registry.retry(writes);
                    self.fail("cannot write the registrations", &e);
                }
            }
        }
        if let Some(lease) = self.lease {
            match self.client.revoke(lease) {
                Ok(()) => {
                    tracing::info!(prefix = %self.prefix, "lease {lease:x} revoked: registrations removed")
                }
                Err(e) => tracing::warn!(
                    prefix = %self.prefix,
                    "cannot revoke lease {lease:x}: {e}; the registrations go when its TTL runs out"
                ),
            }
        }
    }

    fn op(&self, write: &Write, lease: i64) -> Op {
        match write {
            Write::Put(node) => Op::Put {
                key: format!("{}{}", self.prefix, node.name).into_bytes(),
                value: value_of(node),
                lease,
            },
            Write::Delete(name) => Op::Delete {
                key: format!("{}{name}", self.prefix).into_bytes(),
            },
        }
    }

    fn grant(&mut self) {
        match self.client.grant(self.ttl.as_secs()) {
            Ok(id) => {
                tracing::info!(prefix = %self.prefix, ttl = ?self.ttl, "lease {id:x} granted");
                self.lease = Some(id);
                self.next_keep_alive = Instant::now() + self.ttl / 3;
                self.registry.mark_all_up();
                self.backoff.reset();
            }
            Err(e) => self.fail("cannot grant a lease", &e),
        }
    }

    fn keep_alive(&mut self, lease: i64) {
        match self.client.keep_alive(lease) {
            Ok(ttl) if ttl > 0 => self.next_keep_alive = Instant::now() + self.ttl / 3,
            Ok(_) => self.lease_lost(lease),
            Err(e) if e.is_lease_not_found() => self.lease_lost(lease),
            Err(e) => {
                self.client.disconnect();
                let delay = self.backoff.next_delay();
                tracing::warn!(prefix = %self.prefix, "cannot renew lease {lease:x}: {e}; retrying in {delay:?}");
                self.next_keep_alive = Instant::now() + delay;
            }
        }
    }

    fn lease_lost(&mut self, lease: i64) {
        tracing::warn!(
            prefix = %self.prefix,
            "lease {lease:x} is gone (expired or etcd lost it): granting a new one and registering every node again"
        );
        self.lease = None;
    }

    /// Logs a failure and waits a backoff (less if the registry stops).
    fn fail(&mut self, what: &str, e: &EtcdError) {
        self.client.disconnect();
        let delay = self.backoff.next_delay();
        tracing::warn!(prefix = %self.prefix, "{what}: {e}; retrying in {delay:?}");
        self.registry.pause(delay);
    }
}

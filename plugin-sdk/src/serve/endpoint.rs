//! An endpoint's thread: runs the endpoint, restarts it in place when it fails, and
//! tells the host how it went.
//!
//! The thread runs in a `tracing` span `endpoint{service=.. instance=..}`, so every
//! line the endpoint logs names its instance in the host's log. One incarnation after
//! another, each with a close signal of its own (the host's `Close` fires the current
//! one; a failed incarnation's fires as it ends, so what it left running stops):
//! - `handle` returns `Ok`: the endpoint finished;
//! - it fails (`Err` or a panic) while the host has not closed it and its stream is
//!   intact: the host gets a `Restarted` notice with the error, and after a backoff
//!   (see [`restart`](super::restart)) the plugin's `accept` makes a fresh endpoint on
//!   the same stream;
//! - the budget is spent, or the stream is over: the endpoint ends with its error and
//!   the host restarts the process.
//!
//! Then a watcher's backlog is handed over (up to 2 s), and a `Finished` notice goes.
//!
//! A reactor's fresh endpoint needs the service's whole state, which the host sends on
//! `Restarted` (it has it: the watchers' books). Keeping it here instead would cost a
//! map update per node on the reactor's hot path for the sake of a rare restart.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use ipc::control::{EndpointId, Notice, Notifier};

use super::instance::Instance;
use super::restart::{gave_up, Restarts};
use crate::Close;

/// A started endpoint.
pub(super) struct Running {
    /// Fired when the host closes the endpoint.
    pub(super) close: Close,
    pub(super) thread: JoinHandle<()>,
}

/// What the thread needs to know of its endpoint.
pub(super) struct Named {
    pub(super) id: EndpointId,
    pub(super) service: String,
    pub(super) instance: String,
}

/// Starts the endpoint's thread.
pub(super) fn spawn(
    named: Named,
    instance: Box<dyn Instance>,
    notifier: Notifier,
) -> std::io::Result<Running> {
    let close = Close::new();
    let host_close = close.clone();
    let thread = std::thread::Builder::new()
        .name(format!("endpoint-{}/{}", named.service, named.instance))
        .spawn(move || {
            let span = tracing::info_span!(
                "endpoint",
                service = %named.service,
                instance = %named.instance
            );
            let _entered = span.enter();
            let error = run(instance, named.id, &notifier, &host_close);
            match &error {
                Some(e) => tracing::error!("endpoint failed: {e}"),
                None => tracing::debug!("endpoint finished"),
            }
            let _ = notifier.notify(Notice::Finished {
                endpoint: named.id,
                error,
            });
        })?;
    Ok(Running { close, thread })
}

fn lock(close: &Mutex<Close>) -> MutexGuard<'_, Close> {
    close.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the incarnations; returns the endpoint's final error, if any.
fn run(
    mut instance: Box<dyn Instance>,
    id: EndpointId,
    notifier: &Notifier,
    host_close: &Close,
) -> Option<String> {
    let reports = notifier.clone();
    instance.set_report(Arc::new(move |total| {
        let _ = reports.notify(Notice::Coalesced {
            endpoint: id,
            total,
        });
    }));
    let current = Arc::new(Mutex::new(Close::new()));
    {
        let current = current.clone();
        host_close.on_close(Box::new(move || lock(&current).fire()));
    }
    let mut restarts = Restarts::default();
    let mut first = true;
    let error = loop {
        let started = Instant::now();
        let close = lock(&current).clone();
        let result = match std::mem::take(&mut first) {
            true => instance.run(close.clone()),
            false => instance.renew().and_then(|()| instance.run(close.clone())),
        };
        close.fire();
        let Err(error) = result else {
            break None;
        };
        if host_close.is_closed() || instance.stream_over() {
            break Some(error);
        }
        let Some(wait) = restarts.failed(Instant::now(), started.elapsed(), rand::random()) else {
            break Some(gave_up(&error));
        };
        tracing::warn!(
            "endpoint failed; restarting it in {} ms: {error}",
            wait.as_millis()
        );
        let _ = notifier.notify(Notice::Restarted {
            endpoint: id,
            error: error.clone(),
        });
        if host_close.wait_timeout(wait) {
            break Some(error);
        }
        *lock(&current) = Close::new();
        // The host's close may have fired the old signal just before the swap.
        if host_close.is_closed() {
            lock(&current).fire();
        }
    };
    instance.finish();
    error
}

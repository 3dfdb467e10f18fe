//! Running every node's checks: one task per node on fixed ticks, flips batched out.
//!
//! Each node's task checks on its own clock (`interval_at`, missed ticks skipped), so a
//! node whose checks hang until `timeout` delays no other node, and a slow check does
//! not push the node's later checks back: the next one starts on the next tick, not an
//! interval after the slow one ended. The first ticks are spread over one interval so
//! that a thousand nodes are not all connected to at the same instant. A task keeps its
//! node's [`Health`] and sends only flips to one collector, which forwards whatever flips
//! have gathered as one event. Nothing runs between ticks: an idle instance costs
//! nothing but its timers.

use std::time::Duration;

use plugin_sdk::{Event, EventSender, NodeInfo, NodeStatus, SendError};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use crate::config::{Probe, Settings};
use crate::health::Health;
use crate::probe;

/// A node's new status, by its index in the settings.
struct Flip {
    node: usize,
    status: NodeStatus,
}

/// Runs the checks until the host closes the stream (`Err(Closed)`) or the caller
/// drops the future.
pub async fn run(settings: Settings, events: EventSender) -> Result<(), SendError> {
    let (tx, mut flips) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    let count = settings.nodes.len() as u32;
    let start = Instant::now();
    for (index, node) in settings.nodes.iter().enumerate() {
        let first = start
            + settings
                .interval
                .mul_f64(f64::from(index as u32) / f64::from(count));
        tasks.spawn(check_node(
            index,
            node.name.clone(),
            node.host.clone(),
            node.port,
            settings.probe.clone(),
            first,
            Timing::of(&settings),
            tx.clone(),
        ));
    }
    drop(tx);
    let mut batch = Vec::new();
    while flips.recv_many(&mut batch, 1024).await > 0 {
        let mut event = Event::new();
        for flip in batch.drain(..) {
            let node: &NodeInfo = &settings.nodes[flip.node];
            let mut node = node.clone();
            node.status = flip.status;
            event.add_node(node);
        }
        match events.send(event) {
            Ok(()) => {}
            Err(SendError::BadNode(e)) => tracing::error!("not reported: {e}"),
            Err(closed) => return Err(closed),
        }
    }
    Ok(())
}

/// What a node's task needs of the settings.
#[derive(Debug, Clone, Copy)]
struct Timing {
    interval: Duration,
    timeout: Duration,
    rise: u32,
    fall: u32,
}

impl Timing {
    fn of(settings: &Settings) -> Timing {
        Timing {
            interval: settings.interval,
            timeout: settings.timeout,
            rise: settings.rise,
            fall: settings.fall,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn check_node(
    index: usize,
    name: String,
    host: String,
    port: u16,
    probe: Probe,
    first: Instant,
    timing: Timing,
    flips: mpsc::UnboundedSender<Flip>,
) {
    let mut ticks = interval_at(first, timing.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut health = Health::new(timing.rise, timing.fall);
    loop {
        ticks.tick().await;
        let result =
            match tokio::time::timeout(timing.timeout, probe::check(&probe, &host, port)).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "{} did not pass within the timeout of {:?}",
                    probe::authority(&host, port),
                    timing.timeout
                )),
            };
        if let Err(why) = &result {
            tracing::debug!(node = %name, "check failed: {why}");
        }
        if let Some(status) = health.record(result.is_ok()) {
            match &result {
                Ok(()) => {
                    tracing::info!("node {name} is up: {} checks in a row passed", timing.rise)
                }
                Err(why) => tracing::warn!(
                    "node {name} is down: {} checks in a row failed, the last: {why}",
                    timing.fall
                ),
            }
            if flips
                .send(Flip {
                    node: index,
                    status,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

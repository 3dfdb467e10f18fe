//! `cargo bench --bench pipeline`: the host's service pipeline in one process.
//!
//! What a watcher's pump does per drained batch, without the rings: run the watcher's
//! encoded updates through its book into the service state (read in place, not
//! decoded) and push the changes into every reactor's sink. Sinks here accept everything (a reactor
//! that keeps up). Two shapes: 1 watcher to 1 reactor, and 4 watchers to 4 reactors,
//! every event naming a node not seen before (so every event is a real change).
//!
//! The baseline in the same run is the codec work of a pipeline that decodes: decode the
//! update and encode one event. The figures are printed as `summary:` lines,
//! with the allocations per event counted by a counting wrapper around the host's
//! allocator (the system allocator, as in the `receptor` binary).

use std::time::Instant;

use actors::service::{EventSink, ServiceState, SinkClosed};
use criterion::{criterion_group, Criterion, Throughput};
use ipc::codec;
use ipc::event::{Event, NodeStatus, Update};
use ipc::records::Records;
use ipc::sys::alloc::Counting;

/// The host's allocator, counted, so the bench can report allocations per event.
#[global_allocator]
static GLOBAL: Counting<std::alloc::System> = Counting::new(std::alloc::System);

/// A reactor that keeps up: takes every record, counts the bytes.
struct KeepUp(u64);

impl EventSink for KeepUp {
    fn try_push(&mut self, records: &Records) -> Result<usize, SinkClosed> {
        self.0 += records.iter().map(|r| r.len() as u64).sum::<u64>();
        Ok(records.len())
    }

    fn is_consumed(&self) -> bool {
        true
    }
}

/// Encoded one-node updates, each naming a new node, per watcher.
fn records(watchers: usize, per_watcher: usize) -> Vec<Vec<Vec<u8>>> {
    (0..watchers)
        .map(|w| {
            (0..per_watcher)
                .map(|i| {
                    let ev = Event::with_node(
                        format!("w{w}-node-{i}"),
                        NodeStatus::Up,
                        "10.0.0.1",
                        8080,
                    );
                    codec::encode(&Update::Incremental(ev), "update").unwrap()
                })
                .collect()
        })
        .collect()
}

/// Runs every record through a fresh service; returns the events processed.
fn run_pipeline(reactors: usize, input: &[Vec<Vec<u8>>]) -> u64 {
    let mut state = ServiceState::new("bench");
    for r in 0..reactors {
        state.attach_reactor(&format!("r{r}"), Box::new(KeepUp(0)));
    }
    let names: Vec<String> = (0..input.len()).map(|w| format!("w{w}")).collect();
    // As the pumps do: a drained batch of records per watcher, applied under one lock.
    let mut events = 0;
    let longest = input.iter().map(Vec::len).max().unwrap_or(0);
    for start in (0..longest).step_by(BATCH) {
        for (w, records) in input.iter().enumerate() {
            let batch = &records[start.min(records.len())..(start + BATCH).min(records.len())];
            let applied = state.apply_records(&names[w], batch.iter().map(Vec::as_slice));
            assert!(applied.bad_record.is_none());
            events += batch.len() as u64;
        }
    }
    events
}

/// The baseline: decode each update and encode one event, nothing else.
fn run_codec(input: &[Vec<Vec<u8>>]) -> u64 {
    let mut buf = Vec::new();
    let mut events = 0;
    for records in input {
        for record in records {
            let update: Update = codec::decode(record, "update").unwrap();
            buf.clear();
            codec::encode_into(update.event(), &mut buf, "event").unwrap();
            events += 1;
        }
    }
    std::hint::black_box(buf);
    events
}

const EVENTS: usize = 100_000;
/// Records per drained batch.
const BATCH: usize = 64;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS as u64));
    for (watchers, reactors) in [(1usize, 1usize), (4, 4)] {
        let input = records(watchers, EVENTS / watchers);
        group.bench_function(format!("{watchers}_to_{reactors}"), |b| {
            b.iter(|| run_pipeline(reactors, &input))
        });
    }
    let input = records(1, EVENTS);
    group.bench_function("baseline_codec", |b| b.iter(|| run_codec(&input)));
    group.finish();
}

/// One timed run outside criterion for the summary lines: events/s and allocations per
/// event (the input is prepared before counting starts).
fn summary() {
    let measure = |name: &str, run: &dyn Fn() -> u64| {
        let mut best = f64::MAX;
        let mut allocs = 0;
        let mut events = 0;
        for _ in 0..5 {
            let before = GLOBAL.allocations();
            let start = Instant::now();
            events = run();
            best = best.min(start.elapsed().as_secs_f64());
            allocs = GLOBAL.allocations() - before;
        }
        let rate = events as f64 / best;
        println!("summary: {name}_events_per_s = {rate:.0}");
        println!(
            "summary: {name}_allocs_per_event = {:.2}",
            allocs as f64 / events as f64
        );
        rate
    };
    let one = records(1, EVENTS);
    let four = records(4, EVENTS / 4);
    let base = measure("baseline_codec", &|| run_codec(&one));
    let p11 = measure("pipeline_1_to_1", &|| run_pipeline(1, &one));
    let p44 = measure("pipeline_4_to_4", &|| run_pipeline(4, &four));
    println!(
        "ratio: pipeline_1_to_1 / baseline_codec = {:.2}",
        p11 / base
    );
    println!(
        "ratio: pipeline_4_to_4 / baseline_codec = {:.2}",
        p44 / base
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    summary();
    Criterion::default().configure_from_args().final_summary();
}

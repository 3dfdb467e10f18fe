//! A helper process for the `ipc` crate's cross-process tests and benchmarks.
//!
//! The first argument names a scenario; `ring-*` scenarios live in `ring.rs`, `control-*`
//! ones in `control.rs`. The process exits 0 when its scenario succeeded, non-zero with a
//! message on stderr when it failed.

mod control;
mod records;
mod ring;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = args.first() else {
        eprintln!("usage: ipc-peer <scenario> [args...]");
        std::process::exit(64);
    };
    let result = if scenario.starts_with("ring-") {
        ring::run(scenario, &args[1..])
    } else if scenario.starts_with("control-") {
        control::run(scenario, &args[1..])
    } else {
        Err(format!("unknown scenario '{scenario}'"))
    };
    if let Err(message) = result {
        eprintln!("ipc-peer {scenario}: {message}");
        std::process::exit(1);
    }
}

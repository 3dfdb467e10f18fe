//! `receptor`: the service-discovery event pipeline's command line.
//!
//! `receptor run` runs the services of a config; `receptor check` validates one;
//! `receptor plugins` lists the plugin types available. Exit codes: 0 success, 1 a
//! config or setup error, 2 a failure at run time.
//!
//! # Layout
//! - `cli`: the command-line arguments (clap).
//! - `logging`: tracing-subscriber set-up (`RECEPTOR_LOG`, `--log-format`).
//! - `commands`: what each subcommand does.

mod cli;
mod commands;
mod logging;

use std::process::ExitCode;

// The system allocator (glibc's malloc). mimalloc served the hot path when it
// allocated per event (it no longer does, see the `pipeline` bench), but it gives every
// thread heap pages of its own: a host with 1,000 idle services (2,000 session threads,
// and as many endpoint threads in its plugins) held 350 MB resident with it, 106 MB
// with glibc, whose threads share a few arenas (`cargo bench --bench scale`).

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // A built-in plugin logs through the plugin SDK (`LEVEL message` on stderr, which
    // the host re-logs); everything else through the host's subscriber.
    if !matches!(cli.command, Some(cli::Command::Plugin { .. })) {
        logging::init(cli.log_format);
    }
    match commands::dispatch(cli.command.unwrap_or_default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.exit_code())
        }
    }
}

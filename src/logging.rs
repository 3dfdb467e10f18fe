//! Logging set-up: every log line goes through `tracing` to stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// The environment variable holding the log filter (env-filter syntax).
pub const LOG_ENV: &str = "RECEPTOR_LOG";

/// Installs the global subscriber. A malformed `RECEPTOR_LOG` falls back to `info` with a
/// warning rather than failing the command.
pub fn init(format: LogFormat) {
    let (filter, bad_filter) = match std::env::var(LOG_ENV) {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new("info"),
                Some(format!(
                    "{LOG_ENV}='{spec}' is not a valid filter ({e}); using 'info'"
                )),
            ),
        },
        _ => (EnvFilter::new("info"), None),
    };
    // Colours only for a person at a terminal: a log redirected to a file or read by a
    // supervisor gets no escape sequences (and a non-empty `NO_COLOR` turns them off
    // anyway, as no-color.org has it).
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    if let Some(warning) = bad_filter {
        tracing::warn!("{warning}");
    }
    // A panic (caught at an actor's boundary or not) is logged like everything else,
    // with where it happened, instead of as a bare line on stderr.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            %location,
            "panic: {}",
            ipc::panic::panic_message(info.payload())
        );
    }));
}

//! `ring-*` scenarios of the ipc-peer helper (being written: see issue 4).

/// Runs one `ring-*` scenario.
pub fn run(scenario: &str, _args: &[String]) -> Result<(), String> {
    Err(format!("unknown scenario '{scenario}'"))
}

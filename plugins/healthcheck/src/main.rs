//! The healthcheck watcher as a stand-alone plugin executable (the host runs the same
//! code as `receptor plugin watcher healthcheck`).

fn main() {
    plugin_sdk::serve_watcher(receptor_healthcheck::HealthCheck)
}

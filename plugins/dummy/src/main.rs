//! The dummy watcher as a stand-alone plugin executable (the host runs the same code
//! as `receptor plugin watcher dummy`).

fn main() {
    plugin_sdk::serve_watcher(receptor_dummy::Dummy)
}

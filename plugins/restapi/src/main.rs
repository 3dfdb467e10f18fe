//! The restapi watcher as a stand-alone plugin executable (the host runs the same code
//! as `receptor plugin watcher restapi`).

fn main() {
    plugin_sdk::serve_watcher(receptor_restapi::RestApi::default())
}

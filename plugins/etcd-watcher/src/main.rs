//! The etcd watcher as a stand-alone plugin executable (the host runs the same code as
//! `receptor plugin watcher etcd`).

fn main() {
    plugin_sdk::serve_watcher(receptor_etcd_watcher::EtcdWatcher::default())
}

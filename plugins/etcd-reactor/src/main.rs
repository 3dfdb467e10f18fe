//! The etcd reactor as a stand-alone plugin executable (the host runs the same code as
//! `receptor plugin reactor etcd`).

fn main() {
    plugin_sdk::serve_reactor(receptor_etcd_reactor::EtcdReactor::default())
}

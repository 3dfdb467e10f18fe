//! The webhook reactor as a stand-alone plugin executable (the host runs the same code
//! as `receptor plugin reactor webhook`).

fn main() {
    plugin_sdk::serve_reactor(receptor_webhook::Webhook)
}

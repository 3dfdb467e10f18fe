//! The filelogger reactor as a stand-alone plugin executable (the host runs the same
//! code as `receptor plugin reactor filelogger`).

fn main() {
    plugin_sdk::serve_reactor(receptor_filelogger::FileLogger)
}

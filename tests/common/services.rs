//! Many idle services in one config, for `tests/scale.rs` and `benches/scale.rs`.

/// `n` services `s<i>`, each a `dummy` watcher (node `n<i>`, flipping every `interval`,
/// so idle after its first event when that is long) and a `filelogger` reactor writing
/// `logs/s<i>.log` unbuffered.
pub fn idle_services(n: usize, interval: &str) -> String {
    let mut config = String::new();
    for i in 0..n {
        config.push_str(&format!(
            "[services.s{i}.watchers.node]\ntype = \"dummy\"\n\
             cfg = {{ name = \"n{i}\", port = {port}, interval = \"{interval}\" }}\n\
             [services.s{i}.reactors.log]\ntype = \"filelogger\"\n\
             cfg = {{ filename = \"logs/s{i}.log\", unbuffered = true }}\n",
            port = 1000 + i
        ));
    }
    config
}

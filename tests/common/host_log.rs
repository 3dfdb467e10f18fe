//! Reading a `receptor --log-format json` log: which plugin processes the host started.
//! Shared by the tests and the benches that span processes.

/// Every plugin start the log reports, in order: (`kind/type`, pid).
pub fn plugin_starts(log: &str) -> Vec<(String, u32)> {
    log.lines()
        .filter(|l| l.contains("plugin process connected"))
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let plugin = v["fields"]["plugin"].as_str()?.to_owned();
            let pid = u32::try_from(v["fields"]["pid"].as_u64()?).ok()?;
            Some((plugin, pid))
        })
        .collect()
}

/// The pids of plugin `name` (`kind/type`), one per start, oldest first.
pub fn pids_of(log: &str, name: &str) -> Vec<u32> {
    plugin_starts(log)
        .into_iter()
        .filter(|(plugin, _)| plugin == name)
        .map(|(_, pid)| pid)
        .collect()
}

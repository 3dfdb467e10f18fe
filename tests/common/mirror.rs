//! The source file of the test plugin's `mirror` watcher (a registry as a file: the
//! watcher sends its node list whenever it changes). Shared by the tests and the
//! benches that span processes.

use std::path::Path;

/// Replaces `dir/file` with the nodes `names`, all up, atomically (the watcher polls
/// the file and must never read half of it).
pub fn publish(dir: &Path, file: &str, names: &[String]) {
    let nodes: Vec<String> = names
        .iter()
        .map(|n| format!(r#"{{"name":"{n}","status":"up","host":"10.0.0.1","port":80}}"#))
        .collect();
    let tmp = dir.join(format!("{file}.tmp"));
    std::fs::write(&tmp, format!("[{}]", nodes.join(","))).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

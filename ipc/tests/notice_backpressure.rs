//! A plugin that floods notices while the host does not take them is held back, not
//! buffered without bound (review finding: the reader fed an unbounded channel, and 200
//! MiB of notices arrived in a quarter of a second with nobody reading).

use std::os::unix::net::UnixStream;
use std::time::Duration;

use ipc::control::{HostEnd, Notice, PluginEnd, Secret, NOTICE_QUEUE};

#[test]
fn a_host_that_does_not_take_notices_holds_the_plugin_back() {
    let (host, plugin) = UnixStream::pair().unwrap();
    let secret = Secret::random();
    let theirs = secret.clone();
    let plugin = std::thread::spawn(move || {
        PluginEnd::connect(plugin, &theirs, Duration::from_secs(10)).unwrap()
    });
    let (_host_end, events) = HostEnd::accept(host, &secret, Duration::from_secs(10)).unwrap();
    let plugin = plugin.join().unwrap();
    let notifier = plugin.notifier();
    // Far more than the queue and the socket's buffers hold: 32 MiB.
    const FRAMES: usize = 64;
    const { assert!(FRAMES > 2 * NOTICE_QUEUE) };
    let sender = std::thread::spawn(move || {
        let message = "x".repeat(512 << 10);
        for i in 0..FRAMES {
            let notice = Notice::Log {
                level: "INFO".into(),
                message: message.clone(),
            };
            if notifier.notify(notice).is_err() {
                return i;
            }
        }
        FRAMES
    });
    // The plugin's writes block once the queue is full, until the write timeout ends
    // them; with no bound every notice would have gone.
    let sent = sender.join().unwrap();
    assert!(
        sent < FRAMES,
        "the host took all {FRAMES} notices with nobody reading"
    );
    assert!(
        sent >= NOTICE_QUEUE,
        "the queue holds {NOTICE_QUEUE}: {sent} went"
    );
    drop(events);
}

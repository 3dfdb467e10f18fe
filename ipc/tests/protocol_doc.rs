//! `PROTOCOL.md` cannot drift from the code: every hex example in it (a block opened with
//! ```` ```hex example=<label> ````) is decoded here with the host's own code and
//! compared with the value the document says it is, that value is encoded back to the
//! same bytes, and the ring examples are compared with a real ring's memory.

use std::collections::BTreeMap;
use std::os::fd::AsFd;

use ipc::codec;
use ipc::control::{HostFrame, Notice, PluginFrame, Request, MAGIC, PROTOCOL_VERSION};
use ipc::event::{Event, NodeInfo, NodeStatus, Update};
use ipc::ring::{RingConfig, RingProducer};
use ipc::sys::shm::Mapping;

/// The examples of `PROTOCOL.md`: label to bytes (comments after `#` left out).
fn examples() -> BTreeMap<String, Vec<u8>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md");
    let doc = std::fs::read_to_string(path).expect("PROTOCOL.md at the repository's root");
    let mut examples = BTreeMap::new();
    let mut current: Option<(String, Vec<u8>)> = None;
    for (n, line) in doc.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(label) = trimmed.strip_prefix("```hex example=") {
            current = Some((label.trim().to_owned(), Vec::new()));
            continue;
        }
        let Some((label, bytes)) = current.as_mut() else {
            continue;
        };
        if trimmed == "```" {
            let (label, bytes) = current.take().expect("an example");
            assert!(
                examples.insert(label.clone(), bytes).is_none(),
                "example '{label}' twice"
            );
            continue;
        }
        let code = trimmed.split('#').next().unwrap_or_default();
        for token in code.split_whitespace() {
            let byte = u8::from_str_radix(token, 16).unwrap_or_else(|e| {
                panic!(
                    "PROTOCOL.md line {}: '{token}' in example '{label}': {e}",
                    n + 1
                )
            });
            bytes.push(byte);
        }
    }
    assert!(current.is_none(), "an example block is not closed");
    examples
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The body of a frame, its length prefix checked.
fn body(label: &str, frame: &[u8]) -> Vec<u8> {
    assert!(frame.len() >= 4, "{label}: no length prefix");
    let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4, "{label}: the length prefix");
    frame[4..].to_vec()
}

/// `bytes` decode to `expected` and `expected` encodes to `bytes`.
fn round_trip<T>(label: &str, bytes: &[u8], expected: &T)
where
    T: bincode::Encode + bincode::Decode<()> + PartialEq + std::fmt::Debug,
{
    let decoded: T = codec::decode(bytes, "example")
        .unwrap_or_else(|e| panic!("{label}: the example does not decode: {e}"));
    assert_eq!(&decoded, expected, "{label}: decoded");
    let encoded = codec::encode(expected, "example").unwrap();
    assert_eq!(
        hex(&encoded),
        hex(bytes),
        "{label}: the code encodes the value as the left bytes"
    );
}

fn request(id: u64, request: Request) -> HostFrame {
    HostFrame::Request { id, request }
}

fn notice(notice: Notice) -> PluginFrame {
    PluginFrame::Notice(notice)
}

fn web1() -> NodeInfo {
    NodeInfo::new("web1", NodeStatus::Up, "10.0.0.1", 8080)
}

fn host_frames() -> Vec<(&'static str, HostFrame)> {
    vec![
        ("welcome", HostFrame::Welcome),
        (
            "refused",
            HostFrame::Refused("wrong secret in the hello".into()),
        ),
        (
            "setup",
            request(
                1,
                Request::Setup {
                    global_cfg: "{}".into(),
                },
            ),
        ),
        (
            "accept",
            request(
                2,
                Request::Accept {
                    endpoint: 7,
                    service: "web".into(),
                    instance: "east".into(),
                    cfg: r#"{"port":80}"#.into(),
                    ring: "receptor-4242-5f1e".into(),
                },
            ),
        ),
        ("start", request(3, Request::Start { endpoint: 7 })),
        ("close", request(4, Request::Close { endpoint: 7 })),
        ("ping", request(300, Request::Ping)),
        ("shutdown", request(301, Request::Shutdown)),
    ]
}

fn plugin_frames() -> Vec<(&'static str, PluginFrame)> {
    vec![
        (
            "response-ok",
            PluginFrame::Response {
                id: 1,
                result: Ok(()),
            },
        ),
        (
            "response-err",
            PluginFrame::Response {
                id: 2,
                result: Err("port: invalid type".into()),
            },
        ),
        (
            "log",
            notice(Notice::Log {
                level: "WARN".into(),
                message: "slow disk".into(),
            }),
        ),
        (
            "finished",
            notice(Notice::Finished {
                endpoint: 7,
                error: None,
            }),
        ),
        (
            "finished-error",
            notice(Notice::Finished {
                endpoint: 7,
                error: Some("no such file".into()),
            }),
        ),
        (
            "restarted",
            notice(Notice::Restarted {
                endpoint: 7,
                error: "lost my registry".into(),
            }),
        ),
        (
            "coalesced",
            notice(Notice::Coalesced {
                endpoint: 7,
                total: 1000,
            }),
        ),
    ]
}

fn updates() -> Vec<(&'static str, Update)> {
    let a = NodeInfo::new("a", NodeStatus::Up, "h1", 80).with_meta("zone", "eu");
    let b = NodeInfo::new("b", NodeStatus::Up, "h2", 80);
    let c = NodeInfo::new("c", NodeStatus::Up, "h3", 443);
    vec![
        (
            "incremental",
            Update::Incremental(Event::from_iter([web1()])),
        ),
        ("full", Update::Full(Event::from_iter([a, b]))),
        ("full-start", Update::FullStart(Event::new())),
        ("full-part", Update::FullPart(Event::from_iter([c]))),
        ("full-end", Update::FullEnd(Event::new())),
    ]
}

fn reactor_event() -> Event {
    Event::from_iter([web1(), NodeInfo::new("web2", NodeStatus::Down, "", 0)])
}

/// A fresh ring of 4096 bytes with the incremental example pushed: its memory.
fn real_ring(record: &[u8]) -> (Vec<u8>, u32) {
    let mut producer = RingProducer::create(RingConfig::with_capacity(4096)).unwrap();
    assert!(producer.try_push(record).unwrap());
    let fd = producer.ring().segment_fd().try_clone_to_owned().unwrap();
    let mapping = Mapping::map_fd(fd.as_fd()).unwrap();
    let mut memory = vec![0; 512 + 4096];
    assert!(mapping.read(0, &mut memory));
    (memory, std::process::id())
}

#[test]
fn every_example_of_protocol_md_is_what_the_code_reads_and_writes() {
    let mut examples = examples();
    let mut take = |label: &str| {
        examples
            .remove(label)
            .unwrap_or_else(|| panic!("PROTOCOL.md has no example '{label}'"))
    };

    let hello = take("hello");
    let mut expected = MAGIC.to_vec();
    expected.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    expected.extend(0..32u8);
    assert_eq!(hex(&hello), hex(&expected), "hello");

    for (label, frame) in host_frames() {
        round_trip(label, &body(label, &take(label)), &frame);
    }
    for (label, frame) in plugin_frames() {
        round_trip(label, &body(label, &take(label)), &frame);
    }
    let updates = updates();
    for (label, update) in &updates {
        round_trip(label, &take(label), update);
    }
    round_trip("event", &take("event"), &reactor_event());

    let incremental = codec::encode(&updates[0].1, "update").unwrap();
    let (memory, pid) = real_ring(&incremental);
    let mut header = take("ring-header");
    assert_eq!(header.len(), 32, "ring-header: 32 bytes");
    // The example's pid is 4242; the real ring's is this process's.
    assert_eq!(header[24..28], 4242u32.to_le_bytes());
    header[24..28].copy_from_slice(&pid.to_le_bytes());
    assert_eq!(hex(&memory[..32]), hex(&header), "ring-header");
    let record = take("ring-record");
    assert_eq!(
        hex(&memory[512..512 + record.len()]),
        hex(&record),
        "ring-record"
    );
    let tail = u64::from_le_bytes(memory[128..136].try_into().unwrap());
    assert_eq!(tail, record.len() as u64, "the tail after one record");

    assert!(
        examples.is_empty(),
        "examples this test does not check: {:?}",
        examples.keys().collect::<Vec<_>>()
    );
}

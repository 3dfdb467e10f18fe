//! `control-*` scenarios of the ipc-peer helper: the plugin end of a control connection
//! the test handed this process through the environment.
//!
//! - `control-plugin`: handshakes, then answers: `Setup` ok; `Accept` ok unless its cfg
//!   is `"reject"` (then the error `rejected: <service>/<instance>`) or `"size"` (then
//!   the error `segment of <n> bytes`, the size of the descriptor that came with it);
//!   a request with the wrong descriptors ends the scenario with an error; `Start` ok and a
//!   `Finished` notice; `Close` and `Ping` ok; `Shutdown` ok and exit 0. When the host
//!   closes the connection it prints `closed` and exits 0.
//! - `control-silent`: handshakes, then reads requests and never answers.
//! - `control-hello <magic|version|secret>`: sends a hello that is wrong in that one way
//!   and prints the host's refusal as `refused: <reason>`.
//! - `control-oversize` / `control-truncated`: handshakes, then sends a frame whose
//!   length is over the limit, or a frame cut short, and exits.

use std::io::Write;
use std::time::Duration;

use ipc::control::{
    Notice, PluginEnd, RecvError, Request, Secret, CONTROL_FD_ENV, MAGIC, MAX_FRAME_BYTES,
    PROTOCOL_VERSION, SECRET_ENV,
};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one `control-*` scenario.
pub fn run(scenario: &str, args: &[String]) -> Result<(), String> {
    match scenario {
        "control-plugin" => plugin(false),
        "control-silent" => plugin(true),
        "control-hello" => bad_hello(args.first().map(String::as_str).unwrap_or("")),
        "control-oversize" => raw_after_handshake(&((MAX_FRAME_BYTES + 1) as u32).to_le_bytes()),
        "control-truncated" => {
            let mut bytes = 100u32.to_le_bytes().to_vec();
            bytes.extend_from_slice(&[0u8; 10]);
            raw_after_handshake(&bytes)
        }
        _ => Err(format!("unknown scenario '{scenario}'")),
    }
}

fn plugin(silent: bool) -> Result<(), String> {
    let conn = PluginEnd::from_env(TIMEOUT).map_err(|e| e.to_string())?;
    let notifier = conn.notifier();
    loop {
        let (id, request, segment) = match conn.recv() {
            Ok(got) => (got.id, got.request, got.segment),
            Err(RecvError::Closed) => {
                println!("closed");
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        };
        if silent {
            continue;
        }
        let answer = match &request {
            Request::Accept {
                cfg,
                service,
                instance,
                ..
            } if cfg == "\"reject\"" => Err(format!("rejected: {service}/{instance}")),
            Request::Accept { cfg, .. } if cfg == "\"size\"" => {
                let file = std::fs::File::from(segment.ok_or("no segment")?);
                let len = file.metadata().map_err(|e| e.to_string())?.len();
                Err(format!("segment of {len} bytes"))
            }
            _ => Ok(()),
        };
        conn.respond(id, answer).map_err(|e| e.to_string())?;
        match request {
            Request::Start { endpoint } => notifier
                .notify(Notice::Finished {
                    endpoint,
                    error: None,
                })
                .map_err(|e| e.to_string())?,
            Request::Shutdown => return Ok(()),
            _ => {}
        }
    }
}

fn inherited() -> Result<(std::os::unix::net::UnixStream, Secret), String> {
    let fd: i32 = std::env::var(CONTROL_FD_ENV)
        .map_err(|e| e.to_string())?
        .parse()
        .map_err(|e| format!("{e}"))?;
    let secret = std::env::var(SECRET_ENV)
        .ok()
        .and_then(|s| Secret::from_hex(&s))
        .ok_or("no secret")?;
    let stream = ipc::sys::process::take_inherited_socket(fd).map_err(|e| e.to_string())?;
    Ok((stream, secret))
}

fn bad_hello(which: &str) -> Result<(), String> {
    let (stream, secret) = inherited()?;
    let mut hello = Vec::new();
    hello.extend_from_slice(if which == "magic" {
        b"NOTRCPTR"
    } else {
        &MAGIC
    });
    let version = if which == "version" {
        PROTOCOL_VERSION + 98
    } else {
        PROTOCOL_VERSION
    };
    hello.extend_from_slice(&version.to_le_bytes());
    let secret = if which == "secret" {
        Secret::random()
    } else {
        secret
    };
    hello.extend_from_slice(secret.as_bytes());
    match PluginEnd::connect_with_hello(stream, &hello, TIMEOUT) {
        Err(ipc::control::HandshakeError::Refused(reason)) => {
            println!("refused: {reason}");
            Ok(())
        }
        Err(e) => Err(format!("expected a refusal, got: {e}")),
        Ok(_) => Err("expected a refusal, got a welcome".into()),
    }
}

fn raw_after_handshake(bytes: &[u8]) -> Result<(), String> {
    let (stream, secret) = inherited()?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let _conn = PluginEnd::connect(stream, &secret, TIMEOUT).map_err(|e| e.to_string())?;
    writer.write_all(bytes).map_err(|e| e.to_string())?;
    Ok(())
}

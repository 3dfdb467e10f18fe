//! `cargo bench --bench restapi`: HTTP POSTs through the restapi, the host and a
//! counting reactor, against the same HTTP server answering `200` with no pipeline.
//!
//! The load: 16 keep-alive clients (hyper's, on tokio, in this process), each POSTing
//! one-node bodies in a closed loop, every node a name not seen before (nothing can be
//! coalesced away). Figures are the clients' requests per second and the 99th
//! percentile of their answer times.
//! - `restapi`: `receptor run` with the built-in restapi feeding the test plugin's
//!   counting reactor, which writes a result file once every node arrived: a missing
//!   node fails the bench.
//! - `bare_http`: the restapi's own server (`receptor_restapi::Server`: the same hyper
//!   set-up, deadlines, cap and runtime) in a process of its own (this bench binary,
//!   re-run), with a handler that reads the body and answers `200 OK`.
//! - With `RECEPTOR_BENCH_GO=<dir>` (a work dir of
//!   `/work/shared/anchors/go-receptor/BUILD.sh`), the Go original's restapiserver
//!   feeding its filelogger, under the same load (counted from the log).
//!
//! `RECEPTOR_BENCH_QUICK=1` divides the counts by ten.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use receptor_restapi::answer::{read_body, text, Answer, Handler};
use support::{test_plugin, BenchHost, Guard};

const CONCURRENCY: usize = 16;
const WAIT: Duration = Duration::from_secs(60);
/// The bare server's mode of this binary.
const BARE_ENV: &str = "RECEPTOR_BENCH_BARE_SERVER";

/// What one load run measured.
struct Figures {
    req_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The bare server's handler: read the body, answer `200 OK`.
struct Bare;

impl Handler for Bare {
    async fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
        deadline: tokio::time::Instant,
    ) -> Answer {
        match read_body(request.into_body(), receptor_restapi::MAX_BODY, deadline).await {
            Ok(_) => text(StatusCode::OK, "OK"),
            Err(refusal) => refusal,
        }
    }
}

/// The bare server process: prints its address, serves until stdin closes.
fn bare_server() {
    let settings = receptor_restapi::Settings {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    let server = receptor_restapi::Server::start(&settings, Bare).expect("start the bare server");
    println!("{}", server.local_addr());
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
}

fn body(name: &str, i: usize) -> String {
    format!(
        r#"{{"name":"{name}","type":"nodeup","host":"10.1.{}.{}","port":{}}}"#,
        (i / 256) % 256,
        i % 256,
        1000 + i % 60000
    )
}

/// One keep-alive client: `count` POSTs of nodes `<prefix>-<client>-<i>`; their
/// answer times.
async fn client(
    addr: SocketAddr,
    path: Arc<str>,
    prefix: Arc<str>,
    id: usize,
    count: usize,
) -> Vec<Duration> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("{prefix}-{id}-{i}");
        let request = Request::post(&*path)
            .header("host", "bench")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body(&name, i))))
            .unwrap();
        sender.ready().await.expect("connection ready");
        let start = Instant::now();
        let answer = sender.send_request(request).await.expect("an answer");
        let status = answer.status();
        let text = answer
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        times.push(start.elapsed());
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
    }
    times
}

/// `total` POSTs over [`CONCURRENCY`] clients.
fn load(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    path: &str,
    prefix: &str,
    total: usize,
) -> Figures {
    let (path, prefix): (Arc<str>, Arc<str>) = (path.into(), prefix.into());
    let start = Instant::now();
    let mut times: Vec<Duration> = rt.block_on(async {
        let clients: Vec<_> = (0..CONCURRENCY)
            .map(|id| {
                let share = total / CONCURRENCY + usize::from(id < total % CONCURRENCY);
                tokio::spawn(client(addr, path.clone(), prefix.clone(), id, share))
            })
            .collect();
        let mut all = Vec::with_capacity(total);
        for c in clients {
            all.extend(c.await.expect("a client"));
        }
        all
    });
    let elapsed = start.elapsed();
    times.sort_unstable();
    let pct = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Figures {
        req_per_s: total as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50).as_secs_f64() * 1e3,
        p99_ms: pct(0.99).as_secs_f64() * 1e3,
    }
}

/// POSTs an empty batch until the service answers `200` (it is starting).
fn wait_ready(rt: &tokio::runtime::Runtime, addr: SocketAddr, path: &str) {
    let deadline = Instant::now() + WAIT;
    let url: Arc<str> = path.into();
    while !rt.block_on(probe(addr, url.clone())) {
        assert!(Instant::now() < deadline, "{path} never answered 200");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn probe(addr: SocketAddr, path: Arc<str>) -> bool {
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let request = Request::post(&*path)
        .header("host", "bench")
        .body(Full::new(Bytes::from(body("probe", 0))))
        .unwrap();
    matches!(sender.send_request(request).await, Ok(a) if a.status() == StatusCode::OK)
}

/// A server under test: its address, and what keeps it running.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    /// Checks, after the rounds, that every node POSTed arrived (`count` per round).
    arrived: Box<dyn Fn(usize)>,
    _keep: Box<dyn std::any::Any>,
    rounds: Vec<Figures>,
}

/// The restapi through the host to the counting reactor, which expects `expect` nodes.
fn start_restapi(expect: usize) -> Target {
    let plugin = test_plugin();
    let config = format!(
        r#"
[watchers.restapi]
listen = "127.0.0.1:0"

[services.web.watchers.api]
type = "restapi"
cfg = {{ service = "web" }}

[services.web.reactors.tally]
type = "tally"
cfg = {{ scenario = "count", expect = {expect}, result = "result.json", file = "count.txt" }}
"#
    );
    let host = BenchHost::start(&plugin, &["receptor-reactor-tally"], &config);
    let addr = logged_address(&host);
    let result = host.path().join("result.json");
    Target {
        name: "restapi",
        addr,
        arrived: Box::new(move |_| {
            let deadline = Instant::now() + WAIT;
            while !result.exists() {
                assert!(
                    Instant::now() < deadline,
                    "restapi: the reactor did not get all {expect} nodes within {WAIT:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }),
        _keep: Box::new(host),
        rounds: Vec::new(),
    }
}

/// The address the restapi logged (`listening on http://<addr>`).
fn logged_address(host: &BenchHost) -> SocketAddr {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = host.log().lines().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let message = v["fields"]["message"].as_str()?;
            message
                .strip_prefix("listening on http://")?
                .trim()
                .parse()
                .ok()
        });
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "the restapi never logged its address"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The same server answering `200` without the pipeline.
fn start_bare() -> Target {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(BARE_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the bare server");
    let stdout = child.stdout.take().unwrap();
    let server = Guard(Some(child));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let addr: SocketAddr = line.trim().parse().expect("the bare server's address");
    Target {
        name: "bare_http",
        addr,
        arrived: Box::new(|_| {}),
        _keep: Box::new(server),
        rounds: Vec::new(),
    }
}

/// The Go original's restapiserver feeding its filelogger (work dir `anchor`).
fn start_go(anchor: &Path) -> Target {
    let bin = anchor.join("gopath/src/github.com/blang/receptor/bin");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let log = dir.path().join("go.log");
    let config = format!(
        r#"{{"services":{{"S":{{"watchers":{{"w":{{"type":"restapiserver","cfg":{{"service":"web"}}}}}},
"reactors":{{"r":{{"type":"filelogger","cfg":{{"filename":"{}","unbuffered":true}}}}}}}}}},
"watchers":{{"restapiserver":{{"listen":"127.0.0.1:{port}"}}}},"reactors":{{}}}}"#,
        log.display()
    );
    std::fs::write(dir.path().join("go.json"), config).unwrap();
    let host = Command::new(bin.join("receptor"))
        .arg(format!("-config={}", dir.path().join("go.json").display()))
        .arg(format!("-plugins={}", bin.join("plugins").display()))
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the Go receptor");
    Target {
        name: "go_restapi",
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        arrived: Box::new(move |posted| {
            let deadline = Instant::now() + WAIT;
            let logged = || {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(" round"))
                    .count()
            };
            while logged() < posted {
                assert!(
                    Instant::now() < deadline,
                    "go: the filelogger logged {} of {posted} nodes",
                    logged()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }),
        // The host stops before its directory goes.
        _keep: Box::new((Guard(Some(host)), dir)),
        rounds: Vec::new(),
    }
}

/// The round whose rate is the median (its p99 with it).
fn median(rounds: &[Figures]) -> &Figures {
    let mut order: Vec<&Figures> = rounds.iter().collect();
    order.sort_by(|a, b| a.req_per_s.total_cmp(&b.req_per_s));
    order[order.len() / 2]
}

fn main() {
    if std::env::var_os(BARE_ENV).is_some() {
        return bare_server();
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::var("RECEPTOR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let scale = if quick { 10 } else { 1 };
    let (warmup, count, rounds) = (2_000 / scale, 15_000 / scale, 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // The probe's node counts too.
    let mut targets = vec![start_bare(), start_restapi(1 + warmup + rounds * count)];
    if let Some(dir) = std::env::var_os("RECEPTOR_BENCH_GO") {
        targets.push(start_go(Path::new(&dir)));
    }
    for t in &targets {
        wait_ready(&rt, t.addr, "/service/web");
        load(&rt, t.addr, "/service/web", "w", warmup);
    }
    // Rounds in turn, so that a disturbance from elsewhere on the machine hits one
    // round, not one target; each figure is its target's median round.
    for round in 0..rounds {
        for t in &mut targets {
            let figures = load(&rt, t.addr, "/service/web", &format!("round{round}"), count);
            t.rounds.push(figures);
        }
    }
    for t in &targets {
        (t.arrived)(rounds * count);
    }

    for t in &targets {
        let rates: Vec<String> = t
            .rounds
            .iter()
            .map(|f| format!("{:.0}", f.req_per_s))
            .collect();
        println!("note: {} rounds req/s = {}", t.name, rates.join(", "));
    }
    let [bare, restapi] = [&targets[0], &targets[1]].map(|t| median(&t.rounds));
    println!("summary: restapi_req_per_s = {:.0}", restapi.req_per_s);
    println!("summary: restapi_p99_ms = {:.2}", restapi.p99_ms);
    println!("summary: bare_http_req_per_s = {:.0}", bare.req_per_s);
    println!(
        "ratio: restapi / bare_http = {:.2}",
        restapi.req_per_s / bare.req_per_s
    );
    println!("note: restapi_p50_ms = {:.2}", restapi.p50_ms);
    println!(
        "note: bare_http_p50_ms = {:.2}, bare_http_p99_ms = {:.2}",
        bare.p50_ms, bare.p99_ms
    );
    if let Some(go) = targets.get(2).map(|t| median(&t.rounds)) {
        println!("summary: go_restapi_req_per_s = {:.0}", go.req_per_s);
        println!("summary: go_restapi_p99_ms = {:.2}", go.p99_ms);
        println!("note: go_restapi_p50_ms = {:.2}", go.p50_ms);
        println!(
            "ratio: restapi / go_restapi = {:.2}",
            restapi.req_per_s / go.req_per_s
        );
    }
}

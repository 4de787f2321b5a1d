//! `GET /v1/tenants` latency and throughput at 0, 100 and 1000 tenants,
//! side by side in the same run with `lobsterd --json list` and, when
//! `LOBSTER_BENCH_PYTHON` names a Python with the `lobster` package, its
//! `Host.list()`; then a bounded load: 200 concurrent lists at 1000
//! tenants with 10 spawns at once, and a trickling client beside 50 lists.
//! Everything over a host of fakes whose guests boot the real agent, on
//! loopback. Prints numbers; asserts nothing. Run it with
//! `scripts/bench-api.sh` (release builds of this and `lobsterd`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use lobster_api::auth::RateLimit;
use lobster_api::Api;
use lobster_core::store::{ApiScope, TenantStatus};
use lobster_testkit::bench::percentile;
use lobster_testkit::rig::{FakeHost, GuestSide};
use tokio::io::AsyncWriteExt;

/// The p50 and p99 of `samples`, in milliseconds.
fn percentiles(samples: Vec<Duration>) -> (f64, f64) {
    let ms = |p| percentile(&samples, p).as_secs_f64() * 1000.0;
    (ms(0.50), ms(0.99))
}

/// One request over the socket: its status.
async fn call(socket: &Path, method: &str, path: &str, token: &str, body: &[u8]) -> u16 {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "lobster")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await.unwrap();
    status
}

/// A host with `tenants` running tenants (registry records; their guests
/// are not booted), served on a socket; its config file and a token.
struct Bench {
    rig: FakeHost,
    socket: PathBuf,
    config: PathBuf,
    token: String,
    operations: lobster_api::operations::Operations,
}

async fn bench_host(net: u8, tenants: usize) -> Bench {
    let rig = FakeHost::build(GuestSide::Booted { net }, |c| {
        c.network.pool = format!("127.{net}.0.0/16");
        // The seeded tenants' overlays are never made: only the spawned
        // ones' count against the disk.
        c.storage.overlay_overcommit_percent = 100_000;
    })
    .await;
    let store = rig.store();
    for i in 0..tenants {
        let name = format!("t{i:04}");
        rig.allocate(&name);
        store
            .modify(&name, |r| r.status = TenantStatus::Running)
            .unwrap();
    }
    let host = Arc::new(rig.host.clone());
    let (_, token) = host
        .create_api_token("bench", ApiScope::Operate)
        .await
        .unwrap();
    let socket = rig.dir.path().join("api.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let api = Api::new(host).with_rate_limit(RateLimit {
        per_second: 1e9,
        burst: 1e9,
    });
    let operations = api.operations.clone();
    tokio::spawn(lobster_api::serve(listener, api, std::future::pending()));
    let config = rig.dir.path().join("config.json");
    std::fs::write(&config, serde_json::to_vec(rig.config()).unwrap()).unwrap();
    Bench {
        rig,
        socket,
        config,
        token,
        operations,
    }
}

/// p50/p99 of `runs` runs of `command`.
fn process_percentiles(
    runs: usize,
    mut command: impl FnMut() -> std::process::Command,
) -> Option<(f64, f64)> {
    let mut samples = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let out = command().output().ok()?;
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        samples.push(started.elapsed());
    }
    Some(percentiles(samples))
}

fn lobsterd() -> PathBuf {
    std::env::var_os("LOBSTERD").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/lobsterd"),
        PathBuf::from,
    )
}

/// `list()` in Python on the host `open` makes (`lobster.Host(…)` or
/// `lobster.connect(…)`): p50/p99 over `calls` calls, in one process.
fn python_list(python: &str, open: &str, calls: usize) -> Option<(f64, f64)> {
    let script = format!(
        "import json,time,lobster\nh={open}\nh.list()\ns=[]\n\
         for _ in range({calls}):\n t=time.perf_counter(); h.list(); s.append(time.perf_counter()-t)\n\
         s.sort(); print(json.dumps([s[len(s)//2]*1e3, s[int((len(s)-1)*0.99)]*1e3]))"
    );
    let out = std::process::Command::new(python)
        .args(["-c", &script])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let [p50, p99]: [f64; 2] = serde_json::from_slice(&out.stdout).ok()?;
    Some((p50, p99))
}

fn show(value: Option<(f64, f64)>) -> String {
    value.map_or("-".into(), |(p50, p99)| format!("{p50:.2} / {p99:.2}"))
}

async fn latency_table() {
    println!("GET /v1/tenants vs lobsterd --json list vs Python Host.list() and lobster.connect().list(), p50 / p99 ms");
    println!(
        "{:>8} {:>18} {:>10} {:>22} {:>20} {:>26}",
        "tenants",
        "GET /v1/tenants",
        "req/s",
        "lobsterd --json list",
        "Python Host.list()",
        "Python connect().list()"
    );
    let python = std::env::var("LOBSTER_BENCH_PYTHON").ok();
    for (tenants, net) in [(0usize, 216u8), (100, 217), (1000, 218)] {
        let b = bench_host(net, tenants).await;
        let _ = call(&b.socket, "GET", "/v1/tenants", &b.token, b"").await;
        let mut samples = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            assert_eq!(
                call(&b.socket, "GET", "/v1/tenants", &b.token, b"").await,
                200
            );
            samples.push(started.elapsed());
        }
        let api = percentiles(samples);
        // Throughput: 8 clients for 2 s.
        let until = Instant::now() + Duration::from_secs(2);
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (socket, token) = (b.socket.clone(), b.token.clone());
            clients.spawn(async move {
                let mut done = 0u32;
                while Instant::now() < until {
                    if call(&socket, "GET", "/v1/tenants", &token, b"").await == 200 {
                        done += 1;
                    }
                }
                done
            });
        }
        let mut total = 0;
        while let Some(done) = clients.join_next().await {
            total += done.unwrap();
        }
        let config = b.config.clone();
        let cli = tokio::task::spawn_blocking(move || {
            process_percentiles(30, || {
                let mut c = std::process::Command::new(lobsterd());
                c.arg("--config").arg(&config).args(["--json", "list"]);
                c
            })
        })
        .await
        .unwrap();
        let local = format!("lobster.Host({:?})", b.config.display().to_string());
        let remote = format!(
            "lobster.connect({:?}, {:?})",
            format!("unix:{}", b.socket.display()),
            b.token
        );
        let mut py = [None, None];
        if let Some(python) = &python {
            for (slot, open) in py.iter_mut().zip([local, remote]) {
                let python = python.clone();
                *slot = tokio::task::spawn_blocking(move || python_list(&python, &open, 200))
                    .await
                    .unwrap();
            }
        }
        println!(
            "{:>8} {:>18} {:>10.0} {:>22} {:>20} {:>26}",
            tenants,
            show(Some(api)),
            f64::from(total) / 2.0,
            show(cli),
            show(py[0]),
            show(py[1])
        );
        drop(b.rig);
    }
}

async fn load() {
    let b = bench_host(219, 1000).await;
    println!("\nload at 1000 tenants: 200 concurrent GET /v1/tenants with 10 concurrent spawns");
    let mut gets = tokio::task::JoinSet::new();
    let mut spawns = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..10 {
        let (socket, token) = (b.socket.clone(), b.token.clone());
        spawns.spawn(async move {
            let body = format!(r#"{{"name":"load{i}"}}"#);
            call(&socket, "POST", "/v1/tenants", &token, body.as_bytes()).await
        });
    }
    for _ in 0..200 {
        let (socket, token) = (b.socket.clone(), b.token.clone());
        gets.spawn(async move {
            let at = Instant::now();
            let status = call(&socket, "GET", "/v1/tenants", &token, b"").await;
            (status, at.elapsed())
        });
    }
    let (mut samples, mut errors) = (Vec::new(), 0);
    while let Some(done) = gets.join_next().await {
        let (status, took) = done.unwrap();
        if status != 200 {
            errors += 1;
        }
        samples.push(took);
    }
    let all_gets = started.elapsed();
    let mut accepted = 0;
    while let Some(status) = spawns.join_next().await {
        if status.unwrap() == 202 {
            accepted += 1;
        }
    }
    b.operations.drained().await;
    let spawned = b
        .operations
        .list()
        .iter()
        .filter(|op| op.state == lobster_api::operations::OperationState::Succeeded)
        .count();
    for op in b.operations.list() {
        if let Some(error) = &op.error {
            eprintln!("  {} {}: {}", op.id, op.tenant, error.message);
        }
    }
    let (p50, p99) = percentiles(samples);
    println!(
        "  GETs: {} errors, p50 {p50:.1} ms, p99 {p99:.1} ms, all 200 in {:.2} s; spawns: {accepted}/10 accepted, {spawned}/10 succeeded, all done {:.2} s after the start",
        errors,
        all_gets.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // A client trickling its request, one byte a second, beside 50 lists.
    let mut slow = tokio::net::UnixStream::connect(&b.socket).await.unwrap();
    let trickle = tokio::spawn(async move {
        for byte in b"GET /v1/tenants HTTP/1.1\r\nHost: x\r\n".iter() {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut samples = Vec::new();
    for _ in 0..50 {
        let at = Instant::now();
        let _ = call(&b.socket, "GET", "/v1/tenants", &b.token, b"").await;
        samples.push(at.elapsed());
    }
    trickle.abort();
    let (p50, p99) = percentiles(samples);
    println!("  beside a trickling client: 50 lists p50 {p50:.1} ms, p99 {p99:.1} ms");
    for i in 0..10 {
        let _ = b.rig.host.evict(&format!("load{i}")).await;
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        latency_table().await;
        load().await;
    });
}

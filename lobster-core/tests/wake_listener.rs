//! T0: the wake listener on a real unix socket, spliced to a real TCP
//! "gateway" on loopback: one wake for many waiting connections, bytes both
//! ways, the connection cap, the wake timeout and failure (and the retry
//! after them, the wake itself never cancelled), a gateway that never
//! accepts, and peers refused by their uid.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lobster_core::proxy::{ReportFn, WakeFn, WakeLimits, WakeListener, WakeReport};
use lobster_testkit::poll::until_async;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::Notify;

const LIMITS: WakeLimits = WakeLimits {
    max_connections: 64,
    wake_timeout: Duration::from_secs(20),
    connect_timeout: Duration::from_secs(5),
};

/// A gateway on loopback answering each line `x` with `reply:x` and
/// closing; the count of connections it served.
async fn gateway() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                BufReader::new(read).read_line(&mut line).await.unwrap();
                write
                    .write_all(format!("reply:{line}").as_bytes())
                    .await
                    .unwrap();
            });
        }
    });
    (addr, served)
}

/// How a test's wake behaves on its n-th call (from 0).
type Behaviour = Arc<
    dyn Fn(usize) -> futures_util::future::BoxFuture<'static, Result<(), String>> + Send + Sync,
>;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    wakes: Arc<AtomicUsize>,
    reports: Arc<Mutex<Vec<WakeReport>>>,
    listener: WakeListener,
}

/// A listener at a fresh socket whose wake calls `behaviour` and then
/// answers `gateway`; serving `peers` (default: this process's uid).
fn listen(
    gateway: SocketAddr,
    limits: WakeLimits,
    peers: Option<Vec<u32>>,
    behaviour: Behaviour,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wake.sock");
    let socket = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let wakes = Arc::new(AtomicUsize::new(0));
    let reports = Arc::new(Mutex::new(Vec::new()));
    let counter = wakes.clone();
    let wake: WakeFn = Arc::new(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let behaviour = behaviour.clone();
        Box::pin(async move { behaviour(n).await.map(|()| gateway) })
    });
    let log = reports.clone();
    let report: ReportFn = Arc::new(move |r| log.lock().unwrap().push(r));
    let me = rustix::process::getuid().as_raw();
    let listener = WakeListener::start(
        socket,
        path.clone(),
        peers.unwrap_or(vec![me]),
        limits,
        wake,
        report,
    )
    .unwrap();
    Fixture {
        _dir: dir,
        path,
        wakes,
        reports,
        listener,
    }
}

fn after(delay: Duration) -> Behaviour {
    Arc::new(move |_| {
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(())
        })
    })
}

/// Connects and sends `line`.
async fn open(path: &PathBuf, line: &str) -> UnixStream {
    let mut stream = UnixStream::connect(path).await.unwrap();
    stream
        .write_all(format!("{line}\n").as_bytes())
        .await
        .unwrap();
    stream
}

/// Reads until the other side closes (within 30 s).
async fn answer(mut stream: UnixStream) -> String {
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut out))
        .await
        .expect("an answer or a close within 30 s")
        .unwrap_or_default();
    out
}

/// Connects, sends `line`, and reads until the other side closes.
async fn request(path: &PathBuf, line: &str) -> String {
    answer(open(path, line).await).await
}

#[tokio::test]
async fn many_requests_wake_once_and_each_gets_the_gateway_s_own_reply() {
    let (gw, served) = gateway().await;
    let f = listen(gw, LIMITS, None, after(Duration::from_millis(500)));
    let requests = (0..20).map(|i| {
        let path = f.path.clone();
        tokio::spawn(async move { (i, request(&path, &format!("hello-{i}")).await) })
    });
    for r in futures_util::future::join_all(requests).await {
        let (i, answer) = r.unwrap();
        assert_eq!(answer, format!("reply:hello-{i}\n"));
    }
    assert_eq!(
        f.wakes.load(Ordering::SeqCst),
        1,
        "one wake for every request"
    );
    assert_eq!(served.load(Ordering::SeqCst), 20);
    let reports = f.reports.lock().unwrap().clone();
    assert_eq!(reports[0], WakeReport::Started);
    assert!(
        matches!(reports[1], WakeReport::Woken { waiting, elapsed } if waiting >= 1 && elapsed >= Duration::from_millis(500)),
        "{reports:?}"
    );
    assert_eq!(reports.len(), 2, "{reports:?}");
    // Done once woken: its grace over, it stops listening.
    until_async(
        "the listener finishes after its grace",
        Duration::from_secs(10),
        || async { f.listener.is_finished().then_some(()) },
    )
    .await;
    assert!(UnixStream::connect(&f.path).await.is_err());
    drop(f.listener);
    assert!(!f.path.exists(), "dropping the listener removes its socket");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_the_rest_wait() {
    let (gw, _) = gateway().await;
    let go = Arc::new(Notify::new());
    let release = go.clone();
    let behaviour: Behaviour = Arc::new(move |_| {
        let go = release.clone();
        Box::pin(async move {
            go.notified().await;
            Ok(())
        })
    });
    let limits = WakeLimits {
        max_connections: 2,
        ..LIMITS
    };
    let f = listen(gw, limits, None, behaviour);
    // Connected in this order, accepted in this order (the backlog is FIFO).
    let waiting = [open(&f.path, "w0").await, open(&f.path, "w1").await];
    let excess = open(&f.path, "excess").await;
    let excess = tokio::time::timeout(Duration::from_secs(5), answer(excess))
        .await
        .expect("the excess connection is closed at once, not held");
    assert_eq!(excess, "", "a connection beyond the cap got an answer");
    assert_eq!(f.wakes.load(Ordering::SeqCst), 1);
    go.notify_one();
    for (i, w) in waiting.into_iter().enumerate() {
        assert_eq!(answer(w).await, format!("reply:w{i}\n"));
    }
    assert_eq!(f.wakes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_wake_that_times_out_or_fails_closes_the_waiting_and_the_next_request_retries() {
    let (gw, served) = gateway().await;
    // 1st: never ends; 2nd: fails; 3rd: succeeds.
    let behaviour: Behaviour = Arc::new(|n| {
        Box::pin(async move {
            match n {
                0 => std::future::pending().await,
                1 => Err("the snapshot is gone".to_string()),
                _ => Ok(()),
            }
        })
    });
    let limits = WakeLimits {
        wake_timeout: Duration::from_millis(500),
        ..LIMITS
    };
    let f = listen(gw, limits, None, behaviour);
    assert_eq!(
        request(&f.path, "a").await,
        "",
        "timed out: closed, no answer"
    );
    assert_eq!(request(&f.path, "b").await, "", "failed: closed, no answer");
    assert_eq!(served.load(Ordering::SeqCst), 0);
    assert_eq!(
        request(&f.path, "c").await,
        "reply:c\n",
        "the third wake works"
    );
    assert_eq!(f.wakes.load(Ordering::SeqCst), 3);
    let reports = f.reports.lock().unwrap().clone();
    assert!(
        matches!(&reports[1], WakeReport::Failed { error, .. } if error.contains("not awake within 500 ms")),
        "{reports:?}"
    );
    assert!(
        matches!(&reports[3], WakeReport::Failed { error, .. } if error == "the snapshot is gone"),
        "{reports:?}"
    );
    assert!(
        matches!(reports[5], WakeReport::Woken { .. }),
        "{reports:?}"
    );
}

#[tokio::test]
async fn a_peer_whose_uid_is_not_listed_is_closed_without_waking_anything() {
    let (gw, served) = gateway().await;
    let me = rustix::process::getuid().as_raw();
    let f = listen(
        gw,
        LIMITS,
        Some(vec![me.wrapping_add(1)]),
        after(Duration::ZERO),
    );
    assert_eq!(request(&f.path, "intruder").await, "");
    assert_eq!(f.wakes.load(Ordering::SeqCst), 0);
    assert_eq!(served.load(Ordering::SeqCst), 0);
    assert!(f.reports.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_timeout_stops_the_waiting_never_the_wake_itself() {
    let (gw, _) = gateway().await;
    let finished = Arc::new(AtomicUsize::new(0));
    let done = finished.clone();
    let behaviour: Behaviour = Arc::new(move |_| {
        let done = done.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            done.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    });
    let limits = WakeLimits {
        wake_timeout: Duration::from_millis(200),
        ..LIMITS
    };
    let f = listen(gw, limits, None, behaviour);
    assert_eq!(request(&f.path, "a").await, "", "closed at the timeout");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "the wake is still under way"
    );
    drop(f.listener);
    until_async(
        "the abandoned wake (a resume) to run to its end",
        Duration::from_secs(10),
        || async { (finished.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_woken_gateway_that_never_accepts_closes_the_request_in_bounded_time() {
    // A port nothing listens on (bound, then freed).
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let limits = WakeLimits {
        connect_timeout: Duration::from_millis(500),
        ..LIMITS
    };
    let f = listen(closed, limits, None, after(Duration::ZERO));
    let started = std::time::Instant::now();
    assert_eq!(request(&f.path, "a").await, "");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(f.wakes.load(Ordering::SeqCst), 1);
}

//! T0: slow clients cannot starve the host's health checks. The
//! `lobster-agent` binary runs as a host process; 100 connections (half on
//! each port, as processes inside a guest could open) trickle a request one
//! byte at a time and reconnect whenever they are dropped, while the host
//! side checks health every 200 ms on a fresh connection, each answered
//! within a deadline.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const TOKEN: &str = "tok-slow";
const TRICKLERS: usize = 100;
/// Longer than the agent's 5 s handshake deadline, so tricklers are dropped
/// and come back while the checks run.
const CHECKING: Duration = Duration::from_secs(12);
/// Each health check must be answered within this.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Opens connections to `addr` that send a request one byte every 100 ms
/// and never finish it, reconnecting when dropped; counts connections.
fn trickle(addr: String, stop: Arc<AtomicBool>, connected: Arc<AtomicUsize>) {
    let request =
        format!(r#"{{"id":1,"method":"hello","params":{{"protocol":1,"token":"{TOKEN}"}}}}"#);
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(&addr) else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        connected.fetch_add(1, Ordering::Relaxed);
        // Never the last byte (the newline), so it never authenticates.
        for byte in request.as_bytes().iter().cycle() {
            if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One health check on a fresh connection: hello, then health; the time it took.
fn check_health(addr: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    for (id, method, params) in [
        (1, "hello", format!(r#"{{"protocol":1,"token":"{TOKEN}"}}"#)),
        (2, "health", "{}".to_owned()),
    ] {
        writeln!(
            stream,
            r#"{{"id":{id},"method":"{method}","params":{params}}}"#
        )
        .map_err(|e| format!("{method}: send: {e}"))?;
        line.clear();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("{method}: no answer: {e}"))?;
        if !line.starts_with(&format!(r#"{{"id":{id},"ok":"#)) {
            return Err(format!("{method}: {}", line.trim()));
        }
    }
    let took = started.elapsed();
    if took > ANSWER_WITHIN {
        return Err(format!("answered after {took:?}"));
    }
    Ok(took)
}

#[test]
fn a_trickled_handshake_is_cut_off_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let common::HostAgent {
        child: mut agent,
        health,
        ..
    } = common::start_agent(dir.path(), TOKEN);
    let mut stream = TcpStream::connect(&health).unwrap();
    let started = Instant::now();
    let mut closed = None;
    // A byte every 100 ms: each read is quick, the handshake never ends.
    for byte in br#"{"id":1,"method":"hello","params":{"#.iter().cycle() {
        if stream.write_all(&[*byte]).is_err() {
            closed = Some(started.elapsed());
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    let closed = closed.expect("the agent never closed the trickling connection");
    // The 5 s deadline, plus the RST reaching a write, with a margin.
    assert!(closed < Duration::from_secs(8), "closed after {closed:?}");
}

#[test]
fn trickling_connections_do_not_starve_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    let common::HostAgent {
        child: mut agent,
        rpc,
        health,
        ..
    } = common::start_agent(dir.path(), TOKEN);
    let stop = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicUsize::new(0));
    let tricklers: Vec<_> = (0..TRICKLERS)
        .map(|i| {
            let target = if i % 2 == 0 { &rpc } else { &health }.clone();
            let (stop, connected) = (stop.clone(), connected.clone());
            thread::spawn(move || trickle(target, stop, connected))
        })
        .collect();
    common::until("every trickler to connect", Duration::from_secs(30), || {
        (connected.load(Ordering::Relaxed) >= TRICKLERS).then_some(())
    });

    let started = Instant::now();
    let mut answered = Vec::new();
    let mut failures = Vec::new();
    while started.elapsed() < CHECKING {
        match check_health(&health) {
            Ok(took) => answered.push(took),
            Err(e) => failures.push(format!("at {:?}: {e}", started.elapsed())),
        }
        thread::sleep(Duration::from_millis(200));
    }
    let reconnects = connected.load(Ordering::Relaxed) - TRICKLERS;
    stop.store(true, Ordering::Relaxed);
    for t in tricklers {
        t.join().unwrap();
    }
    let _ = agent.kill();
    let _ = agent.wait();

    eprintln!(
        "{} health checks answered (slowest {:?}), {} failed; tricklers reconnected {reconnects} times",
        answered.len(),
        answered.iter().max(),
        failures.len()
    );
    assert!(failures.is_empty(), "health checks failed: {failures:#?}");
    assert!(answered.len() >= 20, "only {} checks ran", answered.len());
    // The handshake deadline dropped the tricklers (each came back).
    assert!(reconnects >= TRICKLERS / 2, "{reconnects}");
}

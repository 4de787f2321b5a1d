//! Agent round-trip latency over loopback: `cargo bench -p lobster-core --bench agent_roundtrip`.
//!
//! A real `lobster-agent` runs in this process (threads, loopback TCP); the
//! host client is the production `Agent`. Prints percentiles per operation.
//! Numbers measure protocol and client overhead; guest network latency under
//! TCG comes on top (see the T2 tests' timings).

use std::time::{Duration, Instant};

use lobster_agent::{Agent as GuestAgent, AgentConfig};
use lobster_core::agent::{Agent, LogSource, RestartPolicy, WorkloadSpec};
use lobster_testkit::bench::percentile;

const TOKEN: &str = "bench-token-0123456789abcdef";

fn report(name: &str, samples: Vec<Duration>) {
    let pct = |p: f64| percentile(&samples, p);
    let total: Duration = samples.iter().sum();
    println!(
        "{name:<34} n={:<6} p50={:>8.1?} p90={:>8.1?} p99={:>8.1?} max={:>8.1?} ({:.0}/s)",
        samples.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
        samples.len() as f64 / total.as_secs_f64()
    );
}

async fn time_n<F, Fut>(n: usize, mut op: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        op().await;
        out.push(t.elapsed());
    }
    out
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let guest = GuestAgent::start(AgentConfig::for_host_process(dir.path(), TOKEN)).unwrap();
    let agent = Agent::new(guest.rpc_addr(), guest.health_addr(), TOKEN);
    agent.hello().await.unwrap();

    println!("lobster-agent round trips over loopback (in-process agent, production client)");
    report(
        "connect + hello (new connection)",
        time_n(300, || async {
            Agent::new(guest.rpc_addr(), guest.health_addr(), TOKEN)
                .hello()
                .await
                .unwrap();
        })
        .await,
    );
    report(
        "health (health port, new conn)",
        time_n(300, || async {
            agent.health().await.unwrap();
        })
        .await,
    );
    report(
        "workload.status (reused conn)",
        time_n(5000, || async {
            agent.status().await.unwrap();
        })
        .await,
    );
    report(
        "stats (reused conn, reads /proc)",
        time_n(2000, || async {
            agent.stats().await.unwrap();
        })
        .await,
    );
    report(
        "hold.acquire (reused conn)",
        time_n(5000, || async {
            agent
                .hold_acquire("bench", Duration::from_secs(60))
                .await
                .unwrap();
        })
        .await,
    );

    let spec = WorkloadSpec {
        command: vec!["/bin/sh".into(), "-c".into(), "i=0; while [ $i -lt 5000 ]; do echo line $i of a chatty workload; i=$((i+1)); done; exec sleep 600".into()],
        env: Default::default(),
        cwd: None,
        openclaw: None,
        restart: RestartPolicy::Never,
        port: None,
    };
    agent.configure(spec, true).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent
        .logs(LogSource::Workload, 1)
        .await
        .unwrap()
        .lines
        .first()
        .map(|l| l.as_str())
        != Some("line 4999 of a chatty workload")
    {
        assert!(Instant::now() < deadline, "workload output did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report(
        "logs.tail 1000 lines",
        time_n(200, || async {
            assert_eq!(
                agent
                    .logs(LogSource::Workload, 1000)
                    .await
                    .unwrap()
                    .lines
                    .len(),
                1000
            );
        })
        .await,
    );
    let t = Instant::now();
    let mut follow = agent.follow_logs(LogSource::Workload, 5000).await.unwrap();
    let mut n = 0;
    while n < 5000 {
        follow
            .next_line(Duration::from_secs(5))
            .await
            .unwrap()
            .expect("line");
        n += 1;
    }
    let el = t.elapsed();
    println!(
        "{:<34} {n} lines in {el:.1?} ({:.0} lines/s)",
        "logs.follow backlog replay",
        n as f64 / el.as_secs_f64()
    );
    agent.stop(Duration::from_secs(1)).await.unwrap();
}

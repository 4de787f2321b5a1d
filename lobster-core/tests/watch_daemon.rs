//! The watchdog as a process, with real OS processes: `detach` returns once
//! the daemon reports ready (not when its log says so), reports a daemon
//! that dies first or stays silent, and the watchdog lock admits one holder
//! across processes. This binary re-executes itself as the daemon
//! (`LOBSTER_DAEMON_WORKER` names its role).

use std::os::linux::net::SocketAddrExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use lobster_core::health::{claim_watchdog, detach, notify_ready};
use lobster_core::store::Store;
use lobster_core::ErrorKind;

const WORKER_ENV: &str = "LOBSTER_DAEMON_WORKER";
const DIR_ENV: &str = "LOBSTER_DAEMON_DIR";
/// A worker never outlives this, even if its test died before killing it.
const WORKER_LIFETIME: Duration = Duration::from_secs(60);

fn main() {
    if let Ok(role) = std::env::var(WORKER_ENV) {
        let dir = std::env::var(DIR_ENV).expect("worker needs a directory");
        worker(&role, Path::new(&dir));
        return;
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test(
            "detach_returns_when_ready_and_the_lock_has_one_holder",
            ready_and_locked,
        ),
        Trial::test("detach_reports_a_daemon_that_exits_first", exits_first),
        Trial::test("detach_times_out_on_a_silent_daemon", silent),
        Trial::test(
            "a_ready_sent_by_another_process_for_the_daemon_is_refused",
            spoofed,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn worker(role: &str, dir: &Path) {
    match role {
        "ready" => {
            let _role = claim_watchdog(&Store::new(dir)).expect("the lock is free");
            println!("holding the watchdog lock");
            assert!(notify_ready().expect("notify"), "NOTIFY_SOCKET is set");
            std::thread::sleep(WORKER_LIFETIME);
        }
        "fail" => {
            eprintln!("cannot start: the configuration is broken");
            std::process::exit(3);
        }
        "silent" => {
            std::fs::write(dir.join("silent.pid"), std::process::id().to_string()).unwrap();
            std::thread::sleep(WORKER_LIFETIME);
        }
        "spoofed" => {
            // Silent itself; another process claims readiness in its name,
            // as any local user who reads /proc/net/unix and /proc could.
            std::fs::write(dir.join("silent.pid"), std::process::id().to_string()).unwrap();
            let status = command("spoofer", dir)
                .env("LOBSTER_DAEMON_PID", std::process::id().to_string())
                .status()
                .unwrap();
            assert!(status.success());
            std::fs::write(dir.join("spoofed"), "sent").unwrap();
            std::thread::sleep(WORKER_LIFETIME);
        }
        "spoofer" => {
            let target = std::env::var("NOTIFY_SOCKET").unwrap();
            let daemon = std::env::var("LOBSTER_DAEMON_PID").unwrap();
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(
                target.strip_prefix('@').unwrap(),
            )
            .unwrap();
            std::os::unix::net::UnixDatagram::unbound()
                .unwrap()
                .send_to_addr(format!("READY=1\nMAINPID={daemon}\n").as_bytes(), &addr)
                .unwrap();
        }
        other => panic!("unknown worker role {other}"),
    }
}

fn command(role: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(WORKER_ENV, role).env(DIR_ENV, dir);
    cmd
}

fn terminate(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
}

fn ready_and_locked() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("logs/watch.log");
    let store = Store::new(dir.path());
    let daemon = detach(command("ready", dir.path()), &log, Duration::from_secs(30))?;
    // Ready is sent after the lock is taken and the line is written.
    let text = std::fs::read_to_string(&log)?;
    assert!(text.contains("holding the watchdog lock"), "{text:?}");
    // The log and the directory made for it are private.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log), 0o600);
    assert_eq!(mode(log.parent().unwrap()), 0o700);
    let refused = claim_watchdog(&store).expect_err("a second holder is refused");
    assert_eq!(refused.kind(), ErrorKind::AlreadyExists);
    assert!(
        refused.to_string().contains("a watchdog already runs"),
        "{refused}"
    );
    assert!(store.lock_watchdog()?.is_none());

    // The kernel releases the lock when the holder dies.
    terminate(daemon.pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    let _lock = loop {
        if let Some(lock) = store.lock_watchdog()? {
            break lock;
        }
        assert!(Instant::now() < deadline, "the lock outlived its holder");
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(())
}

fn exits_first() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("watch.log");
    std::fs::write(&log, "a line of an earlier run\n")?;
    let started = Instant::now();
    let err = detach(command("fail", dir.path()), &log, Duration::from_secs(30))
        .expect_err("a daemon that exits is not started");
    // Noticed at its exit, not at the timeout.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let message = err.chain();
    assert!(message.contains("exited before it was ready"), "{message}");
    assert!(message.contains("the configuration is broken"), "{message}");
    assert!(!message.contains("earlier run"), "{message}");
    Ok(())
}

fn silent() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("watch.log");
    let started = Instant::now();
    let err = detach(
        command("silent", dir.path()),
        &log,
        Duration::from_millis(500),
    )
    .expect_err("silence is not readiness");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(err.kind(), ErrorKind::Timeout, "{}", err.chain());
    assert!(err.chain().contains("left running"), "{}", err.chain());
    terminate(std::fs::read_to_string(dir.path().join("silent.pid"))?.parse()?);
    Ok(())
}

fn spoofed() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("watch.log");
    let err = detach(command("spoofed", dir.path()), &log, Duration::from_secs(3))
        .expect_err("a readiness claimed by another process is not readiness");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{}", err.chain());
    // The forged message was really sent before the wait gave up.
    assert!(dir.path().join("spoofed").exists(), "the spoofer never ran");
    terminate(std::fs::read_to_string(dir.path().join("silent.pid"))?.parse()?);
    Ok(())
}

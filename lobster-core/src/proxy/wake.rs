//! A wake listener: the unix socket a suspended tenant's route points at
//! (see [`crate::tenant::plan::route`]). The first connection starts the
//! wake (once, however many connections arrive meanwhile: they all wait);
//! once it succeeds every waiting connection is spliced to the guest's
//! gateway, so each client gets the workload's own reply. A wake that fails
//! or outlasts its bound closes the waiting connections (Caddy answers 502)
//! and the next connection tries again.
//!
//! Bounded and fail closed: at most `max_connections` connections are held
//! (the rest are closed at once); only the peers listed (root and Caddy's
//! user) are served, checked by the kernel's peer credentials on top of the
//! socket's mode; the wake runs as its own task, so a timeout or a stopped
//! listener never cancels a resume midway.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::caddy::BoxFuture;
use super::ProxyError;

/// How long a woken listener keeps splicing new connections (dialed before
/// the route went back to the guest) before it closes.
pub const AFTER_WAKE_GRACE: Duration = Duration::from_secs(2);

/// The bounds of a wake listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeLimits {
    /// Connections held at once (waiting or being spliced); more are closed.
    pub max_connections: usize,
    /// How long connections wait for the wake before they are closed.
    pub wake_timeout: Duration,
    /// How long a splice retries dialing the woken guest's gateway.
    pub connect_timeout: Duration,
}

/// What a wake listener reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeReport {
    /// A connection arrived: the wake starts.
    Started,
    /// The wake succeeded; waiting connections go to the guest.
    Woken {
        /// From the first connection to the end of the wake.
        elapsed: Duration,
        /// Connections that waited.
        waiting: usize,
    },
    /// The wake failed or timed out; waiting connections were closed.
    Failed {
        /// Why.
        error: String,
        /// From the first connection to the failure.
        elapsed: Duration,
    },
}

/// Wakes the tenant; the address of its gateway once it is awake.
pub type WakeFn = Arc<dyn Fn() -> BoxFuture<'static, Result<SocketAddr, String>> + Send + Sync>;
/// Receives a listener's [`WakeReport`]s.
pub type ReportFn = Arc<dyn Fn(WakeReport) + Send + Sync>;

/// Binds the wake socket `path` with [`bind_group_socket`]: only root and
/// members of `gid` (Caddy's group) can connect.
pub fn bind_wake_socket(
    path: &Path,
    gid: u32,
) -> Result<std::os::unix::net::UnixListener, ProxyError> {
    bind_group_socket(path, gid, "paths.wake_dir")
}

/// Binds a unix socket at `path` that only root and members of `gid`
/// can reach: its directory is created if missing and made `root:<gid>`
/// mode 0710 (a directory that exists must be a real directory owned by
/// this process's user), a stale socket is replaced, and the socket is
/// `root:<gid>` mode 0660. Errors name `field`, where the path came from.
pub fn bind_group_socket(
    path: &Path,
    gid: u32,
    field: &'static str,
) -> Result<std::os::unix::net::UnixListener, ProxyError> {
    let io = |what: &str, at: &Path| {
        let context = format!("{field}: cannot {what} {}", at.display());
        move |source| ProxyError::Io { context, source }
    };
    let dir = path.parent().ok_or_else(|| ProxyError::Invalid {
        field,
        reason: format!("{} has no directory", path.display()),
    })?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o710)
        .create(dir)
        .map_err(io("create", dir))?;
    let meta = std::fs::symlink_metadata(dir).map_err(io("inspect", dir))?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me {
        return Err(ProxyError::Invalid {
            field,
            reason: format!(
                "{} must be a directory owned by uid {me} (it is uid {}, {})",
                dir.display(),
                meta.uid(),
                if meta.is_dir() {
                    "a directory"
                } else {
                    "not a directory"
                }
            ),
        });
    }
    std::os::unix::fs::chown(dir, None, Some(gid)).map_err(io("chown", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710))
        .map_err(io("chmod", dir))?;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove", path)(e)),
        _ => {}
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io("bind", path))?;
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(io("chown", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io("chmod", path))?;
    Ok(listener)
}

/// A running wake listener; dropping it stops it and removes its socket
/// (connections already spliced to the guest go on).
#[derive(Debug)]
pub struct WakeListener {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl WakeListener {
    /// Serves `listener` (bound at `path`) until a wake succeeds and its
    /// grace ends: connections from a uid in `peers` wait for `wake`, the
    /// rest are closed. Must be called within a Tokio runtime.
    pub fn start(
        listener: std::os::unix::net::UnixListener,
        path: PathBuf,
        peers: Vec<u32>,
        limits: WakeLimits,
        wake: WakeFn,
        report: ReportFn,
    ) -> Result<WakeListener, ProxyError> {
        let io = |source| ProxyError::Io {
            context: format!("wake socket: cannot listen on {}", path.display()),
            source,
        };
        listener.set_nonblocking(true).map_err(io)?;
        let listener = UnixListener::from_std(listener).map_err(io)?;
        let gate = Gate {
            listener,
            peers,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
        };
        let task = tokio::spawn(serve(gate, limits, wake, report));
        Ok(WakeListener { path, task })
    }

    /// Its socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it stopped serving (its wake succeeded).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for WakeListener {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The listener with its admission rules.
struct Gate {
    listener: UnixListener,
    peers: Vec<u32>,
    slots: Arc<Semaphore>,
}

/// An admitted connection, holding one of the listener's slots.
struct Client {
    stream: UnixStream,
    _slot: OwnedSemaphorePermit,
}

impl Gate {
    /// The next connection from an allowed peer while a slot is free;
    /// others are closed.
    async fn admit(&self) -> Client {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: back off, never spin.
                    tracing::warn!(error = %e, "wake socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let uid = stream.peer_cred().map(|c| c.uid()).ok();
            if !uid.is_some_and(|uid| self.peers.contains(&uid)) {
                tracing::warn!(
                    ?uid,
                    "wake socket: connection from a peer not allowed, closed"
                );
                continue;
            }
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    return Client {
                        stream,
                        _slot: slot,
                    }
                }
                Err(_) => tracing::warn!("wake socket: connection limit reached, closed"),
            }
        }
    }
}

async fn serve(gate: Gate, limits: WakeLimits, wake: WakeFn, report: ReportFn) {
    loop {
        let mut waiting = vec![gate.admit().await];
        report(WakeReport::Started);
        let started = Instant::now();
        // Its own task: a timeout or a stopped listener never cancels it.
        let attempt = tokio::time::timeout(limits.wake_timeout, tokio::spawn(wake()));
        tokio::pin!(attempt);
        let outcome = loop {
            tokio::select! {
                outcome = &mut attempt => break outcome,
                client = gate.admit() => waiting.push(client),
            }
        };
        let error = match outcome {
            Ok(Ok(Ok(gateway))) => {
                report(WakeReport::Woken {
                    elapsed: started.elapsed(),
                    waiting: waiting.len(),
                });
                for client in waiting {
                    tokio::spawn(splice(client, gateway, limits.connect_timeout));
                }
                let grace = tokio::time::sleep(AFTER_WAKE_GRACE);
                tokio::pin!(grace);
                loop {
                    tokio::select! {
                        _ = &mut grace => return,
                        client = gate.admit() => {
                            tokio::spawn(splice(client, gateway, limits.connect_timeout));
                        }
                    }
                }
            }
            Ok(Ok(Err(error))) => error,
            Ok(Err(panicked)) => format!("the wake panicked: {panicked}"),
            Err(_) => format!("not awake within {} ms", limits.wake_timeout.as_millis()),
        };
        drop(waiting);
        report(WakeReport::Failed {
            error,
            elapsed: started.elapsed(),
        });
    }
}

/// Connects `client` to `gateway` (retrying the dial for `connect_timeout`:
/// the workload may still be coming up) and copies both ways until either
/// side closes. A gateway that stays unreachable closes the client.
async fn splice(mut client: Client, gateway: SocketAddr, connect_timeout: Duration) {
    let deadline = tokio::time::Instant::now() + connect_timeout;
    let mut upstream = loop {
        match tokio::time::timeout_at(deadline, TcpStream::connect(gateway)).await {
            Ok(Ok(stream)) => break stream,
            Ok(Err(e)) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%gateway, error = %e, "wake: gateway not up yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => {
                tracing::warn!(%gateway, "wake: the gateway did not accept in time; connection closed");
                return;
            }
        }
    };
    let copied = tokio::io::copy_bidirectional(&mut client.stream, &mut upstream).await;
    tracing::debug!(%gateway, ?copied, "wake: request spliced");
}

//! `serve` (the HTTP API of `lobster-api` on a unix socket) and
//! `api-token` (its bearer tokens).

use std::sync::Arc;

use lobster_api::auth::RateLimit;
use lobster_api::Api;
use lobster_core::proxy::ProxyError;
use lobster_core::store::ApiScope;
use lobster_core::Error;
use tokio::signal::unix::{signal, SignalKind};

use super::Context;
use crate::args::{ApiTokenCommand, ServeArgs};

/// How long requests in flight get to finish once `serve` is told to stop.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves until SIGINT or SIGTERM, then finishes the requests and
/// operations in flight and removes the socket.
pub async fn serve(ctx: &Context, args: &ServeArgs) -> Result<(), Error> {
    let host = Arc::new(ctx.host()?);
    let config = host.config().api.clone();
    let path = args.socket.clone().unwrap_or(config.socket.clone());
    let gid = args.gid.unwrap_or(config.socket_gid);
    let io = |what: String| {
        move |source| {
            Error::from(ProxyError::Io {
                context: what,
                source,
            })
        }
    };
    let socket = lobster_core::proxy::bind_group_socket(&path, gid, "api.socket")?;
    socket.set_nonblocking(true).map_err(io(format!(
        "api.socket: cannot listen on {}",
        path.display()
    )))?;
    let unix = tokio::net::UnixListener::from_std(socket).map_err(io(format!(
        "api.socket: cannot listen on {}",
        path.display()
    )))?;
    let tls = match (config.listen, &config.tls_cert, &config.tls_key) {
        (Some(addr), Some(cert), Some(key)) => {
            let tls = lobster_api::tls::server_config(cert, key)?;
            let tcp = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(io(format!("api.listen: cannot listen on {addr}")))?;
            Some(
                lobster_api::tls::TlsListener::new(tcp, tls)
                    .map_err(io(format!("api.listen: cannot listen on {addr}")))?,
            )
        }
        _ => None,
    };
    let api = Api::new(host).with_rate_limit(RateLimit {
        per_second: f64::from(config.rate_per_s),
        burst: f64::from(config.rate_burst),
    });
    let (operations, streams) = (api.operations.clone(), api.shutdown.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    eprintln!("lobsterd: serving the HTTP API on {}", path.display());
    let mut servers = tokio::task::JoinSet::new();
    if let Some(tls) = tls {
        eprintln!(
            "lobsterd: serving the HTTP API on https://{}",
            axum::serve::Listener::local_addr(&tls).map_err(io("api.listen".into()))?
        );
        servers.spawn(lobster_api::serve(tls, api.clone(), until_stopped()));
    }
    servers.spawn(lobster_api::serve(unix, api, until_stopped()));
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return Err(io("signals".into())(std::io::Error::other(
            "cannot watch signals",
        )));
    };
    let served = tokio::select! {
        _ = int.recv() => Ok(()),
        _ = term.recv() => Ok(()),
        Some(done) = servers.join_next() => done.unwrap_or(Ok(())),
    };
    // Stop accepting, end the event streams, let requests in flight finish
    // (bounded), then wait for running operations: one cut short would
    // leave its tenant for recovery.
    let _ = stop.send(true);
    streams.cancel();
    let drained = async { while servers.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        eprintln!(
            "lobsterd: requests still open after {}s: closing them",
            DRAIN.as_secs()
        );
    }
    eprintln!("lobsterd: stopping: waiting for running operations");
    operations.drained().await;
    let _ = std::fs::remove_file(&path);
    served.map_err(io(format!("api: serving on {}", path.display())))
}

/// `api-token create|list|revoke`.
pub async fn token(ctx: &Context, command: ApiTokenCommand) -> Result<(), Error> {
    let host = ctx.host()?;
    match command {
        ApiTokenCommand::Create { name, scope } => {
            let scope: ApiScope = scope.parse().map_err(lobster_core::Error::from)?;
            let (token, secret) = host.create_api_token(&name, scope).await?;
            if !ctx.json {
                eprintln!(
                    "API token {} (scope {}): its secret, on stdout, is shown only now",
                    token.id,
                    scope.as_str()
                );
            }
            let shown = serde_json::json!({ "token": token, "secret": secret });
            ctx.print(&shown, || secret.clone());
        }
        ApiTokenCommand::List => {
            let tokens = host.api_tokens().await?;
            ctx.print(&tokens, || {
                tokens
                    .iter()
                    .map(|t| format!("{}  {:<8} {}", t.id, t.scope.as_str(), t.name))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ApiTokenCommand::Revoke { id } => {
            let token = host.revoke_api_token(&id).await?;
            ctx.print(&serde_json::json!({ "revoked": token }), || {
                format!("revoked {}", token.id)
            });
        }
    }
    Ok(())
}

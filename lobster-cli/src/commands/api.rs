//! `serve` (the HTTP API of `lobster-api` on a unix socket) and
//! `api-token` (its bearer tokens).

use std::sync::Arc;

use lobster_api::Api;
use lobster_core::store::ApiScope;
use lobster_core::Error;
use tokio::signal::unix::{signal, SignalKind};

use super::Context;
use crate::args::{ApiTokenCommand, ServeArgs};

/// Serves until SIGINT or SIGTERM, then finishes the requests and
/// operations in flight and removes the socket.
pub async fn serve(ctx: &Context, args: &ServeArgs) -> Result<(), Error> {
    let host = Arc::new(ctx.host()?);
    let socket = lobster_core::proxy::bind_group_socket(&args.socket, args.gid, "serve --socket")?;
    let io = |source| {
        Error::from(lobster_core::proxy::ProxyError::Io {
            context: format!("serve --socket: cannot listen on {}", args.socket.display()),
            source,
        })
    };
    socket.set_nonblocking(true).map_err(io)?;
    let listener = tokio::net::UnixListener::from_std(socket).map_err(io)?;
    let api = Api::new(host);
    let operations = api.operations.clone();
    eprintln!(
        "lobsterd: serving the HTTP API on {}",
        args.socket.display()
    );
    let stop = async {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    };
    let served = lobster_api::serve(listener, api, stop).await;
    eprintln!("lobsterd: stopping: waiting for running operations");
    operations.drained().await;
    let _ = std::fs::remove_file(&args.socket);
    served.map_err(io)
}

/// `api-token create|list|revoke`.
pub async fn token(ctx: &Context, command: ApiTokenCommand) -> Result<(), Error> {
    let host = ctx.host()?;
    match command {
        ApiTokenCommand::Create { name, scope } => {
            let scope: ApiScope = scope.parse().map_err(lobster_core::Error::from)?;
            let (token, secret) = host.create_api_token(&name, scope).await?;
            ctx.print(
                &serde_json::json!({ "token": token, "secret": secret }),
                || {
                    format!(
                        "{secret}\n(id {}, scope {}; shown once)",
                        token.id,
                        scope.as_str()
                    )
                },
            );
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

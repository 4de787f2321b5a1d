//! `token --rotate`: new agent and gateway tokens for a running tenant.
//!
//! The order keeps a token the guest accepts in the registry at every
//! instant, so no failure (or kill) halfway locks the operator out:
//!
//! 1. The new agent token is recorded beside the current one
//!    (`agent_token_next`; the registry's writes are atomic).
//! 2. The guest's agent is sent it over a connection authenticated with the
//!    current one; it stores it on the tenant disk (so a reboot keeps it),
//!    then refuses the old one.
//! 3. The registry makes it current and forgets the old one.
//! 4. The new gateway token is recorded, then the workload is configured
//!    with it (and restarted). If that fails, the record and the workload go
//!    back to the old gateway token.
//!
//! A rotation that failed or died between 1 and 3 leaves both agent tokens
//! recorded; the next rotation first asks the agent which one it accepts
//! (`hello`) and records that one as current, then rotates afresh.
//! Meanwhile every agent client the host makes from the record (health
//! checks, repairs, `Host::agent`) falls back to the recorded next token
//! when the current one is refused.

use crate::agent::Agent;
use crate::base::{Classify, ErrorKind};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::store::{new_token, TenantRecord, TenantStatus};

use super::{plan, Tenant, TenantError};

/// Runs a rotation; see the module docs.
pub(crate) async fn rotate(context: &Context, name: &str) -> Result<Tenant> {
    context.record(name).await?;
    let _lock = super::lock(context, name, super::OPERATION_LOCK_WAIT).await?;
    let record = context.record(name).await?;
    if record.status != TenantStatus::Running {
        return Err(TenantError::InvalidState {
            name: name.to_owned(),
            status: record.status,
            operation: "token rotation",
            needs: "running",
        }
        .into());
    }
    let failed = |step: &'static str, source: Error| -> Error {
        TenantError::RotationFailed {
            name: name.to_owned(),
            step,
            source: Box::new(source),
        }
        .into()
    };

    let current = settle(context, &record)
        .await
        .map_err(|e| failed("settle", e))?;
    let next = new_token()?;
    context
        .modify(name, {
            let next = next.clone();
            move |r| r.agent_token_next = Some(next)
        })
        .await?;
    if let Err(err) = agent(context, &record, &current).rotate_token(&next).await {
        // The reply may be what was lost: record whichever token it holds.
        let record = context.record(name).await?;
        let _ = settle(context, &record).await;
        return Err(failed("agent token", err.into()));
    }
    context
        .modify(name, {
            let next = next.clone();
            move |r| {
                r.agent_token = next;
                r.agent_token_next = None;
            }
        })
        .await?;
    tracing::info!(tenant = name, "agent token rotated");

    let old_gateway = record.gateway_token.clone();
    let gateway = new_token()?;
    let updated = context
        .modify(name, move |r| r.gateway_token = gateway)
        .await?;
    let agent = agent(context, &updated, &next);
    let config = context.config();
    if let Err(err) = agent
        .configure(plan::workload(config, &updated), true)
        .await
    {
        let restored = context
            .modify(name, move |r| r.gateway_token = old_gateway)
            .await?;
        let undo = agent
            .configure(plan::workload(config, &restored), true)
            .await;
        if let Err(undo) = undo {
            tracing::warn!(tenant = name, error = %undo, "cannot put the old gateway token back");
        }
        return Err(failed("gateway token", err.into()));
    }
    tracing::info!(tenant = name, "gateway token rotated");
    Ok(Tenant::new(updated, &config.domain))
}

/// The agent token the guest accepts, recorded as current: when an earlier
/// rotation left two recorded, whichever one `hello` accepts. Unreachable
/// with both, both stay recorded and the current one is returned.
async fn settle(context: &Context, record: &TenantRecord) -> Result<String> {
    let Some(next) = record.agent_token_next.clone() else {
        return Ok(record.agent_token.clone());
    };
    if accepts(context, record, &next).await? {
        let token = next.clone();
        context
            .modify(&record.name, move |r| {
                r.agent_token = token;
                r.agent_token_next = None;
            })
            .await?;
        return Ok(next);
    }
    if accepts(context, record, &record.agent_token).await? {
        context
            .modify(&record.name, |r| r.agent_token_next = None)
            .await?;
    }
    Ok(record.agent_token.clone())
}

/// Whether the agent accepts `token` (`false` when it refuses it).
async fn accepts(context: &Context, record: &TenantRecord, token: &str) -> Result<bool> {
    match agent(context, record, token).hello().await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn agent(context: &Context, record: &TenantRecord, token: &str) -> Agent {
    let (rpc, health) = plan::agent_endpoints(context.config(), record);
    Agent::new(rpc, health, token)
}

//! What commands that need the guest go through: [`wake`] resumes a
//! suspended tenant; [`awake`] also holds it awake (an agent hold, renewed
//! in the background, released when the [`GuestHold`] goes) for as long as
//! the command runs, so idle auto-suspend cannot take the guest away
//! mid-command.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::agent::Agent;
use crate::base::{Classify, ErrorKind};
use crate::context::Context;
use crate::error::Result;
use crate::store::{TenantRecord, TenantStatus};

use super::plan;

/// How long a hold lasts and how often it is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldTiming {
    /// How long a hold lasts unless renewed: a command that dies without
    /// releasing its hold keeps the guest awake this long at most.
    pub ttl: Duration,
    /// How often the hold is renewed (well below `ttl`).
    pub renew_every: Duration,
}

impl Default for HoldTiming {
    fn default() -> Self {
        HoldTiming {
            ttl: Duration::from_secs(60),
            renew_every: Duration::from_secs(20),
        }
    }
}

/// Bound on releasing a hold.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Resumes tenant `name` if it is suspended (from its snapshot, through
/// `tenant::resume`) and returns its record. A tenant that is not
/// suspended is returned as it is; one resumed by someone else meanwhile
/// (the watchdog, another command) counts as woken.
pub async fn wake(context: &Context, name: &str) -> Result<TenantRecord> {
    let record = context.record(name).await?;
    if record.status != TenantStatus::Suspended {
        return Ok(record);
    }
    match super::resume(context, name, None).await {
        Ok(tenant) => Ok(tenant.record().clone()),
        Err(e) => match context.record(name).await {
            Ok(now) if now.status == TenantStatus::Running => Ok(now),
            _ => Err(e),
        },
    }
}

/// Wakes tenant `name` ([`wake`]) and holds it awake until the returned
/// [`GuestHold`] is released or dropped. `purpose` names the hold in the
/// guest's hold list (e.g. `logs`).
pub async fn awake(context: &Context, name: &str, purpose: &str) -> Result<GuestHold> {
    let record = wake(context, name).await?;
    GuestHold::acquire(agent_of(context, &record), purpose, HoldTiming::default()).await
}

/// [`awake`] for a command that needs the guest (`exec`, `cp`): tenant
/// `name` must be running or suspended, else `InvalidState` names its state
/// and `operation`; a suspended one is resumed; the hold is named after
/// `operation`.
pub(crate) async fn awake_for(
    context: &Context,
    name: &str,
    operation: &'static str,
) -> Result<GuestHold> {
    awake_if(
        context,
        name,
        operation,
        &[TenantStatus::Running, TenantStatus::Suspended],
        "running or suspended",
    )
    .await
}

/// [`awake`] for tenant `name` only in one of the states `allowed` (said
/// in words by `needs`): in any other, `InvalidState` at once, naming it,
/// rather than waiting on a guest that is not there.
pub(crate) async fn awake_if(
    context: &Context,
    name: &str,
    operation: &'static str,
    allowed: &[TenantStatus],
    needs: &'static str,
) -> Result<GuestHold> {
    let record = context.record(name).await?;
    if !allowed.contains(&record.status) {
        return Err(super::TenantError::InvalidState {
            name: name.to_owned(),
            status: record.status,
            operation,
            needs,
        }
        .into());
    }
    // Boxed: resuming makes a large future, and callers nest this one.
    Box::pin(awake(context, name, operation)).await
}

/// A client of the tenant's agent (its /30 address, its token, the next
/// token as fallback).
pub fn agent_of(context: &Context, record: &TenantRecord) -> Agent {
    let (rpc, health) = plan::agent_endpoints(context.config(), record);
    Agent::new(rpc, health, record.agent_token.clone())
        .with_fallback_token(record.agent_token_next.clone())
}

/// An agent hold on a guest: while it lives the host must not suspend the
/// guest. Renewed in the background ([`HoldTiming`]); released on
/// [`GuestHold::release`] or, best effort, on drop (else it expires).
#[derive(Debug)]
pub struct GuestHold {
    agent: Arc<Agent>,
    id: String,
    renewer: tokio::task::JoinHandle<()>,
    released: bool,
}

impl GuestHold {
    /// Takes a hold named after `purpose` through `agent` and starts
    /// renewing it.
    pub async fn acquire(agent: Agent, purpose: &str, timing: HoldTiming) -> Result<GuestHold> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "lobster-{purpose}-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        agent.hold_acquire(&id, timing.ttl).await?;
        let agent = Arc::new(agent);
        let renewer = tokio::spawn(renew(agent.clone(), id.clone(), timing));
        Ok(GuestHold {
            agent,
            id,
            renewer,
            released: false,
        })
    }

    /// The agent the hold was taken through.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The hold's id in the guest.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops renewing and releases the hold (bounded; an error leaves it to
    /// expire).
    pub async fn release(mut self) {
        self.released = true;
        self.renewer.abort();
        release(&self.agent, &self.id).await;
    }
}

impl Drop for GuestHold {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (agent, id) = (self.agent.clone(), std::mem::take(&mut self.id));
            runtime.spawn(async move { release(&agent, &id).await });
        }
    }
}

impl crate::agent::SessionGuard for GuestHold {
    fn release(self: Box<Self>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(GuestHold::release(*self))
    }
}

/// Renews the hold `id` for ever (the owner aborts this task); a hold that
/// expired meanwhile (the guest was unreachable) is taken again.
async fn renew(agent: Arc<Agent>, id: String, timing: HoldTiming) {
    loop {
        tokio::time::sleep(timing.renew_every).await;
        let renewed = match agent.hold_renew(&id, timing.ttl).await {
            Err(e) if e.kind() == ErrorKind::NotFound => agent.hold_acquire(&id, timing.ttl).await,
            other => other,
        };
        if let Err(e) = renewed {
            tracing::warn!(hold = %id, error = %e, "cannot renew a hold on the guest");
        }
    }
}

async fn release(agent: &Agent, id: &str) {
    match tokio::time::timeout(RELEASE_TIMEOUT, agent.hold_release(id)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(hold = %id, error = %e, "cannot release a hold; it expires")
        }
        Err(_) => tracing::warn!(hold = %id, "releasing a hold timed out; it expires"),
    }
}

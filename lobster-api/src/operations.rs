//! Long operations (spawn, evict, suspend, resume): started in the
//! background, answered at once with an [`Operation`] the client polls.
//! Its `progress` holds the steps the CLI prints; its `result` or `error`
//! lands when it ends. One operation at a time per tenant: a second is
//! refused (409) instead of racing the first.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use lobster_core::tenant::progress::{ProgressEvent, ProgressSink};
use serde::Serialize;
use tokio::sync::watch;

use crate::error::{ApiError, ErrorBody};

/// How many finished operations are kept for polling.
pub const KEEP_FINISHED: usize = 1000;

/// Most operations running at once (over every tenant); more are 429.
pub const MAX_RUNNING: usize = 16;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Create and start a tenant.
    Spawn,
    /// Remove a tenant.
    Evict,
    /// Snapshot a tenant to disk and stop its VM.
    Suspend,
    /// Start a suspended tenant again.
    Resume,
    /// Archive a tenant's disk (download it from the operation's `archive`).
    Snap,
    /// Check a tenant and repair what failed.
    Molt,
}

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    /// Still running.
    Running,
    /// Ended well; `result` holds what it returned.
    Succeeded,
    /// Ended with `error`.
    Failed,
}

/// One long operation, as polled.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Operation {
    /// Its id (`op-<n>`).
    pub id: String,
    /// What it does.
    pub kind: OperationKind,
    /// The tenant it acts on (`*`: every tenant, `POST /v1/molt`).
    pub tenant: String,
    /// Where it is.
    pub state: OperationState,
    /// The steps so far, as the CLI prints them.
    pub progress: Vec<ProgressEvent>,
    /// What it returned: the tenant (spawn, suspend, resume), the
    /// archive's report (snap), the checks and repairs (molt; of every
    /// tenant: `{reports: [...]}`); absent for evict.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    operations: BTreeMap<u64, Operation>,
    busy: BTreeSet<String>,
}

/// The operations of one API server.
#[derive(Clone)]
pub struct Operations {
    table: Arc<Mutex<Table>>,
    running: Arc<watch::Sender<usize>>,
    observe: Option<ProgressSink>,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations")
            .field("table", &self.table)
            .finish()
    }
}

impl Default for Operations {
    fn default() -> Self {
        Operations {
            table: Arc::default(),
            running: Arc::new(watch::channel(0).0),
            observe: None,
        }
    }
}

impl Operations {
    /// Operations whose every progress event is also given to `observe`
    /// (the metrics).
    pub fn observed(observe: ProgressSink) -> Operations {
        Operations {
            observe: Some(observe),
            ..Operations::default()
        }
    }

    /// Starts `run` as a `kind` operation on `tenant`, giving it a
    /// progress sink; 409 while another runs on that tenant.
    pub fn start<F, Fut>(
        &self,
        kind: OperationKind,
        tenant: &str,
        run: F,
    ) -> Result<Operation, ApiError>
    where
        F: FnOnce(ProgressSink) -> Fut,
        Fut: Future<Output = lobster_core::Result<Option<serde_json::Value>>> + Send + 'static,
    {
        let (key, snapshot) = {
            let mut table = self.table.lock().expect("operations lock");
            if table.busy.contains(tenant) {
                return Err(ApiError::conflict(format!(
                    "another operation on tenant `{tenant}` is running"
                )));
            }
            if table.busy.len() >= MAX_RUNNING {
                return Err(ApiError::too_many(format!(
                    "{MAX_RUNNING} operations are running; try again when one ends"
                )));
            }
            table.next += 1;
            let key = table.next;
            let operation = Operation {
                id: format!("op-{key}"),
                kind,
                tenant: tenant.to_owned(),
                state: OperationState::Running,
                progress: Vec::new(),
                result: None,
                error: None,
            };
            table.busy.insert(tenant.to_owned());
            table.operations.insert(key, operation.clone());
            (key, operation)
        };
        self.running.send_modify(|n| *n += 1);
        let table = self.table.clone();
        let observe = self.observe.clone();
        let sink: ProgressSink = Arc::new(move |event: &ProgressEvent| {
            if let Some(observe) = &observe {
                observe(event);
            }
            if let Some(op) = table
                .lock()
                .expect("operations lock")
                .operations
                .get_mut(&key)
            {
                op.progress.push(event.clone());
            }
        });
        let future = run(sink);
        let table = self.table.clone();
        let running = self.running.clone();
        tokio::spawn(async move {
            // A task of its own: a panic in it is this operation's failure,
            // never a tenant left busy or a shutdown that waits for ever.
            let outcome = match tokio::spawn(future).await {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(e)) => Err(ErrorBody::from(&e)),
                Err(e) => Err(ErrorBody {
                    code: lobster_core::ErrorKind::Internal.as_str().to_owned(),
                    message: format!("the operation's task failed: {e}"),
                }),
            };
            let mut t = table.lock().expect("operations lock");
            if let Some(op) = t.operations.get_mut(&key) {
                match outcome {
                    Ok(result) => {
                        op.state = OperationState::Succeeded;
                        op.result = result;
                    }
                    Err(error) => {
                        op.state = OperationState::Failed;
                        op.error = Some(error);
                    }
                }
                let tenant = op.tenant.clone();
                t.busy.remove(&tenant);
            }
            forget_old(&mut t);
            drop(t);
            running.send_modify(|n| *n -= 1);
        });
        Ok(snapshot)
    }

    /// Operation `id`, if it is known.
    pub fn get(&self, id: &str) -> Option<Operation> {
        let key = id.strip_prefix("op-")?.parse::<u64>().ok()?;
        let table = self.table.lock().expect("operations lock");
        table.operations.get(&key).cloned()
    }

    /// Every known operation, oldest first.
    pub fn list(&self) -> Vec<Operation> {
        let table = self.table.lock().expect("operations lock");
        table.operations.values().cloned().collect()
    }

    /// Waits until no operation runs (for a graceful shutdown: an
    /// operation cut short would leave its tenant for recovery).
    pub async fn drained(&self) {
        let mut rx = self.running.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// Drops the oldest finished operations beyond [`KEEP_FINISHED`].
fn forget_old(table: &mut Table) {
    let finished: Vec<u64> = table
        .operations
        .iter()
        .filter(|(_, op)| op.state != OperationState::Running)
        .map(|(key, _)| *key)
        .collect();
    for key in finished
        .iter()
        .take(finished.len().saturating_sub(KEEP_FINISHED))
    {
        table.operations.remove(key);
    }
}

//! Progress of long operations (spawn, resume, image builds), reported as
//! events so the CLI can print steps, the daemon can log them and
//! benchmarks can break latency down by phase.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One step of an operation started or finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProgressEvent {
    /// The operation (`spawn`, `evict`, ...).
    pub operation: &'static str,
    /// The tenant.
    pub tenant: String,
    /// The step (`allocate`, `overlay`, `network`, ...).
    pub step: &'static str,
    /// Where the step is.
    pub phase: Phase,
}

/// Where a step is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// The step began.
    Started,
    /// The step succeeded after `elapsed`.
    Done {
        /// How long it took.
        #[serde(with = "micros")]
        #[cfg_attr(feature = "openapi", schema(value_type = u64))]
        elapsed: Duration,
    },
    /// The step failed after `elapsed`.
    Failed {
        /// How long it ran.
        #[serde(with = "micros")]
        #[cfg_attr(feature = "openapi", schema(value_type = u64))]
        elapsed: Duration,
    },
}

/// Receives progress events; must be cheap and must not block.
pub type ProgressSink = Arc<dyn Fn(&ProgressEvent) + Send + Sync>;

/// Emits the events of one operation on one tenant.
#[derive(Clone)]
pub struct Progress {
    operation: &'static str,
    tenant: String,
    sink: Option<ProgressSink>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("operation", &self.operation)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl Progress {
    /// Progress of `operation` on `tenant`, delivered to `sink` if any.
    pub fn new(operation: &'static str, tenant: &str, sink: Option<ProgressSink>) -> Progress {
        Progress {
            operation,
            tenant: tenant.to_owned(),
            sink,
        }
    }

    /// Runs one step, reporting its start and its end with the time taken.
    pub async fn step<T, E>(
        &self,
        step: &'static str,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.emit(step, Phase::Started);
        let start = Instant::now();
        let out = work.await;
        let elapsed = start.elapsed();
        let phase = if out.is_ok() {
            Phase::Done { elapsed }
        } else {
            Phase::Failed { elapsed }
        };
        tracing::debug!(operation = self.operation, tenant = %self.tenant, step, ?elapsed, ok = out.is_ok(), "step");
        self.emit(step, phase);
        out
    }

    fn emit(&self, step: &'static str, phase: Phase) {
        if let Some(sink) = &self.sink {
            sink(&ProgressEvent {
                operation: self.operation,
                tenant: self.tenant.clone(),
                step,
                phase,
            });
        }
    }
}

mod micros {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn reports_start_and_outcome_of_each_step() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let sink: ProgressSink = Arc::new(move |e: &ProgressEvent| {
            sink_seen
                .lock()
                .unwrap()
                .push((e.step, matches!(e.phase, Phase::Failed { .. })));
        });
        let progress = Progress::new("spawn", "a", Some(sink));
        progress
            .step("overlay", async { Ok::<_, ()>(1) })
            .await
            .unwrap();
        progress
            .step("network", async { Err::<(), _>(()) })
            .await
            .unwrap_err();
        assert_eq!(
            *seen.lock().unwrap(),
            [
                ("overlay", false),
                ("overlay", false),
                ("network", false),
                ("network", true)
            ]
        );
    }
}

//! Compensating actions for multi-step changes.
//!
//! Each completed step of a spawn (or resume, or repair) pushes its undo.
//! On failure the undos run in reverse order; every one runs even if an
//! earlier one failed, and the caller gets the original error together with
//! every cleanup failure. On success the stack is dropped unrun.

use std::future::Future;
use std::pin::Pin;

use crate::error::Error;

type UndoFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;
type UndoFn = Box<dyn FnOnce() -> UndoFuture + Send>;

/// A stack of undo actions.
#[derive(Default)]
pub struct UndoStack {
    steps: Vec<(&'static str, UndoFn)>,
}

impl std::fmt::Debug for UndoStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.steps.iter().map(|(name, _)| name))
            .finish()
    }
}

/// What a rollback did.
#[derive(Debug)]
pub struct RollbackReport {
    /// Undo actions that succeeded.
    pub undone: usize,
    /// Undo actions that ran.
    pub total: usize,
    /// The ones that failed, by step name.
    pub failures: Vec<(&'static str, Error)>,
}

impl RollbackReport {
    /// `rolled back k/n steps`, plus each cleanup failure.
    pub fn summary(&self) -> String {
        let mut out = format!("rolled back {}/{} steps", self.undone, self.total);
        for (step, err) in &self.failures {
            out.push_str(&format!("; undo of {step} failed: {}", err.chain()));
        }
        out
    }
}

impl UndoStack {
    /// An empty stack.
    pub fn new() -> UndoStack {
        UndoStack::default()
    }

    /// Records how to undo the step `name` that just succeeded.
    pub fn push<F, Fut>(&mut self, name: &'static str, undo: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        self.steps.push((name, Box::new(move || Box::pin(undo()))));
    }

    /// How many steps are recorded.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether no step is recorded.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs every undo, newest first, and reports.
    pub async fn rollback(mut self) -> RollbackReport {
        let total = self.steps.len();
        let mut failures = Vec::new();
        while let Some((name, undo)) = self.steps.pop() {
            if let Err(err) = undo().await {
                tracing::warn!(step = name, error = %err.chain(), "undo failed");
                failures.push((name, err));
            }
        }
        RollbackReport {
            undone: total - failures.len(),
            total,
            failures,
        }
    }

    /// Forgets the undos: the change is complete.
    pub fn commit(self) {}
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::error::Error;

    #[tokio::test]
    async fn undoes_in_reverse_and_keeps_going_past_failures() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stack = UndoStack::new();
        for name in ["overlay", "network", "firewall", "vm"] {
            let log = log.clone();
            stack.push(name, move || async move {
                log.lock().unwrap().push(name);
                if name == "network" {
                    return Err(Error::Unsupported {
                        operation: "undo",
                        detail: "injected",
                    });
                }
                Ok(())
            });
        }
        let report = stack.rollback().await;
        assert_eq!(
            *log.lock().unwrap(),
            ["vm", "firewall", "network", "overlay"]
        );
        assert_eq!((report.undone, report.total), (3, 4));
        let summary = report.summary();
        assert!(
            summary.starts_with("rolled back 3/4 steps; undo of network failed"),
            "{summary}"
        );
    }

    #[tokio::test]
    async fn commit_runs_nothing() {
        let ran = Arc::new(Mutex::new(false));
        let mut stack = UndoStack::new();
        let flag = ran.clone();
        stack.push("x", move || async move {
            *flag.lock().unwrap() = true;
            Ok(())
        });
        stack.commit();
        assert!(!*ran.lock().unwrap());
    }
}

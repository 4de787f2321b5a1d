//! `molt`: check tenants once and repair what failed, reporting each check
//! and action. An operator's molt is also how a `failed` tenant comes back:
//! once its checks pass it is `running` again.

use std::time::Duration;

use serde::Serialize;

use crate::error::Result;
use crate::store::{StoreError, TenantRecord, TenantStatus};

use super::check::CheckResult;
use super::doctor::{Doctor, RepairOutcome};
use super::repair::{plan, RepairPlan};
use super::HealthError;

/// How long molt waits for another operation on the same tenant.
const MOLT_LOCK_WAIT: Duration = Duration::from_secs(60);

/// What molt found and did for one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct MoltReport {
    /// The tenant.
    pub tenant: String,
    /// Its registry status afterwards.
    pub status: TenantStatus,
    /// The checks before any repair.
    pub checks: Vec<CheckResult>,
    /// The repairs carried out, in order.
    pub repairs: Vec<RepairOutcome>,
    /// The checks after the repairs (empty when none ran).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<CheckResult>,
    /// Whether every check passes now.
    pub healthy: bool,
    /// Why the tenant was not checked, or why repairs cannot help.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// [`crate::Host::molt`] through a given doctor (e.g. one over fakes):
/// checks one tenant (`name`) or every tenant that should run, and repairs
/// what failed.
pub async fn molt_with(doctor: &Doctor, name: Option<&str>) -> Result<Vec<MoltReport>> {
    molt(doctor, name).await
}

/// Molts one tenant (`name`) or every tenant that should run.
pub(crate) async fn molt(doctor: &Doctor, name: Option<&str>) -> Result<Vec<MoltReport>> {
    let context = doctor.context();
    let registry = context.registry().await?;
    let records: Vec<TenantRecord> = match name {
        Some(name) => {
            let record = registry
                .tenants
                .get(name)
                .cloned()
                .ok_or_else(|| StoreError::NotFound(name.into()))?;
            if !should_run(record.status) {
                return Err(HealthError::InvalidState {
                    name: name.into(),
                    status: record.status,
                    operation: "molt",
                    needs: "running or failed",
                }
                .into());
            }
            vec![record]
        }
        None => registry
            .tenants
            .into_values()
            .filter(|r| should_run(r.status))
            .collect(),
    };
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let view = doctor.survey().await;
    let mut reports = Vec::new();
    for record in records {
        let Some(lock) = context.lock_tenant(&record.name, MOLT_LOCK_WAIT).await? else {
            return Err(HealthError::Busy {
                name: record.name,
                waited: MOLT_LOCK_WAIT,
            }
            .into());
        };
        // Re-read under the lock: another process may have changed it.
        let fresh = context.record(&record.name).await?;
        reports.push(molt_one(doctor, &view, fresh).await?);
        drop(lock);
    }
    Ok(reports)
}

/// Tenants the health checks look after.
pub(crate) fn should_run(status: TenantStatus) -> bool {
    matches!(status, TenantStatus::Running | TenantStatus::Failed)
}

async fn molt_one(
    doctor: &Doctor,
    view: &super::doctor::HostView,
    record: TenantRecord,
) -> Result<MoltReport> {
    let (observation, checks) = doctor.examine(view, &record).await;
    let mut report = MoltReport {
        tenant: record.name.clone(),
        status: record.status,
        healthy: checks.iter().all(CheckResult::passed),
        checks,
        repairs: Vec::new(),
        after: Vec::new(),
        note: None,
    };
    if !report.healthy {
        match plan(&observation, &report.checks) {
            RepairPlan::Unrepairable(why) => report.note = Some(why),
            RepairPlan::Repairs(repairs) => {
                report.repairs = doctor.treat(&record, &repairs).await;
                let record = doctor.context().record(&record.name).await?;
                // The repairs changed the host: read it again.
                let view = doctor.survey().await;
                let (_, after) = doctor.examine(&view, &record).await;
                report.healthy = after.iter().all(CheckResult::passed);
                report.after = after;
            }
        }
    }
    let healthy = report.healthy;
    let failing = failing_summary(if report.after.is_empty() {
        &report.checks
    } else {
        &report.after
    });
    let updated = doctor
        .context()
        .modify(&record.name, move |r| {
            if healthy {
                r.status = TenantStatus::Running;
                r.last_error = None;
            } else {
                r.last_error = Some(format!("molt: still failing: {failing}"));
            }
        })
        .await?;
    report.status = updated.status;
    Ok(report)
}

/// `check: detail; ...` of the failed checks.
pub(crate) fn failing_summary(results: &[CheckResult]) -> String {
    results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| match &r.detail {
            Some(d) => format!("{}: {d}", r.check),
            None => r.check.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

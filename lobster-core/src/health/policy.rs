//! The per-tenant state machine: what a check run means for a tenant and
//! whether to repair now, wait out a backoff, or give up. Pure: time comes
//! in as milliseconds, so every transition is tested without waiting.
//!
//! | from | all checks ok | a check failed |
//! |---|---|---|
//! | unknown, healthy | healthy | degraded, repair |
//! | degraded | recovering | degraded: repair once the backoff has passed; `failed` after the last attempt |
//! | recovering | healthy once it stayed ok for the cooldown (repair count forgotten), else recovering | degraded (the count is kept) |
//! | failed | healthy (an operator fixed it) | failed, never repaired |
//!
//! Checks run on every tick in every state (there is no blind spot); only
//! repairs wait. A run that failed only because the host could not be read
//! (proxy down, ruleset unreadable) is [`TenantHealth::host_failure`]:
//! degraded, no repair, no attempt spent.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::WatchdogConfig;

/// What the watchdog believes about a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Not checked yet.
    Unknown,
    /// Every check passed.
    Healthy,
    /// A check failed; repairs are under way.
    Degraded,
    /// Repaired and passing, on probation for the cooldown.
    Recovering,
    /// Repairs gave up (or cannot help); left alone until an operator acts.
    Failed,
    /// Suspended on purpose; not checked.
    Suspended,
}

impl HealthState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Recovering => "recovering",
            HealthState::Failed => "failed",
            HealthState::Suspended => "suspended",
        }
    }
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Repair limits (from [`WatchdogConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Repairs before giving up.
    pub max_attempts: u32,
    /// Wait before the second repair; doubled for each further one.
    pub backoff_base: Duration,
    /// The longest wait between repairs.
    pub backoff_max: Duration,
    /// How long a repaired tenant must pass before its count is forgotten.
    pub cooldown: Duration,
}

impl Policy {
    /// The policy a configuration asks for.
    pub fn from_config(config: &WatchdogConfig) -> Policy {
        Policy {
            max_attempts: config.max_repair_attempts,
            backoff_base: Duration::from_millis(config.backoff_base_ms),
            backoff_max: Duration::from_millis(config.backoff_max_ms),
            cooldown: Duration::from_millis(config.cooldown_ms),
        }
    }

    /// The wait after `attempts` repairs before the next one: none before
    /// the first, then base, 2×base, 4×base ... up to max.
    pub fn backoff(&self, attempts: u32) -> Duration {
        if attempts == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(attempts - 1).unwrap_or(u32::MAX);
        self.backoff_base
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }
}

/// One tenant's health as the state machine keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantHealth {
    /// The state.
    pub state: HealthState,
    /// Repairs since the tenant was last stably healthy.
    pub attempts: u32,
    /// When the last repair ran (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_repair_ms: Option<u64>,
    /// Since when every check has passed (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok_since_ms: Option<u64>,
}

impl Default for TenantHealth {
    fn default() -> Self {
        TenantHealth {
            state: HealthState::Unknown,
            attempts: 0,
            last_repair_ms: None,
            ok_since_ms: None,
        }
    }
}

/// What to do after a check run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing (healthy, or waiting out a backoff, or failed).
    Wait,
    /// Repair now.
    Repair,
    /// The last attempt is spent: mark the tenant failed.
    GiveUp,
}

impl TenantHealth {
    /// Feeds one check run (`ok`: every check passed) at `now_ms`; returns
    /// the decision. The state changes in place.
    pub fn observe(&mut self, policy: &Policy, ok: bool, now_ms: u64) -> Decision {
        use HealthState::*;
        if ok {
            let since = *self.ok_since_ms.get_or_insert(now_ms);
            let stable = now_ms.saturating_sub(since) >= policy.cooldown.as_millis() as u64;
            self.state = match self.state {
                Unknown | Failed | Suspended => {
                    self.attempts = 0;
                    Healthy
                }
                Healthy => {
                    if stable {
                        self.attempts = 0;
                    }
                    Healthy
                }
                Degraded => Recovering,
                Recovering if stable => {
                    self.attempts = 0;
                    Healthy
                }
                Recovering => Recovering,
            };
            return Decision::Wait;
        }
        self.ok_since_ms = None;
        if self.state == Failed {
            return Decision::Wait;
        }
        self.state = Degraded;
        if self.attempts >= policy.max_attempts {
            self.state = Failed;
            return Decision::GiveUp;
        }
        let due = match self.last_repair_ms {
            None => true,
            Some(last) => {
                now_ms.saturating_sub(last) >= policy.backoff(self.attempts).as_millis() as u64
            }
        };
        if due {
            Decision::Repair
        } else {
            Decision::Wait
        }
    }

    /// Feeds a check run that failed only because the host could not be
    /// read (the proxy down, the ruleset unreadable): degraded, but no
    /// repair is due and no attempt is spent (the host needs fixing, not
    /// the tenant; giving up would leave it failed after the outage).
    pub fn host_failure(&mut self) -> Decision {
        self.ok_since_ms = None;
        if self.state != HealthState::Failed {
            self.state = HealthState::Degraded;
        }
        Decision::Wait
    }

    /// Records a repair run at `now_ms`.
    pub fn repaired(&mut self, now_ms: u64) {
        self.attempts += 1;
        self.last_repair_ms = Some(now_ms);
    }

    /// Marks the tenant failed (give-up, or a failure no repair can fix).
    pub fn fail(&mut self) {
        self.state = HealthState::Failed;
        self.ok_since_ms = None;
    }

    /// Marks the tenant suspended (not checked).
    pub fn suspend(&mut self) {
        self.state = HealthState::Suspended;
        self.ok_since_ms = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_attempts: 3,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(60),
            cooldown: Duration::from_secs(60),
        }
    }

    const S: u64 = 1000;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let p = policy();
        let waits: Vec<u64> = (0..7).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(waits, [0, 5, 10, 20, 40, 60, 60]);
        assert_eq!(p.backoff(200), Duration::from_secs(60));
    }

    #[test]
    fn first_check_decides_healthy_or_repair() {
        let p = policy();
        let mut h = TenantHealth::default();
        assert_eq!(h.observe(&p, true, 0), Decision::Wait);
        assert_eq!(h.state, HealthState::Healthy);
        let mut h = TenantHealth::default();
        assert_eq!(h.observe(&p, false, 0), Decision::Repair);
        assert_eq!(h.state, HealthState::Degraded);
    }

    #[test]
    fn a_repaired_tenant_recovers_then_is_healthy_after_the_cooldown() {
        let p = policy();
        let mut h = TenantHealth::default();
        h.observe(&p, true, 0);
        assert_eq!(h.observe(&p, false, 10 * S), Decision::Repair);
        h.repaired(10 * S);
        assert_eq!(h.observe(&p, true, 20 * S), Decision::Wait);
        assert_eq!(h.state, HealthState::Recovering);
        assert_eq!(h.attempts, 1);
        h.observe(&p, true, 70 * S);
        assert_eq!(h.state, HealthState::Recovering, "cooldown not over yet");
        h.observe(&p, true, 80 * S);
        assert_eq!(h.state, HealthState::Healthy);
        assert_eq!(h.attempts, 0, "forgotten after a stable cooldown");
    }

    #[test]
    fn repairs_wait_out_the_backoff_and_checks_keep_running() {
        let p = policy();
        let mut h = TenantHealth::default();
        assert_eq!(h.observe(&p, false, 0), Decision::Repair);
        h.repaired(0);
        // Second repair only 5 s after the first; the checks in between decide Wait.
        assert_eq!(h.observe(&p, false, 2 * S), Decision::Wait);
        assert_eq!(h.state, HealthState::Degraded);
        assert_eq!(h.observe(&p, false, 5 * S), Decision::Repair);
        h.repaired(5 * S);
        assert_eq!(h.observe(&p, false, 14 * S), Decision::Wait);
        assert_eq!(h.observe(&p, false, 15 * S), Decision::Repair);
        h.repaired(15 * S);
        // Three attempts spent: give up at the next failing check.
        assert_eq!(h.observe(&p, false, 16 * S), Decision::GiveUp);
        assert_eq!(h.state, HealthState::Failed);
        // Failed stays failed and is never repaired again automatically.
        for t in [100, 1000, 10_000] {
            assert_eq!(h.observe(&p, false, t * S), Decision::Wait);
            assert_eq!(h.state, HealthState::Failed);
        }
        // Until it passes (an operator fixed it): healthy, count cleared.
        assert_eq!(h.observe(&p, true, 20_000 * S), Decision::Wait);
        assert_eq!(h.state, HealthState::Healthy);
        assert_eq!(h.attempts, 0);
    }

    #[test]
    fn a_flapping_tenant_keeps_its_count_and_reaches_failed() {
        // The original reset the count on RECOVERING -> DEGRADED, so a tenant
        // that broke again every minute was repaired forever.
        let p = policy();
        let mut h = TenantHealth::default();
        let mut now = 0;
        let mut repairs = 0;
        for _ in 0..20 {
            match h.observe(&p, false, now) {
                Decision::Repair => {
                    h.repaired(now);
                    repairs += 1;
                }
                Decision::GiveUp => break,
                Decision::Wait => {}
            }
            now += 30 * S;
            h.observe(&p, true, now); // repaired, passes briefly ...
            now += 30 * S; // ... and breaks again before the cooldown.
        }
        assert_eq!(h.state, HealthState::Failed);
        assert_eq!(repairs, 3);
    }

    #[test]
    fn a_host_outage_spends_no_attempt_and_never_gives_up() {
        let p = policy();
        let mut h = TenantHealth::default();
        h.observe(&p, true, 0);
        for t in 1..100 {
            assert_eq!(h.host_failure(), Decision::Wait);
            assert_eq!(h.state, HealthState::Degraded);
            assert_eq!(h.attempts, 0, "at {t}");
        }
        // Once the host is back, a tenant still broken is repaired at once.
        assert_eq!(h.observe(&p, false, 100 * S), Decision::Repair);
        // A failed tenant stays failed.
        h.fail();
        h.host_failure();
        assert_eq!(h.state, HealthState::Failed);
    }

    #[test]
    fn suspended_tenants_come_back_healthy() {
        let p = policy();
        let mut h = TenantHealth::default();
        h.suspend();
        assert_eq!(h.state, HealthState::Suspended);
        h.observe(&p, true, 0);
        assert_eq!(h.state, HealthState::Healthy);
    }
}

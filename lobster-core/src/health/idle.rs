//! Idle auto-suspend and scheduled wake: when the watchdog suspends a
//! running tenant and when it resumes a suspended one. Pure: time comes in
//! as milliseconds and what the agent reported as an [`Activity`], so every
//! rule is tested without waiting.
//!
//! - A tenant is **idle** at a tick when its agent answered and reports no
//!   established connection to the workload port, no hold, and no
//!   scheduled job due within the wake-ahead window. An agent that did not
//!   answer is *unknown*: never idle (the run of idle ticks starts over).
//! - It is **suspended** once it has been idle at every tick for its idle
//!   time (the tenant's own `idle_suspend_after_s`, else the host's; 0 or
//!   unset: never), and only while it is running and healthy (never while
//!   it is created, repaired or evicted: those break the run too).
//! - A suspended tenant is **resumed** once its recorded `wake_at_ms` (its
//!   next job less the wake-ahead, written at suspend) has come; for the
//!   grace that follows it is not suspended again, so its job can start.

use std::time::Duration;

use crate::config::Config;

/// What the agent reports about a tenant's use (from its `stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// Established TCP connections to the workload (gateway) port.
    pub workload_connections: u32,
    /// Unexpired holds.
    pub holds: u32,
    /// When the workload's next scheduled job is due (ms since the epoch).
    pub next_job_at_ms: Option<u64>,
}

/// The host's idle settings (from `watchdog` and `suspend` of [`Config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    /// The host's idle time; `None`: tenants without their own never suspend.
    pub suspend_after: Option<Duration>,
    /// How far ahead of a scheduled job a tenant is woken (and kept awake).
    pub wake_ahead: Duration,
    /// How long after a scheduled wake a tenant is not suspended again.
    pub wake_grace: Duration,
    /// How long after a failed scheduled wake the next is tried.
    pub retry_after: Duration,
}

impl IdlePolicy {
    /// The policy a configuration asks for.
    pub fn from_config(config: &Config) -> IdlePolicy {
        let watchdog = &config.watchdog;
        IdlePolicy {
            suspend_after: seconds(watchdog.idle_suspend_after_s),
            wake_ahead: Duration::from_secs(config.suspend.wake_ahead_s),
            wake_grace: Duration::from_secs(watchdog.scheduled_wake_grace_s.into()),
            retry_after: Duration::from_millis(watchdog.backoff_max_ms.max(watchdog.interval_ms)),
        }
    }

    /// The idle time of a tenant whose own setting is `tenant` (seconds, 0:
    /// never; `None`: the host's); `None` means it is never suspended.
    pub fn suspend_after(&self, tenant: Option<u32>) -> Option<Duration> {
        match tenant {
            Some(secs) => seconds(secs),
            None => self.suspend_after,
        }
    }

    /// Whether `activity` leaves the tenant idle at `now_ms`.
    pub fn is_idle(&self, activity: &Activity, now_ms: u64) -> bool {
        let job_near = activity
            .next_job_at_ms
            .is_some_and(|at| at <= now_ms.saturating_add(ms(self.wake_ahead)));
        activity.workload_connections == 0 && activity.holds == 0 && !job_near
    }

    /// When a tenant suspended at a time its next job was `next_job_at_ms`
    /// should be woken (`None`: no job, it sleeps until a request).
    pub fn wake_at(&self, next_job_at_ms: Option<u64>) -> Option<u64> {
        next_job_at_ms.map(|at| at.saturating_sub(ms(self.wake_ahead)))
    }
}

fn seconds(secs: u32) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs.into()))
}

fn ms(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// What the watchdog saw of a running tenant at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// Running, every check passed, the agent reported this.
    Healthy(Activity),
    /// Running and healthy, but the agent's stats did not come.
    Unknown,
    /// Not in a state to be suspended (a check failed, under repair,
    /// being created or evicted, failed).
    Busy,
}

/// What to do with a running tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleDecision {
    /// Leave it running.
    Stay,
    /// Suspend it: it has been idle for `idle` (at least its idle time).
    Suspend {
        /// How long it has been idle.
        idle: Duration,
    },
}

/// The idle bookkeeping of one tenant (kept by the watchdog, across ticks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdleTracker {
    /// Since when every tick found it idle.
    idle_since_ms: Option<u64>,
    /// Not suspended before this (the grace after a scheduled wake).
    awake_until_ms: Option<u64>,
    /// A scheduled wake failed then; the next waits for the retry delay.
    wake_failed_ms: Option<u64>,
}

impl IdleTracker {
    /// Since when the tenant has been idle, if it is.
    pub fn idle_since_ms(&self) -> Option<u64> {
        self.idle_since_ms
    }

    /// Feeds one tick's sighting of a running tenant whose idle time is
    /// `suspend_after` (`None`: never suspended).
    pub fn observe(
        &mut self,
        policy: &IdlePolicy,
        suspend_after: Option<Duration>,
        sighting: Sighting,
        now_ms: u64,
    ) -> IdleDecision {
        self.wake_failed_ms = None;
        let idle = match sighting {
            Sighting::Healthy(activity) => policy.is_idle(&activity, now_ms),
            Sighting::Unknown | Sighting::Busy => false,
        };
        let awake = self.awake_until_ms.is_some_and(|until| now_ms < until);
        let Some(after) = suspend_after.filter(|_| idle && !awake) else {
            self.idle_since_ms = None;
            return IdleDecision::Stay;
        };
        let since = *self.idle_since_ms.get_or_insert(now_ms);
        let idle = Duration::from_millis(now_ms.saturating_sub(since));
        if idle >= after {
            IdleDecision::Suspend { idle }
        } else {
            IdleDecision::Stay
        }
    }

    /// The run of idle ticks starts over: the suspend it asked for failed
    /// (the next try is an idle time away), or the tick could not look at
    /// the tenant (another operation held it).
    pub fn start_over(&mut self) {
        self.idle_since_ms = None;
    }

    /// Whether a suspended tenant that should wake at `wake_at_ms` is due
    /// at `now_ms` (not while a failed wake waits for its retry).
    pub fn wake_due(&self, policy: &IdlePolicy, wake_at_ms: Option<u64>, now_ms: u64) -> bool {
        let retry_wait = self
            .wake_failed_ms
            .is_some_and(|failed| now_ms < failed.saturating_add(ms(policy.retry_after)));
        wake_at_ms.is_some_and(|at| at <= now_ms) && !retry_wait
    }

    /// Records a scheduled wake at `now_ms`: `Ok` starts the grace, `Err`
    /// the wait for a retry.
    pub fn woke(&mut self, policy: &IdlePolicy, ok: bool, now_ms: u64) {
        self.idle_since_ms = None;
        if ok {
            self.wake_failed_ms = None;
            self.awake_until_ms = Some(now_ms.saturating_add(ms(policy.wake_grace)));
        } else {
            self.wake_failed_ms = Some(now_ms);
        }
    }

    /// The tenant is suspended (by anyone): no idle run; a grace or failed
    /// wake is kept for its wake.
    pub fn asleep(&mut self) {
        self.idle_since_ms = None;
        self.awake_until_ms = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    fn policy() -> IdlePolicy {
        IdlePolicy {
            suspend_after: Some(Duration::from_secs(30)),
            wake_ahead: Duration::from_secs(15),
            wake_grace: Duration::from_secs(60),
            retry_after: Duration::from_secs(60),
        }
    }

    fn quiet() -> Sighting {
        Sighting::Healthy(Activity {
            workload_connections: 0,
            holds: 0,
            next_job_at_ms: None,
        })
    }

    fn with(change: impl FnOnce(&mut Activity)) -> Sighting {
        let Sighting::Healthy(mut a) = quiet() else {
            unreachable!()
        };
        change(&mut a);
        Sighting::Healthy(a)
    }

    /// The decisions of one tracker fed `ticks` of (time in s, sighting).
    fn run(ticks: &[(u64, Sighting)]) -> Vec<IdleDecision> {
        let p = policy();
        let mut t = IdleTracker::default();
        ticks
            .iter()
            .map(|&(at, s)| t.observe(&p, p.suspend_after, s, at * S))
            .collect()
    }

    fn suspend(secs: u64) -> IdleDecision {
        IdleDecision::Suspend {
            idle: Duration::from_secs(secs),
        }
    }

    use IdleDecision::Stay;

    #[test]
    fn the_idle_timer_starts_at_the_first_idle_tick_and_suspends_after_the_idle_time() {
        assert_eq!(
            run(&[
                (100, quiet()),
                (110, quiet()),
                (129, quiet()),
                (130, quiet())
            ]),
            [Stay, Stay, Stay, suspend(30)]
        );
    }

    #[test]
    fn a_connection_resets_the_idle_timer() {
        let busy = with(|a| a.workload_connections = 1);
        assert_eq!(
            run(&[
                (0, quiet()),
                (20, busy),
                (40, quiet()),
                (60, quiet()),
                (70, quiet())
            ]),
            [Stay, Stay, Stay, Stay, suspend(30)]
        );
    }

    #[test]
    fn a_hold_keeps_the_tenant_awake() {
        let held = with(|a| a.holds = 1);
        assert_eq!(run(&[(0, held), (100, held), (1000, held)]), [Stay; 3]);
        assert_eq!(
            run(&[(0, quiet()), (29, held), (30, quiet()), (60, quiet())]),
            [Stay, Stay, Stay, suspend(30)]
        );
    }

    #[test]
    fn a_job_due_within_the_wake_ahead_window_keeps_it_awake() {
        // The job at 1000 s: within 15 s of it the tenant is not idle.
        let job = |a: &mut Activity| a.next_job_at_ms = Some(1000 * S);
        assert_eq!(
            run(&[(900, with(job)), (930, with(job))]),
            [Stay, suspend(30)],
            "a job 70 s away does not keep it awake"
        );
        assert_eq!(
            run(&[(985, with(job)), (1100, with(job))]),
            [Stay, Stay],
            "15 s before the job, and after it (a job overdue is running)"
        );
    }

    #[test]
    fn an_unknown_agent_never_counts_as_idle() {
        assert_eq!(
            run(&[
                (0, quiet()),
                (20, Sighting::Unknown),
                (40, quiet()),
                (60, Sighting::Unknown),
                (1000, Sighting::Unknown)
            ]),
            [Stay; 5]
        );
    }

    #[test]
    fn a_busy_tenant_is_never_suspended_and_starts_over() {
        assert_eq!(
            run(&[
                (0, quiet()),
                (29, Sighting::Busy),
                (30, quiet()),
                (59, quiet()),
                (60, quiet())
            ]),
            [Stay, Stay, Stay, Stay, suspend(30)]
        );
    }

    #[test]
    fn the_tenant_setting_overrides_the_host() {
        let p = policy();
        assert_eq!(p.suspend_after(None), Some(Duration::from_secs(30)));
        assert_eq!(p.suspend_after(Some(0)), None, "0: never");
        assert_eq!(p.suspend_after(Some(5)), Some(Duration::from_secs(5)));
        let off = IdlePolicy {
            suspend_after: None,
            ..p
        };
        assert_eq!(off.suspend_after(None), None, "off by default");
        assert_eq!(off.suspend_after(Some(5)), Some(Duration::from_secs(5)));

        let mut t = IdleTracker::default();
        for at in [0, 10, 100, 10_000] {
            assert_eq!(t.observe(&p, None, quiet(), at * S), Stay, "never: {at}");
        }
        let mut t = IdleTracker::default();
        assert_eq!(t.observe(&p, p.suspend_after(Some(5)), quiet(), 0), Stay);
        assert_eq!(
            t.observe(&p, p.suspend_after(Some(5)), quiet(), 5 * S),
            suspend(5)
        );
    }

    #[test]
    fn the_host_default_is_off() {
        let p = IdlePolicy::from_config(&Config::default());
        assert_eq!(p.suspend_after, None);
        assert_eq!(p.wake_ahead, Duration::from_secs(15));
    }

    #[test]
    fn a_failed_suspend_waits_a_whole_idle_time_again() {
        let p = policy();
        let mut t = IdleTracker::default();
        t.observe(&p, p.suspend_after, quiet(), 0);
        assert_eq!(t.observe(&p, p.suspend_after, quiet(), 30 * S), suspend(30));
        t.start_over();
        assert_eq!(t.observe(&p, p.suspend_after, quiet(), 40 * S), Stay);
        assert_eq!(t.observe(&p, p.suspend_after, quiet(), 69 * S), Stay);
        assert_eq!(t.observe(&p, p.suspend_after, quiet(), 70 * S), suspend(30));
    }

    #[test]
    fn a_scheduled_wake_comes_at_its_time_then_keeps_the_tenant_awake_for_the_grace() {
        let p = policy();
        let wake_at = p.wake_at(Some(1000 * S));
        assert_eq!(wake_at, Some(985 * S));
        assert_eq!(p.wake_at(None), None);
        let mut t = IdleTracker::default();
        t.asleep();
        assert!(!t.wake_due(&p, wake_at, 984 * S));
        assert!(t.wake_due(&p, wake_at, 985 * S));
        assert!(!t.wake_due(&p, None, u64::MAX), "no job: no scheduled wake");
        t.woke(&p, true, 985 * S);
        // Idle at once (its job has not started yet), but within the grace.
        for at in [986, 1000, 1030, 1044] {
            assert_eq!(
                t.observe(&p, p.suspend_after, quiet(), at * S),
                Stay,
                "{at}"
            );
        }
        // The grace ends at 1045 s; the idle time counts from there.
        assert_eq!(t.observe(&p, p.suspend_after, quiet(), 1045 * S), Stay);
        assert_eq!(
            t.observe(&p, p.suspend_after, quiet(), 1075 * S),
            suspend(30)
        );
    }

    #[test]
    fn a_failed_scheduled_wake_is_retried_after_the_delay() {
        let p = policy();
        let mut t = IdleTracker::default();
        let wake_at = Some(100 * S);
        assert!(t.wake_due(&p, wake_at, 100 * S));
        t.woke(&p, false, 100 * S);
        assert!(!t.wake_due(&p, wake_at, 110 * S));
        assert!(!t.wake_due(&p, wake_at, 159 * S));
        assert!(t.wake_due(&p, wake_at, 160 * S));
    }
}

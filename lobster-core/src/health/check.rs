//! The checks: what is observed of one tenant ([`Observation`], gathered
//! by the doctor through the system seams and [`super::GuestOps`]) turned
//! into one verdict per [`Check`] by a pure function, so every failure kind
//! is tested without a host.

use serde::{Deserialize, Serialize};

use crate::agent::WorkloadState;
use crate::network::NetCheck;

/// One health check. Declared in dependency order: a check further down
/// cannot pass while one it depends on fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Check {
    /// The overlay disk file exists.
    #[serde(rename = "disk.overlay")]
    Overlay,
    /// The TAP exists, is up, addressed, owned and has the guest's neighbour entry.
    #[serde(rename = "net.tap")]
    Tap,
    /// The tenant's firewall chains, rules and hooks are in place.
    #[serde(rename = "net.firewall")]
    Firewall,
    /// The recorded VMM process is alive (pidfd; pid and start time match).
    #[serde(rename = "vm.process")]
    VmProcess,
    /// The VMM answers its API (Firecracker HTTP, QEMU QMP) and the guest runs.
    #[serde(rename = "vm.api")]
    VmApi,
    /// The in-guest agent answers health.
    #[serde(rename = "guest.agent")]
    Agent,
    /// The workload (the gateway) runs under the agent.
    #[serde(rename = "guest.workload")]
    Workload,
    /// The proxy holds the tenant's route to its gateway.
    #[serde(rename = "proxy.route")]
    Route,
}

impl Check {
    /// Every check, in dependency order.
    pub const ALL: [Check; 8] = [
        Check::Overlay,
        Check::Tap,
        Check::Firewall,
        Check::VmProcess,
        Check::VmApi,
        Check::Agent,
        Check::Workload,
        Check::Route,
    ];

    /// The stable name (as in JSON and events).
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Overlay => "disk.overlay",
            Check::Tap => "net.tap",
            Check::Firewall => "net.firewall",
            Check::VmProcess => "vm.process",
            Check::VmApi => "vm.api",
            Check::Agent => "guest.agent",
            Check::Workload => "guest.workload",
            Check::Route => "proxy.route",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// As it should be.
    Ok,
    /// Broken; `detail` says how.
    Failed,
    /// Not checked because a check it depends on failed.
    Skipped,
}

/// One check's verdict with what was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check.
    pub check: Check,
    /// Its verdict.
    pub verdict: Verdict,
    /// What was wrong (or why it was skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl CheckResult {
    fn ok(check: Check) -> CheckResult {
        CheckResult {
            check,
            verdict: Verdict::Ok,
            detail: None,
        }
    }

    fn failed(check: Check, detail: impl Into<String>) -> CheckResult {
        CheckResult {
            check,
            verdict: Verdict::Failed,
            detail: Some(detail.into()),
        }
    }

    fn skipped(check: Check, because: Check) -> CheckResult {
        CheckResult {
            check,
            verdict: Verdict::Skipped,
            detail: Some(format!("{because} failed")),
        }
    }

    /// True unless the verdict is `failed`.
    pub fn passed(&self) -> bool {
        self.verdict != Verdict::Failed
    }
}

/// The VMM as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmObservation {
    /// The registry records no VM.
    NotRecorded,
    /// The recorded process is gone (or the pid now belongs to another process).
    Gone,
    /// The process lives; its API answered with this guest state, or failed.
    Alive {
        /// `Ok(running)` from the API; `Err` with what went wrong.
        api: Result<bool, String>,
    },
}

/// The agent and workload as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestObservation {
    /// Not asked (the VM is not up).
    NotProbed,
    /// The agent did not answer health.
    AgentDown(String),
    /// The agent answered; the workload state (or why it was not known).
    Up(Result<WorkloadState, String>),
}

/// The route as observed in the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteObservation {
    /// The proxy holds the route as planned.
    Present,
    /// No route for the tenant.
    Missing,
    /// A route exists but its hosts or upstream differ.
    Wrong(String),
    /// The proxy could not be asked.
    Unknown(String),
}

/// Everything observed of one tenant in one check run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Whether the overlay disk exists.
    pub overlay_present: bool,
    /// The TAP compared with its description.
    pub tap: Result<NetCheck, String>,
    /// How many firewall changes the tenant's rules need (0: in place).
    pub firewall_changes: Result<usize, String>,
    /// The VMM.
    pub vm: VmObservation,
    /// The agent and workload.
    pub guest: GuestObservation,
    /// The proxy route.
    pub route: RouteObservation,
}

/// The verdict of every check, in [`Check::ALL`] order.
pub fn evaluate(o: &Observation) -> Vec<CheckResult> {
    let mut out = Vec::with_capacity(Check::ALL.len());
    out.push(if o.overlay_present {
        CheckResult::ok(Check::Overlay)
    } else {
        CheckResult::failed(Check::Overlay, "overlay disk missing")
    });
    out.push(match &o.tap {
        Ok(check) if check.is_ok() => CheckResult::ok(Check::Tap),
        Ok(check) => CheckResult::failed(
            Check::Tap,
            check
                .drift
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Err(e) => CheckResult::failed(Check::Tap, format!("cannot read the tap: {e}")),
    });
    out.push(match &o.firewall_changes {
        Ok(0) => CheckResult::ok(Check::Firewall),
        Ok(n) => CheckResult::failed(
            Check::Firewall,
            format!("{n} rule or chain changes missing"),
        ),
        Err(e) => CheckResult::failed(Check::Firewall, format!("cannot read the ruleset: {e}")),
    });
    match &o.vm {
        VmObservation::NotRecorded => {
            out.push(CheckResult::failed(Check::VmProcess, "no VM recorded"));
            out.push(CheckResult::skipped(Check::VmApi, Check::VmProcess));
            out.push(CheckResult::skipped(Check::Agent, Check::VmProcess));
            out.push(CheckResult::skipped(Check::Workload, Check::VmProcess));
        }
        VmObservation::Gone => {
            out.push(CheckResult::failed(
                Check::VmProcess,
                "the VM process is gone",
            ));
            out.push(CheckResult::skipped(Check::VmApi, Check::VmProcess));
            out.push(CheckResult::skipped(Check::Agent, Check::VmProcess));
            out.push(CheckResult::skipped(Check::Workload, Check::VmProcess));
        }
        VmObservation::Alive { api } => {
            out.push(CheckResult::ok(Check::VmProcess));
            let api_ok = matches!(api, Ok(true));
            out.push(match api {
                Ok(true) => CheckResult::ok(Check::VmApi),
                Ok(false) => CheckResult::failed(Check::VmApi, "the guest is paused"),
                Err(e) => CheckResult::failed(Check::VmApi, e.clone()),
            });
            if !api_ok {
                out.push(CheckResult::skipped(Check::Agent, Check::VmApi));
                out.push(CheckResult::skipped(Check::Workload, Check::VmApi));
            } else {
                match &o.guest {
                    GuestObservation::NotProbed => {
                        out.push(CheckResult::failed(Check::Agent, "not probed"));
                        out.push(CheckResult::skipped(Check::Workload, Check::Agent));
                    }
                    GuestObservation::AgentDown(e) => {
                        out.push(CheckResult::failed(Check::Agent, e.clone()));
                        out.push(CheckResult::skipped(Check::Workload, Check::Agent));
                    }
                    GuestObservation::Up(workload) => {
                        out.push(CheckResult::ok(Check::Agent));
                        out.push(match workload {
                            Ok(WorkloadState::Running) => CheckResult::ok(Check::Workload),
                            Ok(state) => CheckResult::failed(
                                Check::Workload,
                                format!("workload is {}", workload_state_name(*state)),
                            ),
                            Err(e) => CheckResult::failed(Check::Workload, e.clone()),
                        });
                    }
                }
            }
        }
    }
    out.push(match &o.route {
        RouteObservation::Present => CheckResult::ok(Check::Route),
        RouteObservation::Missing => CheckResult::failed(Check::Route, "route missing"),
        RouteObservation::Wrong(why) => CheckResult::failed(Check::Route, why.clone()),
        RouteObservation::Unknown(e) => {
            CheckResult::failed(Check::Route, format!("cannot read routes: {e}"))
        }
    });
    out
}

fn workload_state_name(state: WorkloadState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{state:?}").to_lowercase())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::network::Drift;

    /// What a healthy tenant looks like (shared with the repair tests).
    pub(crate) fn healthy() -> Observation {
        Observation {
            overlay_present: true,
            tap: Ok(NetCheck {
                tap: "lob-1".into(),
                drift: vec![],
            }),
            firewall_changes: Ok(0),
            vm: VmObservation::Alive { api: Ok(true) },
            guest: GuestObservation::Up(Ok(WorkloadState::Running)),
            route: RouteObservation::Present,
        }
    }

    fn failed(results: &[CheckResult]) -> Vec<Check> {
        results
            .iter()
            .filter(|r| r.verdict == Verdict::Failed)
            .map(|r| r.check)
            .collect()
    }

    #[test]
    fn a_healthy_tenant_passes_every_check_in_order() {
        let results = evaluate(&healthy());
        assert_eq!(
            results.iter().map(|r| r.check).collect::<Vec<_>>(),
            Check::ALL
        );
        assert!(results.iter().all(|r| r.verdict == Verdict::Ok));
    }

    #[test]
    fn each_failure_kind_fails_its_check_only() {
        type Case = (fn(&mut Observation), Vec<Check>, &'static str);
        let cases: Vec<Case> = vec![
            (
                |o| o.overlay_present = false,
                vec![Check::Overlay],
                "overlay disk missing",
            ),
            (
                |o| {
                    o.tap = Ok(NetCheck {
                        tap: "lob-1".into(),
                        drift: vec![Drift::Missing],
                    })
                },
                vec![Check::Tap],
                "tap missing",
            ),
            (
                |o| o.tap = Err("netlink down".into()),
                vec![Check::Tap],
                "netlink down",
            ),
            (
                |o| o.firewall_changes = Ok(7),
                vec![Check::Firewall],
                "7 rule",
            ),
            (
                |o| o.firewall_changes = Err("iptables-save".into()),
                vec![Check::Firewall],
                "iptables-save",
            ),
            (
                |o| o.vm = VmObservation::Gone,
                vec![Check::VmProcess],
                "gone",
            ),
            (
                |o| o.vm = VmObservation::NotRecorded,
                vec![Check::VmProcess],
                "no VM",
            ),
            (
                |o| {
                    o.vm = VmObservation::Alive {
                        api: Err("qmp timeout".into()),
                    }
                },
                vec![Check::VmApi],
                "qmp timeout",
            ),
            (
                |o| o.vm = VmObservation::Alive { api: Ok(false) },
                vec![Check::VmApi],
                "paused",
            ),
            (
                |o| o.guest = GuestObservation::AgentDown("refused".into()),
                vec![Check::Agent],
                "refused",
            ),
            (
                |o| o.guest = GuestObservation::Up(Ok(WorkloadState::Stopped)),
                vec![Check::Workload],
                "workload is stopped",
            ),
            (
                |o| o.route = RouteObservation::Missing,
                vec![Check::Route],
                "route missing",
            ),
            (
                |o| o.route = RouteObservation::Wrong("upstream 1.2.3.4:9".into()),
                vec![Check::Route],
                "upstream",
            ),
            (
                |o| o.route = RouteObservation::Unknown("caddy down".into()),
                vec![Check::Route],
                "caddy down",
            ),
        ];
        for (break_it, want, detail) in cases {
            let mut o = healthy();
            break_it(&mut o);
            let results = evaluate(&o);
            assert_eq!(failed(&results), want, "{o:?}");
            let text = results
                .iter()
                .filter_map(|r| r.detail.clone())
                .collect::<Vec<_>>()
                .join("|");
            assert!(text.contains(detail), "{detail} not in {text}");
        }
    }

    #[test]
    fn checks_behind_a_dead_vm_are_skipped_not_failed() {
        let mut o = healthy();
        o.vm = VmObservation::Gone;
        o.guest = GuestObservation::NotProbed;
        let results = evaluate(&o);
        for check in [Check::VmApi, Check::Agent, Check::Workload] {
            let r = results.iter().find(|r| r.check == check).unwrap();
            assert_eq!(r.verdict, Verdict::Skipped, "{r:?}");
        }
        assert_eq!(
            results.last().unwrap().verdict,
            Verdict::Ok,
            "route is still checked"
        );
    }

    #[test]
    fn check_names_are_stable() {
        let json = serde_json::to_string(&Check::ALL).unwrap();
        assert_eq!(
            json,
            r#"["disk.overlay","net.tap","net.firewall","vm.process","vm.api","guest.agent","guest.workload","proxy.route"]"#
        );
    }
}

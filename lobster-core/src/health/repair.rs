//! Repair planning: from failed checks to the repairs that fix them, in
//! dependency order (network, then VM, then guest, then route). Pure.

use serde::{Deserialize, Serialize};

use crate::network::Drift;

use super::check::{Check, CheckResult, Observation, Verdict, VmObservation};

/// One repair action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Repair {
    /// Create the TAP or fix its drift.
    EnsureTap,
    /// Re-apply the tenant's firewall rules (and base chains and hooks).
    ApplyFirewall,
    /// Continue a paused guest.
    ResumeVm,
    /// Kill what is left of the VM and boot a new one on the same disk.
    RestartVm,
    /// Start the workload again through the agent.
    RelaunchWorkload,
    /// Put the proxy route back.
    PutRoute,
}

impl Repair {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Repair::EnsureTap => "ensure_tap",
            Repair::ApplyFirewall => "apply_firewall",
            Repair::ResumeVm => "resume_vm",
            Repair::RestartVm => "restart_vm",
            Repair::RelaunchWorkload => "relaunch_workload",
            Repair::PutRoute => "put_route",
        }
    }
}

impl std::fmt::Display for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do about a check run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairPlan {
    /// These repairs, in order (empty: nothing failed).
    Repairs(Vec<Repair>),
    /// No repair can fix it (e.g. the tenant's disk is gone): an operator must act.
    Unrepairable(String),
}

/// Plans the repairs for `results` (from [`super::check::evaluate`] of `observation`).
pub fn plan(observation: &Observation, results: &[CheckResult]) -> RepairPlan {
    let failed = |check: Check| {
        results
            .iter()
            .any(|r| r.check == check && r.verdict == Verdict::Failed)
    };
    if failed(Check::Overlay) {
        return RepairPlan::Unrepairable(
            "the overlay disk is missing: restore it from a snapshot, or evict the tenant".into(),
        );
    }
    let mut repairs = Vec::new();
    // A TAP that was deleted is a new device when recreated: the running
    // VMM still holds the old one, so the guest needs a new VMM too.
    let tap_lost = matches!(&observation.tap, Ok(c) if c.drift.iter().any(|d| matches!(d, Drift::Missing | Drift::NotTap)));
    if failed(Check::Tap) {
        repairs.push(Repair::EnsureTap);
    }
    if failed(Check::Firewall) || tap_lost {
        repairs.push(Repair::ApplyFirewall);
    }
    let paused = matches!(observation.vm, VmObservation::Alive { api: Ok(false) });
    let restart = failed(Check::VmProcess)
        || (failed(Check::VmApi) && !paused)
        || failed(Check::Agent)
        || (tap_lost && matches!(observation.vm, VmObservation::Alive { .. }));
    if restart {
        repairs.push(Repair::RestartVm);
    } else if paused {
        repairs.push(Repair::ResumeVm);
    } else if failed(Check::Workload) {
        repairs.push(Repair::RelaunchWorkload);
    }
    if failed(Check::Route) {
        repairs.push(Repair::PutRoute);
    }
    RepairPlan::Repairs(repairs)
}

#[cfg(test)]
mod tests {
    use super::super::check::tests::healthy;
    use super::super::check::{evaluate, GuestObservation, RouteObservation};
    use super::*;
    use crate::agent::WorkloadState;
    use crate::network::NetCheck;

    fn plan_for(change: impl FnOnce(&mut Observation)) -> RepairPlan {
        let mut o = healthy();
        change(&mut o);
        let results = evaluate(&o);
        plan(&o, &results)
    }

    fn repairs(r: &[Repair]) -> RepairPlan {
        RepairPlan::Repairs(r.to_vec())
    }

    #[test]
    fn nothing_to_repair_when_healthy() {
        assert_eq!(plan_for(|_| {}), repairs(&[]));
    }

    #[test]
    fn each_failure_gets_its_repair() {
        use Repair::*;
        let tap = |drift| {
            move |o: &mut Observation| {
                o.tap = Ok(NetCheck {
                    tap: "lob-1".into(),
                    drift: vec![drift],
                })
            }
        };
        assert_eq!(plan_for(tap(Drift::Down)), repairs(&[EnsureTap]));
        assert_eq!(
            plan_for(tap(Drift::WrongNeighbour { actual: None })),
            repairs(&[EnsureTap])
        );
        assert_eq!(
            plan_for(tap(Drift::Missing)),
            repairs(&[EnsureTap, ApplyFirewall, RestartVm]),
            "a recreated tap needs a new VMM"
        );
        assert_eq!(
            plan_for(|o| o.firewall_changes = Ok(3)),
            repairs(&[ApplyFirewall])
        );
        assert_eq!(
            plan_for(|o| o.vm = VmObservation::Gone),
            repairs(&[RestartVm])
        );
        assert_eq!(
            plan_for(|o| o.vm = VmObservation::NotRecorded),
            repairs(&[RestartVm])
        );
        assert_eq!(
            plan_for(|o| o.vm = VmObservation::Alive {
                api: Err("qmp hung".into())
            }),
            repairs(&[RestartVm]),
            "a wedged VMM is replaced"
        );
        assert_eq!(
            plan_for(|o| o.vm = VmObservation::Alive { api: Ok(false) }),
            repairs(&[ResumeVm])
        );
        assert_eq!(
            plan_for(|o| o.guest = GuestObservation::AgentDown("timeout".into())),
            repairs(&[RestartVm])
        );
        assert_eq!(
            plan_for(|o| o.guest = GuestObservation::Up(Ok(WorkloadState::Exited))),
            repairs(&[RelaunchWorkload])
        );
        assert_eq!(
            plan_for(|o| o.route = RouteObservation::Missing),
            repairs(&[PutRoute])
        );
        assert_eq!(
            plan_for(|o| o.route = RouteObservation::Unknown("down".into())),
            repairs(&[PutRoute])
        );
    }

    #[test]
    fn after_a_reboot_everything_is_repaired_in_dependency_order() {
        use Repair::*;
        let p = plan_for(|o| {
            o.tap = Ok(NetCheck {
                tap: "lob-1".into(),
                drift: vec![Drift::Missing],
            });
            o.firewall_changes = Ok(20);
            o.vm = VmObservation::Gone;
            o.guest = GuestObservation::NotProbed;
            o.route = RouteObservation::Missing;
        });
        assert_eq!(p, repairs(&[EnsureTap, ApplyFirewall, RestartVm, PutRoute]));
    }

    #[test]
    fn a_lost_disk_is_not_repaired() {
        match plan_for(|o| o.overlay_present = false) {
            RepairPlan::Unrepairable(why) => assert!(why.contains("overlay disk"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}

//! T0: the watchdog over fakes (no root): every failure kind is seen,
//! repaired in dependency order and reported as events; give-up, backoff,
//! cooldown, operation locks, reconcile, the status file and shutdown.
//!
//! The host is real (registry and overlay files in a temporary directory);
//! TAPs, firewall, proxy routes and guests are the crate's fakes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lobster_core::agent::WorkloadState;
use lobster_core::config::Config;
use lobster_core::health::idle::Activity;
use lobster_core::health::{
    molt_with, Event, EventRecord, EventSink, HealthState, Repair, Trigger, WatchStatus, Watchdog,
};
use lobster_core::network::firewall::tenant_chain_prefix;
use lobster_core::network::{MacAddr, NetworkOps, TenantNet};
use lobster_core::proxy::{RouteOps, TenantRoute};
use lobster_core::store::{TenantRecord, TenantStatus};
use lobster_core::tenant::plan;
use lobster_testkit::poll::until_async;
use lobster_testkit::rig::FakeHost;

/// A host over fakes, a watchdog on it, and the events it emitted.
struct Rig {
    fake: FakeHost,
    events: Arc<Mutex<Vec<EventRecord>>>,
    watchdog: Watchdog,
    stop_at: Arc<Mutex<Option<StopAt>>>,
}

/// Which event stops the watchdog, and the stop to send.
type StopAt = (fn(&Event) -> bool, tokio::sync::oneshot::Sender<()>);

/// The host's parts (`rig.host`, `rig.guests`, ...) are the fake host's.
impl std::ops::Deref for Rig {
    type Target = FakeHost;

    fn deref(&self) -> &FakeHost {
        &self.fake
    }
}

impl Rig {
    /// A host with `names` running and healthy.
    async fn new(names: &[&str]) -> Rig {
        Rig::with(names, |_| {}).await
    }

    async fn with(names: &[&str], tweak: impl FnOnce(&mut Config)) -> Rig {
        let fake = FakeHost::new(|config| {
            config.watchdog.max_repair_attempts = 3;
            tweak(config);
        })
        .await;
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop_at = Arc::new(Mutex::new(None::<StopAt>));
        let sink: EventSink = {
            let (events, stop_at) = (events.clone(), stop_at.clone());
            Arc::new(move |e: &EventRecord| {
                events.lock().unwrap().push(e.clone());
                let mut stop_at = stop_at.lock().unwrap();
                if stop_at.as_ref().is_some_and(|(at, _)| at(&e.event)) {
                    let (_, stop) = stop_at.take().unwrap();
                    let _ = stop.send(());
                }
            })
        };
        let watchdog = fake.watchdog(sink);
        let rig = Rig {
            fake,
            events,
            watchdog,
            stop_at,
        };
        for name in names {
            rig.spawn(name).await;
        }
        rig
    }

    /// A shutdown for `watchdog.run` that completes the moment the watchdog
    /// emits an event `at` accepts (from inside the event sink: no polling).
    fn shutdown_at(&self, at: fn(&Event) -> bool) -> impl std::future::Future<Output = ()> {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        *self.stop_at.lock().unwrap() = Some((at, stop));
        async move {
            stopped.await.expect("the stop event came");
        }
    }

    fn record(&self, name: &str) -> TenantRecord {
        self.store().read().unwrap().tenants[name].clone()
    }

    fn net(&self, name: &str) -> TenantNet {
        plan::tenant_net(&self.record(name)).unwrap()
    }

    async fn tick(&self) -> Vec<Event> {
        self.watchdog.tick().await.unwrap();
        self.take_events()
    }

    fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap())
            .into_iter()
            .map(|r| r.event)
            .collect()
    }

    fn state(&self, name: &str) -> HealthState {
        self.watchdog.status().tenants[name].health.state
    }

    /// Whether the host holds everything `name` needs besides its guest.
    async fn host_side_intact(&self, name: &str) -> bool {
        let record = self.record(name);
        let net = self.net(name);
        let tap_ok = self.network.check(&net).await.unwrap().is_ok();
        let rules_ok = self.firewall.check_tenant(&net).unwrap().is_empty();
        let route = plan::route(self.config(), &record).unwrap();
        let route_ok = self
            .routes
            .list_routes()
            .await
            .unwrap()
            .iter()
            .any(|r| r.name == name && r.upstreams == [route.upstream.to_string()]);
        tap_ok && rules_ok && route_ok
    }
}

fn about<'a>(events: &'a [Event], tenant: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.tenant() == Some(tenant))
        .collect()
}

fn json(events: &[&Event]) -> String {
    serde_json::to_string_pretty(events).unwrap()
}

fn repair_starts(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::RepairStart { .. }))
        .count()
}

const NAMES: [&str; 3] = ["alpha", "bravo", "charlie"];

/// The common story of every repairable failure: a healthy host, `break_it`
/// on bravo, then a tick that sees it (`failing` names the check), repairs
/// it with `want`, a tick that finds it recovering and one that finds it
/// healthy; the other tenants are never mentioned.
async fn repaired(
    break_it: impl AsyncFnOnce(&Rig),
    failing: &str,
    want: &[Repair],
) -> (Rig, TenantRecord) {
    let rig = Rig::new(&NAMES).await;
    let events = rig.tick().await;
    for name in NAMES {
        assert!(
            matches!(
                about(&events, name)[..],
                [Event::StateChange {
                    from: HealthState::Unknown,
                    to: HealthState::Healthy,
                    ..
                }]
            ),
            "{}",
            json(&about(&events, name))
        );
    }
    assert_eq!(repair_starts(&events), 0);
    let before = rig.record("bravo");

    break_it(&rig).await;
    let events = rig.tick().await;
    let bravo = about(&events, "bravo");
    match &bravo[..] {
        [Event::StateChange {
            from: HealthState::Healthy,
            to: HealthState::Degraded,
            failing: seen,
            ..
        }, Event::RepairStart {
            attempt: 1,
            repairs,
            ..
        }, Event::RepairComplete { outcomes, .. }] => {
            assert!(seen.contains(failing), "{failing} not in {seen}");
            assert_eq!(repairs, want);
            assert_eq!(
                outcomes
                    .iter()
                    .map(|o| (o.repair, o.ok))
                    .collect::<Vec<_>>(),
                want.iter().map(|r| (*r, true)).collect::<Vec<_>>(),
                "{outcomes:?}"
            );
        }
        _ => panic!("unexpected events about bravo: {}", json(&bravo)),
    }
    for name in ["alpha", "charlie"] {
        assert!(
            about(&events, name).is_empty(),
            "{}",
            json(&about(&events, name))
        );
    }
    assert!(matches!(
        events.last(),
        Some(Event::TickComplete {
            checked: 3,
            healthy: 2,
            degraded: 1,
            failed: 0,
            ..
        })
    ));
    // Counted by repair, as watch.json (and so /metrics) reports them.
    let repairs = rig.watchdog.status().repairs;
    for repair in want {
        assert_eq!(repairs[repair.as_str()].ok, 1, "{repairs:?}");
    }
    assert_eq!(repairs.len(), want.len(), "{repairs:?}");

    let events = rig.tick().await;
    assert!(
        matches!(
            about(&events, "bravo")[..],
            [Event::StateChange {
                from: HealthState::Degraded,
                to: HealthState::Recovering,
                ..
            }]
        ),
        "{}",
        json(&about(&events, "bravo"))
    );
    assert!(rig.host_side_intact("bravo").await);
    let events = rig.tick().await;
    assert!(
        matches!(
            about(&events, "bravo")[..],
            [Event::StateChange {
                from: HealthState::Recovering,
                to: HealthState::Healthy,
                ..
            }]
        ),
        "cooldown 0: healthy at the next passing check; {}",
        json(&about(&events, "bravo"))
    );
    assert_eq!(rig.watchdog.status().tenants["bravo"].health.attempts, 0);
    for name in NAMES {
        assert!(rig.host_side_intact(name).await, "{name}");
    }
    assert_eq!(rig.record("bravo").status, TenantStatus::Running);
    (rig, before)
}

/// The registry names the guest's new VMM, which runs its workload.
fn assert_new_vm(rig: &Rig, before: &TenantRecord) {
    let record = rig.record("bravo");
    let guest = rig.guests.guest("bravo").unwrap();
    assert_ne!(record.vm, before.vm, "a new VM is recorded");
    assert_eq!(record.vm.unwrap().identity, guest.identity);
    assert_eq!(guest.launches, 2);
    assert_eq!(guest.workload, WorkloadState::Running);
}

fn assert_same_vm(rig: &Rig, before: &TenantRecord) {
    assert_eq!(rig.record("bravo").vm, before.vm);
    assert_eq!(rig.guests.guest("bravo").unwrap().launches, 1);
}

#[tokio::test]
async fn a_removed_tap_is_recreated_and_the_vm_replaced() {
    let (rig, before) = repaired(
        async |rig| rig.network.remove(&rig.net("bravo")).await.unwrap(),
        "net.tap: tap missing",
        &[Repair::EnsureTap, Repair::ApplyFirewall, Repair::RestartVm],
    )
    .await;
    assert_new_vm(&rig, &before);
}

#[tokio::test]
async fn a_tap_set_down_is_brought_up() {
    let (rig, before) = repaired(
        async |rig| rig.network.set_down(&rig.net("bravo").tap),
        "net.tap",
        &[Repair::EnsureTap],
    )
    .await;
    assert_same_vm(&rig, &before);
}

#[tokio::test]
async fn flushed_rules_are_restored() {
    let (rig, before) = repaired(
        async |rig| {
            rig.firewall.remove_tenant(&rig.net("bravo")).unwrap();
        },
        "net.firewall",
        &[Repair::ApplyFirewall],
    )
    .await;
    assert_same_vm(&rig, &before);
}

#[tokio::test]
async fn a_removed_route_is_put_back() {
    let (rig, before) = repaired(
        async |rig| {
            assert!(rig.routes.remove_route("bravo").await.unwrap());
        },
        "proxy.route: route missing",
        &[Repair::PutRoute],
    )
    .await;
    assert_same_vm(&rig, &before);
}

#[tokio::test]
async fn a_wrong_route_is_replaced() {
    repaired(
        async |rig| {
            let wrong = TenantRoute::new("bravo", "10.9.9.9:1".parse().unwrap()).unwrap();
            rig.routes.put_route(&wrong).await.unwrap();
        },
        "proxy.route: route goes to",
        &[Repair::PutRoute],
    )
    .await;
}

#[tokio::test]
async fn a_dead_vm_is_restarted_on_its_disk() {
    let (rig, before) = repaired(
        async |rig| rig.guests.kill_vm("bravo"),
        "vm.process: the VM process is gone",
        &[Repair::RestartVm],
    )
    .await;
    assert_new_vm(&rig, &before);
}

#[tokio::test]
async fn a_vm_missing_from_the_registry_is_started() {
    let (rig, _) = repaired(
        async |rig| {
            rig.store().modify("bravo", |r| r.vm = None).unwrap();
        },
        "vm.process: no VM recorded",
        &[Repair::RestartVm],
    )
    .await;
    assert_eq!(
        rig.record("bravo").vm.unwrap().identity,
        rig.guests.guest("bravo").unwrap().identity
    );
}

#[tokio::test]
async fn a_hung_vmm_is_replaced() {
    let (rig, before) = repaired(
        async |rig| rig.guests.hang_api("bravo"),
        "vm.api",
        &[Repair::RestartVm],
    )
    .await;
    assert_new_vm(&rig, &before);
}

#[tokio::test]
async fn a_paused_guest_is_resumed() {
    let (rig, before) = repaired(
        async |rig| rig.guests.pause_vm("bravo"),
        "vm.api: the guest is paused",
        &[Repair::ResumeVm],
    )
    .await;
    assert_same_vm(&rig, &before);
}

#[tokio::test]
async fn a_silent_agent_gets_a_new_vm() {
    let (rig, before) = repaired(
        async |rig| rig.guests.stop_agent("bravo"),
        "guest.agent",
        &[Repair::RestartVm],
    )
    .await;
    assert_new_vm(&rig, &before);
}

#[tokio::test]
async fn a_stopped_workload_is_relaunched() {
    let (rig, before) = repaired(
        async |rig| rig.guests.set_workload("bravo", WorkloadState::Exited),
        "guest.workload: workload is exited",
        &[Repair::RelaunchWorkload],
    )
    .await;
    assert_same_vm(&rig, &before);
    assert_eq!(
        rig.guests.guest("bravo").unwrap().workload,
        WorkloadState::Running
    );
    assert!(rig
        .guests
        .calls()
        .contains(&"relaunch_workload bravo".to_owned()));
}

#[tokio::test]
async fn after_a_reboot_reconcile_and_one_tick_bring_everything_back() {
    let rig = Rig::new(&NAMES).await;
    // What a reboot leaves: no TAPs, no rules, an empty proxy, no VMs.
    for name in NAMES {
        let net = rig.net(name);
        rig.network.remove(&net).await.unwrap();
        rig.firewall.remove_tenant(&net).unwrap();
        rig.guests.kill_vm(name);
    }
    rig.routes.reconcile(&[]).await.unwrap();

    rig.watchdog.reconcile().await;
    match &rig.take_events()[..] {
        [Event::Reconciled {
            firewall_changes,
            routes_added,
            routes_removed,
            errors,
        }] => {
            assert!(*firewall_changes > 0);
            assert_eq!(routes_added, &NAMES);
            assert!(routes_removed.is_empty() && errors.is_empty(), "{errors:?}");
        }
        other => panic!("{other:?}"),
    }
    let events = rig.tick().await;
    for name in NAMES {
        match &about(&events, name)[..] {
            [Event::StateChange {
                to: HealthState::Degraded,
                ..
            }, Event::RepairStart { repairs, .. }, Event::RepairComplete { outcomes, .. }] => {
                assert_eq!(
                    repairs,
                    &[Repair::EnsureTap, Repair::ApplyFirewall, Repair::RestartVm]
                );
                assert!(outcomes.iter().all(|o| o.ok), "{outcomes:?}");
            }
            other => panic!("{name}: {}", json(other)),
        }
    }
    rig.tick().await;
    for name in NAMES {
        assert_eq!(rig.state(name), HealthState::Recovering);
        assert!(rig.host_side_intact(name).await, "{name}");
        assert_eq!(rig.guests.guest(name).unwrap().launches, 2);
    }
}

#[tokio::test]
async fn a_repair_that_keeps_failing_gives_up_and_molt_brings_it_back() {
    let rig = Rig::new(&NAMES).await;
    rig.tick().await;
    rig.guests.kill_vm("bravo");
    rig.guests.fail_always("launch_vm");
    for attempt in 1..=3 {
        let events = rig.tick().await;
        match &about(&events, "bravo")[..] {
            [.., Event::RepairStart { attempt: a, .. }, Event::RepairComplete { outcomes, .. }] => {
                assert_eq!(*a, attempt);
                assert_eq!(outcomes.len(), 1);
                assert!(!outcomes[0].ok);
                let error = outcomes[0].error.as_deref().unwrap();
                assert!(error.contains("failed as asked"), "{error}");
            }
            other => panic!("attempt {attempt}: {}", json(other)),
        }
        assert_eq!(rig.state("bravo"), HealthState::Degraded);
        assert_eq!(rig.record("bravo").status, TenantStatus::Running);
    }
    let events = rig.tick().await;
    match &about(&events, "bravo")[..] {
        [Event::StateChange {
            from: HealthState::Degraded,
            to: HealthState::Failed,
            ..
        }, Event::GaveUp { reason, .. }] => {
            assert!(reason.contains("after 3 repairs"), "{reason}");
            assert!(reason.contains("vm.process"), "{reason}");
        }
        other => panic!("{}", json(other)),
    }
    let record = rig.record("bravo");
    assert_eq!(record.status, TenantStatus::Failed);
    assert!(record.last_error.unwrap().contains("vm.process"));

    // Left alone: checked every tick, never repaired again.
    rig.guests.clear_calls();
    for _ in 0..3 {
        let events = rig.tick().await;
        assert!(
            about(&events, "bravo").is_empty(),
            "{}",
            json(&about(&events, "bravo"))
        );
        assert!(matches!(
            events.last(),
            Some(Event::TickComplete { failed: 1, .. })
        ));
    }
    assert!(!rig.guests.calls().iter().any(|c| c == "launch_vm bravo"));
    assert_eq!(rig.record("bravo").status, TenantStatus::Failed);

    // The operator fixes the cause and molts: running again.
    rig.guests.heal();
    let reports = molt_with(&rig.doctor, Some("bravo")).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert!(reports[0].healthy, "{:?}", reports[0]);
    assert_eq!(reports[0].status, TenantStatus::Running);
    assert_eq!(
        reports[0]
            .repairs
            .iter()
            .map(|o| (o.repair, o.ok))
            .collect::<Vec<_>>(),
        [(Repair::RestartVm, true)]
    );
    let record = rig.record("bravo");
    assert_eq!(record.status, TenantStatus::Running);
    assert_eq!(record.last_error, None);
    let events = rig.tick().await;
    assert!(
        matches!(
            about(&events, "bravo")[..],
            [Event::StateChange {
                from: HealthState::Failed,
                to: HealthState::Healthy,
                ..
            }]
        ),
        "{}",
        json(&about(&events, "bravo"))
    );
}

#[tokio::test]
async fn a_lost_overlay_disk_fails_at_once_until_it_is_restored() {
    let rig = Rig::new(&NAMES).await;
    rig.tick().await;
    let overlay = plan::overlay(rig.config(), &rig.record("bravo"));
    let saved = overlay.path().with_extension("saved");
    std::fs::rename(overlay.path(), &saved).unwrap();

    let events = rig.tick().await;
    match &about(&events, "bravo")[..] {
        [Event::StateChange {
            to: HealthState::Degraded,
            failing,
            ..
        }, Event::StateChange {
            from: HealthState::Degraded,
            to: HealthState::Failed,
            ..
        }, Event::GaveUp { reason, .. }] => {
            assert!(failing.contains("disk.overlay"), "{failing}");
            assert!(reason.contains("overlay disk is missing"), "{reason}");
        }
        other => panic!("{}", json(other)),
    }
    assert_eq!(repair_starts(&events), 0);
    let record = rig.record("bravo");
    assert_eq!(record.status, TenantStatus::Failed);
    assert!(record.last_error.unwrap().contains("overlay"));
    assert!(about(&rig.tick().await, "bravo").is_empty());

    // Restored by hand: healthy at the next tick, and running in the registry.
    std::fs::rename(&saved, overlay.path()).unwrap();
    let events = rig.tick().await;
    assert!(
        matches!(
            about(&events, "bravo")[..],
            [Event::StateChange {
                from: HealthState::Failed,
                to: HealthState::Healthy,
                ..
            }]
        ),
        "{}",
        json(&about(&events, "bravo"))
    );
    let record = rig.record("bravo");
    assert_eq!(record.status, TenantStatus::Running);
    assert_eq!(record.last_error, None);
}

#[tokio::test]
async fn repairs_wait_out_the_backoff_while_checks_go_on() {
    let rig = Rig::with(&NAMES, |c| {
        c.watchdog.backoff_base_ms = 3_600_000;
        c.watchdog.backoff_max_ms = 3_600_000;
    })
    .await;
    rig.tick().await;
    rig.guests.kill_vm("bravo");
    rig.guests.fail_next("launch_vm");
    let events = rig.tick().await;
    assert_eq!(repair_starts(&events), 1);
    rig.guests.clear_calls();
    for _ in 0..3 {
        let events = rig.tick().await;
        assert_eq!(repair_starts(&events), 0, "within the backoff");
        assert_eq!(rig.state("bravo"), HealthState::Degraded);
    }
    let calls = rig.guests.calls();
    assert!(calls.contains(&"observe_vm bravo".to_owned()), "{calls:?}");
    assert!(!calls.contains(&"launch_vm bravo".to_owned()), "{calls:?}");
}

#[tokio::test]
async fn a_flapping_tenant_keeps_its_count_until_it_fails() {
    let rig = Rig::with(&NAMES, |c| {
        c.watchdog.cooldown_ms = 3_600_000;
        c.watchdog.max_repair_attempts = 2;
    })
    .await;
    rig.tick().await;
    for attempt in 1..=2u32 {
        rig.guests.set_workload("bravo", WorkloadState::Exited);
        let events = rig.tick().await;
        assert!(
            about(&events, "bravo")
                .iter()
                .any(|e| matches!(e, Event::RepairStart { attempt: a, .. } if *a == attempt)),
            "{}",
            json(&about(&events, "bravo"))
        );
        rig.tick().await;
        assert_eq!(rig.state("bravo"), HealthState::Recovering, "on probation");
    }
    rig.guests.set_workload("bravo", WorkloadState::Exited);
    let events = rig.tick().await;
    assert!(
        about(&events, "bravo")
            .iter()
            .any(|e| matches!(e, Event::GaveUp { .. })),
        "{}",
        json(&about(&events, "bravo"))
    );
    assert_eq!(rig.record("bravo").status, TenantStatus::Failed);
}

#[tokio::test]
async fn a_tenant_under_another_operation_is_skipped() {
    let rig = Rig::new(&NAMES).await;
    rig.tick().await;
    let lock = rig
        .store()
        .lock_tenant("bravo", Duration::ZERO)
        .unwrap()
        .expect("free");
    rig.guests.kill_vm("bravo");
    rig.guests.clear_calls();
    let events = rig.tick().await;
    assert!(
        about(&events, "bravo").is_empty(),
        "{}",
        json(&about(&events, "bravo"))
    );
    assert!(
        !rig.guests.calls().iter().any(|c| c.ends_with(" bravo")),
        "not even observed: {:?}",
        rig.guests.calls()
    );
    assert_eq!(rig.state("bravo"), HealthState::Healthy, "unchanged");
    drop(lock);
    let events = rig.tick().await;
    assert_eq!(repair_starts(&events), 1);
    assert_eq!(rig.state("bravo"), HealthState::Degraded);
}

#[tokio::test]
async fn tenants_being_created_or_evicted_are_never_touched() {
    let rig = Rig::new(&["alpha"]).await;
    let creating = rig.allocate("delta");
    let evicting = rig.spawn("echo").await;
    rig.store()
        .modify("echo", |r| r.status = TenantStatus::Evicting)
        .unwrap();
    rig.guests.kill_vm("echo");
    rig.network.remove(&rig.net("echo")).await.unwrap();
    let network_calls = rig.network.calls().len();
    rig.guests.clear_calls();

    let events = rig.tick().await;
    for name in ["delta", "echo"] {
        assert!(
            about(&events, name).is_empty(),
            "{}",
            json(&about(&events, name))
        );
        assert!(
            !rig.guests.calls().iter().any(|c| c.ends_with(name)),
            "{:?}",
            rig.guests.calls()
        );
        assert_eq!(rig.state(name), HealthState::Unknown);
    }
    let taps: Vec<String> = rig.network.calls()[network_calls..].to_vec();
    assert_eq!(taps, [format!("check {}", rig.net("alpha").tap)]);
    assert!(matches!(
        events.last(),
        Some(Event::TickComplete { checked: 1, .. })
    ));
    assert_eq!(rig.record("delta").status, TenantStatus::Creating);
    assert_eq!(rig.record("delta").vm, creating.vm);
    assert_eq!(rig.record("echo").vm, evicting.vm);
}

#[tokio::test]
async fn reconcile_removes_strangers_and_restores_what_is_missing() {
    let rig = Rig::new(&NAMES).await;
    // A tenant the registry does not know: rules and a route left behind.
    let ghost = TenantNet::new(
        "0badf00d",
        lobster_core::config::Ipv4Cidr::parse("10.0.200.0/30").unwrap(),
        MacAddr([2, 0, 0, 0, 0, 9]),
        40000,
        40000,
    )
    .unwrap();
    rig.firewall.apply_tenant(&ghost).unwrap();
    let stale = TenantRoute::new("ghost", "10.0.200.2:18789".parse().unwrap()).unwrap();
    rig.routes.put_route(&stale).await.unwrap();
    // And missing pieces of known tenants.
    rig.routes.remove_route("alpha").await.unwrap();
    rig.firewall.remove_tenant(&rig.net("bravo")).unwrap();

    rig.watchdog.reconcile().await;
    match &rig.take_events()[..] {
        [Event::Reconciled {
            firewall_changes,
            routes_added,
            routes_removed,
            errors,
        }] => {
            assert!(*firewall_changes > 0);
            assert_eq!(routes_added, &["alpha"]);
            assert_eq!(routes_removed, &["ghost"]);
            assert!(errors.is_empty(), "{errors:?}");
        }
        other => panic!("{other:?}"),
    }
    let prefix = tenant_chain_prefix(&ghost.id);
    let ruleset = rig.firewall.current().unwrap();
    assert!(
        !ruleset
            .tables
            .values()
            .flat_map(|chains| chains.iter())
            .any(|(chain, rules)| chain.starts_with(&prefix)
                || rules.iter().any(|r| r.contains(&prefix))),
        "{ruleset:?}"
    );
    for name in NAMES {
        assert!(rig.host_side_intact(name).await, "{name}");
    }
    // A second reconcile has nothing to do.
    rig.watchdog.reconcile().await;
    assert!(matches!(
        &rig.take_events()[..],
        [Event::Reconciled { firewall_changes: 0, routes_added, routes_removed, .. }]
            if routes_added.is_empty() && routes_removed.is_empty()
    ));
    // And the first tick finds nothing to repair.
    assert_eq!(repair_starts(&rig.tick().await), 0);
}

#[tokio::test]
async fn the_status_file_and_the_overview_show_the_watchdog_view() {
    let rig = Rig::new(&NAMES).await;
    let state_dir = rig.dir.path();
    assert_eq!(WatchStatus::read(state_dir), None);
    let overview = rig.host.overview().await.unwrap();
    assert!(overview.watchdog.is_none());
    assert!(overview.tenants.iter().all(|t| t.state.is_none()));

    rig.tick().await;
    rig.guests.kill_vm("bravo");
    rig.guests.fail_next("launch_vm");
    rig.tick().await;

    let status = WatchStatus::read(state_dir).expect("watch.json written");
    let mine = rig.watchdog.status();
    assert_eq!(status.tick, 2);
    assert_eq!(status.pid, std::process::id());
    assert_eq!(status.tenants, mine.tenants, "round trip");
    let again: WatchStatus =
        serde_json::from_str(&serde_json::to_string(&status).unwrap()).unwrap();
    assert_eq!(again, status);
    let bravo = &status.tenants["bravo"];
    assert_eq!(bravo.health.state, HealthState::Degraded);
    assert_eq!(bravo.health.attempts, 1);
    assert_eq!(bravo.last_event.as_deref(), Some("repair failed"));

    let overview = rig.host.overview().await.unwrap();
    let watchdog = overview.watchdog.expect("watchdog seen");
    assert_eq!(
        (watchdog.pid, watchdog.alive, watchdog.tick),
        (std::process::id(), true, 2)
    );
    let rows: Vec<(&str, Option<HealthState>, &str)> = overview
        .tenants
        .iter()
        .map(|t| (t.name.as_str(), t.state, t.health.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("alpha", Some(HealthState::Healthy), "ok"),
            ("bravo", Some(HealthState::Degraded), "vm.process"),
            ("charlie", Some(HealthState::Healthy), "ok"),
        ]
    );
    let alpha = &overview.tenants[0];
    assert_eq!(alpha.pid, None, "fake VMs are not processes");
    assert_eq!(alpha.ip, rig.record("alpha").allocation.guest_ip);
}

#[tokio::test]
async fn run_reconciles_ticks_and_stops_when_asked() {
    let rig = Rig::with(&NAMES, |c| c.watchdog.interval_ms = 3_600_000).await;
    rig.routes.remove_route("alpha").await.unwrap();
    // Asked to stop at the first tick's end, while it would sleep out its
    // hour-long interval.
    let shutdown = rig.shutdown_at(|e| matches!(e, Event::TickComplete { .. }));
    tokio::time::timeout(Duration::from_secs(30), rig.watchdog.run(shutdown))
        .await
        .expect("the watchdog stops when asked")
        .unwrap();
    let events = rig.take_events();
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e.tenant().is_none())
        .map(|e| match e {
            Event::Started { .. } => "started",
            Event::Reconciled { .. } => "reconciled",
            Event::TickComplete { .. } => "tick_complete",
            Event::Stopping { .. } => "stopping",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["started", "reconciled", "tick_complete", "stopping"]
    );
    assert!(
        matches!(&events[1], Event::Reconciled { routes_added, .. } if routes_added == &["alpha"])
    );
    assert!(rig.host_side_intact("alpha").await);
}

#[tokio::test]
async fn a_shutdown_during_a_repair_lets_the_repair_finish() {
    // Abandoning a VM restart between the launch and the registry update
    // would leave a VMM the registry does not know (and, at the next start,
    // a second VMM on the same disk).
    let rig = Rig::with(&NAMES, |c| {
        c.watchdog.interval_ms = 3_600_000;
        c.watchdog.max_concurrency = 1;
    })
    .await;
    rig.guests.kill_vm("bravo");
    rig.guests.kill_vm("charlie");
    // The launch yields, so the stop asked at the repair's start is seen
    // while bravo's repair is under way (however long that takes).
    rig.guests
        .set_delay("launch_vm", Duration::from_millis(300));
    let shutdown = rig.shutdown_at(|e| matches!(e, Event::RepairStart { .. }));
    tokio::time::timeout(Duration::from_secs(30), rig.watchdog.run(shutdown))
        .await
        .expect("the watchdog stops when asked")
        .unwrap();
    let events = rig.take_events();
    assert!(
        matches!(
            about(&events, "bravo")[..],
            [_, Event::RepairStart { .. }, Event::RepairComplete { .. }]
        ),
        "{}",
        json(&about(&events, "bravo"))
    );
    assert!(matches!(events.last(), Some(Event::Stopping { .. })));
    assert!(
        about(&events, "charlie").is_empty(),
        "no check starts once shutdown is asked: {}",
        json(&about(&events, "charlie"))
    );
    assert_eq!(rig.guests.guest("charlie").unwrap().launches, 1);
    assert_eq!(
        rig.record("bravo").vm.unwrap().identity,
        rig.guests.guest("bravo").unwrap().identity,
        "the registry records the VM that runs"
    );
}

#[tokio::test]
async fn a_record_changed_during_the_tick_is_read_afresh() {
    // The tick reads the registry once; bravo is evicted while alpha is
    // being checked. Bravo's visit must see the eviction, not the tick's copy.
    let rig = Rig::with(&NAMES, |c| c.watchdog.max_concurrency = 1).await;
    rig.tick().await;
    rig.guests.kill_vm("bravo");
    let observing = rig.guests.gate("observe_vm");
    rig.guests.clear_calls();
    let evict = async {
        until_async(
            "alpha's VM to be observed",
            Duration::from_secs(5),
            || async {
                rig.guests
                    .calls()
                    .iter()
                    .any(|c| c == "observe_vm alpha")
                    .then_some(())
            },
        )
        .await;
        rig.store()
            .modify("bravo", |r| r.status = TenantStatus::Evicting)
            .unwrap();
        observing.open();
    };
    let (result, ()) = tokio::join!(rig.watchdog.tick(), evict);
    result.unwrap();
    let events = rig.take_events();
    assert!(
        about(&events, "bravo").is_empty(),
        "{}",
        json(&about(&events, "bravo"))
    );
    let calls = rig.guests.calls();
    assert!(!calls.iter().any(|c| c.ends_with(" bravo")), "{calls:?}");
    assert!(
        calls.contains(&"observe_vm charlie".to_owned()),
        "{calls:?}"
    );
}

#[tokio::test]
async fn an_operator_reset_puts_a_failed_tenant_back_in_the_watchdog_care() {
    // The watchdog gave up; the operator molts it back to running; it breaks
    // again before the next tick. The registry says `running` (the operator
    // acted), so the watchdog repairs it again instead of leaving it failed.
    let rig = Rig::with(&NAMES, |c| c.watchdog.max_repair_attempts = 1).await;
    rig.tick().await;
    rig.guests.kill_vm("bravo");
    rig.guests.fail_always("launch_vm");
    rig.tick().await; // repair 1 fails
    rig.tick().await; // gives up
    assert_eq!(rig.record("bravo").status, TenantStatus::Failed);
    rig.guests.heal();
    let reports = molt_with(&rig.doctor, Some("bravo")).await.unwrap();
    assert!(reports[0].healthy);
    rig.guests.set_workload("bravo", WorkloadState::Exited);
    let events = rig.tick().await;
    match &about(&events, "bravo")[..] {
        [Event::StateChange {
            from: HealthState::Failed,
            to: HealthState::Degraded,
            ..
        }, Event::RepairStart {
            attempt: 1,
            repairs,
            ..
        }, Event::RepairComplete { .. }] => assert_eq!(repairs, &[Repair::RelaunchWorkload]),
        other => panic!("{}", json(other)),
    }
    rig.tick().await;
    assert_eq!(rig.state("bravo"), HealthState::Recovering);
}

#[tokio::test]
async fn molt_checks_repairs_and_reports_every_tenant() {
    let rig = Rig::new(&NAMES).await;
    rig.routes.remove_route("alpha").await.unwrap();
    rig.guests.kill_vm("bravo");
    let reports = molt_with(&rig.doctor, None).await.unwrap();
    let summary: Vec<(&str, bool, Vec<Repair>)> = reports
        .iter()
        .map(|r| {
            (
                r.tenant.as_str(),
                r.healthy,
                r.repairs.iter().map(|o| o.repair).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("alpha", true, vec![Repair::PutRoute]),
            ("bravo", true, vec![Repair::RestartVm]),
            ("charlie", true, vec![]),
        ]
    );
    assert!(reports[0].checks.iter().any(|c| !c.passed()));
    assert!(reports[0].after.iter().all(|c| c.passed()));
    assert!(
        reports[2].after.is_empty(),
        "nothing repaired, not re-checked"
    );
    assert!(rig.host_side_intact("alpha").await);
    assert_eq!(
        rig.record("bravo").vm.unwrap().identity,
        rig.guests.guest("bravo").unwrap().identity
    );

    // A lost disk: reported, not repaired, the tenant keeps its status.
    let overlay = plan::overlay(rig.config(), &rig.record("charlie"));
    std::fs::remove_file(overlay.path()).unwrap();
    let report = &molt_with(&rig.doctor, Some("charlie")).await.unwrap()[0];
    assert!(!report.healthy);
    assert!(report.repairs.is_empty());
    assert!(report
        .note
        .as_deref()
        .unwrap()
        .contains("overlay disk is missing"));
    let record = rig.record("charlie");
    assert_eq!(record.status, TenantStatus::Running);
    assert!(record.last_error.unwrap().contains("disk.overlay"));

    // Tenants that are not running are refused by name.
    rig.allocate("delta");
    let err = molt_with(&rig.doctor, Some("delta")).await.unwrap_err();
    assert_eq!(err.kind(), lobster_core::ErrorKind::InvalidState, "{err}");
    let err = molt_with(&rig.doctor, Some("nobody")).await.unwrap_err();
    assert_eq!(err.kind(), lobster_core::ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn suspended_tenants_are_not_checked() {
    let rig = Rig::new(&NAMES).await;
    rig.tick().await;
    // Suspended as a suspend leaves it: no VMM, no VM recorded.
    rig.guests.kill_vm("bravo");
    rig.store()
        .modify("bravo", |r| {
            r.status = TenantStatus::Suspended;
            r.vm = None;
        })
        .unwrap();
    rig.guests.clear_calls();
    let events = rig.tick().await;
    assert!(
        matches!(
            about(&events, "bravo")[..],
            [Event::StateChange {
                to: HealthState::Suspended,
                ..
            }]
        ),
        "{}",
        json(&about(&events, "bravo"))
    );
    assert_eq!(repair_starts(&events), 0);
    assert!(!rig.guests.calls().iter().any(|c| c.ends_with(" bravo")));
    assert!(about(&rig.tick().await, "bravo").is_empty());
    // Nor does molt check or repair it.
    let reports = molt_with(&rig.doctor, None).await.unwrap();
    assert!(reports.iter().all(|r| r.tenant != "bravo"), "{reports:?}");
    let err = molt_with(&rig.doctor, Some("bravo")).await.unwrap_err();
    assert_eq!(err.kind(), lobster_core::ErrorKind::InvalidState, "{err}");
    assert!(!rig.guests.calls().iter().any(|c| c.ends_with(" bravo")));
    assert_eq!(rig.store().read().unwrap().tenants["bravo"].vm, None);
}

#[tokio::test]
async fn reconcile_does_not_bring_back_what_an_eviction_removed() {
    let rig = Rig::new(&NAMES).await;
    // Evict of bravo under way: its route and rules are already gone.
    rig.store()
        .modify("bravo", |r| r.status = TenantStatus::Evicting)
        .unwrap();
    rig.routes.remove_route("bravo").await.unwrap();
    rig.firewall.remove_tenant(&rig.net("bravo")).unwrap();
    rig.watchdog.reconcile().await;
    match &rig.take_events()[..] {
        [Event::Reconciled {
            firewall_changes: 0,
            routes_added,
            routes_removed,
            errors,
        }] => assert!(
            routes_added.is_empty() && routes_removed.is_empty() && errors.is_empty(),
            "{routes_added:?} {routes_removed:?} {errors:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(!rig
        .firewall
        .check_tenant(&rig.net("bravo"))
        .unwrap()
        .is_empty());
    assert!(rig.host_side_intact("alpha").await);
}

#[tokio::test]
async fn an_evicting_tenant_keeps_its_rules_until_its_vm_is_confirmed_dead() {
    let rig = Rig::new(&NAMES).await;
    // Evict of bravo under way, its VM still running (here: this process),
    // and its rules gone: reconcile puts them back.
    let alive = lobster_core::vmm::VmIdentity::of(std::process::id() as i32).unwrap();
    rig.store()
        .modify("bravo", |r| {
            r.status = TenantStatus::Evicting;
            r.vm.as_mut().unwrap().identity = alive;
        })
        .unwrap();
    rig.firewall.remove_tenant(&rig.net("bravo")).unwrap();
    rig.watchdog.reconcile().await;
    assert!(rig
        .firewall
        .check_tenant(&rig.net("bravo"))
        .unwrap()
        .is_empty());
    // Once that VM is confirmed dead (another start time: not that
    // process), reconcile removes them.
    rig.store()
        .modify("bravo", |r| r.vm.as_mut().unwrap().identity.start_time += 1)
        .unwrap();
    rig.watchdog.reconcile().await;
    assert!(!rig
        .firewall
        .current()
        .unwrap()
        .render()
        .contains(&tenant_chain_prefix(&rig.record("bravo").id)));
    assert!(rig.host_side_intact("alpha").await);
}

#[tokio::test]
async fn a_proxy_outage_spends_no_tenant_repairs_and_is_fixed_host_wide() {
    // Caddy down: every route check fails because the proxy cannot be read.
    // That is the host's failure, not the tenants': no per-tenant repairs,
    // no give-up (which would leave every tenant failed for good).
    let rig = Rig::new(&NAMES).await;
    rig.tick().await;
    rig.routes.set_down(true);
    for _ in 0..5 {
        let events = rig.tick().await;
        assert_eq!(repair_starts(&events), 0, "{events:?}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Reconciled { errors, .. } if !errors.is_empty())),
            "the watchdog tries to set the host up again: {events:?}"
        );
        assert!(!events.iter().any(|e| matches!(e, Event::GaveUp { .. })));
    }
    for name in NAMES {
        assert_eq!(rig.state(name), HealthState::Degraded);
        assert_eq!(rig.watchdog.status().tenants[name].health.attempts, 0);
        assert_eq!(rig.record(name).status, TenantStatus::Running);
    }
    // It comes back empty (restarted without its config): each tenant gets
    // its route back with a first attempt.
    rig.routes.set_down(false);
    rig.routes.reconcile(&[]).await.unwrap();
    let events = rig.tick().await;
    for name in NAMES {
        assert!(
            matches!(
                about(&events, name)[..],
                [Event::RepairStart { attempt: 1, ref repairs, .. }, Event::RepairComplete { .. }]
                    if repairs == &[Repair::PutRoute]
            ),
            "{}",
            json(&about(&events, name))
        );
    }
    rig.tick().await;
    for name in NAMES {
        assert_eq!(rig.state(name), HealthState::Recovering);
        assert!(rig.host_side_intact(name).await);
    }
}

#[tokio::test]
async fn every_tick_sweeps_rules_and_routes_of_tenants_no_longer_registered() {
    let rig = Rig::new(&NAMES).await;
    let first = rig.tick().await;
    assert!(
        !first.iter().any(|e| matches!(e, Event::Swept { .. })),
        "nothing to sweep on a clean host: {first:?}"
    );
    // What a teardown racing a reconcile (or a hand-made change) leaves:
    // rules and a route of a tenant the registry does not hold.
    let ghost = TenantNet::new(
        "0badf00d",
        lobster_core::config::Ipv4Cidr::parse("10.0.200.0/30").unwrap(),
        MacAddr([2, 0, 0, 0, 0, 9]),
        40000,
        40000,
    )
    .unwrap();
    rig.firewall.apply_tenant(&ghost).unwrap();
    let stale = TenantRoute::new("ghost", "10.0.200.2:18789".parse().unwrap()).unwrap();
    rig.routes.put_route(&stale).await.unwrap();

    let events = rig.tick().await;
    let swept: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Swept {
                rules_removed,
                routes_removed,
                errors,
            } => Some((
                rules_removed.clone(),
                routes_removed.clone(),
                errors.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        swept,
        vec![(
            vec!["0badf00d".to_owned()],
            vec!["ghost".to_owned()],
            vec![]
        )],
        "{events:?}"
    );
    let prefix = tenant_chain_prefix(&ghost.id);
    let ruleset = rig.firewall.current().unwrap();
    assert!(
        !ruleset
            .tables
            .values()
            .flat_map(|chains| chains.iter())
            .any(|(chain, rules)| chain.starts_with(&prefix)
                || rules.iter().any(|r| r.contains(&prefix))),
        "{ruleset:?}"
    );
    // Registered tenants keep everything and nothing needed repair.
    for name in NAMES {
        assert!(rig.host_side_intact(name).await, "{name}");
    }
    assert_eq!(repair_starts(&events), 0);
    // Swept once: the next tick has nothing to remove.
    let next = rig.tick().await;
    assert!(
        !next.iter().any(|e| matches!(e, Event::Swept { .. })),
        "{next:?}"
    );
}

// Idle auto-suspend and scheduled wake (the rules are unit-tested in
// health::idle; here: the watchdog acts on them through its seams).

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// No connection, no hold, no scheduled job.
const QUIET: Activity = Activity {
    workload_connections: 0,
    holds: 0,
    next_job_at_ms: None,
};

/// A host of `NAMES` whose tenants are suspended after 1 s idle, woken
/// 1 s ahead of a job and left awake for 2 s after such a wake.
async fn idle_rig() -> Rig {
    Rig::with(&NAMES, |c| {
        c.watchdog.idle_suspend_after_s = 1;
        c.suspend.wake_ahead_s = 1;
        c.watchdog.scheduled_wake_grace_s = 2;
    })
    .await
}

fn suspends(events: &[Event]) -> Vec<(String, Trigger, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Suspend {
                tenant,
                trigger,
                ok,
                ..
            } => Some((tenant.clone(), *trigger, *ok)),
            _ => None,
        })
        .collect()
}

fn resumes(events: &[Event]) -> Vec<(String, Trigger, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Resume {
                tenant,
                trigger,
                ok,
                ..
            } => Some((tenant.clone(), *trigger, *ok)),
            _ => None,
        })
        .collect()
}

/// Ticks until `name` is `status` (at most 20 s); returns every event.
async fn tick_until(rig: &Rig, name: &str, status: TenantStatus) -> Vec<Event> {
    let mut all = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rig.record(name).status != status {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never became {status:?}: {}",
            json(&all.iter().collect::<Vec<_>>())
        );
        all.extend(rig.tick().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    all
}

#[tokio::test]
async fn an_idle_tenant_is_suspended_but_not_one_with_a_hold_or_a_connection() {
    let rig = idle_rig().await;
    rig.guests
        .set_activity("bravo", Activity { holds: 1, ..QUIET });
    rig.guests.set_activity(
        "charlie",
        Activity {
            workload_connections: 1,
            ..QUIET
        },
    );
    let events = tick_until(&rig, "alpha", TenantStatus::Suspended).await;
    assert_eq!(
        suspends(&events),
        [("alpha".to_owned(), Trigger::Idle, true)]
    );
    let record = rig.record("alpha");
    assert_eq!(record.vm, None);
    assert_eq!(
        record.suspended.unwrap().wake_at_ms,
        None,
        "no job: it sleeps until a request"
    );
    assert_eq!(rig.state("alpha"), HealthState::Suspended);
    // Busy tenants stay up however long it takes.
    for _ in 0..12 {
        assert!(suspends(&rig.tick().await).is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in ["bravo", "charlie"] {
        assert_eq!(rig.record(name).status, TenantStatus::Running, "{name}");
        assert_eq!(rig.guests.guest(name).unwrap().suspends, 0, "{name}");
    }
    // Suspended is left alone: no checks, no resume without a wake time.
    rig.guests.clear_calls();
    rig.tick().await;
    assert!(
        !rig.guests.calls().iter().any(|c| c.ends_with(" alpha")),
        "{:?}",
        rig.guests.calls()
    );
    // The hold is released: bravo goes to sleep too.
    rig.guests.set_activity("bravo", QUIET);
    tick_until(&rig, "bravo", TenantStatus::Suspended).await;
}

#[tokio::test]
async fn idle_suspend_is_off_by_default_and_per_tenant() {
    // The host default: off. No stats are even asked for.
    let rig = Rig::new(&["alpha"]).await;
    for _ in 0..12 {
        assert!(suspends(&rig.tick().await).is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!rig.guests.calls().iter().any(|c| c.starts_with("activity")));
    // A tenant's own idle time turns it on; 0 turns it off on a host that
    // suspends.
    rig.store()
        .modify("alpha", |r| r.resources.idle_suspend_after_s = Some(1))
        .unwrap();
    tick_until(&rig, "alpha", TenantStatus::Suspended).await;

    let rig = idle_rig().await;
    rig.store()
        .modify("bravo", |r| r.resources.idle_suspend_after_s = Some(0))
        .unwrap();
    tick_until(&rig, "alpha", TenantStatus::Suspended).await;
    assert_eq!(rig.record("bravo").status, TenantStatus::Running);
}

#[tokio::test]
async fn an_unreachable_agent_or_a_broken_tenant_is_never_idle() {
    let rig = idle_rig().await;
    rig.guests.fail_always("activity");
    rig.guests.kill_vm("bravo");
    rig.guests.fail_always("launch_vm");
    for _ in 0..15 {
        assert!(suspends(&rig.tick().await).is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rig.guests.heal();
    let events = tick_until(&rig, "alpha", TenantStatus::Suspended).await;
    assert!(
        !suspends(&events).iter().any(|(t, _, _)| t == "bravo"),
        "bravo was broken until now: it must be healthy for a whole idle time first"
    );
}

#[tokio::test]
async fn a_failed_suspend_is_reported_and_the_tenant_runs_on() {
    let rig = Rig::with(&["alpha"], |c| c.watchdog.idle_suspend_after_s = 1).await;
    rig.guests.fail_next("suspend_tenant");
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while suspends(&events).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no suspend tried");
        events.extend(rig.tick().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        suspends(&events),
        [("alpha".to_owned(), Trigger::Idle, false)]
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Suspend { error: Some(error), .. } if error.contains("failed as asked")
    )));
    assert_eq!(rig.record("alpha").status, TenantStatus::Running);
    assert!(matches!(events.last(), Some(Event::TickComplete { .. })));
    // Tried again after another idle time.
    let events = tick_until(&rig, "alpha", TenantStatus::Suspended).await;
    assert_eq!(
        suspends(&events),
        [("alpha".to_owned(), Trigger::Idle, true)]
    );
}

#[tokio::test]
async fn a_scheduled_job_wakes_a_suspended_tenant_ahead_of_time() {
    let rig = idle_rig().await;
    // bravo and charlie stay up; alpha's job is due in 4 s.
    rig.guests
        .set_activity("bravo", Activity { holds: 1, ..QUIET });
    rig.guests
        .set_activity("charlie", Activity { holds: 1, ..QUIET });
    let job_at = now_ms() + 4_000;
    rig.guests.set_activity(
        "alpha",
        Activity {
            next_job_at_ms: Some(job_at),
            ..QUIET
        },
    );
    tick_until(&rig, "alpha", TenantStatus::Suspended).await;
    let wake_at = rig.record("alpha").suspended.unwrap().wake_at_ms;
    assert_eq!(wake_at, Some(job_at - 1_000), "the wake-ahead is 1 s");
    // Not before its time ...
    let events = rig.tick().await;
    if now_ms() < job_at - 1_000 {
        assert!(resumes(&events).is_empty(), "{events:?}");
    }
    // ... but at it, ahead of the job.
    let events = tick_until(&rig, "alpha", TenantStatus::Running).await;
    let woke = now_ms();
    assert_eq!(
        resumes(&events),
        [("alpha".to_owned(), Trigger::Schedule, true)]
    );
    assert!(woke >= job_at - 1_000);
    assert_eq!(rig.record("alpha").suspended, None);
    assert_eq!(
        rig.record("alpha").vm.unwrap().identity,
        rig.guests.guest("alpha").unwrap().identity
    );
    // The job has not run yet and alpha is idle, but the grace (2 s) keeps
    // it awake; the job's run (a connection) keeps it awake after that.
    rig.guests.set_activity("alpha", QUIET);
    let grace_ends = woke + 2_000;
    while now_ms() + 200 < grace_ends {
        assert!(suspends(&rig.tick().await).is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rig.record("alpha").status, TenantStatus::Running);
    // Once the grace and an idle time have passed, it sleeps again.
    tick_until(&rig, "alpha", TenantStatus::Suspended).await;
    assert_eq!(rig.guests.guest("alpha").unwrap().suspends, 2);
}

#[tokio::test]
async fn a_failed_scheduled_wake_is_reported_and_retried() {
    let rig = Rig::with(&["alpha"], |c| {
        c.watchdog.interval_ms = 100;
        c.watchdog.backoff_max_ms = 500;
    })
    .await;
    let past = now_ms() - 1;
    rig.guests.kill_vm("alpha");
    rig.store()
        .modify("alpha", move |r| {
            r.status = TenantStatus::Suspended;
            r.vm = None;
            r.suspended = Some(lobster_core::store::SuspendInfo {
                at: 0,
                snapshot: lobster_core::vmm::Snapshot {
                    backend: lobster_core::vmm::BackendKind::Firecracker,
                    state_file: "/nonexistent".into(),
                    memory_file: None,
                },
                vmm_version: "fake".into(),
                wake_at_ms: Some(past),
            });
        })
        .unwrap();
    rig.guests.fail_next("resume_tenant");
    let events = rig.tick().await;
    assert_eq!(
        resumes(&events),
        [("alpha".to_owned(), Trigger::Schedule, false)]
    );
    assert_eq!(rig.record("alpha").status, TenantStatus::Suspended);
    assert!(
        resumes(&rig.tick().await).is_empty(),
        "the retry waits (backoff_max_ms)"
    );
    let events = tick_until(&rig, "alpha", TenantStatus::Running).await;
    assert_eq!(
        resumes(&events),
        [("alpha".to_owned(), Trigger::Schedule, true)]
    );
}

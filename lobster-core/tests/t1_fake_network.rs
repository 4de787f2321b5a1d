//! T1: `FakeNetwork` against the kernel. The same changes go to the fake and
//! to real TAPs (rtnetlink, inside a private network namespace), and both
//! must report the same drift after each: in particular, setting a TAP down
//! also flushes its permanent neighbour entry.

mod prop_support;

use lobster_core::network::{Drift, FakeNetwork, Network, NetworkOps, TenantNet};
use lobster_testkit::netns::{in_netns, sh, Ctx};
use prop_support::firewall::tenant;
use std::time::Duration;

#[test]
#[ignore = "t1: needs root"]
fn fake_network_drifts_like_the_kernel() {
    in_netns("fake_network_drifts_like_the_kernel", |_: &Ctx| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(drifts_alike());
    });
}

async fn drifts_alike() {
    let real = Network::connect(Duration::from_secs(5)).expect("rtnetlink");
    let fake = FakeNetwork::new();
    let t = tenant(0);
    let drift =
        async |ops: &dyn NetworkOps, t: &TenantNet| ops.check(t).await.expect("check").drift;
    let same = async |t: &TenantNet, want: Vec<Drift>, when: &str| {
        assert_eq!(drift(&real, t).await, want, "the kernel, {when}");
        assert_eq!(drift(&fake, t).await, want, "the fake, {when}");
    };

    same(&t, vec![Drift::Missing], "before ensure").await;
    for ops in [&real as &dyn NetworkOps, &fake] {
        ops.ensure(&t).await.expect("ensure");
    }
    same(&t, vec![], "after ensure").await;

    sh(&["ip", "link", "set", "dev", &t.tap, "down"]);
    fake.set_down(&t.tap);
    let down = vec![Drift::Down, Drift::WrongNeighbour { actual: None }];
    same(&t, down, "set down").await;

    for ops in [&real as &dyn NetworkOps, &fake] {
        ops.ensure(&t).await.expect("repair");
    }
    same(&t, vec![], "after the repair").await;

    for ops in [&real as &dyn NetworkOps, &fake] {
        ops.remove(&t).await.expect("remove");
    }
    same(&t, vec![Drift::Missing], "after remove").await;
}

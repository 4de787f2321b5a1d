//! T2: wake on request, end to end: a real guest (QEMU, the minimal image)
//! behind a real Caddy in a network namespace the test creates, suspended;
//! the watchdog (`lobsterd watch`, started after the suspend as after a
//! host reboot) listens on its wake socket; one HTTP request through Caddy
//! to `<name>.lobster.local` resumes it and gets the workload's 200, and
//! the tenant is `running` afterwards.
//!
//! Needs root, `qemu-system-x86_64`, `caddy`, `ip`, iptables and the images
//! from `guest/images/build.sh minimal` (under `$LOBSTER_IMAGES`).

mod common;

use std::time::{Duration, Instant};

use common::t2::*;
use lobster_testkit::netns::{in_netns, Ctx};
use lobster_testkit::poll;

/// The dial addresses of the tenant's route in Caddy.
fn route_upstreams(lobster: &Lobster, name: &str) -> String {
    let body =
        admin_request(&lobster.admin(), "GET", &format!("/id/lobster-{name}")).unwrap_or_default();
    let route: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    route["handle"][0]["upstreams"].to_string()
}

#[test]
#[ignore = "t2: needs root, qemu, caddy and images"]
fn a_request_through_caddy_wakes_a_suspended_tenant_and_gets_the_workload_s_reply() {
    let test = "a_request_through_caddy_wakes_a_suspended_tenant_and_gets_the_workload_s_reply";
    in_netns(test, |_ctx: &Ctx| {
        require_t2();
        let lobster = Lobster::init(1, false);
        let out = lobster.spawn("w", "");
        assert!(out.status.success(), "spawn failed: {}", output(&out));
        wait_for_page("w", "/", "hello from w", Duration::from_secs(180));

        let out = lobster.run(&["--json", "suspend", "w"]);
        assert!(out.status.success(), "suspend failed: {}", output(&out));
        assert_eq!(lobster.tenant("w")["status"], "suspended");

        // The watchdog starts afterwards (as after a host reboot): its
        // reconcile points the route at the wake socket, its first tick
        // listens there.
        let mut watch = Watch::start(&lobster);
        let socket = lobster
            .dir
            .path()
            .join(format!("wake/{}.sock", lobster.id("w")));
        poll::until("the wake listener", Duration::from_secs(60), || {
            socket.exists().then_some(())
        });
        poll::until(
            "the route to the wake socket",
            Duration::from_secs(30),
            || {
                route_upstreams(&lobster, "w")
                    .contains("unix/")
                    .then_some(())
            },
        );
        assert_eq!(lobster.tenant("w")["status"], "suspended");

        let started = Instant::now();
        let body = http("127.0.0.1:80", "w.lobster.local", "/");
        eprintln!("woken request answered in {:?}", started.elapsed());
        assert_eq!(
            body.as_deref().map(str::trim),
            Ok("hello from w"),
            "the workload's own reply, its tmpfs file kept"
        );
        assert_eq!(lobster.tenant("w")["status"], "running");
        let woken = watch.first("woken", Duration::from_secs(10), |e| e["event"] == "woken");
        assert_eq!(woken["trigger"], "request", "{woken}");
        assert!(!watch.any(|e| e["event"] == "wake_failed"));
        // Later requests go straight to the guest.
        poll::until(
            "the route back to the guest",
            Duration::from_secs(30),
            || {
                route_upstreams(&lobster, "w")
                    .contains("10.200.0.2:9000")
                    .then_some(())
            },
        );
        wait_for_page("w", "/", "hello from w", Duration::from_secs(30));
        watch.stop();
    });
}

//! T2: restore and move. A tenant writes a file to its persistent overlay,
//! is snapped and evicted; `lobsterd spawn --from-snap` makes a new tenant
//! from the archive: the file is there, the new guest refuses the old
//! agent token and accepts the new one. One pair of real guests (QEMU, the
//! minimal image) in a network namespace the test creates.
//!
//! Needs what `t2_lifecycle` needs (root, QEMU, Caddy, the minimal images).

use std::time::{Duration, Instant};

mod common;

use common::t2::*;
use lobster_core::ErrorKind;
use lobster_testkit::netns::{in_netns, Ctx};

/// Writes `proof.txt` to the tenant's persistent disk once (the first
/// boot), flushed, then serves it on the gateway port.
const WORKLOAD: &str = r#"mkdir -p /srv/www
[ -f /srv/www/proof.txt ] || { echo "written by $TENANT" > /srv/www/proof.txt; sync; }
exec busybox httpd -f -p 9000 -h /srv/www"#;

/// `name`'s recorded agent token (read from the registry file).
fn agent_token(lobster: &Lobster, name: &str) -> String {
    let registry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lobster.state().join("registry.json")).unwrap())
            .unwrap();
    registry["tenants"][name]["agent_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no agent token: {registry}"))
        .to_owned()
}

#[test]
#[ignore = "t2: needs root, qemu, caddy and images"]
fn a_snapped_tenant_restores_with_its_files_and_only_new_tokens() {
    in_netns(
        "a_snapped_tenant_restores_with_its_files_and_only_new_tokens",
        |_ctx: &Ctx| {
            require_t2();
            let lobster = Lobster::init(4, false);
            let spawn = |name: &str, options: &[&str]| {
                let out = lobster.spawn_running(name, WORKLOAD, options);
                assert!(out.status.success(), "spawn {name}: {}", output(&out));
                out
            };

            spawn("alice", &[]);
            wait_for_page(
                "alice",
                "/proof.txt",
                "written by alice",
                Duration::from_secs(60),
            );
            let old_token = agent_token(&lobster, "alice");
            let alice_id = lobster.id("alice");

            let archive = lobster.state().join("alice.ext4.zst");
            let out = lobster.run(&[
                "--json",
                "snap",
                "alice",
                "--output",
                archive.to_str().unwrap(),
            ]);
            assert!(out.status.success(), "snap: {}", output(&out));
            let out = lobster.run(&["evict", "-y", "alice"]);
            assert!(out.status.success(), "evict: {}", output(&out));
            lobster.assert_gone("alice", &alice_id);

            // Restored under a new name: the CLI names each step as it goes.
            let started = Instant::now();
            let out = spawn("bob", &["--from-snap", archive.to_str().unwrap()]);
            let restore_time = started.elapsed();
            let steps = text(&out.stderr);
            for step in [
                "[overlay] done",
                "[scrub] done",
                "[token] done",
                "[agent] done",
            ] {
                assert!(steps.contains(step), "no {step}: {steps}");
            }
            // bob's workload found alice's file and did not write its own.
            let body = wait_for_page("bob", "/proof.txt", "written by", Duration::from_secs(60));
            assert_eq!(body.trim(), "written by alice");
            let new_token = agent_token(&lobster, "bob");
            assert_ne!(new_token, old_token);

            let runtime = tokio::runtime::Runtime::new().unwrap();
            let host = lobster_core::Host::open(Some(&lobster.config())).unwrap();
            let bob = runtime.block_on(host.get("bob")).unwrap();
            let (rpc, health) =
                lobster_core::tenant::plan::agent_endpoints(host.config(), bob.record());
            let refused = runtime
                .block_on(lobster_core::agent::Agent::new(rpc, health, old_token).hello())
                .map_err(lobster_core::Error::from)
                .expect_err("the old agent token is refused");
            assert_eq!(
                refused.kind(),
                ErrorKind::PermissionDenied,
                "{}",
                refused.chain()
            );
            let hello = runtime
                .block_on(lobster_core::agent::Agent::new(rpc, health, new_token).hello())
                .expect("the new agent token works");
            eprintln!("restore took {restore_time:?}; agent {hello:?}");

            let bob_id = lobster.id("bob");
            let out = lobster.run(&["evict", "-y", "bob"]);
            assert!(out.status.success(), "evict: {}", output(&out));
            lobster.assert_gone("bob", &bob_id);
        },
    );
}

//! T0: `spawn --from-snap` over the test kit's fake host (real registry and
//! overlay disks, the real agent booting in this process).
//!
//! Bad archives are refused before anything is allocated, with errors that
//! name `from_snap` and the path; a tenant snapped, evicted and restored
//! gets the archive's disk with the old credentials gone from every block,
//! and only its new agent token works.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lobster_core::agent::Agent;
use lobster_core::store::TenantStatus;
use lobster_core::tenant::progress::{Phase, ProgressEvent, ProgressSink};
use lobster_core::tenant::{TenantSpec, TenantSpecBuilder};
use lobster_core::ErrorKind;
use lobster_testkit::rig::FakeHost;

fn spec(name: &str) -> TenantSpecBuilder {
    TenantSpec::builder(name).overlay_size_mib(64).command(vec![
        "/bin/sh".into(),
        "-c".into(),
        "exec sleep 3600".into(),
    ])
}

/// A zstd archive of a 2 KiB "image" whose ext4 superblock declares
/// `blocks` blocks of 4 KiB.
fn archive_declaring(dir: &Path, name: &str, blocks: u64) -> PathBuf {
    archive_with_window(dir, name, blocks, None)
}

/// [`archive_declaring`], compressed with a zstd window of 2^`window_log`.
fn archive_with_window(dir: &Path, name: &str, blocks: u64, window_log: Option<u32>) -> PathBuf {
    let mut head = vec![0u8; 2048];
    let sb = &mut head[1024..];
    sb[4..8].copy_from_slice(&(blocks as u32).to_le_bytes());
    sb[24..28].copy_from_slice(&2u32.to_le_bytes()); // 1024 << 2
    sb[56..58].copy_from_slice(&[0x53, 0xef]);
    sb[0x60..0x64].copy_from_slice(&0x80u32.to_le_bytes()); // 64bit
    sb[0x150..0x154].copy_from_slice(&((blocks >> 32) as u32).to_le_bytes());
    let path = dir.join(name);
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    if let Some(log) = window_log {
        encoder.window_log(log).unwrap();
    }
    std::io::Write::write_all(&mut encoder, &head).unwrap();
    std::fs::write(&path, encoder.finish().unwrap()).unwrap();
    path
}

/// `debugfs -R request image`'s output.
fn debugfs(image: &Path, request: &str) -> String {
    let out = std::process::Command::new("debugfs")
        .args(["-R", request])
        .arg(image)
        .output()
        .expect("debugfs (e2fsprogs) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn overlay_of(rig: &FakeHost, name: &str) -> PathBuf {
    let record = rig.record(name);
    lobster_core::tenant::plan::overlay(rig.config(), &record)
        .path()
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_archives_are_refused_before_anything_is_allocated() {
    let rig = FakeHost::booting(161).await;
    let before = rig.state().await;
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not an archive at all").unwrap();
    let not_ext4 = dir.path().join("zeros.zst");
    std::fs::write(&not_ext4, zstd::encode_all(&[0u8; 4096][..], 3).unwrap()).unwrap();
    let truncated = dir.path().join("short.zst");
    std::fs::write(&truncated, zstd::encode_all(&[1u8; 100][..], 3).unwrap()).unwrap();
    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let huge = archive_declaring(dir.path(), "huge.zst", 1 << 29); // 2 TiB
    let odd = archive_declaring(dir.path(), "odd.zst", 16_385); // 64 MiB + 4 KiB
    let fine = archive_declaring(dir.path(), "fine.zst", 16_384); // 64 MiB
                                                                  // A frame asking for a 1 GiB decoder window (memory) is refused.
    let wide = archive_with_window(dir.path(), "wide.zst", 16_384, Some(30));
    let cases: [(&str, PathBuf, Option<u32>, ErrorKind, &str); 9] = [
        (
            "missing",
            dir.path().join("absent.zst"),
            None,
            ErrorKind::NotFound,
            "from_snap",
        ),
        (
            "text",
            text,
            None,
            ErrorKind::InvalidArgument,
            "not a zstd stream",
        ),
        (
            "not ext4",
            not_ext4,
            None,
            ErrorKind::InvalidArgument,
            "not an ext4 filesystem",
        ),
        (
            "truncated",
            truncated,
            None,
            ErrorKind::InvalidArgument,
            "not a snap archive",
        ),
        (
            "fifo",
            fifo,
            None,
            ErrorKind::InvalidArgument,
            "not a regular file",
        ),
        (
            "too large",
            huge,
            None,
            ErrorKind::InvalidArgument,
            "2199023255552 bytes",
        ),
        (
            "not whole MiB",
            odd,
            None,
            ErrorKind::InvalidArgument,
            "whole number of MiB",
        ),
        (
            "size differs",
            fine,
            Some(128),
            ErrorKind::InvalidArgument,
            "overlay_size_mib",
        ),
        (
            "wide window",
            wide,
            None,
            ErrorKind::InvalidArgument,
            "not a snap archive",
        ),
    ];
    for (what, path, size, kind, needle) in cases {
        let mut builder = TenantSpec::builder("alice").from_snap(&path);
        if let Some(mib) = size {
            builder = builder.overlay_size_mib(mib);
        }
        let err = rig.host.spawn(builder.build().unwrap()).await.unwrap_err();
        let text = err.chain();
        assert_eq!(err.kind(), kind, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {text}");
        if what != "size differs" {
            assert!(
                text.contains("from_snap") && text.contains(&*path.to_string_lossy()),
                "{what}: the error names the field and the path: {text}"
            );
        }
        rig.assert_state(&before, what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_tenant_has_the_disk_and_none_of_the_old_credentials() {
    let rig = FakeHost::booting(162).await;
    let empty = rig.state().await;
    rig.host
        .spawn(spec("alice").build().unwrap())
        .await
        .unwrap();
    let alice = rig.record("alice");
    let disk = overlay_of(&rig, "alice");
    // The workload's file, and what the real guest agent persists: its
    // secrets and workload spec (the fake guest keeps them elsewhere).
    let dir = tempfile::tempdir().unwrap();
    let (file, secrets) = (dir.path().join("file"), dir.path().join("secrets"));
    std::fs::write(&file, "written before the snap").unwrap();
    std::fs::write(&secrets, r#"{"API_KEY":"sk-old-secret-value"}"#).unwrap();
    let script = format!(
        "mkdir upper\nmkdir upper/data\nwrite {} upper/data/hello\nmkdir upper/var\nmkdir upper/var/lib\nmkdir upper/var/lib/lobster-agent\nwrite {} upper/var/lib/lobster-agent/secrets.json\n",
        file.display(),
        secrets.display()
    );
    let mut child = std::process::Command::new("debugfs")
        .args(["-w", "-f", "-"])
        .arg(&disk)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());

    let archive = dir.path().join("alice.ext4.zst");
    rig.host.snap("alice", Some(archive.clone())).await.unwrap();
    rig.host.evict("alice").await.unwrap();

    let steps = Arc::new(Mutex::new(Vec::new()));
    let sink: ProgressSink = {
        let steps = steps.clone();
        Arc::new(move |e: &ProgressEvent| {
            if matches!(e.phase, Phase::Done { .. }) {
                steps.lock().unwrap().push(e.step);
            }
        })
    };
    // No overlay size asked: the archive's (64 MiB) is taken.
    let bob = rig
        .host
        .spawn_with_progress(
            TenantSpec::builder("bob")
                .command(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "exec sleep 3600".into(),
                ])
                .from_snap(&archive)
                .build()
                .unwrap(),
            Some(sink),
        )
        .await
        .unwrap_or_else(|e| panic!("restore: {}", e.chain()));
    assert_eq!(bob.status(), TenantStatus::Running);
    assert_eq!(bob.resources().overlay_size_mib, 64);
    assert_eq!(
        *steps.lock().unwrap(),
        [
            "allocate", "overlay", "scrub", "token", "network", "firewall", "vm", "agent",
            "workload", "route"
        ]
    );
    let record = rig.record("bob");
    assert_ne!(record.agent_token, alice.agent_token);
    assert_ne!(record.gateway_token, alice.gateway_token);

    let disk = overlay_of(&rig, "bob");
    assert_eq!(
        debugfs(&disk, "cat upper/data/hello"),
        "written before the snap"
    );
    assert_eq!(debugfs(&disk, "cat meta/agent.token"), record.agent_token);
    let raw = std::fs::read(&disk).unwrap();
    for old in [alice.agent_token.as_str(), "sk-old-secret-value"] {
        assert!(
            !raw.windows(old.len()).any(|w| w == old.as_bytes()),
            "{old} survives in the restored disk"
        );
    }

    // The guest booted with the new token; the old one is refused.
    assert_eq!(rig.guest("bob").token, record.agent_token);
    let (rpc, health) = lobster_core::tenant::plan::agent_endpoints(rig.config(), &record);
    let old = Agent::new(rpc, health, alice.agent_token.clone());
    let err = old.hello().await.unwrap_err();
    assert_eq!(
        lobster_core::Error::from(err).kind(),
        ErrorKind::PermissionDenied
    );
    rig.host.agent("bob").await.unwrap().hello().await.unwrap();

    // Evict leaves what a plain spawn and evict leave.
    rig.host.evict("bob").await.unwrap();
    let mut after = empty.clone();
    after.files.extend(
        [
            "registry.json",
            "registry.lock",
            "overlays/.templates/blank-64m.ext4",
        ]
        .map(PathBuf::from),
    );
    after.rules = rig.firewall.current().unwrap();
    rig.assert_state(&after, "after evict").await;
}

//! T1: preparing a jailer chroot for real, as root: hard links into the
//! chroot, the writable overlay (and metrics file) handed to the tenant's
//! uid/gid, the shared read-only files left alone, and cleanup removing it
//! all. (The jailer binary itself is not run here: see tx_firecracker_real.)
//! Evict and recovery stop whatever runs in a tenant's cgroup and remove
//! its jail and cgroup.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use lobster_core::config::{BackendKind, VmmConfig};
use lobster_core::store::TenantStatus;
use lobster_core::vmm::firecracker::jailer;
use lobster_core::vmm::firecracker::plan::Features;
use lobster_core::vmm::sandbox::Hierarchy;
use lobster_core::vmm::Jail;
use lobster_core::vmm::VmIdentity;
use lobster_testkit::cgroup::MemoryGroup;
use lobster_testkit::registry::ended_process;
use lobster_testkit::rig::FakeHost;
use lobster_testkit::vm::vm_config;

#[test]
#[ignore = "t1: needs root"]
fn chroot_is_prepared_with_tenant_ownership_and_removed_again() {
    let euid = std::fs::metadata("/proc/self").unwrap().uid();
    assert_eq!(euid, 0, "needs root (chown to the tenant uid)");
    let dir = tempfile::tempdir().unwrap();
    let mut jail = Jail::for_tenant(
        &VmmConfig::default(),
        BackendKind::Firecracker,
        "vm-t1",
        10_996,
        2,
        512,
        None,
    );
    jail.chroot_base = dir.path().join("jail");
    let mut config = vm_config(dir.path(), "vm-t1", dir.path().join("vmlinux"));
    config.initrd = Some(dir.path().join("initrd"));
    config.boot_args = String::new();
    config.vcpus = 2;
    config.memory_mib = 512;
    config.jail = Some(jail.clone());
    // Each file holds its own name, so a copy is told from the source.
    let overlay = config.drives[1].path.clone();
    for file in [
        &config.kernel,
        config.initrd.as_ref().unwrap(),
        &config.drives[0].path,
        &overlay,
    ] {
        std::fs::write(file, file.file_name().unwrap().as_encoded_bytes()).unwrap();
    }
    let features = Features {
        metrics: true,
        ..Features::default()
    };
    let plan = jailer::plan(
        &config,
        &jail,
        Path::new("/usr/local/bin/firecracker"),
        &features,
        &Hierarchy::detect().expect("cgroup controllers"),
    )
    .unwrap();
    jailer::prepare("vm-t1", &plan).unwrap();

    let owner = |name: &str| {
        let m = std::fs::metadata(plan.host_path(name)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner("/drive-overlay.img"), (10_996, 10_996));
    assert_eq!(owner("/metrics.json"), (10_996, 10_996));
    assert_eq!(
        owner("/drive-rootfs.img"),
        (0, 0),
        "shared base must stay root's"
    );
    assert_eq!(owner("/vmlinux"), (0, 0));
    // Private: the jail is root's alone, the tenant's files its alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&plan.jail_dir), 0o700);
    assert_eq!(mode(&plan.root), 0o700);
    assert_eq!(mode(&plan.host_path("/drive-overlay.img")), 0o600);
    assert_eq!(mode(&plan.host_path("/metrics.json")), 0o600);
    // Hard links, not copies: same inode as the source.
    assert_eq!(
        std::fs::metadata(plan.host_path("/drive-overlay.img"))
            .unwrap()
            .ino(),
        std::fs::metadata(&overlay).unwrap().ino()
    );

    jailer::cleanup("vm-t1", &plan).unwrap();
    assert!(!plan.jail_dir.exists());
    jailer::cleanup("vm-t1", &plan).unwrap();
    // The sources are untouched (only the links went away).
    assert_eq!(std::fs::read_to_string(&overlay).unwrap(), "overlay.img");
}

/// What a jailed VMM leaves on the host while it runs: its jail directory
/// and a process in its cgroup (here `sleep`, standing in for the VMM).
struct Leftovers {
    jail_dir: std::path::PathBuf,
    group: MemoryGroup,
    vmm: VmIdentity,
}

impl Leftovers {
    fn plant(rig: &FakeHost, name: &str) -> Leftovers {
        let config = rig.config();
        // Named by the tenant's id, not its name.
        let id = rig.record(name).id;
        let jail_dir = config
            .vmm
            .firecracker
            .chroot_base
            .join("firecracker")
            .join(&id);
        std::fs::create_dir_all(jail_dir.join("root/dev")).unwrap();
        std::fs::write(jail_dir.join("root/drive-overlay.img"), "disk").unwrap();
        let group = MemoryGroup::at(&config.vmm.cgroup_parent.join(&id)).unwrap();
        std::fs::create_dir_all(&group.dir).unwrap();
        let child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let vmm = VmIdentity::of(child.id() as i32).unwrap();
        drop(child); // reaped by whoever kills it (lobster's supervisor)
        std::fs::write(group.dir.join("cgroup.procs"), vmm.pid.to_string()).unwrap();
        assert_eq!(group.members(), [vmm.pid]);
        Leftovers {
            jail_dir,
            group,
            vmm,
        }
    }

    /// The VMM was killed, and nothing of it is left.
    fn assert_gone(self) {
        assert!(!self.vmm.is_alive(), "the vmm was not killed");
        assert!(
            !self.jail_dir.exists(),
            "jail {} left",
            self.jail_dir.display()
        );
        assert!(
            !self.group.dir.exists(),
            "cgroup {} left",
            self.group.dir.display()
        );
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if self.vmm.is_alive() {
            lobster_testkit::evidence::kill(self.vmm);
        }
        let _ = std::fs::remove_dir(&self.group.dir);
        let _ = std::fs::remove_dir(self.group.dir.parent().unwrap());
    }
}

/// Evict, and the recovery of a spawn killed after launching its VMM but
/// before recording it, stop the VMM found in the tenant's cgroup (not by
/// its command line: `sleep` names nothing of the tenant) and remove the
/// jail and the cgroup; evicting again is a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "t1: needs root (cgroups)"]
async fn evict_and_recover_stop_the_vmm_in_the_tenant_cgroup_and_remove_jail_and_cgroup() {
    let rig = FakeHost::new(|_| {}).await;
    rig.spawn("alice").await;
    rig.spawn("bob").await;
    let alice = Leftovers::plant(&rig, "alice");
    let bob = Leftovers::plant(&rig, "bob");

    rig.host.evict("alice").await.unwrap();
    alice.assert_gone();
    rig.host.evict("alice").await.expect_err("alice is gone");

    // bob's spawn was SIGKILLed after its VMM started: no identity recorded.
    let dead = ended_process();
    rig.store()
        .modify("bob", |r| {
            r.status = TenantStatus::Creating;
            r.owner = Some(dead);
            r.vm = None;
        })
        .unwrap();
    // The next command recovers first.
    let names = rig.host.list().await.unwrap();
    assert!(names.is_empty(), "bob was not torn down");
    bob.assert_gone();
}

/// An evict that cannot confirm the VM dead (here: a process of the
/// tenant's cgroup tree that lobster cannot stop, so the cgroup stays busy)
/// keeps the tenant's TAP, rules and disk, and fails naming the VM; once
/// the process is gone, evicting again removes everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "t1: needs root (cgroups)"]
async fn an_evict_that_cannot_confirm_the_vm_dead_keeps_its_network_rules_and_disk() {
    let rig = FakeHost::new(|_| {}).await;
    rig.spawn("alice").await;
    let before = rig.state().await;
    let alice = Leftovers::plant(&rig, "alice");
    // Moved into a child group: not a member lobster finds and stops, and
    // the tenant's group cannot be removed while it lives.
    let held = alice.group.dir.join("held");
    std::fs::create_dir(&held).unwrap();
    std::fs::write(held.join("cgroup.procs"), alice.vmm.pid.to_string()).unwrap();

    let err = rig
        .host
        .evict("alice")
        .await
        .expect_err("the vm is not confirmed dead");
    assert!(err.to_string().contains("vm:"), "{err}");
    let after = rig.state().await;
    assert_eq!(
        after.rules, before.rules,
        "rules removed while the vm may run"
    );
    assert_eq!(after.taps, before.taps, "tap removed while the vm may run");
    let overlay = lobster_core::tenant::plan::overlay(rig.config(), &rig.record("alice"));
    assert!(overlay.path().exists(), "disk removed while the vm may run");

    lobster_testkit::evidence::kill(alice.vmm);
    lobster_testkit::poll::until(
        "the held process gone",
        std::time::Duration::from_secs(10),
        || std::fs::remove_dir(&held).ok(),
    );
    rig.host.evict("alice").await.unwrap();
    assert!(rig.state().await.taps.is_empty());
    alice.assert_gone();
}

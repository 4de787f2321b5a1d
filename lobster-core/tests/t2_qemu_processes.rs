//! T2: a VM outlives the process that launched it, and later processes
//! find it again by its recorded identity: one process launches and exits,
//! a second attaches, pauses, snapshots and kills, a third restores and
//! exits, and the test process itself attaches to the restored VM and checks
//! the guest's counter carried on. This test binary re-executes itself as
//! those processes (`LOBSTER_T2_ROLE` set); they share only files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use lobster_core::config::VmmConfig;
use lobster_core::vmm::qemu::{QemuSettings, QemuVmm};
use lobster_core::vmm::{ConsoleLog, Snapshot, VmConfig, VmIdentity, VmStatus, Vmm};
use lobster_testkit::evidence::{alive, kill};
use lobster_testkit::images::{
    first_counter, last_counter, test_guest, TEST_GUEST_READY as MARKER,
};
use lobster_testkit::vm::{blank_disks, vm_config};

const ROLE_ENV: &str = "LOBSTER_T2_ROLE";
const DIR_ENV: &str = "LOBSTER_T2_DIR";

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("role needs a directory"));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(act(&role, &dir));
        // Leaving now: the runtime and every handle drop, the VM must not.
        return;
    }
    let args = Arguments::from_args();
    let trials = vec![Trial::test(
        "vm_outlives_its_launcher_and_later_processes_snapshot_and_restore_it",
        outlives_and_restores,
    )
    .with_ignored_flag(true)];
    libtest_mimic::run(&args, trials).exit();
}

fn backend(config: &VmConfig) -> QemuVmm {
    QemuVmm::new(QemuSettings::from_config(
        &VmmConfig::default(),
        &config.kernel,
    ))
}

fn read<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> T {
    serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
}

fn write(dir: &Path, name: &str, value: &impl serde::Serialize) {
    std::fs::write(dir.join(name), serde_json::to_vec(value).unwrap()).unwrap();
}

/// One role, run in its own process.
async fn act(role: &str, dir: &Path) {
    let config: VmConfig = read(dir, "config.json");
    let vmm = backend(&config);
    let console = ConsoleLog::new(&config.paths.console_log, 1 << 30);
    match role {
        "launch" => {
            let vm = vmm.launch(&config).await.expect("launch");
            write(dir, "identity.json", &vm.identity());
            console
                .wait_for(MARKER, 0, Duration::from_secs(90))
                .await
                .expect("boot marker");
            console
                .wait_for("n=5", 0, Duration::from_secs(30))
                .await
                .expect("counter");
        }
        "snapshot" => {
            let identity: VmIdentity = read(dir, "identity.json");
            let vm = vmm.attach(&config, identity).await.expect("attach");
            assert_eq!(vm.status().await.unwrap(), VmStatus::Running);
            vm.pause().await.expect("pause");
            let frozen = last_counter(&console.read_all()).expect("a counter before the snapshot");
            let snapshot = vm.snapshot().await.expect("snapshot");
            vm.kill().await.expect("kill");
            write(
                dir,
                "snapshot.json",
                &(snapshot, frozen, console.read_all().len()),
            );
        }
        "restore" => {
            let (snapshot, _, _): (Snapshot, u64, usize) = read(dir, "snapshot.json");
            let vm = vmm
                .restore(&config, &snapshot, true)
                .await
                .expect("restore");
            write(dir, "restored.json", &vm.identity());
        }
        other => panic!("unknown role {other}"),
    }
}

fn run_role(role: &str, dir: &Path) -> Result<(), Failed> {
    let output = Command::new(std::env::current_exe()?)
        .env(ROLE_ENV, role)
        .env(DIR_ENV, dir)
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "role {role} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

fn outlives_and_restores() -> Result<(), Failed> {
    let (kernel, initrd) = test_guest("vmlinux");
    let dir = tempfile::tempdir()?;
    let mut config = vm_config(dir.path(), "t2-procs", kernel);
    config.initrd = Some(initrd);
    blank_disks(&config);
    write(dir.path(), "config.json", &config);
    let console = ConsoleLog::new(&config.paths.console_log, 1 << 30);
    let mut started = Vec::new();
    let result = (|| -> Result<(), Failed> {
        run_role("launch", dir.path())?;
        let first: VmIdentity = read(dir.path(), "identity.json");
        started.push(first);
        if !alive(first) {
            return Err("the vm died with the process that launched it".into());
        }

        run_role("snapshot", dir.path())?;
        if alive(first) {
            return Err("the vm survived kill".into());
        }
        run_role("restore", dir.path())?;
        let second: VmIdentity = read(dir.path(), "restored.json");
        started.push(second);
        if !alive(second) {
            return Err("the restored vm died with the process that restored it".into());
        }
        let (_, frozen, restore_from): (Snapshot, u64, usize) = read(dir.path(), "snapshot.json");

        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let vm = backend(&config).attach(&config, second).await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let after = loop {
                let text = console.read_all();
                let after = text[restore_from.min(text.len())..].to_string();
                if last_counter(&after).is_some_and(|n| n > frozen + 3) {
                    break after;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err::<(), Failed>(
                        format!("restored guest did not count on from {frozen}").into(),
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let first_after = first_counter(&after);
            if first_after != Some(frozen + 1) || after.contains(MARKER) {
                return Err(format!(
                    "guest state not kept: froze at {frozen}, restored output:\n{after}"
                )
                .into());
            }
            vm.kill().await?;
            Ok(())
        })?;
        if alive(second) || config.paths.api_socket.exists() {
            return Err("process or socket left behind".into());
        }
        Ok(())
    })();
    if result.is_err() {
        eprintln!(
            "---- guest console ----\n{}\n----",
            console.tail_bytes(16 * 1024)
        );
        // Only the VMs this test started, by pid, if still the same process.
        for name in ["identity.json", "restored.json"] {
            if let Ok(bytes) = std::fs::read(dir.path().join(name)) {
                started.extend(serde_json::from_slice::<VmIdentity>(&bytes).ok());
            }
        }
        for identity in started {
            kill(identity);
        }
    }
    result
}

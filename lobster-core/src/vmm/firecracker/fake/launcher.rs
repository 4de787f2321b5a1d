//! Plugging the fake into the Firecracker backend.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{FakeFirecracker, FakeOptions};
use crate::vmm::firecracker::Launcher;
use crate::vmm::{ConsoleLog, Result, VmProcess};

/// A [`Launcher`] that runs every VM against a [`FakeFirecracker`]: a
/// stand-in process is spawned and supervised as the VMM, and the fake
/// serves the `--api-sock` from the planned argv until it dies. Given the
/// jailer's argv, it stands in for the jailer too: the fake serves in the
/// chroot `<--chroot-base-dir>/<exec file name>/<--id>/root`, where
/// Firecracker's paths then point.
#[derive(Debug, Clone, Default)]
pub struct FakeLauncher {
    fakes: Arc<Mutex<Vec<FakeFirecracker>>>,
    options: FakeOptions,
    /// Arguments of every launch (program first).
    launches: Arc<Mutex<Vec<Vec<String>>>>,
}

impl FakeLauncher {
    /// A launcher whose fakes use `options` (the id is taken from the argv).
    pub fn new(options: FakeOptions) -> FakeLauncher {
        FakeLauncher {
            options,
            ..FakeLauncher::default()
        }
    }

    /// The fakes started so far, in launch order.
    pub fn fakes(&self) -> Vec<FakeFirecracker> {
        self.fakes.lock().unwrap().clone()
    }

    /// The argv of every launch so far (program first).
    pub fn launches(&self) -> Vec<Vec<String>> {
        self.launches.lock().unwrap().clone()
    }
}

impl Launcher for FakeLauncher {
    fn launch(
        &self,
        vm_id: &str,
        program: &Path,
        args: &[String],
        console: ConsoleLog,
    ) -> Result<VmProcess> {
        let mut argv = vec![program.display().to_string()];
        argv.extend(args.iter().cloned());
        self.launches.lock().unwrap().push(argv);
        let flag = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let mut socket = PathBuf::from(flag("--api-sock").unwrap_or_default());
        let mut options = self.options.clone();
        options.id = flag("--id").unwrap_or_else(|| vm_id.to_string());
        if let (Some(base), Some(exec)) = (flag("--chroot-base-dir"), flag("--exec-file")) {
            let exec = Path::new(&exec).file_name().unwrap_or_default();
            let root = Path::new(&base).join(exec).join(&options.id).join("root");
            socket = root.join(socket.strip_prefix("/").unwrap_or(&socket));
            options.root = Some(root);
        }
        match FakeFirecracker::start(&socket, options) {
            Ok(fake) => {
                // Exits 0 on SIGTERM, as Firecracker does after the guest
                // reboots. Its command line carries the Firecracker argv
                // (as `$0 $@`), as a real unjailed Firecracker's does.
                let mut stand_in = Command::new("sh");
                stand_in.args([
                    "-c",
                    // The sleep does not hold the console: the log keeper
                    // ends with the stand-in, as with a real VMM.
                    "trap 'kill $! 2>/dev/null; exit 0' TERM; sleep 3600 >/dev/null 2>&1 & wait",
                    "fake-firecracker",
                ]);
                stand_in.args(args);
                let process = VmProcess::spawn(vm_id, stand_in, console)?;
                let on_exit = process.clone();
                fake.on_exit(Arc::new(move || {
                    let _ = on_exit.signal(libc::SIGTERM);
                }));
                let watcher = process.clone();
                let served = fake.clone();
                tokio::spawn(async move {
                    watcher.wait_exit(Duration::from_secs(24 * 3600)).await;
                    served.stop();
                });
                self.fakes.lock().unwrap().push(fake);
                Ok(process)
            }
            Err(e) => {
                // What Firecracker itself does when its socket path is taken.
                let mut failing = Command::new("sh");
                failing.args([
                    "-c",
                    &format!(
                        "echo 'Error: Failed to open the API socket at {}: {e}' >&2; exit 1",
                        socket.display()
                    ),
                ]);
                VmProcess::spawn(vm_id, failing, console)
            }
        }
    }
}

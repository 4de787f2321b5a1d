//! Choosing QEMU's accelerator. `/dev/kvm` existing proves little (here it
//! is a nested PVM hypervisor on which ordinary guests die of "emulation
//! failure"), so `auto` probes in two steps and uses KVM only if both pass:
//! 1. a tiny long-mode guest through KVM_RUN (cheap: catches a missing or
//!    inaccessible `/dev/kvm`; a nested PVM passes this one), then
//! 2. a real boot of the guest kernel under `qemu -accel kvm`, without a
//!    root filesystem, which must reach its "no root" panic in time.
//!
//! The outcome is cached per process and per host boot (a file under
//! `/run`, keyed by boot id and kernel). TCG then needs the host TSC rate on
//! the kernel command line, or guests hang at random during boot.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config::Accel;

/// The accelerator a VM runs with, with what its command line needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accelerator {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg {
        /// Translation block cache size in MiB.
        tb_size_mib: u32,
        /// Host TSC frequency in kHz (`tsc_early_khz=`).
        tsc_khz: u64,
    },
}

/// How long the boot probe may take; a working KVM needs well under a second.
const BOOT_PROBE_TIMEOUT: Duration = Duration::from_secs(8);
/// The host-wide cache of the probe's outcome.
const PROBE_CACHE: &str = "/run/lobster-kvm-probe";

/// The outcome of the KVM probe, computed once per process.
static KVM_PROBE: OnceLock<Result<(), String>> = OnceLock::new();

/// Whether KVM really runs guests here: `qemu` boots `kernel` as the probe
/// (cached per process and per host boot; logged).
pub fn kvm_usable(qemu: &Path, kernel: &Path) -> Result<(), String> {
    KVM_PROBE
        .get_or_init(|| {
            let key = cache_key(qemu, kernel);
            if let Some(cached) = key.as_deref().and_then(read_cache) {
                tracing::debug!(?cached, "kvm probe outcome from {PROBE_CACHE}");
                return cached;
            }
            let result = run_probe_bounded().and_then(|()| boot_probe(qemu, kernel));
            match &result {
                Ok(()) => tracing::info!("kvm probe guests ran: kvm is usable"),
                Err(reason) => tracing::info!(%reason, "kvm is not usable"),
            }
            if let Some(key) = key {
                write_cache(&key, &result);
            }
            result
        })
        .clone()
}

/// Boots `kernel` under KVM with no root filesystem and waits for its
/// "no root" panic on the console.
pub fn boot_probe(qemu: &Path, kernel: &Path) -> Result<(), String> {
    let mut child = Command::new(qemu)
        .args([
            "-accel",
            "kvm",
            "-machine",
            "microvm,acpi=on",
            "-cpu",
            "host",
            "-m",
            "128M",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(kernel)
        .args([
            "-append",
            "console=ttyS0 panic=-1 pci=off root=/dev/lobster-probe-none",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut last = String::new();
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if line.contains("Kernel panic") || line.contains("VFS: Cannot open root") {
                let _ = tx.send(Ok(()));
                return;
            }
            last = line;
        }
        let _ = tx.send(Err(format!(
            "guest stopped without reaching its root mount; last line: {last:?}"
        )));
    });
    let started = Instant::now();
    let outcome = rx.recv_timeout(BOOT_PROBE_TIMEOUT).unwrap_or_else(|_| {
        Err(format!(
            "guest kernel did not boot within {BOOT_PROBE_TIMEOUT:?}"
        ))
    });
    let _ = child.kill();
    let status = child.wait();
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
    }
    tracing::debug!(elapsed = ?started.elapsed(), ?status, stderr = %stderr.trim(), "kvm boot probe");
    outcome.map_err(|reason| {
        match stderr
            .lines()
            .find(|l| !l.contains("terminating on signal"))
        {
            Some(line) => format!("{reason} (qemu: {line})"),
            None => reason,
        }
    })
}

fn cache_key(qemu: &Path, kernel: &Path) -> Option<String> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let mtime = std::fs::metadata(kernel).ok()?.modified().ok()?;
    Some(format!(
        "{} {} {} {:?}",
        boot_id.trim(),
        qemu.display(),
        kernel.display(),
        mtime
    ))
}

fn read_cache(key: &str) -> Option<Result<(), String>> {
    let text = std::fs::read_to_string(PROBE_CACHE).ok()?;
    let (cached_key, outcome) = text.split_once('\n')?;
    if cached_key != key {
        return None;
    }
    Some(match outcome.strip_prefix("unusable: ") {
        Some(reason) => Err(reason.trim_end().to_string()),
        None if outcome.trim_end() == "usable" => Ok(()),
        None => return None,
    })
}

fn write_cache(key: &str, outcome: &Result<(), String>) {
    let line = match outcome {
        Ok(()) => "usable".to_string(),
        Err(reason) => format!("unusable: {}", reason.replace('\n', " ")),
    };
    let tmp = PathBuf::from(format!("{PROBE_CACHE}.{}", std::process::id()));
    if std::fs::write(&tmp, format!("{key}\n{line}\n")).is_ok() {
        let _ = std::fs::rename(&tmp, PROBE_CACHE);
    }
}

fn run_probe_bounded() -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    // A broken hypervisor might never return from KVM_RUN: bound it, and
    // let the thread leak in that case.
    std::thread::Builder::new()
        .name("kvm-probe".into())
        .spawn(move || {
            let _ = tx.send(crate::sys::kvm::probe_kvm_runs_guest().map_err(|e| e.to_string()));
        })
        .map_err(|e| format!("cannot start probe thread: {e}"))?;
    rx.recv_timeout(std::time::Duration::from_secs(5))
        .unwrap_or_else(|_| Err("probe guest did not finish within 5 s".into()))
}

/// Resolves the configured accelerator; `auto` probes KVM by booting
/// `kernel` with `qemu`. Logs the choice.
pub fn choose(configured: Accel, tb_size_mib: u32, qemu: &Path, kernel: &Path) -> Accelerator {
    let tcg = || Accelerator::Tcg {
        tb_size_mib,
        tsc_khz: host_tsc_khz().unwrap_or(0),
    };
    let (chosen, why) = match configured {
        Accel::Kvm => (Accelerator::Kvm, "configured".to_string()),
        Accel::Tcg => (tcg(), "configured".to_string()),
        Accel::Auto => match kvm_usable(qemu, kernel) {
            Ok(()) => (Accelerator::Kvm, "kvm probe guest ran".to_string()),
            Err(reason) => (tcg(), format!("kvm unusable: {reason}")),
        },
    };
    tracing::info!(accel = ?chosen, why, "qemu accelerator chosen");
    chosen
}

/// The host CPU frequency in kHz from `/proc/cpuinfo` (`cpu MHz`).
pub fn host_tsc_khz() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    parse_cpu_khz(&text)
}

fn parse_cpu_khz(cpuinfo: &str) -> Option<u64> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key.trim() != "cpu MHz" {
            return None;
        }
        let mhz: f64 = value.trim().parse().ok()?;
        Some((mhz * 1000.0).round() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_khz_comes_from_the_first_cpu_mhz_line() {
        let text = "processor\t: 0\nmodel name\t: X\ncpu MHz\t\t: 2199.998\n\nprocessor\t: 1\ncpu MHz\t\t: 1000.0\n";
        assert_eq!(parse_cpu_khz(text), Some(2_199_998));
        assert_eq!(parse_cpu_khz("nothing"), None);
    }

    #[test]
    fn configured_accelerators_skip_the_probe() {
        let none = Path::new("/nonexistent");
        assert_eq!(choose(Accel::Kvm, 32, none, none), Accelerator::Kvm);
        assert!(matches!(
            choose(Accel::Tcg, 16, none, none),
            Accelerator::Tcg {
                tb_size_mib: 16,
                ..
            }
        ));
    }
}

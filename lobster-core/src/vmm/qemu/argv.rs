//! Planning QEMU's command line from a [`VmConfig`] (pure; golden-tested).
//!
//! The `microvm` machine with ACPI describes its virtio-mmio devices, so an
//! ACPI-capable kernel finds disks (`vda`, `vdb` in command-line order) and
//! the NIC without `virtio_mmio.device=` parameters. Console and QEMU's own
//! messages go to stdout, which the supervisor points at the console log.

use super::accel::Accelerator;
use crate::vmm::vm_config::join_boot_args;
use crate::vmm::{Result, VmConfig, VmmError};

/// Arguments the QEMU backend adds to every guest command line.
pub const BOOT_ARGS: [&str; 4] = ["console=ttyS0", "reboot=t", "panic=-1", "pci=off"];

/// QEMU's seccomp filter for jailed VMs.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// How the planned process starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Boot the kernel.
    Boot,
    /// Wait paused for a migration stream (`-incoming defer`, then
    /// `migrate-incoming` over QMP).
    Incoming,
}

/// The kernel command line QEMU passes to the guest.
pub fn kernel_cmdline(config: &VmConfig, accel: &Accelerator) -> String {
    let mut extra: Vec<String> = BOOT_ARGS.iter().map(|s| s.to_string()).collect();
    if let Accelerator::Tcg { tsc_khz, .. } = accel {
        if *tsc_khz > 0 {
            extra.push(format!("tsc_early_khz={tsc_khz}"));
        }
        extra.push("tsc=reliable".into());
    }
    join_boot_args(&config.boot_args, &extra)
}

/// QEMU's arguments (without the binary) for `config`.
pub fn plan(config: &VmConfig, accel: &Accelerator, start: Start) -> Result<Vec<String>> {
    config.validate()?;
    let path = |field: &str, p: &std::path::Path| -> Result<String> {
        let text = p.to_str().ok_or_else(|| VmmError::InvalidConfig {
            vm: config.vm_id.clone(),
            field: field.to_string(),
            reason: format!("{} is not valid UTF-8", p.display()),
        })?;
        Ok(escape(text))
    };
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));

    push(&[
        "-name",
        &format!("{},debug-threads=on", escape(&config.vm_id)),
    ]);
    push(&["-machine", "microvm,acpi=on,rtc=on"]);
    match accel {
        Accelerator::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        Accelerator::Tcg { tb_size_mib, .. } => push(&[
            "-accel",
            &format!("tcg,tb-size={tb_size_mib}"),
            "-cpu",
            "max",
        ]),
    }
    push(&["-smp", &config.vcpus.to_string()]);
    push(&["-m", &format!("{}M", config.memory_mib)]);
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ]);
    push(&["-kernel", &path("kernel", &config.kernel)?]);
    if let Some(initrd) = &config.initrd {
        push(&["-initrd", &path("initrd", initrd)?]);
    }
    push(&["-append", &kernel_cmdline(config, accel)]);
    for (i, drive) in config.drives.iter().enumerate() {
        let mut spec = format!(
            "id={},file={},format=raw,if=none,cache=none,aio=threads",
            drive.id,
            path(&format!("drives[{i}].path"), &drive.path)?
        );
        if drive.read_only {
            spec.push_str(",readonly=on");
        }
        if let Some(limiter) = &drive.rate_limiter {
            if let Some(b) = limiter.bandwidth {
                spec.push_str(&format!(",throttling.bps-total={}", b.per_second()));
            }
            if let Some(o) = limiter.ops {
                spec.push_str(&format!(",throttling.iops-total={}", o.per_second()));
            }
        }
        push(&["-drive", &spec]);
        push(&["-device", &format!("virtio-blk-device,drive={}", drive.id)]);
    }
    if let Some(nic) = &config.nic {
        push(&[
            "-netdev",
            &format!(
                "tap,id={},ifname={},script=no,downscript=no",
                nic.id,
                escape(&nic.tap)
            ),
        ]);
        push(&[
            "-device",
            &format!("virtio-net-device,netdev={},mac={}", nic.id, nic.mac),
        ]);
    }
    push(&[
        "-qmp",
        &format!(
            "unix:{},server=on,wait=off",
            path("paths.api_socket", &config.paths.api_socket)?
        ),
    ]);
    if config.jail.is_some() {
        // QEMU starts confined (its uid, cgroup and jail root are set up by
        // the launcher before exec); its own seccomp filter then denies
        // obsolete calls, gaining privileges, spawning processes and
        // changing resource controls (scheduling, cpu affinity).
        push(&["-sandbox", SANDBOX]);
    }
    if start == Start::Incoming {
        push(&["-S", "-incoming", "defer"]);
    }
    Ok(args)
}

/// QEMU option values escape `,` by doubling it.
fn escape(value: &str) -> String {
    value.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::vm_config::tests::sample;

    #[test]
    fn tcg_plan_matches_golden_command_line() {
        let accel = Accelerator::Tcg {
            tb_size_mib: 32,
            tsc_khz: 2_200_000,
        };
        let args = plan(&sample(), &accel, Start::Boot).unwrap();
        let golden = [
            "-name", "vm-alice,debug-threads=on",
            "-machine", "microvm,acpi=on,rtc=on",
            "-accel", "tcg,tb-size=32", "-cpu", "max",
            "-smp", "2", "-m", "1024M",
            "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
            "-kernel", "/img/vmlinux",
            "-initrd", "/img/initramfs.cpio.gz",
            "-append", "quiet lobster.ip=10.200.0.2/30 console=ttyS0 reboot=t panic=-1 pci=off tsc_early_khz=2200000 tsc=reliable",
            "-drive", "id=rootfs,file=/img/rootfs.ext4,format=raw,if=none,cache=none,aio=threads,readonly=on",
            "-device", "virtio-blk-device,drive=rootfs",
            "-drive", "id=overlay,file=/var/lib/lobsterd/overlays/alice.ext4,format=raw,if=none,cache=none,aio=threads,throttling.bps-total=52428800,throttling.iops-total=5000",
            "-device", "virtio-blk-device,drive=overlay",
            "-netdev", "tap,id=eth0,ifname=lob-alice,script=no,downscript=no",
            "-device", "virtio-net-device,netdev=eth0,mac=06:00:0a:c8:00:02",
            "-qmp", "unix:/run/lobsterd/alice.sock,server=on,wait=off",
        ];
        assert_eq!(args, golden);
    }

    #[test]
    fn kvm_restore_plan_waits_for_incoming_and_has_no_tcg_clock_hints() {
        let mut config = sample();
        config.nic = None;
        config.initrd = None;
        config.kernel = "/img/a,b".into();
        let args = plan(&config, &Accelerator::Kvm, Start::Incoming).unwrap();
        let joined = args.join(" ");
        assert!(joined.contains("-accel kvm -cpu host"), "{joined}");
        assert!(!joined.contains("tsc"), "{joined}");
        assert!(
            !joined.contains("-netdev") && !joined.contains("-initrd"),
            "{joined}"
        );
        assert!(joined.contains("-kernel /img/a,,b"), "{joined}");
        assert!(joined.ends_with("-S -incoming defer"), "{joined}");
    }

    #[test]
    fn a_jailed_qemu_runs_under_its_seccomp_sandbox() {
        let mut config = sample();
        config.jail = Some(crate::vmm::Jail::for_tenant(
            &crate::config::VmmConfig::default(),
            crate::config::BackendKind::Qemu,
            "0a1b2c3d",
            10007,
            1,
            256,
            None,
        ));
        let args = plan(&config, &Accelerator::Kvm, Start::Boot).unwrap();
        assert!(
            args.join(" ").ends_with(
                "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
            ),
            "{args:?}"
        );
    }

    #[test]
    fn invalid_config_is_rejected_before_planning() {
        let mut config = sample();
        config.vcpus = 0;
        let err = plan(&config, &Accelerator::Kvm, Start::Boot).unwrap_err();
        assert!(err.to_string().contains("vcpus"), "{err}");
    }
}

//! `snap`: a point-in-time copy of a tenant's overlay disk.
//!
//! A running VM is paused for the copy (both VMMs drain in-flight disk I/O
//! when they stop the guest), so the image is crash-consistent: exactly what
//! the disk held at that instant, as after a power cut, which ext4's journal
//! recovers. The copy keeps the disk's holes and takes milliseconds; the VM
//! resumes before the copy is compressed. The archive is a zstd stream of
//! the raw ext4 image (`zstd -d --sparse` restores it sparse), mode 0600:
//! the disk may hold the workload's secrets.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::base::blocking;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::overlay::copy_sparse;

use super::plan;
use super::TenantError;

/// What `snap` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapReport {
    /// The archive.
    pub path: PathBuf,
    /// Size of the disk image it holds.
    pub disk_bytes: u64,
    /// Size of the archive.
    pub archive_bytes: u64,
    /// How long the VM was paused (0 when it was not running).
    pub paused_ms: u64,
}

pub(crate) async fn snap(
    context: &Context,
    name: &str,
    output: Option<PathBuf>,
) -> Result<SnapReport> {
    context.record(name).await?;
    let _lock = super::lock(context, name, super::OPERATION_LOCK_WAIT).await?;
    let record = context.record(name).await?;
    let config = context.config();
    let overlay = plan::overlay(config, &record);
    let dir = config.paths.snapshots_dir.clone();
    let stamp = crate::base::unix_secs();
    let output = output.unwrap_or_else(|| dir.join(format!("{name}-{stamp}.ext4.zst")));
    let copy = dir.join(format!(".{name}-{stamp}.ext4.copy"));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
    }
    .map_err(|e| io("cannot create", &dir, e))?;

    let vm = match record.vm {
        Some(running) => {
            let services = context.services().await?;
            let (kind, vm_config) = plan::vm(config, &record, services.default_backend);
            let vmm = (services.vmm)(kind);
            Some(vmm.attach(&vm_config, running.identity).await?)
        }
        None => None,
    };
    let paused = Instant::now();
    if let Some(vm) = &vm {
        vm.pause().await?;
    }
    let copied = {
        let (from, to) = (overlay.path().to_path_buf(), copy.clone());
        blocking(move || {
            copy_sparse(&from, &to).map_err(|e| io("cannot copy the overlay to", &to, e))
        })
        .await
    };
    let paused_ms = if let Some(vm) = &vm {
        let resumed = vm.resume().await;
        let ms = paused.elapsed().as_millis() as u64;
        resumed?;
        ms
    } else {
        0
    };
    copied?;
    let (from, to) = (copy.clone(), output.clone());
    let result = blocking(move || compress(&from, &to)).await;
    let _ = std::fs::remove_file(&copy);
    let (disk_bytes, archive_bytes) = result?;
    tracing::info!(tenant = name, path = %output.display(), paused_ms, "snapshot written");
    Ok(SnapReport {
        path: output,
        disk_bytes,
        archive_bytes,
        paused_ms,
    })
}

/// zstd-compresses `from` into `to` (via a temporary name), returning the
/// input and output sizes.
fn compress(from: &Path, to: &Path) -> Result<(u64, u64)> {
    let partial = to.with_extension("zst.partial");
    let run = || -> std::io::Result<(u64, u64)> {
        let mut input = std::fs::File::open(from)?;
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
        let mut encoder = zstd::stream::Encoder::new(out, 3)?;
        let disk = std::io::copy(&mut input, &mut encoder)?;
        let mut out = encoder.finish()?;
        out.flush()?;
        out.sync_all()?;
        std::fs::rename(&partial, to)?;
        Ok((disk, std::fs::metadata(to)?.len()))
    };
    run().map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        io("cannot write snapshot", to, e)
    })
}

fn io(context: &'static str, path: &Path, source: std::io::Error) -> Error {
    TenantError::Io {
        context,
        path: path.to_path_buf(),
        source,
    }
    .into()
}

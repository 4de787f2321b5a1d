//! `snap`: a point-in-time copy of a tenant's overlay disk.
//!
//! A running VM is paused for the copy (both VMMs drain in-flight disk I/O
//! when they stop the guest), so the image is crash-consistent: exactly what
//! the disk held at that instant, as after a power cut, which ext4's journal
//! recovers. The copy keeps the disk's holes and takes milliseconds; the VM
//! resumes before the copy is compressed. The archive is a zstd stream of
//! the raw ext4 image (`zstd -d --sparse` restores it sparse), mode 0600:
//! the disk may hold the workload's secrets.
//!
//! `spawn --from-snap` reads an archive back ([`Archive`]). It is hostile
//! input: before anything is allocated it must be a regular file starting
//! with a zstd frame whose content starts with an ext4 superblock; the
//! disk size that superblock declares (a whole number of MiB within the
//! overlay size range) is the restored overlay's size, and decompression
//! stops at exactly that many bytes with a bounded zstd window.

use std::io::{Read, Write};
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SnapReport {
    /// The archive.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
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

/// zstd frame magic (RFC 8878), little-endian on disk.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Largest zstd window a restore accepts (8 MiB, level 19's): bounds the
/// decoder's memory whatever the archive declares.
const MAX_WINDOW_LOG: u32 = 23;
/// Overlay sizes a restore accepts, as for a spec's `overlay_size_mib`.
const DISK_MIB: std::ops::RangeInclusive<u64> = 64..=1_048_576;

/// A `snap` archive checked for a restore: see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Archive {
    path: PathBuf,
    disk_mib: u32,
}

impl Archive {
    /// Checks the archive at `path` cheaply (its first 2 KiB of content).
    pub(crate) fn open(path: &Path) -> Result<Archive> {
        let bad = |reason: String| -> Error {
            TenantError::InvalidArchive {
                path: path.to_path_buf(),
                reason,
            }
            .into()
        };
        let file = open_regular(path)?;
        let mut decoder = decoder(file).map_err(|e| bad(format!("not a zstd stream: {e}")))?;
        let mut head = [0u8; 2048];
        decoder.read_exact(&mut head).map_err(|e| {
            bad(format!(
                "not a snap archive (a zstd-compressed ext4 image): {e}"
            ))
        })?;
        let sb = &head[1024..];
        let le32 = |at: usize| u32::from_le_bytes(sb[at..at + 4].try_into().expect("4 bytes"));
        if sb[56..58] != [0x53, 0xef] {
            return Err(bad("its content is not an ext4 filesystem".into()));
        }
        let log_block = le32(24);
        if log_block > 6 {
            return Err(bad(format!(
                "ext4 block size 1024 << {log_block} is not valid"
            )));
        }
        let incompat_64bit = le32(0x60) & 0x80 != 0;
        let blocks_hi = if incompat_64bit {
            u64::from(le32(0x150))
        } else {
            0
        };
        let blocks = blocks_hi << 32 | u64::from(le32(4));
        let bytes = u128::from(blocks) << (10 + log_block);
        if bytes % (1 << 20) != 0
            || !DISK_MIB.contains(&u64::try_from(bytes >> 20).unwrap_or(u64::MAX))
        {
            return Err(bad(format!(
                "its disk is {bytes} bytes; a restore takes a whole number of MiB in {}..={} MiB",
                DISK_MIB.start(),
                DISK_MIB.end()
            )));
        }
        Ok(Archive {
            path: path.to_path_buf(),
            disk_mib: (bytes >> 20) as u32,
        })
    }

    /// The size of the disk it holds, in MiB.
    pub(crate) fn disk_mib(&self) -> u32 {
        self.disk_mib
    }

    /// The raw disk image, decompressed as it is read (the caller stops at
    /// [`Archive::disk_mib`]).
    pub(crate) fn image(&self) -> Result<impl Read> {
        let file = open_regular(&self.path)?;
        decoder(file).map_err(|e| {
            TenantError::InvalidArchive {
                path: self.path.clone(),
                reason: format!("not a zstd stream: {e}"),
            }
            .into()
        })
    }
}

/// Opens `path` for reading, refusing anything but a regular file (a FIFO
/// or device would block or never end; `O_NONBLOCK` keeps the open itself
/// from waiting for a FIFO's writer).
fn open_regular(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| io("cannot open the snap archive (from_snap)", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| io("cannot read the snap archive (from_snap)", path, e))?;
    if !meta.is_file() {
        return Err(TenantError::InvalidArchive {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        }
        .into());
    }
    Ok(file)
}

/// A zstd decoder over `file` that first checks the frame magic and
/// refuses windows above [`MAX_WINDOW_LOG`].
fn decoder(mut file: std::fs::File) -> std::io::Result<impl Read> {
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)?;
    if magic != ZSTD_MAGIC {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no zstd frame magic",
        ));
    }
    let mut decoder = zstd::stream::read::Decoder::new(std::io::Cursor::new(magic).chain(file))?;
    decoder.window_log_max(MAX_WINDOW_LOG)?;
    Ok(decoder)
}

fn io(context: &'static str, path: &Path, source: std::io::Error) -> Error {
    TenantError::Io {
        context,
        path: path.to_path_buf(),
        source,
    }
    .into()
}

//! Per-tenant writable overlay disks.
//!
//! A tenant's disk is a sparse ext4 image joined with the shared read-only
//! base inside the guest (overlayfs). Spawning one must be cheap, so blank
//! images are made once per size (`mkfs.ext4`, cached as a template under the
//! overlays directory) and each tenant gets a sparse copy: a reflink where
//! the filesystem can, otherwise only the template's data extents are copied
//! (`SEEK_DATA`/`SEEK_HOLE`), so a 4 GiB disk costs a few MiB and no
//! subprocess.

mod sparse;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::base::{Classify, ErrorKind};

pub use sparse::{copy_sparse, write_sparse};

/// Errors of overlay disks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OverlayError {
    /// An I/O error on a named path.
    #[error("{context} {}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `mkfs.ext4` failed.
    #[error("mkfs.ext4 for {} failed: {stderr}", path.display())]
    Mkfs {
        /// The image being made.
        path: PathBuf,
        /// What it printed.
        stderr: String,
    },
    /// The disk exists already.
    #[error("overlay disk {} exists already", .0.display())]
    Exists(PathBuf),
    /// The filesystem holding the overlays cannot hold one more at its
    /// full size under the overcommit ratio.
    #[error(
        "no room for a {new_mib} MiB overlay in {}: the {overlays} existing overlays \
         and it may grow to {committed_mib} MiB, but the filesystem has {available_mib} MiB \
         free plus {written_mib} MiB they have written, and the overcommit of \
         {overcommit_percent}% allows {allowed_mib} MiB",
        dir.display()
    )]
    NoRoom {
        /// The overlays directory.
        dir: PathBuf,
        /// The new overlay's size.
        new_mib: u64,
        /// How many overlays exist.
        overlays: usize,
        /// Sizes of the existing overlays plus the new one.
        committed_mib: u64,
        /// Free space on the filesystem.
        available_mib: u64,
        /// Space the existing overlays already occupy.
        written_mib: u64,
        /// `storage.overlay_overcommit_percent`.
        overcommit_percent: u32,
        /// What the ratio allows: (free + written) × percent / 100.
        allowed_mib: u64,
    },
}

impl Classify for OverlayError {
    fn kind(&self) -> ErrorKind {
        match self {
            OverlayError::Io { source, .. } => ErrorKind::from_io(source),
            OverlayError::Mkfs { .. } => ErrorKind::HostFailure,
            OverlayError::Exists(_) => ErrorKind::AlreadyExists,
            OverlayError::NoRoom { .. } => ErrorKind::Exhausted,
        }
    }
}

type Result<T, E = OverlayError> = std::result::Result<T, E>;

/// One tenant's overlay disk image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    path: PathBuf,
    size_mib: u32,
}

/// What is on disk for an overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverlayCheck {
    /// The image file.
    pub path: PathBuf,
    /// Whether it exists as a regular file.
    pub present: bool,
    /// Its apparent size in bytes.
    pub size_bytes: u64,
    /// Bytes actually allocated on the host.
    pub allocated_bytes: u64,
}

impl Overlay {
    /// The overlay disk of tenant `name` (with short id `id`) in `dir`.
    pub fn new(dir: &Path, name: &str, id: &str, size_mib: u32) -> Overlay {
        Overlay {
            path: dir.join(format!("{name}-{id}.ext4")),
            size_mib,
        }
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in MiB.
    pub fn size_mib(&self) -> u32 {
        self.size_mib
    }

    /// Creates the disk as a sparse copy of the blank template of its size
    /// (making the template first if needed). Fails if the disk exists.
    pub fn create(&self) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let template = blank_template(dir, self.size_mib)?;
        if self.path.exists() {
            return Err(OverlayError::Exists(self.path.clone()));
        }
        self.place("cannot copy template to", |tmp| copy_sparse(&template, tmp))
    }

    /// Creates the disk from a raw image read from `image` (a restore):
    /// exactly the disk's size is written, zero blocks left as holes, and
    /// an image that is shorter or longer fails. Fails if the disk exists.
    pub fn create_from(&self, image: impl std::io::Read) -> Result<()> {
        if self.path.exists() {
            return Err(OverlayError::Exists(self.path.clone()));
        }
        let len = u64::from(self.size_mib) << 20;
        self.place("cannot write the restored image to", |tmp| {
            write_sparse(image, tmp, len)
        })
    }

    /// Writes the disk to a temporary name with `write`, then renames it
    /// into place (a crash never leaves a half-written disk at the path).
    fn place(
        &self,
        context: &'static str,
        write: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<()> {
        let tmp = self.path.with_extension("ext4.partial");
        write(&tmp).map_err(|source| OverlayError::Io {
            context,
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &self.path).map_err(|source| OverlayError::Io {
            context: "cannot move into place",
            path: self.path.clone(),
            source,
        })
    }

    /// Deletes the disk; a missing disk is not an error.
    pub fn remove(&self) -> Result<()> {
        for path in [self.path.with_extension("ext4.partial"), self.path.clone()] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(OverlayError::Io {
                        context: "cannot remove",
                        path,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Fails with [`OverlayError::NoRoom`] unless the filesystem holding
    /// this (not yet created) overlay can hold it and the `existing` ones at
    /// their full sizes, overcommitted by `overcommit_percent`: the sizes of
    /// all of them must fit in `percent`% of the space they can use (what is
    /// free plus what the existing ones have written already).
    pub fn ensure_room(&self, existing: &[Overlay], overcommit_percent: u32) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let statted = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
        let available =
            crate::sys::file::available_bytes(statted).map_err(|source| OverlayError::Io {
                context: "cannot read the free space of",
                path: statted.to_path_buf(),
                source,
            })?;
        let written: u64 = existing.iter().map(|o| o.check().allocated_bytes).sum();
        let committed: u64 = existing
            .iter()
            .chain([self])
            .map(|o| u64::from(o.size_mib) << 20)
            .sum();
        let allowed = u128::from(available + written) * u128::from(overcommit_percent) / 100;
        if u128::from(committed) <= allowed {
            return Ok(());
        }
        Err(OverlayError::NoRoom {
            dir: dir.to_path_buf(),
            new_mib: u64::from(self.size_mib),
            overlays: existing.len(),
            committed_mib: committed >> 20,
            available_mib: available >> 20,
            written_mib: written >> 20,
            overcommit_percent,
            allowed_mib: u64::try_from(allowed >> 20).unwrap_or(u64::MAX),
        })
    }

    /// Reports what is on disk.
    pub fn check(&self) -> OverlayCheck {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.is_file() => OverlayCheck {
                path: self.path.clone(),
                present: true,
                size_bytes: meta.len(),
                allocated_bytes: meta.blocks() * 512,
            },
            _ => OverlayCheck {
                path: self.path.clone(),
                present: false,
                size_bytes: 0,
                allocated_bytes: 0,
            },
        }
    }
}

/// The blank ext4 image of `size_mib` in `dir`, made on first use.
pub fn blank_template(dir: &Path, size_mib: u32) -> Result<PathBuf> {
    let templates = dir.join(".templates");
    let template = templates.join(format!("blank-{size_mib}m.ext4"));
    if template.is_file() {
        return Ok(template);
    }
    std::fs::create_dir_all(&templates).map_err(|source| OverlayError::Io {
        context: "cannot create",
        path: templates.clone(),
        source,
    })?;
    // Unique temporary name: concurrent spawns may race to make the same
    // template; each makes its own and the renames are atomic.
    let tmp = templates.join(format!("blank-{size_mib}m.{}.tmp", std::process::id()));
    let io = |context| {
        let path = tmp.clone();
        move |source| OverlayError::Io {
            context,
            path,
            source,
        }
    };
    std::fs::File::create(&tmp)
        .and_then(|f| f.set_len(u64::from(size_mib) << 20))
        .map_err(io("cannot create"))?;
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-L", "lobster-overlay"])
        .args(["-E", "lazy_itable_init=1,lazy_journal_init=1"])
        .arg(&tmp)
        .output()
        .map_err(io("cannot run mkfs.ext4 for"))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(OverlayError::Mkfs {
            path: tmp.clone(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    if let Err(source) = std::fs::rename(&tmp, &template) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("cannot move template into place:")(source));
    }
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_sparse_and_a_real_ext4_image() {
        let dir = tempfile::tempdir().unwrap();
        let overlay = Overlay::new(dir.path(), "alice", "0a1b2c3d", 128);
        overlay.create().unwrap();
        let check = overlay.check();
        assert!(check.present);
        assert_eq!(check.size_bytes, 128 << 20);
        assert!(check.allocated_bytes < 16 << 20, "not sparse: {check:?}");
        // ext4 superblock magic 0xEF53 at offset 1024 + 56.
        let bytes = std::fs::read(overlay.path()).unwrap();
        assert_eq!(&bytes[1080..1082], &[0x53, 0xEF]);
        let template = blank_template(dir.path(), 128).unwrap();
        assert_eq!(bytes, std::fs::read(template).unwrap());
        assert!(matches!(overlay.create(), Err(OverlayError::Exists(_))));
    }

    #[test]
    fn remove_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let overlay = Overlay::new(dir.path(), "bob", "00000001", 64);
        overlay.create().unwrap();
        overlay.remove().unwrap();
        assert!(!overlay.check().present);
        overlay.remove().unwrap();
    }
}

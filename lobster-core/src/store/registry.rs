//! Reading and writing `registry.json`: shared-lock reads, snapshots that
//! tell in one `stat` whether anyone wrote since, and atomic updates.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Deserialize;

use super::{Registry, Result, Store, StoreError, TenantRecord, SCHEMA_VERSION};

/// A registry as read by [`Store::snapshot`], with a hold on its file.
#[derive(Debug)]
pub struct RegistrySnapshot {
    /// The registry's content.
    pub registry: Registry,
    version: Option<FileVersion>,
}

/// The file a snapshot was read from, kept open (so its inode is not reused).
#[derive(Debug)]
struct FileVersion {
    file: File,
    stamp: FileStamp,
}

/// What identifies one version of the registry file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

impl Store {
    /// Reads the registry under a shared lock (a missing file is empty).
    pub fn read(&self) -> Result<Registry> {
        let _lock = self.lock_registry(false)?;
        self.load()
    }

    /// Reads the registry like [`Store::read`] and keeps the file it came
    /// from open, so [`Store::changed_since`] can later tell in one `stat`
    /// whether anyone wrote since (instead of parsing it again).
    pub fn snapshot(&self) -> Result<RegistrySnapshot> {
        let _lock = self.lock_registry(false)?;
        let (registry, version) = self.load_version()?;
        Ok(RegistrySnapshot { registry, version })
    }

    /// Whether the registry was written since `snapshot` was read. Every
    /// write replaces the file (rename), and the snapshot holds the old one
    /// open so its inode cannot be reused: the same inode at the path means
    /// no write (size and mtime guard against edits in place).
    pub fn changed_since(&self, snapshot: &RegistrySnapshot) -> Result<bool> {
        let now = match std::fs::metadata(&self.registry) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(snapshot.version.is_some())
            }
            Err(source) => {
                return Err(StoreError::Io {
                    context: "cannot stat registry",
                    path: self.registry.clone(),
                    source,
                })
            }
        };
        let Some(version) = &snapshot.version else {
            return Ok(true);
        };
        let held = version.file.metadata().map_err(|source| StoreError::Io {
            context: "cannot stat registry",
            path: self.registry.clone(),
            source,
        })?;
        Ok(FileStamp::of(&now) != version.stamp || FileStamp::of(&held) != version.stamp)
    }

    /// Runs `change` on the registry under an exclusive lock and writes the
    /// result atomically if it changed. An error from `change` writes nothing.
    pub fn update<T, E>(&self, change: impl FnOnce(&mut Registry) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let _lock = self.lock_registry(true)?;
        let before = self.load()?;
        let mut after = before.clone();
        let out = change(&mut after)?;
        if after != before {
            self.write(&after)?;
        }
        Ok(out)
    }

    /// Applies `change` to one tenant's record and returns the new record.
    pub fn modify(
        &self,
        name: &str,
        change: impl FnOnce(&mut TenantRecord),
    ) -> Result<TenantRecord> {
        self.update(|reg| {
            let record = reg
                .tenants
                .get_mut(name)
                .ok_or_else(|| StoreError::NotFound(name.into()))?;
            change(record);
            Ok(record.clone())
        })
    }

    fn load(&self) -> Result<Registry> {
        self.load_version().map(|(registry, _)| registry)
    }

    /// The registry and the file version it was read from (`None`: no file).
    fn load_version(&self) -> Result<(Registry, Option<FileVersion>)> {
        let io = |source| StoreError::Io {
            context: "cannot read registry",
            path: self.registry.clone(),
            source,
        };
        let mut file = match File::open(&self.registry) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Registry::default(), None))
            }
            Err(source) => return Err(io(source)),
        };
        let stamp = FileStamp::of(&file.metadata().map_err(io)?);
        let mut text = Vec::with_capacity(stamp.len as usize);
        file.read_to_end(&mut text).map_err(io)?;
        let registry = self.parse(&text)?;
        Ok((registry, Some(FileVersion { file, stamp })))
    }

    fn parse(&self, text: &[u8]) -> Result<Registry> {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: self.registry.clone(),
            reason,
        };
        // Check the version first, so a newer format is named as such.
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let version: Version = serde_json::from_slice(text).map_err(|e| corrupt(e.to_string()))?;
        if version.schema_version != SCHEMA_VERSION {
            return Err(StoreError::SchemaVersion {
                path: self.registry.clone(),
                found: version.schema_version,
            });
        }
        let registry: Registry =
            serde_json::from_slice(text).map_err(|e| corrupt(e.to_string()))?;
        for (key, record) in &registry.tenants {
            if key != &record.name {
                return Err(corrupt(format!(
                    "entry `{key}` holds tenant `{}`",
                    record.name
                )));
            }
        }
        Ok(registry)
    }

    fn write(&self, registry: &Registry) -> Result<()> {
        let io = |context, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io {
                context,
                path,
                source,
            }
        };
        let mut text = serde_json::to_vec_pretty(registry).expect("registry serialises");
        text.push(b'\n');
        // 0600: it holds every tenant's tokens.
        crate::base::replace_file(&self.registry, &text, 0o600)
            .map_err(io("cannot write", &self.registry))?;
        Ok(())
    }
}

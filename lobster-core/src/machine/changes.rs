//! What lobster changed on this host beyond its own directories, written
//! down as it changes it (`<state_dir>/host.json`, mode 0600), so that
//! `uninit` undoes exactly that and nothing the host had before: IPv4
//! forwarding only if lobster turned it on, Caddy's user only if lobster
//! created it, the Caddy lobster started (by its identity, so a reused pid
//! is never signalled), and the files it installed (the watchdog's unit,
//! shell completions, man pages).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::MachineError;
use crate::vmm::VmIdentity;

/// The record of what lobster changed on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostChanges {
    /// lobster turned IPv4 forwarding on (it was off).
    pub ip_forwarding: bool,
    /// The system user lobster created for Caddy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caddy_user: Option<String>,
    /// The Caddy lobster started itself (`caddy run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caddy: Option<VmIdentity>,
    /// Files lobster installed outside its directories.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub files: BTreeSet<PathBuf>,
}

impl HostChanges {
    /// The record of a state directory.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("host.json")
    }

    /// Reads the record (none yet: nothing recorded).
    pub fn read(state_dir: &Path) -> Result<HostChanges, MachineError> {
        let path = HostChanges::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| MachineError::Record {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostChanges::default()),
            Err(source) => Err(MachineError::Io {
                context: "cannot read",
                path,
                source,
            }),
        }
    }

    /// Applies `change` to the record and writes it (atomically; an empty
    /// record removes the file).
    pub fn update(
        state_dir: &Path,
        change: impl FnOnce(&mut HostChanges),
    ) -> Result<HostChanges, MachineError> {
        let mut changes = HostChanges::read(state_dir)?;
        let before = changes.clone();
        change(&mut changes);
        if changes != before {
            changes.write(state_dir)?;
        }
        Ok(changes)
    }

    fn write(&self, state_dir: &Path) -> Result<(), MachineError> {
        use std::os::unix::fs::DirBuilderExt;
        let path = HostChanges::path(state_dir);
        let io = |source| MachineError::Io {
            context: "cannot write",
            path: path.clone(),
            source,
        };
        if *self == HostChanges::default() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
                _ => Ok(()),
            };
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(io)?;
        let text = serde_json::to_string_pretty(self).expect("record serialises");
        crate::base::replace_file(&path, text.as_bytes(), 0o600).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_is_private_and_goes_when_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert_eq!(HostChanges::read(&state).unwrap(), HostChanges::default());
        let recorded = HostChanges::update(&state, |c| {
            c.ip_forwarding = true;
            c.files.insert("/etc/systemd/system/x.service".into());
        })
        .unwrap();
        assert_eq!(HostChanges::read(&state).unwrap(), recorded);
        let mode = std::fs::metadata(HostChanges::path(&state))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        HostChanges::update(&state, |c| *c = HostChanges::default()).unwrap();
        assert!(!HostChanges::path(&state).exists());
        std::fs::write(HostChanges::path(&state), "{\"ip_forwarding\": 1}").unwrap();
        let err = HostChanges::read(&state).unwrap_err();
        assert_eq!(
            crate::base::Classify::kind(&err),
            crate::base::ErrorKind::Corrupt
        );
    }
}

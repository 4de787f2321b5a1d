//! The watchdog's status file, `<state_dir>/watch.json`: every tenant's
//! health as of the last tick, for `tank` and other readers. The file
//! carries a `schema` version; readers take files of their version or
//! older (files from before the field have none).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::check::CheckResult;
use super::policy::TenantHealth;

/// The layout version of `watch.json` this build writes and reads.
pub const STATUS_SCHEMA: u32 = 1;

/// A status with its schema version, as stored.
#[derive(Serialize, Deserialize)]
struct Versioned<S> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<u32>,
    #[serde(flatten)]
    status: S,
}

/// What the watchdog knows of one tenant (as written to `watch.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantWatch {
    /// The state machine.
    #[serde(flatten)]
    pub health: TenantHealth,
    /// The last check run's results.
    pub checks: Vec<CheckResult>,
    /// When it was last checked (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_ms: Option<u64>,
    /// The last event about it, summarised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<String>,
    /// When that event happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_ms: Option<u64>,
}

/// The watchdog's state, as written after every tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchStatus {
    /// The daemon's pid.
    pub pid: u32,
    /// When it started (ms since the Unix epoch).
    pub started_ms: u64,
    /// When this was written.
    pub updated_ms: u64,
    /// Ticks run.
    pub tick: u64,
    /// Time between ticks.
    pub interval_ms: u64,
    /// Per tenant.
    pub tenants: BTreeMap<String, TenantWatch>,
    /// Repairs it carried out since it started, by repair name.
    #[serde(default)]
    pub repairs: BTreeMap<String, RepairCount>,
}

/// How often one repair succeeded and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RepairCount {
    /// Times it succeeded.
    pub ok: u64,
    /// Times it failed.
    pub failed: u64,
}

impl WatchStatus {
    /// The status file of a state directory.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("watch.json")
    }

    /// Reads the status file; `None` if there is none (no watchdog ran), or
    /// its schema is newer than this reader's.
    pub fn read(state_dir: &Path) -> Option<WatchStatus> {
        let text = std::fs::read(WatchStatus::path(state_dir)).ok()?;
        WatchStatus::from_json(&text)
    }

    /// Parses a status file's content: the current schema, or one written
    /// before the file carried a schema version.
    pub fn from_json(text: &[u8]) -> Option<WatchStatus> {
        let stored: Versioned<WatchStatus> = serde_json::from_slice(text).ok()?;
        match stored.schema {
            Some(schema) if schema > STATUS_SCHEMA => None,
            _ => Some(stored.status),
        }
    }

    pub(crate) fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        let path = WatchStatus::path(state_dir);
        let versioned = Versioned {
            schema: Some(STATUS_SCHEMA),
            status: self,
        };
        crate::base::replace_file(&path, &serde_json::to_vec(&versioned)?, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> WatchStatus {
        WatchStatus {
            pid: 7,
            started_ms: 1,
            updated_ms: 2,
            tick: 3,
            interval_ms: 4,
            tenants: BTreeMap::from([("alice".to_string(), TenantWatch::default())]),
            repairs: BTreeMap::from([("restart_vm".to_string(), RepairCount { ok: 2, failed: 1 })]),
        }
    }

    #[test]
    fn the_file_carries_its_schema_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        status().write(dir.path()).unwrap();
        let text = std::fs::read(WatchStatus::path(dir.path())).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(json["schema"], STATUS_SCHEMA);
        assert_eq!(WatchStatus::read(dir.path()), Some(status()));
    }

    #[test]
    fn files_without_a_schema_are_read_and_newer_ones_are_not() {
        let mut json = serde_json::to_value(status()).unwrap();
        assert!(json.get("schema").is_none());
        let text = serde_json::to_vec(&json).unwrap();
        assert_eq!(WatchStatus::from_json(&text), Some(status()));
        // A watchdog from before repairs were counted: none.
        let mut older = json.clone();
        older.as_object_mut().unwrap().remove("repairs");
        let read = WatchStatus::from_json(&serde_json::to_vec(&older).unwrap()).unwrap();
        assert!(read.repairs.is_empty());
        json["schema"] = (STATUS_SCHEMA + 1).into();
        let text = serde_json::to_vec(&json).unwrap();
        assert_eq!(WatchStatus::from_json(&text), None);
    }
}

//! The workload's next scheduled job, from OpenClaw's cron store, so the
//! host can wake a suspended guest ahead of it.
//!
//! OpenClaw (2026.6 on; 2026.9.6 in the full image) keeps its jobs in its
//! shared SQLite state database, `<state dir>/state/openclaw.sqlite` (the
//! state dir is `~/.openclaw`), table `cron_jobs`: `enabled` (0/1) and
//! `state_json`, whose `nextRunAtMs` is when the job runs next and whose
//! `runningAtMs` is set while it runs. (The older `cron/jobs.json` is only
//! imported by `openclaw doctor --fix`, never read by the gateway.) The
//! database is in WAL mode and written by the gateway while it is read: it
//! is opened read-only through SQLite itself, never parsed by hand.
//!
//! The file is the workload's, so it is hostile input: a size cap, SQLite's
//! defensive mode, no trusted schema (a view cannot call functions with side
//! effects), a bound on the work of the query and on each row, and anything
//! unexpected reads as "no job". Nothing here panics.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

/// A larger database is not read (an OpenClaw state database with years of
/// history stays far below it).
pub const MAX_DB_BYTES: u64 = 512 * 1024 * 1024;
/// A job's `state_json` longer than this is skipped.
const MAX_STATE_BYTES: usize = 64 * 1024;
/// At most this many jobs are looked at.
const MAX_JOBS: u32 = 10_000;
/// The query is interrupted after about this many SQLite VM steps.
const MAX_STEPS: u32 = 10_000_000;
/// How long a write by the gateway may hold the reader up.
const BUSY_TIMEOUT: Duration = Duration::from_millis(200);
/// A job marked running for longer than this is taken as a stale mark
/// (its gateway died mid-run), not as running.
const MAX_RUN_MS: u64 = 3600 * 1000;

/// OpenClaw's state database under the workload's home.
pub fn store_path(home: &Path) -> PathBuf {
    home.join(".openclaw/state/openclaw.sqlite")
}

/// When the next enabled job is due, in ms since the epoch: the earliest
/// `nextRunAtMs` after `now_ms`, or `now_ms` while a job runs. `None`: no
/// store, no such job, or a store that cannot be read.
pub fn next_job_at_ms(db: &Path, now_ms: u64) -> Option<u64> {
    let meta = std::fs::metadata(db).ok()?;
    if !meta.is_file() || meta.len() > MAX_DB_BYTES {
        return None;
    }
    let states = read_states(db).ok()?;
    earliest(states.iter().map(String::as_str), now_ms)
}

/// The `state_json` of every enabled job (at most [`MAX_JOBS`]).
fn read_states(db: &Path) -> rusqlite::Result<Vec<String>> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(db, flags)?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA,
        false,
    )?;
    conn.pragma_update(None, "cell_size_check", true)?;
    conn.set_limit(
        rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
        (4 * MAX_STATE_BYTES) as i32,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mut steps = 0u32;
    conn.progress_handler(
        1000,
        Some(move || {
            steps += 1;
            steps > MAX_STEPS / 1000
        }),
    )?;
    let mut stmt = conn.prepare(
        "SELECT state_json FROM cron_jobs WHERE enabled = 1 AND length(state_json) <= ?1 LIMIT ?2",
    )?;
    let rows = stmt.query_map((MAX_STATE_BYTES as i64, MAX_JOBS), |row| {
        row.get::<_, rusqlite::types::Value>(0)
    })?;
    let mut states = Vec::new();
    for row in rows {
        // A value that is not text is skipped; a failed read ends the read.
        if let rusqlite::types::Value::Text(state) = row? {
            states.push(state);
        }
    }
    Ok(states)
}

/// The earliest job time of `states` (each a job's `state_json`) after
/// `now_ms`, or `now_ms` if one runs; malformed entries are skipped.
fn earliest<'a>(states: impl Iterator<Item = &'a str>, now_ms: u64) -> Option<u64> {
    states
        .filter(|s| s.len() <= MAX_STATE_BYTES)
        .filter_map(|s| serde_json::from_str::<Value>(s).ok())
        .filter_map(|state| {
            let time = |key| state.get(key).and_then(millis);
            let running =
                time("runningAtMs").is_some_and(|at| at <= now_ms && now_ms - at < MAX_RUN_MS);
            if running {
                return Some(now_ms);
            }
            time("nextRunAtMs").filter(|&at| at > now_ms)
        })
        .min()
}

/// A JSON number as whole milliseconds (finite, not negative).
fn millis(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cron_jobs` exactly as OpenClaw 2026.9.6 creates it.
    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS cron_jobs (
  store_key TEXT NOT NULL,
  job_id TEXT NOT NULL,
  declaration_key TEXT,
  owner_agent_id TEXT,
  name TEXT NOT NULL,
  description TEXT,
  enabled INTEGER NOT NULL,
  agent_id TEXT,
  payload_kind TEXT NOT NULL,
  job_json TEXT NOT NULL,
  grant_definition_revision TEXT,
  grant_definition_generation INTEGER,
  grant_definition_updated_at INTEGER,
  state_json TEXT NOT NULL DEFAULT '{}',
  runtime_updated_at_ms INTEGER,
  schedule_identity TEXT,
  sort_order INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (store_key, job_id)
) STRICT;";

    const NOW: u64 = 1_800_000_000_000;

    /// A state database in WAL mode (as OpenClaw keeps it) with `jobs`
    /// (enabled, state_json), left open so the rows stay in the WAL.
    fn store(dir: &Path, jobs: &[(bool, &str)]) -> (PathBuf, Connection) {
        let path = store_path(dir);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        for (i, (enabled, state)) in jobs.iter().enumerate() {
            conn.execute(
                "INSERT INTO cron_jobs (store_key, job_id, name, enabled, payload_kind, job_json, state_json, updated_at)
                 VALUES ('/root/.openclaw/cron/jobs.json', ?1, 'job', ?2, 'agentTurn', '{}', ?3, 0)",
                (format!("job-{i}"), *enabled as i64, state),
            )
            .unwrap();
        }
        (path, conn)
    }

    #[test]
    fn the_earliest_future_run_of_an_enabled_job() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _writer) = store(
            dir.path(),
            &[
                (true, &format!(r#"{{"nextRunAtMs":{}}}"#, NOW + 60_000)),
                (
                    true,
                    &format!(r#"{{"nextRunAtMs":{},"lastRunAtMs":1}}"#, NOW + 5_000),
                ),
                (false, &format!(r#"{{"nextRunAtMs":{}}}"#, NOW + 1_000)),
                (true, &format!(r#"{{"nextRunAtMs":{}}}"#, NOW - 1_000)),
                (true, "{}"),
            ],
        );
        assert_eq!(next_job_at_ms(&path, NOW), Some(NOW + 5_000));
    }

    #[test]
    fn a_running_job_is_due_now_unless_its_mark_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let running = format!(
            r#"{{"nextRunAtMs":{},"runningAtMs":{}}}"#,
            NOW + 9_000,
            NOW - 30_000
        );
        let (path, _writer) = store(dir.path(), &[(true, &running)]);
        assert_eq!(next_job_at_ms(&path, NOW), Some(NOW));
        let stale = format!(
            r#"{{"nextRunAtMs":{},"runningAtMs":{}}}"#,
            NOW + 9_000,
            NOW - MAX_RUN_MS
        );
        assert_eq!(
            earliest([stale.as_str()].into_iter(), NOW),
            Some(NOW + 9_000)
        );
    }

    #[test]
    fn no_store_or_no_job_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_job_at_ms(&store_path(dir.path()), NOW), None);
        let (path, _writer) = store(dir.path(), &[(false, r#"{"nextRunAtMs":1900000000000}"#)]);
        assert_eq!(next_job_at_ms(&path, NOW), None);
    }

    #[test]
    fn malformed_stores_read_as_no_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = store_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Not a database; a database without the table; a directory.
        std::fs::write(&path, b"SQLite format 3\0 but not really").unwrap();
        assert_eq!(next_job_at_ms(&path, NOW), None);
        std::fs::remove_file(&path).unwrap();
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE other (x)")
            .unwrap();
        assert_eq!(next_job_at_ms(&path, NOW), None);
        assert_eq!(next_job_at_ms(dir.path(), NOW), None);
    }

    #[test]
    fn malformed_rows_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let good = format!(r#"{{"nextRunAtMs":{}}}"#, NOW + 7_000);
        let huge = format!(
            r#"{{"nextRunAtMs":{},"pad":"{}"}}"#,
            NOW + 1_000,
            "x".repeat(MAX_STATE_BYTES)
        );
        let (path, _writer) = store(
            dir.path(),
            &[
                (true, "not json"),
                (true, r#"{"nextRunAtMs":"soon"}"#),
                (true, r#"{"nextRunAtMs":-5}"#),
                (true, r#"{"nextRunAtMs":1e400}"#),
                (true, r#"[1,2,3]"#),
                (true, &huge),
                (true, &good),
            ],
        );
        assert_eq!(next_job_at_ms(&path, NOW), Some(NOW + 7_000));
        assert_eq!(millis(&serde_json::json!(1.5e12)), Some(1_500_000_000_000));
    }

    #[test]
    fn a_hostile_view_is_cut_short() {
        // A `cron_jobs` that is a view looping forever: the query is
        // interrupted (no hang), and reads as no job.
        let dir = tempfile::tempdir().unwrap();
        let path = store_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE VIEW cron_jobs AS
                   WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)
                   SELECT 1 AS enabled, '{}' AS state_json FROM n WHERE i < 0;",
            )
            .unwrap();
        let started = std::time::Instant::now();
        assert_eq!(next_job_at_ms(&path, NOW), None);
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}

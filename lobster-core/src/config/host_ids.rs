//! The ids the host already uses: users (`/etc/passwd`), groups
//! (`/etc/group`) and subordinate id ranges (`/etc/subuid`, `/etc/subgid`).
//! Tenants' VMMs run as `uid_base + slot`, so that range must hold none of
//! them (a VMM running as a real user could read that user's files).

use std::ops::Range;
use std::path::PathBuf;

use super::ConfigError;

/// Where the host's id databases are (the `/etc` files by default; tests
/// point them elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdDatabases {
    /// Users: `name:x:uid:gid:...`.
    pub passwd: PathBuf,
    /// Groups: `name:x:gid:members`.
    pub group: PathBuf,
    /// Subordinate uids: `owner:first:count`.
    pub subuid: PathBuf,
    /// Subordinate gids: `owner:first:count`.
    pub subgid: PathBuf,
}

impl Default for IdDatabases {
    fn default() -> Self {
        IdDatabases {
            passwd: "/etc/passwd".into(),
            group: "/etc/group".into(),
            subuid: "/etc/subuid".into(),
            subgid: "/etc/subgid".into(),
        }
    }
}

/// One id (or id range) in use on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdEntry {
    /// What it is, e.g. `user bob (uid 10005) in /etc/passwd`.
    pub what: String,
    /// The ids it holds.
    pub ids: Range<u64>,
}

impl IdDatabases {
    /// Every id in use; a missing file holds none. Lines that do not parse
    /// (comments, NIS `+` entries) are skipped.
    pub fn entries(&self) -> Result<Vec<IdEntry>, ConfigError> {
        let mut out = Vec::new();
        for (path, kind) in [
            (&self.passwd, "user"),
            (&self.group, "group"),
            (&self.subuid, "subordinate uids of"),
            (&self.subgid, "subordinate gids of"),
        ] {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: path.clone(),
                        source,
                    })
                }
            };
            out.extend(parse(&text, kind, &path.display().to_string()));
        }
        Ok(out)
    }
}

/// The entries of one database's `text` (`kind` as in [`IdDatabases::entries`]).
fn parse(text: &str, kind: &str, file: &str) -> Vec<IdEntry> {
    let subordinate = kind.starts_with("subordinate");
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let name = fields.first()?.trim();
            if name.is_empty() || name.starts_with(['#', '+', '-']) {
                return None;
            }
            if subordinate {
                let first: u64 = fields.get(1)?.trim().parse().ok()?;
                let count: u64 = fields.get(2)?.trim().parse().ok()?;
                let last = (first + count).saturating_sub(1);
                Some(IdEntry {
                    what: format!("{kind} {name} ({first}..={last}) in {file}"),
                    ids: first..first + count,
                })
            } else {
                let id: u64 = fields.get(2)?.trim().parse().ok()?;
                let label = if kind == "user" { "uid" } else { "gid" };
                Some(IdEntry {
                    what: format!("{kind} {name} ({label} {id}) in {file}"),
                    ids: id..id + 1,
                })
            }
        })
        .collect()
}

/// The first entry that holds an id of `range`.
pub fn first_overlap<'a>(entries: &'a [IdEntry], range: &Range<u64>) -> Option<&'a IdEntry> {
    entries
        .iter()
        .find(|e| e.ids.start < range.end && range.start < e.ids.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_groups_and_subordinate_ranges_are_read() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\n+nis\nbob:x:10005:10005::/home/bob:/bin/sh\nbroken:x:notanumber:1\n";
        let users = parse(passwd, "user", "/etc/passwd");
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].what, "user bob (uid 10005) in /etc/passwd");
        assert_eq!(users[1].ids, 10005..10006);
        let sub = parse("alice:100000:65536\n", "subordinate uids of", "/etc/subuid");
        assert_eq!(
            sub[0].what,
            "subordinate uids of alice (100000..=165535) in /etc/subuid"
        );
        let all: Vec<IdEntry> = users.into_iter().chain(sub).collect();
        assert_eq!(first_overlap(&all, &(1..10005)), None);
        assert_eq!(first_overlap(&all, &(1..10006)).unwrap().ids, 10005..10006);
        assert!(first_overlap(&all, &(165535..170000))
            .unwrap()
            .what
            .contains("alice"));
        assert_eq!(first_overlap(&all, &(165536..170000)), None);
    }

    #[test]
    fn missing_databases_hold_no_ids() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = IdDatabases {
            passwd: dir.path().join("passwd"),
            group: dir.path().join("group"),
            subuid: dir.path().join("subuid"),
            subgid: dir.path().join("subgid"),
        };
        std::fs::write(&dbs.group, "staff:x:50:\n").unwrap();
        let entries = dbs.entries().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0].what,
            format!("group staff (gid 50) in {}", dbs.group.display())
        );
    }
}

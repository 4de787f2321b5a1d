//! Everything a host over fakes holds, compared before and after an
//! operation. The process comparison sees every child of the test process,
//! so each test needs its own process (nextest).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use lobster_core::network::firewall::Ruleset;
use lobster_core::proxy::RouteInfo;
use lobster_core::store::TenantRecord;

/// What a host holds, for before/after comparisons.
#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    pub registry: BTreeMap<String, TenantRecord>,
    pub taps: Vec<String>,
    pub rules: Ruleset,
    pub routes: Vec<RouteInfo>,
    /// Every file (not directory) under the host's root (registry, overlay
    /// disks and templates, sockets, logs, snapshots), relative; but tenant
    /// lock files (`locks/<name>.lock`), which lobster keeps by design.
    pub files: BTreeSet<PathBuf>,
    /// Live processes descending from this test (VMM stand-ins, workloads).
    pub processes: BTreeSet<(i32, String)>,
}

impl HostState {
    /// The fields that differ, each as `field: now … want …`.
    pub fn diff(&self, want: &HostState) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, now: String, then: String| {
            if now != then {
                out.push(format!("{name}:\n  now:  {now}\n  want: {then}"));
            }
        };
        field(
            "registry",
            format!("{:?}", self.registry),
            format!("{:?}", want.registry),
        );
        field(
            "taps",
            format!("{:?}", self.taps),
            format!("{:?}", want.taps),
        );
        field(
            "rules",
            format!("{:?}", self.rules),
            format!("{:?}", want.rules),
        );
        field(
            "routes",
            format!("{:?}", self.routes),
            format!("{:?}", want.routes),
        );
        let extra = |a: &BTreeSet<PathBuf>, b: &BTreeSet<PathBuf>| {
            format!("{:?}", a.difference(b).collect::<Vec<_>>())
        };
        if self.files != want.files {
            field(
                "files (extra, missing)",
                extra(&self.files, &want.files),
                extra(&want.files, &self.files),
            );
        }
        field(
            "processes",
            format!("{:?}", self.processes),
            format!("{:?}", want.processes),
        );
        out
    }
}

pub(super) fn files_under(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if !is_tenant_lock(root, &path) {
                out.insert(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out
}

/// Whether `path` is a tenant's operation lock file: lobster never deletes
/// them (an `flock` on a deleted file no longer excludes anyone).
fn is_tenant_lock(root: &Path, path: &Path) -> bool {
    path.parent().is_some_and(|dir| {
        dir.file_name() == Some("locks".as_ref())
            && dir.parent().is_some_and(|p| p.starts_with(root))
    }) && path.extension() == Some("lock".as_ref())
}

/// Live (non-zombie) descendants of `root`, as (pid, command name).
pub fn descendants(root: i32) -> BTreeSet<(i32, String)> {
    let mut children: BTreeMap<i32, Vec<(i32, String)>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().unwrap_or("");
        let ppid: i32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state != "Z" && state != "X" {
            children.entry(ppid).or_default().push((pid, comm));
        }
    }
    let mut out = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for (child, comm) in children.get(&pid).into_iter().flatten() {
            out.insert((*child, comm.clone()));
            stack.push(*child);
        }
    }
    out
}

//! Injected secrets: environment variables for the workload, kept in memory
//! and in a 0600 file so the workload can restart after a guest reboot
//! without the host. Values never reach a log or a reply.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lobster_agent_proto::methods::Secret;

use crate::files::write_private;

/// Most secrets stored.
pub const MAX_SECRETS: usize = 256;
/// Longest secret value.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// The secret store.
#[derive(Debug)]
pub struct Secrets {
    path: PathBuf,
    values: BTreeMap<String, Secret>,
}

impl Secrets {
    /// Loads `path` if it exists (an unreadable file starts empty).
    pub fn load(path: PathBuf) -> Secrets {
        let values = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Secrets { path, values }
    }

    /// Merges (or, with `replace`, replaces) and persists. Returns the names.
    pub fn inject(
        &mut self,
        env: BTreeMap<String, Secret>,
        replace: bool,
    ) -> Result<Vec<String>, String> {
        for (name, value) in &env {
            if !valid_env_name(name) {
                return Err(format!(
                    "secret name `{}` is not an environment variable name",
                    name.escape_debug()
                ));
            }
            if value.expose().len() > MAX_SECRET_BYTES || value.expose().contains('\0') {
                return Err(format!(
                    "secret `{name}` is longer than 64 KiB or contains NUL"
                ));
            }
        }
        let mut next = if replace {
            BTreeMap::new()
        } else {
            self.values.clone()
        };
        next.extend(env);
        if next.len() > MAX_SECRETS {
            return Err(format!("more than {MAX_SECRETS} secrets"));
        }
        let bytes = serde_json::to_vec(&next).map_err(|e| format!("encoding secrets: {e}"))?;
        write_private(&self.path, &bytes)
            .map_err(|e| format!("writing {}: {e}", self.path.display()))?;
        self.values = next;
        Ok(self.names())
    }

    /// Names of the stored secrets.
    pub fn names(&self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }

    /// Name/value pairs for a process environment.
    pub fn env(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.expose()))
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, at most 128 bytes.
pub fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_persist_and_merge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let mut s = Secrets::load(path.clone());
        s.inject([("A".into(), Secret::from("1"))].into(), false)
            .unwrap();
        s.inject([("B".into(), Secret::from("2"))].into(), false)
            .unwrap();
        let again = Secrets::load(path.clone());
        assert_eq!(again.names(), ["A", "B"]);
        s.inject([("C".into(), Secret::from("3"))].into(), true)
            .unwrap();
        assert_eq!(Secrets::load(path).names(), ["C"]);
    }

    #[test]
    fn bad_names_are_refused_without_echoing_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Secrets::load(dir.path().join("s"));
        let err = s
            .inject([("1X".into(), Secret::from("hunter2"))].into(), false)
            .unwrap_err();
        assert!(!err.contains("hunter2"));
        assert!(!valid_env_name("A-B") && !valid_env_name("") && valid_env_name("_A1"));
    }
}

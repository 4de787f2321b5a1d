//! OpenClaw gateway configuration, written as the original lobsterd does:
//! `gateway.mode = "local"`, `gateway.bind = "custom"` (all addresses, so the
//! host reaches it over the tenant network while in-guest tools connect on
//! 127.0.0.1 as "local"), the port, and token auth. OpenClaw since 2026.x
//! refuses `bind = "custom"` without `customBindHost`, so it is set to
//! `0.0.0.0`, which is what the original's `custom` without a host meant.
//!
//! Before every gateway start the agent reads the existing file (OpenClaw
//! writes plain JSON), re-imposes only the keys lobster owns
//! ([`LOBSTER_OWNED_KEYS`]) and keeps the rest, so what a user set with
//! `openclaw config set` or `openclaw configure` survives restarts. Without a
//! file, the spec's `extra` is the starting document. The file is the
//! workload's and so hostile: one that is not a regular file, is too large,
//! or is not a JSON object is renamed to `openclaw.json.bad-<unix time>`
//! (mode 0600, it may hold the token) and replaced by a fresh one.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use lobster_agent_proto::methods::OpenClawSpec;
pub use lobster_agent_proto::openclaw::LOBSTER_OWNED_KEYS;
use serde_json::{json, Map, Value};

use crate::files::write_private;

/// The largest config file the agent reads; a larger one is set aside.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// `<home>/.openclaw/openclaw.json`.
pub fn config_path(home: &Path) -> PathBuf {
    home.join(".openclaw/openclaw.json")
}

/// An unusable config file that [`write_config`] moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// Where the old file is now.
    pub to: PathBuf,
    /// Why it could not be used.
    pub reason: String,
}

/// The value lobster imposes at an owned key: fixed for the gateway's
/// network and auth, taken from `extra` for the host-derived ones (none
/// when `extra` lacks them: the key is then removed).
fn owned_value(spec: &OpenClawSpec, key: &str) -> Option<Value> {
    match key {
        "gateway.mode" => Some(json!("local")),
        "gateway.bind" => Some(json!("custom")),
        "gateway.customBindHost" => Some(json!("0.0.0.0")),
        "gateway.port" => Some(json!(spec.port)),
        "gateway.auth" => Some(json!({"mode": "token", "token": spec.gateway_token.expose()})),
        other => other
            .split('.')
            .try_fold(&spec.extra, |v, k| v.get(k))
            .cloned(),
    }
}

/// Sets (`Some`) or removes (`None`) the value at a dot path. Setting makes
/// missing or non-object parents objects; removing touches nothing else.
fn impose(doc: &mut Map<String, Value>, path: &str, value: Option<Value>) {
    let segments: Vec<&str> = path.split('.').collect();
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut node = doc;
    for k in parents {
        if value.is_none() {
            match node.get_mut(*k) {
                Some(Value::Object(next)) => node = next,
                _ => return,
            }
            continue;
        }
        let next = node.entry(*k).or_insert_with(|| json!({}));
        if !next.is_object() {
            *next = json!({});
        }
        node = next.as_object_mut().expect("made an object above");
    }
    match value {
        Some(v) => {
            node.insert((*last).to_owned(), v);
        }
        None => {
            node.remove(*last);
        }
    }
}

/// The config document: `existing` (or, without one, the spec's `extra`)
/// with every lobster-owned key imposed.
pub fn config_document(spec: &OpenClawSpec, existing: Option<Map<String, Value>>) -> Value {
    let mut doc = existing.unwrap_or_else(|| match &spec.extra {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    });
    for key in LOBSTER_OWNED_KEYS {
        impose(&mut doc, key, owned_value(spec, key));
    }
    Value::Object(doc)
}

/// What is at the config path.
enum Found {
    Missing,
    Document(Map<String, Value>),
    /// Unusable; the open file when it is a regular one.
    Unusable(String, Option<File>),
}

/// Reads the existing config without following a symbolic link or blocking
/// on a FIFO, capped at [`MAX_CONFIG_BYTES`].
fn read_existing(path: &Path) -> std::io::Result<Found> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Found::Unusable("a symbolic link".into(), None))
        }
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Ok(Found::Unusable("not a regular file".into(), None));
    }
    let mut bytes = Vec::new();
    (&file).take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        let reason = format!("larger than {MAX_CONFIG_BYTES} bytes");
        return Ok(Found::Unusable(reason, Some(file)));
    }
    Ok(match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(doc)) => Found::Document(doc),
        Ok(_) => Found::Unusable("not a JSON object".into(), Some(file)),
        // serde_json's message names the line and column, never the text.
        Err(e) => Found::Unusable(format!("not valid JSON ({e})"), Some(file)),
    })
}

/// Renames an unusable config to the first free `<name>.bad-<unix time>[-N]`,
/// made 0600 first when it is a regular file.
fn set_aside(path: &Path, file: Option<File>, reason: String) -> std::io::Result<SetAside> {
    if let Some(f) = file {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let base = format!("{}.bad-{secs}", path.display());
    for n in 0..100 {
        let to = PathBuf::from(if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        if std::fs::symlink_metadata(&to).is_err() {
            std::fs::rename(path, &to)?;
            return Ok(SetAside { to, reason });
        }
    }
    Err(std::io::Error::other(format!(
        "no free name to set {} aside",
        path.display()
    )))
}

/// Writes the config (atomically, 0600, directory 0700), keeping the
/// existing file's other keys. Returns where an unusable file went, for
/// the caller to log.
pub fn write_config(home: &Path, spec: &OpenClawSpec) -> std::io::Result<Option<SetAside>> {
    let path = config_path(home);
    let (existing, aside) = match read_existing(&path)? {
        Found::Missing => (None, None),
        Found::Document(doc) => (Some(doc), None),
        Found::Unusable(reason, file) => (None, Some(set_aside(&path, file, reason)?)),
    };
    let doc = config_document(spec, existing);
    let bytes = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
    write_private(&path, &bytes)?;
    Ok(aside)
}

/// Environment the gateway expects (as the original launcher set it), plus
/// a persistent V8 compile cache on the tenant disk: OpenClaw loads tens of
/// MB of JavaScript, and reusing compiled code makes every start after the
/// first much faster (decisive under TCG, where a cold start can exceed
/// OpenClaw's own 5 s worker start-up timeout).
pub fn environment(spec: &OpenClawSpec, home: &Path) -> Vec<(String, String)> {
    let cache = home.join(".cache/node-compile-cache");
    vec![
        (
            "OPENCLAW_GATEWAY_TOKEN".into(),
            spec.gateway_token.expose().to_owned(),
        ),
        ("OPENCLAW_GATEWAY_PORT".into(), spec.port.to_string()),
        ("NODE_ENV".into(), "production".into()),
        ("NODE_COMPILE_CACHE".into(), cache.display().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use lobster_agent_proto::methods::Secret;

    fn spec(port: u16, token: &str, extra: Value) -> OpenClawSpec {
        OpenClawSpec {
            port,
            gateway_token: Secret::from(token),
            extra,
        }
    }

    fn host_extra() -> Value {
        json!({"gateway": {"controlUi": {"allowedOrigins": ["https://a.lobster.local"]}, "trustedProxies": ["10.0.0.1"]}})
    }

    fn read(path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    /// The files beside the config named `openclaw.json.bad-*`.
    fn set_aside_files(home: &Path) -> Vec<PathBuf> {
        let dir = home.join(".openclaw");
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("openclaw.json.bad-")
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn default_document_matches_the_original() {
        assert_eq!(
            config_document(&spec(9000, "tok", Value::Null), None),
            json!({"gateway":{"mode":"local","bind":"custom","customBindHost":"0.0.0.0","port":9000,"auth":{"mode":"token","token":"tok"}}})
        );
    }

    #[test]
    fn operator_defaults_are_kept_and_gateway_keys_win() {
        let mut extra = host_extra();
        extra["models"] = json!({"providers": {}});
        extra["gateway"]["port"] = json!(1);
        let doc = config_document(&spec(9100, "tok", extra), None);
        assert_eq!(doc["models"], json!({"providers": {}}));
        assert_eq!(doc["gateway"]["port"], json!(9100));
        assert_eq!(
            doc["gateway"]["controlUi"]["allowedOrigins"][0],
            json!("https://a.lobster.local")
        );
    }

    #[test]
    fn a_user_key_survives_a_rewrite() {
        let home = tempfile::tempdir().unwrap();
        let spec = spec(9000, "tok", host_extra());
        assert_eq!(write_config(home.path(), &spec).unwrap(), None);
        // What `openclaw config set agents.defaults.heartbeat.every 2h` leaves.
        let path = config_path(home.path());
        let mut doc = read(&path);
        doc["agents"] = json!({"defaults": {"heartbeat": {"every": "2h"}}});
        doc["meta"] = json!({"lastTouchedVersion": "2026.9.6"});
        doc["gateway"]["controlUi"]["basePath"] = json!("/ui");
        std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();

        assert_eq!(write_config(home.path(), &spec).unwrap(), None);
        let after = read(&path);
        assert_eq!(after, doc, "nothing the user set is lost");
        assert_eq!(after["agents"]["defaults"]["heartbeat"]["every"], "2h");
        assert_eq!(after["gateway"]["controlUi"]["basePath"], "/ui");
        assert!(set_aside_files(home.path()).is_empty());
    }

    #[test]
    fn extra_is_only_the_starting_document() {
        let home = tempfile::tempdir().unwrap();
        let path = config_path(home.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, br#"{"logging": {"level": "debug"}}"#).unwrap();
        let mut extra = host_extra();
        extra["models"] = json!({"providers": {}});
        write_config(home.path(), &spec(9000, "tok", extra)).unwrap();
        let doc = read(&path);
        assert_eq!(doc.get("models"), None, "a user's file is not refilled");
        assert_eq!(doc["logging"]["level"], "debug");
        assert_eq!(
            doc["gateway"]["trustedProxies"],
            json!(["10.0.0.1"]),
            "owned keys from extra are imposed"
        );
    }

    #[test]
    fn owned_keys_changed_by_the_user_are_reimposed() {
        let home = tempfile::tempdir().unwrap();
        let path = config_path(home.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let user = json!({"gateway": {
            "mode": "remote", "bind": "loopback", "customBindHost": "10.9.9.9", "port": 1,
            "auth": {"mode": "password", "password": "p", "token": "stolen"},
            "controlUi": {"allowedOrigins": ["*"], "basePath": "/ui"},
            "trustedProxies": ["0.0.0.0/0"],
            "reload": {"mode": "off"}
        }});
        std::fs::write(&path, serde_json::to_vec(&user).unwrap()).unwrap();
        write_config(home.path(), &spec(9000, "tok", host_extra())).unwrap();
        assert_eq!(
            read(&path),
            json!({"gateway": {
                "mode": "local", "bind": "custom", "customBindHost": "0.0.0.0", "port": 9000,
                "auth": {"mode": "token", "token": "tok"},
                "controlUi": {"allowedOrigins": ["https://a.lobster.local"], "basePath": "/ui"},
                "trustedProxies": ["10.0.0.1"],
                "reload": {"mode": "off"}
            }})
        );
    }

    #[test]
    fn owned_keys_extra_lacks_are_removed_and_a_non_object_gateway_is_replaced() {
        let home = tempfile::tempdir().unwrap();
        let path = config_path(home.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, br#"{"gateway": {"trustedProxies": ["0.0.0.0/0"]}}"#).unwrap();
        write_config(home.path(), &spec(9000, "tok", Value::Null)).unwrap();
        assert_eq!(read(&path)["gateway"].get("trustedProxies"), None);

        std::fs::write(&path, br#"{"gateway": "off", "logging": {}}"#).unwrap();
        write_config(home.path(), &spec(9000, "tok", Value::Null)).unwrap();
        assert_eq!(
            read(&path),
            json!({"gateway":{"mode":"local","bind":"custom","customBindHost":"0.0.0.0","port":9000,"auth":{"mode":"token","token":"tok"}}, "logging": {}})
        );
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_replaced() {
        for (i, bad) in [
            &b"{\"agents\": {} // hand-edited JSON5\n}"[..],
            b"[1, 2]",
            b"\xff\xfe",
            b"",
        ]
        .into_iter()
        .enumerate()
        {
            let home = tempfile::tempdir().unwrap();
            let path = config_path(home.path());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bad).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

            let aside = write_config(home.path(), &spec(9000, "tok", host_extra()))
                .unwrap()
                .unwrap_or_else(|| panic!("case {i} was not set aside"));
            assert_eq!(
                set_aside_files(home.path()),
                std::slice::from_ref(&aside.to),
                "case {i}"
            );
            assert_eq!(std::fs::read(&aside.to).unwrap(), bad, "case {i}");
            assert_eq!(mode(&aside.to), 0o600, "case {i}: it may hold the token");
            assert_eq!(
                read(&path),
                config_document(&spec(9000, "tok", host_extra()), None),
                "case {i}"
            );
            assert!(
                !aside.reason.contains("hand-edited"),
                "case {i}: no file text in the log"
            );
        }
    }

    #[test]
    fn a_second_corrupt_file_in_the_same_second_gets_its_own_name() {
        let home = tempfile::tempdir().unwrap();
        let path = config_path(home.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let spec = spec(9000, "tok", Value::Null);
        std::fs::write(&path, b"one").unwrap();
        let first = write_config(home.path(), &spec).unwrap().unwrap();
        std::fs::write(&path, b"two").unwrap();
        let second = write_config(home.path(), &spec).unwrap().unwrap();
        assert_ne!(first.to, second.to);
        assert_eq!(std::fs::read(&first.to).unwrap(), b"one");
        assert_eq!(std::fs::read(&second.to).unwrap(), b"two");
    }

    #[test]
    fn links_fifos_and_oversized_files_are_set_aside_unread() {
        let home = tempfile::tempdir().unwrap();
        let path = config_path(home.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let spec = spec(9000, "tok", Value::Null);

        let target = home.path().join("elsewhere.json");
        std::fs::write(&target, br#"{"secret": 1}"#).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let aside = write_config(home.path(), &spec).unwrap().unwrap();
        assert_eq!(aside.reason, "a symbolic link");
        assert!(std::fs::symlink_metadata(&aside.to)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), br#"{"secret": 1}"#);
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());

        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let aside = write_config(home.path(), &spec).unwrap().unwrap();
        assert_eq!(aside.reason, "not a regular file");

        let big = vec![b' '; usize::try_from(MAX_CONFIG_BYTES).unwrap() + 1];
        std::fs::write(&path, &big).unwrap();
        let aside = write_config(home.path(), &spec).unwrap().unwrap();
        assert!(aside.reason.starts_with("larger than"), "{}", aside.reason);
        assert_eq!(read(&path), config_document(&spec, None));
    }

    #[test]
    fn the_file_is_0600_even_when_the_user_made_it_readable() {
        let home = tempfile::tempdir().unwrap();
        let path = config_path(home.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_config(home.path(), &spec(9000, "tok", Value::Null)).unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}

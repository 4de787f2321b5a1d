//! Bearer tokens of lobster's HTTP API: `api-tokens.json` (0600) in the
//! state directory, changed under `api-tokens.lock`.
//!
//! Only a token's SHA-256 is stored; the secret is shown once, at
//! creation. A token reads `lob_<id>_<secret>`: the id finds the entry,
//! and the secret's hash is compared in constant time, with the same
//! work done for an unknown id, so a wrong token reveals nothing but that
//! it is wrong. Secrets are 32 random bytes, so a plain hash suffices (no
//! password stretching).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::locks::lock_file;
use super::{Result, Store, StoreError};

/// What a token may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApiScope {
    /// Read tenants, logs and the overview.
    Read,
    /// Also change tenants: spawn, evict, suspend, resume, exec.
    Operate,
    /// Also reveal tenants' tokens.
    Admin,
}

impl ApiScope {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::Read => "read",
            ApiScope::Operate => "operate",
            ApiScope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for ApiScope {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<ApiScope> {
        match s {
            "read" => Ok(ApiScope::Read),
            "operate" => Ok(ApiScope::Operate),
            "admin" => Ok(ApiScope::Admin),
            other => Err(StoreError::InvalidApiToken {
                field: "scope",
                reason: format!("`{other}` is not one of read, operate, admin"),
            }),
        }
    }
}

/// An API token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Its id (8 hex digits), the part after `lob_`.
    pub id: String,
    /// A label saying who holds it.
    pub name: String,
    /// What it may do.
    pub scope: ApiScope,
    /// Seconds since the epoch.
    pub created_at: u64,
}

/// A stored token: its listing and the hex SHA-256 of its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredToken {
    #[serde(flatten)]
    token: ApiToken,
    sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: BTreeMap<String, StoredToken>,
}

/// Longest token label.
const MAX_NAME: usize = 64;

impl Store {
    /// Creates a token named `name` with `scope`; returns it and its
    /// secret (`lob_<id>_<hex>`), which is not stored and cannot be shown
    /// again.
    pub fn create_api_token(&self, name: &str, scope: ApiScope) -> Result<(ApiToken, String)> {
        let name_ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
        if !name_ok {
            return Err(StoreError::InvalidApiToken {
                field: "name",
                reason: format!(
                    "`{}` must be 1 to {MAX_NAME} letters, digits, `-`, `_`, `.` or `@`",
                    name.escape_debug()
                ),
            });
        }
        self.change_api_tokens(|file| {
            let id = loop {
                let id = super::allocate::random_hex(4)?;
                if !file.tokens.contains_key(&id) {
                    break id;
                }
            };
            let secret = super::allocate::random_hex(32)?;
            let token = ApiToken {
                id: id.clone(),
                name: name.to_owned(),
                scope,
                created_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            };
            file.tokens.insert(
                id.clone(),
                StoredToken {
                    token: token.clone(),
                    sha256: sha256_hex(&secret),
                },
            );
            Ok((token, format!("lob_{id}_{secret}")))
        })
    }

    /// Every token, by id.
    pub fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let file = self.read_api_tokens()?;
        Ok(file.tokens.into_values().map(|t| t.token).collect())
    }

    /// Removes token `id`; a token that does not exist is `NotFound`.
    pub fn revoke_api_token(&self, id: &str) -> Result<ApiToken> {
        self.change_api_tokens(|file| {
            file.tokens
                .remove(id)
                .map(|t| t.token)
                .ok_or_else(|| StoreError::ApiTokenNotFound(id.escape_debug().to_string()))
        })
    }

    /// The token `presented` is, if it is one: its secret's hash compared
    /// in constant time, the same work done whatever is wrong with it.
    pub fn verify_api_token(&self, presented: &str) -> Result<Option<ApiToken>> {
        let file = self.read_api_tokens()?;
        let (id, secret) = presented
            .strip_prefix("lob_")
            .and_then(|rest| rest.split_once('_'))
            .unwrap_or(("", presented));
        let hash = sha256_hex(secret);
        // An unknown id is compared against a hash nothing hashes to.
        let stored = file.tokens.get(id);
        let expected = stored.map_or("-".repeat(64), |t| t.sha256.clone());
        let equal: bool = hash.as_bytes().ct_eq(expected.as_bytes()).into();
        Ok(stored.filter(|_| equal).map(|t| t.token.clone()))
    }

    fn api_tokens_path(&self) -> PathBuf {
        self.state_dir().join("api-tokens.json")
    }

    fn read_api_tokens(&self) -> Result<TokenFile> {
        let _lock = lock_file(
            &self.state_dir().join("api-tokens.lock"),
            false,
            self.lock_timeout,
        )?;
        self.read_api_tokens_unlocked()
    }

    fn read_api_tokens_unlocked(&self) -> Result<TokenFile> {
        let path = self.api_tokens_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
            Err(source) => Err(StoreError::Io {
                context: "cannot read",
                path,
                source,
            }),
        }
    }

    fn change_api_tokens<T>(&self, change: impl FnOnce(&mut TokenFile) -> Result<T>) -> Result<T> {
        let _lock = lock_file(
            &self.state_dir().join("api-tokens.lock"),
            true,
            self.lock_timeout,
        )?;
        let mut file = self.read_api_tokens_unlocked()?;
        let out = change(&mut file)?;
        let path = self.api_tokens_path();
        let bytes = serde_json::to_vec_pretty(&file).expect("token file serializes");
        crate::base::replace_file(&path, &bytes, 0o600).map_err(|source| StoreError::Io {
            context: "cannot write",
            path,
            source,
        })?;
        Ok(out)
    }
}

fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::base::Classify;
    use crate::base::ErrorKind;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        (dir, store)
    }

    #[test]
    fn a_created_token_verifies_with_its_scope_and_only_its_hash_is_stored() {
        let (dir, store) = store();
        let (token, secret) = store.create_api_token("ci", ApiScope::Operate).unwrap();
        assert_eq!(token.scope, ApiScope::Operate);
        assert!(secret.starts_with(&format!("lob_{}_", token.id)));
        assert_eq!(
            store.verify_api_token(&secret).unwrap(),
            Some(token.clone())
        );
        let path = dir.path().join("api-tokens.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let raw = secret.rsplit('_').next().unwrap();
        assert!(!text.contains(raw), "the secret is stored: {text}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(store.api_tokens().unwrap(), vec![token]);
    }

    #[test]
    fn wrong_tokens_of_the_same_length_and_revoked_ones_are_refused() {
        let (_dir, store) = store();
        let (token, secret) = store.create_api_token("ops", ApiScope::Admin).unwrap();
        // Same length, one character changed: at the start, middle, end.
        for at in [secret.len() - 64, secret.len() - 32, secret.len() - 1] {
            let mut wrong = secret.clone().into_bytes();
            wrong[at] = if wrong[at] == b'0' { b'1' } else { b'0' };
            let wrong = String::from_utf8(wrong).unwrap();
            assert_eq!(wrong.len(), secret.len());
            assert_eq!(store.verify_api_token(&wrong).unwrap(), None, "{wrong}");
        }
        // Another id with this secret, garbage, an empty token.
        let other = secret.replacen(&token.id, "ffffffff", 1);
        for bad in [other.as_str(), "", "lob_", "Bearer x", &secret[4..]] {
            assert_eq!(store.verify_api_token(bad).unwrap(), None, "{bad}");
        }
        assert_eq!(store.revoke_api_token(&token.id).unwrap(), token);
        assert_eq!(store.verify_api_token(&secret).unwrap(), None);
        let gone = store.revoke_api_token(&token.id).unwrap_err();
        assert_eq!(gone.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn bad_names_and_scopes_are_refused_naming_the_field() {
        let (dir, store) = store();
        for name in ["", "a b", "x\u{1b}[2J", &"n".repeat(65)] {
            let e = store.create_api_token(name, ApiScope::Read).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.to_string().contains("name"), "{e}");
            assert!(!e.to_string().contains('\u{1b}'), "{e}");
        }
        let e = "root".parse::<ApiScope>().unwrap_err();
        assert!(
            e.to_string().contains("scope") && e.to_string().contains("root"),
            "{e}"
        );
        assert!(!dir.path().join("api-tokens.json").exists());
    }
}

//! The keys of OpenClaw's config (`~/.openclaw/openclaw.json`) that lobster
//! owns. The agent re-imposes them before every gateway start and keeps every
//! other key, so a user's `openclaw config set` survives a restart; the host
//! refuses to set them for a user ([`check_user_key`]): the gateway's mode,
//! bind address and port must match the tenant's network, its token is
//! managed by token rotation, and the allowed origin and trusted proxy follow
//! the tenant's route.

/// The lobster-owned key paths, in OpenClaw's dot notation. A path names the
/// whole value below it (`gateway.auth` includes `gateway.auth.token`).
pub const LOBSTER_OWNED_KEYS: &[&str] = &[
    "gateway.mode",
    "gateway.bind",
    "gateway.customBindHost",
    "gateway.port",
    "gateway.auth",
    "gateway.controlUi.allowedOrigins",
    "gateway.trustedProxies",
];

/// Why a user may not set a config key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserKeyError {
    /// Not a plain dot path of non-empty segments made of ASCII letters,
    /// digits and `_ - @ / : +` (brackets, quotes, escapes and spaces are
    /// refused, so no other spelling can name an owned key).
    #[error("config key {0:?} is not a dot path of letters, digits and _-@/:+ (e.g. agents.defaults.heartbeat.every)")]
    Malformed(String),
    /// Equal to, inside or around a lobster-owned key.
    #[error("config key {key:?} touches {owned}, which lobster manages")]
    Owned {
        /// The key asked for.
        key: String,
        /// The owned key it would change.
        owned: &'static str,
    },
}

/// Checks that a user may set `key`: a plain dot path that is neither an
/// owned key, nor inside one (`gateway.auth.token`), nor one of its parents
/// (`gateway`, whose value would replace the owned keys below it).
pub fn check_user_key(key: &str) -> Result<(), UserKeyError> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-@/:+".contains(&b))
    };
    let segments: Vec<&str> = key.split('.').collect();
    if !segments.iter().all(|s| plain(s)) {
        return Err(UserKeyError::Malformed(key.to_owned()));
    }
    for owned in LOBSTER_OWNED_KEYS {
        let owned_segments: Vec<&str> = owned.split('.').collect();
        let n = segments.len().min(owned_segments.len());
        if segments[..n] == owned_segments[..n] {
            return Err(UserKeyError::Owned {
                key: key.to_owned(),
                owned,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_keys_their_insides_and_their_parents_are_refused() {
        for key in [
            "gateway.port",
            "gateway.auth.token",
            "gateway.auth",
            "gateway",
            "gateway.controlUi",
            "gateway.controlUi.allowedOrigins",
            "gateway.trustedProxies",
        ] {
            assert!(
                matches!(check_user_key(key), Err(UserKeyError::Owned { .. })),
                "{key}"
            );
        }
    }

    #[test]
    fn other_keys_are_allowed() {
        for key in [
            "agents.defaults.heartbeat.every",
            "logging.level",
            "gateway.controlUi.basePath",
            "gateway.reload.mode",
            "models.providers.openai-compatible.baseUrl",
        ] {
            assert_eq!(check_user_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn other_spellings_are_refused_as_malformed() {
        for key in [
            "",
            "gateway[\"port\"]",
            "gateway['auth'].token",
            "gateway .port",
            " gateway.port",
            "gateway\\.port",
            "gateway..port",
            ".gateway",
            "agents.list[0].name",
            "logging.level\n",
        ] {
            assert_eq!(
                check_user_key(key),
                Err(UserKeyError::Malformed(key.into())),
                "{key:?}"
            );
        }
    }
}

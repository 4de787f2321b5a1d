//! Holds: named leases with a TTL. While any hold is unexpired the host must
//! not suspend the guest (the host counts them through `stats`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lobster_agent_proto::methods::{HoldInfo, MAX_HOLDS, MAX_HOLD_ID_LEN, MAX_HOLD_TTL_MS};

/// Why a hold request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HoldError {
    /// Id empty, too long or with control characters; TTL zero or too long.
    Invalid(&'static str),
    /// Renewing a hold that does not exist (or expired).
    NotFound,
    /// [`MAX_HOLDS`] holds are already held.
    Full,
}

/// The set of holds.
#[derive(Debug, Default)]
pub struct Holds {
    expiry: HashMap<String, Instant>,
}

impl Holds {
    /// Takes or extends `id` for `ttl_ms` from `now`.
    pub fn acquire(&mut self, id: &str, ttl_ms: u64, now: Instant) -> Result<HoldInfo, HoldError> {
        validate(id, ttl_ms)?;
        self.prune(now);
        if !self.expiry.contains_key(id) && self.expiry.len() >= MAX_HOLDS {
            return Err(HoldError::Full);
        }
        self.expiry
            .insert(id.to_owned(), now + Duration::from_millis(ttl_ms));
        Ok(HoldInfo {
            id: id.to_owned(),
            expires_in_ms: ttl_ms,
        })
    }

    /// Extends an unexpired hold.
    pub fn renew(&mut self, id: &str, ttl_ms: u64, now: Instant) -> Result<HoldInfo, HoldError> {
        validate(id, ttl_ms)?;
        self.prune(now);
        match self.expiry.get_mut(id) {
            Some(at) => {
                *at = now + Duration::from_millis(ttl_ms);
                Ok(HoldInfo {
                    id: id.to_owned(),
                    expires_in_ms: ttl_ms,
                })
            }
            None => Err(HoldError::NotFound),
        }
    }

    /// Releases `id`; whether it was held.
    pub fn release(&mut self, id: &str, now: Instant) -> bool {
        self.prune(now);
        self.expiry.remove(id).is_some()
    }

    /// Unexpired holds, sorted by id.
    pub fn list(&mut self, now: Instant) -> Vec<HoldInfo> {
        self.prune(now);
        let mut holds: Vec<HoldInfo> = self
            .expiry
            .iter()
            .map(|(id, at)| HoldInfo {
                id: id.clone(),
                expires_in_ms: at.saturating_duration_since(now).as_millis() as u64,
            })
            .collect();
        holds.sort_by(|a, b| a.id.cmp(&b.id));
        holds
    }

    fn prune(&mut self, now: Instant) {
        self.expiry.retain(|_, at| *at > now);
    }
}

fn validate(id: &str, ttl_ms: u64) -> Result<(), HoldError> {
    if id.is_empty() || id.len() > MAX_HOLD_ID_LEN || id.chars().any(char::is_control) {
        return Err(HoldError::Invalid(
            "hold id must be 1-128 printable characters",
        ));
    }
    if ttl_ms == 0 || ttl_ms > MAX_HOLD_TTL_MS {
        return Err(HoldError::Invalid("ttl_ms must be between 1 and 86400000"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_expire_after_their_ttl() {
        let t0 = Instant::now();
        let mut h = Holds::default();
        h.acquire("a", 1000, t0).unwrap();
        assert_eq!(h.list(t0 + Duration::from_millis(999)).len(), 1);
        assert!(h.list(t0 + Duration::from_millis(1000)).is_empty());
        assert_eq!(
            h.renew("a", 1000, t0 + Duration::from_secs(2)),
            Err(HoldError::NotFound)
        );
    }

    #[test]
    fn acquire_and_renew_extend() {
        let t0 = Instant::now();
        let mut h = Holds::default();
        h.acquire("a", 1000, t0).unwrap();
        h.renew("a", 5000, t0 + Duration::from_millis(900)).unwrap();
        assert_eq!(
            h.list(t0 + Duration::from_millis(4000))[0].expires_in_ms,
            1900
        );
        assert!(h.release("a", t0));
        assert!(!h.release("a", t0));
    }

    #[test]
    fn limits_are_enforced() {
        let t0 = Instant::now();
        let mut h = Holds::default();
        assert!(matches!(h.acquire("", 1, t0), Err(HoldError::Invalid(_))));
        assert!(matches!(h.acquire("a", 0, t0), Err(HoldError::Invalid(_))));
        assert!(matches!(
            h.acquire("a", MAX_HOLD_TTL_MS + 1, t0),
            Err(HoldError::Invalid(_))
        ));
        for i in 0..MAX_HOLDS {
            h.acquire(&i.to_string(), 1000, t0).unwrap();
        }
        assert_eq!(h.acquire("one more", 1000, t0), Err(HoldError::Full));
        h.acquire("0", 2000, t0)
            .expect("re-acquiring a held id is not a new hold");
    }
}

//! Token comparison that does not leak how many leading bytes matched.

/// Whether `given` equals `expected`, comparing every byte of `expected`
/// whatever the input. An empty `expected` never matches (fail closed: an
/// agent without a configured token rejects everyone).
pub fn token_matches(expected: &[u8], given: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut diff = u8::from(expected.len() != given.len());
    for (i, want) in expected.iter().enumerate() {
        let got = given.get(i).copied().unwrap_or(!*want);
        diff |= want ^ got;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn equal_tokens_match() {
        assert!(token_matches(b"abc123", b"abc123"));
    }

    #[test]
    fn different_tokens_do_not_match() {
        assert!(!token_matches(b"abc123", b"abc124"));
        assert!(!token_matches(b"abc123", b"abc12"));
        assert!(!token_matches(b"abc123", b"abc1234"));
        assert!(!token_matches(b"abc123", b""));
    }

    #[test]
    fn a_missing_expected_token_rejects_everything() {
        assert!(!token_matches(b"", b""));
        assert!(!token_matches(b"", b"x"));
    }
}

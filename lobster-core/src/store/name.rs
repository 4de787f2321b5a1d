//! Tenant names and domains, checked against every downstream limit.
//!
//! A tenant name becomes a DNS label (`<name>.<domain>`, and a certificate
//! name), a jailer `--id` (alphanumerics and `-`, at most 64) and a file name.
//! Interface names are *not* derived from it (they come from the tenant's
//! short id), so the 15-byte IFNAMSIZ limit does not constrain names.

/// Longest tenant name: one DNS label.
pub const MAX_NAME_LEN: usize = 63;

/// Checks a tenant name; the error says what is wrong with which character.
pub fn validate_tenant_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("tenant name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "tenant name is {} bytes long; at most {MAX_NAME_LEN} fit in a DNS label",
            name.len()
        ));
    }
    for (i, c) in name.char_indices() {
        let ok = c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !ok {
            let hint = if c.is_ascii_uppercase() {
                " (use lowercase)"
            } else if c == '_' || c == '.' {
                " (not valid in a DNS label)"
            } else {
                ""
            };
            return Err(format!(
                "tenant name `{}` has {c:?} at byte {i}; only a-z, 0-9 and '-' are allowed{hint}",
                name.escape_debug()
            ));
        }
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("tenant name `{name}` must start with a letter a-z"));
    }
    if name.ends_with('-') {
        return Err(format!("tenant name `{name}` must not end with '-'"));
    }
    Ok(())
}

/// Checks a route domain: dot-separated DNS labels, at most 253 bytes with
/// room left for a full tenant label in front.
pub fn validate_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("domain is empty".into());
    }
    if domain.len() + 1 + MAX_NAME_LEN > 253 {
        return Err(format!(
            "domain `{domain}` is too long: `<name>.{domain}` must fit in 253 bytes"
        ));
    }
    for label in domain.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!(
                "domain `{}` has an invalid label `{}` (lowercase a-z, 0-9, inner '-', 1-63 bytes)",
                domain.escape_debug(),
                label.escape_debug()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_edge_lengths() {
        assert!(validate_tenant_name("a").is_ok());
        assert!(validate_tenant_name(&"a".repeat(63)).is_ok());
        assert!(validate_tenant_name("a-1-b").is_ok());
        let err = validate_tenant_name(&"a".repeat(64)).unwrap_err();
        assert!(err.contains("64 bytes"), "{err}");
    }

    #[test]
    fn rejects_bad_names_with_reason() {
        let cases = [
            ("", "empty"),
            ("Alice", "use lowercase"),
            ("a.b", "DNS label"),
            ("a_b", "DNS label"),
            ("../x", "'.'"),
            ("caf\u{e9}", "only a-z"),
            ("1abc", "start with a letter"),
            ("-abc", "start with a letter"),
            ("abc-", "end with"),
            ("a b", "only a-z"),
            ("a/b", "only a-z"),
        ];
        for (name, needle) in cases {
            let err = validate_tenant_name(name).unwrap_err();
            assert!(err.contains(needle), "{name:?}: {err}");
        }
    }

    #[test]
    fn domains() {
        assert!(validate_domain("lobster.local").is_ok());
        assert!(validate_domain("a.b-c.example").is_ok());
        for bad in ["", "a..b", "-a.b", "A.local", "a_b.local", "x."] {
            assert!(validate_domain(bad).is_err(), "{bad}");
        }
        assert!(validate_domain(&"a".repeat(200)).is_err());
    }
}

//! Guest text made safe for a terminal.
//!
//! Log lines come from the guest, which the host does not trust: an escape
//! sequence in a log line could retitle, recolour or rewrite the operator's
//! terminal. Control characters become caret notation (`^[`), C1 controls
//! and bidirectional overrides become U+FFFD.

/// `text` with every terminal control replaced by a visible stand-in; tabs
/// are kept.
pub fn sanitize_for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push(c),
            '\u{0}'..='\u{1f}' => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            '\u{7f}' => out.push_str("^?"),
            '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                out.push('\u{fffd}')
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sanitize_for_terminal;

    #[test]
    fn escape_sequences_are_defused() {
        assert_eq!(
            sanitize_for_terminal("\x1b]0;pwned\x07ok"),
            "^[]0;pwned^Gok"
        );
        assert_eq!(sanitize_for_terminal("a\rb\nc\u{7f}"), "a^Mb^Jc^?");
        assert_eq!(
            sanitize_for_terminal("\u{9b}31m \u{202e}abc"),
            "\u{fffd}31m \u{fffd}abc"
        );
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        let s = "gateway listening on :9000\tü ✓";
        assert_eq!(sanitize_for_terminal(s), s);
    }
}

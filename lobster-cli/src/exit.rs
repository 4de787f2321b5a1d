//! Exit codes: one per [`ErrorKind`] (and a shell's 127 for a command
//! `exec` cannot find), and the `--help` table made from the same mapping
//! (so the two cannot disagree).

use lobster_core::{Error, ErrorKind};

/// The exit code of `err`: a command `exec` could not run exits as a
/// shell's would (127: not found), so scripts see what `ssh` gives them;
/// every other error exits with its kind's [`code`].
pub fn of(err: &Error) -> u8 {
    match err.exec_status() {
        Some(status) => status.clamp(0, 255) as u8,
        None => code(err.kind()),
    }
}

/// The exit code of a usage error (as clap's) a command finds itself.
pub const USAGE: u8 = 2;

/// The exit code of an error of `kind`. 0 is success, 1 an unexpected
/// failure, 2 a usage error (clap).
pub fn code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::NotFound => 10,
        ErrorKind::AlreadyExists => 11,
        ErrorKind::InvalidArgument => 12,
        ErrorKind::InvalidState => 13,
        ErrorKind::PermissionDenied => 14,
        ErrorKind::Unsupported => 15,
        ErrorKind::Timeout => 16,
        ErrorKind::Exhausted => 17,
        ErrorKind::Corrupt => 18,
        ErrorKind::HostFailure => 19,
        ErrorKind::GuestFailure => 20,
        ErrorKind::Internal => 21,
        _ => 1,
    }
}

/// The exit-code table of `lobsterd --help`.
pub fn help() -> String {
    let kinds = ErrorKind::ALL
        .iter()
        .map(|&kind| format!("{} {}", code(kind), kind.as_str().replace('_', " ")));
    let all: Vec<String> = ["0 ok", "1 unexpected failure", "2 usage"]
        .into_iter()
        .map(String::from)
        .chain(kinds)
        .collect();
    format!("Exit codes: {}", all.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_code_and_a_line_in_the_help() {
        let help = help();
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            let code = code(kind);
            assert!(code >= 10, "{kind} falls back to {code}");
            assert!(seen.insert(code), "{kind} shares code {code}");
            assert!(
                help.contains(&format!("{code} {}", kind.as_str().replace('_', " "))),
                "{help}"
            );
        }
    }
}

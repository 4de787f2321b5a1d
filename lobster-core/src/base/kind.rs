//! The stable classification every error maps to, and the trait module
//! errors implement to say theirs.

use std::fmt;

/// The stable classification of an `Error` (`lobster_core::Error`). Bindings map on this only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// A tenant, file or other named thing does not exist.
    NotFound,
    /// The thing to create exists already (tenant name, route, interface).
    AlreadyExists,
    /// Input was rejected: a field or value is malformed or out of range.
    InvalidArgument,
    /// The operation does not fit the current state (e.g. resume a running tenant).
    InvalidState,
    /// The process lacks a privilege (root, CAP_NET_ADMIN, /dev/kvm access).
    PermissionDenied,
    /// Not implemented on this host or in this version.
    Unsupported,
    /// An external call did not answer in time.
    Timeout,
    /// A finite pool (addresses, ports, uids) has no free entry.
    Exhausted,
    /// Persistent state is unreadable or inconsistent; it was left untouched.
    Corrupt,
    /// A host-side system call or external service failed.
    HostFailure,
    /// The guest (VM, agent, workload) misbehaved or failed.
    GuestFailure,
    /// A bug in lobster.
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order (for bindings that build tables).
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::InvalidArgument,
        ErrorKind::InvalidState,
        ErrorKind::PermissionDenied,
        ErrorKind::Unsupported,
        ErrorKind::Timeout,
        ErrorKind::Exhausted,
        ErrorKind::Corrupt,
        ErrorKind::HostFailure,
        ErrorKind::GuestFailure,
        ErrorKind::Internal,
    ];

    /// A stable snake_case name, as used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::InvalidState => "invalid_state",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Exhausted => "exhausted",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::HostFailure => "host_failure",
            ErrorKind::GuestFailure => "guest_failure",
            ErrorKind::Internal => "internal",
        }
    }

    /// The classification of an I/O error.
    pub fn from_io(err: &std::io::Error) -> ErrorKind {
        use std::io::ErrorKind as Io;
        match err.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::AlreadyExists => ErrorKind::AlreadyExists,
            Io::PermissionDenied => ErrorKind::PermissionDenied,
            Io::TimedOut => ErrorKind::Timeout,
            Io::InvalidInput | Io::InvalidData => ErrorKind::InvalidArgument,
            Io::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::HostFailure,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Module errors implement this so `Error::kind` needs no table of its own.
pub trait Classify {
    /// The stable kind of this error.
    fn kind(&self) -> ErrorKind;
}

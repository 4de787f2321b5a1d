//! The bottom layer, which every other module may use and which uses none of
//! them: the error classification ([`ErrorKind`], [`Classify`]) and runtime
//! helpers (blocking work off the async workers, the wall clock, `PATH`),
//! and the terminal sanitiser every text from a guest goes through.

mod file;
mod kind;
mod runtime;
mod sanitize;

pub(crate) use file::replace_file;
pub use kind::{Classify, ErrorKind};
pub(crate) use runtime::{blocking, unix_ms, unix_secs};
pub use runtime::{find_program, NOTIFY_SOCKET};
pub use sanitize::sanitize_for_terminal;

//! The bottom layer, which every other module may use and which uses none of
//! them: the error classification ([`ErrorKind`], [`Classify`]) and runtime
//! helpers (blocking work off the async workers, the wall clock, `PATH`).

mod kind;
mod runtime;

pub use kind::{Classify, ErrorKind};
pub use runtime::find_program;
pub(crate) use runtime::{blocking, unix_ms, unix_secs};

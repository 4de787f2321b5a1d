//! The one tokio runtime every call blocks on.
//!
//! C is synchronous; the core is async. Each call runs `block_on` on one
//! shared multi-thread runtime, built on first use. Its threads do not
//! survive `fork()`: a call from a forked child fails with
//! `LOBSTER_RESULT_RUNTIME_UNAVAILABLE` instead of hanging.

use std::future::Future;
use std::sync::LazyLock;

use tokio::runtime::Runtime;

use crate::error::Failure;

struct Shared {
    runtime: std::io::Result<Runtime>,
    pid: u32,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| Shared {
    runtime: tokio::runtime::Builder::new_multi_thread()
        .thread_name("lobster-capi")
        .enable_all()
        .build(),
    pid: std::process::id(),
});

/// Runs `work` to completion on the shared runtime.
pub fn block_on<F: Future>(work: F) -> Result<F::Output, Failure> {
    let shared = &*SHARED;
    let here = std::process::id();
    if shared.pid != here {
        return Err(Failure::RuntimeUnavailable(format!(
            "lobster's runtime was started in process {} and cannot be used in forked child {here}",
            shared.pid
        )));
    }
    let runtime = shared
        .runtime
        .as_ref()
        .map_err(|e| Failure::RuntimeUnavailable(format!("cannot start lobster's runtime: {e}")))?;
    Ok(runtime.block_on(work))
}

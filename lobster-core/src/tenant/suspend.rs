//! Suspending a tenant: its VM's memory and device state go to the
//! tenant's snapshot directory and the VMM stops; TAP, rules and route stay.
//! Resuming starts a new VMM from that snapshot (or, if it cannot be
//! loaded, cold-boots from the overlay).

use crate::context::Context;
use crate::error::{Error, Result};

use super::progress::ProgressSink;
use super::Tenant;

/// Suspends the running tenant `name`; see the module docs.
pub(crate) async fn suspend(
    context: &Context,
    name: &str,
    sink: Option<ProgressSink>,
) -> Result<Tenant> {
    let _ = (context, name, sink);
    Err(Error::Unsupported {
        operation: "suspend",
        detail: "not built yet",
    })
}

/// Resumes the suspended tenant `name`; see the module docs.
pub(crate) async fn resume(
    context: &Context,
    name: &str,
    sink: Option<ProgressSink>,
) -> Result<Tenant> {
    let _ = (context, name, sink);
    Err(Error::Unsupported {
        operation: "resume",
        detail: "not built yet",
    })
}

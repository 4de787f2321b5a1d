//! `tank`: the live dashboard (`--json`: one machine-readable snapshot).

use lobster_core::Error;

use super::Context;

/// Runs `tank`.
pub async fn run(ctx: &Context) -> Result<(), Error> {
    let overview = ctx.host()?.overview().await?;
    if ctx.json {
        ctx.print(&overview, String::new);
        return Ok(());
    }
    Err(Error::Unsupported {
        operation: "tank",
        detail: "the interactive dashboard is not built yet; use --json",
    })
}

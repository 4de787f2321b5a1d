//! Commands that read or act on existing tenants.

use lobster_core::{Error, Tenant};

use super::{not_yet, Context};
use crate::args::EvictArgs;

pub async fn list(ctx: &Context) -> Result<(), Error> {
    let tenants = ctx.host()?.list().await?;
    ctx.print(&tenants, || table(&tenants));
    Ok(())
}

pub async fn token(ctx: &Context, name: &str) -> Result<(), Error> {
    let token = ctx.host()?.token(name).await?;
    ctx.print(&serde_json::json!({ "name": name, "token": token }), || {
        token.clone()
    });
    Ok(())
}

pub async fn evict(ctx: &Context, args: &EvictArgs) -> Result<(), Error> {
    ctx.host()?.evict(&args.name).await
}

pub async fn molt(ctx: &Context, name: Option<&str>) -> Result<(), Error> {
    ctx.host()?.molt(name).await
}

pub async fn suspend(ctx: &Context, name: &str) -> Result<(), Error> {
    ctx.host()?.suspend(name).await
}

pub async fn resume(ctx: &Context, name: &str) -> Result<(), Error> {
    ctx.host()?.resume(name).await
}

/// A command whose machinery comes later: a missing tenant is still
/// reported as such.
pub async fn needs_tenant(
    ctx: &Context,
    name: Option<&str>,
    operation: &'static str,
) -> Result<(), Error> {
    if let Some(name) = name {
        ctx.host()?.get(name).await?;
    }
    Err(not_yet(operation))
}

fn table(tenants: &[Tenant]) -> String {
    if tenants.is_empty() {
        return "no tenants".into();
    }
    let mut out = format!(
        "{:<20} {:<10} {:<16} {:>5} {:>8}  {}\n",
        "NAME", "STATUS", "GUEST IP", "VCPUS", "MEM MIB", "ROUTE"
    );
    for t in tenants {
        out += &format!(
            "{:<20} {:<10} {:<16} {:>5} {:>8}  {}\n",
            t.name(),
            t.status().as_str(),
            t.guest_ip().to_string(),
            t.resources().vcpus,
            t.resources().memory_mib,
            t.route()
        );
    }
    out
}

//! Commands that read or act on existing tenants.

use lobster_core::tenant::EvictOptions;
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
    if !args.yes
        && !confirm(&format!(
            "Remove tenant \"{}\"? This destroys the VM and all data.",
            args.name
        ))
    {
        return Err(Error::from(lobster_core::tenant::TenantError::Aborted {
            operation: "evict",
        }));
    }
    let options = EvictOptions {
        keep_overlay: args.keep_overlay,
    };
    ctx.host()?.evict_with(&args.name, options).await?;
    ctx.print(&serde_json::json!({ "evicted": args.name }), || {
        format!("evicted {}", args.name)
    });
    Ok(())
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

/// Asks on the terminal; anything but `y`/`yes` (or no terminal) is a no.
fn confirm(question: &str) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        eprintln!("{question} Refusing without a terminal: pass --yes.");
        return false;
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

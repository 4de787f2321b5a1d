//! Commands that read or act on existing tenants.

use lobster_core::agent::LogSource;
use lobster_core::health::{CheckResult, MoltReport, Verdict};
use lobster_core::tenant::{EvictOptions, TenantError};
use lobster_core::{Error, Tenant};

use super::Context;
use crate::args::{EvictArgs, LogService, LogsArgs, SnapArgs};

pub async fn list(ctx: &Context) -> Result<(), Error> {
    let tenants = ctx.host()?.list().await?;
    ctx.print(&tenants, || table(&tenants));
    Ok(())
}

pub async fn token(ctx: &Context, name: &str, rotate: bool) -> Result<(), Error> {
    let host = ctx.host()?;
    let token = if rotate {
        host.rotate_tokens(name).await?.gateway_token().to_owned()
    } else {
        host.token(name).await?
    };
    ctx.print(&serde_json::json!({ "name": name, "token": token }), || {
        token.clone()
    });
    Ok(())
}

pub fn ca(ctx: &Context) -> Result<(), Error> {
    let root = lobster_core::proxy::ca_root(ctx.host()?.config());
    let exists = root.is_file();
    ctx.print(
        &serde_json::json!({ "path": root, "exists": exists }),
        || {
            let note = if exists {
                ""
            } else {
                "\n(not created yet: Caddy makes it when it first serves a tenant over HTTPS)"
            };
            format!("{}{note}", root.display())
        },
    );
    Ok(())
}

pub async fn evict(ctx: &Context, args: &EvictArgs) -> Result<(), Error> {
    if !args.yes
        && !confirm(&format!(
            "Remove tenant \"{}\"? This destroys the VM and all data.",
            args.name
        ))
    {
        return Err(Error::from(TenantError::Aborted { operation: "evict" }));
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

/// `molt`: prints each tenant's checks and repairs; `Ok(false)` when a
/// tenant is still unhealthy afterwards (the CLI exits 1).
pub async fn molt(ctx: &Context, name: Option<&str>) -> Result<bool, Error> {
    let reports = ctx.host()?.molt(name).await?;
    ctx.print(&reports, || molt_text(&reports));
    Ok(reports.iter().all(|r| r.healthy))
}

fn molt_text(reports: &[MoltReport]) -> String {
    let mut out = String::new();
    if reports.is_empty() {
        out.push_str("no tenant to check\n");
    }
    for r in reports {
        let verdict = if r.healthy { "healthy" } else { "UNHEALTHY" };
        out.push_str(&format!("{} ({}): {verdict}\n", r.tenant, r.status));
        for c in &r.checks {
            out.push_str(&check_line(c));
        }
        for a in &r.repairs {
            let result = match &a.error {
                None => "ok".to_owned(),
                Some(e) => format!("FAILED: {e}"),
            };
            out.push_str(&format!(
                "  repair {:<18} {result} ({} ms)\n",
                a.repair.as_str(),
                a.elapsed_ms
            ));
        }
        if !r.after.is_empty() {
            out.push_str("  after repair:\n");
            for c in r.after.iter().filter(|c| !c.passed()) {
                out.push_str(&check_line(c));
            }
        }
        if let Some(note) = &r.note {
            out.push_str(&format!("  note: {note}\n"));
        }
    }
    out
}

fn check_line(c: &CheckResult) -> String {
    let mark = match c.verdict {
        Verdict::Ok => "ok  ",
        Verdict::Failed => "FAIL",
        Verdict::Skipped => "skip",
    };
    match &c.detail {
        Some(d) => format!("  {mark} {:<15} {d}\n", c.check.as_str()),
        None => format!("  {mark} {}\n", c.check.as_str()),
    }
}

pub async fn suspend(ctx: &Context, name: &str) -> Result<(), Error> {
    let sink = super::spawn::progress_sink();
    let tenant = ctx.host()?.suspend_with_progress(name, Some(sink)).await?;
    ctx.print(&tenant, || format!("suspended {}", tenant.name()));
    Ok(())
}

pub async fn resume(ctx: &Context, name: &str) -> Result<(), Error> {
    let sink = super::spawn::progress_sink();
    let tenant = ctx.host()?.resume_with_progress(name, Some(sink)).await?;
    ctx.print(&tenant, || match tenant.record().last_error.as_deref() {
        Some(why) => format!("resumed {} by a cold boot: {why}", tenant.name()),
        None => format!("resumed {}", tenant.name()),
    });
    Ok(())
}

pub async fn logs(ctx: &Context, args: &LogsArgs) -> Result<(), Error> {
    if args.watchdog {
        return watchdog_logs(ctx, args).await;
    }
    let Some(name) = args.name.as_deref() else {
        return Err(TenantError::InvalidSpec {
            field: "name",
            reason: "logs needs a tenant name (or --watchdog)".into(),
        }
        .into());
    };
    let source = match args.service {
        LogService::Agent => LogSource::Agent,
        LogService::Workload => LogSource::Workload,
    };
    let host = ctx.host()?;
    if !args.follow {
        let lines = host.logs(name, source, args.lines).await?;
        ctx.print(&lines, || lines.join("\n"));
        return Ok(());
    }
    let mut follow = host.follow_logs(name, source, args.lines).await?;
    // Lines arrive already sanitised; a quiet stream just waits.
    loop {
        match follow
            .next_line(std::time::Duration::from_secs(3600))
            .await?
        {
            Some(line) => print_line(ctx, &line),
            None => return Ok(()),
        }
    }
}

/// `logs --watchdog`: the detached watchdog's log; `--follow` goes on
/// printing what it writes (across rotation).
async fn watchdog_logs(ctx: &Context, args: &LogsArgs) -> Result<(), Error> {
    let host = ctx.host()?;
    if !args.follow {
        let lines = host.watchdog_log(args.lines).await?;
        ctx.print(&lines, || lines.join("\n"));
        return Ok(());
    }
    let (tail, mut follow) =
        lobster_core::health::follow_watch_log(host.config(), args.lines as usize)?;
    ctx.print(&tail, || tail.join("\n"));
    loop {
        let lines = follow
            .next_lines()
            .await
            .map_err(|source| TenantError::Io {
                context: "cannot follow",
                path: lobster_core::health::watch_log_path(host.config()),
                source,
            })?;
        for line in lines {
            print_line(ctx, &line);
        }
    }
}

/// One followed log line (already sanitised), as text or a JSON object.
fn print_line(ctx: &Context, line: &str) {
    if ctx.json {
        println!("{}", serde_json::json!({ "line": line }));
    } else {
        println!("{line}");
    }
}

pub async fn snap(ctx: &Context, args: &SnapArgs) -> Result<(), Error> {
    let report = ctx.host()?.snap(&args.name, args.output.clone()).await?;
    ctx.print(&report, || {
        format!(
            "wrote {} ({} MiB disk, {} KiB archive; vm paused {} ms)",
            report.path.display(),
            report.disk_bytes >> 20,
            report.archive_bytes >> 10,
            report.paused_ms
        )
    });
    Ok(())
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
pub(super) fn confirm(question: &str) -> bool {
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

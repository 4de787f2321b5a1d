//! `lobsterd configure` and `lobsterd devices`: OpenClaw's own CLI in a
//! tenant's guest through lobster-core (`Host::config_get`,
//! `Host::config_set`, `Host::devices`); the interactive `configure` runs
//! `Host::configure_request` on this terminal through `exec`'s session
//! runner.

use std::process::ExitCode;

use lobster_core::tenant::openclaw::{parse_setting, DevicesOp, DevicesReport};
use lobster_core::Error;

use super::exec::{need_terminal, run_session, window_size};
use super::Context;
use crate::args::{ConfigureArgs, DevicesAction, DevicesArgs};

pub async fn configure(ctx: &Context, args: ConfigureArgs) -> Result<ExitCode, Error> {
    if let Some(key) = &args.get {
        let value = ctx.host()?.config_get(&args.name, key).await?;
        ctx.print(
            &serde_json::json!({ "name": args.name, "key": key, "value": value }),
            || value.clone(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !args.set.is_empty() {
        let settings = args
            .set
            .iter()
            .map(|s| parse_setting(s))
            .collect::<Result<Vec<_>, _>>()?;
        let report = ctx.host()?.config_set(&args.name, &settings).await?;
        ctx.print(&report, || {
            let pid = |p: Option<u32>| p.map_or("none".to_owned(), |p| p.to_string());
            format!(
                "set {} in {}; gateway restarted (pid {} -> {})",
                report.keys.join(", "),
                args.name,
                pid(report.pid_before),
                pid(report.pid_after)
            )
        });
        return Ok(ExitCode::SUCCESS);
    }
    if let Err(code) = need_terminal(
        "configure",
        "run it from a terminal, or use --set KEY=VALUE / --get KEY",
    ) {
        return Ok(code);
    }
    let host = ctx.host()?;
    let request = host.configure_request(window_size())?;
    run_session(ctx, &args.name, &request, true).await
}

pub async fn devices(ctx: &Context, args: DevicesArgs) -> Result<(), Error> {
    let op = match args.action.unwrap_or(DevicesAction::List) {
        DevicesAction::List => DevicesOp::List,
        DevicesAction::Approve { id } => DevicesOp::Approve(id),
        DevicesAction::Reject { id } => DevicesOp::Reject(id),
    };
    let report = ctx.host()?.devices(&args.name, &op).await?;
    ctx.print(&report, || text(&report));
    Ok(())
}

/// `report` for humans.
fn text(report: &DevicesReport) -> String {
    match report {
        DevicesReport::List { pending, paired } if pending.is_empty() && paired.is_empty() => {
            "no device pairing entries".into()
        }
        DevicesReport::List { pending, paired } => {
            let name = |n: &Option<String>| n.clone().unwrap_or_else(|| "-".into());
            let mut out = String::new();
            if !pending.is_empty() {
                out.push_str(&format!("pending ({}):\n", pending.len()));
                for d in pending {
                    out.push_str(&format!(
                        "  {}  {}  {}  {}\n",
                        d.request_id,
                        name(&d.display_name),
                        name(&d.platform),
                        name(&d.role)
                    ));
                }
            }
            if !paired.is_empty() {
                out.push_str(&format!("paired ({}):\n", paired.len()));
                for d in paired {
                    out.push_str(&format!(
                        "  {}  {}  {}  {}\n",
                        d.device_id,
                        name(&d.display_name),
                        name(&d.platform),
                        name(&d.role)
                    ));
                }
            }
            out
        }
        DevicesReport::Approved {
            request_id,
            device_id,
        } => format!("approved {device_id} (request {request_id})"),
        DevicesReport::Rejected {
            request_id,
            device_id,
        } => format!("rejected {device_id} (request {request_id})"),
    }
}

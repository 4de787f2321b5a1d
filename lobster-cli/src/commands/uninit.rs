//! `lobsterd uninit`.

use lobster_core::config::Config;
use lobster_core::host::{self, Outcome, UninitOptions};
use lobster_core::tenant::TenantError;
use lobster_core::Error;

use super::tenants::confirm;
use super::Context;
use crate::args::UninitArgs;

pub async fn run(ctx: &Context, args: &UninitArgs) -> Result<(), Error> {
    let path = Config::resolve_path(ctx.config.as_deref());
    let config = Config::load(&path)?;
    if args.purge
        && !args.yes
        && !confirm(&format!(
            "Remove lobster's setup and all its state ({}, overlays, snapshots, logs, images, Caddy's CA)?",
            config.paths.state_dir.display()
        ))
    {
        return Err(Error::from(TenantError::Aborted {
            operation: "uninit --purge",
        }));
    }
    let options = UninitOptions {
        purge: args.purge,
        config_path: Some(path),
        ..UninitOptions::default()
    };
    let report = host::uninit(&config, &options).await?;
    ctx.print(&report, || {
        if !report.changed() {
            return "nothing to do: lobster's host setup is not here (already removed)".into();
        }
        let mut out = String::new();
        for step in &report.steps {
            let mark = match step.outcome {
                Outcome::Removed => "removed",
                Outcome::Absent => "absent",
                Outcome::Kept => "kept",
                Outcome::Failed => "FAILED",
            };
            out += &format!("{mark:<8} {:<14} {}\n", step.name, step.detail);
        }
        out
    });
    Ok(())
}

//! `lobsterd init`.

use lobster_core::config::Config;
use lobster_core::host::{self, InitOptions};
use lobster_core::Error;

use super::Context;
use crate::args::InitArgs;

pub async fn run(ctx: &Context, args: InitArgs) -> Result<(), Error> {
    let path = Config::resolve_path(ctx.config.as_deref());
    let state_dir = args
        .state_dir
        .map(|dir| std::path::absolute(&dir).unwrap_or(dir));
    let options = InitOptions {
        domain: args.domain,
        state_dir,
        force: args.force,
    };
    let report = host::init(&path, &options)?;
    let (setup, unit, docs) = if args.no_host_setup {
        (None, None, Vec::new())
    } else {
        let config = Config::load(&path)?;
        let setup = host::setup(&config).await?;
        let exe = std::env::current_exe().map_err(|source| {
            Error::from(lobster_core::tenant::TenantError::Io {
                context: "cannot find the lobsterd binary",
                path: "/proc/self/exe".into(),
                source,
            })
        })?;
        let config_path = std::path::absolute(&path).unwrap_or(path.clone());
        let unit = host::install_watch_unit(
            &exe,
            &config_path,
            "/etc/systemd/system".as_ref(),
            &config.paths.state_dir,
        )
        .await?;
        let docs = host::install_files(&config.paths.state_dir, &crate::docs::system_files())?;
        (Some(setup), Some(unit), docs)
    };
    let mut json = serde_json::to_value(&report).expect("report serialises");
    json["host_setup"] = serde_json::to_value(&setup).expect("report serialises");
    json["watch_unit"] = serde_json::to_value(unit).expect("report serialises");
    json["docs_installed"] = serde_json::to_value(&docs).expect("report serialises");
    ctx.print(&json, || {
        let mut out = match report.config_action {
            "written" => format!("config: wrote {}\n", report.config_path.display()),
            "unchanged" => format!("config: {} is up to date\n", report.config_path.display()),
            _ => format!(
                "config: kept existing {} (it differs from the defaults; --force overwrites)\n",
                report.config_path.display()
            ),
        };
        for p in &report.prerequisites {
            out += &format!(
                "  {} {:<11} {}\n",
                if p.ok { "ok" } else { "--" },
                p.name,
                p.detail
            );
            if let Some(fix) = &p.fix {
                out += &format!("     {:<11} fix: {fix}\n", "");
            }
        }
        if let Some(setup) = &setup {
            out += &format!(
                "host: ip forwarding on; firewall base chains {}; caddy {}{}\n",
                if setup.firewall_changes == 0 {
                    "in place"
                } else {
                    "created"
                },
                setup.caddy.replace('_', " "),
                setup
                    .caddy_pid
                    .map(|pid| format!(" (pid {pid}, log {})", setup.caddy_log.display()))
                    .unwrap_or_default(),
            );
        }
        match unit {
            Some(host::UnitAction::Installed) => {
                out += &format!("watchdog: {} installed and started\n", host::WATCH_UNIT)
            }
            Some(host::UnitAction::Unchanged) => {
                out += &format!("watchdog: {} in place and started\n", host::WATCH_UNIT)
            }
            Some(host::UnitAction::NoSystemd) => {
                out += "watchdog: systemd is not running here; start it with `lobsterd watch -d`\n"
            }
            Some(host::UnitAction::OtherNetns) => {
                out += "watchdog: not in the host's network namespace, no systemd unit; start it with `lobsterd watch -d`\n"
            }
            None => {}
        }
        if !docs.is_empty() {
            out += &format!(
                "docs: shell completions and man pages installed ({} files)\n",
                docs.len()
            );
        }
        let missing = report.missing().count();
        if missing > 0 {
            out += &format!(
                "{missing} prerequisite(s) missing; tenants cannot run until they are in place\n"
            );
        }
        out
    });
    Ok(())
}

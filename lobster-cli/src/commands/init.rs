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
    let (setup, units, docs) = if args.no_host_setup {
        (None, Vec::new(), Vec::new())
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
        let mut units = Vec::new();
        for daemon in host::Daemon::ALL {
            let action = host::install_unit(
                daemon,
                &exe,
                &config_path,
                "/etc/systemd/system".as_ref(),
                &config.paths.state_dir,
            )
            .await?;
            units.push((daemon, action));
        }
        let docs = host::install_files(&config.paths.state_dir, &crate::docs::system_files())?;
        (Some(setup), units, docs)
    };
    let mut json = serde_json::to_value(&report).expect("report serialises");
    json["host_setup"] = serde_json::to_value(&setup).expect("report serialises");
    for daemon in host::Daemon::ALL {
        let action = units.iter().find(|(d, _)| *d == daemon).map(|(_, a)| a);
        json[daemon.report_key()] = serde_json::to_value(action).expect("report serialises");
    }
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
        for (daemon, action) in &units {
            let (what, by_hand) = match daemon {
                host::Daemon::Watch => ("watchdog", "lobsterd watch -d"),
                host::Daemon::Api => ("HTTP API", "lobsterd serve"),
            };
            let unit = daemon.unit_name();
            out += &match action {
                host::UnitAction::Installed => format!("{what}: {unit} installed and started\n"),
                host::UnitAction::Unchanged => format!("{what}: {unit} in place and started\n"),
                host::UnitAction::NoSystemd => {
                    format!("{what}: systemd is not running here; start it with `{by_hand}`\n")
                }
                host::UnitAction::OtherNetns => format!(
                    "{what}: not in the host's network namespace, no systemd unit; start it with `{by_hand}`\n"
                ),
            };
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

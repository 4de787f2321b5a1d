//! `lobsterd spawn`: build a validated `TenantSpec` from the arguments.

use std::io::Read;

use lobster_core::config::Backend;
use lobster_core::tenant::progress::{Phase, ProgressEvent, ProgressSink};
use lobster_core::tenant::TenantError;
use lobster_core::{Error, TenantSpec};

use super::Context;
use crate::args::{BackendArg, SpawnArgs};

pub async fn run(ctx: &Context, args: SpawnArgs) -> Result<(), Error> {
    let host = ctx.host()?;
    let mut builder = TenantSpec::builder(&args.name);
    if let Some(v) = args.vcpus {
        builder = builder.vcpus(v);
    }
    if let Some(m) = args.memory_mib {
        builder = builder.memory_mib(m);
    }
    if let Some(m) = args.overlay_size_mib {
        builder = builder.overlay_size_mib(m);
    }
    if let Some(m) = args.disk_mib_per_s {
        builder = builder.disk_mib_per_s(m);
    }
    if let Some(i) = args.disk_iops {
        builder = builder.disk_iops(i);
    }
    if let Some(m) = args.net_mbit_per_s {
        builder = builder.net_mbit_per_s(m);
    }
    if let Some(secs) = args.idle_suspend_after {
        builder = builder.idle_suspend_after_s(secs);
    }
    if let Some(b) = args.backend {
        builder = builder.backend(match b {
            BackendArg::Firecracker => Backend::Firecracker,
            BackendArg::Qemu => Backend::Qemu,
        });
    }
    if let Some(archive) = &args.from_snap {
        builder = builder.from_snap(archive);
    }
    if let Some(command) = &args.command {
        builder = builder.command(vec!["/bin/sh".into(), "-c".into(), command.clone()]);
    }
    for pair in &args.env {
        let (k, v) = split_pair(pair, "env")?;
        builder = builder.env(k, v);
    }
    if let Some(path) = &args.secrets_file {
        let text = read_secrets(path)?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (k, v) = split_pair(line, "secrets")?;
            builder = builder.secret(k, v);
        }
    }
    let spec = builder.build()?;
    let tenant = host
        .spawn_with_progress(spec, Some(progress_sink()))
        .await?;
    ctx.print(&tenant, || {
        format!("spawned {} at {}", tenant.name(), tenant.route())
    });
    Ok(())
}

/// Progress on stderr, a line as each step starts and ends, so stdout stays
/// the result (text or JSON).
pub fn progress_sink() -> ProgressSink {
    std::sync::Arc::new(|event: &ProgressEvent| match &event.phase {
        Phase::Started => eprintln!("  [{}] ...", event.step),
        Phase::Done { elapsed } => eprintln!("  [{}] done in {:.1?}", event.step, elapsed),
        Phase::Failed { elapsed } => eprintln!("  [{}] failed after {:.1?}", event.step, elapsed),
    })
}

fn split_pair<'a>(pair: &'a str, field: &'static str) -> Result<(&'a str, &'a str), Error> {
    pair.split_once('=').ok_or_else(|| {
        // Never echo a secret line back.
        let shown = if field == "secrets" {
            "a line".to_owned()
        } else {
            format!("`{pair}`")
        };
        TenantError::InvalidSpec {
            field,
            reason: format!("{shown} is not KEY=VALUE"),
        }
        .into()
    })
}

fn read_secrets(path: &std::path::Path) -> Result<String, Error> {
    let mut text = String::new();
    let result = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map(|_| ())
    };
    result.map_err(|e| {
        Error::from(TenantError::InvalidSpec {
            field: "secrets_file",
            reason: format!("cannot read {}: {e}", path.display()),
        })
    })?;
    Ok(text)
}

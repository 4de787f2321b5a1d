//! `lobsterd cp`: copy a file or directory into a tenant's guest
//! (`Host::copy_to_guest`) or out of it (`Host::copy_from_guest`). Only
//! parsing lives here: which side is `NAME:PATH`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use lobster_core::store::name::validate_tenant_name;
use lobster_core::tenant::HostOwner;
use lobster_core::Error;

use super::Context;
use crate::args::CpArgs;
use crate::exit::USAGE;

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    /// A path on this machine.
    Local(PathBuf),
    /// `NAME:PATH`: a path in tenant `NAME`'s guest.
    Guest { name: String, path: String },
}

/// `NAME:PATH` when the text before the first `:` is a valid tenant name
/// (so `./a:b` and `/x:y` are local paths), else a local path.
fn side(arg: OsString) -> Side {
    if let Some((name, path)) = arg.to_str().and_then(|a| a.split_once(':')) {
        if validate_tenant_name(name).is_ok() {
            return Side::Guest {
                name: name.to_owned(),
                path: path.to_owned(),
            };
        }
    }
    Side::Local(arg.into())
}

pub async fn run(ctx: &Context, args: CpArgs) -> Result<ExitCode, Error> {
    let owner = if args.preserve_owner {
        HostOwner::Archive
    } else {
        HostOwner::Invoker
    };
    let summary = match (side(args.src), side(args.dst)) {
        (Side::Local(src), Side::Guest { name, path }) => {
            if args.preserve_owner {
                return Ok(usage(
                    "-a/--preserve-owner applies to a copy out of a guest (cp NAME:SRC DST)",
                ));
            }
            ctx.host()?.copy_to_guest(&name, &src, &path).await?
        }
        (Side::Guest { name, path }, Side::Local(dst)) => {
            ctx.host()?
                .copy_from_guest(&name, &path, &dst, owner)
                .await?
        }
        (Side::Local(_), Side::Local(_)) => {
            return Ok(usage(
                "neither SRC nor DST names a guest: write one side as NAME:PATH",
            ))
        }
        (Side::Guest { .. }, Side::Guest { .. }) => {
            return Ok(usage(
                "both SRC and DST name a guest: one side must be a local path (write one holding `:` as ./a:b)",
            ))
        }
    };
    ctx.print(&summary, || {
        format!(
            "copied {} entries, {} bytes",
            summary.entries, summary.bytes
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// Prints a usage error and returns its exit code.
fn usage(problem: &str) -> ExitCode {
    eprintln!("error: {problem}");
    ExitCode::from(USAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_side_is_a_guest_only_behind_a_tenant_name() {
        let guest = |name: &str, path: &str| Side::Guest {
            name: name.into(),
            path: path.into(),
        };
        assert_eq!(side("alice:/root/x".into()), guest("alice", "/root/x"));
        assert_eq!(side("alice:a:b".into()), guest("alice", "a:b"));
        for local in ["./a:b", "/x:y", "Alice:/x", "plain", "1a:/x"] {
            assert_eq!(side(local.into()), Side::Local(local.into()), "{local}");
        }
    }
}

//! Copying files and directories between the host and a tenant's guest
//! (`files.put`, `files.get` over the authenticated agent channel, see
//! [`crate::agent::Agent::put_path`]). Paths are checked before anything is
//! touched; the tenant goes through the same gate as `exec`
//! ([`super::awake`]): running or suspended (then resumed), held awake
//! while the copy runs. Both directions are capped by `copy.max_bytes`
//! and place their result atomically or not at all.

use std::path::Path;

use lobster_agent_proto::archive::{OwnerPolicy, Summary, UnpackOptions};
use serde::Serialize;

use crate::context::Context;
use crate::error::Result;

use super::TenantError;

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CopySummary {
    /// Regular files, directories and symbolic links placed.
    pub entries: u64,
    /// Bytes of file content placed.
    pub bytes: u64,
}

/// Who owns what a copy from the guest creates on the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostOwner {
    /// The user running the copy (root's copies are root's).
    #[default]
    Invoker,
    /// The numeric owners the guest's files have (needs root).
    Archive,
}

impl From<Summary> for CopySummary {
    fn from(summary: Summary) -> Self {
        CopySummary {
            entries: summary.entries,
            bytes: summary.bytes,
        }
    }
}

/// Copies host `src` (a file or directory) to `dst` in tenant `name`'s
/// guest (absolute; an existing directory receives it inside).
pub(crate) async fn copy_to_guest(
    context: &Context,
    name: &str,
    src: &Path,
    dst: &str,
) -> Result<CopySummary> {
    guest_path("dst", dst)?;
    std::fs::metadata(src).map_err(|source| TenantError::Io {
        context: "reading the copy's source",
        path: src.to_owned(),
        source,
    })?;
    let hold = super::awake::awake_for(context, name, "cp").await?;
    // Boxed: a copy's future is large, and it is awaited after a resume.
    let copied = Box::pin(
        hold.agent()
            .put_path(src, dst, context.config().copy.max_bytes),
    )
    .await;
    hold.release().await;
    Ok(copied?.into())
}

/// Copies `src` (absolute) from tenant `name`'s guest to host `dst` (an
/// existing directory receives it inside); setuid and setgid bits are
/// dropped.
pub(crate) async fn copy_from_guest(
    context: &Context,
    name: &str,
    src: &str,
    dst: &Path,
    owner: HostOwner,
) -> Result<CopySummary> {
    guest_path("src", src)?;
    let root = rustix::process::geteuid().is_root();
    let owner = match owner {
        HostOwner::Invoker => OwnerPolicy::Process,
        HostOwner::Archive if root => OwnerPolicy::Archive,
        HostOwner::Archive => {
            return Err(TenantError::InvalidCopy {
                field: "preserve_owner",
                reason: "keeping the guest's owners needs root".into(),
            }
            .into())
        }
    };
    if !dst.is_dir() {
        let parent = match dst.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::metadata(parent).map_err(|source| TenantError::Io {
            context: "reading the directory of the copy's destination",
            path: parent.to_owned(),
            source,
        })?;
    }
    let options = UnpackOptions {
        owner,
        keep_setid: false,
    };
    let hold = super::awake::awake_for(context, name, "cp").await?;
    let copied =
        Box::pin(
            hold.agent()
                .get_path(src, dst, context.config().copy.max_bytes, options),
        )
        .await;
    hold.release().await;
    Ok(copied?.into())
}

/// Checks a guest path: absolute, without NUL.
fn guest_path(field: &'static str, path: &str) -> Result<()> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(TenantError::InvalidCopy {
            field,
            reason: format!("{path:?} is not an absolute guest path"),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn a_guest_path_must_be_absolute() {
        guest_path("dst", "/root/x").unwrap();
        for bad in ["root/x", "", "/a\0b"] {
            let err = guest_path("dst", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
            assert!(err.to_string().contains("`dst`"), "{err}");
        }
    }
}

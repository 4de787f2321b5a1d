//! Files lobster puts outside its own directories: man pages written into
//! a directory (packaging), and shell completions and man pages installed
//! where the distribution reads them (`init`; recorded in [`HostChanges`]
//! so `uninit` removes them).

use std::path::{Path, PathBuf};

use super::unit::in_init_netns;
use super::{HostChanges, MachineError};

/// Writes each `(name, bytes)` into `dir` (created if missing), mode 0644.
/// Returns the paths written.
pub fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<Vec<PathBuf>, MachineError> {
    std::fs::create_dir_all(dir).map_err(|source| MachineError::Io {
        context: "cannot create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    files
        .iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            write(&path, bytes).map(|()| path)
        })
        .collect()
}

/// Installs each `(path, bytes)` whose directory exists (a distribution
/// without bash-completion gets no bash completion), recording each in
/// `state_dir`'s [`HostChanges`] first. Nothing is installed from another
/// network namespace than PID 1's: that is a test or a demo, not the host.
/// Returns the paths installed.
pub fn install_files(
    state_dir: &Path,
    files: &[(PathBuf, Vec<u8>)],
) -> Result<Vec<PathBuf>, MachineError> {
    if !in_init_netns() {
        return Ok(Vec::new());
    }
    let wanted: Vec<&(PathBuf, Vec<u8>)> = files
        .iter()
        .filter(|(path, _)| path.parent().is_some_and(Path::is_dir))
        .collect();
    HostChanges::update(state_dir, |c| {
        c.files.extend(wanted.iter().map(|(path, _)| path.clone()))
    })?;
    wanted
        .into_iter()
        .map(|(path, bytes)| write(path, bytes).map(|()| path.clone()))
        .collect()
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), MachineError> {
    crate::base::replace_file(path, bytes, 0o644).map_err(|source| MachineError::Io {
        context: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_written_world_readable_into_a_new_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("man/man1");
        let written = write_files(&out, &[("a.1".into(), b".TH A 1\n".to_vec())]).unwrap();
        assert_eq!(written, [out.join("a.1")]);
        let meta = std::fs::metadata(out.join("a.1")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        assert_eq!(std::fs::read(out.join("a.1")).unwrap(), b".TH A 1\n");
    }
}

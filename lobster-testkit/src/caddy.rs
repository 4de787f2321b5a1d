//! Support for tests that run a real Caddy as its unprivileged user: a
//! temporary directory that user can reach, a connect attempt as `nobody`,
//! a snapshot of the system trust store, and the process's credentials.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A temporary directory others may pass through (mode 0711): Caddy's
/// private directory inside it is then reachable by Caddy's user, and
/// nothing in it can be listed.
pub fn reachable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod tempdir");
    dir
}

/// Connects to the unix socket `path` as `nobody` (uid and gid 65534, no
/// supplementary groups) and returns the outcome: `connected`, or the
/// errno name (`EACCES`, `ENOENT`, ...).
pub fn connect_as_nobody(path: &Path) -> String {
    use std::os::unix::process::CommandExt;
    let script = "import errno, socket, sys\n\
                  s = socket.socket(socket.AF_UNIX)\n\
                  try:\n    s.connect(sys.argv[1]); print('connected')\n\
                  except OSError as e:\n    print(errno.errorcode[e.errno])\n";
    let out = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(path)
        .uid(65534)
        .gid(65534)
        .env_clear()
        .output()
        .expect("run python3 as nobody");
    assert!(
        out.status.success(),
        "python3 as nobody: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The system trust store, byte for byte: every entry under
/// `/usr/local/share/ca-certificates` and `/etc/ssl/certs` with its
/// contents (a symlink by its target).
pub fn trust_store() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut entries = BTreeMap::new();
    for root in ["/usr/local/share/ca-certificates", "/etc/ssl/certs"] {
        collect(Path::new(root), &mut entries);
    }
    entries
}

fn collect(path: &Path, entries: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let value = if meta.is_symlink() {
        let target = std::fs::read_link(path).expect("readlink");
        format!("-> {}", target.display()).into_bytes()
    } else if meta.is_dir() {
        for entry in std::fs::read_dir(path).expect("read trust store dir") {
            collect(&entry.expect("dir entry").path(), entries);
        }
        b"dir".to_vec()
    } else {
        std::fs::read(path).expect("read trust store file")
    };
    entries.insert(path.to_path_buf(), value);
}

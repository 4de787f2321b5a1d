//! Getting the agent's token and network settings into a guest.
//!
//! The token is not put on the kernel command line (where every guest
//! process, the VMM config and snapshots would carry it). Before boot the
//! host writes it into the tenant disk at `meta/agent.token` (mode 0600),
//! outside the overlay's `upper/` directory, so it is not part of the guest's
//! root filesystem; the agent reads it from `/lobster/disk/meta/agent.token`.
//! Non-secret settings travel as `lobster.*` kernel command-line keys, which
//! the initramfs and the agent parse (`ip=` does not work with the guest
//! kernel: it is built without `CONFIG_IP_PNP`).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use super::AgentError;

/// Where the token lives inside the tenant disk.
pub const TOKEN_PATH_IN_DISK: &str = "meta/agent.token";

/// Files of a tenant disk that hold credentials of the tenant it belonged
/// to: the agent token (and the temporary file `token.rotate` renames into
/// place), and the agent's persisted secrets and workload spec (which
/// carries the gateway token), each with its temporary twin.
pub const CREDENTIAL_PATHS_IN_DISK: [&str; 6] = [
    TOKEN_PATH_IN_DISK,
    "meta/.agent.token.tmp",
    "upper/var/lib/lobster-agent/secrets.json",
    "upper/var/lib/lobster-agent/.secrets.json.tmp",
    "upper/var/lib/lobster-agent/workload.json",
    "upper/var/lib/lobster-agent/.workload.json.tmp",
];

const DEBUGFS_TIMEOUT: Duration = Duration::from_secs(20);
/// A full check of a large, hostile image may take a while, never forever.
const E2FSCK_TIMEOUT: Duration = Duration::from_secs(300);

/// A new random token: 32 bytes from the kernel's CSPRNG, hex-encoded.
pub fn generate_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The guest's network and agent settings, as kernel command-line keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNetwork {
    /// The guest's address.
    pub address: Ipv4Addr,
    /// Prefix length of the tenant subnet (30).
    pub prefix: u8,
    /// The host side of the /30 (default route).
    pub gateway: Ipv4Addr,
    /// Resolver for the guest (written to `/etc/resolv.conf`), if any.
    pub dns: Option<Ipv4Addr>,
    /// Agent RPC port.
    pub agent_port: u16,
    /// Agent health port.
    pub health_port: u16,
}

impl GuestNetwork {
    /// `lobster.ip=... lobster.gw=... lobster.agent_port=... lobster.health_port=... [lobster.dns=...]`.
    pub fn kernel_args(&self) -> String {
        let mut args = format!(
            "lobster.ip={}/{} lobster.gw={} lobster.agent_port={} lobster.health_port={}",
            self.address, self.prefix, self.gateway, self.agent_port, self.health_port
        );
        if let Some(dns) = self.dns {
            args.push_str(&format!(" lobster.dns={dns}"));
        }
        args
    }
}

/// Writes `token` to [`TOKEN_PATH_IN_DISK`] inside the (unmounted) ext4
/// image `disk` with `debugfs -w`, replacing any previous token, and reads it
/// back to confirm. Needs `debugfs` (e2fsprogs); no mount, no loop device.
pub async fn write_token(disk: &Path, token: &str) -> Result<(), AgentError> {
    write_token_via(disk, token, &std::env::temp_dir()).await
}

/// [`write_token`], staging the token in a private directory under
/// `scratch`, which is removed on every path (success, failure, panic).
async fn write_token_via(disk: &Path, token: &str, scratch: &Path) -> Result<(), AgentError> {
    let fail = |detail: String| AgentError::Provision {
        path: disk.to_path_buf(),
        detail,
    };
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(fail("the token must be non-empty printable ascii".into()));
    }
    let staged =
        stage_token(scratch, token).map_err(|e| fail(format!("temporary token file: {e}")))?;
    let src = staged.path().join("token");
    let commands = format!(
        "mkdir meta\nset_inode_field meta mode 040700\nrm {TOKEN_PATH_IN_DISK}\nwrite {} {TOKEN_PATH_IN_DISK}\nset_inode_field {TOKEN_PATH_IN_DISK} mode 0100600\n",
        src.display()
    );
    run_debugfs(disk, &["-w", "-f", "-"], Some(commands))
        .await
        .map_err(fail)?;
    let back = run_debugfs(disk, &["-R", &format!("cat {TOKEN_PATH_IN_DISK}")], None)
        .await
        .map_err(fail)?;
    drop(staged);
    if back != token {
        return Err(fail(
            "the token read back differs from the one written".into(),
        ));
    }
    Ok(())
}

/// Makes a tenant disk restored from an archive safe to boot with fresh
/// credentials: replays its journal (a snap is crash-consistent, and a
/// replay after our edits could bring old files back), empties (so no hard
/// link elsewhere keeps the content) and deletes every
/// [`CREDENTIAL_PATHS_IN_DISK`], then checks the whole filesystem and
/// discards its free blocks (holes in the image), so no copy of an old
/// token or secret survives even in freed blocks. A filesystem `e2fsck`
/// cannot repair is refused.
pub async fn clear_credentials(disk: &Path) -> Result<(), AgentError> {
    let fail = |detail: String| AgentError::Provision {
        path: disk.to_path_buf(),
        detail,
    };
    run_e2fsck(disk, "journal_only").await.map_err(fail)?;
    let commands: String = CREDENTIAL_PATHS_IN_DISK
        .iter()
        .map(|p| format!("punch {p} 0\nrm {p}\n"))
        .collect();
    run_debugfs(disk, &["-w", "-f", "-"], Some(commands))
        .await
        .map_err(fail)?;
    run_e2fsck(disk, "discard").await.map_err(fail)
}

/// `e2fsck -f -y -E <extended>`: exit codes 0 (clean) and 1 (errors
/// corrected) pass. Its report goes nowhere: a hostile image could make it
/// long.
async fn run_e2fsck(disk: &Path, extended: &str) -> Result<(), String> {
    let args = ["-f", "-y", "-E", extended];
    let out = run_tool("e2fsck", E2FSCK_TIMEOUT, disk, &args, None, false).await?;
    match out.status.code() {
        Some(0 | 1) => Ok(()),
        _ => Err(format!(
            "e2fsck -E {extended} found a filesystem it cannot repair ({}): {}",
            out.status,
            tail(&out.stderr)
        )),
    }
}

/// `token` in a 0600 file `token` inside a fresh 0700 directory under
/// `scratch`; the directory goes when the guard drops.
fn stage_token(scratch: &Path, token: &str) -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::Builder::new()
        .prefix("lobster-token-")
        .tempdir_in(scratch)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.path().join("token"))?
        .write_all(token.as_bytes())?;
    Ok(dir)
}

async fn run_debugfs(disk: &Path, args: &[&str], stdin: Option<String>) -> Result<String, String> {
    let out = run_tool("debugfs", DEBUGFS_TIMEOUT, disk, args, stdin, true).await?;
    if !out.status.success() {
        return Err(format!(
            "debugfs failed ({}): {}",
            out.status,
            tail(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program ARGS disk` (an e2fsprogs tool) within `timeout`, feeding
/// it `stdin`, keeping its stdout only if `stdout` is set.
async fn run_tool(
    program: &str,
    timeout: Duration,
    disk: &Path,
    args: &[&str],
    stdin: Option<String>,
    stdout: bool,
) -> Result<std::process::Output, String> {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .arg(disk)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("running {program}: {e}"))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|e| format!("feeding {program}: {e}"))?;
    }
    tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("{program} did not finish within {timeout:?}"))?
        .map_err(|e| format!("running {program}: {e}"))
}

/// The last 2 KiB of a tool's stderr, for an error message.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let start = text.len().saturating_sub(2048);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn kernel_args_name_every_key() {
        let net = GuestNetwork {
            address: Ipv4Addr::new(10, 0, 0, 6),
            prefix: 30,
            gateway: Ipv4Addr::new(10, 0, 0, 5),
            dns: Some(Ipv4Addr::new(10, 0, 0, 5)),
            agent_port: 52,
            health_port: 53,
        };
        assert_eq!(
            net.kernel_args(),
            "lobster.ip=10.0.0.6/30 lobster.gw=10.0.0.5 lobster.agent_port=52 lobster.health_port=53 lobster.dns=10.0.0.5"
        );
    }

    #[tokio::test]
    async fn token_lands_in_an_ext4_image_without_mounting() {
        if which("mkfs.ext4").is_none() || which("debugfs").is_none() {
            panic!("this test needs mkfs.ext4 and debugfs (e2fsprogs)");
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.ext4");
        let st = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .arg("8M")
            .status()
            .unwrap();
        assert!(st.success());
        let debugfs = |request: &str| {
            let out = std::process::Command::new("debugfs")
                .args(["-R", request])
                .arg(&img)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        write_token(&img, "first").await.unwrap();
        assert_eq!(debugfs("cat meta/agent.token"), "first");
        write_token(&img, "second-token").await.unwrap();
        assert_eq!(
            debugfs("cat meta/agent.token"),
            "second-token",
            "the second token replaces the first"
        );
        let stat = debugfs("stat meta/agent.token");
        assert!(stat.contains("Mode:  0600"), "{stat}");
        assert!(write_token(&img, "bad token").await.is_err());

        assert_eq!(
            debugfs("cat meta/agent.token"),
            "second-token",
            "a refused token changes nothing"
        );

        // Nothing is left behind in the scratch directory, whether debugfs
        // worked or failed.
        let scratch = tempfile::tempdir().unwrap();
        write_token_via(&img, "third", scratch.path())
            .await
            .unwrap();
        let not_ext4 = dir.path().join("not-ext4");
        std::fs::write(&not_ext4, "garbage").unwrap();
        assert!(write_token_via(&not_ext4, "fourth", scratch.path())
            .await
            .is_err());
        assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn clear_credentials_leaves_no_copy_of_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.ext4");
        let st = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096"])
            .arg(&img)
            .arg("16M")
            .status()
            .unwrap();
        assert!(st.success());
        // Each credential file holds a distinct old value; a workload file
        // beside them must survive.
        let mut script = String::from("mkdir meta\nmkdir upper\nmkdir upper/var\nmkdir upper/var/lib\nmkdir upper/var/lib/lobster-agent\n");
        let mut olds = Vec::new();
        for (i, path) in CREDENTIAL_PATHS_IN_DISK
            .iter()
            .chain(&["upper/var/lib/keep"])
            .enumerate()
        {
            let old = format!("old-credential-{i}-{}", generate_token().unwrap());
            let src = dir.path().join(format!("src{i}"));
            std::fs::write(&src, &old).unwrap();
            script.push_str(&format!("write {} {path}\n", src.display()));
            olds.push(old);
        }
        // A hard link elsewhere shares the token's content.
        script.push_str(&format!(
            "ln {TOKEN_PATH_IN_DISK} upper/var/lib/tok\nsif {TOKEN_PATH_IN_DISK} links_count 2\n"
        ));
        run_debugfs(&img, &["-w", "-f", "-"], Some(script))
            .await
            .unwrap();
        let keep = olds.pop().unwrap();
        let raw = std::fs::read(&img).unwrap();
        let found =
            |raw: &[u8], needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(
            olds.iter().all(|o| found(&raw, o)),
            "the fixture holds every credential"
        );

        clear_credentials(&img).await.unwrap();
        let raw = std::fs::read(&img).unwrap();
        for old in &olds {
            assert!(!found(&raw, old), "{old} survives somewhere in the image");
        }
        assert!(found(&raw, &keep), "the workload's own file is kept");
        write_token(&img, "fresh").await.unwrap();
        // Fresh disks (nothing to delete) pass too.
        clear_credentials(&img).await.unwrap();

        let not_ext4 = dir.path().join("not-ext4");
        std::fs::write(&not_ext4, vec![7u8; 1 << 20]).unwrap();
        let err = clear_credentials(&not_ext4).await.unwrap_err().to_string();
        assert!(err.contains("not-ext4"), "{err}");
    }

    fn which(tool: &str) -> Option<std::path::PathBuf> {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
    }
}

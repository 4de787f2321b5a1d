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

const DEBUGFS_TIMEOUT: Duration = Duration::from_secs(20);

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
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new("debugfs");
    cmd.args(args)
        .arg(disk)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("running debugfs: {e}"))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|e| format!("feeding debugfs: {e}"))?;
    }
    let out = tokio::time::timeout(DEBUGFS_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("debugfs did not finish within {DEBUGFS_TIMEOUT:?}"))?
        .map_err(|e| format!("running debugfs: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "debugfs failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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

    fn which(tool: &str) -> Option<std::path::PathBuf> {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
    }
}

//! The TAP traffic shaper: a tenant's traffic held to its rate in both
//! directions with `tc` (each call bounded by [`TC_TIMEOUT`]). A token
//! bucket filter on the TAP's egress holds what the guest receives; what
//! the guest sends arrives on the TAP's ingress, which cannot queue, so it
//! is redirected (`mirred`) to the TAP's own IFB device and held there by a
//! second token bucket (no policer needed: `act_police` is often not
//! built). Works for every backend: QEMU has no network rate limiter of its
//! own, and under Firecracker it backs up its limiters.

use std::time::Duration;

use super::NetworkError;

/// Bound on each `tc` or `ip` call.
pub const TC_TIMEOUT: Duration = Duration::from_secs(5);

/// The IFB device that shapes what `dev` receives: `lobi<id>` for
/// `lob-<id>` (outside the firewall's `lob-+`; at most 15 bytes).
pub fn ifb_of(dev: &str) -> String {
    let id = dev.strip_prefix(super::TAP_PREFIX).unwrap_or(dev);
    format!("lobi{id}").chars().take(15).collect()
}

/// How `dev` is shaped (pure): the IFB device to add, and one `tc -batch`
/// script holding every qdisc and filter, so shaping a new TAP costs two
/// processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shaping {
    /// The IFB device holding what the guest sends.
    pub ifb: String,
    /// `tc -batch` lines: both token buckets, the ingress qdisc, the redirect.
    pub tc_batch: String,
}

/// The shaping of `dev` to `bits_per_s` each way, once any earlier shaping
/// is gone.
pub fn plan(dev: &str, bits_per_s: u64) -> Shaping {
    let ifb = ifb_of(dev);
    let rate = bits_per_s.to_string() + "bit";
    // A tenth of a second of traffic, and never less than a few packets.
    let burst = (bits_per_s / 8 / 10).max(32 * 1024);
    let tbf = |d: &str| {
        format!("qdisc replace dev {d} root tbf rate {rate} burst {burst} latency 100ms\n")
    };
    let tc_batch = [
        tbf(dev),
        tbf(&ifb),
        format!("qdisc add dev {dev} handle ffff: ingress\n"),
        format!(
            "filter add dev {dev} parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev {ifb}\n"
        ),
    ]
    .concat();
    Shaping { ifb, tc_batch }
}

/// Shapes `dev` to `bits_per_s` each way, replacing any earlier shaping;
/// `None` removes it. `fresh`: `dev` was just created, so there is no
/// earlier shaping to clear.
pub async fn apply(dev: &str, bits_per_s: Option<u64>, fresh: bool) -> Result<(), NetworkError> {
    if !fresh {
        clear(dev).await;
    }
    let Some(bits) = bits_per_s else {
        return Ok(());
    };
    let shaping = plan(dev, bits);
    let add_ifb = ["ip", "link", "add", &shaping.ifb, "up", "type", "ifb"];
    let mut result = run(&add_ifb, None).await;
    if result.is_err() {
        // An IFB left behind by a TAP deleted under us: the TAP's qdiscs
        // went with it, its IFB did not.
        remove(dev).await;
        result = run(&add_ifb, None).await;
    }
    if result.is_ok() {
        result = run(&["tc", "-batch", "-"], Some(&shaping.tc_batch)).await;
    }
    if result.is_err() {
        clear(dev).await;
    }
    result
}

/// Removes every qdisc lobster put on `dev` and its IFB device; what is
/// absent is fine.
async fn clear(dev: &str) {
    let script = format!("qdisc del dev {dev} ingress\nqdisc del dev {dev} root\n");
    let _ = run(&["tc", "-force", "-batch", "-"], Some(&script)).await;
    remove(dev).await;
}

/// Deletes `dev`'s IFB device, if any (its qdiscs go with `dev`).
pub async fn remove(dev: &str) {
    let _ = run(&["ip", "link", "del", &ifb_of(dev)], None).await;
}

/// Runs `args` (bounded by [`TC_TIMEOUT`]), feeding `input` on stdin.
async fn run(args: &[&str], input: Option<&str>) -> Result<(), NetworkError> {
    use tokio::io::AsyncWriteExt;
    let context = || args.join(" ");
    let io = |what: &str| {
        let what = format!("{what} {}", context());
        move |source| NetworkError::Io {
            context: what,
            source,
        }
    };
    let call = async {
        let mut child = tokio::process::Command::new(args[0])
            .args(&args[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io("cannot run"))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        if let Some(input) = input {
            stdin
                .write_all(input.as_bytes())
                .await
                .map_err(io("cannot feed"))?;
        }
        drop(stdin);
        child
            .wait_with_output()
            .await
            .map_err(io("cannot wait for"))
    };
    let out = tokio::time::timeout(TC_TIMEOUT, call)
        .await
        .map_err(|_| NetworkError::Io {
            context: format!("{} did not finish within {TC_TIMEOUT:?}", context()),
            source: std::io::ErrorKind::TimedOut.into(),
        })??;
    if out.status.success() {
        return Ok(());
    }
    Err(NetworkError::Io {
        context: format!(
            "{} failed: {}",
            context(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        source: std::io::Error::other(out.status.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_are_held_to_the_rate() {
        let shaping = plan("lob-ab12", 8_000_000);
        assert_eq!(shaping.ifb, "lobiab12");
        assert_eq!(
            shaping.tc_batch.lines().collect::<Vec<_>>(),
            [
                "qdisc replace dev lob-ab12 root tbf rate 8000000bit burst 100000 latency 100ms",
                "qdisc replace dev lobiab12 root tbf rate 8000000bit burst 100000 latency 100ms",
                "qdisc add dev lob-ab12 handle ffff: ingress",
                "filter add dev lob-ab12 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev lobiab12",
            ]
        );
        // Slow rates still let a few full packets through at once.
        assert!(plan("x", 1_000_000).tc_batch.contains(" burst 32768 "));
        assert_eq!(ifb_of("lob-0123456789a"), "lobi0123456789a");
    }
}

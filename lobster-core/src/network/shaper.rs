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

/// The calls (`tc ...` or `ip ...`) that shape `dev` to `bits_per_s` each
/// way, once any earlier shaping is gone (pure).
pub fn plan(dev: &str, bits_per_s: u64) -> Vec<Vec<String>> {
    let ifb = ifb_of(dev);
    let rate = bits_per_s.to_string() + "bit";
    // A tenth of a second of traffic, and never less than a few packets.
    let burst = (bits_per_s / 8 / 10).max(32 * 1024).to_string();
    let tbf = |d: &str| {
        format!("tc qdisc replace dev {d} root tbf rate {rate} burst {burst} latency 100ms")
    };
    [
        tbf(dev),
        format!("ip link add {ifb} type ifb"),
        format!("ip link set {ifb} up"),
        tbf(&ifb),
        format!("tc qdisc add dev {dev} handle ffff: ingress"),
        format!(
            "tc filter add dev {dev} parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev {ifb}"
        ),
    ]
    .iter()
    .map(|line| line.split(' ').map(str::to_owned).collect())
    .collect()
}

/// Shapes `dev` to `bits_per_s` each way, replacing any earlier shaping;
/// `None` removes it.
pub async fn apply(dev: &str, bits_per_s: Option<u64>) -> Result<(), NetworkError> {
    // Absent qdiscs and devices are fine: this is how both cases start clean.
    let _ = run(&["tc", "qdisc", "del", "dev", dev, "ingress"]).await;
    remove(dev).await;
    let Some(bits) = bits_per_s else {
        let _ = run(&["tc", "qdisc", "del", "dev", dev, "root"]).await;
        return Ok(());
    };
    for args in plan(dev, bits) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = run(&args).await {
            remove(dev).await;
            return Err(e);
        }
    }
    Ok(())
}

/// Deletes `dev`'s IFB device, if any (its qdiscs go with `dev`).
pub async fn remove(dev: &str) {
    let _ = run(&["ip", "link", "del", &ifb_of(dev)]).await;
}

async fn run(args: &[&str]) -> Result<(), NetworkError> {
    let context = || args.join(" ");
    let run = tokio::process::Command::new(args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(TC_TIMEOUT, run)
        .await
        .map_err(|_| NetworkError::Io {
            context: format!("{} did not finish within {TC_TIMEOUT:?}", context()),
            source: std::io::ErrorKind::TimedOut.into(),
        })?
        .map_err(|source| NetworkError::Io {
            context: format!("cannot run {}", context()),
            source,
        })?;
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
        let plan: Vec<String> = plan("lob-ab12", 8_000_000)
            .iter()
            .map(|a| a.join(" "))
            .collect();
        assert_eq!(
            plan,
            [
                "tc qdisc replace dev lob-ab12 root tbf rate 8000000bit burst 100000 latency 100ms",
                "ip link add lobiab12 type ifb",
                "ip link set lobiab12 up",
                "tc qdisc replace dev lobiab12 root tbf rate 8000000bit burst 100000 latency 100ms",
                "tc qdisc add dev lob-ab12 handle ffff: ingress",
                "tc filter add dev lob-ab12 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev lobiab12",
            ]
        );
        // Slow rates still let a few full packets through at once.
        assert_eq!(super::plan("x", 1_000_000)[0][10], "32768");
        assert_eq!(ifb_of("lob-0123456789a"), "lobi0123456789a");
    }
}

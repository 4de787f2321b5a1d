//! Tenant networking: one persistent TAP per tenant holding the host side of
//! the tenant's /30, and the firewall that isolates it.
//!
//! [`TenantNet`] is the plain description of one tenant's network (allocated
//! by the registry). [`Network`] makes the host match it through rtnetlink and
//! the tun driver (`ensure`, `remove`) and reports drift as data (`check`).
//! [`firewall`] plans the iptables ruleset as data and applies it as one
//! batch per change (atomic per table).

#[cfg(any(test, feature = "testing"))]
mod fake;
pub mod firewall;
mod link;
mod plan;
pub mod shaper;

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::base::{Classify, ErrorKind};
use crate::config::Ipv4Cidr;

#[cfg(any(test, feature = "testing"))]
pub use fake::FakeNetwork;
pub use link::{BoxFuture, Network, NetworkOps};
pub use plan::{Drift, LinkObservation, NetCheck};

/// Every TAP lobster creates is named `lob-<id>`; the firewall matches `lob-+`.
pub const TAP_PREFIX: &str = "lob-";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// An I/O error on a named path or device.
    #[error("{context}")]
    Io {
        /// What was being done, naming the path or device.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tenant network description is malformed.
    #[error("tenant network field `{field}`: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A netlink request failed.
    #[error("netlink: {operation} on {device}")]
    Netlink {
        /// What was asked (`add address`, `delete link`, ...).
        operation: &'static str,
        /// The interface concerned.
        device: String,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// A netlink request did not answer in time.
    #[error("netlink: {operation} on {device} did not answer within {timeout_ms} ms")]
    NetlinkTimeout {
        /// What was asked.
        operation: &'static str,
        /// The interface concerned.
        device: String,
        /// The bound that expired.
        timeout_ms: u64,
    },
    /// A firewall tool could not run or failed.
    #[error("firewall: `{command}` failed{}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Firewall {
        /// The command line, e.g. `iptables-restore --noflush`.
        command: String,
        /// What the tool printed on stderr (trimmed).
        stderr: String,
        /// The cause when the tool could not be run at all.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A firewall tool did not finish in time.
    #[error("firewall: `{command}` did not finish within {timeout_ms} ms")]
    FirewallTimeout {
        /// The command line.
        command: String,
        /// The bound that expired.
        timeout_ms: u64,
    },
    /// `iptables-save` output could not be understood.
    #[error("firewall: cannot parse iptables-save line {line}: `{text}`")]
    FirewallParse {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

impl Classify for NetworkError {
    fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::Io { source, .. } => ErrorKind::from_io(source),
            NetworkError::Invalid { .. } => ErrorKind::InvalidArgument,
            NetworkError::Netlink { source, .. } => match source {
                rtnetlink::Error::NetlinkError(msg) => match msg.raw_code().abs() {
                    libc::EPERM | libc::EACCES => ErrorKind::PermissionDenied,
                    libc::EEXIST => ErrorKind::AlreadyExists,
                    libc::ENODEV | libc::ENOENT => ErrorKind::NotFound,
                    _ => ErrorKind::HostFailure,
                },
                _ => ErrorKind::HostFailure,
            },
            NetworkError::NetlinkTimeout { .. } | NetworkError::FirewallTimeout { .. } => {
                ErrorKind::Timeout
            }
            NetworkError::Firewall { source, stderr, .. } => match source {
                Some(e) if e.kind() == std::io::ErrorKind::NotFound => ErrorKind::Unsupported,
                Some(e) => ErrorKind::from_io(e),
                None if stderr.contains("Permission denied") => ErrorKind::PermissionDenied,
                None => ErrorKind::HostFailure,
            },
            NetworkError::FirewallParse { .. } => ErrorKind::HostFailure,
        }
    }
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A locally administered unicast MAC derived from a guest address
    /// (`06:00:a.b.c.d`, Firecracker's convention), unique as long as guest
    /// addresses are. The registry allocates every tenant's MAC this way.
    pub fn from_guest_ip(ip: Ipv4Addr) -> MacAddr {
        let [a, b, c, d] = ip.octets();
        MacAddr([0x06, 0x00, a, b, c, d])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<MacAddr, String> {
        let mut out = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut out {
            let part = parts
                .next()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| format!("`{text}` is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
            *byte = u8::from_str_radix(part, 16)
                .map_err(|_| format!("`{text}` is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
        }
        if parts.next().is_some() {
            return Err(format!("`{text}` is not a MAC address (aa:bb:cc:dd:ee:ff)"));
        }
        Ok(MacAddr(out))
    }
}

/// One tenant's network, as allocated by the registry: plain data.
///
/// The /30 `subnet` holds the host side (`.1`, on the TAP) and the guest
/// (`.2`). The TAP is `lob-<id>` and only `owner_uid` (the tenant's VMM uid)
/// may attach to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantNet {
    /// Short random tenant id (1..=11 lower-case hex or alphanumeric chars).
    pub id: String,
    /// TAP device name, `lob-<id>`.
    pub tap: String,
    /// The tenant's /30.
    pub subnet: Ipv4Cidr,
    /// Host side of the /30 (first usable address).
    pub host_ip: Ipv4Addr,
    /// Guest side of the /30 (second usable address).
    pub guest_ip: Ipv4Addr,
    /// The guest NIC's MAC (a permanent neighbour entry on the TAP).
    pub mac: MacAddr,
    /// The host port reserved for this tenant (unused by the firewall unless
    /// published; kept so callers pass one value around).
    pub host_port: u16,
    /// The uid allowed to attach to the TAP (the tenant's VMM process).
    pub owner_uid: u32,
    /// The tenant's bandwidth each way in bits per second (the TAP is
    /// shaped to it, see [`shaper`]); `None`: unlimited.
    pub bandwidth_bits_per_s: Option<u64>,
}

impl TenantNet {
    /// Describes a tenant network; the TAP name and both addresses are
    /// derived. `subnet` must be a /30 with host bits zero.
    pub fn new(
        id: &str,
        subnet: Ipv4Cidr,
        mac: MacAddr,
        host_port: u16,
        owner_uid: u32,
    ) -> Result<TenantNet, NetworkError> {
        let invalid = |field, reason: String| Err(NetworkError::Invalid { field, reason });
        if id.is_empty()
            || id.len() > 15 - TAP_PREFIX.len()
            || !id
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        {
            return invalid(
                "id",
                format!("`{id}` must be 1..=11 lower-case letters or digits"),
            );
        }
        if subnet.prefix != 30 || u32::from(subnet.addr) & 3 != 0 {
            return invalid("subnet", format!("{subnet} is not a /30 network"));
        }
        if mac.0[0] & 1 != 0 {
            return invalid("mac", format!("{mac} is a multicast address"));
        }
        if owner_uid == 0 {
            return invalid(
                "owner_uid",
                "uid 0 would let any root process attach; use the tenant's VMM uid".into(),
            );
        }
        let base = u32::from(subnet.addr);
        Ok(TenantNet {
            id: id.to_string(),
            tap: format!("{TAP_PREFIX}{id}"),
            subnet,
            host_ip: Ipv4Addr::from(base + 1),
            guest_ip: Ipv4Addr::from(base + 2),
            mac,
            host_port,
            owner_uid,
            bandwidth_bits_per_s: None,
        })
    }
}

/// Where IPv4 forwarding is switched (per network namespace).
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Turns IPv4 forwarding on (`/proc/sys/net/ipv4/ip_forward`); needed once per
/// host (and per network namespace) for guest traffic to leave. Returns
/// true if it was off (lobster turned it on).
pub fn enable_ip_forwarding() -> Result<bool, NetworkError> {
    if std::fs::read_to_string(IP_FORWARD).is_ok_and(|v| v.trim() == "1") {
        return Ok(false);
    }
    set_ip_forwarding(true).map(|()| true)
}

/// Turns IPv4 forwarding off (what `uninit` does when lobster turned it on).
/// Returns true if it was on.
pub fn disable_ip_forwarding() -> Result<bool, NetworkError> {
    if std::fs::read_to_string(IP_FORWARD).is_ok_and(|v| v.trim() == "0") {
        return Ok(false);
    }
    set_ip_forwarding(false).map(|()| true)
}

fn set_ip_forwarding(on: bool) -> Result<(), NetworkError> {
    let (value, verb) = if on {
        ("1", "enable")
    } else {
        ("0", "disable")
    };
    std::fs::write(IP_FORWARD, value).map_err(|source| NetworkError::Io {
        context: format!("cannot {verb} forwarding in {IP_FORWARD}"),
        source,
    })
}

fn rp_filter_switch(iface: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{iface}/rp_filter")
}

/// Turns on strict reverse-path filtering (`rp_filter = 1`) for `iface`:
/// the kernel drops packets arriving there whose source it would not route
/// back through it (a guest spoofing another address). The kernel uses the
/// larger of this and `conf/all/rp_filter`, so a host-wide loose mode (2)
/// wins; the firewall's own source check still holds then.
pub fn set_strict_reverse_path(iface: &str) -> Result<(), NetworkError> {
    let path = rp_filter_switch(iface);
    std::fs::write(&path, "1").map_err(|source| NetworkError::Io {
        context: format!("cannot turn on strict reverse-path filtering via {path}"),
        source,
    })
}

/// Whether `iface` has strict reverse-path filtering on.
pub fn reverse_path_strict(iface: &str) -> Result<bool, NetworkError> {
    let path = rp_filter_switch(iface);
    std::fs::read_to_string(&path)
        .map(|v| v.trim() == "1")
        .map_err(|source| NetworkError::Io {
            context: format!("cannot read {path}"),
            source,
        })
}

/// Whether IPv4 forwarding is on.
pub fn ip_forwarding_enabled() -> Result<bool, NetworkError> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    std::fs::read_to_string(path)
        .map(|v| v.trim() == "1")
        .map_err(|source| NetworkError::Io {
            context: format!("cannot read {path}"),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Ipv4Cidr {
        Ipv4Cidr::parse(text).unwrap()
    }

    #[test]
    fn tenant_net_derives_tap_and_addresses() {
        let mac: MacAddr = "02:fc:0a:c8:00:06".parse().unwrap();
        let net = TenantNet::new("ab12cd34", cidr("10.200.0.4/30"), mac, 20001, 10001).unwrap();
        assert_eq!(net.tap, "lob-ab12cd34");
        assert_eq!(net.host_ip, Ipv4Addr::new(10, 200, 0, 5));
        assert_eq!(net.guest_ip, Ipv4Addr::new(10, 200, 0, 6));
        assert_eq!(net.mac.to_string(), "02:fc:0a:c8:00:06");
    }

    #[test]
    fn tenant_net_rejects_bad_input_naming_the_field() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let err = |r: Result<TenantNet, NetworkError>| r.unwrap_err().to_string();
        assert!(err(TenantNet::new(
            "TOOLONG0000000",
            cidr("10.0.0.0/30"),
            mac,
            1,
            1
        ))
        .contains("`id`"));
        assert!(err(TenantNet::new("ab", cidr("10.0.0.0/29"), mac, 1, 1)).contains("`subnet`"));
        assert!(err(TenantNet::new(
            "ab",
            cidr("10.0.0.0/30"),
            MacAddr([1, 0, 0, 0, 0, 0]),
            1,
            1
        ))
        .contains("`mac`"));
        assert!(err(TenantNet::new("ab", cidr("10.0.0.0/30"), mac, 1, 0)).contains("`owner_uid`"));
    }

    #[test]
    fn mac_parses_and_rejects() {
        assert_eq!(
            MacAddr::from_guest_ip(Ipv4Addr::new(10, 1, 2, 3)).to_string(),
            "06:00:0a:01:02:03"
        );
        assert!("02:fc:0a:01:02".parse::<MacAddr>().is_err());
        assert!("02:fc:0a:01:02:03:04".parse::<MacAddr>().is_err());
        assert!("zz:fc:0a:01:02:03".parse::<MacAddr>().is_err());
    }
}

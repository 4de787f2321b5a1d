//! Pure comparison of a tenant's TAP as observed with what [`TenantNet`]
//! wants: the drift report (`check`) and the repair steps (`ensure`).

use std::net::Ipv4Addr;

use super::{MacAddr, TenantNet};

/// What the kernel says about one TAP (read through rtnetlink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkObservation {
    /// Interface index.
    pub index: u32,
    /// Whether the link is a TUN/TAP device.
    pub is_tap: bool,
    /// The TAP owner uid, if one is set.
    pub owner: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub admin_up: bool,
    /// IPv4 addresses with prefix length.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    /// The MAC of the permanent neighbour entry for the guest address, if any.
    pub guest_neighbour: Option<MacAddr>,
    /// Whether IPv6 is disabled on the link.
    pub ipv6_disabled: bool,
    /// Whether strict reverse-path filtering is on for the link
    /// (`rp_filter = 1`: packets whose source the host would not route back
    /// through this TAP are dropped).
    pub reverse_path_strict: bool,
}

/// One way the host differs from the tenant's network description.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Drift {
    /// The TAP does not exist.
    Missing,
    /// A link of that name exists but is not a TAP.
    NotTap,
    /// The TAP's owner is not the tenant's uid.
    WrongOwner {
        /// The uid wanted.
        expected: u32,
        /// The uid found (`None`: no owner, anyone may attach).
        actual: Option<u32>,
    },
    /// The TAP is administratively down.
    Down,
    /// The host address of the /30 is not on the TAP.
    MissingAddress,
    /// An address that does not belong on the TAP.
    UnexpectedAddress {
        /// The address.
        addr: Ipv4Addr,
        /// Its prefix length.
        prefix: u8,
    },
    /// No permanent neighbour entry for the guest, or one with another MAC.
    WrongNeighbour {
        /// The MAC found, if any.
        actual: Option<MacAddr>,
    },
    /// IPv6 is enabled on the TAP.
    Ipv6Enabled,
    /// Strict reverse-path filtering is off on the TAP.
    LooseReversePath,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Missing => f.write_str("tap missing"),
            Drift::NotTap => f.write_str("link exists but is not a tap"),
            Drift::WrongOwner { expected, actual } => match actual {
                Some(uid) => write!(f, "tap owner is uid {uid}, not {expected}"),
                None => write!(f, "tap has no owner (want uid {expected})"),
            },
            Drift::Down => f.write_str("tap is down"),
            Drift::MissingAddress => f.write_str("host address missing"),
            Drift::UnexpectedAddress { addr, prefix } => {
                write!(f, "unexpected address {addr}/{prefix}")
            }
            Drift::WrongNeighbour { actual: None } => f.write_str("guest neighbour entry missing"),
            Drift::WrongNeighbour { actual: Some(mac) } => {
                write!(f, "guest neighbour entry has mac {mac}")
            }
            Drift::Ipv6Enabled => f.write_str("ipv6 enabled on tap"),
            Drift::LooseReversePath => f.write_str("strict reverse-path filtering off on tap"),
        }
    }
}

/// The result of `check`: empty `drift` means the TAP is as wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetCheck {
    /// The TAP checked.
    pub tap: String,
    /// Every difference found, in a stable order.
    pub drift: Vec<Drift>,
}

impl NetCheck {
    /// True when nothing drifted.
    pub fn is_ok(&self) -> bool {
        self.drift.is_empty()
    }
}

/// Compares an observation with the wanted state.
pub fn diff(net: &TenantNet, observed: Option<&LinkObservation>) -> Vec<Drift> {
    let Some(obs) = observed else {
        return vec![Drift::Missing];
    };
    if !obs.is_tap {
        return vec![Drift::NotTap];
    }
    let mut drift = Vec::new();
    if obs.owner != Some(net.owner_uid) {
        drift.push(Drift::WrongOwner {
            expected: net.owner_uid,
            actual: obs.owner,
        });
    }
    if !obs.ipv6_disabled {
        drift.push(Drift::Ipv6Enabled);
    }
    if !obs.reverse_path_strict {
        drift.push(Drift::LooseReversePath);
    }
    if !obs.ipv4.contains(&(net.host_ip, net.subnet.prefix)) {
        drift.push(Drift::MissingAddress);
    }
    for &(addr, prefix) in &obs.ipv4 {
        if (addr, prefix) != (net.host_ip, net.subnet.prefix) {
            drift.push(Drift::UnexpectedAddress { addr, prefix });
        }
    }
    if !obs.admin_up {
        drift.push(Drift::Down);
    }
    if obs.guest_neighbour != Some(net.mac) {
        drift.push(Drift::WrongNeighbour {
            actual: obs.guest_neighbour,
        });
    }
    drift
}

/// One change `ensure` makes, in the order it makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Create the TAP (or re-attach) and set its owner; persistent.
    CreateTap,
    /// Write `disable_ipv6 = 1` for the TAP (before it goes up, so it never
    /// gets a link-local address).
    DisableIpv6,
    /// Write `rp_filter = 1` for the TAP (before it goes up).
    StrictReversePath,
    /// Remove a stray address.
    DeleteAddress(Ipv4Addr, u8),
    /// Add the host address with the /30 prefix.
    AddAddress,
    /// Set the link up.
    SetUp,
    /// Add or replace the permanent neighbour entry for the guest MAC.
    SetNeighbour,
}

/// The steps that turn `drift` into nothing. A missing TAP gets every step.
pub(crate) fn repair_steps(drift: &[Drift]) -> Vec<Step> {
    if drift.contains(&Drift::Missing) {
        return vec![
            Step::CreateTap,
            Step::DisableIpv6,
            Step::StrictReversePath,
            Step::AddAddress,
            Step::SetUp,
            Step::SetNeighbour,
        ];
    }
    let mut steps = Vec::new();
    for d in drift {
        let step = match d {
            Drift::Missing | Drift::NotTap => continue,
            Drift::WrongOwner { .. } => Step::CreateTap,
            Drift::Ipv6Enabled => Step::DisableIpv6,
            Drift::LooseReversePath => Step::StrictReversePath,
            Drift::UnexpectedAddress { addr, prefix } => Step::DeleteAddress(*addr, *prefix),
            Drift::MissingAddress => Step::AddAddress,
            Drift::Down => Step::SetUp,
            Drift::WrongNeighbour { .. } => Step::SetNeighbour,
        };
        steps.push(step);
    }
    // `diff` lists drift in dependency order except stray addresses, which
    // must go before the right one is added: sort by the step order above.
    steps.sort_by_key(|s| match s {
        Step::CreateTap => 0,
        Step::DisableIpv6 => 1,
        Step::StrictReversePath => 2,
        Step::DeleteAddress(..) => 3,
        Step::AddAddress => 4,
        Step::SetUp => 5,
        Step::SetNeighbour => 6,
    });
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Ipv4Cidr;

    fn net() -> TenantNet {
        TenantNet::new(
            "ab12cd34",
            Ipv4Cidr::parse("10.200.0.4/30").unwrap(),
            MacAddr([2, 0xfc, 10, 200, 0, 6]),
            20001,
            10001,
        )
        .unwrap()
    }

    fn good(net: &TenantNet) -> LinkObservation {
        LinkObservation {
            index: 7,
            is_tap: true,
            owner: Some(net.owner_uid),
            admin_up: true,
            ipv4: vec![(net.host_ip, 30)],
            guest_neighbour: Some(net.mac),
            ipv6_disabled: true,
            reverse_path_strict: true,
        }
    }

    #[test]
    fn a_matching_tap_has_no_drift_and_needs_no_step() {
        let net = net();
        assert!(diff(&net, Some(&good(&net))).is_empty());
        assert!(repair_steps(&[]).is_empty());
    }

    #[test]
    fn a_missing_tap_gets_every_step_in_order() {
        let net = net();
        let drift = diff(&net, None);
        assert_eq!(drift, vec![Drift::Missing]);
        assert_eq!(
            repair_steps(&drift),
            vec![
                Step::CreateTap,
                Step::DisableIpv6,
                Step::StrictReversePath,
                Step::AddAddress,
                Step::SetUp,
                Step::SetNeighbour
            ]
        );
    }

    #[test]
    fn each_difference_is_reported_and_repaired() {
        let net = net();
        let mut obs = good(&net);
        obs.owner = None;
        obs.admin_up = false;
        obs.ipv4 = vec![(Ipv4Addr::new(192, 168, 9, 1), 24)];
        obs.guest_neighbour = None;
        obs.ipv6_disabled = false;
        obs.reverse_path_strict = false;
        let drift = diff(&net, Some(&obs));
        assert_eq!(
            drift,
            vec![
                Drift::WrongOwner {
                    expected: 10001,
                    actual: None
                },
                Drift::Ipv6Enabled,
                Drift::LooseReversePath,
                Drift::MissingAddress,
                Drift::UnexpectedAddress {
                    addr: Ipv4Addr::new(192, 168, 9, 1),
                    prefix: 24
                },
                Drift::Down,
                Drift::WrongNeighbour { actual: None },
            ]
        );
        assert_eq!(
            repair_steps(&drift),
            vec![
                Step::CreateTap,
                Step::DisableIpv6,
                Step::StrictReversePath,
                Step::DeleteAddress(Ipv4Addr::new(192, 168, 9, 1), 24),
                Step::AddAddress,
                Step::SetUp,
                Step::SetNeighbour
            ]
        );
        assert_eq!(drift[0].to_string(), "tap has no owner (want uid 10001)");
    }

    #[test]
    fn a_foreign_link_is_reported_and_not_touched() {
        let net = net();
        let mut obs = good(&net);
        obs.is_tap = false;
        let drift = diff(&net, Some(&obs));
        assert_eq!(drift, vec![Drift::NotTap]);
        assert!(repair_steps(&drift).is_empty());
    }
}

//! The real TAP manager: rtnetlink for links, addresses and neighbours, the
//! tun driver for creating owned persistent TAPs, `/proc/sys` for the IPv6
//! switch. No `ip` subprocesses; every netlink request has a timeout.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::time::Duration;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoTun, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec};

use super::plan::{diff, repair_steps, Step};
use super::{LinkObservation, MacAddr, NetCheck, NetworkError, TenantNet};

/// A boxed future, so [`NetworkOps`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The seam tenant lifecycle code calls; [`Network`] is the real one.
pub trait NetworkOps: Send + Sync + std::fmt::Debug {
    /// Makes the TAP match `net`: created if missing, drift repaired.
    /// Idempotent; a no-op when nothing drifted.
    fn ensure<'a>(&'a self, net: &'a TenantNet) -> BoxFuture<'a, Result<(), NetworkError>>;
    /// Deletes the TAP (with its addresses and neighbour entries). Absent is success.
    fn remove<'a>(&'a self, net: &'a TenantNet) -> BoxFuture<'a, Result<(), NetworkError>>;
    /// Reports how the TAP differs from `net`, changing nothing.
    fn check<'a>(&'a self, net: &'a TenantNet) -> BoxFuture<'a, Result<NetCheck, NetworkError>>;
}

/// IFLA_TUN_OWNER inside IFLA_INFO_DATA of a tun link.
const IFLA_TUN_OWNER: u16 = 1;
/// IFLA_TUN_TYPE inside IFLA_INFO_DATA of a tun link.
const IFLA_TUN_TYPE: u16 = 3;
/// IFF_TAP as reported in IFLA_TUN_TYPE.
const TUN_TYPE_TAP: u32 = 2;
/// The kernel's "no uid" (`INVALID_UID`, `(uid_t)-1`).
const NO_UID: u32 = u32::MAX;

/// The real TAP manager, bound to the network namespace it was created in.
#[derive(Debug, Clone)]
pub struct Network {
    handle: Handle,
    timeout: Duration,
}

impl Network {
    /// Opens an rtnetlink socket in the caller's network namespace; its
    /// connection task runs on the current tokio runtime. Every request
    /// waits at most `timeout`.
    pub fn connect(timeout: Duration) -> Result<Network, NetworkError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| NetworkError::Io {
                context: "cannot open an rtnetlink socket".into(),
                source,
            })?;
        tokio::spawn(connection);
        Ok(Network { handle, timeout })
    }

    /// Reads what the kernel has for `tap` (`None`: no such link).
    pub async fn observe(
        &self,
        tap: &str,
        guest_ip: Ipv4Addr,
    ) -> Result<Option<LinkObservation>, NetworkError> {
        let Some(link) = self.link(tap).await? else {
            return Ok(None);
        };
        let index = link.header.index;
        let (is_tap, owner) = tun_info(&link);
        let admin_up = link.header.flags.contains(LinkFlags::Up);
        let addresses = self.addresses(tap, index).await?;
        let ipv4 = addresses
            .iter()
            .filter_map(|m| ipv4_of(m).map(|ip| (ip, m.header.prefix_len)))
            .collect();
        let guest_neighbour = self.permanent_neighbour(tap, index, guest_ip).await?;
        Ok(Some(LinkObservation {
            index,
            is_tap,
            owner,
            admin_up,
            ipv4,
            guest_neighbour,
            ipv6_disabled: ipv6_disabled(tap)?,
            reverse_path_strict: super::reverse_path_strict(tap)?,
        }))
    }

    async fn ensure_tap(&self, net: &TenantNet) -> Result<(), NetworkError> {
        let observed = self.observe(&net.tap, net.guest_ip).await?;
        let drift = diff(net, observed.as_ref());
        if drift.contains(&super::Drift::NotTap) {
            return Err(NetworkError::Invalid {
                field: "tap",
                reason: format!("{} exists and is not a tap; not touching it", net.tap),
            });
        }
        let created = observed.is_none();
        let mut result = self.repair(net, observed.map(|o| o.index), &drift).await;
        if result.is_ok() && (net.bandwidth_bits_per_s.is_some() || !created) {
            result = super::shaper::apply(&net.tap, net.bandwidth_bits_per_s, created).await;
        }
        if let Err(err) = result {
            // A TAP this call created is not left half set up.
            if created {
                if let Err(cleanup) = self.remove_tap(net).await {
                    tracing::warn!(tap = %net.tap, error = %cleanup, "rollback of a new tap failed");
                }
            }
            return Err(err);
        }
        Ok(())
    }

    async fn repair(
        &self,
        net: &TenantNet,
        mut index: Option<u32>,
        drift: &[super::Drift],
    ) -> Result<(), NetworkError> {
        for step in repair_steps(drift) {
            if step == Step::CreateTap {
                crate::sys::tun::create_persistent_tap(&net.tap, net.owner_uid).map_err(
                    |source| NetworkError::Io {
                        context: format!(
                            "cannot create tap {} owned by uid {} through /dev/net/tun",
                            net.tap, net.owner_uid
                        ),
                        source,
                    },
                )?;
                index = self.link(&net.tap).await?.map(|l| l.header.index);
                continue;
            }
            let Some(index) = index else {
                return Err(NetworkError::Invalid {
                    field: "tap",
                    reason: format!("{} vanished while being set up", net.tap),
                });
            };
            self.apply(net, index, &step).await?;
        }
        Ok(())
    }

    async fn apply(&self, net: &TenantNet, index: u32, step: &Step) -> Result<(), NetworkError> {
        let addresses = self.handle.address();
        match *step {
            Step::CreateTap => unreachable!("handled by repair"),
            Step::DisableIpv6 => disable_ipv6(&net.tap),
            Step::StrictReversePath => super::set_strict_reverse_path(&net.tap),
            Step::DeleteAddress(addr, prefix) => {
                for message in self.addresses(&net.tap, index).await? {
                    if ipv4_of(&message) == Some(addr) && message.header.prefix_len == prefix {
                        self.bounded("delete address", &net.tap, addresses.del(message).execute())
                            .await?;
                    }
                }
                Ok(())
            }
            Step::AddAddress => {
                let request = addresses.add(index, IpAddr::V4(net.host_ip), net.subnet.prefix);
                self.bounded("add address", &net.tap, request.execute())
                    .await
            }
            Step::SetUp => {
                let message = LinkUnspec::new_with_index(index).up().build();
                let request = self.handle.link().set(message);
                self.bounded("set link up", &net.tap, request.execute())
                    .await
            }
            Step::SetNeighbour => {
                let request = self
                    .handle
                    .neighbours()
                    .add(index, IpAddr::V4(net.guest_ip))
                    .link_layer_address(&net.mac.0)
                    .state(NeighbourState::Permanent)
                    .replace();
                self.bounded("add permanent neighbour", &net.tap, request.execute())
                    .await
            }
        }
    }

    async fn remove_tap(&self, net: &TenantNet) -> Result<(), NetworkError> {
        if net.bandwidth_bits_per_s.is_some() {
            super::shaper::remove(&net.tap).await;
        }
        let Some(link) = self.link(&net.tap).await? else {
            return Ok(());
        };
        if !tun_info(&link).0 {
            return Err(NetworkError::Invalid {
                field: "tap",
                reason: format!("{} exists and is not a tap; not deleting it", net.tap),
            });
        }
        let request = self.handle.link().del(link.header.index);
        match self
            .bounded("delete link", &net.tap, request.execute())
            .await
        {
            Err(NetworkError::Netlink {
                source: rtnetlink::Error::NetlinkError(e),
                ..
            }) if e.raw_code().abs() == libc::ENODEV => Ok(()),
            other => other,
        }
    }

    async fn check_tap(&self, net: &TenantNet) -> Result<NetCheck, NetworkError> {
        let observed = self.observe(&net.tap, net.guest_ip).await?;
        Ok(NetCheck {
            tap: net.tap.clone(),
            drift: diff(net, observed.as_ref()),
        })
    }

    async fn link(&self, name: &str) -> Result<Option<LinkMessage>, NetworkError> {
        let request = self.handle.link().get().match_name(name.to_string());
        let result = self
            .bounded("get link", name, request.execute().try_next())
            .await;
        match result {
            Ok(link) => Ok(link),
            Err(NetworkError::Netlink {
                source: rtnetlink::Error::NetlinkError(e),
                ..
            }) if e.raw_code().abs() == libc::ENODEV => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn addresses(&self, tap: &str, index: u32) -> Result<Vec<AddressMessage>, NetworkError> {
        let request = self.handle.address().get().set_link_index_filter(index);
        let all: Vec<AddressMessage> = self
            .bounded("list addresses", tap, request.execute().try_collect())
            .await?;
        Ok(all
            .into_iter()
            .filter(|m| m.header.index == index && m.header.family == AddressFamily::Inet)
            .collect())
    }

    async fn permanent_neighbour(
        &self,
        tap: &str,
        index: u32,
        ip: Ipv4Addr,
    ) -> Result<Option<MacAddr>, NetworkError> {
        let request = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet);
        let all: Vec<_> = self
            .bounded("list neighbours", tap, request.execute().try_collect())
            .await?;
        Ok(all.iter().find_map(|n| {
            if n.header.ifindex != index || n.header.state != NeighbourState::Permanent {
                return None;
            }
            let mut dest = None;
            let mut mac = None;
            for attr in &n.attributes {
                match attr {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => dest = Some(*a),
                    NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                        mac = Some(MacAddr([l[0], l[1], l[2], l[3], l[4], l[5]]))
                    }
                    _ => {}
                }
            }
            (dest == Some(ip)).then_some(mac).flatten()
        }))
    }

    /// Runs one netlink request within the timeout, naming it on failure.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        device: &str,
        request: impl Future<Output = Result<T, rtnetlink::Error>>,
    ) -> Result<T, NetworkError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result.map_err(|source| NetworkError::Netlink {
                operation,
                device: device.to_string(),
                source,
            }),
            Err(_) => Err(NetworkError::NetlinkTimeout {
                operation,
                device: device.to_string(),
                timeout_ms: self.timeout.as_millis() as u64,
            }),
        }
    }
}

impl NetworkOps for Network {
    fn ensure<'a>(&'a self, net: &'a TenantNet) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(self.ensure_tap(net))
    }

    fn remove<'a>(&'a self, net: &'a TenantNet) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(self.remove_tap(net))
    }

    fn check<'a>(&'a self, net: &'a TenantNet) -> BoxFuture<'a, Result<NetCheck, NetworkError>> {
        Box::pin(self.check_tap(net))
    }
}

/// Whether the link is a TAP, and its owner uid.
fn tun_info(link: &LinkMessage) -> (bool, Option<u32>) {
    let mut is_tun = false;
    let mut tun_type = None;
    let mut owner = None;
    for attr in &link.attributes {
        let LinkAttribute::LinkInfo(infos) = attr else {
            continue;
        };
        for info in infos {
            match info {
                LinkInfo::Kind(InfoKind::Tun) => is_tun = true,
                LinkInfo::Data(InfoData::Tun(nlas)) => {
                    for nla in nlas {
                        use rtnetlink::packet_core::Nla;
                        let InfoTun::Other(nla) = nla else {
                            continue;
                        };
                        let mut value = [0u8; 4];
                        if nla.value_len() >= 1 && nla.value_len() <= 4 {
                            nla.emit_value(&mut value[..nla.value_len()]);
                        }
                        let value = match nla.value_len() {
                            1 => u32::from(value[0]),
                            4 => u32::from_ne_bytes(value),
                            _ => continue,
                        };
                        match nla.kind() {
                            IFLA_TUN_OWNER => owner = (value != NO_UID).then_some(value),
                            IFLA_TUN_TYPE => tun_type = Some(value),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    (is_tun && tun_type.is_none_or(|t| t == TUN_TYPE_TAP), owner)
}

fn ipv4_of(message: &AddressMessage) -> Option<Ipv4Addr> {
    message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    })
}

fn ipv6_switch(tap: &str) -> String {
    format!("/proc/sys/net/ipv6/conf/{tap}/disable_ipv6")
}

/// True when IPv6 is off on the link (or on the whole host).
fn ipv6_disabled(tap: &str) -> Result<bool, NetworkError> {
    let path = ipv6_switch(tap);
    match std::fs::read_to_string(&path) {
        Ok(v) => Ok(v.trim() == "1"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(source) => Err(NetworkError::Io {
            context: format!("cannot read {path}"),
            source,
        }),
    }
}

fn disable_ipv6(tap: &str) -> Result<(), NetworkError> {
    let path = ipv6_switch(tap);
    match std::fs::write(&path, "1") {
        Ok(()) => Ok(()),
        // No IPv6 on this host at all: nothing to disable.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetworkError::Io {
            context: format!("cannot disable ipv6 via {path}"),
            source,
        }),
    }
}

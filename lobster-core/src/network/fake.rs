//! An in-memory [`NetworkOps`] for tests of code that drives tenant
//! networks (tenant lifecycle, bindings): records calls, keeps TAPs as data,
//! and can be told to fail an operation once.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::link::BoxFuture;
use super::plan::diff;
use super::{LinkObservation, MacAddr, NetCheck, NetworkError, NetworkOps, TenantNet};

/// A fake TAP manager: `ensure` stores the description, `remove` drops it,
/// `check` diffs against what was stored.
#[derive(Debug, Default)]
pub struct FakeNetwork {
    taps: Mutex<BTreeMap<String, FakeTap>>,
    calls: Mutex<Vec<String>>,
    fail: Mutex<Option<&'static str>>,
}

/// One fake TAP: as `ensure` left it, then changed the way the kernel would.
#[derive(Debug)]
struct FakeTap {
    net: TenantNet,
    up: bool,
    guest_neighbour: Option<MacAddr>,
}

impl FakeNetwork {
    /// An empty fake.
    pub fn new() -> FakeNetwork {
        FakeNetwork::default()
    }

    /// Makes the next call of `operation` (`ensure`, `remove`, `check`) fail.
    pub fn fail_next(&self, operation: &'static str) {
        *self.fail.lock().expect("not poisoned") = Some(operation);
    }

    /// Sets TAP `tap` administratively down as `ip link set down` does:
    /// like the kernel, that also flushes its neighbour entries, even the
    /// permanent one for the guest (checked by the `t1_fake_network` test).
    /// The next `ensure` puts both back.
    pub fn set_down(&self, tap: &str) {
        if let Some(have) = self.taps.lock().expect("not poisoned").get_mut(tap) {
            have.up = false;
            have.guest_neighbour = None;
        }
    }

    /// Every call so far, as `operation tap`.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("not poisoned").clone()
    }

    /// The TAPs that exist now.
    pub fn taps(&self) -> Vec<String> {
        self.taps
            .lock()
            .expect("not poisoned")
            .keys()
            .cloned()
            .collect()
    }

    fn enter(&self, operation: &'static str, net: &TenantNet) -> Result<(), NetworkError> {
        self.calls
            .lock()
            .expect("not poisoned")
            .push(format!("{operation} {}", net.tap));
        let mut fail = self.fail.lock().expect("not poisoned");
        if *fail == Some(operation) {
            *fail = None;
            return Err(NetworkError::Io {
                context: format!("fake {operation} of {} failed as asked", net.tap),
                source: std::io::Error::other("injected failure"),
            });
        }
        Ok(())
    }
}

impl NetworkOps for FakeNetwork {
    fn ensure<'a>(&'a self, net: &'a TenantNet) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(async move {
            self.enter("ensure", net)?;
            let tap = FakeTap {
                net: net.clone(),
                up: true,
                guest_neighbour: Some(net.mac),
            };
            self.taps
                .lock()
                .expect("not poisoned")
                .insert(net.tap.clone(), tap);
            Ok(())
        })
    }

    fn remove<'a>(&'a self, net: &'a TenantNet) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(async move {
            self.enter("remove", net)?;
            self.taps.lock().expect("not poisoned").remove(&net.tap);
            Ok(())
        })
    }

    fn check<'a>(&'a self, net: &'a TenantNet) -> BoxFuture<'a, Result<NetCheck, NetworkError>> {
        Box::pin(async move {
            self.enter("check", net)?;
            let taps = self.taps.lock().expect("not poisoned");
            let observed = taps.get(&net.tap).map(|have| LinkObservation {
                index: 1,
                is_tap: true,
                owner: Some(have.net.owner_uid),
                admin_up: have.up,
                ipv4: vec![(have.net.host_ip, have.net.subnet.prefix)],
                guest_neighbour: have.guest_neighbour,
                ipv6_disabled: true,
                reverse_path_strict: true,
            });
            Ok(NetCheck {
                tap: net.tap.clone(),
                drift: diff(net, observed.as_ref()),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Ipv4Cidr;
    use crate::network::{Drift, MacAddr};

    #[tokio::test]
    async fn fake_tracks_taps_and_fails_on_demand() {
        let fake = FakeNetwork::new();
        let net = TenantNet::new(
            "ab",
            Ipv4Cidr::parse("10.0.0.4/30").unwrap(),
            MacAddr([2, 0, 0, 0, 0, 1]),
            1,
            1000,
        )
        .unwrap();
        assert_eq!(fake.check(&net).await.unwrap().drift, vec![Drift::Missing]);
        fake.ensure(&net).await.unwrap();
        assert!(fake.check(&net).await.unwrap().is_ok());
        fake.set_down("lob-ab");
        assert_eq!(
            fake.check(&net).await.unwrap().drift,
            vec![Drift::Down, Drift::WrongNeighbour { actual: None }]
        );
        fake.ensure(&net).await.unwrap();
        assert!(fake.check(&net).await.unwrap().is_ok());
        fake.fail_next("remove");
        assert!(fake.remove(&net).await.is_err());
        assert_eq!(fake.taps(), vec!["lob-ab"]);
        fake.remove(&net).await.unwrap();
        assert!(fake.taps().is_empty());
        assert_eq!(fake.calls().len(), 8);
    }
}

//! T1: real TAPs through rtnetlink and the tun driver, inside a private
//! network namespace per test.

use std::net::Ipv4Addr;
use std::time::Duration;

use lobster_core::network::{self, Drift, Network, NetworkOps};
use lobster_testkit::netns::{in_netns, sh, Ctx};
use lobster_testkit::registry::tenant_net;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// What `ip` (an independent reader) says about a link: details, addresses,
/// neighbours.
fn ip_view(tap: &str) -> String {
    format!(
        "{}{}{}",
        sh(&["ip", "-d", "link", "show", "dev", tap]),
        sh(&["ip", "-4", "addr", "show", "dev", tap]),
        sh(&["ip", "neigh", "show", "dev", tap])
    )
}

#[test]
#[ignore = "t1: needs root"]
fn tap_ensure_check_remove() {
    in_netns("tap_ensure_check_remove", tap_body);
}

fn tap_body(_ctx: &Ctx) {
    runtime().block_on(async {
        let net = Network::connect(Duration::from_secs(5)).expect("rtnetlink");
        let t = tenant_net("ab12cd34", 1);

        let before = net.check(&t).await.expect("check");
        assert_eq!(before.drift, vec![Drift::Missing]);

        net.ensure(&t).await.expect("ensure");
        let after = net.check(&t).await.expect("check");
        assert!(after.is_ok(), "drift after ensure: {:?}", after.drift);

        // An independent reader agrees: a persistent TAP owned by the uid,
        // up, with the /30 host address, the permanent neighbour, no IPv6.
        let view = ip_view(&t.tap);
        assert!(view.contains("tun type tap"), "{view}");
        assert!(view.contains("persist on"), "{view}");
        assert!(view.contains("user 10001"), "{view}");
        assert!(view.contains(",UP>"), "{view}");
        assert!(view.contains("inet 10.200.0.5/30"), "{view}");
        assert!(
            view.contains("10.200.0.6 lladdr 06:00:0a:c8:00:06 PERMANENT"),
            "{view}"
        );
        let v6 = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", t.tap));
        assert_eq!(v6.map(|s| s.trim().to_string()).unwrap_or("1".into()), "1");
        assert!(!sh(&["ip", "-6", "addr", "show", "dev", &t.tap]).contains("inet6"));
        // Strict reverse-path filtering, read back from the kernel.
        let rp_filter = format!("/proc/sys/net/ipv4/conf/{}/rp_filter", t.tap);
        assert_eq!(std::fs::read_to_string(&rp_filter).unwrap().trim(), "1");

        // ensure twice is a no-op: same device, same everything.
        net.ensure(&t).await.expect("second ensure");
        assert_eq!(ip_view(&t.tap), view, "second ensure changed something");

        // Drift is reported as data, then repaired.
        sh(&["ip", "link", "set", "dev", &t.tap, "down"]);
        sh(&["ip", "addr", "add", "192.168.77.1/24", "dev", &t.tap]);
        std::fs::write(&rp_filter, "2").unwrap();
        // (Setting a link down flushes even permanent neighbour entries.)
        let drift = net.check(&t).await.expect("check").drift;
        assert!(drift.contains(&Drift::Down), "{drift:?}");
        assert!(drift.contains(&Drift::LooseReversePath), "{drift:?}");
        assert!(
            drift.contains(&Drift::UnexpectedAddress {
                addr: Ipv4Addr::new(192, 168, 77, 1),
                prefix: 24
            }),
            "{drift:?}"
        );
        assert!(
            drift.contains(&Drift::WrongNeighbour { actual: None }),
            "{drift:?}"
        );
        net.ensure(&t).await.expect("repair");
        assert!(net.check(&t).await.expect("check").is_ok());
        assert_eq!(std::fs::read_to_string(&rp_filter).unwrap().trim(), "1");

        // remove leaves nothing; removing again is fine.
        net.remove(&t).await.expect("remove");
        let gone = std::process::Command::new("ip")
            .args(["link", "show", "dev", &t.tap])
            .output()
            .unwrap();
        assert!(!gone.status.success(), "tap still exists");
        assert!(!sh(&["ip", "-4", "addr"]).contains("10.200.0.5"));
        assert!(!sh(&["ip", "neigh"]).contains("10.200.0.6"));
        assert!(!sh(&["ip", "route"]).contains("10.200.0.4/30"));
        assert_eq!(
            net.check(&t).await.expect("check").drift,
            vec![Drift::Missing]
        );
        net.remove(&t).await.expect("second remove");
    });
}

#[test]
#[ignore = "t1: needs root"]
fn tap_owner_change_and_foreign_links() {
    in_netns("tap_owner_change_and_foreign_links", owner_body);
}

fn owner_body(_ctx: &Ctx) {
    runtime().block_on(async {
        let net = Network::connect(Duration::from_secs(5)).expect("rtnetlink");
        let mut t = tenant_net("cafe01", 2);
        net.ensure(&t).await.expect("ensure");
        // The registry moved the tenant to another uid: check sees it, ensure fixes it.
        t.owner_uid = 10077;
        assert_eq!(
            net.check(&t).await.unwrap().drift,
            vec![Drift::WrongOwner {
                expected: 10077,
                actual: Some(10002)
            }]
        );
        net.ensure(&t).await.expect("re-own");
        assert!(sh(&["ip", "-d", "link", "show", "dev", &t.tap]).contains("user 10077"));

        // A link with a lobster name that is not a TAP is reported, never touched.
        let foreign = tenant_net("d00d", 3);
        sh(&[
            "ip",
            "link",
            "add",
            &foreign.tap,
            "type",
            "veth",
            "peer",
            "name",
            "foreign-peer",
        ]);
        assert_eq!(
            net.check(&foreign).await.unwrap().drift,
            vec![Drift::NotTap]
        );
        assert!(net.ensure(&foreign).await.is_err());
        assert!(net.remove(&foreign).await.is_err());
        sh(&["ip", "link", "show", "dev", &foreign.tap]);

        net.remove(&t).await.expect("remove");
    });
}

#[test]
#[ignore = "t1: needs root"]
fn ip_forwarding_is_switched_on() {
    in_netns("ip_forwarding_is_switched_on", |_ctx| {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").unwrap();
        assert!(!network::ip_forwarding_enabled().unwrap());
        network::enable_ip_forwarding().expect("enable");
        assert!(network::ip_forwarding_enabled().unwrap());
    });
}

/// Bytes per second from a sender in `from` (`None`: this namespace) to a
/// sink in `to` listening on `addr`, sending for `secs`; counted at the sink
/// from accept to end of stream.
fn measured_rate(from: Option<&str>, to: Option<&str>, addr: &str, secs: u64) -> f64 {
    use std::io::{Read, Write};
    fn enter(ns: Option<&str>) {
        if let Some(ns) = ns {
            let file = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        }
    }
    let (to, from) = (to.map(str::to_owned), from.map(str::to_owned));
    let addr = addr.to_owned();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sink = std::thread::spawn({
        let addr = addr.clone();
        move || {
            enter(to.as_deref());
            let listener = std::net::TcpListener::bind(&addr).unwrap();
            ready_tx.send(()).unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            let start = std::time::Instant::now();
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0u64;
            loop {
                match conn.read(&mut buf).unwrap() {
                    0 => break,
                    n => total += n as u64,
                }
            }
            total as f64 / start.elapsed().as_secs_f64()
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    std::thread::spawn(move || {
        enter(from.as_deref());
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        let chunk = vec![0x5au8; 1 << 16];
        let end = std::time::Instant::now() + Duration::from_secs(secs);
        while std::time::Instant::now() < end {
            conn.write_all(&chunk).unwrap();
        }
    })
    .join()
    .unwrap();
    sink.join().unwrap()
}

#[test]
#[ignore = "t1: needs root"]
fn a_shaped_link_holds_each_direction_to_the_rate() {
    in_netns(
        "a_shaped_link_holds_each_direction_to_the_rate",
        shaper_body,
    );
}

fn shaper_body(ctx: &Ctx) {
    // A veth stands in for the TAP: the host side is shaped exactly as a
    // tenant's TAP (its egress is what the "guest" receives, its ingress
    // what the guest sends).
    let guest = ctx.new_netns("guest");
    ctx.veth_guest("lob-shape0", &guest, "10.77.0.1", "10.77.0.2", 30);
    let limit_bits = 16_000_000u64;
    let limit = limit_bits as f64 / 8.0;
    let unshaped = measured_rate(None, Some(&guest), "10.77.0.2:7001", 1);
    // First on a link that was never shaped (as on a new TAP), then again
    // over that shaping (as a repair does): the second replaces the first.
    let started = std::time::Instant::now();
    runtime()
        .block_on(network::shaper::apply("lob-shape0", Some(limit_bits), true))
        .expect("tc");
    println!("shaping a fresh link took {:?}", started.elapsed());
    let started = std::time::Instant::now();
    runtime()
        .block_on(network::shaper::apply(
            "lob-shape0",
            Some(limit_bits),
            false,
        ))
        .expect("tc");
    println!("reshaping took {:?}", started.elapsed());
    let down = measured_rate(None, Some(&guest), "10.77.0.2:7002", 6);
    let up = measured_rate(Some(&guest), None, "10.77.0.1:7003", 6);
    println!(
        "limit {:.2} MB/s; unshaped {:.2} MB/s; to the guest {:.2} MB/s ({:.2}x), from the guest {:.2} MB/s ({:.2}x)",
        limit / 1e6,
        unshaped / 1e6,
        down / 1e6,
        down / limit,
        up / 1e6,
        up / limit
    );
    assert!(
        unshaped > 3.0 * limit,
        "the link itself is too slow to show a limit"
    );
    for (what, rate) in [("to the guest", down), ("from the guest", up)] {
        assert!(rate <= 1.3 * limit, "{what}: {rate:.0} B/s over {limit:.0}");
        assert!(
            rate >= 0.3 * limit,
            "{what}: {rate:.0} B/s, far under {limit:.0}"
        );
    }
    // Shaping off again leaves no qdisc of ours.
    runtime()
        .block_on(network::shaper::apply("lob-shape0", None, false))
        .expect("tc");
    let qdiscs = sh(&["tc", "qdisc", "show", "dev", "lob-shape0"]);
    assert!(
        !qdiscs.contains("tbf") && !qdiscs.contains("ingress"),
        "{qdiscs}"
    );

    // A TAP deleted under lobster takes its qdiscs but leaves its IFB; the
    // new TAP of the same name is shaped all the same.
    sh(&["ip", "tuntap", "add", "dev", "lob-shape1", "mode", "tap"]);
    let shape_fresh = || {
        runtime()
            .block_on(network::shaper::apply("lob-shape1", Some(limit_bits), true))
            .expect("tc")
    };
    shape_fresh();
    sh(&["ip", "link", "del", "lob-shape1"]);
    sh(&["ip", "tuntap", "add", "dev", "lob-shape1", "mode", "tap"]);
    shape_fresh();
    let qdiscs = sh(&["tc", "qdisc", "show", "dev", "lob-shape1"]);
    assert!(
        qdiscs.contains("tbf") && qdiscs.contains("ingress"),
        "{qdiscs}"
    );
}

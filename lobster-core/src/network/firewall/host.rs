//! What the firewall reads from the host besides the ruleset: its own
//! connected subnets, which guests may not reach by default.

use std::net::Ipv4Addr;

use crate::config::Ipv4Cidr;
use crate::network::{NetworkError, TAP_PREFIX};

const ROUTES: &str = "/proc/net/route";

/// The subnets this network namespace reaches directly: every route of the
/// main table without a gateway (the prefix route of each address, and any
/// other on-link route), the default route and lobster's TAPs left out
/// (their /30s lie in the pool, which is denied anyway, and change with
/// every tenant). Sorted, no duplicates.
pub fn host_subnets() -> Result<Vec<Ipv4Cidr>, NetworkError> {
    let text = std::fs::read_to_string(ROUTES).map_err(|source| NetworkError::Io {
        context: format!("cannot read the host's routes from {ROUTES}"),
        source,
    })?;
    parse_routes(&text)
}

/// Parses `/proc/net/route` (addresses are the kernel's big-endian words
/// printed as native hex numbers).
fn parse_routes(text: &str) -> Result<Vec<Ipv4Cidr>, NetworkError> {
    const RTF_GATEWAY: u32 = 0x2;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let bad = || NetworkError::FirewallParse {
            line: n + 1,
            text: line.to_string(),
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let hex = |i: usize| {
            fields
                .get(i)
                .and_then(|f| u32::from_str_radix(f, 16).ok())
                .ok_or_else(bad)
        };
        let (dest, flags, mask) = (hex(1)?, hex(3)?, hex(7)?);
        let mask = u32::from_be(mask);
        if fields[0].starts_with(TAP_PREFIX) || flags & RTF_GATEWAY != 0 || mask == 0 {
            continue;
        }
        let prefix = mask.leading_ones() as u8;
        out.push(Ipv4Cidr::containing(
            Ipv4Addr::from(u32::from_be(dest)),
            prefix,
        ));
    }
    out.sort_by_key(|c| (u32::from(c.addr), c.prefix));
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_link_routes_are_read_and_the_rest_left_out() {
        let text = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
eth0\t0000000A\t0100A8C0\t0003\t0\t0\t0\t000000FF\t0\t0\t0
lob-ab12\t0400C80A\t00000000\t0001\t0\t0\t0\tFCFFFFFF\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
";
        let got: Vec<String> = parse_routes(text)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["172.17.0.0/16", "192.168.0.0/24"]);
        assert!(parse_routes("header\neth0 zz").is_err());
    }

    #[test]
    fn the_hosts_routes_parse() {
        host_subnets().unwrap();
    }
}

//! Pure planning: the rules lobster wants (base chains, hooks, one set of
//! chains per tenant) and the [`Batch`] that turns what is there into that.
//!
//! Layout (filter table; nat is analogous with `LOBSTER-POSTROUTING`):
//!
//! ```text
//! INPUT   -> LOBSTER-INPUT   -> LOBSTER-INPUT-TAPS   -i lob-<id> -> LOB-<id>-IN
//!                               -i lob-+ DROP                      (guest -> host)
//! FORWARD -> LOBSTER-FORWARD    -i lob-+ -o lob-+ DROP (tap to tap, first)
//!                            -> LOBSTER-FORWARD-TAPS -i lob-<id> -> LOB-<id>-FWI
//!                                                    -o lob-<id> -> LOB-<id>-FWO
//!                               -i lob-+ DROP, -o lob-+ DROP
//! OUTPUT  -> LOBSTER-OUTPUT  -> LOBSTER-OUTPUT-TAPS  -o lob-<id> -> LOB-<id>-OUT
//!                               -o lob-+ DROP                      (host -> guest)
//! LOB-<id>-FWI --goto--> LOBSTER-EGRESS     (destinations no guest may reach)
//!                         --goto--> LOBSTER-EGRESS-OK  (connection limit, accept)
//! ```
//!
//! Every per-tenant chain ends in a verdict, and the jumps select disjoint
//! traffic (by TAP or subnet), so tenants never depend on each other's rule
//! order, and adding or removing one never rewrites another's rules. The
//! entry chains end in a drop for every `lob-*` interface: traffic of a TAP
//! whose chains are gone (flushed, deleted, not yet added) is cut off
//! instead of falling through to the host's policies. Guests' egress goes
//! to the shared egress chains by `goto`, so if they are flushed, their
//! packets return to the entry chain and meet its drop too.

use std::collections::BTreeSet;

use super::rules::{is_owned_chain, jump_target, Batch, Op, Ruleset, Table, TENANT_PREFIX};
use super::FirewallSettings;
use crate::config::Ipv4Cidr;
use crate::network::{TenantNet, TAP_PREFIX};

/// The IANA IPv4 special-purpose ranges (RFC 6890 and its registry), plus
/// multicast and the reserved 240/4: no guest reaches them unless the
/// configuration's `egress_allow` names them. They include the cloud
/// metadata addresses (169.254.169.254 in link-local, Alibaba's
/// 100.100.100.200 in shared address space).
pub const SPECIAL_PURPOSE_RANGES: [&str; 16] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
];

/// The shared chain every tenant's forward-out chain goes to (`-g`): drops
/// what no guest may reach, goes on to [`EGRESS_OK_CHAIN`] with the rest.
pub const EGRESS_CHAIN: &str = "LOBSTER-EGRESS";

/// The shared chain accepting a guest's egress: new connections beyond
/// `max_connections` per guest address refused, everything else accepted.
pub const EGRESS_OK_CHAIN: &str = "LOBSTER-EGRESS-OK";

/// A lobster base chain: the entry chain hooked into a built-in, and the
/// dispatch chain holding the tenants' jumps, which the entry chain calls
/// between its static rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    /// The table.
    pub table: Table,
    /// The built-in chain hooked (`INPUT`, ...).
    pub builtin: &'static str,
    /// Lobster's entry chain (`LOBSTER-INPUT`, ...): static rules only.
    pub chain: &'static str,
    /// Where the tenants' jumps go (`LOBSTER-INPUT-TAPS`, ...).
    pub dispatch: &'static str,
}

/// The base chains, hooked once into the built-ins.
pub const BASE_CHAINS: [BaseChain; 4] = [
    BaseChain {
        table: Table::Filter,
        builtin: "INPUT",
        chain: "LOBSTER-INPUT",
        dispatch: "LOBSTER-INPUT-TAPS",
    },
    BaseChain {
        table: Table::Filter,
        builtin: "FORWARD",
        chain: "LOBSTER-FORWARD",
        dispatch: "LOBSTER-FORWARD-TAPS",
    },
    BaseChain {
        table: Table::Filter,
        builtin: "OUTPUT",
        chain: "LOBSTER-OUTPUT",
        dispatch: "LOBSTER-OUTPUT-TAPS",
    },
    BaseChain {
        table: Table::Nat,
        builtin: "POSTROUTING",
        chain: "LOBSTER-POSTROUTING",
        dispatch: "LOBSTER-POSTROUTING-TAPS",
    },
];

/// The whole of an entry chain: static rules around the call of its
/// dispatch chain. Tenants' chains end in verdicts, so only traffic no
/// tenant claimed comes back from the dispatch chain to the final drops.
fn entry_rules(base: &BaseChain) -> Vec<String> {
    let call = format!("-j {}", base.dispatch);
    let tap = format!("{TAP_PREFIX}+");
    match base.chain {
        "LOBSTER-INPUT" => vec![call, format!("-i {tap} -j DROP")],
        "LOBSTER-FORWARD" => vec![
            format!("-i {tap} -o {tap} -j DROP"),
            call,
            format!("-i {tap} -j DROP"),
            format!("-o {tap} -j DROP"),
        ],
        "LOBSTER-OUTPUT" => vec![call, format!("-o {tap} -j DROP")],
        _ => vec![call],
    }
}

/// The rules of [`EGRESS_CHAIN`], in order: the tenant pool and
/// `egress_deny` (never overridden), then `egress_allow` (on to
/// [`EGRESS_OK_CHAIN`]), then the default deny (special-purpose ranges and
/// the host's connected subnets), then everything else on to
/// [`EGRESS_OK_CHAIN`].
pub fn egress_rules(settings: &FirewallSettings) -> Vec<String> {
    let drop = |c: &Ipv4Cidr| format!("-d {c} -j DROP");
    let mut rules: Vec<String> = std::iter::once(&settings.pool)
        .chain(&settings.egress_deny)
        .map(drop)
        .collect();
    rules.extend(
        settings
            .egress_allow
            .iter()
            .map(|c| format!("-d {c} -g {EGRESS_OK_CHAIN}")),
    );
    let mut default_deny: Vec<Ipv4Cidr> = SPECIAL_PURPOSE_RANGES
        .iter()
        .map(|r| Ipv4Cidr::parse(r).expect("constant ranges parse"))
        .collect();
    for subnet in &settings.host_subnets {
        if !default_deny.iter().any(|r| r.contains(*subnet)) {
            default_deny.push(*subnet);
        }
    }
    rules.extend(default_deny.iter().map(drop));
    rules.push(format!("-g {EGRESS_OK_CHAIN}"));
    rules
}

/// The rules of [`EGRESS_OK_CHAIN`] (counted per guest address, so per
/// tenant, though the chain is shared).
fn egress_ok_rules(settings: &FirewallSettings) -> Vec<String> {
    let limit = settings.max_connections;
    vec![
        format!(
            "-m conntrack --ctstate NEW -m connlimit --connlimit-above {limit} --connlimit-mask 32 --connlimit-saddr -j REJECT --reject-with icmp-port-unreachable"
        ),
        "-j ACCEPT".into(),
    ]
}

/// The shared egress chains with their rules, in the order they must be
/// created (each may only name chains before it).
fn egress_chains(settings: &FirewallSettings) -> [(&'static str, Vec<String>); 2] {
    [
        (EGRESS_OK_CHAIN, egress_ok_rules(settings)),
        (EGRESS_CHAIN, egress_rules(settings)),
    ]
}

/// The hook rule in a built-in chain.
fn hook_rule(base: &BaseChain) -> String {
    format!("-j {}", base.chain)
}

/// One tenant's planned rules: its own chains, and the jumps into them from
/// the base chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRules {
    /// The tenant id.
    pub id: String,
    /// `(table, chain, rules)` for each chain the tenant owns.
    pub chains: Vec<(Table, String, Vec<String>)>,
    /// `(table, dispatch chain, jump rule)`.
    pub jumps: Vec<(Table, &'static str, String)>,
}

/// The chain-name prefix of one tenant: `LOB-<id>-`.
pub fn tenant_chain_prefix(id: &str) -> String {
    format!("{TENANT_PREFIX}{id}-")
}

/// The tenant id a per-tenant chain belongs to.
pub fn tenant_of_chain(chain: &str) -> Option<&str> {
    let rest = chain.strip_prefix(TENANT_PREFIX)?;
    rest.rsplit_once('-').map(|(id, _)| id)
}

/// Plans one tenant's chains and jumps (canonical `iptables-save` form).
pub fn plan_tenant(net: &TenantNet, settings: &FirewallSettings) -> TenantRules {
    let tap = &net.tap;
    let chain = |suffix: &str| format!("{}{suffix}", tenant_chain_prefix(&net.id));
    let (input, fwi, fwo, output, nat) = (
        chain("IN"),
        chain("FWI"),
        chain("FWO"),
        chain("OUT"),
        chain("NAT"),
    );
    let established = "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".to_string();
    let limit = settings.max_connections;
    let agent_ports = format!("{},{}", settings.agent_port, settings.health_port);
    let gateway = settings.gateway_port;

    let from_guest = vec![
        format!("! -s {}/32 -j DROP", net.guest_ip),
        established.clone(),
        format!("-g {EGRESS_CHAIN}"),
    ];

    // New connections to the gateway only from root and the proxy's uid.
    let not_allowed: String = std::iter::once(0)
        .chain(settings.proxy_uid.filter(|&uid| uid != 0))
        .map(|uid| format!("-m owner ! --uid-owner {uid} "))
        .collect();
    let to_guest_from_host = vec![
        format!("-p tcp -m multiport --dports {agent_ports} -m owner --uid-owner 0 -j ACCEPT"),
        format!("-p tcp -m multiport --dports {agent_ports} -j DROP"),
        format!(
            "-p tcp -m tcp --dport {gateway} -m conntrack --ctstate NEW {not_allowed}-j REJECT --reject-with tcp-reset"
        ),
        format!(
            "-p tcp -m tcp --dport {gateway} -m conntrack --ctstate NEW -m connlimit --connlimit-above {limit} --connlimit-mask 32 --connlimit-daddr -j REJECT --reject-with tcp-reset"
        ),
        format!("-p tcp -m tcp --dport {gateway} -j ACCEPT"),
        established.clone(),
        "-j DROP".into(),
    ];

    TenantRules {
        id: net.id.clone(),
        chains: vec![
            (
                Table::Filter,
                input.clone(),
                vec![established.clone(), "-j DROP".into()],
            ),
            (Table::Filter, fwi.clone(), from_guest),
            (
                Table::Filter,
                fwo.clone(),
                vec![established, "-j DROP".into()],
            ),
            (Table::Filter, output.clone(), to_guest_from_host),
            (
                Table::Nat,
                nat.clone(),
                vec![format!("! -o {tap} -j MASQUERADE")],
            ),
        ],
        jumps: vec![
            (
                Table::Filter,
                "LOBSTER-INPUT-TAPS",
                format!("-i {tap} -j {input}"),
            ),
            (
                Table::Filter,
                "LOBSTER-FORWARD-TAPS",
                format!("-i {tap} -j {fwi}"),
            ),
            (
                Table::Filter,
                "LOBSTER-FORWARD-TAPS",
                format!("-o {tap} -j {fwo}"),
            ),
            (
                Table::Filter,
                "LOBSTER-OUTPUT-TAPS",
                format!("-o {tap} -j {output}"),
            ),
            (
                Table::Nat,
                "LOBSTER-POSTROUTING-TAPS",
                format!("-s {} -j {nat}", net.subnet),
            ),
        ],
    }
}

/// The whole ruleset lobster wants for these tenants (base chains, hooks,
/// the egress chain, every tenant's chains and jumps in the given order).
pub fn plan(tenants: &[TenantNet], settings: &FirewallSettings) -> Ruleset {
    let mut rs = Ruleset::default();
    for base in &BASE_CHAINS {
        rs.chain_mut(base.table, base.builtin).push(hook_rule(base));
        *rs.chain_mut(base.table, base.chain) = entry_rules(base);
        rs.chain_mut(base.table, base.dispatch);
    }
    for (chain, rules) in egress_chains(settings) {
        *rs.chain_mut(Table::Filter, chain) = rules;
    }
    for net in tenants {
        let t = plan_tenant(net, settings);
        for (table, chain, rules) in t.chains {
            *rs.chain_mut(table, &chain) = rules;
        }
        for (table, base, jump) in t.jumps {
            rs.chain_mut(table, base).push(jump);
        }
    }
    rs
}

/// Adds to `batch` the changes that make `chain` hold exactly `want`
/// (declared afresh and refilled in the same batch, so atomically), if it
/// does not already.
fn rewrite_chain(current: &Ruleset, table: Table, chain: &str, want: &[String], batch: &mut Batch) {
    if current.chain(table, chain).map(Vec::as_slice) != Some(want) {
        batch.push(table, Op::Declare(chain.into()));
        for rule in want {
            batch.push(table, Op::Append(chain.into(), rule.clone()));
        }
    }
}

/// The changes that put the base chains, the egress chain and the hooks
/// exactly in place, without touching any tenant's jumps: entry chains and
/// the egress chain are rewritten when they differ, anything but tenants'
/// jumps leaves the dispatch chains, and the hook is lobster's only rule in
/// its built-in (a stray `-j ACCEPT` in a base chain would let traffic skip
/// every tenant's rules; a second hook would run them twice).
fn base_batch(current: &Ruleset, settings: &FirewallSettings, batch: &mut Batch) {
    for (chain, rules) in egress_chains(settings) {
        rewrite_chain(current, Table::Filter, chain, &rules, batch);
    }
    for base in &BASE_CHAINS {
        match current.chain(base.table, base.dispatch) {
            None => batch.push(base.table, Op::Declare(base.dispatch.into())),
            Some(rules) => {
                for rule in rules {
                    let tenant_jump =
                        jump_target(rule).is_some_and(|t| tenant_of_chain(t).is_some());
                    if !tenant_jump {
                        batch.push(base.table, Op::Delete(base.dispatch.into(), rule.clone()));
                    }
                }
            }
        }
        rewrite_chain(current, base.table, base.chain, &entry_rules(base), batch);
        // The hook, once, is lobster's only rule in the built-in chain.
        let hook = hook_rule(base);
        let mut hooked = false;
        let ours = current
            .chain(base.table, base.builtin)
            .into_iter()
            .flatten()
            .filter(|r| jump_target(r).is_some());
        for rule in ours {
            if *rule == hook && !hooked {
                hooked = true;
            } else {
                batch.push(base.table, Op::Delete(base.builtin.into(), rule.clone()));
            }
        }
        if !hooked {
            batch.push(base.table, Op::InsertFirst(base.builtin.into(), hook));
        }
    }
}

/// The changes that make one tenant's rules exactly `want`: its chains are
/// (re)written only when they differ, and its jumps are added or removed
/// one by one. Other tenants' chains and jumps are never named.
fn tenant_batch(current: &Ruleset, want: &TenantRules, batch: &mut Batch) {
    for (table, chain, rules) in &want.chains {
        if current.chain(*table, chain) != Some(rules) {
            batch.push(*table, Op::Declare(chain.clone()));
            for rule in rules {
                batch.push(*table, Op::Append(chain.clone(), rule.clone()));
            }
        }
    }
    // Stale jumps into this tenant's chains (e.g. an old subnet) go first.
    let prefix = tenant_chain_prefix(&want.id);
    for base in &BASE_CHAINS {
        for rule in current
            .chain(base.table, base.dispatch)
            .into_iter()
            .flatten()
        {
            let ours = jump_target(rule).is_some_and(|t| t.starts_with(&prefix));
            let wanted = want
                .jumps
                .iter()
                .any(|(t, c, j)| *t == base.table && *c == base.dispatch && j == rule);
            if ours && !wanted {
                batch.push(base.table, Op::Delete(base.dispatch.into(), rule.clone()));
            }
        }
    }
    for (table, base, jump) in &want.jumps {
        let present = current
            .chain(*table, base)
            .is_some_and(|rules| rules.contains(jump));
        if !present {
            batch.push(*table, Op::Append((*base).into(), jump.clone()));
        }
    }
}

/// The changes that remove every trace of tenant `id`: its jumps, then its
/// chains. Nothing else is named.
fn removal_batch(current: &Ruleset, id: &str, batch: &mut Batch) {
    let prefix = tenant_chain_prefix(id);
    for (table, chains) in &current.tables {
        for (chain, rules) in chains.iter().filter(|(c, _)| !c.starts_with(&prefix)) {
            for rule in rules {
                if jump_target(rule).is_some_and(|t| t.starts_with(&prefix)) {
                    batch.push(*table, Op::Delete(chain.clone(), rule.clone()));
                }
            }
        }
    }
    for (table, chains) in &current.tables {
        for chain in chains.keys().filter(|c| c.starts_with(&prefix)) {
            batch.push(*table, Op::Flush(chain.clone()));
        }
    }
    for (table, chains) in &current.tables {
        for chain in chains.keys().filter(|c| c.starts_with(&prefix)) {
            batch.push(*table, Op::DeleteChain(chain.clone()));
        }
    }
}

/// The batch that adds (or repairs) one tenant, creating the base chains
/// and hooks when missing. Empty when everything is in place.
pub fn apply_batch(current: &Ruleset, net: &TenantNet, settings: &FirewallSettings) -> Batch {
    let mut batch = Batch::default();
    base_batch(current, settings, &mut batch);
    tenant_batch(current, &plan_tenant(net, settings), &mut batch);
    batch
}

/// The batch that adds a tenant whose chains do not exist yet, planned
/// without reading the ruleset: `-N` makes a table's part fail (changing
/// nothing in it) if any of its chains exists, and a chain that does not
/// exist cannot have jumps pointing at it, so the appended jumps are never
/// duplicates. A table also fails if its dispatch chain or the egress
/// chain is missing; the shared egress chains are used as they are
/// (rewriting them costs iptables-nft a read of the whole ruleset; the
/// paths that read it anyway keep them current). On failure (possibly
/// after the filter table went in), fall back to reading the ruleset and
/// [`apply_batch`], which completes whatever is missing.
pub fn fresh_apply_batch(net: &TenantNet, settings: &FirewallSettings) -> Batch {
    let want = plan_tenant(net, settings);
    let mut batch = Batch::default();
    for (table, chain, rules) in &want.chains {
        batch.push(*table, Op::Create(chain.clone()));
        for rule in rules {
            batch.push(*table, Op::Append(chain.clone(), rule.clone()));
        }
    }
    for (table, base, jump) in &want.jumps {
        batch.push(*table, Op::Append((*base).into(), jump.clone()));
    }
    batch
}

/// The batch that removes a tenant whose rules are exactly as planned,
/// without reading the ruleset; a table where they are not fails (changing
/// nothing in it), and the caller falls back to [`remove_batch`] for what
/// is left.
pub fn planned_remove_batch(net: &TenantNet, settings: &FirewallSettings) -> Batch {
    let want = plan_tenant(net, settings);
    let mut batch = Batch::default();
    for (table, base, jump) in &want.jumps {
        batch.push(*table, Op::Delete((*base).into(), jump.clone()));
    }
    for (table, chain, _) in &want.chains {
        batch.push(*table, Op::Flush(chain.clone()));
    }
    for (table, chain, _) in &want.chains {
        batch.push(*table, Op::DeleteChain(chain.clone()));
    }
    batch
}

/// The batch that puts the base chains, the egress chain and the hooks
/// exactly in place (see `base_batch`), touching no tenant. Empty when they
/// are in place.
pub fn base_only_batch(current: &Ruleset, settings: &FirewallSettings) -> Batch {
    let mut batch = Batch::default();
    base_batch(current, settings, &mut batch);
    batch
}

/// The batch that removes one tenant. Empty when nothing of it is left.
pub fn remove_batch(current: &Ruleset, id: &str) -> Batch {
    let mut batch = Batch::default();
    removal_batch(current, id, &mut batch);
    batch
}

/// The batch that removes everything of lobster's from `current`: the
/// jumps into lobster's chains from other chains (the hooks), then every owned chain (base and tenants') flushed and
/// deleted. Nothing else is named. Empty when nothing of lobster's is left.
pub fn teardown_batch(current: &Ruleset) -> Batch {
    let mut batch = Batch::default();
    for (&table, chains) in &current.tables {
        for (chain, rules) in chains.iter().filter(|(c, _)| !is_owned_chain(c)) {
            for rule in rules.iter().filter(|r| jump_target(r).is_some()) {
                batch.push(table, Op::Delete(chain.clone(), rule.clone()));
            }
        }
    }
    for (&table, chains) in &current.tables {
        for chain in chains.keys().filter(|c| is_owned_chain(c)) {
            batch.push(table, Op::Flush(chain.clone()));
        }
    }
    for (&table, chains) in &current.tables {
        for chain in chains.keys().filter(|c| is_owned_chain(c)) {
            batch.push(table, Op::DeleteChain(chain.clone()));
        }
    }
    batch
}

/// The batch that makes the ruleset match exactly `tenants`: base chains and
/// hooks restored, every listed tenant added or repaired, every other
/// tenant's chains and jumps removed.
pub fn reconcile_batch(
    current: &Ruleset,
    tenants: &[TenantNet],
    settings: &FirewallSettings,
) -> Batch {
    let mut batch = Batch::default();
    let live: BTreeSet<&str> = tenants.iter().map(|t| t.id.as_str()).collect();
    let mut stale = BTreeSet::new();
    for chains in current.tables.values() {
        for (chain, rules) in chains {
            if let Some(id) = tenant_of_chain(chain) {
                stale.insert(id.to_string());
            }
            for target in rules.iter().filter_map(|r| jump_target(r)) {
                if let Some(id) = tenant_of_chain(target) {
                    stale.insert(id.to_string());
                }
            }
        }
    }
    // Stale tenants first: their jumps may sit in chains `base_batch`
    // rewrites (deleting them after the rewrite would fail).
    for id in stale.iter().filter(|id| !live.contains(id.as_str())) {
        removal_batch(current, id, &mut batch);
    }
    base_batch(current, settings, &mut batch);
    for net in tenants {
        tenant_batch(current, &plan_tenant(net, settings), &mut batch);
    }
    batch
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::network::MacAddr;

    /// Settings of the golden tests (shared with the other firewall tests).
    pub(crate) fn settings() -> FirewallSettings {
        FirewallSettings {
            pool: Ipv4Cidr::parse("10.200.0.0/16").unwrap(),
            gateway_port: 9000,
            agent_port: 52,
            health_port: 53,
            max_connections: 256,
            proxy_uid: None,
            egress_allow: Vec::new(),
            egress_deny: Vec::new(),
            host_subnets: Vec::new(),
        }
    }

    /// Tenant `id` in slot `n` of 10.200.0.0/16.
    pub(crate) fn tenant(id: &str, n: u32) -> TenantNet {
        let subnet = Ipv4Cidr {
            addr: std::net::Ipv4Addr::from(
                u32::from(std::net::Ipv4Addr::new(10, 200, 0, 0)) + 4 * n,
            ),
            prefix: 30,
        };
        TenantNet::new(
            id,
            subnet,
            MacAddr([2, 0xfc, 0, 0, 0, n as u8]),
            20000 + n as u16,
            10000 + n,
        )
        .unwrap()
    }

    /// The golden ruleset for one tenant; every line is in the form
    /// `iptables-save` prints (checked for real by the t1_firewall tests).
    const GOLDEN_ONE: &str = "\
*filter
:LOB-ab12cd34-FWI - [0:0]
:LOB-ab12cd34-FWO - [0:0]
:LOB-ab12cd34-IN - [0:0]
:LOB-ab12cd34-OUT - [0:0]
:LOBSTER-EGRESS - [0:0]
:LOBSTER-EGRESS-OK - [0:0]
:LOBSTER-FORWARD - [0:0]
:LOBSTER-FORWARD-TAPS - [0:0]
:LOBSTER-INPUT - [0:0]
:LOBSTER-INPUT-TAPS - [0:0]
:LOBSTER-OUTPUT - [0:0]
:LOBSTER-OUTPUT-TAPS - [0:0]
-A FORWARD -j LOBSTER-FORWARD
-A INPUT -j LOBSTER-INPUT
-A LOB-ab12cd34-FWI ! -s 10.200.0.6/32 -j DROP
-A LOB-ab12cd34-FWI -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A LOB-ab12cd34-FWI -g LOBSTER-EGRESS
-A LOB-ab12cd34-FWO -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A LOB-ab12cd34-FWO -j DROP
-A LOB-ab12cd34-IN -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A LOB-ab12cd34-IN -j DROP
-A LOB-ab12cd34-OUT -p tcp -m multiport --dports 52,53 -m owner --uid-owner 0 -j ACCEPT
-A LOB-ab12cd34-OUT -p tcp -m multiport --dports 52,53 -j DROP
-A LOB-ab12cd34-OUT -p tcp -m tcp --dport 9000 -m conntrack --ctstate NEW -m owner ! --uid-owner 0 -j REJECT --reject-with tcp-reset
-A LOB-ab12cd34-OUT -p tcp -m tcp --dport 9000 -m conntrack --ctstate NEW -m connlimit --connlimit-above 256 --connlimit-mask 32 --connlimit-daddr -j REJECT --reject-with tcp-reset
-A LOB-ab12cd34-OUT -p tcp -m tcp --dport 9000 -j ACCEPT
-A LOB-ab12cd34-OUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A LOB-ab12cd34-OUT -j DROP
-A LOBSTER-EGRESS -d 10.200.0.0/16 -j DROP
-A LOBSTER-EGRESS -d 0.0.0.0/8 -j DROP
-A LOBSTER-EGRESS -d 10.0.0.0/8 -j DROP
-A LOBSTER-EGRESS -d 100.64.0.0/10 -j DROP
-A LOBSTER-EGRESS -d 127.0.0.0/8 -j DROP
-A LOBSTER-EGRESS -d 169.254.0.0/16 -j DROP
-A LOBSTER-EGRESS -d 172.16.0.0/12 -j DROP
-A LOBSTER-EGRESS -d 192.0.0.0/24 -j DROP
-A LOBSTER-EGRESS -d 192.0.2.0/24 -j DROP
-A LOBSTER-EGRESS -d 192.88.99.0/24 -j DROP
-A LOBSTER-EGRESS -d 192.168.0.0/16 -j DROP
-A LOBSTER-EGRESS -d 198.18.0.0/15 -j DROP
-A LOBSTER-EGRESS -d 198.51.100.0/24 -j DROP
-A LOBSTER-EGRESS -d 203.0.113.0/24 -j DROP
-A LOBSTER-EGRESS -d 224.0.0.0/4 -j DROP
-A LOBSTER-EGRESS -d 240.0.0.0/4 -j DROP
-A LOBSTER-EGRESS -d 255.255.255.255/32 -j DROP
-A LOBSTER-EGRESS -g LOBSTER-EGRESS-OK
-A LOBSTER-EGRESS-OK -m conntrack --ctstate NEW -m connlimit --connlimit-above 256 --connlimit-mask 32 --connlimit-saddr -j REJECT --reject-with icmp-port-unreachable
-A LOBSTER-EGRESS-OK -j ACCEPT
-A LOBSTER-FORWARD -i lob-+ -o lob-+ -j DROP
-A LOBSTER-FORWARD -j LOBSTER-FORWARD-TAPS
-A LOBSTER-FORWARD -i lob-+ -j DROP
-A LOBSTER-FORWARD -o lob-+ -j DROP
-A LOBSTER-FORWARD-TAPS -i lob-ab12cd34 -j LOB-ab12cd34-FWI
-A LOBSTER-FORWARD-TAPS -o lob-ab12cd34 -j LOB-ab12cd34-FWO
-A LOBSTER-INPUT -j LOBSTER-INPUT-TAPS
-A LOBSTER-INPUT -i lob-+ -j DROP
-A LOBSTER-INPUT-TAPS -i lob-ab12cd34 -j LOB-ab12cd34-IN
-A LOBSTER-OUTPUT -j LOBSTER-OUTPUT-TAPS
-A LOBSTER-OUTPUT -o lob-+ -j DROP
-A LOBSTER-OUTPUT-TAPS -o lob-ab12cd34 -j LOB-ab12cd34-OUT
-A OUTPUT -j LOBSTER-OUTPUT
COMMIT
*nat
:LOB-ab12cd34-NAT - [0:0]
:LOBSTER-POSTROUTING - [0:0]
:LOBSTER-POSTROUTING-TAPS - [0:0]
-A LOB-ab12cd34-NAT ! -o lob-ab12cd34 -j MASQUERADE
-A LOBSTER-POSTROUTING -j LOBSTER-POSTROUTING-TAPS
-A LOBSTER-POSTROUTING-TAPS -s 10.200.0.4/30 -j LOB-ab12cd34-NAT
-A POSTROUTING -j LOBSTER-POSTROUTING
COMMIT
";

    #[test]
    fn one_tenant_plans_to_the_golden_ruleset() {
        let rs = plan(&[tenant("ab12cd34", 1)], &settings());
        assert_eq!(rs.render(), GOLDEN_ONE);
    }

    #[test]
    fn applying_the_apply_batch_to_nothing_gives_the_plan() {
        let net = tenant("ab12cd34", 1);
        let mut rs = Ruleset::default();
        rs.apply(&apply_batch(&rs.clone(), &net, &settings()))
            .unwrap();
        assert_eq!(rs, plan(std::slice::from_ref(&net), &settings()));
        assert!(
            apply_batch(&rs, &net, &settings()).is_empty(),
            "second apply is a no-op"
        );
    }

    #[test]
    fn adding_a_tenant_never_names_another_tenants_chains() {
        let (a, b) = (tenant("aaaa", 1), tenant("bbbb", 2));
        let current = plan(std::slice::from_ref(&a), &settings());
        let batch = apply_batch(&current, &b, &settings());
        let text = batch.render();
        assert!(!text.contains("aaaa"), "{text}");
        assert_eq!(
            batch.len(),
            5 + 14 + 1 + 5,
            "declares, filter rules, nat rule, jumps:\n{text}"
        );
        let mut after = current.clone();
        after.apply(&batch).unwrap();
        assert_eq!(after, plan(&[a, b], &settings()));
    }

    #[test]
    fn removing_a_tenant_touches_only_it() {
        let (a, b) = (tenant("aaaa", 1), tenant("bbbb", 2));
        let mut rs = plan(&[a.clone(), b], &settings());
        let batch = remove_batch(&rs, "bbbb");
        assert!(!batch.render().contains("aaaa"));
        rs.apply(&batch).unwrap();
        assert_eq!(rs, plan(&[a], &settings()));
        assert!(
            remove_batch(&rs, "bbbb").is_empty(),
            "removal is idempotent"
        );
    }

    #[test]
    fn reconcile_restores_flushed_chains_and_drops_stale_tenants() {
        let (a, b, c) = (tenant("aaaa", 1), tenant("bbbb", 2), tenant("cccc", 3));
        let mut rs = plan(&[a.clone(), b.clone(), c], &settings());
        // A flushed tenant chain, a lost hook, and a tenant that is gone.
        rs.chain_mut(Table::Filter, "LOB-aaaa-FWI").clear();
        rs.chain_mut(Table::Filter, "INPUT").clear();
        let batch = reconcile_batch(&rs, &[a.clone(), b.clone()], &settings());
        assert!(
            !batch.render().contains("bbbb"),
            "an intact tenant is not rewritten"
        );
        rs.apply(&batch).unwrap();
        assert_eq!(rs, plan(&[a.clone(), b.clone()], &settings()));
        assert!(reconcile_batch(&rs, &[a, b], &settings()).is_empty());
    }

    #[test]
    fn reconcile_after_reboot_rebuilds_everything() {
        let tenants = [tenant("aaaa", 1), tenant("bbbb", 2)];
        let mut rs = Ruleset::default();
        rs.apply(&reconcile_batch(&rs.clone(), &tenants, &settings()))
            .unwrap();
        assert_eq!(rs, plan(&tenants, &settings()));
    }

    #[test]
    fn fresh_and_planned_batches_need_no_read_and_refuse_wrong_states() {
        let (a, b) = (tenant("aaaa", 1), tenant("bbbb", 2));
        let mut rs = plan(std::slice::from_ref(&a), &settings());
        rs.apply(&fresh_apply_batch(&b, &settings())).unwrap();
        assert_eq!(rs, plan(&[a.clone(), b.clone()], &settings()));
        // Applying the fresh batch again fails as a whole: no duplicates.
        let mut again = rs.clone();
        assert!(again.apply(&fresh_apply_batch(&b, &settings())).is_err());
        // Without base chains it fails too.
        assert!(Ruleset::default()
            .apply(&fresh_apply_batch(&b, &settings()))
            .is_err());
        rs.apply(&planned_remove_batch(&b, &settings())).unwrap();
        assert_eq!(rs, plan(std::slice::from_ref(&a), &settings()));
        assert!(rs.apply(&planned_remove_batch(&b, &settings())).is_err());
    }

    #[test]
    fn egress_denies_special_ranges_and_host_subnets_and_allow_yields_to_deny() {
        let cidrs = |list: &[&str]| -> Vec<Ipv4Cidr> {
            list.iter().map(|c| Ipv4Cidr::parse(c).unwrap()).collect()
        };
        let mut s = settings();
        s.host_subnets = cidrs(&["192.168.7.0/24", "44.0.0.0/8", "44.0.0.0/8"]);
        s.egress_allow = cidrs(&["192.0.2.0/24", "44.1.0.0/16"]);
        s.egress_deny = cidrs(&["192.0.2.7/32"]);
        let rules = egress_rules(&s);
        let at = |rule: &str| rules.iter().position(|r| r == rule).expect(rule);
        // Pool and explicit deny before any allow; allow before the default deny.
        assert_eq!(at("-d 10.200.0.0/16 -j DROP"), 0);
        let ok = |c: &str| format!("-d {c} -g LOBSTER-EGRESS-OK");
        assert!(at("-d 192.0.2.7/32 -j DROP") < at(&ok("192.0.2.0/24")));
        assert!(at(&ok("192.0.2.0/24")) < at("-d 192.0.2.0/24 -j DROP"));
        assert!(at(&ok("44.1.0.0/16")) < at("-d 44.0.0.0/8 -j DROP"));
        assert_eq!(rules.last().unwrap(), "-g LOBSTER-EGRESS-OK");
        for range in SPECIAL_PURPOSE_RANGES {
            at(&format!("-d {range} -j DROP"));
        }
        // A host subnet inside a special range adds nothing; each once.
        assert_eq!(
            rules.len(),
            1 + 1 + 2 + SPECIAL_PURPOSE_RANGES.len() + 1 + 1
        );
    }

    #[test]
    fn only_root_and_the_proxy_open_gateway_connections() {
        let net = tenant("ab12cd34", 1);
        let out = |s: &FirewallSettings| plan_tenant(&net, s).chains[3].2[2].clone();
        let mut s = settings();
        assert_eq!(out(&s), "-p tcp -m tcp --dport 9000 -m conntrack --ctstate NEW -m owner ! --uid-owner 0 -j REJECT --reject-with tcp-reset");
        s.proxy_uid = Some(0);
        assert_eq!(out(&s), out(&settings()));
        s.proxy_uid = Some(995);
        assert_eq!(out(&s), "-p tcp -m tcp --dport 9000 -m conntrack --ctstate NEW -m owner ! --uid-owner 0 -m owner ! --uid-owner 995 -j REJECT --reject-with tcp-reset");
    }

    #[test]
    fn a_base_chain_with_a_tenant_jump_of_the_old_layout_is_reconciled() {
        let a = tenant("aaaa", 1);
        let mut rs = plan(std::slice::from_ref(&a), &settings());
        let jump = "-i lob-aaaa -j LOB-aaaa-IN".to_string();
        rs.chain_mut(Table::Filter, "LOBSTER-INPUT-TAPS").clear();
        rs.chain_mut(Table::Filter, "LOBSTER-INPUT").insert(0, jump);
        for live in [vec![a.clone()], vec![]] {
            let mut state = rs.clone();
            state
                .apply(&reconcile_batch(&rs, &live, &settings()))
                .unwrap();
            assert_eq!(state, plan(&live, &settings()));
        }
    }

    #[test]
    fn tenant_of_chain_reads_the_id() {
        assert_eq!(tenant_of_chain("LOB-ab12cd34-FWI"), Some("ab12cd34"));
        assert_eq!(tenant_of_chain("LOBSTER-FORWARD"), None);
    }
}

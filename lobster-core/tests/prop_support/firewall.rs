//! Firewall states to test against: sequences of [`Step`]s, each either a
//! random batch (often invalid) or a batch the planner would send, applied
//! one after another to whatever the previous steps left.
//!
//! Random changes name a small pool of chains (lobster's entry, dispatch
//! and egress chains, two tenants' chains, a foreign `DOCKER` chain, the
//! built-ins), so creating, jumping, deleting and referencing collide
//! often. Jumps follow the planner's layout (built-in → its entry chain or
//! `DOCKER`, entry chain → its dispatch chain or tenant chains of its kind
//! (an older layout), dispatch chain → tenant chains of its kind, a
//! tenant's forward-out chain → the egress chain → the egress-ok chain;
//! the planner's own steps go there with `-g`), so every rule stays
//! valid in the hooks that reach it and no batch builds a loop: the real
//! tools refuse those only when they are reachable from a hook, which the
//! model does not follow.
//!
//! Planned steps use one of a few [`settings_variant`]s (host subnets,
//! egress allow and deny lists, proxy uid), so a step may find lobster's
//! chains planned with other inputs.

use std::net::Ipv4Addr;

use lobster_core::config::{Ipv4Cidr, NetworkConfig};
use lobster_core::network::firewall::{
    apply_batch, base_only_batch, builtin_chains, fresh_apply_batch, planned_remove_batch,
    reconcile_batch, remove_batch, tenant_chain_prefix, Batch, FirewallSettings, Op, Ruleset,
    Table, BASE_CHAINS, EGRESS_CHAIN, EGRESS_OK_CHAIN,
};
use lobster_core::network::{MacAddr, TenantNet};
use proptest::prelude::*;
use proptest::sample::Index;

/// Tenant ids: the first two are planned tenants, the last only ever
/// appears as chains a random step left behind.
pub const IDS: [&str; 3] = ["aaaa0001", "bbbb0002", "cccc0003"];

/// The chain a foreign tool (here: Docker) owns.
pub const FOREIGN: &str = "DOCKER";

/// Each base chain's tenant chain suffixes (its "kind"), for its entry
/// and its dispatch chain.
const KINDS: [(&str, &[&str]); 8] = [
    ("LOBSTER-INPUT", &["IN"]),
    ("LOBSTER-INPUT-TAPS", &["IN"]),
    ("LOBSTER-FORWARD", &["FWI", "FWO"]),
    ("LOBSTER-FORWARD-TAPS", &["FWI", "FWO"]),
    ("LOBSTER-OUTPUT", &["OUT"]),
    ("LOBSTER-OUTPUT-TAPS", &["OUT"]),
    ("LOBSTER-POSTROUTING", &["NAT"]),
    ("LOBSTER-POSTROUTING-TAPS", &["NAT"]),
];

/// Matches valid in every chain of both tables.
const MATCHES: [&str; 3] = ["", "-s 10.200.0.0/30 ", "-p tcp -m tcp --dport 80 "];

/// Verdicts valid in every chain of both tables.
const VERDICTS: [&str; 2] = ["ACCEPT", "RETURN"];

/// The firewall settings of a default configuration.
pub fn settings() -> FirewallSettings {
    FirewallSettings::from_config(&NetworkConfig::default()).expect("default settings")
}

/// How many [`settings_variant`]s there are.
pub const VARIANTS: usize = 3;

/// Settings `k` (`0`: the default configuration's; the others with host
/// subnets, egress allow and deny lists and a proxy uid).
pub fn settings_variant(k: usize) -> FirewallSettings {
    let cidrs = |list: &[&str]| -> Vec<Ipv4Cidr> {
        list.iter()
            .map(|c| Ipv4Cidr::parse(c).expect("valid"))
            .collect()
    };
    let mut s = settings();
    match k {
        0 => {}
        1 => {
            s.host_subnets = cidrs(&["8.8.8.0/24", "192.168.1.0/24"]);
            s.egress_allow = cidrs(&["192.0.2.0/24"]);
        }
        _ => {
            s.host_subnets = cidrs(&["8.8.8.0/24", "44.0.0.0/8"]);
            s.egress_allow = cidrs(&["100.64.0.0/10", "44.1.0.0/16"]);
            s.egress_deny = cidrs(&["1.2.3.0/24", "100.100.100.200/32"]);
            s.proxy_uid = Some(995);
        }
    }
    s
}

/// Any settings: a few random host subnets, allowed and denied ranges, a
/// proxy uid or none (pool and ports as configured by default).
pub fn any_settings() -> impl Strategy<Value = FirewallSettings> {
    let cidr =
        (any::<u32>(), 0..=32u8).prop_map(|(a, p)| Ipv4Cidr::containing(Ipv4Addr::from(a), p));
    let list = move || prop::collection::vec(cidr.clone(), 0..4);
    (list(), list(), list(), prop::option::of(0..70_000u32)).prop_map(
        |(host_subnets, egress_allow, egress_deny, proxy_uid)| FirewallSettings {
            host_subnets,
            egress_allow,
            egress_deny,
            proxy_uid,
            ..settings()
        },
    )
}

/// Planned tenant `i` (`IDS[i]` in slot `i + 1` of the default pool).
pub fn tenant(i: usize) -> TenantNet {
    let subnet = Ipv4Cidr {
        addr: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + 4 * (i as u32 + 1)),
        prefix: 30,
    };
    let mac = MacAddr::from_guest_ip(Ipv4Addr::from(u32::from(subnet.addr) + 2));
    TenantNet::new(IDS[i], subnet, mac, 20001 + i as u16, 10001 + i as u32).expect("valid")
}

/// The chains random changes name in `table`.
fn chains(table: Table) -> Vec<String> {
    let mut out: Vec<String> = builtin_chains(table)
        .iter()
        .filter(|b| {
            BASE_CHAINS
                .iter()
                .any(|c| c.table == table && c.builtin == **b)
        })
        .map(|b| b.to_string())
        .collect();
    if table == Table::Filter {
        out.extend([EGRESS_CHAIN.into(), EGRESS_OK_CHAIN.into()]);
    }
    for (base, suffixes) in KINDS.iter().filter(|(b, _)| base_table(b) == table) {
        out.push(base.to_string());
        for id in [IDS[0], IDS[2]] {
            out.extend(
                suffixes
                    .iter()
                    .map(|s| format!("{}{s}", tenant_chain_prefix(id))),
            );
        }
    }
    if table == Table::Filter {
        out.push(FOREIGN.into());
    }
    out
}

fn base_table(base: &str) -> Table {
    BASE_CHAINS
        .iter()
        .find(|c| c.chain == base || c.dispatch == base)
        .expect("a base chain")
        .table
}

/// Where a rule in `chain` may jump (see the module docs).
fn targets(table: Table, chain: &str) -> Vec<String> {
    let mut out: Vec<String> = VERDICTS.iter().map(|v| v.to_string()).collect();
    if let Some(base) = BASE_CHAINS
        .iter()
        .find(|c| c.table == table && c.builtin == chain)
    {
        out.push(base.chain.into());
        if table == Table::Filter {
            out.push(FOREIGN.into());
        }
    }
    if let Some(base) = BASE_CHAINS
        .iter()
        .find(|c| c.table == table && c.chain == chain)
    {
        out.push(base.dispatch.into());
    }
    if chain.ends_with("-FWI") {
        out.push(EGRESS_CHAIN.into());
    }
    if chain == EGRESS_CHAIN {
        out.push(EGRESS_OK_CHAIN.into());
    }
    if let Some((_, suffixes)) = KINDS.iter().find(|(b, _)| *b == chain) {
        for id in [IDS[0], IDS[2]] {
            out.extend(
                suffixes
                    .iter()
                    .map(|s| format!("{}{s}", tenant_chain_prefix(id))),
            );
        }
    }
    out
}

/// One random change to `table` naming one of `chains`. Never `-X` of a
/// built-in chain (that becomes `-F`): the tools differ there (iptables-nft
/// deletes an empty one, legacy refuses; the model refuses), and lobster
/// never does it.
fn op(table: Table, chains: Vec<String>) -> BoxedStrategy<Op> {
    let chain = proptest::sample::select(chains);
    let rule = (chain.clone(), 0..MATCHES.len(), any::<Index>()).prop_map(move |(c, m, t)| {
        let target = t.get(&targets(table, &c)).clone();
        (c, format!("{}-j {target}", MATCHES[m]))
    });
    prop_oneof![
        5 => chain.clone().prop_map(Op::Declare),
        1 => chain.clone().prop_map(Op::Create),
        5 => rule.clone().prop_map(|(c, s)| Op::Append(c, s)),
        1 => rule.clone().prop_map(|(c, s)| Op::InsertFirst(c, s)),
        2 => rule.prop_map(|(c, s)| Op::Delete(c, s)),
        2 => chain.clone().prop_map(Op::Flush),
        3 => chain.prop_map(move |c| match builtin_chains(table).contains(&c.as_str()) {
            true => Op::Flush(c),
            false => Op::DeleteChain(c),
        }),
    ]
    .boxed()
}

/// Up to `max` random changes to `table`, all naming the same few chains
/// (so that one batch often creates, fills, empties and deletes a chain).
fn ops(table: Table, max: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::sample::subsequence(chains(table), 1..=3)
        .prop_flat_map(move |few| prop::collection::vec(op(table, few), 0..=max))
}

/// A random batch: a few changes to each table.
pub fn random_batch() -> impl Strategy<Value = Batch> {
    (ops(Table::Filter, 3), ops(Table::Nat, 2)).prop_map(|(filter, nat)| {
        let mut batch = Batch::default();
        for (table, ops) in [(Table::Filter, filter), (Table::Nat, nat)] {
            for op in ops {
                batch.push(table, op);
            }
        }
        batch
    })
}

/// One step towards a firewall state.
#[derive(Debug, Clone)]
pub enum Step {
    /// Random changes, valid or not.
    Random(Batch),
    /// The base chains and hooks where missing, with settings variant `k`.
    Base(usize),
    /// Tenant `i` added without reading the ruleset (settings `k`).
    Fresh(usize, usize),
    /// Tenant `i` added or repaired against the ruleset (settings `k`).
    Apply(usize, usize),
    /// Tenant `i` removed as planned, without reading the ruleset (settings `k`).
    PlannedRemove(usize, usize),
    /// Everything of `IDS[i]` removed, against the ruleset.
    Remove(usize),
    /// Only the tenants whose bit is set kept, against the ruleset (settings `k`).
    Reconcile(u8, usize),
}

impl Step {
    /// The batch of this step when lobster's part of the ruleset is `current`.
    pub fn batch(&self, current: &Ruleset) -> Batch {
        let s = settings_variant;
        match *self {
            Step::Random(ref batch) => batch.clone(),
            Step::Base(k) => base_only_batch(current, &s(k)),
            Step::Fresh(i, k) => fresh_apply_batch(&tenant(i), &s(k)),
            Step::Apply(i, k) => apply_batch(current, &tenant(i), &s(k)),
            Step::PlannedRemove(i, k) => planned_remove_batch(&tenant(i), &s(k)),
            Step::Remove(i) => remove_batch(current, IDS[i]),
            Step::Reconcile(mask, k) => reconcile_batch(current, &kept(mask), &s(k)),
        }
    }
}

/// The planned tenants whose bit is set in `mask`.
pub fn kept(mask: u8) -> Vec<TenantNet> {
    (0..2)
        .filter(|i| mask & (1 << i) != 0)
        .map(tenant)
        .collect()
}

/// One step, random changes most often.
pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => random_batch().prop_map(Step::Random),
        1 => (0..VARIANTS).prop_map(Step::Base),
        1 => (0..2usize, 0..VARIANTS).prop_map(|(i, k)| Step::Fresh(i, k)),
        1 => (0..2usize, 0..VARIANTS).prop_map(|(i, k)| Step::Apply(i, k)),
        1 => (0..2usize, 0..VARIANTS).prop_map(|(i, k)| Step::PlannedRemove(i, k)),
        1 => (0..3usize).prop_map(Step::Remove),
        1 => (0..4u8, 0..VARIANTS).prop_map(|(m, k)| Step::Reconcile(m, k)),
    ]
}

/// Up to `max` steps, from empty tables or (half the time) from both
/// planned tenants in place.
pub fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    (any::<bool>(), prop::collection::vec(step(), 1..=max)).prop_map(|(planned, steps)| {
        let start = planned.then_some(Step::Reconcile(0b11, 0));
        start.into_iter().chain(steps).collect()
    })
}

/// A fixed step sequence meeting one rule of `iptables-restore` in its
/// last step (random steps meet some rules rarely).
#[derive(Debug, Clone)]
pub struct EdgeCase {
    /// The rule.
    pub what: &'static str,
    /// The steps, from empty tables.
    pub steps: Vec<Step>,
    /// Whether the last step's batch is accepted.
    pub accepted: bool,
}

/// One edge case per rule the model follows.
pub fn edge_cases() -> Vec<EdgeCase> {
    let c = || "LOB-cccc0003-IN".to_string();
    let a = || "LOB-aaaa0001-IN".to_string();
    let case = |what, planned: bool, filter: Vec<Op>, nat: Vec<Op>, accepted| {
        let mut batch = Batch::default();
        for (table, ops) in [(Table::Filter, filter), (Table::Nat, nat)] {
            for op in ops {
                batch.push(table, op);
            }
        }
        let start = planned.then_some(Step::Reconcile(0b11, 0));
        EdgeCase {
            what,
            steps: start.into_iter().chain([Step::Random(batch)]).collect(),
            accepted,
        }
    };
    let accept = || "-j ACCEPT".to_string();
    vec![
        case(
            "-X of a non-empty chain",
            true,
            vec![Op::Flush("LOBSTER-INPUT-TAPS".into()), Op::DeleteChain(a())],
            vec![],
            false,
        ),
        case(
            "-X of a referenced chain",
            true,
            vec![Op::Flush(a()), Op::DeleteChain(a())],
            vec![],
            false,
        ),
        case(
            "-X of a missing chain",
            false,
            vec![Op::DeleteChain(c())],
            vec![],
            false,
        ),
        case(
            "-F of a missing chain",
            false,
            vec![Op::Flush(c())],
            vec![],
            false,
        ),
        case(
            "-A to a missing chain",
            false,
            vec![Op::Append(c(), accept())],
            vec![],
            false,
        ),
        case(
            "-I into a missing chain",
            false,
            vec![Op::InsertFirst(c(), accept())],
            vec![],
            false,
        ),
        case(
            "-D of a missing rule",
            true,
            vec![Op::Delete(a(), accept())],
            vec![],
            false,
        ),
        case(
            "-N of an existing chain",
            true,
            vec![Op::Create(a())],
            vec![],
            false,
        ),
        case(
            "-N of a built-in chain",
            false,
            vec![Op::Create("INPUT".into())],
            vec![],
            false,
        ),
        case(
            "a jump to a missing chain",
            false,
            vec![Op::Append("FORWARD".into(), format!("-j {FOREIGN}"))],
            vec![],
            false,
        ),
        case(
            "declaring flushes a chain, not a built-in",
            true,
            vec![Op::Declare(a()), Op::Declare("INPUT".into())],
            vec![],
            true,
        ),
        case(
            "-D deletes the first equal rule",
            false,
            vec![
                Op::Declare(c()),
                Op::Append(c(), accept()),
                Op::Append(c(), "-j RETURN".into()),
                Op::Append(c(), accept()),
                Op::Delete(c(), accept()),
            ],
            vec![],
            true,
        ),
        case(
            "a failing table keeps the one before it",
            false,
            vec![Op::Declare(FOREIGN.into())],
            vec![Op::Flush("LOB-cccc0003-NAT".into())],
            false,
        ),
        case(
            "a failing table stops the one after it",
            false,
            vec![Op::Flush(c())],
            vec![Op::Declare("LOB-cccc0003-NAT".into())],
            false,
        ),
        case(
            "a late failure undoes the table",
            false,
            vec![
                Op::Declare(FOREIGN.into()),
                Op::Declare(c()),
                Op::DeleteChain(a()),
            ],
            vec![],
            false,
        ),
    ]
}

/// The whole state (every chain and rule of both tables) the steps leave,
/// each applied to what the ones before left; failing batches change what
/// `iptables-restore` would have changed.
pub fn reach(steps: &[Step]) -> Ruleset {
    let mut state = Ruleset::default();
    for step in steps {
        let batch = step.batch(&state.owned());
        let _ = state.apply(&batch);
    }
    state
}

//! The firewall as data: the lobster-owned part of the iptables ruleset
//! ([`Ruleset`]), the changes to it ([`Batch`]), and their text forms
//! (`iptables-save` to parse, `iptables-restore --noflush` to render).
//!
//! Rule specs are kept in the canonical form `iptables-save` prints, so a
//! planned ruleset and a saved one compare equal byte for byte.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::network::NetworkError;

/// Chains lobster owns start with one of these prefixes.
pub const BASE_PREFIX: &str = "LOBSTER-";
/// Per-tenant chains are `LOB-<id>-<suffix>`.
pub const TENANT_PREFIX: &str = "LOB-";

/// An iptables table lobster writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Packet filtering.
    Filter,
    /// Address translation.
    Nat,
}

impl Table {
    /// The table's iptables name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
        }
    }

    fn parse(name: &str) -> Option<Table> {
        match name {
            "filter" => Some(Table::Filter),
            "nat" => Some(Table::Nat),
            _ => None,
        }
    }
}

/// True for chains lobster owns (base and per-tenant).
pub fn is_owned_chain(chain: &str) -> bool {
    chain.starts_with(BASE_PREFIX) || chain.starts_with(TENANT_PREFIX)
}

/// The target chain of a `-j CHAIN` or `-g CHAIN` spec, if it names a
/// lobster chain.
pub fn jump_target(spec: &str) -> Option<&str> {
    target(spec).filter(|t| is_owned_chain(t))
}

/// The target of a `-j TARGET` (a chain, a verdict or an extension) or
/// `-g CHAIN` spec.
fn target(spec: &str) -> Option<&str> {
    let words: Vec<&str> = spec.split_whitespace().collect();
    let at = words.iter().rposition(|w| *w == "-j" || *w == "-g")?;
    words.get(at + 1).copied()
}

/// The targets that are not chains: verdicts and the extension targets the
/// model knows (any other target must name an existing chain).
const NON_CHAIN_TARGETS: [&str; 10] = [
    "ACCEPT",
    "DROP",
    "RETURN",
    "REJECT",
    "MASQUERADE",
    "SNAT",
    "DNAT",
    "REDIRECT",
    "LOG",
    "MARK",
];

/// The lobster-owned part of the ruleset: every owned chain with its rules
/// in order, and, for built-in chains, only the rules that jump into
/// lobster's base chains (the hooks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Table → chain → rule specs (without `-A CHAIN`), in chain order.
    pub tables: BTreeMap<Table, BTreeMap<String, Vec<String>>>,
}

impl Ruleset {
    /// The rules of `chain`, if the chain exists (built-ins: hooks only).
    pub fn chain(&self, table: Table, chain: &str) -> Option<&Vec<String>> {
        self.tables.get(&table)?.get(chain)
    }

    /// Adds an empty chain if it is missing, and returns its rules.
    pub fn chain_mut(&mut self, table: Table, chain: &str) -> &mut Vec<String> {
        self.tables
            .entry(table)
            .or_default()
            .entry(chain.to_string())
            .or_default()
    }

    /// Parses `iptables-save` output, keeping only what lobster owns.
    pub fn parse_save(text: &str) -> Result<Ruleset, NetworkError> {
        Ok(Ruleset::parse_tables(text)?.owned())
    }

    /// Parses `iptables-save` output whole: every user chain and every rule
    /// of the tables lobster writes to (built-ins only where they hold rules).
    pub fn parse_tables(text: &str) -> Result<Ruleset, NetworkError> {
        let mut out = Ruleset::default();
        let mut table: Option<Table> = None;
        let bad = |line: usize, text: &str| NetworkError::FirewallParse {
            line: line + 1,
            text: text.to_string(),
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('*') {
                table = Table::parse(name);
                continue;
            }
            if line == "COMMIT" {
                table = None;
                continue;
            }
            let Some(t) = table else {
                continue; // a table lobster does not use (mangle, raw, ...)
            };
            if let Some(decl) = line.strip_prefix(':') {
                let chain = decl.split_whitespace().next().ok_or_else(|| bad(n, line))?;
                if !is_builtin(t, chain) {
                    out.chain_mut(t, chain);
                }
                continue;
            }
            let rest = line.strip_prefix("-A ").ok_or_else(|| bad(n, line))?;
            let (chain, spec) = rest.split_once(' ').ok_or_else(|| bad(n, line))?;
            out.chain_mut(t, chain).push(spec.to_string());
        }
        Ok(out)
    }

    /// Lobster's part of this ruleset: owned chains whole, elsewhere only
    /// the hooks (what [`Ruleset::parse_save`] keeps of a whole save).
    pub fn owned(&self) -> Ruleset {
        let mut out = Ruleset::default();
        for (&table, chains) in &self.tables {
            for (chain, rules) in chains {
                if is_owned_chain(chain) {
                    out.chain_mut(table, chain).clone_from(rules);
                    continue;
                }
                for spec in rules.iter().filter(|s| is_lobster_rule(chain, s)) {
                    out.chain_mut(table, chain).push(spec.clone());
                }
            }
        }
        out
    }

    /// The ruleset in `iptables-save` form (user chains declared, rules as
    /// `-A CHAIN spec`), in a stable order; what tests compare, and what
    /// [`Ruleset::parse_tables`] reads back unchanged.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (&table, chains) in &self.tables {
            let _ = writeln!(out, "*{}", table.name());
            for chain in chains.keys().filter(|c| !is_builtin(table, c)) {
                let _ = writeln!(out, ":{chain} - [0:0]");
            }
            for (chain, rules) in chains {
                for spec in rules {
                    let _ = writeln!(out, "-A {chain} {spec}");
                }
            }
            out.push_str("COMMIT\n");
        }
        out
    }

    /// Applies a batch the way `iptables-restore --noflush` does (the
    /// in-memory backend, and checks of plans), as strictly as the real
    /// tool (checked against it by the `t1_firewall_differential` test):
    /// tables in order, each one all or nothing, stopping at the first
    /// table that fails while the tables before it stay applied. A table
    /// fails when a change creates a chain that exists, names a chain or
    /// jumps to one that does not exist, deletes a rule that is not there,
    /// or deletes a built-in, non-empty or referenced chain.
    ///
    /// Built-in chains always exist; they are kept only while they hold
    /// rules, like in a parsed ruleset. A target must be an existing chain,
    /// a verdict or one of the few extension targets the model knows.
    pub fn apply(&mut self, batch: &Batch) -> Result<(), String> {
        for (&table, ops) in batch.tables.iter().filter(|(_, ops)| !ops.is_empty()) {
            let mut chains = self.tables.get(&table).cloned().unwrap_or_default();
            for (n, op) in ops.iter().enumerate() {
                apply_op(table, &mut chains, op)
                    .map_err(|e| format!("{} table, change {}: {e}", table.name(), n + 1))?;
            }
            chains.retain(|chain, rules| !rules.is_empty() || !is_builtin(table, chain));
            if chains.is_empty() {
                self.tables.remove(&table);
            } else {
                self.tables.insert(table, chains);
            }
        }
        Ok(())
    }
}

/// The built-in chains of the tables lobster writes to.
pub fn builtin_chains(table: Table) -> &'static [&'static str] {
    match table {
        Table::Filter => &["INPUT", "FORWARD", "OUTPUT"],
        Table::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
    }
}

fn is_builtin(table: Table, chain: &str) -> bool {
    builtin_chains(table).contains(&chain)
}

/// Whether lobster's view of the ruleset keeps rule `spec` of `chain`:
/// every rule of an owned chain, and elsewhere only the hooks (jumps into
/// a base chain).
fn is_lobster_rule(chain: &str, spec: &str) -> bool {
    is_owned_chain(chain) || jump_target(spec).is_some_and(|c| c.starts_with(BASE_PREFIX))
}

/// One change of [`Ruleset::apply`] to one table's chains.
fn apply_op(
    table: Table,
    chains: &mut BTreeMap<String, Vec<String>>,
    op: &Op,
) -> Result<(), String> {
    let exists = |chains: &BTreeMap<String, Vec<String>>, chain: &str| {
        is_builtin(table, chain) || chains.contains_key(chain)
    };
    let check_chain = |chains: &BTreeMap<String, Vec<String>>, chain: &str| {
        if exists(chains, chain) {
            Ok(())
        } else {
            Err(format!("no chain {chain}"))
        }
    };
    let check_rule = |chains: &BTreeMap<String, Vec<String>>, chain: &str, spec: &str| {
        check_chain(chains, chain)?;
        match target(spec) {
            Some(t) if !chains.contains_key(t) && !NON_CHAIN_TARGETS.contains(&t) => {
                Err(format!("no chain or target {t}"))
            }
            _ => Ok(()),
        }
    };
    match op {
        Op::Declare(chain) => {
            // Declaring a built-in only sets its policy, which is not modelled.
            if !is_builtin(table, chain) {
                chains.insert(chain.clone(), Vec::new());
            }
        }
        Op::Create(chain) => {
            if exists(chains, chain) {
                return Err(format!("chain {chain} already exists"));
            }
            chains.insert(chain.clone(), Vec::new());
        }
        Op::Append(chain, spec) => {
            check_rule(chains, chain, spec)?;
            chains.entry(chain.clone()).or_default().push(spec.clone());
        }
        Op::InsertFirst(chain, spec) => {
            check_rule(chains, chain, spec)?;
            chains
                .entry(chain.clone())
                .or_default()
                .insert(0, spec.clone());
        }
        Op::Delete(chain, spec) => {
            check_chain(chains, chain)?;
            let rules = chains.entry(chain.clone()).or_default();
            let at = rules
                .iter()
                .position(|r| r == spec)
                .ok_or_else(|| format!("no rule `{spec}` in {chain}"))?;
            rules.remove(at);
        }
        Op::Flush(chain) => {
            check_chain(chains, chain)?;
            chains.entry(chain.clone()).or_default().clear();
        }
        Op::DeleteChain(chain) => {
            if is_builtin(table, chain) {
                return Err(format!("cannot delete built-in chain {chain}"));
            }
            let rules = chains
                .get(chain)
                .ok_or_else(|| format!("no chain {chain}"))?;
            if !rules.is_empty() {
                return Err(format!("chain {chain} is not empty"));
            }
            let referrer = chains
                .iter()
                .find(|(_, rules)| rules.iter().any(|r| target(r) == Some(chain.as_str())));
            if let Some((from, _)) = referrer {
                return Err(format!("chain {chain} is referenced from {from}"));
            }
            chains.remove(chain);
        }
    }
    Ok(())
}

/// One change inside a table, as `iptables-restore` understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `:CHAIN - [0:0]`: create the chain, or flush it if it exists.
    Declare(String),
    /// `-N CHAIN`: create the chain; the whole batch fails if it exists.
    Create(String),
    /// `-A CHAIN spec`.
    Append(String, String),
    /// `-I CHAIN 1 spec`.
    InsertFirst(String, String),
    /// `-D CHAIN spec`.
    Delete(String, String),
    /// `-F CHAIN`.
    Flush(String),
    /// `-X CHAIN` (empty and unreferenced).
    DeleteChain(String),
}

/// A set of changes applied as one `iptables-restore --noflush` run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Table → changes, in order.
    pub tables: BTreeMap<Table, Vec<Op>>,
}

impl Batch {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.tables.values().all(Vec::is_empty)
    }

    /// Adds one change.
    pub fn push(&mut self, table: Table, op: Op) {
        self.tables.entry(table).or_default().push(op);
    }

    /// How many changes the batch holds.
    pub fn len(&self) -> usize {
        self.tables.values().map(Vec::len).sum()
    }

    /// The `iptables-restore --noflush` input.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (table, ops) in self.tables.iter().filter(|(_, ops)| !ops.is_empty()) {
            let _ = writeln!(out, "*{}", table.name());
            for op in ops {
                let _ = match op {
                    Op::Declare(c) => writeln!(out, ":{c} - [0:0]"),
                    Op::Create(c) => writeln!(out, "-N {c}"),
                    Op::Append(c, s) => writeln!(out, "-A {c} {s}"),
                    Op::InsertFirst(c, s) => writeln!(out, "-I {c} 1 {s}"),
                    Op::Delete(c, s) => writeln!(out, "-D {c} {s}"),
                    Op::Flush(c) => writeln!(out, "-F {c}"),
                    Op::DeleteChain(c) => writeln!(out, "-X {c}"),
                };
            }
            out.push_str("COMMIT\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "\
# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:DOCKER - [0:0]
:LOB-ab12-FWI - [0:0]
:LOBSTER-FORWARD - [0:0]
-A FORWARD -j LOBSTER-FORWARD
-A FORWARD -j DOCKER
-A DOCKER -d 172.17.0.2/32 -j ACCEPT
-A LOB-ab12-FWI -j ACCEPT
-A LOBSTER-FORWARD -i lob-ab12 -j LOB-ab12-FWI
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
-A PREROUTING -j LOBSTER-IGNORED
COMMIT
";

    #[test]
    fn parse_keeps_owned_chains_and_hooks_only() {
        let rs = Ruleset::parse_save(SAVE).unwrap();
        assert_eq!(
            rs.render(),
            "*filter\n:LOB-ab12-FWI - [0:0]\n:LOBSTER-FORWARD - [0:0]\n\
             -A FORWARD -j LOBSTER-FORWARD\n-A LOB-ab12-FWI -j ACCEPT\n\
             -A LOBSTER-FORWARD -i lob-ab12 -j LOB-ab12-FWI\nCOMMIT\n"
        );
    }

    #[test]
    fn parse_names_the_bad_line() {
        let err = Ruleset::parse_save("*filter\n-Z nonsense\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "firewall: cannot parse iptables-save line 2: `-Z nonsense`"
        );
    }

    fn filter_batch(ops: Vec<Op>) -> Batch {
        let mut batch = Batch::default();
        for op in ops {
            batch.push(Table::Filter, op);
        }
        batch
    }

    #[test]
    fn batch_renders_restore_input_and_applies_in_memory() {
        let batch = filter_batch(vec![
            Op::Declare("LOBSTER-INPUT".into()),
            Op::Declare("LOB-x-IN".into()),
            Op::Append("LOB-x-IN".into(), "-j DROP".into()),
            Op::Append("LOBSTER-INPUT".into(), "-i lob-x -j LOB-x-IN".into()),
            Op::InsertFirst("INPUT".into(), "-j LOBSTER-INPUT".into()),
        ]);
        assert_eq!(
            batch.render(),
            "*filter\n:LOBSTER-INPUT - [0:0]\n:LOB-x-IN - [0:0]\n-A LOB-x-IN -j DROP\n\
             -A LOBSTER-INPUT -i lob-x -j LOB-x-IN\n-I INPUT 1 -j LOBSTER-INPUT\nCOMMIT\n"
        );
        let mut rs = Ruleset::default();
        rs.apply(&batch).unwrap();
        assert_eq!(
            rs.chain(Table::Filter, "LOB-x-IN").unwrap(),
            &vec!["-j DROP".to_string()]
        );
        let undo = filter_batch(vec![
            Op::Delete("INPUT".into(), "-j LOBSTER-INPUT".into()),
            Op::Delete("LOBSTER-INPUT".into(), "-i lob-x -j LOB-x-IN".into()),
            Op::Flush("LOB-x-IN".into()),
            Op::DeleteChain("LOB-x-IN".into()),
            Op::DeleteChain("LOBSTER-INPUT".into()),
        ]);
        rs.apply(&undo).unwrap();
        assert_eq!(rs, Ruleset::default());
        assert!(
            rs.apply(&undo).is_err(),
            "deleting what is gone fails like iptables does"
        );
    }

    #[test]
    fn apply_refuses_what_iptables_restore_refuses_and_changes_nothing_in_that_table() {
        let setup = filter_batch(vec![
            Op::Declare("LOBSTER-INPUT".into()),
            Op::Declare("LOB-x-IN".into()),
            Op::Declare("LOB-y-IN".into()),
            Op::Append("LOB-x-IN".into(), "-j DROP".into()),
            Op::Append("LOBSTER-INPUT".into(), "-j LOB-y-IN".into()),
        ]);
        let mut base = Ruleset::default();
        base.apply(&setup).unwrap();
        let refused = [
            ("non-empty", Op::DeleteChain("LOB-x-IN".into())),
            ("referenced", Op::DeleteChain("LOB-y-IN".into())),
            ("built-in", Op::DeleteChain("INPUT".into())),
            ("missing -X", Op::DeleteChain("LOB-z".into())),
            ("missing -F", Op::Flush("LOB-z".into())),
            ("missing -A", Op::Append("LOB-z".into(), "-j DROP".into())),
            (
                "missing -I",
                Op::InsertFirst("LOB-z".into(), "-j DROP".into()),
            ),
            (
                "missing -D",
                Op::Delete("LOB-x-IN".into(), "-j ACCEPT".into()),
            ),
            ("existing -N", Op::Create("LOB-x-IN".into())),
            ("built-in -N", Op::Create("FORWARD".into())),
            (
                "jump",
                Op::Append("LOBSTER-INPUT".into(), "-j LOB-z".into()),
            ),
        ];
        for (what, op) in refused {
            let mut rs = base.clone();
            // A valid change first: the failing one undoes it too.
            let batch = filter_batch(vec![Op::Declare("LOB-v".into()), op]);
            assert!(rs.apply(&batch).is_err(), "{what}: accepted");
            assert_eq!(rs, base, "{what}: the table changed");
        }
        // Tables go in order; a failing one keeps the ones before it and
        // stops the ones after it (filter sorts before nat).
        let mut rs = base.clone();
        let mut batch = filter_batch(vec![Op::Declare("LOB-w".into())]);
        batch.push(Table::Nat, Op::Flush("LOB-z".into()));
        assert!(rs.apply(&batch).is_err());
        assert!(rs.chain(Table::Filter, "LOB-w").is_some());
        let mut rs = base.clone();
        let mut batch = filter_batch(vec![Op::Flush("LOB-z".into())]);
        batch.push(Table::Nat, Op::Declare("LOB-w".into()));
        assert!(rs.apply(&batch).is_err());
        assert_eq!(rs, base);
    }

    #[test]
    fn owned_keeps_what_parse_save_keeps() {
        let mut rs = Ruleset::default();
        rs.apply(&filter_batch(vec![
            Op::Declare("LOBSTER-FORWARD".into()),
            Op::Declare("DOCKER".into()),
            Op::Declare("LOB-ab12-FWI".into()),
            Op::Append("FORWARD".into(), "-j LOBSTER-FORWARD".into()),
            Op::Append("FORWARD".into(), "-j DOCKER".into()),
            Op::Append("DOCKER".into(), "-d 172.17.0.2/32 -j ACCEPT".into()),
            Op::Append("LOB-ab12-FWI".into(), "-j ACCEPT".into()),
            Op::Append(
                "LOBSTER-FORWARD".into(),
                "-i lob-ab12 -j LOB-ab12-FWI".into(),
            ),
        ]))
        .unwrap();
        assert_eq!(rs.owned(), Ruleset::parse_save(SAVE).unwrap());
    }

    #[test]
    fn jump_target_only_names_lobster_chains() {
        assert_eq!(jump_target("-i lob-a -j LOB-a-IN"), Some("LOB-a-IN"));
        assert_eq!(jump_target("-j LOBSTER-INPUT"), Some("LOBSTER-INPUT"));
        assert_eq!(jump_target("-j DOCKER"), None);
        assert_eq!(jump_target("-j REJECT --reject-with tcp-reset"), None);
        assert_eq!(jump_target("-d 1.2.3.0/24 -g LOBSTER-X"), Some("LOBSTER-X"));
    }
}

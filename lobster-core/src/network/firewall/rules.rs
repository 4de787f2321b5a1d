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

/// The target chain of a `-j CHAIN` spec, if it jumps to a lobster chain.
pub fn jump_target(spec: &str) -> Option<&str> {
    let (_, target) = spec.rsplit_once("-j ")?;
    let target = target.split_whitespace().next()?;
    is_owned_chain(target).then_some(target)
}

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
                if is_owned_chain(chain) {
                    out.chain_mut(t, chain);
                }
                continue;
            }
            let rest = line.strip_prefix("-A ").ok_or_else(|| bad(n, line))?;
            let (chain, spec) = rest.split_once(' ').ok_or_else(|| bad(n, line))?;
            let hook = jump_target(spec).is_some_and(|c| c.starts_with(BASE_PREFIX));
            if is_owned_chain(chain) || hook {
                out.chain_mut(t, chain).push(spec.to_string());
            }
        }
        Ok(out)
    }

    /// The ruleset as `-A CHAIN spec` lines per table (owned chains
    /// declared), in a stable order; what tests compare.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (table, chains) in &self.tables {
            let _ = writeln!(out, "*{}", table.name());
            for chain in chains.keys().filter(|c| is_owned_chain(c)) {
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

    /// Applies a batch the way `iptables-restore --noflush` does (used by
    /// the in-memory backend and to check plans).
    pub fn apply(&mut self, batch: &Batch) -> Result<(), String> {
        for (table, ops) in &batch.tables {
            for op in ops {
                let chains = self.tables.entry(*table).or_default();
                match op {
                    Op::Declare(chain) => {
                        chains.insert(chain.clone(), Vec::new());
                    }
                    Op::Create(chain) => {
                        if chains.contains_key(chain) {
                            return Err(format!("chain {chain} already exists"));
                        }
                        chains.insert(chain.clone(), Vec::new());
                    }
                    Op::Append(chain, spec) => chains
                        .get_mut(chain)
                        .ok_or_else(|| format!("no chain {chain}"))?
                        .push(spec.clone()),
                    Op::InsertFirst(chain, spec) => chains
                        .entry(chain.clone())
                        .or_default()
                        .insert(0, spec.clone()),
                    Op::Delete(chain, spec) => {
                        let rules = chains
                            .get_mut(chain)
                            .ok_or_else(|| format!("no chain {chain}"))?;
                        let at = rules
                            .iter()
                            .position(|r| r == spec)
                            .ok_or_else(|| format!("no rule `{spec}` in {chain}"))?;
                        rules.remove(at);
                        if rules.is_empty() && !is_owned_chain(chain) {
                            chains.remove(chain);
                        }
                    }
                    Op::Flush(chain) => chains
                        .get_mut(chain)
                        .ok_or_else(|| format!("no chain {chain}"))?
                        .clear(),
                    Op::DeleteChain(chain) => {
                        chains
                            .remove(chain)
                            .ok_or_else(|| format!("no chain {chain}"))?;
                    }
                }
            }
            if chains_is_empty(self.tables.get(table)) {
                self.tables.remove(table);
            }
        }
        Ok(())
    }
}

fn chains_is_empty(chains: Option<&BTreeMap<String, Vec<String>>>) -> bool {
    chains.is_none_or(BTreeMap::is_empty)
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

    #[test]
    fn batch_renders_restore_input_and_applies_in_memory() {
        let mut batch = Batch::default();
        batch.push(Table::Filter, Op::Declare("LOB-x-IN".into()));
        batch.push(
            Table::Filter,
            Op::Append("LOB-x-IN".into(), "-j DROP".into()),
        );
        batch.push(
            Table::Filter,
            Op::InsertFirst("INPUT".into(), "-j LOBSTER-INPUT".into()),
        );
        assert_eq!(
            batch.render(),
            "*filter\n:LOB-x-IN - [0:0]\n-A LOB-x-IN -j DROP\n-I INPUT 1 -j LOBSTER-INPUT\nCOMMIT\n"
        );
        let mut rs = Ruleset::default();
        rs.apply(&batch).unwrap();
        assert_eq!(
            rs.chain(Table::Filter, "LOB-x-IN").unwrap(),
            &vec!["-j DROP".to_string()]
        );
        let mut undo = Batch::default();
        undo.push(
            Table::Filter,
            Op::Delete("INPUT".into(), "-j LOBSTER-INPUT".into()),
        );
        undo.push(Table::Filter, Op::Flush("LOB-x-IN".into()));
        undo.push(Table::Filter, Op::DeleteChain("LOB-x-IN".into()));
        rs.apply(&undo).unwrap();
        assert_eq!(rs, Ruleset::default());
        assert!(
            rs.apply(&undo).is_err(),
            "deleting what is gone fails like iptables does"
        );
    }

    #[test]
    fn jump_target_only_names_lobster_chains() {
        assert_eq!(jump_target("-i lob-a -j LOB-a-IN"), Some("LOB-a-IN"));
        assert_eq!(jump_target("-j LOBSTER-INPUT"), Some("LOBSTER-INPUT"));
        assert_eq!(jump_target("-j DOCKER"), None);
        assert_eq!(jump_target("-j REJECT --reject-with tcp-reset"), None);
    }
}

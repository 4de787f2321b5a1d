//! The dependency rules of lobster-core's layers (see the crate docs), read
//! from the source: every `crate::…` and `super::…` path of every module in
//! `src/` must point down.
//!
//! - a module names only modules of lower layers (or its own top-level module);
//! - the leaf (`base`, `sys`, `store::name`) names nothing else;
//! - `tenant` and `health` never name `host`;
//! - `health` names no crate-private item of `tenant` (its `pub(crate)`
//!   items and private submodules);
//! - the public [`lobster_core::Error`] (`error`) is named only from the
//!   `context` layer up, and names nothing but module errors itself.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Layers as in the crate docs, lowest first; a module path belongs to its
/// longest matching prefix.
const LAYERS: &[(&str, u32)] = &[
    ("base", 1),
    ("sys", 1),
    ("store::name", 1),
    ("config", 2),
    ("network", 3),
    ("overlay", 3),
    ("vmm", 3),
    ("agent", 3),
    ("proxy", 3),
    ("store", 4),
    ("context", 5),
    ("machine", 5),
    ("tenant", 6),
    ("health", 7),
    ("host", 8),
    ("lib", 9),
];

/// The lowest layer that may name the public `Error` (`crate::error`).
const ERROR_FROM_LAYER: u32 = 5;

/// What the crate root re-exports (`pub use` in lib.rs), each with the
/// module it comes through: read from the source, so a new re-export is
/// checked like any other path.
fn root_items() -> &'static [(String, String)] {
    static ITEMS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    ITEMS.get_or_init(|| {
        let code = code_only(&std::fs::read_to_string(src_dir().join("lib.rs")).unwrap());
        let toks = tokens(&code);
        let mut items = Vec::new();
        for i in 1..toks.len() {
            if toks[i].0 == "use" && toks[i - 1].0 == "pub" {
                let mut paths = Vec::new();
                tree(&toks, i + 1, Vec::new(), &mut paths);
                for path in paths.into_iter().filter(|p| p.len() >= 2) {
                    items.push((path.last().unwrap().clone(), path[0].clone()));
                }
            }
        }
        items
    })
}

/// One source file: its module path and text.
struct Source {
    module: Vec<String>,
    file: PathBuf,
    text: String,
}

/// A path one module names, resolved from the crate root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Reference {
    /// The naming module (file module plus inline `mod`s).
    from: Vec<String>,
    /// The named path, from the crate root.
    to: Vec<String>,
    /// Line number in the file.
    line: usize,
}

fn layer_of(path: &[String]) -> Option<(String, u32)> {
    let joined = path.join("::");
    LAYERS
        .iter()
        .filter(|(prefix, _)| joined == *prefix || joined.starts_with(&format!("{prefix}::")))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(prefix, layer)| (prefix.to_string(), *layer))
}

fn sources(root: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap();
                let mut module: Vec<String> = rel
                    .with_extension("")
                    .iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect();
                if module.last().is_some_and(|m| m == "mod") {
                    module.pop();
                }
                if module == ["lib"] {
                    module = vec!["lib".into()];
                }
                out.push(Source {
                    module,
                    file: path.clone(),
                    text: std::fs::read_to_string(&path).unwrap(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// Source text with comments, string and char literals blanked (newlines
/// kept, so line numbers stay right).
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !ident_char(b.get(i.wrapping_sub(1)).copied())
        {
            // Raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &b[i..j.min(b.len())] {
                out.push(blank(ch));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '{'), not a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 2..b.len().min(i + 12)).find(|&j| b[j] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Tokens: identifiers, `::`, and single punctuation characters.
fn tokens(code: &str) -> Vec<(String, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((chars[start..i].iter().collect(), line));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(("::".into(), line));
            i += 2;
        } else {
            out.push((c.to_string(), line));
            i += 1;
        }
    }
    out
}

/// Parses a path or use tree starting at `tokens[i]` (just after a
/// `crate::`/`super::` prefix); pushes every full path into `out`.
fn tree(
    tokens: &[(String, usize)],
    mut i: usize,
    prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    let mut path = prefix;
    loop {
        let Some((tok, _)) = tokens.get(i) else {
            out.push(path);
            return i;
        };
        if tok == "{" {
            i += 1;
            loop {
                match tokens.get(i).map(|t| t.0.as_str()) {
                    Some("}") => return i + 1,
                    Some(",") => i += 1,
                    Some(_) => i = tree(tokens, i, path.clone(), out),
                    None => return i,
                }
            }
        } else if tok == "*" || tok == "self" {
            out.push(path);
            return i + 1;
        } else if ident_char(tok.chars().next()) {
            path.push(tok.clone());
            i += 1;
            if tokens.get(i).map(|t| t.0.as_str()) == Some("::") {
                i += 1;
            } else {
                out.push(path);
                return i;
            }
        } else {
            out.push(path);
            return i;
        }
    }
}

/// Every crate path a source file names, with inline `mod`s tracked.
fn references(source: &Source) -> Vec<Reference> {
    let code = code_only(&source.text);
    let toks = tokens(&code);
    let mut out = Vec::new();
    // (module name, brace depth at which it closes)
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let (tok, line) = (&toks[i].0, toks[i].1);
        let current = || {
            let mut m = source.module.clone();
            if m == ["lib"] {
                m.clear();
            }
            m.extend(inline.iter().map(|(name, _)| name.clone()));
            m
        };
        match tok.as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if toks.get(i + 2).is_some_and(|t| t.0 == "{") => {
                inline.push((toks[i + 1].0.clone(), depth));
                depth += 1;
                i += 3;
                continue;
            }
            "crate" | "super" if toks.get(i + 1).is_some_and(|t| t.0 == "::") => {
                let previous = i.checked_sub(1).map(|p| toks[p].0.as_str());
                if previous == Some("::") {
                    i += 1;
                    continue; // `super::super::…` is handled by its first `super`
                }
                let mut base = if tok == "crate" {
                    Vec::new()
                } else {
                    let mut m = current();
                    m.pop();
                    m
                };
                let mut j = i + 2;
                while toks.get(j).is_some_and(|t| t.0 == "super")
                    && toks.get(j + 1).is_some_and(|t| t.0 == "::")
                {
                    base.pop();
                    j += 2;
                }
                let mut paths = Vec::new();
                let end = tree(&toks, j, base, &mut paths);
                let from = current();
                for to in paths {
                    out.push(Reference {
                        from: from.clone(),
                        to,
                        line,
                    });
                }
                i = end.max(i + 1);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The module a root-relative path lands in (root re-exports resolved).
fn target_module(to: &[String]) -> Option<Vec<String>> {
    let first = to.first()?;
    if let Some((_, module)) = root_items().iter().find(|(item, _)| item == first) {
        return Some(vec![module.clone()]);
    }
    Some(to.to_vec())
}

/// Names `tenant` keeps to the crate: `pub(crate)` items and re-exports,
/// and private submodules, of `tenant/mod.rs`.
fn tenant_private(src: &Path) -> BTreeSet<String> {
    let code = code_only(&std::fs::read_to_string(src.join("tenant/mod.rs")).unwrap());
    let toks = tokens(&code);
    let mut private = BTreeSet::new();
    let mut depth = 0;
    for i in 0..toks.len() {
        match toks[i].0.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            _ => {}
        }
        if depth != 0 {
            continue;
        }
        let at = |k: usize| toks.get(i + k).map(|t| t.0.as_str());
        let is_pub = i > 0 && toks[i - 1].0 == "pub";
        let is_crate_pub = i >= 4
            && toks[i - 4].0 == "pub"
            && toks[i - 3].0 == "("
            && toks[i - 2].0 == "crate"
            && toks[i - 1].0 == ")";
        match toks[i].0.as_str() {
            "mod" if !is_pub && at(2) == Some(";") => {
                private.insert(toks[i + 1].0.clone());
            }
            "fn" | "const" | "struct" | "enum" | "static" | "type" if is_crate_pub => {
                private.insert(toks[i + 1].0.clone());
            }
            "async" if is_crate_pub && at(1) == Some("fn") => {
                private.insert(toks[i + 2].0.clone());
            }
            "use" if is_crate_pub => {
                let mut paths = Vec::new();
                tree(&toks, i + 1, Vec::new(), &mut paths);
                for p in paths {
                    if let Some(last) = p.last() {
                        private.insert(last.clone());
                    }
                }
            }
            _ => {}
        }
    }
    private
}

/// Every broken rule, one line each.
fn violations(sources: &[Source], tenant_private: &BTreeSet<String>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for source in sources {
        let toks = tokens(&code_only(&source.text));
        for pair in toks.windows(2) {
            if pair[0].0 == "crate" && pair[1].0 == "as" {
                out.insert(format!(
                    "{}:{}: renames the crate (`crate as`), which hides what it names",
                    source.file.display(),
                    pair[0].1
                ));
            }
        }
        for r in references(source) {
            let Some(to) = target_module(&r.to) else {
                out.insert(format!(
                    "{}:{}: a glob import of the crate root (`crate::*`) hides what it names",
                    source.file.display(),
                    r.line
                ));
                continue;
            };
            let from_module = if r.from.is_empty() {
                vec!["lib".to_string()]
            } else {
                r.from.clone()
            };
            let at = format!("{}:{}", source.file.display(), r.line);
            let named = format!("crate::{}", r.to.join("::"));
            let (from_top, to_top) = (&from_module[0], &to[0]);
            if from_top == "error" {
                let ok = to_top == "base"
                    || to_top == "error"
                    || r.to.last().is_some_and(|item| item.ends_with("Error"));
                if !ok {
                    out.insert(format!(
                        "{at}: `error` names {named}, which is not a module error"
                    ));
                }
                continue;
            }
            let Some((from_prefix, from_layer)) = layer_of(&from_module) else {
                out.insert(format!(
                    "{}: module `{}` has no layer",
                    source.file.display(),
                    from_module.join("::")
                ));
                continue;
            };
            if to_top == "error" {
                if from_layer < ERROR_FROM_LAYER {
                    out.insert(format!(
                        "{at}: `{from_prefix}` (layer {from_layer}) names {named}: below layer {ERROR_FROM_LAYER}, use `base` and the module's own error"
                    ));
                }
                continue;
            }
            if (from_top == "tenant" || from_top == "health") && to_top == "host" {
                out.insert(format!(
                    "{at}: `{from_top}` names {named}: tenant/ and health/ never name host/"
                ));
            }
            if from_top == "health" && to_top == "tenant" {
                if let Some(item) = r.to.get(1).filter(|item| tenant_private.contains(*item)) {
                    out.insert(format!(
                        "{at}: health names tenant's private `{item}` ({named})"
                    ));
                }
            }
            let Some((to_prefix, to_layer)) = layer_of(&to) else {
                out.insert(format!(
                    "{at}: {named} is neither a module nor a re-export of the crate root"
                ));
                continue;
            };
            let same_module =
                from_prefix == to_prefix || (from_top == to_top && from_layer == to_layer);
            if !same_module && to_layer >= from_layer {
                out.insert(format!(
                    "{at}: `{from_prefix}` (layer {from_layer}) names {named} (`{to_prefix}`, layer {to_layer}): imports must point down"
                ));
            }
        }
    }
    out.into_iter().collect()
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn imports_point_down() {
    let src = src_dir();
    let sources = sources(&src);
    assert!(
        sources.len() > 50,
        "read {} files of {}",
        sources.len(),
        src.display()
    );
    let found = violations(&sources, &tenant_private(&src));
    assert!(
        found.is_empty(),
        "dependency rules broken:\n{}",
        found.join("\n")
    );
}

/// The checker itself catches what it is for, on copies of real files with
/// one forbidden line added.
#[test]
fn a_forbidden_import_is_caught() {
    let src = src_dir();
    let private = tenant_private(&src);
    assert!(
        private.contains("spawn") && private.contains("lock"),
        "tenant's crate-private items were not found: {private:?}"
    );
    let cases = [
        (
            "tenant/evict.rs",
            "use crate::host::Host;\n",
            "never name host/",
        ),
        (
            "tenant/spawn.rs",
            "fn f() { let _ = crate::host::Host::open(None); }\n",
            "never name host/",
        ),
        (
            "health/molt.rs",
            "use crate::tenant::lock;\n",
            "private `lock`",
        ),
        (
            "health/doctor.rs",
            "use crate::{config::Config, tenant::{plan, spawn}};\n",
            "private `spawn`",
        ),
        (
            "base/runtime.rs",
            "use crate::config::Config;\n",
            "imports must point down",
        ),
        (
            "store/name.rs",
            "use crate::store::Store;\n",
            "imports must point down",
        ),
        ("vmm/stop.rs", "use crate::error::Error;\n", "below layer"),
        (
            "vmm/mod.rs",
            "mod inner { use super::super::tenant::Tenant; }\n",
            "imports must point down",
        ),
        ("config.rs", "use crate::Host;\n", "imports must point down"),
        (
            "vmm/stop.rs",
            "use crate::RecoverReport;\n",
            "imports must point down",
        ),
        ("tenant/evict.rs", "use crate as c;\n", "renames the crate"),
        ("tenant/evict.rs", "use crate::*;\n", "glob import"),
        (
            "health/molt.rs",
            "fn f() -> crate::Nowhere { todo!() }\n",
            "neither a module",
        ),
    ];
    for (file, line, expect) in cases {
        let path = src.join(file);
        let mut sources = sources(&src);
        let source = sources
            .iter_mut()
            .find(|s| s.file == path)
            .unwrap_or_else(|| panic!("no {file}"));
        source.text.push_str(line);
        let found = violations(&sources, &private);
        assert!(
            found.iter().any(|v| v.contains(file) && v.contains(expect)),
            "adding `{}` to {file} was not caught as `{expect}`: {found:?}",
            line.trim()
        );
    }
    // Mentions in comments and strings are not imports.
    let mut sources = sources(&src);
    let source = sources
        .iter_mut()
        .find(|s| s.file == src.join("tenant/evict.rs"))
        .unwrap();
    source
        .text
        .push_str("// crate::host::Host\nconst _S: &str = \"crate::host::Host {\";\n");
    assert_eq!(violations(&sources, &private), Vec::<String>::new());
}

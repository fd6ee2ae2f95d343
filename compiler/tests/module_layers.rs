//! The crate's modules form layers: the graph of `crate::` paths between
//! the files of `src/` has no cycle, so every module depends only on
//! modules below it.
//!
//! Edges: a module uses another through `crate::<module>` (also inside a
//! `use crate::{...}` group) or through a name `lib.rs` re-exports from it
//! (`crate::Compiler` is `compiler`); `lib.rs` itself is the root. Comments
//! are ignored, so doc links are not dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The text of a source file without `//` comments.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn idents(s: &str) -> Vec<String> {
    s.split(|c: char| !is_ident(c))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The first path segments after each `prefix` (`{a, b::c}` gives `a`,
/// `b` and `c`; only the segments that name modules or re-exports matter).
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(is_ident) {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            out.extend(idents(&group[..end]));
        } else {
            let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
            out.push(rest[..end].to_string());
        }
    }
    out
}

fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(src).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            files.insert(name, code(&fs::read_to_string(&path).expect("read module")));
        }
    }
    let lib = files.remove("lib").expect("src/lib.rs");
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    // `pub use module::{A, B};` in lib.rs: A and B resolve to `module`.
    let mut reexports = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(at) = stmt.find("pub use ") else {
            continue;
        };
        let stmt = &stmt[at + "pub use ".len()..];
        let Some((module, names)) = stmt.split_once("::") else {
            continue;
        };
        if modules.contains(module.trim()) {
            for n in idents(names) {
                reexports.insert(n, module.trim().to_string());
            }
        }
    }
    let mut g = BTreeMap::new();
    for (name, text) in &files {
        let deps: BTreeSet<String> = paths_after(text, "crate::")
            .into_iter()
            .filter_map(|seg| {
                if modules.contains(&seg) {
                    Some(seg)
                } else {
                    reexports.get(&seg).cloned()
                }
            })
            .filter(|d| d != name)
            .collect();
        g.insert(name.clone(), deps);
    }
    g
}

/// A cycle of `g`, if any (depth-first search).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        n: &str,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, d, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut done, &mut Vec::new()))
}

#[test]
fn module_graph_has_no_cycle() {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(g.contains_key("engine") && g["engine"].contains("identity"));
    if let Some(cycle) = find_cycle(&g) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn finds_cycles() {
    let g: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), BTreeSet::from([v.to_string()])))
        .collect();
    assert_eq!(find_cycle(&g).map(|c| c.len()), Some(4));
    let code = code("use crate::{a, b::C};\nlet x = crate::c::f(); // crate::d\n");
    assert_eq!(paths_after(&code, "crate::"), ["a", "b", "C", "c"]);
}

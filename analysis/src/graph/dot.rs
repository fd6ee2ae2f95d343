//! `-o dot`: the graph in Graphviz's language. Every id and label is a
//! quoted string (ids hold `:` and `/`); a partial picture says so in the
//! graph's label.

use std::fmt::Write;

use super::model::{Graph, Isolation, NodeKind, PortSpec};

/// A Graphviz quoted string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `TCP 80`, `TCP 1000-2000`, `UDP any`, `other`, `any`.
pub fn port_text(p: &PortSpec) -> String {
    match p.protocol.as_str() {
        "any" | "other" => p.protocol.clone(),
        _ if p.first == 0 && p.last == u16::MAX => format!("{} any", p.protocol),
        _ if p.first == p.last => format!("{} {}", p.protocol, p.first),
        _ => format!("{} {}-{}", p.protocol, p.first, p.last),
    }
}

fn isolation_text(i: Isolation) -> &'static str {
    match i {
        Isolation::Open => "open",
        Isolation::Isolated => "isolated",
        Isolation::Partly => "partly isolated",
        Isolation::NotApplicable => "",
    }
}

/// Renders `g` as a Graphviz digraph.
pub fn render(g: &Graph) -> String {
    let mut out = String::new();
    let mut title = format!("palisade graph: {}", g.scope);
    if g.partial() {
        title.push_str(&format!(
            "\nPARTIAL: {} object(s) rejected and left out:\n{}",
            g.rejected.len(),
            g.rejected.join("\n")
        ));
    }
    if let Some(w) = g.window_seconds {
        title.push_str(&format!("\nlive: drops over the last {w} s"));
    }
    for p in &g.overlay_partial {
        title.push_str(&format!("\nPARTIAL overlay: {p}"));
    }
    let _ = writeln!(out, "digraph palisade {{");
    let _ = writeln!(
        out,
        "  graph [label={}, labelloc=t, rankdir=LR];",
        quote(&title)
    );
    let _ = writeln!(out, "  node [fontname=\"sans-serif\"];");
    let _ = writeln!(out, "  edge [fontname=\"sans-serif\", fontsize=10];");
    for n in &g.nodes {
        let mut label = n.label.clone();
        if let Some(ns) = &n.namespace
            && n.kind == NodeKind::Workload
        {
            label.push_str(&format!("\n{ns}"));
        }
        if !n.pods.is_empty() && n.kind == NodeKind::Workload {
            label.push_str(&format!("\n{} pod(s)", n.pods.len()));
        }
        let iso = [("in", n.ingress), ("out", n.egress)]
            .iter()
            .filter(|(_, i)| *i != Isolation::NotApplicable)
            .map(|(d, i)| format!("{d}: {}", isolation_text(*i)))
            .collect::<Vec<_>>();
        if !iso.is_empty() {
            label.push_str(&format!("\n{}", iso.join(", ")));
        }
        let shape = match n.kind {
            NodeKind::Workload => "box",
            NodeKind::Namespace => "box3d",
            NodeKind::Cidr => "ellipse",
            NodeKind::Host => "house",
            NodeKind::World => "doublecircle",
        };
        let _ = writeln!(
            out,
            "  {} [label={}, shape={shape}];",
            quote(&n.id),
            quote(&label)
        );
    }
    for e in &g.edges {
        let mut label: Vec<String> = e.ports.iter().map(port_text).collect();
        if e.kind == super::EdgeKind::Denied {
            label.insert(0, "denied".into());
        }
        if let Some(n) = e.drops {
            label.push(format!("{n} drop(s)"));
        }
        // Live: denied attempts red and dashed, allowed edges nothing used
        // grey.
        let style = match (e.kind, e.used) {
            (super::EdgeKind::Denied, _) => "style=dashed, color=red, fontcolor=red",
            (super::EdgeKind::Allowed, Some(false)) => "style=dotted, color=grey, fontcolor=grey",
            (super::EdgeKind::Allowed, _) => "style=solid",
        };
        let _ = writeln!(
            out,
            "  {} -> {} [label={}, {style}];",
            quote(&e.from),
            quote(&e.to),
            quote(&label.join("\n"))
        );
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting_escapes_quotes_backslashes_and_newlines() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("a\nb"), r#""a\nb""#);
    }
}

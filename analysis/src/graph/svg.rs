//! `palisade graph -o svg`: one standalone SVG picture of a [`Graph`]:
//! namespaces' boxes, nodes with their isolation per direction (a lock on
//! the left for ingress, on the right for egress), edges as arrows labelled
//! with their ports and drops (denied-and-attempted ones dashed red), a
//! title with the scope, a legend, and a banner naming the rejected objects
//! when the picture is partial. Positions come from [`super::layout`]; the
//! HTML renderer embeds the same drawing (see [`draw`]).
//!
//! Every text in it comes from users (names, labels, rule names) and is
//! escaped.

use std::fmt::Write as _;

use super::layout::{self, Layout, NODE_H, NODE_W, Rect, Route};
use super::model::{Edge, EdgeKind, Graph, Isolation, Node, NodeKind, PortSpec};

/// Renders the graph as a standalone SVG document.
pub fn render(graph: &Graph) -> String {
    draw(graph, Fit::Natural)
}

/// How the drawing is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fit {
    /// Its own size (a file): the header above the graph.
    Natural,
    /// Fills its container (the HTML page); the page's script places the
    /// graph and pans and zooms it.
    Container,
}

const MIN_WIDTH: f64 = 1100.0;
/// Height of the title, subtitle and legend.
const HEADER: f64 = 104.0;
/// Rejected objects listed in the banner before "and N more".
const BANNER_LINES: usize = 6;
const LABEL_CHARS: usize = 22;
const SUB_CHARS: usize = 30;
const BANNER_CHARS: usize = 170;
/// A font every platform has something for, DejaVu on Debian.
const FONT: &str =
    "Inter, 'Segoe UI', 'Helvetica Neue', 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif";

const STYLE: &str = "
.pg-bg{fill:#ffffff}
.pg-header{fill:#ffffff}
.pg-rule{stroke:#e2e8f0;stroke-width:1}
.pg-title{font-size:20px;font-weight:700;fill:#0f172a}
.pg-kicker{font-size:11px;font-weight:600;fill:#2563eb;letter-spacing:.08em}
.pg-subtitle{font-size:12.5px;fill:#475569}
.pg-legend text{font-size:11.5px;fill:#475569}
.group rect{fill:#f8fafc;stroke:#cbd5e1;stroke-width:1}
.group text{font-size:12px;font-weight:700;fill:#475569;letter-spacing:.03em}
.node{cursor:pointer}
.node .box{stroke-width:1.5;filter:drop-shadow(0 1px 1.5px rgba(15,23,42,.12))}
.node-workload .box{fill:#eff6ff;stroke:#3b82f6}
.node-namespace .box{fill:#eef2ff;stroke:#4f46e5;stroke-width:2}
.node-cidr .box{fill:#f5f3ff;stroke:#8b5cf6}
.node-host .box{fill:#ecfdf5;stroke:#10b981}
.node-world .box{fill:#f1f5f9;stroke:#64748b}
.node .label{font-size:13.5px;font-weight:600;fill:#0f172a}
.node .sub{font-size:11px;fill:#64748b}
.iso-isolated{color:#15803d}
.iso-partly{color:#d97706}
.iso-open{color:#94a3b8}
.edge{cursor:pointer}
.edge .line{fill:none;stroke:#64748b;stroke-width:1.5}
.edge-denied .line{stroke:#dc2626;stroke-width:1.7;stroke-dasharray:7 4}
.edge-unused .line{stroke:#cbd5e1;stroke-dasharray:2 3}
.edge-unused .edge-label{fill:#94a3b8}
.edge .hit{fill:none;stroke:transparent;stroke-width:14}
.edge-label{font-size:11px;fill:#334155;paint-order:stroke;stroke:#ffffff;stroke-width:4px;stroke-linejoin:round}
.edge-denied .edge-label{fill:#b91c1c;font-weight:600}
.edge-label .drops{fill:#b91c1c;font-weight:600}
.pg-banner rect{fill:#fffbeb;stroke:#f59e0b;stroke-width:1}
.pg-banner .head{font-size:13px;font-weight:700;fill:#92400e}
.pg-banner .item{font-size:11.5px;fill:#78350f}
.pg-empty{font-size:14px;fill:#64748b}
";

/// The drawing: `<svg>` with the graph in `#pg-viewport` (which the HTML
/// page's script transforms) and the title, legend and banner in
/// `#pg-chrome` above it.
pub(crate) fn draw(graph: &Graph, fit: Fit) -> String {
    let layout = layout::layout(graph);
    let banner = banner_height(graph);
    let top = HEADER + banner + if banner > 0.0 { 14.0 } else { 0.0 };
    let width = layout.width.max(MIN_WIDTH);
    let height = top + layout.height;
    let dx = ((width - layout.width) / 2.0).floor();

    let mut s = String::with_capacity(4096 + 1500 * (graph.nodes.len() + graph.edges.len()));
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="palisade-graph""#
    );
    match fit {
        Fit::Natural => {
            let _ = write!(
                s,
                r#" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}""#
            );
        }
        Fit::Container => s.push_str(r#" width="100%" height="100%""#),
    }
    let _ = writeln!(s, r#" font-family="{FONT}" role="img">"#);
    let _ = writeln!(s, "<title>Palisade graph: {}</title>", escape(&graph.scope));
    let _ = writeln!(s, "<style>{STYLE}</style>");
    defs(&mut s);
    let _ = writeln!(s, r#"<rect class="pg-bg" width="100%" height="100%"/>"#);

    let _ = writeln!(
        s,
        r#"<g id="pg-viewport" data-width="{:.0}" data-height="{:.0}" data-top="{top:.0}" transform="translate({dx:.0},{top:.0})">"#,
        layout.width, layout.height
    );
    draw_graph(&mut s, graph, &layout);
    s.push_str("</g>\n");

    let _ = writeln!(s, r#"<g id="pg-chrome">"#);
    let chrome_width = match fit {
        Fit::Natural => format!("{width:.0}"),
        Fit::Container => "100%".to_string(),
    };
    let _ = writeln!(
        s,
        r#"<rect class="pg-header" width="{chrome_width}" height="{top:.0}"/><line class="pg-rule" x1="0" y1="{top:.0}" x2="{chrome_width}" y2="{top:.0}"/>"#
    );
    header(&mut s, graph);
    legend(&mut s, graph);
    if banner > 0.0 {
        draw_banner(&mut s, graph, width);
    }
    s.push_str("</g>\n</svg>\n");
    s
}

fn defs(s: &mut String) {
    s.push_str(concat!(
        "<defs>\n",
        r##"<marker id="pg-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0.5 L10,5 L0,9.5 z" fill="#64748b"/></marker>"##,
        "\n",
        r##"<marker id="pg-arrow-denied" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0.5 L10,5 L0,9.5 z" fill="#dc2626"/></marker>"##,
        "\n",
        r##"<symbol id="pg-lock" viewBox="-8 -8 16 16"><rect x="-5.5" y="-1.5" width="11" height="8.5" rx="1.8" fill="currentColor"/><path d="M-3.2,-1.5 V-4.2 a3.2,3.2 0 0 1 6.4,0 V-1.5" fill="none" stroke="currentColor" stroke-width="1.8"/></symbol>"##,
        "\n",
        r##"<symbol id="pg-unlock" viewBox="-8 -8 16 16"><rect x="-5.5" y="-1.5" width="11" height="8.5" rx="1.8" fill="currentColor"/><path d="M3.2,-1.5 V-4.6 a3.2,3.2 0 0 0 -6.4,0 V-3.6" fill="none" stroke="currentColor" stroke-width="1.8"/></symbol>"##,
        "\n</defs>\n",
    ));
}

fn draw_graph(s: &mut String, graph: &Graph, layout: &Layout) {
    if graph.nodes.is_empty() {
        let _ = writeln!(
            s,
            r#"<text class="pg-empty" x="{:.0}" y="{:.0}">Nothing to draw: no workloads in this scope.</text>"#,
            layout::NODE_W / 2.0,
            layout.height / 2.0
        );
    }
    s.push_str("<g class=\"groups\">\n");
    for group in &layout.groups {
        let r = group.rect;
        let _ = writeln!(
            s,
            r#"<g class="group" data-namespace="{ns}"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="12"/><text x="{:.1}" y="{:.1}">{label}</text></g>"#,
            r.x,
            r.y,
            r.w,
            r.h,
            r.x + 16.0,
            r.y + 24.0,
            ns = escape(&group.namespace),
            label = escape(&truncate(&format!("namespace {}", group.namespace), 48)),
        );
    }
    s.push_str("</g>\n<g class=\"edges\">\n");
    let places = label_places(graph, layout);
    for (i, (edge, route)) in graph.edges.iter().zip(&layout.edges).enumerate() {
        if let Some(route) = route {
            draw_edge(s, i, edge, route, places[i], graph.window_seconds);
        }
    }
    s.push_str("</g>\n<g class=\"nodes\">\n");
    for (node, rect) in graph.nodes.iter().zip(&layout.nodes) {
        draw_node(s, node, rect);
    }
    s.push_str("</g>\n");
}

/// Where an edge's label goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LabelPlace {
    /// The curve's middle.
    Middle,
    /// Once beside the source, for several edges from it with one label.
    Source,
    /// Once beside the destination, for several edges into it with one
    /// label.
    Target,
    /// Said by another edge's label at its source or destination.
    Shared,
}

/// Places labels so that a fan of edges with the same ports (a monitoring
/// scraper reaching every pod on 9090, every pod reaching DNS on 53) is
/// labelled once, at the fan's shared end, not once per edge; edges with
/// drops keep their own label.
fn label_places(graph: &Graph, layout: &Layout) -> Vec<LabelPlace> {
    use std::collections::BTreeMap;
    let texts: Vec<String> = graph.edges.iter().map(label_text).collect();
    let fans = |end: fn(&Edge) -> &str| {
        let mut fans: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for (i, edge) in graph.edges.iter().enumerate() {
            if layout.edges[i].is_some() && edge.drops.is_none() && edge.from != edge.to {
                fans.entry((end(edge), texts[i].as_str()))
                    .or_default()
                    .push(i);
            }
        }
        fans
    };
    let from_fans = fans(|e| e.from.as_str());
    let to_fans = fans(|e| e.to.as_str());
    // The fan's topmost edge (at the shared end) carries the label.
    let top = |members: &[usize], at_start: bool| {
        members
            .iter()
            .copied()
            .min_by(|&a, &b| {
                let y = |i: usize| {
                    let r = layout.edges[i].as_ref().expect("routed");
                    if at_start { r.start.y } else { r.end.y }
                };
                y(a).total_cmp(&y(b)).then(a.cmp(&b))
            })
            .expect("a fan has edges")
    };
    (0..graph.edges.len())
        .map(|i| {
            let edge = &graph.edges[i];
            if let Some(fan) = from_fans.get(&(edge.from.as_str(), texts[i].as_str()))
                && fan.len() > 1
            {
                return if top(fan, true) == i {
                    LabelPlace::Source
                } else {
                    LabelPlace::Shared
                };
            }
            if let Some(fan) = to_fans.get(&(edge.to.as_str(), texts[i].as_str()))
                && fan.len() > 1
            {
                return if top(fan, false) == i {
                    LabelPlace::Target
                } else {
                    LabelPlace::Shared
                };
            }
            LabelPlace::Middle
        })
        .collect()
}

/// An edge's label without its drops: its ports (three at most).
fn label_text(edge: &Edge) -> String {
    let ports: Vec<String> = edge.ports.iter().map(port_text).collect();
    let mut label = String::new();
    if edge.kind == EdgeKind::Denied {
        label.push_str("denied ");
    }
    label.push_str(&ports.iter().take(3).cloned().collect::<Vec<_>>().join(", "));
    if ports.len() > 3 {
        label.push_str(&format!(" +{} more", ports.len() - 3));
    }
    label.trim_end().to_string()
}

fn draw_edge(
    s: &mut String,
    index: usize,
    edge: &Edge,
    r: &Route,
    place: LabelPlace,
    window: Option<u64>,
) {
    let (kind, marker) = match edge.kind {
        EdgeKind::Allowed => ("allowed", "pg-arrow"),
        EdgeKind::Denied => ("denied", "pg-arrow-denied"),
    };
    let ports: Vec<String> = edge.ports.iter().map(port_text).collect();
    let path = format!(
        "M{:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
        r.start.x, r.start.y, r.c1.x, r.c1.y, r.c2.x, r.c2.y, r.end.x, r.end.y
    );
    let mut tooltip = format!(
        "{} → {}: {}",
        edge.from,
        edge.to,
        if ports.is_empty() {
            "no ports".to_string()
        } else {
            ports.join(", ")
        }
    );
    if let Some(drops) = edge.drops {
        tooltip.push_str(&format!(", {}", drops_text(drops, window)));
        let causes: Vec<String> = edge
            .causes
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        if !causes.is_empty() {
            tooltip.push_str(&format!(" ({})", causes.join(", ")));
        }
    }
    let (used_class, used_attr) = match edge.used {
        Some(true) => {
            tooltip.push_str(", in use");
            ("", r#" data-used="true""#)
        }
        Some(false) => {
            tooltip.push_str(", unused");
            if let Some(w) = window {
                tooltip.push_str(&format!(" in the last {}", duration_text(w)));
            }
            (" edge-unused", r#" data-used="false""#)
        }
        None => ("", ""),
    };
    let _ = write!(
        s,
        r#"<g class="edge edge-{kind}{used_class}" data-index="{index}" data-from="{from}" data-to="{to}" data-kind="{kind}"{used_attr} data-ports="{ports}"><title>{tooltip}</title><path class="hit" d="{path}"/><path class="line" d="{path}" marker-end="url(#{marker})"/>"#,
        from = escape(&edge.from),
        to = escape(&edge.to),
        ports = escape(&ports.join(", ")),
        tooltip = escape(&tooltip),
    );
    // The label: the ports, then the drops.
    let (x, y, anchor) = match place {
        LabelPlace::Shared => {
            s.push_str("</g>\n");
            return;
        }
        LabelPlace::Middle => (r.label.x, r.label.y - 4.0, "middle"),
        // Beside the end, on the side the curve leaves or arrives.
        LabelPlace::Source if r.c1.x >= r.start.x => (r.start.x + 10.0, r.start.y - 6.0, "start"),
        LabelPlace::Source => (r.start.x - 10.0, r.start.y - 6.0, "end"),
        LabelPlace::Target if r.c2.x <= r.end.x => (r.end.x - 12.0, r.end.y - 6.0, "end"),
        LabelPlace::Target => (r.end.x + 12.0, r.end.y - 6.0, "start"),
    };
    let _ = write!(
        s,
        r#"<text class="edge-label" x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{}"#,
        escape(&label_text(edge))
    );
    if let Some(drops) = edge.drops {
        let _ = write!(
            s,
            r#"<tspan class="drops"> · {}</tspan>"#,
            escape(&drops_text(drops, None))
        );
    }
    s.push_str("</text></g>\n");
}

fn draw_node(s: &mut String, node: &Node, r: &Rect) {
    let kind = kind_name(node.kind);
    let sub = match node.kind {
        NodeKind::Workload => count(node.pods.len(), "pod"),
        NodeKind::Namespace => format!("namespace · {}", count(node.pods.len(), "pod")),
        NodeKind::Cidr => "CIDR region".to_string(),
        NodeKind::Host => "node / host addresses".to_string(),
        NodeKind::World => "any other address".to_string(),
    };
    let mut tooltip = format!("{}\n{}", node.label, sub);
    if node.ingress != Isolation::NotApplicable || node.egress != Isolation::NotApplicable {
        tooltip.push_str(&format!(
            "\ningress: {} · egress: {}",
            isolation_text(node.ingress),
            isolation_text(node.egress)
        ));
    }
    let _ = writeln!(
        s,
        r#"<g class="node node-{kind}" data-id="{id}" data-kind="{kind}" transform="translate({:.1},{:.1})"><title>{tooltip}</title><rect class="box" width="{NODE_W:.0}" height="{NODE_H:.0}" rx="9"/><text class="label" x="{cx:.1}" y="22" text-anchor="middle">{label}</text><text class="sub" x="{cx:.1}" y="39" text-anchor="middle">{sub}</text>"#,
        r.x,
        r.y,
        id = escape(&node.id),
        tooltip = escape(&tooltip),
        cx = NODE_W / 2.0,
        label = escape(&truncate(&node.label, LABEL_CHARS)),
        sub = escape(&truncate(&sub, SUB_CHARS)),
    );
    isolation_badge(s, "ingress", node.ingress, 15.0);
    isolation_badge(s, "egress", node.egress, NODE_W - 15.0);
    s.push_str("</g>\n");
}

/// A lock inside the node on the side of the direction: left for ingress
/// (arrows arrive there), right for egress.
fn isolation_badge(s: &mut String, direction: &str, isolation: Isolation, x: f64) {
    let (class, symbol) = match isolation {
        Isolation::Isolated => ("isolated", "pg-lock"),
        Isolation::Partly => ("partly", "pg-lock"),
        Isolation::Open => ("open", "pg-unlock"),
        Isolation::NotApplicable => return,
    };
    let _ = write!(
        s,
        r##"<g class="iso iso-{direction} iso-{class}" transform="translate({x:.1},{:.1})"><title>{direction}: {}</title><use href="#{symbol}" x="-8" y="-8" width="16" height="16"/></g>"##,
        NODE_H / 2.0,
        isolation_text(isolation),
    );
}

fn header(s: &mut String, graph: &Graph) {
    let allowed = graph
        .edges
        .iter()
        .filter(|e| e.kind == EdgeKind::Allowed)
        .count();
    let denied = graph.edges.len() - allowed;
    let nodes = if graph.aggregated {
        count(graph.nodes.len(), "node")
    } else {
        let workloads = graph
            .nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Workload)
            .count();
        format!(
            "{} · {} external",
            count(workloads, "workload"),
            graph.nodes.len() - workloads
        )
    };
    let mut subtitle = format!("{nodes} · {}", count(allowed, "allowed connection"));
    if denied > 0 || graph.window_seconds.is_some() {
        subtitle.push_str(&format!(
            " · {} denied and attempted",
            count(denied, "connection")
        ));
    }
    if let Some(window) = graph.window_seconds {
        subtitle.push_str(&format!(" · drops seen over {}", duration_text(window)));
    }
    if !graph.overlay_partial.is_empty() {
        subtitle.push_str(&format!(
            " · overlay partial: {}",
            graph.overlay_partial.join("; ")
        ));
    }
    let _ = writeln!(
        s,
        r#"<text class="pg-kicker" x="24" y="24">PALISADE · ALLOWED CONNECTIVITY{}</text><text class="pg-title" x="24" y="49">{}</text><text class="pg-subtitle" x="24" y="70">{}</text>"#,
        if graph.aggregated {
            " · AGGREGATED BY NAMESPACE"
        } else {
            ""
        },
        escape(&truncate(&graph.scope, 90)),
        escape(&subtitle)
    );
}

fn legend(s: &mut String, graph: &Graph) {
    let y = 92.0;
    let mut x = 24.0;
    s.push_str("<g class=\"pg-legend\">");
    let mut kinds: Vec<NodeKind> = graph.nodes.iter().map(|n| n.kind).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let name = kind_name(kind);
        let _ = write!(
            s,
            r#"<g class="node-{name}"><rect class="box" x="{x:.0}" y="{:.0}" width="18" height="12" rx="3" style="filter:none"/></g><text x="{:.0}" y="{y:.0}">{}</text>"#,
            y - 10.0,
            x + 24.0,
            legend_kind(kind)
        );
        x += 24.0 + text_width(legend_kind(kind)) + 18.0;
    }
    x += 8.0;
    let _ = write!(
        s,
        r#"<g class="edge"><path class="line" d="M{x:.0},{:.0} h30" marker-end="url(#pg-arrow)"/></g><text x="{:.0}" y="{y:.0}">allowed (ports)</text>"#,
        y - 4.0,
        x + 38.0
    );
    x += 38.0 + text_width("allowed (ports)") + 18.0;
    let _ = write!(
        s,
        r#"<g class="edge edge-denied"><path class="line" d="M{x:.0},{:.0} h30" marker-end="url(#pg-arrow-denied)"/></g><text x="{:.0}" y="{y:.0}">denied, attempted (drops)</text>"#,
        y - 4.0,
        x + 38.0
    );
    x += 38.0 + text_width("denied, attempted (drops)") + 26.0;
    if graph.window_seconds.is_some() {
        let _ = write!(
            s,
            r#"<g class="edge edge-unused"><path class="line" d="M{x:.0},{:.0} h30" marker-end="url(#pg-arrow)"/></g><text x="{:.0}" y="{y:.0}">allowed, unused</text>"#,
            y - 4.0,
            x + 38.0
        );
        x += 38.0 + text_width("allowed, unused") + 26.0;
    }
    for (class, symbol, text) in [
        ("isolated", "pg-lock", "isolated"),
        ("partly", "pg-lock", "partly isolated"),
        ("open", "pg-unlock", "not isolated"),
    ] {
        let _ = write!(
            s,
            r##"<g class="iso-{class}"><use href="#{symbol}" x="{x:.0}" y="{:.0}" width="16" height="16"/></g><text x="{:.0}" y="{y:.0}">{text}</text>"##,
            y - 13.0,
            x + 20.0
        );
        x += 20.0 + text_width(text) + 16.0;
    }
    let _ = write!(
        s,
        r#"<text x="{x:.0}" y="{y:.0}" style="fill:#94a3b8">(lock on the left: ingress · on the right: egress)</text>"#
    );
    s.push_str("</g>\n");
}

fn banner_height(graph: &Graph) -> f64 {
    if graph.rejected.is_empty() {
        return 0.0;
    }
    let lines = graph.rejected.len().min(BANNER_LINES + 1);
    34.0 + 17.0 * lines as f64
}

fn draw_banner(s: &mut String, graph: &Graph, width: f64) {
    let n = graph.rejected.len();
    let top = HEADER;
    let _ = write!(
        s,
        r#"<g class="pg-banner" data-rejected="{n}"><rect x="16" y="{top:.0}" width="{:.0}" height="{:.0}" rx="8"/><text class="head" x="32" y="{:.0}">⚠ Partial picture: {} rejected and left out</text>"#,
        (width - 32.0).max(200.0),
        banner_height(graph),
        top + 22.0,
        count(n, "object"),
    );
    for (k, item) in graph.rejected.iter().take(BANNER_LINES).enumerate() {
        let _ = write!(
            s,
            r#"<text class="item" x="40" y="{:.0}"><title>{}</title>{}</text>"#,
            top + 41.0 + 17.0 * k as f64,
            escape(item),
            escape(&truncate(&format!("• {item}"), BANNER_CHARS)),
        );
    }
    if n > BANNER_LINES {
        let _ = write!(
            s,
            r#"<text class="item" x="40" y="{:.0}">… and {} more</text>"#,
            top + 41.0 + 17.0 * BANNER_LINES as f64,
            n - BANNER_LINES
        );
    }
    s.push_str("</g>\n");
}

/// One port set as users write it: `TCP 8080`, `UDP 5000–5100`,
/// `TCP (all ports)`, `any protocol`.
pub(crate) fn port_text(p: &PortSpec) -> String {
    if p.protocol.eq_ignore_ascii_case("any") {
        return "any protocol".to_string();
    }
    if p.first == 0 && p.last == u16::MAX {
        format!("{} (all ports)", p.protocol)
    } else if p.first == p.last {
        format!("{} {}", p.protocol, p.first)
    } else {
        format!("{} {}–{}", p.protocol, p.first, p.last)
    }
}

fn drops_text(drops: u64, window: Option<u64>) -> String {
    let mut text = count(drops as usize, "drop");
    if let Some(window) = window {
        text.push_str(&format!(" in {}", duration_text(window)));
    }
    text
}

fn duration_text(seconds: u64) -> String {
    match seconds {
        s if s % 3600 == 0 && s > 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

pub(crate) fn isolation_text(isolation: Isolation) -> &'static str {
    match isolation {
        Isolation::Isolated => "isolated",
        Isolation::Partly => "partly isolated",
        Isolation::Open => "not isolated",
        Isolation::NotApplicable => "not applicable",
    }
}

fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Workload => "workload",
        NodeKind::Namespace => "namespace",
        NodeKind::Cidr => "cidr",
        NodeKind::Host => "host",
        NodeKind::World => "world",
    }
}

fn legend_kind(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Workload => "workload",
        NodeKind::Namespace => "namespace",
        NodeKind::Cidr => "CIDR region",
        NodeKind::Host => "host",
        NodeKind::World => "world",
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Roughly how wide a legend text is (11.5 px sans-serif).
fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * 6.3
}

/// At most `max` characters, the last one an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Escapes text for XML and HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Characters XML 1.0 forbids even escaped: left out.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::fixtures;

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg)
            .unwrap_or_else(|e| panic!("not well-formed XML: {e}\n{svg}"))
    }

    fn elements<'a, 'i>(
        doc: &'a roxmltree::Document<'i>,
        class: &'a str,
    ) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + 'a {
        doc.descendants().filter(move |n| {
            n.attribute("class")
                .is_some_and(|c| c.split(' ').any(|c| c == class))
        })
    }

    #[test]
    fn every_node_and_edge_is_drawn_once() {
        let graph = fixtures::three_tier();
        let svg = render(&graph);
        let doc = parse(&svg);
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let ids: Vec<&str> = elements(&doc, "node")
            .map(|n| n.attribute("data-id").unwrap())
            .collect();
        let expected: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, expected);
        let edges: Vec<(&str, &str, &str)> = elements(&doc, "edge")
            .filter(|n| n.attribute("data-index").is_some())
            .map(|n| {
                (
                    n.attribute("data-from").unwrap(),
                    n.attribute("data-to").unwrap(),
                    n.attribute("data-kind").unwrap(),
                )
            })
            .collect();
        let expected: Vec<(&str, &str, &str)> = graph
            .edges
            .iter()
            .map(|e| {
                let kind = match e.kind {
                    EdgeKind::Allowed => "allowed",
                    EdgeKind::Denied => "denied",
                };
                (e.from.as_str(), e.to.as_str(), kind)
            })
            .collect();
        assert_eq!(edges, expected);
        let groups: Vec<&str> = elements(&doc, "group")
            .map(|n| n.attribute("data-namespace").unwrap())
            .collect();
        assert_eq!(
            groups,
            ["ingress-nginx", "kube-system", "monitoring", "production"]
        );
    }

    #[test]
    fn denied_edges_are_dashed_red_with_their_drops() {
        let graph = fixtures::three_tier();
        let doc_text = render(&graph);
        let doc = parse(&doc_text);
        let denied: Vec<_> = elements(&doc, "edge-denied")
            .filter(|n| n.attribute("data-index").is_some())
            .collect();
        assert_eq!(denied.len(), 1);
        let edge = denied[0];
        assert_eq!(
            edge.attribute("data-from"),
            Some("workload:production/test-pod")
        );
        let line = edge
            .children()
            .find(|c| c.attribute("class") == Some("line"))
            .unwrap();
        assert_eq!(line.attribute("marker-end"), Some("url(#pg-arrow-denied)"));
        let label: String = edge
            .descendants()
            .filter(|n| n.is_text())
            .filter(|n| n.parent().is_some_and(|p| p.tag_name().name() != "title"))
            .map(|n| n.text().unwrap())
            .collect();
        assert_eq!(label, "denied TCP 5432 · 37 drops");
        // The style makes that class dashed and red.
        assert!(STYLE.contains(
            ".edge-denied .line{stroke:#dc2626;stroke-width:1.7;stroke-dasharray:7 4}
.edge-unused .line{stroke:#cbd5e1;stroke-dasharray:2 3}
.edge-unused .edge-label{fill:#94a3b8}"
        ));
        // Drops on an allowed edge are shown too.
        let frontend_backend = elements(&doc, "edge")
            .find(|n| {
                n.attribute("data-from") == Some("workload:production/frontend")
                    && n.attribute("data-to") == Some("workload:production/backend")
            })
            .unwrap();
        let drops = frontend_backend
            .descendants()
            .find(|n| n.attribute("class") == Some("drops"))
            .unwrap();
        assert_eq!(drops.text(), Some(" · 2 drops"));
    }

    #[test]
    fn fans_with_the_same_ports_are_labelled_once() {
        let graph = fixtures::three_tier();
        let doc_text = render(&graph);
        let doc = parse(&doc_text);
        let labels: Vec<String> = elements(&doc, "edge-label")
            .map(|n| {
                n.descendants()
                    .filter(|t| t.is_text())
                    .map(|t| t.text().unwrap())
                    .collect()
            })
            .collect();
        let times = |text: &str| labels.iter().filter(|l| *l == text).count();
        // Prometheus scrapes four workloads, four workloads ask DNS, and
        // reach the internet: one label each.
        assert_eq!(times("TCP 9090"), 1, "{labels:?}");
        assert_eq!(times("TCP 53, UDP 53"), 1, "{labels:?}");
        assert_eq!(
            times("any protocol"),
            2,
            "host's fan and the internet's: {labels:?}"
        );
        // Edges with drops and lone edges keep their own.
        assert_eq!(times("TCP 8080 · 2 drops"), 1, "{labels:?}");
        assert_eq!(times("denied TCP 5432 · 37 drops"), 1, "{labels:?}");
        assert_eq!(times("TCP 443"), 1, "{labels:?}");
        // Every edge is still drawn and clickable.
        assert_eq!(
            elements(&doc, "edge")
                .filter(|n| n.attribute("data-index").is_some())
                .count(),
            graph.edges.len()
        );
    }

    #[test]
    fn isolation_is_marked_per_direction() {
        let graph = fixtures::aggregated();
        let doc_text = render(&graph);
        let doc = parse(&doc_text);
        let badges = |id: &str| -> Vec<String> {
            let node = elements(&doc, "node")
                .find(|n| n.attribute("data-id") == Some(id))
                .unwrap();
            node.children()
                .filter_map(|c| c.attribute("class"))
                .filter(|c| c.starts_with("iso "))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            badges("namespace:a"),
            ["iso iso-ingress iso-isolated", "iso iso-egress iso-partly"]
        );
        assert_eq!(
            badges("namespace:c"),
            ["iso iso-ingress iso-open", "iso iso-egress iso-partly"]
        );
        assert!(
            badges("host").is_empty(),
            "policy does not isolate the host"
        );
    }

    #[test]
    fn partial_pictures_say_so() {
        let graph = fixtures::three_tier();
        let doc_text = render(&graph);
        let doc = parse(&doc_text);
        let banner = elements(&doc, "pg-banner").next().expect("a banner");
        assert_eq!(banner.attribute("data-rejected"), Some("2"));
        let text: String = banner
            .descendants()
            .filter(|n| n.is_text())
            .map(|n| n.text().unwrap())
            .collect();
        assert!(
            text.contains("Partial picture: 2 objects rejected"),
            "{text}"
        );
        for rejected in &graph.rejected {
            assert!(
                text.contains(rejected.as_str()),
                "{rejected} missing in {text}"
            );
        }
        // Many: the first few, then a count.
        let mut many = graph.clone();
        many.rejected = (0..20)
            .map(|i| format!("NetworkPolicy p/n{i}: bad"))
            .collect();
        let text = render(&many);
        assert!(text.contains("… and 14 more"));
        // None: no banner.
        let mut whole = graph;
        whole.rejected.clear();
        assert!(!render(&whole).contains("class=\"pg-banner\""));
    }

    #[test]
    fn user_text_is_escaped() {
        let graph = fixtures::hostile();
        let svg = render(&graph);
        let doc = parse(&svg);
        // The names come back intact through a real parser.
        let ids: Vec<&str> = elements(&doc, "node")
            .map(|n| n.attribute("data-id").unwrap())
            .collect();
        let expected: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, expected);
        assert!(ids.iter().any(|id| id.contains("<script>")));
        let title = doc
            .descendants()
            .find(|n| n.attribute("class") == Some("pg-title"))
            .unwrap();
        assert_eq!(title.text(), Some("namespace prod<&\"'>"));
        // Nothing the user wrote became markup.
        assert!(!doc.descendants().any(|n| n.tag_name().name() == "script"));
        assert!(!doc.descendants().any(|n| n.tag_name().name() == "b"));
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn escape_covers_markup_characters() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(escape("a\u{1}b\tc"), "ab\tc");
    }

    #[test]
    fn ports_read_as_users_write_them() {
        let p = |protocol: &str, first, last| PortSpec {
            protocol: protocol.into(),
            first,
            last,
        };
        assert_eq!(port_text(&p("TCP", 8080, 8080)), "TCP 8080");
        assert_eq!(port_text(&p("UDP", 5000, 5100)), "UDP 5000–5100");
        assert_eq!(port_text(&p("SCTP", 0, 65535)), "SCTP (all ports)");
        assert_eq!(port_text(&p("any", 0, 65535)), "any protocol");
    }

    #[test]
    fn rendering_is_deterministic_and_handles_any_graph() {
        let graph = fixtures::three_tier();
        assert_eq!(render(&graph), render(&graph));
        for graph in [
            Graph::default(),
            fixtures::many(200, 9),
            fixtures::aggregated(),
        ] {
            let svg = render(&graph);
            let doc = parse(&svg);
            assert_eq!(elements(&doc, "node").count(), graph.nodes.len());
        }
    }
}

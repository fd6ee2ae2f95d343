//! Graphs the renderers' unit tests draw: the seeds' three-tier application
//! (the same file the browser test opens), many workloads, an aggregated
//! whole-cluster view, and names that need escaping.

use super::model::{Edge, EdgeKind, Graph, Isolation, Node, NodeKind, PortSpec, RuleRef, Tier};

/// The three-tier demo as `palisade graph -n production --live` would show
/// it: every kind of node, a denied edge with drops, drops on an allowed
/// edge, a Pass chain and two rejected objects.
pub(crate) fn three_tier() -> Graph {
    serde_json::from_str(include_str!("../../tests/data/three-tier-graph.json"))
        .expect("the three-tier fixture is a graph")
}

fn workload(ns: &str, name: &str) -> Node {
    Node {
        id: format!("workload:{ns}/{name}"),
        label: name.to_string(),
        kind: NodeKind::Workload,
        namespace: Some(ns.to_string()),
        pods: vec![format!("{ns}/{name}-0")],
        labels: vec![format!("app={name}")],
        addresses: Vec::new(),
        ingress: Isolation::Isolated,
        egress: Isolation::Open,
    }
}

fn edge(from: &str, to: &str, port: u16) -> Edge {
    Edge {
        from: from.to_string(),
        to: to.to_string(),
        kind: EdgeKind::Allowed,
        ports: vec![PortSpec {
            protocol: "TCP".into(),
            first: port,
            last: port,
        }],
        rules: vec![RuleRef {
            direction: "ingress".into(),
            tier: Tier::NetworkPolicy,
            name: format!("{to} ingress[0]"),
            passed: Vec::new(),
        }],
        drops: None,
        causes: Default::default(),
        used: None,
    }
}

/// `count` workloads spread over `namespaces` namespaces, each calling the
/// next two of its namespace and one of the next namespace (a cycle at the
/// end), plus the world reaching the first.
pub(crate) fn many(count: usize, namespaces: usize) -> Graph {
    let id = |k: usize| format!("workload:ns-{:02}/app-{k:03}", k % namespaces);
    let mut nodes: Vec<Node> = (0..count)
        .map(|k| workload(&format!("ns-{:02}", k % namespaces), &format!("app-{k:03}")))
        .collect();
    nodes.push(Node {
        id: "world".into(),
        label: "world".into(),
        kind: NodeKind::World,
        namespace: None,
        pods: Vec::new(),
        labels: Vec::new(),
        addresses: Vec::new(),
        ingress: Isolation::NotApplicable,
        egress: Isolation::NotApplicable,
    });
    let mut edges = vec![edge("world", &id(0), 443)];
    for k in 0..count {
        for step in [namespaces, 2 * namespaces, 1] {
            edges.push(edge(&id(k), &id((k + step) % count), 8080));
        }
    }
    sort(Graph {
        scope: format!("{count} workloads"),
        nodes,
        edges,
        rejected: Vec::new(),
        aggregated: false,
        window_seconds: None,
        overlay_partial: Vec::new(),
    })
}

/// The whole cluster aggregated by namespace, with a cycle and a loop.
pub(crate) fn aggregated() -> Graph {
    let ns = |name: &str, isolation: Isolation| Node {
        id: format!("namespace:{name}"),
        label: name.to_string(),
        kind: NodeKind::Namespace,
        namespace: Some(name.to_string()),
        pods: vec![format!("{name}/a"), format!("{name}/b")],
        labels: Vec::new(),
        addresses: Vec::new(),
        ingress: isolation,
        egress: Isolation::Partly,
    };
    let nodes = vec![
        ns("a", Isolation::Isolated),
        ns("b", Isolation::Partly),
        ns("c", Isolation::Open),
        Node {
            id: "host".into(),
            label: "host".into(),
            kind: NodeKind::Host,
            namespace: None,
            pods: Vec::new(),
            labels: Vec::new(),
            addresses: Vec::new(),
            ingress: Isolation::NotApplicable,
            egress: Isolation::NotApplicable,
        },
    ];
    let edges = vec![
        edge("namespace:a", "namespace:b", 80),
        edge("namespace:b", "namespace:c", 80),
        edge("namespace:c", "namespace:a", 80),
        edge("namespace:a", "namespace:a", 80),
        edge("host", "namespace:b", 10250),
    ];
    sort(Graph {
        scope: "all namespaces (aggregated by namespace)".into(),
        nodes,
        edges,
        rejected: Vec::new(),
        aggregated: true,
        window_seconds: None,
        overlay_partial: Vec::new(),
    })
}

fn sort(mut graph: Graph) -> Graph {
    graph.nodes.sort_by(|a, b| a.id.cmp(&b.id));
    graph
        .edges
        .sort_by(|a, b| (&a.from, &a.to, a.kind).cmp(&(&b.from, &b.to, b.kind)));
    graph
}

/// Names a user could write that break markup unless escaped.
pub(crate) fn hostile() -> Graph {
    let mut a = workload("prod<&\"'>", "web<script>alert(1)</script>");
    a.labels = vec!["team=a&b\"c".into()];
    let b = workload("prod<&\"'>", "api&\"]]>");
    let mut e = edge(&a.id, &b.id, 80);
    e.rules[0].name = "prod<&\"'>/allow </script><b>x</b> ingress[0]".into();
    sort(Graph {
        scope: "namespace prod<&\"'>".into(),
        nodes: vec![a, b],
        edges: vec![e],
        rejected: vec!["NetworkPolicy x/<y>: spec.podSelector: \"&\" is not a label".into()],
        aggregated: false,
        window_seconds: None,
        overlay_partial: Vec::new(),
    })
}

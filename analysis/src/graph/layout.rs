//! The deterministic layout of a [`Graph`] for the visual renderers (svg,
//! html): a rectangle for every node, a box for every namespace's group of
//! workloads, a route for every edge. No external layout engine: the same
//! graph always gives the same picture, byte for byte.
//!
//! The algorithm, layered left to right by role:
//! 1. **Blocks.** Workloads are grouped in one block per namespace (drawn as
//!    a box named after it); namespace nodes of an aggregated graph share
//!    one unboxed block. External nodes (world, CIDR regions, host) are not
//!    in blocks: those that send to pods (or have no edge) form the first
//!    column, those that only receive form the last one.
//! 2. **Block layers.** Blocks are layered by a longest-path layering of the
//!    block graph (an edge between two blocks when some edge joins their
//!    nodes): a block sits one column right of the furthest block sending to
//!    it. Cycles are broken by ignoring the edges a depth-first walk (in id
//!    order) finds going back to a block on its stack. More than
//!    [`MAX_BLOCK_COLUMNS`] layers are squeezed into that many columns,
//!    keeping their order, so long chains of namespaces do not make a strip.
//! 3. **Inside a block.** The same layering over the edges inside the block
//!    gives its columns (frontend → backend → database read left to right),
//!    squeezed into at most [`MAX_INNER_COLUMNS`]; a column of more than
//!    max(8, √(2n)) of the block's n nodes wraps into several, so 200
//!    unconnected workloads make a grid about twice as wide as high, not a
//!    tower or a line. Nodes of one layer are in id order.
//! 4. **Placement.** Blocks of one layer are stacked, columns are as wide as
//!    their widest block and every column is centred vertically.
//! 5. **Edges.** Each edge is a cubic Bézier from the right side of its
//!    source to the left side of its destination (the other way round when
//!    the destination is further left, along the right or left side when
//!    both are in one column, a loop above the node for an edge to itself).
//!    Where several edges meet one side of a node their ends are spread
//!    along it in the order of the other ends' heights, so arrowheads do not
//!    pile up and pairs in both directions stay apart.

use std::collections::BTreeMap;

use super::model::{Graph, NodeKind};

/// Width of a node's rectangle.
pub(crate) const NODE_W: f64 = 190.0;
/// Height of a node's rectangle.
pub(crate) const NODE_H: f64 = 52.0;
/// The fewest nodes a column may hold before it wraps.
const MIN_PER_COLUMN: usize = 8;
/// The most columns of blocks (namespaces) the layering makes.
const MAX_BLOCK_COLUMNS: usize = 4;
/// The most layers inside a block (before wrapping tall ones).
const MAX_INNER_COLUMNS: usize = 5;
const NODE_GAP_Y: f64 = 26.0;
/// Between the columns of the picture: room for edges and their labels.
const COLUMN_GAP: f64 = 130.0;
/// Between the columns inside one block.
const INNER_GAP_X: f64 = 120.0;
const GROUP_PAD: f64 = 22.0;
/// Room above a group's nodes for its name (and self loops).
const GROUP_HEADER: f64 = 44.0;
const BLOCK_GAP_Y: f64 = 36.0;
const MARGIN: f64 = 40.0;
/// Above the top nodes: room for their loops and for detours.
const MARGIN_TOP: f64 = 64.0;
/// How far a detouring edge stays from the nodes it goes around.
const DETOUR_CLEARANCE: f64 = 20.0;
/// How far from its ends a detouring edge's control points are.
const DETOUR_PULL: f64 = 36.0;
/// How high a loop of a node to itself rises above it.
const LOOP_RISE: f64 = 34.0;

/// A point of the picture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    pub x: f64,
    pub y: f64,
}

/// An axis-aligned rectangle (top-left corner and size).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    fn right(&self) -> f64 {
        self.x + self.w
    }

    fn center_y(&self) -> f64 {
        self.y + self.h / 2.0
    }

    /// Whether the two rectangles share some area (touching edges do not).
    #[cfg(test)]
    fn overlaps(&self, other: &Rect) -> bool {
        self.x < other.right()
            && other.x < self.right()
            && self.y < other.y + other.h
            && other.y < self.y + self.h
    }
}

/// A namespace's box around its workloads.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GroupBox {
    /// The namespace.
    pub namespace: String,
    pub rect: Rect,
}

/// An edge's route: a cubic Bézier curve, and where its label goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Route {
    pub start: Point,
    pub c1: Point,
    pub c2: Point,
    pub end: Point,
    /// The curve's middle (t = 0.5).
    pub label: Point,
}

/// Positions for everything a renderer draws.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Layout {
    pub width: f64,
    pub height: f64,
    /// One per `graph.nodes`, in the same order.
    pub nodes: Vec<Rect>,
    /// One per namespace that has workloads, in namespace order.
    pub groups: Vec<GroupBox>,
    /// One per `graph.edges`, in the same order; `None` for an edge naming
    /// a node the graph does not have (it cannot be drawn).
    pub edges: Vec<Option<Route>>,
}

/// Which block a node is in, for the layering.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum BlockKey {
    /// The workloads of one namespace.
    Namespace(String),
    /// Namespace nodes (aggregated view), and workloads without namespace.
    Ungrouped,
}

/// A block laid out at the origin: node positions relative to it and its
/// size.
struct Block {
    key: BlockKey,
    nodes: Vec<(usize, Point)>,
    w: f64,
    h: f64,
}

/// Lays the graph out (see the module's documentation).
pub(crate) fn layout(graph: &Graph) -> Layout {
    let index: BTreeMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let links: Vec<(usize, usize)> = graph
        .edges
        .iter()
        .filter_map(|e| Some((*index.get(e.from.as_str())?, *index.get(e.to.as_str())?)))
        .collect();

    // 1. Blocks, and the external columns.
    let is_external = |i: usize| {
        matches!(
            graph.nodes[i].kind,
            NodeKind::Cidr | NodeKind::Host | NodeKind::World
        )
    };
    let mut sources = Vec::new();
    let mut sinks = Vec::new();
    let mut members: BTreeMap<BlockKey, Vec<usize>> = BTreeMap::new();
    // In id order, whatever order the graph lists them in.
    let mut by_id: Vec<usize> = (0..graph.nodes.len()).collect();
    by_id.sort_by(|&a, &b| graph.nodes[a].id.cmp(&graph.nodes[b].id));
    for i in by_id {
        let node = &graph.nodes[i];
        if is_external(i) {
            let sends = links.iter().any(|&(f, t)| f == i && t != i);
            let receives = links.iter().any(|&(f, t)| t == i && f != i);
            if receives && !sends {
                sinks.push(i);
            } else {
                sources.push(i);
            }
            continue;
        }
        let key = match (&node.kind, &node.namespace) {
            (NodeKind::Workload, Some(ns)) => BlockKey::Namespace(ns.clone()),
            _ => BlockKey::Ungrouped,
        };
        members.entry(key).or_default().push(i);
    }
    let keys: Vec<BlockKey> = members.keys().cloned().collect();
    let mut block_of = vec![usize::MAX; graph.nodes.len()];
    for (b, key) in keys.iter().enumerate() {
        for &i in &members[key] {
            block_of[i] = b;
        }
    }

    // 2. Block layers.
    let block_links: Vec<(usize, usize)> = links
        .iter()
        .filter(|&&(f, t)| block_of[f] != usize::MAX && block_of[t] != usize::MAX)
        .map(|&(f, t)| (block_of[f], block_of[t]))
        .collect();
    let block_layer = squeeze(layers(keys.len(), &block_links), MAX_BLOCK_COLUMNS);

    // 3. Inside each block.
    let blocks: Vec<Block> = keys
        .iter()
        .enumerate()
        .map(|(b, key)| {
            let nodes = &members[key];
            let local: BTreeMap<usize, usize> =
                nodes.iter().enumerate().map(|(k, &i)| (i, k)).collect();
            let inner: Vec<(usize, usize)> = links
                .iter()
                .filter(|&&(f, t)| block_of[f] == b && block_of[t] == b)
                .map(|&(f, t)| (local[&f], local[&t]))
                .collect();
            let layer = squeeze(layers(nodes.len(), &inner), MAX_INNER_COLUMNS);
            let mut by_layer: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (k, &i) in nodes.iter().enumerate() {
                by_layer.entry(layer[k]).or_default().push(i);
            }
            let per_column = column_height(nodes.len());
            let columns: Vec<Vec<usize>> = by_layer
                .into_values()
                .flat_map(|ids| wrap(ids, per_column))
                .collect();
            let boxed = matches!(key, BlockKey::Namespace(_));
            let (pad_x, pad_top, pad_bottom) = if boxed {
                (GROUP_PAD, GROUP_HEADER, GROUP_PAD)
            } else {
                (0.0, 0.0, 0.0)
            };
            let (positions, w, h) = stack_columns(&columns, INNER_GAP_X);
            Block {
                key: key.clone(),
                nodes: positions
                    .into_iter()
                    .map(|(i, p)| {
                        (
                            i,
                            Point {
                                x: p.x + pad_x,
                                y: p.y + pad_top,
                            },
                        )
                    })
                    .collect(),
                w: w + 2.0 * pad_x,
                h: h + pad_top + pad_bottom,
            }
        })
        .collect();

    // 4. Placement: the picture's columns, left to right.
    enum Column {
        External(Vec<usize>),
        Blocks(Vec<usize>),
    }
    let mut columns = Vec::new();
    if !sources.is_empty() {
        columns.push(Column::External(sources));
    }
    let mut by_block_layer: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (b, &l) in block_layer.iter().enumerate() {
        by_block_layer.entry(l).or_default().push(b);
    }
    columns.extend(by_block_layer.into_values().map(Column::Blocks));
    if !sinks.is_empty() {
        columns.push(Column::External(sinks));
    }

    let mut nodes = vec![
        Rect {
            x: 0.0,
            y: 0.0,
            w: NODE_W,
            h: NODE_H,
        };
        graph.nodes.len()
    ];
    let mut groups = Vec::new();
    // Sizes first, to centre each column on the tallest.
    let sizes: Vec<(f64, f64)> = columns
        .iter()
        .map(|c| match c {
            Column::External(ids) => {
                let (_, w, h) =
                    stack_columns(&wrap(ids.clone(), column_height(ids.len())), INNER_GAP_X);
                (w, h)
            }
            Column::Blocks(bs) => (
                bs.iter().map(|&b| blocks[b].w).fold(0.0, f64::max),
                bs.iter().map(|&b| blocks[b].h).sum::<f64>()
                    + BLOCK_GAP_Y * (bs.len().saturating_sub(1)) as f64,
            ),
        })
        .collect();
    let tallest = sizes.iter().map(|s| s.1).fold(NODE_H, f64::max);
    let mut x = MARGIN;
    for (column, &(w, h)) in columns.iter().zip(&sizes) {
        let top = MARGIN_TOP + (tallest - h) / 2.0;
        match column {
            Column::External(ids) => {
                let (positions, _, _) =
                    stack_columns(&wrap(ids.clone(), column_height(ids.len())), INNER_GAP_X);
                for (i, p) in positions {
                    nodes[i].x = x + p.x;
                    nodes[i].y = top + p.y;
                }
            }
            Column::Blocks(bs) => {
                let mut y = top;
                for &b in bs {
                    let block = &blocks[b];
                    // Narrower blocks are centred in their column.
                    let bx = x + (w - block.w) / 2.0;
                    for &(i, p) in &block.nodes {
                        nodes[i].x = bx + p.x;
                        nodes[i].y = y + p.y;
                    }
                    if let BlockKey::Namespace(ns) = &block.key {
                        groups.push(GroupBox {
                            namespace: ns.clone(),
                            rect: Rect {
                                x: bx,
                                y,
                                w: block.w,
                                h: block.h,
                            },
                        });
                    }
                    y += block.h + BLOCK_GAP_Y;
                }
            }
        }
        x += w + COLUMN_GAP;
    }
    groups.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    let width = (x - COLUMN_GAP + MARGIN).max(2.0 * MARGIN);
    let height = tallest + MARGIN_TOP + MARGIN;

    // 5. Edges.
    let edges = routes(graph, &index, &nodes, height);
    Layout {
        width,
        height,
        nodes,
        groups,
        edges,
    }
}

/// Longest-path layering of `n` vertices: a vertex's layer is one more
/// than the largest layer of a vertex with an edge to it; edges that close
/// a cycle (back edges of a depth-first walk in index order) and loops are
/// left out.
fn layers(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(f, t) in edges {
        if f != t && !out[f].contains(&t) {
            out[f].push(t);
        }
    }
    for o in &mut out {
        o.sort_unstable();
    }
    // Depth-first walk (iterative: 200 nodes in a chain must not overflow
    // the stack), keeping the forward edges.
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        OnStack,
        Done,
    }
    let mut state = vec![State::New; n];
    let mut forward: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut order = Vec::with_capacity(n); // post-order
    for root in 0..n {
        if state[root] != State::New {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        state[root] = State::OnStack;
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&t) = out[v].get(*next) {
                *next += 1;
                match state[t] {
                    State::New => {
                        forward[v].push(t);
                        state[t] = State::OnStack;
                        stack.push((t, 0));
                    }
                    State::Done => forward[v].push(t),
                    State::OnStack => {} // closes a cycle
                }
            } else {
                state[v] = State::Done;
                order.push(v);
                stack.pop();
            }
        }
    }
    // Reverse post-order is a topological order of the forward edges.
    let mut layer = vec![0; n];
    for &v in order.iter().rev() {
        for &t in &forward[v] {
            layer[t] = layer[t].max(layer[v] + 1);
        }
    }
    layer
}

/// Maps layers onto at most `max` columns, keeping their order.
fn squeeze(layer: Vec<usize>, max: usize) -> Vec<usize> {
    let count = layer.iter().max().map_or(0, |&l| l + 1);
    if count <= max {
        return layer;
    }
    layer.into_iter().map(|l| l * max / count).collect()
}

/// How many of a block's `n` nodes one column holds before it wraps:
/// about a grid twice as wide as high for large blocks.
fn column_height(n: usize) -> usize {
    MIN_PER_COLUMN.max((2.0 * n as f64).sqrt().ceil() as usize)
}

/// Splits one layer's nodes into columns of at most `per_column`.
fn wrap(ids: Vec<usize>, per_column: usize) -> Vec<Vec<usize>> {
    ids.chunks(per_column).map(<[usize]>::to_vec).collect()
}

/// Places columns of nodes side by side, each centred vertically on the
/// tallest; returns positions relative to the origin and the total size.
fn stack_columns(columns: &[Vec<usize>], gap_x: f64) -> (Vec<(usize, Point)>, f64, f64) {
    let column_h = |len: usize| len as f64 * NODE_H + len.saturating_sub(1) as f64 * NODE_GAP_Y;
    let h = columns
        .iter()
        .map(|c| column_h(c.len()))
        .fold(0.0, f64::max);
    let mut positions = Vec::new();
    for (k, column) in columns.iter().enumerate() {
        let x = k as f64 * (NODE_W + gap_x);
        let top = (h - column_h(column.len())) / 2.0;
        for (row, &i) in column.iter().enumerate() {
            positions.push((
                i,
                Point {
                    x,
                    y: top + row as f64 * (NODE_H + NODE_GAP_Y),
                },
            ));
        }
    }
    let w = if columns.is_empty() {
        0.0
    } else {
        columns.len() as f64 * NODE_W + (columns.len() - 1) as f64 * gap_x
    };
    (positions, w, h)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Left,
    Right,
}

/// Routes every edge (step 5 of the module's documentation).
fn routes(
    graph: &Graph,
    index: &BTreeMap<&str, usize>,
    nodes: &[Rect],
    height: f64,
) -> Vec<Option<Route>> {
    // Which side of which node each end of each edge uses.
    struct Ends {
        from: (usize, Side),
        to: (usize, Side),
    }
    let ends: Vec<Option<Ends>> = graph
        .edges
        .iter()
        .map(|e| {
            let f = *index.get(e.from.as_str())?;
            let t = *index.get(e.to.as_str())?;
            let (a, b) = (&nodes[f], &nodes[t]);
            Some(if f == t {
                // Drawn as a loop: no side.
                Ends {
                    from: (f, Side::Left),
                    to: (t, Side::Left),
                }
            } else if b.x >= a.right() {
                Ends {
                    from: (f, Side::Right),
                    to: (t, Side::Left),
                }
            } else if b.right() <= a.x {
                Ends {
                    from: (f, Side::Left),
                    to: (t, Side::Right),
                }
            } else if a.y <= b.y {
                Ends {
                    from: (f, Side::Right),
                    to: (t, Side::Right),
                }
            } else {
                Ends {
                    from: (f, Side::Left),
                    to: (t, Side::Left),
                }
            })
        })
        .collect();

    let obstacles = Obstacles::new(nodes);
    let mut looped = vec![false; nodes.len()];
    for end in ends.iter().flatten() {
        if end.from.0 == end.to.0 {
            looped[end.from.0] = true;
        }
    }

    // Spread the ends meeting one side, ordered by the other end's height.
    // Per (node, side): (other end's centre y, its x, edge, whether this is
    // the edge's source end).
    type EndAt = (i64, i64, usize, bool);
    let mut at_side: BTreeMap<(usize, Side), Vec<EndAt>> = BTreeMap::new();
    for (k, end) in ends.iter().enumerate() {
        let Some(end) = end else { continue };
        if end.from.0 == end.to.0 {
            continue;
        }
        let (fr, tr) = (&nodes[end.from.0], &nodes[end.to.0]);
        // Sort keys: the other end's centre (in tenths of a pixel), its x,
        // then the edge's index, for a total, deterministic order.
        at_side.entry(end.from).or_default().push((
            (tr.center_y() * 10.0) as i64,
            (tr.x * 10.0) as i64,
            k,
            true,
        ));
        at_side.entry(end.to).or_default().push((
            (fr.center_y() * 10.0) as i64,
            (fr.x * 10.0) as i64,
            k,
            false,
        ));
    }
    let mut offsets: BTreeMap<(usize, bool), f64> = BTreeMap::new();
    for list in at_side.values_mut() {
        list.sort_unstable();
        let n = list.len();
        for (slot, &(_, _, k, is_from)) in list.iter().enumerate() {
            let spread = NODE_H * 0.6;
            let offset = if n == 1 {
                0.0
            } else {
                -spread / 2.0 + spread * slot as f64 / (n - 1) as f64
            };
            offsets.insert((k, is_from), offset);
        }
    }

    ends.iter()
        .enumerate()
        .map(|(k, end)| {
            let end = end.as_ref()?;
            let (f, t) = (end.from.0, end.to.0);
            let (a, b) = (&nodes[f], &nodes[t]);
            if f == t {
                let start = Point {
                    x: a.x + a.w * 0.62,
                    y: a.y,
                };
                let stop = Point {
                    x: a.x + a.w * 0.38,
                    y: a.y,
                };
                let c1 = Point {
                    x: start.x + 24.0,
                    y: a.y - LOOP_RISE * 1.3,
                };
                let c2 = Point {
                    x: stop.x - 24.0,
                    y: a.y - LOOP_RISE * 1.3,
                };
                return Some(curve(start, c1, c2, stop));
            }
            let anchor = |r: &Rect, side: Side, offset: f64| Point {
                x: if side == Side::Left { r.x } else { r.right() },
                y: r.center_y() + offset,
            };
            let start = anchor(a, end.from.1, offsets[&(k, true)]);
            let stop = anchor(b, end.to.1, offsets[&(k, false)]);
            let outward = |side: Side| if side == Side::Left { -1.0 } else { 1.0 };
            let pull = if end.from.1 == end.to.1 {
                // Both ends on one side: bulge out, more for longer spans.
                50.0 + (stop.y - start.y).abs() * 0.25
            } else {
                ((stop.x - start.x).abs() / 2.0).max(40.0)
            };
            let c1 = Point {
                x: start.x + outward(end.from.1) * pull,
                y: start.y,
            };
            let c2 = Point {
                x: stop.x + outward(end.to.1) * pull,
                y: stop.y,
            };
            Some(detour(
                curve(start, c1, c2, stop),
                &obstacles,
                &looped,
                [f, t],
                height,
            ))
        })
        .collect()
}

/// The nodes' rectangles, bucketed in a grid of cells so that finding the
/// nodes at a point costs the same however many there are.
struct Obstacles<'a> {
    rects: &'a [Rect],
    cells: std::collections::HashMap<(i64, i64), Vec<usize>>,
}

/// Side of a grid cell.
const CELL: f64 = 64.0;
/// How close to a node a route may pass.
const NODE_CLEARANCE: f64 = 4.0;

impl<'a> Obstacles<'a> {
    fn new(rects: &'a [Rect]) -> Self {
        let mut cells: std::collections::HashMap<(i64, i64), Vec<usize>> =
            std::collections::HashMap::new();
        for (i, r) in rects.iter().enumerate() {
            let cell = |v: f64| (v / CELL).floor() as i64;
            for cx in cell(r.x - NODE_CLEARANCE)..=cell(r.right() + NODE_CLEARANCE) {
                for cy in cell(r.y - NODE_CLEARANCE)..=cell(r.y + r.h + NODE_CLEARANCE) {
                    cells.entry((cx, cy)).or_default().push(i);
                }
            }
        }
        Obstacles { rects, cells }
    }

    /// The nodes within [`NODE_CLEARANCE`] of the point.
    fn at(&self, p: Point) -> impl Iterator<Item = usize> + '_ {
        let key = ((p.x / CELL).floor() as i64, (p.y / CELL).floor() as i64);
        self.cells
            .get(&key)
            .into_iter()
            .flatten()
            .copied()
            .filter(move |&i| {
                let r = &self.rects[i];
                p.x > r.x - NODE_CLEARANCE
                    && p.x < r.right() + NODE_CLEARANCE
                    && p.y > r.y - NODE_CLEARANCE
                    && p.y < r.y + r.h + NODE_CLEARANCE
            })
    }
}

/// The nodes (other than its ends) a route passes through, in the order
/// it meets them.
fn blockers(route: &Route, obstacles: &Obstacles, ends: [usize; 2]) -> Vec<usize> {
    let mut hit = Vec::new();
    for step in 1..32 {
        for i in obstacles.at(route.at(f64::from(step) / 32.0)) {
            if !ends.contains(&i) && !hit.contains(&i) {
                hit.push(i);
            }
        }
    }
    hit
}

/// An edge that would pass through other nodes goes around them instead:
/// its middle is moved above or below them (whichever passes fewer nodes,
/// then the shorter way), within the picture.
fn detour(
    route: Route,
    obstacles: &Obstacles,
    looped: &[bool],
    ends: [usize; 2],
    height: f64,
) -> Route {
    let nodes = obstacles.rects;
    let first = blockers(&route, obstacles, ends);
    if first.is_empty() {
        return route;
    }
    let mid = (route.start.y + route.end.y) / 2.0;
    let mut best: Option<(usize, f64, Route)> = None;
    for above in [true, false] {
        let mut blocking = first.clone();
        let mut candidate = route;
        // Going around some nodes may meet others: a few rounds.
        for _ in 0..4 {
            let d = if above {
                // Above a node with a loop, above its loop too.
                blocking
                    .iter()
                    .map(|&i| nodes[i].y - if looped[i] { LOOP_RISE } else { 0.0 })
                    .fold(f64::MAX, f64::min)
                    - DETOUR_CLEARANCE
            } else {
                blocking
                    .iter()
                    .map(|&i| nodes[i].y + nodes[i].h)
                    .fold(f64::MIN, f64::max)
                    + DETOUR_CLEARANCE
            };
            let d = d.clamp(8.0, height - 8.0);
            // Control points at a height that puts the curve's middle at d.
            let y = (d - (route.start.y + route.end.y) / 8.0) / 0.75;
            // Control points close to the ends: the curve leaves steeply
            // and crosses flat, clear of the nodes beside its ends.
            let near = |end: Point, control: Point| Point {
                x: end.x + (control.x - end.x).signum() * DETOUR_PULL,
                y,
            };
            candidate = curve(
                route.start,
                near(route.start, route.c1),
                near(route.end, route.c2),
                route.end,
            );
            let now = blockers(&candidate, obstacles, ends);
            let grew = now.iter().any(|i| !blocking.contains(i));
            for i in now {
                if !blocking.contains(&i) {
                    blocking.push(i);
                }
            }
            if !grew {
                break;
            }
        }
        let hits = blockers(&candidate, obstacles, ends).len();
        let cost = (candidate.label.y - mid).abs();
        if best
            .as_ref()
            .is_none_or(|(h, c, _)| (hits, cost) < (*h, *c))
        {
            best = Some((hits, cost, candidate));
        }
    }
    match best {
        Some((hits, _, candidate)) if hits < first.len() => candidate,
        _ => route,
    }
}

impl Route {
    /// The point of the curve at `t` (0: start, 1: end).
    pub(crate) fn at(&self, t: f64) -> Point {
        let u = 1.0 - t;
        let (a, b, c, d) = (u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t);
        Point {
            x: a * self.start.x + b * self.c1.x + c * self.c2.x + d * self.end.x,
            y: a * self.start.y + b * self.c1.y + c * self.c2.y + d * self.end.y,
        }
    }
}

fn curve(start: Point, c1: Point, c2: Point, end: Point) -> Route {
    Route {
        start,
        c1,
        c2,
        end,
        label: Point {
            x: (start.x + 3.0 * c1.x + 3.0 * c2.x + end.x) / 8.0,
            y: (start.y + 3.0 * c1.y + 3.0 * c2.y + end.y) / 8.0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::fixtures;

    fn assert_no_overlaps(graph: &Graph, l: &Layout) {
        for (i, a) in l.nodes.iter().enumerate() {
            for (j, b) in l.nodes.iter().enumerate().skip(i + 1) {
                assert!(
                    !a.overlaps(b),
                    "{} at {a:?} overlaps {} at {b:?}",
                    graph.nodes[i].id,
                    graph.nodes[j].id
                );
            }
            assert!(a.x >= 0.0 && a.y >= 0.0, "{a:?} is outside the picture");
            assert!(
                a.right() <= l.width && a.y + a.h <= l.height,
                "{a:?} past {l:?}"
            );
        }
        for (i, a) in l.groups.iter().enumerate() {
            for b in l.groups.iter().skip(i + 1) {
                assert!(!a.rect.overlaps(&b.rect), "{a:?} overlaps {b:?}");
            }
        }
        // Each workload sits inside its namespace's box and no other.
        for (node, rect) in graph.nodes.iter().zip(&l.nodes) {
            for group in &l.groups {
                let inside = rect.x >= group.rect.x
                    && rect.right() <= group.rect.right()
                    && rect.y >= group.rect.y
                    && rect.y + rect.h <= group.rect.y + group.rect.h;
                let member = node.kind == NodeKind::Workload
                    && node.namespace.as_ref() == Some(&group.namespace);
                if member {
                    assert!(inside, "{} is outside its box {group:?}", node.id);
                } else {
                    assert!(
                        !rect.overlaps(&group.rect),
                        "{} overlaps {group:?}",
                        node.id
                    );
                }
            }
        }
    }

    #[test]
    fn three_tier_reads_left_to_right_without_overlaps() {
        let graph = fixtures::three_tier();
        let l = layout(&graph);
        assert_no_overlaps(&graph, &l);
        assert_eq!(l.edges.iter().filter(|r| r.is_none()).count(), 0);
        let at = |id: &str| l.nodes[graph.nodes.iter().position(|n| n.id == id).unwrap()];
        // The chain of the three tiers goes right.
        let (f, b, d) = (
            at("workload:production/frontend"),
            at("workload:production/backend"),
            at("workload:production/database"),
        );
        assert!(f.right() < b.x && b.right() < d.x, "{f:?} {b:?} {d:?}");
        // The ingress controller's namespace is left of production, DNS
        // right of it; the world sends (left column), the external API only
        // receives (last column).
        let ingress = at("workload:ingress-nginx/controller");
        let dns = at("workload:kube-system/kube-dns");
        assert!(ingress.right() < f.x && d.right() < dns.x);
        let world = at("world");
        let api = at("cidr:203.0.113.0/24");
        assert!(l.nodes.iter().all(|r| world.x <= r.x && r.x <= api.x));
        let names: Vec<&str> = l.groups.iter().map(|g| g.namespace.as_str()).collect();
        assert_eq!(
            names,
            ["ingress-nginx", "kube-system", "monitoring", "production"]
        );
    }

    #[test]
    fn edges_go_around_the_nodes_between_their_ends() {
        // host → b passes a on the way unless it goes around.
        let graph = fixtures::aggregated();
        let l = layout(&graph);
        let k = graph.edges.iter().position(|e| e.from == "host").unwrap();
        let route = l.edges[k].unwrap();
        let ends = [0, 1].map(|j| {
            let id = if j == 0 { "host" } else { "namespace:b" };
            graph.nodes.iter().position(|n| n.id == id).unwrap()
        });
        let obstacles = Obstacles::new(&l.nodes);
        assert_eq!(blockers(&route, &obstacles, ends), Vec::<usize>::new());
        // Its label is clear of every node.
        let label = route.label;
        assert!(l.nodes.iter().all(|r| !(label.x > r.x
            && label.x < r.x + r.w
            && label.y > r.y - 12.0
            && label.y < r.y + r.h)));
        // Every route of the three tiers stays in the picture.
        let graph = fixtures::three_tier();
        let l = layout(&graph);
        for route in l.edges.iter().flatten() {
            for step in 0..=16 {
                let p = route.at(f64::from(step) / 16.0);
                assert!(
                    p.y >= 0.0 && p.y <= l.height,
                    "{route:?} leaves the picture"
                );
            }
        }
    }

    #[test]
    fn layout_is_deterministic() {
        let graph = fixtures::three_tier();
        assert_eq!(layout(&graph), layout(&graph));
        // Same nodes and edges in another order: the same positions per id.
        let mut shuffled = graph.clone();
        shuffled.nodes.reverse();
        shuffled.edges.reverse();
        let (a, b) = (layout(&graph), layout(&shuffled));
        for (node, rect) in graph.nodes.iter().zip(&a.nodes) {
            let k = shuffled.nodes.iter().position(|n| n.id == node.id).unwrap();
            assert_eq!(*rect, b.nodes[k], "{}", node.id);
        }
    }

    #[test]
    fn two_hundred_workloads_make_a_grid_without_overlaps() {
        let graph = fixtures::many(200, 7);
        let l = layout(&graph);
        assert_no_overlaps(&graph, &l);
        // A grid: neither a tower nor a line.
        assert!(
            l.height < 12.0 * (NODE_H + NODE_GAP_Y) * 3.0,
            "{}",
            l.height
        );
        assert!(l.width < 40.0 * NODE_W, "{}", l.width);
        assert!(l.edges.iter().all(Option::is_some));
    }

    #[test]
    fn aggregated_namespaces_and_cycles() {
        let graph = fixtures::aggregated();
        let l = layout(&graph);
        assert_no_overlaps(&graph, &l);
        assert!(l.groups.is_empty(), "namespace nodes are not boxed");
        assert!(l.edges.iter().all(Option::is_some));
    }

    #[test]
    fn long_layerings_are_squeezed_in_order() {
        assert_eq!(squeeze(vec![0, 1, 2], 4), [0, 1, 2]);
        assert_eq!(
            squeeze(vec![0, 1, 2, 3, 4, 5, 6, 7], 4),
            [0, 0, 1, 1, 2, 2, 3, 3]
        );
        assert_eq!(column_height(3), MIN_PER_COLUMN);
        assert_eq!(column_height(200), 20);
    }

    #[test]
    fn layering_follows_edges_and_breaks_cycles() {
        // 0 → 1 → 2 → 0 (a cycle), 1 → 3, 4 alone, 5 → 5.
        let l = layers(6, &[(0, 1), (1, 2), (2, 0), (1, 3), (5, 5)]);
        assert_eq!(l, [0, 1, 2, 2, 0, 0]);
        // A long chain, deeper than a recursive walk could go.
        let chain: Vec<(usize, usize)> = (0..5000).map(|i| (i, i + 1)).collect();
        assert_eq!(layers(5001, &chain)[5000], 5000);
    }

    #[test]
    fn edges_to_unknown_nodes_are_not_routed() {
        let mut graph = fixtures::three_tier();
        graph.edges[0].to = "workload:nowhere/ghost".into();
        let l = layout(&graph);
        assert!(l.edges[0].is_none());
        assert!(l.edges[1..].iter().all(Option::is_some));
    }

    #[test]
    fn empty_graph() {
        let l = layout(&Graph::default());
        assert!(l.nodes.is_empty() && l.width > 0.0 && l.height > 0.0);
    }
}

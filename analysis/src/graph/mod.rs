//! `palisade graph`: the allowed connectivity of a scope, as one
//! [`Graph`] value that every renderer draws.
//!
//! [`compute`] surveys the scope with the compiler's own judgement
//! (`connectivity.rs`), then groups the ends into drawn nodes
//! (`build.rs`); `dot.rs`, `table.rs`, `svg.rs` and `html.rs` (with
//! `layout.rs`) render the result (JSON is the model itself, through
//! serde). `overlay.rs` lays what the agent saw on it (`--live`).

mod build;
mod connectivity;
pub mod dot;
#[cfg(test)]
mod fixtures;
pub mod html;
mod layout;
mod model;
mod overlay;
pub mod svg;
pub mod table;

pub use build::WORKLOAD_LABELS;
pub use connectivity::{
    Allowed, Connectivity, End, EndKind, PORT_PROTOCOLS, Scope, ScopeError, survey, survey_regions,
};
pub use model::{Edge, EdgeKind, Graph, Isolation, Node, NodeKind, PortSpec, RuleRef, Tier};
pub use overlay::{Observed, SeenDrop, SeenFlow};

use palisade_compiler::Compiler;

/// The graph of `scope` as the compiler judges it. `rejected` names the
/// objects left out (invalid), which makes the picture partial.
pub fn compute(c: &Compiler, scope: &Scope, rejected: Vec<String>) -> Result<Graph, ScopeError> {
    compute_observed(c, scope, rejected, None)
}

/// [`compute`], with the live overlay of what the agent saw (`--live`):
/// drop counts per edge, denied attempts, used and unused allowed edges.
/// The allowed graph is the same computation either way.
pub fn compute_observed(
    c: &Compiler,
    scope: &Scope,
    rejected: Vec<String>,
    observed: Option<&Observed>,
) -> Result<Graph, ScopeError> {
    let conn = survey(c, scope)?;
    let observed = observed.map(|o| overlay::resolve(c, &conn, o));
    Ok(build::build(&conn, scope, rejected, observed.as_ref()))
}

impl PortSpec {
    /// Whether it holds `protocol` (an IP protocol number) to `port`.
    pub fn allows(&self, protocol: u8, port: u16) -> bool {
        match self.protocol.as_str() {
            "any" => true,
            "other" => !palisade_common::proto::has_ports(protocol),
            p => {
                p == palisade_common::proto::Name(protocol).to_string()
                    && (self.first..=self.last).contains(&port)
            }
        }
    }
}

impl Graph {
    /// The node that stands for pod `pod` (`NS/NAME`), if drawn.
    pub fn node_of_pod(&self, pod: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.pods.iter().any(|p| p == pod))
    }

    /// The allowed edge from node `from` to node `to`, if any.
    pub fn allowed_edge(&self, from: &str, to: &str) -> Option<&Edge> {
        self.edges
            .iter()
            .find(|e| e.kind == EdgeKind::Allowed && e.from == from && e.to == to)
    }

    /// Whether the picture is partial (objects were left out).
    pub fn partial(&self) -> bool {
        !self.rejected.is_empty()
    }

    /// The denied-attempt edge from node `from` to node `to`, if any.
    pub fn denied_edge(&self, from: &str, to: &str) -> Option<&Edge> {
        self.edges
            .iter()
            .find(|e| e.kind == EdgeKind::Denied && e.from == from && e.to == to)
    }
}

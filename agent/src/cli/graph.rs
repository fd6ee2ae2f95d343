//! `palisade graph`: what policy allows between the workloads of a scope,
//! offline on manifest files (no agent, no root). The computation and the
//! renderers live in `palisade_analysis::graph`; this loads the manifests
//! (the loader `explain` uses) and picks the renderer.

use std::path::PathBuf;

use palisade_analysis::graph::{self, Graph, Node, Scope, ScopeError};

use crate::explain::{LoadError, load_files, manifest_files};

/// Where the cluster comes from.
#[derive(Clone, Debug)]
pub enum Input {
    /// Every manifest of a directory.
    Dir(PathBuf),
    /// These files.
    Files(Vec<PathBuf>),
}

/// How to print the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The model, as JSON.
    Json,
    /// Graphviz.
    Dot,
    /// Truth tables, pods × pods per port and protocol.
    Table,
    /// A drawing, as SVG.
    Svg,
    /// One self-contained HTML page (inline SVG and script).
    Html,
}

/// `palisade graph` failed.
#[derive(Debug, thiserror::Error)]
pub enum GraphRunError {
    /// Loading manifests failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The scope names nothing known.
    #[error(transparent)]
    Scope(#[from] ScopeError),
}

/// The files `input` names.
pub fn files(input: &Input) -> Result<Vec<PathBuf>, LoadError> {
    match input {
        Input::Dir(d) => manifest_files(d),
        Input::Files(f) => Ok(f.clone()),
    }
}

/// The graph of `scope`, and warnings (files skipped, kinds not enforced).
/// Rejected objects are named in [`Graph::rejected`].
pub fn compute(input: &Input, scope: &Scope) -> Result<(Graph, Vec<String>), GraphRunError> {
    let (c, _, warnings) = load_files(&files(input)?)?;
    // Files that are not manifests are only warned about, as `explain`
    // does; invalid objects make the picture partial.
    let rejected: Vec<String> = c.rejections().values().map(|e| e.to_string()).collect();
    let g = graph::compute(&c, scope, rejected)?;
    Ok((g, warnings))
}

/// Whether `n` is what `scope` is about (the table marks pairs outside).
fn in_scope(scope: &Scope, n: &Node) -> bool {
    match scope {
        Scope::Namespace(ns) => n.namespace.as_deref() == Some(ns.as_str()),
        Scope::Pod(p) => n.pods.contains(&p.to_string()),
        Scope::AllNamespaces => n.namespace.is_some(),
    }
}

/// Renders `g` in `format`.
pub fn render(g: &Graph, scope: &Scope, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(g).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Dot => graph::dot::render(g),
        Format::Table => graph::table::render(g, &|n| in_scope(scope, n)),
        Format::Svg => graph::svg::render(g),
        Format::Html => graph::html::render(g),
    }
}

//! `palisade graph`: what policy allows between the workloads of a scope,
//! offline on manifest files (no agent, no root) or live from the agent's
//! model with the overlay of what it saw (`--live`: the agent computes the
//! graph and answers it as JSON over the control socket). The computation
//! and the renderers live in `palisade_analysis::graph`; this loads the
//! manifests (the loader `explain` uses) or asks the agent, and picks the
//! renderer.

use std::path::PathBuf;
use std::time::Duration;

use palisade_analysis::graph::{self, Graph, Node, Scope, ScopeError};

use crate::control::{ControlError, GraphRequest, Request, request};
use crate::explain::{LoadError, load_files, manifest_files};

/// Where the cluster comes from.
#[derive(Clone, Debug)]
pub enum Input {
    /// Every manifest of a directory.
    Dir(PathBuf),
    /// These files.
    Files(Vec<PathBuf>),
    /// The running agent's model, at this control socket, with drops over
    /// this many seconds (default: the agent's).
    Live {
        /// The control socket.
        socket: PathBuf,
        /// The window, in seconds.
        window_seconds: Option<u64>,
    },
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
    /// The scope is malformed.
    #[error("{0}")]
    BadScope(String),
    /// `--window` is malformed.
    #[error("--window {0:?}: expected a duration such as 300, 90s, 5m or 1h")]
    BadWindow(String),
    /// The agent could not be asked.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The agent answered with an error.
    #[error("the agent: {0}")]
    Agent(String),
}

/// Parses `--window`: seconds, or a number with `s`, `m` or `h`.
pub fn parse_window(s: &str) -> Result<u64, GraphRunError> {
    let bad = || GraphRunError::BadWindow(s.to_string());
    let t = s.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" | "min" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(bad());
    }
    Ok(secs)
}

/// The files `input` names.
pub fn files(input: &Input) -> Result<Vec<PathBuf>, LoadError> {
    match input {
        Input::Dir(d) => manifest_files(d),
        Input::Files(f) => Ok(f.clone()),
        Input::Live { .. } => Ok(Vec::new()),
    }
}

/// The graph `req` asks for, and warnings (files skipped, kinds not
/// enforced). Rejected objects are named in [`Graph::rejected`].
pub fn compute(input: &Input, req: &GraphRequest) -> Result<(Graph, Vec<String>), GraphRunError> {
    // Checked here too: a malformed scope never reaches the agent.
    let scope = req.scope().map_err(GraphRunError::BadScope)?;
    if let Input::Live {
        socket,
        window_seconds,
    } = input
    {
        let req = GraphRequest {
            window_seconds: *window_seconds,
            ..req.clone()
        };
        let r = request(socket, &Request::Graph(req), Duration::from_secs(60))?;
        if !r.ok {
            return Err(GraphRunError::Agent(
                r.error.unwrap_or_else(|| "unknown error".into()),
            ));
        }
        let g: Graph = serde_json::from_value(r.data.unwrap_or_default())
            .map_err(|e| GraphRunError::Agent(format!("bad answer: {e}")))?;
        return Ok((g, Vec::new()));
    }
    let (c, _, warnings) = load_files(&files(input)?)?;
    // Files that are not manifests are only warned about, as `explain`
    // does; invalid objects make the picture partial.
    let rejected: Vec<String> = c.rejections().values().map(|e| e.to_string()).collect();
    let g = graph::compute(&c, &scope, rejected)?;
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

#[cfg(test)]
mod tests {
    use super::parse_window;

    #[test]
    fn windows() {
        for (s, secs) in [
            ("300", 300),
            ("90s", 90),
            ("5m", 300),
            ("2min", 120),
            ("1h", 3600),
        ] {
            assert_eq!(parse_window(s).unwrap(), secs, "{s}");
        }
        for bad in ["", "0", "5d", "m", "-1", "1.5m"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }
}

//! `palisade endpoint list` and `palisade policy get NS/NAME`: what the
//! running agent has, as a table or as JSON/YAML.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::control::{ControlError, Request, request};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Human-readable.
    Text,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// The command failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The agent could not be asked.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The agent answered with an error.
    #[error("{0}")]
    Agent(String),
    /// Bad argument.
    #[error("{0}")]
    Usage(String),
}

fn ask(socket: &Path, req: &Request) -> Result<Value, InspectError> {
    let r = request(socket, req, Duration::from_secs(30))?;
    if !r.ok {
        return Err(InspectError::Agent(
            r.error.unwrap_or_else(|| "unknown error".into()),
        ));
    }
    Ok(r.data.unwrap_or(Value::Null))
}

fn render(v: &Value, f: Format, text: impl FnOnce(&Value) -> String) -> String {
    match f {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()),
        Format::Yaml => serde_yaml_ng::to_string(v).unwrap_or_default(),
        Format::Text => text(v),
    }
}

fn yes(v: &Value) -> &'static str {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
}

/// `palisade endpoint list`.
pub fn endpoint_list(socket: &Path, f: Format) -> Result<String, InspectError> {
    let v = ask(socket, &Request::Endpoints)?;
    Ok(render(&v, f, |v| {
        let mut rows = vec![[
            "POD".to_string(),
            "INTERFACE".into(),
            "IDENTITY".into(),
            "INGRESS".into(),
            "EGRESS".into(),
            "ATTACHED".into(),
            "STATE".into(),
        ]];
        for e in v.as_array().into_iter().flatten() {
            let iso = |d: &str| {
                let mut s = if e["isolated"][d].as_bool() == Some(true) {
                    "isolated".to_string()
                } else {
                    "open".to_string()
                };
                if e["audit"][d].as_bool() == Some(true) {
                    s.push_str("+audit");
                }
                s
            };
            rows.push([
                e["pod"].as_str().unwrap_or("").to_string(),
                e["interface"].as_str().unwrap_or("-").to_string(),
                e["identity"].as_u64().map_or("-".into(), |i| i.to_string()),
                iso("ingress"),
                iso("egress"),
                yes(&e["attached"]).into(),
                e["state"].as_str().unwrap_or("").to_string(),
            ]);
        }
        let widths: Vec<usize> = (0..7)
            .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        rows.iter()
            .map(|r| {
                let cells: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                format!("{}\n", cells.join("  ").trim_end())
            })
            .collect()
    }))
}

/// `palisade policy get NS/NAME` (a NetworkPolicy) or `palisade policy get
/// NAME` (a ClusterNetworkPolicy, which is cluster-scoped).
pub fn policy_get(socket: &Path, name: &str, f: Format) -> Result<String, InspectError> {
    if !name.contains('/') && !name.is_empty() {
        return cluster_policy_get(socket, name, f);
    }
    let Some((namespace, pname)) = name
        .split_once('/')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'))
    else {
        return Err(InspectError::Usage(format!(
            "policy {name:?}: expected NAMESPACE/NAME (a NetworkPolicy) or NAME (a ClusterNetworkPolicy)"
        )));
    };
    let v = ask(
        socket,
        &Request::PolicyGet {
            namespace: namespace.into(),
            name: pname.into(),
        },
    )?;
    Ok(render(&v, f, |v| {
        let mut s = format!(
            "policy {} ({})\n",
            v["policy"].as_str().unwrap_or(""),
            v["mode"].as_str().unwrap_or("")
        );
        for d in ["ingress", "egress"] {
            match v["isolates"][d]["rules"].as_u64() {
                Some(n) => s.push_str(&format!("  {d}: isolates selected pods, {n} rule(s)\n")),
                None => s.push_str(&format!("  {d}: not affected\n")),
            }
        }
        let sel: Vec<&str> = v["selects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        s.push_str(&format!(
            "  selects on this node: {}\n",
            if sel.is_empty() {
                "none".into()
            } else {
                sel.join(", ")
            }
        ));
        for ep in v["endpoints"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "  entries of {} (all policies selecting it, in the directions this one isolates):\n",
                ep["pod"].as_str().unwrap_or("")
            ));
            for e in ep["entries"].as_array().into_iter().flatten() {
                s.push_str(&format!(
                    "    {:<7} {:<5} {} ports {}{}\n",
                    e["direction"].as_str().unwrap_or(""),
                    e["protocol"].as_str().unwrap_or(""),
                    e["peer"].as_str().unwrap_or(""),
                    e["ports"].as_str().unwrap_or(""),
                    if e["view"] == "audit" {
                        " (audit view)"
                    } else {
                        ""
                    }
                ));
            }
        }
        s
    }))
}

/// `palisade policy get NAME` for a ClusterNetworkPolicy.
fn cluster_policy_get(socket: &Path, name: &str, f: Format) -> Result<String, InspectError> {
    let v = ask(socket, &Request::ClusterPolicyGet { name: name.into() })?;
    Ok(render(&v, f, |v| {
        let text = |x: &Value| x.as_str().unwrap_or("").to_string();
        let mut s = format!(
            "ClusterNetworkPolicy {} (tier {}, priority {}, {})\n",
            text(&v["policy"]),
            text(&v["tier"]),
            v["priority"],
            text(&v["mode"])
        );
        for r in v["rules"].as_array().into_iter().flatten() {
            s.push_str(&format!("  rule {}\n", text(&r["rule"])));
        }
        let names =
            |x: &Value| -> Vec<String> { x.as_array().into_iter().flatten().map(text).collect() };
        let sel = names(&v["selects"]);
        s.push_str(&format!(
            "  subject on this node: {}\n",
            if sel.is_empty() {
                "no local pod".into()
            } else {
                sel.join(", ")
            }
        ));
        let ties = names(&v["same_priority"]);
        if !ties.is_empty() {
            s.push_str(&format!(
                "  same priority as: {} (consulted by name; the API leaves this order undefined)\n",
                ties.join(", ")
            ));
        }
        for ep in v["endpoints"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "  entries of {} where a rule of this policy is its tier's first match:\n",
                text(&ep["pod"])
            ));
            let entries = ep["entries"].as_array().map_or(&[][..], Vec::as_slice);
            if entries.is_empty() {
                s.push_str("    none (earlier rules of the tier decide)\n");
            }
            for e in entries {
                s.push_str(&format!(
                    "    {:<7} {:<5} {} ports {}: {}\n",
                    text(&e["direction"]),
                    text(&e["protocol"]),
                    text(&e["peer"]),
                    text(&e["ports"]),
                    text(&e["rule"])
                ));
            }
        }
        s
    }))
}

//! Lab description files: which nodes, namespaces, pods (labels, served
//! ports) and external hosts a lab has, in YAML. `cargo xtask lab up`, the
//! demo and the conformance suite build labs from them ([`crate::AppLab`]).
//!
//! ```yaml
//! name: three-tier                 # namespace prefix: plab-three-tier-<pid>-…
//! nodes: [node-1, node-2]
//! manifests: [app.yaml]            # Kubernetes Namespace/Pod documents, relative to this file
//! namespaces:                      # more namespaces: name → labels
//!   tools: {team: sre}
//! pods:                            # more pods (node: round-robin when omitted)
//! - {name: toolbox, namespace: tools, labels: {app: toolbox},
//!    ports: [{port: 8080}, {port: 53, protocol: UDP, name: dns}]}
//! externalHosts:                   # addresses that stand for the outside, routed only in the lab
//! - {name: metadata, node: node-1, addresses: [169.254.169.254], ports: [{port: 80}]}
//! ```
//!
//! Pods from `manifests` take their name, namespace, labels, `spec.nodeName`
//! and `spec.containers[].ports` from the documents (other kinds are
//! skipped); every namespace a pod uses exists even if no document names it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A transport protocol a pod serves (Kubernetes spelling).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum Protocol {
    /// TCP (the Kubernetes default).
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP (answered by the raw SCTP responder).
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    /// `TCP`, `UDP` or `SCTP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A served port (a container port).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Port number.
    pub port: u16,
    /// Protocol (default TCP).
    #[serde(default)]
    pub protocol: Protocol,
    /// Port name, for named-port policies.
    #[serde(default)]
    pub name: Option<String>,
}

/// A pod in a description.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodDescription {
    /// Pod name (unique within its namespace).
    pub name: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Node; round-robin over the nodes when omitted.
    #[serde(default)]
    pub node: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Served ports.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
}

/// An external host in a description.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalDescription {
    /// Host name.
    pub name: String,
    /// Node it hangs off (default: the first node).
    #[serde(default)]
    pub node: Option<String>,
    /// Addresses it holds (routed only inside the lab).
    pub addresses: Vec<IpAddr>,
    /// Served ports.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
}

/// A whole lab description.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabDescription {
    /// Lab name: namespaces are `plab-<name>-<pid>-…`.
    #[serde(default = "default_name")]
    pub name: String,
    /// Node names (at least one).
    #[serde(default = "default_nodes")]
    pub nodes: Vec<String>,
    /// Kubernetes manifest files (relative to the description file) whose
    /// Namespaces and Pods join the lab.
    #[serde(default)]
    pub manifests: Vec<PathBuf>,
    /// Namespaces and their labels.
    #[serde(default)]
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Pods.
    #[serde(default)]
    pub pods: Vec<PodDescription>,
    /// External hosts.
    #[serde(default)]
    pub external_hosts: Vec<ExternalDescription>,
}

fn default_name() -> String {
    "lab".into()
}

fn default_nodes() -> Vec<String> {
    vec!["node-1".into()]
}

/// A description that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DescriptionError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The content is inconsistent.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl LabDescription {
    /// Reads a description file and the manifests it names.
    pub fn from_file(path: &Path) -> Result<Self, DescriptionError> {
        let text = read(path)?;
        let mut d = Self::from_yaml(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for m in std::mem::take(&mut d.manifests) {
            let file = base.join(&m);
            d.add_manifests(&read(&file)?, &file)?;
        }
        d.check(path)?;
        Ok(d)
    }

    /// Parses a description (its `manifests` are not read).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, DescriptionError> {
        serde_yaml_ng::from_str(text).map_err(|e| DescriptionError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Adds the Namespaces and Pods of a multi-document Kubernetes YAML text.
    pub fn add_manifests(&mut self, text: &str, path: &Path) -> Result<(), DescriptionError> {
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let value =
                serde_json::Value::deserialize(doc).map_err(|e| DescriptionError::Parse {
                    path: path.to_owned(),
                    message: format!("document {}: {e}", i + 1),
                })?;
            let invalid = |message: String| DescriptionError::Invalid {
                path: path.to_owned(),
                message: format!("document {}: {message}", i + 1),
            };
            let str_at = |p: &str| value.pointer(p).and_then(|v| v.as_str()).map(str::to_owned);
            let labels = || -> BTreeMap<String, String> {
                value
                    .pointer("/metadata/labels")
                    .and_then(|v| v.as_object())
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            match str_at("/kind").as_deref() {
                Some("Namespace") => {
                    let name = str_at("/metadata/name")
                        .ok_or_else(|| invalid("Namespace without metadata.name".into()))?;
                    self.namespaces.insert(name, labels());
                }
                Some("Pod") => {
                    let name = str_at("/metadata/name")
                        .ok_or_else(|| invalid("Pod without metadata.name".into()))?;
                    let mut ports = Vec::new();
                    let containers = value.pointer("/spec/containers").and_then(|c| c.as_array());
                    for c in containers.into_iter().flatten() {
                        for p in c
                            .get("ports")
                            .and_then(|p| p.as_array())
                            .into_iter()
                            .flatten()
                        {
                            let port = p
                                .get("containerPort")
                                .and_then(|v| v.as_u64())
                                .and_then(|v| u16::try_from(v).ok())
                                .filter(|v| *v > 0)
                                .ok_or_else(|| {
                                    invalid(format!("Pod {name}: containerPort must be 1..=65535"))
                                })?;
                            let protocol = match p.get("protocol").and_then(|v| v.as_str()) {
                                None | Some("TCP") => Protocol::Tcp,
                                Some("UDP") => Protocol::Udp,
                                Some("SCTP") => Protocol::Sctp,
                                Some(other) => {
                                    return Err(invalid(format!(
                                        "Pod {name}: unknown protocol {other:?}"
                                    )));
                                }
                            };
                            let name = p.get("name").and_then(|v| v.as_str()).map(str::to_owned);
                            ports.push(PortSpec {
                                port,
                                protocol,
                                name,
                            });
                        }
                    }
                    self.pods.push(PodDescription {
                        name,
                        namespace: str_at("/metadata/namespace")
                            .unwrap_or_else(|| "default".into()),
                        node: str_at("/spec/nodeName"),
                        labels: labels(),
                        ports,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks names and references; fills in nodes and namespaces.
    pub fn check(&mut self, path: &Path) -> Result<(), DescriptionError> {
        let invalid = |message: String| DescriptionError::Invalid {
            path: path.to_owned(),
            message,
        };
        if self.nodes.is_empty() {
            return Err(invalid("nodes: at least one node is needed".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        let nodes = self.nodes.clone();
        for (i, pod) in self.pods.iter_mut().enumerate() {
            if !seen.insert((pod.namespace.clone(), pod.name.clone())) {
                return Err(invalid(format!(
                    "pod {}/{} appears twice",
                    pod.namespace, pod.name
                )));
            }
            match &pod.node {
                Some(n) if !nodes.contains(n) => {
                    return Err(invalid(format!(
                        "pod {}/{}: node {n:?} is not in nodes {nodes:?}",
                        pod.namespace, pod.name
                    )));
                }
                Some(_) => {}
                None => pod.node = Some(nodes[i % nodes.len()].clone()),
            }
            self.namespaces.entry(pod.namespace.clone()).or_default();
        }
        for ext in &mut self.external_hosts {
            match &ext.node {
                Some(n) if !nodes.contains(n) => {
                    return Err(invalid(format!(
                        "external host {}: node {n:?} is not in nodes {nodes:?}",
                        ext.name
                    )));
                }
                Some(_) => {}
                None => ext.node = Some(nodes[0].clone()),
            }
        }
        Ok(())
    }
}

fn read(path: &Path) -> Result<String, DescriptionError> {
    std::fs::read_to_string(path).map_err(|source| DescriptionError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_and_inline_pods_merge() {
        let mut d = LabDescription::from_yaml(
            "name: t\nnodes: [n1, n2]\npods:\n- {name: c, namespace: tools, ports: [{port: 53, protocol: UDP}]}\nexternalHosts:\n- {name: world, addresses: [203.0.113.10]}\n",
            Path::new("lab.yaml"),
        )
        .unwrap();
        d.add_manifests(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n  labels: {team: a}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: prod\n  labels: {app: web}\nspec:\n  containers:\n  - name: c\n    image: x\n    ports:\n    - {containerPort: 80, name: http}\n---\nkind: Service\nmetadata: {name: s}\n",
            Path::new("app.yaml"),
        )
        .unwrap();
        d.check(Path::new("lab.yaml")).unwrap();
        assert_eq!(d.pods.len(), 2);
        assert_eq!(d.pods[1].ports[0].name.as_deref(), Some("http"));
        assert_eq!(d.pods[1].node.as_deref(), Some("n2"));
        assert_eq!(d.namespaces["prod"]["team"], "a");
        assert!(d.namespaces.contains_key("tools"));
        assert_eq!(d.external_hosts[0].node.as_deref(), Some("n1"));
    }

    #[test]
    fn unknown_nodes_are_rejected() {
        let mut d = LabDescription::from_yaml(
            "nodes: [n1]\npods:\n- {name: c, namespace: a, node: n9}\n",
            Path::new("lab.yaml"),
        )
        .unwrap();
        let e = d.check(Path::new("lab.yaml")).unwrap_err().to_string();
        assert!(e.contains("node \"n9\""), "{e}");
    }
}

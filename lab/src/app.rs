//! A lab built from a [`LabDescription`]: its pods (Kubernetes namespace,
//! name, labels, served ports) running their servers, and the matching
//! Namespace/Pod manifests for the agent's `--manifests` source.
//!
//! Lab pods are named `<namespace>-<name>` (one lab-wide name space), so
//! `x/a` and `y/a` coexist. Each pod serves its ports: TCP banner servers,
//! UDP echo servers and the raw SCTP responder ([`crate::serve`]); external
//! hosts serve theirs. Everything stops and is deleted when the [`AppLab`]
//! drops.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde_json::{Value, json};

use crate::description::{LabDescription, PortSpec, Protocol};
use crate::servers::{Servers, Services, serve};
use crate::topology::{Endpoint, ExternalHost, Lab, LabError, LabSpec, Pod};

/// The label the API server puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A pod as Kubernetes sees it, beside its lab namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPod {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// The lab pod's name (`<namespace>-<name>`).
    pub lab_name: String,
    /// Node name.
    pub node: String,
    /// Current labels.
    pub labels: BTreeMap<String, String>,
    /// Served ports.
    pub ports: Vec<PortSpec>,
}

/// A running lab with its application pods and servers.
#[derive(Debug)]
pub struct AppLab {
    // Servers first: they stop before their namespaces go.
    _servers: Vec<Servers>,
    pods: Vec<AppPod>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    lab: Lab,
}

/// The servers for `ports`.
pub fn services(ports: &[PortSpec]) -> Services {
    ports.iter().fold(Services::new(), |s, p| match p.protocol {
        Protocol::Tcp => s.tcp(p.port),
        Protocol::Udp => s.udp(p.port),
        Protocol::Sctp => s.sctp(p.port),
    })
}

impl AppLab {
    /// Builds the lab of `desc` (namespaces `<prefix>-<pid>-…`) and starts
    /// every pod's and external host's servers. On error, whatever was built
    /// is torn down.
    pub fn up(desc: &LabDescription, prefix: &str) -> Result<Self, LabError> {
        let mut spec = LabSpec::new(prefix);
        for n in &desc.nodes {
            spec = spec.node(n);
        }
        let first = desc.nodes.first().map(String::as_str).unwrap_or("node-1");
        let mut pods = Vec::new();
        for p in &desc.pods {
            let lab_name = format!("{}-{}", p.namespace, p.name);
            let node = p.node.clone().unwrap_or_else(|| first.to_owned());
            spec = spec.pod(&lab_name, &p.namespace, &node);
            pods.push(AppPod {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                lab_name,
                node,
                labels: p.labels.clone(),
                ports: p.ports.clone(),
            });
        }
        for e in &desc.external_hosts {
            spec = spec.external_host(&e.name, e.node.as_deref().unwrap_or(first), &e.addresses);
        }
        let lab = spec.up()?;
        let mut servers = Vec::new();
        for p in &pods {
            if !p.ports.is_empty() {
                servers.push(serve(lab.pod(&p.lab_name), &services(&p.ports))?);
            }
        }
        for e in &desc.external_hosts {
            if !e.ports.is_empty() {
                servers.push(serve(lab.external_host(&e.name), &services(&e.ports))?);
            }
        }
        let mut namespaces = desc.namespaces.clone();
        for p in &pods {
            namespaces.entry(p.namespace.clone()).or_default();
        }
        Ok(Self {
            _servers: servers,
            pods,
            namespaces,
            lab,
        })
    }

    /// The underlying lab (nodes, lab pods, external hosts).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The application pods, in description order.
    pub fn pods(&self) -> &[AppPod] {
        &self.pods
    }

    /// Namespaces and their labels (without the automatic name label).
    pub fn namespaces(&self) -> &BTreeMap<String, BTreeMap<String, String>> {
        &self.namespaces
    }

    /// The application pod `namespace/name`, if any.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&AppPod> {
        self.pods
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }

    /// The lab pod (addresses, namespace) of `namespace/name`. Panics if
    /// there is none.
    pub fn pod(&self, namespace: &str, name: &str) -> &Pod {
        let p = self
            .get(namespace, name)
            .unwrap_or_else(|| panic!("no pod {namespace}/{name} in lab {}", self.lab.id()));
        self.lab.pod(&p.lab_name)
    }

    /// The external host `name`. Panics if there is none.
    pub fn external(&self, name: &str) -> &ExternalHost {
        self.lab.external_host(name)
    }

    /// Replaces the labels of pod `namespace/name`; false if there is none.
    pub fn set_pod_labels(
        &mut self,
        namespace: &str,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> bool {
        match self
            .pods
            .iter_mut()
            .find(|p| p.namespace == namespace && p.name == name)
        {
            Some(p) => {
                p.labels = labels;
                true
            }
            None => false,
        }
    }

    /// Replaces the labels of namespace `name` (the name label stays).
    pub fn set_namespace_labels(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.namespaces.insert(name.to_owned(), labels);
    }

    /// The Namespace and Pod manifests, as the API server would show them.
    pub fn manifests(&self) -> Vec<Value> {
        let mut docs: Vec<Value> = self
            .namespaces
            .iter()
            .map(|(name, labels)| namespace_manifest(name, labels))
            .collect();
        docs.extend(
            self.pods
                .iter()
                .map(|p| pod_manifest(p, self.lab.pod(&p.lab_name))),
        );
        docs
    }

    /// Writes [`AppLab::manifests`] to `dir/00-lab.yaml` (written aside,
    /// then renamed, so a watching agent never reads half a file).
    pub fn write_manifests(&self, dir: &Path) -> io::Result<()> {
        write_docs(dir, "00-lab.yaml", &self.manifests())
    }

    /// The lab pods' and hosts' labels for server banners, e.g. for a
    /// summary: `(kubernetes name, lab endpoint label, IPv4, IPv6)`.
    pub fn summary(&self) -> Vec<(String, String, String)> {
        let mut rows: Vec<(String, String, String)> = self
            .pods
            .iter()
            .map(|p| {
                let lp = self.lab.pod(&p.lab_name);
                let ports: Vec<String> = p
                    .ports
                    .iter()
                    .map(|s| format!("{}/{}", s.protocol, s.port))
                    .collect();
                (
                    format!("{}/{} on {}", p.namespace, p.name, p.node),
                    format!("{} {}", lp.ipv4(), lp.ipv6()),
                    ports.join(" "),
                )
            })
            .collect();
        for h in self.lab.external_hosts() {
            let addrs: Vec<String> = h.addrs().iter().map(|a| a.to_string()).collect();
            rows.push((
                format!("{} (external, via {})", Endpoint::label(h), h.node()),
                addrs.join(" "),
                String::new(),
            ));
        }
        rows
    }
}

/// A Namespace manifest with `kubernetes.io/metadata.name` set.
pub fn namespace_manifest(name: &str, labels: &BTreeMap<String, String>) -> Value {
    let mut labels = labels.clone();
    labels.insert(NAMESPACE_NAME_LABEL.into(), name.into());
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "labels": labels}})
}

/// A Pod manifest for an application pod running as lab pod `lab_pod`:
/// `spec.nodeName`, one container with its ports, `status.podIP(s)`.
pub fn pod_manifest(p: &AppPod, lab_pod: &Pod) -> Value {
    let ports: Vec<Value> = p
        .ports
        .iter()
        .map(|s| {
            let mut v = json!({"containerPort": s.port, "protocol": s.protocol.as_str()});
            if let Some(n) = &s.name {
                v["name"] = json!(n);
            }
            v
        })
        .collect();
    let (v4, v6) = (lab_pod.ipv4().to_string(), lab_pod.ipv6().to_string());
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": p.name, "namespace": p.namespace,
                        "uid": format!("plab-{}-{}", p.namespace, p.name), "labels": p.labels},
           "spec": {"nodeName": p.node,
                    "containers": [{"name": "serve", "image": "palisade-lab", "ports": ports}]},
           "status": {"phase": "Running", "podIP": v4,
                      "podIPs": [{"ip": v4}, {"ip": v6}]}})
}

/// Writes JSON documents (YAML 1.2 is a superset of JSON) as one
/// multi-document file `dir/file`, written aside then renamed.
pub fn write_docs(dir: &Path, file: &str, docs: &[Value]) -> io::Result<()> {
    let text: Vec<String> = docs
        .iter()
        .map(|d| serde_json::to_string_pretty(d).map_err(io::Error::other))
        .collect::<Result<_, _>>()?;
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text.join("\n---\n") + "\n")?;
    std::fs::rename(&tmp, dir.join(file))
}

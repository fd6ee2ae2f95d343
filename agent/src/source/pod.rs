//! The part of a Pod the agent keeps: the fields the compiler reads, and
//! nothing else.
//!
//! The agent holds every pod of the cluster for as long as it exists
//! (remote pods feed the ipcache), and a `k8s_openapi` `Pod` is large even
//! when nearly empty: the struct alone is ~2.4 KiB, each container another
//! ~2.3 KiB, before any of the spec a real pod carries (images, env,
//! volumes, probes, resources, ...). A [`PodInfo`] keeps what enforcement
//! needs, converted back to a `Pod` only for the moment it is fed to the
//! compiler ([`PodInfo::to_pod`]). The conversion keeps every field the
//! compiler validates, with its position (container and port indexes), so
//! a pod is accepted or rejected, and an error named, exactly as before.

use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodIP, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A container port as the compiler reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// `name`.
    pub name: Option<String>,
    /// `protocol` (absent: TCP).
    pub protocol: Option<String>,
    /// `containerPort`.
    pub container_port: i32,
}

/// The fields of a Pod that the agent reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// `metadata.name`.
    pub name: Option<String>,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// `metadata.labels`, sorted by key.
    pub labels: Box<[(String, String)]>,
    /// `spec.nodeName`.
    pub node_name: Option<String>,
    /// `spec.hostNetwork`.
    pub host_network: Option<bool>,
    /// `spec.containers[].ports`: one entry per container, so that the
    /// field paths of errors keep their indexes.
    pub container_ports: Box<[Box<[PortInfo]>]>,
    /// `status.phase`.
    pub phase: Option<String>,
    /// `status.podIP`.
    pub pod_ip: Option<String>,
    /// `status.podIPs[].ip`.
    pub pod_ips: Box<[String]>,
}

impl From<Pod> for PodInfo {
    fn from(p: Pod) -> Self {
        let spec = p.spec.unwrap_or_default();
        let status = p.status.unwrap_or_default();
        PodInfo {
            name: p.metadata.name,
            namespace: p.metadata.namespace,
            uid: p.metadata.uid,
            labels: p.metadata.labels.unwrap_or_default().into_iter().collect(),
            node_name: spec.node_name,
            host_network: spec.host_network,
            container_ports: spec
                .containers
                .into_iter()
                .map(|c| {
                    c.ports
                        .unwrap_or_default()
                        .into_iter()
                        .map(|p| PortInfo {
                            name: p.name,
                            protocol: p.protocol,
                            container_port: p.container_port,
                        })
                        .collect()
                })
                .collect(),
            phase: status.phase,
            pod_ip: status.pod_ip,
            pod_ips: status
                .pod_ips
                .unwrap_or_default()
                .into_iter()
                .map(|i| i.ip)
                .collect(),
        }
    }
}

impl PodInfo {
    /// Whether the pod has an address (`status.podIP` or `podIPs`).
    pub fn has_ips(&self) -> bool {
        self.pod_ip.as_ref().is_some_and(|i| !i.is_empty()) || !self.pod_ips.is_empty()
    }

    /// Sets the pod's addresses (`status.podIP` is the first).
    pub fn set_ips(&mut self, ips: impl IntoIterator<Item = String>) {
        self.pod_ips = ips.into_iter().collect();
        self.pod_ip = self.pod_ips.first().cloned();
    }

    /// The pod as the compiler takes it.
    pub fn to_pod(&self) -> Pod {
        let labels = (!self.labels.is_empty()).then(|| self.labels.iter().cloned().collect());
        Pod {
            metadata: ObjectMeta {
                name: self.name.clone(),
                namespace: self.namespace.clone(),
                uid: self.uid.clone(),
                labels,
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: self.node_name.clone(),
                host_network: self.host_network,
                containers: self
                    .container_ports
                    .iter()
                    .map(|ports| Container {
                        ports: (!ports.is_empty()).then(|| {
                            ports
                                .iter()
                                .map(|p| ContainerPort {
                                    name: p.name.clone(),
                                    protocol: p.protocol.clone(),
                                    container_port: p.container_port,
                                    ..Default::default()
                                })
                                .collect()
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: self.phase.clone(),
                pod_ip: self.pod_ip.clone(),
                pod_ips: (!self.pod_ips.is_empty()).then(|| {
                    self.pod_ips
                        .iter()
                        .map(|ip| PodIP { ip: ip.clone() })
                        .collect()
                }),
                ..Default::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn keeps_what_the_compiler_reads() {
        let full = pod(json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u1",
                         "labels": {"b": "2", "a": "1"},
                         "annotations": {"x": "y"}, "resourceVersion": "7"},
            "spec": {"nodeName": "n1", "hostNetwork": false,
                     "containers": [
                         {"name": "side", "image": "i"},
                         {"name": "c", "image": "i", "env": [{"name": "E", "value": "v"}],
                          "ports": [{"name": "http", "containerPort": 80},
                                    {"containerPort": 53, "protocol": "UDP", "hostPort": 53}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
                       "hostIP": "192.0.2.1"}
        }));
        let info = PodInfo::from(full.clone());
        assert_eq!(
            info.labels[..],
            [("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(info.container_ports.len(), 2, "positions are kept");
        assert!(info.container_ports[0].is_empty());
        let back = info.to_pod();
        let spec = back.spec.as_ref().unwrap();
        let full_spec = full.spec.as_ref().unwrap();
        assert_eq!(back.metadata.labels, full.metadata.labels);
        assert_eq!(back.metadata.uid, full.metadata.uid);
        assert_eq!(back.metadata.annotations, None);
        assert_eq!(spec.node_name, full_spec.node_name);
        assert_eq!(spec.host_network, full_spec.host_network);
        assert_eq!(spec.containers[0].ports, None);
        let ports = spec.containers[1].ports.as_ref().unwrap();
        assert_eq!(ports[0].name.as_deref(), Some("http"));
        assert_eq!(
            (ports[1].container_port, ports[1].protocol.as_deref()),
            (53, Some("UDP"))
        );
        assert_eq!(
            back.status.as_ref().unwrap().pod_ips,
            full.status.as_ref().unwrap().pod_ips
        );
        assert_eq!(
            back.status.as_ref().unwrap().phase.as_deref(),
            Some("Running")
        );
        // Converting again changes nothing.
        assert_eq!(PodInfo::from(back), info);
    }

    #[test]
    fn compiles_like_the_whole_pod() {
        // Valid and invalid pods: the compiler's verdict and error are the
        // same for the pod and for what the agent keeps of it.
        let cases = [
            json!({"metadata": {"name": "a", "namespace": "p", "labels": {"app": "x"}},
                   "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
                   "status": {"podIPs": [{"ip": "10.0.0.2"}]}}),
            json!({"metadata": {"name": "a", "namespace": "p"},
                   "spec": {"containers": [{"name": "c"}, {"name": "d", "ports": [{"containerPort": 70000}]}]}}),
            json!({"metadata": {"name": "a", "namespace": "p"},
                   "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "ICMP"}]}]}}),
            json!({"metadata": {"name": "a", "namespace": "p", "labels": {"bad key!": "x"}}}),
            json!({"metadata": {"name": "a", "namespace": "p"}, "status": {"podIP": "not-an-ip"}}),
            json!({"metadata": {"namespace": "p"}}),
        ];
        for v in cases {
            let full = pod(v);
            let mut c1 = palisade_compiler::Compiler::new("n1");
            let mut c2 = palisade_compiler::Compiler::new("n1");
            let r1 = c1.apply_pod(&full).map_err(|e| e.to_string());
            let r2 = c2
                .apply_pod(&PodInfo::from(full.clone()).to_pod())
                .map_err(|e| e.to_string());
            assert_eq!(r1, r2, "{full:?}");
            assert_eq!(c1.commit().ops, c2.commit().ops);
        }
    }
}

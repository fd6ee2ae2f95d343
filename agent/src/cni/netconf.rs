//! The network configuration on stdin: the chained plugin's own fields
//! (`agentSocket`, `agentTimeoutMs`) and the `prevResult` of the plugins
//! before it, from which the pod's addresses and host-side interface are
//! read. `prevResult` is kept as raw JSON: ADD prints it back unchanged.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::error::CniError;

/// CNI versions whose result format we pass through (0.3.0 introduced
/// chaining and the `interfaces`/`ips` result; 1.0.0 is the same shape).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];
/// Where the DaemonSet's agent listens (`palisade agent --socket`).
pub const DEFAULT_AGENT_SOCKET: &str = "/run/palisade/agent.sock";
/// How long ADD waits for the agent by default. Longer than the agent's
/// default `--cni-wait-ms` (5 s), after which it answers `pending`.
pub const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_millis(10_000);

/// Our entry in the plugin list.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    /// `cniVersion`.
    pub cni_version: String,
    /// `name` of the network.
    pub name: String,
    /// `agentSocket`: the agent's control socket.
    pub agent_socket: String,
    /// `agentTimeoutMs`: how long to wait for the agent's answer.
    pub agent_timeout: Duration,
    /// `prevResult` as given.
    pub prev_result: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    type_: Option<String>,
    agent_socket: Option<String>,
    agent_timeout_ms: Option<u64>,
    prev_result: Option<Value>,
}

fn invalid(field: &str, reason: impl Into<String>) -> CniError {
    CniError::InvalidConfig {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Only the version (VERSION's stdin carries nothing else, and errors are
/// reported in the request's version when it can be read).
pub fn peek_version(stdin: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct V {
        #[serde(rename = "cniVersion")]
        cni_version: Option<String>,
    }
    serde_json::from_slice::<V>(stdin).ok()?.cni_version
}

/// Whether we speak `v`.
pub fn check_version(v: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(CniError::IncompatibleVersion {
            requested: v.into(),
            supported: SUPPORTED_VERSIONS.join(", "),
        })
    }
}

impl NetConf {
    /// Parses and checks stdin.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let raw: Raw =
            serde_json::from_slice(stdin).map_err(|e| CniError::Decode(e.to_string()))?;
        let cni_version = raw
            .cni_version
            .ok_or_else(|| invalid("cniVersion", "required"))?;
        check_version(&cni_version)?;
        let name = raw.name.ok_or_else(|| invalid("name", "required"))?;
        if raw.type_.as_deref().is_none_or(str::is_empty) {
            return Err(invalid("type", "required"));
        }
        let agent_socket = raw
            .agent_socket
            .unwrap_or_else(|| DEFAULT_AGENT_SOCKET.into());
        if !agent_socket.starts_with('/') {
            return Err(invalid(
                "agentSocket",
                format!("{agent_socket:?}: must be an absolute path"),
            ));
        }
        let agent_timeout = match raw.agent_timeout_ms {
            Some(0) => return Err(invalid("agentTimeoutMs", "must be at least 1")),
            Some(ms) => Duration::from_millis(ms),
            None => DEFAULT_AGENT_TIMEOUT,
        };
        Ok(NetConf {
            cni_version,
            name,
            agent_socket,
            agent_timeout,
            prev_result: raw.prev_result.filter(|v| !v.is_null()),
        })
    }
}

/// What `prevResult` says about the pod's attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The pod's addresses (`a.b.c.d/len`), as `prevResult.ips` lists them.
    pub ips: Vec<String>,
    /// The host-side interface: the one `interfaces` entry without a
    /// `sandbox`. None when there is none (Calico lists only the pod's
    /// side) or several (a bridge and a veth): the agent then takes the
    /// output interface of the host route to the pod's address.
    pub host_ifname: Option<String>,
}

#[derive(Deserialize)]
struct Iface {
    name: String,
    #[serde(default)]
    sandbox: Option<String>,
}

#[derive(Deserialize)]
struct IpConfig {
    address: String,
    #[serde(default)]
    interface: Option<usize>,
}

#[derive(Deserialize)]
struct PrevResult {
    #[serde(default)]
    interfaces: Vec<Iface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
}

/// Reads the pod's addresses and host interface from `prevResult`.
/// Addresses on a host-side interface are not the pod's and are skipped;
/// a result without any pod address is an error (nothing to enforce on).
pub fn attachment(prev: &Value) -> Result<Attachment, CniError> {
    let r: PrevResult = serde_path_to_error::deserialize(prev)
        .map_err(|e| invalid(&format!("prevResult.{}", e.path()), e.inner().to_string()))?;
    let in_sandbox = |i: &Iface| i.sandbox.as_deref().is_some_and(|s| !s.is_empty());
    let mut ips = Vec::new();
    for (n, ip) in r.ips.iter().enumerate() {
        if let Err(e) = ip.address.parse::<ipnet::IpNet>() {
            return Err(invalid(
                &format!("prevResult.ips[{n}].address"),
                format!("{:?}: {e}", ip.address),
            ));
        }
        match ip.interface {
            None => ips.push(ip.address.clone()),
            Some(i) => match r.interfaces.get(i) {
                None => {
                    return Err(invalid(
                        &format!("prevResult.ips[{n}].interface"),
                        format!("{i}: only {} interfaces listed", r.interfaces.len()),
                    ));
                }
                Some(iface) if in_sandbox(iface) => ips.push(ip.address.clone()),
                Some(_) => {} // an address of the host side (a bridge gateway)
            },
        }
    }
    if ips.is_empty() {
        return Err(invalid(
            "prevResult.ips",
            "no address of the pod: the plugins before palisade-cni assigned none",
        ));
    }
    let host: Vec<&Iface> = r.interfaces.iter().filter(|i| !in_sandbox(i)).collect();
    Ok(Attachment {
        ips,
        host_ifname: match host.as_slice() {
            [one] => Some(one.name.clone()),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ptp_result() {
        let prev = json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "veth1234", "mac": "aa:bb:cc:dd:ee:ff"},
                           {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p"}],
            "ips": [{"address": "10.1.0.5/32", "gateway": "10.1.0.1", "interface": 1},
                    {"address": "fd00::5/128", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0"}]});
        assert_eq!(
            attachment(&prev).unwrap(),
            Attachment {
                ips: vec!["10.1.0.5/32".into(), "fd00::5/128".into()],
                host_ifname: Some("veth1234".into())
            }
        );
    }

    #[test]
    fn calico_and_bridge_results() {
        // Only the pod's side listed: the agent finds the host side by route.
        let calico = json!({"interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/p"}],
                            "ips": [{"address": "10.1.0.5/32", "interface": 0}]});
        assert_eq!(attachment(&calico).unwrap().host_ifname, None);
        // Bridge: the gateway address sits on the bridge, not the pod.
        let bridge = json!({"interfaces": [{"name": "cni0"}, {"name": "veth9"},
                                           {"name": "eth0", "sandbox": "/proc/1/ns/net"}],
                            "ips": [{"address": "10.1.0.5/24", "interface": 2},
                                    {"address": "10.1.0.1/24", "interface": 0}]});
        let a = attachment(&bridge).unwrap();
        assert_eq!((a.ips, a.host_ifname), (vec!["10.1.0.5/24".into()], None));
    }

    #[test]
    fn bad_results_name_the_field() {
        let e =
            attachment(&json!({"ips": [{"address": "10.1.0.5/32", "interface": 3}]})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "network configuration: prevResult.ips[0].interface: 3: only 0 interfaces listed"
        );
        let e = attachment(&json!({"ips": [{"address": "nope"}]})).unwrap_err();
        assert!(e.to_string().contains("prevResult.ips[0].address"), "{e}");
        let e = attachment(&json!({"ips": [{"interface": 0}]})).unwrap_err();
        assert!(e.to_string().contains("prevResult.ips[0]"), "{e}");
        let e = attachment(&json!({"interfaces": [], "ips": []})).unwrap_err();
        assert!(e.to_string().contains("no address of the pod"), "{e}");
    }

    #[test]
    fn config_fields() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"k8s","type":"palisade-cni","agentTimeoutMs":250}"#,
        )
        .unwrap();
        assert_eq!(c.agent_timeout, Duration::from_millis(250));
        assert_eq!(c.agent_socket, DEFAULT_AGENT_SOCKET);
        assert_eq!(c.prev_result, None);
        let e = NetConf::parse(br#"{"cniVersion":"0.2.0","name":"k8s","type":"palisade-cni"}"#)
            .unwrap_err();
        assert_eq!(e.code(), 1);
        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","type":"palisade-cni"}"#).unwrap_err();
        assert_eq!(e.to_string(), "network configuration: name: required");
        let e = NetConf::parse(b"{not json").unwrap_err();
        assert_eq!(e.code(), 6);
        let e = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"k","type":"t","agentSocket":"rel.sock"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code(), 7);
    }
}

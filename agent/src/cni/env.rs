//! The runtime's request as CNI passes it: `CNI_COMMAND`,
//! `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME` and `CNI_ARGS`
//! (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, …) from the environment.

use super::error::CniError;

/// A CNI operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The container's interface was set up by the plugins before us.
    Add,
    /// The container is going away.
    Del,
    /// Verify the container's attachment.
    Check,
    /// Which spec versions we support.
    Version,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> Result<Self, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::InvalidEnv {
                    var: "CNI_COMMAND",
                    reason: format!("{other:?}: expected ADD, DEL, CHECK or VERSION"),
                });
            }
        })
    }
}

/// The environment of one invocation (everything but VERSION).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniEnv {
    /// The operation.
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (may be empty on DEL).
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: Option<String>,
    /// `K8S_POD_NAMESPACE` from `CNI_ARGS`.
    pub pod_namespace: Option<String>,
    /// `K8S_POD_NAME` from `CNI_ARGS`.
    pub pod_name: Option<String>,
    /// `K8S_POD_UID` from `CNI_ARGS` (runtimes pass it since Kubernetes
    /// 1.22; absent before).
    pub pod_uid: Option<String>,
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// Parses `CNI_ARGS` (`K1=V1;K2=V2`) into pairs.
pub fn parse_args(s: &str) -> Result<Vec<(String, String)>, CniError> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CniError::InvalidEnv {
                var: "CNI_ARGS",
                reason: format!("{p:?}: expected KEY=VALUE"),
            }),
        })
        .collect()
}

impl CniEnv {
    /// Reads the invocation from `var` (the process environment, or a
    /// test's map). Variables the command requires must be set:
    /// `CNI_CONTAINERID` always, `CNI_NETNS` and `CNI_IFNAME` for ADD and
    /// CHECK (the spec lets DEL omit the namespace).
    pub fn read(command: Command, var: &dyn Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let required = |name: &'static str| {
            nonempty(var(name)).ok_or(CniError::InvalidEnv {
                var: name,
                reason: "required, not set".into(),
            })
        };
        let container_id = required("CNI_CONTAINERID")?;
        let (netns, ifname) = if command == Command::Del {
            (nonempty(var("CNI_NETNS")), nonempty(var("CNI_IFNAME")))
        } else {
            (Some(required("CNI_NETNS")?), Some(required("CNI_IFNAME")?))
        };
        let args = parse_args(&var("CNI_ARGS").unwrap_or_default())?;
        let arg = |k: &str| nonempty(args.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            pod_namespace: arg("K8S_POD_NAMESPACE"),
            pod_name: arg("K8S_POD_NAME"),
            pod_uid: arg("K8S_POD_UID"),
        })
    }

    /// `namespace/name`, when `CNI_ARGS` names the pod.
    pub fn pod(&self) -> Option<(String, String)> {
        Some((self.pod_namespace.clone()?, self.pod_name.clone()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn kubelet_args() {
        let e = CniEnv::read(
            Command::Add,
            &env(&[
                ("CNI_CONTAINERID", "abc"),
                ("CNI_NETNS", "/var/run/netns/x"),
                ("CNI_IFNAME", "eth0"),
                (
                    "CNI_ARGS",
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(e.pod(), Some(("prod".into(), "web-0".into())));
        assert_eq!(e.ifname.as_deref(), Some("eth0"));
    }

    #[test]
    fn missing_and_malformed() {
        let e = CniEnv::read(Command::Add, &env(&[("CNI_CONTAINERID", "abc")])).unwrap_err();
        assert_eq!(e.to_string(), "CNI_NETNS: required, not set");
        // DEL may come without a namespace.
        let d = CniEnv::read(Command::Del, &env(&[("CNI_CONTAINERID", "abc")])).unwrap();
        assert_eq!((d.netns.clone(), d.pod()), (None, None));
        let e = CniEnv::read(
            Command::Del,
            &env(&[("CNI_CONTAINERID", "abc"), ("CNI_ARGS", "K8S_POD_NAME")]),
        )
        .unwrap_err();
        assert_eq!(e.code(), 4);
        assert!(Command::parse("GC").is_err());
    }
}

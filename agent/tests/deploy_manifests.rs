//! The manifests in `deploy/`: every document parses as its Kubernetes
//! type with no field the type does not know (a typo would be silently
//! dropped by the API server), the DaemonSet has what a node agent needs,
//! the RBAC rules grant exactly the (group, resource, verb) set the
//! agent's watchers use, and the init container's command, run with the
//! built plugin against temporary directories, installs it. No privileges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every YAML document of deploy/, with its file.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/");
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, d) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let v = Value::deserialize(d)
                .unwrap_or_else(|e| panic!("{} document {i}: {e}", f.display()));
            if !v.is_null() {
                docs.push((format!("{} document {i}", f.display()), v));
            }
        }
    }
    docs
}

/// Paths present in `given` but missing (or different) after a round trip
/// through the typed object.
fn differences(given: &Value, back: &Value, path: &str, out: &mut Vec<String>) {
    match (given, back) {
        (Value::Object(g), Value::Object(b)) => {
            for (k, gv) in g {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    None => out.push(format!("{p}: unknown field")),
                    Some(bv) => differences(gv, bv, &p, out),
                }
            }
        }
        (Value::Array(g), Value::Array(b)) if g.len() == b.len() => {
            for (i, (gv, bv)) in g.iter().zip(b).enumerate() {
                differences(gv, bv, &format!("{path}[{i}]"), out);
            }
        }
        (g, b) if g == b => {}
        // `minimum: 1` is `1.0` once typed (JSONSchemaProps holds f64).
        (Value::Number(g), Value::Number(b)) if g.as_f64() == b.as_f64() => {}
        (g, b) => out.push(format!("{path}: {g} became {b}")),
    }
}

/// Parses `v` as `T`, rejecting unknown fields.
fn strict<T: DeserializeOwned + serde::Serialize>(origin: &str, v: &Value) -> T {
    let t: T = serde_path_to_error::deserialize(v.clone())
        .unwrap_or_else(|e| panic!("{origin}: {}: {}", e.path(), e.inner()));
    let back = serde_json::to_value(&t).unwrap();
    let mut diff = Vec::new();
    differences(v, &back, "", &mut diff);
    assert!(diff.is_empty(), "{origin}:\n  {}", diff.join("\n  "));
    t
}

struct Manifests {
    daemonset: DaemonSet,
    service_account: ServiceAccount,
    cluster_role: ClusterRole,
    binding: ClusterRoleBinding,
    config: ConfigMap,
}

fn manifests() -> Manifests {
    let (mut ds, mut sa, mut cr, mut crb, mut cm) = (vec![], vec![], vec![], vec![], vec![]);
    for (origin, v) in documents() {
        match (v["apiVersion"].as_str(), v["kind"].as_str()) {
            (Some("apps/v1"), Some("DaemonSet")) => ds.push(strict::<DaemonSet>(&origin, &v)),
            (Some("v1"), Some("ServiceAccount")) => sa.push(strict(&origin, &v)),
            (Some("v1"), Some("ConfigMap")) => cm.push(strict(&origin, &v)),
            (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRole")) => {
                cr.push(strict(&origin, &v))
            }
            (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRoleBinding")) => {
                crb.push(strict(&origin, &v))
            }
            // deploy/servicemonitor.yaml: Prometheus Operator CRDs and the
            // Service its ServiceMonitor selects.
            (Some("monitoring.coreos.com/v1"), Some("PodMonitor" | "ServiceMonitor")) => {}
            (Some("v1"), Some("Service")) => {
                strict::<k8s_openapi::api::core::v1::Service>(&origin, &v);
            }
            // deploy/crd-clusternetworkpolicies.yaml (a real API server
            // accepts it: tests/kube_apiserver.rs).
            (Some("apiextensions.k8s.io/v1"), Some("CustomResourceDefinition")) => {
                let crd = strict::<
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
                >(&origin, &v);
                assert_eq!(crd.spec.group, "policy.networking.k8s.io", "{origin}");
                assert_eq!(crd.spec.names.plural, "clusternetworkpolicies", "{origin}");
                assert_eq!(
                    crd.spec
                        .versions
                        .iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>(),
                    ["v1alpha2"],
                    "{origin}"
                );
            }
            (a, k) => panic!("{origin}: unexpected {a:?} {k:?}"),
        }
    }
    let one = |n: usize, what: &str| assert_eq!(n, 1, "exactly one {what}");
    one(ds.len(), "DaemonSet");
    one(sa.len(), "ServiceAccount");
    one(cr.len(), "ClusterRole");
    one(crb.len(), "ClusterRoleBinding");
    one(cm.len(), "ConfigMap");
    Manifests {
        daemonset: ds.remove(0),
        service_account: sa.remove(0),
        cluster_role: cr.remove(0),
        binding: crb.remove(0),
        config: cm.remove(0),
    }
}

#[test]
fn unknown_fields_are_detected() {
    // The strictness check itself: a misspelt field must be reported.
    let v = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "namespaec": "kube-system"}, "data": {}});
    let r = std::panic::catch_unwind(|| strict::<ConfigMap>("test", &v));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains(".metadata.namespaec: unknown field"), "{msg}");
}

fn container<'a>(cs: &'a [Container], name: &str) -> &'a Container {
    cs.iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

/// `--flag value` in a command line (also inside a shell script).
fn flag(words: &[String], name: &str) -> Option<String> {
    let words: Vec<&str> = words.iter().flat_map(|w| w.split_whitespace()).collect();
    words
        .iter()
        .position(|w| *w == name)
        .map(|i| words[i + 1].trim_matches('"').to_string())
}

#[test]
fn daemonset_has_what_a_node_agent_needs() {
    let m = manifests();
    let ds = &m.daemonset;
    let ns = ds.metadata.namespace.as_deref();
    assert_eq!(ns, Some("kube-system"));
    for other in [
        m.service_account.metadata.namespace.as_deref(),
        m.config.metadata.namespace.as_deref(),
    ] {
        assert_eq!(other, ns, "everything in one namespace");
    }
    let spec = &ds.spec;
    let tmpl = &spec.template;
    let labels = tmpl.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
        assert_eq!(labels.get(k), Some(v), "selector matches the template");
    }
    let pod = tmpl.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.service_account_name.as_deref(),
        m.service_account.metadata.name.as_deref()
    );
    let tol = pod.tolerations.as_ref().unwrap();
    assert!(
        tol.iter().any(|t| t.operator.as_deref() == Some("Exists")
            && t.key.is_none()
            && t.effect.is_none()),
        "tolerates every taint: {tol:?}"
    );

    let agent = container(&pod.containers, "agent");
    let words: Vec<String> = agent
        .command
        .iter()
        .flatten()
        .chain(agent.args.iter().flatten())
        .cloned()
        .collect();
    assert!(
        words
            .iter()
            .any(|w| w.contains("/usr/local/bin/palisade agent")),
        "{words:?}"
    );
    // Health probes where the agent serves them.
    let health = flag(&words, "--health-addr").expect("--health-addr");
    let (host, port) = health.rsplit_once(':').unwrap();
    for (probe, path) in [
        (agent.liveness_probe.as_ref(), "/healthz"),
        (agent.readiness_probe.as_ref(), "/readyz"),
    ] {
        let get = probe.and_then(|p| p.http_get.as_ref()).expect(path);
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.host.as_deref(), Some(host));
        assert_eq!(
            serde_json::to_value(&get.port).unwrap(),
            serde_json::json!(port.parse::<u16>().unwrap())
        );
    }
    // NODE_NAME from the downward API.
    let env = agent.env.as_ref().unwrap();
    let node = env
        .iter()
        .find(|e| e.name == "NODE_NAME")
        .expect("NODE_NAME");
    let field = node
        .value_from
        .as_ref()
        .unwrap()
        .field_ref
        .as_ref()
        .unwrap();
    assert_eq!(field.field_path, "spec.nodeName");
    // Exact capabilities, not privileged.
    let sc = agent.security_context.as_ref().unwrap();
    assert_ne!(sc.privileged, Some(true));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let add: BTreeSet<&str> = caps.add.iter().flatten().map(String::as_str).collect();
    assert_eq!(add, BTreeSet::from(["BPF", "NET_ADMIN", "PERFMON"]));

    // Volumes: bpffs, state and socket, CNI dirs (host paths).
    let host_paths: BTreeMap<&str, &str> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| Some((v.name.as_str(), v.host_path.as_ref()?.path.as_str())))
        .collect();
    let mounted = |c: &Container| -> BTreeMap<String, String> {
        c.volume_mounts
            .iter()
            .flatten()
            .map(|m| {
                (
                    host_paths[m.name.as_str()].to_string(),
                    m.mount_path.clone(),
                )
            })
            .collect()
    };
    let am = mounted(agent);
    assert_eq!(
        am.get("/sys/fs/bpf").map(String::as_str),
        Some("/sys/fs/bpf")
    );
    assert_eq!(
        am.get("/run/palisade").map(String::as_str),
        Some("/run/palisade")
    );
    let socket = flag(&words, "--socket").expect("--socket");
    assert!(socket.starts_with("/run/palisade/"), "{socket}");

    // The init container installs the plugin pointing at that socket.
    let init = container(pod.init_containers.as_deref().unwrap(), "install-cni");
    let im = mounted(init);
    let cmd = init.command.clone().unwrap();
    assert_eq!(cmd[..2], ["/usr/local/bin/palisade-cni", "install"]);
    assert_eq!(
        flag(&cmd, "--agent-socket").as_deref(),
        Some(socket.as_str())
    );
    assert_eq!(
        socket,
        palisade::cni::netconf::DEFAULT_AGENT_SOCKET,
        "the plugin's default"
    );
    for (host, flag_name) in [
        ("/opt/cni/bin", "--bin-dir"),
        ("/etc/cni/net.d", "--conf-dir"),
    ] {
        assert_eq!(im.get(host), flag(&cmd, flag_name).as_ref(), "{host}");
    }

    // A sidecar keeps it in the chain: the same command, watching.
    let sidecar = container(&pod.containers, "cni-watch");
    let mut watch_cmd = cmd.clone();
    watch_cmd.push("--watch".into());
    assert_eq!(sidecar.command.as_ref(), Some(&watch_cmd));
    assert_eq!(
        mounted(sidecar),
        im,
        "the sidecar sees the same host directories"
    );
    assert_eq!(sidecar.env, init.env);

    // Every container has requests; every ConfigMap key referenced exists.
    let data = m.config.data.as_ref().unwrap();
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        assert!(
            req.is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")),
            "{}: resource requests",
            c.name
        );
        for e in c.env.iter().flatten() {
            if let Some(k) = e
                .value_from
                .as_ref()
                .and_then(|v| v.config_map_key_ref.as_ref())
            {
                assert_eq!(Some(k.name.as_str()), m.config.metadata.name.as_deref());
                assert!(data.contains_key(&k.key), "{}: key {}", c.name, k.key);
            }
        }
    }
}

#[test]
fn rbac_grants_exactly_what_the_watchers_use() {
    let m = manifests();
    let mut granted = BTreeSet::new();
    for r in m.cluster_role.rules.iter().flatten() {
        assert!(
            r.resource_names.is_none() && r.non_resource_urls.is_none(),
            "{r:?}"
        );
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    assert!(
                        ![g, res, v].contains(&&"*".to_string()),
                        "no wildcards: {r:?}"
                    );
                    granted.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    let needed: BTreeSet<(String, String, String)> = palisade::source::kube::api_access()
        .into_iter()
        .map(|(g, r, v)| (g, r, v.to_string()))
        .collect();
    assert_eq!(granted, needed);
    assert_eq!(needed.len(), 28, "{needed:?}");

    let b = &m.binding;
    assert_eq!(b.role_ref.kind, "ClusterRole");
    assert_eq!(
        Some(&b.role_ref.name),
        m.cluster_role.metadata.name.as_ref()
    );
    let subjects = b.subjects.as_ref().unwrap();
    assert!(subjects.iter().any(|s| s.kind == "ServiceAccount"
        && Some(&s.name) == m.service_account.metadata.name.as_ref()
        && s.namespace == m.service_account.metadata.namespace));
}

#[test]
fn init_container_command_installs_the_plugin() {
    let m = manifests();
    let pod = m.daemonset.spec.template.spec.unwrap();
    let init = container(pod.init_containers.as_deref().unwrap(), "install-cni");
    let data = m.config.data.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path();
    std::fs::create_dir_all(host.join("opt/cni/bin")).unwrap();
    std::fs::create_dir_all(host.join("etc/cni/net.d")).unwrap();
    let primary = serde_json::json!({"cniVersion": "0.3.1", "name": "k8s-pod-network",
        "plugins": [{"type": "calico", "ipam": {"type": "calico-ipam"}},
                    {"type": "portmap", "capabilities": {"portMappings": true}}]});
    std::fs::write(
        host.join("etc/cni/net.d/10-calico.conflist"),
        primary.to_string(),
    )
    .unwrap();

    // The command as the kubelet runs it: $(VAR) expanded from the env,
    // /host/... mapped to the temporary directory.
    let vars: BTreeMap<String, String> = init
        .env
        .iter()
        .flatten()
        .map(|e| {
            let key = &e
                .value_from
                .as_ref()
                .unwrap()
                .config_map_key_ref
                .as_ref()
                .unwrap()
                .key;
            (format!("$({})", e.name), data[key].clone())
        })
        .collect();
    let cmd: Vec<String> = init
        .command
        .clone()
        .unwrap()
        .into_iter()
        .map(|w| {
            let w = vars.get(&w).cloned().unwrap_or(w);
            match w.strip_prefix("/host/") {
                Some(rest) => host.join(rest).display().to_string(),
                None => w,
            }
        })
        .collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-cni"))
        .args(&cmd[1..])
        .output()
        .unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    let installed = host.join("opt/cni/bin/palisade-cni");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_palisade-cni")).unwrap()
    );
    let conf: Value = serde_json::from_slice(
        &std::fs::read(host.join("etc/cni/net.d/10-calico.conflist")).unwrap(),
    )
    .unwrap();
    let plugins = conf["plugins"].as_array().unwrap();
    assert_eq!(plugins[..2], primary["plugins"].as_array().unwrap()[..]);
    assert_eq!(
        plugins[2],
        serde_json::json!({"type": "palisade-cni", "agentSocket": "/run/palisade/agent.sock",
                           "agentTimeoutMs": data["cni-agent-timeout-ms"].parse::<u64>().unwrap()})
    );
    // The plugin's own parser accepts its entry.
    let mut entry = plugins[2].clone();
    entry["cniVersion"] = conf["cniVersion"].clone();
    entry["name"] = conf["name"].clone();
    palisade::cni::netconf::NetConf::parse(entry.to_string().as_bytes()).unwrap();
}

#[test]
fn dockerfile_ships_both_binaries() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(stages, 2, "multi-stage");
    for bin in ["palisade", "palisade-cni"] {
        assert!(text.contains(&format!("--bin {bin}")), "builds {bin}");
        assert!(text.contains(&format!("/out/{bin}")), "copies {bin}");
    }
    assert!(text.contains("/usr/local/bin/"));
}

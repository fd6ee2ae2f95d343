//! Shared by the tests that run agents in Kubernetes mode against the real
//! API server (`palisade_lab::apiserver`): the agent's token and identity
//! (bound by `deploy/rbac.yaml` to exactly its ClusterRole), the shipped
//! RBAC and ClusterNetworkPolicy CRD applied through the admin client, the
//! path from a lab node to the server, and the agent started there with a
//! kubeconfig.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use palisade_lab::Node;
use palisade_lab::agent_process::AgentProcess;
use palisade_lab::apiserver::{ApiServer, ApiServerError, ApiServerSpec, Forward};
use serde_json::Value;

use super::{Agent, BIN, NodeDirs};

/// The agent's bearer token (a service account token stands in).
pub const AGENT_TOKEN: &str = "palisade-agent-token";

/// An API server whose token file has the agent's identity: the
/// `palisade` service account of `kube-system`, which `deploy/rbac.yaml`
/// binds.
pub fn start_api_for_agent() -> Result<ApiServer, ApiServerError> {
    start_api_for_agent_with(|s| s)
}

/// [`start_api_for_agent`] with the server's spec changed by `f` (flags,
/// audit log, ...).
pub fn start_api_for_agent_with(
    f: impl FnOnce(ApiServerSpec) -> ApiServerSpec,
) -> Result<ApiServer, ApiServerError> {
    f(ApiServerSpec::new().service_account(AGENT_TOKEN, "kube-system", "palisade")).start()
}

/// `deploy/rbac.yaml`'s documents, parsed.
pub fn rbac_docs() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

/// Creates (or replaces) the RBAC documents through the admin client.
pub fn apply_rbac(api: &ApiServer, docs: &[Value]) {
    let c = api.client();
    api.block_on(async {
        let pp = PatchParams::apply("palisade-test").force();
        for d in docs {
            let name = d["metadata"]["name"].as_str().unwrap().to_string();
            let r = match d["kind"].as_str().unwrap() {
                "ServiceAccount" => Api::<ServiceAccount>::namespaced(c.clone(), "kube-system")
                    .patch(&name, &pp, &Patch::Apply(d))
                    .await
                    .map(drop),
                "ClusterRole" => Api::<ClusterRole>::all(c.clone())
                    .patch(&name, &pp, &Patch::Apply(d))
                    .await
                    .map(drop),
                "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(c.clone())
                    .patch(&name, &pp, &Patch::Apply(d))
                    .await
                    .map(drop),
                k => panic!("unexpected kind {k} in deploy/rbac.yaml"),
            };
            r.unwrap_or_else(|e| panic!("apply {} {name}: {e}", d["kind"]));
        }
    });
}

/// `deploy/crd-clusternetworkpolicies.yaml`, parsed.
pub fn cluster_policy_crd() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crd-clusternetworkpolicies.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// Removes what apiextensions of Kubernetes 1.20 cannot take from a CRD
/// (CEL rules, `x-kubernetes-validations`, came with 1.25): the agent
/// checks the same rules itself. Returns how many it removed.
pub fn strip_for_1_20(v: &mut Value) -> usize {
    match v {
        Value::Object(m) => {
            let mut n = usize::from(m.remove("x-kubernetes-validations").is_some());
            for child in m.values_mut() {
                n += strip_for_1_20(child);
            }
            n
        }
        Value::Array(a) => a.iter_mut().map(strip_for_1_20).sum(),
        _ => 0,
    }
}

/// Installs the shipped ClusterNetworkPolicy CRD (stripped for the
/// server's version, see [`strip_for_1_20`]) and waits (bounded) until the
/// server serves the resource.
pub fn install_cluster_policy_crd(api: &ApiServer) {
    let mut crd = cluster_policy_crd();
    strip_for_1_20(&mut crd);
    let crds = Api::<CustomResourceDefinition>::all(api.client());
    api.block_on(crds.patch(
        "clusternetworkpolicies.policy.networking.k8s.io",
        &PatchParams::apply("palisade-test").force(),
        &Patch::Apply(&crd),
    ))
    .unwrap_or_else(|e| panic!("install the ClusterNetworkPolicy CRD: {e}"));
    let cnps = Api::<palisade_compiler::api::ClusterNetworkPolicy>::all(api.client());
    let t0 = std::time::Instant::now();
    // Bounded: 30 s.
    loop {
        match api.block_on(cnps.list(&Default::default())) {
            Ok(_) => return,
            Err(e) if t0.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("the ClusterNetworkPolicy CRD is not served after 30 s: {e}"),
        }
    }
}

/// A port on `node`'s loopback forwarding to the API server: how an agent
/// there reaches it.
pub fn forward(api: &ApiServer, node: &Node) -> Forward {
    let listener = node
        .run(|| std::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    Forward::start(listener, ([127, 0, 0, 1], api.port()).into()).unwrap()
}

/// The agent on `node` in Kubernetes mode (with `extra` arguments),
/// reaching the server through `fwd` with the agent's token.
pub fn spawn_agent(
    api: &ApiServer,
    node: &Node,
    fwd: &Forward,
    dirs: &NodeDirs,
    extra: &[&str],
) -> AgentProcess {
    let kubeconfig = api.kubeconfig_at(AGENT_TOKEN, fwd.addr()).unwrap();
    let mut cmd = AgentProcess::command(Path::new(BIN), node, dirs);
    cmd.args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST");
    AgentProcess::spawn_command(
        Path::new(BIN),
        cmd,
        dirs,
        "info,palisade::agent::commit=debug",
    )
    .expect("spawn agent")
}

/// [`spawn_agent`], then waits (bounded) until its first sync is enforced.
pub fn start_agent(
    api: &ApiServer,
    node: &Node,
    fwd: &Forward,
    dirs: &NodeDirs,
    extra: &[&str],
    within: Duration,
) -> Agent {
    Agent::ready(spawn_agent(api, node, fwd, dirs, extra), within)
}

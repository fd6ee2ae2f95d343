//! Kubernetes mode of the conformance suite: how a case's objects reach
//! agents that read a real API server (kube-apiserver 1.20.2 and etcd from
//! `palisade_lab::apiserver`, TLS, token auth, RBAC), instead of manifest
//! files. Owns the server for the whole run (one for every case), the
//! agents' paths to it, and the translation of each step's state into API
//! writes; the case semantics stay with the runner in `main.rs`, which
//! hands this module the objects that should exist after each step.
//!
//! * [`Objects`]: what should exist (Namespaces, Pods, NetworkPolicies,
//!   ClusterNetworkPolicies, as full documents). [`Cluster::deliver`] diffs
//!   it against what it wrote before and makes exactly those changes:
//!   create, relabel (read, then replace), replace, delete. Between cases
//!   the same diff cleans up what the previous case left.
//! * The lab nodes are Node objects (labels, then `status.addresses`
//!   patched as a kubelet would), created once before any agent starts,
//!   for the `nodes` peers of ClusterNetworkPolicies.
//! * Pods are real Pod objects (`spec.nodeName`, containers and their named
//!   ports) whose `status.podIPs` is then patched as a kubelet would. There
//!   is no kubelet, controller-manager or namespace controller: pods are
//!   deleted with `gracePeriodSeconds: 0`, and a deleted namespace is
//!   emptied first (its pods and policies deleted), then finalized through
//!   `/finalize` as the namespace controller would, and waited for until it
//!   is gone (so a later case can create it again).
//! * The agents' watches are not synchronous with the writes. `palisade
//!   sync` relists every kind, so its answer holds what the server held
//!   when it was asked; the fence checks the same independently of the
//!   agent (and held before `sync` relisted): after each step
//!   [`Cluster::deliver`] writes a fence and waits (bounded) until every
//!   agent has seen it; then `palisade sync` puts what they have seen in
//!   the maps. A watch delivers one kind's events in order, so the fence
//!   is one write per kind, each the last of its kind in the step: the
//!   namespace `pcf-fence`'s label `fence`, its pod `src`'s label `fence`,
//!   its NetworkPolicy `fence` and the ClusterNetworkPolicy `pcf-fence`.
//!   They are built so that `palisade explain` (the agent's own compiled
//!   state) allows `src` -> `dst` on TCP port [`fence_port`]`(n)` only
//!   once all four are at step `n`: the NetworkPolicy admits exactly that
//!   port, from pods and namespaces labelled `fence: f<n>`; the Admin
//!   ClusterNetworkPolicy (priority 0, before any case's) denies pods of
//!   the fence namespace whose label is not `f<n>` and passes everything
//!   else on to the NetworkPolicy tier, where a second NetworkPolicy
//!   allows the fence pods' egress. The fence pods live on no lab node
//!   (`spec.nodeName: pcf-nowhere`), with addresses no lab pod has, and
//!   nothing the cases write selects or judges them for the evaluator.
//! * The API server is 1.20: NetworkPolicy's `endPort` (1.21) is dropped
//!   by it, which [`Cluster::start`] checks; the cases using it run in
//!   manifests mode only (`MANIFESTS_ONLY` in `main.rs`). The
//!   ClusterNetworkPolicy CRD is installed from `deploy/` (anything 1.20's
//!   apiextensions cannot take stripped in the test, never in the shipped
//!   file).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node as KNode, Pod as KPod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use palisade::control::{Request, request};
use palisade::explain::ExplainRequest;
use palisade_compiler::api::ClusterNetworkPolicy;
use palisade_lab::apiserver::{ApiServer, Forward};
use palisade_lab::{AppLab, Node};
use serde_json::{Value, json};

use crate::support::apiserver::{self as sapi, apply_rbac, rbac_docs};
use crate::support::{Agent, NodeDirs};

/// The namespace of the fence objects (see the module documentation).
pub const FENCE_NS: &str = "pcf-fence";
/// The node the fence pods are on: none of the lab's.
const FENCE_NODE: &str = "pcf-nowhere";
/// How long every agent may take to see a step's writes.
const FENCE_WITHIN: Duration = Duration::from_secs(30);
/// How long a deleted namespace may take to go.
const NAMESPACE_GONE_WITHIN: Duration = Duration::from_secs(30);

/// What should exist in the API server, each object as a full document.
#[derive(Clone, Default, PartialEq)]
pub struct Objects {
    /// By name.
    pub namespaces: BTreeMap<String, Value>,
    /// By `ns/name`; with their `status`.
    pub pods: BTreeMap<String, Value>,
    /// By `ns/name`.
    pub policies: BTreeMap<String, Value>,
    /// By name.
    pub cluster_policies: BTreeMap<String, Value>,
}

/// The API server of a Kubernetes-mode run, what the run wrote to it, and
/// the agents' paths to it.
pub struct Cluster {
    // Forwards before the server: their threads stop first.
    forwards: BTreeMap<String, Forward>,
    api: ApiServer,
    written: Objects,
    fence: u32,
    /// Per step, how long the slower agent took to show the fence after
    /// it was written (zero: already at the first look).
    fence_waits: Vec<Duration>,
}

/// An API call's error, naming what was asked.
fn at<T>(what: impl std::fmt::Display, r: Result<T, kube::Error>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn name_of(doc: &Value) -> String {
    doc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn ns_of(doc: &Value) -> String {
    doc["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// TCP port the fence NetworkPolicy of step `n` admits.
pub fn fence_port(n: u32) -> u16 {
    1000 + (n % 30_000) as u16
}

impl Cluster {
    /// Starts the API server with the agent's identity bound by the shipped
    /// RBAC, installs the ClusterNetworkPolicy CRD, checks what the server
    /// does with `endPort`, and writes the fence objects.
    pub fn start() -> Cluster {
        let api = sapi::start_api_for_agent().unwrap_or_else(|e| panic!("{e}"));
        apply_rbac(&api, &rbac_docs());
        sapi::install_cluster_policy_crd(&api);
        let mut c = Cluster {
            forwards: BTreeMap::new(),
            api,
            written: Objects::default(),
            fence: 0,
            fence_waits: Vec::new(),
        };
        c.write_fence_base()
            .unwrap_or_else(|e| panic!("fence objects: {e}"));
        c.check_end_port_dropped();
        c
    }

    /// A NetworkPolicy with `endPort` written to the 1.20 server comes back
    /// without it: the server does not know the field (it came with 1.21)
    /// and drops it, so a case relying on it cannot run in this mode.
    fn check_end_port_dropped(&self) {
        let api = self.np_api(FENCE_NS);
        let doc = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "end-port-probe", "namespace": FENCE_NS},
            "spec": {"podSelector": {"matchLabels": {"role": "none"}},
                     "ingress": [{"ports": [{"protocol": "TCP", "port": 80, "endPort": 81}]}]}});
        let obj: DynamicObject = serde_json::from_value(doc).unwrap();
        let got = self
            .api
            .block_on(api.create(&PostParams::default(), &obj))
            .unwrap_or_else(|e| panic!("create a NetworkPolicy with endPort: {e}"));
        let port = &got.data["spec"]["ingress"][0]["ports"][0];
        assert_eq!(port["port"], json!(80), "{port}");
        assert!(
            port.get("endPort").is_none(),
            "the API server kept endPort ({port}): the endPort cases can run in Kubernetes mode; \
             update MANIFESTS_ONLY"
        );
        self.api
            .block_on(api.delete("end-port-probe", &DeleteParams::default()))
            .unwrap_or_else(|e| panic!("delete end-port-probe: {e}"));
        println!(
            "conformance: kube-apiserver {} drops NetworkPolicy endPort (kept {port})",
            palisade_lab::apiserver::KUBE_APISERVER_VERSION
        );
    }

    /// Starts the agent on `node` in Kubernetes mode (with `extra`
    /// arguments), through a forward from the node to the server; waits
    /// (bounded) until its first sync is enforced.
    pub fn start_agent(&mut self, node: &Node, dirs: &NodeDirs, extra: &[&str]) -> Agent {
        let fwd = self
            .forwards
            .entry(dirs.node.clone())
            .or_insert_with(|| sapi::forward(&self.api, node));
        sapi::start_agent(&self.api, node, fwd, dirs, extra, Duration::from_secs(60))
    }

    fn np_api(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.api.client(),
            ns,
            &ApiResource::erase::<NetworkPolicy>(&()),
        )
    }

    fn cnp_api(&self) -> Api<DynamicObject> {
        Api::all_with(
            self.api.client(),
            &ApiResource::erase::<ClusterNetworkPolicy>(&()),
        )
    }

    fn pod_api(&self, ns: &str) -> Api<KPod> {
        Api::namespaced(self.api.client(), ns)
    }

    fn ns_api(&self) -> Api<Namespace> {
        Api::all(self.api.client())
    }

    /// Makes the server hold `want` (besides the fence), then waits until
    /// every agent of `agents` has seen it (see the module documentation).
    /// A failed write leaves what was written before recorded, so later
    /// steps may fail on what the failed one left (reported already).
    pub fn deliver(&mut self, want: &Objects, agents: &[Agent]) -> Result<(), String> {
        let have = std::mem::take(&mut self.written);
        // What was written stays recorded as far as it got.
        let r = self.apply_diff(&have, want);
        self.written = if r.is_ok() { want.clone() } else { have };
        r?;
        self.fence += 1;
        // The fence can fail: before it is written, no agent allows it.
        for a in agents {
            if fence_allowed(a, self.fence) == Some(true) {
                return Err(format!(
                    "agent on {}: fence {} allowed before it was written: it proves nothing",
                    a.process.node(),
                    self.fence
                ));
            }
        }
        self.write_fence(self.fence)?;
        self.await_fence(self.fence, agents)
    }

    fn apply_diff(&self, have: &Objects, want: &Objects) -> Result<(), String> {
        // Namespaces first, then what lives in them.
        for (name, doc) in &want.namespaces {
            match have.namespaces.get(name) {
                None => self.create_namespace(doc)?,
                Some(old) if old != doc => self.relabel_namespace(name, doc)?,
                Some(_) => {}
            }
        }
        for (key, doc) in &want.pods {
            match have.pods.get(key) {
                None => self.create_pod(doc)?,
                Some(old) if old != doc => self.relabel_pod(doc)?,
                Some(_) => {}
            }
        }
        for key in have.policies.keys() {
            if !want.policies.contains_key(key) {
                let (ns, name) = key.split_once('/').unwrap();
                at(
                    format!("delete NetworkPolicy {key}"),
                    self.api
                        .block_on(self.np_api(ns).delete(name, &DeleteParams::default())),
                )?;
            }
        }
        for name in have.cluster_policies.keys() {
            if !want.cluster_policies.contains_key(name) {
                at(
                    format!("delete ClusterNetworkPolicy {name}"),
                    self.api
                        .block_on(self.cnp_api().delete(name, &DeleteParams::default())),
                )?;
            }
        }
        for (key, doc) in &want.policies {
            if have.policies.get(key) != Some(doc) {
                let api = self.np_api(&ns_of(doc));
                self.put(&api, &format!("NetworkPolicy {key}"), doc)?;
            }
        }
        for (name, doc) in &want.cluster_policies {
            if have.cluster_policies.get(name) != Some(doc) {
                let api = self.cnp_api();
                self.put(&api, &format!("ClusterNetworkPolicy {name}"), doc)?;
            }
        }
        for (key, doc) in &have.pods {
            if !want.pods.contains_key(key) {
                self.delete_pod(&ns_of(doc), &name_of(doc))?;
            }
        }
        for name in have.namespaces.keys() {
            if !want.namespaces.contains_key(name) {
                self.delete_namespace(name)?;
            }
        }
        Ok(())
    }

    /// Creates `doc`, or replaces the object of its name with it.
    fn put(&self, api: &Api<DynamicObject>, what: &str, doc: &Value) -> Result<(), String> {
        let name = name_of(doc);
        let mut obj: DynamicObject =
            serde_json::from_value(doc.clone()).map_err(|e| format!("{what}: {e}"))?;
        match at(format!("get {what}"), self.api.block_on(api.get_opt(&name)))? {
            None => {
                at(
                    format!("create {what}"),
                    self.api.block_on(api.create(&PostParams::default(), &obj)),
                )?;
            }
            Some(old) => {
                obj.metadata.resource_version = old.metadata.resource_version;
                at(
                    format!("replace {what}"),
                    self.api
                        .block_on(api.replace(&name, &PostParams::default(), &obj)),
                )?;
            }
        }
        Ok(())
    }

    fn create_namespace(&self, doc: &Value) -> Result<(), String> {
        let ns: Namespace = serde_json::from_value(doc.clone()).unwrap();
        at(
            format!("create Namespace {}", name_of(doc)),
            self.api
                .block_on(self.ns_api().create(&PostParams::default(), &ns)),
        )
        .map(drop)
    }

    /// Gives namespace `name` exactly the labels of `doc` (read, then
    /// replaced: labels the step removed go).
    fn relabel_namespace(&self, name: &str, doc: &Value) -> Result<(), String> {
        let what = format!("Namespace {name}: metadata.labels");
        let mut ns = at(&what, self.api.block_on(self.ns_api().get(name)))?;
        ns.metadata.labels = serde_json::from_value(doc["metadata"]["labels"].clone()).unwrap();
        at(
            &what,
            self.api
                .block_on(self.ns_api().replace(name, &PostParams::default(), &ns)),
        )
        .map(drop)
    }

    /// Creates the Node objects `docs`, then their status (addresses) as a
    /// kubelet reports it.
    pub fn create_nodes(&self, docs: &[Value]) -> Result<(), String> {
        let api = Api::<KNode>::all(self.api.client());
        for doc in docs {
            self.create_then_status(&api, &format!("Node {}", name_of(doc)), doc)?;
        }
        Ok(())
    }

    /// Creates the Pod of `doc` (without its status), then patches its
    /// status as the kubelet would once the pod runs.
    fn create_pod(&self, doc: &Value) -> Result<(), String> {
        let (ns, name) = (ns_of(doc), name_of(doc));
        self.create_then_status(&self.pod_api(&ns), &format!("Pod {ns}/{name}"), doc)
    }

    /// Creates `doc` through `api` without its `status` (and `uid`, which
    /// the server assigns), then patches the status in, as the kubelet
    /// does for its pods and its node.
    fn create_then_status<K>(&self, api: &Api<K>, what: &str, doc: &Value) -> Result<(), String>
    where
        K: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let mut spec = doc.clone();
        let status = spec.as_object_mut().unwrap().remove("status");
        if let Some(m) = spec["metadata"].as_object_mut() {
            m.remove("uid");
        }
        let obj: K = serde_json::from_value(spec).map_err(|e| format!("{what}: {e}"))?;
        at(
            format!("create {what}"),
            self.api.block_on(api.create(&PostParams::default(), &obj)),
        )?;
        if let Some(status) = status {
            at(
                format!("{what}: patch status"),
                self.api.block_on(api.patch_status(
                    &name_of(doc),
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )),
            )?;
        }
        Ok(())
    }

    /// Gives pod `doc` exactly its labels (read, then replaced).
    fn relabel_pod(&self, doc: &Value) -> Result<(), String> {
        let (ns, name) = (ns_of(doc), name_of(doc));
        let what = format!("Pod {ns}/{name}: metadata.labels");
        let api = self.pod_api(&ns);
        let mut pod = at(&what, self.api.block_on(api.get(&name)))?;
        pod.metadata.labels = serde_json::from_value(doc["metadata"]["labels"].clone()).unwrap();
        at(
            &what,
            self.api
                .block_on(api.replace(&name, &PostParams::default(), &pod)),
        )
        .map(drop)
    }

    /// Deletes a pod at once (no kubelet would confirm a graceful one).
    fn delete_pod(&self, ns: &str, name: &str) -> Result<(), String> {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        at(
            format!("delete Pod {ns}/{name}"),
            self.api.block_on(self.pod_api(ns).delete(name, &dp)),
        )
        .map(drop)
    }

    /// Deletes an (already emptied) namespace and does what the namespace
    /// controller would: removes its `kubernetes` finalizer. Waits
    /// (bounded) until it is gone.
    fn delete_namespace(&self, name: &str) -> Result<(), String> {
        let api = self.ns_api();
        let what = format!("delete Namespace {name}");
        at(
            &what,
            self.api
                .block_on(api.delete(name, &DeleteParams::default())),
        )?;
        let t0 = Instant::now();
        // Bounded by NAMESPACE_GONE_WITHIN.
        loop {
            let Some(mut ns) = at(&what, self.api.block_on(api.get_opt(name)))? else {
                return Ok(());
            };
            if t0.elapsed() > NAMESPACE_GONE_WITHIN {
                return Err(format!(
                    "{what}: still there after {NAMESPACE_GONE_WITHIN:?}: {:?}",
                    ns.status
                ));
            }
            if let Some(spec) = ns.spec.as_mut().filter(|s| s.finalizers.is_some()) {
                spec.finalizers = None;
                at(
                    format!("{what}: finalize"),
                    self.api.block_on(api.replace_subresource(
                        "finalize",
                        name,
                        &PostParams::default(),
                        &ns,
                    )),
                )?;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The fence objects that do not change: the namespace, the pods, the
    /// egress policy; then step 0's fence.
    fn write_fence_base(&mut self) -> Result<(), String> {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": FENCE_NS, "labels": fence_ns_labels(0)}});
        self.create_namespace(&ns)?;
        for (name, v4, v6) in [
            ("src", "192.0.2.201", "2001:db8:fe::201"),
            ("dst", "192.0.2.202", "2001:db8:fe::202"),
        ] {
            let labels = if name == "src" {
                json!({"role": "src", "fence": "f0"})
            } else {
                json!({"role": "dst"})
            };
            self.create_pod(&json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": FENCE_NS, "labels": labels},
                "spec": {"nodeName": FENCE_NODE,
                         "containers": [{"name": "fence", "image": "none"}]},
                "status": {"phase": "Running", "podIP": v4,
                           "podIPs": [{"ip": v4}, {"ip": v6}]}}))?;
        }
        let egress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "fence-egress", "namespace": FENCE_NS},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}});
        self.put(
            &self.np_api(FENCE_NS),
            "NetworkPolicy fence-egress",
            &egress,
        )?;
        self.write_fence(0)
    }

    /// Step `n`'s fence: one write per kind (see the module documentation).
    fn write_fence(&self, n: u32) -> Result<(), String> {
        let tag = format!("f{n}");
        let ns = json!({"metadata": {"name": FENCE_NS, "labels": fence_ns_labels(n)}});
        self.relabel_namespace(FENCE_NS, &ns)?;
        self.relabel_pod(&json!({"metadata": {"name": "src", "namespace": FENCE_NS,
            "labels": {"role": "src", "fence": tag}}}))?;
        let np = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "fence", "namespace": FENCE_NS},
            "spec": {"podSelector": {"matchLabels": {"role": "dst"}},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"fence": tag}},
                                            "podSelector": {"matchLabels": {"fence": tag}}}],
                                  "ports": [{"protocol": "TCP", "port": fence_port(n)}]}]}});
        self.put(&self.np_api(FENCE_NS), "NetworkPolicy fence", &np)?;
        let fence_pods = json!({"matchLabels": {"palisade-fence": "true"}});
        let cnp = json!({"apiVersion": "policy.networking.k8s.io/v1alpha2",
            "kind": "ClusterNetworkPolicy",
            "metadata": {"name": FENCE_NS},
            "spec": {"tier": "Admin", "priority": 0,
                     "subject": {"namespaces": fence_pods},
                     "ingress": [
                         {"name": "stale", "action": "Deny",
                          "from": [{"pods": {"namespaceSelector": fence_pods,
                                             "podSelector": {"matchExpressions": [
                                                 {"key": "fence", "operator": "NotIn",
                                                  "values": [tag]}]}}}]},
                         {"name": "rest", "action": "Pass", "from": [{"namespaces": {}}]}],
                     "egress": [
                         {"name": "rest", "action": "Pass", "to": [{"namespaces": {}}]}]}});
        self.put(
            &self.cnp_api(),
            &format!("ClusterNetworkPolicy {FENCE_NS}"),
            &cnp,
        )
    }

    /// How many steps found an agent that had not seen the step's writes
    /// yet when they were done, of how many, and the longest wait.
    pub fn fence_report(&self) -> String {
        let waited = self.fence_waits.iter().filter(|d| !d.is_zero()).count();
        let longest = self.fence_waits.iter().max().copied().unwrap_or_default();
        format!(
            "{waited} of {} steps found an agent behind the API server once the step's writes \
             were done (longest wait {:.0} ms)",
            self.fence_waits.len(),
            longest.as_secs_f64() * 1000.0
        )
    }

    /// Waits (bounded) until every agent allows the fence of step `n`.
    fn await_fence(&mut self, n: u32, agents: &[Agent]) -> Result<(), String> {
        let t0 = Instant::now();
        let mut waited = false;
        for a in agents {
            // Bounded by FENCE_WITHIN.
            while fence_allowed(a, n) != Some(true) {
                waited = true;
                if t0.elapsed() > FENCE_WITHIN {
                    return Err(format!(
                        "agent on {}: the step's API writes not seen within {FENCE_WITHIN:?} \
                         (fence {n}: {FENCE_NS}/src -> {FENCE_NS}/dst {}/TCP not allowed)\n{}",
                        a.process.node(),
                        fence_port(n),
                        a.process.log_tail(40)
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if !agents.is_empty() {
            self.fence_waits
                .push(if waited { t0.elapsed() } else { Duration::ZERO });
        }
        Ok(())
    }
}

/// Whether agent `a` (`palisade explain`) allows the fence of step `n`;
/// `None` when it cannot say (the fence objects not seen at all).
fn fence_allowed(a: &Agent, n: u32) -> Option<bool> {
    let req = Request::Explain(ExplainRequest {
        from: format!("{FENCE_NS}/src"),
        to: format!("{FENCE_NS}/dst"),
        port: format!("{}/TCP", fence_port(n)),
    });
    let r = request(&a.socket, &req, Duration::from_secs(5)).ok()?;
    r.data.as_ref()?["allowed"].as_bool()
}

fn fence_ns_labels(n: u32) -> Value {
    json!({"palisade-fence": "true", "fence": format!("f{n}"),
           "kubernetes.io/metadata.name": FENCE_NS})
}

/// The objects of the namespaces and pods of `app` that `exists`, with
/// their labels as the lab holds them (the runner's state), plus
/// `policies` and `cluster_policies`.
pub fn objects(
    app: &AppLab,
    exists_ns: &dyn Fn(&str) -> bool,
    exists_pod: &dyn Fn(&str) -> bool,
    policies: impl Iterator<Item = Value>,
    cluster_policies: impl Iterator<Item = Value>,
) -> Objects {
    let mut o = Objects::default();
    for doc in app.manifests() {
        let name = name_of(&doc);
        match doc["kind"].as_str() {
            Some("Namespace") if exists_ns(&name) => {
                o.namespaces.insert(name, doc);
            }
            Some("Pod") => {
                let key = format!("{}/{name}", ns_of(&doc));
                if exists_pod(&key) {
                    o.pods.insert(key, doc);
                }
            }
            _ => {}
        }
    }
    for p in policies {
        o.policies
            .insert(format!("{}/{}", ns_of(&p), name_of(&p)), p);
    }
    for p in cluster_policies {
        o.cluster_policies.insert(name_of(&p), p);
    }
    o
}

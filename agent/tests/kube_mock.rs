//! The Kubernetes source against a mock API server (tower-test): realistic
//! list and watch JSON for NetworkPolicies, Namespaces, Pods and Nodes, an API
//! that fails its first list (503), a watch that ends with `410 Gone` and
//! the relist after it. No cluster, no privileges.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use http::{Request, Response};
use http_body::Frame;
use http_body_util::StreamBody;
use kube::Client;
use kube::client::Body;
use palisade::source::{Change, Kind, Object, SourceUpdate, kube::spawn};
use serde_json::{Value, json};

type Chunk = Result<Frame<Bytes>, Infallible>;
type MockBody = StreamBody<futures::channel::mpsc::UnboundedReceiver<Chunk>>;

fn body(lines: &[Value], keep_open: bool) -> (MockBody, Option<UnboundedSender<Chunk>>) {
    let (tx, rx) = unbounded();
    for l in lines {
        let mut b = serde_json::to_vec(l).unwrap();
        b.push(b'\n');
        tx.unbounded_send(Ok(Frame::data(Bytes::from(b)))).unwrap();
    }
    (StreamBody::new(rx), keep_open.then_some(tx))
}

fn list(kind: &str, api_version: &str, rv: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": format!("{kind}List"),
           "metadata": {"resourceVersion": rv}, "items": items})
}

fn ns(name: &str, rv: &str) -> Value {
    json!({"metadata": {"name": name, "resourceVersion": rv, "uid": format!("uid-{name}"),
                        "labels": {"kubernetes.io/metadata.name": name},
                        "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

fn pod(name: &str, app: &str, ip: &str, rv: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "prod", "uid": format!("uid-{name}"),
                        "resourceVersion": rv, "labels": {"app": app},
                        "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx:1",
                    "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}]}]},
           "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
}

fn netpol(name: &str, rv: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "prod", "resourceVersion": rv,
                        "generation": 1, "uid": format!("uid-{name}"),
                        "annotations": {"policy.palisade.dev/mode": "audit",
                                        "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                        "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
           "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
}

fn node(name: &str, rv: &str) -> Value {
    json!({"metadata": {"name": name, "resourceVersion": rv, "uid": format!("uid-{name}"),
                        "labels": {"kubernetes.io/os": "linux", "kubernetes.io/hostname": name},
                        "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
           "spec": {"podCIDR": "198.18.1.0/24"},
           "status": {"addresses": [{"type": "InternalIP", "address": "198.19.0.1"},
                                    {"type": "InternalIP", "address": "2001:db8:fab::1"},
                                    {"type": "Hostname", "address": name}],
                      "conditions": [{"type": "Ready", "status": "True"}],
                      "images": [{"names": ["nginx:1"], "sizeBytes": 1}]}})
}

fn event(kind: &str, obj: Value) -> Value {
    json!({"type": kind, "object": obj})
}

fn gone() -> Value {
    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
           "status": "Failure", "message": "too old resource version: 10 (42)",
           "reason": "Expired", "code": 410}})
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "the server is currently unable to handle the request",
           "reason": reason, "code": code})
}

/// Serves the scenario; returns the requests seen (path + whether watch).
async fn api(mut handle: tower_test::mock::Handle<Request<Body>, Response<MockBody>>) {
    let mut open = Vec::new(); // watch bodies kept open (never end)
    let mut seen: BTreeMap<(String, bool), usize> = BTreeMap::new();
    while let Some((req, send)) = handle.next_request().await {
        let path = req.uri().path().to_string();
        let watch = req.uri().query().unwrap_or("").contains("watch=true");
        let n = {
            let c = seen.entry((path.clone(), watch)).or_default();
            *c += 1;
            *c
        };
        let (code, (b, keep)) = match (path.as_str(), watch, n) {
            // The API is unavailable for the first NetworkPolicy list.
            ("/apis/networking.k8s.io/v1/networkpolicies", false, 1) => {
                (503, body(&[status(503, "ServiceUnavailable")], false))
            }
            ("/apis/networking.k8s.io/v1/networkpolicies", false, _) => (
                200,
                body(
                    &[list(
                        "NetworkPolicy",
                        "networking.k8s.io/v1",
                        "10",
                        vec![netpol("deny", "7")],
                    )],
                    false,
                ),
            ),
            ("/api/v1/namespaces", false, _) => (
                200,
                body(
                    &[list("Namespace", "v1", "10", vec![ns("prod", "3")])],
                    false,
                ),
            ),
            ("/api/v1/pods", false, 1) => (
                200,
                body(
                    &[list(
                        "Pod",
                        "v1",
                        "10",
                        vec![pod("web", "web", "198.18.1.10", "5")],
                    )],
                    false,
                ),
            ),
            // The relist after 410 Gone: web was deleted meanwhile, db added.
            ("/api/v1/pods", false, _) => (
                200,
                body(
                    &[list(
                        "Pod",
                        "v1",
                        "50",
                        vec![pod("db", "db", "198.18.1.12", "45")],
                    )],
                    false,
                ),
            ),
            ("/api/v1/nodes", false, _) => (
                200,
                body(&[list("Node", "v1", "10", vec![node("n1", "4")])], false),
            ),
            ("/api/v1/namespaces", true, 1) => {
                (200, body(&[event("ADDED", ns("dev", "11"))], true))
            }
            ("/api/v1/pods", true, 1) => (
                200,
                body(
                    &[
                        event("MODIFIED", pod("web", "web-v2", "198.18.1.10", "12")),
                        gone(),
                    ],
                    false,
                ),
            ),
            // Every other watch stays open and quiet.
            (_, true, _) => (200, body(&[], true)),
            _ => (404, body(&[status(404, "NotFound")], false)),
        };
        if let Some(k) = keep {
            open.push(k);
        }
        send.send_response(Response::builder().status(code).body(b).unwrap());
    }
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<SourceUpdate>) -> SourceUpdate {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("an update within 20 s")
        .expect("source alive")
}

fn describe(c: &Change) -> String {
    match c {
        Change::Upsert(o) => format!("upsert {}", o.key()),
        Change::Delete(k) => format!("delete {k}"),
        Change::Replace { kind, objects } => {
            let mut names: Vec<String> = objects.iter().map(|o| o.key().name).collect();
            names.sort();
            format!("replace {kind} [{}]", names.join(","))
        }
    }
}

#[tokio::test]
async fn lists_watches_relists_and_survives_api_errors() {
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<MockBody>>();
    let server = tokio::spawn(api(handle));
    let client = Client::new(mock, "default");
    let mut src = spawn(client);

    // Nothing is synced until all three kinds are listed; the NetworkPolicy
    // list fails first (503) and is retried with backoff. Meanwhile the
    // other watches deliver (a namespace added, a pod modified), then the
    // pod watch ends with 410 Gone and the relist replaces the pods
    // atomically (web gone, db there).
    let mut all: Vec<Change> = Vec::new();
    let mut synced_at = None;
    let relisted = |all: &[Change]| {
        all.iter().any(|c| {
            matches!(c, Change::Replace { kind: Kind::Pod, objects }
            if objects.len() == 1 && objects[0].key().name == "db")
        })
    };
    while synced_at.is_none() || !relisted(&all) {
        let u = next(&mut src.updates).await;
        all.extend(u.changes);
        let names: Vec<String> = all.iter().map(describe).collect();
        let policies_listed = names.iter().any(|s| s.starts_with("replace NetworkPolicy"));
        if synced_at.is_none() {
            // Synced exactly when the last kind finished its list.
            assert_eq!(u.synced, policies_listed, "{names:?}");
            if u.synced {
                synced_at = Some(all.len());
            }
        } else {
            assert!(u.synced);
        }
    }
    let names: Vec<String> = all.iter().map(describe).collect();
    let pos = |s: &str| {
        names
            .iter()
            .position(|n| n == s)
            .unwrap_or_else(|| panic!("{s} in {names:?}"))
    };
    pos("replace Namespace [prod]");
    pos("replace NetworkPolicy [deny]");
    pos("upsert Namespace dev");
    pos("replace Node [n1]");
    assert!(
        pos("replace Pod [web]") < pos("upsert Pod prod/web"),
        "{names:?}"
    );
    assert!(
        pos("upsert Pod prod/web") < pos("replace Pod [db]"),
        "{names:?}"
    );
    let modified = all
        .iter()
        .find_map(|c| match c {
            Change::Upsert(Object::Pod(p)) => Some(p.clone()),
            _ => None,
        })
        .expect("pod update");
    // What enforcement never reads is not kept.
    assert_eq!(
        modified.labels[..],
        [("app".to_string(), "web-v2".to_string())]
    );
    assert_eq!(modified.uid.as_deref(), Some("uid-web"));
    let node = all
        .iter()
        .find_map(|c| match c {
            Change::Replace { objects, .. } => objects.iter().find_map(|o| match o {
                Object::Node(n) => Some(n.clone()),
                _ => None,
            }),
            _ => None,
        })
        .expect("node listed");
    // A Node keeps its name, labels and addresses, nothing else.
    assert_eq!(node.metadata.labels.as_ref().map(BTreeMap::len), Some(2));
    assert!(node.metadata.annotations.is_none() && node.spec.is_none());
    let st = node.status.as_ref().unwrap();
    assert!(st.conditions.is_none() && st.images.is_none());
    assert_eq!(st.addresses.as_ref().map(Vec::len), Some(3));
    let policy = all
        .iter()
        .find_map(|c| match c {
            Change::Replace { objects, .. } => objects.iter().find_map(|o| match o {
                Object::NetworkPolicy(np) => Some(np.clone()),
                _ => None,
            }),
            _ => None,
        })
        .expect("policy listed");
    assert!(policy.metadata.managed_fields.is_none());
    // Except the audit-mode annotation, which the compiler reads.
    assert_eq!(
        policy.metadata.annotations,
        Some(BTreeMap::from([(
            palisade_compiler::MODE_ANNOTATION.to_string(),
            "audit".to_string()
        )]))
    );

    // A rescan is answered once the watches are current.
    src.rescan.send(7).unwrap();
    let u = next(&mut src.updates).await;
    assert_eq!((u.token, u.synced), (Some(7), true));
    server.abort();
}

//! `palisade explain` offline, without privileges: answers and exit
//! status (0 allowed, 1 denied, 2 error) on manifest files, one-line errors
//! for bad input, and the commands that need the agent when none runs.

use std::process::Command;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_palisade");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run palisade");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn docs() -> Vec<Value> {
    let pod = |ns: &str, name: &str, app: &str, ip: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x",
                        "ports": [{"name": "pg", "containerPort": 5432}]}]},
               "status": {"phase": "Running", "podIPs": [{"ip": ip}]}})
    };
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
        pod("db", "pg", "pg", "192.0.2.10"),
        pod("app", "api", "api", "192.0.2.20"),
        pod("app", "batch", "batch", "192.0.2.21"),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "deny", "namespace": "db"},
               "spec": {"podSelector": {}}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "pg-from-api", "namespace": "db"},
               "spec": {"podSelector": {"matchLabels": {"app": "pg"}},
                        "ingress": [{"from": [{"ipBlock": {"cidr": "198.51.100.0/24"}},
                                              {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "app"}},
                                               "podSelector": {"matchLabels": {"app": "api"}}}],
                                     "ports": [{"protocol": "UDP", "port": 53}, {"port": "pg"}]}]}}),
    ]
}

#[test]
fn offline_answers_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let text: Vec<String> = docs()
        .iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect();
    std::fs::write(dir.path().join("all.yaml"), text.join("\n---\n")).unwrap();
    let m = dir.path().to_str().unwrap();

    let (rc, out, err) = run(&[
        "explain",
        "--manifests",
        m,
        "--from",
        "app/api",
        "--to",
        "db/pg",
        "--port",
        "5432/TCP",
        "-o",
        "json",
    ]);
    assert_eq!(rc, 0, "{out}{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["allowed"], true);
    assert_eq!(
        r["ingress"]["selecting"],
        json!(["db/deny", "db/pg-from-api"])
    );
    // The selector is the second peer of from[], the named port the second
    // entry of ports[].
    assert_eq!(
        r["ingress"]["allowed_by"],
        json!([{"policy": "db/pg-from-api", "direction": "ingress", "rule": 0, "peer": 1, "port_index": 1, "port": "pg (TCP 5432)"}])
    );
    assert!(r.get("egress").is_some_and(|e| e["isolated"] == false));

    let (rc, out, _) = run(&[
        "explain",
        "--manifests",
        m,
        "--from",
        "app/batch",
        "--to",
        "db/pg",
        "--port",
        "5432/TCP",
    ]);
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.starts_with("DENIED: app/batch (192.0.2.21) -> db/pg (192.0.2.10) 5432/TCP"),
        "{out}"
    );
    assert!(
        out.contains("ingress of db/pg: isolated by db/deny, db/pg-from-api"),
        "{out}"
    );
    assert!(
        out.contains("denied: no rule allows app/batch on 5432/TCP"),
        "{out}"
    );

    // An address inside the ipBlock, and -f with a file.
    let f = dir.path().join("all.yaml");
    let (rc, out, _) = run(&[
        "explain",
        "-f",
        f.to_str().unwrap(),
        "--from",
        "198.51.100.7",
        "--to",
        "db/pg",
        "--port",
        "53/UDP",
    ]);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("allowed by db/pg-from-api ingress[0] from[0] ports[0]: UDP 53"),
        "{out}"
    );
    assert!(out.contains("egress of 198.51.100.7: not a pod"), "{out}");
    let (rc, _, _) = run(&[
        "explain",
        "-f",
        f.to_str().unwrap(),
        "--from",
        "198.51.101.7",
        "--to",
        "db/pg",
        "--port",
        "53/UDP",
    ]);
    assert_eq!(rc, 1);

    // Bad input: one line, exit 2.
    for (args, want) in [
        (
            vec!["--from", "app/nope", "--to", "db/pg", "--port", "80"],
            "palisade: pod app/nope not found",
        ),
        (
            vec!["--from", "zz/x", "--to", "db/pg", "--port", "80"],
            "palisade: unknown namespace \"zz\"",
        ),
        (
            vec!["--from", "app/api", "--to", "db/pg", "--port", "80/ICMP"],
            "palisade: malformed port \"80/ICMP\"",
        ),
        (
            vec!["--from", "app/api", "--to", "db/pg", "--port", "99999"],
            "palisade: malformed port \"99999\"",
        ),
        (
            vec!["--from", "a/b/c", "--to", "db/pg", "--port", "80"],
            "palisade: --from \"a/b/c\": expected NAMESPACE/POD",
        ),
        (
            vec!["--from", "app/api", "--to", "2001:db8::1", "--port", "80"],
            "palisade: pod app/api has no IPv6 address",
        ),
    ] {
        let mut a = vec!["explain", "--manifests", m];
        a.extend(args.iter().copied());
        let (rc, out, err) = run(&a);
        assert_eq!(rc, 2, "{a:?}: {out}");
        assert!(
            err.starts_with(want) && err.lines().count() == 1,
            "{a:?}: {err}"
        );
    }
    let (rc, _, err) = run(&[
        "explain",
        "--manifests",
        "/nonexistent/pal",
        "--from",
        "a/b",
        "--to",
        "c/d",
        "--port",
        "80",
    ]);
    assert_eq!(rc, 2);
    assert!(
        err.starts_with("palisade: reading /nonexistent/pal: "),
        "{err}"
    );
    let (rc, _, err) = run(&["explain", "--from", "a/b", "--to", "c/d", "--port", "80"]);
    assert_eq!(rc, 2);
    assert_eq!(
        err,
        "palisade: explain needs --manifests DIR, -f FILE... or --live"
    );
}

#[test]
fn agent_commands_without_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let s = sock.to_str().unwrap();
    for args in [
        vec!["monitor", "--socket", s],
        vec!["endpoint", "list", "--socket", s],
        vec!["policy", "get", "a/b", "--socket", s],
        vec![
            "explain", "--live", "--socket", s, "--from", "a/b", "--to", "c/d", "--port", "80",
        ],
    ] {
        let (rc, out, err) = run(&args);
        assert_ne!(rc, 0, "{args:?}: {out}");
        assert!(
            err.starts_with(&format!("palisade: no agent is listening on {s}"))
                && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}

/// A `nodes` peer is named as such: Node objects from the manifests, the
/// rule's second peer a nodes peer selecting them.
#[test]
fn offline_names_a_nodes_peer() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("nodes.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: prod}\n\
         spec: {containers: [{name: c}]}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {kubernetes.io/os: linux}}\n\
         status: {addresses: [{type: InternalIP, address: 198.19.0.1}, \
         {type: InternalIP, address: '2001:db8:fab::1'}]}\n---\n\
         apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
         metadata: {name: no-nodes}\nspec: {tier: Admin, priority: 5, subject: {namespaces: {}}, \
         egress: [{name: kubelet, action: Deny, to: [{networks: [203.0.113.0/24]}, \
         {nodes: {matchLabels: {kubernetes.io/os: linux}}}]}]}\n",
    )
    .unwrap();
    for to in ["198.19.0.1", "2001:db8:fab::1"] {
        let (rc, out, err) = run(&[
            "explain",
            "-f",
            f.to_str().unwrap(),
            "--from",
            "prod/web",
            "--to",
            to,
            "--port",
            "10250/TCP",
        ]);
        assert_eq!(rc, 1, "{out}{err}");
        assert!(
            out.contains(
                "egress of prod/web: denied: [Admin] Deny by ClusterNetworkPolicy \
                 admin/no-nodes egress[0] \"kubelet\" (priority 5, Deny) (peer: nodes #0)\n"
            ),
            "{out}"
        );
    }
    let (rc, out, _) = run(&[
        "explain",
        "-f",
        f.to_str().unwrap(),
        "--from",
        "prod/web",
        "--to",
        "198.19.0.2",
        "--port",
        "10250/TCP",
    ]);
    assert_eq!(rc, 0, "{out}");
}

/// ClusterNetworkPolicies: the walk through the tiers on the examples of
/// `examples/` (the demo's last step), in text and JSON, and a policy kind
/// Palisade does not enforce named as such.
#[test]
fn offline_walks_the_tiers() {
    let ex = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let files: Vec<String> = [
        "three-tier/app.yaml",
        "three-tier/1-default-deny-all.yaml",
        "three-tier/2-allow-dns.yaml",
        "three-tier/3-frontend-policy.yaml",
        "cluster/deny-metadata.yaml",
        "cluster/allow-all-egress.yaml",
    ]
    .iter()
    .map(|f| format!("{ex}/{f}"))
    .collect();
    let mut args = vec!["explain"];
    for f in &files {
        args.extend(["-f", f.as_str()]);
    }
    let ask = |to: &str, port: &str, json: bool| {
        let mut a = args.clone();
        a.extend(["--from", "production/frontend", "--to", to, "--port", port]);
        if json {
            a.extend(["-o", "json"]);
        }
        run(&a)
    };

    // The Admin Deny decides before NetworkPolicy's allow-all egress.
    let (rc, out, err) = ask("169.254.169.254", "80/TCP", false);
    assert_eq!(rc, 1, "{out}{err}");
    assert!(
        out.contains(
            "egress of production/frontend: denied: [Admin] Deny by ClusterNetworkPolicy \
             admin/deny-metadata egress[0] \"cloud-metadata\" (priority 10, Deny) \
             (peer: networks #0)\n"
        ),
        "{out}"
    );
    // Anything else: no Admin rule matches, NetworkPolicy decides.
    let (rc, out, err) = ask("203.0.113.10", "443/TCP", false);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains(
            "egress of production/frontend: allowed: [Admin] no rule of deny-metadata matches \
             → [NetworkPolicy] allowed by production/allow-all-egress egress[0]"
        ),
        "{out}"
    );
    let (_, out, _) = ask("169.254.169.254", "80/TCP", true);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["egress"]["decided_by"], "admin");
    assert_eq!(v["egress"]["tiers"][0]["tier"], "admin");
    assert_eq!(v["egress"]["tiers"][0]["action"], "Deny");
    assert_eq!(
        v["egress"]["tiers"][0]["policies"],
        json!(["deny-metadata"])
    );

    // An AdminNetworkPolicy (v1alpha1) is not enforced: said, not skipped.
    let dir = tempfile::tempdir().unwrap();
    // A policy of the same priority whose rule matches too: the order of
    // equal priorities is named, not hidden.
    let tie = dir.path().join("tie.yaml");
    std::fs::write(
        &tie,
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
         metadata: {name: allow-imds-agent}\nspec: {tier: Admin, priority: 10, \
         subject: {namespaces: {}}, egress: [{action: Accept, \
         to: [{networks: [169.254.169.254/32]}]}]}\n",
    )
    .unwrap();
    let mut a = args.clone();
    a.extend(["-f", tie.to_str().unwrap()]);
    a.extend(["--from", "production/frontend", "--to", "169.254.169.254"]);
    a.extend(["--port", "80/TCP"]);
    let (rc, out, err) = run(&a);
    assert_eq!(
        rc, 0,
        "allow-imds-agent is consulted first (by name): {out}{err}"
    );
    assert!(
        out.contains(
            "    same priority: ClusterNetworkPolicy admin/deny-metadata egress[0] \
             \"cloud-metadata\" (priority 10, Deny) matches too; the API leaves the order \
             of equal priorities undefined, Palisade consults them by name\n"
        ),
        "{out}"
    );
    a.extend(["-o", "json"]);
    let (_, out, _) = run(&a);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["egress"]["tiers"][0]["ties"],
        json!([
            "ClusterNetworkPolicy admin/deny-metadata egress[0] \"cloud-metadata\" (priority 10, Deny)"
        ])
    );

    let anp = dir.path().join("anp.yaml");
    std::fs::write(
        &anp,
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n\
         metadata: {name: old-style}\nspec: {priority: 1, subject: {namespaces: {}}}\n",
    )
    .unwrap();
    let mut a = args.clone();
    a.extend(["-f", anp.to_str().unwrap()]);
    a.extend([
        "--from",
        "production/frontend",
        "--to",
        "169.254.169.254",
        "--port",
        "80/TCP",
    ]);
    let (rc, _, err) = run(&a);
    assert_eq!(rc, 1);
    assert!(
        err.contains(
            "NOT ENFORCED by Palisade: AdminNetworkPolicy (policy.networking.k8s.io/v1alpha1) old-style"
        ),
        "{err}"
    );
}

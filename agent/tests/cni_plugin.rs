//! The `palisade-cni` binary called exactly as a container runtime calls a
//! chained plugin (CNI_* environment, network configuration with
//! `prevResult` on stdin), against a running agent in a lab node's
//! namespace whose pods are real routed veths: ADD returns only once the
//! pod is enforced (probes judged from the first packet), CHECK, DEL
//! (idempotent, and with the agent gone), VERSION, and the CNI error
//! results for a missing or silent agent and for bad input. The privileged
//! test needs root; everything it creates is removed, also on failure.

mod support;

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_lab::{LabSpec, Node, Pod, Services, serve};
use serde_json::{Value, json};
use support::*;

const CNI: &str = env!("CARGO_BIN_EXE_palisade-cni");

/// What the runtime sees.
#[derive(Debug)]
struct Ran {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts a CNI error result with `code`; returns it.
    fn error(&self, code: u64) -> Value {
        assert!(!self.success, "expected failure: {self:?}");
        let v = self.json();
        assert_eq!(v["code"], json!(code), "{self:?}");
        for k in ["cniVersion", "msg", "details"] {
            assert!(v[k].is_string(), "{k} missing: {self:?}");
        }
        v
    }
}

/// Runs the plugin with a runtime's minimal environment, in `node`'s
/// namespace when given (CHECK reads interface indices there).
fn cni(node: Option<&Node>, command: &str, vars: &[(&str, String)], stdin: &str) -> Ran {
    let mut cmd = match node {
        Some(n) => n.command(CNI),
        None => Command::new(CNI),
    };
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", "/opt/cni/bin")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn palisade-cni");
    {
        use std::io::Write as _;
        let mut i = child.stdin.take().unwrap();
        i.write_all(stdin.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Ran {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

/// The environment kubelet's runtime sets for a pod sandbox.
fn pod_env(p: &Pod, k8s_ns: &str, name: &str, sandbox: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_CONTAINERID", sandbox.to_string()),
        ("CNI_NETNS", format!("/var/run/netns/{}", p.netns())),
        ("CNI_IFNAME", "eth0".into()),
        (
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={k8s_ns};K8S_POD_NAME={name};\
                 K8S_POD_INFRA_CONTAINER_ID={sandbox};K8S_POD_UID=uid-{name}"
            ),
        ),
    ]
}

/// `prevResult` as the `ptp` plugin returns it: the host veth (no
/// sandbox), the pod's eth0, its two addresses.
fn ptp_result(p: &Pod) -> Value {
    json!({"cniVersion": "1.0.0",
           "interfaces": [{"name": p.host_veth(), "mac": "02:00:00:00:00:aa"},
                          {"name": "eth0", "mac": "02:00:00:00:00:bb",
                           "sandbox": format!("/var/run/netns/{}", p.netns())}],
           "ips": [{"address": format!("{}/32", p.ipv4()), "gateway": "169.254.1.1", "interface": 1},
                   {"address": format!("{}/128", p.ipv6()), "gateway": "fe80::1", "interface": 1}],
           "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
           "dns": {}})
}

/// `prevResult` as Calico returns it: only the pod's side.
fn calico_result(p: &Pod) -> Value {
    json!({"cniVersion": "1.0.0",
           "interfaces": [{"name": "eth0", "sandbox": format!("/var/run/netns/{}", p.netns())}],
           "ips": [{"address": format!("{}/32", p.ipv4()), "interface": 0},
                   {"address": format!("{}/128", p.ipv6()), "interface": 0}],
           "dns": {}})
}

fn netconf(socket: &Path, timeout_ms: u64, prev: Option<Value>) -> String {
    let mut c = json!({"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "palisade-cni",
                       "agentSocket": socket, "agentTimeoutMs": timeout_ms});
    if let Some(p) = prev {
        c["prevResult"] = p;
    }
    c.to_string()
}

#[test]
fn runtime_calls_against_a_running_agent() {
    let lab = LabSpec::new(&format!("pcn{}", std::process::id() % 100_000))
        .node("n1")
        .pod("client", "dev", "n1")
        .pod("web", "prod", "n1")
        .pod("db", "prod", "n1")
        .up()
        .expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(tmp.path(), &bpffs, "n1");
    let node = lab.node("n1");
    let (client, web, db) = (lab.pod("client"), lab.pod("web"), lab.pod("db"));
    let svc = Services::new().tcp(80).tcp(81);
    let _s: Vec<_> = [web, db]
        .iter()
        .map(|p| serve(*p, &svc).expect("servers"))
        .collect();

    // web exists in the API but has no addresses yet (the API learns them
    // after CNI ADD), so only ADD can make it an endpoint. db is unknown.
    let mut web_pod = pod(web, "prod", "web", "uid-web", json!({"app": "web"}));
    web_pod["status"] = json!({"phase": "Pending"});
    d.write(
        "all.yaml",
        &[
            namespace("dev", json!({})),
            namespace("prod", json!({})),
            pod(
                client,
                "dev",
                "client",
                "uid-client",
                json!({"app": "client"}),
            ),
            web_pod,
            policy(
                "prod",
                "web-ingress",
                json!({"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"from": [{"namespaceSelector": {},
                                              "podSelector": {"matchLabels": {"app": "client"}}}],
                                    "ports": [{"protocol": "TCP", "port": 80}]}]}),
            ),
        ],
    );
    let mut agent = Agent::start(
        node,
        &d,
        &["--default-deny-until-synced", "--cni-wait-ms", "300"],
    );
    agent.sync_ok();
    let conf = |prev: Option<Value>| netconf(&d.socket, 10_000, prev);
    let web_env = pod_env(web, "prod", "web", "sandbox-web-1");
    let db_env = pod_env(db, "prod", "db", "sandbox-db-1");

    // VERSION.
    let v = cni(None, "VERSION", &[], r#"{"cniVersion":"0.4.0"}"#);
    assert!(v.success, "{v:?}");
    let v = v.json();
    assert_eq!(v["cniVersion"], "0.4.0");
    let supported: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(supported, ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]);

    // Before ADD: web is not enforced and is reachable on every port.
    assert_ne!(
        endpoint_state(&agent, "prod/web").map(|s| s.1),
        Some("enforced".into())
    );
    let mut cases = Vec::new();
    for dst in both(web) {
        cases.push((client, dst, P::Tcp(81), true));
    }
    expect("before ADD", &[&agent], &cases);

    // ADD: returns prevResult unchanged, only once enforced: the very
    // first connections after it are judged by web's policy.
    let prev = ptp_result(web);
    let started = Instant::now();
    let r = cni(Some(node), "ADD", &web_env, &conf(Some(prev.clone())));
    assert!(r.success, "{r:?}\n{}", agent.log_text());
    assert_eq!(r.json(), prev, "ADD prints prevResult unchanged");
    assert!(r.stderr.contains("policy enforced"), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ADD took {:?}",
        started.elapsed()
    );
    assert_eq!(
        endpoint_state(&agent, "prod/web"),
        Some((Some(web.host_veth().to_string()), "enforced".into()))
    );
    let mut cases = Vec::new();
    for dst in both(web) {
        cases.extend([
            (client, dst, P::Tcp(81), false),
            (client, dst, P::Tcp(80), true),
        ]);
    }
    expect("after ADD", &[&agent], &cases);

    // CHECK: success prints nothing; prevResult naming another host
    // interface than the agent enforces on fails.
    let c = cni(Some(node), "CHECK", &web_env, &conf(Some(prev.clone())));
    assert!(c.success && c.stdout.is_empty(), "{c:?}");
    let wrong = ptp_result(web);
    let mut wrong = wrong;
    wrong["interfaces"][0]["name"] = json!(client.host_veth());
    let c = cni(Some(node), "CHECK", &web_env, &conf(Some(wrong)));
    let e = c.error(101);
    assert!(
        e["details"].as_str().unwrap().contains(client.host_veth()),
        "{e}"
    );

    // ADD of a pod the sources do not know, Calico style (no host
    // interface in prevResult: the agent finds it by route): attached as
    // pending within the agent's --cni-wait-ms, and new flows drop.
    let r = cni(Some(node), "ADD", &db_env, &conf(Some(calico_result(db))));
    assert!(r.success, "{r:?}\n{}", agent.log_text());
    assert!(r.stderr.contains("policy pending"), "{r:?}");
    assert_eq!(
        endpoint_state(&agent, "prod/db"),
        Some((Some(db.host_veth().to_string()), "pending".into()))
    );
    let mut cases = Vec::new();
    for dst in both(db) {
        cases.push((client, dst, P::Tcp(80), false));
    }
    expect("pending db", &[&agent], &cases);
    let c = cni(Some(node), "CHECK", &db_env, &conf(Some(calico_result(db))));
    assert!(c.success, "{c:?}");

    // DEL: db is detached (reachable again), twice is fine, and CHECK then
    // fails with the agent's answer.
    for _ in 0..2 {
        let r = cni(Some(node), "DEL", &db_env, &conf(Some(calico_result(db))));
        assert!(r.success && r.stdout.is_empty(), "{r:?}");
    }
    agent.sync_ok();
    let mut cases = Vec::new();
    for dst in both(db) {
        cases.push((client, dst, P::Tcp(80), true));
    }
    expect("db deleted", &[&agent], &cases);
    let c = cni(Some(node), "CHECK", &db_env, &conf(Some(calico_result(db))));
    c.error(100);
    // DEL without prevResult (allowed by the spec) for web.
    let mut del_env = web_env.clone();
    del_env.retain(|(k, _)| *k != "CNI_NETNS");
    let r = cni(Some(node), "DEL", &del_env, &conf(None));
    assert!(r.success, "{r:?}");

    // Bad input: CNI error results on stdout, non-zero exit.
    let e = cni(Some(node), "ADD", &web_env, "{not json").error(6);
    assert_eq!(e["cniVersion"], "1.0.0");
    cni(Some(node), "ADD", &web_env, &conf(None)).error(7);
    let old = json!({"cniVersion": "0.2.0", "name": "n", "type": "palisade-cni",
                     "prevResult": prev.clone()});
    cni(Some(node), "ADD", &web_env, &old.to_string()).error(1);
    let mut no_pod = web_env.clone();
    no_pod.retain(|(k, _)| *k != "CNI_ARGS");
    cni(Some(node), "ADD", &no_pod, &conf(Some(prev.clone()))).error(4);
    cni(Some(node), "GC", &web_env, &conf(Some(prev.clone()))).error(4);

    // The agent stops: ADD fails closed (try again later), DEL succeeds.
    assert!(agent.stop());
    let e = cni(Some(node), "ADD", &web_env, &conf(Some(prev.clone()))).error(11);
    assert!(
        e["details"]
            .as_str()
            .unwrap()
            .contains("no agent is listening"),
        "{e}"
    );
    let r = cni(Some(node), "DEL", &web_env, &conf(Some(prev)));
    assert!(r.success && r.stdout.is_empty(), "{r:?}");
}

/// An agent that accepts but never answers: ADD fails after
/// `agentTimeoutMs` with a CNI error; DEL succeeds. Needs no privileges.
#[test]
fn silent_agent_times_out() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("silent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let held = std::thread::spawn(move || {
        // Hold two connections open without answering.
        let a = listener.accept().unwrap();
        let b = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(2));
        drop((a, b));
    });
    let prev = json!({"interfaces": [{"name": "veth0"}, {"name": "eth0", "sandbox": "/x"}],
                      "ips": [{"address": "198.18.1.10/32", "interface": 1}]});
    let vars = vec![
        ("CNI_CONTAINERID", "c1".to_string()),
        ("CNI_NETNS", "/var/run/netns/none".to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        (
            "CNI_ARGS",
            "K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web".to_string(),
        ),
    ];
    let started = Instant::now();
    let r = cni(
        None,
        "ADD",
        &vars,
        &netconf(&socket, 300, Some(prev.clone())),
    );
    let took = started.elapsed();
    let e = r.error(11);
    assert!(
        e["details"]
            .as_str()
            .unwrap()
            .contains("agentTimeoutMs=300"),
        "{e}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let r = cni(
        None,
        "DEL",
        &vars,
        &netconf(&socket, 300, Some(prev.clone())),
    );
    assert!(r.success, "{r:?}");
    held.join().unwrap();

    // Nothing listening at all.
    let r = cni(
        None,
        "ADD",
        &vars,
        &netconf(&tmp.path().join("none.sock"), 300, Some(prev)),
    );
    r.error(11);
}

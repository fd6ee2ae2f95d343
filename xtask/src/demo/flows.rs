//! The seeds' flows the demo probes, the policy files of each step and the
//! verdicts expected after it.

use std::net::IpAddr;

use anyhow::bail;

use palisade_lab::{ANSWER_TIMEOUT, AppLab, DEFAULT_TIMEOUT, ProbeResult, ProbeSpec, probe_all};

/// One probed flow of the seeds.
pub struct Flow {
    pub what: &'static str,
    pub from: (&'static str, &'static str),
    pub to: Target,
    pub proto: Proto,
    pub port: u16,
}

pub enum Target {
    Pod(&'static str, &'static str),
    External(&'static str),
}

#[derive(Clone, Copy)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A step of the demo: the files (under `examples/`) it applies and
/// removes, as `kubectl apply -f` / `kubectl delete -f` would, and the
/// expected verdict of each flow after it, in [`flows`] order (`A`
/// allowed, `B` blocked). Files stay applied until a step removes them.
pub struct Step {
    pub title: &'static str,
    pub apply: &'static [&'static str],
    pub delete: &'static [&'static str],
    pub expected: &'static str,
}

const fn step(
    title: &'static str,
    apply: &'static [&'static str],
    delete: &'static [&'static str],
    expected: &'static str,
) -> Step {
    Step {
        title,
        apply,
        delete,
        expected,
    }
}

pub const STEPS: [Step; 8] = [
    step(
        "no policies: Kubernetes' default is allow-all",
        &[],
        &[],
        "AAAAAAAAAAAA",
    ),
    step(
        "default-deny-all (production, ingress and egress)",
        &["three-tier/1-default-deny-all.yaml"],
        &[],
        "BBBBBBBBBBBB",
    ),
    step(
        "allow-dns (egress to kube-system, 53)",
        &["three-tier/2-allow-dns.yaml"],
        &[],
        "BBBBBAABBBBB",
    ),
    step(
        "frontend/backend/database policies + restrict-egress",
        &[
            "three-tier/3-frontend-policy.yaml",
            "three-tier/3-backend-policy.yaml",
            "three-tier/3-database-policy.yaml",
            "three-tier/3-restrict-egress.yaml",
        ],
        &[],
        "AAABBAABABBB",
    ),
    step(
        "allow-monitoring-scrape (9090 from purpose=monitoring)",
        &["three-tier/4-allow-monitoring-scrape.yaml"],
        &[],
        "AAABBAAAABBB",
    ),
    step(
        "block-metadata (egress 0.0.0.0/0 except 169.254.169.254/32): it also opens the external API to frontend",
        &["three-tier/5-block-metadata.yaml"],
        &[],
        "AAABBAAAAABB",
    ),
    step(
        "the same intent as the cluster operator's: ClusterNetworkPolicy admin/deny-metadata instead (Admin Deny, every namespace); frontend's external API is closed again",
        &["cluster/deny-metadata.yaml"],
        &["three-tier/5-block-metadata.yaml"],
        "AAABBAAAABBB",
    ),
    step(
        "a namespace allows all egress: the external API opens, the metadata service stays denied by the Admin tier",
        &["cluster/allow-all-egress.yaml"],
        &[],
        "AAABBAAAAABB",
    ),
];

pub fn flows() -> Vec<Flow> {
    use Proto::*;
    use Target::*;
    let f = |what, from, to, proto, port| Flow {
        what,
        from,
        to,
        proto,
        port,
    };
    vec![
        f(
            "ingress controller -> frontend",
            ("ingress-nginx", "controller"),
            Pod("production", "frontend"),
            Tcp,
            80,
        ),
        f(
            "frontend -> backend",
            ("production", "frontend"),
            Pod("production", "backend"),
            Tcp,
            8080,
        ),
        f(
            "backend -> database",
            ("production", "backend"),
            Pod("production", "database"),
            Tcp,
            5432,
        ),
        f(
            "frontend -> database (skips a tier)",
            ("production", "frontend"),
            Pod("production", "database"),
            Tcp,
            5432,
        ),
        f(
            "test-pod -> database (seed's kubectl run)",
            ("production", "test-pod"),
            Pod("production", "database"),
            Tcp,
            5432,
        ),
        f(
            "frontend -> kube-dns",
            ("production", "frontend"),
            Pod("kube-system", "kube-dns"),
            Udp,
            53,
        ),
        f(
            "backend -> kube-dns",
            ("production", "backend"),
            Pod("kube-system", "kube-dns"),
            Tcp,
            53,
        ),
        f(
            "prometheus -> backend metrics",
            ("monitoring", "prometheus"),
            Pod("production", "backend"),
            Tcp,
            9090,
        ),
        f(
            "backend -> external API 203.0.113.10",
            ("production", "backend"),
            External("external-api"),
            Tcp,
            443,
        ),
        f(
            "frontend -> external API 203.0.113.10",
            ("production", "frontend"),
            External("external-api"),
            Tcp,
            443,
        ),
        f(
            "frontend -> metadata 169.254.169.254",
            ("production", "frontend"),
            External("metadata"),
            Tcp,
            80,
        ),
        f(
            "ingress controller -> backend (skips a tier)",
            ("ingress-nginx", "controller"),
            Pod("production", "backend"),
            Tcp,
            8080,
        ),
    ]
}

/// Probes every flow in parallel; blocked-expected probes use the short
/// timeout, allowed-expected ones the long one.
pub fn probe_flows(
    app: &AppLab,
    flows: &[Flow],
    expected: &str,
) -> anyhow::Result<Vec<ProbeResult>> {
    let specs: Vec<ProbeSpec> = flows
        .iter()
        .zip(expected.chars())
        .map(|(f, e)| {
            let from = app.pod(f.from.0, f.from.1);
            let dst: IpAddr = match f.to {
                Target::Pod(ns, name) => app.pod(ns, name).ipv4().into(),
                Target::External(h) => app.external(h).addrs()[0],
            };
            let spec = match f.proto {
                Proto::Tcp => ProbeSpec::tcp(from, dst, f.port),
                Proto::Udp => ProbeSpec::udp(from, dst, f.port),
            };
            spec.timeout(if e == 'A' {
                ANSWER_TIMEOUT
            } else {
                DEFAULT_TIMEOUT
            })
        })
        .collect();
    let results = probe_all(&specs);
    if let Some(ProbeResult::Failed(e)) =
        results.iter().find(|r| matches!(r, ProbeResult::Failed(_)))
    {
        bail!("a probe could not run: {e}");
    }
    Ok(results)
}

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

/// The policy files each step applies (cumulative) and the expected verdict
/// of each flow after it, in [`flows`] order (`A` allowed, `B` blocked).
pub const STEPS: [(&str, &[&str], &str); 6] = [
    (
        "no policies: Kubernetes' default is allow-all",
        &[],
        "AAAAAAAAAAAA",
    ),
    (
        "default-deny-all (production, ingress and egress)",
        &["1-default-deny-all.yaml"],
        "BBBBBBBBBBBB",
    ),
    (
        "allow-dns (egress to kube-system, 53)",
        &["2-allow-dns.yaml"],
        "BBBBBAABBBBB",
    ),
    (
        "frontend/backend/database policies + restrict-egress",
        &[
            "3-frontend-policy.yaml",
            "3-backend-policy.yaml",
            "3-database-policy.yaml",
            "3-restrict-egress.yaml",
        ],
        "AAABBAABABBB",
    ),
    (
        "allow-monitoring-scrape (9090 from purpose=monitoring)",
        &["4-allow-monitoring-scrape.yaml"],
        "AAABBAAAABBB",
    ),
    (
        "block-metadata (egress 0.0.0.0/0 except 169.254.169.254/32)",
        &["5-block-metadata.yaml"],
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

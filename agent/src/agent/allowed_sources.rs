//! The Namespace annotation `policy.palisade.dev/allowed-source-prefixes`:
//! comma-separated CIDRs the pods of a namespace may send from besides
//! their own addresses (source verification, see `sources`). A bare
//! address means that one address. In a normal RBAC setup only cluster
//! administrators can change a Namespace's annotations, which is why the
//! exception lives there and not on Pods.
//!
//! A bad entry is logged with the namespace, the annotation and the entry,
//! and ignored: ignoring an entry can only leave the pods fewer sources
//! than asked for, never more. Each namespace's value is parsed (and its
//! problems logged) once per change.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use tracing::warn;

/// The annotation's key.
pub const ALLOWED_SOURCES_ANNOTATION: &str = "policy.palisade.dev/allowed-source-prefixes";

/// An entry of the annotation that is not a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Namespace {namespace}: metadata.annotations[{ALLOWED_SOURCES_ANNOTATION}]: entry {entry:?}: {reason}"
)]
pub struct BadEntry {
    /// The namespace.
    pub namespace: String,
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The prefixes of an annotation value, and its bad entries.
pub fn parse(namespace: &str, value: &str) -> (Vec<IpNet>, Vec<BadEntry>) {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for raw in value.split(',') {
        let entry = raw.trim();
        if entry.is_empty() {
            continue;
        }
        let parsed = if entry.contains('/') {
            entry.parse::<IpNet>().map_err(|e| e.to_string())
        } else {
            entry
                .parse::<IpAddr>()
                .map(IpNet::from)
                .map_err(|e| e.to_string())
        };
        match parsed {
            // Host bits set: which prefix was meant is a guess, so none is
            // taken.
            Ok(net) if net.trunc() != net => bad.push(BadEntry {
                namespace: namespace.into(),
                entry: entry.into(),
                reason: format!("host bits set (the prefix is {})", net.trunc()),
            }),
            Ok(net) => good.push(net),
            Err(reason) => bad.push(BadEntry {
                namespace: namespace.into(),
                entry: entry.into(),
                reason: format!("not a CIDR prefix or address ({reason})"),
            }),
        }
    }
    good.sort();
    good.dedup();
    (good, bad)
}

/// The allowed prefixes of every namespace that has the annotation.
#[derive(Debug, Default)]
pub struct AllowedSources {
    /// Namespace → (annotation value, its prefixes).
    by_namespace: BTreeMap<String, (String, Vec<IpNet>)>,
}

impl AllowedSources {
    /// Takes the namespaces' current annotation values (name, value);
    /// namespaces not listed have none. Logs the bad entries of values
    /// that changed.
    pub fn update<'a>(&mut self, namespaces: impl Iterator<Item = (&'a str, Option<&'a str>)>) {
        let mut next = BTreeMap::new();
        for (ns, value) in namespaces {
            let Some(value) = value else { continue };
            let parsed = match self.by_namespace.remove(ns) {
                Some((old, prefixes)) if old == value => prefixes,
                _ => {
                    let (prefixes, bad) = parse(ns, value);
                    for b in bad {
                        warn!(namespace = %b.namespace, annotation = ALLOWED_SOURCES_ANNOTATION,
                              entry = %b.entry, reason = %b.reason, "ignored: {b}");
                    }
                    prefixes
                }
            };
            next.insert(ns.to_string(), (value.to_string(), parsed));
        }
        self.by_namespace = next;
    }

    /// The prefixes the pods of `namespace` may send from besides their
    /// own addresses.
    pub fn get(&self, namespace: &str) -> &[IpNet] {
        self.by_namespace
            .get(namespace)
            .map_or(&[], |(_, p)| p.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn good_entries_are_kept_and_bad_ones_named() {
        let (good, bad) = parse(
            "prod",
            " 198.51.100.0/24,2001:db8:7::/48 ,, 203.0.113.7, 10.0.0.1/8, nonsense, 10.0.0.0/33",
        );
        assert_eq!(
            good,
            nets(&["198.51.100.0/24", "203.0.113.7/32", "2001:db8:7::/48"])
        );
        let entries: Vec<&str> = bad.iter().map(|b| b.entry.as_str()).collect();
        assert_eq!(entries, ["10.0.0.1/8", "nonsense", "10.0.0.0/33"]);
        let msg = bad[0].to_string();
        assert!(
            msg.starts_with(
                "Namespace prod: metadata.annotations[policy.palisade.dev/allowed-source-prefixes]: entry \"10.0.0.1/8\": host bits set (the prefix is 10.0.0.0/8)"
            ),
            "{msg}"
        );
    }

    #[test]
    fn namespaces_without_the_annotation_have_no_prefixes() {
        let mut a = AllowedSources::default();
        a.update([("prod", Some("198.51.100.0/24")), ("dev", None)].into_iter());
        assert_eq!(a.get("prod"), nets(&["198.51.100.0/24"]).as_slice());
        assert!(a.get("dev").is_empty());
        // The annotation removed: nothing left.
        a.update([("prod", None)].into_iter());
        assert!(a.get("prod").is_empty());
    }
}

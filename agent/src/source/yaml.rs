//! Parsing a manifest file: every YAML document in it, kinds Namespace,
//! Pod, NetworkPolicy, ClusterNetworkPolicy and Node (what `nodes` peers
//! select) in normal Kubernetes form;
//! network policy objects of other kinds or API groups become
//! [`UnenforcedPolicy`] reports; other kinds are skipped. An error names the file, the document (its index and the line
//! it starts on), the object when known, the field path and the line.
//!
//! Documents are split at lines that start with `---` (or end with `...`)
//! in column 0, which in YAML can only be document markers.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_compiler::api::ClusterNetworkPolicy;
use serde::Deserialize;
use std::sync::Arc;

use super::{Object, UnenforcedPolicy, is_policy_kind};

/// The `apiVersion` of the ClusterNetworkPolicies Palisade enforces.
pub const CLUSTER_POLICY_API_VERSION: &str = "policy.networking.k8s.io/v1alpha2";

/// A manifest could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The file.
    pub file: PathBuf,
    /// 1-based index of the document among the file's non-empty documents.
    pub document: usize,
    /// `Pod prod/web` when the header could be read.
    pub object: Option<String>,
    /// Field path (`spec.ingress[0].ports[0].port`), when known.
    pub field: Option<String>,
    /// 1-based line in the file.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: line {}: document {}",
            self.file.display(),
            self.line,
            self.document
        )?;
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A document of a file: its text and the 1-based line it starts on.
struct Document<'a> {
    text: &'a str,
    first_line: usize,
}

fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_start = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let is_end = bare == "...";
        if is_start || is_end {
            docs.push(Document {
                text: &text[start..offset],
                first_line: start_line,
            });
            // A `--- ` line may carry content after the marker; YAML allows
            // it, but manifests never use it: treat the marker line as empty.
            start = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push(Document {
        text: &text[start..],
        first_line: start_line,
    });
    docs.retain(|d| {
        d.text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Header {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<HeaderMeta>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HeaderMeta {
    name: Option<String>,
    namespace: Option<String>,
}

/// Splits a serde_yaml_ng message from its trailing location.
fn message_and_line(e: &serde_yaml_ng::Error, first_line: usize) -> (String, usize) {
    let mut msg = e.to_string();
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    let line = e
        .location()
        .map_or(first_line, |l| first_line + l.line().saturating_sub(1));
    (msg, line)
}

fn typed<T: serde::de::DeserializeOwned>(
    doc: &Document<'_>,
    base: &ManifestError,
) -> Result<T, ManifestError> {
    let de = serde_yaml_ng::Deserializer::from_str(doc.text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let (mut message, line) = message_and_line(e.inner(), doc.first_line);
        if let Some(rest) = message.strip_prefix(&format!("{path}: ")) {
            message = rest.to_string();
        }
        ManifestError {
            field: (path != ".").then_some(path),
            line,
            message,
            ..base.clone()
        }
    })
}

/// The objects of a file's documents as last parsed, by the hash and the
/// length of each document's text (`None`: a kind that is not ours).
pub type Documents = HashMap<(u64, usize), Option<Object>>;

fn document_key(text: &str) -> (u64, usize) {
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    (h.finish(), text.len())
}

/// Parses a file's text. `file` is only used in errors.
pub fn parse_manifest(file: &Path, text: &str) -> Result<Vec<Object>, ManifestError> {
    parse_manifest_reusing(file, text, &Documents::new()).map(|(objects, _)| objects)
}

/// Parses a file's text, reusing the objects of the documents found in
/// `known` (the same text parses to the same object) instead of parsing
/// them again: editing one object of a large file re-parses only its
/// document. Returns the objects and the file's documents for the next
/// parse. `file` is only used in errors.
pub fn parse_manifest_reusing(
    file: &Path,
    text: &str,
    known: &Documents,
) -> Result<(Vec<Object>, Documents), ManifestError> {
    let mut out = Vec::new();
    let docs = split_documents(text);
    let mut parsed = Documents::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let key = document_key(doc.text);
        let obj = match known.get(&key) {
            Some(o) => o.clone(),
            None => parse_document(file, i + 1, doc)?,
        };
        out.extend(obj.clone());
        parsed.insert(key, obj);
    }
    Ok((out, parsed))
}

/// Parses one document (`index`: 1-based); `None` for kinds not ours.
fn parse_document(
    file: &Path,
    index: usize,
    doc: &Document<'_>,
) -> Result<Option<Object>, ManifestError> {
    let mut base = ManifestError {
        file: file.to_path_buf(),
        document: index,
        object: None,
        field: None,
        line: doc.first_line,
        message: String::new(),
    };
    let header: Header = serde_yaml_ng::from_str(doc.text).map_err(|e| {
        let (message, line) = message_and_line(&e, doc.first_line);
        ManifestError {
            line,
            message,
            ..base.clone()
        }
    })?;
    let Some(kind) = header.kind.clone() else {
        return Err(ManifestError {
            field: Some("kind".into()),
            message: "required".into(),
            ..base
        });
    };
    let api_version = header.api_version.clone().unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let want = match (kind.as_str(), group) {
        ("Namespace" | "Pod" | "Node", _) => "v1",
        ("NetworkPolicy", "" | "networking.k8s.io") => "networking.k8s.io/v1",
        ("ClusterNetworkPolicy", "policy.networking.k8s.io") => CLUSTER_POLICY_API_VERSION,
        // A policy of another implementation or version: reported, never
        // silently skipped (see `UnenforcedPolicy`).
        (k, _) if is_policy_kind(k) => {
            let meta = header.metadata.unwrap_or_default();
            return Ok(Some(Object::Unenforced(Arc::new(UnenforcedPolicy {
                api_version,
                kind,
                namespace: meta.namespace.unwrap_or_default(),
                name: meta.name.unwrap_or_default(),
            }))));
        }
        // Deployments, Services, ...: not ours.
        _ => return Ok(None),
    };
    let meta = header.metadata.unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let namespaced = !matches!(kind.as_str(), "Namespace" | "ClusterNetworkPolicy" | "Node");
    let namespace = meta
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    base.object = Some(if namespaced {
        format!("{kind} {namespace}/{name}")
    } else {
        format!("{kind} {name}")
    });
    if header.api_version.as_deref() != Some(want) {
        return Err(ManifestError {
            field: Some("apiVersion".into()),
            message: format!(
                "expected {want:?}, found {:?}",
                header.api_version.unwrap_or_default()
            ),
            ..base
        });
    }
    if name.is_empty() {
        return Err(ManifestError {
            field: Some("metadata.name".into()),
            message: "required".into(),
            ..base
        });
    }
    let obj = match kind.as_str() {
        "Namespace" => Object::namespace(typed::<Namespace>(doc, &base)?),
        "Pod" => {
            let mut p: Pod = typed(doc, &base)?;
            p.metadata.namespace = Some(namespace);
            Object::pod(p)
        }
        "ClusterNetworkPolicy" => {
            let p: ClusterNetworkPolicy = typed(doc, &base)?;
            if p.metadata
                .namespace
                .as_deref()
                .is_some_and(|n| !n.is_empty())
            {
                return Err(ManifestError {
                    field: Some("metadata.namespace".into()),
                    message: "a ClusterNetworkPolicy is cluster-scoped: it has no namespace".into(),
                    ..base
                });
            }
            Object::cluster_policy(p)
        }
        "Node" => {
            let n: Node = typed(doc, &base)?;
            if n.metadata
                .namespace
                .as_deref()
                .is_some_and(|n| !n.is_empty())
            {
                return Err(ManifestError {
                    field: Some("metadata.namespace".into()),
                    message: "a Node is cluster-scoped: it has no namespace".into(),
                    ..base
                });
            }
            Object::node(n)
        }
        _ => {
            let mut p: NetworkPolicy = typed(doc, &base)?;
            p.metadata.namespace = Some(namespace);
            Object::policy(p)
        }
    };
    Ok(Some(obj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Kind;
    use std::sync::Arc;

    const GOOD: &str = "\
# leading comment
apiVersion: v1
kind: Namespace
metadata:
  name: prod
  labels: {team: a}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: prod
  labels: {app: web}
spec:
  nodeName: n1
  containers:
  - name: c
    ports:
    - {name: http, containerPort: 80}
status:
  podIPs: [{ip: 198.18.1.10}, {ip: '2001:db8:1::a'}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny}
spec:
  podSelector: {}
";

    #[test]
    fn multi_document_kinds() {
        let objs = parse_manifest(Path::new("a.yaml"), GOOD).unwrap();
        let keys: Vec<_> = objs.iter().map(|o| o.key()).collect();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0].kind, Kind::Namespace);
        assert_eq!((keys[1].kind, keys[1].name.as_str()), (Kind::Pod, "web"));
        // Namespaced objects without a namespace go to "default".
        assert_eq!(
            (keys[2].namespace.as_str(), keys[2].name.as_str()),
            ("default", "deny")
        );
    }

    #[test]
    fn field_errors_name_file_document_field_and_line() {
        let bad = GOOD.replace("containerPort: 80", "containerPort: eighty");
        let e = parse_manifest(Path::new("/m/a.yaml"), &bad).unwrap_err();
        assert_eq!(e.document, 3);
        assert_eq!(e.object.as_deref(), Some("Pod prod/web"));
        assert_eq!(
            e.field.as_deref(),
            Some("spec.containers[0].ports[0].containerPort")
        );
        assert_eq!(e.line, 23, "{e}");
        assert!(e.to_string().starts_with("/m/a.yaml: line 23: document 3 (Pod prod/web): spec.containers[0].ports[0].containerPort: invalid type"), "{e}");
    }

    #[test]
    fn unchanged_documents_are_reused() {
        let (objs, docs) =
            parse_manifest_reusing(Path::new("a.yaml"), GOOD, &Documents::new()).unwrap();
        assert_eq!(docs.len(), 4, "every document, ours or not");
        // One document changed, one added in front (positions move): the
        // others are the same objects, not parsed again.
        let changed = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: new}}\n---\n{}",
            GOOD.replace("labels: {app: web}", "labels: {app: web2}")
        );
        let (again, _) = parse_manifest_reusing(Path::new("a.yaml"), &changed, &docs).unwrap();
        let keys: Vec<String> = again.iter().map(|o| o.key().to_string()).collect();
        assert_eq!(
            keys,
            [
                "Namespace new",
                "Namespace prod",
                "Pod prod/web",
                "NetworkPolicy default/deny"
            ]
        );
        let same = |a: &Object, b: &Object| match (a, b) {
            (Object::Namespace(a), Object::Namespace(b)) => Arc::ptr_eq(a, b),
            (Object::Pod(a), Object::Pod(b)) => Arc::ptr_eq(a, b),
            (Object::NetworkPolicy(a), Object::NetworkPolicy(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        assert!(same(&again[1], &objs[0]));
        assert!(!same(&again[2], &objs[1]), "the changed pod is parsed");
        assert!(same(&again[3], &objs[2]));
        match &again[2] {
            Object::Pod(p) => assert_eq!(p.labels[..], [("app".into(), "web2".into())]),
            o => panic!("{o:?}"),
        }
        // Errors still name the document where it now is.
        let bad = format!("{changed}---\nkind: Pod\nmetadata: [\n");
        let e = parse_manifest_reusing(Path::new("a.yaml"), &bad, &docs).unwrap_err();
        assert_eq!(e.document, 6);
    }

    #[test]
    fn nodes_are_cluster_scoped_and_slimmed() {
        let text = "\
apiVersion: v1
kind: Node
metadata:
  name: n1
  labels: {kubernetes.io/os: linux}
  annotations: {big: x}
spec: {podCIDR: 198.18.1.0/24}
status:
  addresses:
  - {type: InternalIP, address: 198.19.0.1}
  - {type: InternalIP, address: '2001:db8:fab::1'}
  - {type: Hostname, address: n1}
  conditions: [{type: Ready, status: 'True'}]
";
        let objs = parse_manifest(Path::new("n.yaml"), text).unwrap();
        assert_eq!(objs[0].key().to_string(), "Node n1");
        let Object::Node(n) = &objs[0] else {
            panic!("{:?}", objs[0]);
        };
        assert_eq!(n.metadata.labels.as_ref().unwrap().len(), 1);
        assert!(n.metadata.annotations.is_none() && n.spec.is_none());
        let status = n.status.as_ref().unwrap();
        assert!(status.conditions.is_none());
        assert_eq!(status.addresses.as_ref().unwrap().len(), 3);
        let e = parse_manifest(
            Path::new("n.yaml"),
            &text.replace("name: n1\n", "name: n1\n  namespace: x\n"),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("metadata.namespace"));
        assert_eq!(e.object.as_deref(), Some("Node n1"));
        let e = parse_manifest(
            Path::new("n.yaml"),
            &text.replace("address: 198.19.0.1", "address: [1]"),
        )
        .unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("status.addresses[0].address"),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_and_missing_fields() {
        let e = parse_manifest(Path::new("b.yaml"), "kind: Pod\nmetadata: [\n").unwrap_err();
        assert_eq!(e.document, 1);
        assert!(e.line >= 2, "{e}");
        let e = parse_manifest(
            Path::new("b.yaml"),
            "---\napiVersion: v1\nkind: Pod\nmetadata: {}\n",
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("metadata.name"));
        assert_eq!(e.line, 2);
        let e = parse_manifest(
            Path::new("b.yaml"),
            "apiVersion: v1\nkind: NetworkPolicy\nmetadata: {name: x}\n",
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("apiVersion"));
        let e = parse_manifest(Path::new("b.yaml"), "metadata: {name: x}\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("kind"));
    }
}

//! Label selectors: validation of `metav1.LabelSelector` (as the API server
//! does it) into a compiled form, and matching against a label set.
//!
//! `matchLabels` and `matchExpressions` are ANDed; an empty selector matches
//! everything. `NotIn` and `DoesNotExist` also match objects without the key.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::error::{FieldError, Reason};
use crate::syntax::{check_label_key, check_label_value};

/// A label set.
pub(crate) type Labels = BTreeMap<String, String>;

/// One requirement of a compiled selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Requirement {
    /// The key is present with one of the values.
    In(String, BTreeSet<String>),
    /// The key is absent or its value is none of the values.
    NotIn(String, BTreeSet<String>),
    /// The key is present.
    Exists(String),
    /// The key is absent.
    DoesNotExist(String),
}

/// A compiled label selector: the conjunction of its requirements.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Selector {
    reqs: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches every label set.
    pub(crate) fn everything() -> Self {
        Selector::default()
    }

    /// Whether `labels` satisfies every requirement.
    pub(crate) fn matches(&self, labels: &Labels) -> bool {
        self.reqs.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }

    /// Validates and compiles `sel`; `path` is the selector's field path.
    pub(crate) fn compile(sel: &LabelSelector, path: &str) -> Result<Selector, FieldError> {
        let mut reqs = Vec::new();
        if let Some(ml) = &sel.match_labels {
            let p = format!("{path}.matchLabels");
            check_labels(ml, &p)?;
            for (k, v) in ml {
                reqs.push(Requirement::In(k.clone(), BTreeSet::from([v.clone()])));
            }
        }
        for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
            let p = format!("{path}.matchExpressions[{i}]");
            let values = e.values.as_deref().unwrap_or(&[]);
            let set = || values.iter().cloned().collect::<BTreeSet<_>>();
            let req = match e.operator.as_str() {
                "In" | "NotIn" => {
                    if values.is_empty() {
                        return Err(FieldError::new(
                            format!("{p}.values"),
                            Reason::ValuesRequired {
                                op: e.operator.clone(),
                            },
                        ));
                    }
                    if e.operator == "In" {
                        Requirement::In(e.key.clone(), set())
                    } else {
                        Requirement::NotIn(e.key.clone(), set())
                    }
                }
                "Exists" | "DoesNotExist" => {
                    if !values.is_empty() {
                        return Err(FieldError::new(
                            format!("{p}.values"),
                            Reason::ValuesForbidden {
                                op: e.operator.clone(),
                            },
                        ));
                    }
                    if e.operator == "Exists" {
                        Requirement::Exists(e.key.clone())
                    } else {
                        Requirement::DoesNotExist(e.key.clone())
                    }
                }
                other => {
                    return Err(FieldError::new(
                        format!("{p}.operator"),
                        Reason::InvalidOperator {
                            op: other.to_string(),
                        },
                    ));
                }
            };
            check_label_key(&e.key).map_err(|detail| {
                FieldError::new(
                    format!("{p}.key"),
                    Reason::InvalidLabelKey {
                        key: e.key.clone(),
                        detail,
                    },
                )
            })?;
            for (j, v) in values.iter().enumerate() {
                check_label_value(v).map_err(|detail| {
                    FieldError::new(
                        format!("{p}.values[{j}]"),
                        Reason::InvalidLabelValue {
                            value: v.clone(),
                            detail,
                        },
                    )
                })?;
            }
            reqs.push(req);
        }
        Ok(Selector { reqs })
    }
}

/// Validates the keys and values of a label map at `path`.
pub(crate) fn check_labels(labels: &Labels, path: &str) -> Result<(), FieldError> {
    for (k, v) in labels {
        check_label_key(k).map_err(|detail| {
            FieldError::new(
                path,
                Reason::InvalidLabelKey {
                    key: k.clone(),
                    detail,
                },
            )
        })?;
        check_label_value(v).map_err(|detail| {
            FieldError::new(
                path,
                Reason::InvalidLabelValue {
                    value: v.clone(),
                    detail,
                },
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|s| s.to_string()).collect())
            },
        }
    }

    #[test]
    fn operators() {
        let sel = |e| {
            Selector::compile(
                &LabelSelector {
                    match_expressions: Some(vec![e]),
                    match_labels: None,
                },
                "s",
            )
            .unwrap()
        };
        let a = labels(&[("app", "web")]);
        let b = labels(&[("app", "db")]);
        let none = labels(&[]);
        let s_in = sel(expr("app", "In", &["web", "x"]));
        assert!(s_in.matches(&a) && !s_in.matches(&b) && !s_in.matches(&none));
        let s_notin = sel(expr("app", "NotIn", &["web"]));
        assert!(!s_notin.matches(&a) && s_notin.matches(&b) && s_notin.matches(&none));
        let s_ex = sel(expr("app", "Exists", &[]));
        assert!(s_ex.matches(&a) && !s_ex.matches(&none));
        let s_dne = sel(expr("app", "DoesNotExist", &[]));
        assert!(!s_dne.matches(&a) && s_dne.matches(&none));
        assert!(Selector::everything().matches(&none));
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let s = Selector::compile(
            &LabelSelector {
                match_labels: Some([("tier".to_string(), "be".to_string())].into()),
                match_expressions: Some(vec![expr("app", "In", &["web"])]),
            },
            "s",
        )
        .unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "be")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert!(!s.matches(&labels(&[("tier", "be")])));
    }
}

//! Label and field selectors, parsed from the `labelSelector` and `fieldSelector` query
//! parameters and matched against stored objects.
//!
//! Label selectors support `=`, `==`, `!=`, `in`, `notin`, `key` and `!key`, comma-separated.
//! Field selectors support `=`, `==` and `!=` on the fields a real kube-apiserver indexes for the
//! kind: `metadata.name` and `metadata.namespace` everywhere, `spec.unschedulable` for Nodes,
//! the `involvedObject.*`/`regarding.*` fields for Events; any other field is a 400
//! "field label not supported", as on a real server.
//!
//! This module owns parsing and matching only; the parsers never panic on any input.

use serde_json::Value;

use crate::error::ApiError;
use crate::resources::Resource;

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelRequirement>);

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn valid_label_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 316
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn label_error(selector: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: invalid label selector {selector:?}: {why}"
    ))
}

fn checked_key(selector: &str, key: &str) -> Result<String, ApiError> {
    let key = key.trim();
    if valid_label_key(key) {
        Ok(key.to_string())
    } else {
        Err(label_error(selector, &format!("invalid label key {key:?}")))
    }
}

fn checked_value(selector: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if valid_label_value(value) {
        Ok(value.to_string())
    } else {
        Err(label_error(
            selector,
            &format!("invalid label value {value:?}"),
        ))
    }
}

fn parse_set_term(selector: &str, term: &str) -> Result<Option<LabelRequirement>, ApiError> {
    let Some(open) = term.find('(') else {
        return Ok(None);
    };
    let head: Vec<&str> = term[..open].split_whitespace().collect();
    let [key, op] = head.as_slice() else {
        return Ok(None);
    };
    if !matches!(*op, "in" | "notin") {
        return Ok(None);
    }
    let Some(body) = term[open + 1..].strip_suffix(')') else {
        return Err(label_error(selector, "missing closing parenthesis"));
    };
    let key = checked_key(selector, key)?;
    let values = body
        .split(',')
        .map(|v| checked_value(selector, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(if *op == "in" {
        LabelRequirement::In(key, values)
    } else {
        LabelRequirement::NotIn(key, values)
    }))
}

impl LabelSelector {
    pub fn parse(selector: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in split_terms(selector) {
            if let Some(req) = parse_set_term(selector, term)? {
                reqs.push(req);
            } else if let Some(key) = term.strip_prefix('!') {
                reqs.push(LabelRequirement::NotExists(checked_key(selector, key)?));
            } else if let Some((k, v)) = term.split_once("!=") {
                reqs.push(LabelRequirement::NotEquals(
                    checked_key(selector, k)?,
                    checked_value(selector, v)?,
                ));
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                reqs.push(LabelRequirement::Equals(
                    checked_key(selector, k)?,
                    checked_value(selector, v)?,
                ));
            } else {
                reqs.push(LabelRequirement::Exists(checked_key(selector, term)?));
            }
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|req| match req {
            LabelRequirement::Equals(k, v) => label(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            LabelRequirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelRequirement::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelRequirement::Exists(k) => label(k).is_some(),
            LabelRequirement::NotExists(k) => label(k).is_none(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    field: String,
    value: String,
    equal: bool,
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<FieldRequirement>);

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "reason",
    "reportingController",
    "source",
    "type",
];

/// Whether kube-apiserver indexes `field` for this kind.
fn field_supported(resource: &Resource, field: &str) -> bool {
    match field {
        "metadata.name" | "metadata.namespace" => true,
        "spec.unschedulable" => resource.kind == "Node",
        "status.phase" => resource.kind == "Namespace",
        f => resource.kind == "Event" && EVENT_FIELDS.contains(&f),
    }
}

/// The string form of a field, the way the real server's field sets render it.
fn field_value(object: &Value, field: &str) -> String {
    if field == "source" {
        let source = &object["source"]["component"];
        return source.as_str().unwrap_or_default().to_string();
    }
    let mut v = object;
    for part in field.split('.') {
        v = &v[part];
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null if field == "spec.unschedulable" => "false".to_string(),
        _ => String::new(),
    }
}

impl FieldSelector {
    pub fn parse(selector: &str, resource: &Resource) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in split_terms(selector) {
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector {selector:?}: {term:?} is not field=value"
                )));
            };
            let field = field.trim();
            if !field_supported(resource, field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push(FieldRequirement {
                field: field.to_string(),
                value: value.trim().to_string(),
                equal,
            });
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0
            .iter()
            .all(|r| (field_value(object, &r.field) == r.value) == r.equal)
    }
}

/// The label and field selectors of one list or watch.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{RESOURCES, find};
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "default", "labels": labels}})
    }

    fn labels_match(selector: &str, labels: Value) -> bool {
        LabelSelector::parse(selector)
            .unwrap()
            .matches(&obj(labels))
    }

    #[test]
    fn equality_operators_match_label_values() {
        assert!(labels_match("app=web", json!({"app": "web"})));
        assert!(labels_match("app==web", json!({"app": "web"})));
        assert!(!labels_match("app=web", json!({"app": "db"})));
        assert!(labels_match("app!=web", json!({"app": "db"})));
        assert!(
            labels_match("app!=web", json!({})),
            "!= matches an absent label"
        );
        assert!(!labels_match("app!=web", json!({"app": "web"})));
    }

    #[test]
    fn set_operators_match_label_values() {
        assert!(labels_match(
            "env in (prod, staging)",
            json!({"env": "prod"})
        ));
        assert!(!labels_match(
            "env in (prod,staging)",
            json!({"env": "dev"})
        ));
        assert!(!labels_match("env in (prod)", json!({})));
        assert!(labels_match("env notin (prod)", json!({"env": "dev"})));
        assert!(labels_match("env notin (prod)", json!({})));
        assert!(!labels_match("env notin (prod,dev)", json!({"env": "dev"})));
    }

    #[test]
    fn existence_operators_match_label_keys() {
        assert!(labels_match(
            "herald.dev/exclude",
            json!({"herald.dev/exclude": ""})
        ));
        assert!(!labels_match("herald.dev/exclude", json!({})));
        assert!(labels_match("!herald.dev/exclude", json!({})));
        assert!(!labels_match(
            "!herald.dev/exclude",
            json!({"herald.dev/exclude": "x"})
        ));
    }

    #[test]
    fn comma_separated_requirements_must_all_hold() {
        let sel = "app=web,env in (a,b),!skip";
        assert!(labels_match(sel, json!({"app": "web", "env": "b"})));
        assert!(!labels_match(
            sel,
            json!({"app": "web", "env": "b", "skip": "1"})
        ));
        assert!(
            labels_match("", json!({})),
            "the empty selector matches all"
        );
    }

    #[test]
    fn malformed_label_selectors_are_rejected() {
        for bad in ["app=we b", "env in (a", "=x", "a b c"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unsupported_field_labels_are_rejected_like_the_real_server() {
        let slices = &RESOURCES[find("discovery.k8s.io", "v1", "endpointslices").unwrap()];
        let err = FieldSelector::parse("spec.nodeName=n1", slices).unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(err.message, "field label not supported: spec.nodeName");
        let services = &RESOURCES[find("", "v1", "services").unwrap()];
        assert!(FieldSelector::parse("spec.unschedulable=true", services).is_err());
    }

    #[test]
    fn name_namespace_and_unschedulable_field_selectors_match() {
        let nodes = &RESOURCES[find("", "v1", "nodes").unwrap()];
        let node = json!({"metadata": {"name": "n1"}, "spec": {}});
        let cordoned = json!({"metadata": {"name": "n2"}, "spec": {"unschedulable": true}});
        let sel = FieldSelector::parse("spec.unschedulable=false", nodes).unwrap();
        assert!(sel.matches(&node) && !sel.matches(&cordoned));
        let sel = FieldSelector::parse("metadata.name!=n1", nodes).unwrap();
        assert!(!sel.matches(&node) && sel.matches(&cordoned));
        let services = &RESOURCES[find("", "v1", "services").unwrap()];
        let sel =
            FieldSelector::parse("metadata.namespace==default,metadata.name=a", services).unwrap();
        assert!(sel.matches(&obj(json!({}))));
    }

    #[test]
    fn selector_parsers_never_panic_on_arbitrary_input() {
        let services = &RESOURCES[find("", "v1", "services").unwrap()];
        let pieces = [
            "a", "=", "==", "!=", "!", "(", ")", ",", " in ", " notin ", "é", "\u{0}", "x.y/z",
        ];
        let mut seed = 7u64;
        for _ in 0..5000 {
            let mut s = String::new();
            for _ in 0..(seed % 9) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            let _ = LabelSelector::parse(&s);
            let _ = FieldSelector::parse(&s, services);
        }
    }
}

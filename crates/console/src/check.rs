//! Every policy, route and changeset is checked with our own front end before it is accepted:
//! a policy's `ppl` by `ppl` (as `pomerium-policy check` does), a route and a whole cluster
//! configuration by `config::load` (as `pomerium` loads its file). A problem comes back as a
//! [`Diagnostic`] with its code, message, line and column and help.
//!
//! The API's entities use Zero's camelCase field names; the configuration uses Pomerium's
//! snake_case keys. [`route_to_config`] and [`settings_to_config`] translate.

use miette::Diagnostic as _;
use ppl::LineIndex;
use ppl::value::Value as Tree;
use serde_json::{Map, Value, json};

/// One problem, as the API returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub code: String,
    pub severity: &'static str,
    pub message: String,
    pub line: usize,
    pub column: usize,
    pub help: Option<String>,
    /// The entity field the problem is in (camelCase), when known.
    pub field: Option<String>,
}

impl Diagnostic {
    pub fn to_json(&self) -> Value {
        let mut object = json!({
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "line": self.line,
            "column": self.column,
        });
        if let Some(map) = object.as_object_mut() {
            if let Some(help) = &self.help {
                map.insert("help".to_owned(), Value::String(help.clone()));
            }
            if let Some(field) = &self.field {
                map.insert("field".to_owned(), Value::String(field.clone()));
            }
        }
        object
    }
}

fn diagnostic(
    text: &str,
    offset: usize,
    code: String,
    severity: &'static str,
    message: String,
    help: Option<String>,
) -> Diagnostic {
    let at = LineIndex::new(text).line_col(offset);
    Diagnostic { code, severity, message, line: at.line, column: at.column, help, field: None }
}

/// Checks the `ppl` field of a policy as written in `source` (the request body as sent, so that
/// line and column point into what the client wrote). Errors only; `Ok` with the warnings.
pub fn policy(source: &str) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
    let (tree, errors) = parse_source(source);
    if let Some(error) = errors.first() {
        let syntax = if is_json(source) { "JSON" } else { "YAML" };
        return Err(vec![diagnostic(
            source,
            error.span().start(),
            error.code_str(),
            "error",
            format!("the body is not {syntax}: {error}"),
            error.help().map(|h| h.to_string()),
        )]);
    }
    let Some(ppl_value) = tree.as_ref().and_then(|t| t.get("ppl")).map(|e| &e.value) else {
        return Err(vec![diagnostic(
            source,
            0,
            "console::policy::missing_ppl".to_owned(),
            "error",
            "the policy has no `ppl`".to_owned(),
            Some("`ppl` is a rule such as `{\"allow\": {\"and\": [{\"email\": {\"is\": \"a@example.com\"}}]}}` or a list of rules".to_owned()),
        )]);
    };
    check_ppl(source, ppl_value)
}

fn check_ppl(source: &str, value: &Tree) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
    let parsed = ppl::parse_value(value);
    let mut errors: Vec<Diagnostic> = parsed
        .errors
        .iter()
        .map(|e| {
            diagnostic(source, e.span().start(), e.code_str(), "error", e.to_string(), e.help().map(|h| h.to_string()))
        })
        .collect();
    let mut warnings = Vec::new();
    if let Some(ast) = &parsed.policy {
        let checked = ppl::check(ast);
        errors.extend(checked.errors.iter().map(|e| {
            diagnostic(source, e.span().start(), e.code_str(), "error", e.to_string(), e.help().map(|h| h.to_string()))
        }));
        if errors.is_empty() {
            warnings.extend(checked.warnings.iter().map(|w| {
                diagnostic(
                    source,
                    w.span().start(),
                    w.code_str(),
                    "warning",
                    w.to_string(),
                    w.help().map(|h| h.to_string()),
                )
            }));
        }
    }
    for d in errors.iter_mut().chain(warnings.iter_mut()) {
        d.field = Some("ppl".to_owned());
    }
    if errors.is_empty() { Ok(warnings) } else { Err(errors) }
}

/// Whether an entity's text is JSON (an object or a list); otherwise it is read as YAML.
pub fn is_json(source: &str) -> bool {
    let start = source.trim_start();
    start.starts_with('{') || start.starts_with('[')
}

/// An entity's text, JSON or YAML, read with spans (for diagnostics at the place written).
pub fn parse_source(source: &str) -> (Option<Tree>, Vec<ppl::Error>) {
    if is_json(source) { ppl::syntax::json::parse(source) } else { ppl::syntax::yaml::parse(source) }
}

/// YAML text of an entity as its JSON; its syntax errors as diagnostics.
pub fn yaml_to_json(source: &str) -> Result<Value, Vec<Diagnostic>> {
    let (tree, errors) = ppl::syntax::yaml::parse(source);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| {
                let message = format!("the text is neither JSON nor valid YAML: {e}");
                diagnostic(source, e.span().start(), e.code_str(), "error", message, e.help().map(|h| h.to_string()))
            })
            .collect());
    }
    Ok(tree.as_ref().map(tree_to_json).unwrap_or(Value::Null))
}

/// A PPL document tree (read from JSON or YAML) as JSON.
pub fn tree_to_json(tree: &Tree) -> Value {
    use ppl::value::ValueKind;
    match &tree.kind {
        ValueKind::Null => Value::Null,
        ValueKind::Bool(b) => Value::Bool(*b),
        ValueKind::Number(n) => serde_json::from_str(n.as_str()).unwrap_or(Value::Null),
        ValueKind::String(s) => Value::String(s.clone()),
        ValueKind::Array(items) => Value::Array(items.iter().map(tree_to_json).collect()),
        ValueKind::Object(entries) => {
            Value::Object(entries.iter().map(|e| (e.key.clone(), tree_to_json(&e.value))).collect())
        }
    }
}

/// `timeoutRead` → `timeout_read`.
pub fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Fields of the API's entities that are not configuration.
const API_ONLY: &[&str] = &[
    "namespaceId",
    "policyIds",
    "createdAt",
    "updatedAt",
    "enforcedPolicyIds",
    "enforcedPolicies",
    "policies",
    "originatorId",
    "deletedAt",
    "clusterId",
    "autoApplyChangesets",
    "databrokerStorageConnection",
];

/// Objects whose keys are data (header names), not field names.
const DATA_MAPS: &[&str] =
    &["setRequestHeaders", "setResponseHeaders", "jwtClaimsHeaders", "requestParams", "idpRequestParams"];

fn to_snake_value(key: &str, value: &Value) -> Value {
    if DATA_MAPS.contains(&key) {
        return value.clone();
    }
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (snake(k), to_snake_value(k, v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(|v| to_snake_value(key, v)).collect()),
        other => other.clone(),
    }
}

/// A policy's rules as a list (`ppl` is one rule or a list of them).
pub fn rules(policy: &Map<String, Value>) -> Vec<Value> {
    match policy.get("ppl") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other.clone()],
    }
}

/// An API route as a `config.yaml` route, its policies as its `sub_policies` (as Zero ships them:
/// each a query OR-ed with the others, with its explanation and remediation for the deny page).
pub fn route_to_config(route: &Map<String, Value>, policies: &[&Map<String, Value>]) -> Value {
    let mut out = Map::new();
    for (key, value) in route {
        if API_ONLY.contains(&key.as_str()) || value.is_null() {
            continue;
        }
        out.insert(snake(key), to_snake_value(key, value));
    }
    let text =
        |policy: &Map<String, Value>, key: &str| policy.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    let sub_policies: Vec<Value> = policies
        .iter()
        .filter_map(|policy| {
            let rules = rules(policy);
            (!rules.is_empty()).then(|| {
                json!({
                    "id": text(policy, "id"),
                    "name": text(policy, "name"),
                    "explanation": text(policy, "explanation"),
                    "remediation": text(policy, "remediation"),
                    "source_ppl": Value::Array(rules).to_string(),
                })
            })
        })
        .collect();
    if !sub_policies.is_empty() {
        out.insert("sub_policies".to_owned(), Value::Array(sub_policies));
    }
    Value::Object(out)
}

/// Cluster settings as global `config.yaml` options.
pub fn settings_to_config(settings: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in settings {
        if API_ONLY.contains(&key.as_str()) || key == "id" || value.is_null() {
            continue;
        }
        out.insert(snake(key), to_snake_value(key, value));
    }
    out
}

/// Loads a configuration document; every error (and, with `Ok`, every warning) as diagnostics
/// into the document's pretty-printed text, which is returned beside them.
pub fn load(document: &Value) -> (String, Result<Vec<Diagnostic>, Vec<Diagnostic>>) {
    let text = serde_json::to_string_pretty(document).unwrap_or_default();
    let loaded = config::load(&text, config::Format::Json, &config::env::Empty);
    let convert = |severity, span: ppl::Span, code: String, message: String, help: Option<String>| {
        diagnostic(&text, span.start(), code, severity, message, help)
    };
    let errors: Vec<Diagnostic> = loaded
        .errors
        .iter()
        .map(|e| {
            let d = &e.diagnostic;
            convert("error", d.span(), d.code_str(), d.to_string(), d.help().map(|h| h.to_string()))
        })
        .collect();
    let warnings: Vec<Diagnostic> = loaded
        .warnings
        .iter()
        .map(|w| {
            let d = &w.diagnostic;
            convert("warning", d.span(), d.code_str(), d.to_string(), d.help().map(|h| h.to_string()))
        })
        .collect();
    let result = if errors.is_empty() && loaded.config.is_some() { Ok(warnings) } else { Err(errors) };
    (text, result)
}

/// Checks one route (with its policies) as a `config.yaml` route would be. Diagnostics point
/// into `source` (the route as the client sent it) at the field they are about.
pub fn route(
    source: &str,
    route: &Map<String, Value>,
    policies: &[&Map<String, Value>],
) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
    let document = json!({ "routes": [route_to_config(route, policies)] });
    let (text, result) = load(&document);
    let place = |mut d: Diagnostic| {
        relocate(&mut d, &text, source);
        d
    };
    match result {
        Ok(warnings) => Ok(warnings.into_iter().map(place).collect()),
        Err(errors) => Err(errors.into_iter().map(place).collect()),
    }
}

/// Moves a diagnostic from the generated configuration text to the field of the route in
/// `source` it is about (by the generated key it falls in: `prefix_rewrite` ← `prefixRewrite`).
fn relocate(d: &mut Diagnostic, text: &str, source: &str) {
    let (Some(generated), _) = ppl::syntax::json::parse(text) else { return };
    let Some(entries) = generated
        .get("routes")
        .and_then(|e| e.value.as_array())
        .and_then(|routes| routes.first())
        .and_then(Tree::as_object)
    else {
        return;
    };
    let offset = line_col_to_offset(text, d.line, d.column);
    let Some(entry) = entries.iter().find(|e| e.span().contains(offset)) else { return };
    if entry.key == "sub_policies" {
        d.field = Some("policyIds".to_owned());
        d.message = format!("{} (in an attached policy)", d.message);
        return;
    }
    let (Some(body), _) = parse_source(source) else { return };
    let Some(field) = body.as_object().and_then(|entries| entries.iter().find(|e| snake(&e.key) == entry.key)) else {
        return;
    };
    // Same place inside the value when the value reads the same in both texts.
    let inner = offset.saturating_sub(entry.value.span.start());
    let same = text.get(entry.value.span.start()..entry.value.span.end())
        == source.get(field.value.span.start()..field.value.span.end());
    let at = if same { field.value.span.start() + inner } else { field.value.span.start() };
    let lc = LineIndex::new(source).line_col(at);
    d.line = lc.line;
    d.column = lc.column;
    d.field = Some(field.key.clone());
}

fn line_col_to_offset(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (index, content) in text.split_inclusive('\n').enumerate() {
        if index + 1 == line {
            return offset + content.char_indices().nth(column.saturating_sub(1)).map_or(content.len(), |(i, _)| i);
        }
        offset += content.len();
    }
    offset
}

/// The configuration a cluster runs: its settings as global options and its routes (each with
/// its policies, and the namespace's enforced policies) in order.
pub fn cluster_config(
    settings: &Map<String, Value>,
    routes: &[Map<String, Value>],
    policies: &[Map<String, Value>],
) -> Value {
    let mut document = settings_to_config(settings);
    let enforced: Vec<&Map<String, Value>> =
        policies.iter().filter(|p| p.get("enforced").and_then(Value::as_bool) == Some(true)).collect();
    let routes: Vec<Value> = routes
        .iter()
        .map(|route| {
            let ids: Vec<&str> = route
                .get("policyIds")
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut attached: Vec<&Map<String, Value>> = policies
                .iter()
                .filter(|p| p.get("id").and_then(Value::as_str).is_some_and(|id| ids.contains(&id)))
                .collect();
            for policy in &enforced {
                if !attached.iter().any(|p| p.get("id") == policy.get("id")) {
                    attached.push(policy);
                }
            }
            route_to_config(route, &attached)
        })
        .collect();
    document.insert("routes".to_owned(), Value::Array(routes));
    Value::Object(document)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn snake_case_of_config_keys() {
        assert_eq!(snake("timeoutRead"), "timeout_read");
        assert_eq!(snake("identityProviderClientId"), "identity_provider_client_id");
        assert_eq!(snake("from"), "from");
    }

    #[test]
    fn policy_errors_point_into_the_body() {
        let body = "{\n  \"name\": \"p\",\n  \"ppl\": {\"allow\": {\"and\": [{\"emial\": {\"is\": \"a@b.c\"}}]}}\n}";
        let errors = policy(body).unwrap_err();
        assert_eq!(errors[0].line, 3, "{errors:?}");
        assert!(errors[0].column > 20, "{errors:?}");
        assert!(errors[0].code.starts_with("ppl::"), "{errors:?}");
        assert!(errors[0].help.as_deref().unwrap_or_default().contains("email"), "{errors:?}");
        assert!(policy("{\"ppl\": {\"allow\": {\"and\": [{\"accept\": true}]}}}").is_ok());
    }

    #[test]
    fn route_errors_point_at_the_field() {
        let body = "{\n  \"name\": \"r\",\n  \"from\": \"https://a.example.com\",\n  \"to\": [\"not a url\"]\n}";
        let route: Map<String, Value> = serde_json::from_str(body).unwrap();
        let errors = super::route(body, &route, &[]).unwrap_err();
        assert_eq!(errors[0].field.as_deref(), Some("to"), "{errors:?}");
        assert_eq!(errors[0].line, 4, "{errors:?}");
        let good: Map<String, Value> = serde_json::from_str(
            "{\"from\": \"https://a.example.com\", \"to\": [\"http://127.0.0.1:1\"], \"prefixRewrite\": \"/x\"}",
        )
        .unwrap();
        assert!(super::route("{}", &good, &[]).is_ok());
    }
}

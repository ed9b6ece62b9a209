//! Reading one route (`config/policy.go` `Policy`, `Validate`; `config/custom.go` for `to`): `from`
//! and the action first, then every option declared with [`Route`] (`route.rs`), with the readers
//! below.

use crate::declare::{Declared, Keys, Reader, key, set};
use crate::diagnostic::{
    AllowsNothing, AnyUserWithAllowLists, BadWeight, DeprecatedOption, FromPath, FromScheme as FromSchemeError,
    HttpFrom, IgnoredOption, MixedSchemes, MixedWeights, NoAction, NoPort, Origin, PublicWithAllowLists, RedirectCode,
    RemovedOption, RouteBadUrl, SchemeNotServed, SeveralActions, TooManyDependsOn, UnknownOption, WrongType,
};
use crate::env::Environment;
use crate::headers;
use crate::keys;
use crate::material::{self, Certificates, CertifiedKey, Encoding, Precedence, certificates, inline_or_file};
use crate::options::{conflict, require_both};
use crate::read::{Field, Sink, Spanned};
use crate::route::{
    Access, Action, DirectResponse, From, FromScheme, LoadBalancingPolicy, OutlierDetection, PathRewrite, Redirect,
    RewriteHeader, Route, SubPolicy, WeightedUrl, check_regex,
};
use crate::secret::Secret;
use crate::section::Section;
use ppl::Span;
use ppl::value::{Entry, Value, ValueKind};
use std::collections::BTreeMap;
use url::Url;

/// Reads a route. `None` when it cannot be used at all (not an object, no `from`, no action);
/// every problem found is reported either way.
pub(crate) fn read(
    value: Value,
    origin: &Origin,
    index: usize,
    env: &dyn Environment,
    sink: &mut Sink,
) -> Option<Route> {
    let Some(entries) = value.as_object() else {
        let found = value.kind();
        let help =
            Some("each route is an object such as `{from: https://app.example.com, to: http://app:8080}`".to_owned());
        sink.error(
            origin,
            WrongType {
                option: "routes".to_owned(),
                expected: "a list of route objects",
                found,
                span: value.span.into(),
                help,
            },
        );
        return None;
    };
    // Where to point at the route as a whole: its first key (the object spans many lines).
    let anchor = entries.first().map_or(value.span, |entry| entry.key_span);
    let span = value.span;
    let ValueKind::Object(entries) = value.kind else { return None };
    let (section, envoy) = collect(entries, origin, sink);
    let mut r = Reader { section: &section, sink, env };
    // Without a usable `from` or action the route is still read, so that every problem is reported.
    let from = read_from(&mut r, origin, anchor);
    let action = read_action(&mut r, origin, anchor);
    let usable = from.is_some() && action.is_some();
    let from = from.or_else(|| placeholder_from(span))?;
    let action = action.unwrap_or(Action::Upstream(Vec::new()));
    let mut route = Route::declared(index, origin.clone(), span, from, action, envoy);
    route.read_declared(&mut r);
    if usable && route.access.is_empty() && route.sub_policies.is_empty() && section.get("policy").is_none() {
        r.sink.warning(origin, AllowsNothing { span: route.from.span.into() });
    }
    usable.then_some(route)
}

/// Stands in for a `from` that could not be read while the rest of the route is checked.
fn placeholder_from(span: Span) -> Option<From> {
    let url = Url::parse("https://route.invalid").ok()?;
    Some(From { url, scheme: FromScheme::Https, host: String::new(), port: None, text: String::new(), span })
}

/// The route's options (by `keys::ROUTE`), and the Envoy cluster fields written on it.
/// The entries are moved, not copied.
fn collect(entries: Vec<Entry>, origin: &Origin, sink: &mut Sink) -> (Section, BTreeMap<String, Value>) {
    let mut map = BTreeMap::new();
    let mut envoy = BTreeMap::new();
    for entry in entries {
        let key = entry.key.as_str();
        if keys::ROUTE.contains(&key) || keys::ENVOY_CLUSTER.contains(&key) {
            crate::section::report_unsupported_route(key, entry.key_span, &entry.value, origin, sink);
            if keys::ROUTE.contains(&key) {
                let field = Field {
                    name: entry.key.clone(),
                    key_span: entry.key_span,
                    value: entry.value,
                    origin: origin.clone(),
                };
                map.insert(entry.key, field);
            } else {
                envoy.insert(entry.key, entry.value);
            }
        } else if let Some(help) = keys::removed(keys::REMOVED_ROUTE, key) {
            let option = format!("routes.{key}");
            sink.error(origin, RemovedOption { option, span: entry.key_span.into(), help: help.to_owned() });
        } else {
            let help = ppl::suggest::did_you_mean(key, keys::ROUTE).or_else(|| {
                (keys::GLOBAL_TYPED.contains(&key) || keys::GLOBAL_RAW.contains(&key))
                    .then(|| format!("`{key}` is a global option; move it to the top level of the file"))
            });
            sink.warning(origin, UnknownOption { option: format!("routes.{key}"), span: entry.key_span.into(), help });
        }
    }
    (Section::from_fields(map), envoy)
}

fn read_from(r: &mut Reader<'_>, origin: &Origin, anchor: Span) -> Option<From> {
    let Some(field) = r.section.get("from") else {
        r.sink.error(
            origin,
            crate::diagnostic::Missing {
                option: "from".to_owned(),
                because: "in every route".to_owned(),
                span: anchor.into(),
                help: Some("`from` is the url the route is served at, e.g. `from: https://app.example.com`".to_owned()),
            },
        );
        return None;
    };
    let text = field.string(r.sink)?;
    parse_from(field, &text, r.sink)
}

/// Exactly one of `to`, `redirect`, `response`.
fn read_action(r: &mut Reader<'_>, origin: &Origin, anchor: Span) -> Option<Action> {
    let present: Vec<(&'static str, Field)> = ["to", "redirect", "response"]
        .into_iter()
        .filter_map(|key| r.section.get(key).map(|field| (key, field.clone())))
        .collect();
    match present.as_slice() {
        [] => {
            let span = r.section.entry("from").map_or(anchor, Field::entry_span);
            r.sink.error(origin, NoAction { span: span.into() });
            None
        }
        [(key, field)] => match *key {
            "to" => upstreams(field, r.sink).map(Action::Upstream),
            "redirect" => redirect(field, r.sink).map(Action::Redirect),
            _ => response(field, r.sink).map(Action::Response),
        },
        [(first, first_field), (second, second_field), ..] => {
            r.sink.error(
                &second_field.origin,
                SeveralActions {
                    first,
                    second,
                    span: second_field.key_span.into(),
                    other: first_field.key_span.into(),
                },
            );
            None
        }
    }
}

/// `id`: an explicit id replaces the hash.
pub(crate) fn route_id(r: &mut Reader<'_>, route: &mut Route) {
    if let Some(id) = r.string("id") {
        route.id = id;
        route.id_is_explicit = true;
    }
}

/// `prefix`, `path`: a path starting with `/` (reported, but kept, when it does not).
pub(crate) fn url_path(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<String>) {
    let key = key(keys);
    set(slot, r.string(key));
    if let (Some(value), Some(field)) = (slot.as_ref(), r.section.get(key))
        && !value.starts_with('/')
    {
        let help = Some(format!("write `{key}: /{value}`"));
        field.invalid(r.sink, "a path starts with `/`", help);
    }
}

/// A regex option: read and compiled.
fn pattern(r: &mut Reader<'_>, key: &str) -> Option<String> {
    r.with(key, |field, sink| {
        let pattern = field.string(sink).filter(|p| !p.is_empty())?;
        check_regex(field, &pattern, sink).then_some(pattern)
    })
}

pub(crate) fn regex(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<String>) {
    set(slot, pattern(r, key(keys)));
}

/// Envoy's own `lb_policy` (`ROUND_ROBIN`, ...) when `load_balancing_policy` is not set.
pub(crate) fn lb_policy(r: &mut Reader<'_>, route: &mut Route) {
    if let (None, Some(value)) = (route.load_balancing_policy, route.envoy_cluster.get("lb_policy")) {
        let origin = route.origin.clone();
        let field = Field { name: "lb_policy".to_owned(), key_span: value.span, value: value.clone(), origin };
        route.load_balancing_policy = field.choice(r.sink, LB_POLICIES, true);
    }
}

pub(crate) fn outlier(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<OutlierDetection>) {
    set(slot, r.with(key(keys), outlier_detection));
}

/// A tcp route connects to `host:port`; the server cannot run one whose first upstream lacks
/// either.
pub(crate) fn check_tunnel_upstream(r: &mut Reader<'_>, route: &mut Route) {
    let Some(first) = route.upstreams().first().filter(|_| route.is_tcp()) else { return };
    if first.url.host_str().is_some_and(|h| !h.is_empty()) && first.url.port().is_some() {
        return;
    }
    if let Some(field) = r.section.get("to") {
        let help = Some("write `to: tcp://host:port`, e.g. `tcp://db:5432`".to_owned());
        field.invalid(r.sink, "a tcp route's upstream needs a host and a port", help);
    }
}

/// `prefix_rewrite`, or `regex_rewrite_pattern` with its substitution; not both.
pub(crate) fn path_rewrite(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<PathRewrite>) {
    let &[prefix_key, pattern_key, substitution_key] = keys else { return };
    let both = (r.field(prefix_key), r.field(pattern_key));
    if let (Some(prefix), Some(pattern)) = &both {
        conflict(prefix, pattern, Some("rewrite with a prefix or with a regex, not both".to_owned()), r.sink);
    }
    let prefix = r.with(prefix_key, Field::string).filter(|p| !p.is_empty());
    let substitution = substitution(r, pattern_key, substitution_key);
    let pattern = pattern(r, pattern_key);
    if !matches!(both, (Some(_), Some(_))) {
        *slot = prefix.map(PathRewrite::Prefix).or(pattern.map(|pattern| PathRewrite::Regex { pattern, substitution }));
    }
}

/// A regex substitution; without its pattern it does nothing.
fn substitution(r: &mut Reader<'_>, pattern_key: &str, key: &str) -> String {
    let substitution = r.with(key, Field::string).unwrap_or_default();
    if let (None, Some(field)) = (r.section.get(pattern_key), r.section.get(key)) {
        let because = format!("there is no `{pattern_key}`");
        r.sink
            .warning(&field.origin, IgnoredOption { option: field.name.clone(), because, span: field.key_span.into() });
    }
    substitution
}

/// `host_rewrite_header`: a header name.
pub(crate) fn header_name(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<String>) {
    let Some(header) = r.string(key(keys)) else { return };
    if let Some(field) = r.section.get(key(keys))
        && !headers::is_header_name(&header)
    {
        field.invalid(r.sink, format!("`{header}` is not a header name"), None);
        return;
    }
    *slot = Some(header);
}

pub(crate) fn host_path_regex_rewrite(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<(String, String)>) {
    let &[pattern_key, substitution_key] = keys else { return };
    let substitution = substitution(r, pattern_key, substitution_key);
    set(slot, pattern(r, pattern_key).map(|pattern| (pattern, substitution)));
}

/// `set_request_headers`: header names, each value a template.
pub(crate) fn set_request_headers(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut BTreeMap<String, String>) {
    let Some(field) = r.field(key(keys)) else { return };
    for (name, value) in field.map(r.sink).unwrap_or_default() {
        let value_field = field.item(&Value::new(ValueKind::String(value.value.clone()), value.span));
        if !headers::is_header_name(&name.value) {
            let name_field = field.item(&Value::new(ValueKind::String(name.value.clone()), name.span));
            name_field.invalid(r.sink, format!("`{}` is not a header name", name.value), None);
            continue;
        }
        headers::check_templates(&value_field, &value.value, r.sink);
        slot.insert(name.value, value.value);
    }
}

pub(crate) fn rewrite_response_headers(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Vec<RewriteHeader>) {
    if let Some(field) = r.field(key(keys)) {
        *slot = rewrite_headers(&field, r.sink);
    }
}

/// `tls_client_cert`/`tls_client_key` (base64) or the `_file` pair; each pair needs both halves.
pub(crate) fn client_certificate(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<CertifiedKey>) {
    let &[cert, key, cert_file, key_file] = keys else { return };
    let (cert, key, cert_file, key_file) = (r.field(cert), r.field(key), r.field(cert_file), r.field(key_file));
    let inline = require_both(cert.as_ref(), key.as_ref(), r.sink);
    let files = require_both(cert_file.as_ref(), key_file.as_ref(), r.sink);
    if inline.is_some() {
        if let (Some(_), Some(cert_file)) = (files, &cert_file) {
            let because = "`tls_client_cert` and `tls_client_key` are also set and take precedence".to_owned();
            let warning = IgnoredOption { option: cert_file.name.clone(), because, span: cert_file.key_span.into() };
            r.sink.warning(&cert_file.origin, warning);
        }
        let cert = inline_or_file(cert.as_ref(), None, Encoding::Base64, Precedence::Inline, r.env, r.sink);
        let key = inline_or_file(key.as_ref(), None, Encoding::Base64, Precedence::Inline, r.env, r.sink);
        *slot = material::certified_key(cert, key, r.sink);
        return;
    }
    if files.is_none() {
        return;
    }
    let cert = inline_or_file(None, cert_file.as_ref(), Encoding::Text, Precedence::File, r.env, r.sink);
    let key = inline_or_file(None, key_file.as_ref(), Encoding::Text, Precedence::File, r.env, r.sink);
    *slot = material::certified_key(cert, key, r.sink);
}

/// `tls_downstream_client_ca` (or `_file`, which wins): deprecated, still read.
pub(crate) fn downstream_client_ca(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<Certificates>) {
    let &[inline, file] = keys else { return };
    let (dca, dca_file) = (r.field(inline), r.field(file));
    for field in [&dca, &dca_file].into_iter().flatten() {
        let help = "set the client certificate authority globally with `downstream_mtls.ca` (or `ca_file`)".to_owned();
        r.sink
            .warning(&field.origin, DeprecatedOption { option: field.name.clone(), span: field.key_span.into(), help });
    }
    *slot = inline_or_file(dca.as_ref(), dca_file.as_ref(), Encoding::Base64, Precedence::File, r.env, r.sink)
        .and_then(|m| certificates(&m, r.sink));
}

/// The service account token, inline or from its file (then the file's path is kept too).
pub(crate) fn kubernetes_token(r: &mut Reader<'_>, route: &mut Route) {
    let (token, token_file) =
        (r.field("kubernetes_service_account_token"), r.field("kubernetes_service_account_token_file"));
    route.kubernetes_service_account_token =
        inline_or_file(token.as_ref(), token_file.as_ref(), Encoding::Text, Precedence::Exclusive, r.env, r.sink)
            .map(|m| Secret::new(m.bytes));
    if route.kubernetes_service_account_token.is_some() && token.is_none() {
        route.kubernetes_service_account_token_file = token_file.and_then(|f| f.value.as_str().map(str::to_owned));
    }
}

pub(crate) fn depends_on(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Vec<String>) {
    if let Some(field) = r.field(key(keys)) {
        *slot = depends_on_hosts(&field, r.sink);
    }
}

/// An access flag: set to true, it is the span of its entry.
pub(crate) fn flag(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<Span>) {
    let Some(field) = r.section.get(key(keys)) else { return };
    set(slot, field.bool(r.sink).filter(|on| *on).map(|_| field.entry_span()));
}

/// A list whose items keep their spans.
pub(crate) fn spanned_list(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Vec<(String, Span)>) {
    let items = r.with(key(keys), Field::list);
    set(
        slot,
        items.map(|items: Vec<Spanned<String>>| items.into_iter().map(|i| (i.value, i.span)).collect::<Vec<_>>()),
    );
}

pub(crate) fn idp_claims(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Vec<(String, Span, Vec<Value>)>) {
    if let Some(field) = r.field(key(keys)) {
        *slot = claims(&field, r.sink);
    }
}

/// `Policy.Validate`: a public route has no lists; nor does one open to any signed-in user.
pub(crate) fn check_access_lists(r: &mut Reader<'_>, access: &mut Access) {
    let section = r.section;
    let lists: Vec<&Field> = ["allowed_users", "allowed_domains"].iter().filter_map(|key| section.get(key)).collect();
    if let (Some(public), Some(field)) =
        (section.get("allow_public_unauthenticated_access"), access.allow_public_unauthenticated_access)
    {
        let any = section.get("allow_any_authenticated_user").filter(|_| access.allow_any_authenticated_user.is_some());
        for list in lists.iter().copied().chain(any) {
            let error =
                PublicWithAllowLists { list: list.name.clone(), span: list.key_span.into(), public: field.into() };
            r.sink.error(&public.origin, error);
        }
        return;
    }
    if let (Some(any), Some(field)) = (section.get("allow_any_authenticated_user"), access.allow_any_authenticated_user)
    {
        for list in lists {
            let error =
                AnyUserWithAllowLists { list: list.name.clone(), span: list.key_span.into(), any: field.into() };
            r.sink.error(&any.origin, error);
        }
    }
}

/// The embedded policy, lowered from its value so that errors point into the file, and its
/// checked model (which `load` reuses when the route's policy is this one alone).
pub(crate) fn embedded_policy(r: &mut Reader<'_>, route: &mut Route) {
    let Some(field) = r.section.get("policy") else { return };
    let parsed = ppl::parse_value(&field.value);
    let Some(ast) = parsed.policy else { return };
    let checked = ppl::check(&ast);
    let clean = parsed.errors.is_empty() && checked.errors.is_empty();
    for error in parsed.errors.into_iter().chain(checked.errors) {
        r.sink.error(&field.origin, error);
    }
    if !clean {
        return;
    }
    for warning in checked.warnings {
        r.sink.warning(&field.origin, warning);
    }
    route.embedded_policy = Some(ast);
    route.embedded_model = checked.policy;
}

/// `sub_policies`: a list of `{id, name, source_ppl, explanation, remediation, allowed_users,
/// allowed_domains, allowed_idp_claims}`. `rego` is refused: there is no Rego engine here, and a
/// sub-policy skipped would change who gets in.
pub(crate) fn sub_policies(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Vec<SubPolicy>) {
    let Some(field) = r.field(key(keys)) else { return };
    let Some(items) = field.value.as_array() else {
        field.wrong_type(r.sink, "a list of sub-policies (`{id, name, source_ppl, explanation, remediation}`)", None);
        return;
    };
    for item in items {
        let item = field.item(item);
        if let Some(policy) = sub_policy(&item, r.sink) {
            slot.push(policy);
        }
    }
}

const SUB_POLICY_FIELDS: &[&str] = &[
    "id",
    "name",
    "source_ppl",
    "explanation",
    "remediation",
    "allowed_users",
    "allowed_domains",
    "allowed_idp_claims",
    "rego",
];

fn sub_policy(item: &Field, sink: &mut Sink) -> Option<SubPolicy> {
    let entries = item.object(sink)?;
    let mut policy = SubPolicy {
        id: String::new(),
        name: String::new(),
        explanation: String::new(),
        remediation: String::new(),
        ast: None,
        model: None,
        allowed_users: Vec::new(),
        allowed_domains: Vec::new(),
        allowed_idp_claims: Vec::new(),
        span: item.span(),
    };
    for entry in &entries {
        let child = item.child(entry);
        if child.is_null() {
            continue;
        }
        match entry.key.as_str() {
            "id" => policy.id = child.string(sink).unwrap_or_default(),
            "name" => policy.name = child.string(sink).unwrap_or_default(),
            "explanation" => policy.explanation = child.string(sink).unwrap_or_default(),
            "remediation" => policy.remediation = child.string(sink).unwrap_or_default(),
            "source_ppl" => {
                if let Some((ast, model)) = child.string(sink).and_then(|text| source_ppl(&child, &text, sink)) {
                    (policy.ast, policy.model) = (Some(ast), Some(model));
                }
            }
            "allowed_users" | "allowed_domains" => {
                let list: Vec<(String, Span)> =
                    child.list(sink).unwrap_or_default().into_iter().map(|i| (i.value, i.span)).collect();
                if entry.key == "allowed_users" { policy.allowed_users = list } else { policy.allowed_domains = list }
            }
            "allowed_idp_claims" => policy.allowed_idp_claims = claims(&child, sink),
            "rego" => {
                let empty = child.value.as_array().is_some_and(|items| items.is_empty());
                if !empty {
                    child.invalid(
                        sink,
                        "Rego sub-policies are not supported",
                        Some(
                            "write the rules in PPL, in the sub-policy's `source_ppl` or the route's `policy`"
                                .to_owned(),
                        ),
                    );
                }
            }
            other => unknown_field(&child, other, SUB_POLICY_FIELDS, sink),
        }
    }
    Some(policy)
}

/// A sub-policy's PPL (YAML or JSON text), checked; its errors are reported at the field, with
/// their place inside the text.
fn source_ppl(field: &Field, text: &str, sink: &mut Sink) -> Option<(ppl::ast::Policy, ppl::model::Policy)> {
    let compiled = ppl::compile(text, ppl::Syntax::Yaml);
    if compiled.errors.is_empty() {
        return compiled.ast.zip(compiled.policy);
    }
    let index = ppl::LineIndex::new(text);
    for error in &compiled.errors {
        let at = index.line_col(error.span().start());
        let help = miette::Diagnostic::help(error).map(|h| h.to_string());
        field.invalid(sink, format!("line {}, column {} of the policy: {error}", at.line, at.column), help);
    }
    None
}

pub(crate) const LB_POLICIES: &[(&str, LoadBalancingPolicy)] = &[
    ("round_robin", LoadBalancingPolicy::RoundRobin),
    ("maglev", LoadBalancingPolicy::Maglev),
    ("random", LoadBalancingPolicy::Random),
    ("ring_hash", LoadBalancingPolicy::RingHash),
    ("least_request", LoadBalancingPolicy::LeastRequest),
];

/// `from`: a URL with a supported scheme, a host, and no path (except the tunnel forms).
fn parse_from(field: &Field, text: &str, sink: &mut Sink) -> Option<From> {
    let url = route_url(field, "from", text.trim(), sink)?;
    let scheme = match url.scheme() {
        "https" => FromScheme::Https,
        "http" => {
            sink.warning(&field.origin, HttpFrom { span: field.span().into() });
            FromScheme::Http
        }
        "tcp+https" | "tcp+http" => FromScheme::Tcp,
        "udp+https" | "udp+http" | "ssh" => {
            let reason = if url.scheme() == "ssh" {
                "there is no ssh listener (pomerium serves these with `ssh_address`)"
            } else {
                "udp over http (connect-udp) is not implemented; tcp routes (`tcp+https://`) are"
            };
            let error = SchemeNotServed { scheme: url.scheme().to_owned(), reason, span: field.span().into() };
            sink.error(&field.origin, error);
            return None;
        }
        other => {
            sink.error(&field.origin, FromSchemeError { scheme: other.to_owned(), span: field.span().into() });
            return None;
        }
    };
    let path = url.path();
    if matches!(scheme, FromScheme::Https | FromScheme::Http) && !path.is_empty() && path != "/" {
        sink.error(&field.origin, FromPath { path: path.to_owned(), span: field.span().into() });
        return None;
    }
    if matches!(scheme, FromScheme::Tcp | FromScheme::Udp) && url.port().is_none() {
        let (kind, example) =
            if scheme == FromScheme::Tcp { ("tcp", "db.example.com:5432") } else { ("udp", "dns.example.com:53") };
        let help = format!("clients connect to `host:port`; add the port, e.g. `{kind}+https://{example}`");
        sink.warning(&field.origin, NoPort { kind, span: field.span().into(), help });
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    Some(From { port: url.port(), host, scheme, url, text: text.to_owned(), span: field.entry_span() })
}

/// A URL with a scheme and a host.
fn route_url(field: &Field, option: &'static str, text: &str, sink: &mut Sink) -> Option<Url> {
    let bad = |reason: String, help: Option<String>| RouteBadUrl { option, reason, span: field.span().into(), help };
    match Url::parse(text) {
        Ok(url) if url.host_str().is_none_or(str::is_empty) && !url.scheme().contains("unix") => {
            sink.error(&field.origin, bad("it has no host".to_owned(), None));
            None
        }
        Ok(url) => Some(url),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let example = if option == "from" { "https" } else { "http" };
            let help = Some(format!("write the scheme too: `{example}://{text}`"));
            sink.error(&field.origin, bad("it has no scheme".to_owned(), help));
            None
        }
        Err(error) => {
            sink.error(&field.origin, bad(error.to_string(), None));
            None
        }
    }
}

/// `to`: one URL or a list, each perhaps `,<weight>`; all weighted or none; schemes not mixed.
fn upstreams(field: &Field, sink: &mut Sink) -> Option<Vec<WeightedUrl>> {
    let items: Vec<Field> = match &field.value.kind {
        ValueKind::Array(items) => items.iter().map(|item| field.item(item)).collect(),
        _ => vec![field.clone()],
    };
    let mut out: Vec<(WeightedUrl, Span)> = Vec::new();
    let mut broken = false;
    for item in &items {
        if matches!(item.value.kind, ValueKind::Number(_)) {
            number_in_to(item, sink);
            broken = true;
            continue;
        }
        match item.string(sink).and_then(|text| weighted_url(item, &text, sink)) {
            // Pomerium's Envoy connects to unix sockets; this server's upstream client does not.
            Some(url) if url.url.scheme().contains("unix") => {
                let help = Some("reach the upstream over tcp, e.g. `to: http://app:8080`".to_owned());
                item.invalid(sink, "unix socket upstreams are not supported here", help);
                broken = true;
            }
            Some(url) => out.push((url, item.span())),
            None => broken = true,
        }
    }
    if out.is_empty() && !broken {
        field.invalid(
            sink,
            "the list of upstreams is empty",
            Some("write at least one url, e.g. `to: http://app:8080`".to_owned()),
        );
        return None;
    }
    check_weights(field, &out, sink);
    check_schemes(field, &out, sink);
    (!broken).then(|| out.into_iter().map(|(url, _)| url).collect())
}

/// A number among the upstreams is usually a weight cut off by a `[...]` list, whose commas
/// separate items: `[http://a:80,10]` is `http://a:80` and `10`.
fn number_in_to(item: &Field, sink: &mut Sink) {
    let help = Some(
        "in a `[...]` list a comma separates items, so `http://a:80,10` is read as two; quote it (`\"http://a:80,10\"`) \
         or write one url per line"
            .to_owned(),
    );
    let error =
        RouteBadUrl { option: "to", reason: "a number is not a url".to_owned(), span: item.span().into(), help };
    sink.error(&item.origin, error);
}

fn weighted_url(field: &Field, text: &str, sink: &mut Sink) -> Option<WeightedUrl> {
    let (url_text, weight) = match text.split_once(',') {
        Some((url_text, weight_text)) => {
            let bad = |reason: &str| BadWeight {
                text: weight_text.to_owned(),
                reason: reason.to_owned(),
                span: field.span().into(),
            };
            match weight_text.trim().parse::<u32>() {
                Ok(0) => {
                    sink.error(&field.origin, bad("zero weight is not allowed"));
                    return None;
                }
                Ok(weight) => (url_text, Some(weight)),
                Err(_) => {
                    sink.error(&field.origin, bad("not a whole number"));
                    return None;
                }
            }
        }
        None => (text, None),
    };
    let url = route_url(field, "to", url_text.trim(), sink)?;
    Some(WeightedUrl { written_path: written_path(url_text.trim()), url, weight })
}

/// The path as written in a URL: from the first `/` after the authority to `?` or `#`.
fn written_path(text: &str) -> String {
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    let Some(start) = after_scheme.find('/') else { return String::new() };
    let path = after_scheme.get(start..).unwrap_or_default();
    path.split(['?', '#']).next().unwrap_or_default().to_owned()
}

fn check_weights(field: &Field, urls: &[(WeightedUrl, Span)], sink: &mut Sink) {
    let weighted = urls.iter().find(|(url, _)| url.weight.is_some());
    let unweighted = urls.iter().find(|(url, _)| url.weight.is_none());
    if let (Some((_, weighted)), Some((_, unweighted))) = (weighted, unweighted) {
        sink.error(&field.origin, MixedWeights { span: (*unweighted).into(), weighted: (*weighted).into() });
    }
}

/// tcp, udp and unix upstreams each stand alone (`Policy.Validate`).
fn check_schemes(field: &Field, urls: &[(WeightedUrl, Span)], sink: &mut Sink) {
    let family = |scheme: &str| match scheme {
        "tcp" => "tcp",
        "udp" => "udp",
        "unix" | "https+unix" => "unix",
        _ => "http",
    };
    let Some((first, _)) = urls.first() else { return };
    let first_family = family(first.url.scheme());
    let Some((url, span)) = urls.iter().find(|(url, _)| family(url.url.scheme()) != first_family) else { return };
    let second_family = family(url.url.scheme());
    let (special, plain) =
        if first_family == "http" { (second_family, first_family) } else { (first_family, second_family) };
    let error = MixedSchemes { scheme: special.to_owned(), other: plain.to_owned(), span: (*span).into() };
    sink.error(&field.origin, error);
}

const REDIRECT_FIELDS: &[&str] = &[
    "https_redirect",
    "scheme_redirect",
    "host_redirect",
    "port_redirect",
    "path_redirect",
    "prefix_rewrite",
    "response_code",
    "strip_query",
];

fn redirect(field: &Field, sink: &mut Sink) -> Option<Redirect> {
    let entries = field.object(sink)?;
    let mut redirect = Redirect::default();
    let mut ok = true;
    for entry in &entries {
        let child = field.child(entry);
        match entry.key.as_str() {
            "https_redirect" => redirect.https_redirect = child.bool(sink),
            "scheme_redirect" => redirect.scheme_redirect = child.string(sink),
            "host_redirect" => redirect.host_redirect = child.string(sink),
            "port_redirect" => {
                redirect.port_redirect = child.integer(sink, 0, 65535).and_then(|p| u16::try_from(p).ok())
            }
            "path_redirect" => redirect.path_redirect = child.string(sink),
            "prefix_rewrite" => redirect.prefix_rewrite = child.string(sink),
            "strip_query" => redirect.strip_query = child.bool(sink),
            "response_code" => {
                redirect.response_code = child.integer(sink, i64::MIN, i64::MAX).and_then(|code| {
                    let supported = [301, 302, 303, 307, 308].contains(&code);
                    if !supported {
                        sink.error(&child.origin, RedirectCode { code: code.to_string(), span: child.span().into() });
                        ok = false;
                    }
                    u16::try_from(code).ok().filter(|_| supported)
                });
            }
            other => unknown_field(&child, other, REDIRECT_FIELDS, sink),
        }
    }
    if redirect.path_redirect.is_some() && redirect.prefix_rewrite.is_some() {
        field.invalid(sink, "`path_redirect` and `prefix_rewrite` cannot both be set", None);
        ok = false;
    }
    ok.then_some(redirect)
}

fn response(field: &Field, sink: &mut Sink) -> Option<DirectResponse> {
    let entries = field.object(sink)?;
    let mut status = None;
    let mut body = String::new();
    for entry in &entries {
        let child = field.child(entry);
        match entry.key.as_str() {
            // Envoy requires 200 <= status < 600.
            "status" => status = child.integer(sink, 200, 599).and_then(|s| u16::try_from(s).ok()),
            "body" => body = child.string(sink).unwrap_or_default(),
            other => unknown_field(&child, other, &["status", "body"], sink),
        }
    }
    if status.is_none() && !entries.iter().any(|e| e.key == "status") {
        field.invalid(sink, "a response needs a `status`", Some("e.g. `response: {status: 200, body: ok}`".to_owned()));
    }
    Some(DirectResponse { status: status?, body })
}

fn unknown_field(child: &Field, key: &str, known: &[&str], sink: &mut Sink) {
    let help = ppl::suggest::did_you_mean(key, known);
    sink.warning(&child.origin, UnknownOption { option: child.name.clone(), span: child.key_span.into(), help });
}

const OUTLIER_RAW_FIELDS: &[&str] = &[
    "enforcing_consecutive_local_origin_failure",
    "enforcing_local_origin_success_rate",
    "failure_percentage_threshold",
    "enforcing_failure_percentage",
    "enforcing_failure_percentage_local_origin",
    "failure_percentage_minimum_hosts",
    "failure_percentage_request_volume",
    "max_ejection_time_jitter",
    "successful_active_health_check_uneject_host",
    "always_eject_one_host",
];

/// Envoy's `OutlierDetection` in protojson: fields in snake_case or lowerCamelCase.
fn outlier_detection(field: &Field, sink: &mut Sink) -> Option<OutlierDetection> {
    let entries = field.object(sink)?;
    let mut od = OutlierDetection { raw: Some(field.value.clone()), ..OutlierDetection::default() };
    for entry in &entries {
        let child = field.child(entry);
        let key = snake_case(&entry.key);
        let percent = |sink: &mut Sink| child.integer(sink, 0, 100).and_then(|n| u32::try_from(n).ok());
        match key.as_str() {
            "consecutive_5xx" => od.consecutive_5xx = child.u32(sink),
            "consecutive_gateway_failure" => od.consecutive_gateway_failure = child.u32(sink),
            "consecutive_local_origin_failure" => od.consecutive_local_origin_failure = child.u32(sink),
            "interval" => od.interval = child.duration(sink),
            "base_ejection_time" => od.base_ejection_time = child.duration(sink),
            "max_ejection_time" => od.max_ejection_time = child.duration(sink),
            "max_ejection_percent" => od.max_ejection_percent = percent(sink),
            "enforcing_consecutive_5xx" => od.enforcing_consecutive_5xx = percent(sink),
            "enforcing_consecutive_gateway_failure" => od.enforcing_consecutive_gateway_failure = percent(sink),
            "enforcing_success_rate" => od.enforcing_success_rate = percent(sink),
            "success_rate_minimum_hosts" => od.success_rate_minimum_hosts = child.u32(sink),
            "success_rate_request_volume" => od.success_rate_request_volume = child.u32(sink),
            "success_rate_stdev_factor" => od.success_rate_stdev_factor = child.u32(sink),
            "split_external_local_origin_errors" => od.split_external_local_origin_errors = child.bool(sink),
            other if OUTLIER_RAW_FIELDS.contains(&other) => {}
            other => {
                let known: Vec<&str> = OUTLIER_TYPED.iter().chain(OUTLIER_RAW_FIELDS).copied().collect();
                unknown_field(&child, other, &known, sink);
            }
        }
    }
    Some(od)
}

const OUTLIER_TYPED: &[&str] = &[
    "consecutive_5xx",
    "consecutive_gateway_failure",
    "consecutive_local_origin_failure",
    "interval",
    "base_ejection_time",
    "max_ejection_time",
    "max_ejection_percent",
    "enforcing_consecutive_5xx",
    "enforcing_consecutive_gateway_failure",
    "enforcing_success_rate",
    "success_rate_minimum_hosts",
    "success_rate_request_volume",
    "success_rate_stdev_factor",
    "split_external_local_origin_errors",
];

/// `consecutive5xx` → `consecutive_5xx`, `baseEjectionTime` → `base_ejection_time`.
fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut previous_lower = false;
    for c in key.chars() {
        if (c.is_ascii_uppercase() || (c.is_ascii_digit() && !out.ends_with(|p: char| p.is_ascii_digit())))
            && previous_lower
        {
            out.push('_');
        }
        previous_lower = c.is_ascii_lowercase();
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn rewrite_headers(field: &Field, sink: &mut Sink) -> Vec<RewriteHeader> {
    let Some(items) = field.value.as_array() else {
        field.wrong_type(sink, "a list of `{header, prefix, value}` objects", None);
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let item = field.item(item);
        let Some(entries) = item.object(sink) else { continue };
        let mut rewrite = RewriteHeader { header: String::new(), prefix: String::new(), value: String::new() };
        for entry in &entries {
            let child = item.child(entry);
            let slot = match entry.key.as_str() {
                "header" => &mut rewrite.header,
                "prefix" => &mut rewrite.prefix,
                "value" => &mut rewrite.value,
                other => {
                    unknown_field(&child, other, &["header", "prefix", "value"], sink);
                    continue;
                }
            };
            *slot = child.string(sink).unwrap_or_default();
        }
        if rewrite.header.is_empty() {
            item.invalid(
                sink,
                "each entry needs a `header`",
                Some("e.g. `{header: Location, prefix: http://app:8080/, value: /}`".to_owned()),
            );
            continue;
        }
        out.push(rewrite);
    }
    out
}

/// At most five hosts; a URL is reduced to its host.
fn depends_on_hosts(field: &Field, sink: &mut Sink) -> Vec<String> {
    let items = field.list(sink).unwrap_or_default();
    if items.len() > 5 {
        sink.error(&field.origin, TooManyDependsOn { count: items.len(), span: field.span().into() });
    }
    let mut out = Vec::new();
    for item in items {
        if !item.value.contains('/') {
            out.push(item.value);
            continue;
        }
        match Url::parse(&item.value) {
            Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => {
                out.push(url.host_str().unwrap_or_default().to_owned())
            }
            _ => {
                let item_field = field.item(&Value::new(ValueKind::String(item.value.clone()), item.span));
                item_field.invalid(sink, format!("`{}` is neither a host nor a url with one", item.value), None);
            }
        }
    }
    out
}

/// `allowed_idp_claims`: claim → list of values (a single value is a list of one).
fn claims(field: &Field, sink: &mut Sink) -> Vec<(String, Span, Vec<Value>)> {
    let Some(entries) = field.object(sink) else { return Vec::new() };
    entries
        .into_iter()
        .filter(|entry| !matches!(entry.value.kind, ValueKind::Null))
        .map(|entry| {
            let values = match &entry.value.kind {
                ValueKind::Array(items) => items.clone(),
                _ => vec![entry.value.clone()],
            };
            (entry.key, entry.key_span, values)
        })
        .collect()
}

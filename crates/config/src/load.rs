//! Loading a configuration: the document, the environment, the options, the routes, the checks
//! across routes, and each route's policy.

use crate::assemble::assemble;
use crate::diagnostic::{
    AutocertWildcard, DuplicateId, Error, IgnoredOption, KubernetesManifest, Located, NotObject, Origin, RouteList,
    ShadowedRoute, TooLarge, Warning,
};
use crate::env::Environment;
use crate::options::{self, MtlsEnforcement, Options};
use crate::read::{Field, Sink, bad_env};
use crate::route::{Route, RoutePolicy};
use crate::route_read;
use crate::section::Section;
use base64::Engine as _;
use ppl::Span;
use ppl::value::{Value, ValueKind};
use std::collections::{BTreeMap, HashMap};

/// Configuration files larger than this are refused before parsing.
pub const MAX_CONFIG_BYTES: usize = 16 * 1024 * 1024;

/// How the configuration file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `.json` is JSON; everything else is YAML (which also reads most JSON).
    pub fn from_path(path: &str) -> Format {
        if path.to_ascii_lowercase().ends_with(".json") { Format::Json } else { Format::Yaml }
    }
}

/// The global options and the routes, in Pomerium's order (`policy:` then `routes:`).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub options: Options,
    pub routes: Vec<Route>,
}

/// The outcome of loading: the configuration when there are no errors, and every diagnostic.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Option<Config>,
    pub errors: Vec<Located<Error>>,
    pub warnings: Vec<Located<Warning>>,
    /// The text behind each [`Origin::Env`] a diagnostic or route points into: the variable's
    /// value, or for `POLICY` and `ROUTES` the base64-decoded text.
    pub env_sources: BTreeMap<String, String>,
}

impl Loaded {
    /// The text an origin's spans point into; `file` is the configuration file's text.
    pub fn source_text<'a>(&'a self, origin: &Origin, file: &'a str) -> &'a str {
        match origin {
            Origin::File => file,
            Origin::Env(name) => self.env_sources.get(name).map_or("", String::as_str),
        }
    }
}

/// Loads a configuration from its text and the environment. Never panics; reports every problem.
pub fn load(source: &str, format: Format, env: &dyn Environment) -> Loaded {
    let mut sink = Sink::default();
    let mut decoded = BTreeMap::new();
    let config = read_config(source, format, env, &mut sink, &mut decoded);
    finish(config, sink, env, decoded)
}

fn read_config(
    source: &str,
    format: Format,
    env: &dyn Environment,
    sink: &mut Sink,
    decoded: &mut BTreeMap<String, String>,
) -> Option<Config> {
    let mut document = parse_document(source, format, sink)?;
    if let Some(kind) = crate::kubernetes_kind(&document) {
        let help = KubernetesManifest::help_for(kind);
        sink.error(&Origin::File, KubernetesManifest { kind: kind.to_owned(), help, span: document.span.into() });
        return None;
    }
    let mut lists = take_route_lists(&mut document);
    let Some(entries) = document.as_object() else {
        if crate::is_route_list(&document) {
            sink.error(&Origin::File, RouteList { span: document.span.into() });
            return None;
        }
        sink.error(&Origin::File, NotObject { found: document.kind(), span: document.span.into() });
        return None;
    };
    let top = Section::read(&options::schema(), entries, &Origin::File, env, sink);
    let mtls = mtls_section(&top, env, sink);
    let mut options = options::read(&top, &mtls, env, sink);
    apply_headers_env(&mut options, &top, env, sink);
    let mut routes = Vec::new();
    for key in ["policy", "routes"] {
        let (values, origin) = route_values(key, &top, env, sink, decoded, &mut lists);
        for value in values {
            let index = routes.len();
            routes.extend(route_read::read(value, &origin, index, env, sink));
        }
    }
    finish_routes(&mut routes, &options, sink);
    Some(Config { options, routes })
}

/// The `policy` and `routes` lists of a document that is an object, moved out of it (an empty list
/// with the same spans stays in their place): the routes are read from them without a copy.
fn take_route_lists(document: &mut Value) -> Vec<(&'static str, Vec<Value>)> {
    let ValueKind::Object(entries) = &mut document.kind else { return Vec::new() };
    let mut lists = Vec::new();
    for entry in entries {
        let key = match entry.key.as_str() {
            "policy" => "policy",
            "routes" => "routes",
            _ => continue,
        };
        if let ValueKind::Array(items) = &mut entry.value.kind {
            lists.push((key, std::mem::take(items)));
        }
    }
    lists
}

/// The document as a value tree; an empty document is an empty object (Pomerium's defaults).
fn parse_document(source: &str, format: Format, sink: &mut Sink) -> Option<Value> {
    if source.len() > MAX_CONFIG_BYTES {
        sink.error(&Origin::File, TooLarge { limit: MAX_CONFIG_BYTES, span: Span::empty_at(0).into() });
        return None;
    }
    let (value, errors) = match format {
        Format::Yaml => ppl::syntax::yaml::parse(source),
        Format::Json => ppl::syntax::json::parse(source),
    };
    let empty = errors.iter().any(|e| e.code_str() == "ppl::syntax::empty");
    if empty {
        return Some(Value::new(ValueKind::Object(Vec::new()), Span::empty_at(0)));
    }
    let clean = errors.is_empty();
    errors.into_iter().for_each(|e| sink.error(&Origin::File, e));
    value.filter(|_| clean)
}

/// `downstream_mtls` from the file, each field replaceable by `DOWNSTREAM_MTLS_<FIELD>`.
fn mtls_section(top: &Section, env: &dyn Environment, sink: &mut Sink) -> Section {
    let field = top.get("downstream_mtls");
    let entries = field.and_then(|field| field.object(sink)).unwrap_or_default();
    let origin = field.map_or(Origin::File, |field| field.origin.clone());
    Section::read(&options::mtls_schema(), &entries, &origin, env, sink)
}

/// `HEADERS` replaces `set_response_headers`: JSON, or `K1:V1,K2:V2` (`parseHeaders`).
fn apply_headers_env(options: &mut Options, top: &Section, env: &dyn Environment, sink: &mut Sink) {
    let Some(text) = env.var("HEADERS").filter(|t| !t.is_empty()) else { return };
    if let Some(field) = top.get("set_response_headers") {
        replaced_by_env(field, "HEADERS", sink);
    }
    if text.trim_start().starts_with('{') {
        let field = Field::from_env("HEADERS", "HEADERS", &text);
        if let Some(headers) = options::response_headers(&field, sink) {
            options.set_response_headers = Some(headers);
        }
        return;
    }
    let mut headers = BTreeMap::new();
    for pair in text.split(',') {
        match pair.split_once(':') {
            Some((name, value)) => {
                headers.insert(name.to_owned(), value.to_owned());
            }
            None => {
                let reason = format!("`{pair}` is not `name:value`");
                let help = Some("write `HEADERS` as json, or as `Name1:Value1,Name2:Value2`".to_owned());
                bad_env(sink, "HEADERS", &text, reason, help);
                return;
            }
        }
    }
    options.set_response_headers = Some(headers);
}

/// A whole list in the file that an environment variable replaces.
fn replaced_by_env(field: &Field, var: &str, sink: &mut Sink) {
    let because = format!("the environment variable `{var}` replaces it");
    sink.warning(&field.origin, IgnoredOption { option: field.name.clone(), because, span: field.key_span.into() });
}

/// The route list under `key`: from `POLICY`/`ROUTES` (base64 of a YAML list) when set, else the file.
fn route_values(
    key: &str,
    top: &Section,
    env: &dyn Environment,
    sink: &mut Sink,
    decoded: &mut BTreeMap<String, String>,
    lists: &mut Vec<(&'static str, Vec<Value>)>,
) -> (Vec<Value>, Origin) {
    let var = key.to_ascii_uppercase();
    if let Some(text) = env.var(&var).filter(|t| !t.is_empty()) {
        if let Some(field) = top.get(key) {
            replaced_by_env(field, &var, sink);
        }
        return (decode_routes_env(&var, &text, sink, decoded), Origin::Env(var));
    }
    let Some(field) = top.get(key) else { return (Vec::new(), Origin::File) };
    match &field.value.kind {
        ValueKind::Array(_) => {
            let position = lists.iter().position(|(list, _)| *list == key);
            let items = position.map(|i| lists.swap_remove(i).1).unwrap_or_default();
            (items, field.origin.clone())
        }
        _ => {
            let help = Some(format!("write `{key}:` followed by a list of routes, each starting with `- from:`"));
            field.wrong_type(sink, "a list of routes", help);
            (Vec::new(), field.origin.clone())
        }
    }
}

/// `DecodePolicyBase64Hook`: base64, then a YAML list of routes; spans point into the decoded text.
fn decode_routes_env(var: &str, text: &str, sink: &mut Sink, decoded: &mut BTreeMap<String, String>) -> Vec<Value> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
        Ok(bytes) => bytes,
        Err(error) => {
            let help = Some(format!("`{var}` holds the base64 of a yaml list of routes: `base64 -w0 routes.yaml`"));
            bad_env(sink, var, text, format!("not base64: {}", crate::material::base64_reason(&error)), help);
            return Vec::new();
        }
    };
    let Ok(yaml) = String::from_utf8(bytes) else {
        bad_env(sink, var, text, "the decoded text is not utf-8".to_owned(), None);
        return Vec::new();
    };
    decoded.insert(var.to_owned(), yaml.clone());
    let origin = Origin::Env(var.to_owned());
    let (value, errors) = ppl::syntax::yaml::parse(&yaml);
    let clean = errors.is_empty();
    errors.into_iter().for_each(|e| sink.error(&origin, e));
    match value.filter(|_| clean) {
        Some(Value { kind: ValueKind::Array(items), .. }) => items,
        Some(other) => {
            let field = Field { name: var.to_owned(), key_span: other.span, value: other, origin };
            field.wrong_type(sink, "a list of routes", None);
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// Ids, policies, and the checks that compare routes.
fn finish_routes(routes: &mut [Route], options: &Options, sink: &mut Sink) {
    let any_route_ca = routes.iter().any(|r| r.tls.downstream_client_ca.is_some());
    let default_rule = (options.downstream_mtls.ca.is_some() || any_route_ca)
        && options.downstream_mtls.enforcement != MtlsEnforcement::Policy;
    for route in routes.iter_mut() {
        if !route.id_is_explicit {
            route.id = crate::identity::route_id(route);
        }
        route.policy = checked_policy(route, default_rule, sink);
        if options.autocert.enable && route.from.host.contains('*') {
            let warning = AutocertWildcard { host: route.from.host.clone(), span: route_label(route).into() };
            sink.warning(&route.origin, warning);
        }
    }
    check_duplicates(routes, sink);
}

/// Where to point at a route as a whole: its `from` entry.
fn route_label(route: &Route) -> Span {
    route.from.span
}

fn checked_policy(route: &mut Route, default_rule: bool, sink: &mut Sink) -> RoutePolicy {
    let (ast, embedded_alone) = assemble(route, default_rule);
    let embedded_model = route.embedded_model.take();
    let checked = match embedded_model {
        // The embedded policy was checked when it was read, and reported: checking the same rules
        // again finds the same model, and only problems inside it (or structural ones), which are
        // not reported twice.
        Some(model) if embedded_alone => ppl::Checked { policy: Some(model), errors: Vec::new(), warnings: Vec::new() },
        _ => ppl::check(&ast),
    };
    // Problems in the embedded policy were reported when it was read; what is left comes from the
    // legacy options (a claim value that is not a valid matcher).
    let embedded = route.embedded_policy.as_ref().map(|p| p.span);
    let inside = |span: Span| embedded.is_some_and(|e| e.start() <= span.start() && span.end() <= e.end());
    for error in checked.errors {
        if !inside(error.span()) {
            sink.error(&route.origin, error);
        }
    }
    // `allow_public_unauthenticated_access` beside `cors_allow_preflight` is a common pattern (the
    // preflight criterion is redundant, not wrong): not worth a lint.
    let public_with_preflight = |warning: &ppl::Warning| {
        warning.code_str() == "ppl::lint::redundant_criteria"
            && route.access.cors_allow_preflight.is_some()
            && route.access.allow_public_unauthenticated_access == Some(warning.span())
    };
    for warning in checked.warnings {
        let structural = matches!(
            warning.code_str().as_str(),
            "ppl::lint::empty_rule" | "ppl::lint::empty_block" | "ppl::lint::empty_policy"
        );
        if !inside(warning.span()) && !structural && !public_with_preflight(&warning) {
            sink.warning(&route.origin, warning);
        }
    }
    let mut model = checked.policy.unwrap_or(ppl::model::Policy::empty());
    // Each sub-policy is a query OR-ed with the route's per action; PPL ORs rules of one action,
    // so its rules appended give the same values and reasons (a test compares the two).
    for sub in &route.sub_policies {
        model.rules.extend(sub.model.iter().flat_map(|m| m.rules.iter().cloned()));
    }
    RoutePolicy { ast, model }
}

/// Explicit ids must be unique; a route whose requests an earlier route all matches is unreachable.
fn check_duplicates(routes: &[Route], sink: &mut Sink) {
    let mut ids: BTreeMap<&str, &Route> = BTreeMap::new();
    let mut matchers: HashMap<&str, Matchers<'_>> = HashMap::new();
    for route in routes {
        if route.id_is_explicit {
            if let Some(first) = ids.get(route.id.as_str()) {
                let first_span = (first.origin == route.origin).then(|| route_label(first).into());
                let error = DuplicateId { id: route.id.clone(), span: route_label(route).into(), first: first_span };
                sink.error(&route.origin, error);
            } else {
                ids.insert(&route.id, route);
            }
        }
        let earlier = matchers.entry(route.from.url.as_str()).or_default();
        if let Some(first) = earlier.first_shadowing(route) {
            let same = (&first.prefix, &first.path, &first.regex) == (&route.prefix, &route.path, &route.regex);
            let help = if same {
                "routes with the same `from`, `prefix`, `path` and `regex` match the same requests; merge them"
                    .to_owned()
            } else {
                "the first matching route wins; move this route before the broader one".to_owned()
            };
            let first_span = (first.origin == route.origin).then(|| route_label(first).into());
            let warning =
                ShadowedRoute { first: crate::describe(first), span: route_label(route).into(), first_span, help };
            sink.warning(&route.origin, warning);
        }
        earlier.add(route);
    }
}

/// The earlier routes of one `from`, by what they match on, each key with its first route (and
/// that route's position): so that finding a shadowing route costs lookups, not a scan of every
/// earlier route, and a config with 10,000 routes loads in linear time.
///
/// An earlier route shadows a later one when every request the later matches, it matches first:
/// the same regex; the same path (the later without a regex); or a prefix of the later's path or
/// prefix (`/`, the default, also covers a later regex). Envoy tries regex, then path, then prefix
/// (`mkRouteMatch`).
#[derive(Default)]
struct Matchers<'a> {
    count: usize,
    regexes: HashMap<&'a str, (usize, &'a Route)>,
    paths: HashMap<&'a str, (usize, &'a Route)>,
    prefixes: HashMap<&'a str, (usize, &'a Route)>,
}

impl<'a> Matchers<'a> {
    fn add(&mut self, route: &'a Route) {
        let entry = (self.count, route);
        self.count += 1;
        let (map, key) = match (&route.regex, &route.path) {
            (Some(regex), _) => (&mut self.regexes, regex.as_str()),
            (None, Some(path)) => (&mut self.paths, path.as_str()),
            (None, None) => (&mut self.prefixes, route.prefix.as_deref().unwrap_or("/")),
        };
        map.entry(key).or_insert(entry);
    }

    fn first_shadowing(&self, later: &Route) -> Option<&'a Route> {
        let mut found: Vec<(usize, &'a Route)> = Vec::new();
        if let Some(regex) = &later.regex {
            found.extend(self.regexes.get(regex.as_str()).copied());
            found.extend(self.prefixes.get("/").copied());
        } else {
            found.extend(later.path.as_deref().and_then(|path| self.paths.get(path)).copied());
            let later_path = later.path.as_deref().or(later.prefix.as_deref()).unwrap_or("/");
            let boundaries = std::iter::once(0).chain(later_path.char_indices().map(|(i, c)| i + c.len_utf8()));
            found.extend(
                boundaries.filter_map(|end| later_path.get(..end)).filter_map(|p| self.prefixes.get(p)).copied(),
            );
        }
        found.into_iter().min_by_key(|(position, _)| *position).map(|(_, route)| route)
    }
}

/// Variables whose values are shown masked, with their length kept so that spans still fit.
const SECRET_VARIABLES: &[&str] = &[
    "SHARED_SECRET",
    "COOKIE_SECRET",
    "IDP_CLIENT_SECRET",
    "SIGNING_KEY",
    "CERTIFICATE_KEY",
    "AUTOCERT_EAB_MAC_KEY",
    "DATABROKER_STORAGE_CONNECTION_STRING",
    "METRICS_CERTIFICATE_KEY",
    "METRICS_BASIC_AUTH",
    "POMERIUM_ZERO_TOKEN",
];

/// Sorts diagnostics by where they are and records the environment text they point into.
fn finish(config: Option<Config>, mut sink: Sink, env: &dyn Environment, decoded: BTreeMap<String, String>) -> Loaded {
    sink.errors.sort_by(|a, b| (&a.origin, a.diagnostic.span().start()).cmp(&(&b.origin, b.diagnostic.span().start())));
    sink.warnings
        .sort_by(|a, b| (&a.origin, a.diagnostic.span().start()).cmp(&(&b.origin, b.diagnostic.span().start())));
    let mut env_sources = decoded;
    let origins = sink.errors.iter().map(|e| &e.origin).chain(sink.warnings.iter().map(|w| &w.origin));
    for name in origins.filter_map(Origin::variable) {
        if !env_sources.contains_key(name) {
            let text = env.var(name).unwrap_or_default();
            // A secret from the environment is not otherwise visible; a report must not print it.
            let text = if SECRET_VARIABLES.contains(&name) { "*".repeat(text.len()) } else { text };
            env_sources.insert(name.to_owned(), text);
        }
    }
    let config = config.filter(|_| sink.errors.is_empty());
    Loaded { config, errors: sink.errors, warnings: sink.warnings, env_sources }
}

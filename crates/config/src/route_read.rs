//! Reading one route (`config/policy.go` `Policy`, `Validate`; `config/custom.go` for `to`).

use crate::diagnostic::{
    AllowsNothing, AnyUserWithAllowLists, BadWeight, DeprecatedOption, FromPath, FromScheme as FromSchemeError,
    HttpFrom, IgnoredOption, MixedSchemes, MixedWeights, NoAction, NoPort, Origin, PublicWithAllowLists, RedirectCode,
    RemovedOption, RouteBadUrl, SchemeNotServed, SeveralActions, TooManyDependsOn, UnknownOption, WrongType,
};
use crate::env::Environment;
use crate::headers;
use crate::keys;
use crate::material::{self, Encoding, Precedence, certificates, inline_or_file};
use crate::options::{
    BEARER_TOKEN_FORMATS, BearerTokenFormat, JwtIssuerFormat, conflict, require_both, response_headers,
};
use crate::read::{Field, Sink, Spanned};
use crate::route::{
    Access, Action, DirectResponse, From, FromScheme, LoadBalancingPolicy, OutlierDetection, PathRewrite, Redirect,
    RewriteHeader, Route, RoutePolicy, UpstreamTls, WeightedUrl, check_regex,
};
use crate::secret::Secret;
use ppl::Span;
use ppl::value::{Entry, Value, ValueKind};
use std::collections::BTreeMap;
use url::Url;

/// The fields of one route object, by key.
struct Fields {
    map: BTreeMap<String, Field>,
    envoy: BTreeMap<String, Value>,
}

impl Fields {
    fn get(&self, key: &str) -> Option<&Field> {
        self.map.get(key).filter(|field| !field.is_null())
    }
}

/// Reads a route. `None` when it cannot be used at all (not an object, no `from`, no action);
/// every problem found is reported either way.
pub(crate) fn read(
    value: &Value,
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
    let fields = collect(entries, origin, sink);
    // Where to point at the route as a whole: its first key (the object spans many lines).
    let anchor = entries.first().map_or(value.span, |entry| entry.key_span);
    let mut cx = Cx { fields: &fields, sink, env, origin: origin.clone(), anchor };
    // Without a usable `from` or action the route is still read, so that every problem is reported.
    let from = cx.from();
    let action = cx.action();
    let usable = from.is_some() && action.is_some();
    let from = from.or_else(|| placeholder_from(value.span))?;
    let mut route = empty_route(index, origin, value.span, from, action.unwrap_or(Action::Upstream(Vec::new())));
    cx.matching(&mut route);
    cx.upstream_options(&mut route);
    cx.check_tunnel_upstream(&route);
    cx.rewrites(&mut route);
    cx.headers(&mut route);
    cx.protocols(&mut route);
    cx.tls(&mut route);
    cx.identity(&mut route);
    cx.metadata(&mut route);
    cx.access(&mut route);
    route.embedded_policy = cx.embedded_policy();
    if usable && route.access.is_empty() && fields.get("policy").is_none() {
        cx.sink.warning(origin, AllowsNothing { span: route.from.span.into() });
    }
    route.envoy_cluster = fields.envoy;
    usable.then_some(route)
}

/// Stands in for a `from` that could not be read while the rest of the route is checked.
fn placeholder_from(span: Span) -> Option<From> {
    let url = Url::parse("https://route.invalid").ok()?;
    Some(From { url, scheme: FromScheme::Https, host: String::new(), port: None, text: String::new(), span })
}

fn collect(entries: &[Entry], origin: &Origin, sink: &mut Sink) -> Fields {
    let mut map = BTreeMap::new();
    let mut envoy = BTreeMap::new();
    for entry in entries {
        let key = entry.key.as_str();
        if keys::ROUTE.contains(&key) || keys::ENVOY_CLUSTER.contains(&key) {
            let field = Field::new(key, entry, origin);
            crate::section::report_unsupported(&format!("routes.{key}"), &field, sink);
            if keys::ROUTE.contains(&key) {
                map.insert(entry.key.clone(), field);
            } else {
                envoy.insert(entry.key.clone(), entry.value.clone());
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
    Fields { map, envoy }
}

fn empty_route(index: usize, origin: &Origin, span: Span, from: From, action: Action) -> Route {
    Route {
        index,
        origin: origin.clone(),
        span,
        id: String::new(),
        id_is_explicit: false,
        name: None,
        description: None,
        logo_url: None,
        from,
        prefix: None,
        path: None,
        regex: None,
        regex_priority_order: None,
        action,
        load_balancing_policy: None,
        outlier_detection: None,
        health_checks: None,
        healthy_panic_threshold: None,
        circuit_breaker_thresholds: None,
        envoy_cluster: BTreeMap::new(),
        rewrite: None,
        host_rewrite: None,
        host_rewrite_header: None,
        host_path_regex_rewrite: None,
        preserve_host_header: false,
        set_request_headers: BTreeMap::new(),
        remove_request_headers: Vec::new(),
        set_response_headers: None,
        rewrite_response_headers: Vec::new(),
        allow_websockets: false,
        allow_spdy: false,
        allow_upgrades: None,
        tls: UpstreamTls::default(),
        timeout: None,
        idle_timeout: None,
        pass_identity_headers: None,
        kubernetes_service_account_token: None,
        kubernetes_service_account_token_file: None,
        enable_google_cloud_serverless_authentication: false,
        idp_client_id: None,
        idp_client_secret: None,
        idp_access_token_allowed_audiences: None,
        identity_providers: Vec::new(),
        bearer_token_format: None,
        jwt_groups_filter: None,
        jwt_issuer_format: None,
        show_error_details: false,
        depends_on: Vec::new(),
        mcp: None,
        upstream_tunnel: None,
        sub_policies: None,
        access: Access::default(),
        embedded_policy: None,
        policy: RoutePolicy { ast: ppl::ast::Policy { rules: Vec::new(), span }, model: ppl::model::Policy::empty() },
    }
}

struct Cx<'a> {
    fields: &'a Fields,
    sink: &'a mut Sink,
    env: &'a dyn Environment,
    origin: Origin,
    anchor: Span,
}

impl Cx<'_> {
    fn with<T>(&mut self, key: &str, read: impl FnOnce(&Field, &mut Sink) -> Option<T>) -> Option<T> {
        let field = self.fields.get(key)?;
        read(field, self.sink)
    }

    fn string(&mut self, key: &str) -> Option<String> {
        self.with(key, Field::string).filter(|s| !s.is_empty())
    }

    fn bool(&mut self, key: &str) -> bool {
        self.with(key, Field::bool).unwrap_or(false)
    }

    fn list(&mut self, key: &str) -> Option<Vec<String>> {
        self.with(key, Field::list).map(|items| items.into_iter().map(|i| i.value).collect())
    }

    /// A regex option: read and compiled.
    fn regex(&mut self, key: &str) -> Option<String> {
        self.with(key, |field, sink| {
            let pattern = field.string(sink).filter(|p| !p.is_empty())?;
            check_regex(field, &pattern, sink).then_some(pattern)
        })
    }

    fn from(&mut self) -> Option<From> {
        let Some(field) = self.fields.get("from") else {
            self.missing_from();
            return None;
        };
        let text = field.string(self.sink)?;
        parse_from(field, &text, self.sink)
    }

    fn missing_from(&mut self) {
        self.sink.error(
            &self.origin,
            crate::diagnostic::Missing {
                option: "from".to_owned(),
                because: "in every route".to_owned(),
                span: self.anchor.into(),
                help: Some("`from` is the url the route is served at, e.g. `from: https://app.example.com`".to_owned()),
            },
        );
    }

    /// Exactly one of `to`, `redirect`, `response`.
    fn action(&mut self) -> Option<Action> {
        let present: Vec<(&'static str, Field)> = ["to", "redirect", "response"]
            .into_iter()
            .filter_map(|key| self.fields.get(key).map(|field| (key, field.clone())))
            .collect();
        match present.as_slice() {
            [] => {
                let span = self.fields.map.get("from").map_or(self.anchor, Field::entry_span);
                self.sink.error(&self.origin, NoAction { span: span.into() });
                None
            }
            [(key, field)] => match *key {
                "to" => upstreams(field, self.sink).map(Action::Upstream),
                "redirect" => redirect(field, self.sink).map(Action::Redirect),
                _ => response(field, self.sink).map(Action::Response),
            },
            [(first, first_field), (second, second_field), ..] => {
                self.sink.error(
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

    fn matching(&mut self, route: &mut Route) {
        route.prefix = self.string("prefix");
        route.path = self.string("path");
        route.regex = self.regex("regex");
        route.regex_priority_order = self.with("regex_priority_order", |f, s| f.integer(s, i64::MIN, i64::MAX));
        for key in ["prefix", "path"] {
            if let Some(field) = self.fields.get(key) {
                let value = if key == "prefix" { &route.prefix } else { &route.path };
                if value.as_ref().is_some_and(|v| !v.starts_with('/')) {
                    let help = Some(format!("write `{key}: /{}`", value.as_deref().unwrap_or_default()));
                    field.invalid(self.sink, "a path starts with `/`", help);
                }
            }
        }
    }

    fn upstream_options(&mut self, route: &mut Route) {
        route.load_balancing_policy = self.with("load_balancing_policy", |f, s| f.choice(s, LB_POLICIES, true));
        // Envoy's own `lb_policy` (`ROUND_ROBIN`, ...) also works on a route.
        if let (None, Some(value)) = (route.load_balancing_policy, self.fields.envoy.get("lb_policy")) {
            let origin = route.origin.clone();
            let field = Field { name: "lb_policy".to_owned(), key_span: value.span, value: value.clone(), origin };
            route.load_balancing_policy = field.choice(self.sink, LB_POLICIES, true);
        }
        route.outlier_detection = self.with("outlier_detection", outlier_detection);
        route.health_checks = self.fields.get("health_checks").map(|f| f.value.clone());
        route.healthy_panic_threshold = self.with("healthy_panic_threshold", |f, s| f.integer(s, 0, 100));
        route.circuit_breaker_thresholds = self.fields.get("circuit_breaker_thresholds").map(|f| f.value.clone());
        route.timeout = self.with("timeout", Field::duration);
        route.idle_timeout = self.with("idle_timeout", Field::duration);
    }

    /// A tcp route connects to `host:port`; the server cannot run one whose first upstream lacks
    /// either.
    fn check_tunnel_upstream(&mut self, route: &Route) {
        let Some(first) = route.upstreams().first().filter(|_| route.is_tcp()) else { return };
        if first.url.host_str().is_some_and(|h| !h.is_empty()) && first.url.port().is_some() {
            return;
        }
        if let Some(field) = self.fields.get("to") {
            let help = Some("write `to: tcp://host:port`, e.g. `tcp://db:5432`".to_owned());
            field.invalid(self.sink, "a tcp route's upstream needs a host and a port", help);
        }
    }

    fn rewrites(&mut self, route: &mut Route) {
        let both = (self.fields.get("prefix_rewrite").cloned(), self.fields.get("regex_rewrite_pattern").cloned());
        if let (Some(prefix), Some(pattern)) = &both {
            conflict(prefix, pattern, Some("rewrite with a prefix or with a regex, not both".to_owned()), self.sink);
        }
        let prefix = self.with("prefix_rewrite", Field::string).filter(|p| !p.is_empty());
        let substitution = self.substitution("regex_rewrite_pattern", "regex_rewrite_substitution");
        let pattern = self.regex("regex_rewrite_pattern");
        if !matches!(both, (Some(_), Some(_))) {
            route.rewrite =
                prefix.map(PathRewrite::Prefix).or(pattern.map(|pattern| PathRewrite::Regex { pattern, substitution }));
        }
        route.host_rewrite = self.string("host_rewrite");
        route.host_rewrite_header = self.string("host_rewrite_header");
        if let (Some(header), Some(field)) = (&route.host_rewrite_header, self.fields.get("host_rewrite_header"))
            && !headers::is_header_name(header)
        {
            field.invalid(self.sink, format!("`{header}` is not a header name"), None);
            route.host_rewrite_header = None;
        }
        let host_substitution =
            self.substitution("host_path_regex_rewrite_pattern", "host_path_regex_rewrite_substitution");
        let host_pattern = self.regex("host_path_regex_rewrite_pattern");
        route.host_path_regex_rewrite = host_pattern.map(|pattern| (pattern, host_substitution));
        route.preserve_host_header = self.bool("preserve_host_header");
    }

    /// A regex substitution; without its pattern it does nothing.
    fn substitution(&mut self, pattern_key: &str, key: &str) -> String {
        let substitution = self.with(key, Field::string).unwrap_or_default();
        if let (None, Some(field)) = (self.fields.get(pattern_key), self.fields.get(key)) {
            let because = format!("there is no `{pattern_key}`");
            self.sink.warning(
                &field.origin,
                IgnoredOption { option: field.name.clone(), because, span: field.key_span.into() },
            );
        }
        substitution
    }

    fn headers(&mut self, route: &mut Route) {
        if let Some(field) = self.fields.get("set_request_headers") {
            for (name, value) in field.map(self.sink).unwrap_or_default() {
                let value_field = field.item(&Value::new(ValueKind::String(value.value.clone()), value.span));
                if !headers::is_header_name(&name.value) {
                    let name_field = field.item(&Value::new(ValueKind::String(name.value.clone()), name.span));
                    name_field.invalid(self.sink, format!("`{}` is not a header name", name.value), None);
                    continue;
                }
                headers::check_templates(&value_field, &value.value, self.sink);
                route.set_request_headers.insert(name.value, value.value);
            }
        }
        route.remove_request_headers = self.list("remove_request_headers").unwrap_or_default();
        route.set_response_headers = self.with("set_response_headers", response_headers);
        if let Some(field) = self.fields.get("rewrite_response_headers") {
            route.rewrite_response_headers = rewrite_headers(field, self.sink);
        }
    }

    fn protocols(&mut self, route: &mut Route) {
        route.allow_websockets = self.bool("allow_websockets");
        route.allow_spdy = self.bool("allow_spdy");
        route.allow_upgrades = self.list("allow_upgrades");
    }

    fn tls(&mut self, route: &mut Route) {
        let tls = &mut route.tls;
        tls.skip_verify = self.bool("tls_skip_verify");
        tls.server_name = self.string("tls_server_name");
        tls.upstream_server_name = self.string("tls_upstream_server_name");
        tls.downstream_server_name = self.string("tls_downstream_server_name");
        tls.allow_renegotiation = self.bool("tls_upstream_allow_renegotiation");
        let (ca, ca_file) = (self.fields.get("tls_custom_ca").cloned(), self.fields.get("tls_custom_ca_file").cloned());
        tls.custom_ca =
            inline_or_file(ca.as_ref(), ca_file.as_ref(), Encoding::Base64, Precedence::Inline, self.env, self.sink)
                .and_then(|m| certificates(&m, self.sink));
        tls.client_certificate = self.client_certificate();
        let (dca, dca_file) = (
            self.fields.get("tls_downstream_client_ca").cloned(),
            self.fields.get("tls_downstream_client_ca_file").cloned(),
        );
        for field in [&dca, &dca_file].into_iter().flatten() {
            let help =
                "set the client certificate authority globally with `downstream_mtls.ca` (or `ca_file`)".to_owned();
            self.sink.warning(
                &field.origin,
                DeprecatedOption { option: field.name.clone(), span: field.key_span.into(), help },
            );
        }
        tls.downstream_client_ca =
            inline_or_file(dca.as_ref(), dca_file.as_ref(), Encoding::Base64, Precedence::File, self.env, self.sink)
                .and_then(|m| certificates(&m, self.sink));
    }

    /// `tls_client_cert`/`tls_client_key` (base64) or the `_file` pair; each pair needs both halves.
    fn client_certificate(&mut self) -> Option<crate::material::CertifiedKey> {
        let get = |key: &str| self.fields.get(key).cloned();
        let (cert, key, cert_file, key_file) =
            (get("tls_client_cert"), get("tls_client_key"), get("tls_client_cert_file"), get("tls_client_key_file"));
        let inline = require_both(cert.as_ref(), key.as_ref(), self.sink);
        let files = require_both(cert_file.as_ref(), key_file.as_ref(), self.sink);
        if inline.is_some() {
            if let (Some(_), Some(cert_file)) = (files, &cert_file) {
                let because = "`tls_client_cert` and `tls_client_key` are also set and take precedence".to_owned();
                let warning =
                    IgnoredOption { option: cert_file.name.clone(), because, span: cert_file.key_span.into() };
                self.sink.warning(&cert_file.origin, warning);
            }
            let cert = inline_or_file(cert.as_ref(), None, Encoding::Base64, Precedence::Inline, self.env, self.sink);
            let key = inline_or_file(key.as_ref(), None, Encoding::Base64, Precedence::Inline, self.env, self.sink);
            return material::certified_key(cert, key, self.sink);
        }
        files?;
        let cert = inline_or_file(None, cert_file.as_ref(), Encoding::Text, Precedence::File, self.env, self.sink);
        let key = inline_or_file(None, key_file.as_ref(), Encoding::Text, Precedence::File, self.env, self.sink);
        material::certified_key(cert, key, self.sink)
    }

    fn identity(&mut self, route: &mut Route) {
        route.pass_identity_headers = self.with("pass_identity_headers", Field::bool);
        let (token, token_file) = (
            self.fields.get("kubernetes_service_account_token").cloned(),
            self.fields.get("kubernetes_service_account_token_file").cloned(),
        );
        route.kubernetes_service_account_token = inline_or_file(
            token.as_ref(),
            token_file.as_ref(),
            Encoding::Text,
            Precedence::Exclusive,
            self.env,
            self.sink,
        )
        .map(|m| Secret::new(m.bytes));
        if route.kubernetes_service_account_token.is_some() && token.is_none() {
            route.kubernetes_service_account_token_file = token_file.and_then(|f| f.value.as_str().map(str::to_owned));
        }
        route.enable_google_cloud_serverless_authentication =
            self.bool("enable_google_cloud_serverless_authentication");
        route.idp_client_id = self.string("idp_client_id");
        route.idp_client_secret = self.string("idp_client_secret").map(Secret::new);
        route.idp_access_token_allowed_audiences = self.list("idp_access_token_allowed_audiences");
        route.identity_providers = self.list("identity_providers").unwrap_or_default();
        route.bearer_token_format = self.with("bearer_token_format", |f, s| f.choice(s, BEARER_TOKEN_FORMATS, true));
        if route.bearer_token_format == Some(BearerTokenFormat::Jwt)
            && let Some(field) = self.fields.get("bearer_token_format")
        {
            self.sink.warning(&field.origin, crate::diagnostic::JwtBearerFormat { span: field.span().into() });
        }
        route.jwt_groups_filter = self.list("jwt_groups_filter");
        route.jwt_issuer_format = self.with("jwt_issuer_format", |f, s| {
            f.choice(s, &[("hostOnly", JwtIssuerFormat::HostOnly), ("uri", JwtIssuerFormat::Uri)], false)
        });
    }

    fn metadata(&mut self, route: &mut Route) {
        if let Some(id) = self.string("id") {
            route.id = id;
            route.id_is_explicit = true;
        }
        route.name = self.string("name");
        route.description = self.string("description");
        route.logo_url = self.string("logo_url");
        route.show_error_details = self.bool("show_error_details");
        route.mcp = self.fields.get("mcp").map(|f| f.value.clone());
        route.upstream_tunnel = self.fields.get("upstream_tunnel").map(|f| f.value.clone());
        route.sub_policies = self.fields.get("sub_policies").map(|f| f.value.clone());
        if let Some(field) = self.fields.get("depends_on") {
            route.depends_on = depends_on(field, self.sink);
        }
    }

    fn access(&mut self, route: &mut Route) {
        let access = &mut route.access;
        let flag = |cx: &mut Cx<'_>, key: &str| {
            let field = cx.fields.get(key)?;
            field.bool(cx.sink).filter(|on| *on).map(|_| field.entry_span())
        };
        access.allow_public_unauthenticated_access = flag(self, "allow_public_unauthenticated_access");
        access.allow_any_authenticated_user = flag(self, "allow_any_authenticated_user");
        access.cors_allow_preflight = flag(self, "cors_allow_preflight");
        let spanned = |items: Vec<Spanned<String>>| items.into_iter().map(|i| (i.value, i.span)).collect();
        access.allowed_users = self.with("allowed_users", Field::list).map(spanned).unwrap_or_default();
        access.allowed_domains = self.with("allowed_domains", Field::list).map(spanned).unwrap_or_default();
        if let Some(field) = self.fields.get("allowed_idp_claims") {
            access.allowed_idp_claims = idp_claims(field, self.sink);
        }
        self.check_access_lists(&route.access);
    }

    /// `Policy.Validate`: a public route has no lists; nor does one open to any signed-in user.
    fn check_access_lists(&mut self, access: &Access) {
        let lists: Vec<&Field> =
            ["allowed_users", "allowed_domains"].iter().filter_map(|key| self.fields.get(key)).collect();
        if let (Some(public), Some(field)) =
            (self.fields.get("allow_public_unauthenticated_access"), access.allow_public_unauthenticated_access)
        {
            let any = self
                .fields
                .get("allow_any_authenticated_user")
                .filter(|_| access.allow_any_authenticated_user.is_some());
            for list in lists.iter().copied().chain(any) {
                let error =
                    PublicWithAllowLists { list: list.name.clone(), span: list.key_span.into(), public: field.into() };
                self.sink.error(&public.origin, error);
            }
            return;
        }
        if let (Some(any), Some(field)) =
            (self.fields.get("allow_any_authenticated_user"), access.allow_any_authenticated_user)
        {
            for list in lists {
                let error =
                    AnyUserWithAllowLists { list: list.name.clone(), span: list.key_span.into(), any: field.into() };
                self.sink.error(&any.origin, error);
            }
        }
    }

    /// The embedded policy, lowered from its value so that errors point into the file.
    fn embedded_policy(&mut self) -> Option<ppl::ast::Policy> {
        let field = self.fields.get("policy")?;
        let parsed = ppl::parse_value(&field.value);
        let ast = parsed.policy?;
        let checked = ppl::check(&ast);
        let clean = parsed.errors.is_empty() && checked.errors.is_empty();
        for error in parsed.errors.into_iter().chain(checked.errors) {
            self.sink.error(&field.origin, error);
        }
        if !clean {
            return None;
        }
        for warning in checked.warnings {
            self.sink.warning(&field.origin, warning);
        }
        Some(ast)
    }
}

const LB_POLICIES: &[(&str, LoadBalancingPolicy)] = &[
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
fn depends_on(field: &Field, sink: &mut Sink) -> Vec<String> {
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
fn idp_claims(field: &Field, sink: &mut Sink) -> Vec<(String, Span, Vec<Value>)> {
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

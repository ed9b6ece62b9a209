//! Routes (system.md §1.4), typed, with the accessors the proxy needs: the effective timeouts,
//! rewrites, upgrades and identity headers, and the route's checked policy.

use crate::declare::{
    boolean, certificates_in, choice, declare, duration, exact_choice, integer, later, list, nested, secret, string,
    value,
};
use crate::diagnostic::{BadRegex, Origin};
use crate::material::{Certificates, CertifiedKey, Precedence};
use crate::options::{
    BearerTokenFormat, ISSUER_FORMATS, JwtIssuerFormat, Options, bearer_token_format, set_response_headers,
};
use crate::read::{Field, Sink};
use crate::route_read::{
    LB_POLICIES, check_access_lists, check_tunnel_upstream, client_certificate, depends_on, downstream_client_ca,
    embedded_policy, flag, header_name, host_path_regex_rewrite, idp_claims, kubernetes_token, lb_policy, outlier,
    path_rewrite, regex, rewrite_response_headers, route_id, set_request_headers, spanned_list, sub_policies, url_path,
};
use crate::secret::Secret;
use ppl::Span;
use ppl::value::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

/// How a route is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromScheme {
    Https,
    /// Accepted, but Pomerium serves routes over HTTPS only.
    Http,
    /// `tcp+https://host:port`: TCP tunnelled over HTTP CONNECT.
    Tcp,
    /// `udp+https://host:port`: UDP over CONNECT-UDP.
    Udp,
    Ssh,
}

/// The `from` URL of a route.
#[derive(Debug, Clone, PartialEq)]
pub struct From {
    pub url: Url,
    pub scheme: FromScheme,
    /// The host as written, lower-cased; may be a wildcard such as `*.example.com`.
    pub host: String,
    pub port: Option<u16>,
    /// The text as written.
    pub text: String,
    /// The `from: ...` entry, for pointing at the route in messages.
    pub span: Span,
}

impl From {
    /// Whether the host has a `*` (`https://*.example.com`).
    pub fn is_wildcard(&self) -> bool {
        self.host.contains('*')
    }
}

/// One upstream of `to`: `http://a:80` or `http://a:80,10`.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedUrl {
    pub url: Url,
    /// The load-balancing weight; either every upstream of a route has one or none has.
    pub weight: Option<u32>,
    /// The path exactly as written (`http://a/b` → `/b`), empty when there is none; the url crate
    /// writes `/` for both `http://a` and `http://a/`, Go keeps them apart.
    pub written_path: String,
}

/// `redirect:` (Envoy's redirect action).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Redirect {
    pub https_redirect: Option<bool>,
    pub scheme_redirect: Option<String>,
    pub host_redirect: Option<String>,
    pub port_redirect: Option<u16>,
    pub path_redirect: Option<String>,
    pub prefix_rewrite: Option<String>,
    /// 301, 302, 303, 307 or 308; `None` is Envoy's default, 301.
    pub response_code: Option<u16>,
    pub strip_query: Option<bool>,
}

/// `response:` (a direct response).
#[derive(Debug, Clone, PartialEq)]
pub struct DirectResponse {
    pub status: u16,
    pub body: String,
}

/// What a route does with a request it allows.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Upstream(Vec<WeightedUrl>),
    Redirect(Redirect),
    Response(DirectResponse),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadBalancingPolicy {
    RoundRobin,
    Maglev,
    Random,
    RingHash,
    LeastRequest,
}

impl LoadBalancingPolicy {
    /// With ring hash or maglev, authorize adds `x-pomerium-routing-key` = sha256(session id).
    pub fn uses_routing_key(self) -> bool {
        matches!(self, LoadBalancingPolicy::RingHash | LoadBalancingPolicy::Maglev)
    }
}

/// Envoy's outlier detection, the fields used in practice typed; the rest kept as written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutlierDetection {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_failure: Option<u32>,
    pub consecutive_local_origin_failure: Option<u32>,
    pub interval: Option<Duration>,
    pub base_ejection_time: Option<Duration>,
    pub max_ejection_time: Option<Duration>,
    /// 0 to 100.
    pub max_ejection_percent: Option<u32>,
    pub enforcing_consecutive_5xx: Option<u32>,
    pub enforcing_consecutive_gateway_failure: Option<u32>,
    pub enforcing_success_rate: Option<u32>,
    pub success_rate_minimum_hosts: Option<u32>,
    pub success_rate_request_volume: Option<u32>,
    pub success_rate_stdev_factor: Option<u32>,
    pub split_external_local_origin_errors: Option<bool>,
    /// The whole object as written.
    pub raw: Option<Value>,
}

/// How the path is rewritten before the request goes upstream.
#[derive(Debug, Clone, PartialEq)]
pub enum PathRewrite {
    /// The matched prefix is replaced with this.
    Prefix(String),
    /// Every match of the pattern is replaced with the substitution (`\1` for groups).
    Regex { pattern: String, substitution: String },
}

/// `rewrite_response_headers` entry: when `header` starts with `prefix`, the prefix becomes `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct RewriteHeader {
    pub header: String,
    pub prefix: String,
    pub value: String,
}

impl UpstreamTls {
    /// The name for SNI and verification: `tls_upstream_server_name`, else `tls_server_name`.
    pub fn sni(&self) -> Option<&str> {
        self.upstream_server_name.as_deref().or(self.server_name.as_deref())
    }
}

impl Access {
    pub fn is_empty(&self) -> bool {
        self.allowed_users.is_empty()
            && self.allowed_domains.is_empty()
            && self.allowed_idp_claims.is_empty()
            && self.allow_public_unauthenticated_access.is_none()
            && self.allow_any_authenticated_user.is_none()
            && self.cors_allow_preflight.is_none()
    }
}

/// A route's policy: the legacy options, the embedded `policy:` and the default client-certificate
/// rule, as one checked PPL policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePolicy {
    /// The assembled policy, with spans into the route's source (see [`Route::origin`]).
    pub ast: ppl::ast::Policy,
    /// The checked model, what `policy::Program::compile` takes.
    pub model: ppl::model::Policy,
}

// Every route option, declared once: its field, type, default, keys and reader. The keys make
// `keys::ROUTE`; see `crate::declare` for the readers and the defaulting rule. The readers named
// here that are not `crate::declare`'s are in `route_read.rs`.
declare! {
    /// Route options, read into [`Route`] as declared there, and the ones Pomerium knows that no
    /// field holds (`support.rs` says what is done with them).
    keys ROUTE, elsewhere ["ssh_policy", "ssh_policy_rego", "session_recording"];

    /// TLS towards the upstream.
    struct UpstreamTls() {
        skip_verify: bool = false, ["tls_skip_verify"] boolean;
        server_name: Option<String> = None, ["tls_server_name"] string;
        upstream_server_name: Option<String> = None, ["tls_upstream_server_name"] string;
        /// An extra downstream host the route answers to.
        downstream_server_name: Option<String> = None, ["tls_downstream_server_name"] string;
        custom_ca: Option<Certificates> = None,
            ["tls_custom_ca", "tls_custom_ca_file"] certificates_in(Precedence::Inline);
        client_certificate: Option<CertifiedKey> = None,
            ["tls_client_cert", "tls_client_key", "tls_client_cert_file", "tls_client_key_file"] client_certificate;
        /// Deprecated in favour of `downstream_mtls`; still makes the default client-certificate rule apply.
        downstream_client_ca: Option<Certificates> = None,
            ["tls_downstream_client_ca", "tls_downstream_client_ca_file"] downstream_client_ca;
        allow_renegotiation: bool = false, ["tls_upstream_allow_renegotiation"] boolean;
    }
    then [];

    /// The legacy access options, which become the route's first allow rule (ppl.md §3.1).
    struct Access() {
        allowed_users: Vec<(String, Span)> = Vec::new(), ["allowed_users"] spanned_list;
        allowed_domains: Vec<(String, Span)> = Vec::new(), ["allowed_domains"] spanned_list;
        /// Claim → values, in the order written; each value becomes one `claim/<name>` criterion.
        allowed_idp_claims: Vec<(String, Span, Vec<Value>)> = Vec::new(), ["allowed_idp_claims"] idp_claims;
        allow_public_unauthenticated_access: Option<Span> = None, ["allow_public_unauthenticated_access"] flag;
        allow_any_authenticated_user: Option<Span> = None, ["allow_any_authenticated_user"] flag;
        cors_allow_preflight: Option<Span> = None, ["cors_allow_preflight"] flag;
    }
    then [check_access_lists];

    /// One route.
    struct Route(
        index: usize,
        origin: Origin,
        span: Span,
        from: From,
        action: Action,
        envoy_cluster: BTreeMap<String, Value>,
    ) {
        /// Position in Pomerium's order: `policy:` routes, then `routes:`.
        index: usize = index, [] later;
        /// Where the route was written: the file, or `POLICY`/`ROUTES`.
        origin: Origin = origin, [] later;
        span: Span = span, [] later;
        /// The route's `id`, or the hash of [`crate::identity::route_id`].
        id: String = String::new(), ["id"] later;
        /// Set with `id`, by `route_id`.
        id_is_explicit: bool = false, [] later;
        name: Option<String> = None, ["name"] string;
        description: Option<String> = None, ["description"] string;
        logo_url: Option<String> = None, ["logo_url"] string;
        /// Read first, by `route_read::read`.
        from: From = from, ["from"] later;
        prefix: Option<String> = None, ["prefix"] url_path;
        path: Option<String> = None, ["path"] url_path;
        regex: Option<String> = None, ["regex"] regex;
        regex_priority_order: Option<i64> = None, ["regex_priority_order"] integer(i64::MIN, i64::MAX);
        /// `to`, `redirect` or `response`, read first, by `route_read::read`.
        action: Action = action, ["to", "redirect", "response"] later;
        /// Envoy's own `lb_policy` (`ROUND_ROBIN`, ...) also works (read by `lb_policy`).
        load_balancing_policy: Option<LoadBalancingPolicy> = None, ["load_balancing_policy"] choice(LB_POLICIES);
        outlier_detection: Option<OutlierDetection> = None, ["outlier_detection"] outlier;
        health_checks: Option<Value> = None, ["health_checks"] value;
        healthy_panic_threshold: Option<i64> = None, ["healthy_panic_threshold"] integer(0, 100);
        circuit_breaker_thresholds: Option<Value> = None, ["circuit_breaker_thresholds"] value;
        /// Envoy `Cluster` fields written on the route, as written.
        envoy_cluster: BTreeMap<String, Value> = envoy_cluster, [] later;
        /// `prefix_rewrite` or `regex_rewrite_*` as written; see [`Route::path_rewrite`] for the
        /// implicit one.
        rewrite: Option<PathRewrite> = None,
            ["prefix_rewrite", "regex_rewrite_pattern", "regex_rewrite_substitution"] path_rewrite;
        host_rewrite: Option<String> = None, ["host_rewrite"] string;
        host_rewrite_header: Option<String> = None, ["host_rewrite_header"] header_name;
        /// `host_path_regex_rewrite_pattern` and `_substitution`.
        host_path_regex_rewrite: Option<(String, String)> = None,
            ["host_path_regex_rewrite_pattern", "host_path_regex_rewrite_substitution"] host_path_regex_rewrite;
        preserve_host_header: bool = false, ["preserve_host_header"] boolean;
        /// Header → value template as written (`Bearer ${pomerium.id_token}`).
        set_request_headers: BTreeMap<String, String> = BTreeMap::new(), ["set_request_headers"] set_request_headers;
        remove_request_headers: Vec<String> = Vec::new(), ["remove_request_headers"] list;
        set_response_headers: Option<BTreeMap<String, String>> = None, ["set_response_headers"] set_response_headers;
        rewrite_response_headers: Vec<RewriteHeader> = Vec::new(),
            ["rewrite_response_headers"] rewrite_response_headers;
        allow_websockets: bool = false, ["allow_websockets"] boolean;
        allow_spdy: bool = false, ["allow_spdy"] boolean;
        allow_upgrades: Option<Vec<String>> = None, ["allow_upgrades"] list;
        tls: UpstreamTls = UpstreamTls::default(), [] nested;
        timeout: Option<Duration> = None, ["timeout"] duration;
        idle_timeout: Option<Duration> = None, ["idle_timeout"] duration;
        pass_identity_headers: Option<bool> = None, ["pass_identity_headers"] boolean;
        kubernetes_service_account_token: Option<Secret> = None,
            ["kubernetes_service_account_token", "kubernetes_service_account_token_file"] later;
        /// `kubernetes_service_account_token_file`, when the token came from it: Kubernetes rotates
        /// projected tokens, so the file is read again while serving. Set by `kubernetes_token`.
        kubernetes_service_account_token_file: Option<String> = None, [] later;
        enable_google_cloud_serverless_authentication: bool = false,
            ["enable_google_cloud_serverless_authentication"] boolean;
        idp_client_id: Option<String> = None, ["idp_client_id"] string;
        idp_client_secret: Option<Secret> = None, ["idp_client_secret"] secret;
        idp_access_token_allowed_audiences: Option<Vec<String>> = None, ["idp_access_token_allowed_audiences"] list;
        identity_providers: Vec<String> = Vec::new(), ["identity_providers"] list;
        bearer_token_format: Option<BearerTokenFormat> = None, ["bearer_token_format"] bearer_token_format;
        jwt_groups_filter: Option<Vec<String>> = None, ["jwt_groups_filter"] list;
        jwt_issuer_format: Option<JwtIssuerFormat> = None, ["jwt_issuer_format"] exact_choice(ISSUER_FORMATS);
        show_error_details: bool = false, ["show_error_details"] boolean;
        /// Hosts (a URL is reduced to its host).
        depends_on: Vec<String> = Vec::new(), ["depends_on"] depends_on;
        mcp: Option<Value> = None, ["mcp"] value;
        upstream_tunnel: Option<Value> = None, ["upstream_tunnel"] value;
        /// `sub_policies`: further policies, each its own query OR-ed with the route's (ppl.md §3.2).
        sub_policies: Vec<SubPolicy> = Vec::new(), ["sub_policies"] sub_policies;
        access: Access = Access::default(), [] nested;
        /// The embedded `policy:`, as written.
        embedded_policy: Option<ppl::ast::Policy> = None, ["policy"] later;
        /// The embedded policy's checked model, while the route is read: when the assembled
        /// policy is the embedded one alone, `load` takes it rather than checking it again.
        embedded_model: Option<ppl::model::Policy> = None, [] later;
        /// The assembled, checked policy (`load` assembles it).
        policy: RoutePolicy = RoutePolicy {
            ast: ppl::ast::Policy { rules: Vec::new(), span },
            model: ppl::model::Policy::empty(),
        }, [] later;
    }
    then [route_id, lb_policy, check_tunnel_upstream, kubernetes_token, embedded_policy];
}

/// A sub-policy (`sub_policies`; Pomerium Enterprise's and Zero's policies attached to a route):
/// its `source_ppl` is a query of its own whose result is OR-ed with the route's, and its
/// `explanation` and `remediation` are what the deny page shows for it. Its legacy lists join the
/// route's own allow rule, as in Pomerium.
#[derive(Debug, Clone, PartialEq)]
pub struct SubPolicy {
    pub id: String,
    pub name: String,
    pub explanation: String,
    pub remediation: String,
    /// `source_ppl`, parsed (spans are into its text); `None` for a sub-policy of legacy lists only.
    pub ast: Option<ppl::ast::Policy>,
    /// The same, checked.
    pub model: Option<ppl::model::Policy>,
    pub allowed_users: Vec<(String, Span)>,
    pub allowed_domains: Vec<(String, Span)>,
    pub allowed_idp_claims: Vec<(String, Span, Vec<Value>)>,
    pub span: Span,
}

impl Route {
    /// The checked policy to compile (`policy::Program::compile(route.policy())`).
    pub fn policy(&self) -> &ppl::model::Policy {
        &self.policy.model
    }

    pub fn upstreams(&self) -> &[WeightedUrl] {
        match &self.action {
            Action::Upstream(urls) => urls,
            _ => &[],
        }
    }

    pub fn is_tcp(&self) -> bool {
        self.from.scheme == FromScheme::Tcp
    }

    pub fn is_udp(&self) -> bool {
        self.from.scheme == FromScheme::Udp
    }

    pub fn is_ssh(&self) -> bool {
        self.from.scheme == FromScheme::Ssh
    }

    pub fn is_kubernetes(&self) -> bool {
        self.kubernetes_service_account_token.is_some()
    }

    pub fn is_mcp_server(&self) -> bool {
        self.mcp.as_ref().is_some_and(|mcp| mcp.get("server").is_some())
    }

    /// The path rewrite: `prefix_rewrite`, else the regex rewrite, else the path of the first `to`
    /// URL, which acts as a prefix rewrite (`getRewriteOptions`).
    pub fn path_rewrite(&self) -> Option<PathRewrite> {
        if let Some(rewrite) = &self.rewrite {
            return Some(rewrite.clone());
        }
        let first = self.upstreams().first()?;
        (!first.written_path.is_empty()).then(|| PathRewrite::Prefix(first.written_path.clone()))
    }

    /// The upgrade types allowed: the route's `allow_upgrades`, else the global one.
    pub fn upgrades(&self, options: &Options) -> Vec<String> {
        let list = self.allow_upgrades.as_ref().or(options.allow_upgrades.as_ref());
        list.map(|list| list.iter().filter(|u| !u.is_empty()).cloned().collect()).unwrap_or_default()
    }

    fn allows_upgrade(&self, options: &Options, name: &str) -> bool {
        self.upgrades(options).iter().any(|u| u.eq_ignore_ascii_case(name))
    }

    /// `allow_websockets`, or `websocket` among the allowed upgrades (`GetAllowWebsockets`).
    pub fn allows_websockets(&self, options: &Options) -> bool {
        self.allow_websockets || self.allows_upgrade(options, "websocket")
    }

    /// `allow_spdy`, or `spdy/3.1` among the allowed upgrades (`GetAllowSPDY`).
    pub fn allows_spdy(&self, options: &Options) -> bool {
        self.allow_spdy || self.allows_upgrade(options, "spdy/3.1")
    }

    /// Long-lived streams have no timeouts: websockets, TCP and UDP tunnels, Kubernetes (log
    /// tailing), MCP servers (`shouldDisableStreamIdleTimeout`).
    fn streams(&self, options: &Options) -> bool {
        self.allows_websockets(options)
            || self.is_tcp()
            || self.is_udp()
            || self.is_kubernetes()
            || self.is_mcp_server()
    }

    /// The route timeout: `timeout`, else 0 (none) for streaming routes, else
    /// `default_upstream_timeout` (`getRouteTimeout`).
    pub fn effective_timeout(&self, options: &Options) -> Duration {
        match self.timeout {
            Some(timeout) => timeout,
            None if self.streams(options) => Duration::ZERO,
            None => options.default_upstream_timeout,
        }
    }

    /// The idle timeout: `idle_timeout`, else 0 (none) for streaming routes, else `None` (Envoy's
    /// default) (`getRouteIdleTimeout`).
    pub fn effective_idle_timeout(&self, options: &Options) -> Option<Duration> {
        match self.idle_timeout {
            Some(timeout) => Some(timeout),
            None if self.streams(options) => Some(Duration::ZERO),
            None => None,
        }
    }

    /// Whether identity headers go upstream: the route's setting, else the global one, else false.
    pub fn passes_identity_headers(&self, options: &Options) -> bool {
        self.pass_identity_headers.or(options.pass_identity_headers).unwrap_or(false)
    }

    /// How the route reads `Authorization: Bearer`: its `bearer_token_format`, else the global
    /// one (`GetBearerTokenFormatForPolicy`); `None` is Pomerium's unknown, read as the default.
    pub fn effective_bearer_token_format(&self, options: &Options) -> Option<BearerTokenFormat> {
        self.bearer_token_format.or(options.bearer_token_format)
    }

    /// `idp_access_token_allowed_audiences`: the route's, else the global one.
    pub fn access_token_allowed_audiences<'a>(&'a self, options: &'a Options) -> Option<&'a [String]> {
        self.idp_access_token_allowed_audiences.as_deref().or(options.idp.access_token_allowed_audiences.as_deref())
    }

    /// The request headers removed before the request goes upstream (`getRequestHeadersToRemove`):
    /// the route's list; without identity headers, the assertion headers and every claim header;
    /// always the re-proxy headers. A header also in `set_request_headers` is set, not removed.
    pub fn request_headers_to_remove(&self, options: &Options) -> Vec<String> {
        let mut out = self.remove_request_headers.clone();
        if !self.passes_identity_headers(options) {
            out.push("x-pomerium-jwt-assertion".to_owned());
            out.push("x-pomerium-jwt-assertion-for".to_owned());
            out.extend(options.jwt_claims_headers.keys().cloned());
        }
        out.push("x-pomerium-reproxy-policy".to_owned());
        out.push("x-pomerium-reproxy-policy-hmac".to_owned());
        out.retain(|name| !self.set_request_headers.keys().any(|set| set.eq_ignore_ascii_case(name)));
        out
    }

    /// `X-Forwarded-Host` is appended unless the route removes it (`setHostRewriteOptions`).
    pub fn appends_x_forwarded_host(&self) -> bool {
        !self.remove_request_headers.iter().any(|h| h.eq_ignore_ascii_case("x-forwarded-host"))
    }

    /// Envoy's cluster name for the route: `<name or "route">-<id>` (`GetClusterID`).
    pub fn cluster_name(&self) -> String {
        format!("{}-{}", self.name.as_deref().unwrap_or("route"), self.id)
    }
}

/// Regexes are compiled with this size limit, so that a hostile pattern cannot take unbounded
/// memory (RE2, which Envoy uses, has a similar budget).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Whether `pattern` compiles; reports it when not.
pub(crate) fn check_regex(field: &Field, pattern: &str, sink: &mut Sink) -> bool {
    match regex::RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).nest_limit(100).build() {
        Ok(_) => true,
        Err(error) => {
            let reason =
                error.to_string().lines().last().unwrap_or_default().trim().trim_start_matches("error: ").to_owned();
            sink.error(&field.origin, BadRegex { option: field.name.clone(), reason, span: field.span().into() });
            false
        }
    }
}

/// Pomerium's order for routes that arrive unordered (from the databroker, or the ingress
/// controller: system.md §2.2, `config.SortPolicies`): `from` ascending, then `path` descending,
/// `regex_priority_order` descending with unset last, `regex` descending, `prefix` descending,
/// and `id` ascending. Descending strings put `/a/b/` before `/a/`, so that of two routes that
/// share a stem the narrower is tried first. Unset strings compare as empty, as in Go.
pub fn databroker_order(a: &Route, b: &Route) -> std::cmp::Ordering {
    let descending = |x: &Option<String>, y: &Option<String>| text(y).cmp(text(x));
    // Some before None, larger first.
    let priority = match (a.regex_priority_order, b.regex_priority_order) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    };
    a.from
        .text
        .cmp(&b.from.text)
        .then_with(|| descending(&a.path, &b.path))
        .then(priority)
        .then_with(|| descending(&a.regex, &b.regex))
        .then_with(|| descending(&a.prefix, &b.prefix))
        .then_with(|| a.id.cmp(&b.id))
}

fn text(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

/// Sorts routes into [`databroker_order`]; stable, so that equal routes keep their order.
pub fn sort_routes(routes: &mut [Route]) {
    routes.sort_by(databroker_order);
}

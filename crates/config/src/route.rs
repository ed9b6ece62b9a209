//! Routes (system.md §1.4), typed, with the accessors the proxy needs: the effective timeouts,
//! rewrites, upgrades and identity headers, and the route's checked policy.

use crate::diagnostic::{BadRegex, Origin};
use crate::material::{Certificates, CertifiedKey};
use crate::options::{BearerTokenFormat, JwtIssuerFormat, Options};
use crate::read::{Field, Sink};
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

/// TLS towards the upstream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpstreamTls {
    pub skip_verify: bool,
    pub server_name: Option<String>,
    pub upstream_server_name: Option<String>,
    /// An extra downstream host the route answers to.
    pub downstream_server_name: Option<String>,
    pub custom_ca: Option<Certificates>,
    pub client_certificate: Option<CertifiedKey>,
    /// Deprecated in favour of `downstream_mtls`; still makes the default client-certificate rule apply.
    pub downstream_client_ca: Option<Certificates>,
    pub allow_renegotiation: bool,
}

impl UpstreamTls {
    /// The name for SNI and verification: `tls_upstream_server_name`, else `tls_server_name`.
    pub fn sni(&self) -> Option<&str> {
        self.upstream_server_name.as_deref().or(self.server_name.as_deref())
    }
}

/// The legacy access options, which become the route's first allow rule (ppl.md §3.1).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Access {
    pub allowed_users: Vec<(String, Span)>,
    pub allowed_domains: Vec<(String, Span)>,
    /// Claim → values, in the order written; each value becomes one `claim/<name>` criterion.
    pub allowed_idp_claims: Vec<(String, Span, Vec<Value>)>,
    pub allow_public_unauthenticated_access: Option<Span>,
    pub allow_any_authenticated_user: Option<Span>,
    pub cors_allow_preflight: Option<Span>,
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

/// One route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Position in Pomerium's order: `policy:` routes, then `routes:`.
    pub index: usize,
    /// Where the route was written: the file, or `POLICY`/`ROUTES`.
    pub origin: Origin,
    pub span: Span,
    /// The route's `id`, or the hash of [`crate::identity::route_id`].
    pub id: String,
    pub id_is_explicit: bool,
    pub name: Option<String>,
    pub description: Option<String>,
    pub logo_url: Option<String>,
    pub from: From,
    pub prefix: Option<String>,
    pub path: Option<String>,
    pub regex: Option<String>,
    pub regex_priority_order: Option<i64>,
    pub action: Action,
    pub load_balancing_policy: Option<LoadBalancingPolicy>,
    pub outlier_detection: Option<OutlierDetection>,
    pub health_checks: Option<Value>,
    pub healthy_panic_threshold: Option<i64>,
    pub circuit_breaker_thresholds: Option<Value>,
    /// Envoy `Cluster` fields written on the route, as written.
    pub envoy_cluster: BTreeMap<String, Value>,
    /// `prefix_rewrite` or `regex_rewrite_*` as written; see [`Route::path_rewrite`] for the
    /// implicit one.
    pub rewrite: Option<PathRewrite>,
    pub host_rewrite: Option<String>,
    pub host_rewrite_header: Option<String>,
    /// `host_path_regex_rewrite_pattern` and `_substitution`.
    pub host_path_regex_rewrite: Option<(String, String)>,
    pub preserve_host_header: bool,
    /// Header → value template as written (`Bearer ${pomerium.id_token}`).
    pub set_request_headers: BTreeMap<String, String>,
    pub remove_request_headers: Vec<String>,
    pub set_response_headers: Option<BTreeMap<String, String>>,
    pub rewrite_response_headers: Vec<RewriteHeader>,
    pub allow_websockets: bool,
    pub allow_spdy: bool,
    pub allow_upgrades: Option<Vec<String>>,
    pub tls: UpstreamTls,
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub pass_identity_headers: Option<bool>,
    pub kubernetes_service_account_token: Option<Secret>,
    /// `kubernetes_service_account_token_file`, when the token came from it: Kubernetes rotates
    /// projected tokens, so the file is read again while serving.
    pub kubernetes_service_account_token_file: Option<String>,
    pub enable_google_cloud_serverless_authentication: bool,
    pub idp_client_id: Option<String>,
    pub idp_client_secret: Option<Secret>,
    pub idp_access_token_allowed_audiences: Option<Vec<String>>,
    pub identity_providers: Vec<String>,
    pub bearer_token_format: Option<BearerTokenFormat>,
    pub jwt_groups_filter: Option<Vec<String>>,
    pub jwt_issuer_format: Option<JwtIssuerFormat>,
    pub show_error_details: bool,
    /// Hosts (a URL is reduced to its host).
    pub depends_on: Vec<String>,
    pub mcp: Option<Value>,
    pub upstream_tunnel: Option<Value>,
    pub sub_policies: Option<Value>,
    pub access: Access,
    /// The embedded `policy:`, as written.
    pub embedded_policy: Option<ppl::ast::Policy>,
    /// The assembled, checked policy.
    pub policy: RoutePolicy,
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

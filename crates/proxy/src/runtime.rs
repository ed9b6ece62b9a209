//! What the request pipeline runs on: a configuration turned, once, into everything a request
//! needs ready-made: the route table, each route's compiled policy, upstream pools and balancers,
//! parsed header settings and rewrites.
//!
//! Invariant: a [`Runtime`] is immutable. A new configuration builds a new one, which replaces
//! the old atomically; requests in flight finish on the one they started with.

use crate::balance::{self, Balancer, BalancerOptions};
use crate::headers::{ForwardingOptions, ResponseHeaderRewrite};
use crate::normalize::{self, NormalizeOptions};
use crate::rewrite::{HostRewrite, PathRewrite, RegexRewrite, RewriteError};
use crate::templates::HeaderTemplate;
use crate::tls::TlsError;
use crate::upstream::{RequestTimeouts, UpstreamClient, UpstreamClients, UpstreamTls};
use bytes::Bytes;
use config::options::BearerTokenFormat;
use config::route::{Action, FromScheme, LoadBalancingPolicy};
use config::{Config, Options, Route};
use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue, StatusCode};
use policy::program::Program;
use policy::records::MemoryRecords;
use routing::{PathRule, RouteTable};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;
use url::Url;

/// Records the policy reads (sessions, users, ...): the databroker's synced cache writes them,
/// every request reads them under a read lock held only while its policy is evaluated.
#[derive(Clone, Default)]
pub struct SharedRecords(pub Arc<RwLock<MemoryRecords>>);

impl SharedRecords {
    /// The records as they are now; hold the guard only for one evaluation (no await under it).
    pub fn read(&self) -> RwLockReadGuard<'_, MemoryRecords> {
        // The cache replaces whole records under the write lock: a poisoned lock still holds
        // consistent maps.
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for SharedRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedRecords")
    }
}

/// Everything a request needs, built from one configuration.
#[derive(Debug)]
pub struct Runtime {
    pub(crate) table: RouteTable<Arc<RouteRuntime>>,
    /// Every route by id (an authorize service is told the route a proxy matched by its id).
    pub(crate) by_id: std::collections::HashMap<String, Arc<RouteRuntime>>,
    pub(crate) global: Global,
}

/// Settings that apply to every route.
#[derive(Debug)]
pub(crate) struct Global {
    /// Whether the main listener speaks TLS (URLs given to browsers are `https`).
    pub tls: bool,
    pub authenticate_url: Url,
    /// Signs the URLs sent through the browser (sign-in redirects).
    pub shared_key: Vec<u8>,
    pub normalize: NormalizeOptions,
    pub forwarding: ForwardingOptions,
    pub cookie_name: String,
    pub records: SharedRecords,
    pub connect_timeout: Duration,
    /// Response headers for answers no route produced (404s, control-plane paths).
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Keys, cookies and URLs of authentication.
    pub authn: crate::authn::AuthnSettings,
    /// Signed assertions and sign-in: kept across reloads.
    pub authn_state: Arc<crate::authn::Authn>,
    /// This configuration's sign-in: the endpoints, bearer tokens, the databroker's sessions.
    pub sign_in: Arc<dyn crate::authn::SignIn>,
    /// `authenticate_callback_path` (`/oauth2/callback`).
    pub callback_path: String,
    /// The authorize service that decides requests, when it runs in another process.
    pub remote_authorize: Option<Arc<dyn crate::authorize::RemoteAuthorize>>,
    /// `downstream_mtls.ca`, for the client certificate chains `Check` calls carry.
    pub client_chains: Option<crate::tls::ChainVerifier>,
    /// `timeout_read`: the whole request, body included, must arrive within it.
    pub request_timeout: Option<Duration>,
    /// `timeout_write`: the whole response must be sent within it of the request's start.
    pub response_timeout: Option<Duration>,
    /// `access_log_fields`: what the access log line carries.
    pub access_log: crate::log_fields::LogFields,
    /// `authorize_log_fields`: what the authorize log line carries.
    pub authorize_log: crate::log_fields::LogFields,
    /// The `otel_*` options' tracer; `None` (the default) traces nothing.
    pub tracing: Option<crate::trace::Tracing>,
}

/// One route, ready to serve.
#[derive(Debug)]
pub(crate) struct RouteRuntime {
    /// The route's `id`, or its derived one: what logs name it by.
    pub id: String,
    pub program: Program,
    pub action: RouteAction,
    pub set_request_headers: Vec<(HeaderName, HeaderTemplate)>,
    /// Removed after the upstream headers are set (`getRequestHeadersToRemove`: the route's
    /// `remove_request_headers`; without identity headers, the assertion and claim headers;
    /// never a header `set_request_headers` names).
    pub remove_request_headers: Vec<HeaderName>,
    /// On a route that passes identity, the identity headers: removed from what the client sent
    /// before identity sets them, so that a forged one never goes upstream in their place.
    pub forged_identity_headers: Vec<HeaderName>,
    /// Shared by every route without its own `set_response_headers`.
    pub response_headers: Arc<[(HeaderName, HeaderValue)]>,
    pub rewrite_response_headers: Vec<ResponseHeaderRewrite>,
    /// Upgrade protocols the route lets through (`websocket`, `spdy/3.1`, ...).
    pub upgrades: Vec<String>,
    pub timeouts: RequestTimeouts,
    pub append_forwarded_host: bool,
    /// With `show_error_details`: what explains a denial on the deny page.
    pub explainer: Option<Box<crate::deny::Explainer>>,
    pub depends_on: Vec<String>,
    pub idp_id: Option<String>,
    /// How `Authorization: Bearer` is read (`bearer_token_format`, the route's or the global one).
    pub bearer_token_format: Option<BearerTokenFormat>,
    /// `idp_access_token_allowed_audiences`, the route's or the global one.
    pub access_token_audiences: Option<Vec<String>>,
    /// `pass_identity_headers`: the assertion and claim headers go upstream.
    pub passes_identity: bool,
    /// `kubernetes_service_account_token`: on such a route the upstream is a Kubernetes API
    /// server, which gets the token and the user to impersonate (`fillKubernetesHeaders`).
    pub kubernetes_authorization: Option<KubernetesToken>,
    /// The route's header templates read the identity (`${pomerium.jwt}`, tokens).
    pub templates_need_identity: bool,
    /// They read the session's tokens (`${pomerium.id_token}`, `${pomerium.access_token}`).
    pub templates_read_tokens: bool,
    /// The route's own client CA set (`tls_downstream_client_ca`), which connections for it are
    /// verified with; `None`: the listener's (`downstream_mtls.ca`).
    pub client_ca: Option<crate::tls::ClientCaId>,
}

/// What a route does with a request it allows.
#[derive(Debug)]
pub(crate) enum RouteAction {
    Forward(Box<Forward>),
    /// A `tcp+https` route: a CONNECT tunnel to this `host:port`.
    Connect {
        target: String,
    },
    /// Envoy's redirect action. `matched` is what the route matched on (its `path` or `prefix`,
    /// else `/`): the part of the path a redirect's `prefix_rewrite` replaces.
    Redirect {
        redirect: config::route::Redirect,
        matched: String,
    },
    Respond {
        status: StatusCode,
        body: Bytes,
    },
}

/// Forwarding to `to` upstreams.
#[derive(Debug)]
pub(crate) struct Forward {
    pub endpoints: Vec<Endpoint>,
    pub balancer: Balancer,
    pub client: UpstreamClient,
    pub path_rewrite: PathRewrite,
    pub host_rewrite: HostRewrite,
    /// An `h2c://` upstream: cleartext HTTP/2 with prior knowledge.
    pub h2c: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub scheme: Scheme,
    pub authority: Authority,
    /// `authority` as the Host header (`auto_host_rewrite`), made once.
    pub host: http::HeaderValue,
}

/// Why a configuration could not become a runtime. The configuration crate has already checked
/// what it can; these are the few things only building reveals.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("route `{route}`: {reason}")]
    Route { route: String, reason: String },
    #[error("route `{route}`: {source}")]
    Table { route: String, source: routing::RouteError },
    #[error("route `{route}`: upstream tls: {source}")]
    UpstreamTls { route: String, source: TlsError },
    #[error("route `{route}`: {source}")]
    Rewrite { route: String, source: RewriteError },
    #[error("{0}")]
    Authn(#[from] crate::authn::SettingsError),
    #[error("downstream_mtls: {0}")]
    ClientCa(TlsError),
}

/// What the runtime is built with besides the configuration.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The shared secret to sign URLs with, when the configuration has none (all-in-one mode
    /// makes a random one per process).
    pub fallback_shared_key: Vec<u8>,
    /// The cookie secret when the configuration has none (all-in-one: random per process).
    pub fallback_cookie_key: Vec<u8>,
    pub records: SharedRecords,
    /// Authentication's state that outlives a configuration.
    pub authn: Arc<crate::authn::Authn>,
    /// The authorize service to ask, when it runs in another process (`authorize_service_url`);
    /// `None` decides in process.
    pub remote_authorize: Option<Arc<dyn crate::authorize::RemoteAuthorize>>,
    /// Upstream connection pools, kept across reloads so that connections survive them.
    pub clients: Arc<UpstreamClients>,
}

impl Runtime {
    /// Builds the runtime for `config`.
    pub fn build(config: &Config, environment: &Environment) -> Result<Runtime, BuildError> {
        let options = &config.options;
        let routing_options = routing::Options {
            match_any_incoming_port: options.runtime_flag("match_any_incoming_port"),
            default_port: if options.insecure_server { 80 } else { 443 },
        };
        let mut builder = routing::Builder::new(routing_options);
        let mut by_id = std::collections::HashMap::with_capacity(config.routes.len());
        let mut shared = Shared::new(options);
        for route in &config.routes {
            let runtime = Arc::new(route_runtime(route, options, environment, &mut shared)?);
            for (host, rule) in matchers(route) {
                builder
                    .add(&host, rule, Arc::clone(&runtime))
                    .map_err(|source| BuildError::Table { route: describe(route), source })?;
            }
            // Ids are unique (the config checks it); the first route keeps an id regardless.
            by_id.entry(runtime.id.clone()).or_insert(runtime);
        }
        Ok(Runtime { table: builder.build(), by_id, global: global(config, environment)? })
    }

    /// Traces requests with `tracing` (made once per `otel_*` settings by the binary).
    pub fn with_tracing(mut self, tracing: Option<crate::trace::Tracing>) -> Runtime {
        self.global.tracing = tracing;
        self
    }

    /// `downstream_mtls.ca`'s verifier, for the client certificate chains `Check` calls carry
    /// (`None`: no CA, no chain is valid).
    pub fn client_chains(&self) -> Option<&crate::tls::ChainVerifier> {
        self.global.client_chains.as_ref()
    }

    /// The route with this id.
    pub(crate) fn route_by_id(&self, id: &str) -> Option<Arc<RouteRuntime>> {
        self.by_id.get(id).cloned()
    }

    /// This configuration's sign-in (the `authn` crate's, which reads its identity provider
    /// settings from it).
    pub fn sign_in(&self) -> &dyn crate::authn::SignIn {
        &*self.global.sign_in
    }

    /// Whether this process serves the authenticate service.
    pub fn runs_authenticate(&self) -> bool {
        self.global.authn.serves_authenticate
    }

    /// How many routes the table holds (a route with several hosts counts once per host).
    pub fn route_count(&self) -> usize {
        self.table.len()
    }
}

fn global(config: &Config, environment: &Environment) -> Result<Global, BuildError> {
    let options = &config.options;
    let shared_key = match &options.shared_secret {
        Some(secret) => secret.expose().to_vec(),
        None => environment.fallback_shared_key.clone(),
    };
    let cookie_key = match &options.cookie.secret {
        Some(secret) => secret.expose().to_vec(),
        None => environment.fallback_cookie_key.clone(),
    };
    let authn = crate::authn::AuthnSettings::build(options, &config.routes, &shared_key, &cookie_key)?;
    let sign_in = environment.authn.configure(options, &authn);
    Ok(Global {
        authn,
        authn_state: Arc::clone(&environment.authn),
        sign_in,
        callback_path: options.authenticate_callback_path.clone(),
        remote_authorize: environment.remote_authorize.clone(),
        client_chains: options
            .downstream_mtls
            .ca
            .as_ref()
            .map(|ca| {
                let mode = crate::tls::ClientCertMode::Report;
                crate::tls::DownstreamClientAuth::from_config(&options.downstream_mtls, ca.ders(), mode)
                    .and_then(|auth| crate::tls::ChainVerifier::new(&auth))
            })
            .transpose()
            .map_err(BuildError::ClientCa)?,
        tls: !options.insecure_server,
        authenticate_url: options
            .authenticate_url()
            .unwrap_or_else(|| Url::parse("https://authenticate.pomerium.app").unwrap_or_else(|_| localhost())),
        shared_key,
        normalize: normalize_options(options),
        forwarding: ForwardingOptions {
            xff_num_trusted_hops: options.xff_num_trusted_hops,
            skip_xff_append: options.skip_xff_append,
        },
        cookie_name: options.cookie.name.clone(),
        records: environment.records.clone(),
        connect_timeout: Duration::from_secs(10),
        response_headers: header_pairs(&options.response_headers(None)),
        request_timeout: (!options.timeout_read.is_zero()).then_some(options.timeout_read),
        response_timeout: (!options.timeout_write.is_zero()).then_some(options.timeout_write),
        access_log: crate::log_fields::LogFields::new(
            options.access_log_fields.as_deref(),
            config::log_fields::ACCESS_FIELDS,
            config::log_fields::DEFAULT_ACCESS_FIELDS,
        ),
        authorize_log: crate::log_fields::LogFields::new(
            options.authorize_log_fields.as_deref(),
            config::log_fields::AUTHORIZE_FIELDS,
            config::log_fields::DEFAULT_AUTHORIZE_FIELDS,
        ),
        tracing: None,
    })
}

#[expect(clippy::unwrap_used, reason = "a constant URL that parses")]
fn localhost() -> Url {
    Url::parse("https://localhost/").unwrap()
}

fn normalize_options(options: &Options) -> NormalizeOptions {
    use config::options::{EscapedSlashesAction as E, UnderscoresAction as U};
    NormalizeOptions {
        normalize_path: options.normalize_path,
        merge_slashes: options.merge_slashes,
        escaped_slashes: match options.path_with_escaped_slashes_action {
            E::KeepUnchanged => normalize::EscapedSlashesAction::KeepUnchanged,
            E::UnescapeAndRedirect => normalize::EscapedSlashesAction::UnescapeAndRedirect,
            E::UnescapeAndForward => normalize::EscapedSlashesAction::UnescapeAndForward,
            // Pomerium's default is to reject; Envoy's "implementation specific" default keeps.
            E::ImplementationSpecificDefault => normalize::EscapedSlashesAction::KeepUnchanged,
            E::RejectRequest => normalize::EscapedSlashesAction::Reject,
        },
        headers_with_underscores: match options.headers_with_underscores_action {
            U::Allow => normalize::UnderscoresAction::Allow,
            U::RejectRequest => normalize::UnderscoresAction::Reject,
            U::DropHeader => normalize::UnderscoresAction::Drop,
        },
        max_path_length: normalize::DEFAULT_MAX_PATH_LENGTH,
    }
}

/// The hosts and path rule a route is matched by (system.md §2.1): `tcp+https` routes by CONNECT
/// to `host:port` (or to each `host:port` of the path form), others by regex, else exact path,
/// else prefix, else `/`.
fn matchers(route: &Route) -> Vec<(String, PathRule)> {
    if route.is_tcp() || route.is_udp() {
        let hosts: Vec<String> = route
            .from
            .url
            .path_segments()
            .map(|segments| segments.filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let hosts = if hosts.is_empty() { vec![host_with_port(route)] } else { hosts };
        return hosts.into_iter().map(|host| (host, PathRule::Connect)).collect();
    }
    let rule = if let Some(regex) = &route.regex {
        PathRule::Regex(regex.clone())
    } else if let Some(path) = &route.path {
        PathRule::Exact(path.clone())
    } else if let Some(prefix) = &route.prefix {
        PathRule::Prefix(prefix.clone())
    } else {
        PathRule::Prefix("/".to_owned())
    };
    vec![(host_with_port(route), rule)]
}

fn host_with_port(route: &Route) -> String {
    match route.from.port {
        Some(port) => format!("{}:{port}", route.from.host),
        None => route.from.host.clone(),
    }
}

fn describe(route: &Route) -> String {
    route.name.clone().unwrap_or_else(|| route.from.text.clone())
}

/// What routes share, made once per build rather than once per route: the response headers of
/// routes without their own, the headers removed from routes that set and remove none of their
/// own, and the upstream client of routes with the default TLS settings.
struct Shared {
    response_headers: Arc<[(HeaderName, HeaderValue)]>,
    /// Of a route that passes identity headers, and of one that does not.
    removed_passing: Option<Vec<HeaderName>>,
    removed_plain: Option<Vec<HeaderName>>,
    forged_identity_headers: Option<Vec<HeaderName>>,
    default_client: Option<UpstreamClient>,
}

impl Shared {
    fn new(options: &Options) -> Shared {
        Shared {
            response_headers: header_pairs(&options.response_headers(None)).into(),
            removed_passing: None,
            removed_plain: None,
            forged_identity_headers: None,
            default_client: None,
        }
    }

    fn response_headers(&self, route: &Route, options: &Options) -> Arc<[(HeaderName, HeaderValue)]> {
        if route.set_response_headers.is_none() {
            return Arc::clone(&self.response_headers);
        }
        header_pairs(&options.response_headers(Some(route))).into()
    }

    /// [`Route::request_headers_to_remove`], as header names.
    fn removed(&mut self, route: &Route, options: &Options) -> Vec<HeaderName> {
        let compute = || header_names(&route.request_headers_to_remove(options));
        if !(route.remove_request_headers.is_empty() && route.set_request_headers.is_empty()) {
            return compute();
        }
        // Without lists of its own, what a route removes depends on whether it passes identity.
        let slot =
            if route.passes_identity_headers(options) { &mut self.removed_passing } else { &mut self.removed_plain };
        slot.get_or_insert_with(compute).clone()
    }

    fn forged_identity_headers(&mut self, route: &Route, options: &Options) -> Vec<HeaderName> {
        if !route.passes_identity_headers(options) {
            return Vec::new();
        }
        self.forged_identity_headers.get_or_insert_with(|| header_names(&identity_headers(route, options))).clone()
    }

    /// The upstream client for `tls`; the one of the default settings is asked for once.
    fn client(&mut self, tls: &UpstreamTls, clients: &UpstreamClients) -> Result<UpstreamClient, TlsError> {
        let default =
            !tls.skip_verify && tls.server_name.is_none() && tls.custom_ca.is_none() && tls.client_auth.is_none();
        if !default {
            return clients.client(tls);
        }
        if let Some(client) = &self.default_client {
            return Ok(client.clone());
        }
        let client = clients.client(tls)?;
        self.default_client = Some(client.clone());
        Ok(client)
    }
}

fn header_names(names: &[String]) -> Vec<HeaderName> {
    names.iter().filter_map(|name| HeaderName::try_from(name.as_str()).ok()).collect()
}

fn route_runtime(
    route: &Route,
    options: &Options,
    environment: &Environment,
    shared: &mut Shared,
) -> Result<RouteRuntime, BuildError> {
    let timeout = route.effective_timeout(options);
    let idle = route.effective_idle_timeout(options);
    let set_request_headers: Vec<(HeaderName, HeaderTemplate)> = route
        .set_request_headers
        .iter()
        .filter_map(|(name, value)| Some((HeaderName::try_from(name.as_str()).ok()?, HeaderTemplate::parse(value))))
        .collect();
    Ok(RouteRuntime {
        client_ca: route.tls.downstream_client_ca.as_ref().map(|ca| crate::tls::client_ca_id(ca.ders())),
        kubernetes_authorization: kubernetes_authorization(route)?,
        id: route.name.clone().unwrap_or_else(|| route.id.clone()),
        program: Program::compile(route.policy()),
        action: action(route, environment, shared)?,
        templates_need_identity: set_request_headers.iter().any(|(_, t)| crate::upstream_headers::reads_identity(t)),
        templates_read_tokens: set_request_headers.iter().any(|(_, t)| crate::upstream_headers::reads_tokens(t)),
        set_request_headers,
        remove_request_headers: shared.removed(route, options),
        forged_identity_headers: shared.forged_identity_headers(route, options),
        response_headers: shared.response_headers(route, options),
        rewrite_response_headers: route
            .rewrite_response_headers
            .iter()
            .filter_map(|r| {
                Some(ResponseHeaderRewrite {
                    header: HeaderName::try_from(r.header.as_str()).ok()?,
                    prefix: r.prefix.clone(),
                    value: r.value.clone(),
                })
            })
            .collect(),
        upgrades: upgrades(route, options),
        timeouts: RequestTimeouts {
            total: (!timeout.is_zero()).then_some(timeout),
            idle: idle.filter(|d| !d.is_zero()),
        },
        append_forwarded_host: route.appends_x_forwarded_host(),
        explainer: route.show_error_details.then(|| Box::new(crate::deny::Explainer::new(route))),
        depends_on: route.depends_on.clone(),
        idp_id: route.idp_client_id.clone(),
        bearer_token_format: route.effective_bearer_token_format(options),
        access_token_audiences: route.access_token_allowed_audiences(options).map(<[String]>::to_vec),
        passes_identity: route.passes_identity_headers(options),
    })
}

/// The service account token of a route to a Kubernetes API server, as `Authorization: Bearer`.
/// A token from `kubernetes_service_account_token_file` is read again every
/// [`TOKEN_FILE_REREAD`] (Pomerium reads the file on every request): Kubernetes rotates the
/// tokens it projects into pods.
#[derive(Debug)]
pub(crate) struct KubernetesToken {
    /// When it was last read, and the header value.
    current: std::sync::Mutex<(std::time::Instant, HeaderValue)>,
    file: Option<std::path::PathBuf>,
}

/// How often a token file is read again.
const TOKEN_FILE_REREAD: Duration = Duration::from_secs(5);

impl KubernetesToken {
    /// `Authorization: Bearer <token>`, the file read again when due. A file that cannot be read
    /// (or holds no usable token) leaves the last good token in use, with a warning.
    pub(crate) fn authorization(&self) -> HeaderValue {
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(path) = &self.file
            && current.0.elapsed() >= TOKEN_FILE_REREAD
        {
            current.0 = std::time::Instant::now();
            match read_token_file(path).and_then(|bytes| bearer_value(&bytes)) {
                Ok(value) => current.1 = value,
                Err(error) => tracing::warn!(
                    %error,
                    path = %path.display(),
                    "the Kubernetes service account token file could not be read again; the last token stays in use"
                ),
            }
        }
        current.1.clone()
    }
}

/// A token file's bytes; a file over 64 KiB is not a token.
fn read_token_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(64 * 1024 + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() > 64 * 1024 {
        return Err("the file is larger than 64 KiB".to_owned());
    }
    Ok(bytes)
}

/// `Bearer <token>` (white space around the token trimmed), a sensitive header value: never
/// logged.
fn bearer_value(token: &[u8]) -> Result<HeaderValue, String> {
    let token = std::str::from_utf8(token).map_err(|_| "the token is not text".to_owned())?.trim();
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token does not fit in a header".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

fn kubernetes_authorization(route: &Route) -> Result<Option<KubernetesToken>, BuildError> {
    let Some(token) = &route.kubernetes_service_account_token else { return Ok(None) };
    let value = bearer_value(token.expose()).map_err(|reason| BuildError::Route {
        route: describe(route),
        reason: format!("kubernetes_service_account_token: {reason}"),
    })?;
    Ok(Some(KubernetesToken {
        current: std::sync::Mutex::new((std::time::Instant::now(), value)),
        file: route.kubernetes_service_account_token_file.as_ref().map(std::path::PathBuf::from),
    }))
}

/// The identity headers of a route that passes them (`pass_identity_headers`). Pomerium
/// overwrites them with the user's; before they are set, the client's are removed, so that a
/// client's own value never reaches the upstream in their place. (Routes that do not pass them
/// remove them, in [`Route::request_headers_to_remove`].)
fn identity_headers(route: &Route, options: &Options) -> Vec<String> {
    if !route.passes_identity_headers(options) {
        return Vec::new();
    }
    let mut names = vec!["x-pomerium-jwt-assertion".to_owned()];
    names.extend(options.jwt_claims_headers.keys().cloned());
    names
}

fn upgrades(route: &Route, options: &Options) -> Vec<String> {
    let mut upgrades = route.upgrades(options);
    if route.allows_websockets(options) {
        upgrades.push("websocket".to_owned());
    }
    if route.allows_spdy(options) {
        upgrades.push("spdy/3.1".to_owned());
    }
    upgrades
}

fn header_pairs(headers: &std::collections::BTreeMap<String, String>) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            Some((HeaderName::try_from(name.as_str()).ok()?, HeaderValue::try_from(value.as_str()).ok()?))
        })
        .collect()
}

fn action(route: &Route, environment: &Environment, shared: &mut Shared) -> Result<RouteAction, BuildError> {
    match &route.action {
        Action::Redirect(redirect) => {
            Ok(RouteAction::Redirect { redirect: redirect.clone(), matched: matched_path(route).to_owned() })
        }
        Action::Response(response) => Ok(RouteAction::Respond {
            status: StatusCode::from_u16(response.status).map_err(|_| BuildError::Route {
                route: describe(route),
                reason: format!("{} is not an http status", response.status),
            })?,
            body: Bytes::from(response.body.clone()),
        }),
        Action::Upstream(urls) if route.is_tcp() || route.from.scheme == FromScheme::Udp => {
            let target = urls.first().and_then(|u| Some(format!("{}:{}", u.url.host_str()?, u.url.port()?)));
            let target = target.ok_or_else(|| BuildError::Route {
                route: describe(route),
                reason: "a tcp route needs `to: tcp://host:port`".to_owned(),
            })?;
            Ok(RouteAction::Connect { target })
        }
        Action::Upstream(urls) => forward(route, urls, environment, shared).map(|f| RouteAction::Forward(Box::new(f))),
    }
}

fn forward(
    route: &Route,
    urls: &[config::route::WeightedUrl],
    environment: &Environment,
    shared: &mut Shared,
) -> Result<Forward, BuildError> {
    let invalid = |reason: String| BuildError::Route { route: describe(route), reason };
    let endpoints = urls
        .iter()
        .map(|weighted| {
            endpoint(&weighted.url).ok_or_else(|| invalid(format!("`{}` has no usable host", weighted.url)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let weights: Vec<u32> = urls.iter().map(|u| u.weight.unwrap_or(1)).collect();
    let balancer = Balancer::new(&weights, balancer_options(route));
    let tls = upstream_tls(route)?;
    let client = shared
        .client(&tls, &environment.clients)
        .map_err(|source| BuildError::UpstreamTls { route: describe(route), source })?;
    // As Pomerium's cluster protocol: one `h2c` upstream makes the route's requests HTTP/2.
    let h2c = urls.iter().any(|weighted| weighted.url.scheme() == "h2c");
    Ok(Forward {
        endpoints,
        balancer,
        client,
        path_rewrite: path_rewrite(route)?,
        host_rewrite: host_rewrite(route)?,
        h2c,
    })
}

fn endpoint(url: &Url) -> Option<Endpoint> {
    let scheme = match url.scheme() {
        "https" | "h2" => Scheme::HTTPS,
        _ => Scheme::HTTP,
    };
    let host = url.host_str()?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let authority = Authority::try_from(authority.as_str()).ok()?;
    let host = http::HeaderValue::from_str(authority.as_str()).ok()?;
    Some(Endpoint { scheme, authority, host })
}

fn balancer_options(route: &Route) -> BalancerOptions {
    let policy = match route.load_balancing_policy {
        Some(LoadBalancingPolicy::LeastRequest) => balance::Policy::LeastRequest,
        Some(LoadBalancingPolicy::Random) => balance::Policy::Random,
        // Ring hash and maglev pick by a routing key; until that lands, round robin.
        _ => balance::Policy::RoundRobin,
    };
    let outlier_detection = route.outlier_detection.as_ref().map(|o| {
        let defaults = balance::OutlierDetection::default();
        balance::OutlierDetection {
            consecutive_5xx: o.consecutive_5xx.unwrap_or(defaults.consecutive_5xx),
            consecutive_gateway_failure: o.consecutive_gateway_failure.unwrap_or(defaults.consecutive_gateway_failure),
            interval: o.interval.unwrap_or(defaults.interval),
            base_ejection_time: o.base_ejection_time.unwrap_or(defaults.base_ejection_time),
            max_ejection_time: o.max_ejection_time.unwrap_or(defaults.max_ejection_time),
            max_ejection_percent: o.max_ejection_percent.unwrap_or(defaults.max_ejection_percent),
        }
    });
    let healthy_panic_threshold = route
        .healthy_panic_threshold
        .and_then(|t| u32::try_from(t).ok())
        .unwrap_or(BalancerOptions::default().healthy_panic_threshold);
    BalancerOptions { policy, outlier_detection, healthy_panic_threshold }
}

fn upstream_tls(route: &Route) -> Result<UpstreamTls, BuildError> {
    let client_auth = match &route.tls.client_certificate {
        Some(pair) => {
            let key = pair.key.der().ok_or_else(|| BuildError::Route {
                route: describe(route),
                reason: "`tls_client_key` is not a private key".to_owned(),
            })?;
            Some((pair.certificates.ders().to_vec(), key))
        }
        None => None,
    };
    Ok(UpstreamTls {
        skip_verify: route.tls.skip_verify,
        server_name: route.tls.sni().map(str::to_owned),
        custom_ca: route.tls.custom_ca.as_ref().map(|ca| ca.ders().to_vec()),
        client_auth,
    })
}

/// What a route matched on, for prefix rewrites: its exact `path`, else its `prefix`, else `/`.
fn matched_path(route: &Route) -> &str {
    route.path.as_deref().or(route.prefix.as_deref()).unwrap_or("/")
}

fn path_rewrite(route: &Route) -> Result<PathRewrite, BuildError> {
    let matched = matched_path(route);
    Ok(match route.path_rewrite() {
        None => PathRewrite::None,
        Some(config::route::PathRewrite::Prefix(replacement)) => {
            PathRewrite::for_route(matched, Some(&replacement), None, "")
        }
        Some(config::route::PathRewrite::Regex { pattern, substitution }) => {
            let regex = RegexRewrite::new(&pattern, &substitution)
                .map_err(|source| BuildError::Rewrite { route: describe(route), source })?;
            PathRewrite::Regex(regex)
        }
    })
}

fn host_rewrite(route: &Route) -> Result<HostRewrite, BuildError> {
    Ok(if route.preserve_host_header {
        HostRewrite::Preserve
    } else if let Some(host) = &route.host_rewrite {
        HostRewrite::Literal(host.clone())
    } else if let Some(header) = &route.host_rewrite_header {
        match HeaderName::try_from(header.as_str()) {
            Ok(name) => HostRewrite::FromHeader(name),
            Err(_) => {
                return Err(BuildError::Route {
                    route: describe(route),
                    reason: format!("`host_rewrite_header` `{header}` is not a header name"),
                });
            }
        }
    } else if let Some((pattern, substitution)) = &route.host_path_regex_rewrite {
        HostRewrite::PathRegex(
            RegexRewrite::new(pattern, substitution)
                .map_err(|source| BuildError::Rewrite { route: describe(route), source })?,
        )
    } else {
        HostRewrite::Upstream
    })
}

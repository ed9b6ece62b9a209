//! Global options (system.md §1.3), typed, with Pomerium's defaults (`config/options.go`
//! `defaultOptions`).

use crate::diagnostic::{BadSecret, BadUrl, Conflict, Missing, UnknownValue, UnsupportedValue};
use crate::env::Environment;
use crate::headers;
use crate::keys;
use crate::material::{
    self, Certificates, CertifiedKey, Crls, Encoding, Material, Precedence, PrivateKey, certificates, crls,
    inline_or_file, private_key,
};
use crate::read::{Field, Sink};
use crate::route::Route;
use crate::secret::Secret;
use crate::section::{Schema, Section};
use ppl::value::{Value, ValueKind};
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

/// A service Pomerium can run (`config/helpers.go`); `cache` is read as `databroker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    All,
    Authenticate,
    Authorize,
    Proxy,
    Databroker,
}

/// The services this process runs (`services: all`, or a comma-separated list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services(Vec<Service>);

impl Services {
    pub fn all() -> Services {
        Services(vec![Service::All])
    }

    pub fn is_all(&self) -> bool {
        self.0.contains(&Service::All)
    }

    /// Whether `service` runs here (every service does in `all` mode).
    pub fn runs(&self, service: Service) -> bool {
        self.is_all() || self.0.contains(&service)
    }

    pub fn list(&self) -> &[Service] {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageType {
    Memory,
    File,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecType {
    Auto,
    Http1,
    Http2,
    Http3,
}

/// Envoy's `path_with_escaped_slashes_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapedSlashesAction {
    ImplementationSpecificDefault,
    KeepUnchanged,
    RejectRequest,
    UnescapeAndRedirect,
    UnescapeAndForward,
}

/// Envoy's `headers_with_underscores_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderscoresAction {
    Allow,
    RejectRequest,
    DropHeader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
    Panic,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsLookupFamily {
    Auto,
    V4Only,
    V6Only,
    V4Preferred,
    All,
}

/// What happens to a request without a valid client certificate (`config/mtls.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsEnforcement {
    /// Only what route policies say.
    Policy,
    /// Policies, plus a default deny rule on every route (the default).
    PolicyWithDefaultDeny,
    /// The TLS handshake fails.
    RejectConnection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanType {
    Dns,
    Email,
    IpAddress,
    Uri,
    UserPrincipalName,
}

/// A client certificate must have a SAN of this type matching the pattern (a full-string re2 match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanMatcher {
    pub san_type: SanType,
    pub pattern: String,
}

/// The format of the `iss` claim in the identity JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtIssuerFormat {
    HostOnly,
    Uri,
}

/// How a bearer token on a request is read (`config/bearer_token_format.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerTokenFormat {
    Default,
    IdpAccessToken,
    IdpIdentityToken,
    Jwt,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CookieOptions {
    pub name: String,
    pub domain: Option<String>,
    pub http_only: bool,
    pub expire: Duration,
    pub same_site: Option<SameSite>,
    /// The 32-byte key, decoded. `None` in `all` mode means a random key per process.
    pub secret: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdpOptions {
    pub provider: Option<String>,
    pub provider_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// `None`: the provider's defaults (`openid profile email offline_access` for OIDC).
    pub scopes: Option<Vec<String>>,
    pub request_params: BTreeMap<String, String>,
    pub access_token_allowed_audiences: Option<Vec<String>>,
    /// `idp_development_users` (ours): the users `idp_provider: development` offers. That provider
    /// runs inside the authenticate service, for development only.
    pub development_users: Vec<DevelopmentUser>,
}

/// A user of the development identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevelopmentUser {
    pub email: String,
    pub name: Option<String>,
    pub groups: Vec<String>,
    /// The `sub` claim; made from the email when absent.
    pub id: Option<String>,
}

/// `idp_provider` value of the built-in development identity provider.
pub const DEVELOPMENT_PROVIDER: &str = "development";

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AutocertOptions {
    pub enable: bool,
    pub dir: Option<String>,
    pub ca: Option<Url>,
    pub email: Option<String>,
    pub use_staging: bool,
    pub eab_key_id: Option<String>,
    pub eab_mac_key: Option<Secret>,
    pub must_staple: bool,
    pub trusted_ca: Option<Certificates>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DownstreamMtls {
    pub ca: Option<Certificates>,
    pub crl: Option<Crls>,
    pub enforcement: MtlsEnforcement,
    pub match_subject_alt_names: Vec<SanMatcher>,
    /// The longest chain accepted, not counting the leaf; 0 means no limit.
    pub max_verify_depth: u32,
}

impl Default for DownstreamMtls {
    fn default() -> DownstreamMtls {
        DownstreamMtls {
            ca: None,
            crl: None,
            enforcement: MtlsEnforcement::PolicyWithDefaultDeny,
            match_subject_alt_names: Vec::new(),
            max_verify_depth: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatabrokerOptions {
    /// `databroker_service_url` then `databroker_service_urls`.
    pub service_urls: Vec<Url>,
    pub internal_service_url: Option<Url>,
    pub storage_type: StorageType,
    pub storage_connection_string: Option<Secret>,
}

/// `grpc_address` when none is set (Pomerium's default).
pub const DEFAULT_GRPC_ADDRESS: &str = ":443";

/// Every global option. Unset options hold Pomerium's defaults; accessors compute what depends on
/// several options (the gRPC address, the authenticate URL, response headers).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub services: Services,
    pub address: String,
    pub insecure_server: bool,
    pub grpc_address: String,
    pub grpc_insecure: Option<bool>,
    pub grpc_client_timeout: Duration,
    pub http_redirect_addr: Option<String>,
    pub dns_lookup_family: Option<DnsLookupFamily>,
    pub authenticate_service_url: Option<Url>,
    pub authenticate_internal_service_url: Option<Url>,
    /// The environment's `DEBUG_FORCE_AUTHENTICATE_FLOW` (`stateless` or `stateful`), as given.
    pub force_authenticate_flow: Option<String>,
    pub authenticate_callback_path: String,
    /// `authorize_service_url` then `authorize_service_urls`.
    pub authorize_service_urls: Vec<Url>,
    pub authorize_internal_service_url: Option<Url>,
    pub databroker: DatabrokerOptions,
    pub signout_redirect_url: Option<Url>,
    pub programmatic_redirect_domain_whitelist: Vec<String>,
    /// The 32-byte key, decoded. `None` in `all` mode means a random key per process.
    pub shared_secret: Option<Secret>,
    pub cookie: CookieOptions,
    pub idp: IdpOptions,
    /// Extra identity providers for verifying bearer JWTs, as written.
    pub identity_providers: Option<Value>,
    /// `None`: a P-256 key is derived from the shared secret.
    pub signing_key: Option<PrivateKey>,
    /// `pomerium_zero_token` (`POMERIUM_ZERO_TOKEN`): the cluster token of managed mode.
    pub zero_token: Option<Secret>,
    /// `certificate`/`certificate_key`, `certificates`, then `certificate_file`/`certificate_key_file`.
    pub certificates: Vec<CertifiedKey>,
    pub certificate_authority: Option<Certificates>,
    pub autocert: AutocertOptions,
    pub downstream_mtls: DownstreamMtls,
    /// `None`: the defaults (see [`Options::response_headers`]). `HEADERS` replaces it.
    pub set_response_headers: Option<BTreeMap<String, String>>,
    /// Header → claim.
    pub jwt_claims_headers: BTreeMap<String, String>,
    pub jwt_issuer_format: Option<JwtIssuerFormat>,
    pub jwt_groups_filter: Option<Vec<String>>,
    pub bearer_token_format: Option<BearerTokenFormat>,
    pub pass_identity_headers: Option<bool>,
    pub timeout_read: Duration,
    pub timeout_write: Duration,
    pub timeout_idle: Duration,
    pub default_upstream_timeout: Duration,
    pub metrics_address: Option<String>,
    /// `metrics_basic_auth`: the base64 of `user:password` a request to `/metrics` must send.
    pub metrics_basic_auth: Option<Secret>,
    /// `metrics_certificate`/`_key` (base64) or the `_file` pair: `/metrics` over HTTPS.
    pub metrics_certificate: Option<CertifiedKey>,
    /// `metrics_client_ca` (base64) or `_file`: `/metrics` requires a client certificate from it.
    pub metrics_client_ca: Option<Certificates>,
    pub health_check_addr: String,
    pub debug_address: Option<String>,
    pub log_level: LogLevel,
    pub proxy_log_level: Option<LogLevel>,
    pub access_log_fields: Option<Vec<String>>,
    pub authorize_log_fields: Option<Vec<String>>,
    /// The `otel_*` options: OpenTelemetry tracing.
    pub otel: crate::otel::OtelOptions,
    pub xff_num_trusted_hops: u32,
    pub skip_xff_append: bool,
    pub use_proxy_protocol: bool,
    pub codec_type: CodecType,
    pub normalize_path: bool,
    pub merge_slashes: bool,
    pub path_with_escaped_slashes_action: EscapedSlashesAction,
    pub headers_with_underscores_action: UnderscoresAction,
    /// Every known flag with its value (defaults filled in), plus unknown ones as written.
    pub runtime_flags: BTreeMap<String, bool>,
    pub allow_upgrades: Option<Vec<String>>,
    /// Options Pomerium knows that are kept as written (tracing, metrics TLS, branding, ...).
    pub other: BTreeMap<String, Value>,
}

/// `runtime_flags` and their defaults (`config/runtime_flags.go`).
pub const RUNTIME_FLAGS: &[(&str, bool)] = &[
    ("add_extra_metrics_labels", true),
    ("allow_any_sign_out_redirect_uri", false),
    ("authorize_use_sync_cache", true),
    ("authorize_use_synced_data", true),
    ("config_hot_reload", true),
    ("debug_admin_endpoints", false),
    ("envoy_resource_manager", true),
    ("grpc_databroker_keepalive", false),
    ("legacy_identity_manager", false),
    ("match_any_incoming_port", true),
    ("mcp", true),
    ("mcp_dynamic_client_registration", false),
    ("pomerium_jwt_endpoint", false),
    ("refresh_session_at_id_token_expiration", true),
    ("routes_portal", true),
    ("set_envoy_concurrency_to_go_max_procs", true),
    ("ssh_allow_direct_tcpip", false),
    ("ssh_routes_portal", false),
    ("ssh_upstream_tunnel", false),
];

/// The response headers set when `set_response_headers` is not given.
pub const DEFAULT_RESPONSE_HEADERS: &[(&str, &str)] = &[
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains; preload"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("X-XSS-Protection", "1; mode=block"),
];

/// The key of `set_response_headers` that turns every response header off.
pub const DISABLE_HEADERS_KEY: &str = "disable";

impl Default for Options {
    fn default() -> Options {
        Options {
            services: Services::all(),
            address: ":443".to_owned(),
            insecure_server: false,
            grpc_address: DEFAULT_GRPC_ADDRESS.to_owned(),
            grpc_insecure: None,
            grpc_client_timeout: Duration::from_secs(10),
            http_redirect_addr: None,
            dns_lookup_family: None,
            authenticate_service_url: None,
            authenticate_internal_service_url: None,
            force_authenticate_flow: None,
            authenticate_callback_path: "/oauth2/callback".to_owned(),
            authorize_service_urls: Vec::new(),
            authorize_internal_service_url: None,
            databroker: DatabrokerOptions {
                service_urls: Vec::new(),
                internal_service_url: None,
                storage_type: StorageType::Memory,
                storage_connection_string: None,
            },
            signout_redirect_url: None,
            programmatic_redirect_domain_whitelist: vec!["localhost".to_owned()],
            shared_secret: None,
            zero_token: None,
            cookie: CookieOptions {
                name: "_pomerium".to_owned(),
                domain: None,
                http_only: true,
                expire: Duration::from_secs(14 * 3600),
                same_site: None,
                secret: None,
            },
            idp: IdpOptions::default(),
            identity_providers: None,
            signing_key: None,
            certificates: Vec::new(),
            certificate_authority: None,
            autocert: AutocertOptions::default(),
            downstream_mtls: DownstreamMtls::default(),
            set_response_headers: None,
            jwt_claims_headers: BTreeMap::new(),
            jwt_issuer_format: None,
            jwt_groups_filter: None,
            bearer_token_format: None,
            pass_identity_headers: None,
            timeout_read: Duration::from_secs(30),
            timeout_write: Duration::ZERO,
            timeout_idle: Duration::from_secs(300),
            default_upstream_timeout: Duration::from_secs(30),
            metrics_address: None,
            metrics_basic_auth: None,
            metrics_certificate: None,
            metrics_client_ca: None,
            health_check_addr: "127.0.0.1:28080".to_owned(),
            debug_address: None,
            log_level: LogLevel::Info,
            proxy_log_level: None,
            access_log_fields: None,
            authorize_log_fields: None,
            otel: crate::otel::OtelOptions::default(),
            xff_num_trusted_hops: 0,
            skip_xff_append: false,
            use_proxy_protocol: false,
            codec_type: CodecType::Auto,
            normalize_path: true,
            merge_slashes: true,
            path_with_escaped_slashes_action: EscapedSlashesAction::RejectRequest,
            headers_with_underscores_action: UnderscoresAction::RejectRequest,
            runtime_flags: RUNTIME_FLAGS.iter().map(|(name, value)| ((*name).to_owned(), *value)).collect(),
            allow_upgrades: None,
            other: BTreeMap::new(),
        }
    }
}

/// The hosted authenticate service Pomerium uses when `authenticate_service_url` is not set.
pub const HOSTED_AUTHENTICATE_URL: &str = "https://authenticate.pomerium.app";

/// The hosted authenticate service's domains (`urlutil.HostedAuthenticateDomains`).
pub const HOSTED_AUTHENTICATE_DOMAINS: [&str; 2] = ["authenticate.pomerium.app", "authenticate.staging.pomerium.app"];

impl Options {
    /// The gRPC listen address: in `all` mode the default `:443` moves to `:5443` (`:5444` when
    /// `address` already uses 5443), so that gRPC and HTTPS do not collide (`GetGRPCAddr`).
    pub fn effective_grpc_address(&self) -> String {
        if self.services.is_all() && self.grpc_address == DEFAULT_GRPC_ADDRESS {
            if self.address.ends_with(":5443") { ":5444".to_owned() } else { ":5443".to_owned() }
        } else {
            self.grpc_address.clone()
        }
    }

    /// gRPC without TLS: as set, else true in `all` mode (`GetGRPCInsecure`).
    pub fn effective_grpc_insecure(&self) -> bool {
        self.grpc_insecure.unwrap_or_else(|| self.services.is_all())
    }

    /// The public authenticate URL; without one, Pomerium's hosted service (always `Some`: the
    /// hosted URL is a constant).
    pub fn authenticate_url(&self) -> Option<Url> {
        self.authenticate_service_url.clone().or_else(|| Url::parse(HOSTED_AUTHENTICATE_URL).ok())
    }

    /// Whether sign-in goes through a hosted authenticate service: the internal authenticate URL
    /// (else the public one, else the default) is on one of Pomerium's hosted domains
    /// (`urlutil.IsHostedAuthenticateDomain`).
    pub fn uses_hosted_authenticate(&self) -> bool {
        let url = self.authenticate_internal_service_url.clone().or_else(|| self.authenticate_url());
        url.as_ref().and_then(Url::host_str).is_some_and(|host| HOSTED_AUTHENTICATE_DOMAINS.contains(&host))
    }

    /// Whether the stateless flow is used (`UseStatelessAuthenticateFlow`):
    /// `DEBUG_FORCE_AUTHENTICATE_FLOW=stateless|stateful` decides when set to one of those,
    /// else a hosted authenticate service.
    pub fn uses_stateless_authenticate_flow(&self) -> bool {
        match self.force_authenticate_flow.as_deref() {
            Some("stateless") => true,
            Some("stateful") => false,
            _ => self.uses_hosted_authenticate(),
        }
    }

    /// Whether certificates were configured (`HasCertificates`); autocert does not count.
    pub fn has_certificates(&self) -> bool {
        !self.certificates.is_empty()
    }

    /// The response headers for a route (`GetSetResponseHeadersForPolicy`): the global ones, or the
    /// defaults (without HSTS when no certificate is configured or autocert uses staging); a
    /// `disable` key clears them; then the route's, merged over; a `disable` there clears all.
    pub fn response_headers(&self, route: Option<&Route>) -> BTreeMap<String, String> {
        let mut headers = match &self.set_response_headers {
            Some(headers) => headers.clone(),
            None => {
                let drop_hsts = !self.has_certificates() || self.autocert.use_staging;
                DEFAULT_RESPONSE_HEADERS
                    .iter()
                    .filter(|(name, _)| !(drop_hsts && *name == "Strict-Transport-Security"))
                    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                    .collect()
            }
        };
        if headers.contains_key(DISABLE_HEADERS_KEY) {
            headers.clear();
        }
        if let Some(own) = route.and_then(|route| route.set_response_headers.as_ref()) {
            headers.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if headers.contains_key(DISABLE_HEADERS_KEY) {
            headers.clear();
        }
        headers
    }

    pub fn runtime_flag(&self, name: &str) -> bool {
        self.runtime_flags.get(name).copied().unwrap_or(false)
    }
}

/// The global options' schema: env variables for every key except the ones read otherwise.
pub(crate) fn schema() -> Schema<'static> {
    Schema {
        path: "",
        known: &[keys::GLOBAL_TYPED, keys::GLOBAL_RAW],
        removed: keys::REMOVED_GLOBAL,
        env_prefix: Some(""),
        // `POLICY`/`ROUTES` are base64 route lists and `HEADERS` replaces `set_response_headers`
        // (read in `load`); `downstream_mtls` has a variable per field; `jwt_groups_filter` and
        // `certificates` have none in Pomerium.
        env_exempt: &[
            "policy",
            "routes",
            "set_response_headers",
            "downstream_mtls",
            "jwt_groups_filter",
            "certificates",
        ],
    }
}

/// Reads one option's field with a reader, when it is present.
struct Reader<'a> {
    section: &'a Section,
    sink: &'a mut Sink,
    env: &'a dyn Environment,
}

impl Reader<'_> {
    fn field(&self, key: &str) -> Option<Field> {
        self.section.get(key).cloned()
    }

    fn with<T>(&mut self, key: &str, read: impl FnOnce(&Field, &mut Sink) -> Option<T>) -> Option<T> {
        let field = self.section.get(key)?;
        read(field, self.sink)
    }

    fn string(&mut self, key: &str) -> Option<String> {
        self.with(key, Field::string).filter(|s| !s.is_empty())
    }

    fn bool(&mut self, key: &str) -> Option<bool> {
        self.with(key, Field::bool)
    }

    fn duration(&mut self, key: &str) -> Option<Duration> {
        self.with(key, Field::duration)
    }

    fn list(&mut self, key: &str) -> Option<Vec<String>> {
        self.with(key, Field::list).map(|items| items.into_iter().map(|item| item.value).collect())
    }

    fn url(&mut self, key: &str) -> Option<Url> {
        self.with(key, global_url)
    }

    fn choice<T: Copy>(&mut self, key: &str, allowed: &[(&str, T)]) -> Option<T> {
        self.with(key, |field, sink| field.choice(sink, allowed, true))
    }

    fn material(&mut self, inline: &str, file: &str, encoding: Encoding, precedence: Precedence) -> Option<Material> {
        let (inline, file) = (self.field(inline), self.field(file));
        inline_or_file(inline.as_ref(), file.as_ref(), encoding, precedence, self.env, self.sink)
    }
}

/// A URL with a scheme and a host (`urlutil.ParseAndValidateURL`).
pub(crate) fn global_url(field: &Field, sink: &mut Sink) -> Option<Url> {
    let text = field.string(sink)?;
    let bad = |reason: String, help: Option<String>| BadUrl {
        option: field.name.clone(),
        reason,
        span: field.span().into(),
        help,
    };
    match Url::parse(text.trim()) {
        Ok(url) if url.host_str().is_none_or(str::is_empty) => {
            sink.error(&field.origin, bad("it has no host".to_owned(), None));
            None
        }
        Ok(url) => Some(url),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let help = Some(format!("write the scheme too: `https://{}`", text.trim()));
            sink.error(&field.origin, bad("it has no scheme".to_owned(), help));
            None
        }
        Err(error) => {
            sink.error(&field.origin, bad(error.to_string(), None));
            None
        }
    }
}

/// Reads the global options. `section` holds the file's keys with the environment applied.
pub(crate) fn read(section: &Section, mtls: &Section, env: &dyn Environment, sink: &mut Sink) -> Options {
    let mut options = Options::default();
    let mut reader = Reader { section, sink, env };
    read_listeners(&mut reader, &mut options);
    read_service_urls(&mut reader, &mut options);
    read_secrets(&mut reader, &mut options);
    read_cookie(&mut reader, &mut options);
    read_idp(&mut reader, &mut options);
    read_certificates(&mut reader, &mut options);
    read_autocert(&mut reader, &mut options);
    read_identity_headers(&mut reader, &mut options);
    read_http(&mut reader, &mut options);
    read_observability(&mut reader, &mut options);
    read_databroker(&mut reader, &mut options);
    options.otel = crate::otel::read(section, env, sink);
    options.other = section.raw(keys::GLOBAL_RAW);
    options.downstream_mtls = read_downstream_mtls(mtls, env, sink);
    require_split_mode_secrets(section, &options, sink);
    require_grpc_secret(section, &options, sink);
    require_databroker_url(section, &options, sink);
    options
}

/// In `all` mode a `grpc_address` of its own opens the gRPC listener (for other processes, such as
/// the ingress controller), whose every call is signed with the shared secret: the server refuses
/// to start without one.
fn require_grpc_secret(section: &Section, options: &Options, sink: &mut Sink) {
    let Some(address) = section.get("grpc_address") else { return };
    if !options.services.is_all() || options.grpc_address == DEFAULT_GRPC_ADDRESS || options.shared_secret.is_some() {
        return;
    }
    sink.error(
        &address.origin,
        Missing {
            option: "shared_secret".to_owned(),
            because: "when `grpc_address` opens the grpc listener (every call on it is signed with the shared secret)"
                .to_owned(),
            span: address.key_span.into(),
            help: Some(
                "set `shared_secret` (make one with `head -c32 /dev/urandom | base64`), or remove `grpc_address` to keep \
                 the databroker and authorize service to this process"
                    .to_owned(),
            ),
        },
    );
}

/// A proxy, authorize or authenticate service without the databroker follows the one at
/// `databroker_service_url`: the server refuses to start without it.
fn require_databroker_url(section: &Section, options: &Options, sink: &mut Sink) {
    let Some(services) = section.get("services") else { return };
    let s = &options.services;
    let follows = !s.runs(Service::Databroker)
        && (s.runs(Service::Proxy) || s.runs(Service::Authorize) || s.runs(Service::Authenticate));
    if !follows || !options.databroker.service_urls.is_empty() || options.databroker.internal_service_url.is_some() {
        return;
    }
    sink.error(
        &services.origin,
        Missing {
            option: "databroker_service_url".to_owned(),
            because: "when the databroker runs in another process".to_owned(),
            span: services.span().into(),
            help: Some(
                "set it to the databroker's grpc url, e.g. `https://databroker.internal:5443`, or add `databroker` to \
                 `services`"
                    .to_owned(),
            ),
        },
    );
}

/// Outside `all` mode there is no random key to fall back on: services must share the same
/// `shared_secret`, and authenticate and proxy the same `cookie_secret` (`GetSharedKey`,
/// `GetCookieSecret`: `empty shared secret`, `empty cookie secret`).
fn require_split_mode_secrets(section: &Section, options: &Options, sink: &mut Sink) {
    let Some(services) = section.get("services").filter(|_| !options.services.is_all()) else { return };
    let cookie_needed = options.services.runs(Service::Authenticate) || options.services.runs(Service::Proxy);
    let missing = [
        ("shared_secret", options.shared_secret.is_none(), "every service"),
        ("cookie_secret", cookie_needed && options.cookie.secret.is_none(), "authenticate and proxy"),
    ];
    for (option, is_missing, who) in missing {
        if is_missing {
            sink.error(
                &services.origin,
                Missing {
                    option: option.to_owned(),
                    because: "when services run separately (only `all` mode makes up a random key)".to_owned(),
                    span: services.span().into(),
                    help: Some(format!("{who} must share one key; make it with `head -c32 /dev/urandom | base64`")),
                },
            );
        }
    }
}

const SERVICES: &[(&str, Service)] = &[
    ("all", Service::All),
    ("authenticate", Service::Authenticate),
    ("authorize", Service::Authorize),
    ("proxy", Service::Proxy),
    ("databroker", Service::Databroker),
    ("cache", Service::Databroker),
];

fn read_listeners(r: &mut Reader<'_>, o: &mut Options) {
    if let Some(field) = r.field("services") {
        let services: Vec<Service> = field
            .list(r.sink)
            .unwrap_or_default()
            .iter()
            .filter_map(|item| {
                field
                    .item(&Value::new(ValueKind::String(item.value.clone()), item.span))
                    .choice(r.sink, SERVICES, false)
            })
            .collect();
        if !services.is_empty() {
            o.services = Services(services);
        }
    }
    if let Some(address) = r.string("address") {
        o.address = address;
    }
    o.insecure_server = r.bool("insecure_server").unwrap_or(false);
    if let Some(address) = r.string("grpc_address") {
        o.grpc_address = address;
    }
    o.grpc_insecure = r.bool("grpc_insecure");
    if let Some(timeout) = r.duration("grpc_client_timeout") {
        o.grpc_client_timeout = timeout;
    }
    // Pomerium strips quotes from this one (#811).
    o.http_redirect_addr = r.string("http_redirect_addr").map(|s| s.trim_matches(|c| c == '"' || c == '\'').to_owned());
    o.dns_lookup_family = r.choice(
        "dns_lookup_family",
        &[
            ("auto", DnsLookupFamily::Auto),
            ("v4_only", DnsLookupFamily::V4Only),
            ("v6_only", DnsLookupFamily::V6Only),
            ("v4_preferred", DnsLookupFamily::V4Preferred),
            ("all", DnsLookupFamily::All),
        ],
    );
}

fn read_service_urls(r: &mut Reader<'_>, o: &mut Options) {
    o.authenticate_service_url = r.url("authenticate_service_url");
    o.authenticate_internal_service_url = r.url("authenticate_internal_service_url");
    o.force_authenticate_flow = r.env.var("DEBUG_FORCE_AUTHENTICATE_FLOW").filter(|v| !v.is_empty());
    if let Some(path) = r.string("authenticate_callback_path") {
        o.authenticate_callback_path = path;
    }
    o.authorize_service_urls = url_list(r, "authorize_service_url", "authorize_service_urls");
    o.authorize_internal_service_url = r.url("authorize_internal_service_url");
    o.signout_redirect_url = r.url("signout_redirect_url");
    if let Some(hosts) = r.list("programmatic_redirect_domain_whitelist") {
        o.programmatic_redirect_domain_whitelist = hosts;
    }
}

/// `x_url` then every entry of `x_urls`.
fn url_list(r: &mut Reader<'_>, single: &str, many: &str) -> Vec<Url> {
    let mut urls: Vec<Url> = r.url(single).into_iter().collect();
    if let Some(field) = r.field(many) {
        for item in field.list(r.sink).unwrap_or_default() {
            let item_field = field.item(&Value::new(ValueKind::String(item.value), item.span));
            urls.extend(global_url(&item_field, r.sink));
        }
    }
    urls
}

fn read_secrets(r: &mut Reader<'_>, o: &mut Options) {
    if let Some(material) = r.material("shared_secret", "shared_secret_file", Encoding::Text, Precedence::File) {
        o.shared_secret = key_32(&material, true, r.sink);
    }
    if let Some(material) = r.material("cookie_secret", "cookie_secret_file", Encoding::Text, Precedence::File) {
        o.cookie.secret = key_32(&material, false, r.sink);
    }
    if let Some(material) = r.material("signing_key", "signing_key_file", Encoding::Text, Precedence::File) {
        o.signing_key = signing_key(material, r.sink);
    }
    o.zero_token = r.string("pomerium_zero_token").map(|token| Secret::new(token.trim().as_bytes().to_vec()));
}

/// A key written as base64 of 32 bytes (`GetSharedKey`, `GetCookieSecret`). The shared secret may
/// not contain white space at all; Go's decoder skips line breaks in the cookie secret.
fn key_32(material: &Material, strict_whitespace: bool, sink: &mut Sink) -> Option<Secret> {
    let text = String::from_utf8_lossy(&material.bytes).into_owned();
    let bad = |reason: &str, help: Option<String>| BadSecret {
        option: material.option.clone(),
        reason: reason.to_owned(),
        span: material.span.into(),
        help,
    };
    if text.is_empty() {
        return None;
    }
    if strict_whitespace && text.trim() != text {
        let help = if material.from_file {
            "pomerium refuses a trailing newline in the file; write it with `printf %s \"$(head -c32 /dev/urandom | base64)\" > file`"
        } else {
            "remove the white space around the key"
        };
        sink.error(&material.origin, bad("it contains white space", Some(help.to_owned())));
        return None;
    }
    let compact: String = text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    let help = Some("generate one with `head -c32 /dev/urandom | base64`".to_owned());
    match base64::Engine::decode(&base64::engine::general_purpose::STANDARD, compact.as_bytes()) {
        Ok(bytes) if bytes.len() == 32 => Some(Secret::new(bytes)),
        Ok(bytes) => {
            sink.error(&material.origin, bad(&format!("it decodes to {} bytes, not 32", bytes.len()), help));
            None
        }
        Err(_) => {
            sink.error(&material.origin, bad("it is not base64", help));
            None
        }
    }
}

/// `signing_key`: PEM, or base64 of PEM (`GetSigningKey` tries base64 first).
fn signing_key(mut material: Material, sink: &mut Sink) -> Option<PrivateKey> {
    let text = String::from_utf8_lossy(&material.bytes).trim().to_owned();
    if let Ok(decoded) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text.as_bytes()) {
        material.bytes = decoded;
    }
    private_key(&material, sink)
}

const SAME_SITE: &[(&str, Option<SameSite>)] =
    &[("", None), ("strict", Some(SameSite::Strict)), ("lax", Some(SameSite::Lax)), ("none", Some(SameSite::None))];

fn read_cookie(r: &mut Reader<'_>, o: &mut Options) {
    if let Some(name) = r.string("cookie_name") {
        o.cookie.name = name;
    }
    o.cookie.domain = r.string("cookie_domain");
    if let Some(http_only) = r.bool("cookie_http_only") {
        o.cookie.http_only = http_only;
    }
    if let Some(expire) = r.duration("cookie_expire") {
        o.cookie.expire = expire;
    }
    o.cookie.same_site = r.with("cookie_same_site", |field, sink| field.choice(sink, SAME_SITE, true)).flatten();
}

fn read_idp(r: &mut Reader<'_>, o: &mut Options) {
    o.idp.provider = r.string("idp_provider");
    o.idp.provider_url = r.string("idp_provider_url");
    o.idp.client_id = r.string("idp_client_id");
    o.idp.client_secret = r
        .material("idp_client_secret", "idp_client_secret_file", Encoding::Text, Precedence::File)
        .map(|material| Secret::new(material.bytes));
    o.idp.scopes = r.list("idp_scopes");
    if let Some(params) = r.with("idp_request_params", Field::map) {
        o.idp.request_params = params.into_iter().map(|(k, v)| (k.value, v.value)).collect();
    }
    o.idp.access_token_allowed_audiences = r.list("idp_access_token_allowed_audiences");
    o.identity_providers = r.field("identity_providers").map(|field| field.value);
    if let Some(field) = r.field("idp_development_users") {
        o.idp.development_users = read_development_users(r, &field);
    }
    check_development_provider(r, o);
    if o.idp.provider.is_some()
        && o.uses_hosted_authenticate()
        && let Some(provider) = r.field("idp_provider")
    {
        r.sink.warning(&provider.origin, crate::diagnostic::HostedAuthenticate { span: provider.span().into() });
    }
}

/// The development provider is named in every check (it lets anyone in), needs its users, and
/// its users mean nothing to another provider.
fn check_development_provider(r: &mut Reader<'_>, o: &Options) {
    let development = o.idp.provider.as_deref() == Some(DEVELOPMENT_PROVIDER);
    match (r.field("idp_provider"), r.field("idp_development_users")) {
        (Some(provider), _) if development => {
            if o.idp.development_users.is_empty() {
                r.sink.error(
                    &provider.origin,
                    crate::diagnostic::Missing {
                        option: "idp_development_users".to_owned(),
                        because: "when `idp_provider` is `development`".to_owned(),
                        span: provider.span().into(),
                        help: Some(
                            "the development identity provider signs in only the users it lists: \
                             `idp_development_users: [{email: alice@example.com}]`"
                                .to_owned(),
                        ),
                    },
                );
                return;
            }
            let names: Vec<&str> = o.idp.development_users.iter().map(|u| u.email.as_str()).collect();
            let users = match names.as_slice() {
                [one] => format!("`{one}`"),
                _ => format!("any of {} listed users", names.len()),
            };
            r.sink.warning(
                &provider.origin,
                crate::diagnostic::DevelopmentProvider { users, span: provider.span().into() },
            );
        }
        (_, Some(users)) => r.sink.warning(
            &users.origin,
            crate::diagnostic::IgnoredOption {
                option: users.name.clone(),
                because: "only `idp_provider: development` reads it".to_owned(),
                span: users.key_span.into(),
            },
        ),
        _ => {}
    }
}

/// `idp_development_users: [{email, name, groups, id}]`.
fn read_development_users(r: &mut Reader<'_>, field: &Field) -> Vec<DevelopmentUser> {
    const KEYS: &[&str] = &["email", "name", "groups", "id"];
    let Some(items) = field.value.as_array() else {
        field.wrong_type(r.sink, "a list of `{email, name, groups}` users", None);
        return Vec::new();
    };
    let mut users = Vec::new();
    for item in items {
        let item = field.item(item);
        let Some(entries) = item.object(r.sink) else { continue };
        let mut user = DevelopmentUser::default();
        for entry in &entries {
            let child = item.child(entry);
            match entry.key.as_str() {
                "email" => user.email = child.string(r.sink).unwrap_or_default(),
                "name" => user.name = child.string(r.sink),
                "id" => user.id = child.string(r.sink),
                "groups" => {
                    user.groups = child.list(r.sink).unwrap_or_default().into_iter().map(|g| g.value).collect();
                }
                other => r.sink.warning(
                    &item.origin,
                    crate::diagnostic::UnknownOption {
                        option: format!("idp_development_users.{other}"),
                        span: entry.key_span.into(),
                        help: ppl::suggest::did_you_mean(other, KEYS),
                    },
                ),
            }
        }
        if user.email.is_empty() {
            item.invalid(r.sink, "a development user needs an `email`", None);
            continue;
        }
        users.push(user);
    }
    users
}

fn read_certificates(r: &mut Reader<'_>, o: &mut Options) {
    let (cert, key) = (r.field("certificate"), r.field("certificate_key"));
    if let Some(pair) = pair(r, cert.as_ref(), key.as_ref(), Encoding::Base64) {
        o.certificates.push(pair);
    }
    if let Some(field) = r.field("certificates") {
        read_certificate_files(r, &field, o);
    }
    let (cert, key) = (r.field("certificate_file"), r.field("certificate_key_file"));
    if let Some(pair) = file_pair(r, cert.as_ref(), key.as_ref()) {
        o.certificates.push(pair);
    }
    o.certificate_authority = r
        .material("certificate_authority", "certificate_authority_file", Encoding::Base64, Precedence::Inline)
        .and_then(|material| certificates(&material, r.sink));
}

/// `certificates: [{cert: path, key: path}]`.
fn read_certificate_files(r: &mut Reader<'_>, field: &Field, o: &mut Options) {
    let Some(items) = field.value.as_array() else {
        field.wrong_type(r.sink, "a list of `{cert, key}` file pairs", None);
        return;
    };
    for item in items {
        let item = field.item(item);
        let Some(entries) = item.object(r.sink) else { continue };
        let mut cert = None;
        let mut key = None;
        for entry in &entries {
            match entry.key.as_str() {
                "cert" => cert = Some(item.child(entry)),
                "key" => key = Some(item.child(entry)),
                other => {
                    let help = ppl::suggest::did_you_mean(other, &["cert", "key"]);
                    r.sink.warning(
                        &item.origin,
                        crate::diagnostic::UnknownOption {
                            option: format!("certificates.{other}"),
                            span: entry.key_span.into(),
                            help,
                        },
                    );
                }
            }
        }
        if cert.is_none() && key.is_none() {
            item.invalid(r.sink, "an entry needs `cert` and `key` file paths", None);
        }
        if let Some(pair) = file_pair(r, cert.as_ref(), key.as_ref()) {
            o.certificates.push(pair);
        }
    }
}

/// A certificate and key given inline; both halves are required.
fn pair(r: &mut Reader<'_>, cert: Option<&Field>, key: Option<&Field>, encoding: Encoding) -> Option<CertifiedKey> {
    require_both(cert, key, r.sink)?;
    let cert = inline_or_file(cert, None, encoding, Precedence::Inline, r.env, r.sink);
    let key = inline_or_file(key, None, encoding, Precedence::Inline, r.env, r.sink);
    material::certified_key(cert, key, r.sink)
}

fn file_pair(r: &mut Reader<'_>, cert: Option<&Field>, key: Option<&Field>) -> Option<CertifiedKey> {
    require_both(cert, key, r.sink)?;
    let cert = inline_or_file(None, cert, Encoding::Text, Precedence::File, r.env, r.sink);
    let key = inline_or_file(None, key, Encoding::Text, Precedence::File, r.env, r.sink);
    material::certified_key(cert, key, r.sink)
}

/// `Some(())` when both halves are set; an error when only one is.
pub(crate) fn require_both(cert: Option<&Field>, key: Option<&Field>, sink: &mut Sink) -> Option<()> {
    match (cert, key) {
        (Some(_), Some(_)) => Some(()),
        (Some(given), None) | (None, Some(given)) => {
            let missing =
                if cert.is_none() { paired_name(&given.name, "cert") } else { paired_name(&given.name, "key") };
            sink.error(
                &given.origin,
                Missing {
                    option: missing,
                    because: format!("when `{}` is set", given.name),
                    span: given.key_span.into(),
                    help: Some("a certificate and its private key go together".to_owned()),
                },
            );
            None
        }
        (None, None) => None,
    }
}

/// The name of the other half of a certificate/key pair.
fn paired_name(name: &str, want: &str) -> String {
    let swaps: &[(&str, &str)] = &[
        ("certificate_key_file", "certificate_file"),
        ("certificate_key", "certificate"),
        ("tls_client_key_file", "tls_client_cert_file"),
        ("tls_client_key", "tls_client_cert"),
        ("certificates.key", "certificates.cert"),
    ];
    for (key_name, cert_name) in swaps {
        if want == "cert" && name == *key_name {
            return (*cert_name).to_owned();
        }
        if want == "key" && name == *cert_name {
            return (*key_name).to_owned();
        }
    }
    want.to_owned()
}

fn read_autocert(r: &mut Reader<'_>, o: &mut Options) {
    let a = &mut o.autocert;
    a.enable = r.bool("autocert").unwrap_or(false);
    a.dir = r.string("autocert_dir");
    a.ca = r.url("autocert_ca");
    a.email = r.string("autocert_email");
    a.use_staging = r.bool("autocert_use_staging").unwrap_or(false);
    a.eab_key_id = r.string("autocert_eab_key_id");
    a.eab_mac_key = r.string("autocert_eab_mac_key").map(Secret::new);
    a.must_staple = r.bool("autocert_must_staple").unwrap_or(false);
    a.trusted_ca = r
        .material("autocert_trusted_ca", "autocert_trusted_ca_file", Encoding::Base64, Precedence::Inline)
        .and_then(|material| certificates(&material, r.sink));
}

const ISSUER_FORMATS: &[(&str, JwtIssuerFormat)] =
    &[("hostOnly", JwtIssuerFormat::HostOnly), ("uri", JwtIssuerFormat::Uri)];

pub(crate) const BEARER_TOKEN_FORMATS: &[(&str, BearerTokenFormat)] = &[
    ("default", BearerTokenFormat::Default),
    ("idp_access_token", BearerTokenFormat::IdpAccessToken),
    ("idp_identity_token", BearerTokenFormat::IdpIdentityToken),
    ("jwt", BearerTokenFormat::Jwt),
];

fn read_identity_headers(r: &mut Reader<'_>, o: &mut Options) {
    if let Some(claims) = r.with("jwt_claims_headers", headers::jwt_claims_headers) {
        o.jwt_claims_headers = claims;
    }
    o.jwt_issuer_format = r.with("jwt_issuer_format", |field, sink| field.choice(sink, ISSUER_FORMATS, false));
    o.jwt_groups_filter = r.list("jwt_groups_filter");
    o.bearer_token_format = r.choice("bearer_token_format", BEARER_TOKEN_FORMATS);
    if o.bearer_token_format == Some(BearerTokenFormat::Jwt)
        && let Some(field) = r.field("bearer_token_format")
    {
        r.sink.warning(&field.origin, crate::diagnostic::JwtBearerFormat { span: field.span().into() });
    }
    o.pass_identity_headers = r.bool("pass_identity_headers");
    if let Some(field) = r.field("set_response_headers") {
        o.set_response_headers = response_headers(&field, r.sink);
    }
}

/// A header map whose keys must be header names (or `disable`).
pub(crate) fn response_headers(field: &Field, sink: &mut Sink) -> Option<BTreeMap<String, String>> {
    let entries = field.map(sink)?;
    let mut out = BTreeMap::new();
    for (name, value) in entries {
        if !headers::is_header_name(&name.value) {
            let child = Field {
                name: field.name.clone(),
                key_span: name.span,
                value: Value::new(ValueKind::String(name.value.clone()), name.span),
                origin: field.origin.clone(),
            };
            child.invalid(sink, format!("`{}` is not a header name", name.value), None);
            continue;
        }
        out.insert(name.value, value.value);
    }
    Some(out)
}

const CODECS: &[(&str, CodecType)] =
    &[("auto", CodecType::Auto), ("http1", CodecType::Http1), ("http2", CodecType::Http2), ("http3", CodecType::Http3)];

const ESCAPED_SLASHES: &[(&str, EscapedSlashesAction)] = &[
    ("implementation_specific_default", EscapedSlashesAction::ImplementationSpecificDefault),
    ("keep_unchanged", EscapedSlashesAction::KeepUnchanged),
    ("reject_request", EscapedSlashesAction::RejectRequest),
    ("unescape_and_redirect", EscapedSlashesAction::UnescapeAndRedirect),
    ("unescape_and_forward", EscapedSlashesAction::UnescapeAndForward),
];

const UNDERSCORES: &[(&str, UnderscoresAction)] = &[
    ("allow", UnderscoresAction::Allow),
    ("reject_request", UnderscoresAction::RejectRequest),
    ("drop_header", UnderscoresAction::DropHeader),
];

fn read_http(r: &mut Reader<'_>, o: &mut Options) {
    for (key, slot) in [
        ("timeout_read", &mut o.timeout_read),
        ("timeout_write", &mut o.timeout_write),
        ("timeout_idle", &mut o.timeout_idle),
        ("default_upstream_timeout", &mut o.default_upstream_timeout),
    ] {
        if let Some(duration) = r.duration(key) {
            *slot = duration;
        }
    }
    if let Some(hops) = r.with("xff_num_trusted_hops", Field::u32) {
        o.xff_num_trusted_hops = hops;
    }
    o.skip_xff_append = r.bool("skip_xff_append").unwrap_or(false);
    o.use_proxy_protocol = r.bool("use_proxy_protocol").unwrap_or(false);
    if let Some(codec) = r.choice("codec_type", CODECS) {
        o.codec_type = codec;
    }
    o.normalize_path = r.bool("normalize_path").unwrap_or(true);
    o.merge_slashes = r.bool("merge_slashes").unwrap_or(true);
    if let Some(action) = r.choice("path_with_escaped_slashes_action", ESCAPED_SLASHES) {
        o.path_with_escaped_slashes_action = action;
    }
    if let Some(action) = r.choice("headers_with_underscores_action", UNDERSCORES) {
        o.headers_with_underscores_action = action;
    }
    o.allow_upgrades = r.list("allow_upgrades");
}

const LOG_LEVELS: &[(&str, LogLevel)] = &[
    ("trace", LogLevel::Trace),
    ("debug", LogLevel::Debug),
    ("info", LogLevel::Info),
    ("warn", LogLevel::Warn),
    ("warning", LogLevel::Warn),
    ("error", LogLevel::Error),
    ("fatal", LogLevel::Fatal),
    ("panic", LogLevel::Panic),
    ("disabled", LogLevel::Disabled),
];

fn read_observability(r: &mut Reader<'_>, o: &mut Options) {
    o.metrics_address = r.string("metrics_address");
    o.metrics_basic_auth = r.string("metrics_basic_auth").map(Secret::new);
    let (cert, key) = (r.field("metrics_certificate"), r.field("metrics_certificate_key"));
    o.metrics_certificate = pair(r, cert.as_ref(), key.as_ref(), Encoding::Base64);
    if o.metrics_certificate.is_none() {
        let (cert, key) = (r.field("metrics_certificate_file"), r.field("metrics_certificate_key_file"));
        o.metrics_certificate = file_pair(r, cert.as_ref(), key.as_ref());
    }
    o.metrics_client_ca = r
        .material("metrics_client_ca", "metrics_client_ca_file", Encoding::Base64, Precedence::Inline)
        .and_then(|material| certificates(&material, r.sink));
    if let Some(address) = r.string("health_check_addr") {
        o.health_check_addr = address;
    }
    o.debug_address = r.string("debug_address");
    if let Some(level) = r.choice("log_level", LOG_LEVELS) {
        o.log_level = level;
    }
    o.proxy_log_level = r.choice("proxy_log_level", LOG_LEVELS);
    o.access_log_fields =
        r.with("access_log_fields", |f, sink| crate::log_fields::read(f, sink, crate::log_fields::ACCESS_FIELDS));
    o.authorize_log_fields =
        r.with("authorize_log_fields", |f, sink| crate::log_fields::read(f, sink, crate::log_fields::AUTHORIZE_FIELDS));
    if let Some(field) = r.field("runtime_flags") {
        read_runtime_flags(&field, r.sink, o);
    }
}

fn read_runtime_flags(field: &Field, sink: &mut Sink, o: &mut Options) {
    let Some(entries) = field.object(sink) else { return };
    let names: Vec<&str> = RUNTIME_FLAGS.iter().map(|(name, _)| *name).collect();
    for entry in &entries {
        let child = field.child(entry);
        if !names.contains(&entry.key.as_str()) {
            // Pomerium logs `unknown runtime flag` and goes on.
            let help = ppl::suggest::did_you_mean(&entry.key, &names);
            sink.warning(
                &field.origin,
                crate::diagnostic::UnknownOption { option: child.name.clone(), span: entry.key_span.into(), help },
            );
        }
        if let Some(value) = child.bool(sink) {
            o.runtime_flags.insert(entry.key.clone(), value);
        }
    }
}

const STORAGE: &[(&str, StorageType)] =
    &[("memory", StorageType::Memory), ("file", StorageType::File), ("postgres", StorageType::Postgres)];

/// libpq's `sslmode` values (the storage checks the rest of the connection string itself).
const SSL_MODES: &[&str] = &["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

/// The `sslmode` a libpq connection string sets (the last one, as libpq), URL or `key=value`.
fn connection_sslmode(dsn: &str) -> Option<String> {
    let dsn = dsn.trim();
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        let (_, query) = dsn.split_once('?')?;
        // A percent-encoded value is left to the storage, which decodes it.
        return query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter(|(key, value)| *key == "sslmode" && !value.contains('%'))
            .map(|(_, value)| value.to_owned())
            .next_back();
    }
    let mut chars = dsn.chars().peekable();
    let mut mode = None;
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return mode;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return mode;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if quoted => break,
                c if c.is_whitespace() && !quoted => break,
                '\\' => value.extend(chars.next()),
                c => value.push(c),
            }
        }
        if key == "sslmode" {
            mode = Some(value);
        }
    }
}

fn read_databroker(r: &mut Reader<'_>, o: &mut Options) {
    o.databroker.service_urls = url_list(r, "databroker_service_url", "databroker_service_urls");
    o.databroker.internal_service_url = r.url("databroker_internal_service_url");
    let storage_field = r.field("databroker_storage_type");
    if let Some(field) = &storage_field
        && let Some(text) = field.value.as_str()
        && let Some((reason, help)) = match text.trim() {
            "redis" => Some((
                "was removed from pomerium",
                "use `postgres` (with `databroker_storage_connection_string`), or `memory`",
            )),
            "file" => Some((
                "is not supported here",
                "use `memory`, or `postgres` to keep data across restarts and share it between replicas",
            )),
            _ => None,
        }
    {
        let error = UnsupportedValue {
            option: field.name.clone(),
            text: text.to_owned(),
            reason,
            span: field.span().into(),
            help: help.to_owned(),
        };
        r.sink.error(&field.origin, error);
        return;
    }
    if let Some(storage) = r.with("databroker_storage_type", |field, sink| field.choice(sink, STORAGE, false)) {
        o.databroker.storage_type = storage;
    }
    let dsn = r.material(
        "databroker_storage_connection_string",
        "databroker_storage_connection_string_file",
        Encoding::Text,
        Precedence::File,
    );
    if let (StorageType::Postgres, Some(m)) = (o.databroker.storage_type, &dsn)
        && let Some(mode) = connection_sslmode(&String::from_utf8_lossy(&m.bytes))
        && !SSL_MODES.contains(&mode.as_str())
    {
        // Only the `sslmode` pair is quoted: the rest may hold a password.
        r.sink.error(
            &m.origin,
            UnknownValue {
                option: m.option.clone(),
                text: format!("sslmode={mode}"),
                span: m.span.into(),
                help: Some(format!("sslmode takes {}", SSL_MODES.join(", "))),
            },
        );
    }
    // Pomerium trims the file's white space (`GetDataBrokerStorageConnectionString`).
    o.databroker.storage_connection_string =
        dsn.map(|m| Secret::new(String::from_utf8_lossy(&m.bytes).trim().as_bytes().to_vec()));
    if let (StorageType::Postgres, None, Some(field)) =
        (o.databroker.storage_type, &o.databroker.storage_connection_string, storage_field)
    {
        r.sink.error(
            &field.origin,
            Missing {
                option: "databroker_storage_connection_string".to_owned(),
                because: "with postgres storage".to_owned(),
                span: field.span().into(),
                help: Some("set it to a postgres url, e.g. `postgres://user:pass@db:5432/pomerium`".to_owned()),
            },
        );
    }
}

const ENFORCEMENT: &[(&str, MtlsEnforcement)] = &[
    ("policy", MtlsEnforcement::Policy),
    ("policy_with_default_deny", MtlsEnforcement::PolicyWithDefaultDeny),
    ("reject_connection", MtlsEnforcement::RejectConnection),
];

const SAN_TYPES: &[(&str, SanType)] = &[
    ("dns", SanType::Dns),
    ("email", SanType::Email),
    ("ip_address", SanType::IpAddress),
    ("uri", SanType::Uri),
    ("user_principal_name", SanType::UserPrincipalName),
];

/// The schema of `downstream_mtls`, whose fields have variables `DOWNSTREAM_MTLS_<FIELD>`.
pub(crate) fn mtls_schema() -> Schema<'static> {
    Schema {
        path: "downstream_mtls",
        known: &[keys::DOWNSTREAM_MTLS],
        removed: &[],
        env_prefix: Some("DOWNSTREAM_MTLS_"),
        env_exempt: &[],
    }
}

fn read_downstream_mtls(section: &Section, env: &dyn Environment, sink: &mut Sink) -> DownstreamMtls {
    let mut mtls = DownstreamMtls::default();
    let mut r = Reader { section, sink, env };
    mtls.ca = r
        .material("ca", "ca_file", Encoding::Base64, Precedence::Exclusive)
        .and_then(|material| certificates(&material, r.sink));
    mtls.crl = r.material("crl", "crl_file", Encoding::Base64, Precedence::Exclusive).and_then(|m| crls(&m, r.sink));
    if let Some(enforcement) = r.choice("enforcement", ENFORCEMENT) {
        mtls.enforcement = enforcement;
    }
    if let Some(depth) = r.with("max_verify_depth", Field::u32) {
        mtls.max_verify_depth = depth;
    }
    if let Some(field) = r.field("match_subject_alt_names") {
        mtls.match_subject_alt_names = san_matchers(&field, r.sink);
    }
    mtls
}

/// `[{dns: pattern}, {email: pattern}]`: each item one type and a re2 pattern.
fn san_matchers(field: &Field, sink: &mut Sink) -> Vec<SanMatcher> {
    let Some(items) = field.value.as_array() else {
        field.wrong_type(sink, "a list of `{type: pattern}` objects", None);
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let item = field.item(item);
        let Some(entries) = item.object(sink) else { continue };
        let [entry] = entries.as_slice() else {
            item.invalid(sink, "each matcher has exactly one key, the san type".to_owned(), None);
            continue;
        };
        let type_field = Field {
            name: format!("{}.type", field.name),
            key_span: entry.key_span,
            value: Value::new(ValueKind::String(entry.key.clone()), entry.key_span),
            origin: item.origin.clone(),
        };
        let san_type = type_field.choice(sink, SAN_TYPES, true);
        let pattern_field = item.child(entry);
        let pattern = pattern_field.string(sink).filter(|p| crate::route::check_regex(&pattern_field, p, sink));
        if let (Some(san_type), Some(pattern)) = (san_type, pattern) {
            out.push(SanMatcher { san_type, pattern });
        }
    }
    out
}

/// Reports `first` and `second` set together.
pub(crate) fn conflict(first: &Field, second: &Field, help: Option<String>, sink: &mut Sink) {
    let other = (first.origin == second.origin).then(|| first.key_span.into());
    sink.error(
        &second.origin,
        Conflict { first: first.name.clone(), second: second.name.clone(), span: second.key_span.into(), other, help },
    );
}

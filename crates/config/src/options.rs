//! Global options (system.md §1.3), typed, with Pomerium's defaults (`config/options.go`
//! `defaultOptions`).

use crate::declare::{
    Declared, Keys, Reader, boolean, certificates_in, choice, crls_in, declare, duration, exact_choice, key, later,
    list, nested, secret, secret_or_file, string, unsigned, url, value,
};
use crate::diagnostic::{BadSecret, BadUrl, Conflict, Missing, UnknownValue, UnsupportedValue};
use crate::env::Environment;
use crate::headers;
use crate::keys;
use crate::material::{
    self, Certificates, CertifiedKey, Crls, Encoding, Material, Precedence, PrivateKey, inline_or_file, private_key,
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

/// `grpc_address` when none is set (Pomerium's default).
pub const DEFAULT_GRPC_ADDRESS: &str = ":443";

// Every global option, declared once: its field, type, default, keys and reader. The keys make
// `keys::GLOBAL_TYPED`; see `crate::declare` for the readers and the defaulting rule.
declare! {
    /// Global options read into typed fields of [`Options`], as declared there, and the ones
    /// `load` reads itself (the route lists).
    keys GLOBAL_TYPED, elsewhere ["policy", "routes"];

    struct CookieOptions() {
        name: String = "_pomerium".to_owned(), ["cookie_name"] string;
        domain: Option<String> = None, ["cookie_domain"] string;
        http_only: bool = true, ["cookie_http_only"] boolean;
        expire: Duration = Duration::from_secs(14 * 3600), ["cookie_expire"] duration;
        same_site: Option<SameSite> = None, ["cookie_same_site"] choice(SAME_SITE);
        /// The 32-byte key, decoded. `None` in `all` mode means a random key per process.
        secret: Option<Secret> = None, ["cookie_secret", "cookie_secret_file"] cookie_secret;
    }
    then [];

    struct IdpOptions() {
        provider: Option<String> = None, ["idp_provider"] string;
        provider_url: Option<String> = None, ["idp_provider_url"] string;
        client_id: Option<String> = None, ["idp_client_id"] string;
        client_secret: Option<Secret> = None, ["idp_client_secret", "idp_client_secret_file"] secret_or_file;
        /// `None`: the provider's defaults (`openid profile email offline_access` for OIDC).
        scopes: Option<Vec<String>> = None, ["idp_scopes"] list;
        request_params: BTreeMap<String, String> = BTreeMap::new(), ["idp_request_params"] request_params;
        access_token_allowed_audiences: Option<Vec<String>> = None, ["idp_access_token_allowed_audiences"] list;
        /// `idp_development_users` (ours): the users `idp_provider: development` offers. That provider
        /// runs inside the authenticate service, for development only.
        development_users: Vec<DevelopmentUser> = Vec::new(), ["idp_development_users"] development_users;
    }
    then [];

    struct AutocertOptions() {
        enable: bool = false, ["autocert"] boolean;
        dir: Option<String> = None, ["autocert_dir"] string;
        ca: Option<Url> = None, ["autocert_ca"] url;
        email: Option<String> = None, ["autocert_email"] string;
        use_staging: bool = false, ["autocert_use_staging"] boolean;
        eab_key_id: Option<String> = None, ["autocert_eab_key_id"] string;
        eab_mac_key: Option<Secret> = None, ["autocert_eab_mac_key"] secret;
        must_staple: bool = false, ["autocert_must_staple"] boolean;
        trusted_ca: Option<Certificates> = None,
            ["autocert_trusted_ca", "autocert_trusted_ca_file"] certificates_in(Precedence::Inline);
    }
    then [];

    struct DatabrokerOptions() {
        /// `databroker_service_url` then `databroker_service_urls`.
        service_urls: Vec<Url> = Vec::new(), ["databroker_service_url", "databroker_service_urls"] url_list;
        internal_service_url: Option<Url> = None, ["databroker_internal_service_url"] url;
        // These two are read together, by `read_storage`.
        storage_type: StorageType = StorageType::Memory, ["databroker_storage_type"] later;
        storage_connection_string: Option<Secret> = None,
            ["databroker_storage_connection_string", "databroker_storage_connection_string_file"] later;
    }
    then [read_storage];

    /// Every global option. Unset options hold Pomerium's defaults; accessors compute what depends on
    /// several options (the gRPC address, the authenticate URL, response headers).
    struct Options() {
        services: Services = Services::all(), ["services"] services;
        address: String = ":443".to_owned(), ["address"] string;
        insecure_server: bool = false, ["insecure_server"] boolean;
        grpc_address: String = DEFAULT_GRPC_ADDRESS.to_owned(), ["grpc_address"] string;
        grpc_insecure: Option<bool> = None, ["grpc_insecure"] boolean;
        grpc_client_timeout: Duration = Duration::from_secs(10), ["grpc_client_timeout"] duration;
        http_redirect_addr: Option<String> = None, ["http_redirect_addr"] redirect_addr;
        dns_lookup_family: Option<DnsLookupFamily> = None, ["dns_lookup_family"] choice(DNS_LOOKUP_FAMILIES);
        authenticate_service_url: Option<Url> = None, ["authenticate_service_url"] url;
        authenticate_internal_service_url: Option<Url> = None, ["authenticate_internal_service_url"] url;
        /// The environment's `DEBUG_FORCE_AUTHENTICATE_FLOW` (`stateless` or `stateful`), as given.
        force_authenticate_flow: Option<String> = None, [] force_authenticate_flow;
        authenticate_callback_path: String = "/oauth2/callback".to_owned(), ["authenticate_callback_path"] string;
        /// `authorize_service_url` then `authorize_service_urls`.
        authorize_service_urls: Vec<Url> = Vec::new(), ["authorize_service_url", "authorize_service_urls"] url_list;
        authorize_internal_service_url: Option<Url> = None, ["authorize_internal_service_url"] url;
        databroker: DatabrokerOptions = DatabrokerOptions::default(), [] nested;
        signout_redirect_url: Option<Url> = None, ["signout_redirect_url"] url;
        programmatic_redirect_domain_whitelist: Vec<String> = vec!["localhost".to_owned()],
            ["programmatic_redirect_domain_whitelist"] list;
        /// The 32-byte key, decoded. `None` in `all` mode means a random key per process.
        shared_secret: Option<Secret> = None, ["shared_secret", "shared_secret_file"] shared_secret;
        cookie: CookieOptions = CookieOptions::default(), [] nested;
        idp: IdpOptions = IdpOptions::default(), [] nested;
        /// Extra identity providers for verifying bearer JWTs, as written.
        identity_providers: Option<Value> = None, ["identity_providers"] value;
        /// `None`: a P-256 key is derived from the shared secret.
        signing_key: Option<PrivateKey> = None, ["signing_key", "signing_key_file"] signing_key;
        /// `pomerium_zero_token` (`POMERIUM_ZERO_TOKEN`): the cluster token of managed mode. Its key is
        /// one of `keys::GLOBAL_RAW` (it is also kept as written in `other`).
        zero_token: Option<Secret> = None, [] zero_token;
        /// `certificate`/`certificate_key`, `certificates`, then `certificate_file`/`certificate_key_file`.
        certificates: Vec<CertifiedKey> = Vec::new(),
            ["certificate", "certificate_key", "certificates", "certificate_file", "certificate_key_file"]
            read_certificates;
        certificate_authority: Option<Certificates> = None,
            ["certificate_authority", "certificate_authority_file"] certificates_in(Precedence::Inline);
        autocert: AutocertOptions = AutocertOptions::default(), [] nested;
        /// Read from its own object (`keys::DOWNSTREAM_MTLS`), by `read`.
        downstream_mtls: DownstreamMtls = DownstreamMtls::default(), ["downstream_mtls"] later;
        /// `None`: the defaults (see [`Options::response_headers`]). `HEADERS` replaces it.
        set_response_headers: Option<BTreeMap<String, String>> = None,
            ["set_response_headers"] set_response_headers;
        /// Header → claim.
        jwt_claims_headers: BTreeMap<String, String> = BTreeMap::new(), ["jwt_claims_headers"] jwt_claims_headers;
        jwt_issuer_format: Option<JwtIssuerFormat> = None, ["jwt_issuer_format"] exact_choice(ISSUER_FORMATS);
        jwt_groups_filter: Option<Vec<String>> = None, ["jwt_groups_filter"] list;
        bearer_token_format: Option<BearerTokenFormat> = None, ["bearer_token_format"] bearer_token_format;
        pass_identity_headers: Option<bool> = None, ["pass_identity_headers"] boolean;
        timeout_read: Duration = Duration::from_secs(30), ["timeout_read"] duration;
        timeout_write: Duration = Duration::ZERO, ["timeout_write"] duration;
        timeout_idle: Duration = Duration::from_secs(300), ["timeout_idle"] duration;
        default_upstream_timeout: Duration = Duration::from_secs(30), ["default_upstream_timeout"] duration;
        metrics_address: Option<String> = None, ["metrics_address"] string;
        /// `metrics_basic_auth`: the base64 of `user:password` a request to `/metrics` must send.
        metrics_basic_auth: Option<Secret> = None, ["metrics_basic_auth"] secret;
        /// `metrics_certificate`/`_key` (base64) or the `_file` pair: `/metrics` over HTTPS.
        metrics_certificate: Option<CertifiedKey> = None,
            [
                "metrics_certificate",
                "metrics_certificate_key",
                "metrics_certificate_file",
                "metrics_certificate_key_file",
            ]
            metrics_certificate;
        /// `metrics_client_ca` (base64) or `_file`: `/metrics` requires a client certificate from it.
        metrics_client_ca: Option<Certificates> = None,
            ["metrics_client_ca", "metrics_client_ca_file"] certificates_in(Precedence::Inline);
        health_check_addr: String = "127.0.0.1:28080".to_owned(), ["health_check_addr"] string;
        debug_address: Option<String> = None, ["debug_address"] string;
        log_level: LogLevel = LogLevel::Info, ["log_level"] choice(LOG_LEVELS);
        proxy_log_level: Option<LogLevel> = None, ["proxy_log_level"] choice(LOG_LEVELS);
        access_log_fields: Option<Vec<String>> = None,
            ["access_log_fields"] log_fields(crate::log_fields::ACCESS_FIELDS);
        authorize_log_fields: Option<Vec<String>> = None,
            ["authorize_log_fields"] log_fields(crate::log_fields::AUTHORIZE_FIELDS);
        /// The `otel_*` options: OpenTelemetry tracing.
        otel: crate::otel::OtelOptions = crate::otel::OtelOptions::default(),
            [
                "otel_traces_exporter",
                "otel_traces_sampler_arg",
                "otel_resource_attributes",
                "otel_attribute_value_length_limit",
                "otel_exporter_otlp_endpoint",
                "otel_exporter_otlp_traces_endpoint",
                "otel_exporter_otlp_protocol",
                "otel_exporter_otlp_traces_protocol",
                "otel_exporter_otlp_headers",
                "otel_exporter_otlp_traces_headers",
                "otel_exporter_otlp_timeout",
                "otel_exporter_otlp_traces_timeout",
                "otel_bsp_schedule_delay",
                "otel_bsp_max_export_batch_size",
            ]
            otel;
        xff_num_trusted_hops: u32 = 0, ["xff_num_trusted_hops"] unsigned;
        skip_xff_append: bool = false, ["skip_xff_append"] boolean;
        use_proxy_protocol: bool = false, ["use_proxy_protocol"] boolean;
        codec_type: CodecType = CodecType::Auto, ["codec_type"] choice(CODECS);
        normalize_path: bool = true, ["normalize_path"] boolean;
        merge_slashes: bool = true, ["merge_slashes"] boolean;
        path_with_escaped_slashes_action: EscapedSlashesAction = EscapedSlashesAction::RejectRequest,
            ["path_with_escaped_slashes_action"] choice(ESCAPED_SLASHES);
        headers_with_underscores_action: UnderscoresAction = UnderscoresAction::RejectRequest,
            ["headers_with_underscores_action"] choice(UNDERSCORES);
        /// Every known flag with its value (defaults filled in), plus unknown ones as written.
        runtime_flags: BTreeMap<String, bool> =
            RUNTIME_FLAGS.iter().map(|(name, value)| ((*name).to_owned(), *value)).collect(),
            ["runtime_flags"] runtime_flags;
        allow_upgrades: Option<Vec<String>> = None, ["allow_upgrades"] list;
        /// Options Pomerium knows that are kept as written (tracing, metrics TLS, branding, ...): the
        /// keys of `keys::GLOBAL_RAW`.
        other: BTreeMap<String, Value> = BTreeMap::new(), [] other;
    }
    then [
        check_development_provider,
        warn_hosted_authenticate,
        require_split_mode_secrets,
        require_grpc_secret,
        require_databroker_url,
    ];
}

declare! {
    /// Fields of `downstream_mtls` (`config/mtls.go`).
    keys DOWNSTREAM_MTLS, elsewhere [];

    struct DownstreamMtls() {
        ca: Option<Certificates> = None, ["ca", "ca_file"] certificates_in(Precedence::Exclusive);
        crl: Option<Crls> = None, ["crl", "crl_file"] crls_in;
        enforcement: MtlsEnforcement = MtlsEnforcement::PolicyWithDefaultDeny, ["enforcement"] choice(ENFORCEMENT);
        match_subject_alt_names: Vec<SanMatcher> = Vec::new(), ["match_subject_alt_names"] san_matchers;
        /// The longest chain accepted, not counting the leaf; 0 means no limit.
        max_verify_depth: u32 = 1, ["max_verify_depth"] unsigned;
    }
    then [];
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

/// Reads the global options. `section` holds the file's keys with the environment applied, `mtls`
/// the object `downstream_mtls`.
pub(crate) fn read(section: &Section, mtls: &Section, env: &dyn Environment, sink: &mut Sink) -> Options {
    let mut options = Options::default();
    options.read_declared(&mut Reader { section, sink, env });
    options.downstream_mtls.read_declared(&mut Reader { section: mtls, sink, env });
    options
}

/// In `all` mode a `grpc_address` of its own opens the gRPC listener (for other processes, such as
/// the ingress controller), whose every call is signed with the shared secret: the server refuses
/// to start without one.
fn require_grpc_secret(r: &mut Reader<'_>, options: &mut Options) {
    let Some(address) = r.section.get("grpc_address") else { return };
    if !options.services.is_all() || options.grpc_address == DEFAULT_GRPC_ADDRESS || options.shared_secret.is_some() {
        return;
    }
    r.sink.error(
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
fn require_databroker_url(r: &mut Reader<'_>, options: &mut Options) {
    let Some(services) = r.section.get("services") else { return };
    let s = &options.services;
    let follows = !s.runs(Service::Databroker)
        && (s.runs(Service::Proxy) || s.runs(Service::Authorize) || s.runs(Service::Authenticate));
    if !follows || !options.databroker.service_urls.is_empty() || options.databroker.internal_service_url.is_some() {
        return;
    }
    r.sink.error(
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
fn require_split_mode_secrets(r: &mut Reader<'_>, options: &mut Options) {
    let Some(services) = r.section.get("services").filter(|_| !options.services.is_all()) else { return };
    let cookie_needed = options.services.runs(Service::Authenticate) || options.services.runs(Service::Proxy);
    let missing = [
        ("shared_secret", options.shared_secret.is_none(), "every service"),
        ("cookie_secret", cookie_needed && options.cookie.secret.is_none(), "authenticate and proxy"),
    ];
    for (option, is_missing, who) in missing {
        if is_missing {
            r.sink.error(
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

/// `services`: a list (or comma-separated string) of service names.
fn services(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Services) {
    let Some(field) = r.field(key(keys)) else { return };
    let services: Vec<Service> = field
        .list(r.sink)
        .unwrap_or_default()
        .iter()
        .filter_map(|item| {
            field.item(&Value::new(ValueKind::String(item.value.clone()), item.span)).choice(r.sink, SERVICES, false)
        })
        .collect();
    if !services.is_empty() {
        *slot = Services(services);
    }
}

/// Pomerium strips quotes from `http_redirect_addr` (#811).
fn redirect_addr(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<String>) {
    if let Some(address) = r.string(key(keys)) {
        *slot = Some(address.trim_matches(|c| c == '"' || c == '\'').to_owned());
    }
}

const DNS_LOOKUP_FAMILIES: &[(&str, DnsLookupFamily)] = &[
    ("auto", DnsLookupFamily::Auto),
    ("v4_only", DnsLookupFamily::V4Only),
    ("v6_only", DnsLookupFamily::V6Only),
    ("v4_preferred", DnsLookupFamily::V4Preferred),
    ("all", DnsLookupFamily::All),
];

/// The environment's `DEBUG_FORCE_AUTHENTICATE_FLOW` (no option sets it).
fn force_authenticate_flow(r: &mut Reader<'_>, _: Keys<'_>, slot: &mut Option<String>) {
    *slot = r.env.var("DEBUG_FORCE_AUTHENTICATE_FLOW").filter(|v| !v.is_empty());
}

/// `x_url` then every entry of `x_urls`.
fn url_list(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Vec<Url>) {
    let &[single, many] = keys else { return };
    slot.extend(r.url(single));
    if let Some(field) = r.field(many) {
        for item in field.list(r.sink).unwrap_or_default() {
            let item_field = field.item(&Value::new(ValueKind::String(item.value), item.span));
            slot.extend(global_url(&item_field, r.sink));
        }
    }
}

fn shared_secret(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<Secret>) {
    let &[inline, file] = keys else { return };
    if let Some(material) = r.material(inline, file, Encoding::Text, Precedence::File) {
        *slot = key_32(&material, true, r.sink);
    }
}

fn cookie_secret(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<Secret>) {
    let &[inline, file] = keys else { return };
    if let Some(material) = r.material(inline, file, Encoding::Text, Precedence::File) {
        *slot = key_32(&material, false, r.sink);
    }
}

fn signing_key(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<PrivateKey>) {
    let &[inline, file] = keys else { return };
    if let Some(material) = r.material(inline, file, Encoding::Text, Precedence::File) {
        *slot = signing_key_pem(material, r.sink);
    }
}

fn zero_token(r: &mut Reader<'_>, _: Keys<'_>, slot: &mut Option<Secret>) {
    *slot = r.string("pomerium_zero_token").map(|token| Secret::new(token.trim().as_bytes().to_vec()));
}

/// The options Pomerium knows that are kept as written.
fn other(r: &mut Reader<'_>, _: Keys<'_>, slot: &mut BTreeMap<String, Value>) {
    *slot = r.section.raw(keys::GLOBAL_RAW);
}

fn otel(r: &mut Reader<'_>, _: Keys<'_>, slot: &mut crate::otel::OtelOptions) {
    *slot = crate::otel::read(r.section, r.env, r.sink);
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
fn signing_key_pem(mut material: Material, sink: &mut Sink) -> Option<PrivateKey> {
    let text = String::from_utf8_lossy(&material.bytes).trim().to_owned();
    if let Ok(decoded) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text.as_bytes()) {
        material.bytes = decoded;
    }
    private_key(&material, sink)
}

const SAME_SITE: &[(&str, Option<SameSite>)] =
    &[("", None), ("strict", Some(SameSite::Strict)), ("lax", Some(SameSite::Lax)), ("none", Some(SameSite::None))];

fn request_params(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut BTreeMap<String, String>) {
    if let Some(params) = r.with(key(keys), Field::map) {
        *slot = params.into_iter().map(|(k, v)| (k.value, v.value)).collect();
    }
}

fn development_users(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Vec<DevelopmentUser>) {
    if let Some(field) = r.field(key(keys)) {
        *slot = read_development_users(r, &field);
    }
}

/// A warning when an identity provider is set but sign-in goes through the hosted authenticate
/// service, which uses its own.
fn warn_hosted_authenticate(r: &mut Reader<'_>, o: &mut Options) {
    if o.idp.provider.is_some()
        && o.uses_hosted_authenticate()
        && let Some(provider) = r.field("idp_provider")
    {
        r.sink.warning(&provider.origin, crate::diagnostic::HostedAuthenticate { span: provider.span().into() });
    }
}

/// The development provider is named in every check (it lets anyone in), needs its users, and
/// its users mean nothing to another provider.
fn check_development_provider(r: &mut Reader<'_>, o: &mut Options) {
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

fn read_certificates(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Vec<CertifiedKey>) {
    let &[cert, key, list, cert_file, key_file] = keys else { return };
    let (cert, key, list, cert_file, key_file) =
        (r.field(cert), r.field(key), r.field(list), r.field(cert_file), r.field(key_file));
    slot.extend(pair(r, cert.as_ref(), key.as_ref(), Encoding::Base64));
    if let Some(field) = list {
        read_certificate_files(r, &field, slot);
    }
    slot.extend(file_pair(r, cert_file.as_ref(), key_file.as_ref()));
}

/// `certificates: [{cert: path, key: path}]`.
fn read_certificate_files(r: &mut Reader<'_>, field: &Field, out: &mut Vec<CertifiedKey>) {
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
        out.extend(file_pair(r, cert.as_ref(), key.as_ref()));
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

pub(crate) const ISSUER_FORMATS: &[(&str, JwtIssuerFormat)] =
    &[("hostOnly", JwtIssuerFormat::HostOnly), ("uri", JwtIssuerFormat::Uri)];

pub(crate) const BEARER_TOKEN_FORMATS: &[(&str, BearerTokenFormat)] = &[
    ("default", BearerTokenFormat::Default),
    ("idp_access_token", BearerTokenFormat::IdpAccessToken),
    ("idp_identity_token", BearerTokenFormat::IdpIdentityToken),
    ("jwt", BearerTokenFormat::Jwt),
];

pub(crate) fn set_response_headers(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<BTreeMap<String, String>>) {
    if let Some(field) = r.field(key(keys)) {
        *slot = response_headers(&field, r.sink);
    }
}

fn jwt_claims_headers(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut BTreeMap<String, String>) {
    if let Some(claims) = r.with(key(keys), headers::jwt_claims_headers) {
        *slot = claims;
    }
}

/// `bearer_token_format` (global or a route's); `jwt` is warned about.
pub(crate) fn bearer_token_format(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<BearerTokenFormat>) {
    choice(BEARER_TOKEN_FORMATS)(r, keys, slot);
    if *slot == Some(BearerTokenFormat::Jwt)
        && let Some(field) = r.field(key(keys))
    {
        r.sink.warning(&field.origin, crate::diagnostic::JwtBearerFormat { span: field.span().into() });
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

fn metrics_certificate(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<CertifiedKey>) {
    let &[cert, key, cert_file, key_file] = keys else { return };
    let (cert, key) = (r.field(cert), r.field(key));
    *slot = pair(r, cert.as_ref(), key.as_ref(), Encoding::Base64);
    if slot.is_none() {
        let (cert, key) = (r.field(cert_file), r.field(key_file));
        *slot = file_pair(r, cert.as_ref(), key.as_ref());
    }
}

/// `access_log_fields`, `authorize_log_fields`: names among `known`.
fn log_fields(known: &'static [&'static str]) -> impl Fn(&mut Reader<'_>, Keys<'_>, &mut Option<Vec<String>>) {
    move |r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<Vec<String>>| {
        if let Some(fields) = r.with(key(keys), |field, sink| crate::log_fields::read(field, sink, known)) {
            *slot = Some(fields);
        }
    }
}

fn runtime_flags(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut BTreeMap<String, bool>) {
    if let Some(field) = r.field(key(keys)) {
        read_runtime_flags(&field, r.sink, slot);
    }
}

fn read_runtime_flags(field: &Field, sink: &mut Sink, flags: &mut BTreeMap<String, bool>) {
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
            flags.insert(entry.key.clone(), value);
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

/// `databroker_storage_type` and the connection string, read together: refused storages, the
/// `sslmode`, and postgres without a connection string.
fn read_storage(r: &mut Reader<'_>, o: &mut DatabrokerOptions) {
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
        o.storage_type = storage;
    }
    let dsn = r.material(
        "databroker_storage_connection_string",
        "databroker_storage_connection_string_file",
        Encoding::Text,
        Precedence::File,
    );
    if let (StorageType::Postgres, Some(m)) = (o.storage_type, &dsn)
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
    o.storage_connection_string =
        dsn.map(|m| Secret::new(String::from_utf8_lossy(&m.bytes).trim().as_bytes().to_vec()));
    if let (StorageType::Postgres, None, Some(field)) = (o.storage_type, &o.storage_connection_string, storage_field) {
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

/// `[{dns: pattern}, {email: pattern}]`: each item one type and a re2 pattern.
fn san_matchers(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Vec<SanMatcher>) {
    if let Some(field) = r.field(key(keys)) {
        *slot = read_san_matchers(&field, r.sink);
    }
}

fn read_san_matchers(field: &Field, sink: &mut Sink) -> Vec<SanMatcher> {
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

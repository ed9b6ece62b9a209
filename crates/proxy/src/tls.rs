//! Downstream TLS: which certificate to present, and what to ask of the client.
//!
//! - [`SniResolver`] picks a certificate by the client's SNI among the configured ones: an exact
//!   name first, then a wildcard `*.example.com` certificate, then the default (the first
//!   configured). Names are read from the certificates themselves (DNS SANs, else the CN). The
//!   set can be replaced at run time (a config reload) without rebuilding the `ServerConfig`.
//! - PEM is read with `rustls_pki_types::pem::PemObject`; every failure is a [`TlsError`].
//! - [`self_signed`] makes the bootstrap certificate used when none is configured.
//! - [`ServerTls`] builds the rustls `ServerConfig` (aws-lc-rs, TLS 1.2 and 1.3, ALPN `h2` and
//!   `http/1.1`) and, after a handshake, reports the client certificate to the handler.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConnection, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};

/// A problem with TLS material or settings. Raised at configuration time, never per request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The PEM text could not be read.
    #[error("invalid PEM: {0}")]
    Pem(#[source] rustls_pki_types::pem::Error),
    /// The PEM text holds no certificate.
    #[error("no certificate found in the PEM text")]
    NoCertificate,
    /// The PEM text holds no private key.
    #[error("no private key found in the PEM text")]
    NoPrivateKey,
    /// The certificate could not be parsed as X.509.
    #[error("the certificate cannot be parsed: {0}")]
    BadCertificate(String),
    /// The key is of an unsupported kind, or does not belong to the certificate.
    #[error("the private key cannot be used with the certificate: {0}")]
    Key(#[source] rustls::Error),
    /// A server name is not a valid DNS name or IP address.
    #[error("invalid server name `{0}`")]
    ServerName(String),
    /// The client CA set cannot be used.
    #[error("invalid client certificate authorities: {0}")]
    ClientCa(String),
    /// A certificate revocation list cannot be used.
    #[error("invalid certificate revocation list: {0}")]
    Crl(String),
    /// A `match_subject_alt_names` pattern does not compile.
    #[error("invalid subject alternative name pattern {0}")]
    SubjectAltName(String),
    /// The custom CA set for an upstream cannot be used.
    #[error("invalid upstream certificate authorities: {0}")]
    CustomCa(String),
    /// The self-signed certificate could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[source] rcgen::Error),
    /// rustls refused the configuration.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// The one crypto provider of the workspace.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The TLS versions the proxy speaks, downstream and upstream.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Every certificate in `pem`, in order (leaf first for a chain).
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(TlsError::Pem)?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certificates)
}

/// Certificates back as PEM text (what clients that take a CA bundle read).
pub fn certificates_to_pem(ders: &[CertificateDer<'static>]) -> Vec<u8> {
    use base64::Engine as _;
    let mut text = String::new();
    for der in ders {
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        text.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            text.push_str(&String::from_utf8_lossy(line));
            text.push('\n');
        }
        text.push_str("-----END CERTIFICATE-----\n");
    }
    text.into_bytes()
}

/// The first private key in `pem` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| match error {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey,
        error => TlsError::Pem(error),
    })
}

/// A certificate chain with its key, checked to belong together.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    CertifiedKey::from_der(chain, key, &provider()).map(Arc::new).map_err(TlsError::Key)
}

/// A certificate chain with its key, from PEM text.
pub fn certified_key_from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    certified_key(certificates_from_pem(chain_pem)?, private_key_from_pem(key_pem)?)
}

/// A self-signed certificate (ECDSA P-256) for `names`: the bootstrap certificate a server uses
/// when none is configured. Browsers will not trust it; the server should say so in its logs.
pub fn self_signed(names: &[String]) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let generated = rcgen::generate_simple_self_signed(names.to_vec()).map_err(TlsError::Generate)?;
    let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    Ok((vec![generated.cert.der().clone()], key))
}

/// The names a certificate is valid for: its DNS subject alternative names, or, when it has
/// none, its common name. Lowercased, without a trailing dot.
pub fn certificate_names(certificate: &CertificateDer<'_>) -> Result<Vec<String>, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
        .map_err(|error| TlsError::BadCertificate(error.to_string()))?;
    let sans = parsed.subject_alternative_name().map_err(|error| TlsError::BadCertificate(error.to_string()))?;
    let mut names: Vec<String> = sans
        .map(|extension| {
            extension
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some(normalize_name(dns)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names = parsed.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(normalize_name).collect();
    }
    Ok(names)
}

fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The certificates, indexed for lookup by server name.
#[derive(Debug, Default)]
struct CertIndex {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`: `example.com` for `*.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertIndex {
    fn build(certificates: &[Arc<CertifiedKey>]) -> Result<Self, TlsError> {
        let mut index = Self { default: certificates.first().cloned(), ..Self::default() };
        for certified in certificates {
            let leaf = certified.end_entity_cert().map_err(TlsError::Rustls)?;
            for name in certificate_names(leaf)? {
                // The first certificate configured for a name keeps it.
                match name.strip_prefix("*.") {
                    Some(parent) => index.wildcard.entry(parent.to_owned()).or_insert_with(|| Arc::clone(certified)),
                    None => index.exact.entry(name).or_insert_with(|| Arc::clone(certified)),
                };
            }
        }
        Ok(index)
    }

    fn select(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = server_name.map(normalize_name) else { return self.default.clone() };
        if let Some(exact) = self.exact.get(&name) {
            return Some(Arc::clone(exact));
        }
        // A wildcard covers exactly one label: `a.example.com`, not `example.com` nor `a.b.example.com`.
        let wildcard = name.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent));
        wildcard.cloned().or_else(|| self.default.clone())
    }
}

/// The ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificate answering a TLS-ALPN-01 challenge for a server name (autocert), if one is pending.
pub type AcmeChallengeCertificates = Arc<dyn Fn(&str) -> Option<Arc<CertifiedKey>> + Send + Sync>;

/// Picks the certificate for a handshake by SNI: exact name, then wildcard, then the default.
/// A handshake that offers ALPN `acme-tls/1` gets the pending challenge certificate instead.
pub struct SniResolver {
    index: ArcSwap<CertIndex>,
    acme: std::sync::OnceLock<AcmeChallengeCertificates>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver").field("index", &self.index).finish_non_exhaustive()
    }
}

impl SniResolver {
    /// A resolver over `certificates`; the first is the default. An empty set makes handshakes fail.
    pub fn new(certificates: &[Arc<CertifiedKey>]) -> Result<Self, TlsError> {
        Ok(Self { index: ArcSwap::from_pointee(CertIndex::build(certificates)?), acme: std::sync::OnceLock::new() })
    }

    /// Replaces the certificates (a reload); handshakes in progress keep the old set.
    pub fn replace(&self, certificates: &[Arc<CertifiedKey>]) -> Result<(), TlsError> {
        self.index.store(Arc::new(CertIndex::build(certificates)?));
        Ok(())
    }

    /// The certificate presented for `server_name` (`None`: the client sent no SNI).
    pub fn select(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.index.load().select(server_name)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme_challenge = client_hello.alpn().is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if acme_challenge {
            // Only the challenge certificate answers `acme-tls/1`; without one the handshake fails.
            let challenges = self.acme.get()?;
            return challenges(client_hello.server_name()?);
        }
        self.select(client_hello.server_name())
    }
}

/// What to ask of downstream clients about certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertMode {
    /// Ask; a client may send none, but one it sends must chain to the CAs or the handshake fails.
    VerifyIfGiven,
    /// Ask and accept whatever is sent; report whether it chains to the CAs, so that the policy
    /// can answer 495 instead of a TLS alert (Pomerium's `policy` enforcement modes).
    Report,
    /// Require a certificate that chains to the CAs (Pomerium's `reject_connection`).
    Require,
}

/// Downstream client-certificate settings.
#[derive(Debug, Clone)]
pub struct DownstreamClientAuth {
    /// The certificate authorities client certificates must chain to.
    pub ca: Vec<CertificateDer<'static>>,
    /// What to do with what clients send.
    pub mode: ClientCertMode,
    /// Revocation lists, checked on every verification; a certificate whose issuer has no list
    /// here is not checked.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// When not empty, the leaf must have a subject alternative name matching one of these.
    pub subject_alt_names: Vec<SanRule>,
    /// The most certificates above the leaf in the verified chain, the trust anchor included
    /// (Envoy's `max_verify_depth`): 1 admits only leaves issued by a configured CA; 0: no limit.
    pub max_verify_depth: u32,
}

impl DownstreamClientAuth {
    /// Settings with `ca` and `mode` only: no revocation lists, no SAN rule, no depth limit.
    pub fn new(ca: Vec<CertificateDer<'static>>, mode: ClientCertMode) -> DownstreamClientAuth {
        DownstreamClientAuth { ca, mode, crls: Vec::new(), subject_alt_names: Vec::new(), max_verify_depth: 0 }
    }

    /// Settings from `downstream_mtls`, with `ca` (the global one, or a route's) and `mode`.
    pub fn from_config(
        mtls: &config::options::DownstreamMtls,
        ca: &[CertificateDer<'static>],
        mode: ClientCertMode,
    ) -> Result<DownstreamClientAuth, TlsError> {
        let subject_alt_names = mtls
            .match_subject_alt_names
            .iter()
            .map(|matcher| SanRule::new(matcher.san_type, &matcher.pattern))
            .collect::<Result<_, _>>()?;
        Ok(DownstreamClientAuth {
            ca: ca.to_vec(),
            mode,
            crls: mtls.crl.as_ref().map(|crls| crls.ders().to_vec()).unwrap_or_default(),
            subject_alt_names,
            max_verify_depth: mtls.max_verify_depth,
        })
    }
}

/// The kind of subject alternative name a [`SanRule`] looks at.
pub use config::options::SanType;

/// A subject alternative name the client certificate must have: its type, and a pattern the
/// whole name must match (anchored at both ends, as Envoy anchors `safe_regex`).
#[derive(Debug, Clone)]
pub struct SanRule {
    kind: SanType,
    pattern: regex::Regex,
}

/// The object identifier of a Microsoft user principal name in an `otherName` SAN.
const UPN_OID: &str = "1.3.6.1.4.1.311.20.2.3";

impl SanRule {
    /// A rule for `kind` names matching all of `pattern`.
    pub fn new(kind: SanType, pattern: &str) -> Result<SanRule, TlsError> {
        let anchored = format!("^(?:{pattern})$");
        regex::RegexBuilder::new(&anchored)
            .size_limit(1 << 20)
            .build()
            .map(|pattern| SanRule { kind, pattern })
            .map_err(|error| TlsError::SubjectAltName(format!("`{pattern}`: {error}")))
    }

    fn matches(&self, name: &x509_parser::extensions::GeneralName<'_>) -> bool {
        use x509_parser::extensions::GeneralName;
        let text = match (self.kind, name) {
            (SanType::Dns, GeneralName::DNSName(dns)) => (*dns).to_owned(),
            (SanType::Email, GeneralName::RFC822Name(email)) => (*email).to_owned(),
            (SanType::Uri, GeneralName::URI(uri)) => (*uri).to_owned(),
            (SanType::IpAddress, GeneralName::IPAddress(bytes)) => match ip_address(bytes) {
                Some(ip) => ip.to_string(),
                None => return false,
            },
            (SanType::UserPrincipalName, GeneralName::OtherName(oid, value)) if oid.to_id_string() == UPN_OID => {
                match user_principal_name(value) {
                    Some(upn) => upn,
                    None => return false,
                }
            }
            _ => return false,
        };
        self.pattern.is_match(&text)
    }
}

fn ip_address(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// The UTF8String inside an `otherName`'s `[0] EXPLICIT` value.
fn user_principal_name(value: &[u8]) -> Option<String> {
    use x509_parser::asn1_rs::{Any, FromDer as _};
    let (_, explicit) = Any::from_der(value).ok()?;
    let (_, inner) = Any::from_der(explicit.data).ok()?;
    std::str::from_utf8(inner.data).ok().map(str::to_owned)
}

/// Whether the leaf has a subject alternative name that one of `rules` matches.
fn subject_alt_name_matches(leaf: &CertificateDer<'_>, rules: &[SanRule]) -> bool {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(leaf) else { return false };
    let Ok(Some(sans)) = parsed.subject_alternative_name() else { return false };
    sans.value.general_names.iter().any(|name| rules.iter().any(|rule| rule.matches(name)))
}

/// A client certificate presented in a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The chain as sent, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Whether the chain verified against the configured CAs at handshake time.
    pub verified: bool,
}

impl ClientCertificate {
    /// The leaf (end-entity) certificate.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }
}

/// A downstream TLS configuration: the rustls config and what is needed to report client
/// certificates after a handshake.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    resolver: Arc<SniResolver>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// Hosts with their own client CA (a route's `tls_downstream_client_ca`), by lowercase name:
    /// a connection whose SNI is one of them is configured and verified by it. Replaced on reload.
    hosts: Arc<ArcSwap<HashMap<String, HostTls>>>,
}

/// The TLS of connections to one host with its own client CA.
#[derive(Debug, Clone)]
struct HostTls {
    config: Arc<ServerConfig>,
    verifier: Arc<dyn ClientCertVerifier>,
    ca: ClientCaId,
}

/// Identifies a set of client certificate authorities: a connection verified with one set must
/// not serve a request for a route that names another (421).
pub type ClientCaId = Arc<str>;

/// The identifier of the client CA set `ca` (a digest of the certificates).
pub fn client_ca_id(ca: &[CertificateDer<'_>]) -> ClientCaId {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for der in ca {
        context.update(&u64::try_from(der.len()).unwrap_or(u64::MAX).to_be_bytes());
        context.update(der.as_ref());
    }
    let digest = context.finish();
    let hex: String = digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    Arc::from(hex)
}

impl ServerTls {
    /// TLS 1.2 and 1.3 on aws-lc-rs, ALPN `h2` then `http/1.1`, certificates from `resolver`,
    /// client certificates per `client_auth`.
    pub fn new(resolver: Arc<SniResolver>, client_auth: Option<&DownstreamClientAuth>) -> Result<Self, TlsError> {
        let provider = provider();
        let client_verifier = client_auth.map(|auth| client_verifier(auth, &provider)).transpose()?;
        let config = server_config(&resolver, client_auth.map(|auth| auth.mode), client_verifier.as_ref())?;
        Ok(Self { config, resolver, client_verifier, hosts: Arc::new(ArcSwap::from_pointee(HashMap::new())) })
    }

    /// Connections whose SNI is one of these hosts ask for client certificates per its settings
    /// (a route's own CA) instead of the listener's; replaces the previous set (a reload). The
    /// first settings given for a host keep it.
    pub fn set_host_client_auth(&self, hosts: &[(String, DownstreamClientAuth)]) -> Result<(), TlsError> {
        let mut map = HashMap::new();
        for (host, client_auth) in hosts {
            let name = normalize_name(host);
            if map.contains_key(&name) {
                continue;
            }
            let verifier = client_verifier(client_auth, &provider())?;
            let mut config = (*server_config(&self.resolver, Some(client_auth.mode), Some(&verifier))?).clone();
            // The listener's protocols (with `acme-tls/1` when it answers challenges).
            config.alpn_protocols.clone_from(&self.config.alpn_protocols);
            let config = Arc::new(config);
            map.insert(name, HostTls { config, verifier, ca: client_ca_id(&client_auth.ca) });
        }
        self.hosts.store(Arc::new(map));
        Ok(())
    }

    /// The configuration for a handshake whose SNI is `server_name`.
    pub fn config_for(&self, server_name: Option<&str>) -> Arc<ServerConfig> {
        match self.host(server_name) {
            Some(host) => Arc::clone(&host.config),
            None => Arc::clone(&self.config),
        }
    }

    /// The client CA set connections with SNI `server_name` are verified with, when it is a
    /// host's own (`None`: the listener's, `downstream_mtls.ca`).
    pub fn client_ca_for(&self, server_name: Option<&str>) -> Option<ClientCaId> {
        self.host(server_name).map(|host| host.ca)
    }

    fn host(&self, server_name: Option<&str>) -> Option<HostTls> {
        let hosts = self.hosts.load();
        if hosts.is_empty() {
            return None;
        }
        hosts.get(&normalize_name(server_name?)).cloned()
    }

    /// Answers TLS-ALPN-01 challenges (autocert): offers ALPN `acme-tls/1` and presents
    /// `challenges`' certificate to handshakes that ask for it. The server closes such connections
    /// after the handshake.
    #[must_use]
    pub fn with_acme_challenges(mut self, challenges: AcmeChallengeCertificates) -> Self {
        // The resolver is this configuration's own; its hook is set once.
        let _ = self.resolver.acme.set(challenges);
        let mut config = (*self.config).clone();
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        self.config = Arc::new(config);
        // Hosts with their own client CA answer challenges too.
        let hosts = self
            .hosts
            .load()
            .iter()
            .map(|(name, host)| {
                let mut config = (*host.config).clone();
                config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
                (name.clone(), HostTls { config: Arc::new(config), ..host.clone() })
            })
            .collect();
        self.hosts.store(Arc::new(hosts));
        self
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// The certificate resolver, to replace certificates on reload.
    pub fn resolver(&self) -> &Arc<SniResolver> {
        &self.resolver
    }

    /// An acceptor for this configuration.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.config))
    }

    /// Whether some hosts have their own configuration (then the ClientHello must be read
    /// before choosing one: [`ServerTls::config_for`]).
    pub fn per_host(&self) -> bool {
        !self.hosts.load().is_empty()
    }

    /// The client certificate of a finished handshake, with whether it verified (against the
    /// CA of the connection's SNI).
    pub fn client_certificate(&self, connection: &ServerConnection) -> Option<ClientCertificate> {
        let chain = connection.peer_certificates()?.to_vec();
        let (leaf, intermediates) = chain.split_first()?;
        let host = self.host(connection.server_name());
        let verifier = match &host {
            Some(host) => Some(&host.verifier),
            None => self.client_verifier.as_ref(),
        };
        let verified =
            verifier.is_some_and(|verifier| verifier.verify_client_cert(leaf, intermediates, UnixTime::now()).is_ok());
        Some(ClientCertificate { chain, verified })
    }
}

/// A server configuration (TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`) asking for client
/// certificates per `mode` and `verifier`.
fn server_config(
    resolver: &Arc<SniResolver>,
    mode: Option<ClientCertMode>,
    verifier: Option<&Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let handshake_verifier: Arc<dyn ClientCertVerifier> = match (mode, verifier) {
        (Some(ClientCertMode::Report), Some(verifier)) => Arc::new(ReportingVerifier { inner: Arc::clone(verifier) }),
        (_, Some(verifier)) => Arc::clone(verifier),
        (_, None) => WebPkiClientVerifier::no_client_auth(),
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_client_cert_verifier(handshake_verifier)
        .with_cert_resolver(Arc::clone(resolver) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Checks client certificate chains against `downstream_mtls.ca` away from a handshake: the
/// authorize service, given a chain in a `Check` call (as Pomerium's authorize checks the chain
/// Envoy forwards, `isValidClientCertificate`).
#[derive(Clone)]
pub struct ChainVerifier(Arc<dyn ClientCertVerifier>);

impl std::fmt::Debug for ChainVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainVerifier")
    }
}

impl ChainVerifier {
    /// Checks against `auth` (its CAs, revocation lists, SAN rules and depth; the mode is ignored).
    pub fn new(auth: &DownstreamClientAuth) -> Result<ChainVerifier, TlsError> {
        let auth = DownstreamClientAuth { mode: ClientCertMode::Report, ..auth.clone() };
        client_verifier(&auth, &provider()).map(ChainVerifier)
    }

    /// Whether `chain` (leaf first) chains to the CAs now.
    pub fn verifies(&self, chain: &[CertificateDer<'static>]) -> bool {
        chain.split_first().is_some_and(|(leaf, intermediates)| {
            self.0.verify_client_cert(leaf, intermediates, UnixTime::now()).is_ok()
        })
    }
}

fn client_verifier(
    auth: &DownstreamClientAuth,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(auth.ca.iter().cloned());
    if added == 0 {
        return Err(TlsError::ClientCa(format!("no usable certificate authority ({ignored} ignored)")));
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let builder = if auth.mode == ClientCertMode::Require { builder } else { builder.allow_unauthenticated() };
    // Lists signed by a configured CA are checked here once, then looked up per handshake;
    // webpki would check the list's signature (hashing all of it) on every verification. Others
    // (an intermediate's) go to webpki. A certificate whose issuer has no list is not checked.
    let (revoked, others) = Revoked::build(&auth.ca, &auth.crls)?;
    let builder = if others.is_empty() { builder } else { builder.with_crls(others).allow_unknown_revocation_status() };
    let inner = builder.build().map_err(|error| match error {
        rustls::server::VerifierBuilderError::InvalidCrl(error) => TlsError::Crl(format!("{error:?}")),
        error => TlsError::ClientCa(error.to_string()),
    })?;
    if auth.subject_alt_names.is_empty() && auth.max_verify_depth == 0 && revoked.is_empty() {
        return Ok(inner);
    }
    Ok(Arc::new(ConstrainedVerifier {
        inner,
        subject_alt_names: auth.subject_alt_names.clone(),
        max_verify_depth: auth.max_verify_depth,
        revoked,
    }))
}

/// Revoked serials by issuer (the issuer's DER name), from lists whose signature was checked
/// against a configured CA when the settings were built.
#[derive(Debug, Default)]
struct Revoked(HashMap<Vec<u8>, std::collections::HashSet<Vec<u8>>>);

impl Revoked {
    /// The lists signed by one of `ca` (checked now), and the others, left to webpki.
    fn build(
        ca: &[CertificateDer<'static>],
        crls: &[CertificateRevocationListDer<'static>],
    ) -> Result<(Revoked, Vec<CertificateRevocationListDer<'static>>), TlsError> {
        use x509_parser::prelude::FromDer as _;
        let authorities: Vec<_> = ca.iter().filter_map(|der| x509_parser::parse_x509_certificate(der).ok()).collect();
        let mut revoked = Revoked::default();
        let mut others = Vec::new();
        for der in crls {
            let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
                .map_err(|error| TlsError::Crl(error.to_string()))?;
            let signer = authorities.iter().find(|(_, authority)| {
                authority.subject().as_raw() == crl.issuer().as_raw()
                    && authority.key_usage().ok().flatten().is_none_or(|usage| usage.value.crl_sign())
                    && crl.verify_signature(authority.public_key()).is_ok()
            });
            if signer.is_none() {
                others.push(der.clone());
                continue;
            }
            let serials = revoked.0.entry(crl.issuer().as_raw().to_vec()).or_default();
            serials.extend(crl.iter_revoked_certificates().map(|entry| entry.raw_serial().to_vec()));
        }
        Ok((revoked, others))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `certificate` is on a list.
    fn contains(&self, certificate: &CertificateDer<'_>) -> bool {
        if self.0.is_empty() {
            return false;
        }
        // A certificate that does not parse failed the chain verification before this.
        x509_parser::parse_x509_certificate(certificate).is_ok_and(|(_, parsed)| {
            self.0.get(parsed.issuer().as_raw()).is_some_and(|serials| serials.contains(parsed.raw_serial()))
        })
    }
}

/// The web PKI verification, then the depth limit, the revocation lists checked at build time
/// and the SAN rules.
#[derive(Debug)]
struct ConstrainedVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    subject_alt_names: Vec<SanRule>,
    max_verify_depth: u32,
    revoked: Revoked,
}

impl ClientCertVerifier for ConstrainedVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The trust anchor counts towards the depth: a chain may use `depth - 1` of the
        // intermediates, taken in the order the client sent them (issuer first).
        let intermediates = match usize::try_from(self.max_verify_depth) {
            Ok(0) | Err(_) => intermediates,
            Ok(depth) => intermediates.get(..intermediates.len().min(depth - 1)).unwrap_or(intermediates),
        };
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        // The leaf and the intermediates it may chain through.
        if std::iter::once(end_entity).chain(intermediates).any(|certificate| self.revoked.contains(certificate)) {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked));
        }
        if !self.subject_alt_names.is_empty() && !subject_alt_name_matches(end_entity, &self.subject_alt_names) {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any client certificate whose handshake signature is valid; [`ServerTls::client_certificate`]
/// then reports whether it chains to the CAs.
#[derive(Debug)]
struct ReportingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for ReportingVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn certificates_round_trip_through_pem() {
        let (first, _) = self_signed(&["a.example.com".to_owned()]).unwrap();
        let (second, _) = self_signed(&["b.example.com".to_owned()]).unwrap();
        let ders = [first[0].clone(), second[0].clone()];
        let text = certificates_to_pem(&ders);
        assert_eq!(certificates_from_pem(&text).unwrap(), ders);
    }

    fn cert_for(names: &[&str]) -> Arc<CertifiedKey> {
        let (chain, key) = self_signed(&names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        certified_key(chain, key).unwrap()
    }

    fn selected_name(resolver: &SniResolver, sni: Option<&str>) -> Option<Vec<String>> {
        resolver.select(sni).map(|key| certificate_names(key.end_entity_cert().unwrap()).unwrap())
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let resolver = SniResolver::new(&[
            cert_for(&["default.test"]),
            cert_for(&["a.example.com"]),
            cert_for(&["*.example.com"]),
            cert_for(&["B.Other.Test"]),
        ])
        .unwrap();
        let names = |sni| selected_name(&resolver, sni).unwrap().join(",");
        assert_eq!(names(Some("a.example.com")), "a.example.com");
        assert_eq!(names(Some("A.EXAMPLE.COM.")), "a.example.com");
        assert_eq!(names(Some("z.example.com")), "*.example.com");
        assert_eq!(names(Some("b.other.test")), "b.other.test");
        // A wildcard covers one label only.
        assert_eq!(names(Some("x.y.example.com")), "default.test");
        assert_eq!(names(Some("example.com")), "default.test");
        assert_eq!(names(Some("unknown.test")), "default.test");
        assert_eq!(names(None), "default.test");
    }

    #[test]
    fn first_certificate_for_a_name_wins_and_reload_replaces() {
        let first = cert_for(&["same.test"]);
        let resolver = SniResolver::new(&[Arc::clone(&first), cert_for(&["same.test", "x.test"])]).unwrap();
        assert!(Arc::ptr_eq(&resolver.select(Some("same.test")).unwrap(), &first));
        resolver.replace(&[cert_for(&["new.test"])]).unwrap();
        assert_eq!(selected_name(&resolver, Some("same.test")).unwrap(), ["new.test"]);
    }

    #[test]
    fn no_certificates_means_no_certificate() {
        let resolver = SniResolver::new(&[]).unwrap();
        assert!(resolver.select(Some("a.test")).is_none());
    }

    #[test]
    fn pem_round_trip_and_clear_errors() {
        let generated = rcgen::generate_simple_self_signed(vec!["pem.test".to_owned()]).unwrap();
        let cert_pem = generated.cert.pem();
        let key_pem = generated.signing_key.serialize_pem();
        let key = certified_key_from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
        assert_eq!(certificate_names(key.end_entity_cert().unwrap()).unwrap(), ["pem.test"]);

        assert!(matches!(certificates_from_pem(b""), Err(TlsError::NoCertificate)));
        assert!(matches!(certificates_from_pem(key_pem.as_bytes()), Err(TlsError::NoCertificate)));
        assert!(matches!(private_key_from_pem(cert_pem.as_bytes()), Err(TlsError::NoPrivateKey)));
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(certificates_from_pem(broken.as_bytes()), Err(TlsError::Pem(_))));
        let truncated = "-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(matches!(certificates_from_pem(truncated.as_bytes()), Err(TlsError::Pem(_))));
    }

    #[test]
    fn a_key_must_match_its_certificate() {
        let (chain, _) = self_signed(&["one.test".to_owned()]).unwrap();
        let (_, other_key) = self_signed(&["two.test".to_owned()]).unwrap();
        assert!(matches!(certified_key(chain, other_key), Err(TlsError::Key(_))));
        let (_, key) = self_signed(&["three.test".to_owned()]).unwrap();
        assert!(matches!(certified_key(Vec::new(), key), Err(TlsError::NoCertificate)));
    }

    #[test]
    fn garbage_certificates_are_errors() {
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x01, 0x02, 0x03]);
        assert!(matches!(certificate_names(&garbage), Err(TlsError::BadCertificate(_))));
    }

    #[test]
    fn server_config_offers_h2_and_http11() {
        let resolver = Arc::new(SniResolver::new(&[cert_for(&["a.test"])]).unwrap());
        let tls = ServerTls::new(resolver, None).unwrap();
        assert_eq!(tls.config().alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    fn leaf_with(sans: Vec<rcgen::SanType>) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().der().clone()
    }

    #[test]
    fn subject_alt_name_rules_match_whole_names_of_their_type() {
        use rcgen::SanType as San;
        let leaf = leaf_with(vec![
            San::DnsName("a.example.com".try_into().unwrap()),
            San::Rfc822Name("alice@example.com".try_into().unwrap()),
            San::IpAddress("10.1.2.3".parse().unwrap()),
            San::IpAddress("2001:db8::1".parse().unwrap()),
            San::URI("spiffe://example.com/alice".try_into().unwrap()),
            San::OtherName((vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3], "alice@corp.example".into())),
        ]);
        let matches = |kind, pattern: &str| subject_alt_name_matches(&leaf, &[SanRule::new(kind, pattern).unwrap()]);
        assert!(matches(SanType::Dns, r".*\.example\.com"));
        assert!(!matches(SanType::Dns, "example"), "anchored");
        assert!(!matches(SanType::Dns, "a.example.co"), "anchored at the end");
        assert!(matches(SanType::Email, "alice@example\\.com"));
        assert!(!matches(SanType::Email, "a.example.com"), "another type");
        assert!(matches(SanType::IpAddress, r"10\.1\.2\.3"));
        assert!(matches(SanType::IpAddress, "2001:db8::1"));
        assert!(!matches(SanType::IpAddress, "10"));
        assert!(matches(SanType::Uri, "spiffe://example.com/.*"));
        assert!(matches(SanType::UserPrincipalName, ".*@corp\\.example"));
        assert!(!matches(SanType::UserPrincipalName, "alice@example.com"));
        // An alternative inside the pattern stays anchored.
        assert!(!matches(SanType::Dns, "zzz|a.example"));
        assert!(matches!(SanRule::new(SanType::Dns, "(unclosed"), Err(TlsError::SubjectAltName(_))));
        assert!(!subject_alt_name_matches(&leaf_with(vec![]), &[SanRule::new(SanType::Dns, ".*").unwrap()]));
    }

    #[test]
    fn acme_challenges_add_the_alpn_and_answer_only_acme_handshakes() {
        let resolver = Arc::new(SniResolver::new(&[cert_for(&["a.test"])]).unwrap());
        let plain = ServerTls::new(Arc::clone(&resolver), None).unwrap();
        assert_eq!(plain.config().alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        let challenge = cert_for(&["challenge.a.test"]);
        let hook = Arc::clone(&challenge);
        let tls = plain.with_acme_challenges(Arc::new(move |name: &str| (name == "a.test").then(|| Arc::clone(&hook))));
        assert_eq!(tls.config().alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()]);
        // Ordinary handshakes still get the configured certificate.
        assert_eq!(selected_name(&resolver, Some("a.test")).unwrap(), ["a.test"]);
        let hook = resolver.acme.get().unwrap();
        assert!(Arc::ptr_eq(&hook("a.test").unwrap(), &challenge));
        assert!(hook("b.test").is_none());
    }

    #[test]
    fn hosts_with_their_own_client_ca_answer_acme_challenges_too() {
        let resolver = Arc::new(SniResolver::new(&[cert_for(&["a.test"])]).unwrap());
        let (ca, _) = self_signed(&["client ca".to_owned()]).unwrap();
        let auth = DownstreamClientAuth::new(ca, ClientCertMode::Report);
        let tls = ServerTls::new(resolver, None).unwrap();
        tls.set_host_client_auth(&[("own.test".to_owned(), auth.clone())]).unwrap();
        let hook: AcmeChallengeCertificates = Arc::new(|_: &str| None);
        let tls = tls.with_acme_challenges(hook);
        let acme = |config: Arc<ServerConfig>| config.alpn_protocols.contains(&ACME_TLS_ALPN.to_vec());
        assert!(acme(tls.config_for(Some("own.test"))), "set before the challenges");
        assert!(acme(tls.config_for(Some("other.test"))));
        tls.set_host_client_auth(&[("own.test".to_owned(), auth)]).unwrap();
        assert!(acme(tls.config_for(Some("own.test"))), "set again on reload");
        assert!(tls.client_ca_for(Some("OWN.test")).is_some() && tls.client_ca_for(Some("other.test")).is_none());
    }

    #[test]
    fn client_auth_needs_a_usable_ca() {
        let resolver = Arc::new(SniResolver::new(&[cert_for(&["a.test"])]).unwrap());
        let auth = DownstreamClientAuth::new(vec![CertificateDer::from(vec![1, 2, 3])], ClientCertMode::Report);
        assert!(matches!(ServerTls::new(resolver, Some(&auth)), Err(TlsError::ClientCa(_))));
    }
}

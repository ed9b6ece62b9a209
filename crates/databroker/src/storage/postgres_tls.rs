//! PostgreSQL over TLS, as libpq does it, on rustls with aws-lc-rs.
//!
//! tokio-postgres knows only `sslmode` `disable`, `prefer` and `require`, and no certificates:
//! [`parse`] takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of the connection string
//! (URL or `key=value` form) and hands the rest to [`tokio_postgres::Config`].
//!
//! The modes, as libpq: `disable` (plain), `allow` (plain; TLS if the server refuses plain),
//! `prefer` (the default: TLS if the server offers it), `require` (TLS, the certificate not
//! checked, unless `sslrootcert` is given: then as `verify-ca`), `verify-ca` (the chain against
//! `sslrootcert`), `verify-full` (the chain and the host name). `sslrootcert=system` trusts the
//! system's roots and, as libpq, only with `verify-full` (its default then). libpq's default files
//! under `~/.postgresql/` are not read. `sslnegotiation=direct` is left to tokio-postgres (with
//! the ALPN `postgresql` the server requires), only under `require` and the verifying modes.
//! SCRAM is bound to the connection (`tls-server-end-point`). Unlike libpq, `prefer` does not
//! retry in plain after a failed TLS handshake: it fails.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{SslMode as WireMode, SslNegotiation};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Connection, Socket};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The `sslmode` values, as libpq spells them.
pub const SSL_MODES: &[(&str, SslMode)] = &[
    ("disable", SslMode::Disable),
    ("allow", SslMode::Allow),
    ("prefer", SslMode::Prefer),
    ("require", SslMode::Require),
    ("verify-ca", SslMode::VerifyCa),
    ("verify-full", SslMode::VerifyFull),
];

impl SslMode {
    fn name(self) -> &'static str {
        SSL_MODES.iter().find(|(_, mode)| *mode == self).map_or("prefer", |(name, _)| name)
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(value: &str) -> Result<SslMode, String> {
        SSL_MODES.iter().find(|(name, _)| *name == value).map(|(_, mode)| *mode).ok_or_else(|| {
            format!("unknown sslmode `{value}`: use disable, allow, prefer, require, verify-ca or verify-full")
        })
    }
}

/// The TLS keys tokio-postgres does not know (or not all of whose values).
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// How to connect: the mode, and the rustls connector for TLS.
#[derive(Clone)]
pub struct PgTls {
    mode: SslMode,
    connector: MakeRustls,
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTls").field("mode", &self.mode).finish_non_exhaustive()
    }
}

/// Parses a libpq connection string: the tokio-postgres configuration without the TLS keys, and
/// the TLS to use. Errors name the key at fault and never quote the string (it may hold a
/// password).
pub fn parse(connection_string: &str) -> Result<(tokio_postgres::Config, PgTls), String> {
    let (rest, taken) = split_tls_keys(connection_string)?;
    let mut config =
        tokio_postgres::Config::from_str(&rest).map_err(|e| format!("invalid postgres connection string: {e}"))?;
    // Later keys win, as in libpq.
    let value = |key: &str| taken.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let root = value("sslrootcert").filter(|v| !v.is_empty());
    let mode = match value("sslmode") {
        Some(given) => given.parse()?,
        None if root == Some("system") => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if root == Some("system") && mode != SslMode::VerifyFull {
        return Err(format!(
            "sslrootcert=system may only be used with sslmode=verify-full (sslmode is `{}`), as in libpq",
            mode.name()
        ));
    }
    let mode = if mode == SslMode::Require && root.is_some() { SslMode::VerifyCa } else { mode };
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root.is_none() {
        return Err(format!(
            "sslmode={} needs sslrootcert: the CA certificate file (PEM), or `system` for the system's \
             trusted roots",
            mode.name()
        ));
    }
    if config.get_ssl_negotiation() == SslNegotiation::Direct
        && !matches!(mode, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    {
        return Err(format!(
            "sslnegotiation=direct may not be used with sslmode={} (use require, verify-ca or verify-full)",
            mode.name()
        ));
    }
    // `disable` reads no file, as libpq.
    let tls_used = mode != SslMode::Disable;
    let roots = match root.filter(|_| tls_used) {
        None => None,
        Some("system") => Some(tls_trust::system_roots()),
        Some(path) => Some(Arc::new(read_roots(path)?)),
    };
    let client_cert = match (value("sslcert").filter(|v| !v.is_empty()), value("sslkey").filter(|v| !v.is_empty())) {
        (None, None) => None,
        _ if !tls_used => None,
        (Some(cert), Some(key)) => Some(read_client_cert(cert, key)?),
        (Some(_), None) => return Err("sslcert is set but sslkey is not: give both (PEM files)".to_owned()),
        (None, Some(_)) => return Err("sslkey is set but sslcert is not: give both (PEM files)".to_owned()),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = PgVerifier {
        provider: Arc::clone(&provider),
        signatures: tls_trust::SkipVerification(Arc::clone(&provider)),
        roots: roots.clone(),
        check_name: mode == SslMode::VerifyFull,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("postgres TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut tls_config = match client_cert {
        Some((chain, key)) => {
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("postgres TLS: sslcert/sslkey: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    // What libpq 17 offers; PostgreSQL 17 requires it for sslnegotiation=direct.
    tls_config.alpn_protocols = vec![b"postgresql".to_vec()];
    let trust = match root {
        Some("system") => Trust::System,
        Some(path) => Trust::File(PathBuf::from(path)),
        None => Trust::Any,
    };
    config.ssl_mode(match mode {
        SslMode::Disable | SslMode::Allow => WireMode::Disable,
        SslMode::Prefer => WireMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireMode::Require,
    });
    let connector =
        MakeRustls { config: Arc::new(tls_config), trust: Arc::new(trust), verify_name: mode == SslMode::VerifyFull };
    Ok((config, PgTls { mode, connector }))
}

impl PgTls {
    /// The mode in effect (`require` with `sslrootcert` is `verify-ca`).
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The mode's libpq name.
    pub fn mode_name(&self) -> &'static str {
        self.mode.name()
    }

    /// Opens a connection as the mode says. `config` is the one [`parse`] returned (its wire
    /// `sslmode` set for this mode).
    pub async fn open(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(Client, Connection<Socket, RustlsStream>), tokio_postgres::Error> {
        match config.connect(self.connector.clone()).await {
            // `allow`: the server refused a plain connection; try again over TLS.
            Err(error) if self.mode == SslMode::Allow && error.as_db_error().is_some() => {
                let mut tls = config.clone();
                tls.ssl_mode(WireMode::Require);
                tls.connect(self.connector.clone()).await
            }
            result => result,
        }
    }
}

/// deadpool-postgres's way of opening a pool connection.
impl deadpool_postgres::Connect for PgTls {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> Pin<Box<dyn Future<Output = Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>> + Send + '_>>
    {
        let pg_config = pg_config.clone();
        Box::pin(async move {
            let (client, connection) = self.open(&pg_config).await?;
            let task = tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::warn!(%error, "databroker: a postgres connection failed");
                }
            });
            Ok((client, task))
        })
    }
}

/// What the server's certificate is checked against, for error messages.
#[derive(Debug)]
enum Trust {
    Any,
    File(PathBuf),
    System,
}

fn read_roots(path: &str) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read sslrootcert `{path}`: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("sslrootcert `{path}`: {e}"))?;
        roots.add(cert).map_err(|e| format!("sslrootcert `{path}`: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert `{path}`: no PEM certificate in the file"));
    }
    Ok(roots)
}

fn read_client_cert(cert: &str, key: &str) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let pem = std::fs::read(cert).map_err(|e| format!("cannot read sslcert `{cert}`: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslcert `{cert}`: {e}"))?;
    if chain.is_empty() {
        return Err(format!("sslcert `{cert}`: no PEM certificate in the file"));
    }
    let pem = std::fs::read(key).map_err(|e| format!("cannot read sslkey `{key}`: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| format!("sslkey `{key}`: no PEM private key ({e})"))?;
    Ok((chain, key))
}

/// Takes the [`TLS_KEYS`] out of a connection string: the rest, and the keys taken with their
/// (decoded) values, in order.
fn split_tls_keys(connection_string: &str) -> Result<(String, Vec<(String, String)>), String> {
    let trimmed = connection_string.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        split_url(trimmed)
    } else {
        split_key_values(trimmed)
    }
}

fn split_url(url: &str) -> Result<(String, Vec<(String, String)>), String> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_owned(), Vec::new())) };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key).map_err(|e| format!("invalid postgres connection string: a key: {e}"))?;
        if TLS_KEYS.contains(&key.as_str()) {
            let value = percent_decode(value)
                .map_err(|e| format!("invalid postgres connection string: the value of `{key}`: {e}"))?;
            taken.push((key, value));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, taken))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        if byte == b'%' {
            let hex = [input.next(), input.next()];
            let digit = |b: Option<u8>| b.and_then(|b| char::from(b).to_digit(16));
            match (digit(hex[0]), digit(hex[1])) {
                (Some(high), Some(low)) => bytes.push(u8::try_from(high * 16 + low).unwrap_or(0)),
                _ => return Err("a `%` not followed by two hex digits".to_owned()),
            }
        } else {
            bytes.push(byte);
        }
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 once percent-decoded".to_owned())
}

/// The `key = value` form: values bare (backslash escapes) or in single quotes (backslash
/// escapes); the kept pairs are written back quoted.
fn split_key_values(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut chars = text.chars().peekable();
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    let skip_space = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_space(&mut chars);
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        skip_space(&mut chars);
        if chars.next() != Some('=') {
            return Err(format!("invalid postgres connection string: `{key}` is not followed by `=`"));
        }
        skip_space(&mut chars);
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => {
                        return Err(format!(
                            "invalid postgres connection string: the quoted value of `{key}` is not closed"
                        ));
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        if TLS_KEYS.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Ok((kept.join(" "), taken))
}

/// Checks the server's certificate as the mode says: nothing (`prefer`, `allow`, `require`
/// without a root), the chain (`verify-ca`), the chain and the name (`verify-full`). The handshake
/// signatures are checked always.
#[derive(Debug)]
struct PgVerifier {
    provider: Arc<CryptoProvider>,
    /// The handshake signatures, checked as every verifier checks them.
    signatures: tls_trust::SkipVerification,
    roots: Option<Arc<RootCertStore>>,
    check_name: bool,
}

impl ServerCertVerifier for PgVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else { return Ok(ServerCertVerified::assertion()) };
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if self.check_name {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_verify_schemes()
    }
}

/// tokio-postgres's TLS connector factory (one connector per host).
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
    trust: Arc<Trust>,
    verify_name: bool,
}

impl std::fmt::Debug for MakeRustls {
    // Not the rustls configuration: it holds the client key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakeRustls").field("trust", &self.trust).field("verify_name", &self.verify_name).finish()
    }
}

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = TlsError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, TlsError> {
        let name = match ServerName::try_from(domain.to_owned()) {
            Ok(name) => name,
            Err(_) if self.verify_name => {
                return Err(TlsError(format!(
                    "the host `{domain}` is not a DNS name or IP address its certificate could be checked \
                     against (sslmode=verify-full)"
                )));
            }
            // The name is not checked; an IP address sends no SNI.
            Err(_) => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        };
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&self.config)),
            name,
            host: domain.to_owned(),
            trust: Arc::clone(&self.trust),
        })
    }
}

/// A TLS handshake with one host.
pub struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    host: String,
    trust: Arc<Trust>,
}

impl std::fmt::Debug for RustlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustlsConnect").field("host", &self.host).finish_non_exhaustive()
    }
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream, TlsError>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            match self.connector.connect(self.name, stream).await {
                Ok(stream) => Ok(RustlsStream(Box::new(stream))),
                Err(error) => Err(handshake_error(&error, &self.host, &self.trust)),
            }
        })
    }
}

/// Says which check failed.
fn handshake_error(error: &std::io::Error, host: &str, trust: &Trust) -> TlsError {
    let trusted = match trust {
        Trust::Any => "any CA".to_owned(),
        Trust::File(path) => format!("the CA in sslrootcert `{}`", path.display()),
        Trust::System => "a CA the system trusts (sslrootcert=system)".to_owned(),
    };
    let message = match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(problem)) => match problem {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                format!("unknown CA: the server's certificate is not signed by {trusted}")
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("host name mismatch: the server's certificate does not name `{host}`")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet".to_owned()
            }
            other => format!("the server's certificate is invalid: {other:?}"),
        },
        Some(other) => format!("TLS handshake failed: {other}"),
        None => format!("TLS handshake failed: {error}"),
    };
    TlsError(message)
}

/// A TLS failure, saying what failed.
#[derive(Debug)]
pub struct TlsError(String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// A TLS connection to the server.
pub struct RustlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl std::fmt::Debug for RustlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RustlsStream")
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl tokio_postgres::tls::TlsStream for RustlsStream {
    /// `tls-server-end-point` (RFC 5929), so that SCRAM binds the password exchange to this TLS
    /// connection (`SCRAM-SHA-256-PLUS`): the hash of the server's certificate, with its
    /// signature's hash (SHA-256 for MD5 and SHA-1). None for other signatures (RSASSA-PSS,
    /// Ed25519), as PostgreSQL, which then offers no binding either.
    fn channel_binding(&self) -> ChannelBinding {
        let certificate = self.0.get_ref().1.peer_certificates().and_then(|chain| chain.first());
        match certificate.and_then(|cert| Some((cert, signature_digest(cert)?))) {
            Some((cert, digest)) => {
                ChannelBinding::tls_server_end_point(aws_lc_rs::digest::digest(digest, cert).as_ref().to_vec())
            }
            None => ChannelBinding::none(),
        }
    }
}

/// The hash RFC 5929's `tls-server-end-point` uses for a certificate (DER): its signature
/// algorithm's, SHA-256 in place of MD5 and SHA-1.
fn signature_digest(certificate: &[u8]) -> Option<&'static aws_lc_rs::digest::Algorithm> {
    use aws_lc_rs::digest::{SHA224, SHA256, SHA384, SHA512};
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, ... }, ... }
    let (0x30, certificate, _) = der_item(certificate)? else { return None };
    let (_, _, rest) = der_item(certificate)?;
    let (0x30, algorithm, _) = der_item(rest)? else { return None };
    let (0x06, oid, _) = der_item(algorithm)? else { return None };
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    if let Some(suffix) = oid.strip_prefix(RSA) {
        // md5, sha1, sha256, sha384, sha512, sha224 WithRSAEncryption.
        return match suffix {
            [4 | 5 | 11] => Some(&SHA256),
            [12] => Some(&SHA384),
            [13] => Some(&SHA512),
            [14] => Some(&SHA224),
            _ => None,
        };
    }
    // ecdsa-with-SHA1, ecdsa-with-SHA224 to SHA512.
    match oid.strip_prefix(ECDSA)? {
        [1] | [3, 2] => Some(&SHA256),
        [3, 1] => Some(&SHA224),
        [3, 3] => Some(&SHA384),
        [3, 4] => Some(&SHA512),
        _ => None,
    }
}

/// The DER item at the start of `der`: its tag, its contents, and what follows it.
fn der_item(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let (bytes, rest) = rest.split_at_checked(usize::from(first & 0x7f))?;
        if bytes.is_empty() || bytes.len() > 4 {
            return None;
        }
        (bytes.iter().fold(0usize, |length, byte| (length << 8) | usize::from(*byte)), rest)
    };
    let (contents, rest) = rest.split_at_checked(length)?;
    Some((tag, contents, rest))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn url_tls_keys_are_taken_out_and_the_rest_is_kept() {
        let (rest, taken) = split_tls_keys(
            "postgres://u:p%40ss@db:5432/x?sslmode=verify-full&application_name=a&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p%40ss@db:5432/x?application_name=a");
        assert_eq!(
            taken,
            vec![
                ("sslmode".to_owned(), "verify-full".to_owned()),
                ("sslrootcert".to_owned(), "/tmp/ca.pem".to_owned())
            ]
        );
        let (rest, _) = split_tls_keys("postgresql://db/x?sslmode=require").unwrap();
        assert_eq!(rest, "postgresql://db/x");
        assert!(split_tls_keys("postgres://db/x?sslrootcert=%zz").is_err());
    }

    #[test]
    fn key_value_tls_keys_are_taken_out_with_quoting() {
        let (rest, taken) =
            split_tls_keys("host=db password='it\\'s a \\\\secret' sslmode = verify-ca sslrootcert='/tmp/my ca.pem'")
                .unwrap();
        assert_eq!(rest, "host='db' password='it\\'s a \\\\secret'");
        assert_eq!(
            taken,
            vec![
                ("sslmode".to_owned(), "verify-ca".to_owned()),
                ("sslrootcert".to_owned(), "/tmp/my ca.pem".to_owned())
            ]
        );
        let config = tokio_postgres::Config::from_str(&rest).unwrap();
        assert_eq!(config.get_password(), Some(&b"it's a \\secret"[..]));
        assert!(split_tls_keys("host=db sslmode='require").unwrap_err().contains("sslmode"));
        assert!(split_tls_keys("host db").is_err());
    }

    #[test]
    fn the_channel_binding_hash_follows_the_signature() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db".to_owned()]).unwrap().self_signed(&key).unwrap();
        assert_eq!(signature_digest(cert.der()), Some(&aws_lc_rs::digest::SHA384));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db".to_owned()]).unwrap().self_signed(&key).unwrap();
        assert_eq!(signature_digest(cert.der()), Some(&aws_lc_rs::digest::SHA256));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db".to_owned()]).unwrap().self_signed(&key).unwrap();
        assert_eq!(signature_digest(cert.der()), None);
        for bad in [&[][..], &[0x30], &[0x30, 0x85, 1, 1, 1, 1, 1], &[0x30, 0x03, 0x30, 0x01]] {
            assert_eq!(signature_digest(bad), None);
        }
    }

    #[test]
    fn modes_follow_libpq() {
        let mode = |s: &str| parse(s).map(|(_, tls)| tls.mode());
        assert_eq!(mode("host=db"), Ok(SslMode::Prefer));
        assert_eq!(mode("postgres://db/x?sslmode=disable"), Ok(SslMode::Disable));
        assert_eq!(mode("host=db sslmode=allow"), Ok(SslMode::Allow));
        assert_eq!(mode("host=db sslmode=require"), Ok(SslMode::Require));
        assert_eq!(mode("host=db sslrootcert=system"), Ok(SslMode::VerifyFull));
        let error = mode("host=db password=hunter2 sslmode=bogus").unwrap_err();
        assert!(error.contains("unknown sslmode `bogus`"), "{error}");
        assert!(!error.contains("hunter2"));
        assert!(mode("host=db sslmode=verify-ca").unwrap_err().contains("needs sslrootcert"));
        assert!(mode("host=db sslmode=require sslrootcert=system").unwrap_err().contains("verify-full"));
        assert!(mode("host=db sslmode=prefer sslnegotiation=direct").unwrap_err().contains("sslnegotiation"));
        assert!(mode("host=db sslcert=/a").unwrap_err().contains("sslkey"));
        assert!(mode("host=db sslmode=verify-ca sslrootcert=/nonexistent/ca.pem").unwrap_err().contains("sslrootcert"));
        assert_eq!(mode("host=db sslmode=disable sslrootcert=/nonexistent/ca.pem"), Ok(SslMode::Disable));
    }
}

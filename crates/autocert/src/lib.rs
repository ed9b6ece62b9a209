//! ACME certificates, as Pomerium's `autocert` gets them.
//!
//! - [`Manager::run`] keeps a certificate for every name it is given (the authenticate host and
//!   the routes' `from` hosts; the caller plans them and sends new sets on reload): it loads what
//!   `autocert_dir` holds, orders what is missing or due through [`instant_acme`], renews at two
//!   thirds of the lifetime or 30 days before expiry (whichever comes first), and retries failures
//!   with a doubling backoff. Every certificate it holds goes to the caller's `install`.
//! - [`Challenges`] is what the listeners answer with: HTTP-01 key authorizations at
//!   `/.well-known/acme-challenge/<token>` on the plain listener, TLS-ALPN-01 certificates (with
//!   the critical acmeIdentifier extension) for handshakes that offer ALPN `acme-tls/1`.
//! - Storage in `autocert_dir`: `accounts/<issuer>/account.json`,
//!   `certificates/<issuer>/<name>/<name>.crt` and `.key`, `locks/<issuer>/<name>.lock` (see
//!   [`storage`]). Replicas sharing the directory order a name once: the one that creates the lock
//!   file orders, the others read the result from the disk when it is there.
//! - [`Status`] counts for the metrics: names without a certificate, orders, failures, the last
//!   error.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, ExternalAccountKey, HttpClient,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

pub mod storage;

/// Let's Encrypt's production directory, the default `autocert_ca`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`autocert_use_staging`).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// How long one request to the ACME server may take (headers and body).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a whole order may take, so that a lock file older than [`storage::LOCK_STALE`] is
/// surely abandoned.
const ORDER_TIMEOUT: Duration = Duration::from_secs(240);
/// The longest a response body may be.
const MAX_BODY: usize = 1 << 20;
/// The longest the manager sleeps without looking at its certificates again.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// How soon to look again when another replica holds a name's lock.
const LOCKED_RETRY: Duration = Duration::from_secs(2);

/// Which challenge the manager answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP-01, on the plain listener (`http_redirect_addr`).
    Http01,
    /// TLS-ALPN-01, on the main listener.
    TlsAlpn01,
}

impl Challenge {
    fn acme(self) -> ChallengeType {
        match self {
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        }
    }
}

/// What the manager needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The ACME directory URL.
    pub directory_url: String,
    /// The account's contact, `autocert_email`.
    pub email: Option<String>,
    /// External account binding: key id and the raw (decoded) MAC key.
    pub eab: Option<(String, Vec<u8>)>,
    /// Ask for the OCSP must-staple extension.
    pub must_staple: bool,
    /// The CAs the ACME server's own certificate must chain to; empty: the system's.
    pub trusted_ca: Vec<CertificateDer<'static>>,
    /// `autocert_dir`.
    pub dir: PathBuf,
    /// The challenge to answer.
    pub challenge: Challenge,
    /// The first wait after a failure; it doubles up to `retry_max`.
    pub retry_base: Duration,
    /// The longest wait between attempts.
    pub retry_max: Duration,
    /// Tests: renew when a certificate is older than this (instead of at two thirds of its life).
    pub renew_after: Option<Duration>,
    /// Tests: hold a name's lock this long before ordering (so that a second replica finds it held).
    pub order_delay: Option<Duration>,
}

/// The challenge answers the listeners give while an order is being validated.
#[derive(Debug, Default)]
pub struct Challenges {
    http: Mutex<HashMap<String, String>>,
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

/// The path prefix of HTTP-01 challenges.
pub const HTTP_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

impl Challenges {
    /// The key authorization to answer a request for `path`, when it is a pending HTTP-01 token.
    pub fn http_response(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP_CHALLENGE_PREFIX)?;
        self.http.lock().unwrap_or_else(PoisonError::into_inner).get(token).cloned()
    }

    /// The TLS-ALPN-01 certificate for `server_name`, while its challenge is pending.
    pub fn alpn_certificate(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        self.alpn.lock().unwrap_or_else(PoisonError::into_inner).get(&name).cloned()
    }

    fn add_http(&self, token: &str, key_authorization: &str) {
        self.http.lock().unwrap_or_else(PoisonError::into_inner).insert(token.to_owned(), key_authorization.to_owned());
    }

    fn add_alpn(&self, name: &str, certificate: Arc<CertifiedKey>) {
        self.alpn.lock().unwrap_or_else(PoisonError::into_inner).insert(name.to_owned(), certificate);
    }
}

/// Removes an order's challenge answers when the order is over, however it ends.
struct Registered<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut http = self.challenges.http.lock().unwrap_or_else(PoisonError::into_inner);
        for token in &self.tokens {
            http.remove(token);
        }
        drop(http);
        let mut alpn = self.challenges.alpn.lock().unwrap_or_else(PoisonError::into_inner);
        for name in &self.names {
            alpn.remove(name);
        }
    }
}

/// Counts for the metrics.
#[derive(Debug, Default)]
pub struct Status {
    managed: AtomicU64,
    pending: AtomicU64,
    orders: AtomicU64,
    issued: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Status {
    /// Names that have no certificate yet (the self-signed one is served for them).
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Orders placed.
    pub fn orders(&self) -> u64 {
        self.orders.load(Ordering::Relaxed)
    }

    /// The last failure, until a certificate is obtained.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let failing = u64::from(self.last_error().is_some());
        format!(
            "# HELP pomerium_autocert_certificates The names autocert manages.\n\
             # TYPE pomerium_autocert_certificates gauge\n\
             pomerium_autocert_certificates {}\n\
             # HELP pomerium_autocert_certificates_pending The names still served the self-signed certificate.\n\
             # TYPE pomerium_autocert_certificates_pending gauge\n\
             pomerium_autocert_certificates_pending {}\n\
             # HELP pomerium_autocert_orders_total Certificate orders placed with the ACME server.\n\
             # TYPE pomerium_autocert_orders_total counter\n\
             pomerium_autocert_orders_total {}\n\
             # HELP pomerium_autocert_certificates_issued_total Certificates issued by the ACME server.\n\
             # TYPE pomerium_autocert_certificates_issued_total counter\n\
             pomerium_autocert_certificates_issued_total {}\n\
             # HELP pomerium_autocert_failures_total Failed attempts to obtain a certificate.\n\
             # TYPE pomerium_autocert_failures_total counter\n\
             pomerium_autocert_failures_total {}\n\
             # HELP pomerium_autocert_failing Whether the last attempt failed (the reason is in the log).\n\
             # TYPE pomerium_autocert_failing gauge\n\
             pomerium_autocert_failing {}\n",
            load(&self.managed),
            load(&self.pending),
            load(&self.orders),
            load(&self.issued),
            load(&self.failures),
            failing,
        )
    }

    fn failed(&self, message: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(message.to_owned());
    }
}

/// A certificate with its key, and when to renew it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The chain and key, ready to serve.
    pub key: Arc<CertifiedKey>,
    /// Validity, unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl Stored {
    /// When the certificate should be renewed (unix seconds): at two thirds of its lifetime or
    /// 30 days before it expires, whichever comes first; `renew_after` (tests) overrides.
    pub fn renew_at(&self, renew_after: Option<Duration>) -> i64 {
        if let Some(after) = renew_after {
            return self.not_before.saturating_add(i64::try_from(after.as_secs()).unwrap_or(i64::MAX));
        }
        let lifetime = self.not_after.saturating_sub(self.not_before);
        let two_thirds = self.not_before.saturating_add(lifetime / 3 * 2);
        two_thirds.min(self.not_after.saturating_sub(30 * 86_400))
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The names autocert can get a certificate for: DNS names, lowercased, without wildcards, IP
/// addresses or `localhost`. Returns the names and the wildcards left out.
pub fn plan(hosts: impl IntoIterator<Item = String>) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut wildcards = Vec::new();
    for host in hosts {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.contains('*') {
            wildcards.push(host);
        } else if storage::valid_name(&host) && host != "localhost" {
            names.push(host);
        }
    }
    names.sort();
    names.dedup();
    wildcards.sort();
    wildcards.dedup();
    (names, wildcards)
}

/// Installs the certificates the manager holds (all of them, each time they change).
pub type Install = Box<dyn Fn(Vec<Arc<CertifiedKey>>) + Send + Sync>;

/// Obtains and renews certificates.
#[derive(Debug)]
pub struct Manager {
    settings: Settings,
    challenges: Arc<Challenges>,
    status: Arc<Status>,
    http: AcmeHttp,
    issuer: String,
}

#[derive(Debug, Default)]
struct Entry {
    certificate: Option<Stored>,
    failures: u32,
    retry_at: Option<Instant>,
}

enum Outcome {
    Ready(Stored),
    /// Another replica is ordering this name.
    Locked,
}

impl Manager {
    /// A manager; fails when the HTTP client cannot be built (no usable trusted CA).
    pub fn new(settings: Settings, challenges: Arc<Challenges>, status: Arc<Status>) -> Result<Manager, String> {
        let http = AcmeHttp::new(&settings.trusted_ca)?;
        let issuer = storage::issuer_key(&settings.directory_url);
        Ok(Manager { settings, challenges, status, http, issuer })
    }

    /// Keeps certificates for the names `names` holds until the future is dropped.
    pub async fn run(self, mut names: watch::Receiver<Vec<String>>, install: Install) {
        let mut entries: HashMap<String, Entry> = HashMap::new();
        let mut account: Option<Account> = None;
        loop {
            let wanted: Vec<String> = names.borrow_and_update().clone();
            let set: HashSet<&String> = wanted.iter().collect();
            entries.retain(|name, _| set.contains(name));
            let mut next = Instant::now() + MAX_SLEEP;
            for name in &wanted {
                let entry = entries.entry(name.clone()).or_default();
                if let Some(wait) = self.wait(entry) {
                    next = next.min(wait);
                    continue;
                }
                match self.ensure(name, &mut account).await {
                    Ok(Outcome::Ready(stored)) => {
                        entry.certificate = Some(stored);
                        entry.failures = 0;
                        entry.retry_at = None;
                        // Served at once: the other names' orders may take a while.
                        install(held_keys(&wanted, &entries));
                    }
                    Ok(Outcome::Locked) => entry.retry_at = Some(Instant::now() + LOCKED_RETRY),
                    Err(message) => {
                        // The next attempt starts afresh (the directory may have moved).
                        account = None;
                        entry.failures = entry.failures.saturating_add(1);
                        let delay = backoff(self.settings.retry_base, self.settings.retry_max, entry.failures);
                        entry.retry_at = Some(Instant::now() + delay);
                        self.status.failed(&message);
                        let serving = if entry.certificate.is_some() {
                            "the current certificate"
                        } else {
                            "the self-signed certificate"
                        };
                        tracing::warn!(
                            name = %name,
                            error = %message,
                            retry_in_s = delay.as_secs_f64(),
                            "autocert: cannot obtain a certificate; {serving} is served until then"
                        );
                    }
                }
                if let Some(wait) = entries.get(name).and_then(|entry| self.wait(entry)) {
                    next = next.min(wait);
                }
            }
            let held: Vec<String> = wanted
                .iter()
                .filter(|name| entries.get(*name).is_some_and(|e| e.certificate.is_some()))
                .cloned()
                .collect();
            self.status.managed.store(wanted.len() as u64, Ordering::Relaxed);
            self.status.pending.store((wanted.len() - held.len()) as u64, Ordering::Relaxed);
            if held.len() == wanted.len() && !wanted.is_empty() {
                *self.status.last_error.lock().unwrap_or_else(PoisonError::into_inner) = None;
            }
            install(held_keys(&wanted, &entries));
            tokio::select! {
                changed = names.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(next.into()) => {}
            }
        }
    }

    /// When an entry needs nothing now: the time to look again.
    fn wait(&self, entry: &Entry) -> Option<Instant> {
        let now = Instant::now();
        if let Some(at) = entry.retry_at
            && at > now
        {
            return Some(at);
        }
        let certificate = entry.certificate.as_ref()?;
        let due = certificate.renew_at(self.settings.renew_after);
        let left = due.saturating_sub(unix_now());
        (left > 0).then(|| now + Duration::from_secs(u64::try_from(left).unwrap_or(0)))
    }

    /// A certificate for `name` that is not due: from the disk, or ordered.
    async fn ensure(&self, name: &str, account: &mut Option<Account>) -> Result<Outcome, String> {
        if let Some(stored) = self.stored(name) {
            return Ok(Outcome::Ready(stored));
        }
        let Some(lock) = storage::try_lock(&self.settings.dir, &self.issuer, name)? else {
            tracing::info!(name, "autocert: another replica is ordering this certificate; waiting for it");
            return Ok(Outcome::Locked);
        };
        // Another replica may have finished between the look and the lock.
        if let Some(stored) = self.stored(name) {
            return Ok(Outcome::Ready(stored));
        }
        if let Some(delay) = self.settings.order_delay {
            tokio::time::sleep(delay).await;
        }
        let account = match account {
            Some(account) => account.clone(),
            None => {
                let fresh = self.account().await?;
                *account = Some(fresh.clone());
                fresh
            }
        };
        tracing::info!(name, directory = %self.settings.directory_url, challenge = ?self.settings.challenge, "autocert: ordering a certificate");
        self.status.orders.fetch_add(1, Ordering::Relaxed);
        let (chain_pem, key_pem) = tokio::time::timeout(ORDER_TIMEOUT, self.order(&account, name))
            .await
            .map_err(|_| format!("the order took longer than {} s", ORDER_TIMEOUT.as_secs()))??;
        let stored = storage::parse(chain_pem.as_bytes(), key_pem.as_bytes())
            .map_err(|e| format!("the ACME server's certificate cannot be used: {e}"))?;
        storage::save_certificate(&self.settings.dir, &self.issuer, name, &chain_pem, &key_pem)?;
        drop(lock);
        self.status.issued.fetch_add(1, Ordering::Relaxed);
        tracing::info!(name, not_after = stored.not_after, "autocert: certificate issued");
        Ok(Outcome::Ready(stored))
    }

    /// The stored certificate for `name`, unless it is missing, unreadable or due.
    fn stored(&self, name: &str) -> Option<Stored> {
        let stored = match storage::load_certificate(&self.settings.dir, &self.issuer, name) {
            Ok(stored) => stored?,
            Err(message) => {
                tracing::warn!(name, error = %message, "autocert: ignoring the stored certificate");
                return None;
            }
        };
        (stored.renew_at(self.settings.renew_after) > unix_now()).then_some(stored)
    }

    /// The ACME account: the stored one for this directory, else a new one (then stored).
    async fn account(&self) -> Result<Account, String> {
        let directory = &self.settings.directory_url;
        let builder = || Account::builder_with_http(Box::new(self.http.clone()));
        if let Some(credentials) = storage::load_account(&self.settings.dir, &self.issuer)? {
            return builder()
                .from_credentials(credentials)
                .await
                .map_err(|e| format!("the ACME directory `{directory}` cannot be used: {e}"));
        }
        let contact = self.settings.email.as_ref().map(|email| format!("mailto:{email}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let eab = self.settings.eab.as_ref().map(|(id, key)| ExternalAccountKey::new(id.clone(), key));
        let new = NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
        let (account, credentials) = builder()
            .create(&new, directory.clone(), eab.as_ref())
            .await
            .map_err(|e| format!("cannot create an account with the ACME directory `{directory}`: {e}"))?;
        storage::save_account(&self.settings.dir, &self.issuer, &credentials)?;
        tracing::info!(directory = %directory, "autocert: ACME account created");
        Ok(account)
    }

    /// Orders a certificate for `name`: its chain and key, as PEM.
    async fn order(&self, account: &Account, name: &str) -> Result<(String, String), String> {
        let acme = |e: instant_acme::Error| format!("ACME: {e}");
        let identifiers = [Identifier::Dns(name.to_owned())];
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await.map_err(acme)?;
        let mut registered = Registered { challenges: &self.challenges, tokens: Vec::new(), names: Vec::new() };
        let mut authorizations = order.authorizations();
        while let Some(result) = authorizations.next().await {
            let mut authorization = result.map_err(acme)?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                status => return Err(format!("the authorization for `{name}` is {status:?}")),
            }
            let wanted = self.settings.challenge;
            let mut challenge = authorization
                .challenge(wanted.acme())
                .ok_or_else(|| format!("the ACME server offers no {:?} challenge for `{name}`", wanted.acme()))?;
            let key_authorization = challenge.key_authorization();
            match wanted {
                Challenge::Http01 => {
                    self.challenges.add_http(&challenge.token, key_authorization.as_str());
                    registered.tokens.push(challenge.token.clone());
                }
                Challenge::TlsAlpn01 => {
                    let certificate = alpn_certificate(name, key_authorization.digest().as_ref())?;
                    self.challenges.add_alpn(name, certificate);
                    registered.names.push(name.to_owned());
                }
            }
            challenge.set_ready().await.map_err(acme)?;
        }
        let retries =
            RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(Duration::from_secs(90));
        let status = order.poll_ready(&retries).await.map_err(acme)?;
        drop(registered);
        if status != OrderStatus::Ready {
            let problem = order.state().error.as_ref().map(|p| format!(": {p}")).unwrap_or_default();
            return Err(format!("the order for `{name}` is {status:?}{problem}"));
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| format!("key: {e}"))?;
        let csr = csr(name, self.settings.must_staple, &key)?;
        order.finalize_csr(&csr).await.map_err(acme)?;
        let chain = order.poll_certificate(&retries).await.map_err(acme)?;
        Ok((chain, key.serialize_pem()))
    }
}

/// The certificate signing request for `name` (DER), with the TLS feature `status_request`
/// (RFC 7633) when `must_staple`.
fn csr(name: &str, must_staple: bool, key: &rcgen::KeyPair) -> Result<Vec<u8>, String> {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| format!("csr: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if must_staple {
        // id-pe-tlsfeature: SEQUENCE { INTEGER 5 (status_request) }.
        params.custom_extensions.push(rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 24],
            vec![0x30, 0x03, 0x02, 0x01, 0x05],
        ));
    }
    let csr = params.serialize_request(key).map_err(|e| format!("csr: {e}"))?;
    Ok(csr.der().to_vec())
}

/// The certificates held for `wanted`, in its order.
fn held_keys(wanted: &[String], entries: &HashMap<String, Entry>) -> Vec<Arc<CertifiedKey>> {
    wanted
        .iter()
        .filter_map(|name| entries.get(name).and_then(|e| e.certificate.as_ref()).map(|c| Arc::clone(&c.key)))
        .collect()
}

/// The wait before attempt `failures + 1`: `base`, doubled per failure, at most `max`.
fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(max)
}

/// The self-signed certificate that answers a TLS-ALPN-01 challenge for `name` (RFC 8737).
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let fail = |e: rcgen::Error| format!("TLS-ALPN-01 certificate: {e}");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(fail)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let certificate = params.self_signed(&key).map_err(fail)?;
    let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    // Not `CertifiedKey::from_der`: its consistency check refuses the critical acmeIdentifier.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider.key_provider.load_private_key(der).map_err(|e| format!("TLS-ALPN-01 key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(vec![certificate.der().clone()], signing)))
}

/// A chain and key checked to belong together, on the workspace's provider.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, String> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map(Arc::new).map_err(|e| format!("certificate and key: {e}"))
}

/// The HTTP client of the ACME conversation: rustls on aws-lc-rs, `autocert_trusted_ca` (else
/// the system's roots), every request and its body bounded in time and size.
#[derive(Clone)]
struct AcmeHttp {
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        BodyWrapper<Bytes>,
    >,
}

impl std::fmt::Debug for AcmeHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcmeHttp")
    }
}

impl AcmeHttp {
    fn new(trusted_ca: &[CertificateDer<'static>]) -> Result<AcmeHttp, String> {
        let mut roots = rustls::RootCertStore::empty();
        if trusted_ca.is_empty() {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        } else {
            let (added, _) = roots.add_parsable_certificates(trusted_ca.iter().cloned());
            if added == 0 {
                return Err("autocert_trusted_ca holds no usable certificate authority".to_owned());
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("tls: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(AcmeHttp { client })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.client.request(request);
        Box::pin(async move {
            let exchange = async move {
                let response = response.await.map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
                let (parts, body) = response.into_parts();
                let body = http_body_util::Limited::new(body, MAX_BODY)
                    .collect()
                    .await
                    .map_err(instant_acme::Error::Other)?
                    .to_bytes();
                Ok(BytesResponse::from(http::Response::from_parts(parts, http_body_util::Full::new(body))))
            };
            match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                Ok(result) => result,
                Err(_) => Err(instant_acme::Error::Other(
                    format!("the ACME server did not answer within {} s", REQUEST_TIMEOUT.as_secs()).into(),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn renewal_is_at_two_thirds_or_a_month_before_expiry() {
        let day = 86_400;
        let short = Stored { key: test_key(), not_before: 0, not_after: 90 * day };
        assert_eq!(short.renew_at(None), 60 * day);
        let year = Stored { key: test_key(), not_before: 0, not_after: 360 * day };
        assert_eq!(year.renew_at(None), 240 * day);
        // Two thirds of 60 days leave 20: a month before expiry comes first.
        let sixty = Stored { key: test_key(), not_before: 0, not_after: 60 * day };
        assert_eq!(sixty.renew_at(None), 30 * day);
        assert_eq!(year.renew_at(Some(Duration::from_secs(5))), 5);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(10);
        let waits: Vec<u64> = (1..=6).map(|n| backoff(base, max, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(base, Duration::from_secs(3600), 1000).as_secs(), 3600);
    }

    #[test]
    fn plan_keeps_dns_names_and_reports_wildcards() {
        let hosts = ["B.example.com", "b.example.com.", "*.example.com", "10.0.0.1", "localhost", "a.test", "../x"];
        let (names, wildcards) = plan(hosts.iter().map(|h| (*h).to_owned()));
        assert_eq!(names, ["a.test", "b.example.com"]);
        assert_eq!(wildcards, ["*.example.com"]);
    }

    #[test]
    fn http_challenges_answer_only_their_token() {
        let challenges = Challenges::default();
        challenges.add_http("tok", "tok.thumb");
        assert_eq!(challenges.http_response("/.well-known/acme-challenge/tok").as_deref(), Some("tok.thumb"));
        assert_eq!(challenges.http_response("/.well-known/acme-challenge/other"), None);
        assert_eq!(challenges.http_response("/tok"), None);
        drop(Registered { challenges: &challenges, tokens: vec!["tok".to_owned()], names: Vec::new() });
        assert_eq!(challenges.http_response("/.well-known/acme-challenge/tok"), None);
    }

    #[test]
    fn alpn_certificates_carry_the_acme_identifier() {
        let challenges = Challenges::default();
        challenges.add_alpn("a.test", alpn_certificate("a.test", &[7; 32]).unwrap());
        let certificate = challenges.alpn_certificate("A.TEST.").unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(certificate.end_entity_cert().unwrap()).unwrap();
        let extension = parsed.extensions().iter().find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31").unwrap();
        assert!(extension.critical);
        assert!(extension.value.ends_with(&[7; 32]));
    }

    #[test]
    fn must_staple_asks_for_status_request_in_the_csr() {
        use x509_parser::prelude::FromDer as _;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let requested = |must_staple| {
            let der = csr("a.test", must_staple, &key).unwrap();
            let (_, request) = x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
            let found: Vec<String> = request
                .requested_extensions()
                .into_iter()
                .flatten()
                .filter_map(|e| match e {
                    x509_parser::extensions::ParsedExtension::UnsupportedExtension { oid } => Some(oid.to_id_string()),
                    _ => None,
                })
                .collect();
            found
        };
        assert_eq!(requested(true), ["1.3.6.1.5.5.7.1.24"]);
        assert!(requested(false).is_empty());
    }

    fn test_key() -> Arc<CertifiedKey> {
        alpn_certificate("k.test", &[0; 32]).unwrap()
    }
}

//! `autocert`: the server's side of the ACME manager (crates/autocert). Plans the names (the
//! authenticate host and every route's `from` host, wildcards left out with a warning), puts the
//! issued certificates ahead of the configured or self-signed ones in the main listener's
//! resolver, answers HTTP-01 on the plain listener and TLS-ALPN-01 on the main one. As in
//! Pomerium, the plain listener is `http_redirect_addr` only: without it (Pomerium starts no
//! redirect server then) the challenge is TLS-ALPN-01.
//!
//! Test hooks (environment): `POMERIUM_AUTOCERT_CHALLENGE` (`http-01` or `tls-alpn-01`; default:
//! HTTP-01 when the plain listener is open, else TLS-ALPN-01), `POMERIUM_AUTOCERT_RENEW_AFTER_MS`
//! (renew certificates older than this), `POMERIUM_AUTOCERT_RETRY_MS` (the first retry delay),
//! `POMERIUM_AUTOCERT_ORDER_DELAY_MS` (hold a name's lock this long before ordering).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::autocert::{Challenge, Challenges, Manager, Settings, Status};
use config::{Config, Options};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use proxy::body::{self, ProxyBody};
use proxy::server::{self, ConnectionInfo, ServerOptions, ShutdownSignal};
use proxy::tls::SniResolver;
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Shared between the manager, the listeners and the reloader.
pub(crate) struct Autocert {
    pub(crate) challenges: Arc<Challenges>,
    pub(crate) status: Arc<Status>,
    names: watch::Sender<Vec<String>>,
    /// What the manager holds, and the configuration's own certificates (served after them).
    issued: Mutex<Vec<Arc<CertifiedKey>>>,
    base: Mutex<Vec<Arc<CertifiedKey>>>,
    /// Whether the plain listener is open (HTTP-01 can be answered).
    pub(crate) http_listener: AtomicBool,
    /// The wildcards last warned about.
    wildcards: Mutex<Vec<String>>,
    /// The challenge and the delays from the environment (`crate::tuning`).
    tuning: crate::tuning::Tuning,
}

impl Autocert {
    pub(crate) fn new(config: &Config, tuning: &crate::tuning::Tuning) -> Arc<Autocert> {
        let autocert = Arc::new(Autocert {
            challenges: Arc::default(),
            status: Arc::default(),
            names: watch::Sender::new(Vec::new()),
            issued: Mutex::default(),
            base: Mutex::default(),
            http_listener: AtomicBool::new(false),
            wildcards: Mutex::default(),
            tuning: tuning.clone(),
        });
        autocert.plan(config);
        autocert
    }

    /// The TLS-ALPN-01 hook of the main listener's resolver.
    pub(crate) fn alpn_hook(&self) -> proxy::tls::AcmeChallengeCertificates {
        let challenges = Arc::clone(&self.challenges);
        Arc::new(move |name: &str| challenges.alpn_certificate(name))
    }

    /// Sends the names `config` needs to the manager.
    pub(crate) fn plan(&self, config: &Config) {
        let mut hosts: Vec<String> = config.routes.iter().map(|route| route.from.host.clone()).collect();
        if let Some(host) = config.options.authenticate_url().and_then(|url| url.host_str().map(str::to_owned)) {
            hosts.push(host);
        }
        let (names, wildcards) = ::autocert::plan(hosts);
        let mut warned = self.wildcards.lock().unwrap_or_else(PoisonError::into_inner);
        if *warned != wildcards && !wildcards.is_empty() {
            tracing::warn!(
                hosts = %wildcards.join(", "),
                "autocert: no certificate is requested for wildcard hosts (ACME needs DNS-01 for them); \
                 configure a certificate for them"
            );
        }
        *warned = wildcards;
        self.names.send_if_modified(|current| {
            let changed = *current != names;
            if changed {
                current.clone_from(&names);
            }
            changed
        });
    }

    /// The certificates to serve: the issued ones first, then `base` (kept for later installs).
    pub(crate) fn with_issued(&self, base: Vec<Arc<CertifiedKey>>) -> Vec<Arc<CertifiedKey>> {
        let mut all = self.issued.lock().unwrap_or_else(PoisonError::into_inner).clone();
        all.extend(base.iter().cloned());
        *self.base.lock().unwrap_or_else(PoisonError::into_inner) = base;
        all
    }

    /// Starts the manager: it runs until `shutdown` fires.
    pub(crate) fn start(
        self: &Arc<Self>,
        options: &Options,
        resolver: Arc<SniResolver>,
        tasks: &mut tokio::task::JoinSet<()>,
        mut shutdown: ShutdownSignal,
    ) -> Result<(), String> {
        let settings = settings(options, self.http_listener.load(Ordering::Relaxed), &self.tuning)?;
        tracing::info!(
            directory = %settings.directory_url,
            dir = %settings.dir.display(),
            challenge = ?settings.challenge,
            names = %self.names.borrow().join(", "),
            "autocert: managing certificates"
        );
        let manager = Manager::new(settings, Arc::clone(&self.challenges), Arc::clone(&self.status))
            .map_err(|e| format!("autocert: {e}"))?;
        let this = Arc::clone(self);
        let install: ::autocert::Install = Box::new(move |issued| {
            *this.issued.lock().unwrap_or_else(PoisonError::into_inner) = issued;
            let base = this.base.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let all = this.with_issued(base);
            if let Err(error) = resolver.replace(&all) {
                tracing::error!(%error, "autocert: the issued certificates cannot be served");
            }
        });
        let names = self.names.subscribe();
        tasks.spawn(async move {
            tokio::select! {
                () = shutdown.fired() => {}
                () = manager.run(names, install) => {}
            }
        });
        Ok(())
    }
}

/// The manager's settings from the options.
fn settings(options: &Options, http_listener: bool, tuning: &crate::tuning::Tuning) -> Result<Settings, String> {
    let autocert = &options.autocert;
    let directory_url = match &autocert.ca {
        Some(url) => url.to_string(),
        None if autocert.use_staging => ::autocert::LETS_ENCRYPT_STAGING.to_owned(),
        None => ::autocert::LETS_ENCRYPT.to_owned(),
    };
    let eab = match (&autocert.eab_key_id, &autocert.eab_mac_key) {
        (Some(id), Some(key)) => {
            Some((id.clone(), decode_mac_key(key.expose_str().ok_or("autocert_eab_mac_key is not text")?)?))
        }
        (None, None) => None,
        _ => return Err("autocert_eab_key_id and autocert_eab_mac_key go together: set both or neither".to_owned()),
    };
    let challenge = match tuning.autocert_challenge {
        Some(challenge) => challenge,
        None if http_listener => Challenge::Http01,
        None => Challenge::TlsAlpn01,
    };
    Ok(Settings {
        directory_url,
        email: autocert.email.clone(),
        eab,
        must_staple: autocert.must_staple,
        trusted_ca: autocert.trusted_ca.as_ref().map(|ca| ca.ders().to_vec()).unwrap_or_default(),
        dir: autocert.dir.as_ref().map_or_else(default_dir, PathBuf::from),
        challenge,
        retry_base: tuning.autocert_retry.unwrap_or(Duration::from_secs(60)),
        retry_max: Duration::from_secs(3600),
        renew_after: tuning.autocert_renew_after,
        order_delay: tuning.autocert_order_delay,
    })
}

/// The EAB MAC key: base64url (as ACME CAs hand it out), padded or not; standard base64 too.
fn decode_mac_key(key: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let trimmed = key.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD.decode(key.trim()))
        .map_err(|_| "autocert_eab_mac_key is not base64url: copy the MAC key as the CA gives it".to_owned())
}

/// Pomerium's default `autocert_dir`: `$XDG_DATA_HOME/pomerium`, else
/// `$HOME/.local/share/pomerium`.
fn default_dir() -> PathBuf {
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(data).join("pomerium");
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local").join("share").join("pomerium")
}

/// The plain listener: ACME HTTP-01 answers (when autocert is on), else the redirect to https.
pub(crate) async fn serve_plain(
    listener: TcpListener,
    https_port: u16,
    challenges: Option<Arc<Challenges>>,
    options: ServerOptions,
    shutdown: ShutdownSignal,
) {
    let Some(challenges) = challenges else {
        return server::serve_https_redirect(listener, https_port, options, shutdown).await;
    };
    let handler = move |request: Request<Incoming>, _: Arc<ConnectionInfo>| {
        let challenges = Arc::clone(&challenges);
        async move {
            let path = request.uri().path();
            if path.starts_with(::autocert::HTTP_CHALLENGE_PREFIX) {
                return match challenges.http_response(path) {
                    Some(answer) => text(StatusCode::OK, answer),
                    None => text(StatusCode::NOT_FOUND, "no such challenge".to_owned()),
                };
            }
            server::https_redirect(&request, https_port)
        }
    };
    server::serve(listener, None, handler, options, shutdown).await;
}

fn text(status: StatusCode, content: String) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(content));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn mac_keys_decode_in_either_alphabet() {
        assert_eq!(decode_mac_key("_-8").unwrap(), [0xff, 0xef]);
        assert_eq!(decode_mac_key("/+8=").unwrap(), [0xff, 0xef]);
        assert!(decode_mac_key("not base64!").unwrap_err().contains("autocert_eab_mac_key"));
    }
}

//! The few metrics the server keeps, in Prometheus' text format on `metrics_address`.
//! Names follow Pomerium's where it has them (`pomerium_config_last_reload_success`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use config::Options;
use config::Secret;
use proxy::tls::{ClientCertMode, DownstreamClientAuth, ServerTls, SniResolver};

/// Who may read `/metrics`: with `metrics_basic_auth`, requests that send those credentials.
#[derive(Debug)]
pub struct Access {
    basic_auth: Option<Secret>,
}

impl Access {
    /// Whether a request with `headers` may read the metrics (the credentials compared in
    /// constant time).
    pub fn allows(&self, headers: &http::HeaderMap) -> bool {
        let Some(expected) = &self.basic_auth else { return true };
        let Some(value) = headers.get(http::header::AUTHORIZATION).map(http::HeaderValue::as_bytes) else {
            return false;
        };
        let Some((scheme, credentials)) = value.split_first_chunk::<6>() else { return false };
        scheme.eq_ignore_ascii_case(b"basic ")
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                credentials.trim_ascii(),
                expected.expose().trim_ascii(),
            )
            .is_ok()
    }
}

/// The metrics listener's TLS (with `metrics_certificate`; client certificates from
/// `metrics_client_ca` required) and access rule.
pub fn listener_settings(options: &Options) -> Result<(Option<ServerTls>, Access), String> {
    let access = Access { basic_auth: options.metrics_basic_auth.clone() };
    let Some(pair) = &options.metrics_certificate else {
        if options.metrics_client_ca.is_some() {
            return Err("metrics_client_ca: client certificates need TLS: set metrics_certificate (or \
                        metrics_certificate_file) too"
                .to_owned());
        }
        return Ok((None, access));
    };
    let key = pair.key.der().ok_or("metrics_certificate_key: not a private key")?;
    let certified = proxy::tls::certified_key(pair.certificates.ders().to_vec(), key)
        .map_err(|e| format!("metrics_certificate: {e}"))?;
    let resolver = Arc::new(SniResolver::new(&[certified]).map_err(|e| format!("metrics_certificate: {e}"))?);
    let client_auth = options
        .metrics_client_ca
        .as_ref()
        .map(|ca| DownstreamClientAuth::new(ca.ders().to_vec(), ClientCertMode::Require));
    let tls = ServerTls::new(resolver, client_auth.as_ref()).map_err(|e| format!("metrics_client_ca: {e}"))?;
    Ok((Some(tls), access))
}

#[derive(Debug, Default)]
pub struct Metrics {
    reloads_succeeded: AtomicU64,
    reloads_failed: AtomicU64,
    /// 1 when the last reload attempt succeeded (or none has been tried), 0 after a failure.
    last_reload_failed: AtomicU64,
    last_reload_success_timestamp: AtomicU64,
    routes: AtomicU64,
    autocert: std::sync::OnceLock<std::sync::Arc<autocert::Status>>,
}

impl Metrics {
    pub fn reload_succeeded(&self, routes: usize, unix_seconds: u64) {
        self.reloads_succeeded.fetch_add(1, Ordering::Relaxed);
        self.last_reload_failed.store(0, Ordering::Relaxed);
        self.last_reload_success_timestamp.store(unix_seconds, Ordering::Relaxed);
        self.routes.store(routes as u64, Ordering::Relaxed);
    }

    pub fn reload_failed(&self) {
        self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        self.last_reload_failed.store(1, Ordering::Relaxed);
    }

    pub fn started(&self, routes: usize, unix_seconds: u64) {
        self.last_reload_success_timestamp.store(unix_seconds, Ordering::Relaxed);
        self.routes.store(routes as u64, Ordering::Relaxed);
    }

    /// Adds autocert's counts to the metrics.
    pub fn autocert(&self, status: std::sync::Arc<autocert::Status>) {
        let _ = self.autocert.set(status);
    }

    pub fn render(&self) -> String {
        let mut text = self.render_server();
        if let Some(status) = self.autocert.get() {
            text.push_str(&status.render());
        }
        text
    }

    fn render_server(&self) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        format!(
            "# HELP pomerium_config_reloads_total Configuration reloads, by result.\n\
             # TYPE pomerium_config_reloads_total counter\n\
             pomerium_config_reloads_total{{result=\"success\"}} {}\n\
             pomerium_config_reloads_total{{result=\"failure\"}} {}\n\
             # HELP pomerium_config_last_reload_success Whether the last configuration reload succeeded.\n\
             # TYPE pomerium_config_last_reload_success gauge\n\
             pomerium_config_last_reload_success {}\n\
             # HELP pomerium_config_last_reload_success_timestamp When the running configuration was loaded (unix seconds).\n\
             # TYPE pomerium_config_last_reload_success_timestamp gauge\n\
             pomerium_config_last_reload_success_timestamp {}\n\
             # HELP pomerium_routes The routes in the running configuration.\n\
             # TYPE pomerium_routes gauge\n\
             pomerium_routes {}\n",
            load(&self.reloads_succeeded),
            load(&self.reloads_failed),
            1 - load(&self.last_reload_failed).min(1),
            load(&self.last_reload_success_timestamp),
            load(&self.routes),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reload_shows_until_one_succeeds() {
        let metrics = Metrics::default();
        metrics.started(3, 100);
        assert!(metrics.render().contains("pomerium_config_last_reload_success 1\n"));
        metrics.reload_failed();
        let text = metrics.render();
        assert!(text.contains("pomerium_config_last_reload_success 0\n"), "{text}");
        assert!(text.contains("pomerium_config_reloads_total{result=\"failure\"} 1\n"), "{text}");
        metrics.reload_succeeded(4, 200);
        let text = metrics.render();
        assert!(text.contains("pomerium_config_last_reload_success 1\n"), "{text}");
        assert!(text.contains("pomerium_config_last_reload_success_timestamp 200\n"), "{text}");
        assert!(text.contains("pomerium_routes 4\n"), "{text}");
    }
}

//! The few metrics the server keeps, in Prometheus' text format on `metrics_address`.
//! Names follow Pomerium's where it has them (`pomerium_config_last_reload_success`).

use std::sync::atomic::{AtomicU64, Ordering};

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

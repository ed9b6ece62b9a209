//! The server's timing knobs that are not Pomerium options: intervals and delays that tests shorten
//! (an operator may too), read once from the environment when the process starts, here and nowhere
//! else. A value that does not parse stops the server with its name, rather than being ignored.
//!
//! | variable | what | default |
//! | --- | --- | --- |
//! | `POMERIUM_WATCH_INTERVAL_MS` | how often the configuration file is checked for changes | 1000 |
//! | `POMERIUM_SESSION_REFRESH_INTERVAL_MS` | how often sessions due for a refresh are looked for | the refresher's |
//! | `POMERIUM_USER_INFO_INTERVAL_MS` | how often each user's info is asked of the provider again | 10 minutes |
//! | `POMERIUM_AUTOCERT_CHALLENGE` | `http-01` or `tls-alpn-01` | HTTP-01 with a plain listener |
//! | `POMERIUM_AUTOCERT_RETRY_MS` | the first wait after a failed ACME order (doubling to an hour) | 60000 |
//! | `POMERIUM_AUTOCERT_RENEW_AFTER_MS` | renew certificates this long after issue | a third before expiry |
//! | `POMERIUM_AUTOCERT_ORDER_DELAY_MS` | a wait before each ACME order | none |
//! | `POMERIUM_PROXY_WORKERS` | threads serving the main listener, each with its own runtime and socket (`SO_REUSEPORT`) | `TOKIO_WORKER_THREADS`, else the cores |

use std::time::Duration;

/// The knobs, read and checked.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    pub watch_interval: Option<Duration>,
    pub session_refresh_interval: Option<Duration>,
    pub user_info_interval: Option<Duration>,
    pub autocert_challenge: Option<::autocert::Challenge>,
    pub autocert_retry: Option<Duration>,
    pub autocert_renew_after: Option<Duration>,
    pub autocert_order_delay: Option<Duration>,
    pub proxy_workers: Option<usize>,
}

impl Tuning {
    /// Reads the knobs through `var` (the process environment in `main`); every bad value at once.
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Result<Tuning, Vec<String>> {
        let mut errors = Vec::new();
        let mut milliseconds = |name: &str| {
            let text = var(name)?;
            match text.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Some(Duration::from_millis(ms)),
                _ => {
                    errors.push(format!("{name}={text:?} is not a positive number of milliseconds"));
                    None
                }
            }
        };
        let mut tuning = Tuning {
            watch_interval: milliseconds("POMERIUM_WATCH_INTERVAL_MS"),
            session_refresh_interval: milliseconds("POMERIUM_SESSION_REFRESH_INTERVAL_MS"),
            user_info_interval: milliseconds("POMERIUM_USER_INFO_INTERVAL_MS"),
            autocert_challenge: None,
            autocert_retry: milliseconds("POMERIUM_AUTOCERT_RETRY_MS"),
            autocert_renew_after: milliseconds("POMERIUM_AUTOCERT_RENEW_AFTER_MS"),
            autocert_order_delay: milliseconds("POMERIUM_AUTOCERT_ORDER_DELAY_MS"),
            proxy_workers: None,
        };
        // Tokio's own knob, which the benchmarks set, counts when ours is not set.
        for name in ["POMERIUM_PROXY_WORKERS", "TOKIO_WORKER_THREADS"] {
            let Some(text) = var(name) else { continue };
            match text.trim().parse::<usize>() {
                Ok(workers @ 1..=1024) => tuning.proxy_workers = Some(workers),
                _ => errors.push(format!("{name}={text:?} is not a number of threads from 1 to 1024")),
            }
            break;
        }
        tuning.autocert_challenge = match var("POMERIUM_AUTOCERT_CHALLENGE").as_deref() {
            None => None,
            Some("http-01") => Some(::autocert::Challenge::Http01),
            Some("tls-alpn-01") => Some(::autocert::Challenge::TlsAlpn01),
            Some(other) => {
                errors.push(format!("POMERIUM_AUTOCERT_CHALLENGE={other:?} is neither `http-01` nor `tls-alpn-01`"));
                None
            }
        };
        if errors.is_empty() { Ok(tuning) } else { Err(errors) }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn values_are_read_and_bad_ones_named() {
        let tuning = Tuning::read(|name| match name {
            "POMERIUM_WATCH_INTERVAL_MS" => Some("50".to_owned()),
            "POMERIUM_AUTOCERT_CHALLENGE" => Some("tls-alpn-01".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(tuning.watch_interval, Some(Duration::from_millis(50)));
        assert_eq!(tuning.autocert_challenge, Some(::autocert::Challenge::TlsAlpn01));
        assert_eq!(tuning.user_info_interval, None);
        assert_eq!(tuning.proxy_workers, None);
        let workers = |pairs: &'static [(&str, &str)]| {
            Tuning::read(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()))
        };
        assert_eq!(workers(&[("TOKIO_WORKER_THREADS", "1")]).unwrap().proxy_workers, Some(1));
        assert_eq!(
            workers(&[("TOKIO_WORKER_THREADS", "1"), ("POMERIUM_PROXY_WORKERS", "3")]).unwrap().proxy_workers,
            Some(3)
        );
        assert!(workers(&[("POMERIUM_PROXY_WORKERS", "0")]).unwrap_err()[0].contains("POMERIUM_PROXY_WORKERS"));
        let errors = Tuning::read(|name| match name {
            "POMERIUM_USER_INFO_INTERVAL_MS" => Some("soon".to_owned()),
            "POMERIUM_AUTOCERT_CHALLENGE" => Some("dns-01".to_owned()),
            _ => None,
        })
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("POMERIUM_USER_INFO_INTERVAL_MS") && errors[1].contains("dns-01"), "{errors:?}");
    }
}

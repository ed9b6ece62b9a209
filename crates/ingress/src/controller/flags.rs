//! The flags of `pomerium-ingress-controller controller` (upstream's `cmd/controller.go` and
//! `cmd/ingress_opts.go`), and [`Settings`], what they mean once checked.
//!
//! As upstream binds every flag to an environment variable of its name in SCREAMING_SNAKE case
//! (`--shared-secret` ← `SHARED_SECRET`), so do we; except `--name` and `--prefix`, whose variables
//! (`NAME`, `PREFIX`) are too commonly set for other reasons (WSL sets `NAME`) to be read silently.

use super::ControllerError;
use crate::ObjectKey;
use base64::Engine as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// `pomerium-ingress-controller controller [FLAGS]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// The databroker service URL.
    #[arg(long, env = "DATABROKER_SERVICE_URL", default_value = "http://localhost:5443")]
    pub databroker_service_url: String,
    /// The TLS CA of the databroker connection: base64-encoded PEM.
    #[arg(long, env = "DATABROKER_TLS_CA", value_name = "BASE64")]
    pub databroker_tls_ca: Option<String>,
    /// The TLS CA of the databroker connection: a PEM file.
    #[arg(long, env = "DATABROKER_TLS_CA_FILE", value_name = "FILE")]
    pub databroker_tls_ca_file: Option<PathBuf>,
    /// Do not verify the databroker's certificate chain and host name.
    #[arg(long, env = "DATABROKER_TLS_INSECURE_SKIP_VERIFY")]
    pub databroker_tls_insecure_skip_verify: bool,
    /// The base64-encoded shared secret that signs the databroker's service tokens.
    #[arg(long, env = "SHARED_SECRET", hide_env_values = true, value_name = "BASE64")]
    pub shared_secret: Option<String>,
    /// A file holding the base64-encoded shared secret.
    #[arg(long, env = "SHARED_SECRET_FILE", value_name = "FILE", conflicts_with = "shared_secret")]
    pub shared_secret_file: Option<PathBuf>,
    /// The address of the probe endpoints (`/healthz`, `/readyz`); `0` turns them off.
    #[arg(long, env = "HEALTH_PROBE_BIND_ADDRESS", default_value = ":8081")]
    pub health_probe_bind_address: String,
    /// The address of the metrics endpoint (`/metrics`, Prometheus text); `0` turns it off.
    #[arg(long, env = "METRICS_BIND_ADDRESS", default_value = ":8080")]
    pub metrics_bind_address: String,
    /// The IngressClass controller name: Ingresses of classes whose `spec.controller` is this are ours.
    #[arg(long = "name", default_value = crate::classes::DEFAULT_CONTROLLER_NAME)]
    pub controller_name: String,
    /// Namespaces to watch, comma-separated; omit to watch all namespaces.
    #[arg(long, env = "NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// The Ingress annotation prefix.
    #[arg(long = "prefix", default_value = crate::DEFAULT_ANNOTATION_PREFIX)]
    pub annotation_prefix: String,
    /// Copy the load-balancer status of this Service (`namespace/name`, the Pomerium proxy's) to
    /// every Ingress served.
    #[arg(long, env = "UPDATE_STATUS_FROM_SERVICE", value_name = "NAMESPACE/NAME")]
    pub update_status_from_service: Option<String>,
    /// How long to wait for more changes before writing the configuration, in milliseconds.
    #[arg(long, env = "DEBOUNCE_MS", default_value_t = 50, hide = true)]
    pub debounce_ms: u64,
}

/// The databroker connection's TLS settings.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DatabrokerTls {
    /// The CA bundle (PEM), from `--databroker-tls-ca` or `--databroker-tls-ca-file`.
    pub ca_pem: Option<Vec<u8>>,
    pub insecure_skip_verify: bool,
}

impl std::fmt::Debug for DatabrokerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabrokerTls")
            .field("ca_pem", &self.ca_pem.as_ref().map(|ca| format!("{} bytes", ca.len())))
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

/// What the controller runs with.
#[derive(Clone)]
pub struct Settings {
    pub databroker_url: String,
    pub databroker_tls: DatabrokerTls,
    /// The decoded shared secret; never printed by `Debug`.
    pub shared_secret: Vec<u8>,
    pub health_probe_address: Option<SocketAddr>,
    pub metrics_address: Option<SocketAddr>,
    pub controller_name: String,
    /// Empty: all namespaces.
    pub namespaces: Vec<String>,
    pub annotation_prefix: String,
    pub status_service: Option<ObjectKey>,
    pub debounce: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("databroker_url", &self.databroker_url)
            .field("databroker_tls", &self.databroker_tls)
            .field("shared_secret", &format_args!("<{} bytes, redacted>", self.shared_secret.len()))
            .field("health_probe_address", &self.health_probe_address)
            .field("metrics_address", &self.metrics_address)
            .field("controller_name", &self.controller_name)
            .field("namespaces", &self.namespaces)
            .field("annotation_prefix", &self.annotation_prefix)
            .field("status_service", &self.status_service)
            .field("debounce", &self.debounce)
            .finish()
    }
}

impl Settings {
    /// Settings for tests and embedding: the given databroker and secret, no probe or metrics
    /// listeners, every namespace, the default names, a 50 ms debounce.
    pub fn new(databroker_url: &str, shared_secret: &[u8]) -> Settings {
        Settings {
            databroker_url: databroker_url.to_owned(),
            databroker_tls: DatabrokerTls::default(),
            shared_secret: shared_secret.to_vec(),
            health_probe_address: None,
            metrics_address: None,
            controller_name: crate::classes::DEFAULT_CONTROLLER_NAME.to_owned(),
            namespaces: Vec::new(),
            annotation_prefix: crate::DEFAULT_ANNOTATION_PREFIX.to_owned(),
            status_service: None,
            debounce: Duration::from_millis(50),
        }
    }

    /// The translation options these settings imply.
    pub fn options(&self) -> crate::Options {
        crate::Options {
            annotation_prefix: self.annotation_prefix.clone(),
            controller_name: self.controller_name.clone(),
        }
    }
}

impl ControllerArgs {
    /// Checks the flags and reads the files they name.
    pub fn settings(&self) -> Result<Settings, ControllerError> {
        let shared_secret = self.shared_secret()?;
        let ca_pem = match (&self.databroker_tls_ca, &self.databroker_tls_ca_file) {
            (Some(_), Some(_)) => {
                let reason = "give the CA either inline or as a file (`--databroker-tls-ca-file`), not both".to_owned();
                return Err(ControllerError::Flag { flag: "databroker-tls-ca", reason });
            }
            (Some(encoded), None) => Some(decode_base64("databroker-tls-ca", encoded)?),
            (None, Some(path)) => Some(read_file("databroker-tls-ca-file", path)?),
            (None, None) => None,
        };
        let namespaces: Vec<String> =
            self.namespaces.iter().map(|ns| ns.trim().to_owned()).filter(|ns| !ns.is_empty()).collect();
        if let Some(bad) = namespaces.iter().find(|ns| !is_dns_label(ns)) {
            let reason = format!("`{bad}` is not a namespace name (a DNS label: lowercase letters, digits and `-`)");
            return Err(ControllerError::Flag { flag: "namespaces", reason });
        }
        let status_service = match self.update_status_from_service.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(parse_namespaced_name("update-status-from-service", text)?),
        };
        for (flag, value) in [("name", &self.controller_name), ("prefix", &self.annotation_prefix)] {
            if value.trim().is_empty() {
                return Err(ControllerError::Flag { flag, reason: "must not be empty".to_owned() });
            }
        }
        Ok(Settings {
            databroker_url: self.databroker_service_url.trim().to_owned(),
            databroker_tls: DatabrokerTls { ca_pem, insecure_skip_verify: self.databroker_tls_insecure_skip_verify },
            shared_secret,
            health_probe_address: parse_bind_address("health-probe-bind-address", &self.health_probe_bind_address)?,
            metrics_address: parse_bind_address("metrics-bind-address", &self.metrics_bind_address)?,
            controller_name: self.controller_name.clone(),
            namespaces,
            annotation_prefix: self.annotation_prefix.trim_end_matches('/').to_owned(),
            status_service,
            debounce: Duration::from_millis(self.debounce_ms),
        })
    }

    fn shared_secret(&self) -> Result<Vec<u8>, ControllerError> {
        let (flag, text) = match (&self.shared_secret, &self.shared_secret_file) {
            (Some(text), _) => ("shared-secret", text.clone()),
            (None, Some(path)) => {
                let bytes = read_file("shared-secret-file", path)?;
                let text = String::from_utf8(bytes).map_err(|_| ControllerError::Flag {
                    flag: "shared-secret-file",
                    reason: "the file must hold the secret as base64 text".to_owned(),
                })?;
                ("shared-secret-file", text)
            }
            (None, None) => {
                let reason = "a shared secret is required to talk to the databroker (`--shared-secret`, \
                              `SHARED_SECRET` or `--shared-secret-file`)"
                    .to_owned();
                return Err(ControllerError::Flag { flag: "shared-secret", reason });
            }
        };
        let secret = decode_base64(flag, text.trim())?;
        if secret.is_empty() {
            return Err(ControllerError::Flag { flag, reason: "the shared secret is empty".to_owned() });
        }
        Ok(secret)
    }
}

fn read_file(flag: &'static str, path: &PathBuf) -> Result<Vec<u8>, ControllerError> {
    std::fs::read(path).map_err(|source| ControllerError::ReadFile { flag, path: path.clone(), source })
}

fn decode_base64(flag: &'static str, text: &str) -> Result<Vec<u8>, ControllerError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| ControllerError::Flag { flag, reason: format!("not base64: {e}") })
}

/// Go's `host:port` listen addresses: `:8081` is every interface; `0` (or nothing) turns the
/// listener off, as in controller-runtime.
pub(crate) fn parse_bind_address(flag: &'static str, text: &str) -> Result<Option<SocketAddr>, ControllerError> {
    let text = text.trim();
    if text.is_empty() || text == "0" {
        return Ok(None);
    }
    let bad = |reason: String| ControllerError::Flag { flag, reason };
    let (host, port) = text.rsplit_once(':').ok_or_else(|| bad(format!("`{text}` is not `host:port` or `:port`")))?;
    let port: u16 = port.parse().map_err(|_| bad(format!("`{port}` is not a port number")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip.parse().map_err(|_| bad(format!("`{ip}` is not an IP address")))?,
    };
    Ok(Some(SocketAddr::new(ip, port)))
}

fn parse_namespaced_name(flag: &'static str, text: &str) -> Result<ObjectKey, ControllerError> {
    match text.split_once('/') {
        Some((namespace, name)) if is_dns_label(namespace) && !name.is_empty() && !name.contains('/') => {
            Ok(ObjectKey::new(namespace, name))
        }
        _ => Err(ControllerError::Flag { flag, reason: format!("`{text}` is not `namespace/name`") }),
    }
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    fn parse(args: &[&str]) -> Result<Settings, ControllerError> {
        let mut argv = vec!["controller"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().args.settings()
    }

    #[test]
    fn defaults_follow_upstream() {
        let settings = parse(&["--shared-secret", "c2VjcmV0"]).unwrap();
        assert_eq!(settings.shared_secret, b"secret");
        assert_eq!(settings.databroker_url, "http://localhost:5443");
        assert_eq!(settings.health_probe_address, Some("0.0.0.0:8081".parse().unwrap()));
        assert_eq!(settings.metrics_address, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(settings.controller_name, "pomerium.io/ingress-controller");
        assert_eq!(settings.annotation_prefix, "ingress.pomerium.io");
        assert!(settings.namespaces.is_empty() && settings.status_service.is_none());
        assert!(!format!("{settings:?}").contains("secret\""), "{settings:?}");
    }

    #[test]
    fn every_flag_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "PEM").unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "c2VjcmV0\n").unwrap();
        let settings = parse(&[
            "--databroker-service-url=http://databroker:5443",
            "--databroker-tls-ca-file",
            ca.to_str().unwrap(),
            "--databroker-tls-insecure-skip-verify",
            "--shared-secret-file",
            secret.to_str().unwrap(),
            "--health-probe-bind-address=127.0.0.1:9000",
            "--metrics-bind-address=0",
            "--name=example.com/other",
            "--namespaces=web, api",
            "--prefix=example.com",
            "--update-status-from-service=pomerium/proxy",
        ])
        .unwrap();
        assert_eq!(
            settings.databroker_tls,
            DatabrokerTls { ca_pem: Some(b"PEM".to_vec()), insecure_skip_verify: true }
        );
        assert_eq!(settings.shared_secret, b"secret");
        assert_eq!(settings.health_probe_address, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(settings.metrics_address, None);
        assert_eq!(settings.controller_name, "example.com/other");
        assert_eq!(settings.namespaces, ["web", "api"]);
        assert_eq!(settings.annotation_prefix, "example.com");
        assert_eq!(settings.status_service, Some(ObjectKey::new("pomerium", "proxy")));
        let inline = parse(&["--shared-secret=c2VjcmV0", "--databroker-tls-ca=UEVN"]).unwrap();
        assert_eq!(inline.databroker_tls.ca_pem.as_deref(), Some(b"PEM".as_slice()));
    }

    #[test]
    fn bad_flags_say_which_and_why() {
        let message = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert!(message(&[]).contains("a shared secret is required"), "{}", message(&[]));
        assert_eq!(
            message(&["--shared-secret=not base64!"]),
            "invalid `--shared-secret`: not base64: Invalid symbol 32, offset 3."
        );
        assert_eq!(
            message(&["--shared-secret=c2VjcmV0", "--update-status-from-service=proxy"]),
            "invalid `--update-status-from-service`: `proxy` is not `namespace/name`"
        );
        assert!(message(&["--shared-secret=c2VjcmV0", "--namespaces=Web"]).contains("`Web` is not a namespace name"));
        assert!(message(&["--shared-secret=c2VjcmV0", "--metrics-bind-address=8080"]).contains("not `host:port`"));
    }
}

//! Managed mode (system.md §7, zero.md §1): a replica of a cluster whose control plane (Pomerium
//! Zero, or `pomerium-console`) sends its configuration. Started with only the cluster token
//! (`POMERIUM_ZERO_TOKEN`, or `pomerium_zero_token` in a file) it
//!
//! 1. derives the signing key, cookie secret and file key from the token (`zero::keys`);
//! 2. fetches the bootstrap configuration (shared secret, storage) and seals it into
//!    `bootstrap.dat`; with the control plane unreachable it starts from that file instead;
//! 3. runs as an all-in-one server with those settings laid over the ordinary ones (so the
//!    environment variables of ordinary options, `ADDRESS` say, still apply);
//! 4. keeps the Connect stream open ([`connect`]), syncs the resource bundles into its databroker
//!    under the `zero-ctrl` lease ([`reconcile`]), and refreshes the bootstrap configuration
//!    every hour while connected, every five minutes while not. The `pomerium.config.Config`
//!    records of the bundles reach the server as every databroker configuration record does
//!    (`crate::dynamic`); the lease holder also reports usage every minute ([`usage`]).
//!
//! A 400 from the control plane to the token exchange or the bootstrap ends the process with
//! [`zero::status::TOKEN_REFUSED`]: the token was rotated or revoked.

pub mod connect;
pub mod health;
pub mod reconcile;
pub mod usage;

use config::Config;
use config::options::StorageType;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use zero::api::BootstrapConfig;
use zero::client::{ApiError, ClusterClient};
use zero::keys::DerivedKeys;
use zero::status::{Backoff, TOKEN_REFUSED};

/// The bootstrap configuration is fetched again this often while the Connect stream is up...
const REFRESH_CONNECTED: Duration = Duration::from_secs(60 * 60);
/// ... and this often while it is down.
const REFRESH_DISCONNECTED: Duration = Duration::from_secs(5 * 60);

/// Settings a control plane may not set on a replica: its secrets and storage come from the
/// bootstrap configuration and the token, routes from the records.
pub(crate) const LOCAL_ONLY: &[&str] = &[
    "shared_secret",
    "shared_secret_file",
    "cookie_secret",
    "cookie_secret_file",
    "signing_key",
    "signing_key_file",
    "databroker_storage_type",
    "databroker_storage_connection_string",
    "databroker_storage_connection_string_file",
    "pomerium_zero_token",
    "services",
    "routes",
    "policy",
];

/// Where managed mode finds its control plane and its cache, from the environment.
#[derive(Clone)]
pub struct Settings {
    token: String,
    pub cluster_api: String,
    pub connect: String,
    /// Read at start when the control plane does not answer.
    pub bootstrap_file: PathBuf,
    /// Written with each bootstrap configuration (`BOOTSTRAP_CONFIG_WRITEBACK_URI`, else
    /// `bootstrap_file`).
    pub writeback: PathBuf,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("cluster_api", &self.cluster_api)
            .field("connect", &self.connect)
            .field("bootstrap_file", &self.bootstrap_file)
            .field("writeback", &self.writeback)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The settings for `token`, with the endpoint and file variables read through `var`.
    pub fn new(token: &str, var: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let token = token.trim();
        if token.is_empty() {
            return Err("POMERIUM_ZERO_TOKEN (pomerium_zero_token) is empty: set it to the cluster's token".to_owned());
        }
        let set = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let cluster_api =
            set("CLUSTER_API_ENDPOINT").unwrap_or_else(|| zero::api::DEFAULT_CLUSTER_API_ENDPOINT.to_owned());
        let connect =
            set("CONNECT_SERVER_ENDPOINT").unwrap_or_else(|| zero::api::DEFAULT_CONNECT_SERVER_ENDPOINT.to_owned());
        for (name, url) in [("CLUSTER_API_ENDPOINT", &cluster_api), ("CONNECT_SERVER_ENDPOINT", &connect)] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!("{name} `{url}` must be an https:// (or http://) URL"));
            }
        }
        let bootstrap_file = match set("BOOTSTRAP_CONFIG_FILE") {
            Some(path) => PathBuf::from(path),
            None => {
                let cache = set("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| set("HOME").map(|h| PathBuf::from(h).join(".cache")));
                cache.ok_or("managed mode keeps bootstrap.dat in $XDG_CACHE_HOME/pomerium or ~/.cache/pomerium, and neither XDG_CACHE_HOME nor HOME is set: set BOOTSTRAP_CONFIG_FILE")?
                    .join("pomerium")
                    .join("bootstrap.dat")
            }
        };
        let writeback = match set("BOOTSTRAP_CONFIG_WRITEBACK_URI") {
            None => bootstrap_file.clone(),
            Some(uri) => writeback_path(&uri)?,
        };
        Ok(Settings { token: token.to_owned(), cluster_api, connect, bootstrap_file, writeback })
    }
}

fn writeback_path(uri: &str) -> Result<PathBuf, String> {
    if let Some(path) = uri.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!(
                "BOOTSTRAP_CONFIG_WRITEBACK_URI `{uri}`: a file:// URI needs an absolute path (file:///var/cache/bootstrap.dat)"
            ));
        }
        return Ok(PathBuf::from(path));
    }
    if uri.starts_with("secret://") {
        return Err(format!(
            "BOOTSTRAP_CONFIG_WRITEBACK_URI `{uri}`: writing the bootstrap configuration to a Kubernetes Secret is not \
             supported by this build; use a file:/// URI (on a volume) or unset it"
        ));
    }
    Err(format!("BOOTSTRAP_CONFIG_WRITEBACK_URI `{uri}`: the scheme must be file://"))
}

/// A managed replica's state shared by its tasks.
pub struct Managed {
    pub settings: Settings,
    keys: DerivedKeys,
    signing_key_pem: String,
    pub client: Arc<ClusterClient>,
    /// The bootstrap configuration in use (the one the server started with).
    bootstrap: Mutex<BootstrapConfig>,
    /// Wakes the bundle sync.
    pub sync: Notify,
    /// Wakes the bootstrap refresh.
    pub refresh: Notify,
    /// Whether the Connect stream is up.
    pub connected: watch::Sender<bool>,
    /// The process must end with this message (the token was refused).
    fatal: mpsc::Sender<String>,
    /// The health checks' latest statuses ([`health`]).
    pub health: health::Health,
}

impl std::fmt::Debug for Managed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Managed").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// The TLS client configuration for the control plane: the system's roots (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` are honoured), TLS 1.2 or later, aws-lc-rs.
pub(crate) fn tls_client_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    Ok(rustls::ClientConfig::builder_with_provider(proxy::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("control plane TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Managed {
    /// Derives the keys and gets the bootstrap configuration: from the control plane (sealed into
    /// the cache file), else from the cache file; without either it waits for the control plane.
    /// `Err` ends the process.
    pub async fn start(settings: Settings, fatal: mpsc::Sender<String>) -> Result<Arc<Managed>, String> {
        let keys = DerivedKeys::from_token(&settings.token).map_err(|e| format!("POMERIUM_ZERO_TOKEN: {e}"))?;
        let signing_key_pem = keys.signing_key_pem().map_err(|e| format!("POMERIUM_ZERO_TOKEN: {e}"))?;
        let client = ClusterClient::new(&settings.cluster_api, &settings.token, tls_client_config()?)?;
        let mut backoff = Backoff::default();
        let health = health::Health::default();
        let bootstrap = loop {
            match client.bootstrap().await {
                Ok(bootstrap) => {
                    tracing::info!(cluster = %bootstrap.cluster_id, "bootstrap configuration received from the control plane");
                    health.set(health::BOOTSTRAP_SAVE, save(&settings, &keys, &bootstrap));
                    break bootstrap;
                }
                Err(error) if error.is_terminal() => return Err(format!("{TOKEN_REFUSED} ({error})")),
                Err(error) => {
                    tracing::warn!(%error, "the control plane does not answer");
                    match load(&settings, &keys) {
                        Ok(bootstrap) => {
                            tracing::warn!(
                                file = %settings.bootstrap_file.display(),
                                cluster = %bootstrap.cluster_id,
                                "starting from the cached bootstrap configuration; the control plane is tried again in the background"
                            );
                            break bootstrap;
                        }
                        Err(reason) => {
                            let delay = backoff.next_delay(fastrand::f64());
                            tracing::warn!(
                                "no usable bootstrap cache ({reason}); trying the control plane again in {delay:?}"
                            );
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            }
        };
        Ok(Arc::new(Managed {
            settings,
            keys,
            signing_key_pem,
            client,
            bootstrap: Mutex::new(bootstrap),
            sync: Notify::new(),
            refresh: Notify::new(),
            connected: watch::Sender::new(false),
            fatal,
            health,
        }))
    }

    /// Lays the managed settings over a loaded configuration: the shared secret and storage of
    /// the bootstrap configuration (a storage the local configuration names itself wins), and
    /// the keys derived from the token.
    pub fn apply(&self, config: &mut Config) -> Result<(), String> {
        let bootstrap = self.bootstrap.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if bootstrap.shared_secret.len() != 32 {
            return Err(format!(
                "the control plane's shared secret has {} bytes, not 32: the bootstrap configuration is not usable",
                bootstrap.shared_secret.len()
            ));
        }
        let options = &mut config.options;
        options.shared_secret = Some(config::Secret::new(bootstrap.shared_secret.clone()));
        options.cookie.secret = Some(config::Secret::new(self.keys.cookie_secret.to_vec()));
        options.signing_key = Some(
            config::PrivateKey::from_pem(self.signing_key_pem.as_bytes())
                .ok_or("the signing key derived from the cluster token is not a key")?,
        );
        let local_storage = options.databroker.storage_type != StorageType::Memory
            || options.databroker.storage_connection_string.is_some();
        if !local_storage {
            match bootstrap.databroker_storage_connection.as_deref().map(str::trim) {
                None | Some("") => {}
                Some(file) if file.starts_with("file://") => tracing::warn!(
                    "the control plane asks for file storage, which this build does not have: the databroker keeps its records in memory"
                ),
                Some(connection) => {
                    options.databroker.storage_type = StorageType::Postgres;
                    options.databroker.storage_connection_string =
                        Some(config::Secret::new(connection.as_bytes().to_vec()));
                }
            }
        }
        Ok(())
    }

    /// The configuration of the control plane's settings (the `settings` of its configuration
    /// record, `config.yaml` keys) with the environment's options on top and the managed ones
    /// laid over, for a replica run without a configuration file. Keys that are this replica's
    /// own (secrets, storage, the token) are left out.
    pub fn config_from_settings(
        &self,
        settings: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(Config, Vec<String>), Vec<String>> {
        let document: serde_json::Map<String, serde_json::Value> = settings
            .iter()
            .filter(|(key, _)| !LOCAL_ONLY.contains(&key.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(document)).unwrap_or_default();
        let loaded = config::load(&text, config::Format::Json, &crate::environment::ProcessEnvironment);
        let (errors, warnings) = crate::diagnostics::lines(&loaded, "the control plane's settings", &text);
        match loaded.config {
            Some(mut config) if errors.is_empty() => {
                self.apply(&mut config).map_err(|e| vec![e])?;
                Ok((config, warnings))
            }
            _ => Err(errors),
        }
    }

    /// The public JWK of the cluster's signing key (what `routes.reachable` looks for).
    pub fn signing_jwk(&self) -> serde_json::Value {
        authenticate::signing::SigningKey::from_pem(self.signing_key_pem.as_bytes())
            .map(|key| key.public_jwk().clone())
            .unwrap_or_default()
    }

    /// The key usage reports pseudonymise with.
    pub fn pseudonymization_key(&self) -> Vec<u8> {
        self.bootstrap.lock().unwrap_or_else(PoisonError::into_inner).pseudonymization_key.clone()
    }

    /// Ends the process with `message`.
    async fn fail(&self, message: String) {
        tracing::error!("{message}");
        let _ = self.fatal.send(message).await;
    }

    /// Fetches the bootstrap configuration every hour while connected, every five minutes while
    /// not, and when woken; saves it; a 400 ends the process.
    pub async fn refresh_loop(self: Arc<Self>, mut shutdown: proxy::server::ShutdownSignal) {
        loop {
            let every = if *self.connected.borrow() { REFRESH_CONNECTED } else { REFRESH_DISCONNECTED };
            let mut connected = self.connected.subscribe();
            tokio::select! {
                () = shutdown.fired() => return,
                () = self.refresh.notified() => {}
                () = tokio::time::sleep(every) => {}
                // The interval changes with the stream's state.
                _ = connected.changed() => continue,
            }
            let result = tokio::select! {
                () = shutdown.fired() => return,
                result = self.client.bootstrap() => result,
            };
            match result {
                Ok(bootstrap) => {
                    self.health.set(health::BOOTSTRAP_SAVE, save(&self.settings, &self.keys, &bootstrap));
                    let mut current = self.bootstrap.lock().unwrap_or_else(PoisonError::into_inner);
                    if current.shared_secret != bootstrap.shared_secret
                        || current.databroker_storage_connection != bootstrap.databroker_storage_connection
                    {
                        // The running databroker and sessions keep the ones they started with.
                        tracing::warn!(
                            "the control plane changed the shared secret or the databroker storage: saved; it takes effect at the next start"
                        );
                    } else {
                        *current = bootstrap;
                    }
                }
                Err(error) if error.is_terminal() => {
                    self.fail(format!("{TOKEN_REFUSED} ({error})")).await;
                    return;
                }
                Err(error) => tracing::warn!(%error, "bootstrap configuration not refreshed"),
            }
        }
    }

    /// Reports a terminal API error as the end of the process; logs any other.
    pub(crate) async fn api_error(&self, what: &str, error: &ApiError) {
        match error {
            ApiError::Terminal { what: call, .. } if call == "exchangeToken" => {
                self.fail(format!("{TOKEN_REFUSED} ({error})")).await;
            }
            _ => tracing::warn!(%error, "{what}"),
        }
    }
}

/// Seals `bootstrap` into the writeback file (the `zero.bootstrap-config.save` check: a failure
/// is logged and returned, and the replica runs on).
fn save(settings: &Settings, keys: &DerivedKeys, bootstrap: &BootstrapConfig) -> Result<(), String> {
    let path = &settings.writeback;
    let result = zero::seal::seal(&keys.file_key, bootstrap).map_err(|e| e.to_string()).and_then(|sealed| {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        }
        // Written aside and renamed, so that a crash never leaves half a file; readable by this
        // user only (it is sealed, but it is the cluster's secrets).
        let partial = path.with_extension("partial");
        write_private(&partial, &sealed).map_err(|e| format!("cannot write `{}`: {e}", partial.display()))?;
        std::fs::rename(&partial, path).map_err(|e| format!("cannot write `{}`: {e}", path.display()))
    });
    match result {
        Ok(()) => {
            tracing::debug!(file = %path.display(), "bootstrap configuration saved");
            Ok(())
        }
        Err(error) => {
            let message = format!(
                "the bootstrap configuration is not saved ({error}): a restart while the control plane is unreachable will wait for it"
            );
            tracing::warn!(check = "zero.bootstrap-config.save", "{message}");
            Err(message)
        }
    }
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Opens the cache file.
fn load(settings: &Settings, keys: &DerivedKeys) -> Result<BootstrapConfig, String> {
    let path = &settings.bootstrap_file;
    let sealed = read_bounded(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
    zero::seal::open(&keys.file_key, &sealed).map_err(|e| format!("`{}`: {e}", path.display()))
}

fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let limit = u64::try_from(zero::seal::MAX_FILE_LEN + 1).unwrap_or(u64::MAX);
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|file| file.take(limit).read_to_end(&mut bytes)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound { "there is none yet".to_owned() } else { e.to_string() }
    })?;
    Ok(bytes)
}

/// Starts the managed tasks: the Connect stream, the bootstrap refresh and the bundle sync.
pub fn spawn(
    managed: &Arc<Managed>,
    broker: databroker::client::Broker,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: &proxy::server::Shutdown,
) {
    tasks.spawn(connect::run(Arc::clone(managed), shutdown.signal()));
    tasks.spawn(Arc::clone(managed).refresh_loop(shutdown.signal()));
    tasks.spawn(health::run(Arc::clone(managed), broker.clone(), shutdown.signal()));
    tasks.spawn(reconcile::run(Arc::clone(managed), broker, shutdown.signal()));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use std::collections::BTreeMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::new("token", |name| vars.get(name).cloned())
    }

    #[test]
    fn endpoints_and_files_from_the_environment() {
        let s = settings(&[("HOME", "/home/p")]).unwrap();
        assert_eq!(s.cluster_api, "https://console.pomerium.app/cluster/v1");
        assert_eq!(s.connect, "https://connect.pomerium.app");
        assert_eq!(s.bootstrap_file, PathBuf::from("/home/p/.cache/pomerium/bootstrap.dat"));
        assert_eq!(s.writeback, s.bootstrap_file);
        let s = settings(&[("HOME", "/home/p"), ("XDG_CACHE_HOME", "/xdg")]).unwrap();
        assert_eq!(s.bootstrap_file, PathBuf::from("/xdg/pomerium/bootstrap.dat"));
        let s = settings(&[
            ("BOOTSTRAP_CONFIG_FILE", "/b.dat"),
            ("BOOTSTRAP_CONFIG_WRITEBACK_URI", "file:///w.dat"),
            ("CLUSTER_API_ENDPOINT", "http://127.0.0.1:1/cluster/v1"),
            ("CONNECT_SERVER_ENDPOINT", "http://127.0.0.1:1"),
        ])
        .unwrap();
        assert_eq!((s.bootstrap_file, s.writeback), (PathBuf::from("/b.dat"), PathBuf::from("/w.dat")));
        assert!(!format!("{:?}", settings(&[("HOME", "/h")]).unwrap()).contains("token"));
    }

    #[test]
    fn bad_settings_say_what_to_do() {
        let err = settings(&[]).unwrap_err();
        assert!(err.contains("set BOOTSTRAP_CONFIG_FILE"), "{err}");
        let err = settings(&[("HOME", "/h"), ("BOOTSTRAP_CONFIG_WRITEBACK_URI", "secret://ns/name/key")]).unwrap_err();
        assert!(err.contains("Kubernetes Secret") && err.contains("file:///"), "{err}");
        let err = settings(&[("HOME", "/h"), ("BOOTSTRAP_CONFIG_WRITEBACK_URI", "file://relative")]).unwrap_err();
        assert!(err.contains("absolute path"), "{err}");
        let err = settings(&[("HOME", "/h"), ("CLUSTER_API_ENDPOINT", "ftp://x")]).unwrap_err();
        assert!(err.starts_with("CLUSTER_API_ENDPOINT"), "{err}");
        assert!(Settings::new("  ", |_| Some("/h".to_owned())).unwrap_err().contains("empty"));
    }

    #[tokio::test]
    async fn the_cache_file_round_trips_and_a_bad_one_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/bootstrap.dat");
        let path_text = path.to_str().unwrap().to_owned();
        let s = settings(&[("BOOTSTRAP_CONFIG_FILE", &path_text)]).unwrap();
        let keys = DerivedKeys::from_token("token").unwrap();
        assert!(load(&s, &keys).unwrap_err().contains("there is none yet"));
        let bootstrap = BootstrapConfig {
            cluster_id: "c".into(),
            organization_id: "o".into(),
            shared_secret: vec![1; 32],
            pseudonymization_key: vec![2; 32],
            databroker_storage_connection: None,
        };
        save(&s, &keys, &bootstrap).unwrap();
        assert_eq!(load(&s, &keys).unwrap(), bootstrap);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let other = DerivedKeys::from_token("rotated").unwrap();
        assert!(load(&s, &other).unwrap_err().contains("tampered"), "another token's key does not open it");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 1);
        std::fs::write(&path, &bytes).unwrap();
        assert!(load(&s, &keys).is_err(), "a truncated file is refused");
    }
}

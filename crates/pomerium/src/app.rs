//! The all-in-one server: load the configuration, build the runtime, open the listeners, reload
//! on change, stop gracefully on SIGINT/SIGTERM.

use crate::diagnostics;
use crate::dynamic::DynamicConfig;
use crate::environment::ProcessEnvironment;
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use authn::{Authenticator, SessionStore, SignInState};
use config::{Config, Format, Options};
use databroker::record::CONFIG_TYPE;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use proxy::authn::Authn;
use proxy::body::{self, ProxyBody};
use proxy::runtime::{Environment, Runtime, SharedRecords};
use proxy::server::{self, ConnectionInfo, ServerOptions, Shutdown, ShutdownSignal};
use proxy::tls::{ClientCertMode, DownstreamClientAuth, ServerTls, SniResolver};
use proxy::upstream::{ClientOptions, UpstreamClients};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How often the configuration file is checked for changes (`POMERIUM_WATCH_INTERVAL_MS`
/// shortens it in tests).
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The configuration as read: its text and where it came from.
struct Source {
    path: Option<PathBuf>,
    text: String,
    stamp: Option<Stamp>,
    /// Managed mode's settings, laid over every load.
    managed: Option<Arc<crate::managed::Managed>>,
}

/// What tells a changed file: modification time and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl Source {
    fn read(path: Option<&Path>) -> Result<Source, String> {
        let Some(path) = path else {
            // Settings from the environment only.
            return Ok(Source { path: None, text: String::new(), stamp: None, managed: None });
        };
        let stamp = stamp(path);
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("`{}` is not UTF-8 text", path.display()))?;
        Ok(Source { path: Some(path.to_owned()), text, stamp, managed: None })
    }

    fn name(&self) -> String {
        self.path.as_ref().map_or_else(|| "(environment)".to_owned(), |p| p.display().to_string())
    }

    fn format(&self) -> Format {
        self.path.as_ref().map_or(Format::Yaml, |p| Format::from_path(&p.to_string_lossy()))
    }

    /// The configuration, or every problem with it as a log line.
    fn load(&self) -> Result<(Config, Vec<String>), Vec<String>> {
        let loaded = config::load(&self.text, self.format(), &ProcessEnvironment);
        let (errors, warnings) = diagnostics::lines(&loaded, &self.name(), &self.text);
        match loaded.config {
            Some(mut config) if errors.is_empty() => {
                if let Some(managed) = &self.managed {
                    managed.apply(&mut config).map_err(|e| vec![e])?;
                }
                Ok((config, warnings))
            }
            _ => Err(errors),
        }
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(Stamp { modified: metadata.modified().ok(), len: metadata.len() })
}

/// Runs the server until it is told to stop.
pub async fn run(config_path: Option<PathBuf>, tuning: crate::tuning::Tuning) -> ExitCode {
    let mut source = match Source::read(config_path.as_deref()) {
        Ok(source) => source,
        Err(message) => {
            eprintln!("pomerium: {message}");
            return ExitCode::FAILURE;
        }
    };
    let (mut config, warnings) = match source.load() {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {error}");
            }
            eprintln!(
                "pomerium: the configuration has {} error(s); see `pomerium-policy check {}`",
                errors.len(),
                source.name()
            );
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.options);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    // Managed mode: the control plane's settings over the loaded ones.
    let (fatal_tx, fatal) = tokio::sync::mpsc::channel(1);
    if let Some(token) = &config.options.zero_token {
        let token = String::from_utf8_lossy(token.expose()).into_owned();
        let started = match crate::managed::Settings::new(&token, |name| std::env::var(name).ok()) {
            Ok(settings) => crate::managed::Managed::start(settings, fatal_tx).await,
            Err(message) => Err(message),
        };
        let managed = match started {
            Ok(managed) => managed,
            Err(message) => {
                tracing::error!("{message}");
                eprintln!("pomerium: {message}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(message) = managed.apply(&mut config) {
            tracing::error!("{message}");
            return ExitCode::FAILURE;
        }
        source.managed = Some(managed);
    }
    match Server::start(source, config, fatal, tuning).await {
        Ok(server) => server.wait().await,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(options: &Options) {
    let level = format!("{:?}", options.log_level).to_ascii_lowercase();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,rustls=warn")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if std::env::var("POMERIUM_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(error) = result {
        eprintln!("pomerium: logging is already set up: {error}");
    }
}

/// The running server.
struct Server {
    current: Arc<ArcSwap<Runtime>>,
    tls: Option<ServerTls>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    tasks: JoinSet<()>,
    /// The addresses the listeners were opened on; a reload cannot move them.
    addresses: Addresses,
    /// The storage and the record cache; kept for the life of the server.
    databroker: crate::databroker::Databroker,
    /// Rebuilds the runtime when the file or the databroker's configuration changes.
    reloader: Arc<Reloader>,
    /// ACME certificates (`autocert`).
    autocert: Option<Arc<crate::autocert::Autocert>>,
    /// A message here ends the process with a failure (managed mode: the token was refused).
    fatal: tokio::sync::mpsc::Receiver<String>,
    /// Intervals and delays from the environment (`crate::tuning`).
    tuning: crate::tuning::Tuning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Addresses {
    main: String,
    redirect: Option<String>,
    metrics: Option<String>,
    health: String,
    insecure: bool,
}

impl Addresses {
    fn of(options: &Options) -> Addresses {
        Addresses {
            main: options.address.clone(),
            redirect: options.http_redirect_addr.clone(),
            metrics: options.metrics_address.clone(),
            health: options.health_check_addr.clone(),
            insecure: options.insecure_server,
        }
    }
}

impl Server {
    async fn start(
        source: Source,
        config: Config,
        fatal: tokio::sync::mpsc::Receiver<String>,
        tuning: crate::tuning::Tuning,
    ) -> Result<Server, String> {
        check_services(&config.options)?;
        let shutdown = Shutdown::new();
        let mut tasks = JoinSet::new();
        let records = SharedRecords::default();
        let databroker = crate::databroker::start(&config, &records).await?;
        let store = databroker.broker.clone().map(|broker| SessionStore::new(broker, databroker.cache.clone()));
        let sign_in = Arc::new(SignInState::new(store));
        let environment = Environment {
            fallback_shared_key: fallback_shared_key(&config.options)?,
            fallback_cookie_key: fallback_cookie_key(&config.options)?,
            records,
            clients: Arc::new(UpstreamClients::new(ClientOptions::default())),
            authn: Arc::new(Authn::new(Arc::new(Authenticator(Arc::clone(&sign_in))))),
            remote_authorize: remote_authorize(&config.options).await?,
        };
        let telemetry = Arc::new(crate::telemetry::Telemetry::default());
        let runtime = Runtime::build(&config, &environment)
            .map_err(|e| format!("the configuration cannot run: {e}"))?
            .with_tracing(telemetry.tracing(&config.options.otel)?);
        let metrics = Arc::new(Metrics::default());
        metrics.started(runtime.route_count(), unix_now());
        let current = Arc::new(ArcSwap::from_pointee(runtime));
        if crate::grpc::serves(&config.options) {
            let services = crate::grpc::Services {
                storage: databroker.storage.clone(),
                authorizer: config
                    .options
                    .services
                    .runs(config::options::Service::Authorize)
                    .then(|| Arc::new(ext_authz::RuntimeAuthorizer::new(Arc::clone(&current)))),
            };
            crate::grpc::serve(&config, services, &mut tasks, shutdown.signal()).await?;
        }
        let base = if config.options.insecure_server { None } else { Some(certificates(&config)?) };
        let mut tls = base.as_deref().map(|base| server_tls(&config, base)).transpose()?;
        let serves_https = tls.is_some()
            && (config.options.services.runs(config::options::Service::Proxy)
                || config.options.services.runs(config::options::Service::Authenticate));
        if config.options.autocert.enable && !serves_https {
            tracing::warn!("autocert is off: this process serves no https listener (insecure_server or services)");
        }
        let autocert =
            (serves_https && config.options.autocert.enable).then(|| crate::autocert::Autocert::new(&config, &tuning));
        if let Some(autocert) = &autocert {
            tls = tls.map(|tls| tls.with_acme_challenges(autocert.alpn_hook()));
            autocert.with_issued(base.unwrap_or_default());
        }
        let addresses = Addresses::of(&config.options);
        let reloader = Arc::new(Reloader {
            current: Arc::clone(&current),
            environment: environment.clone(),
            resolver: tls.as_ref().map(|tls| Arc::clone(tls.resolver())),
            tls: tls.clone(),
            metrics: Arc::clone(&metrics),
            addresses: addresses.clone(),
            autocert: autocert.clone(),
            telemetry,
            sources: std::sync::Mutex::new(Sources { file: config.clone(), dynamic: DynamicConfig::default() }),
            managed: source.managed.clone(),
            settings_from: source.managed.clone().filter(|_| source.path.is_none()),
            retired: std::sync::Mutex::default(),
        });
        let options = config.options.clone();
        let managed = source.managed.clone();
        let mut server =
            Server { current, tls, metrics, shutdown, tasks, addresses, databroker, reloader, autocert, fatal, tuning };
        server.open_listeners(&options).await?;
        server.start_autocert(&config)?;
        if let Some(managed) = managed {
            let broker = server.databroker.broker.clone().ok_or("managed mode needs the databroker in this process")?;
            crate::managed::spawn(&managed, broker, &mut server.tasks, &server.shutdown);
        }
        server.watch(source);
        server.follow_databroker_config();
        server.refresh_sessions(sign_in);
        Ok(server)
    }

    async fn open_listeners(&mut self, options: &Options) -> Result<(), String> {
        // The authenticate service answers on the main listener too (its host's requests go
        // through the same pipeline, which serves only its endpoints when routes are not run here).
        if options.services.runs(config::options::Service::Proxy)
            || options.services.runs(config::options::Service::Authenticate)
        {
            self.open_proxy_listeners(options).await?;
        }
        if let Some(address) = &self.addresses.metrics {
            let listener = bind(address).await?;
            tracing::info!(address = %local_address(&listener, address), "serving metrics");
            let metrics = Arc::clone(&self.metrics);
            let (tls, access) = crate::metrics::listener_settings(options)?;
            self.tasks.spawn(serve_metrics(listener, tls, access, move || metrics.render(), self.shutdown.signal()));
        }
        // Health checks are a convenience: a port already taken must not stop the server.
        match bind(&self.addresses.health).await {
            Ok(listener) => {
                tracing::info!(address = %local_address(&listener, &self.addresses.health), "serving health checks");
                self.tasks.spawn(serve_health(listener, self.shutdown.signal()));
            }
            Err(message) => tracing::warn!("health checks are off: {message}"),
        }
        Ok(())
    }

    /// The main listener (the proxy) and the http-to-https redirect.
    async fn open_proxy_listeners(&mut self, options: &Options) -> Result<(), String> {
        let workers = self
            .tuning
            .proxy_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get));
        let main = server::bind_shared(&self.addresses.main, workers > 1).await?;
        let main_port = main.local_addr().map(|a| a.port()).unwrap_or(443);
        tracing::info!(
            address = %local_address(&main, &self.addresses.main),
            tls = self.tls.is_some(),
            routes = self.current.load().route_count(),
            "serving"
        );
        let current = Arc::clone(&self.current);
        let handler = move |request: Request<Incoming>, connection: Arc<ConnectionInfo>| {
            let runtime = current.load_full();
            proxy::pipeline::handle(runtime, request, connection)
        };
        let options_server = server_options(options);
        let signal = self.shutdown.signal();
        self.tasks.spawn(server::serve_on_workers(main, workers, self.tls.clone(), handler, options_server, signal)?);
        if let Some(address) = &self.addresses.redirect {
            let listener = bind(address).await?;
            tracing::info!(address = %local_address(&listener, address), "redirecting http to https");
            // The PROXY protocol is the main listener's (`use_proxy_protocol`), as in Pomerium.
            let redirect_options = ServerOptions { proxy_protocol: false, ..options_server };
            let challenges = self.autocert.as_ref().map(|autocert| {
                autocert.http_listener.store(true, std::sync::atomic::Ordering::Relaxed);
                Arc::clone(&autocert.challenges)
            });
            let signal = self.shutdown.signal();
            self.tasks.spawn(crate::autocert::serve_plain(listener, main_port, challenges, redirect_options, signal));
        }
        Ok(())
    }

    /// Starts the ACME manager when `autocert` is on: issued certificates take priority over the
    /// configured or self-signed ones.
    fn start_autocert(&mut self, config: &Config) -> Result<(), String> {
        let (Some(autocert), Some(tls)) = (&self.autocert, &self.tls) else { return Ok(()) };
        self.metrics.autocert(Arc::clone(&autocert.status));
        autocert.start(&config.options, Arc::clone(tls.resolver()), &mut self.tasks, self.shutdown.signal())
    }

    /// Reloads the configuration when its file changes.
    fn watch(&mut self, source: Source) {
        let Some(path) = source.path.clone() else { return };
        let interval = self.tuning.watch_interval.unwrap_or(WATCH_INTERVAL);
        let reloader = Arc::clone(&self.reloader);
        let mut shutdown = self.shutdown.signal();
        self.tasks.spawn(async move {
            let mut last = source.stamp;
            let mut ticker = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    () = shutdown.fired() => return,
                    _ = ticker.tick() => {}
                }
                let now = stamp(&path);
                if now == last || now.is_none() {
                    continue;
                }
                last = now;
                // Building 10,000 routes takes tens of milliseconds of CPU: off the workers that
                // serve requests, which keep the runtime they have until the new one is swapped in.
                let (reloader, path) = (Arc::clone(&reloader), path.clone());
                off_workers(move || reloader.reload_file(&path)).await;
            }
        });
    }

    /// Applies the databroker's configuration records (routes from the ingress controller, say)
    /// whenever they change: merged after the file's routes, swapped in without a restart.
    fn follow_databroker_config(&mut self) {
        let Some(cache) = self.databroker.cache.clone() else { return };
        let reloader = Arc::clone(&self.reloader);
        let mut changed = cache.watch_retained();
        // Records the cache already holds (a restart on a persistent databroker) apply at once,
        // not at the next change. With none yet there is nothing to apply (the cache ticks when
        // its first records arrive), and no reload to log.
        if !cache.retained(CONFIG_TYPE).is_empty() {
            changed.mark_changed();
        }
        let mut shutdown = self.shutdown.signal();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.fired() => return,
                    result = changed.changed() => if result.is_err() { return },
                }
                changed.borrow_and_update();
                let (reloader, records) = (Arc::clone(&reloader), cache.retained(CONFIG_TYPE));
                off_workers(move || reloader.reload_dynamic(&records)).await;
            }
        });
    }

    /// Runs the session refresher where sessions are made (the authenticate service); replicas
    /// take turns through the databroker lease.
    fn refresh_sessions(&mut self, sign_in: Arc<SignInState>) {
        let runs_authenticate = self.current.load().runs_authenticate();
        if !runs_authenticate || sign_in.store.is_none() {
            return;
        }
        let current = Arc::clone(&self.current);
        let provider: authn::refresher::CurrentProvider = Arc::new(move || {
            authn::Configured::of(current.load().sign_in()).and_then(authn::Configured::refresh_provider)
        });
        // Shorter intervals for the tests, which cannot wait ten minutes.
        let defaults = authn::refresher::Intervals::default();
        let intervals = authn::refresher::Intervals {
            tick: self.tuning.session_refresh_interval.unwrap_or(defaults.tick),
            user_info: self.tuning.user_info_interval.unwrap_or(defaults.user_info),
        };
        let mut shutdown = self.shutdown.signal();
        self.tasks.spawn(async move {
            tokio::select! {
                () = shutdown.fired() => {}
                () = authn::refresher::run(sign_in, provider, intervals) => {}
            }
        });
    }

    /// Waits for SIGINT or SIGTERM, then stops accepting and lets requests in flight finish.
    async fn wait(mut self) -> ExitCode {
        let failure = tokio::select! {
            () = wait_for_signal() => None,
            Some(message) = self.fatal.recv() => Some(message),
        };
        tracing::info!("shutting down");
        self.shutdown.trigger();
        while self.tasks.join_next().await.is_some() {}
        self.reloader.telemetry.shutdown().await;
        match failure {
            None => ExitCode::SUCCESS,
            Some(message) => {
                eprintln!("pomerium: {message}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs a reload on tokio's blocking threads, so that a long build never holds a worker (with
/// one worker thread, every request would wait for it).
async fn off_workers(reload: impl FnOnce() + Send + 'static) {
    if let Err(error) = tokio::task::spawn_blocking(reload).await {
        tracing::error!(%error, "a configuration reload did not finish; the previous configuration keeps serving");
    }
}

/// Swaps in a new runtime when the configuration changes and is valid.
struct Reloader {
    current: Arc<ArcSwap<Runtime>>,
    environment: Environment,
    resolver: Option<Arc<SniResolver>>,
    /// The main listener's TLS, whose per-host client CAs follow the routes.
    tls: Option<ServerTls>,
    metrics: Arc<Metrics>,
    addresses: Addresses,
    autocert: Option<Arc<crate::autocert::Autocert>>,
    /// The trace exporter of the `otel_*` options, kept while they do not change.
    telemetry: Arc<crate::telemetry::Telemetry>,
    /// The last good configuration of each source; a reload of one keeps the other.
    sources: std::sync::Mutex<Sources>,
    /// Managed mode's settings, laid over the file's at each reload.
    managed: Option<Arc<crate::managed::Managed>>,
    /// Managed mode without a file: the control plane's settings are the base configuration.
    settings_from: Option<Arc<crate::managed::Managed>>,
    /// The runtime the last reload replaced, dropped by the next one.
    retired: std::sync::Mutex<Option<Arc<Runtime>>>,
}

struct Sources {
    file: Config,
    dynamic: DynamicConfig,
}

impl Reloader {
    fn sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reload_file(&self, path: &Path) {
        let result = Source::read(Some(path)).map_err(|e| vec![e]).and_then(|mut source| {
            source.managed.clone_from(&self.managed);
            let (config, warnings) = source.load()?;
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            if Addresses::of(&config.options) != self.addresses {
                tracing::warn!("listener addresses and insecure_server take effect at the next start");
            }
            let mut sources = self.sources();
            let routes = self.apply(&config, &sources.dynamic)?;
            sources.file = config;
            Ok(routes)
        });
        self.report(result, &format!("file {}", path.display()));
    }

    fn reload_dynamic(&self, records: &[databroker::record::Record]) {
        let dynamic = crate::dynamic::from_records(records);
        for problem in &dynamic.problems {
            tracing::error!("{problem}");
        }
        let mut sources = self.sources();
        let result = self.apply(&sources.file, &dynamic);
        if result.is_ok() {
            sources.dynamic = dynamic;
        }
        if let Some(managed) = &self.managed {
            managed
                .health
                .configuration_built(result.as_ref().map(|_| ()).map_err(|problems| problems.join("; ")), records);
        }
        self.report(result, "the databroker's configuration records");
    }

    fn report(&self, result: Result<usize, Vec<String>>, source: &str) {
        match result {
            Ok(routes) => {
                self.metrics.reload_succeeded(routes, unix_now());
                tracing::info!(routes, source, "configuration reloaded");
            }
            Err(problems) => {
                self.metrics.reload_failed();
                for problem in &problems {
                    tracing::error!("{problem}");
                }
                tracing::error!(source, "configuration not reloaded; the previous one keeps serving");
            }
        }
    }

    /// The configuration the records' routes merge into: the file's, or in managed mode without
    /// a file the control plane's settings (the file's when they do not load).
    fn base(&self, file: &Config, dynamic: &DynamicConfig) -> Config {
        let (Some(managed), Some(settings)) = (&self.settings_from, &dynamic.settings) else { return file.clone() };
        match managed.config_from_settings(settings) {
            Ok((config, warnings)) => {
                for warning in warnings {
                    tracing::warn!("{warning}");
                }
                if Addresses::of(&config.options) != self.addresses {
                    tracing::warn!("listener addresses and insecure_server take effect at the next start");
                }
                config
            }
            Err(errors) => {
                for error in errors {
                    tracing::error!("{error}");
                }
                tracing::error!("the control plane's settings are not applied; the local ones keep serving");
                file.clone()
            }
        }
    }

    /// Builds the runtime of the file's configuration with the databroker's merged in, and
    /// swaps it (and the certificates) in. Connections in flight keep the runtime they started
    /// with.
    fn apply(&self, file: &Config, dynamic: &DynamicConfig) -> Result<usize, Vec<String>> {
        let (config, problems) = crate::dynamic::merge(self.base(file, dynamic), dynamic);
        for problem in &problems {
            tracing::warn!("{problem}");
        }
        let tracing = self.telemetry.tracing(&config.options.otel).map_err(|e| vec![e])?;
        let runtime = Runtime::build(&config, &self.environment)
            .map_err(|e| vec![format!("the configuration cannot run: {e}")])?
            .with_tracing(tracing);
        let hosts = host_client_auth(&config).map_err(|e| vec![e])?;
        if let Some(resolver) = &self.resolver {
            let mut certificates = certificates(&config).map_err(|e| vec![e])?;
            certificates.extend(dynamic.certificates.iter().cloned());
            if let Some(autocert) = &self.autocert {
                autocert.plan(&config);
                certificates = autocert.with_issued(certificates);
            }
            resolver.replace(&certificates).map_err(|e| vec![format!("certificates: {e}")])?;
        }
        if let Some(tls) = &self.tls {
            tls.set_host_client_auth(&hosts).map_err(|e| vec![format!("tls: {e}")])?;
        }
        let routes = runtime.route_count();
        let previous = self.current.swap(Arc::new(runtime));
        // The runtime replaced is kept until the next reload, which drops it here, off the
        // workers: the requests that held it have finished by then, so none of them pays for
        // freeing thousands of routes.
        drop(self.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner).replace(previous));
        if let Some(managed) = &self.managed {
            managed.health.set_routes(&config);
        }
        Ok(routes)
    }
}

fn check_services(options: &Options) -> Result<(), String> {
    use config::options::Service;
    let services = &options.services;
    if services.is_all()
        || services.runs(Service::Proxy)
        || services.runs(Service::Databroker)
        || services.runs(Service::Authenticate)
        || services.runs(Service::Authorize)
    {
        return Ok(());
    }
    Err(format!(
        "`services: {:?}` is not supported: this build runs `all`, `authenticate`, `authorize`, `proxy` and \
         `databroker`, alone or together",
        services.list()
    ))
}

/// A proxy that runs without the authorize service asks the ones at `authorize_service_urls`
/// (`authorize_internal_service_url` instead, when set) over gRPC, spread over every address of
/// every URL, failing over between them; without any, it decides in process (ours: Pomerium's
/// proxy always needs an authorize service).
async fn remote_authorize(options: &Options) -> Result<Option<Arc<dyn proxy::RemoteAuthorize>>, String> {
    use config::options::Service;
    if !options.services.runs(Service::Proxy) || options.services.runs(Service::Authorize) {
        return Ok(None);
    }
    let urls: Vec<String> = match &options.authorize_internal_service_url {
        Some(url) => vec![url.to_string()],
        None => options.authorize_service_urls.iter().map(ToString::to_string).collect(),
    };
    if urls.is_empty() {
        return Ok(None);
    }
    let family = crate::databroker::lookup_family(options);
    let remote = databroker::client::RemoteOptions {
        ca_pem: options.certificate_authority.as_ref().map(|ca| proxy::tls::certificates_to_pem(ca.ders())),
        insecure_skip_verify: false,
    };
    let auth = crate::databroker::service_auth(options)?;
    let client = ext_authz::Client::connect(&urls, auth, &remote, family).await?;
    tracing::info!(urls = ?urls, "requests are authorized by the authorize service");
    Ok(Some(Arc::new(client)))
}

/// All-in-one mode may run without a cookie secret: a random one per process, as Pomerium does.
fn fallback_cookie_key(options: &Options) -> Result<Vec<u8>, String> {
    if options.cookie.secret.is_none() {
        tracing::warn!("no cookie_secret: using a random one; sign-ins in progress will not survive a restart");
    }
    let mut key = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| "cannot generate a random key".to_owned())?;
    Ok(key)
}

fn fallback_shared_key(options: &Options) -> Result<Vec<u8>, String> {
    if options.shared_secret.is_none() {
        tracing::warn!("no shared_secret: using a random one; signed URLs will not survive a restart");
    }
    let mut key = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| "cannot generate a random key".to_owned())?;
    Ok(key)
}

fn server_options(options: &Options) -> ServerOptions {
    let defaults = ServerOptions::default();
    let header_read_timeout =
        if options.timeout_read.is_zero() { defaults.header_read_timeout } else { options.timeout_read };
    ServerOptions {
        header_read_timeout,
        idle_timeout: (!options.timeout_idle.is_zero()).then_some(options.timeout_idle),
        proxy_protocol: options.use_proxy_protocol,
        ..defaults
    }
}

/// The downstream TLS configuration: configured certificates, else a self-signed one for the
/// route hosts; client certificates when `downstream_mtls` names a CA.
fn server_tls(config: &Config, certificates: &[Arc<CertifiedKey>]) -> Result<ServerTls, String> {
    let resolver = Arc::new(SniResolver::new(certificates).map_err(|e| format!("certificates: {e}"))?);
    let mtls = &config.options.downstream_mtls;
    let mode = match mtls.enforcement {
        config::options::MtlsEnforcement::RejectConnection => ClientCertMode::Require,
        // The policy decides (with the default deny rule unless enforcement is `policy`).
        _ => ClientCertMode::Report,
    };
    let client_auth = mtls
        .ca
        .as_ref()
        .map(|ca| DownstreamClientAuth::from_config(mtls, ca.ders(), mode))
        .transpose()
        .map_err(|e| format!("downstream_mtls: {e}"))?;
    let tls = ServerTls::new(resolver, client_auth.as_ref()).map_err(|e| format!("tls: {e}"))?;
    tls.set_host_client_auth(&host_client_auth(config)?).map_err(|e| format!("tls: {e}"))?;
    Ok(tls)
}

/// Each route's own client CA (`tls_downstream_client_ca`), for connections to its host, with
/// `downstream_mtls`' other settings.
fn host_client_auth(config: &Config) -> Result<Vec<(String, DownstreamClientAuth)>, String> {
    let mtls = &config.options.downstream_mtls;
    let mode = match mtls.enforcement {
        config::options::MtlsEnforcement::RejectConnection => ClientCertMode::Require,
        _ => ClientCertMode::Report,
    };
    let mut hosts = Vec::new();
    for route in &config.routes {
        let Some(ca) = &route.tls.downstream_client_ca else { continue };
        let auth = DownstreamClientAuth::from_config(mtls, ca.ders(), mode)
            .map_err(|e| format!("route `{}`: tls_downstream_client_ca: {e}", route.from.text))?;
        hosts.push((route.from.host.clone(), auth));
    }
    Ok(hosts)
}

/// The TLS configuration of the gRPC listener: the same certificates as the main listener (or the
/// self-signed one), without client certificates.
pub(crate) fn grpc_tls(config: &Config) -> Result<Arc<rustls::ServerConfig>, String> {
    let resolver = Arc::new(SniResolver::new(&certificates(config)?).map_err(|e| format!("certificates: {e}"))?);
    let tls = ServerTls::new(resolver, None).map_err(|e| format!("tls: {e}"))?;
    Ok(Arc::clone(tls.config()))
}

fn certificates(config: &Config) -> Result<Vec<Arc<CertifiedKey>>, String> {
    let configured = &config.options.certificates;
    if !configured.is_empty() {
        return configured
            .iter()
            .map(|pair| {
                let key = pair.key.der().ok_or("a certificate's key is not a private key")?;
                proxy::tls::certified_key(pair.certificates.ders().to_vec(), key)
                    .map_err(|e| format!("certificates: {e}"))
            })
            .collect();
    }
    let names = self_signed_names(config);
    tracing::warn!(
        names = %names.join(", "),
        "no certificate configured: serving a self-signed one that browsers will not trust"
    );
    let (chain, key) = proxy::tls::self_signed(&names).map_err(|e| format!("self-signed certificate: {e}"))?;
    Ok(vec![proxy::tls::certified_key(chain, key).map_err(|e| format!("self-signed certificate: {e}"))?])
}

/// The hosts the self-signed certificate is for: every route's, the authenticate service's, and
/// localhost.
fn self_signed_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config.routes.iter().map(|r| r.from.host.clone()).collect();
    if let Some(host) = config.options.authenticate_url().and_then(|u| u.host_str().map(str::to_owned)) {
        names.push(host);
    }
    names.push("localhost".to_owned());
    names.sort();
    names.dedup();
    names
}

/// Binds `:port`, `host:port` or `[v6]:port` (Go's listen address forms).
pub(crate) async fn bind(address: &str) -> Result<TcpListener, String> {
    proxy::server::bind(address).await
}

/// The address a listener is bound to (the real port when the configuration says `:0`), else
/// the configured one.
pub(crate) fn local_address(listener: &TcpListener, configured: &str) -> String {
    listener.local_addr().map_or_else(|_| configured.to_owned(), |a| a.to_string())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn serve_health(listener: TcpListener, shutdown: ShutdownSignal) {
    let handler = |request: Request<Incoming>, _: Arc<ConnectionInfo>| async move {
        match request.uri().path() {
            "/healthz" | "/readyz" | "/startupz" | "/ping" | "/status" => text(StatusCode::OK, "OK".to_owned()),
            _ => text(StatusCode::NOT_FOUND, "not found".to_owned()),
        }
    };
    server::serve(listener, None, handler, ServerOptions::default(), shutdown).await;
}

/// `/metrics`, over TLS when `metrics_certificate` is set, behind `metrics_basic_auth` when set.
async fn serve_metrics<F>(
    listener: TcpListener,
    tls: Option<ServerTls>,
    access: crate::metrics::Access,
    render: F,
    shutdown: ShutdownSignal,
) where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    let access = Arc::new(access);
    let handler = move |request: Request<Incoming>, _: Arc<ConnectionInfo>| {
        let (render, access) = (render.clone(), Arc::clone(&access));
        async move {
            if !access.allows(request.headers()) {
                let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized".to_owned());
                response
                    .headers_mut()
                    .insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Basic realm=\"metrics\""));
                response
            } else if request.uri().path() == "/metrics" {
                text(StatusCode::OK, render())
            } else {
                text(StatusCode::NOT_FOUND, "not found".to_owned())
            }
        }
    };
    server::serve(listener, tls, handler, ServerOptions::default(), shutdown).await;
}

fn text(status: StatusCode, content: String) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(content));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

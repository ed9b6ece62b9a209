//! Benchmark B6, its policy part (`shared/spec/benchmarks.md`): the route policies of a config
//! file compiled at start-up, 100 / 1,000 / 10,000 of them.
//!
//! [`Config::generate`] writes `n` distinct small route policies of the shapes configs hold (an
//! `allowed_users`-like email, a domain, a group, a deny on an admin path, ten users, a domain and
//! methods, a network, a claim), both as one YAML document (`routes:`, each with `from`, `to`
//! and `policy:`, the way a config file holds them) and as each policy's own text. Two ways to
//! compile them:
//!
//! - [`compile_each`]: every policy from its own text, `ppl::compile` then `Program::compile`;
//! - [`compile_document`]: the document parsed once (`ppl::syntax::yaml::parse`), each route's
//!   `policy:` value lowered (`ppl::parse_value`), checked (`ppl::check`) and compiled: what the
//!   config stage does.

use crate::regorus_peer::PeerError;
use policy::Program;
use std::fmt::Write as _;

/// The route counts of the benchmark.
pub const SIZES: [usize; 3] = [100, 1_000, 10_000];

/// A generated config: the document and the policies' own texts.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `routes:` with `from`, `to` and `policy:` each.
    pub document: String,
    /// Each route's policy as a YAML document of its own.
    pub policies: Vec<String>,
}

/// The policy of route `i`: eight shapes in turn, every one distinct by its values.
pub fn route_policy(i: usize) -> String {
    match i % 8 {
        0 => format!("allow:\n  or:\n    - email:\n        is: user{i}@example.com\n"),
        1 => format!("allow:\n  or:\n    - domain:\n        is: corp{i}.example.com\n"),
        2 => format!("allow:\n  or:\n    - groups:\n        has: group{i}\n"),
        3 => format!(
            "allow:\n  or:\n    - email:\n        is: user{i}@example.com\n\
             deny:\n  or:\n    - http_path:\n        starts_with: /admin{i}/\n"
        ),
        4 => {
            let users = (0..10).fold(String::new(), |mut out, k| {
                let _ = write!(out, "    - email:\n        is: user{i}-{k}@example.com\n");
                out
            });
            format!("allow:\n  or:\n{users}")
        }
        5 => format!(
            "allow:\n  and:\n    - domain:\n        is: corp{i}.example.com\n    - http_method:\n        in: [GET, HEAD]\n"
        ),
        6 => format!("allow:\n  or:\n    - source_ip: 10.{}.{}.0/24\n", (i / 256) % 256, i % 256),
        _ => format!(
            "allow:\n  or:\n    - claim/department: dept{i}\n\
             deny:\n  or:\n    - http_method:\n        is: DELETE\n"
        ),
    }
}

impl Config {
    /// `n` routes.
    pub fn generate(n: usize) -> Config {
        let policies: Vec<String> = (0..n).map(route_policy).collect();
        let mut document = String::from("routes:\n");
        for (i, policy) in policies.iter().enumerate() {
            let _ =
                write!(document, "  - from: https://app{i}.example.com\n    to: http://backend{i}:8080\n    policy:\n");
            for line in policy.lines() {
                let _ = writeln!(document, "      {line}");
            }
        }
        Config { document, policies }
    }
}

/// Loads the document the way the server does at start-up and on reload, end to end: YAML parse,
/// typed config with every check, each route's policy assembled and compiled, the route table
/// built. The number of routes.
pub fn load_server(document: &str) -> Result<usize, PeerError> {
    let config = load_config(document)?;
    let runtime = proxy::runtime::Runtime::build(&config, &environment()).map_err(|e| PeerError(e.to_string()))?;
    Ok(runtime.route_count())
}

/// What the server builds its runtimes with (its upstream clients outlive reloads).
pub fn environment() -> proxy::runtime::Environment {
    proxy::runtime::Environment {
        fallback_shared_key: vec![0; 32],
        fallback_cookie_key: vec![0; 32],
        authn: std::sync::Arc::default(),
        remote_authorize: None,
        records: proxy::runtime::SharedRecords::default(),
        clients: std::sync::Arc::new(proxy::upstream::UpstreamClients::new(proxy::upstream::ClientOptions::default())),
    }
}

/// The typed configuration of `document`, every check run.
pub fn load_config(document: &str) -> Result<config::Config, PeerError> {
    let loaded = config::load(document, config::Format::Yaml, &config::env::Empty);
    let errors: Vec<String> = loaded.errors.iter().map(|e| e.diagnostic.to_string()).collect();
    loaded.config.filter(|_| errors.is_empty()).ok_or_else(|| PeerError(format!("bad config: {errors:?}")))
}

/// The runtime requests are served with (the server's `ArcSwap`).
#[derive(Debug, Default)]
pub struct Current(std::sync::Mutex<Option<std::sync::Arc<proxy::runtime::Runtime>>>);

impl Current {
    /// Puts `runtime` in; the one it replaces.
    pub fn swap(&self, runtime: proxy::runtime::Runtime) -> Option<std::sync::Arc<proxy::runtime::Runtime>> {
        let mut slot = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.replace(std::sync::Arc::new(runtime))
    }
}

/// Where a reload's time goes, each phase timed apart.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    /// Reading the file.
    pub read: std::time::Duration,
    /// The YAML parse alone (`ppl::syntax::yaml::parse`; `load` runs it again).
    pub parse: std::time::Duration,
    /// `config::load`: YAML, typed routes, every check, policies assembled and checked.
    pub load: std::time::Duration,
    /// `Runtime::build`: policies compiled, upstream clients, route table.
    pub build: std::time::Duration,
    /// Dropping the runtime the new one replaces.
    pub drop: std::time::Duration,
}

/// A reload as the server runs it, from the file to a serving runtime swapped in: the file read,
/// the configuration loaded and built into a runtime with `environment` (kept across reloads, as
/// the server keeps its upstream clients), the previous runtime replaced in `current` and
/// dropped. The number of routes.
pub fn reload(
    path: &std::path::Path,
    environment: &proxy::runtime::Environment,
    current: &Current,
) -> Result<usize, PeerError> {
    let text = std::fs::read_to_string(path).map_err(|e| PeerError(format!("{}: {e}", path.display())))?;
    let config = load_config(&text)?;
    let runtime = proxy::runtime::Runtime::build(&config, environment).map_err(|e| PeerError(e.to_string()))?;
    let routes = runtime.route_count();
    drop(current.swap(runtime));
    Ok(routes)
}

/// [`reload`], each phase timed apart.
pub fn reload_phases(
    path: &std::path::Path,
    environment: &proxy::runtime::Environment,
    current: &Current,
) -> Result<Phases, PeerError> {
    use std::time::Instant;
    let start = Instant::now();
    let text = std::fs::read_to_string(path).map_err(|e| PeerError(format!("{}: {e}", path.display())))?;
    let read = start.elapsed();
    let start = Instant::now();
    let (value, _) = ppl::syntax::yaml::parse(&text);
    std::hint::black_box(&value);
    let parse = start.elapsed();
    drop(value);
    let start = Instant::now();
    let config = load_config(&text)?;
    let load = start.elapsed();
    let start = Instant::now();
    let runtime = proxy::runtime::Runtime::build(&config, environment).map_err(|e| PeerError(e.to_string()))?;
    let build = start.elapsed();
    let previous = current.swap(runtime);
    let start = Instant::now();
    drop(previous);
    drop(config);
    let drop = start.elapsed();
    Ok(Phases { read, parse, load, build, drop })
}

/// Compiles every policy from its own text; the programs, in route order.
pub fn compile_each(policies: &[String]) -> Result<Vec<Program>, PeerError> {
    policies.iter().map(|text| crate::ours::compile(text)).collect()
}

/// Parses the document once and compiles each route's `policy:`; the programs, in route order.
pub fn compile_document(document: &str) -> Result<Vec<Program>, PeerError> {
    let (value, errors) = ppl::syntax::yaml::parse(document);
    let value = value.filter(|_| errors.is_empty()).ok_or_else(|| PeerError(format!("bad document: {errors:?}")))?;
    let routes = value
        .get("routes")
        .and_then(|entry| entry.value.as_array())
        .ok_or_else(|| PeerError("the document has no `routes` list".to_owned()))?;
    let mut programs = Vec::with_capacity(routes.len());
    for route in routes {
        let policy = route.get("policy").ok_or_else(|| PeerError("a route without a policy".to_owned()))?;
        let parsed = ppl::parse_value(&policy.value);
        let checked = parsed.policy.map(|ast| ppl::check(&ast));
        let model = checked
            .and_then(|checked| checked.policy.filter(|_| parsed.errors.is_empty() && checked.errors.is_empty()))
            .ok_or_else(|| PeerError(format!("a route's policy does not compile: {:?}", parsed.errors)))?;
        programs.push(Program::compile(&model));
    }
    Ok(programs)
}

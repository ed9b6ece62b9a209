//! The route table: given a request's authority and path, the route that serves it.
//!
//! Semantics are Pomerium's as Envoy runs them (system.md §2.1):
//!
//! - Every route whose `from` names a concrete host belongs to that host's *virtual host*. A
//!   request whose host has a virtual host is matched against those routes only, never against
//!   wildcard routes, even when none of them matches its path.
//! - Routes with a wildcard host (`https://*.example.com`) live in one catch-all virtual host, for
//!   requests whose host has no virtual host of its own.
//! - Within a virtual host routes keep their configured order and the **first** match wins. A
//!   route matches its path by regex (anchored), exact path, or prefix; `CONNECT` requests match
//!   only the `tcp+https` routes of their `host:port`.
//!
//! Lookup does not walk the routes: hosts are hashed, exact paths hashed, prefixes sit in a byte
//! trie, and each index keeps, per entry, the position of the first route it stands for, so the
//! answer is the smallest position among a few candidates. Only regex routes are tried one by
//! one, and only those configured before the best candidate so far. Lookup never allocates.
//!
//! Invariant: the table is immutable once built; a new configuration builds a new table.

mod host;
mod path;

pub use host::HostPattern;
use host::LOWERCASE_CAPACITY;
use path::PathIndex;

use foldhash::HashMap;

/// How a route matches the request's path (Pomerium's `regex` over `path` over `prefix`; the
/// caller picks one per route in that order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRule {
    /// The path starts with this string (byte-wise, case-sensitive, as Envoy's `prefix`).
    Prefix(String),
    /// The path is exactly this string.
    Exact(String),
    /// The whole path matches this regular expression (it is anchored at both ends).
    Regex(String),
    /// An HTTP `CONNECT` to this route's `host:port` (a `tcp+https` route).
    Connect,
}

/// What the table is asked.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The `Host` header or `:authority`, as received (`app.example.com`, `APP.example.com:443`).
    pub authority: &'a str,
    /// The request path without the query string, already normalized by the caller.
    pub path: &'a str,
    /// Whether the method is `CONNECT`.
    pub connect: bool,
}

/// How hosts compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Pomerium's `match_any_incoming_port` runtime flag (default on): ports are ignored on both
    /// sides when matching hosts (CONNECT routes always compare `host:port`).
    pub match_any_incoming_port: bool,
    /// The port that may be omitted when ports are compared (443 behind TLS, 80 without).
    pub default_port: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options { match_any_incoming_port: true, default_port: 443 }
    }
}

/// A route that cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("invalid host pattern `{host}`: {reason}")]
    Host { host: String, reason: &'static str },
    #[error("invalid path regex `{pattern}`: {reason}")]
    Regex { pattern: String, reason: String },
    #[error("a CONNECT route needs a host with a port, found `{host}`")]
    ConnectWithoutPort { host: String },
}

/// Collects routes in priority order, then builds the table.
#[derive(Debug)]
pub struct Builder<T> {
    options: Options,
    table: RouteTable<T>,
}

/// The built table. `T` is whatever the caller attaches to a route.
#[derive(Debug)]
pub struct RouteTable<T> {
    options: Options,
    values: Vec<T>,
    /// Virtual hosts: host (lowercase, port per [`Options`]) → its routes.
    hosts: HashMap<Box<str>, PathIndex>,
    /// `tcp+https` routes: `host:port` → the first such route.
    connect: HashMap<Box<str>, u32>,
    /// Wildcard routes of the form `*<suffix>`, grouped by suffix.
    suffixes: HashMap<Box<str>, PathIndex>,
    /// The distinct suffix lengths, so a lookup only tries those.
    suffix_lengths: Vec<usize>,
    /// Any other wildcard pattern, tried one by one.
    globs: Vec<(HostPattern, PathIndex)>,
}

/// A route found for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'t, T> {
    /// The route's position in the order routes were added.
    pub index: usize,
    pub value: &'t T,
}

impl<T> Builder<T> {
    pub fn new(options: Options) -> Self {
        let table = RouteTable {
            options,
            values: Vec::new(),
            hosts: HashMap::default(),
            connect: HashMap::default(),
            suffixes: HashMap::default(),
            suffix_lengths: Vec::new(),
            globs: Vec::new(),
        };
        Builder { options, table }
    }

    /// Adds a route after the ones already added (so with a lower priority). `host` is the host of
    /// the route's `from` (`app.example.com`, `*.example.com`, `db.example.com:5432` for CONNECT).
    /// Returns the route's index.
    pub fn add(&mut self, host: &str, rule: PathRule, value: T) -> Result<usize, RouteError> {
        let index = u32::try_from(self.table.values.len())
            .ok()
            .filter(|&i| i < u32::MAX)
            .ok_or_else(|| RouteError::Host { host: host.to_owned(), reason: "too many routes" })?;
        let table = &mut self.table;
        match path::Rule::compile(&rule)? {
            None => {
                let key =
                    host::connect_key(host).ok_or_else(|| RouteError::ConnectWithoutPort { host: host.to_owned() })?;
                if key.contains('*') {
                    return Err(RouteError::Host {
                        host: host.to_owned(),
                        reason: "a CONNECT route cannot be a wildcard",
                    });
                }
                table.connect.entry(key.into()).or_insert(index);
            }
            Some(rule) => match HostPattern::parse(host, self.options)? {
                HostPattern::Exact(host) => table.hosts.entry(host.into()).or_default().insert(rule, index),
                HostPattern::Suffix(suffix) => {
                    if !table.suffix_lengths.contains(&suffix.len()) {
                        table.suffix_lengths.push(suffix.len());
                    }
                    table.suffixes.entry(suffix.into()).or_default().insert(rule, index);
                }
                glob @ HostPattern::Glob(_) => {
                    let mut paths = PathIndex::default();
                    paths.insert(rule, index);
                    table.globs.push((glob, paths));
                }
            },
        }
        table.values.push(value);
        Ok(index as usize)
    }

    pub fn build(mut self) -> RouteTable<T> {
        // Longer suffixes first only saves work; the answer is the smallest index either way.
        self.table.suffix_lengths.sort_unstable_by(|a, b| b.cmp(a));
        self.table
    }
}

impl<T> RouteTable<T> {
    /// The route that serves the request, if any.
    pub fn lookup(&self, request: &Request<'_>) -> Option<Match<'_, T>> {
        let index = if request.connect { self.lookup_connect(request.authority) } else { self.lookup_http(request) };
        let index = index? as usize;
        self.values.get(index).map(|value| Match { index, value })
    }

    /// Every route, in priority order.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn lookup_connect(&self, authority: &str) -> Option<u32> {
        if authority.len() > LOWERCASE_CAPACITY {
            return None;
        }
        let mut buffer = [0u8; LOWERCASE_CAPACITY];
        let authority = host::lowercase_into(authority, &mut buffer)?;
        self.connect.get(authority).copied()
    }

    fn lookup_http(&self, request: &Request<'_>) -> Option<u32> {
        let mut buffer = None;
        let key = host::authority_key(request.authority, self.options, &mut buffer)?;
        if let Some(paths) = self.hosts.get(key) {
            // A host with a virtual host of its own never falls through to the wildcards.
            return paths.first_match(request.path, u32::MAX);
        }
        self.lookup_wildcards(key, request.path)
    }

    fn lookup_wildcards(&self, host: &str, path: &str) -> Option<u32> {
        let mut best = u32::MAX;
        for &length in &self.suffix_lengths {
            // Envoy's regex for `*` is `(.*)`, which allows an empty run; so do we.
            let Some(start) = host.len().checked_sub(length) else { continue };
            let Some(suffix) = host.get(start..) else { continue };
            if let Some(found) = self.suffixes.get(suffix).and_then(|paths| paths.first_match(path, best)) {
                best = best.min(found);
            }
        }
        for (pattern, paths) in &self.globs {
            if paths.lowest() >= best {
                continue;
            }
            if pattern.matches(host)
                && let Some(found) = paths.first_match(path, best)
            {
                best = best.min(found);
            }
        }
        (best != u32::MAX).then_some(best)
    }
}

#[cfg(test)]
mod tests;

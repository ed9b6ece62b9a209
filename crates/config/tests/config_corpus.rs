//! The configuration corpus: one file per case under `tests/config/`, independent of the Rust API
//! beyond `config::load`.
//!
//! A case file is a description (comment lines) followed by sections:
//!
//! ```text
//! # What the case is about, and where the behaviour is specified.
//! --- config.yaml            (or config.json: the configuration, byte for byte)
//! routes: ...
//! --- env                    (optional: KEY=VALUE lines; the environment)
//! ADDRESS=:8443
//! --- env-base64:POLICY      (optional: this text, base64-encoded, is the variable's value)
//! - from: https://a.example.com
//! --- file:/etc/ca.pem       (optional: a file `*_file` options can read; `file-nonl:` drops the
//! -----BEGIN CERTIFICATE-----   final newline)
//! --- diagnostics            (every error, then every warning; absent = none)
//! error config::route::bad_url 3:11-3:20 `from` is not a valid url: ...
//!   help: ...
//! --- options                (optional: `name=value` lines; each named option must have that value)
//! address=:8443
//! --- routes                 (every route: match, action, effective settings, assembled policy)
//! ```
//!
//! Locations are `line:column-line:column` in the file, or `$VAR line:column-line:column` in an
//! environment variable's value. `UPDATE_EXPECT=1 cargo test -p config --test config_corpus`
//! rewrites the expectations in place (the `options` lines keep their names); review the diff.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests fail by panicking, on fixtures they know"
)]

use base64::Engine as _;
use config::route::{Action, PathRewrite};
use config::{Loaded, MapEnvironment, Origin, Route};
use miette::Diagnostic;
use ppl::LineIndex;
use std::fmt::Write as _;
use std::path::Path;
use test_support::expect::{Section, compare_or_update};

type Case = case_file::InputCase;

fn parse_case(content: &str) -> Result<Case, String> {
    case_file::parse_with_input(content, "config")
}

fn environment(case: &Case) -> Result<MapEnvironment, String> {
    let mut env = MapEnvironment::new();
    for (name, body) in &case.sections {
        if name == "env" {
            for line in body.lines().filter(|l| !l.trim().is_empty()) {
                let (key, value) = line.split_once('=').ok_or_else(|| format!("env line `{line}` is not KEY=VALUE"))?;
                env = env.with_var(key, value);
            }
        } else if let Some(var) = name.strip_prefix("env-base64:") {
            env = env.with_var(var, &base64::engine::general_purpose::STANDARD.encode(body.as_bytes()));
        } else if let Some(var) = name.strip_prefix("env:") {
            env = env.with_var(var, body.strip_suffix('\n').unwrap_or(body));
        } else if let Some(path) = name.strip_prefix("file:") {
            env = env.with_file(path, body.as_bytes());
        } else if let Some(path) = name.strip_prefix("file-nonl:") {
            env = env.with_file(path, body.strip_suffix('\n').unwrap_or(body).as_bytes());
        }
    }
    Ok(env)
}

fn location(loaded: &Loaded, case: &Case, origin: &Origin, span: ppl::Span) -> String {
    let text = loaded.source_text(origin, &case.input);
    let index = LineIndex::new(text);
    let (start, end) = (index.line_col(span.start()), index.line_col(span.end()));
    match origin.variable() {
        Some(var) => format!("${var} {start}-{end}"),
        None => format!("{start}-{end}"),
    }
}

fn compact(severity: &str, location: &str, diagnostic: &dyn Diagnostic) -> String {
    let code = diagnostic.code().map(|c| c.to_string()).unwrap_or_default();
    let mut line = format!("{severity} {code} {location} {diagnostic}\n");
    if let Some(help) = diagnostic.help() {
        let _ = writeln!(line, "  help: {help}");
    }
    line
}

fn diagnostics(loaded: &Loaded, case: &Case) -> String {
    let mut out = String::new();
    for e in &loaded.errors {
        out.push_str(&compact("error", &location(loaded, case, &e.origin, e.diagnostic.span()), &e.diagnostic));
    }
    for w in &loaded.warnings {
        out.push_str(&compact("warning", &location(loaded, case, &w.origin, w.diagnostic.span()), &w.diagnostic));
    }
    out
}

fn map(map: &std::collections::BTreeMap<String, String>) -> String {
    let items: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", items.join(", "))
}

/// The value of one option, by the name used in `--- options`.
fn option_value(config: &config::Config, name: &str) -> String {
    let o = &config.options;
    let d = config::duration::format;
    if let Some(flag) = name.strip_prefix("runtime_flags.") {
        return o.runtime_flag(flag).to_string();
    }
    match name {
        "address" => o.address.clone(),
        "insecure_server" => o.insecure_server.to_string(),
        "services" => format!("{:?}", o.services.list()),
        "grpc_address" => o.effective_grpc_address(),
        "grpc_insecure" => o.effective_grpc_insecure().to_string(),
        "grpc_client_timeout" => d(o.grpc_client_timeout),
        "authenticate_url" => o.authenticate_url().map(|u| u.to_string()).unwrap_or_default(),
        "hosted_authenticate" => o.uses_hosted_authenticate().to_string(),
        "authorize_service_urls" => {
            format!("{:?}", o.authorize_service_urls.iter().map(|u| u.as_str()).collect::<Vec<_>>())
        }
        "databroker_service_urls" => {
            format!("{:?}", o.databroker.service_urls.iter().map(|u| u.as_str()).collect::<Vec<_>>())
        }
        "databroker_storage_type" => format!("{:?}", o.databroker.storage_type),
        "databroker_storage_connection_string" => format!("{:?}", o.databroker.storage_connection_string),
        "shared_secret" => format!("{:?}", o.shared_secret),
        "cookie_secret" => format!("{:?}", o.cookie.secret),
        "cookie_name" => o.cookie.name.clone(),
        "cookie_domain" => format!("{:?}", o.cookie.domain),
        "cookie_http_only" => o.cookie.http_only.to_string(),
        "cookie_expire" => d(o.cookie.expire),
        "cookie_same_site" => format!("{:?}", o.cookie.same_site),
        "idp_provider" => format!("{:?}", o.idp.provider),
        "idp_client_id" => format!("{:?}", o.idp.client_id),
        "idp_client_secret" => format!("{:?}", o.idp.client_secret),
        "idp_scopes" => format!("{:?}", o.idp.scopes),
        "idp_request_params" => map(&o.idp.request_params),
        "signing_key" => format!("{:?}", o.signing_key.as_ref().map(|k| k.der().is_some())),
        "certificates" => o.certificates.len().to_string(),
        "certificate_authority" => format!("{:?}", o.certificate_authority),
        "autocert" => format!("{:?}", o.autocert),
        "downstream_mtls" => format!("{:?}", o.downstream_mtls),
        "set_response_headers" => format!("{:?}", o.set_response_headers),
        "response_headers" => map(&o.response_headers(None)),
        "jwt_claims_headers" => map(&o.jwt_claims_headers),
        "jwt_issuer_format" => format!("{:?}", o.jwt_issuer_format),
        "jwt_groups_filter" => format!("{:?}", o.jwt_groups_filter),
        "bearer_token_format" => format!("{:?}", o.bearer_token_format),
        "pass_identity_headers" => format!("{:?}", o.pass_identity_headers),
        "timeout_read" => d(o.timeout_read),
        "timeout_write" => d(o.timeout_write),
        "timeout_idle" => d(o.timeout_idle),
        "default_upstream_timeout" => d(o.default_upstream_timeout),
        "signout_redirect_url" => format!("{:?}", o.signout_redirect_url.as_ref().map(|u| u.as_str())),
        "programmatic_redirect_domain_whitelist" => format!("{:?}", o.programmatic_redirect_domain_whitelist),
        "health_check_addr" => o.health_check_addr.clone(),
        "metrics_address" => format!("{:?}", o.metrics_address),
        "log_level" => format!("{:?}", o.log_level),
        "xff_num_trusted_hops" => o.xff_num_trusted_hops.to_string(),
        "skip_xff_append" => o.skip_xff_append.to_string(),
        "codec_type" => format!("{:?}", o.codec_type),
        "normalize_path" => o.normalize_path.to_string(),
        "merge_slashes" => o.merge_slashes.to_string(),
        "path_with_escaped_slashes_action" => format!("{:?}", o.path_with_escaped_slashes_action),
        "headers_with_underscores_action" => format!("{:?}", o.headers_with_underscores_action),
        "http_redirect_addr" => format!("{:?}", o.http_redirect_addr),
        "dns_lookup_family" => format!("{:?}", o.dns_lookup_family),
        "allow_upgrades" => format!("{:?}", o.allow_upgrades),
        "otel.exporter" => {
            format!("{:?}", o.otel.exporter.as_ref().map(|e| (e.protocol, e.endpoint.as_str(), &e.headers, e.timeout)))
        }
        "otel.sampler_arg" => o.otel.sampler_arg.to_string(),
        "otel.resource_attributes" => format!("{:?}", o.otel.resource_attributes),
        "otel.attribute_value_length_limit" => format!("{:?}", o.otel.attribute_value_length_limit),
        "otel.bsp" => format!("{:?} {}", o.otel.bsp_schedule_delay, o.otel.bsp_max_export_batch_size),
        "other" => format!("{:?}", o.other.keys().collect::<Vec<_>>()),
        other => format!("<unknown option `{other}` in the test>"),
    }
}

fn action(route: &Route) -> String {
    match &route.action {
        Action::Upstream(urls) => {
            let items: Vec<String> = urls
                .iter()
                .map(|u| match u.weight {
                    Some(w) => format!("{} weight={w}", u.url),
                    None => u.url.to_string(),
                })
                .collect();
            format!("to {}", items.join(", "))
        }
        Action::Redirect(r) => format!("redirect {r:?}"),
        Action::Response(r) => format!("response {} {:?}", r.status, r.body),
    }
}

/// A summary of one route: what it matches, what it does, the effective settings, its policy.
fn route_summary(config: &config::Config, route: &Route) -> String {
    let o = &config.options;
    let d = config::duration::format;
    let mut out = format!("route {} id={}", route.index, route.id);
    if let Some(name) = &route.name {
        let _ = write!(out, " name={name:?}");
    }
    let _ = write!(out, " from={}", route.from.url);
    for (label, value) in [("prefix", &route.prefix), ("path", &route.path), ("regex", &route.regex)] {
        if let Some(value) = value {
            let _ = write!(out, " {label}={value}");
        }
    }
    out.push('\n');
    let mut line = |text: String| {
        out.push_str("  ");
        out.push_str(&text);
        out.push('\n');
    };
    line(action(route));
    let idle = route.effective_idle_timeout(o).map_or("default".to_owned(), d);
    line(format!("timeout {} idle {idle}", d(route.effective_timeout(o))));
    match route.path_rewrite() {
        Some(PathRewrite::Prefix(prefix)) => line(format!("rewrite prefix {prefix:?}")),
        Some(PathRewrite::Regex { pattern, substitution }) => {
            line(format!("rewrite regex {pattern:?} → {substitution:?}"))
        }
        None => {}
    }
    if let Some(host) = &route.host_rewrite {
        line(format!("host_rewrite {host}"));
    }
    if route.preserve_host_header {
        line("preserve_host_header".to_owned());
    }
    if !route.set_request_headers.is_empty() {
        line(format!("set_request_headers {}", map(&route.set_request_headers)));
    }
    if route.set_response_headers.is_some() {
        line(format!("response_headers {}", map(&o.response_headers(Some(route)))));
    }
    if !route.rewrite_response_headers.is_empty() {
        line(format!("rewrite_response_headers {:?}", route.rewrite_response_headers));
    }
    let upgrades = route.upgrades(o);
    if route.allows_websockets(o) || route.allows_spdy(o) || !upgrades.is_empty() {
        line(format!("websockets={} spdy={} upgrades={upgrades:?}", route.allows_websockets(o), route.allows_spdy(o)));
    }
    if route.tls != config::route::UpstreamTls::default() {
        line(format!("tls {:?}", route.tls));
    }
    if route.passes_identity_headers(o) {
        line("pass_identity_headers".to_owned());
    }
    if let Some(format) = route.effective_bearer_token_format(o) {
        line(format!("bearer_token_format {format:?} audiences {:?}", route.access_token_allowed_audiences(o)));
    }
    if let Some(lb) = route.load_balancing_policy {
        line(format!("load_balancing_policy {lb:?}"));
    }
    if let Some(od) = &route.outlier_detection {
        line(format!("outlier_detection {:?}", config::route::OutlierDetection { raw: None, ..od.clone() }));
    }
    if !route.depends_on.is_empty() {
        line(format!("depends_on {:?}", route.depends_on));
    }
    if route.kubernetes_service_account_token.is_some() {
        line(format!("kubernetes_service_account_token {:?}", route.kubernetes_service_account_token));
    }
    if !route.envoy_cluster.is_empty() {
        line(format!("envoy_cluster {:?}", route.envoy_cluster.keys().collect::<Vec<_>>()));
    }
    let policy = ppl::format::format(&route.policy.ast, &ppl::comments::Trivia::default(), ppl::Syntax::Text);
    for policy_line in policy.lines() {
        line(format!("| {policy_line}"));
    }
    for sub in &route.sub_policies {
        line(format!(
            "sub-policy id={:?} name={:?} explanation={:?} remediation={:?}",
            sub.id, sub.name, sub.explanation, sub.remediation
        ));
        if let Some(ast) = &sub.ast {
            let text = ppl::format::format(ast, &ppl::comments::Trivia::default(), ppl::Syntax::Text);
            for policy_line in text.lines() {
                line(format!("  | {policy_line}"));
            }
        }
    }
    out
}

fn run_case(path: &Path, content: String) -> datatest_stable::Result<()> {
    let case = parse_case(&content)?;
    let env = environment(&case)?;
    let format = config::Format::from_path(&case.input_name);
    let loaded = config::load(&case.input, format, &env);
    let section = |name: &str| case.sections.iter().find(|(n, _)| n == name).map(|(_, body)| body.clone());

    let mut compared = Vec::new();
    let mut push = |name: &str, want: Option<String>, got: String| {
        if want.is_some() || !got.trim().is_empty() {
            compared.push(Section::new(name, &want.unwrap_or_default(), &got));
        }
    };
    push("diagnostics", section("diagnostics"), diagnostics(&loaded, &case));
    if let Some(wanted) = section("options") {
        let got = match &loaded.config {
            Some(config) => wanted
                .lines()
                .filter_map(|l| l.split_once('=').map(|(name, _)| format!("{name}={}\n", option_value(config, name))))
                .collect(),
            None => "<no configuration: there are errors>".to_owned(),
        };
        push("options", Some(wanted), got);
    }
    let routes = loaded.config.as_ref().map(|c| c.routes.iter().map(|r| route_summary(c, r)).collect::<String>());
    push("routes", section("routes"), routes.unwrap_or_default());
    for (name, _) in &case.sections {
        let known = ["env", "diagnostics", "options", "routes"].contains(&name.as_str())
            || ["env:", "env-base64:", "file:", "file-nonl:"].iter().any(|p| name.starts_with(p));
        if !known {
            return Err(format!("unknown section `{name}`").into());
        }
    }

    let mut kept = format!("{}--- {}\n{}", case.header, case.input_name, case.input);
    for (name, body) in &case.sections {
        if !["diagnostics", "options", "routes"].contains(&name.as_str()) {
            let _ = write!(kept, "--- {name}\n{body}");
        }
    }
    Ok(compare_or_update(path, &kept, &compared)?)
}

datatest_stable::harness! {
    { test = run_case, root = "../../tests/config", pattern = r"\.case$" },
}

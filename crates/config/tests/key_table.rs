//! No silent option: every key of `config::keys` (global, route, `downstream_mtls`, and the Envoy
//! cluster fields a route may carry) is either read by the running server or listed once in
//! `config::support::UNSUPPORTED`, where the loader reports it (a warning, or an error) at its
//! key.
//!
//! "Read by the running server" is shown by evidence: for each wired key, the code that reads the
//! field it fills (`route.tls.custom_ca`, `options.cookie.same_site`, an accessor such as
//! `.effective_timeout(`) must occur in the server's code outside the readers (`options.rs`,
//! `route_read.rs`, ...) and outside test modules. A key added to `keys.rs` without a line here
//! or in the table fails; so does evidence that no longer occurs (a field whose last reader was
//! removed), and a key both wired here and listed as unsupported.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking, on fixtures they know"
)]

use config::support::{Support, UNSUPPORTED};
use std::collections::BTreeMap;
use test_support::tidy::{rust_files, workspace};

/// Qualified key → code that shows the server reads what it fills.
const WIRED: &[(&str, &str)] = &[
    // Listeners, services, addresses.
    ("address", "options.address"),
    ("insecure_server", "options.insecure_server"),
    ("grpc_address", ".effective_grpc_address()"),
    ("grpc_insecure", ".effective_grpc_insecure()"),
    ("services", "options.services"),
    // Managed mode (crates/pomerium/src/zero).
    ("pomerium_zero_token", "options.zero_token"),
    ("http_redirect_addr", ".http_redirect_addr"),
    // Log lines (crates/proxy/src/log_fields.rs).
    ("access_log_fields", "options.access_log_fields"),
    ("authorize_log_fields", "options.authorize_log_fields"),
    // Tracing (crates/pomerium/src/telemetry.rs, crates/proxy/src/trace.rs; tested through the
    // binary in crates/pomerium/tests/tracing.rs).
    ("otel_traces_exporter", "options.exporter"),
    ("otel_traces_sampler_arg", "options.sampler_arg"),
    ("otel_resource_attributes", "options.resource_attributes"),
    ("otel_attribute_value_length_limit", "options.attribute_value_length_limit"),
    ("otel_exporter_otlp_endpoint", "exporter.endpoint"),
    ("otel_exporter_otlp_traces_endpoint", "exporter.endpoint"),
    ("otel_exporter_otlp_protocol", "exporter.protocol"),
    ("otel_exporter_otlp_traces_protocol", "exporter.protocol"),
    ("otel_exporter_otlp_headers", "exporter.headers"),
    ("otel_exporter_otlp_traces_headers", "exporter.headers"),
    ("otel_exporter_otlp_timeout", "exporter.timeout"),
    ("otel_exporter_otlp_traces_timeout", "exporter.timeout"),
    ("otel_bsp_schedule_delay", "options.bsp_schedule_delay"),
    ("otel_bsp_max_export_batch_size", "options.bsp_max_export_batch_size"),
    // Autocert (crates/pomerium/src/autocert.rs).
    ("autocert", "options.autocert.enable"),
    ("autocert_dir", "autocert.dir"),
    ("autocert_ca", "autocert.ca"),
    ("autocert_email", "autocert.email"),
    ("autocert_use_staging", "autocert.use_staging"),
    ("autocert_eab_key_id", "autocert.eab_key_id"),
    ("autocert_eab_mac_key", "autocert.eab_mac_key"),
    ("autocert_must_staple", "autocert.must_staple"),
    ("autocert_trusted_ca", "autocert.trusted_ca"),
    ("autocert_trusted_ca_file", "autocert.trusted_ca"),
    ("metrics_address", ".metrics_address"),
    ("metrics_basic_auth", ".metrics_basic_auth"),
    ("metrics_certificate", ".metrics_certificate"),
    ("metrics_certificate_key", ".metrics_certificate"),
    ("metrics_certificate_file", ".metrics_certificate"),
    ("metrics_certificate_key_file", ".metrics_certificate"),
    ("metrics_client_ca", ".metrics_client_ca"),
    ("metrics_client_ca_file", ".metrics_client_ca"),
    ("health_check_addr", ".health_check_addr"),
    ("log_level", ".log_level"),
    ("timeout_read", ".timeout_read"),
    ("timeout_write", ".timeout_write"),
    ("timeout_idle", ".timeout_idle"),
    ("use_proxy_protocol", ".use_proxy_protocol"),
    ("default_upstream_timeout", ".default_upstream_timeout"),
    ("xff_num_trusted_hops", ".xff_num_trusted_hops"),
    ("skip_xff_append", ".skip_xff_append"),
    ("normalize_path", ".normalize_path"),
    ("merge_slashes", ".merge_slashes"),
    ("path_with_escaped_slashes_action", ".path_with_escaped_slashes_action"),
    ("headers_with_underscores_action", ".headers_with_underscores_action"),
    ("runtime_flags", ".runtime_flag("),
    ("allow_upgrades", ".upgrades(options)"),
    ("policy", "config.routes"),
    ("routes", "config.routes"),
    // Service URLs.
    ("authenticate_service_url", ".authenticate_url()"),
    // The stateless flow fetches the authenticate service's HPKE key there (authn::stateless).
    ("authenticate_internal_service_url", "options.authenticate_internal_service_url"),
    ("authenticate_callback_path", ".authenticate_callback_path"),
    ("authorize_service_url", ".authorize_service_urls"),
    ("authorize_service_urls", ".authorize_service_urls"),
    ("authorize_internal_service_url", ".authorize_internal_service_url"),
    ("databroker_service_url", ".databroker.service_urls"),
    ("databroker_service_urls", ".databroker.service_urls"),
    ("databroker_internal_service_url", ".internal_service_url"),
    ("databroker_storage_type", ".storage_type"),
    ("databroker_storage_connection_string", ".storage_connection_string"),
    ("databroker_storage_connection_string_file", ".storage_connection_string"),
    ("signout_redirect_url", ".signout_redirect_url"),
    ("programmatic_redirect_domain_whitelist", ".programmatic_redirect_domain_whitelist"),
    // Identity provider, secrets, cookies.
    ("idp_provider", "idp.provider"),
    ("idp_provider_url", "idp.provider_url"),
    ("idp_client_id", "idp.client_id"),
    ("idp_client_secret", "idp.client_secret"),
    ("idp_client_secret_file", "idp.client_secret"),
    ("idp_scopes", "idp.scopes"),
    ("idp_request_params", "idp.request_params"),
    ("idp_access_token_allowed_audiences", ".access_token_allowed_audiences"),
    ("idp_development_users", ".development_users"),
    ("shared_secret", ".shared_secret"),
    ("shared_secret_file", ".shared_secret"),
    ("cookie_secret", "cookie.secret"),
    ("cookie_secret_file", "cookie.secret"),
    ("cookie_name", "cookie.name"),
    ("cookie_domain", "cookie.domain"),
    ("cookie_http_only", "cookie.http_only"),
    ("cookie_expire", "cookie.expire"),
    ("cookie_same_site", "cookie.same_site"),
    ("signing_key", "options.signing_key"),
    ("signing_key_file", "options.signing_key"),
    ("jwt_claims_headers", ".jwt_claims_headers"),
    ("jwt_issuer_format", ".jwt_issuer_format"),
    ("bearer_token_format", ".effective_bearer_token_format("),
    ("pass_identity_headers", ".passes_identity_headers("),
    ("set_response_headers", ".response_headers("),
    // Certificates and downstream mTLS.
    ("certificate", "options.certificates"),
    ("certificate_key", "options.certificates"),
    ("certificate_file", "options.certificates"),
    ("certificate_key_file", "options.certificates"),
    ("certificates", "options.certificates"),
    ("certificate_authority", ".certificate_authority"),
    ("certificate_authority_file", ".certificate_authority"),
    ("downstream_mtls", ".downstream_mtls"),
    ("downstream_mtls.ca", "downstream_mtls.ca"),
    ("downstream_mtls.ca_file", "downstream_mtls.ca"),
    ("downstream_mtls.enforcement", "downstream_mtls.enforcement"),
    ("downstream_mtls.crl", "mtls.crl"),
    ("downstream_mtls.crl_file", "mtls.crl"),
    ("downstream_mtls.match_subject_alt_names", ".match_subject_alt_names"),
    ("downstream_mtls.max_verify_depth", "mtls.max_verify_depth"),
    // Routes: matching and actions.
    ("routes.id", "route.id"),
    ("routes.name", "route.name"),
    ("routes.from", "route.from"),
    ("routes.to", ".upstreams()"),
    ("routes.redirect", "Action::Redirect"),
    ("routes.response", "Action::Response"),
    ("routes.prefix", "route.prefix"),
    ("routes.path", "route.path"),
    ("routes.regex", "route.regex"),
    ("routes.regex_priority_order", "a.regex_priority_order"),
    ("routes.prefix_rewrite", ".path_rewrite()"),
    ("routes.regex_rewrite_pattern", ".path_rewrite()"),
    ("routes.regex_rewrite_substitution", ".path_rewrite()"),
    ("routes.host_rewrite", "route.host_rewrite"),
    ("routes.host_rewrite_header", "route.host_rewrite_header"),
    ("routes.host_path_regex_rewrite_pattern", "route.host_path_regex_rewrite"),
    ("routes.host_path_regex_rewrite_substitution", "route.host_path_regex_rewrite"),
    ("routes.preserve_host_header", "route.preserve_host_header"),
    ("routes.set_request_headers", ".set_request_headers"),
    ("routes.remove_request_headers", ".request_headers_to_remove("),
    ("routes.set_response_headers", "options.response_headers(Some(route))"),
    ("routes.rewrite_response_headers", "route.rewrite_response_headers"),
    ("routes.allow_websockets", ".allows_websockets(options)"),
    ("routes.allow_spdy", ".allows_spdy(options)"),
    ("routes.allow_upgrades", ".upgrades(options)"),
    // Routes: upstream.
    ("routes.tls_skip_verify", "tls.skip_verify"),
    ("routes.tls_server_name", "tls.sni()"),
    ("routes.tls_upstream_server_name", "tls.sni()"),
    ("routes.tls_custom_ca", "tls.custom_ca"),
    ("routes.tls_custom_ca_file", "tls.custom_ca"),
    ("routes.tls_client_cert", "tls.client_certificate"),
    ("routes.tls_client_key", "tls.client_certificate"),
    ("routes.tls_client_cert_file", "tls.client_certificate"),
    ("routes.tls_client_key_file", "tls.client_certificate"),
    ("routes.tls_downstream_client_ca", "tls.downstream_client_ca"),
    ("routes.tls_downstream_client_ca_file", "tls.downstream_client_ca"),
    ("routes.timeout", ".effective_timeout(options)"),
    ("routes.idle_timeout", ".effective_idle_timeout(options)"),
    ("routes.load_balancing_policy", "route.load_balancing_policy"),
    ("routes.lb_policy", "route.load_balancing_policy"),
    ("routes.outlier_detection", "route.outlier_detection"),
    ("routes.healthy_panic_threshold", ".healthy_panic_threshold"),
    // Routes: identity.
    ("routes.pass_identity_headers", ".passes_identity_headers("),
    ("routes.kubernetes_service_account_token", "route.kubernetes_service_account_token"),
    ("routes.kubernetes_service_account_token_file", "route.kubernetes_service_account_token_file"),
    ("routes.idp_client_id", "route.idp_client_id"),
    ("routes.idp_access_token_allowed_audiences", ".access_token_allowed_audiences("),
    ("routes.bearer_token_format", ".effective_bearer_token_format("),
    ("routes.show_error_details", "route.show_error_details"),
    ("routes.depends_on", "route.depends_on"),
    // Routes: access (assembled into the route's policy).
    ("routes.policy", "route.embedded_policy"),
    ("routes.sub_policies", "route.sub_policies"),
    ("routes.allowed_users", "access.allowed_users"),
    ("routes.allowed_domains", "access.allowed_domains"),
    ("routes.allowed_idp_claims", "access.allowed_idp_claims"),
    ("routes.allow_public_unauthenticated_access", "access.allow_public_unauthenticated_access"),
    ("routes.allow_any_authenticated_user", "access.allow_any_authenticated_user"),
    ("routes.cors_allow_preflight", "access.cors_allow_preflight"),
];

/// The crates whose code runs in the server, and the `config` files that are not readers.
const SERVER_CRATES: &[&str] =
    &["pomerium", "proxy", "authn", "authenticate", "oidc", "ext-authz", "databroker", "routing", "policy", "ingress"];
const CONFIG_CONSUMERS: &[&str] = &["route.rs", "assemble.rs", "load.rs", "identity.rs", "lib.rs"];

/// The server's code, test modules cut off (they start at the first `#[cfg(test)]`).
fn server_code() -> String {
    let mut files = Vec::new();
    for name in SERVER_CRATES {
        files.extend(rust_files(&workspace().join("crates").join(name).join("src")));
    }
    for name in CONFIG_CONSUMERS {
        files.push(workspace().join("crates/config/src").join(name));
    }
    let mut code = String::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        code.push_str(text.split("#[cfg(test)]").next().unwrap_or_default());
        code.push('\n');
    }
    code
}

/// Every key of `keys.rs`, qualified as the support table writes them.
fn every_key() -> Vec<String> {
    use config::keys;
    let mut out: Vec<String> = keys::GLOBAL_TYPED.iter().chain(keys::GLOBAL_RAW).map(|k| (*k).to_owned()).collect();
    out.extend(keys::ROUTE.iter().chain(keys::ENVOY_CLUSTER).map(|k| format!("routes.{k}")));
    out.extend(keys::DOWNSTREAM_MTLS.iter().map(|k| format!("downstream_mtls.{k}")));
    out
}

#[test]
fn every_key_is_read_by_the_server_or_listed_once_as_unsupported() {
    let code = server_code();
    let mut listed: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, _) in UNSUPPORTED {
        *listed.entry(key).or_default() += 1;
    }
    let wired: BTreeMap<&str, &str> = WIRED.iter().copied().collect();
    assert_eq!(wired.len(), WIRED.len(), "a key is wired twice in WIRED");
    let keys = every_key();
    let mut problems = Vec::new();
    for key in &keys {
        match (listed.get(key.as_str()).copied().unwrap_or(0), wired.get(key.as_str())) {
            (0, None) => problems.push(format!(
                "`{key}` is neither read by the server (WIRED here) nor listed in config::support::UNSUPPORTED"
            )),
            (0, Some(evidence)) if !code.contains(evidence) => problems.push(format!(
                "`{key}` is said to be read through `{evidence}`, which the server's code no longer contains"
            )),
            (0, Some(_)) => {}
            (1, None) => {}
            (1, Some(_)) => problems.push(format!("`{key}` is both wired and listed as unsupported; remove one")),
            (n, _) => problems.push(format!("`{key}` is listed {n} times in UNSUPPORTED")),
        }
    }
    for key in listed.keys().chain(wired.keys()) {
        if !keys.iter().any(|k| k == key) {
            problems.push(format!("`{key}` is not a key of config::keys"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Each unsupported key set to an "on" value in a configuration is reported at its key: refused
/// keys as errors (`config::option::refused`), the others as warnings
/// (`config::option::not_supported`); set to `false` it is not reported.
#[test]
fn every_unsupported_key_is_reported_at_its_key() {
    for (key, support) in UNSUPPORTED {
        let (source, name) = if let Some(route_key) = key.strip_prefix("routes.") {
            let source = format!(
                "routes:\n  - from: https://a.example.com\n    to: http://a:80\n    allow_any_authenticated_user: true\n    {route_key}: on-value\n"
            );
            (source, route_key)
        } else if let Some(field) = key.strip_prefix("downstream_mtls.") {
            (format!("downstream_mtls:\n  {field}: on-value\n"), field)
        } else {
            (format!("{key}: on-value\n"), *key)
        };
        let loaded = config::load(&source, config::Format::Yaml, &config::env::Empty);
        let start = source.rfind(&format!("{name}:")).unwrap();
        let at_key = |span: ppl::Span| span.start() == start && span.end() == start + name.len();
        let (code, found) = match support {
            Support::Refused(_) => (
                "config::option::refused",
                loaded
                    .errors
                    .iter()
                    .any(|e| e.diagnostic.code_str() == "config::option::refused" && at_key(e.diagnostic.span())),
            ),
            Support::Warned(_) => (
                "config::option::not_supported",
                loaded
                    .warnings
                    .iter()
                    .any(|w| w.diagnostic.code_str() == "config::option::not_supported" && at_key(w.diagnostic.span())),
            ),
        };
        assert!(found, "`{key}` set is not reported as {code} at its key: {:?} {:?}", loaded.errors, loaded.warnings);
        let off = source.replace("on-value", "false");
        let loaded = config::load(&off, config::Format::Yaml, &config::env::Empty);
        let reported = loaded
            .errors
            .iter()
            .map(|e| e.diagnostic.code_str())
            .chain(loaded.warnings.iter().map(|w| w.diagnostic.code_str()));
        assert!(
            !reported.into_iter().any(|c| c == "config::option::refused" || c == "config::option::not_supported"),
            "`{key}: false` is reported"
        );
    }
}

/// The environment counts too: `SSH_ADDRESS` is refused like the file's key.
#[test]
fn an_unsupported_option_from_the_environment_is_reported_there() {
    let env = config::MapEnvironment::new().with_var("SSH_ADDRESS", ":2200").with_var("CODEC_TYPE", "http3");
    let loaded = config::load("", config::Format::Yaml, &env);
    assert!(loaded.errors.iter().any(|e| e.origin == config::Origin::Env("SSH_ADDRESS".to_owned())
        && e.diagnostic.code_str() == "config::option::refused"));
    assert!(loaded.warnings.iter().any(|w| w.origin == config::Origin::Env("CODEC_TYPE".to_owned())
        && w.diagnostic.code_str() == "config::option::not_supported"));
    assert!(loaded.config.is_none());
}

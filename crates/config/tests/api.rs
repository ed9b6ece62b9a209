//! What the proxy relies on: each route's policy compiles and decides as Pomerium's would, routes
//! are found by id, name and `from`, secrets never print, and no input makes loading panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking, on fixtures they know"
)]

use config::{FindRouteError, Format, MapEnvironment};
use policy::Program;
use policy::contract::OwnedInput;
use policy::decision::{Verdict, wants_html};
use proptest::prelude::*;

const CA: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJlakNDQVNHZ0F3SUJBZ0lVQmNHTlo3ZVFnOHZRNnh4b0Q5STdQWmd4Tm5jd0NnWUlLb1pJemowRUF3SXcKRWpFUU1BNEdBMVVFQXd3SFZHVnpkQ0JEUVRBZ0Z3MHlOakV4TWpJeE16RXlNalJhR0E4eU1USTJNVEF5T1RFegpNVEl5TkZvd0VqRVFNQTRHQTFVRUF3d0hWR1Z6ZENCRFFUQlpNQk1HQnlxR1NNNDlBZ0VHQ0NxR1NNNDlBd0VICkEwSUFCTngvTTY0OFFYTTR5MGRjVnNmYTZuamtOaHVjUVI1cC9yUElRL3krbzNPc1IzOXJMUk11dGdiL1BzTFcKTHZNdjZoTEw0VWVZQ3dFNFk2QWw5OWpNbGNxalV6QlJNQjBHQTFVZERnUVdCQlR3aVhMWWZ1cmpJY05vVzdsSgpSNC92eHNFTjhEQWZCZ05WSFNNRUdEQVdnQlR3aVhMWWZ1cmpJY05vVzdsSlI0L3Z4c0VOOERBUEJnTlZIUk1CCkFmOEVCVEFEQVFIL01Bb0dDQ3FHU000OUJBTUNBMGNBTUVRQ0lIRlNvay9DREJSdHJuQUk3RWtiamtqZGowZy8KdjU0Y1JiTjVkWGQyUnlPZUFpQjNFcUdFSmN1RnplMGNZY1BVOU5CYTc1THhrZjhocEJyVVY2UGY2TWVXbXc9PQotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==";

fn load(source: &str) -> config::Config {
    let loaded = config::load(source, Format::Yaml, &config::env::Empty);
    assert!(loaded.errors.is_empty(), "{:#?}", loaded.errors);
    loaded.config.unwrap()
}

/// The verdict of `route`'s compiled policy for an input document.
fn decide(config: &config::Config, route: &str, input: &str) -> Verdict {
    let route = config.find_route(route).unwrap();
    let program = Program::compile(route.policy());
    let owned = OwnedInput::parse(input).unwrap();
    let input = owned.input(jiff::Timestamp::UNIX_EPOCH);
    program.evaluate(&input, &owned.records).verdict(wants_html(owned.accept()))
}

fn signed_in(email: &str) -> String {
    format!(
        r#"{{"session": {{"id": "s1"}}, "is_valid_client_certificate": true, "records": [
            {{"type": "session", "id": "s1", "data": {{"user_id": "u1"}}}},
            {{"type": "user", "id": "u1", "data": {{"email": "{email}"}}}}]}}"#
    )
}

const ROUTES: &str = "
routes:
  - id: users
    from: https://app.example.com
    to: http://app:8080
    allowed_users: [alice@example.com]
  - name: admin
    from: https://app.example.com
    prefix: /admin
    to: http://admin:8080
    allowed_domains: [example.com]
    policy:
      deny:
        or:
          - email: {is: mallory@example.com}
  - from: https://public.example.com
    to: http://public:8080
    allow_public_unauthenticated_access: true
";

#[test]
fn legacy_options_decide_like_pomerium() {
    let config = load(ROUTES);
    assert_eq!(decide(&config, "users", &signed_in("alice@example.com")), Verdict::Allow);
    assert_eq!(decide(&config, "users", &signed_in("bob@example.com")), Verdict::Deny { device_unauthorized: false });
    assert_eq!(decide(&config, "users", "{}"), Verdict::Login { redirect: true });
    assert_eq!(decide(&config, "https://public.example.com", "{}"), Verdict::Allow);
}

#[test]
fn embedded_policy_follows_the_legacy_rule() {
    let config = load(ROUTES);
    assert_eq!(decide(&config, "admin", &signed_in("alice@example.com")), Verdict::Allow);
    assert_eq!(
        decide(&config, "admin", &signed_in("mallory@example.com")),
        Verdict::Deny { device_unauthorized: false }
    );
}

#[test]
fn a_client_ca_adds_the_default_certificate_rule_unless_enforcement_is_policy() {
    let with_ca = load(&format!("downstream_mtls: {{ca: {CA}}}\n{ROUTES}"));
    let no_certificate = r#"{"is_valid_client_certificate": false}"#;
    assert_eq!(decide(&with_ca, "https://public.example.com", no_certificate), Verdict::ClientCertificateRequired);
    let policy_mode = load(&format!("downstream_mtls: {{ca: {CA}, enforcement: policy}}\n{ROUTES}"));
    assert_eq!(decide(&policy_mode, "https://public.example.com", no_certificate), Verdict::Allow);
}

#[test]
fn routes_are_found_by_id_name_and_from() {
    let config = load(ROUTES);
    assert_eq!(config.find_route("users").unwrap().id, "users");
    assert_eq!(config.find_route("admin").unwrap().prefix.as_deref(), Some("/admin"));
    assert_eq!(config.find_route("https://app.example.com/admin").unwrap().name.as_deref(), Some("admin"));
    assert_eq!(config.find_route("https://public.example.com/").unwrap().index, 2);
    let generated = config.routes[2].id.clone();
    assert_eq!(generated.len(), 16, "a generated id is 16 hex digits");
    assert_eq!(config.find_route(&generated).unwrap().index, 2);
    assert!(
        matches!(config.find_route("https://app.example.com"), Err(FindRouteError::Ambiguous(list)) if list.len() == 2)
    );
    assert_eq!(config.find_route("https://nowhere.example.com"), Err(FindRouteError::NotFound));
    assert_eq!(config.find_route("nothing"), Err(FindRouteError::NotFound));
}

#[test]
fn generated_ids_change_with_what_identifies_a_route_only() {
    let id = |extra: &str| {
        load(&format!("routes:\n  - from: https://a.example.com\n    to: http://a\n{extra}")).routes[0].id.clone()
    };
    let base = id("");
    assert_eq!(base, id("    allow_any_authenticated_user: true\n"), "access options are not part of the identity");
    assert_ne!(base, id("    prefix: /x\n"));
    assert_eq!(
        base,
        load("routes:\n  - {from: https://a.example.com, to: http://a}\n").routes[0].id,
        "layout does not matter"
    );
}

#[test]
fn secrets_never_print() {
    let key = "ZJGtGMd1XBYOCYfcwxPRZaqGfLyzoLdEZwuCo1wpdAI=";
    let source = format!(
        "shared_secret: {key}\ncookie_secret: {key}\nidp_client_secret: hunter2hunter2\nroutes:\n  - from: https://k.example.com\n    to: https://k:6443\n    kubernetes_service_account_token: tok3n-tok3n\n    allow_any_authenticated_user: true\n"
    );
    let config = load(&source);
    let printed = format!("{config:?}");
    assert!(!printed.contains("hunter2"));
    assert!(!printed.contains("tok3n"));
    assert!(printed.contains("Secret(<32 bytes>)"));
}

#[test]
fn secrets_from_the_environment_are_masked_in_reports() {
    let env = MapEnvironment::new().with_var("SHARED_SECRET", " not-a-key");
    let loaded = config::load("", Format::Yaml, &env);
    assert_eq!(loaded.errors.len(), 1);
    assert_eq!(loaded.errors[0].origin, config::Origin::Env("SHARED_SECRET".into()));
    assert_eq!(loaded.env_sources["SHARED_SECRET"], "**********");
}

#[test]
fn the_stateless_flow_is_decided_as_pomerium_decides_it() {
    let flow = |text: &str, forced: Option<&str>| {
        let mut env = MapEnvironment::new();
        if let Some(value) = forced {
            env = env.with_var("DEBUG_FORCE_AUTHENTICATE_FLOW", value);
        }
        let loaded = config::load(text, Format::Yaml, &env);
        let options = &loaded.config.expect("the configuration loads").options;
        (options.uses_hosted_authenticate(), options.uses_stateless_authenticate_flow())
    };
    let own = "authenticate_service_url: https://authenticate.example.com\n";
    assert_eq!(flow("", None), (true, true), "no authenticate URL: the hosted service");
    assert_eq!(flow("authenticate_service_url: https://authenticate.staging.pomerium.app\n", None), (true, true));
    assert_eq!(flow("authenticate_service_url: https://other.pomerium.app\n", None), (false, false));
    assert_eq!(flow(own, None), (false, false));
    assert_eq!(flow(own, Some("stateless")), (false, true));
    assert_eq!(flow("", Some("stateful")), (true, false));
    assert_eq!(flow("", Some("bogus")), (true, true), "an unknown value is ignored");
    // The internal URL decides when set.
    let internal = format!("{own}authenticate_internal_service_url: https://authenticate.pomerium.app\n");
    assert_eq!(flow(&internal, None), (true, true));
}

#[test]
fn huge_input_is_refused_before_parsing() {
    let huge = "#".repeat(config::MAX_CONFIG_BYTES + 1);
    let loaded = config::load(&huge, Format::Yaml, &config::env::Empty);
    assert_eq!(loaded.errors[0].diagnostic.code_str(), "config::document::too_large");
}

#[test]
fn files_over_the_limit_are_refused() {
    let big = vec![b'a'; config::env::MAX_FILE_BYTES + 1];
    let env = MapEnvironment::new().with_file("/big", &big);
    let loaded = config::load("shared_secret_file: /big\n", Format::Yaml, &env);
    assert_eq!(loaded.errors[0].diagnostic.code_str(), "config::option::unreadable_file");
}

#[test]
fn accessors_the_proxy_uses() {
    let config = load(
        "set_response_headers: {X-A: a}\njwt_claims_headers: [email]\nroutes:\n  - from: https://a.example.com\n    to: http://a:8080/base\n    allow_any_authenticated_user: true\n    set_request_headers: {X-Email: x}\n    remove_request_headers: [x-email, Cookie]\n",
    );
    let route = &config.routes[0];
    assert_eq!(route.path_rewrite(), Some(config::route::PathRewrite::Prefix("/base".into())));
    assert_eq!(config.options.response_headers(Some(route)).get("X-A").map(String::as_str), Some("a"));
    let removed = route.request_headers_to_remove(&config.options);
    assert!(!removed.iter().any(|h| h == "x-email"), "a header that is set is not removed");
    assert!(removed.iter().any(|h| h == "Cookie"));
    assert!(
        removed.iter().any(|h| h == "x-pomerium-claim-email"),
        "claim headers go when identity headers do not pass"
    );
    assert!(removed.iter().any(|h| h == "x-pomerium-reproxy-policy"));
    assert_eq!(route.cluster_name(), format!("route-{}", route.id));
    assert!(route.appends_x_forwarded_host());
}

#[test]
fn config_files_are_told_from_policies() {
    assert!(config::looks_like_config("routes: []\n", Format::Yaml));
    assert!(config::looks_like_config("{\"address\": \":443\"}", Format::Json));
    assert!(config::looks_like_config("client_ca: x\n", Format::Yaml), "removed options still mark a config");
    assert!(!config::looks_like_config("allow:\n  or: [{accept: true}]\n", Format::Yaml));
    assert!(!config::looks_like_config("- allow: {or: [{accept: true}]}\n", Format::Yaml));
    assert!(!config::looks_like_config("alow: {}\n", Format::Yaml));
}

/// Keys and values that make the loader take every path, combined at random.
fn hostile_document() -> impl Strategy<Value = String> {
    let keys = prop::sample::select(vec![
        "from",
        "to",
        "redirect",
        "response",
        "prefix",
        "path",
        "regex",
        "policy",
        "allowed_users",
        "allowed_idp_claims",
        "set_request_headers",
        "tls_client_cert",
        "tls_custom_ca_file",
        "timeout",
        "outlier_detection",
        "depends_on",
        "address",
        "services",
        "shared_secret",
        "downstream_mtls",
        "routes",
        "jwt_claims_headers",
        "cookie_expire",
        "runtime_flags",
        "certificates",
        "rewrite_response_headers",
        "allow_public_unauthenticated_access",
    ]);
    let values = prop::sample::select(vec![
        "https://a.example.com",
        "http://a:80,0",
        "[x, 1, {a: b}]",
        "{}",
        "~",
        "-1",
        "1e999",
        "\"${pomerium.x\"",
        "{allow: {or: [{email: {is: a}}]}}",
        "((",
        "5d",
        "9999999999h",
        "[[[[[]]]]]",
        "\"\\u0000\"",
        "*.*",
        "tcp://a",
    ]);
    let object = prop::collection::btree_map(keys, values, 0..10);
    (object.clone(), prop::collection::vec(object, 0..4)).prop_map(|(top, routes)| {
        let mut text: String =
            top.iter().filter(|(k, _)| **k != "routes").map(|(k, v)| format!("{k}: {v}\n")).collect();
        text.push_str("routes:\n");
        for route in routes {
            text.push_str("  - from: https://a.example.com\n");
            for (key, value) in route.iter().filter(|(k, _)| **k != "from") {
                text.push_str(&format!("    {key}: {value}\n"));
            }
        }
        text
    })
}

/// `PROPTEST_CASES=20000 cargo test --release -p config --test api` searches longer.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_text_makes_loading_panic(text in ".{0,400}") {
        let _ = config::load(&text, Format::Yaml, &config::env::Empty);
        let _ = config::load(&text, Format::Json, &config::env::Empty);
    }

    #[test]
    fn no_document_makes_loading_panic(text in hostile_document()) {
        let loaded = config::load(&text, Format::Yaml, &config::env::Empty);
        // Every diagnostic points inside the text it names.
        for error in &loaded.errors {
            prop_assert!(error.diagnostic.span().end() <= loaded.source_text(&error.origin, &text).len());
        }
    }

    #[test]
    fn no_environment_makes_loading_panic(value in ".{0,80}", name in prop::sample::select(vec![
        "POLICY", "ROUTES", "HEADERS", "SERVICES", "ADDRESS", "COOKIE_EXPIRE", "JWT_CLAIMS_HEADERS",
        "DOWNSTREAM_MTLS_CA", "RUNTIME_FLAGS", "IDP_SCOPES", "SHARED_SECRET",
    ])) {
        let env = MapEnvironment::new().with_var(name, &value);
        let _ = config::load("routes: [{from: https://a.example.com, to: http://a}]", Format::Yaml, &env);
    }
}

/// A key in the lists but never read would be accepted silently and ignored: give each a value of
/// a kind no option takes, and expect a diagnostic naming it.
#[test]
fn every_typed_option_is_read() {
    let kept_as_written = ["identity_providers"];
    for key in config::keys::GLOBAL_TYPED.iter().filter(|k| !kept_as_written.contains(k)) {
        let loaded = config::load(&format!("{key}: [[[1]]]\n"), Format::Yaml, &config::env::Empty);
        let named =
            loaded.errors.iter().any(|e| e.diagnostic.to_string().contains(key) || e.diagnostic.span().start() > 0);
        assert!(named, "`{key}` is listed but a bad value is not reported: {:?}", loaded.errors);
    }
    let kept_as_written = [
        "mcp",
        "upstream_tunnel",
        "health_checks",
        "circuit_breaker_thresholds",
        "policy",
        "ssh_policy",
        "ssh_policy_rego",
        "session_recording",
    ];
    for key in config::keys::ROUTE.iter().filter(|k| !kept_as_written.contains(k) && **k != "from") {
        let source = format!("routes:\n  - from: https://a.example.com\n    {key}: [[[1]]]\n");
        let loaded = config::load(&source, Format::Yaml, &config::env::Empty);
        let line = source.find(&format!("    {key}:")).unwrap();
        let at_key = loaded.errors.iter().any(|e| e.diagnostic.span().start() > line);
        assert!(at_key, "route option `{key}` is listed but a bad value is not reported: {:?}", loaded.errors);
    }
}

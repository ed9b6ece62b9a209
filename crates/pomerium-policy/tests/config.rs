//! `check` and `eval`/`explain --config --route` on Pomerium configuration files, as users run
//! them: real processes, real files, a controlled environment.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking, on fixtures they know"
)]

use assert_cmd::Command;
use test_support::cli::{Run, file, run};
use test_support::tidy::workspace;

/// The binary with an empty environment: configuration options are read from the environment, so
/// nothing of the test runner's may leak in.
fn cli() -> Command {
    let mut command = Command::cargo_bin("pomerium-policy").expect("binary");
    command.env_clear().env("NO_COLOR", "1");
    command
}

const BAD: &str = "\
authenticate_service_url: authenticate.example.com
cookie_expiry: 8h
routes:
  - from: https://app.example.com/admin
    to: http://app:8080
    allowed_users: [alice@example.com]
    allow_public_unauthenticated_access: true
    policy:
      allow:
        or:
          - emial: bob@example.com
";

#[test]
fn check_passes_the_example_configuration() {
    let out = run(cli().arg("check").arg(workspace().join("examples/config.yaml")));
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Its one warning: the quickstart's development identity provider, named as such.
    assert!(out.stderr.contains("config::idp::development"), "{}", out.stderr);
    assert!(out.stderr.trim_end().ends_with("0 errors and 1 warning in 1 file checked"), "{}", out.stderr);
}

#[test]
fn check_reports_every_problem_of_a_configuration_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    file(&dir, "config.yaml", BAD);
    let out = run(cli().args(["check", "config.yaml"]).current_dir(dir.path()));
    assert_eq!(out.code, 3);
    insta::assert_snapshot!(out.stderr);
}

#[test]
fn check_json_names_environment_variables_as_locations() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "config.yaml", "routes: []\n");
    let out = run(cli().args(["check", "--format", "json"]).arg(&path).env("COOKIE_EXPIRE", "5d"));
    assert_eq!(out.code, 3);
    let line: serde_json::Value = serde_json::from_str(out.stderr.trim()).unwrap();
    assert_eq!(line["code"], "config::option::bad_duration");
    assert_eq!(line["file"], "$COOKIE_EXPIRE");
    assert_eq!((line["line"].as_u64(), line["column"].as_u64()), (Some(1), Some(1)));
}

#[test]
fn check_warnings_pass_unless_denied() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "config.yaml", "address: :8443\ncookie_expiry: 8h\n");
    let out = run(cli().args(["check", "--format", "json"]).arg(&path));
    assert_eq!(out.code, 0);
    assert!(out.stderr.contains("\"code\":\"config::option::unknown\""), "{}", out.stderr);
    assert!(out.stderr.contains("did you mean `cookie_expire`?"));
    let denied = run(cli().args(["check", "--deny-warnings"]).arg(&path));
    assert_eq!(denied.code, 3);
}

#[test]
fn check_tells_configurations_from_policies_or_is_told() {
    let dir = tempfile::tempdir().unwrap();
    file(&dir, "policy.yaml", "allow:\n  or:\n    - accept: true\n");
    file(
        &dir,
        "config.yaml",
        "routes:\n  - from: https://a.example.com\n    to: http://a\n    allow_any_authenticated_user: true\n",
    );
    let out = run(cli().arg("check").arg(dir.path()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr.trim(), "ok: 1 policy file and 1 config file (1 route) checked");
    // A file without any known global option reads as a policy, unless `--config` says otherwise.
    let typo = file(&dir, "typo.yaml", "cookie_expiry: 8h\n");
    let as_policy = run(cli().args(["check", "--format", "json"]).arg(&typo));
    assert_eq!(as_policy.code, 3);
    assert!(as_policy.stderr.contains("ppl::shape::unknown_action"), "{}", as_policy.stderr);
    let forced = run(cli().args(["check", "--config", "--format", "json"]).arg(&typo));
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(forced.stderr.contains("config::option::unknown"), "{}", forced.stderr);
}

const CONFIG: &str = "\
routes:
  - name: public
    from: https://public.example.com
    to: http://public:8080
    allow_public_unauthenticated_access: true
  - id: wiki
    from: https://wiki.example.com
    to: http://wiki:8080
    allowed_domains: [example.com]
  - from: https://wiki.example.com
    prefix: /admin
    to: http://wiki-admin:8080
    policy:
      allow:
        and:
          - email: {is: alice@example.com}
";

fn signed_in(email: &str) -> String {
    format!(
        r#"{{"http": {{"path": "/"}}, "session": {{"id": "s1"}}, "records": [
            {{"type": "session", "id": "s1", "data": {{"user_id": "u1"}}}},
            {{"type": "user", "id": "u1", "data": {{"email": "{email}"}}}}]}}"#
    )
}

fn eval(dir: &tempfile::TempDir, route: &str, input: &str) -> Run {
    let config = file(dir, "config.yaml", CONFIG);
    let input = file(dir, "input.json", input);
    run(cli()
        .args(["eval", "--format", "json", "--route", route])
        .arg("--config")
        .arg(config)
        .arg("--input")
        .arg(input))
}

fn outcome(out: &Run) -> (String, u64) {
    let document: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    (document["outcome"]["action"].as_str().unwrap().to_owned(), document["outcome"]["status"].as_u64().unwrap())
}

#[test]
fn eval_a_public_route_allows_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let out = eval(&dir, "public", "{}");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(outcome(&out), ("allow".to_owned(), 200));
}

#[test]
fn eval_a_route_by_id_denies_another_domain_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = eval(&dir, "wiki", &signed_in("alice@example.com"));
    assert_eq!((allowed.code, outcome(&allowed)), (0, ("allow".to_owned(), 200)));
    let denied = eval(&dir, "wiki", &signed_in("eve@evil.example"));
    assert_eq!((denied.code, outcome(&denied)), (2, ("deny".to_owned(), 403)));
    assert!(denied.stdout.contains("\"reasons\": [\"domain-unauthorized\"]"), "{}", denied.stdout);
}

#[test]
fn eval_an_anonymous_request_is_sent_to_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let out = eval(&dir, "https://wiki.example.com/admin", "{}");
    assert_eq!(out.code, 2);
    assert_eq!(outcome(&out), ("login".to_owned(), 302));
}

#[test]
fn eval_an_unknown_route_is_not_found_404() {
    let dir = tempfile::tempdir().unwrap();
    let out = eval(&dir, "https://nowhere.example.com", "{}");
    assert_eq!(out.code, 2);
    assert_eq!(outcome(&out), ("not_found".to_owned(), 404));
    assert!(out.stdout.contains("\"deny\": {\"value\": true, \"reasons\": [\"route-not-found\"]}"), "{}", out.stdout);
    assert!(out.stderr.contains("no route `https://nowhere.example.com`"), "{}", out.stderr);
}

#[test]
fn eval_refuses_an_ambiguous_route_and_a_broken_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let ambiguous = eval(&dir, "https://wiki.example.com", "{}");
    assert_eq!(ambiguous.code, 1);
    assert!(ambiguous.stderr.contains("names several routes"), "{}", ambiguous.stderr);
    let config = file(&dir, "broken.yaml", BAD);
    let input = file(&dir, "input.json", "{}");
    let broken = run(cli().args(["eval", "--route", "x", "--config"]).arg(config).arg("--input").arg(input));
    assert_eq!(broken.code, 3);
    assert!(broken.stderr.contains("config::route::from_path"), "{}", broken.stderr);
    assert!(broken.stdout.is_empty());
}

#[test]
fn eval_takes_a_policy_or_a_configuration_not_both() {
    let dir = tempfile::tempdir().unwrap();
    let input = file(&dir, "input.json", "{}");
    let config = file(&dir, "config.yaml", CONFIG);
    let both = run(cli()
        .args(["eval", "--policy", "p.yaml", "--route", "x", "--config"])
        .arg(&config)
        .arg("--input")
        .arg(&input));
    assert_eq!(both.code, 1);
    let no_route = run(cli().arg("eval").arg("--config").arg(&config).arg("--input").arg(&input));
    assert_eq!(no_route.code, 1);
}

#[test]
fn explain_a_route_points_into_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = file(&dir, "config.yaml", CONFIG);
    let input = file(&dir, "input.json", &signed_in("bob@example.com"));
    let out = run(cli()
        .args(["explain", "--route", "https://wiki.example.com/admin", "--config"])
        .arg(config)
        .arg("--input")
        .arg(input));
    assert_eq!(out.code, 2, "{}", out.stderr);
    insta::assert_snapshot!(out.stdout);
}

#[test]
fn explain_an_unknown_route() {
    let dir = tempfile::tempdir().unwrap();
    let config = file(&dir, "config.yaml", CONFIG);
    let input = file(&dir, "input.json", "{}");
    let out = run(cli().args(["explain", "--route", "nope", "--config"]).arg(config).arg("--input").arg(input));
    assert_eq!(out.code, 2);
    assert!(out.stdout.contains("outcome not_found 404"), "{}", out.stdout);
    assert!(out.stdout.contains("remediation: no route matches the request"), "{}", out.stdout);
}

#[test]
fn routes_from_the_policy_variable_are_evaluated_and_reported_in_their_decoded_text() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let config = file(&dir, "config.yaml", "address: :8443\n");
    let input = file(&dir, "input.json", "{}");
    let routes =
        "- from: https://env.example.com\n  to: http://env:8080\n  allow_public_unauthenticated_access: true\n";
    let encoded = base64::engine::general_purpose::STANDARD.encode(routes);
    let out = run(cli()
        .env("POLICY", &encoded)
        .args(["eval", "--route", "https://env.example.com", "--config"])
        .arg(&config)
        .arg("--input")
        .arg(&input));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let broken =
        base64::engine::general_purpose::STANDARD.encode("- from: https://env.example.com/x\n  to: http://env\n");
    let check = run(cli().env("POLICY", &broken).args(["check", "--format", "json"]).arg(&config));
    assert_eq!(check.code, 3);
    let line: serde_json::Value = serde_json::from_str(check.stderr.lines().next().unwrap()).unwrap();
    assert_eq!(line["file"], "$POLICY (base64-decoded)");
    assert_eq!((line["line"].as_u64(), line["column"].as_u64()), (Some(1), Some(9)));
}

#[test]
fn check_says_once_that_a_bare_list_of_routes_goes_under_routes() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "routes.yaml",
        "- from: https://a.example.com\n  to: http://a\n- from: https://b.example.com\n  to: http://b\n",
    );
    let out = run(cli().args(["check", "--format", "json"]).arg(&path));
    assert_eq!(out.code, 3, "{}", out.stderr);
    let codes: Vec<String> = out
        .stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|line| line["code"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(codes, ["config::document::route_list"], "{}", out.stderr);
    assert!(out.stderr.contains("routes:"), "{}", out.stderr);
}

#[test]
fn check_reports_options_the_server_ignores_or_refuses_at_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "config.yaml", "address: :8443\ncodec_type: http3\n");
    let out = run(cli().args(["check", "--format", "json"]).arg(&path));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line: serde_json::Value = serde_json::from_str(out.stderr.lines().next().unwrap()).unwrap();
    assert_eq!(line["code"], "config::option::not_supported");
    assert_eq!((line["line"].as_u64(), line["column"].as_u64()), (Some(2), Some(1)));
    let refused = file(&dir, "refused.yaml", "address: :8443\nssh_address: \":2200\"\n");
    let out = run(cli().args(["check", "--format", "json"]).arg(&refused));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("\"code\":\"config::option::refused\""), "{}", out.stderr);
}

#[test]
fn check_refuses_an_unknown_log_field_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "config.yaml", "routes: []\nauthorize_log_fields:\n  - email\n  - id-tokn\n");
    let out = run(cli().args(["check", "--format", "json"]).arg(&path));
    assert_eq!(out.code, 3, "{}", out.stderr);
    let line = out
        .stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["code"] == "config::option::unknown_value")
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert_eq!((line["line"].as_u64(), line["column"].as_u64()), (Some(4), Some(5)));
    assert!(out.stderr.contains("did you mean `id-token`?"), "{}", out.stderr);
    let fine = file(&dir, "good.yaml", "routes: []\naccess_log_fields: [ip, headers.x-foo]\n");
    assert_eq!(run(cli().arg("check").arg(&fine)).code, 0);
}

//! `eval`, `explain`, `test`, `bench` and `compile` as users run them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use test_support::cli::{file as write, run};

fn cli() -> Command {
    let mut command = Command::cargo_bin("pomerium-policy").unwrap();
    command.env_remove("POMERIUM_POLICY_FORMAT").env("NO_COLOR", "1");
    command
}

const POLICY: &str = "\
allow:
  and:
    - domain:
        is: example.com
    - claim/groups:
        has: engineering
deny:
  or:
    - http_path:
        starts_with: /admin/billing
";

fn input(path: &str, email: Option<&str>) -> String {
    let records = match email {
        Some(email) => format!(
            r#"[{{"type": "session", "id": "s1", "data": {{"user_id": "u1", "claims": {{"groups": ["support"]}}}}}},
                {{"type": "user", "id": "u1", "data": {{"email": "{email}"}}}}]"#
        ),
        None => "[]".to_owned(),
    };
    let session = if email.is_some() { r#""session": {"id": "s1"},"# } else { "" };
    format!(
        r#"{{"http": {{"method": "GET", "path": "{path}"}}, {session} "now": "2026-01-05T10:00:00Z", "records": {records}}}"#
    )
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(&dir, "policy.yaml", POLICY);
    (dir, policy)
}

#[test]
fn eval_prints_the_contract_document_and_exits_by_outcome() {
    let (dir, policy) = setup();
    let denied = write(&dir, "denied.json", &input("/admin/billing", Some("alice@example.com")));
    let out = run(cli().args(["eval", "--format", "json", "--policy"]).arg(&policy).arg("--input").arg(&denied));
    assert_eq!(out.code, 2, "not allowed: exit 2");
    let document: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        document,
        serde_json::json!({
            "allow": {"value": false, "reasons": ["claim-unauthorized"]},
            "deny": {"value": true, "reasons": ["http-path-ok"]},
            "outcome": {"action": "deny", "status": 403}
        })
    );
    let allowed_policy = write(&dir, "open.ppl", "allow or(domain is \"example.com\")\n");
    let out = run(cli().args(["eval", "--policy"]).arg(&allowed_policy).arg("--input").arg(&denied));
    assert_eq!(out.code, 0, "allowed: exit 0\n{}", out.stderr);
    assert_eq!(out.stdout, "allow   true   domain-ok\ndeny    false\noutcome allow 200\n");
}

#[test]
fn eval_reports_bad_inputs_and_policies_with_the_contract_codes() {
    let (dir, policy) = setup();
    let typo = write(&dir, "typo.json", r#"{"sesion": {"id": "s1"}}"#);
    let out = run(cli().args(["eval", "--policy"]).arg(&policy).arg("--input").arg(&typo));
    assert_eq!(out.code, 1, "a malformed input is a usage error");
    assert!(
        out.stderr.contains("`sesion`: is not a field of the input document (did you mean `session`?)"),
        "{}",
        out.stderr
    );
    let broken = write(&dir, "broken.yaml", "allow:\n  or:\n    - emial: x\n");
    let out = run(cli().args(["eval", "--policy"]).arg(&broken).arg("--input").arg(&typo));
    assert_eq!(out.code, 3, "a policy that does not compile");
    assert!(out.stderr.contains("did you mean `email`?"), "{}", out.stderr);
    let out = run(cli().args(["eval", "--policy", "-", "--input", "-"]));
    assert_eq!(out.code, 1);
}

fn explain(dir: &tempfile::TempDir, policy: &Path, input_text: &str) -> String {
    let input = write(dir, "input.json", input_text);
    let out = run(cli().args(["explain", "--policy"]).arg(policy).arg("--input").arg(&input));
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    out.stdout
}

#[test]
fn explain_an_allow() {
    let (dir, _) = setup();
    let policy =
        write(&dir, "p.yaml", "allow:\n  or:\n    - domain:\n        is: example.com\n    - http_path: /public\n");
    insta::assert_snapshot!(explain(&dir, &policy, &input("/home", Some("alice@example.com"))));
}

#[test]
fn explain_a_deny() {
    let (dir, policy) = setup();
    insta::assert_snapshot!(explain(&dir, &policy, &input("/admin/billing", Some("alice@example.com"))));
}

#[test]
fn explain_a_login() {
    let (dir, policy) = setup();
    insta::assert_snapshot!(explain(&dir, &policy, &input("/home", None)));
}

#[test]
fn explain_a_nearest_miss() {
    let (dir, policy) = setup();
    insta::assert_snapshot!(explain(&dir, &policy, &input("/home", Some("alice@example.com"))));
}

#[test]
fn explain_json_carries_the_trace() {
    let (dir, policy) = setup();
    let input = write(&dir, "input.json", &input("/home", Some("bob@other.org")));
    let out = run(cli().args(["explain", "--format", "json", "--policy"]).arg(&policy).arg("--input").arg(&input));
    assert_eq!(out.code, 2);
    let document: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(document["outcome"]["action"], "deny");
    let criteria = &document["trace"][0]["blocks"][0]["criteria"];
    assert_eq!(criteria[0]["criterion"], "domain is \"example.com\"");
    assert_eq!(criteria[0]["read"]["domain"], "other.org");
    assert_eq!((criteria[0]["line"].as_u64(), criteria[0]["column"].as_u64()), (Some(3), Some(7)));
    assert_eq!(document["misses"][0]["kind"], "nearest_miss");
    assert!(document["remediation"].as_str().unwrap().contains("2 of its criteria"));
}

#[test]
fn test_runs_test_files_with_filters_and_coverage() {
    let (dir, _) = setup();
    let tests = r#"
now: 2026-01-05T10:00:00Z
tests:
  - name: engineers are allowed
    input:
      session: {id: s1}
      records:
        - {type: session, id: s1, data: {user_id: u1, claims: {groups: [engineering]}}}
        - {type: user, id: u1, data: {email: a@example.com}}
    expect: {outcome: allow, allow: [claim-ok, domain-ok]}
  - name: anonymous users sign in
    input: {}
    expect: {outcome: login, status: 302}
  - name: a wrong expectation
    input: {}
    expect: {outcome: allow}
"#;
    write(&dir, "policy.test.yaml", tests);
    let out = run(cli().arg("test").arg(dir.path()).arg("-v"));
    assert_eq!(out.code, 4, "a failing test: exit 4\n{}", out.stdout);
    assert!(out.stdout.contains("  ✓ engineers are allowed\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("  ✗ a wrong expectation (line 14)\n      expected outcome allow, got login (302)\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("3 tests: 2 passed, 1 failed"), "{}", out.stdout);
    assert!(out.stdout.contains("coverage: 2 of 3 criteria seen both true and false"), "{}", out.stdout);

    let out = run(cli().arg("test").arg(dir.path()).args(["--run", "^(engineers|anonymous)", "--coverage"]));
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("2 tests: 2 passed, 0 failed"), "{}", out.stdout);
    assert!(out.stdout.contains("never true: "), "{}", out.stdout);

    write(&dir, "policy.test.yaml", "tests:\n  - name: x\n    input: {}\n    expect: {outcom: allow}\n");
    let out = run(cli().arg("test").arg(dir.path()));
    assert_eq!(out.code, 1, "a malformed test file is a usage error");
    assert!(
        out.stderr.contains("policy.test.yaml:4:14: unknown key `outcom`; did you mean `outcome`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_example_policies_pass_their_tests() {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let out = run(cli().arg("test").arg(&policies));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let files = std::fs::read_dir(&policies)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().to_string_lossy().ends_with(".test.yaml"))
        .count();
    let policy_files = std::fs::read_dir(&policies)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().to_string_lossy().into_owned();
            !name.contains(".test.") && (name.ends_with(".yaml") || name.ends_with(".json") || name.ends_with(".ppl"))
        })
        .count();
    assert_eq!(files, policy_files, "every policy has a test file");
}

#[test]
fn bench_reports_time_per_decision() {
    let (dir, policy) = setup();
    let input = write(&dir, "input.json", &input("/home", Some("alice@example.com")));
    let out = run(cli()
        .args(["bench", "--format", "json", "--seconds", "0.2", "--policy"])
        .arg(&policy)
        .arg("--input")
        .arg(&input));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let document: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(document["program_ns_per_decision"].as_f64().unwrap() > 0.0);
    assert!(document["reference_ns_per_decision"].as_f64().unwrap() > 0.0);
    assert_eq!(document["tests"], 3);
}

#[test]
fn compile_emits_rego() {
    let (_dir, policy) = setup();
    let out = run(cli().args(["compile", "--emit", "rego"]).arg(&policy));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("package pomerium.policy\n"), "{}", out.stdout);
    assert!(out.stdout.contains("import rego.v1"));
    assert!(out.stdout.contains("domain_0"), "criterion rules are named <criterion>_<n>:\n{}", out.stdout);
}

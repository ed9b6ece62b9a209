//! The command line as users run it: real processes, real files, exit codes, stdout and stderr.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests fail by panicking, on fixtures they know"
)]

use assert_cmd::Command;
use test_support::cli::{file, run};
use test_support::tidy::workspace;

fn cli() -> Command {
    let mut command = Command::cargo_bin("pomerium-policy").expect("binary");
    command.env_remove("POMERIUM_POLICY_FORMAT").env("NO_COLOR", "1");
    command
}

const BAD: &str = "\
allow:
  and:
    - emial: alice@example.com
    - source_ip: 10.0.0.0/33
deny:
  or:
    - device:
        aproved: true
";

#[test]
fn check_accepts_a_valid_policy_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "ok.yaml", "allow:\n  or:\n    - email:\n        is: alice@example.com\n");
    let out = run(cli().arg("check").arg(&path));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr.trim(), "ok: 1 policy file checked");
    assert!(out.stdout.is_empty());
}

#[test]
fn check_reports_every_error_with_line_and_column_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "bad.yaml", BAD);
    let out = run(cli().args(["check", "--format", "human"]).arg(&path).current_dir(dir.path()));
    assert_eq!(out.code, 3);
    let stderr = out.stderr.replace(&*dir.path().to_string_lossy(), "<dir>");
    insta::assert_snapshot!(stderr);
}

#[test]
fn check_plain_format_is_narratable() {
    let dir = tempfile::tempdir().unwrap();
    file(&dir, "bad.yaml", BAD);
    let out = run(cli().args(["check", "--format", "plain", "bad.yaml"]).current_dir(dir.path()));
    assert_eq!(out.code, 3);
    insta::assert_snapshot!(out.stderr);
}

#[test]
fn check_json_format_gives_one_object_per_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    file(&dir, "bad.yaml", BAD);
    let out = run(cli().args(["check", "bad.yaml"]).env("POMERIUM_POLICY_FORMAT", "json").current_dir(dir.path()));
    assert_eq!(out.code, 3);
    let diagnostics: Vec<serde_json::Value> =
        out.stderr.lines().map(|line| serde_json::from_str(line).expect("each line is json")).collect();
    let summary: Vec<(String, String, u64, u64)> = diagnostics
        .iter()
        .map(|d| {
            (
                d["severity"].as_str().unwrap().to_owned(),
                d["code"].as_str().unwrap().to_owned(),
                d["line"].as_u64().unwrap(),
                d["column"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("error".to_owned(), "ppl::criterion::unknown".to_owned(), 3, 7),
            ("error".to_owned(), "ppl::criterion::invalid_ip".to_owned(), 4, 18),
            ("error".to_owned(), "ppl::criterion::unknown_field".to_owned(), 8, 9),
        ]
    );
    assert_eq!(diagnostics[0]["file"], "bad.yaml");
    assert_eq!(diagnostics[0]["help"], "did you mean `email`?");
    assert_eq!(diagnostics[0]["labels"][0]["span"]["offset"], 20);
}

#[test]
fn check_reads_standard_input_and_sniffs_the_syntax() {
    let text = run(cli().args(["check", "-"]).write_stdin("allow or(email is \"a@example.com\")\n"));
    assert_eq!(text.code, 0, "{}", text.stderr);
    let json = run(cli().args(["check", "-"]).write_stdin("{\"allow\": {\"or\": [{\"accept\": true}]}}"));
    assert_eq!(json.code, 0, "{}", json.stderr);
    let forced = run(cli().args(["check", "--syntax", "json", "-"]).write_stdin("allow:\n  or: []\n"));
    assert_eq!(forced.code, 3, "yaml is not json");
    assert!(forced.stderr.contains("ppl::syntax::json"), "{}", forced.stderr);
}

#[test]
fn check_walks_directories_and_skips_test_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    file(&dir, "a.yaml", "allow:\n  or:\n    - accept: true\n");
    file(&dir, "nested/b.ppl", "allow or(domain is \"example.com\")\n");
    file(&dir, "a.test.yaml", "this is: [a test file, not a policy\n");
    file(&dir, "notes.txt", "not a policy");
    let out = run(cli().arg("check").arg(dir.path()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr.trim(), "ok: 2 policy files checked");
}

#[test]
fn check_fails_on_warnings_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "warn.yaml", "allow:\n  or:\n    - email: [a@example.com, b@example.com]\n");
    let lenient = run(cli().arg("check").arg(&path));
    assert_eq!(lenient.code, 0);
    assert!(lenient.stderr.contains("ppl::lint::array_is_not_in"), "{}", lenient.stderr);
    let strict = run(cli().args(["check", "--deny-warnings"]).arg(&path));
    assert_eq!(strict.code, 3);
}

#[test]
fn unreadable_and_non_utf8_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = run(cli().arg("check").arg(dir.path().join("missing.yaml")));
    assert_eq!(missing.code, 1, "an i/o error is exit 1");
    assert!(missing.stderr.contains("1 file could not be read"), "{}", missing.stderr);
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"allow:\n  or:\n    - email: caf\xe9@example.com\n").unwrap();
    let latin1 = run(cli().args(["check", "--format", "json"]).arg(&path));
    assert_eq!(latin1.code, 3, "a policy that is not utf-8 does not compile");
    let diagnostic: serde_json::Value = serde_json::from_str(latin1.stderr.lines().next().unwrap()).unwrap();
    assert_eq!(diagnostic["code"], "ppl::syntax::not_utf8");
    assert_eq!((diagnostic["line"].as_u64(), diagnostic["column"].as_u64()), (Some(3), Some(17)));
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    assert_eq!(run(cli().args(["check", "--no-such-flag", "x"])).code, 1);
    assert_eq!(run(cli().arg("check")).code, 1, "a file is required");
    let help = run(cli().arg("--help"));
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("check"));
}

#[test]
fn fmt_prints_the_canonical_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "p.yaml", "allow: {or: [{email: {in: [a@example.com, b@example.com]}}]} # who\n");
    let out = run(cli().arg("fmt").arg(&path));
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(out.stdout, @r"
    allow:
      or:
        - email:
            in: [a@example.com, b@example.com] # who
    ");
}

#[test]
fn fmt_converts_between_syntaxes() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "p.yaml",
        "# staff only\nallow:\n  and:\n    - domain: {is: example.com}\n    - claim/groups: admins\n",
    );
    let text = run(cli().args(["fmt", "--to", "text"]).arg(&path));
    assert_eq!(text.code, 0, "{}", text.stderr);
    insta::assert_snapshot!(text.stdout, @r#"
    # staff only
    allow and(domain is "example.com", claim/groups "admins")
    "#);
    let json = run(cli().args(["fmt", "--to", "json"]).arg(&path));
    assert_eq!(json.code, 0);
    assert!(json.stderr.contains("json has no comments; 1 comment(s) were left out"), "{}", json.stderr);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("json output");
    assert_eq!(value["allow"]["and"][1]["claim/groups"], "admins");
}

#[test]
fn fmt_check_write_and_diff() {
    let dir = tempfile::tempdir().unwrap();
    let messy = "allow: {or: [{accept: true}]}\n";
    let path = file(&dir, "p.yaml", messy);

    let check = run(cli().args(["fmt", "--check"]).arg(&path));
    assert_eq!(check.code, 3);
    assert!(check.stderr.contains("not formatted"), "{}", check.stderr);
    assert!(check.stdout.is_empty());

    let diff = run(cli().args(["fmt", "--diff"]).arg(&path));
    assert_eq!(diff.code, 0);
    assert!(
        diff.stdout.contains("-allow: {or: [{accept: true}]}\n+allow:\n+  or:\n+    - accept: true\n"),
        "{}",
        diff.stdout
    );

    let write = run(cli().args(["fmt", "--write"]).arg(&path));
    assert_eq!(write.code, 0, "{}", write.stderr);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "allow:\n  or:\n    - accept: true\n");
    assert_eq!(run(cli().args(["fmt", "--check"]).arg(&path)).code, 0);

    assert_eq!(run(cli().args(["fmt", "--write", "-"]).write_stdin(messy)).code, 1, "stdin cannot be rewritten");
    assert_eq!(run(cli().args(["fmt", "--write", "--to", "json"]).arg(&path)).code, 1, "--write keeps the syntax");
}

#[test]
fn fmt_refuses_a_policy_that_does_not_parse() {
    let out = run(cli().args(["fmt", "-"]).write_stdin("allow:\n  or: {}\n"));
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("ppl::shape::operator_list"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "nothing is printed for a policy that does not parse");
}

#[test]
fn criteria_lists_all_25() {
    let out = run(cli().arg("criteria"));
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout.lines().count(), 25);
    assert!(out.stdout.contains("time_of_day"));
}

/// The "done when" of the language front end: every example policy checks clean and is formatted.
#[test]
fn the_example_policies_check_clean_and_are_formatted() {
    let policies = workspace().join("policies");
    let check = run(cli().args(["check", "--deny-warnings"]).arg(&policies));
    assert_eq!(check.code, 0, "{}", check.stderr);
    let count: usize = check.stderr.trim().trim_start_matches("ok: ").split(' ').next().unwrap().parse().unwrap();
    assert!(count >= 15, "at least 15 example policies, found {count}");
    let fmt = run(cli().args(["fmt", "--check"]).arg(&policies));
    assert_eq!(fmt.code, 0, "{}", fmt.stderr);
}

/// Together the example policies use every criterion.
#[test]
fn the_example_policies_use_every_criterion() {
    let policies = workspace().join("policies");
    let mut used = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&policies).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains(".test.") {
            continue; // a test file, not a policy
        }
        let Some(syntax) = path.extension().and_then(|e| e.to_str()).and_then(ppl_syntax) else {
            continue;
        };
        let out = run(cli().args(["fmt", "--to", "json", "--syntax", syntax]).arg(&path));
        assert_eq!(out.code, 0, "{}: {}", path.display(), out.stderr);
        collect_criteria(&serde_json::from_str(&out.stdout).unwrap(), &mut used);
    }
    let listed = run(cli().arg("criteria")).stdout;
    let all: std::collections::BTreeSet<String> =
        listed.lines().map(|l| l.split_whitespace().next().unwrap().to_owned()).collect();
    let missing: Vec<_> = all.difference(&used).collect();
    assert!(missing.is_empty(), "criteria no example policy uses: {missing:?}");
}

fn ppl_syntax(extension: &str) -> Option<&'static str> {
    match extension {
        "yaml" | "yml" => Some("yaml"),
        "json" => Some("json"),
        "ppl" => Some("text"),
        _ => None,
    }
}

fn collect_criteria(policy: &serde_json::Value, used: &mut std::collections::BTreeSet<String>) {
    let rules: Vec<&serde_json::Value> = match policy {
        serde_json::Value::Array(rules) => rules.iter().collect(),
        other => vec![other],
    };
    for rule in rules {
        for body in rule.as_object().into_iter().flat_map(|o| o.values()) {
            for list in body.as_object().into_iter().flat_map(|o| o.values()) {
                for criterion in list.as_array().into_iter().flatten() {
                    for key in criterion.as_object().into_iter().flat_map(|o| o.keys()) {
                        used.insert(key.split('/').next().unwrap().to_owned());
                    }
                }
            }
        }
    }
}

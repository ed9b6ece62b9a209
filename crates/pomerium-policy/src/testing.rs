//! `pomerium-policy test`: YAML test files beside the policies (`<policy>.test.yaml`), each a
//! list of inputs and the decisions expected for them; with `--run`, `-v`, and coverage of the
//! criteria the tests never saw true or never saw false.
//!
//! ```yaml
//! policy: admin-panel.yaml        # optional: by default the file's name without `.test`
//! now: 2026-01-05T10:00:00Z       # optional: the clock of tests whose input has none
//! tests:
//!   - name: engineers may use the panel
//!     input: {session: {id: s1}, records: [...], http: {method: GET, path: /admin}}
//!     expect:
//!       outcome: allow            # and/or `status: 200`
//!       allow: [claim-ok]         # the exact reasons; or {value: true, reasons: [...]}
//! ```

use crate::report::{Format, Reporter};
use crate::{Exit, load};
use miette::Severity;
use policy::contract::OwnedInput;
use policy::decision::{Decision, Verdict, wants_html};
use policy::{Program, reference};
use ppl::value::{Value, ValueKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Test files, or directories searched for `*.test.yaml` (default: the current directory).
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
    /// Run only the tests whose name matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    run: Option<String>,
    /// Print every test, not only the failures.
    #[arg(short, long)]
    verbose: bool,
    /// List the criteria the tests never saw true, or never saw false.
    #[arg(long)]
    coverage: bool,
}

struct TestCase {
    name: String,
    line: usize,
    input: OwnedInput,
    expect: Expect,
}

#[derive(Default)]
struct Expect {
    outcome: Option<String>,
    status: Option<u16>,
    allow: Option<ActionExpect>,
    deny: Option<ActionExpect>,
}

#[derive(Default)]
struct ActionExpect {
    value: Option<bool>,
    reasons: Option<Vec<String>>,
    device_type: Option<String>,
}

/// What the tests saw of one criterion.
#[derive(Default, Clone, Copy)]
struct Seen {
    line: usize,
    saw_true: bool,
    saw_false: bool,
}

pub fn run(args: &Args, reporter: &Reporter) -> Exit {
    let filter = match args.run.as_deref().map(regex::Regex::new).transpose() {
        Ok(filter) => filter,
        Err(e) => {
            reporter.message(Severity::Error, "--run", &format!("not a regular expression: {e}"));
            return Exit::Usage;
        }
    };
    let roots = if args.paths.is_empty() { vec![".".to_owned()] } else { args.paths.clone() };
    let mut files = Vec::new();
    for root in &roots {
        let path = PathBuf::from(root);
        if path.is_dir() {
            find_test_files(&path, &mut files);
        } else {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        reporter.message(Severity::Error, &roots.join(" "), "no test files (`*.test.yaml`) found");
        return Exit::Usage;
    }
    let mut exit = Exit::Ok;
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut report = Vec::new();
    let mut json_files = Vec::new();
    for file in &files {
        match run_file(file, filter.as_ref(), args, reporter) {
            Ok(outcome) => {
                passed += outcome.passed;
                failed += outcome.failed;
                report.push(outcome.text);
                json_files.push(outcome.json);
            }
            Err(file_exit) => exit = exit.max(file_exit),
        }
    }
    if failed > 0 {
        exit = exit.max(Exit::TestFailed);
    }
    match reporter.format {
        Format::Json => {
            let document = serde_json::json!({"passed": passed, "failed": failed, "files": json_files});
            println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
        }
        _ => {
            for text in report {
                print!("{text}");
            }
            println!("{} tests: {passed} passed, {failed} failed", passed + failed);
        }
    }
    exit
}

fn find_test_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            find_test_files(&path, out);
        } else if name.ends_with(".test.yaml") || name.ends_with(".test.yml") {
            out.push(path);
        }
    }
}

struct FileOutcome {
    passed: usize,
    failed: usize,
    text: String,
    json: serde_json::Value,
}

fn run_file(file: &Path, filter: Option<&regex::Regex>, args: &Args, reporter: &Reporter) -> Result<FileOutcome, Exit> {
    let name = file.display().to_string();
    let source = std::fs::read_to_string(file).map_err(|e| {
        reporter.message(Severity::Error, &name, &e.to_string());
        Exit::Usage
    })?;
    let index = ppl::LineIndex::new(&source);
    let fail = |span: ppl::Span, message: &str| {
        let at = index.line_col(span.start());
        reporter.message(Severity::Error, &format!("{name}:{at}"), message);
        Exit::Usage
    };
    let (document, errors) = ppl::syntax::yaml::parse(&source);
    if let Some(error) = errors.first() {
        return Err(fail(error.span(), &error.to_string()));
    }
    let document = document.ok_or_else(|| fail(ppl::Span::default(), "the test file is empty"))?;
    let Some(fields) = document.as_object() else {
        return Err(fail(document.span, "a test file is an object with `tests`"));
    };
    for entry in fields {
        if !["policy", "now", "tests"].contains(&entry.key.as_str()) {
            return Err(fail(
                entry.key_span,
                &format!(
                    "unknown key `{}`; {}",
                    entry.key,
                    ppl::suggest::help(&entry.key, &["policy", "now", "tests"], "keys")
                ),
            ));
        }
    }
    let policy_path = match document.get("policy").map(|e| &e.value) {
        Some(value) => match value.as_str() {
            Some(p) => file.parent().unwrap_or(Path::new(".")).join(p),
            None => return Err(fail(value.span, "`policy` is the path of the policy file")),
        },
        None => sibling_policy(file)
            .ok_or_else(|| fail(document.span, "no policy beside this test file; name it with `policy:`"))?,
    };
    let default_now = match document.get("now") {
        Some(entry) => match entry.value.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) {
            Some(now) => now,
            None => return Err(fail(entry.value.span, "`now` is an RFC 3339 date-time")),
        },
        None => load::now(),
    };
    let loaded = load::policy(&policy_path.display().to_string(), None, reporter)?;
    let tests_value = document.get("tests").map(|e| &e.value);
    let Some(items) = tests_value.and_then(Value::as_array) else {
        return Err(fail(tests_value.map_or(document.span, |v| v.span), "`tests` is a list of tests"));
    };
    let mut tests = Vec::new();
    for item in items {
        tests.push(parse_test(item, &index).map_err(|(span, message)| fail(span, &message))?);
    }

    let program = Program::compile(&loaded.model);
    let policy_index = ppl::LineIndex::new(&loaded.source);
    let mut seen: BTreeMap<(usize, usize), Seen> = BTreeMap::new();
    for criterion in loaded.model.rules.iter().flat_map(|r| &r.blocks).flat_map(|b| &b.criteria) {
        let line = policy_index.line_col(criterion.span.start()).line;
        seen.insert((criterion.span.start(), criterion.span.end()), Seen { line, ..Seen::default() });
    }
    let mut text = format!("{name}\n");
    let mut json_tests = Vec::new();
    let (mut passed, mut failed) = (0, 0);
    for test in tests.iter().filter(|t| filter.is_none_or(|f| f.is_match(&t.name))) {
        let input = test.input.input(default_now);
        let decision = program.evaluate(&input, &test.input.records);
        let verdict = decision.verdict(wants_html(test.input.accept()));
        let trace = reference::evaluate(&loaded.model, &input, &test.input.records);
        for criterion in trace.rules.iter().flat_map(|r| &r.blocks).flat_map(|b| &b.criteria) {
            if let Some(entry) = seen.get_mut(&(criterion.criterion.span.start(), criterion.criterion.span.end())) {
                entry.saw_true |= criterion.result.value;
                entry.saw_false |= !criterion.result.value;
            }
        }
        let problems = compare(&test.expect, &decision, verdict);
        if problems.is_empty() {
            passed += 1;
            if args.verbose {
                text.push_str(&format!("  ✓ {}\n", test.name));
            }
        } else {
            failed += 1;
            text.push_str(&format!("  ✗ {} (line {})\n", test.name, test.line));
            for problem in &problems {
                text.push_str(&format!("      {problem}\n"));
            }
        }
        json_tests.push(serde_json::json!({"name": test.name, "line": test.line, "passed": problems.is_empty(), "problems": problems}));
    }
    let both = seen.values().filter(|s| s.saw_true && s.saw_false).count();
    text.push_str(&format!("  coverage: {both} of {} criteria seen both true and false\n", seen.len()));
    if args.coverage {
        for s in seen.values().filter(|s| !s.saw_true) {
            text.push_str(&format!("    never true: {} line {}\n", policy_path.display(), s.line));
        }
        for s in seen.values().filter(|s| !s.saw_false) {
            text.push_str(&format!("    never false: {} line {}\n", policy_path.display(), s.line));
        }
    }
    let never_true: Vec<usize> = seen.values().filter(|s| !s.saw_true).map(|s| s.line).collect();
    let never_false: Vec<usize> = seen.values().filter(|s| !s.saw_false).map(|s| s.line).collect();
    let json = serde_json::json!({
        "file": name,
        "policy": policy_path.display().to_string(),
        "tests": json_tests,
        "coverage": {"criteria": seen.len(), "both_ways": both, "never_true_lines": never_true, "never_false_lines": never_false},
    });
    Ok(FileOutcome { passed, failed, text, json })
}

/// `x.test.yaml` tests `x.yaml`, `x.yml`, `x.json` or `x.ppl`, whichever exists.
fn sibling_policy(test_file: &Path) -> Option<PathBuf> {
    let name = test_file.file_name()?.to_str()?;
    let stem = name.strip_suffix(".test.yaml").or_else(|| name.strip_suffix(".test.yml"))?;
    ["yaml", "yml", "json", "ppl"]
        .iter()
        .map(|ext| test_file.with_file_name(format!("{stem}.{ext}")))
        .find(|p| p.exists())
}

type Problem = (ppl::Span, String);

fn parse_test(item: &Value, index: &ppl::LineIndex<'_>) -> Result<TestCase, Problem> {
    let Some(fields) = item.as_object() else {
        return Err((item.span, "each test is an object with `name`, `input` and `expect`".to_owned()));
    };
    for entry in fields {
        if !["name", "input", "expect"].contains(&entry.key.as_str()) {
            return Err((
                entry.key_span,
                format!(
                    "unknown key `{}`; {}",
                    entry.key,
                    ppl::suggest::help(&entry.key, &["name", "input", "expect"], "keys")
                ),
            ));
        }
    }
    let name = item
        .get("name")
        .and_then(|e| e.value.as_str())
        .ok_or((item.span, "a test needs a `name`".to_owned()))?
        .to_owned();
    let input_value = item.get("input").map(|e| &e.value);
    let json = input_value.map(to_json).unwrap_or_else(|| serde_json::json!({}));
    let input = OwnedInput::parse(&json.to_string())
        .map_err(|e| (input_value.map_or(item.span, |v| v.span), format!("invalid input: {e}")))?;
    let expect_value =
        item.get("expect").map(|e| &e.value).ok_or((item.span, "a test needs an `expect`".to_owned()))?;
    let expect = parse_expect(expect_value)?;
    Ok(TestCase { name, line: index.line_col(item.span.start()).line, input, expect })
}

fn parse_expect(value: &Value) -> Result<Expect, Problem> {
    let Some(fields) = value.as_object() else {
        return Err((value.span, "`expect` is an object".to_owned()));
    };
    let mut expect = Expect::default();
    for entry in fields {
        let v = &entry.value;
        match entry.key.as_str() {
            "outcome" => {
                expect.outcome = Some(
                    v.as_str()
                        .ok_or((v.span, "`outcome` is an action such as `allow`, `login` or `deny`".to_owned()))?
                        .to_owned(),
                )
            }
            "status" => {
                let status = match &v.kind {
                    ValueKind::Number(n) => u16::try_from(n.as_f64() as i64).ok(),
                    _ => None,
                };
                expect.status = Some(status.ok_or((v.span, "`status` is an HTTP status such as 403".to_owned()))?);
            }
            "allow" => expect.allow = Some(parse_action(v)?),
            "deny" => expect.deny = Some(parse_action(v)?),
            other => {
                let help = ppl::suggest::help(other, &["outcome", "status", "allow", "deny"], "keys");
                return Err((entry.key_span, format!("unknown key `{other}`; {help}")));
            }
        }
    }
    Ok(expect)
}

fn parse_action(value: &Value) -> Result<ActionExpect, Problem> {
    let reasons = |v: &Value| -> Result<Vec<String>, Problem> {
        v.as_array()
            .ok_or((v.span, "reasons are a list such as `[email-ok]`".to_owned()))?
            .iter()
            .map(|r| r.as_str().map(str::to_owned).ok_or((r.span, "a reason is a string".to_owned())))
            .collect()
    };
    match &value.kind {
        ValueKind::Array(_) => Ok(ActionExpect { reasons: Some(reasons(value)?), ..ActionExpect::default() }),
        ValueKind::Bool(b) => Ok(ActionExpect { value: Some(*b), ..ActionExpect::default() }),
        ValueKind::Object(entries) => {
            let mut expect = ActionExpect::default();
            for entry in entries {
                match entry.key.as_str() {
                    "value" => {
                        expect.value = Some(
                            entry.value.as_bool().ok_or((entry.value.span, "`value` is true or false".to_owned()))?,
                        )
                    }
                    "reasons" => expect.reasons = Some(reasons(&entry.value)?),
                    "device_type" => expect.device_type = entry.value.as_str().map(str::to_owned),
                    other => {
                        return Err((
                            entry.key_span,
                            format!("unknown key `{other}`; the keys are `value`, `reasons` and `device_type`"),
                        ));
                    }
                }
            }
            Ok(expect)
        }
        _ => Err((value.span, "expected reasons (`[email-ok]`), a value (`true`) or `{value, reasons}`".to_owned())),
    }
}

/// What differs between the expectation and the decision, one line each.
fn compare(expect: &Expect, decision: &Decision<'_>, verdict: Verdict) -> Vec<String> {
    let mut problems = Vec::new();
    let got = format!("{} ({})", verdict.action(), verdict.status());
    if expect.outcome.as_deref().is_some_and(|o| o != verdict.action()) {
        problems.push(format!("expected outcome {}, got {got}", expect.outcome.as_deref().unwrap_or_default()));
    }
    if expect.status.is_some_and(|s| s != verdict.status()) {
        problems.push(format!("expected status {}, got {got}", expect.status.unwrap_or_default()));
    }
    for (name, want, result) in [("allow", &expect.allow, &decision.allow), ("deny", &expect.deny, &decision.deny)] {
        let Some(want) = want else { continue };
        let actual_reasons: Vec<String> = result.reasons.names().iter().map(|r| (*r).to_owned()).collect();
        let mismatch = want.value.is_some_and(|v| v != result.value)
            || want.reasons.as_ref().is_some_and(|r| {
                let mut sorted = r.clone();
                sorted.sort();
                sorted != actual_reasons
            })
            || want.device_type.as_deref().is_some_and(|d| Some(d) != result.device_type);
        if mismatch {
            problems.push(format!("{name}: got value {} with reasons [{}]", result.value, actual_reasons.join(", ")));
        }
    }
    problems
}

/// A spanned YAML value as JSON.
fn to_json(value: &Value) -> serde_json::Value {
    match &value.kind {
        ValueKind::Null => serde_json::Value::Null,
        ValueKind::Bool(b) => serde_json::Value::Bool(*b),
        ValueKind::Number(n) => {
            n.as_str().parse::<serde_json::Number>().map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
        ValueKind::String(s) => serde_json::Value::String(s.clone()),
        ValueKind::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        ValueKind::Object(entries) => {
            serde_json::Value::Object(entries.iter().map(|e| (e.key.clone(), to_json(&e.value))).collect())
        }
    }
}

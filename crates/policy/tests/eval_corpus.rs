//! The evaluation corpus (`tests/eval/**/*.case`, format in `tests/eval/README.md`): each case's
//! policy and input through the evaluation contract, by the compiled program and by the
//! reference interpreter; both must print the expected output document.
//!
//! `UPDATE_EXPECT=1 cargo test -p policy --test eval_corpus -- <case>` rewrites a case's decision
//! from the program's result; review the diff.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use policy::contract::{OwnedInput, render};
use policy::decision::wants_html;
use policy::{Program, reference};
use std::fmt::Write as _;
use std::path::Path;

/// Cases without `now` run at this time, so that no result depends on the day the tests run.
pub const DEFAULT_NOW: &str = "2026-01-01T00:00:00Z";

fn section<'c>(case: &'c case_file::CaseFile, name: &str) -> Option<&'c str> {
    case.section(name)
}

fn run(path: &Path, content: String) -> datatest_stable::Result<()> {
    let case = case_file::parse(&content)?;
    let (policy_name, policy_text) = case.policy()?;
    let syntax = policy_name
        .rsplit_once('.')
        .and_then(|(_, ext)| ppl::Syntax::from_extension(ext))
        .ok_or_else(|| format!("unknown policy section `{policy_name}`"))?;
    let compiled = ppl::compile(policy_text, syntax);
    let model = compiled.policy.ok_or_else(|| format!("the policy does not compile: {:?}", compiled.errors))?;
    let input_text = section(&case, "input.json").ok_or("a case needs an `--- input.json` section")?;
    let owned = OwnedInput::parse(input_text).map_err(|e| format!("bad input: {e}"))?;
    let input = owned.input(DEFAULT_NOW.parse().unwrap());
    let html = wants_html(owned.accept());

    let program = Program::compile(&model);
    let fast = program.evaluate(&input, &owned.records);
    let slow = reference::evaluate(&model, &input, &owned.records).decision;
    let actual = render(&fast, fast.verdict(html));
    let reference_output = render(&slow, slow.verdict(html));

    if test_support::expect::updating() {
        // The decision is each case's last section.
        let mut kept = case.header.clone();
        for (name, body) in case.sections.iter().filter(|(name, _)| name != "decision") {
            let _ = write!(kept, "--- {name}\n{body}");
        }
        test_support::expect::rewrite(path, &kept, [("decision", actual.as_str())])?;
        return Ok(());
    }
    let expected_text = section(&case, "decision").ok_or("a case needs a `--- decision` section")?;
    let expected: serde_json::Value =
        serde_json::from_str(expected_text).map_err(|e| format!("the decision is not json: {e}"))?;
    let as_json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let mut problems = String::new();
    if as_json(&actual) != expected {
        let _ = write!(problems, "the program's decision differs:\n--- expected\n{expected_text}--- actual\n{actual}");
    }
    if as_json(&reference_output) != expected {
        let _ = write!(
            problems,
            "the reference interpreter's decision differs:\n--- expected\n{expected_text}--- actual\n{reference_output}"
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        eprintln!("{problems}");
        Err("the decision differs".into())
    }
}

datatest_stable::harness! {
    { test = run, root = "../../tests/eval", pattern = r"\.case$" },
}

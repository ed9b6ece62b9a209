//! The regorus differential test: every case of `tests/eval/` (format: `tests/eval/README.md`)
//! through the Rego module Pomerium would generate for its policy ([`policy::rego::emit`]),
//! evaluated by regorus, an engine independent of ours. The case's expected `allow` and `deny`
//! (value, sorted reasons, additional data) must come out; `outcome` is decided outside Rego and is
//! not compared here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking, on fixtures they know"
)]

use bench_peers::regorus_peer::{ActionResult, PomeriumInput, RegorusPeer};
use serde_json::Value as Json;
use std::path::Path;

/// The clock of a case whose input has no `now` (tests/eval/README.md).
const DEFAULT_NOW: &str = "2026-01-01T00:00:00Z";

struct Case {
    policy_name: String,
    policy: String,
    input: String,
    decision: String,
}

fn parse_case(content: &str) -> Result<Case, String> {
    let case = case_file::parse(content)?;
    let section = |name: &str| case.section(name).map(str::to_owned);
    let (policy_name, policy) = case.policy()?;
    Ok(Case {
        policy_name: policy_name.to_owned(),
        policy: policy.to_owned(),
        input: section("input.json").unwrap_or_else(|| "{}".to_owned()),
        decision: section("decision").ok_or("a case needs a `--- decision` section")?,
    })
}

fn expected(decision: &Json, action: &str) -> ActionResult {
    let result = &decision[action];
    let mut reasons: Vec<String> = result["reasons"]
        .as_array()
        .map(|r| r.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    reasons.sort();
    ActionResult {
        value: result["value"].as_bool().unwrap_or(false),
        reasons,
        additional_data: result["additional_data"].as_object().filter(|d| !d.is_empty()).cloned(),
    }
}

fn run_case(path: &Path, content: String) -> datatest_stable::Result<()> {
    let case = parse_case(&content)?;
    let syntax = match case.policy_name.as_str() {
        "policy.yaml" | "policy.yml" => ppl::Syntax::Yaml,
        "policy.json" => ppl::Syntax::Json,
        "policy.ppl" => ppl::Syntax::Text,
        other => return Err(format!("unknown policy section `{other}`").into()),
    };
    let compiled = ppl::compile(&case.policy, syntax);
    if !compiled.errors.is_empty() {
        return Err(format!("{}: the policy does not compile: {:?}", path.display(), compiled.errors).into());
    }
    let ast = compiled.ast.ok_or("no AST")?;
    let module = policy::rego::emit(&ast)?;
    let input: Json = serde_json::from_str(&case.input)?;
    let decision: Json = serde_json::from_str(&case.decision)?;
    let input = PomeriumInput::from_contract(&input, DEFAULT_NOW.parse()?)?;
    let mut peer = RegorusPeer::new(&module).inspect_err(|_| eprintln!("--- module\n{module}"))?;
    let got = peer.evaluate(&input)?;
    let (allow, deny) = (expected(&decision, "allow"), expected(&decision, "deny"));
    if got.allow != allow || got.deny != deny {
        let want = bench_peers::regorus_peer::PeerDecision { allow, deny };
        eprintln!(
            "--- expected\n{}\n--- regorus\n{}\n--- module\n{module}",
            serde_json::to_string_pretty(&want.to_json())?,
            serde_json::to_string_pretty(&got.to_json())?,
        );
        return Err(format!("{}: regorus disagrees with the case", path.display()).into());
    }
    Ok(())
}

datatest_stable::harness! {
    { test = run_case, root = "../../tests/eval", pattern = r"\.case$" },
}

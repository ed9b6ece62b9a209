//! Pomerium evaluates a route's sub-policies as separate queries and ORs their results per action
//! (`MergeRuleResultsWithOr`); `config` instead appends their rules to the route's policy. These are
//! the same decision, values and reasons: PPL ORs the rules of one action alike.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use policy::contract::OwnedInput;
use policy::decision::{Merge, RuleResult};
use policy::reference;

fn merged<'m>(x: RuleResult<'m>, y: RuleResult<'m>) -> RuleResult<'m> {
    let mut merge = Merge::or();
    merge.add(x);
    merge.add(y);
    merge.finish()
}

fn model(text: &str) -> ppl::model::Policy {
    let compiled = ppl::compile(text, ppl::Syntax::Text);
    compiled.policy.unwrap_or_else(|| panic!("{text}: {:?}", compiled.errors))
}

const ROUTE_POLICIES: &[&str] = &[
    "allow or(email is \"alice@example.com\")",
    "allow or(domain is \"example.com\")\ndeny or(http_path starts_with \"/admin\")",
    "allow and(http_method is \"GET\", groups has \"eng\")",
    "deny or(source_ip \"10.0.0.0/8\")",
    "allow or(reject)",
    "allow or(authenticated_user)\ndeny and(http_method is \"POST\", email is \"bob@example.com\")",
];

const INPUTS: &[&str] = &[
    r#"{"http": {"method": "GET", "path": "/", "ip": "10.1.2.3"}, "session": {"id": "s1"},
        "records": [{"type": "session", "id": "s1", "data": {"user_id": "u1", "claims": {"groups": ["eng"]}}},
                    {"type": "user", "id": "u1", "data": {"email": "alice@example.com"}}]}"#,
    r#"{"http": {"method": "POST", "path": "/admin/x", "ip": "192.0.2.1"}, "session": {"id": "s2"},
        "records": [{"type": "session", "id": "s2", "data": {"user_id": "u2"}},
                    {"type": "user", "id": "u2", "data": {"email": "bob@example.com"}}]}"#,
    r#"{"http": {"method": "GET", "path": "/admin", "ip": "203.0.113.9"}}"#,
];

#[test]
fn appended_rules_decide_as_or_merged_queries() {
    let now = "2026-01-05T10:00:00Z".parse().unwrap();
    for first in ROUTE_POLICIES {
        for second in ROUTE_POLICIES {
            let (a, b) = (model(first), model(second));
            let mut joined = a.clone();
            joined.rules.extend(b.rules.iter().cloned());
            for text in INPUTS {
                let owned = OwnedInput::parse(text).unwrap();
                let input = owned.input(now);
                let (ta, tb) =
                    (reference::evaluate(&a, &input, &owned.records), reference::evaluate(&b, &input, &owned.records));
                let joined_trace = reference::evaluate(&joined, &input, &owned.records);
                assert_eq!(
                    (joined_trace.decision.allow, joined_trace.decision.deny),
                    (merged(ta.decision.allow, tb.decision.allow), merged(ta.decision.deny, tb.decision.deny)),
                    "{first:?} + {second:?} on {text}"
                );
            }
        }
    }
}

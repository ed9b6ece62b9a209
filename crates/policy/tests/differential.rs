//! The optimized evaluator against the reference interpreter: random policies × random inputs
//! and records must give the same decision (values, reasons, device type). Policies are drawn
//! from small pools of values so that criteria, inputs and records actually meet.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use policy::contract::OwnedInput;
use policy::{Program, reference};
use proptest::prelude::*;

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(items)
}

const EMAILS: &[&str] = &["a@x.com", "b@x.com", "c@y.org", "nobody", "d@x.com@z", "alice@x.com"];
const STRINGS: &[&str] = &[
    "a@x.com", "x.com", "y.org", "u1", "u2", "GET", "POST", "/admin", "/api/", "read", "root", "alice", "eng", "ops",
    "", "a",
];

/// A JSON literal for matcher operands: mostly strings, sometimes other kinds.
fn operand() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => pick(STRINGS).prop_map(|s| format!("{s:?}")),
        1 => pick(&["1", "true", "null", "[\"a@x.com\"]"]).prop_map(str::to_owned),
    ]
}

fn string_list() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![5 => pick(STRINGS).prop_map(|s| format!("{s:?}")), 1 => Just("7".to_owned())],
        0..4,
    )
    .prop_map(|items| format!("[{}]", items.join(", ")))
}

fn string_matcher() -> impl Strategy<Value = String> {
    let condition = prop_oneof![
        operand().prop_map(|v| format!("is {v}")),
        operand().prop_map(|v| format!("not {v}")),
        pick(STRINGS).prop_map(|v| format!("contains {v:?}")),
        pick(STRINGS).prop_map(|v| format!("starts_with {v:?}")),
        pick(STRINGS).prop_map(|v| format!("ends_with {v:?}")),
        string_list().prop_map(|v| format!("in {v}")),
        string_list().prop_map(|v| format!("not_in {v}")),
    ];
    prop_oneof![
        // The shorthand: one value means `is`.
        operand(),
        prop::collection::vec(condition, 1..3).prop_map(|cs| {
            // One condition per operator: `key value` pairs must not repeat a key.
            let mut seen = std::collections::HashSet::new();
            cs.into_iter()
                .filter(|c| seen.insert(c.split(' ').next().unwrap().to_owned()))
                .collect::<Vec<_>>()
                .join(" ")
        }),
    ]
}

fn list_matcher() -> impl Strategy<Value = String> {
    let value = prop_oneof![4 => pick(&["\"eng\"", "\"ops\"", "\"g1\"", "\"g2\""]).prop_map(str::to_owned), 1 => Just("1".to_owned())];
    prop_oneof![value.clone(), (pick(&["has", "is", "exclude"]), value).prop_map(|(op, v)| format!("{op} {v}")),]
}

fn criterion() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("accept".to_owned()),
        Just("reject".to_owned()),
        Just("authenticated_user".to_owned()),
        string_matcher().prop_map(|m| format!("user {m}")),
        string_matcher().prop_map(|m| format!("email {m}")),
        string_matcher().prop_map(|m| format!("domain {m}")),
        (pick(&["groups", "role", "a.b"]), list_matcher()).prop_map(|(c, m)| format!("claim/{c} {m}")),
        list_matcher().prop_map(|m| format!("groups {m}")),
        string_matcher().prop_map(|m| format!("http_method {m}")),
        string_matcher().prop_map(|m| format!("http_path {m}")),
        Just("cors_preflight".to_owned()),
        pick(&[
            "\"10.0.0.0/8\"",
            "[\"192.168.1.0/24\", \"10.1.0.0/16\"]",
            "\"::ffff:10.0.0.0/104\"",
            "\"2001:db8::/32\"",
            "[]"
        ])
        .prop_map(|v| format!("source_ip {v}")),
        Just("invalid_client_certificate".to_owned()),
        (
            prop::option::of(pick(&["any", "enclave_only"])),
            prop::option::of(any::<bool>()),
            prop::option::of(pick(&["dc1", "dc2"]))
        )
            .prop_map(|(t, a, i)| {
                let mut parts = Vec::new();
                if let Some(t) = t {
                    parts.push(format!("type {t:?}"));
                }
                if let Some(a) = a {
                    parts.push(format!("approved {a}"));
                }
                if let Some(i) = i {
                    parts.push(format!("is {i:?}"));
                }
                if parts.is_empty() { "device {}".to_owned() } else { format!("device {}", parts.join(" ")) }
            }),
        string_matcher().prop_map(|m| format!("mcp_tool {m}")),
        string_matcher().prop_map(|m| format!("ssh_username {m}")),
        Just("ssh_username_matches_email".to_owned()),
        pick(&["\"groups\"", "\"role\""]).prop_map(|c| format!("ssh_username_matches_claim {c}")),
        pick(&["mon-fri", "sat,sun", "*"]).prop_map(|d| format!("day_of_week {d:?}")),
        Just("date after \"2026-01-01T00:00:00Z\" before \"2026-06-01T00:00:00Z\"".to_owned()),
        Just("time_of_day timezone \"Europe/Berlin\" after \"9:00\" before \"17:00\"".to_owned()),
        pick(&["is \"eng\"", "exists true", "exists false", ">= 3", "has \"eng\""])
            .prop_map(|c| format!("record type \"hr\" field \"department\" {c}")
                .replace("field \"department\" >=", "field \"level\" >=")),
    ]
}

/// Several single-condition criteria on one attribute: what the compiler merges into sets.
fn alternatives() -> impl Strategy<Value = String> {
    let attribute = pick(&[
        "email",
        "domain",
        "user",
        "http_path",
        "http_method",
        "mcp_tool",
        "ssh_username",
        "claim/groups",
        "groups",
    ]);
    let condition = prop_oneof![
        pick(STRINGS).prop_map(|v| format!("{v:?}")),
        pick(STRINGS).prop_map(|v| format!("is {v:?}")),
        string_list().prop_map(|v| format!("in {v}")),
        pick(STRINGS).prop_map(|v| format!("starts_with {v:?}")),
        pick(STRINGS).prop_map(|v| format!("ends_with {v:?}")),
        pick(STRINGS).prop_map(|v| format!("contains {v:?}")),
        pick(&["\"eng\"", "\"ops\"", "\"g1\""]).prop_map(|v| format!("has {v}")),
    ];
    (attribute, prop::collection::vec(condition, 2..7), prop::collection::vec(criterion(), 0..2)).prop_map(
        |(attribute, conditions, others)| {
            let list = matches!(attribute, "claim/groups" | "groups");
            let mut criteria: Vec<String> = conditions
                .into_iter()
                .filter(|c| list == c.starts_with("has") || (list && c.starts_with('"')))
                .map(|c| format!("{attribute} {c}"))
                .collect();
            criteria.extend(others);
            criteria.join(", ")
        },
    )
}

fn policy_text() -> impl Strategy<Value = String> {
    let criteria = prop_oneof![
        3 => prop::collection::vec(criterion(), 0..5).prop_map(|cs| cs.join(", ")),
        2 => alternatives(),
    ];
    let block = (pick(&["and", "or", "not", "nor"]), criteria).prop_map(|(op, cs)| format!("{op}({cs})"));
    let rule = (pick(&["allow", "deny"]), prop::collection::vec(block, 0..3)).prop_map(|(action, blocks)| {
        let mut seen = std::collections::HashSet::new();
        let blocks: Vec<String> =
            blocks.into_iter().filter(|b| seen.insert(b.split('(').next().unwrap().to_owned())).collect();
        format!("{action} {}", blocks.join(" "))
    });
    prop::collection::vec(rule, 0..4).prop_map(|rules| rules.join("\n"))
}

/// A random input document with random records.
fn input_json() -> impl Strategy<Value = String> {
    let session_id = prop::option::of(pick(&["s1", "s2", "s3", "sa1", "missing", ""]));
    let method = prop::option::of(pick(&["GET", "POST", "OPTIONS", "get"]));
    let path = prop::option::of(pick(&["/", "/admin", "/api/x", "/admin/api/"]));
    let ip = prop::option::of(pick(&["10.2.3.4", "192.168.1.7", "::ffff:10.0.0.1", "2001:db8::1", "8.8.8.8"]));
    let cert = (prop::option::of(any::<bool>()), prop::option::of(any::<bool>()));
    let mcp =
        prop::option::of((pick(&["tools/call", "initialize"]), prop::option::of(pick(&["read", "drop", "root"]))));
    let ssh = prop::option::of(pick(&["alice", "root", "a", "eng"]));
    let headers = any::<bool>();
    let now = pick(&["2026-01-05T10:00:00Z", "2026-01-10T20:00:00Z", "2026-07-01T08:30:00Z"]);
    let user1 = (pick(EMAILS), pick(&["[\"eng\"]", "[\"ops\", \"eng\"]", "\"eng\"", "[1]", "[]"]));
    let directory = (prop::option::of(pick(EMAILS)), prop::option::of(pick(&["[\"g1\"]", "[\"g1\", \"g2\"]", "[]"])));
    let session = (
        prop::option::of(pick(&["u1", "u2", ""])),
        any::<bool>(),
        prop::option::of(pick(&["s2", "nope"])),
        any::<bool>(),
    );
    let device = (pick(&["any", "enclave_only"]), prop::option::of(pick(&["u9", ""])));
    (session_id, method, path, ip, cert, mcp, ssh, headers, now, (user1, directory, session, device)).prop_map(
        |(session_id, method, path, ip, (presented, valid), mcp, ssh, headers, now, (user1, directory, session, device))| {
            let mut http = serde_json::Map::new();
            if let Some(m) = method { http.insert("method".into(), m.into()); }
            if let Some(p) = path { http.insert("path".into(), p.into()); }
            if let Some(ip) = ip { http.insert("ip".into(), ip.into()); }
            if headers {
                http.insert("headers".into(), serde_json::json!({"Access-Control-Request-Method": "GET", "origin": "https://x"}));
            }
            if let Some(p) = presented { http.insert("client_certificate".into(), serde_json::json!({"presented": p})); }
            let mut doc = serde_json::json!({ "http": http, "now": now });
            if let Some(id) = session_id { doc["session"] = serde_json::json!({"id": id}); }
            if let Some(v) = valid { doc["is_valid_client_certificate"] = v.into(); }
            if let Some((method, tool)) = mcp {
                doc["mcp"] = serde_json::json!({"method": method});
                if let Some(tool) = tool { doc["mcp"]["tool_call"] = serde_json::json!({"name": tool}); }
            }
            if let Some(u) = ssh { doc["ssh"] = serde_json::json!({"username": u}); }
            let (user_id, expired, impersonate, with_device) = session;
            let mut s1 = serde_json::json!({"claims": {"role": ["eng"]}});
            if let Some(u) = user_id { s1["user_id"] = u.into(); }
            if expired { s1["expires_at"] = "2026-01-01T00:00:00Z".into(); }
            if let Some(i) = impersonate { s1["impersonate_session_id"] = i.into(); }
            if with_device { s1["device_credentials"] = serde_json::json!([{"type_id": device.0, "id": "dc1"}]); }
            let mut enrollment = serde_json::json!({});
            if let Some(by) = device.1 { enrollment["approved_by"] = by.into(); }
            let groups: serde_json::Value = serde_json::from_str(user1.1).unwrap();
            let mut dir = serde_json::json!({});
            if let Some(e) = directory.0 { dir["email"] = e.into(); }
            if let Some(g) = directory.1 { dir["group_ids"] = serde_json::from_str(g).unwrap(); }
            doc["records"] = serde_json::json!([
                {"type": "session", "id": "s1", "data": s1},
                {"type": "session", "id": "s2", "data": {"user_id": "u2", "claims": {"groups": "ops"}}},
                {"type": "session", "id": "s3", "data": {}},
                {"type": "service_account", "id": "sa1", "data": {"user_id": "u1"}},
                {"type": "user", "id": "u1", "data": {"email": user1.0, "claims": {"groups": groups, "a": {"b": ["eng"]}}}},
                {"type": "user", "id": "u2", "data": {"email": "b@x.com"}},
                {"type": "directory_user", "id": "u1", "data": dir},
                {"type": "device_credential", "id": "dc1", "data": {"type_id": device.0, "enrollment_id": "de1"}},
                {"type": "device_enrollment", "id": "de1", "data": enrollment},
                {"type": "hr", "id": "u1", "data": {"department": "eng", "level": 4}},
            ]);
            doc.to_string()
        },
    )
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1500)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_program_agrees_with_the_reference(text in policy_text(), inputs in prop::collection::vec(input_json(), 1..4)) {
        let compiled = ppl::compile(&text, ppl::Syntax::Text);
        let model = compiled.policy.unwrap_or_else(|| panic!("generated policy does not compile: {:?}\n{text}", compiled.errors));
        let program = Program::compile(&model);
        let now = "2026-01-05T12:00:00Z".parse().unwrap();
        for json in inputs {
            let owned = OwnedInput::parse(&json).unwrap();
            let input = owned.input(now);
            let fast = program.evaluate(&input, &owned.records);
            let slow = reference::evaluate(&model, &input, &owned.records).decision;
            prop_assert_eq!(fast, slow, "policy:\n{}\ninput: {}", text, json);
        }
    }
}

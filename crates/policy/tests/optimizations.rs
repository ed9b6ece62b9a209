//! Each optimization of the compiler, shown to happen (its results are checked against the
//! reference interpreter by the differential test).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use policy::contract::OwnedInput;
use policy::records::{
    DeviceCredential, DeviceEnrollment, DirectoryUser, MemoryRecords, Records, ServiceAccount, Session, User,
};
use policy::{Program, reference};
use serde_json::Value;
use std::cell::Cell;
fn compile(text: &str) -> (ppl::model::Policy, Program) {
    let compiled = ppl::compile(text, ppl::Syntax::Text);
    let model = compiled.policy.unwrap_or_else(|| panic!("{:?}", compiled.errors));
    let program = Program::compile(&model);
    (model, program)
}

fn now() -> jiff::Timestamp {
    "2026-01-05T10:00:00Z".parse().unwrap()
}

const RECORDS: &str = r#"{
  "http": {"method": "GET", "path": "/api/users", "ip": "10.1.2.3", "headers": {"Accept": "text/html"}},
  "session": {"id": "s1"},
  "records": [
    {"type": "session", "id": "s1", "data": {"user_id": "u1", "claims": {"groups": ["eng", "ops"]}}},
    {"type": "user", "id": "u1", "data": {"email": "user500@example.com", "claims": {"role": ["admin"]}}},
    {"type": "directory_user", "id": "u1", "data": {"group_ids": ["g1", "g2"]}}
  ]
}"#;

#[test]
fn a_thousand_allowed_users_are_one_set_lookup() {
    // The shape of a route with 1,000 `allowed_users`: `user` and `email` per user, OR-ed.
    let criteria: Vec<String> = (0..1000)
        .flat_map(|i| [format!("user is \"user{i}@example.com\""), format!("email is \"user{i}@example.com\"")])
        .collect();
    let (model, program) = compile(&format!("allow or({})", criteria.join(", ")));
    assert_eq!(program.test_count(), 2, "one merged test per attribute");
    let owned = OwnedInput::parse(RECORDS).unwrap();
    let input = owned.input(now());
    let decision = program.evaluate(&input, &owned.records);
    assert!(decision.allow.value);
    assert_eq!(decision, reference::evaluate(&model, &input, &owned.records).decision);
}

#[test]
fn prefixes_suffixes_and_substrings_merge_too() {
    let (_, program) = compile(
        "allow or(http_path starts_with \"/a\", http_path starts_with \"/api/\", http_path ends_with \".css\", \
         http_path contains \"/static/\", http_path is \"/\", http_path in [\"/x\", \"/y\"])",
    );
    assert_eq!(program.test_count(), 1);
}

#[test]
fn constants_fold_away() {
    assert_eq!(compile("allow or(accept)").1.test_count(), 0);
    assert_eq!(compile("allow and(accept, reject) deny not(reject)").1.test_count(), 0);
    let (model, program) = compile("allow or(accept, email is \"a@x.com\") deny and(reject)");
    assert_eq!(program.test_count(), 1, "accept folds; the email criterion still runs (its reason may join)");
    let owned = OwnedInput::parse(RECORDS).unwrap();
    let input = owned.input(now());
    assert_eq!(program.evaluate(&input, &owned.records), reference::evaluate(&model, &input, &owned.records).decision);
}

/// Counts lookups by record type.
#[derive(Default)]
struct Counting {
    inner: MemoryRecords,
    sessions: Cell<usize>,
    service_accounts: Cell<usize>,
    users: Cell<usize>,
    directory_users: Cell<usize>,
}

impl Records for Counting {
    fn session(&self, id: &str) -> Option<&Session> {
        self.sessions.set(self.sessions.get() + 1);
        self.inner.session(id)
    }
    fn service_account(&self, id: &str) -> Option<&ServiceAccount> {
        self.service_accounts.set(self.service_accounts.get() + 1);
        self.inner.service_account(id)
    }
    fn user(&self, id: &str) -> Option<&User> {
        self.users.set(self.users.get() + 1);
        self.inner.user(id)
    }
    fn directory_user(&self, id: &str) -> Option<&DirectoryUser> {
        self.directory_users.set(self.directory_users.get() + 1);
        self.inner.directory_user(id)
    }
    fn device_credential(&self, id: &str) -> Option<&DeviceCredential> {
        self.inner.device_credential(id)
    }
    fn device_enrollment(&self, id: &str) -> Option<&DeviceEnrollment> {
        self.inner.device_enrollment(id)
    }
    fn external(&self, record_type: &str, id: &str) -> Option<&Value> {
        self.inner.external(record_type, id)
    }
}

#[test]
fn each_record_is_fetched_at_most_once_per_decision() {
    let (_, program) = compile(
        "allow and(authenticated_user, user is \"u1\", email ends_with \"@example.com\", domain is \"example.com\", \
         claim/groups has \"eng\", claim/role is \"admin\", groups has \"g1\", ssh_username_matches_email) \
         deny or(email is \"mallory@example.com\", groups has \"banned\")",
    );
    let owned = OwnedInput::parse(RECORDS).unwrap();
    let records = Counting { inner: owned.records.clone(), ..Counting::default() };
    let input = owned.input(now());
    let _ = program.evaluate(&input, &records);
    assert_eq!(records.service_accounts.get(), 1);
    assert_eq!(records.sessions.get(), 1);
    assert_eq!(records.users.get(), 1);
    assert_eq!(records.directory_users.get(), 1);
}

#[test]
fn cheap_request_criteria_run_before_record_lookups() {
    // In an `or` that a request criterion already decided with `http-path-ok`, a second path
    // criterion cannot add anything and is skipped; the email criterion still runs (its reason
    // could join) — but no lookup happens for criteria that are skipped.
    let (_, program) = compile(
        "allow or(http_path {starts_with: \"/api\", ends_with: \"users\"}, http_path {contains: \"/\", not: \"/x\"})",
    );
    let owned = OwnedInput::parse(RECORDS).unwrap();
    let records = Counting { inner: owned.records.clone(), ..Counting::default() };
    let decision = program.evaluate(&owned.input(now()), &records);
    assert!(decision.allow.value);
    assert_eq!(records.sessions.get() + records.users.get(), 0, "request criteria need no records");
}

#[test]
fn source_ip_searches_sorted_ranges() {
    let networks: Vec<String> = (0..10_000u32).map(|i| format!("\"10.{}.{}.0/24\"", i / 256, i % 256)).collect();
    let (model, program) = compile(&format!("allow or(source_ip [{}])", networks.join(", ")));
    for (ip, expected) in [("10.38.15.7", true), ("10.39.15.7", true), ("10.40.0.1", false), ("11.0.0.1", false)] {
        let owned = OwnedInput::parse(&format!("{{\"http\": {{\"ip\": \"{ip}\"}}}}")).unwrap();
        let input = owned.input(now());
        let decision = program.evaluate(&input, &owned.records);
        assert_eq!(decision.allow.value, expected, "{ip}");
        assert_eq!(decision, reference::evaluate(&model, &input, &owned.records).decision);
    }
}

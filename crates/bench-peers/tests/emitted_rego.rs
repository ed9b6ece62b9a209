//! The emitted Rego of criteria the conformance cases do not reach, run by regorus: every criterion
//! loads and evaluates, and the criteria whose Rego is ours (`date`, `day_of_week`,
//! `time_of_day`, `record`, documented in `policy::rego`) or that need the extensions
//! (`client_certificate` SANs and SPKI hashes, `ssh_publickey`, `ssh_ca`) give the results their
//! definitions say. Expectations are written by hand from ppl.md and the `policy::rego` docs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking, on fixtures they know"
)]

use bench_peers::regorus_peer::{PeerDecision, PomeriumInput, RegorusPeer};
use serde_json::json;

const NOW: &str = "2026-01-01T00:00:00Z";

/// Certificate A of the c19 cases: self-signed P-256, DNS `client-a.example.com`, email
/// `client-a@example.com`.
const CERT_A: &str = "-----BEGIN CERTIFICATE-----
MIIBzjCCAXSgAwIBAgIUVXnZ7IhpT6uMtRMauqGhH7a8SRgwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUY2xpZW50LWEuZXhhbXBsZS5jb20wIBcNMjYxMTIyMTIzMzM1
WhgPMjEyNjEwMjkxMjMzMzVaMB8xHTAbBgNVBAMMFGNsaWVudC1hLmV4YW1wbGUu
Y29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1oWEjCdA4QL2SSCXg9TA/2Wa
IxZIo+oVsTw269LuoIXcYsoRBWsRzHZr8nheudHMMd5n3+2z3aJrxTH5H85RR6OB
izCBiDAdBgNVHQ4EFgQUHnN5fY2S7iGPmrohvMnHGaguvgkwHwYDVR0jBBgwFoAU
HnN5fY2S7iGPmrohvMnHGaguvgkwDwYDVR0TAQH/BAUwAwEB/zA1BgNVHREELjAs
ghRjbGllbnQtYS5leGFtcGxlLmNvbYEUY2xpZW50LWFAZXhhbXBsZS5jb20wCgYI
KoZIzj0EAwIDSAAwRQIgVcXxsZV2prvcBWNb2Xh8/cyeXAEwhzNPQHMeGbJQ5eYC
IQCqwN7cRAb93V6WrGmk194IfWeHytWIp2lapgmheNMvpQ==
-----END CERTIFICATE-----
";
/// base64 of the SHA-256 of certificate A's SubjectPublicKeyInfo (openssl).
const CERT_A_SPKI: &str = "sBTcN8xKxgcQ3nF4X3jPQq5Z2nV3gaj0oVRl+DYVjPY=";

/// An SSH user CA, a user key, and that key's certificate for principal `alice` signed by the CA
/// (ssh-keygen, valid forever).
const SSH_CA: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHy2L2SAeqvnASq/VQ9Hek4SYCFnGbiWs66cFcnTLxlN ca";
const SSH_ALICE: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIORKvsyJ6cZjLewqPh4AouRYxRA8+6oIB/8urYLR0jnm alice";
const SSH_ALICE_KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIORKvsyJ6cZjLewqPh4AouRYxRA8+6oIB/8urYLR0jnm";
const SSH_ALICE_CERT: &str = "AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIDaRE+KFQOXHjjnAl2B78PhrC9kKvA/VVoVv67jYwHRZAAAAIORKvsyJ6cZjLewqPh4AouRYxRA8+6oIB/8urYLR0jnmAAAAAAAAAAAAAAABAAAACGFsaWNlLWlkAAAACQAAAAVhbGljZQAAAAAAAAAA//////////8AAAAAAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACB8ti9kgHqr5wEqv1UPR3pOEmAhZxm4lrOunBXJ0y8ZTQAAAFMAAAALc3NoLWVkMjU1MTkAAABAJKBPjTx00ZtyhWPv3GUOB/XuKid+jrQ3uIefO13QhNkSCrqsbhZvnoEwMV+xOzcaP0d9rTuC0xrOgGNg0ScUDQ==";

fn evaluate(policy: &str, input: serde_json::Value) -> PeerDecision {
    let compiled = ppl::compile(policy, ppl::Syntax::Yaml);
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    let module = policy::rego::emit(&compiled.ast.unwrap()).unwrap();
    let mut peer = RegorusPeer::new(&module).unwrap_or_else(|e| panic!("{e}\n{module}"));
    let input = PomeriumInput::from_contract(&input, NOW.parse().unwrap()).unwrap();
    peer.evaluate(&input).unwrap()
}

/// `allow`'s value and reasons for a policy `allow: {and: [<criterion>]}`.
fn allow(criterion: &str, input: serde_json::Value) -> (bool, Vec<String>) {
    let indented: String = criterion.lines().map(|l| format!("      {l}\n")).collect();
    let policy = format!("allow:\n  and:\n    -\n{indented}");
    let decision = evaluate(&policy, input);
    (decision.allow.value, decision.allow.reasons)
}

fn ok(reason: &str) -> (bool, Vec<String>) {
    (true, vec![reason.to_owned()])
}

fn fail(reason: &str) -> (bool, Vec<String>) {
    (false, vec![reason.to_owned()])
}

#[test]
fn every_criterion_loads_and_evaluates() {
    let policy = format!(
        r#"
- allow:
    and:
      - accept: true
      - reject: true
      - authenticated_user: true
      - user: u1
      - email: {{ends_with: "@example.com"}}
      - domain: {{in: [example.com]}}
      - claim/groups: {{has: admins, exclude: contractors}}
      - groups: {{is: g1}}
      - http_method: {{not_in: [DELETE]}}
      - http_path: {{starts_with: /admin, contains: x}}
    or:
      - cors_preflight: true
      - source_ip: [10.0.0.0/8, "2001:db8::/32"]
      - client_certificate: {{spki_hash: "{CERT_A_SPKI}", san_dns: {{ends_with: .example.com}}}}
      - device: {{type: any, approved: true, is: dc1}}
      - mcp_tool: list_tables
    not:
      - ssh_username: root
      - ssh_username_matches_email: true
      - ssh_username_matches_claim: unix_user
      - ssh_publickey: "{SSH_ALICE}"
      - ssh_ca: ["{SSH_CA}"]
    nor:
      - date: {{after: "2026-01-01T00:00:00Z"}}
      - day_of_week: mon-fri
      - time_of_day: {{timezone: Europe/Berlin, after: "9:00", before: "17:00"}}
      - record: {{type: example.com/hr/worker, field: level, ">=": 3}}
- deny:
    and:
      - invalid_client_certificate: true
"#
    );
    let compiled = ppl::compile(&policy, ppl::Syntax::Yaml);
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    let module = policy::rego::emit(&compiled.ast.unwrap()).unwrap();
    for name in ppl::criteria::names() {
        assert!(module.contains(&format!("\n{name}_0 := ")), "{name} is missing");
    }
    let mut peer = RegorusPeer::new(&module).unwrap_or_else(|e| panic!("{e}\n{module}"));
    for input in [
        json!({}),
        json!({"session": {"id": "s1"}, "http": {"method": "GET", "path": "/admin/x", "ip": "10.1.2.3"},
               "records": [{"type": "session", "id": "s1", "data": {"user_id": "u1"}}]}),
    ] {
        let input = PomeriumInput::from_contract(&input, NOW.parse().unwrap()).unwrap();
        peer.evaluate(&input).unwrap();
    }
}

#[test]
fn date_is_a_half_open_interval() {
    let date = r#"date: {after: "2026-01-01T00:00:00Z", before: "2027-01-01T00:00:00+01:00"}"#;
    assert_eq!(allow(date, json!({"now": "2026-06-01T12:00:00Z"})), ok("date-ok"));
    assert_eq!(allow(date, json!({"now": "2026-01-01T00:00:00Z"})), ok("date-ok"), "after is inclusive");
    assert_eq!(allow(date, json!({"now": "2025-12-31T23:59:59Z"})), fail("date-unauthorized"));
    assert_eq!(allow(date, json!({"now": "2026-12-31T23:00:00Z"})), fail("date-unauthorized"), "before is exclusive");
    assert_eq!(allow(date, json!({"now": "2026-12-31T23:30:00Z"})), fail("date-unauthorized"));
    assert_eq!(allow(date, json!({"now": "2026-12-31T22:59:59Z"})), ok("date-ok"));
}

#[test]
fn day_of_week_reads_the_utc_day() {
    // 2026-01-01 is a Thursday, 2026-01-03 a Saturday.
    assert_eq!(allow("day_of_week: mon-fri", json!({"now": "2026-01-01T10:00:00Z"})), ok("day-of-week-ok"));
    assert_eq!(allow("day_of_week: mon-fri", json!({"now": "2026-01-03T10:00:00Z"})), fail("day-of-week-unauthorized"));
    assert_eq!(allow("day_of_week: {is: 'sat,sun'}", json!({"now": "2026-01-03T10:00:00Z"})), ok("day-of-week-ok"));
}

#[test]
fn time_of_day_reads_the_zone_and_wraps_past_midnight() {
    let office = "time_of_day: {timezone: America/New_York, after: '8:00 AM', before: '6:00 PM'}";
    // 14:00Z is 9:00 in New York in January (EST); 12:00Z is 7:00; 23:00Z is 18:00 (excluded).
    assert_eq!(allow(office, json!({"now": "2026-01-05T14:00:00Z"})), ok("time-of-day-ok"));
    assert_eq!(allow(office, json!({"now": "2026-01-05T12:00:00Z"})), fail("time-of-day-unauthorized"));
    assert_eq!(allow(office, json!({"now": "2026-01-05T13:00:00Z"})), ok("time-of-day-ok"));
    assert_eq!(allow(office, json!({"now": "2026-01-05T23:00:00Z"})), fail("time-of-day-unauthorized"));
    let night = "time_of_day: {timezone: Europe/Berlin, after: '22:00', before: '6:00'}";
    // 23:30Z is 0:30 in Berlin (CET); 12:00Z is 13:00; 21:00Z is 22:00.
    assert_eq!(allow(night, json!({"now": "2026-01-05T23:30:00Z"})), ok("time-of-day-ok"));
    assert_eq!(allow(night, json!({"now": "2026-01-05T12:00:00Z"})), fail("time-of-day-unauthorized"));
    assert_eq!(allow(night, json!({"now": "2026-01-05T21:00:00Z"})), ok("time-of-day-ok"));
}

fn worker(data: serde_json::Value) -> serde_json::Value {
    json!({
        "session": {"id": "s1"},
        "records": [
            {"type": "session", "id": "s1", "data": {"user_id": "u1"}},
            {"type": "example.com/hr/worker", "id": "u1", "data": data},
        ],
    })
}

#[test]
fn record_reads_the_users_record() {
    let department = "record: {type: example.com/hr/worker, field: department, is: engineering}";
    assert_eq!(allow(department, worker(json!({"department": "engineering"}))), ok("record-ok"));
    assert_eq!(allow(department, worker(json!({"department": ["engineering"]}))), ok("record-ok"));
    assert_eq!(allow(department, worker(json!({"department": "sales"}))), fail("record-unauthorized"));
    assert_eq!(allow(department, json!({"session": {"id": ""}})), fail("user-unauthenticated"));
    let level = "record: {type: example.com/hr/worker, field: level, '>=': 3}";
    assert_eq!(allow(level, worker(json!({"level": 5}))), ok("record-ok"));
    assert_eq!(allow(level, worker(json!({"level": 2}))), fail("record-unauthorized"));
    assert_eq!(allow(level, worker(json!({"level": "5"}))), fail("record-unauthorized"));
    let absent = "record: {type: example.com/hr/other, exists: false}";
    assert_eq!(allow(absent, worker(json!({}))), ok("record-ok"));
    let present = "record: {type: example.com/hr/worker, exists: true}";
    assert_eq!(allow(present, worker(json!({}))), ok("record-ok"));
    let tags = "record: {type: example.com/hr/worker, field: tags, has: oncall, exclude: intern}";
    assert_eq!(allow(tags, worker(json!({"tags": ["oncall", "sre"]}))), ok("record-ok"));
    assert_eq!(allow(tags, worker(json!({"tags": ["oncall", "intern"]}))), fail("record-unauthorized"));
}

fn with_cert(leaf: &str) -> serde_json::Value {
    json!({"http": {"client_certificate": {"presented": true, "leaf": leaf}}})
}

#[test]
fn client_certificate_reads_spki_and_sans() {
    let spki = format!("client_certificate: {{spki_hash: \"{CERT_A_SPKI}\"}}");
    assert_eq!(allow(&spki, with_cert(CERT_A)), ok("client-certificate-ok"));
    let dns = "client_certificate: {san_dns: {ends_with: .example.com, starts_with: client-a}}";
    assert_eq!(allow(dns, with_cert(CERT_A)), ok("client-certificate-ok"));
    let email = "client_certificate: {san_email: {is: client-b@example.com}}";
    assert_eq!(allow(email, with_cert(CERT_A)), fail("client-certificate-unauthorized"));
    // `not_in` over SANs: no entry is in the list. Certificate A has no URI SAN, and its one DNS
    // SAN is client-a.example.com.
    let uri = "client_certificate: {san_uri: {not_in: [spiffe://x]}}";
    assert_eq!(allow(uri, with_cert(CERT_A)), ok("client-certificate-ok"));
    let dns_not_in = "client_certificate: {san_dns: {not_in: [client-a.example.com, x]}}";
    assert_eq!(allow(dns_not_in, with_cert(CERT_A)), fail("client-certificate-unauthorized"));
    let dns_not_in = "client_certificate: {san_dns: {not_in: [client-b.example.com]}}";
    assert_eq!(allow(dns_not_in, with_cert(CERT_A)), ok("client-certificate-ok"));
    // A base64-encoded PEM is accepted too, as OPA's parse_certificates does.
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(CERT_A);
    assert_eq!(allow(&spki, with_cert(&encoded)), ok("client-certificate-ok"));
}

#[test]
fn ssh_keys_and_certificates() {
    let key = format!("ssh_publickey: \"{SSH_ALICE}\"");
    assert_eq!(allow(&key, json!({"ssh": {"username": "alice", "publickey": SSH_ALICE_KEY}})), ok("ssh-publickey-ok"));
    assert_eq!(
        allow(&key, json!({"ssh": {"username": "alice", "publickey": SSH_ALICE_CERT}})),
        fail("ssh-publickey-unauthorized")
    );
    let ca = format!("ssh_ca: \"{SSH_CA}\"");
    assert_eq!(allow(&ca, json!({"ssh": {"username": "alice", "publickey": SSH_ALICE_CERT}})), ok("ssh-publickey-ok"));
    assert_eq!(
        allow(&ca, json!({"ssh": {"username": "bob", "publickey": SSH_ALICE_CERT}})),
        fail("ssh-publickey-unauthorized")
    );
    assert_eq!(
        allow(&ca, json!({"ssh": {"username": "alice", "publickey": SSH_ALICE_KEY}})),
        fail("ssh-publickey-unauthorized")
    );
}

#[test]
fn ssh_usernames_from_identity() {
    let identity = |username: &str| {
        json!({
            "ssh": {"username": username},
            "session": {"id": "s1"},
            "records": [
                {"type": "session", "id": "s1", "data": {"user_id": "u1", "claims": {"unix_user": "al"}}},
                {"type": "user", "id": "u1", "data": {"email": "alice@example.com"}},
            ],
        })
    };
    assert_eq!(allow("ssh_username_matches_email: true", identity("alice")), ok("ssh-username-ok"));
    assert_eq!(allow("ssh_username_matches_email: true", identity("al")), fail("ssh-username-unauthorized"));
    assert_eq!(allow("ssh_username_matches_claim: unix_user", identity("al")), ok("ssh-username-ok"));
}

#[test]
fn flattened_claims_mapped_addresses_and_absent_input() {
    // Pomerium stores nested IdP claims flattened with `.` keys; `claim/org.team` finds the key
    // verbatim.
    let flattened = json!({
        "session": {"id": "s1"},
        "records": [
            {"type": "session", "id": "s1", "data": {"user_id": "u1", "claims": {"org.team": ["infra"]}}},
        ],
    });
    assert_eq!(allow("claim/org.team: infra", flattened.clone()), ok("claim-ok"));
    assert_eq!(allow("claim/org.team: {is: infra}", flattened), ok("claim-ok"));
    // An IPv4-mapped address is read as IPv4, as Go (and so OPA) reads it.
    assert_eq!(allow("source_ip: 10.0.0.0/8", json!({"http": {"ip": "::ffff:10.1.2.3"}})), ok("source-ip-ok"));
    // Pomerium's input always has a session id, empty without a session: `device: {}` passes.
    assert_eq!(allow("device: {}", json!({})), ok("device-ok"), "no session id at all");
    // An absent method satisfies `not_in` (Rego negation of an undefined expression).
    assert_eq!(allow("http_method: {not_in: [DELETE]}", json!({})), ok("http-method-ok"));
}

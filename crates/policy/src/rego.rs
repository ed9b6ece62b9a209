//! Rego emission: the module Pomerium would generate for a policy (ppl.md §4.1).
//!
//! [`emit`] turns a policy into the Rego v1 module that Pomerium's generator produces for it:
//! `package pomerium.policy`, `import rego.v1`, the defaults `allow := [false, set()]` and
//! `deny := [false, set()]`, one rule per criterion named `<criterion>_<n>` with its `else` chain
//! (the Plain, Session and Device templates of ppl.md §2.2, and the custom chains of
//! `invalid_client_certificate` and `mcp_tool`), one rule per operator block (`and_<n>`, `or_<n>`,
//! `not_<n>`, `nor_<n>`), `allow` and `deny` as the OR of their blocks, then the support functions
//! the criteria need (`get_session`, `get_user`, `get_directory_user`, `get_user_email`,
//! `object_get`, the device look-ups, and the merge helpers `merge_with_and`, `merge_with_or`,
//! `invert_criterion_result`, `normalize_criterion_result`, `object_union`). Counters run per name
//! across the module, in the order Pomerium's generator visits the policy: every `allow` rule, then
//! every `deny` rule, each rule's blocks in the order `and`, `or`, `not`, `nor`.
//!
//! The module is the same rules, names and semantics as Pomerium's; it is not byte-identical to
//! what Go's `format.Ast` prints (statement spelling and helper order may differ). Two points follow
//! ppl.md where upstream versions disagree: `get_user_email` prefers the directory user's email, and
//! `mcp_tool` answers `[false, {"mcp-not-a-tool-call"}]` for a request without the `tools/call`
//! method. String matchers write `in` as `x in [...]` and `not_in` as `not x in [...]` (so an
//! undefined left side, such as an absent `input.http.method`, satisfies `not_in`; `user` first
//! assigns `user_id := session.user_id`, as upstream does, so a session without a user id fails
//! every `user` operator, `not_in` included); list matchers use the `count([true | ...])`
//! comprehensions of Pomerium's matchers. `source_ip` checks `net.cidr_contains` over the ranges
//! (upstream calls `net.cidr_contains_matches`, which means the same). The certificate SAN
//! matchers test each operator across the SAN entries (`startswith(cert.DNSNames[_], ...)`);
//! `not_in` on SANs, which Pomerium writes `not cert.DNSNames[_] in [...]` (no entry is in the
//! list), is written `count([san | san := cert.DNSNames[_]; san in [...]]) == 0`, which means the
//! same in OPA and which regorus evaluates correctly (it hoists a loop out of a negation).
//!
//! Evaluating the module needs Pomerium's custom built-ins: `get_databroker_record(type, id)`
//! (the record as an object, or `null`; expired records are absent) and, for `ssh_ca`,
//! `ssh_verify_user_cert(principal, key, cas)`.
//!
//! # Ours: the Enterprise criteria
//!
//! Pomerium documents `date`, `day_of_week`, `time_of_day` and `record` for its Enterprise
//! edition only and publishes no Rego for them; the Rego emitted for them here is **ours**, with
//! our reasons:
//!
//! - The request time is the support rule `request_time_ns`: `input.now` (RFC 3339) parsed with
//!   `time.parse_rfc3339_ns`, or `time.now_ns()` when `input.now` is absent or unparseable.
//! - `date` (Plain, `date-ok` / `date-unauthorized`): the request time is at or after `after` and
//!   before `before` (each optional; a half-open interval), compared in nanoseconds since the epoch.
//! - `day_of_week` (Plain, `day-of-week-ok` / `day-of-week-unauthorized`): `time.weekday` of the
//!   request time, in UTC, is one of the listed days.
//! - `time_of_day` (Plain, `time-of-day-ok` / `time-of-day-unauthorized`): the wall-clock time of
//!   day in the criterion's time zone (`time.clock([ns, zone])`, plus the sub-second part), in
//!   nanoseconds since midnight, is at or after `after` (default midnight) and before `before`
//!   (default the end of the day); when `after` is later than `before` the window wraps past
//!   midnight (the support function `time_of_day_within`).
//! - `record` (Session, `record-ok` / `record-unauthorized` / `user-unauthenticated`): the record
//!   `get_databroker_record(<type>, session.user_id)`, and its top-level `field`. String operators
//!   apply to the field's value (`is` also matches a one-element list holding the value), `has`
//!   and `exclude` to a list value, `<`, `<=`, `=`, `>`, `>=` to a numeric value (`is_number`
//!   first, since Rego orders values of different types instead of failing), and `exists: true`
//!   holds when the record is present (a `field` plays no part), `exists: false` when it is not. The field is read in place (`record["field"]`), so, as for
//!   the other string matchers, an absent field (or record) satisfies `not_in` and `exclude` and
//!   fails the other operators.

use ppl::ast::{Action, Operator};
use ppl::model::{
    CertificateMatcher, CriterionKind, DateMatcher, DaySet, DeviceMatcher, ListMatcher, ListOp, Policy, RecordMatcher,
    RecordOp, SshKey, StringMatcher, StringOp, TimeOfDayMatcher,
};
use ppl::value::{Value, ValueKind};
use std::collections::HashMap;
use std::fmt::{self, Write as _};

/// The policy could not be turned into Rego because it does not compile.
#[derive(Clone, Debug, PartialEq)]
pub struct EmitError {
    /// Every error of the policy, in source order.
    pub errors: Vec<ppl::Error>,
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the policy does not compile")?;
        for (i, error) in self.errors.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for EmitError {}

/// The Rego module Pomerium would generate for `policy`; an error when the policy does not check.
pub fn emit(policy: &ppl::ast::Policy) -> Result<String, EmitError> {
    let checked = ppl::check(policy);
    match checked.policy {
        Some(model) if checked.errors.is_empty() => Ok(emit_checked(&model)),
        _ => Err(EmitError { errors: checked.errors }),
    }
}

/// The Rego module for a policy that has already been checked.
pub fn emit_checked(policy: &Policy) -> String {
    let mut generator = Generator::default();
    for action in Action::ALL {
        let mut terms = Vec::new();
        for rule in policy.rules.iter().filter(|rule| rule.action == action) {
            for block in rule.blocks.iter().filter(|b| !b.criteria.is_empty()) {
                let names: Vec<String> =
                    block.criteria.iter().map(|criterion| generator.criterion(&criterion.kind)).collect();
                terms.push(generator.block(block.operator, &names));
            }
        }
        if !terms.is_empty() {
            let body = combine(&terms, None, "merge_with_or");
            generator.push_rule(format!("{} := v if {{\n{}}}", action.as_str(), body));
        }
    }
    generator.finish()
}

/// Support functions, in the order they are printed (after every rule, as Pomerium moves
/// functions to the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Helper {
    InvertCriterionResult,
    NormalizeCriterionResult,
    ObjectUnion,
    MergeWithAnd,
    MergeWithOr,
    GetSession,
    GetUser,
    GetDirectoryUser,
    GetUserEmail,
    ObjectGet,
    GetDeviceCredential,
    GetDeviceEnrollment,
    TimeOfDayWithin,
}

impl Helper {
    const ALWAYS: [Helper; 5] = [
        Helper::InvertCriterionResult,
        Helper::NormalizeCriterionResult,
        Helper::ObjectUnion,
        Helper::MergeWithAnd,
        Helper::MergeWithOr,
    ];

    fn text(self) -> &'static str {
        match self {
            Helper::InvertCriterionResult => INVERT_CRITERION_RESULT,
            Helper::NormalizeCriterionResult => NORMALIZE_CRITERION_RESULT,
            Helper::ObjectUnion => OBJECT_UNION,
            Helper::MergeWithAnd => MERGE_WITH_AND,
            Helper::MergeWithOr => MERGE_WITH_OR,
            Helper::GetSession => GET_SESSION,
            Helper::GetUser => GET_USER,
            Helper::GetDirectoryUser => GET_DIRECTORY_USER,
            Helper::GetUserEmail => GET_USER_EMAIL,
            Helper::ObjectGet => OBJECT_GET,
            Helper::GetDeviceCredential => GET_DEVICE_CREDENTIAL,
            Helper::GetDeviceEnrollment => GET_DEVICE_ENROLLMENT,
            Helper::TimeOfDayWithin => TIME_OF_DAY_WITHIN,
        }
    }
}

#[derive(Debug, Default)]
struct Generator {
    /// The next number for each rule name (`email` → 2 after `email_0`, `email_1`).
    ids: HashMap<&'static str, usize>,
    /// Rules without arguments, in generation order.
    rules: Vec<String>,
    /// Support functions the criteria need.
    helpers: Vec<Helper>,
    /// Whether `request_time_ns` has been added to `rules`.
    request_time: bool,
}

impl Generator {
    fn name(&mut self, base: &'static str) -> String {
        let id = self.ids.entry(base).or_insert(0);
        let name = format!("{base}_{id}");
        *id += 1;
        name
    }

    fn push_rule(&mut self, rule: String) {
        self.rules.push(rule);
    }

    fn need(&mut self, helpers: &[Helper]) {
        for helper in helpers {
            if !self.helpers.contains(helper) {
                self.helpers.push(*helper);
            }
        }
    }

    fn need_request_time(&mut self) {
        if !self.request_time {
            self.request_time = true;
            self.push_rule(REQUEST_TIME_NS.to_owned());
        }
    }

    /// One operator block over the criterion rules `names`; returns the block rule's name.
    fn block(&mut self, operator: Operator, names: &[String]) -> String {
        let name = self.name(operator.as_str());
        let body = match operator {
            Operator::And => combine(names, None, "merge_with_and"),
            Operator::Or => combine(names, None, "merge_with_or"),
            Operator::Not => combine(names, Some("invert_criterion_result"), "merge_with_and"),
            Operator::Nor => combine(names, Some("invert_criterion_result"), "merge_with_or"),
        };
        self.push_rule(format!("{name} := v if {{\n{body}}}"));
        name
    }

    /// Adds the rule for one criterion; returns its name.
    fn criterion(&mut self, kind: &CriterionKind) -> String {
        let (base, rule): (&'static str, Chain) = match kind {
            CriterionKind::Accept => ("accept", Chain::constant(result(true, "accept"))),
            CriterionKind::Reject => ("reject", Chain::constant(result(false, "reject"))),
            CriterionKind::AuthenticatedUser => {
                self.need(&[Helper::GetSession]);
                let body = vec![
                    SESSION.to_owned(),
                    "session.user_id != null".to_owned(),
                    "session.user_id != \"\"".to_owned(),
                ];
                ("authenticated_user", session("user-ok", "user-unauthorized", body))
            }
            CriterionKind::User(matcher) => {
                self.need(&[Helper::GetSession]);
                let mut body = vec![SESSION.to_owned(), "user_id := session.user_id".to_owned()];
                string_matcher(&mut body, "user_id", matcher);
                ("user", session("user-ok", "user-unauthorized", body))
            }
            CriterionKind::Email(matcher) => {
                self.need_email();
                let mut body = email_body();
                string_matcher(&mut body, "email", matcher);
                ("email", session("email-ok", "email-unauthorized", body))
            }
            CriterionKind::Domain(matcher) => {
                self.need_email();
                let mut body = email_body();
                body.pop();
                body.push("domain := split(get_user_email(session, user, directory_user), \"@\")[1]".to_owned());
                string_matcher(&mut body, "domain", matcher);
                ("domain", session("domain-ok", "domain-unauthorized", body))
            }
            CriterionKind::Claim { name, matcher } => {
                self.need(&[Helper::GetSession, Helper::GetUser, Helper::ObjectGet]);
                let mut body = claim_body(name);
                list_matcher(&mut body, "values", matcher);
                ("claim", session("claim-ok", "claim-unauthorized", body))
            }
            CriterionKind::Groups(matcher) => {
                self.need(&[Helper::GetSession]);
                let mut body = vec![
                    format!("record_type := {}", string(DIRECTORY_USER_TYPE)),
                    SESSION.to_owned(),
                    "directory_user := get_databroker_record(record_type, session.user_id)".to_owned(),
                    "group_ids := object.get(directory_user, \"group_ids\", [])".to_owned(),
                ];
                list_matcher(&mut body, "group_ids", matcher);
                ("groups", session("groups-ok", "groups-unauthorized", body))
            }
            CriterionKind::HttpMethod(matcher) => {
                let mut body = Vec::new();
                string_matcher(&mut body, "input.http.method", matcher);
                ("http_method", plain("http-method-ok", "http-method-unauthorized", body))
            }
            CriterionKind::HttpPath(matcher) => {
                let mut body = Vec::new();
                string_matcher(&mut body, "input.http.path", matcher);
                ("http_path", plain("http-path-ok", "http-path-unauthorized", body))
            }
            CriterionKind::CorsPreflight => {
                let body = vec![
                    "input.http.method == \"OPTIONS\"".to_owned(),
                    "count(object.get(input.http.headers, \"Access-Control-Request-Method\", [])) > 0".to_owned(),
                    "count(object.get(input.http.headers, \"Origin\", [])) > 0".to_owned(),
                ];
                ("cors_preflight", plain("cors-request", "non-cors-request", body))
            }
            CriterionKind::SourceIp(networks) => {
                let cidrs: Vec<String> = networks.iter().map(|n| string(&n.to_string())).collect();
                let body = vec![format!(
                    "count([cidr | some cidr in [{}]; net.cidr_contains(cidr, input.http.ip)]) > 0",
                    cidrs.join(", ")
                )];
                ("source_ip", plain("source-ip-ok", "source-ip-unauthorized", body))
            }
            CriterionKind::ClientCertificate(matcher) => (
                "client_certificate",
                plain("client-certificate-ok", "client-certificate-unauthorized", certificate_body(matcher)),
            ),
            CriterionKind::InvalidClientCertificate => (
                "invalid_client_certificate",
                Chain {
                    branches: vec![
                        (
                            result(false, "valid-client-certificate"),
                            vec![
                                "is_boolean(input.is_valid_client_certificate)".to_owned(),
                                "input.is_valid_client_certificate".to_owned(),
                            ],
                        ),
                        (
                            result(true, "client-certificate-required"),
                            vec![
                                "is_boolean(input.http.client_certificate.presented)".to_owned(),
                                "not input.http.client_certificate.presented".to_owned(),
                            ],
                        ),
                        (result(true, "invalid-client-certificate"), Vec::new()),
                    ],
                },
            ),
            CriterionKind::Device(matcher) => {
                self.need(&[Helper::GetSession, Helper::GetDeviceCredential, Helper::GetDeviceEnrollment]);
                ("device", device(matcher))
            }
            CriterionKind::McpTool(matcher) => {
                let mut body = vec!["input.mcp.method == \"tools/call\"".to_owned()];
                string_matcher(&mut body, "input.mcp.tool_call.name", matcher);
                (
                    "mcp_tool",
                    Chain {
                        branches: vec![
                            (
                                result(false, "mcp-not-a-tool-call"),
                                vec!["not input.mcp.method == \"tools/call\"".to_owned()],
                            ),
                            (result(true, "mcp-tool-match"), body),
                            (result(false, "mcp-tool-no-match"), Vec::new()),
                        ],
                    },
                )
            }
            CriterionKind::SshUsername(matcher) => {
                let mut body = Vec::new();
                string_matcher(&mut body, "input.ssh.username", matcher);
                ("ssh_username", plain("ssh-username-ok", "ssh-username-unauthorized", body))
            }
            CriterionKind::SshUsernameMatchesEmail => {
                self.need_email();
                let mut body = email_body();
                body.push("username := split(email, \"@\")[0]".to_owned());
                body.push("input.ssh.username == username".to_owned());
                ("ssh_username_matches_email", session("ssh-username-ok", "ssh-username-unauthorized", body))
            }
            CriterionKind::SshUsernameMatchesClaim(claim) => {
                self.need(&[Helper::GetSession, Helper::GetUser, Helper::ObjectGet]);
                let mut body = claim_body(claim);
                body.push("input.ssh.username in values".to_owned());
                ("ssh_username_matches_claim", session("ssh-username-ok", "ssh-username-unauthorized", body))
            }
            CriterionKind::SshPublickey(keys) => (
                "ssh_publickey",
                plain(
                    "ssh-publickey-ok",
                    "ssh-publickey-unauthorized",
                    vec![format!("input.ssh.publickey in {}", ssh_keys(keys))],
                ),
            ),
            CriterionKind::SshCa(keys) => (
                "ssh_ca",
                plain(
                    "ssh-publickey-ok",
                    "ssh-publickey-unauthorized",
                    vec![
                        format!("user_cas := {}", ssh_keys(keys)),
                        "ssh_verify_user_cert(input.ssh.username, input.ssh.publickey, user_cas)".to_owned(),
                    ],
                ),
            ),
            CriterionKind::Date(matcher) => {
                self.need_request_time();
                ("date", plain("date-ok", "date-unauthorized", date_body(matcher)))
            }
            CriterionKind::DayOfWeek(days) => {
                self.need_request_time();
                ("day_of_week", plain("day-of-week-ok", "day-of-week-unauthorized", day_of_week_body(*days)))
            }
            CriterionKind::TimeOfDay(matcher) => {
                self.need_request_time();
                self.need(&[Helper::TimeOfDayWithin]);
                ("time_of_day", plain("time-of-day-ok", "time-of-day-unauthorized", time_of_day_body(matcher)))
            }
            CriterionKind::Record(matcher) => {
                self.need(&[Helper::GetSession]);
                ("record", session("record-ok", "record-unauthorized", record_body(matcher)))
            }
        };
        let name = self.name(base);
        let text = rule.render(&name);
        self.push_rule(text);
        name
    }

    fn need_email(&mut self) {
        self.need(&[Helper::GetSession, Helper::GetUser, Helper::GetDirectoryUser, Helper::GetUserEmail]);
    }

    fn finish(self) -> String {
        let mut out = String::from(
            "package pomerium.policy\n\nimport rego.v1\n\ndefault allow := [false, set()]\n\ndefault deny := [false, set()]\n",
        );
        for rule in &self.rules {
            out.push('\n');
            out.push_str(rule);
            out.push('\n');
        }
        let mut helpers: Vec<Helper> = Helper::ALWAYS.to_vec();
        let mut extra = self.helpers;
        extra.sort();
        helpers.extend(extra);
        for helper in helpers {
            out.push('\n');
            out.push_str(helper.text());
        }
        out
    }
}

/// A criterion rule: its branches, each a head value and a body (empty: unconditional).
#[derive(Debug)]
struct Chain {
    branches: Vec<(String, Vec<String>)>,
}

impl Chain {
    fn constant(head: String) -> Chain {
        Chain { branches: vec![(head, Vec::new())] }
    }

    fn render(&self, name: &str) -> String {
        let mut out = String::new();
        for (i, (head, body)) in self.branches.iter().enumerate() {
            if i == 0 {
                let _ = write!(out, "{name} := {head}");
            } else {
                let _ = write!(out, "\n\nelse := {head}");
            }
            if !body.is_empty() {
                out.push_str(" if {\n");
                for statement in body {
                    let _ = writeln!(out, "\t{statement}");
                }
                out.push('}');
            }
        }
        out
    }
}

/// `[value, {"reason"}]`.
fn result(value: bool, reason: &str) -> String {
    format!("[{value}, {{{}}}]", string(reason))
}

/// `[value, {"reason"}, {"device_type": "<type>"}]`.
fn device_result(value: bool, reason: &str, device_type: &str) -> String {
    format!("[{value}, {{{}}}, {{\"device_type\": {}}}]", string(reason), string(device_type))
}

/// Plain template: the body holds → pass, else fail.
fn plain(pass: &str, fail: &str, body: Vec<String>) -> Chain {
    Chain { branches: vec![(result(true, pass), body), (result(false, fail), Vec::new())] }
}

const SESSION: &str = "session := get_session(input.session.id)";

/// Session template: the body holds → pass; else a session exists → fail; else
/// `user-unauthenticated`.
fn session(pass: &str, fail: &str, body: Vec<String>) -> Chain {
    Chain {
        branches: vec![
            (result(true, pass), body),
            (result(false, fail), vec![SESSION.to_owned(), "session.id != \"\"".to_owned()]),
            (result(false, "user-unauthenticated"), Vec::new()),
        ],
    }
}

/// Device template over the device criterion's conditions.
fn device(matcher: &DeviceMatcher) -> Chain {
    let device_type = matcher.device_type.as_deref().unwrap_or("any");
    let shared = vec![
        format!("device_type_id := {}", string(device_type)),
        SESSION.to_owned(),
        "device_credential := get_device_credential(session, device_type_id)".to_owned(),
        "device_enrollment := get_device_enrollment(device_credential)".to_owned(),
    ];
    let mut body = shared.clone();
    match matcher.approved {
        Some(true) => {
            body.push("count([x | x := device_enrollment.approved_by]) > 0".to_owned());
        }
        Some(false) => {
            body.push("count([x | x := device_enrollment.approved_by]) == 0".to_owned());
        }
        None => {}
    }
    if let Some(id) = &matcher.id {
        body.push(format!("is_expect := {}", string(id)));
        body.push("is_expect == device_credential.id".to_owned());
    }
    if matcher.device_type.is_some() {
        body.push("device_credential.id != \"\"".to_owned());
    }
    let with = |extra: &[&str]| {
        let mut body = shared.clone();
        body.extend(extra.iter().map(|s| (*s).to_owned()));
        body
    };
    Chain {
        branches: vec![
            (device_result(true, "device-ok", device_type), body),
            (
                device_result(false, "device-unauthorized", device_type),
                with(&["session.id != \"\"", "device_credential.id != \"\"", "device_enrollment.id != \"\""]),
            ),
            (device_result(false, "device-unauthenticated", device_type), with(&["session.id != \"\""])),
            (device_result(false, "user-unauthenticated", device_type), Vec::new()),
        ],
    }
}

fn email_body() -> Vec<String> {
    vec![
        SESSION.to_owned(),
        "user := get_user(session)".to_owned(),
        "directory_user := get_directory_user(session)".to_owned(),
        "email := get_user_email(session, user, directory_user)".to_owned(),
    ]
}

fn claim_body(name: &str) -> Vec<String> {
    vec![
        format!("rule_path := {}", string(name)),
        SESSION.to_owned(),
        "session_claims := object.get(session, \"claims\", {})".to_owned(),
        "user := get_user(session)".to_owned(),
        "user_claims := object.get(user, \"claims\", {})".to_owned(),
        "all_claims := object.union(session_claims, user_claims)".to_owned(),
        "values := object_get(all_claims, rule_path, [])".to_owned(),
    ]
}

fn certificate_body(matcher: &CertificateMatcher) -> Vec<String> {
    let mut body = vec![
        "cert := crypto.x509.parse_certificates(trim_space(input.http.client_certificate.leaf))[0]".to_owned(),
        "fingerprint := crypto.sha256(base64.decode(cert.Raw))".to_owned(),
        "spki_hash := base64.encode(hex.decode(crypto.sha256(base64.decode(cert.RawSubjectPublicKeyInfo))))".to_owned(),
    ];
    if let Some(fingerprints) = &matcher.fingerprints {
        let list: Vec<String> = fingerprints.iter().map(|f| string(&hex(f))).collect();
        body.push(format!("allowed_fingerprints := [{}]", list.join(", ")));
        body.push("fingerprint == allowed_fingerprints[_]".to_owned());
    }
    if let Some(hashes) = &matcher.spki_hashes {
        use base64::Engine as _;
        let list: Vec<String> =
            hashes.iter().map(|h| string(&base64::engine::general_purpose::STANDARD.encode(h))).collect();
        body.push(format!("allowed_spki_hashes := [{}]", list.join(", ")));
        body.push("spki_hash == allowed_spki_hashes[_]".to_owned());
    }
    let sans = [
        (&matcher.san_email, "cert.EmailAddresses"),
        (&matcher.san_dns, "cert.DNSNames"),
        (&matcher.san_uri, "cert.URIStrings"),
    ];
    for (san, list) in sans {
        for condition in san.iter().flat_map(|m| &m.conditions) {
            if condition.op == StringOp::NotIn {
                // `not cert.X[_] in [...]` (no entry is in the list), spelled without a loop
                // under `not`: regorus hoists such a loop out of the negation.
                body.push(format!("count([san | san := {list}[_]; san in {}]) == 0", rego_value(&condition.value)));
            } else {
                string_condition(&mut body, &format!("{list}[_]"), condition.op, &condition.value);
            }
        }
    }
    body
}

fn ssh_keys(keys: &[SshKey]) -> String {
    use base64::Engine as _;
    let list: Vec<String> =
        keys.iter().map(|key| string(&base64::engine::general_purpose::STANDARD.encode(&key.blob))).collect();
    format!("[{}]", list.join(", "))
}

fn date_body(matcher: &DateMatcher) -> Vec<String> {
    let mut body = vec!["now := request_time_ns".to_owned()];
    if let Some(after) = matcher.after {
        body.push(format!("now >= {}", after.as_nanosecond()));
    }
    if let Some(before) = matcher.before {
        body.push(format!("now < {}", before.as_nanosecond()));
    }
    body
}

fn day_of_week_body(days: DaySet) -> Vec<String> {
    use jiff::civil::Weekday;
    let all = [
        (Weekday::Monday, "Monday"),
        (Weekday::Tuesday, "Tuesday"),
        (Weekday::Wednesday, "Wednesday"),
        (Weekday::Thursday, "Thursday"),
        (Weekday::Friday, "Friday"),
        (Weekday::Saturday, "Saturday"),
        (Weekday::Sunday, "Sunday"),
    ];
    let names: Vec<String> = all.iter().filter(|(day, _)| days.contains(*day)).map(|(_, name)| string(name)).collect();
    vec![format!("time.weekday(request_time_ns) in [{}]", names.join(", "))]
}

const NANOS_PER_DAY: i64 = 86_400_000_000_000;

fn nanos_of_day(time: jiff::civil::Time) -> i64 {
    let seconds = i64::from(time.hour()) * 3600 + i64::from(time.minute()) * 60 + i64::from(time.second());
    seconds * 1_000_000_000 + i64::from(time.subsec_nanosecond())
}

fn time_of_day_body(matcher: &TimeOfDayMatcher) -> Vec<String> {
    let after = matcher.after.map_or(0, nanos_of_day);
    let before = matcher.before.map_or(NANOS_PER_DAY, nanos_of_day);
    vec![
        format!("clock := time.clock([request_time_ns, {}])", string(&matcher.zone_name)),
        "day_ns := ((((clock[0] * 60) + clock[1]) * 60) + clock[2]) * 1000000000 + (request_time_ns % 1000000000)"
            .to_owned(),
        format!("time_of_day_within(day_ns, {after}, {before})"),
    ]
}

fn record_body(matcher: &RecordMatcher) -> Vec<String> {
    let mut body = vec![
        SESSION.to_owned(),
        format!("record := get_databroker_record({}, session.user_id)", string(&matcher.record_type)),
    ];
    let field = matcher.field.as_deref().map(string);
    let value = field.as_ref().map_or_else(|| "record".to_owned(), |f| format!("record[{f}]"));
    for condition in &matcher.conditions {
        let operand = rego_value(&condition.value);
        match condition.op {
            RecordOp::Exists => {
                let exists = condition.value.as_bool() != Some(false);
                body.push(if exists { "record != null".to_owned() } else { "record == null".to_owned() });
            }
            RecordOp::String(StringOp::Is) => {
                body.push(format!("{value} in [{operand}, [{operand}]]"));
            }
            RecordOp::String(op) => string_condition(&mut body, &value, op, &condition.value),
            RecordOp::List(op) => list_condition(&mut body, &value, op, &condition.value),
            RecordOp::Less | RecordOp::LessOrEqual | RecordOp::Equal | RecordOp::Greater | RecordOp::GreaterOrEqual => {
                let symbol = match condition.op {
                    RecordOp::Less => "<",
                    RecordOp::LessOrEqual => "<=",
                    RecordOp::Greater => ">",
                    RecordOp::GreaterOrEqual => ">=",
                    _ => "==",
                };
                body.push(format!("is_number({value})"));
                body.push(format!("{value} {symbol} {operand}"));
            }
        }
    }
    body
}

/// The conditions of a string matcher on `left`, AND-ed.
fn string_matcher(body: &mut Vec<String>, left: &str, matcher: &StringMatcher) {
    for condition in &matcher.conditions {
        string_condition(body, left, condition.op, &condition.value);
    }
}

fn string_condition(body: &mut Vec<String>, left: &str, op: StringOp, value: &Value) {
    let right = rego_value(value);
    body.push(match op {
        StringOp::Is => format!("{left} == {right}"),
        StringOp::Not => format!("{left} != {right}"),
        StringOp::Contains => format!("contains({left}, {right})"),
        StringOp::StartsWith => format!("startswith({left}, {right})"),
        StringOp::EndsWith => format!("endswith({left}, {right})"),
        StringOp::In => format!("{left} in {right}"),
        StringOp::NotIn => format!("not {left} in {right}"),
    });
}

/// The conditions of a list matcher on the list `left`, AND-ed.
fn list_matcher(body: &mut Vec<String>, left: &str, matcher: &ListMatcher) {
    for condition in &matcher.conditions {
        list_condition(body, left, condition.op, &condition.value);
    }
}

fn list_condition(body: &mut Vec<String>, left: &str, op: ListOp, value: &Value) {
    let matches = format!("count([true | some v; v = {left}[_]; v == {}])", rego_value(value));
    match op {
        ListOp::Has => body.push(format!("{matches} > 0")),
        ListOp::Is => {
            body.push(format!("count({left}) == 1"));
            body.push(format!("{matches} > 0"));
        }
        ListOp::Exclude => body.push(format!("{matches} == 0")),
    }
}

/// `results := [...]`, normalised (or inverted), then merged with `merge`.
fn combine(names: &[String], invert: Option<&str>, merge: &str) -> String {
    let mut body = format!(
        "\tresults := [{}]\n\tnormalized := [normalize_criterion_result(x) | x := results[i]]\n",
        names.join(", ")
    );
    match invert {
        Some(invert) => {
            let _ = writeln!(body, "\tinverted := [{invert}(x) | x := results[i]]");
            let _ = writeln!(body, "\tv := {merge}(inverted)");
        }
        None => {
            let _ = writeln!(body, "\tv := {merge}(normalized)");
        }
    }
    body
}

/// A JSON value as a Rego term (JSON's syntax is Rego's for these six kinds).
fn rego_value(value: &Value) -> String {
    match &value.kind {
        ValueKind::Null => "null".to_owned(),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::Number(n) => n.as_str().to_owned(),
        ValueKind::String(s) => string(s),
        ValueKind::Array(items) => {
            let items: Vec<String> = items.iter().map(rego_value).collect();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Object(entries) => {
            let entries: Vec<String> =
                entries.iter().map(|e| format!("{}: {}", string(&e.key), rego_value(&e.value))).collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

/// A Rego string literal.
fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

const DIRECTORY_USER_TYPE: &str = "pomerium.io/DirectoryUser";

const REQUEST_TIME_NS: &str = "request_time_ns := t if {
\tt := time.parse_rfc3339_ns(input.now)
}

else := t if {
\tt := time.now_ns()
}";

const INVERT_CRITERION_RESULT: &str = "invert_criterion_result(v) := out if {
\tv[0]
\tout := array.concat([false], array.slice(v, 1, count(v)))
}

else := out if {
\tnot v[0]
\tout := array.concat([true], array.slice(v, 1, count(v)))
}
";

const NORMALIZE_CRITERION_RESULT: &str = "normalize_criterion_result(result) := v if {
\tis_boolean(result)
\tv := [result, set()]
}

else := v if {
\tis_array(result)
\tv := result
}

else := [false, set()]
";

const OBJECT_UNION: &str = "object_union(xs) := merged if {
\tmerged := {k: v |
\t\tsome obj in xs
\t\tsome k, _ in obj
\t\tvs := [w | some other in xs; w := other[k]]
\t\tv := vs[count(vs) - 1]
\t}
}
";

const MERGE_WITH_AND: &str = "merge_with_and(results) := [true, reasons, additional_data] if {
\ttrue_results := [x | some x in results; x[0]]
\tcount(true_results) == count(results)
\treasons := union({x[1] | some x in true_results})
\tadditional_data := object_union({x[2] | some x in true_results})
}

else := [false, reasons, additional_data] if {
\tfalse_results := [x | some x in results; not x[0]]
\treasons := union({x[1] | some x in false_results})
\tadditional_data := object_union({x[2] | some x in false_results})
}
";

const MERGE_WITH_OR: &str = "merge_with_or(results) := [true, reasons, additional_data] if {
\ttrue_results := [x | some x in results; x[0]]
\tcount(true_results) > 0
\treasons := union({x[1] | some x in true_results})
\tadditional_data := object_union({x[2] | some x in true_results})
}

else := [false, reasons, additional_data] if {
\tfalse_results := [x | some x in results; not x[0]]
\treasons := union({x[1] | some x in false_results})
\tadditional_data := object_union({x[2] | some x in false_results})
}
";

const GET_SESSION: &str = "get_session(id) := v if {
\tv := get_databroker_record(\"type.googleapis.com/user.ServiceAccount\", id)
\tv != null
}

else := iv if {
\tv := get_databroker_record(\"type.googleapis.com/session.Session\", id)
\tv != null
\tobject.get(v, \"impersonate_session_id\", \"\") != \"\"
\tiv := get_databroker_record(\"type.googleapis.com/session.Session\", v.impersonate_session_id)
\tiv != null
}

else := v if {
\tv := get_databroker_record(\"type.googleapis.com/session.Session\", id)
\tv != null
\tobject.get(v, \"impersonate_session_id\", \"\") == \"\"
}

else := {}
";

const GET_USER: &str = "get_user(session) := v if {
\tv := get_databroker_record(\"type.googleapis.com/user.User\", session.user_id)
\tv != null
}

else := {}
";

const GET_DIRECTORY_USER: &str = "get_directory_user(session) := v if {
\tv := get_databroker_record(\"pomerium.io/DirectoryUser\", session.user_id)
\tv != null
}

else := {}
";

const GET_USER_EMAIL: &str = "get_user_email(session, user, directory_user) := v if {
\tv := object.get(directory_user, \"email\", \"\")
\tv != \"\"
}

else := v if {
\tv := user.email
}

else := \"\"
";

const OBJECT_GET: &str = "# object_get(obj, key, def): obj[key] if present; else the key split at `/` (with `.` read as
# `/`) walked through nested objects, two to five segments deep; else def.
object_get(obj, key, def) := value if {
\tmissing := \"10a0fd35-0f1a-4e5b-97ce-631e89e1bafa\"
\tvalue := object.get(obj, key, missing)
\tvalue != missing
}

else := value if {
\tsegments := split(replace(key, \".\", \"/\"), \"/\")
\tcount(segments) == 2
\to1 := object.get(obj, segments[0], {})
\tvalue := object.get(o1, segments[1], def)
}

else := value if {
\tsegments := split(replace(key, \".\", \"/\"), \"/\")
\tcount(segments) == 3
\to1 := object.get(obj, segments[0], {})
\to2 := object.get(o1, segments[1], {})
\tvalue := object.get(o2, segments[2], def)
}

else := value if {
\tsegments := split(replace(key, \".\", \"/\"), \"/\")
\tcount(segments) == 4
\to1 := object.get(obj, segments[0], {})
\to2 := object.get(o1, segments[1], {})
\to3 := object.get(o2, segments[2], {})
\tvalue := object.get(o3, segments[3], def)
}

else := value if {
\tsegments := split(replace(key, \".\", \"/\"), \"/\")
\tcount(segments) == 5
\to1 := object.get(obj, segments[0], {})
\to2 := object.get(o1, segments[1], {})
\to3 := object.get(o2, segments[2], {})
\to4 := object.get(o3, segments[3], {})
\tvalue := object.get(o4, segments[4], def)
}

else := value if {
\tvalue := object.get(obj, key, def)
}
";

const GET_DEVICE_CREDENTIAL: &str = "get_device_credential(session, device_type_id) := v if {
\tdevice_credential_id := [x.Credential.Id | some x in session.device_credentials; x.type_id == device_type_id][0]
\tv := get_databroker_record(\"type.googleapis.com/pomerium.device.Credential\", device_credential_id)
\tv != null
}

else := {}
";

const GET_DEVICE_ENROLLMENT: &str = "get_device_enrollment(device_credential) := v if {
\tv := get_databroker_record(\"type.googleapis.com/pomerium.device.Enrollment\", device_credential.enrollment_id)
\tv != null
}

else := {}
";

const TIME_OF_DAY_WITHIN: &str =
    "# time_of_day_within(t, after, before): t (nanoseconds since midnight) is in [after, before);
# when after is later than before the window wraps past midnight. Ours (Enterprise criterion).
time_of_day_within(t, after, before) if {
\tafter <= before
\tt >= after
\tt < before
}

time_of_day_within(t, after, before) if {
\tafter > before
\tt >= after
}

time_of_day_within(t, after, before) if {
\tafter > before
\tt < before
}
";

#[cfg(test)]
mod tests {
    use super::*;

    fn emit_yaml(source: &str) -> String {
        let compiled = ppl::compile(source, ppl::Syntax::Yaml);
        assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
        emit(compiled.ast.as_ref().unwrap()).unwrap()
    }

    /// The module without the support functions every module ends with.
    fn rules_of(module: &str) -> String {
        module.split("\ninvert_criterion_result(v) := out if {").next().unwrap().to_owned()
    }

    /// The support functions after the five every module has.
    fn helpers_of(module: &str) -> Vec<&str> {
        module
            .lines()
            .filter(|line| line.contains("(") && line.ends_with(" if {") && !line.starts_with('\t'))
            .map(|line| line.split('(').next().unwrap())
            .skip(5)
            .fold(Vec::new(), |mut names, name| {
                if !names.contains(&name) {
                    names.push(name);
                }
                names
            })
    }

    #[test]
    fn a_whole_module() {
        let module = emit_yaml(
            "allow:
  and:
    - domain: {is: example.com}
    - http_path: {starts_with: /admin}
  or:
    - claim/groups: admins
deny:
  nor:
    - source_ip: 10.0.0.0/8
    - device: {approved: true}
",
        );
        insta::assert_snapshot!(module);
    }

    #[test]
    fn operators_counters_and_action_order() {
        // The shape of Pomerium's generator_test: every operator, two allow rules, a deny `nor`;
        // the deny rule comes first in the source but allow is generated first.
        let module = emit_yaml(
            "- deny:
    nor: [{accept: 1}, {accept: 1}]
- allow:
    and: [{accept: 1}, {accept: 1}]
    or: [{accept: 1}, {accept: 1}]
    not: [{accept: 1}]
    nor: [{reject: 1}]
- allow:
    and: [{accept: 1}]
    or: []
",
        );
        insta::assert_snapshot!(rules_of(&module));
        assert_eq!(helpers_of(&module), Vec::<&str>::new());
    }

    #[test]
    fn identity_criteria() {
        let module = emit_yaml(
            "allow:
  or:
    - authenticated_user: true
    - user: {not_in: [u1, u2]}
    - email: {ends_with: '@example.com', not: root@example.com}
    - claim/example.com/roles: {is: admin}
    - groups: {has: g1, exclude: g2}
    - ssh_username_matches_email: true
    - ssh_username_matches_claim: unix_user
",
        );
        insta::assert_snapshot!(rules_of(&module));
        assert_eq!(
            helpers_of(&module),
            ["get_session", "get_user", "get_directory_user", "get_user_email", "object_get"]
        );
    }

    #[test]
    fn request_criteria() {
        let module = emit_yaml(
            "allow:
  and:
    - http_method: {in: [GET, HEAD]}
    - http_path: /
    - cors_preflight: true
    - source_ip: ['192.168.1.1/24', '::ffff:10.0.0.0/104', '2001:db8::1']
    - mcp_tool: {not_in: [drop_table]}
    - ssh_username: {contains: \"\\\"\"}
deny:
  or:
    - invalid_client_certificate: true
",
        );
        insta::assert_snapshot!(rules_of(&module));
        assert_eq!(helpers_of(&module), Vec::<&str>::new());
    }

    #[test]
    fn device_certificate_and_ssh_criteria() {
        let module = emit_yaml(
            "allow:
  or:
    - device: {type: enclave_only, approved: false, is: dc1}
    - device: {}
    - client_certificate:
        fingerprint: ['B0:32:9B:30:16:73:43:54:FE:D5:DC:C9:FB:19:19:BC:8A:B5:EA:D4:87:5D:3E:74:72:C7:4B:6D:68:BF:2C:23']
        spki_hash: sBTcN8xKxgcQ3nF4X3jPQq5Z2nV3gaj0oVRl+DYVjPY=
        san_email: {ends_with: '@example.com', not_in: [root@example.com]}
        san_uri: {starts_with: 'spiffe://'}
    - ssh_publickey: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIORKvsyJ6cZjLewqPh4AouRYxRA8+6oIB/8urYLR0jnm alice
    - ssh_ca: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHy2L2SAeqvnASq/VQ9Hek4SYCFnGbiWs66cFcnTLxlN ca]
",
        );
        insta::assert_snapshot!(rules_of(&module));
        assert_eq!(helpers_of(&module), ["get_session", "get_device_credential", "get_device_enrollment"]);
    }

    #[test]
    fn enterprise_criteria_are_ours() {
        let module = emit_yaml(
            "allow:
  and:
    - date: {after: '2026-10-01T00:00:00-07:00', before: '2027-04-01'}
    - day_of_week: mon-wed,fri
    - time_of_day: {timezone: Europe/Berlin, after: '10:30 PM', before: '6:00:00.5'}
    - time_of_day: {timezone: UTC, before: '12:00'}
    - record:
        type: example.com/hr/worker
        field: level
        is: senior
        '>=': 3
        exists: true
    - record: {type: example.com/hr/other, exists: false}
",
        );
        insta::assert_snapshot!(rules_of(&module));
        assert_eq!(helpers_of(&module), ["get_session", "time_of_day_within"]);
        // The clock rule is emitted once, before the first criterion that reads it.
        assert_eq!(module.matches("request_time_ns := t if {").count(), 1);
    }

    /// Data each criterion accepts.
    fn sample(name: &str) -> &'static str {
        match name {
            "claim" => "{has: admins}",
            "client_certificate" => "{san_dns: {is: a.example.com}}",
            "device" => "{approved: true}",
            "source_ip" => "10.0.0.0/8",
            "ssh_publickey" | "ssh_ca" => {
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHy2L2SAeqvnASq/VQ9Hek4SYCFnGbiWs66cFcnTLxlN ca"
            }
            "ssh_username_matches_claim" => "unix_user",
            "date" => "{after: '2026-01-01T00:00:00Z'}",
            "day_of_week" => "mon-fri",
            "time_of_day" => "{timezone: UTC, after: '9:00', before: '17:00'}",
            "record" => "{type: t, field: f, is: v}",
            _ => "x",
        }
    }

    #[test]
    fn every_criterion_emits() {
        for info in ppl::criteria::CRITERIA {
            let key = match info.name {
                "claim" => "claim/groups".to_owned(),
                name => name.to_owned(),
            };
            let source = format!("allow:\n  and:\n    - {key}: {}\n", sample(info.name));
            let module = emit_yaml(&source);
            let name = info.name;
            assert!(module.contains(&format!("\n{name}_0 := [")), "{name}:\n{module}");
            assert!(module.contains(&format!("and_0 := v if {{\n\tresults := [{name}_0]\n")), "{name}:\n{module}");
            assert!(module.contains("\nallow := v if {\n"), "{name}");
            assert!(!module.contains("\ndeny := v if"), "{name}");
            // Every branch of every chain is closed.
            assert_eq!(module.matches('{').count(), module.matches('}').count(), "{name}");
        }
    }

    #[test]
    fn a_policy_without_rules_keeps_the_defaults() {
        let module = emit_yaml("{}");
        assert!(module.starts_with(
            "package pomerium.policy\n\nimport rego.v1\n\ndefault allow := [false, set()]\n\ndefault deny := [false, set()]\n\ninvert_criterion_result(v)"
        ));
        assert!(!module.contains("allow := v"));
        assert_eq!(emit_yaml("allow:\n  and: []\n"), module, "an empty block is no term");
    }

    #[test]
    fn a_policy_that_does_not_check_is_an_error() {
        let parsed = ppl::parse("allow:\n  and:\n    - emial: a@example.com\n", ppl::Syntax::Yaml);
        let error = emit(parsed.policy.as_ref().unwrap()).unwrap_err();
        assert_eq!(error.errors.len(), 1);
        assert!(error.to_string().starts_with("the policy does not compile: "), "{error}");
    }

    #[test]
    fn string_literals_are_escaped() {
        assert_eq!(string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}

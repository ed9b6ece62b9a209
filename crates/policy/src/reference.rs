//! The reference interpreter: PPL's semantics read plainly off Pomerium's rule bodies, over the
//! checked policy, one criterion at a time, recording what each criterion read.
//!
//! It is the definition the optimized evaluator ([`crate::Program`]) is tested against, and it is
//! what `explain` prints. It favours being obviously right over being fast: it allocates, looks
//! records up again for every criterion, and never skips a criterion.
//!
//! "Undefined" matters: in Rego a missing value makes an expression undefined, so `is`,
//! `contains` and `in` fail on it while `not_in` (a negation) holds. Helpers here take
//! `Option`s and keep that distinction.

use crate::crypto::verify_ssh_user_certificate;
use crate::decision::{Decision, Merge, RuleResult};
use crate::input::Input;
use crate::reason::{Reason, ReasonSet};
use crate::records::{self, Principal, Records};
use ppl::ast::{Action, Operator};
use ppl::model::{
    CertificateMatcher, CriterionKind, DeviceMatcher, ListMatcher, ListOp, RecordMatcher, RecordOp, StringMatcher,
    StringOp,
};
use ppl::value::{Value, ValueKind};
use serde_json::Value as Json;

/// Everything the reference evaluation found: the decision and, per rule, block and criterion,
/// its result and what it read.
#[derive(Debug, Clone)]
pub struct Trace<'m> {
    pub rules: Vec<RuleTrace<'m>>,
    pub decision: Decision<'m>,
}

#[derive(Debug, Clone)]
pub struct RuleTrace<'m> {
    pub rule: &'m ppl::model::Rule,
    pub blocks: Vec<BlockTrace<'m>>,
}

#[derive(Debug, Clone)]
pub struct BlockTrace<'m> {
    pub block: &'m ppl::model::Block,
    pub result: RuleResult<'m>,
    pub criteria: Vec<CriterionTrace<'m>>,
}

#[derive(Debug, Clone)]
pub struct CriterionTrace<'m> {
    pub criterion: &'m ppl::model::Criterion,
    pub result: RuleResult<'m>,
    /// What the criterion read, e.g. `("email", Some("alice@example.com"))`; `None` is absent.
    pub observed: Vec<(&'static str, Option<String>)>,
}

/// Evaluates `policy` for `input`.
pub fn evaluate<'m>(policy: &'m ppl::model::Policy, input: &Input<'_>, records: &dyn Records) -> Trace<'m> {
    let cx = Cx { input, records };
    let rules: Vec<RuleTrace<'m>> = policy
        .rules
        .iter()
        .map(|rule| RuleTrace { rule, blocks: rule.blocks.iter().map(|block| evaluate_block(block, &cx)).collect() })
        .collect();
    let action = |action: Action| {
        let mut merge = Merge::or();
        let mut any = false;
        for rule in rules.iter().filter(|r| r.rule.action == action) {
            for block in rule.blocks.iter().filter(|b| !b.block.criteria.is_empty()) {
                merge.add(block.result);
                any = true;
            }
        }
        if any { merge.finish() } else { RuleResult { value: false, reasons: ReasonSet::EMPTY, device_type: None } }
    };
    let decision = Decision { allow: action(Action::Allow), deny: action(Action::Deny) };
    Trace { rules, decision }
}

fn evaluate_block<'m>(block: &'m ppl::model::Block, cx: &Cx<'_, '_>) -> BlockTrace<'m> {
    let criteria: Vec<CriterionTrace<'m>> = block
        .criteria
        .iter()
        .map(|criterion| {
            let mut observed = Vec::new();
            let result = evaluate_criterion(&criterion.kind, cx, &mut observed);
            CriterionTrace { criterion, result, observed }
        })
        .collect();
    let (mut merge, invert) = match block.operator {
        Operator::And => (Merge::and(), false),
        Operator::Or => (Merge::or(), false),
        Operator::Not => (Merge::and(), true),
        Operator::Nor => (Merge::or(), true),
    };
    for trace in &criteria {
        merge.add(if invert { trace.result.inverted() } else { trace.result });
    }
    BlockTrace { block, result: merge.finish(), criteria }
}

struct Cx<'a, 'r> {
    input: &'a Input<'a>,
    records: &'r dyn Records,
}

type Observed = Vec<(&'static str, Option<String>)>;

impl<'a, 'r> Cx<'a, 'r> {
    fn principal(&self) -> Option<Principal<'r>> {
        records::resolve_session(self.records, self.input.session_id, self.input.now)
    }

    fn user(&self, principal: Option<Principal<'r>>) -> Option<&'r records::User> {
        principal.and_then(|p| p.user_id()).and_then(|id| self.records.user(id))
    }

    fn directory_user(&self, principal: Option<Principal<'r>>) -> Option<&'r records::DirectoryUser> {
        principal.and_then(|p| p.user_id()).and_then(|id| self.records.directory_user(id))
    }

    fn email(&self, principal: Option<Principal<'r>>) -> &'r str {
        records::user_email(self.user(principal), self.directory_user(principal))
    }

    fn claim(&self, principal: Option<Principal<'r>>, name: &str) -> Option<&'r Json> {
        records::claim(principal.and_then(|p| p.claims()), self.user(principal).map(|u| &u.claims), name)
    }
}

/// The Session template: pass; else fail when a session resolves; else user-unauthenticated.
fn session_rule<'m>(body: bool, principal: Option<Principal<'_>>, pass: Reason, fail: Reason) -> RuleResult<'m> {
    match (body, principal) {
        (true, _) => RuleResult::new(true, pass),
        (false, Some(_)) => RuleResult::new(false, fail),
        (false, None) => RuleResult::new(false, Reason::UserUnauthenticated),
    }
}

/// The Plain template.
fn plain_rule<'m>(body: bool, pass: Reason, fail: Reason) -> RuleResult<'m> {
    if body { RuleResult::new(true, pass) } else { RuleResult::new(false, fail) }
}

fn observe(observed: &mut Observed, what: &'static str, value: Option<&str>) {
    observed.push((what, value.map(str::to_owned)));
}

fn evaluate_criterion<'m>(kind: &'m CriterionKind, cx: &Cx<'_, '_>, observed: &mut Observed) -> RuleResult<'m> {
    let input = cx.input;
    match kind {
        CriterionKind::Accept => RuleResult::new(true, Reason::Accept),
        CriterionKind::Reject => RuleResult::new(false, Reason::Reject),
        CriterionKind::AuthenticatedUser => {
            let principal = cx.principal();
            let user_id = principal.and_then(|p| p.user_id());
            observe(observed, "session", principal.map(|p| p.id()));
            observe(observed, "user id", user_id);
            session_rule(user_id.is_some(), principal, Reason::UserOk, Reason::UserUnauthorized)
        }
        CriterionKind::User(m) => {
            let principal = cx.principal();
            let user_id = principal.and_then(|p| p.user_id());
            observe(observed, "user id", user_id);
            // `user_id := session.user_id` binds first: without a user id the body fails, even
            // for `not_in`.
            let body = user_id.is_some_and(|id| string_matches(m, Some(id)));
            session_rule(body, principal, Reason::UserOk, Reason::UserUnauthorized)
        }
        CriterionKind::Email(m) => {
            let principal = cx.principal();
            let email = cx.email(principal);
            observe(observed, "email", Some(email));
            session_rule(string_matches(m, Some(email)), principal, Reason::EmailOk, Reason::EmailUnauthorized)
        }
        CriterionKind::Domain(m) => {
            let principal = cx.principal();
            let domain = cx.email(principal).split('@').nth(1);
            observe(observed, "domain", domain);
            // `domain := split(email, "@")[1]` binds first: an email without `@` fails the body.
            let body = domain.is_some_and(|d| string_matches(m, Some(d)));
            session_rule(body, principal, Reason::DomainOk, Reason::DomainUnauthorized)
        }
        CriterionKind::Claim { name, matcher } => {
            let principal = cx.principal();
            let values = cx.claim(principal, name);
            observed.push(("claim", values.map(Json::to_string)));
            let list = Some(values.and_then(Json::as_array).map_or(&[][..], Vec::as_slice));
            session_rule(list_matches(matcher, list), principal, Reason::ClaimOk, Reason::ClaimUnauthorized)
        }
        CriterionKind::Groups(m) => {
            let principal = cx.principal();
            // `get_databroker_record(type, session.user_id)`: no session or user id is undefined, a
            // missing record is null (and `object.get(null, ...)` undefined): the body fails.
            let directory_user = cx.directory_user(principal);
            let groups = directory_user.map(|d| d.group_ids.as_deref().unwrap_or_default());
            observed.push(("groups", groups.map(|g| Json::from(g.to_vec()).to_string())));
            session_rule(list_matches(m, groups), principal, Reason::GroupsOk, Reason::GroupsUnauthorized)
        }
        CriterionKind::HttpMethod(m) => {
            observe(observed, "method", input.http.method);
            plain_rule(string_matches(m, input.http.method), Reason::HttpMethodOk, Reason::HttpMethodUnauthorized)
        }
        CriterionKind::HttpPath(m) => {
            observe(observed, "path", input.http.path);
            plain_rule(string_matches(m, input.http.path), Reason::HttpPathOk, Reason::HttpPathUnauthorized)
        }
        CriterionKind::CorsPreflight => {
            let method = input.http.method;
            let request_method = input.http.header("Access-Control-Request-Method");
            let origin = input.http.header("Origin");
            observe(observed, "method", method);
            observe(observed, "Access-Control-Request-Method", request_method);
            observe(observed, "Origin", origin);
            let body = method == Some("OPTIONS")
                && request_method.is_some_and(|v| !v.is_empty())
                && origin.is_some_and(|v| !v.is_empty());
            plain_rule(body, Reason::CorsRequest, Reason::NonCorsRequest)
        }
        CriterionKind::SourceIp(networks) => {
            let ip = input.http.ip.map(unmapped);
            observed.push(("ip", ip.map(|ip| ip.to_string())));
            let body = ip.is_some_and(|ip| networks.iter().any(|net| net.contains(&ip)));
            plain_rule(body, Reason::SourceIpOk, Reason::SourceIpUnauthorized)
        }
        CriterionKind::ClientCertificate(m) => {
            let facts = input.http.client_certificate.leaf;
            observed.push(("certificate fingerprint", facts.map(|f| hex(&f.fingerprint))));
            let body = facts.is_some_and(|facts| certificate_matches(m, facts));
            plain_rule(body, Reason::ClientCertificateOk, Reason::ClientCertificateUnauthorized)
        }
        CriterionKind::InvalidClientCertificate => {
            let valid = input.is_valid_client_certificate;
            let presented = input.http.client_certificate.presented;
            observed.push(("valid client certificate", valid.map(|v| v.to_string())));
            observed.push(("presented", presented.map(|v| v.to_string())));
            if valid == Some(true) {
                RuleResult::new(false, Reason::ValidClientCertificate)
            } else if presented == Some(false) {
                RuleResult::new(true, Reason::ClientCertificateRequired)
            } else {
                RuleResult::new(true, Reason::InvalidClientCertificate)
            }
        }
        CriterionKind::Device(m) => device(m, cx, observed),
        CriterionKind::McpTool(m) => {
            observe(observed, "mcp method", input.mcp.method);
            observe(observed, "mcp tool", input.mcp.tool_name);
            if input.mcp.method != Some("tools/call") {
                RuleResult::new(false, Reason::McpNotAToolCall)
            } else if string_matches(m, input.mcp.tool_name) {
                RuleResult::new(true, Reason::McpToolMatch)
            } else {
                RuleResult::new(false, Reason::McpToolNoMatch)
            }
        }
        CriterionKind::SshUsername(m) => {
            observe(observed, "ssh username", input.ssh.username);
            plain_rule(string_matches(m, input.ssh.username), Reason::SshUsernameOk, Reason::SshUsernameUnauthorized)
        }
        CriterionKind::SshUsernameMatchesEmail => {
            let principal = cx.principal();
            let email = cx.email(principal);
            let local = email.split('@').next().unwrap_or_default();
            observe(observed, "ssh username", input.ssh.username);
            observe(observed, "email", Some(email));
            let body = input.ssh.username == Some(local);
            session_rule(body, principal, Reason::SshUsernameOk, Reason::SshUsernameUnauthorized)
        }
        CriterionKind::SshUsernameMatchesClaim(name) => {
            let principal = cx.principal();
            let values = cx.claim(principal, name);
            observe(observed, "ssh username", input.ssh.username);
            observed.push(("claim", values.map(Json::to_string)));
            let body = input.ssh.username.is_some_and(|username| {
                values.and_then(Json::as_array).is_some_and(|list| list.iter().any(|v| v.as_str() == Some(username)))
            });
            session_rule(body, principal, Reason::SshUsernameOk, Reason::SshUsernameUnauthorized)
        }
        CriterionKind::SshPublickey(keys) => {
            let key = input.ssh.publickey;
            let body = key.is_some_and(|key| keys.iter().any(|k| k.blob == key));
            plain_rule(body, Reason::SshPublickeyOk, Reason::SshPublickeyUnauthorized)
        }
        CriterionKind::SshCa(authorities) => {
            observe(observed, "ssh username", input.ssh.username);
            let body = match (input.ssh.username, input.ssh.publickey) {
                (Some(username), Some(key)) => verify_ssh_user_certificate(key, username, authorities, input.now),
                _ => false,
            };
            plain_rule(body, Reason::SshPublickeyOk, Reason::SshPublickeyUnauthorized)
        }
        CriterionKind::Date(m) => {
            observe(observed, "now", Some(&input.now.to_string()));
            plain_rule(crate::time::date_matches(m, input.now), Reason::DateOk, Reason::DateUnauthorized)
        }
        CriterionKind::DayOfWeek(days) => {
            observe(observed, "now", Some(&input.now.to_string()));
            plain_rule(crate::time::day_matches(*days, input.now), Reason::DayOfWeekOk, Reason::DayOfWeekUnauthorized)
        }
        CriterionKind::TimeOfDay(m) => {
            observe(observed, "now", Some(&input.now.to_string()));
            plain_rule(
                crate::time::time_of_day_matches(m, input.now),
                Reason::TimeOfDayOk,
                Reason::TimeOfDayUnauthorized,
            )
        }
        CriterionKind::Record(m) => {
            let principal = cx.principal();
            let user_id = principal.and_then(|p| p.user_id());
            let record = user_id.and_then(|id| cx.records.external(&m.record_type, id));
            observed.push(("record", record.map(Json::to_string)));
            // Without a user id the lookup itself is undefined and the body fails; with one, a
            // missing record is null and its fields are undefined.
            let body = user_id.is_some() && record_matches(m, record);
            session_rule(body, principal, Reason::RecordOk, Reason::RecordUnauthorized)
        }
    }
}

/// The Device template: the body holds; or a session, credential and enrollment exist
/// (unauthorized); or a session exists (unauthenticated device); or no session.
fn device<'m>(m: &'m DeviceMatcher, cx: &Cx<'_, '_>, observed: &mut Observed) -> RuleResult<'m> {
    let device_type: &'m str = m.device_type.as_deref().unwrap_or("any");
    let principal = cx.principal();
    let credential = principal
        .and_then(|p| p.device_credentials().iter().find(|c| c.type_id.as_deref() == Some(device_type)))
        .and_then(|c| c.id.as_deref())
        .and_then(|id| cx.records.device_credential(id));
    let enrollment =
        credential.and_then(|c| c.enrollment_id.as_deref()).and_then(|id| cx.records.device_enrollment(id));
    let approved = enrollment.and_then(|e| e.approved_by.as_deref()).is_some_and(|by| !by.is_empty());
    observe(observed, "device credential", credential.map(|c| c.id.as_str()));
    observe(observed, "device approved by", enrollment.and_then(|e| e.approved_by.as_deref()));
    let body = m.approved.is_none_or(|wanted| wanted == approved)
        && m.id.as_deref().is_none_or(|id| credential.is_some_and(|c| c.id == id))
        && (m.device_type.is_none() || credential.is_some());
    let reason = if body {
        Reason::DeviceOk
    } else if principal.is_some() && credential.is_some() && enrollment.is_some() {
        Reason::DeviceUnauthorized
    } else if principal.is_some() {
        Reason::DeviceUnauthenticated
    } else {
        Reason::UserUnauthenticated
    };
    RuleResult { value: body, reasons: ReasonSet::of(reason), device_type: Some(device_type) }
}

/// A string matcher: every condition holds (Rego's undefined where the value is absent).
pub fn string_matches(m: &StringMatcher, left: Option<&str>) -> bool {
    m.conditions.iter().all(|c| string_condition(c.op, &c.value, left))
}

pub fn string_condition(op: StringOp, right: &Value, left: Option<&str>) -> bool {
    let right_str = right.as_str();
    let member = |list: &Value| {
        left.is_some_and(|l| list.as_array().is_some_and(|items| items.iter().any(|i| i.as_str() == Some(l))))
    };
    match op {
        StringOp::Is => left.is_some_and(|l| right_str == Some(l)),
        StringOp::Not => left.is_some_and(|l| right_str != Some(l)),
        StringOp::Contains => left.zip(right_str).is_some_and(|(l, r)| l.contains(r)),
        StringOp::StartsWith => left.zip(right_str).is_some_and(|(l, r)| l.starts_with(r)),
        StringOp::EndsWith => left.zip(right_str).is_some_and(|(l, r)| l.ends_with(r)),
        StringOp::In => member(right),
        // `not x in [...]`: a negation, so it also holds when `x` is undefined.
        StringOp::NotIn => !member(right),
    }
}

/// A string list matcher over a list (`None`: undefined, so every condition fails).
pub fn list_matches(m: &ListMatcher, list: Option<&[Json]>) -> bool {
    m.conditions.iter().all(|c| {
        let Some(list) = list else { return false };
        let has = list.iter().any(|item| json_equals(&c.value, item));
        match c.op {
            ListOp::Has => has,
            ListOp::Is => list.len() == 1 && has,
            ListOp::Exclude => !has,
        }
    })
}

/// Rego equality between a policy value and a record value; numbers compare by value.
pub fn json_equals(policy: &Value, record: &Json) -> bool {
    match (&policy.kind, record) {
        (ValueKind::Null, Json::Null) => true,
        (ValueKind::Bool(a), Json::Bool(b)) => a == b,
        (ValueKind::Number(a), Json::Number(b)) => b.as_f64() == Some(a.as_f64()),
        (ValueKind::String(a), Json::String(b)) => a == b,
        (ValueKind::Array(a), Json::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_equals(x, y)),
        (ValueKind::Object(a), Json::Object(b)) => {
            a.len() == b.len() && a.iter().all(|e| b.get(&e.key).is_some_and(|v| json_equals(&e.value, v)))
        }
        _ => false,
    }
}

fn certificate_matches(m: &CertificateMatcher, facts: &crate::crypto::CertificateFacts) -> bool {
    let sans = |matcher: &Option<StringMatcher>, entries: &[String]| {
        matcher.as_ref().is_none_or(|matcher| {
            matcher.conditions.iter().all(|c| entries.iter().any(|entry| string_condition(c.op, &c.value, Some(entry))))
        })
    };
    m.fingerprints.as_ref().is_none_or(|list| list.contains(&facts.fingerprint))
        && m.spki_hashes.as_ref().is_none_or(|list| list.contains(&facts.spki_hash))
        && sans(&m.san_email, &facts.san_emails)
        && sans(&m.san_dns, &facts.san_dns)
        && sans(&m.san_uri, &facts.san_uris)
}

/// The `record` criterion (ours; Pomerium documents it for Enterprise): conditions on a field of
/// the external record whose id is the user's id, for a user that has an id (the caller checks).
/// `exists` tests the record itself; the other operators read the field in place, so an absent
/// field (or record) is undefined: `not_in` and `exclude` hold, the others fail, as for the other
/// criteria.
pub fn record_matches(m: &RecordMatcher, record: Option<&Json>) -> bool {
    m.conditions.iter().all(|c| {
        if c.op == RecordOp::Exists {
            return c.value.as_bool() == Some(record.is_some());
        }
        let field = record.and_then(|r| m.field.as_deref().and_then(|f| r.get(f)));
        let member = |value: &Json| c.value.as_array().is_some_and(|items| items.iter().any(|i| json_equals(i, value)));
        match c.op {
            RecordOp::String(StringOp::Is) => match field {
                Some(Json::Array(items)) => items.len() == 1 && items.iter().any(|i| json_equals(&c.value, i)),
                Some(other) => json_equals(&c.value, other),
                None => false,
            },
            RecordOp::String(op) => match field {
                None | Some(Json::String(_)) => string_condition(op, &c.value, field.and_then(Json::as_str)),
                // A value of another kind: membership and `not` compare values; text operators fail.
                Some(other) => match op {
                    StringOp::In => member(other),
                    StringOp::NotIn => !member(other),
                    StringOp::Not => !json_equals(&c.value, other),
                    _ => false,
                },
            },
            RecordOp::List(op) => {
                let has =
                    field.and_then(Json::as_array).is_some_and(|list| list.iter().any(|i| json_equals(&c.value, i)));
                if op == ListOp::Exclude { !has } else { has }
            }
            RecordOp::Exists => true,
            compare => {
                let (Some(left), Some(right)) = (field.and_then(Json::as_f64), c.value.kind_number()) else {
                    return false;
                };
                match compare {
                    RecordOp::Less => left < right,
                    RecordOp::LessOrEqual => left <= right,
                    RecordOp::Equal => left == right,
                    RecordOp::Greater => left > right,
                    _ => left >= right,
                }
            }
        }
    })
}

trait NumberValue {
    fn kind_number(&self) -> Option<f64>;
}

impl NumberValue for Value {
    fn kind_number(&self) -> Option<f64> {
        match &self.kind {
            ValueKind::Number(n) => Some(n.as_f64()),
            _ => None,
        }
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address (Go compares them that way).
pub fn unmapped(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! Why a request was not allowed, as values: the blocks that decided against it (every matching
//! deny block, or the allow block nearest to allowing) and the criteria that would have to change.
//!
//! Two readers word these differently. `pomerium-policy explain` shows the policy's author each
//! criterion with its source line and what it read. The deny page ([`ForUser`]) shows the person
//! who was denied what about *their* request fell short, in plain words.
//!
//! Invariant: [`ForUser`] never contains a value from the policy (another user's email in an `in`
//! list, an allowed network, a group name), only what the request itself carried, and of that only
//! what identifies the user to themself (never a session id or a record).

use crate::decision::Verdict;
use crate::reason::Reason;
use crate::reference::{BlockTrace, CriterionTrace, Trace};
use ppl::ast::{Action, Operator};
use ppl::model::CriterionKind;

/// A block that decided against the request, and the criteria that made it so.
#[derive(Debug)]
pub struct Miss<'t> {
    /// `Deny`: a deny block that matched. `Allow`: the allow block nearest to allowing.
    pub action: Action,
    pub block: &'t BlockTrace<'t>,
    /// For a deny block, the criteria that made it match; for an allow block, those that would
    /// have to change for it to allow.
    pub failing: Vec<&'t CriterionTrace<'t>>,
}

impl Miss<'_> {
    /// How many criteria would have to change for the block to decide the other way.
    pub fn distance(&self) -> usize {
        match self.block.block.operator {
            Operator::And | Operator::Not => self.failing.len(),
            Operator::Or | Operator::Nor => usize::from(!self.failing.is_empty()),
        }
    }

    /// Whether the block inverts its criteria (`not`, `nor`).
    pub fn inverted(&self) -> bool {
        matches!(self.block.block.operator, Operator::Not | Operator::Nor)
    }
}

/// The blocks that decide `verdict` against the request: every deny block that matched when the
/// deny side is true, else the allow block needing the fewest changes. Empty when allowed.
pub fn misses<'t>(trace: &'t Trace<'t>, verdict: Verdict) -> Vec<Miss<'t>> {
    if verdict == Verdict::Allow {
        return Vec::new();
    }
    let blocks = |action: Action| {
        trace
            .rules
            .iter()
            .filter(move |r| r.rule.action == action)
            .flat_map(|r| r.blocks.iter())
            .filter(|b| !b.block.criteria.is_empty())
    };
    if trace.decision.deny.value {
        return blocks(Action::Deny)
            .filter(|b| b.result.value)
            .map(|block| Miss { action: Action::Deny, block, failing: deciding(block, true) })
            .collect();
    }
    blocks(Action::Allow)
        .map(|block| Miss { action: Action::Allow, block, failing: deciding(block, false) })
        .min_by_key(Miss::distance)
        .into_iter()
        .collect()
}

/// The criteria of `block` whose effective value (after the block's inversion) is `matched`.
fn deciding<'t>(block: &'t BlockTrace<'t>, matched: bool) -> Vec<&'t CriterionTrace<'t>> {
    let inverted = matches!(block.block.operator, Operator::Not | Operator::Nor);
    block.criteria.iter().filter(|c| (c.result.value != inverted) == matched).collect()
}

/// A denial worded for the person denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForUser {
    /// One sentence: what happened.
    pub summary: String,
    /// What about the request fell short, a line each (empty when nothing more can be said).
    pub findings: Vec<String>,
    /// What the user can do.
    pub remediation: String,
}

impl ForUser {
    /// Words `trace`'s denial for the user. `trace` must be the reference evaluation of the
    /// route's policy for the denied request, and `verdict` the verdict the request got.
    pub fn new(trace: &Trace<'_>, verdict: Verdict) -> ForUser {
        let decision = &trace.decision;
        let either = decision.allow.reasons.union(decision.deny.reasons);
        let misses = misses(trace, verdict);
        let findings: Vec<String> =
            misses.iter().flat_map(|miss| miss.failing.iter().map(|c| finding(miss, c))).collect();
        let (summary, remediation) = match verdict {
            Verdict::Allow => ("The request is allowed.", "None needed.".to_owned()),
            Verdict::NotFound => ("No route matches this address.", "Check the address.".to_owned()),
            Verdict::Login { .. } => (
                "This route needs to know who you are.",
                "Sign in, then try again. If you were signed in, your session has ended.".to_owned(),
            ),
            Verdict::DeviceEnroll => {
                let kind = decision.allow.device_type.or(decision.deny.device_type).unwrap_or("any");
                ("This route needs a registered device.", format!("Enroll a device (type: {kind}), then try again."))
            }
            Verdict::ClientCertificateRequired => (
                "This route needs a valid client certificate.",
                "Present a client certificate signed by the authority this route trusts.".to_owned(),
            ),
            Verdict::Deny { .. } if either.contains(Reason::DeviceUnauthorized) => (
                "Your device is not approved for this route.",
                "Ask an administrator to approve your device, or use an approved one.".to_owned(),
            ),
            Verdict::Deny { .. } => match misses.first() {
                Some(miss) if miss.action == Action::Deny => (
                    "A rule of this route denies this request.",
                    "If you need access, ask the route's owner, quoting the request id below.".to_owned(),
                ),
                Some(miss) if miss.failing.is_empty() => (
                    "This route's policy allows no one.",
                    "Ask the route's owner, quoting the request id below.".to_owned(),
                ),
                Some(miss) => {
                    let needed = if miss.distance() == 1 && miss.failing.len() > 1 {
                        "To be allowed, one of the findings above would have to change"
                    } else if miss.failing.len() > 1 {
                        "To be allowed, every finding above would have to change"
                    } else {
                        "To be allowed, the finding above would have to change"
                    };
                    (
                        "This route's policy does not allow this request.",
                        format!(
                            "{needed}: sign in with another account, or ask the route's owner for access, quoting the request id below."
                        ),
                    )
                }
                None => (
                    "This route's policy allows no one.",
                    "Ask the route's owner, quoting the request id below.".to_owned(),
                ),
            },
        };
        ForUser { summary: summary.to_owned(), findings, remediation }
    }
}

/// One criterion that decided against the request, in the user's terms.
fn finding(miss: &Miss<'_>, criterion: &CriterionTrace<'_>) -> String {
    let kind = &criterion.criterion.kind;
    let raw = criterion.result.value;
    let phrase = match (kind, miss.action, raw) {
        (CriterionKind::Reject, Action::Allow, _) => return "this rule allows no one".to_owned(),
        (CriterionKind::Accept, Action::Deny, _) => return "this route denies everyone".to_owned(),
        (CriterionKind::AuthenticatedUser, Action::Allow, false) => return "you are not signed in".to_owned(),
        (CriterionKind::AuthenticatedUser, Action::Deny, true) => {
            return "this route denies signed-in users".to_owned();
        }
        (_, Action::Allow, false) => "is not one this route allows",
        (_, Action::Allow, true) => "is one this route excludes",
        (_, Action::Deny, true) => "is one this route denies",
        (_, Action::Deny, false) => "is not one this route requires",
    };
    let mut line = format!("{} {phrase}", subject(kind));
    if let Some(yours) = yours(criterion) {
        line.push_str(&format!(" (yours: {yours})"));
    }
    line
}

/// What a criterion tests, as the user would name it.
fn subject(kind: &CriterionKind) -> String {
    let text = match kind {
        CriterionKind::Accept => "any request",
        CriterionKind::Reject => "no request",
        CriterionKind::AuthenticatedUser => "being signed in",
        CriterionKind::User(_) => "your user id",
        CriterionKind::Email(_) => "your email address",
        CriterionKind::Domain(_) => "your email domain",
        CriterionKind::Claim { name, .. } => return format!("your `{name}` claim"),
        CriterionKind::Groups(_) => "your group membership",
        CriterionKind::HttpMethod(_) => "the request method",
        CriterionKind::HttpPath(_) => "the path",
        CriterionKind::CorsPreflight => "a CORS preflight request",
        CriterionKind::SourceIp(_) => "the address you connect from",
        CriterionKind::ClientCertificate(_) => "your client certificate",
        CriterionKind::InvalidClientCertificate => "an invalid client certificate",
        CriterionKind::Device(_) => "your device",
        CriterionKind::McpTool(_) => "the MCP tool",
        CriterionKind::SshUsername(_) => "the SSH user name",
        CriterionKind::SshUsernameMatchesEmail => "the SSH user name, compared with your email,",
        CriterionKind::SshUsernameMatchesClaim(claim) => {
            return format!("the SSH user name, compared with your `{claim}` claim,");
        }
        CriterionKind::SshPublickey(_) => "your SSH public key",
        CriterionKind::SshCa(_) => "your SSH certificate's authority",
        CriterionKind::Date(_) => "today's date",
        CriterionKind::DayOfWeek(_) => "the day of the week",
        CriterionKind::TimeOfDay(_) => "the time of day",
        CriterionKind::Record(_) => "a record this route checks",
    };
    text.to_owned()
}

/// What the criterion read from the request that is the user's own to see: their email, groups,
/// address, ... Never a session id, a device credential or a record.
fn yours(criterion: &CriterionTrace<'_>) -> Option<String> {
    const SHOWN: [&str; 11] =
        ["email", "domain", "user id", "groups", "claim", "method", "path", "ip", "ssh username", "mcp tool", "now"];
    let parts: Vec<String> = criterion
        .observed
        .iter()
        .filter(|(what, _)| SHOWN.contains(what))
        .map(|(what, value)| match value {
            Some(value) => format!("{what} {value}"),
            None => format!("no {what}"),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use crate::contract::OwnedInput;
    use crate::reference;

    fn explain(policy: &str, email: &str) -> ForUser {
        let compiled = ppl::compile(policy, ppl::Syntax::Text);
        let model = compiled.policy.unwrap_or_else(|| panic!("{:?}", compiled.errors));
        let owned = OwnedInput::parse(&format!(
            r#"{{"http": {{"method": "GET", "path": "/", "ip": "10.1.2.3", "headers": {{"Accept": "text/html"}}}},
                "session": {{"id": "s1"}},
                "records": [
                  {{"type": "session", "id": "s1", "data": {{"user_id": "u1"}}}},
                  {{"type": "user", "id": "u1", "data": {{"email": "{email}"}}}}
                ]}}"#
        ))
        .unwrap();
        let input = owned.input("2026-01-05T10:00:00Z".parse().unwrap());
        let trace = reference::evaluate(&model, &input, &owned.records);
        let verdict = trace.decision.verdict(true);
        ForUser::new(&trace, verdict)
    }

    #[test]
    fn an_allow_list_miss_names_the_users_own_email_and_never_the_list() {
        let denied = explain(r#"allow or(email in ["alice@example.com", "carol@example.com"])"#, "bob@example.com");
        assert_eq!(denied.summary, "This route's policy does not allow this request.");
        assert_eq!(denied.findings, ["your email address is not one this route allows (yours: email bob@example.com)"]);
        let everything = format!("{denied:?}");
        assert!(!everything.contains("alice") && !everything.contains("carol"), "{everything}");
    }

    #[test]
    fn a_matching_deny_rule_is_named_as_such() {
        let denied = explain("allow or(accept)\ndeny or(domain is \"example.com\")", "bob@example.com");
        assert_eq!(denied.summary, "A rule of this route denies this request.");
        assert_eq!(denied.findings, ["your email domain is one this route denies (yours: domain example.com)"]);
    }

    #[test]
    fn the_nearest_allow_block_is_chosen() {
        // The `and` block needs two changes, the `or` block one.
        let denied = explain(
            "allow and(http_method is \"POST\", http_path is \"/admin\")\nallow or(email is \"root@example.com\")",
            "bob@example.com",
        );
        assert_eq!(denied.findings, ["your email address is not one this route allows (yours: email bob@example.com)"]);
        assert!(!format!("{denied:?}").contains("root@"), "{denied:?}");
    }

    #[test]
    fn every_failing_criterion_of_an_and_block_is_listed() {
        let denied = explain("allow and(http_method is \"POST\", http_path is \"/admin\")", "bob@example.com");
        assert_eq!(
            denied.findings,
            [
                "the request method is not one this route allows (yours: method GET)",
                "the path is not one this route allows (yours: path /)"
            ]
        );
        assert!(denied.remediation.starts_with("To be allowed, every finding above"), "{denied:?}");
    }

    #[test]
    fn signing_in_is_the_remedy_without_a_session() {
        let compiled = ppl::compile("allow or(email is \"a@example.com\")", ppl::Syntax::Text);
        let model = compiled.policy.unwrap();
        let owned =
            OwnedInput::parse(r#"{"http": {"method": "GET", "path": "/", "headers": {"Accept": "text/html"}}}"#)
                .unwrap();
        let input = owned.input("2026-01-05T10:00:00Z".parse().unwrap());
        let trace = reference::evaluate(&model, &input, &owned.records);
        let denied = ForUser::new(&trace, trace.decision.verdict(true));
        assert!(denied.remediation.starts_with("Sign in"), "{denied:?}");
    }
}

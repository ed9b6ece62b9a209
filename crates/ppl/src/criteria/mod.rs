//! The criteria of PPL (ppl.md §2): the registry of names, and the checks that turn a criterion's
//! raw data into its meaning ([`crate::model::CriterionKind`]), reporting every problem.

mod certificate;
mod device;
mod matchers;
mod network;
mod record;
mod ssh;
mod time;

use crate::ast;
use crate::error::{Error, UnknownCriterion};
use crate::model::CriterionKind;
use crate::suggest;
use crate::value::{Value, ValueKind};
use crate::warning::{IgnoredData, IgnoredSubpath, NeverMatches, Warning};

/// What the registry knows about a criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CriterionInfo {
    pub name: &'static str,
    /// What its data is, for messages and documentation.
    pub data: &'static str,
    /// Whether its result depends on who the user is (so an anonymous request must sign in).
    pub reads_identity: bool,
    /// Documented by Pomerium for its Enterprise edition only; implemented here in the open.
    pub enterprise: bool,
    /// Whether the data is ignored (`accept: true` and `accept: 1` mean the same).
    pub ignores_data: bool,
}

const fn info(name: &'static str, data: &'static str, reads_identity: bool) -> CriterionInfo {
    CriterionInfo { name, data, reads_identity, enterprise: false, ignores_data: false }
}

const fn flag(name: &'static str, reads_identity: bool) -> CriterionInfo {
    CriterionInfo { name, data: "anything (usually `true`)", reads_identity, enterprise: false, ignores_data: true }
}

const fn enterprise(name: &'static str, data: &'static str, reads_identity: bool) -> CriterionInfo {
    CriterionInfo { name, data, reads_identity, enterprise: true, ignores_data: false }
}

/// Every criterion: Pomerium's 21 open-source ones, then the four it documents for Enterprise.
pub const CRITERIA: &[CriterionInfo] = &[
    flag("accept", false),
    flag("authenticated_user", true),
    info("claim", "a list matcher, with the claim name as sub-path: `claim/groups`", true),
    info("client_certificate", "a certificate matcher", false),
    flag("cors_preflight", false),
    info("device", "a device matcher", true),
    info("domain", "a string matcher", true),
    info("email", "a string matcher", true),
    info("groups", "a list matcher", true),
    info("http_method", "a string matcher", false),
    info("http_path", "a string matcher", false),
    flag("invalid_client_certificate", false),
    info("mcp_tool", "a string matcher", false),
    flag("reject", false),
    info("source_ip", "an ip address or cidr range, or a list of them", false),
    info("ssh_ca", "an authorized_keys line, or a list of them", false),
    info("ssh_publickey", "an authorized_keys line, or a list of them", false),
    info("ssh_username", "a string matcher", false),
    info("ssh_username_matches_claim", "a claim name", true),
    flag("ssh_username_matches_email", true),
    info("user", "a string matcher", true),
    enterprise("date", "an object with `after` and/or `before`", false),
    enterprise("day_of_week", "days such as `mon-fri` or `mon,wed` (or `{is: ...}`)", false),
    enterprise("record", "a record matcher", true),
    enterprise("time_of_day", "an object with `timezone`, `after` and/or `before`", false),
];

/// The registry entry for `name`.
pub fn lookup(name: &str) -> Option<&'static CriterionInfo> {
    CRITERIA.iter().find(|c| c.name == name)
}

/// Every criterion name.
pub fn names() -> Vec<&'static str> {
    CRITERIA.iter().map(|c| c.name).collect()
}

/// Common names for criteria that people reach for, mapped to the help to give.
fn known_confusion(name: &str) -> Option<&'static str> {
    Some(match name {
        "pomerium_routes" => {
            "`pomerium_routes` was removed from pomerium in 2023 (GHSA-pvrc-wvj2-f59p); the `/.pomerium/` paths are handled without a policy"
        }
        "allowed_users" | "users" | "emails" => {
            "`allowed_users` is a route option; in a policy write `email: {in: [...]}` or `user: {in: [...]}`"
        }
        "allowed_domains" | "domains" => "`allowed_domains` is a route option; in a policy write `domain: {in: [...]}`",
        "allowed_idp_claims" | "claims" => "use `claim/<name>`, e.g. `claim/groups: admins`",
        "allowed_groups" | "group" => "use `groups: {has: <group id>}`, or `claim/groups: <name>` for a group claim",
        "ip" | "source" | "cidr" | "client_ip" => "use `source_ip`",
        "method" => "use `http_method`",
        "path" => "use `http_path`",
        _ => return None,
    })
}

/// Checking context for one criterion: where errors and warnings go, and the key for messages.
pub(crate) struct Cx<'a> {
    pub errors: &'a mut Vec<Error>,
    pub warnings: &'a mut Vec<Warning>,
    /// The criterion key as written, e.g. `claim/groups`.
    pub key: String,
}

impl Cx<'_> {
    pub fn error(&mut self, error: impl Into<Error>) {
        self.errors.push(error.into());
    }

    pub fn warn(&mut self, warning: impl Into<Warning>) {
        self.warnings.push(warning.into());
    }
}

/// Checks one criterion; `None` when it has errors (which are reported).
pub(crate) fn check(
    criterion: &ast::Criterion,
    errors: &mut Vec<Error>,
    warnings: &mut Vec<Warning>,
) -> Option<CriterionKind> {
    let Some(info) = lookup(&criterion.name) else {
        let missing_name =
            criterion.name.is_empty().then(|| "the criterion's name is missing before the `/`".to_owned());
        let help = missing_name
            .or_else(|| known_confusion(&criterion.name).map(str::to_owned))
            .or_else(|| suggest::did_you_mean(&criterion.name, &names()))
            .or_else(|| Some("`pomerium-policy criteria` lists every criterion".to_owned()));
        errors.push(UnknownCriterion { name: criterion.name.clone(), span: criterion.key_span.into(), help }.into());
        return None;
    };
    let mut cx = Cx { errors, warnings, key: criterion.key() };
    check_subpath(info, criterion, &mut cx);
    if info.ignores_data {
        check_ignored_data(info, &criterion.data, &mut cx);
    }
    let data = &criterion.data;
    let before = cx.errors.len();
    let kind = match info.name {
        "accept" => Some(CriterionKind::Accept),
        "reject" => Some(CriterionKind::Reject),
        "authenticated_user" => Some(CriterionKind::AuthenticatedUser),
        "cors_preflight" => Some(CriterionKind::CorsPreflight),
        "invalid_client_certificate" => Some(CriterionKind::InvalidClientCertificate),
        "ssh_username_matches_email" => Some(CriterionKind::SshUsernameMatchesEmail),
        "user" => matchers::string(data, &mut cx).map(CriterionKind::User),
        "email" => matchers::string(data, &mut cx).map(CriterionKind::Email),
        "domain" => matchers::string(data, &mut cx).map(CriterionKind::Domain),
        "http_method" => matchers::string(data, &mut cx).map(|m| {
            warn_lowercase_methods(&m, &mut cx);
            CriterionKind::HttpMethod(m)
        }),
        "http_path" => matchers::string(data, &mut cx).map(CriterionKind::HttpPath),
        "mcp_tool" => matchers::string(data, &mut cx).map(CriterionKind::McpTool),
        "ssh_username" => matchers::string(data, &mut cx).map(CriterionKind::SshUsername),
        "groups" => matchers::list(data, &mut cx).map(CriterionKind::Groups),
        "claim" => {
            let name = criterion.subpath.clone().unwrap_or_default();
            matchers::list(data, &mut cx).map(|matcher| CriterionKind::Claim { name, matcher })
        }
        "ssh_username_matches_claim" => ssh::username_matches_claim(data, &mut cx),
        "source_ip" => network::source_ip(data, &mut cx).map(CriterionKind::SourceIp),
        "client_certificate" => certificate::matcher(data, &mut cx).map(CriterionKind::ClientCertificate),
        "device" => device::matcher(data, &mut cx).map(CriterionKind::Device),
        "ssh_publickey" => ssh::keys(data, &mut cx).map(CriterionKind::SshPublickey),
        "ssh_ca" => ssh::keys(data, &mut cx).map(CriterionKind::SshCa),
        "date" => time::date(data, &mut cx).map(CriterionKind::Date),
        "day_of_week" => time::day_of_week(data, &mut cx).map(CriterionKind::DayOfWeek),
        "time_of_day" => time::time_of_day(data, &mut cx).map(CriterionKind::TimeOfDay),
        "record" => record::matcher(data, &mut cx).map(CriterionKind::Record),
        _ => None,
    };
    // A criterion whose data had an error is not built, even if a partial result was possible.
    kind.filter(|_| cx.errors.len() == before)
}

/// Methods are compared case-sensitively and arrive upper-case (`GET`), so `get` never matches.
fn warn_lowercase_methods(matcher: &crate::model::StringMatcher, cx: &mut Cx<'_>) {
    for condition in &matcher.conditions {
        let mut values = Vec::new();
        condition.value.walk(&mut |v| values.push(v));
        for value in values {
            if let Some(method) = value.as_str().filter(|m| m.chars().any(|c| c.is_ascii_lowercase())) {
                cx.warn(crate::warning::LowercaseMethod {
                    method: method.to_owned(),
                    upper: method.to_ascii_uppercase(),
                    span: value.span.into(),
                });
            }
        }
    }
}

fn check_subpath(info: &CriterionInfo, criterion: &ast::Criterion, cx: &mut Cx<'_>) {
    match (&criterion.subpath, info.name) {
        (Some(subpath), "claim") if !subpath.is_empty() => {}
        (_, "claim") => cx.warn(NeverMatches {
            criterion: cx.key.clone(),
            reason: "it names no claim".to_owned(),
            span: criterion.key_span.into(),
            help: Some("write the claim name after a `/`, e.g. `claim/groups: admins`".to_owned()),
        }),
        (Some(subpath), _) => cx.warn(IgnoredSubpath {
            criterion: info.name.to_owned(),
            subpath: subpath.clone(),
            span: criterion.key_span.into(),
        }),
        (None, _) => {}
    }
}

/// `accept: false` still accepts: the data of these criteria is ignored.
fn check_ignored_data(info: &CriterionInfo, data: &Value, cx: &mut Cx<'_>) {
    let looks_off = match &data.kind {
        ValueKind::Bool(false) => true,
        ValueKind::Number(n) => n.as_f64() == 0.0,
        ValueKind::String(s) => matches!(s.to_ascii_lowercase().as_str(), "false" | "no" | "off" | "0"),
        _ => false,
    };
    if looks_off {
        cx.warn(IgnoredData { criterion: info.name, span: data.span.into() });
    }
}

/// Data that is one string or a list of strings (source_ip, fingerprints, ssh keys): the strings
/// with their values. Other kinds are reported; an empty list is warned about.
pub(crate) fn one_or_many<'v>(data: &'v Value, what: &str, cx: &mut Cx<'_>) -> Option<Vec<(&'v str, &'v Value)>> {
    use crate::error::WrongType;
    let items: Vec<&Value> = match &data.kind {
        ValueKind::String(_) => vec![data],
        ValueKind::Array(items) => items.iter().collect(),
        _ => {
            cx.error(WrongType {
                what: format!("`{what}`"),
                expected: "a string or a list of strings",
                found: data.kind(),
                span: data.span.into(),
                help: None,
            });
            return None;
        }
    };
    if items.is_empty() {
        cx.warn(NeverMatches {
            criterion: cx.key.clone(),
            reason: "the list is empty".to_owned(),
            span: data.span.into(),
            help: None,
        });
    }
    let mut strings = Vec::with_capacity(items.len());
    for item in items {
        match &item.kind {
            ValueKind::String(text) => strings.push((text.as_str(), item)),
            _ => cx.error(WrongType {
                what: format!("each `{what}` entry"),
                expected: "a string",
                found: item.kind(),
                span: item.span.into(),
                help: None,
            }),
        }
    }
    Some(strings)
}

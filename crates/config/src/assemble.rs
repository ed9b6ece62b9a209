//! A route's policy (ppl.md §3.1, `config/policy_ppl.go` `ToPPL`): the legacy access options as one
//! allow rule OR-ing, in order, `accept`, `cors_preflight`, `authenticated_user`, `domain` for each
//! allowed domain, `claim/<name>` for each value of each allowed claim (names sorted), and `user`
//! then `email` for each allowed user; then the embedded policy's rules; then, when a downstream
//! client CA is configured and enforcement is not `policy`, `deny: {or: [invalid_client_certificate]}`.
//! The legacy rule is dropped when it is empty and there is an embedded policy; otherwise it stays,
//! even empty (an empty rule allows nothing).

use crate::route::Route;
use ppl::Span;
use ppl::ast::{Action, Block, Criterion, Operator, Policy, Rule};
use ppl::value::{Entry, Value, ValueKind};

/// The assembled policy as an AST; spans point at the options each criterion came from. With it,
/// whether it is the embedded policy's rules alone (no legacy rule, no client certificate rule).
pub(crate) fn assemble(route: &Route, default_client_certificate_rule: bool) -> (Policy, bool) {
    let legacy = legacy_rule(route);
    let mut rules = Vec::new();
    let embedded = route.embedded_policy.as_ref();
    let embedded_alone = legacy.blocks.is_empty() && embedded.is_some();
    if !embedded_alone {
        rules.push(legacy);
    }
    rules.extend(embedded.iter().flat_map(|policy| policy.rules.iter().cloned()));
    if default_client_certificate_rule {
        rules.push(client_certificate_rule(Span::empty_at(route.span.start())));
    }
    (Policy { rules, span: route.span }, embedded_alone && !default_client_certificate_rule)
}

fn legacy_rule(route: &Route) -> Rule {
    let access = &route.access;
    let mut criteria = Vec::new();
    let flags = [
        (access.allow_public_unauthenticated_access, "accept"),
        (access.cors_allow_preflight, "cors_preflight"),
        (access.allow_any_authenticated_user, "authenticated_user"),
    ];
    for (span, name) in flags {
        if let Some(span) = span {
            criteria.push(criterion(name, None, Value::new(ValueKind::Bool(true), span), span));
        }
    }
    // The sub-policies' lists join the route's own (Pomerium folds them into the first query).
    let subs = &route.sub_policies;
    for (domain, span) in access.allowed_domains.iter().chain(subs.iter().flat_map(|p| &p.allowed_domains)) {
        criteria.push(criterion("domain", None, is(domain, *span), *span));
    }
    let mut claims: Vec<_> =
        access.allowed_idp_claims.iter().chain(subs.iter().flat_map(|p| &p.allowed_idp_claims)).collect();
    claims.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, key_span, values) in claims {
        for value in values {
            criteria.push(criterion("claim", Some(name), value.clone(), key_span.join(value.span)));
        }
    }
    for (user, span) in access.allowed_users.iter().chain(subs.iter().flat_map(|p| &p.allowed_users)) {
        criteria.push(criterion("user", None, is(user, *span), *span));
        criteria.push(criterion("email", None, is(user, *span), *span));
    }
    let span =
        criteria.iter().map(|c: &Criterion| c.span).reduce(Span::join).unwrap_or(Span::empty_at(route.span.start()));
    let blocks = if criteria.is_empty() {
        Vec::new()
    } else {
        vec![Block { operator: Operator::Or, operator_span: span, criteria, span }]
    };
    Rule { action: Action::Allow, action_span: span, blocks, ignored_action_key: None, span }
}

/// `deny: {or: [invalid_client_certificate: true]}` (`AddDefaultClientCertificateRule`).
fn client_certificate_rule(span: Span) -> Rule {
    let criterion = criterion("invalid_client_certificate", None, Value::new(ValueKind::Bool(true), span), span);
    let block = Block { operator: Operator::Or, operator_span: span, criteria: vec![criterion], span };
    Rule { action: Action::Deny, action_span: span, blocks: vec![block], ignored_action_key: None, span }
}

fn criterion(name: &str, subpath: Option<&str>, data: Value, span: Span) -> Criterion {
    Criterion { name: name.to_owned(), subpath: subpath.map(str::to_owned), key_span: span, data, span }
}

/// `{is: text}`.
fn is(text: &str, span: Span) -> Value {
    let value = Value::new(ValueKind::String(text.to_owned()), span);
    Value::new(ValueKind::Object(vec![Entry { key: "is".to_owned(), key_span: span, value }]), span)
}

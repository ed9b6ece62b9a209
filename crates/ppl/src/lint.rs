//! Structural lints over the AST: patterns that compile but rarely mean what they say. Lints that
//! need a criterion's parsed data are raised while checking it (`criteria`).

use crate::ast::{Action, Block, Criterion, Operator, Policy};
use crate::criteria;
use crate::value::{Value, ValueKind};
use crate::warning::{
    ConflictingCriteria, DenyEverything, EmptyBlock, EmptyPolicy, EmptyRule, IgnoredActionKey, OperatorsAreOred,
    PublicAllowIdentityDeny, RedundantCriteria, RepeatedCriterion, SuspiciousUnicode, Warning,
};

/// Appends every structural warning for `policy` to `warnings`.
pub fn lint(policy: &Policy, warnings: &mut Vec<Warning>) {
    if policy.rules.is_empty() {
        warnings.push(EmptyPolicy { span: policy.span.into() }.into());
    }
    for rule in &policy.rules {
        if let Some(span) = rule.ignored_action_key {
            warnings.push(IgnoredActionKey { span: span.into() }.into());
        }
        let non_empty: Vec<&Block> = rule.blocks.iter().filter(|b| !b.criteria.is_empty()).collect();
        if non_empty.is_empty() {
            warnings.push(EmptyRule { action: rule.action.as_str(), span: rule.span.into() }.into());
        } else {
            for block in rule.blocks.iter().filter(|b| b.criteria.is_empty()) {
                warnings.push(EmptyBlock { operator: block.operator.as_str(), span: block.span.into() }.into());
            }
        }
        let mut in_source_order = non_empty.clone();
        in_source_order.sort_by_key(|b| b.span.start());
        if let [first, second, ..] = in_source_order.as_slice() {
            let names: Vec<String> = non_empty.iter().map(|b| format!("`{}`", b.operator)).collect();
            warnings.push(
                OperatorsAreOred {
                    action: rule.action.as_str(),
                    operators: crate::suggest::join_and(&names),
                    span: first.operator_span.into(),
                    second: Some(second.operator_span.into()),
                }
                .into(),
            );
        }
        for block in &rule.blocks {
            lint_block(rule.action, block, warnings);
        }
    }
    lint_public_allow(policy, warnings);
    for (_, _, criterion) in policy.criteria() {
        criterion.data.walk(&mut |value| suspicious_unicode(value, warnings));
    }
}

fn lint_block(action: Action, block: &Block, warnings: &mut Vec<Warning>) {
    let is = |c: &Criterion, name: &str| c.name == name;
    for (i, criterion) in block.criteria.iter().enumerate() {
        let earlier = block.criteria.get(..i).unwrap_or_default();
        let same = |e: &&Criterion| {
            e.name == criterion.name && e.subpath == criterion.subpath && canonical_data(e) == canonical_data(criterion)
        };
        if let Some(first) = earlier.iter().find(same) {
            warnings.push(
                RepeatedCriterion { criterion: criterion.key(), span: criterion.span.into(), first: first.span.into() }
                    .into(),
            );
            continue;
        }
        if block.operator == Operator::And
            && is_single_valued(&criterion.name)
            && let Some(value) = is_value(criterion)
        {
            let conflict = earlier.iter().find(|e| e.name == criterion.name && is_value(e).is_some_and(|v| v != value));
            if let Some(first) = conflict {
                warnings.push(
                    ConflictingCriteria {
                        criterion: criterion.name.clone(),
                        first_value: format!("`{}`", is_value(first).unwrap_or_default()),
                        second_value: format!("`{value}`"),
                        span: criterion.span.into(),
                        first: first.span.into(),
                    }
                    .into(),
                );
            }
        }
    }
    let accept = block.criteria.iter().find(|c| is(c, "accept"));
    let always_true = match block.operator {
        Operator::Or => accept.is_some(),
        Operator::And => !block.criteria.is_empty() && block.criteria.iter().all(|c| is(c, "accept")),
        Operator::Not | Operator::Nor => false,
    };
    if let (Some(accept), true) = (accept, always_true) {
        if action == Action::Deny {
            warnings.push(DenyEverything { span: accept.span.into() }.into());
        } else if block.criteria.len() > 1 {
            warnings.push(
                RedundantCriteria {
                    message: "`accept` matches every request, so the other criteria of this `or` block have no effect"
                        .to_owned(),
                    span: accept.span.into(),
                    help: Some("remove `accept` to require the other criteria, or remove them".to_owned()),
                }
                .into(),
            );
        }
    }
    if block.operator == Operator::And
        && block.criteria.len() > 1
        && let Some(reject) = block.criteria.iter().find(|c| is(c, "reject"))
    {
        warnings.push(
            RedundantCriteria {
                message: "`reject` never matches, so this `and` block never matches".to_owned(),
                span: reject.span.into(),
                help: Some("remove `reject`, or the whole block if it is meant to be off".to_owned()),
            }
            .into(),
        );
    }
}

/// A criterion's data with the matcher shorthand spelt out (`email: a` is `email: {is: a}`), so
/// that two spellings of one criterion compare equal.
fn canonical_data(criterion: &Criterion) -> Value {
    let data = criterion.data.without_spans();
    let shorthand = match criterion.name.as_str() {
        "user" | "email" | "domain" | "http_method" | "http_path" | "mcp_tool" | "ssh_username" => "is",
        "claim" | "groups" => "has",
        _ => return data,
    };
    if data.as_object().is_some() {
        return data;
    }
    let entry = crate::value::Entry { key: shorthand.to_owned(), key_span: crate::span::Span::default(), value: data };
    Value::new(ValueKind::Object(vec![entry]), crate::span::Span::default())
}

/// Criteria that read one value, so two different `is` values in an `and` block conflict.
fn is_single_valued(name: &str) -> bool {
    matches!(name, "user" | "email" | "domain" | "http_method" | "http_path" | "ssh_username" | "mcp_tool")
}

/// The string a criterion tests equality with, when its data is exactly that.
fn is_value(criterion: &Criterion) -> Option<&str> {
    match &criterion.data.kind {
        ValueKind::String(s) => Some(s),
        ValueKind::Object(entries) => match entries.as_slice() {
            [entry] if entry.key == "is" => entry.value.as_str(),
            _ => None,
        },
        _ => None,
    }
}

/// An `accept` allow beside a deny that depends on identity sends anonymous users to sign in.
fn lint_public_allow(policy: &Policy, warnings: &mut Vec<Warning>) {
    let public = policy.rules.iter().filter(|r| r.action == Action::Allow).flat_map(|r| &r.blocks).find_map(|block| {
        let accept = block.criteria.iter().find(|c| c.name == "accept")?;
        match block.operator {
            Operator::Or => Some(accept),
            Operator::And if block.criteria.iter().all(|c| c.name == "accept") => Some(accept),
            _ => None,
        }
    });
    let identity_deny = policy.criteria().find(|(rule, _, c)| {
        rule.action == Action::Deny && criteria::lookup(&c.name).is_some_and(|info| info.reads_identity)
    });
    if let (Some(accept), Some((_, _, deny))) = (public, identity_deny) {
        warnings.push(PublicAllowIdentityDeny { span: accept.span.into(), deny: deny.span.into() }.into());
    }
}

fn suspicious_unicode(value: &Value, warnings: &mut Vec<Warning>) {
    let ValueKind::String(text) = &value.kind else {
        return;
    };
    for c in text.chars() {
        let what = match c {
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}' => {
                "a bidirectional control character"
            }
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => "an invisible character",
            _ => continue,
        };
        warnings.push(SuspiciousUnicode { what, code_point: u32::from(c), span: value.span.into() }.into());
        return;
    }
}

//! The shape rules of ppl.md §1.2: a [`Value`] tree (from YAML or JSON) → the AST.
//!
//! Lowering never stops at the first problem: a bad rule, block or criterion is reported and
//! skipped, and the rest is still lowered, so that `check` reports everything at once.

use crate::ast::{Action, Block, Criterion, Operator, Policy, Rule};
use crate::criteria;
use crate::error::{
    CriterionKeyCount, CriterionNotObject, Error, OperatorNotList, PolicyNotRules, RuleBodyNotObject, RuleNotObject,
    UnknownAction, UnknownOperator,
};
use crate::suggest;
use crate::value::{Entry, Kind, Value, ValueKind};

/// Lowers a whole policy document. Errors are appended to `errors`.
pub fn policy(value: &Value, errors: &mut Vec<Error>) -> Policy {
    let mut rules = Vec::new();
    match &value.kind {
        ValueKind::Object(entries) => rules_object(entries, &mut rules, errors),
        ValueKind::Array(items) => {
            for item in items {
                match &item.kind {
                    ValueKind::Object(entries) => rules_object(entries, &mut rules, errors),
                    _ => errors.push(RuleNotObject { found: item.kind(), span: item.span.into() }.into()),
                }
            }
        }
        _ => errors.push(PolicyNotRules { found: value.kind(), span: value.span.into() }.into()),
    }
    Policy { rules, span: value.span }
}

/// One rules object: each key an action; `allow` sorts before `deny`, as in Pomerium.
fn rules_object(entries: &[Entry], rules: &mut Vec<Rule>, errors: &mut Vec<Error>) {
    let mut lowered: Vec<Rule> = Vec::new();
    for entry in entries {
        match Action::from_name(&entry.key) {
            Some(action) => {
                if let Some(rule) = rule(action, entry, errors) {
                    lowered.push(rule);
                }
            }
            None => errors.push(unknown_action(&entry.key, entry.key_span.into())),
        }
    }
    lowered.sort_by_key(|rule| rule.action);
    rules.extend(lowered);
}

pub(crate) fn unknown_action(action: &str, span: miette::SourceSpan) -> Error {
    let help = if Operator::from_name(action).is_some() {
        Some(format!("operators go inside an action: `allow: {{{action}: [...]}}`"))
    } else if criteria::lookup(action).is_some() {
        Some(format!("criteria go inside an action and an operator: `allow: {{or: [{{{action}: ...}}]}}`"))
    } else {
        Some(
            suggest::did_you_mean(action, &["allow", "deny"])
                .unwrap_or_else(|| "the actions are `allow` and `deny`".to_owned()),
        )
    };
    UnknownAction { action: action.to_owned(), span, help }.into()
}

fn rule(action: Action, entry: &Entry, errors: &mut Vec<Error>) -> Option<Rule> {
    let body = &entry.value;
    let ValueKind::Object(keys) = &body.kind else {
        let help = match body.kind() {
            Kind::Array => Some(format!(
                "put the criteria under an operator: `{action}: {{or: [...]}}` (any may match) or `{action}: {{and: [...]}}` (all must match)"
            )),
            _ => {
                Some(format!("add an operator with a list of criteria, such as `{action}: {{or: [{{accept: true}}]}}`"))
            }
        };
        errors.push(
            RuleBodyNotObject { action: action.as_str(), found: body.kind(), span: body.span.into(), help }.into(),
        );
        return None;
    };
    let mut blocks = Vec::new();
    let mut ignored_action_key = None;
    for key in keys {
        if key.key == "action" {
            ignored_action_key = Some(key.key_span);
            continue;
        }
        let Some(operator) = Operator::from_name(&key.key) else {
            errors.push(unknown_operator(&key.key, key.key_span.into()));
            continue;
        };
        if let Some(block) = block(operator, key, errors) {
            blocks.push(block);
        }
    }
    blocks.sort_by_key(|block| block.operator);
    Some(Rule { action, action_span: entry.key_span, blocks, ignored_action_key, span: entry.span() })
}

pub(crate) fn unknown_operator(operator: &str, span: miette::SourceSpan) -> Error {
    let synonym = match operator.to_ascii_lowercase().as_str() {
        "nand" => Some("`nor` is ppl's nand: it matches when at least one criterion fails"),
        "all" | "all_of" => Some("did you mean `and`?"),
        "any" | "any_of" => Some("did you mean `or`?"),
        "none" | "none_of" => Some("`not` matches when none of its criteria match"),
        _ => None,
    };
    let help = if let Some(synonym) = synonym {
        Some(synonym.to_owned())
    } else if criteria::lookup(Criterion::split_key(operator).0.as_str()).is_some() {
        Some(format!("criteria go in a list under an operator: `or: [{{{operator}: ...}}]`"))
    } else {
        Some(
            suggest::did_you_mean(operator, &["and", "or", "not", "nor"])
                .unwrap_or_else(|| "the operators are `and`, `or`, `not` and `nor`".to_owned()),
        )
    };
    UnknownOperator { operator: operator.to_owned(), span, help }.into()
}

fn block(operator: Operator, entry: &Entry, errors: &mut Vec<Error>) -> Option<Block> {
    let list = &entry.value;
    let ValueKind::Array(items) = &list.kind else {
        errors.push(OperatorNotList { operator: operator.as_str(), found: list.kind(), span: list.span.into() }.into());
        return None;
    };
    let criteria = items.iter().filter_map(|item| criterion(item, errors)).collect();
    Some(Block { operator, operator_span: entry.key_span, criteria, span: entry.span() })
}

fn criterion(item: &Value, errors: &mut Vec<Error>) -> Option<Criterion> {
    let ValueKind::Object(entries) = &item.kind else {
        let help = match &item.kind {
            ValueKind::String(name) if criteria::lookup(name).is_some() => {
                Some(format!("write it as `{name}: true`, or give it data: `{name}: ...`"))
            }
            _ => Some("a criterion is written `name: data`, e.g. `email: {is: user@example.com}`".to_owned()),
        };
        errors.push(CriterionNotObject { found: item.kind(), span: item.span.into(), help }.into());
        return None;
    };
    match entries.as_slice() {
        [entry] => {
            let (name, subpath) = Criterion::split_key(&entry.key);
            Some(Criterion { name, subpath, key_span: entry.key_span, data: entry.value.clone(), span: item.span })
        }
        _ => {
            let help = if entries.is_empty() {
                "write `name: data`, e.g. `- email: {is: user@example.com}`, or remove the empty item".to_owned()
            } else {
                let keys: Vec<String> = entries.iter().map(|e| format!("`{}`", e.key)).collect();
                format!(
                    "write {} as separate list items (`- {}: ...`); the keys of one item are not combined",
                    suggest::join_and(&keys),
                    entries.first().map_or("", |e| e.key.as_str())
                )
            };
            errors.push(CriterionKeyCount { count: entries.len(), span: item.span.into(), help: Some(help) }.into());
            None
        }
    }
}

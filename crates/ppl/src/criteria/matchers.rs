//! String matchers and string list matchers (ppl.md §2.1).

use super::Cx;
use crate::error::{ListRequired, UnknownMatcherOperator};
use crate::model::{ListCondition, ListMatcher, ListOp, StringCondition, StringMatcher, StringOp};
use crate::suggest;
use crate::value::{Kind, Value, ValueKind};
use crate::warning::{ArrayIsNotIn, HasList, NonStringOperand, RedundantCriteria};

const STRING_OPS: &[&str] = &["is", "not", "contains", "starts_with", "ends_with", "in", "not_in"];
const LIST_OPS: &[&str] = &["has", "is", "exclude"];

/// A string matcher: an object of operators, or any other value meaning `is`.
pub(super) fn string(data: &Value, cx: &mut Cx<'_>) -> Option<StringMatcher> {
    let Some(entries) = data.as_object() else {
        check_is(data, cx, true);
        return Some(StringMatcher { conditions: vec![StringCondition { op: StringOp::Is, value: data.clone() }] });
    };
    warn_if_empty(data, cx);
    let mut conditions = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(op) = StringOp::from_name(&entry.key) else {
            cx.error(UnknownMatcherOperator {
                matcher: "string matcher",
                operator: entry.key.clone(),
                span: entry.key_span.into(),
                criterion: cx.key.clone(),
                help: Some(string_op_help(&entry.key, &cx.key)),
            });
            continue;
        };
        if string_condition(op, &entry.value, Operands::Strings, cx) {
            conditions.push(StringCondition { op, value: entry.value.clone() });
        }
    }
    Some(StringMatcher { conditions })
}

/// What the value a string operator compares with can be.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Operands {
    /// Always a string (the request and identity criteria): another operand is a mistake.
    Strings,
    /// Any JSON value (a `record` field): `is`, `not`, `in` and `not_in` compare values of every
    /// kind, so only the text operators want a string.
    AnyJson,
}

/// Checks the operand of one string operator; false when it is an error.
pub(super) fn string_condition(op: StringOp, value: &Value, operands: Operands, cx: &mut Cx<'_>) -> bool {
    let any_json = operands == Operands::AnyJson;
    match op {
        StringOp::Is if any_json => {}
        StringOp::Is => check_is(value, cx, false),
        StringOp::Not => {
            if value.kind() != Kind::String && !any_json {
                cx.warn(NonStringOperand {
                    operator: "not",
                    found: value.kind(),
                    outcome: "always matches",
                    span: value.span.into(),
                });
            }
        }
        StringOp::Contains | StringOp::StartsWith | StringOp::EndsWith => {
            if value.kind() != Kind::String {
                cx.warn(NonStringOperand {
                    operator: op.as_str(),
                    found: value.kind(),
                    outcome: "never matches",
                    span: value.span.into(),
                });
            }
        }
        StringOp::In | StringOp::NotIn => {
            let Some(items) = value.as_array() else {
                let help = match &value.kind {
                    ValueKind::String(s) => Some(format!(
                        "write `{}: [\"{s}\"]`, or `{}: \"{s}\"` for one value",
                        op.as_str(),
                        if op == StringOp::In { "is" } else { "not" }
                    )),
                    _ => None,
                };
                cx.error(ListRequired { operator: op.as_str(), found: value.kind(), span: value.span.into(), help });
                return false;
            };
            let outcome = if op == StringOp::In { "never matches" } else { "never excludes anything" };
            for item in items.iter().filter(|item| item.kind() != Kind::String && !any_json) {
                cx.warn(NonStringOperand {
                    operator: op.as_str(),
                    found: item.kind(),
                    outcome,
                    span: item.span.into(),
                });
            }
        }
    }
    true
}

/// `is` (or the shorthand) with a list or another non-string never matches a string.
fn check_is(value: &Value, cx: &mut Cx<'_>, shorthand: bool) {
    match value.kind() {
        Kind::String => {}
        Kind::Array => {
            let written = if shorthand { cx.key.clone() } else { format!("{}: {{is: ...}}", cx.key) };
            cx.warn(ArrayIsNotIn {
                criterion: written,
                span: value.span.into(),
                help: Some(format!("to match any of these values, write `{}: {{in: [...]}}`", cx.key)),
            });
        }
        found => cx.warn(NonStringOperand { operator: "is", found, outcome: "never matches", span: value.span.into() }),
    }
}

fn warn_if_empty(data: &Value, cx: &mut Cx<'_>) {
    if data.as_object().is_some_and(<[_]>::is_empty) {
        cx.warn(RedundantCriteria {
            message: format!("`{}: {{}}` has no conditions, so it matches every request", cx.key),
            span: data.span.into(),
            help: Some("add a condition such as `is: ...`, or remove the criterion".to_owned()),
        });
    }
}

fn string_op_help(op: &str, key: &str) -> String {
    let synonym = match op {
        "equals" | "eq" | "==" | "=" | "equal" => Some("is"),
        "ne" | "!=" | "not_equals" | "isnt" | "is_not" => Some("not"),
        "prefix" | "begins_with" => Some("starts_with"),
        "suffix" => Some("ends_with"),
        "one_of" | "any_of" => Some("in"),
        "none_of" => Some("not_in"),
        _ => None,
    };
    if let Some(synonym) = synonym {
        return format!("did you mean `{synonym}`?");
    }
    if matches!(op, "regex" | "matches" | "match" | "glob" | "like") {
        return "ppl has no regular expressions; use `starts_with`, `ends_with`, `contains` or `in`".to_owned();
    }
    if matches!(op, "has" | "exclude") {
        return format!("`{op}` is a list-matcher operator; `{key}` takes a string matcher: {}", quoted(STRING_OPS));
    }
    suggest::help(op, STRING_OPS, "string matcher operators")
}

/// A string list matcher: an object of operators, or any other value meaning `has`.
pub(super) fn list(data: &Value, cx: &mut Cx<'_>) -> Option<ListMatcher> {
    let Some(entries) = data.as_object() else {
        check_list_operand("has", data, cx);
        return Some(ListMatcher { conditions: vec![ListCondition { op: ListOp::Has, value: data.clone() }] });
    };
    warn_if_empty(data, cx);
    let mut conditions = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(op) = ListOp::from_name(&entry.key) else {
            cx.error(UnknownMatcherOperator {
                matcher: "list matcher",
                operator: entry.key.clone(),
                span: entry.key_span.into(),
                criterion: cx.key.clone(),
                help: Some(list_op_help(&entry.key, &cx.key)),
            });
            continue;
        };
        check_list_operand(op.as_str(), &entry.value, cx);
        conditions.push(ListCondition { op, value: entry.value.clone() });
    }
    Some(ListMatcher { conditions })
}

pub(super) fn check_list_operand(op: &'static str, value: &Value, cx: &mut Cx<'_>) {
    if value.kind() == Kind::Array {
        cx.warn(HasList {
            operator: op,
            span: value.span.into(),
            help: Some(format!(
                "to match any of several values, write one `{}: {{{op}: value}}` criterion per value in an `or` block",
                cx.key
            )),
        });
    }
}

fn list_op_help(op: &str, key: &str) -> String {
    if matches!(op, "in" | "contains" | "starts_with" | "ends_with" | "not" | "not_in") {
        let advice = if op == "in" {
            "; to match any of several values, write one criterion per value in an `or` block"
        } else {
            ""
        };
        return format!("`{key}` holds a list and takes a list matcher: {}{advice}", quoted(LIST_OPS));
    }
    suggest::help(op, LIST_OPS, "list matcher operators")
}

fn quoted(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    suggest::join_and(&items)
}

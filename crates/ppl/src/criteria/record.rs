//! `record`: conditions on a field of an external data record (ppl.md §2.5).

use super::{Cx, matchers};
use crate::error::{EmptyValue, MissingField, UnknownField, WrongType};
use crate::model::{ListOp, RecordCondition, RecordMatcher, RecordOp, StringOp};
use crate::suggest;
use crate::value::{Kind, Value, ValueKind};

const KEYS: &[&str] = &[
    "type",
    "field",
    "is",
    "not",
    "contains",
    "starts_with",
    "ends_with",
    "in",
    "not_in",
    "has",
    "exclude",
    "exists",
    "<",
    "<=",
    "=",
    ">",
    ">=",
];

fn operator(name: &str) -> Option<RecordOp> {
    if let Some(op) = StringOp::from_name(name) {
        return Some(RecordOp::String(op));
    }
    Some(match name {
        "has" => RecordOp::List(ListOp::Has),
        "exclude" => RecordOp::List(ListOp::Exclude),
        "exists" => RecordOp::Exists,
        "<" => RecordOp::Less,
        "<=" => RecordOp::LessOrEqual,
        "=" => RecordOp::Equal,
        ">" => RecordOp::Greater,
        ">=" => RecordOp::GreaterOrEqual,
        _ => return None,
    })
}

pub(super) fn matcher(data: &Value, cx: &mut Cx<'_>) -> Option<RecordMatcher> {
    let Some(entries) = data.as_object() else {
        cx.error(WrongType {
            what: "`record`".to_owned(),
            expected: "an object with `type`, `field` and a condition",
            found: data.kind(),
            span: data.span.into(),
            help: Some("e.g. `record: {type: example.com/hr_user, field: department, is: engineering}`".to_owned()),
        });
        return None;
    };
    let mut record_type = None;
    let mut field = None;
    let mut conditions = Vec::new();
    // A misspelt key was meant as something; "missing" errors would repeat the same mistake.
    let mut misspelt = false;
    for entry in entries {
        let value = &entry.value;
        match entry.key.as_str() {
            "type" => record_type = name(value, "type", cx),
            "field" => field = name(value, "field", cx),
            key => {
                let Some(op) = operator(key) else {
                    let help = match key {
                        "!=" | "<>" | "ne" => "did you mean `not`?".to_owned(),
                        "==" | "eq" | "equals" => "did you mean `is` (or `=` for numbers)?".to_owned(),
                        _ => suggest::help(key, KEYS, "fields and operators of `record`"),
                    };
                    cx.error(UnknownField {
                        criterion: "record".to_owned(),
                        field: key.to_owned(),
                        span: entry.key_span.into(),
                        help: Some(help),
                    });
                    misspelt = true;
                    continue;
                };
                if condition(op, value, cx) {
                    conditions.push(RecordCondition { op, value: value.clone() });
                }
            }
        }
    }
    if !entries.iter().any(|e| e.key == "type") && !misspelt {
        cx.error(MissingField {
            criterion: "record".to_owned(),
            field: "a `type`",
            span: data.span.into(),
            help: Some("name the record type of the external data source, e.g. `type: example.com/hr_user`".to_owned()),
        });
    }
    let only_exists = conditions.iter().all(|c| c.op == RecordOp::Exists);
    if !entries.iter().any(|e| e.key == "field") && !only_exists && !misspelt {
        cx.error(MissingField {
            criterion: "record".to_owned(),
            field: "a `field`",
            span: data.span.into(),
            help: Some("name the field the condition reads; only `exists` works without one".to_owned()),
        });
    }
    if !entries.iter().any(|e| operator(&e.key).is_some()) && !misspelt {
        cx.error(MissingField {
            criterion: "record".to_owned(),
            field: "a condition",
            span: data.span.into(),
            help: Some("add an operator such as `is: value`, `has: value`, `exists: true` or `'>=': 5`".to_owned()),
        });
    }
    Some(RecordMatcher { record_type: record_type?, field, conditions })
}

fn name(value: &Value, what: &'static str, cx: &mut Cx<'_>) -> Option<String> {
    match &value.kind {
        ValueKind::String(text) if text.is_empty() => {
            cx.error(EmptyValue { what: format!("the `{what}` of `record`"), span: value.span.into(), help: None });
            None
        }
        ValueKind::String(text) => Some(text.clone()),
        _ => {
            cx.error(WrongType {
                what: format!("the `{what}` of `record`"),
                expected: "a string",
                found: value.kind(),
                span: value.span.into(),
                help: None,
            });
            None
        }
    }
}

/// Checks a condition's operand; false when it is an error.
fn condition(op: RecordOp, value: &Value, cx: &mut Cx<'_>) -> bool {
    match op {
        RecordOp::String(string_op) => matchers::string_condition(string_op, value, matchers::Operands::AnyJson, cx),
        RecordOp::List(list_op) => {
            matchers::check_list_operand(list_op.as_str(), value, cx);
            true
        }
        RecordOp::Exists => expect(value, Kind::Bool, "`exists`", "`true` or `false`", cx),
        _ => expect(value, Kind::Number, "a numeric comparison", "a number", cx),
    }
}

fn expect(value: &Value, kind: Kind, what: &str, expected: &'static str, cx: &mut Cx<'_>) -> bool {
    if value.kind() == kind {
        return true;
    }
    let help = (value.kind() == Kind::String).then(|| "write it without quotes".to_owned());
    cx.error(WrongType { what: what.to_owned(), expected, found: value.kind(), span: value.span.into(), help });
    false
}

//! `device`: the device matcher (ppl.md §2.4 "device details").

use super::Cx;
use crate::error::{UnknownField, WrongType};
use crate::model::DeviceMatcher;
use crate::suggest;
use crate::value::{Value, ValueKind};
use crate::warning::TruthyString;

const FIELDS: &[&str] = &["is", "approved", "type"];

pub(super) fn matcher(data: &Value, cx: &mut Cx<'_>) -> Option<DeviceMatcher> {
    let Some(entries) = data.as_object() else {
        cx.error(WrongType {
            what: "`device`".to_owned(),
            expected: "an object with `is`, `approved` or `type`",
            found: data.kind(),
            span: data.span.into(),
            help: match &data.kind {
                ValueKind::String(s) => Some(format!("to match a device id, write `device: {{is: \"{s}\"}}`")),
                _ => Some("e.g. `device: {type: any}` for any registered device".to_owned()),
            },
        });
        return None;
    };
    let mut matcher = DeviceMatcher::default();
    for entry in entries {
        let value = &entry.value;
        match entry.key.as_str() {
            "is" => matcher.id = string_field(value, "is", cx),
            "type" => matcher.device_type = string_field(value, "type", cx),
            "approved" => {
                if let ValueKind::String(text) = &value.kind
                    && matches!(text.to_ascii_lowercase().as_str(), "false" | "no" | "off" | "0" | "n")
                {
                    cx.warn(TruthyString {
                        text: text.clone(),
                        span: value.span.into(),
                        help: Some("write `approved: false` without quotes".to_owned()),
                    });
                }
                matcher.approved = Some(value.is_truthy());
            }
            other => cx.error(UnknownField {
                criterion: "device".to_owned(),
                field: other.to_owned(),
                span: entry.key_span.into(),
                help: Some(suggest::help(other, FIELDS, "fields of `device`")),
            }),
        }
    }
    Some(matcher)
}

fn string_field(value: &Value, field: &str, cx: &mut Cx<'_>) -> Option<String> {
    match &value.kind {
        ValueKind::String(s) => Some(s.clone()),
        _ => {
            cx.error(WrongType {
                what: format!("the `{field}` of `device`"),
                expected: "a string",
                found: value.kind(),
                span: value.span.into(),
                help: None,
            });
            None
        }
    }
}

//! The Connect protocol's binary codec (`application/proto`) for `pomerium.config.ConfigService`:
//! each request is read from protobuf into the protojson the JSON codec takes, and each answer
//! written back, by tables of `config.proto`'s field numbers. A request field this console does
//! not take is refused by number (never dropped silently).

use crate::import::As;
use serde_json::{Map, Value, json};
use zero::config_pb::wire::{Wire, fields, put_bytes, put_uint, text};

/// How a field is read and written.
#[derive(Clone, Copy, Debug)]
pub enum F {
    Str,
    Bool,
    U64,
    Bytes,
    StrList,
    StrMap,
    Duration,
    Timestamp,
    /// A `google.protobuf.FieldMask`, as protojson's one comma-separated string.
    Mask,
    /// A `google.protobuf.Struct` of string values.
    Struct,
    Enum(&'static [(u64, &'static str)]),
    Msg(&'static [Field]),
    MsgList(&'static [Field]),
}

/// A field: number, protojson name, type.
pub type Field = (u64, &'static str, F);

const fn of(how: As) -> F {
    match how {
        As::Text => F::Str,
        As::Flag => F::Bool,
        As::List => F::StrList,
        As::Map => F::StrMap,
        As::Duration => F::Duration,
    }
}

const ENTITY_INFO: &[Field] = &[(1, "id", F::Str), (2, "name", F::Str), (3, "modifiedAt", F::Timestamp)];

macro_rules! with_imported {
    ($name:ident, $imported:expr, [$($extra:expr),* $(,)?]) => {
        pub static $name: std::sync::LazyLock<Vec<Field>> = std::sync::LazyLock::new(|| {
            let mut all: Vec<Field> = $imported.iter().map(|(n, name, how)| (*n, *name, of(*how))).collect();
            all.extend([$($extra),*]);
            all
        });
    };
}

with_imported!(
    ROUTE,
    crate::import::ROUTE_FIELDS,
    [
        (28, "id", F::Str),
        (80, "namespaceId", F::Str),
        (86, "policyIds", F::StrList),
        (87, "createdAt", F::Timestamp),
        (88, "modifiedAt", F::Timestamp),
        (90, "enforcedPolicies", F::MsgList(ENTITY_INFO)),
        (91, "assignedPolicies", F::MsgList(ENTITY_INFO)),
    ]
);

with_imported!(
    SETTINGS,
    crate::import::SETTINGS_FIELDS,
    [
        (158, "id", F::Str),
        (159, "namespaceId", F::Str),
        (176, "clusterId", F::Str),
        (180, "autoApplyChangesets", F::Bool),
    ]
);

pub const POLICY: &[Field] = &[
    (1, "id", F::Str),
    (2, "name", F::Str),
    (3, "allowedUsers", F::StrList),
    (5, "allowedDomains", F::StrList),
    (6, "rego", F::StrList),
    (8, "explanation", F::Str),
    (9, "remediation", F::Str),
    (10, "sourcePpl", F::Str),
    (11, "namespaceId", F::Str),
    (13, "description", F::Str),
    (14, "enforced", F::Bool),
    (15, "createdAt", F::Timestamp),
    (16, "modifiedAt", F::Timestamp),
    (17, "enforcedRoutes", F::MsgList(ENTITY_INFO)),
    (18, "assignedRoutes", F::MsgList(ENTITY_INFO)),
];

const KEY_PAIR_STATUS: &[(u64, &str)] = &[(0, "KEY_PAIR_STATUS_UNSPECIFIED"), (1, "KEY_PAIR_STATUS_READY")];
const KEY_PAIR_ORIGIN: &[(u64, &str)] = &[(0, "KEY_PAIR_ORIGIN_UNSPECIFIED"), (1, "KEY_PAIR_ORIGIN_USER")];

pub const KEY_PAIR: &[Field] = &[
    (1, "id", F::Str),
    (2, "namespaceId", F::Str),
    (4, "name", F::Str),
    (5, "certificate", F::Bytes),
    (6, "key", F::Bytes),
    (7, "createdAt", F::Timestamp),
    (8, "modifiedAt", F::Timestamp),
    (9, "status", F::Enum(KEY_PAIR_STATUS)),
    (10, "origin", F::Enum(KEY_PAIR_ORIGIN)),
];

const SERVER_TYPE: &[(u64, &str)] =
    &[(0, "SERVER_TYPE_UNKNOWN"), (1, "SERVER_TYPE_CORE"), (2, "SERVER_TYPE_ENTERPRISE"), (3, "SERVER_TYPE_ZERO")];

/// The request and answer of a method.
pub fn schemas(method: &str) -> Option<(Vec<Field>, Vec<Field>)> {
    let entity = |noun: &str| -> Option<(&'static str, &'static str, F)> {
        Some(match noun {
            "Route" | "Routes" => ("route", "routes", F::Msg(ROUTE.as_slice())),
            "Policy" | "Policies" => ("policy", "policies", F::Msg(POLICY)),
            "KeyPair" | "KeyPairs" => ("keyPair", "keyPairs", F::Msg(KEY_PAIR)),
            _ => return None,
        })
    };
    let list_of = |f: F| match f {
        F::Msg(m) => F::MsgList(m),
        other => other,
    };
    let settings = F::Msg(SETTINGS.as_slice());
    Some(match method {
        "GetServerInfo" => (vec![], vec![(1, "serverType", F::Enum(SERVER_TYPE)), (2, "version", F::Str)]),
        "GetSettings" => (
            vec![(1, "id", F::Str), (2, "clusterId", F::Str), (3, "namespaceId", F::Str)],
            vec![(1, "settings", settings)],
        ),
        "UpdateSettings" => {
            (vec![(1, "settings", settings), (2, "updateMask", F::Mask)], vec![(1, "settings", settings)])
        }
        _ => {
            let verb = ["Create", "Get", "Update", "Delete", "List"].into_iter().find(|v| method.starts_with(v))?;
            let (one, many, message) = entity(method.strip_prefix(verb)?)?;
            match verb {
                "Create" => (vec![(1, one, message)], vec![(1, one, message)]),
                "Get" => (vec![(1, "id", F::Str)], vec![(1, one, message)]),
                "Update" => (vec![(1, one, message), (2, "updateMask", F::Mask)], vec![(1, one, message)]),
                "Delete" => (vec![(1, "id", F::Str), (2, "removeFromAnyAssignedRoutes", F::Bool)], vec![]),
                _ => (
                    vec![(1, "offset", F::U64), (2, "limit", F::U64), (3, "filter", F::Struct), (4, "orderBy", F::Str)],
                    vec![(1, many, list_of(message)), (2, "totalCount", F::U64)],
                ),
            }
        }
    })
}

// --- Reading --------------------------------------------------------------------------------

fn nested<'a>(value: &Wire<'a>) -> Result<Vec<(u64, Wire<'a>)>, String> {
    match value {
        Wire::Bytes(bytes) => fields(bytes).ok_or_else(|| "a nested message is not protobuf".to_owned()),
        _ => Err("expected a nested message".to_owned()),
    }
}

fn read_struct(value: &Wire<'_>) -> Result<Value, String> {
    let mut out = Map::new();
    for (number, entry) in nested(value)? {
        if number != 1 {
            continue;
        }
        let mut key = String::new();
        let mut val = Value::Null;
        for (n, part) in nested(&entry)? {
            match n {
                1 => key = text(&part).unwrap_or_default(),
                2 => {
                    for (kind, v) in nested(&part)? {
                        val = match (kind, &v) {
                            (3, _) => json!(text(&v).unwrap_or_default()),
                            (4, Wire::Varint(b)) => json!(*b != 0),
                            _ => return Err("`filter` takes string values".to_owned()),
                        };
                    }
                }
                _ => {}
            }
        }
        out.insert(key, val);
    }
    Ok(Value::Object(out))
}

fn read_timestamp(value: &Wire<'_>) -> Result<Value, String> {
    let mut seconds = 0i64;
    for (n, v) in nested(value)? {
        if let (1, Wire::Varint(s)) = (n, v) {
            seconds = i64::try_from(s).unwrap_or(0);
        }
    }
    Ok(jiff::Timestamp::from_second(seconds).map(|t| json!(t.to_string())).unwrap_or(Value::Null))
}

/// A protobuf message as protojson, by `schema`; `what` names it in errors.
pub fn read(bytes: &[u8], schema: &[Field], what: &str) -> Result<Map<String, Value>, String> {
    let parsed = fields(bytes).ok_or_else(|| format!("{what} is not protobuf"))?;
    let mut out = Map::new();
    for (number, value) in &parsed {
        let Some((_, name, how)) = schema.iter().find(|(n, _, _)| n == number) else {
            return Err(format!("{what}: field {number} is not supported by this console"));
        };
        let bad = || format!("{what}: `{name}` could not be read");
        let read_value = match how {
            F::Str => json!(text(value).ok_or_else(bad)?),
            F::Bytes => match value {
                Wire::Bytes(b) => json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)),
                _ => return Err(bad()),
            },
            F::Bool => match value {
                Wire::Varint(v) => json!(*v != 0),
                _ => return Err(bad()),
            },
            F::U64 => match value {
                Wire::Varint(v) => json!(v.to_string()),
                _ => return Err(bad()),
            },
            F::Enum(names) => match value {
                Wire::Varint(v) => json!(names.iter().find(|(n, _)| n == v).map(|(_, s)| *s).ok_or_else(bad)?),
                _ => return Err(bad()),
            },
            F::Duration => json!(zero::config_pb::wire::duration(value).ok_or_else(bad)?),
            F::Timestamp => read_timestamp(value)?,
            F::Struct => read_struct(value)?,
            F::Mask => {
                let paths: Vec<String> =
                    nested(value)?.iter().filter(|(n, _)| *n == 1).filter_map(|(_, v)| text(v)).collect();
                json!(paths.join(","))
            }
            F::StrList => {
                let item = text(value).ok_or_else(bad)?;
                let list = out.entry((*name).to_owned()).or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(json!(item));
                }
                continue;
            }
            F::StrMap => {
                let (k, v) = zero::config_pb::wire::map_entry(value).ok_or_else(bad)?;
                let map = out.entry((*name).to_owned()).or_insert_with(|| json!({}));
                if let Some(map) = map.as_object_mut() {
                    map.insert(k, json!(v));
                }
                continue;
            }
            F::Msg(inner) => match value {
                Wire::Bytes(b) => Value::Object(read(b, inner, &format!("{what}.{name}"))?),
                _ => return Err(bad()),
            },
            F::MsgList(inner) => {
                let Wire::Bytes(b) = value else { return Err(bad()) };
                let item = Value::Object(read(b, inner, &format!("{what}.{name}"))?);
                let list = out.entry((*name).to_owned()).or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(item);
                }
                continue;
            }
        };
        out.insert((*name).to_owned(), read_value);
    }
    Ok(out)
}

// --- Writing --------------------------------------------------------------------------------

fn write_duration(out: &mut Vec<u8>, number: u64, text: &str) {
    zero::config_pb::wire::put_duration(out, number, text);
}

/// A protojson message as protobuf, by `schema` (fields it does not name are left out: they are
/// the API's extra, computed fields).
pub fn write(message: &Map<String, Value>, schema: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for (number, name, how) in schema {
        let Some(value) = message.get(*name).filter(|v| !v.is_null()) else { continue };
        match how {
            F::Str => {
                if let Some(s) = value.as_str() {
                    put_bytes(&mut out, *number, s.as_bytes());
                }
            }
            F::Bytes => {
                let decoded = value
                    .as_str()
                    .and_then(|s| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).ok());
                if let Some(bytes) = decoded {
                    put_bytes(&mut out, *number, &bytes);
                }
            }
            F::Bool => {
                if let Some(b) = value.as_bool() {
                    put_uint(&mut out, *number, u64::from(b));
                }
            }
            F::U64 => {
                if let Some(n) = value.as_u64().or_else(|| value.as_str().and_then(|s| s.parse().ok())) {
                    put_uint(&mut out, *number, n);
                }
            }
            F::Enum(names) => {
                if let Some(n) = names.iter().find(|(_, s)| Some(*s) == value.as_str()).map(|(n, _)| *n) {
                    put_uint(&mut out, *number, n);
                }
            }
            F::Duration => {
                if let Some(s) = value.as_str() {
                    write_duration(&mut out, *number, s);
                }
            }
            F::Timestamp => {
                if let Some(t) = value.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) {
                    let mut inner = Vec::new();
                    put_uint(&mut inner, 1, u64::try_from(t.as_second()).unwrap_or(0));
                    put_bytes(&mut out, *number, &inner);
                }
            }
            F::Mask | F::Struct => {}
            F::StrList => {
                for item in value.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    put_bytes(&mut out, *number, item.as_bytes());
                }
            }
            F::StrMap => {
                for (k, v) in value.as_object().into_iter().flatten() {
                    let mut entry = Vec::new();
                    put_bytes(&mut entry, 1, k.as_bytes());
                    put_bytes(&mut entry, 2, v.as_str().unwrap_or_default().as_bytes());
                    put_bytes(&mut out, *number, &entry);
                }
            }
            F::Msg(inner) => {
                if let Some(m) = value.as_object() {
                    put_bytes(&mut out, *number, &write(m, inner));
                }
            }
            F::MsgList(inner) => {
                for m in value.as_array().into_iter().flatten().filter_map(Value::as_object) {
                    put_bytes(&mut out, *number, &write(m, inner));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_round_trips_and_unknown_fields_are_refused() {
        let route = json!({"name": "app", "from": "https://a.example.com", "to": ["http://b"], "timeout": "30s",
            "setRequestHeaders": {"X": "1"}, "allowWebsockets": true, "policyIds": ["p1", "p2"]});
        let bytes = write(route.as_object().unwrap_or(&Map::new()), ROUTE.as_slice());
        let back = read(&bytes, ROUTE.as_slice(), "route").unwrap_or_default();
        assert_eq!(Value::Object(back), route);
        // Field 27 (inline policies) is not taken.
        let mut with_policies = bytes.clone();
        put_bytes(&mut with_policies, 27, &[]);
        assert!(read(&with_policies, ROUTE.as_slice(), "route").is_err_and(|e| e.contains("field 27")));
    }
}

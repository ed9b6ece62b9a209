//! The generated gRPC types (`proto/databroker.proto`) and conversions between them and the
//! record model. Record data travels as an `Any` holding a `google.protobuf.Struct`.

#[allow(clippy::all, clippy::pedantic, clippy::restriction, reason = "generated code")]
pub mod pb {
    tonic::include_proto!("databroker");
}

use crate::record::{Record, TypeOptions, Versions};
use prost::Message;
use prost_types::{Any, ListValue, Struct, Timestamp, value::Kind};
use serde_json::{Map, Number, Value};
use std::time::Duration;

/// The type URL of the `Any` that carries record data.
pub const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";

/// Why a record from the wire cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("record {index}: data must be a `{STRUCT_TYPE_URL}` in an Any, found `{found}`")]
    UnsupportedData { index: usize, found: String },
    #[error("record {index}: data is not a valid google.protobuf.Struct: {reason}")]
    MalformedData { index: usize, reason: String },
    #[error("record {index}: a record needs a type")]
    MissingType { index: usize },
    #[error("record {index}: a number in the data is not finite")]
    NotFinite { index: usize },
}

pub fn record_from_wire(index: usize, record: pb::Record) -> Result<Record, WireError> {
    if record.r#type.is_empty() {
        return Err(WireError::MissingType { index });
    }
    let data = match record.data {
        None => Map::new(),
        Some(any) if any.type_url == STRUCT_TYPE_URL => {
            let decoded = Struct::decode(any.value.as_slice())
                .map_err(|e| WireError::MalformedData { index, reason: e.to_string() })?;
            struct_to_json(decoded).ok_or(WireError::NotFinite { index })?
        }
        Some(any) => return Err(WireError::UnsupportedData { index, found: any.type_url }),
    };
    Ok(Record {
        record_type: record.r#type,
        id: record.id,
        version: record.version,
        data,
        modified_at: record.modified_at.and_then(timestamp_from_wire),
        deleted_at: record.deleted_at.and_then(timestamp_from_wire),
    })
}

pub fn record_to_wire(record: &Record) -> pb::Record {
    let data = (!record.is_deleted())
        .then(|| Any { type_url: STRUCT_TYPE_URL.to_owned(), value: json_to_struct(&record.data).encode_to_vec() });
    pb::Record {
        version: record.version,
        r#type: record.record_type.clone(),
        id: record.id.clone(),
        data,
        modified_at: record.modified_at.map(timestamp_to_wire),
        deleted_at: record.deleted_at.map(timestamp_to_wire),
    }
}

pub fn versions_to_wire(versions: Versions) -> pb::Versions {
    pb::Versions { server_version: versions.server_version, latest_record_version: versions.latest_record_version }
}

pub fn options_to_wire(options: &TypeOptions) -> pb::Options {
    pb::Options {
        capacity: options.capacity,
        indexable_fields: options.indexable_fields.clone(),
        ttl: options.ttl.map(duration_to_wire),
    }
}

pub fn options_from_wire(options: pb::Options) -> TypeOptions {
    TypeOptions {
        capacity: options.capacity,
        indexable_fields: options.indexable_fields,
        ttl: options.ttl.and_then(duration_from_wire),
    }
}

/// A non-negative protobuf duration; negative or out-of-range ones are `None`.
pub fn duration_from_wire(duration: prost_types::Duration) -> Option<Duration> {
    let seconds = u64::try_from(duration.seconds).ok()?;
    let nanos = u32::try_from(duration.nanos).ok()?;
    Duration::new(seconds, 0).checked_add(Duration::from_nanos(u64::from(nanos)))
}

pub fn duration_to_wire(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

fn timestamp_from_wire(timestamp: Timestamp) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(timestamp.seconds, timestamp.nanos).ok()
}

fn timestamp_to_wire(timestamp: jiff::Timestamp) -> Timestamp {
    Timestamp { seconds: timestamp.as_second(), nanos: timestamp.subsec_nanosecond() }
}

/// JSON from a protobuf `Struct`; `None` if a number is NaN or infinite (JSON has no such).
pub fn struct_to_json(value: Struct) -> Option<Map<String, Value>> {
    value.fields.into_iter().map(|(k, v)| Some((k, value_to_json(v)?))).collect()
}

fn value_to_json(value: prost_types::Value) -> Option<Value> {
    Some(match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(n)) => Value::Number(number(n)?),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(list)) => Value::Array(list.values.into_iter().map(value_to_json).collect::<Option<_>>()?),
        Some(Kind::StructValue(object)) => Value::Object(struct_to_json(object)?),
    })
}

/// Integral numbers stay integers in JSON (`3`, not `3.0`), as Pomerium's JSON shows them.
fn number(n: f64) -> Option<Number> {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        #[expect(clippy::cast_possible_truncation, reason = "integral and within i64 range, checked above")]
        return Some(Number::from(n as i64));
    }
    Number::from_f64(n)
}

pub fn json_to_struct(object: &Map<String, Value>) -> Struct {
    Struct { fields: object.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect() }
}

pub fn json_to_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue { values: items.iter().map(json_to_value).collect() }),
        Value::Object(object) => Kind::StructValue(json_to_struct(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_round_trip_through_the_wire() {
        let data = json!({"email": "a@example.com", "n": 3, "f": 1.5, "list": [true, null, "x"], "nested": {"k": "v"}});
        let mut record = Record::new("t", "id", data.as_object().unwrap().clone());
        record.version = 7;
        record.modified_at = Some(jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let back = record_from_wire(0, record_to_wire(&record)).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn foreign_data_types_are_refused_with_the_type_named() {
        let wire = pb::Record {
            r#type: "t".into(),
            data: Some(Any { type_url: "type.googleapis.com/session.Session".into(), value: vec![1, 2] }),
            ..pb::Record::default()
        };
        let error = record_from_wire(2, wire).unwrap_err().to_string();
        assert!(error.contains("record 2") && error.contains("session.Session"), "{error}");
    }

    #[test]
    fn malformed_struct_bytes_are_an_error_not_a_panic() {
        let wire = pb::Record {
            r#type: "t".into(),
            data: Some(Any { type_url: STRUCT_TYPE_URL.into(), value: vec![0xff, 0xff, 0xff] }),
            ..pb::Record::default()
        };
        assert!(matches!(record_from_wire(0, wire), Err(WireError::MalformedData { .. })));
    }
}

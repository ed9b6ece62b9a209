//! A resource bundle's content: databroker records, each a protobuf `databroker.Record` preceded
//! by its length as a varint (what upstream's `protodelim` writes). The `config` bundle holds one
//! record of type [`CONFIG_TYPE`](databroker::record::CONFIG_TYPE), id `config`, whose data is
//! on the wire what Pomerium Zero ships: an `Any` of a protobuf `pomerium.config.Config`
//! ([`crate::config_pb`]). In memory (and in our databroker) the record's data is the
//! configuration document `crates/pomerium/src/dynamic.rs` reads: `{"name", "routes": [...],
//! "certificates": [...], "settings": {...}}` with `config.yaml` keys. The changeset version the
//! console applied (`changesetVersion`) travels as the wire record's `version`, which a receiver's
//! databroker replaces with its own on write anyway.
//!
//! Records of other types, and configuration records of the earlier form (data a
//! `google.protobuf.Struct` of that document, what builds before this one shipped), are read as
//! before; configuration records are always written as protobuf `Config`.
//!
//! Decoding is bounded: a hostile or corrupt bundle gives an error, never a panic or a huge
//! allocation. A configuration record with a field this build does not take is an error naming
//! the field (the whole bundle is refused, so the last good configuration keeps serving).

use crate::config_pb::{CONFIG_TYPE_URL, decode_config, encode_config};
use databroker::record::{CONFIG_TYPE, Record};
use databroker::wire::{pb, record_from_wire, record_to_wire};
use prost::Message as _;
use serde_json::Value;

/// The bundle that carries the cluster's configuration.
pub const CONFIG_BUNDLE: &str = "config";
/// The largest record accepted.
pub const MAX_RECORD_LEN: usize = 16 << 20;
/// The most records in one bundle.
pub const MAX_RECORDS: usize = 100_000;
/// The largest bundle (after gzip) a cluster downloads.
pub const MAX_BUNDLE_LEN: usize = 64 << 20;
/// The record type under which a cluster keeps each bundle's download state.
pub const BUNDLE_CACHE_ENTRY_TYPE: &str = "pomerium.io/BundleCacheEntry";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the bundle is larger than {MAX_BUNDLE_LEN} bytes")]
    TooLarge,
    #[error("record {index} at byte {offset}: the length prefix is not a valid varint")]
    BadLength { index: usize, offset: usize },
    #[error("record {index} at byte {offset}: {len} bytes is more than the {MAX_RECORD_LEN} a record may have")]
    RecordTooLarge { index: usize, offset: usize, len: u64 },
    #[error("record {index} at byte {offset}: the bundle ends {missing} bytes short of the record")]
    Truncated { index: usize, offset: usize, missing: usize },
    #[error("the bundle has more than {MAX_RECORDS} records")]
    TooManyRecords,
    #[error("record {index}: not a databroker.Record: {reason}")]
    NotARecord { index: usize, reason: String },
    #[error("{0}")]
    Record(String),
    #[error("record {index} (`{id}`): its pomerium.config.Config {reason}")]
    Config { index: usize, id: String, reason: String },
}

/// The wire form of a record: a configuration record's data as protobuf `Config`.
pub fn to_wire(record: &Record) -> Result<pb::Record, BundleError> {
    let mut wire = record_to_wire(record);
    if record.record_type == CONFIG_TYPE && !record.is_deleted() {
        let value = encode_config(&record.data).map_err(|reason| BundleError::Config {
            index: 0,
            id: record.id.clone(),
            reason: format!("cannot be written: {reason}"),
        })?;
        wire.data = Some(prost_types::Any { type_url: CONFIG_TYPE_URL.to_owned(), value });
        if let Some(version) = record.data.get("changesetVersion").and_then(Value::as_u64) {
            wire.version = version;
        }
    }
    Ok(wire)
}

/// Encodes records as a bundle; an error when a configuration record has a key protobuf
/// `Config` has no field for (it would otherwise be left out of what the cluster gets).
pub fn try_encode(records: &[Record]) -> Result<Vec<u8>, BundleError> {
    let mut out = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let wire = to_wire(record).map_err(|e| match e {
            BundleError::Config { id, reason, .. } => BundleError::Config { index, id, reason },
            other => other,
        })?;
        // Encoding into a Vec only fails for lack of capacity, which a Vec grows.
        wire.encode_length_delimited(&mut out).map_err(|e| BundleError::Record(e.to_string()))?;
    }
    Ok(out)
}

/// Encodes records as a bundle (for records known to encode; see [`try_encode`]): a record that
/// does not encode gives an empty bundle, which no cluster reads as configuration.
pub fn encode(records: &[Record]) -> Vec<u8> {
    try_encode(records).unwrap_or_default()
}

/// Decodes a bundle into records.
pub fn decode(mut bytes: &[u8]) -> Result<Vec<Record>, BundleError> {
    if bytes.len() > MAX_BUNDLE_LEN {
        return Err(BundleError::TooLarge);
    }
    let total = bytes.len();
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let index = records.len();
        let offset = total - bytes.len();
        if index >= MAX_RECORDS {
            return Err(BundleError::TooManyRecords);
        }
        let len = prost::encoding::decode_varint(&mut bytes).map_err(|_| BundleError::BadLength { index, offset })?;
        let len_usize = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_RECORD_LEN)
            .ok_or(BundleError::RecordTooLarge { index, offset, len })?;
        let Some((body, rest)) = bytes.split_at_checked(len_usize) else {
            return Err(BundleError::Truncated { index, offset, missing: len_usize - bytes.len() });
        };
        let wire = pb::Record::decode(body).map_err(|e| BundleError::NotARecord { index, reason: e.to_string() })?;
        records.push(from_wire(index, wire)?);
        bytes = rest;
    }
    Ok(records)
}

/// A record from the wire: a protobuf `Config` read into the configuration document.
pub fn from_wire(index: usize, mut wire: pb::Record) -> Result<Record, BundleError> {
    let config = match wire.data.take_if(|any| any.type_url == CONFIG_TYPE_URL) {
        Some(any) => {
            let mut data = decode_config(&any.value).map_err(|reason| BundleError::Config {
                index,
                id: wire.id.clone(),
                reason: format!("was refused: {reason}"),
            })?;
            if wire.version > 0 {
                data.insert("changesetVersion".to_owned(), Value::from(wire.version));
            }
            Some(data)
        }
        None => None,
    };
    let mut record = record_from_wire(index, wire).map_err(|e| BundleError::Record(e.to_string()))?;
    if let Some(data) = config {
        record.data = data;
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use databroker::record::CONFIG_TYPE;
    use serde_json::json;

    fn config_record() -> Record {
        let data = json!({"name": "config", "routes": [{"from": "https://a.example.com", "to": ["http://127.0.0.1:1"],
            "description": "a route with a description long enough for a two-byte length prefix, as the test wants"}],
            "changesetVersion": 4});
        let map = data.as_object().unwrap().clone();
        Record::new(CONFIG_TYPE, "config", map)
    }

    #[test]
    fn round_trip() {
        let other = Record::new("type.googleapis.com/pomerium.x", "b", serde_json::Map::new());
        let bytes = encode(&[config_record(), other.clone()]);
        let records = decode(&bytes).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].record_type, CONFIG_TYPE);
        assert_eq!(records[0].id, "config");
        assert_eq!(records[0].data, config_record().data);
        assert_eq!(records[1].id, "b");
        assert_eq!(decode(&[]).unwrap(), Vec::<Record>::new());
        // On the wire: the configuration as protobuf `Config`, the other record as a Struct.
        let wire = to_wire(&config_record()).unwrap();
        assert_eq!(wire.data.as_ref().unwrap().type_url, CONFIG_TYPE_URL);
        assert_eq!(wire.version, 4);
        assert_eq!(to_wire(&other).unwrap().data.unwrap().type_url, databroker::wire::STRUCT_TYPE_URL);
    }

    #[test]
    fn the_earlier_struct_form_is_still_read() {
        // What builds before the protobuf `Config` shipped (and a Struct-writing control plane).
        let old = record_to_wire(&config_record()).encode_length_delimited_to_vec();
        let records = decode(&old).unwrap();
        assert_eq!(records[0].data, config_record().data);
    }

    #[test]
    fn a_configuration_that_protobuf_cannot_carry_is_not_encoded() {
        let mut record = config_record();
        record.data.insert("not_an_option".to_owned(), json!(true));
        let error = try_encode(&[record.clone()]).unwrap_err().to_string();
        assert!(error.contains("config.not_an_option"), "{error}");
        assert!(encode(&[record]).is_empty());
    }

    #[test]
    fn length_prefix_is_a_varint() {
        let bytes = encode(&[config_record()]);
        let body = to_wire(&config_record()).unwrap().encode_to_vec();
        assert!(body.len() >= 128, "the test wants a two-byte prefix");
        assert_eq!(bytes.len(), body.len() + 2);
        assert_eq!(&bytes[2..], body.as_slice());
    }

    #[test]
    fn hostile_bundles_are_refused() {
        let bytes = encode(&[config_record(), config_record()]);
        let first = bytes.len() / 2;
        // Cut anywhere inside the second record.
        for cut in [first + 2, first + 5, bytes.len() - 1] {
            assert!(matches!(decode(&bytes[..cut]), Err(BundleError::Truncated { index: 1, .. })), "{cut}");
        }
        // A varint that never ends, and one of more than ten bytes.
        assert!(matches!(decode(&[0x80]), Err(BundleError::BadLength { index: 0, offset: 0 })));
        assert!(matches!(decode(&[0xff; 11]), Err(BundleError::BadLength { .. })));
        // A length of 2^63: refused before any allocation.
        let mut huge = Vec::new();
        prost::encoding::encode_varint(1 << 63, &mut huge);
        assert!(matches!(decode(&huge), Err(BundleError::RecordTooLarge { .. })));
        // Bytes that are not a record, and a record with no type.
        assert!(matches!(decode(&[0x02, 0xff, 0xff]), Err(BundleError::NotARecord { index: 0, .. })));
        let untyped = pb::Record::default().encode_length_delimited_to_vec();
        assert!(matches!(decode(&untyped), Err(BundleError::Record(_))));
        // Many empty records.
        let zero_len = vec![0u8; MAX_RECORDS + 1];
        assert!(decode(&zero_len).is_err());
        assert!(matches!(decode(&vec![0; MAX_BUNDLE_LEN + 1]), Err(BundleError::TooLarge)));
    }
}

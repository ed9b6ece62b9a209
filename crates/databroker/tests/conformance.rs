//! One conformance suite, run against every backend: the in-memory storage and a real
//! PostgreSQL (a throwaway cluster, or `DATABROKER_TEST_POSTGRES_URL`), each test on a fresh
//! database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

use databroker::query::{Filter, Query};
use databroker::record::{Record, TypeOptions, Versions};
use databroker::storage::{MemoryStorage, PostgresStorage, Storage, StorageError};
use pg_test_cluster::TestPostgres;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

fn data(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn record(record_type: &str, id: &str, value: Value) -> Record {
    Record::new(record_type, id, data(value))
}

async fn versions<S: Storage>(storage: &S) -> Versions {
    let info = storage.server_info().await.unwrap();
    Versions { server_version: info.server_version, latest_record_version: info.latest_record_version }
}

async fn put_assigns_one_increasing_version_across_types<S: Storage>(storage: S) {
    let before = versions(&storage).await;
    let written =
        storage.put(vec![record("a", "1", json!({"k": "v"})), record("b", "1", json!({"n": 2}))]).await.unwrap();
    assert_eq!(written.server_version, before.server_version);
    let numbers: Vec<u64> = written.records.iter().map(|r| r.version).collect();
    assert!(numbers[0] > before.latest_record_version && numbers[1] > numbers[0], "{numbers:?}");
    assert!(written.records.iter().all(|r| r.modified_at.is_some()));
    let got = storage.get("a", "1").await.unwrap().unwrap();
    assert_eq!(got.data, data(json!({"k": "v"})));
    assert_eq!(got.version, numbers[0]);
    assert!(storage.get("a", "2").await.unwrap().is_none());
    assert!(storage.get("c", "1").await.unwrap().is_none());
    assert_eq!(versions(&storage).await.latest_record_version, numbers[1]);
}

async fn a_tombstone_deletes_and_is_logged<S: Storage>(storage: S) {
    storage.put(vec![record("t", "x", json!({"k": 1}))]).await.unwrap();
    let from = versions(&storage).await;
    let deleted = storage.put(vec![Record::tombstone("t", "x")]).await.unwrap();
    assert!(deleted.records[0].deleted_at.is_some());
    assert!(storage.get("t", "x").await.unwrap().is_none());
    let changes = storage.changes(from, None).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert!(changes[0].is_deleted() && changes[0].id == "x" && changes[0].version == from.latest_record_version + 1);
    assert!(storage.latest(Some("t")).await.unwrap().records.is_empty());
}

async fn changes_come_in_order_and_by_type<S: Storage>(storage: S) {
    let start = versions(&storage).await;
    for i in 0..5 {
        let record_type = if i % 2 == 0 { "even" } else { "odd" };
        storage.put(vec![record(record_type, &i.to_string(), json!({"i": i}))]).await.unwrap();
    }
    let all = storage.changes(start, None).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["0", "1", "2", "3", "4"]);
    assert!(all.windows(2).all(|w| w[0].version < w[1].version));
    let odd = storage.changes(start, Some("odd")).await.unwrap();
    assert_eq!(odd.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["1", "3"]);
    let after_two = Versions { latest_record_version: all[2].version, ..start };
    assert_eq!(storage.changes(after_two, None).await.unwrap().len(), 2);
    let latest = versions(&storage).await;
    assert!(storage.changes(latest, None).await.unwrap().is_empty());
}

async fn stale_readers_are_told_to_start_over<S: Storage>(storage: S) {
    storage.put(vec![record("t", "1", json!({}))]).await.unwrap();
    let current = versions(&storage).await;
    let wrong_server = Versions { server_version: current.server_version ^ 1, ..current };
    assert!(matches!(storage.changes(wrong_server, None).await, Err(StorageError::InvalidServerVersion { .. })));
    let ahead = Versions { latest_record_version: current.latest_record_version + 10, ..current };
    assert!(matches!(storage.changes(ahead, None).await, Err(StorageError::InvalidRecordVersion { .. })));
}

async fn the_snapshot_holds_live_records_and_their_versions<S: Storage>(storage: S) {
    storage
        .put(vec![record("a", "1", json!({})), record("a", "2", json!({})), record("b", "1", json!({}))])
        .await
        .unwrap();
    storage.put(vec![Record::tombstone("a", "2")]).await.unwrap();
    let snapshot = storage.latest(None).await.unwrap();
    let mut keys: Vec<(String, String)> =
        snapshot.records.iter().map(|r| (r.record_type.clone(), r.id.clone())).collect();
    keys.sort();
    assert_eq!(keys, [("a".to_owned(), "1".to_owned()), ("b".to_owned(), "1".to_owned())]);
    assert_eq!(snapshot.versions, versions(&storage).await);
    assert_eq!(storage.latest(Some("b")).await.unwrap().records.len(), 1);
}

async fn patch_replaces_only_masked_fields_of_existing_records<S: Storage>(storage: S) {
    storage.put(vec![record("t", "1", json!({"keep": 1, "change": {"x": 1, "y": 2}}))]).await.unwrap();
    let patched = storage
        .patch(
            vec![
                record("t", "1", json!({"keep": 99, "change": {"x": 10}})),
                record("t", "missing", json!({"keep": 5})),
            ],
            &["change.x".to_owned()],
        )
        .await
        .unwrap();
    assert_eq!(patched.records.len(), 1, "missing records are skipped");
    let got = storage.get("t", "1").await.unwrap().unwrap();
    assert_eq!(Value::Object(got.data), json!({"keep": 1, "change": {"x": 10, "y": 2}}));
    assert!(storage.get("t", "missing").await.unwrap().is_none());
}

async fn query_searches_filters_and_pages<S: Storage>(storage: S) {
    storage
        .put(vec![
            record("u", "1", json!({"email": "alice@example.com", "team": "eng"})),
            record("u", "2", json!({"email": "bob@example.com", "team": "eng"})),
            record("u", "3", json!({"email": "carol@example.com", "team": "ops"})),
            record("net", "office", json!({"$index": {"cidr": "10.0.0.0/8"}})),
            record("net", "lab", json!({"$index": {"cidr": "10.9.0.0/16"}})),
        ])
        .await
        .unwrap();
    let search = Query { record_type: "u".into(), search: "ALICE".into(), ..Query::default() };
    let result = storage.query(&search).await.unwrap();
    assert_eq!(result.page.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["1"]);
    assert_eq!(result.versions, versions(&storage).await);
    let filter = Filter::parse(&data(json!({"$and": [{"team": "eng"}, {"$not": {"id": "1"}}]}))).unwrap();
    let filtered =
        storage.query(&Query { record_type: "u".into(), filter: Some(filter), ..Query::default() }).await.unwrap();
    assert_eq!(filtered.page.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["2"]);
    let any_of = Filter::parse(&data(json!({"id": {"$isAnyOf": ["1", "3"]}}))).unwrap();
    let page = Query { record_type: "u".into(), filter: Some(any_of), offset: 1, limit: Some(5), ..Query::default() };
    let paged = storage.query(&page).await.unwrap();
    assert_eq!(paged.page.total_count, 2);
    assert_eq!(paged.page.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["3"]);
    let cidr = Filter::parse(&data(json!({"$index": "10.9.1.1"}))).unwrap();
    let networks =
        storage.query(&Query { record_type: "net".into(), filter: Some(cidr), ..Query::default() }).await.unwrap();
    assert_eq!(networks.page.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["lab", "office"]);
}

async fn capacity_deletes_the_oldest_records<S: Storage>(storage: S) {
    storage.set_options("c", TypeOptions { capacity: Some(2), ..TypeOptions::default() }).await.unwrap();
    let from = versions(&storage).await;
    for id in ["1", "2", "3"] {
        storage.put(vec![record("c", id, json!({}))]).await.unwrap();
    }
    let mut ids: Vec<String> = storage.latest(Some("c")).await.unwrap().records.into_iter().map(|r| r.id).collect();
    ids.sort();
    assert_eq!(ids, ["2", "3"]);
    let changes = storage.changes(from, Some("c")).await.unwrap();
    assert!(changes.iter().any(|r| r.id == "1" && r.is_deleted()), "the eviction reaches sync streams");
}

async fn options_round_trip_and_types_are_listed<S: Storage>(storage: S) {
    let options = TypeOptions {
        capacity: Some(50_000),
        indexable_fields: vec!["key".into()],
        ttl: Some(Duration::from_secs(15 * 60)),
    };
    storage.set_options("type.googleapis.com/session.SessionBindingRequest", options.clone()).await.unwrap();
    assert_eq!(storage.get_options("type.googleapis.com/session.SessionBindingRequest").await.unwrap(), options);
    assert_eq!(storage.get_options("other").await.unwrap(), TypeOptions::default());
    storage.put(vec![record("b", "1", json!({})), record("a", "1", json!({}))]).await.unwrap();
    assert_eq!(storage.list_types().await.unwrap(), ["a", "b"]);
}

async fn clear_starts_a_new_server_version<S: Storage>(storage: S) {
    storage.put(vec![record("t", "1", json!({}))]).await.unwrap();
    let (old, new) = storage.clear().await.unwrap();
    assert_ne!(old.server_version, new.server_version);
    assert!(storage.get("t", "1").await.unwrap().is_none());
    assert!(matches!(storage.changes(old, None).await, Err(StorageError::InvalidServerVersion { .. })));
    assert!(storage.changes(new, None).await.unwrap().is_empty());
    let written = storage.put(vec![record("t", "2", json!({}))]).await.unwrap();
    assert_eq!(written.server_version, new.server_version);
    assert_eq!(storage.changes(new, None).await.unwrap().len(), 1);
}

async fn a_lease_has_one_holder_at_a_time<S: Storage>(storage: S) {
    let minute = Duration::from_secs(60);
    let first = storage.acquire_lease("refresher", minute).await.unwrap().unwrap();
    assert!(storage.acquire_lease("refresher", minute).await.unwrap().is_none());
    assert!(storage.renew_lease("refresher", &first, minute).await.unwrap());
    assert!(!storage.renew_lease("refresher", "someone-else", minute).await.unwrap());
    storage.release_lease("refresher", "someone-else").await.unwrap();
    assert!(storage.acquire_lease("refresher", minute).await.unwrap().is_none(), "only the holder releases");
    storage.release_lease("refresher", &first).await.unwrap();
    let second = storage.acquire_lease("refresher", Duration::from_millis(200)).await.unwrap().unwrap();
    assert_ne!(first, second);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!storage.renew_lease("refresher", &second, minute).await.unwrap(), "expired");
    assert!(storage.acquire_lease("refresher", minute).await.unwrap().is_some(), "an expired lease is free");
}

async fn a_write_wakes_watchers<S: Storage>(storage: S) {
    let mut watch = storage.watch();
    watch.borrow_and_update();
    storage.put(vec![record("t", "1", json!({}))]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.changed()).await.unwrap().unwrap();
}

async fn the_last_write_of_a_key_in_one_put_wins<S: Storage>(storage: S) {
    let from = versions(&storage).await;
    storage.put(vec![record("t", "k", json!({"n": 1})), record("t", "k", json!({"n": 2}))]).await.unwrap();
    assert_eq!(storage.get("t", "k").await.unwrap().unwrap().data, data(json!({"n": 2})));
    assert_eq!(storage.changes(from, None).await.unwrap().len(), 2);
}

/// Many concurrent writers and one reader following the change log: the reader sees every
/// write exactly once, never skipping one that commits late.
async fn a_reader_following_concurrent_writers_misses_nothing<S: Storage>(storage: S) {
    let storage = Arc::new(storage);
    let start = versions(&*storage).await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let storage = Arc::clone(&storage);
            tokio::spawn(async move {
                for i in 0..40 {
                    storage.put(vec![record("t", &format!("{w}-{i}"), json!({}))]).await.unwrap();
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    let mut cursor = start;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 320 && tokio::time::Instant::now() < deadline {
        for change in storage.changes(cursor, None).await.unwrap() {
            assert!(change.version > cursor.latest_record_version);
            cursor.latest_record_version = change.version;
            seen.push(change.id);
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (320, 320));
}

/// Concurrent puts (which PostgreSQL writes together) each get back their own records, with
/// distinct versions, and the change log holds each once.
async fn concurrent_puts_each_get_their_own_records_back<S: Storage>(storage: S) {
    let storage = Arc::new(storage);
    let from = versions(&*storage).await;
    let puts: Vec<_> = (0..16)
        .map(|n| {
            let storage = Arc::clone(&storage);
            tokio::spawn(async move {
                let ids = [format!("{n}-a"), format!("{n}-b")];
                let records = ids.iter().map(|id| record("t", id, json!({"n": n}))).collect();
                let written = storage.put(records).await.unwrap();
                let got: Vec<&str> = written.records.iter().map(|r| r.id.as_str()).collect();
                assert_eq!(got, [ids[0].as_str(), ids[1].as_str()]);
                assert!(written.records.iter().all(|r| r.data == data(json!({"n": n}))));
                assert!(written.records[0].version < written.records[1].version);
                written.records.iter().map(|r| r.version).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for put in puts {
        all.extend(put.await.unwrap());
    }
    assert_eq!(all.len(), 32);
    assert_eq!(storage.changes(from, None).await.unwrap().len(), 32);
}

/// Text PostgreSQL cannot store (NUL) is refused as an invalid argument by every backend, and
/// refusing it leaves puts made at the same time alone.
async fn a_record_with_nul_text_is_refused_alone<S: Storage>(storage: S) {
    let storage = Arc::new(storage);
    let bad = [
        record("t", "nul\0id", json!({})),
        record("t", "k", json!({"name": "a\0b"})),
        record("t", "k", json!({"nested": [{"k\0": 1}]})),
    ];
    let good = Arc::clone(&storage);
    let good = tokio::spawn(async move { good.put(vec![record("t", "good", json!({"ok": true}))]).await });
    for record in bad {
        let error = storage.put(vec![record]).await.unwrap_err();
        assert!(matches!(error, StorageError::InvalidArgument(ref m) if m.contains("NUL")), "{error}");
    }
    good.await.unwrap().unwrap();
    let ids: Vec<String> = storage.latest(Some("t")).await.unwrap().records.into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["good"]);
}

async fn memory() -> MemoryStorage {
    MemoryStorage::new()
}

async fn postgres() -> PostgresStorage {
    let server = TestPostgres::shared().unwrap();
    PostgresStorage::connect(&server.database().unwrap()).await.unwrap()
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::memory().await).await })*
        }
        mod postgres_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::postgres().await).await })*
        }
    };
}

conformance!(
    put_assigns_one_increasing_version_across_types,
    a_tombstone_deletes_and_is_logged,
    changes_come_in_order_and_by_type,
    stale_readers_are_told_to_start_over,
    the_snapshot_holds_live_records_and_their_versions,
    patch_replaces_only_masked_fields_of_existing_records,
    query_searches_filters_and_pages,
    capacity_deletes_the_oldest_records,
    options_round_trip_and_types_are_listed,
    clear_starts_a_new_server_version,
    a_lease_has_one_holder_at_a_time,
    a_write_wakes_watchers,
    the_last_write_of_a_key_in_one_put_wins,
    a_reader_following_concurrent_writers_misses_nothing,
    concurrent_puts_each_get_their_own_records_back,
    a_record_with_nul_text_is_refused_alone,
);

/// A database at schema version 1 is migrated on connect: the GiST index becomes partial, the
/// records survive, and the schema version reads 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_is_migrated_in_place() {
    let cluster = TestPostgres::shared().unwrap();
    let url = cluster.database().unwrap();
    let storage = PostgresStorage::connect(&url).await.unwrap();
    storage.put(vec![record("t", "kept", json!({"n": 1}))]).await.unwrap();
    drop(storage);
    cluster
        .psql_in(
            &url,
            "DROP INDEX pomerium.records_index_cidr_idx;
             CREATE INDEX records_index_cidr_idx ON pomerium.records USING gist (index_cidr inet_ops);
             UPDATE pomerium.migration_info SET migration_version = 1;",
        )
        .unwrap();
    let storage = PostgresStorage::connect(&url).await.unwrap();
    assert!(storage.get("t", "kept").await.unwrap().is_some());
    let version = cluster.psql_in(&url, "SELECT migration_version FROM pomerium.migration_info").unwrap();
    assert_eq!(version.trim(), "2");
    let index =
        cluster.psql_in(&url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'records_index_cidr_idx'").unwrap();
    assert!(index.contains("WHERE (index_cidr IS NOT NULL)"), "{index}");
}

#[tokio::test]
async fn a_bad_connection_string_is_an_error_naming_the_problem() {
    let error = PostgresStorage::connect("postgres://u@h:notaport/db").await.unwrap_err();
    assert!(error.to_string().contains("invalid postgres connection string"), "{error}");
}

#[tokio::test]
async fn several_hosts_with_target_session_attrs_connect_to_the_writable_one() {
    let server = TestPostgres::shared().unwrap();
    let url = server.database().unwrap();
    // The first host refuses connections; libpq semantics try the next one.
    let (prefix, rest) = url.split_once('@').unwrap();
    let (hostport, database) = rest.split_once('/').unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let multi = format!("{prefix}@127.0.0.1:{dead},{hostport}/{database}?target_session_attrs=read-write");
    let storage = PostgresStorage::connect(&multi).await.unwrap();
    storage.put(vec![record("t", "1", json!({}))]).await.unwrap();
    assert!(storage.get("t", "1").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cleanup_compacts_the_change_log_and_expires_by_ttl() {
    let server = TestPostgres::shared().unwrap();
    let url = server.database().unwrap();
    let storage = PostgresStorage::connect(&url).await.unwrap();
    storage
        .set_options("short", TypeOptions { ttl: Some(Duration::from_secs(60)), ..TypeOptions::default() })
        .await
        .unwrap();
    storage
        .put(vec![record("short", "old", json!({})), record("long", "old", json!({})), record("t", "c", json!({}))])
        .await
        .unwrap();
    let before = versions(&storage).await;
    server
        .psql_in(
            &url,
            "UPDATE pomerium.record_changes SET modified_at = modified_at - interval '2 hours';
                        UPDATE pomerium.records SET modified_at = modified_at - interval '2 hours'",
        )
        .unwrap();
    storage.clean().await.unwrap();
    assert!(storage.get("short", "old").await.unwrap().is_none(), "past its TTL");
    assert!(storage.get("long", "old").await.unwrap().is_some());
    let info = storage.server_info().await.unwrap();
    assert_eq!(
        info.earliest_record_version,
        before.latest_record_version + 1,
        "old changes compacted, the TTL's tombstone kept"
    );
    let stale = Versions { latest_record_version: before.latest_record_version - 1, ..before };
    assert!(matches!(storage.changes(stale, None).await, Err(StorageError::InvalidRecordVersion { .. })));
    let tombstones = storage.changes(before, None).await.unwrap();
    assert!(tombstones.iter().all(|r| r.is_deleted() && r.id == "old"));
}

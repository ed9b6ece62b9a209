//! The PostgreSQL backend: shared by every databroker replica, persistent across restarts.
//!
//! Schema `pomerium` (tables as in Pomerium's `pkg/storage/postgres/migrate.go`): `records` holds
//! the live records, `record_changes` the change log whose identity column hands out record
//! versions, `record_options`, `leases`, and `migration_info` with the server version.
//!
//! Invariant: every write takes one transaction-scoped advisory lock before its versions are
//! drawn, so versions commit in order across processes and a reader that has seen version `v` has
//! seen every change up to `v`; without it, a slow writer could commit version 5 after a reader
//! moved past 6. Readers take no lock.
//!
//! A put is one statement (so one transaction and one round trip), prepared once per
//! connection. Puts that arrive while another is being written queue up and go out together as
//! the next statement: the write lock serializes commits, and batching is what lets concurrent
//! puts share one commit. Connections run with `jit=off` and generic plans: every statement here
//! is short, and planning or JIT would cost more than executing.
//!
//! Sync streams wake on `LISTEN pomerium_record_change` on a dedicated connection (every write
//! sends `NOTIFY` in its transaction), with a poll every 30 s in case a notification is lost.

use super::postgres_tls::{self, PgTls};
use super::{
    CHANGE_BATCH, QueryResult, Snapshot, Storage, StorageError, StorageResult, Written, apply_field_mask, new_lease_id,
};
use crate::query::{Query, index_network};
use crate::record::{CHANGE_LOG_RETENTION, Record, ServerInfo, TypeOptions, Versions, new_server_version};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, Row};

/// The NOTIFY channel writes announce themselves on (Pomerium's name).
const CHANNEL: &str = "pomerium_record_change";
/// The advisory lock key that orders writers (any fixed number; "pomerium" in ASCII).
const WRITE_LOCK: i64 = 0x706f_6d65_7269_756d;
/// How often sync streams look for changes even without a notification.
const FALLBACK_POLL: Duration = Duration::from_secs(30);
/// Connections in the pool.
const POOL_SIZE: usize = 16;
/// How long opening a connection (TCP, TLS handshake, sign-in) may take, unless the connection
/// string's `connect_timeout` says (per host, as libpq).
const CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// The newest schema this build knows.
const SCHEMA_VERSION: i16 = 2;
const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize, "one migration per schema version");

/// The PostgreSQL storage.
pub struct PostgresStorage {
    pool: Pool,
    changed: Arc<watch::Sender<u64>>,
    listener: tokio::task::JoinHandle<()>,
    writes: Arc<WriteQueue>,
}

/// Concurrent puts of this process, written together. The write lock serializes commits (and so
/// their fsyncs); one statement for every put that queued while the previous one committed gives
/// back the throughput that serialization takes (a group commit, done here).
#[derive(Default)]
struct WriteQueue {
    pending: std::sync::Mutex<Vec<PendingWrite>>,
    /// Held by the put that is draining the queue.
    writer: tokio::sync::Mutex<()>,
}

struct PendingWrite {
    records: Vec<Record>,
    reply: tokio::sync::oneshot::Sender<StorageResult<WriteOutcome>>,
}

/// Records per statement at most; the rest waits for the next one.
const MAX_BATCH_RECORDS: usize = 4096;

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's configuration holds the password: never print it.
        f.write_str("PostgresStorage")
    }
}

impl Drop for PostgresStorage {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn unavailable(error: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(error.to_string())
}

fn db_error(error: tokio_postgres::Error) -> StorageError {
    // tokio-postgres puts the server's message in the source; show both.
    match std::error::Error::source(&error) {
        Some(source) => StorageError::Unavailable(format!("{error}: {source}")),
        None => StorageError::Unavailable(error.to_string()),
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> StorageError {
    match error {
        deadpool_postgres::PoolError::Backend(e) => db_error(e),
        deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Create) => StorageError::Unavailable(
            "postgres: no connection in time (TCP, TLS and sign-in within connect_timeout, or 30 s)".to_owned(),
        ),
        other => unavailable(other),
    }
}

impl PostgresStorage {
    /// Connects with a libpq connection string (URL or `key=value` form, several hosts and
    /// `target_session_attrs=read-write` included, TLS as libpq's `sslmode`, `sslrootcert`,
    /// `sslcert` and `sslkey` say: see [`postgres_tls`]), runs the migrations and starts listening.
    pub async fn connect(connection_string: &str) -> StorageResult<PostgresStorage> {
        let (mut config, tls) = postgres_tls::parse(connection_string).map_err(StorageError::InvalidArgument)?;
        // Every statement here is a short OLTP query: JIT compilation would only ever add latency.
        let options = match config.get_options() {
            Some(given) => format!("{given} -c jit=off -c plan_cache_mode=force_generic_plan"),
            None => "-c jit=off -c plan_cache_mode=force_generic_plan".to_owned(),
        };
        config.options(options);
        let hosts = u32::try_from(config.get_hosts().len().max(1)).unwrap_or(u32::MAX);
        let limit = config.get_connect_timeout().map_or(CONNECT_LIMIT, |per_host| per_host.saturating_mul(hosts));
        let manager = Manager::from_connect(
            config.clone(),
            tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(limit))
            .build()
            .map_err(unavailable)?;
        migrate(&pool).await.map_err(|error| match error {
            StorageError::Unavailable(message) => {
                StorageError::Unavailable(format!("{message} (sslmode={})", tls.mode_name()))
            }
            other => other,
        })?;
        let changed = Arc::new(watch::Sender::new(0));
        let listener = tokio::spawn(listen(config, tls, limit, Arc::clone(&changed)));
        Ok(PostgresStorage { pool, changed, listener, writes: Arc::default() })
    }

    /// The connection pool, so that benchmarks run their plain-SQL baseline through the very
    /// connections the storage uses.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The statement every put runs and its write-lock key (parameters: types, ids, data,
    /// deleted flags, networks, lock key), so that benchmarks can run the same SQL bare.
    pub fn write_statement() -> (&'static str, i64) {
        (WRITE, WRITE_LOCK)
    }

    async fn client(&self) -> StorageResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    fn notify_local(&self) {
        self.changed.send_modify(|tick| *tick = tick.wrapping_add(1));
    }

    /// Writes records and tombstones; then evicts beyond a capacity, when a type has one.
    ///
    /// The put joins the queue, and whichever put holds the writer slot writes everything queued
    /// as one statement (one transaction, one round trip, taking the write lock first). The
    /// statement runs in a task of its own, so a caller that goes away (a cancelled gRPC call)
    /// cannot abandon the puts batched with its own.
    async fn write(&self, records: &[Record]) -> StorageResult<Written> {
        super::validate_records(records)?;
        if records.is_empty() {
            return Ok(Written { server_version: self.versions().await?.server_version, records: Vec::new() });
        }
        let (reply, mut outcome) = tokio::sync::oneshot::channel();
        lock(&self.writes.pending).push(PendingWrite { records: records.to_vec(), reply });
        let outcome = loop {
            // Either another put writes ours (then its answer arrives and this put never takes
            // the slot, so the next writer is one with work left), or this put takes the slot
            // and writes everything queued.
            tokio::select! {
                biased;
                answer = &mut outcome => break answer,
                _writer = self.writes.writer.lock() => {
                    let batch = take_batch(&self.writes);
                    if !batch.is_empty() {
                        let (pool, changed) = (self.pool.clone(), Arc::clone(&self.changed));
                        // Joined only to wait for it; its results go out through the replies.
                        let _ = tokio::spawn(write_batch(pool, changed, batch)).await;
                    }
                }
            }
        };
        let written = outcome.map_err(|_| unavailable("the write was abandoned"))??;
        if written.capacity_limited {
            self.enforce_capacity(&written.records).await?;
        }
        Ok(Written { server_version: written.server_version, records: written.records })
    }

    /// Deletes the oldest records of the written types beyond their capacity.
    async fn enforce_capacity(&self, written: &[Record]) -> StorageResult<()> {
        let mut types: Vec<&str> = written.iter().map(|r| r.record_type.as_str()).collect();
        types.sort_unstable();
        types.dedup();
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT type, id FROM (
                   SELECT r.type, r.id, o.capacity,
                          row_number() OVER (PARTITION BY r.type ORDER BY r.version DESC) AS rank
                   FROM pomerium.records r JOIN pomerium.record_options o ON o.type = r.type
                   WHERE r.type = ANY($1) AND o.capacity IS NOT NULL
                 ) ranked WHERE rank > capacity",
                &[&types],
            )
            .await
            .map_err(db_error)?;
        drop(client);
        if rows.is_empty() {
            return Ok(());
        }
        let tombstones: Vec<Record> =
            rows.iter().map(|row| Record::tombstone(row.get::<_, String>(0), row.get::<_, String>(1))).collect();
        Box::pin(self.write(&tombstones)).await.map(|_| ())
    }

    async fn versions(&self) -> StorageResult<Versions> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT m.server_version,
                        greatest(s.compacted_through, (SELECT coalesce(max(version), 0) FROM pomerium.record_changes))
                 FROM pomerium.migration_info m, pomerium.change_log_state s",
                &[],
            )
            .await
            .map_err(db_error)?;
        Ok(Versions { server_version: unsigned(row.get(0)), latest_record_version: unsigned(row.get(1)) })
    }
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn timestamp(micros: Option<i64>) -> Option<jiff::Timestamp> {
    micros.and_then(|m| jiff::Timestamp::from_microsecond(m).ok())
}

/// A timestamp column as microseconds since the epoch (no date-time crate needed).
macro_rules! epoch_micros {
    ($column:literal) => {
        concat!("(extract(epoch from ", $column, ") * 1000000)::int8")
    };
}

/// The statement behind every write. It takes the write lock (transaction-scoped, so held until
/// this statement commits) before drawing any version, so versions commit in order; logs each
/// change, then makes the newest change of each record current, or deletes it for a tombstone;
/// NOTIFYs; and returns the changes with the server version and whether a written type has a
/// capacity to enforce. Inside a transaction that already holds the lock (patch), taking it again
/// is a no-op.
const WRITE: &str = concat!(
    "WITH locked AS (SELECT pg_advisory_xact_lock($6::int8) AS held),
     input AS (
       SELECT t.* FROM locked,
         unnest($1::text[], $2::text[], $3::jsonb[], $4::bool[], $5::text[])
         WITH ORDINALITY AS t(type, id, data, deleted, cidr, n)
     ),
     change AS (
       INSERT INTO pomerium.record_changes (type, id, data, modified_at, deleted_at)
       SELECT type, id, CASE WHEN deleted THEN NULL ELSE data END, clock_timestamp(),
              CASE WHEN deleted THEN clock_timestamp() END
       FROM input ORDER BY n
       RETURNING version, type, id, data, modified_at, deleted_at
     ),
     numbered AS (SELECT c.*, row_number() OVER (ORDER BY c.version) AS n FROM change c),
     newest AS (
       SELECT DISTINCT ON (nb.type, nb.id) nb.*, i.cidr
       FROM numbered nb JOIN input i ON i.n = nb.n
       ORDER BY nb.type, nb.id, nb.version DESC
     ),
     upserted AS (
       INSERT INTO pomerium.records (type, id, version, data, modified_at, index_cidr)
       SELECT type, id, version, data, modified_at, cidr::inet FROM newest WHERE deleted_at IS NULL
       ON CONFLICT (type, id) DO UPDATE SET version = EXCLUDED.version, data = EXCLUDED.data,
         modified_at = EXCLUDED.modified_at, index_cidr = EXCLUDED.index_cidr
     ),
     removed AS (
       DELETE FROM pomerium.records r USING newest n
       WHERE n.deleted_at IS NOT NULL AND r.type = n.type AND r.id = n.id
     )
     SELECT nb.version, nb.type, nb.id, nb.data, ",
    epoch_micros!("nb.modified_at"),
    ", ",
    epoch_micros!("nb.deleted_at"),
    ", m.server_version,
       EXISTS (SELECT 1 FROM pomerium.record_options o WHERE o.type = ANY($1) AND o.capacity IS NOT NULL)
     FROM numbered nb, pomerium.migration_info m, (SELECT pg_notify('pomerium_record_change', '')) AS notified
     ORDER BY nb.version"
);

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The queued puts, up to [`MAX_BATCH_RECORDS`] (at least one when any is queued).
fn take_batch(queue: &WriteQueue) -> Vec<PendingWrite> {
    let mut pending = lock(&queue.pending);
    let mut records = 0;
    let count = pending
        .iter()
        .take_while(|write| {
            records += write.records.len();
            records <= MAX_BATCH_RECORDS
        })
        .count()
        .max(1)
        .min(pending.len());
    pending.drain(..count).collect()
}

/// Writes a batch of puts as one statement and answers each. When the statement fails and the
/// batch holds several puts, each is retried alone, so one bad put (text PostgreSQL refuses,
/// say) fails only its own caller.
async fn write_batch(pool: Pool, changed: Arc<watch::Sender<u64>>, batch: Vec<PendingWrite>) {
    let all: Vec<Record> = batch.iter().flat_map(|write| write.records.iter().cloned()).collect();
    let outcome = match pool.get().await {
        Ok(client) => write_in(&client, &all).await,
        Err(error) => Err(pool_error(error)),
    };
    match outcome {
        Ok(mut outcome) => {
            changed.send_modify(|tick| *tick = tick.wrapping_add(1));
            // Rows come back in version order, which is input order: split them by put.
            let mut rest = std::mem::take(&mut outcome.records).into_iter();
            for write in batch {
                let records: Vec<Record> = rest.by_ref().take(write.records.len()).collect();
                let _ = write.reply.send(Ok(WriteOutcome { records, ..outcome }));
            }
        }
        Err(error) if batch.len() == 1 => {
            for write in batch {
                let _ = write.reply.send(Err(error.clone()));
            }
        }
        Err(_) => {
            for write in batch {
                let outcome = match pool.get().await {
                    Ok(client) => write_in(&client, &write.records).await,
                    Err(error) => Err(pool_error(error)),
                };
                if outcome.is_ok() {
                    changed.send_modify(|tick| *tick = tick.wrapping_add(1));
                }
                let _ = write.reply.send(outcome);
            }
        }
    }
}

/// Changes after a version (`$1`), at most `$2`, beside the versions that say whether the reader
/// may read from there. `$3` is the record type when there is a filter.
macro_rules! changes_statement {
    ($filter:literal) => {
        concat!(
            "WITH meta AS (
               SELECT m.server_version, s.compacted_through,
                      greatest(s.compacted_through, (SELECT coalesce(max(version), 0) FROM pomerium.record_changes)) AS latest
               FROM pomerium.migration_info m, pomerium.change_log_state s
             ),
             batch AS (
               SELECT version, type, id, data, ",
            epoch_micros!("modified_at"),
            " AS modified_at, ",
            epoch_micros!("deleted_at"),
            " AS deleted_at
               FROM pomerium.record_changes
               WHERE version > $1 ",
            $filter,
            "
               ORDER BY version LIMIT $2
             )
             SELECT b.version, b.type, b.id, b.data, b.modified_at, b.deleted_at,
                    meta.server_version, meta.compacted_through, meta.latest
             FROM meta LEFT JOIN batch b ON true ORDER BY b.version"
        )
    };
}

const CHANGES: &str = changes_statement!("");
const CHANGES_OF_TYPE: &str = changes_statement!("AND type = $3");

/// What one write statement did.
struct WriteOutcome {
    records: Vec<Record>,
    server_version: u64,
    /// A written type has a capacity option, so older records may have to go.
    capacity_limited: bool,
}

/// Runs [`WRITE`] (prepared once per connection) on a client or inside a transaction.
async fn write_in(client: &impl GenericClient, records: &[Record]) -> StorageResult<WriteOutcome> {
    let types: Vec<&str> = records.iter().map(|r| r.record_type.as_str()).collect();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let data: Vec<Value> = records.iter().map(|r| Value::Object(r.data.clone())).collect();
    let deleted: Vec<bool> = records.iter().map(Record::is_deleted).collect();
    let cidrs: Vec<Option<String>> = records.iter().map(|r| index_network(&r.data).map(|n| n.to_string())).collect();
    let statement = client.prepare_cached(WRITE).await.map_err(db_error)?;
    let rows =
        client.query(&statement, &[&types, &ids, &data, &deleted, &cidrs, &WRITE_LOCK]).await.map_err(db_error)?;
    let (server_version, capacity_limited) = match rows.first() {
        Some(row) => (unsigned(row.try_get(6).map_err(db_error)?), row.try_get(7).map_err(db_error)?),
        None => (0, false),
    };
    let records = rows.iter().map(change_from_row).collect::<StorageResult<_>>()?;
    Ok(WriteOutcome { records, server_version, capacity_limited })
}

async fn server_version_in(transaction: &impl GenericClient) -> StorageResult<u64> {
    let row =
        transaction.query_one("SELECT server_version FROM pomerium.migration_info", &[]).await.map_err(db_error)?;
    Ok(unsigned(row.get(0)))
}

/// A row of `version, type, id, data, modified_at, deleted_at`.
fn change_from_row(row: &Row) -> StorageResult<Record> {
    let data = match row.try_get::<_, Option<Value>>(3).map_err(db_error)? {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    Ok(Record {
        version: unsigned(row.try_get(0).map_err(db_error)?),
        record_type: row.try_get(1).map_err(db_error)?,
        id: row.try_get(2).map_err(db_error)?,
        data,
        modified_at: timestamp(row.try_get(4).map_err(db_error)?),
        deleted_at: timestamp(row.try_get(5).map_err(db_error)?),
    })
}

const RECORD_COLUMNS: &str =
    concat!("version, type, id, data, ", epoch_micros!("modified_at"), ", NULL::int8 AS deleted_at");

const GET: &str = concat!(
    "SELECT version, type, id, data, ",
    epoch_micros!("modified_at"),
    ", NULL::int8 AS deleted_at FROM pomerium.records WHERE type = $1 AND id = $2"
);

impl Storage for PostgresStorage {
    async fn get(&self, record_type: &str, id: &str) -> StorageResult<Option<Record>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(GET).await.map_err(db_error)?;
        let row = client.query_opt(&statement, &[&record_type, &id]).await.map_err(db_error)?;
        row.as_ref().map(change_from_row).transpose()
    }

    async fn put(&self, records: Vec<Record>) -> StorageResult<Written> {
        self.write(&records).await
    }

    async fn patch(&self, records: Vec<Record>, fields: &[String]) -> StorageResult<Written> {
        super::validate_records(&records)?;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db_error)?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]).await.map_err(db_error)?;
        let sql = format!("SELECT {RECORD_COLUMNS} FROM pomerium.records WHERE type = $1 AND id = $2");
        let mut updated = Vec::new();
        for update in records {
            let row = transaction.query_opt(&sql, &[&update.record_type, &update.id]).await.map_err(db_error)?;
            let Some(row) = row else { continue };
            let mut existing = change_from_row(&row)?;
            apply_field_mask(&mut existing.data, &update.data, fields);
            updated.push(existing);
        }
        let (written, server_version) = if updated.is_empty() {
            (Vec::new(), server_version_in(&transaction).await?)
        } else {
            let outcome = write_in(&transaction, &updated).await?;
            (outcome.records, outcome.server_version)
        };
        transaction.commit().await.map_err(db_error)?;
        self.notify_local();
        Ok(Written { server_version, records: written })
    }

    async fn query(&self, query: &Query) -> StorageResult<QueryResult> {
        let versions = self.versions().await?;
        let client = self.client().await?;
        let sql = format!("SELECT {RECORD_COLUMNS} FROM pomerium.records WHERE type = $1");
        let rows = client.query(&sql, &[&query.record_type]).await.map_err(db_error)?;
        let mut matches = Vec::new();
        for row in &rows {
            let record = change_from_row(row)?;
            if query.matches(&record) {
                matches.push(record);
            }
        }
        Ok(QueryResult { page: query.page(matches), versions })
    }

    async fn server_info(&self) -> StorageResult<ServerInfo> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT m.server_version, s.compacted_through,
                        greatest(s.compacted_through, (SELECT coalesce(max(version), 0) FROM pomerium.record_changes))
                 FROM pomerium.migration_info m, pomerium.change_log_state s",
                &[],
            )
            .await
            .map_err(db_error)?;
        Ok(ServerInfo {
            server_version: unsigned(row.get(0)),
            earliest_record_version: unsigned(row.get(1)) + 1,
            latest_record_version: unsigned(row.get(2)),
        })
    }

    async fn changes(&self, from: Versions, record_type: Option<&str>) -> StorageResult<Vec<Record>> {
        // One statement, so that the check and the read see the same snapshot: a compaction
        // between them would otherwise drop changes unnoticed. Two texts (all types, one type),
        // so that each has a plan of its own that uses the right index.
        let sql = if record_type.is_some() { CHANGES_OF_TYPE } else { CHANGES };
        let client = self.client().await?;
        let limit = i64::try_from(CHANGE_BATCH).unwrap_or(512);
        let statement = client.prepare_cached(sql).await.map_err(db_error)?;
        let after = signed(from.latest_record_version);
        let rows = match record_type {
            Some(record_type) => client.query(&statement, &[&after, &limit, &record_type]).await,
            None => client.query(&statement, &[&after, &limit]).await,
        }
        .map_err(db_error)?;
        let Some(first) = rows.first() else {
            return Err(unavailable("the databroker schema has no migration_info row"));
        };
        let (server_version, compacted_through, latest): (i64, i64, i64) = (first.get(6), first.get(7), first.get(8));
        let (server_version, compacted_through, latest) =
            (unsigned(server_version), unsigned(compacted_through), unsigned(latest));
        if from.server_version != server_version {
            return Err(StorageError::InvalidServerVersion { given: from.server_version, current: server_version });
        }
        let given = from.latest_record_version;
        if given < compacted_through || given > latest {
            return Err(StorageError::InvalidRecordVersion { given, earliest: compacted_through, latest });
        }
        rows.iter().filter(|row| row.get::<_, Option<i64>>(0).is_some()).map(change_from_row).collect()
    }

    async fn latest(&self, record_type: Option<&str>) -> StorageResult<Snapshot> {
        // Versions first: the records read after them are at least that new, and a reader that
        // then syncs from these versions at worst sees a change twice, never misses one.
        let versions = self.versions().await?;
        let client = self.client().await?;
        let rows = match record_type {
            Some(record_type) => {
                let sql = format!("SELECT {RECORD_COLUMNS} FROM pomerium.records WHERE type = $1");
                client.query(&sql, &[&record_type]).await
            }
            None => client.query(&format!("SELECT {RECORD_COLUMNS} FROM pomerium.records"), &[]).await,
        }
        .map_err(db_error)?;
        let records = rows.iter().map(change_from_row).collect::<StorageResult<_>>()?;
        Ok(Snapshot { records, versions })
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    async fn list_types(&self) -> StorageResult<Vec<String>> {
        let client = self.client().await?;
        let rows =
            client.query("SELECT DISTINCT type FROM pomerium.records ORDER BY type", &[]).await.map_err(db_error)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn get_options(&self, record_type: &str) -> StorageResult<TypeOptions> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT capacity, fields, ttl FROM pomerium.record_options WHERE type = $1", &[&record_type])
            .await
            .map_err(db_error)?;
        Ok(row.map_or_else(TypeOptions::default, |row| TypeOptions {
            capacity: row.get::<_, Option<i64>>(0).map(unsigned),
            indexable_fields: row.get::<_, Option<Vec<String>>>(1).unwrap_or_default(),
            ttl: row.get::<_, Option<i64>>(2).map(|us| Duration::from_micros(unsigned(us))),
        }))
    }

    async fn set_options(&self, record_type: &str, options: TypeOptions) -> StorageResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO pomerium.record_options (type, capacity, fields, ttl) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (type) DO UPDATE SET capacity = EXCLUDED.capacity, fields = EXCLUDED.fields,
                   ttl = EXCLUDED.ttl",
                &[&record_type, &options.capacity.map(signed), &options.indexable_fields, &options.ttl.map(micros)],
            )
            .await
            .map_err(db_error)?;
        drop(client);
        let probe = Record::new(record_type, "", Map::new());
        self.enforce_capacity(std::slice::from_ref(&probe)).await
    }

    async fn clear(&self) -> StorageResult<(Versions, Versions)> {
        let old = self.versions().await?;
        let new_version = signed(new_server_version(31));
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db_error)?;
        transaction
            .batch_execute(&format!(
                "SELECT pg_advisory_xact_lock({WRITE_LOCK});
                 UPDATE pomerium.change_log_state SET compacted_through =
                   greatest(compacted_through, (SELECT coalesce(max(version), 0) FROM pomerium.record_changes));
                 DELETE FROM pomerium.records;
                 DELETE FROM pomerium.record_changes;
                 DELETE FROM pomerium.record_options;
                 UPDATE pomerium.migration_info SET server_version = {new_version};
                 NOTIFY {CHANNEL};"
            ))
            .await
            .map_err(db_error)?;
        transaction.commit().await.map_err(db_error)?;
        self.notify_local();
        Ok((old, self.versions().await?))
    }

    async fn acquire_lease(&self, name: &str, duration: Duration) -> StorageResult<Option<String>> {
        let client = self.client().await?;
        let id = new_lease_id();
        let row = client
            .query_opt(
                "INSERT INTO pomerium.leases (name, id, expires_at)
                 VALUES ($1, $2, clock_timestamp() + $3::int8 * interval '1 microsecond')
                 ON CONFLICT (name) DO UPDATE SET id = EXCLUDED.id, expires_at = EXCLUDED.expires_at
                 WHERE pomerium.leases.expires_at < clock_timestamp()
                 RETURNING id",
                &[&name, &id, &micros(duration)],
            )
            .await
            .map_err(db_error)?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn renew_lease(&self, name: &str, id: &str, duration: Duration) -> StorageResult<bool> {
        let client = self.client().await?;
        let updated = client
            .execute(
                "UPDATE pomerium.leases SET expires_at = clock_timestamp() + $3::int8 * interval '1 microsecond'
                 WHERE name = $1 AND id = $2 AND expires_at > clock_timestamp()",
                &[&name, &id, &micros(duration)],
            )
            .await
            .map_err(db_error)?;
        Ok(updated == 1)
    }

    async fn release_lease(&self, name: &str, id: &str) -> StorageResult<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM pomerium.leases WHERE name = $1 AND id = $2", &[&name, &id])
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn clean(&self) -> StorageResult<()> {
        let client = self.client().await?;
        let expired = client
            .query(
                "SELECT r.type, r.id FROM pomerium.records r JOIN pomerium.record_options o ON o.type = r.type
                 WHERE o.ttl IS NOT NULL AND r.modified_at < clock_timestamp() - o.ttl * interval '1 microsecond'",
                &[],
            )
            .await
            .map_err(db_error)?;
        drop(client);
        if !expired.is_empty() {
            let tombstones: Vec<Record> =
                expired.iter().map(|row| Record::tombstone(row.get::<_, String>(0), row.get::<_, String>(1))).collect();
            self.write(&tombstones).await?;
        }
        let client = self.client().await?;
        client
            .execute(
                "WITH gone AS (
                   DELETE FROM pomerium.record_changes
                   WHERE modified_at < clock_timestamp() - $1::int8 * interval '1 microsecond'
                     AND version < (SELECT max(version) FROM pomerium.record_changes)
                   RETURNING version
                 )
                 UPDATE pomerium.change_log_state
                 SET compacted_through = greatest(compacted_through, (SELECT coalesce(max(version), 0) FROM gone))",
                &[&micros(CHANGE_LOG_RETENTION)],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

/// Creates or upgrades the schema; concurrent databrokers serialize on an advisory lock.
async fn migrate(pool: &Pool) -> StorageResult<()> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let transaction = client.transaction().await.map_err(db_error)?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&(WRITE_LOCK + 1)]).await.map_err(db_error)?;
    transaction.batch_execute("CREATE SCHEMA IF NOT EXISTS pomerium").await.map_err(db_error)?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS pomerium.migration_info (
               server_version BIGINT NOT NULL,
               migration_version SMALLINT NOT NULL
             )",
        )
        .await
        .map_err(db_error)?;
    let current: Option<i16> = transaction
        .query_opt("SELECT migration_version FROM pomerium.migration_info", &[])
        .await
        .map_err(db_error)?
        .map(|row| row.get(0));
    match current {
        Some(version) if version > SCHEMA_VERSION => {
            return Err(StorageError::Unavailable(format!(
                "the database schema is at version {version}, newer than this build knows ({SCHEMA_VERSION}); \
                 was it written by a newer release or by another program?"
            )));
        }
        Some(_) => {}
        None => {
            transaction.batch_execute(SCHEMA_V1).await.map_err(db_error)?;
            transaction
                .execute(
                    "INSERT INTO pomerium.migration_info (server_version, migration_version) VALUES ($1, 1)",
                    &[&signed(new_server_version(31))],
                )
                .await
                .map_err(db_error)?;
        }
    }
    let from = current.unwrap_or(1);
    for (version, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(from).unwrap_or(0)) {
        transaction.batch_execute(migration).await.map_err(db_error)?;
        let version = i16::try_from(version + 1).unwrap_or(i16::MAX);
        transaction
            .execute("UPDATE pomerium.migration_info SET migration_version = $1", &[&version])
            .await
            .map_err(db_error)?;
    }
    transaction.commit().await.map_err(db_error)?;
    // The one-row tables are joined into every read: without statistics the planner guesses
    // thousands of rows each, and the inflated cost can trigger JIT compilation (150 ms a query).
    client.batch_execute("ANALYZE pomerium.migration_info, pomerium.change_log_state").await.map_err(db_error)
}

/// Schema changes after version 1, in order: `MIGRATIONS[n]` takes the schema from version `n`
/// to `n + 1` (index 0 stands for version 1 itself, written by [`SCHEMA_V1`]).
const MIGRATIONS: [&str; 2] = [
    "",
    // 2: only records that carry a network go into the GiST index (most have none, and a GiST
    // insert is the costliest part of writing a record).
    "DROP INDEX IF EXISTS pomerium.records_index_cidr_idx;
     CREATE INDEX records_index_cidr_idx ON pomerium.records USING gist (index_cidr inet_ops)
       WHERE index_cidr IS NOT NULL;",
];

const SCHEMA_V1: &str = "
CREATE TABLE pomerium.records (
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  version BIGINT NOT NULL,
  data JSONB NOT NULL,
  modified_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  index_cidr INET NULL,
  PRIMARY KEY (type, id)
);
CREATE INDEX ON pomerium.records USING gist (index_cidr inet_ops);
CREATE INDEX ON pomerium.records (type, version);
CREATE INDEX ON pomerium.records (type, modified_at);
CREATE TABLE pomerium.record_changes (
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  version BIGINT PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
  data JSONB NULL,
  modified_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  deleted_at TIMESTAMPTZ NULL
);
CREATE INDEX ON pomerium.record_changes (modified_at);
CREATE INDEX ON pomerium.record_changes (type, version);
CREATE TABLE pomerium.record_options (
  type TEXT PRIMARY KEY,
  capacity BIGINT NULL,
  fields TEXT[] NULL,
  ttl BIGINT NULL
);
CREATE TABLE pomerium.leases (
  name TEXT PRIMARY KEY,
  id TEXT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE pomerium.change_log_state (compacted_through BIGINT NOT NULL);
INSERT INTO pomerium.change_log_state VALUES (0);
";

/// Listens for other processes' writes and ticks the watch; reconnects when the connection
/// drops (ticking then too, since notifications may have been missed), and ticks every
/// [`FALLBACK_POLL`] regardless.
async fn listen(config: tokio_postgres::Config, tls: PgTls, limit: Duration, changed: Arc<watch::Sender<u64>>) {
    let tick = || changed.send_modify(|t| *t = t.wrapping_add(1));
    let mut backoff = Duration::from_millis(100);
    loop {
        match tokio::time::timeout(limit, tls.open(&config)).await {
            Ok(Ok((client, mut connection))) => {
                backoff = Duration::from_millis(100);
                let listening = async {
                    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
                    Ok::<_, tokio_postgres::Error>(())
                };
                // The connection must be polled for LISTEN to complete; drive both.
                let mut listening = std::pin::pin!(listening);
                let mut subscribed = false;
                tick();
                loop {
                    let message = tokio::select! {
                        result = &mut listening, if !subscribed => {
                            if let Err(error) = result {
                                tracing::warn!(%error, "databroker: LISTEN failed");
                                break;
                            }
                            subscribed = true;
                            continue;
                        }
                        message = std::future::poll_fn(|cx| connection.poll_message(cx)) => message,
                        () = tokio::time::sleep(FALLBACK_POLL) => { tick(); continue; }
                    };
                    match message {
                        Some(Ok(AsyncMessage::Notification(_))) => tick(),
                        Some(Ok(_)) => {}
                        Some(Err(error)) => {
                            tracing::warn!(%error, "databroker: the notification connection failed");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "databroker: cannot open the notification connection"),
            Err(_) => tracing::warn!(?limit, "databroker: the notification connection did not open in time"),
        }
        tick();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

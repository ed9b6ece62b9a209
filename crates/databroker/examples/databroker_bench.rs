//! Databroker throughput and change propagation, beside a plain SQL baseline in the same run
//! (issue "Databroker", benchmarks). Run through `benches/databroker.sh`, which records the
//! figures in BENCHMARKS.md's format:
//!
//! ```text
//! cargo run --release -p databroker --example databroker_bench -- [--seconds S] [--runs N]
//! ```
//!
//! - **put/get per second**, one record per call, with 1 and 8 concurrent clients: the memory
//!   storage, the PostgreSQL storage, and two baselines through the storage's own connection pool:
//!   the very statement a put runs, sent bare (what the storage layer costs), and a one-table
//!   `INSERT … ON CONFLICT` of the same JSON (what keeping a change log costs); for gets, a
//!   primary-key `SELECT`. PostgreSQL is a throwaway cluster with `fsync=on`.
//! - **propagation**: two databrokers, each serving gRPC on loopback with its own PostgreSQL
//!   storage on one database; a Put through A's gRPC API until the record arrives in a Sync stream
//!   opened on B. Percentiles over the samples.
//!
//! Each figure is the median of the runs. `--fsync off` shows the CPU cost alone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::indexing_slicing,
    reason = "a benchmark binary"
)]

use databroker::auth::ServiceAuth;
use databroker::client::Broker;
use databroker::record::Record;
use databroker::storage::{AnyStorage, MemoryStorage, PostgresStorage, Storage};
use pg_test_cluster::TestPostgres;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SECRET: &[u8] = b"databroker benchmark shared secret";
const RECORD_TYPE: &str = "type.googleapis.com/session.Session";
/// Distinct ids written in turn: puts overwrite records, as session refreshes do.
const IDS: u64 = 1_000;
const PROPAGATION_SAMPLES: usize = 500;

struct Args {
    seconds: f64,
    runs: usize,
    /// `on` (durable commits, the default) or `off` (commits cost CPU only).
    fsync: String,
}

fn args() -> Args {
    let mut args = Args { seconds: 2.0, runs: 3, fsync: "on".to_owned() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--seconds" => args.seconds = value.parse().expect("--seconds takes a number"),
            "--runs" => args.runs = value.parse().expect("--runs takes a number"),
            "--fsync" if value == "on" || value == "off" => args.fsync = value,
            other => panic!("unknown flag {other} {value} (expected --seconds N, --runs N, --fsync on|off)"),
        }
    }
    args
}

/// A session-like record body (about 600 bytes of JSON).
fn body(n: u64) -> Map<String, Value> {
    let value = json!({
        "id": format!("session-{n}"),
        "user_id": format!("user-{}", n % 97),
        "expires_at": "2026-11-23T10:00:00Z",
        "issued_at": "2026-11-22T20:00:00Z",
        "id_token": {"issuer": "https://idp.example.com", "raw": "eyJhbGciOiJSUzI1NiJ9.".repeat(8)},
        "oauth_token": {"access_token": "a".repeat(64), "refresh_token": "r".repeat(64)},
        "claims": {"email": [format!("user{n}@example.com")], "groups": ["engineering", "admins"]},
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

/// Operations per second of `op`, run by `clients` concurrent tasks for `seconds`.
async fn rate<F, Fut>(clients: usize, seconds: f64, op: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients as u64)
        .map(|client| {
            let (op, stop, done) = (Arc::clone(&op), Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                let mut n = client;
                while !stop.load(Ordering::Relaxed) {
                    op(n % IDS).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    n += clients as u64;
                    // The memory storage never waits: give the timer's worker a turn.
                    if n % 64 < clients as u64 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn storage_puts(storage: Arc<AnyStorage>, clients: usize, seconds: f64) -> f64 {
    rate(clients, seconds, move |n| {
        let storage = Arc::clone(&storage);
        async move {
            storage.put(vec![Record::new(RECORD_TYPE, format!("s{n}"), body(n))]).await.unwrap();
        }
    })
    .await
}

async fn storage_gets(storage: Arc<AnyStorage>, clients: usize, seconds: f64) -> f64 {
    rate(clients, seconds, move |n| {
        let storage = Arc::clone(&storage);
        async move {
            storage.get(RECORD_TYPE, &format!("s{n}")).await.unwrap().expect("written before");
        }
    })
    .await
}

async fn baseline_puts(pool: deadpool_postgres::Pool, clients: usize, seconds: f64) -> f64 {
    rate(clients, seconds, move |n| {
        let pool = pool.clone();
        async move { baseline_put(&pool, n).await }
    })
    .await
}

/// The baseline write: the statement a put runs, with the same parameters, sent bare through
/// the same pool (what the storage layer adds: queueing, batching, decoding the answer).
async fn same_sql_put(pool: &deadpool_postgres::Pool, n: u64) {
    let (sql, lock) = PostgresStorage::write_statement();
    let client = pool.get().await.unwrap();
    let statement = client.prepare_cached(sql).await.unwrap();
    let no_network: Option<String> = None;
    client
        .query(
            &statement,
            &[
                &vec![RECORD_TYPE],
                &vec![format!("s{n}")],
                &vec![Value::Object(body(n))],
                &vec![false],
                &vec![no_network],
                &lock,
            ],
        )
        .await
        .unwrap();
}

async fn same_sql_puts(pool: deadpool_postgres::Pool, clients: usize, seconds: f64) -> f64 {
    rate(clients, seconds, move |n| {
        let pool = pool.clone();
        async move { same_sql_put(&pool, n).await }
    })
    .await
}

/// The floor: a one-table upsert of the same JSON, no change log (what the schema costs).
async fn baseline_put(pool: &deadpool_postgres::Pool, n: u64) {
    let client = pool.get().await.unwrap();
    let statement = client
        .prepare_cached(
            "INSERT INTO bench_baseline (type, id, data) VALUES ($1, $2, $3)
             ON CONFLICT (type, id) DO UPDATE SET data = EXCLUDED.data",
        )
        .await
        .unwrap();
    client.execute(&statement, &[&RECORD_TYPE, &format!("s{n}"), &Value::Object(body(n))]).await.unwrap();
}

async fn baseline_gets(pool: deadpool_postgres::Pool, clients: usize, seconds: f64) -> f64 {
    rate(clients, seconds, move |n| {
        let pool = pool.clone();
        async move {
            let client = pool.get().await.unwrap();
            let statement =
                client.prepare_cached("SELECT data FROM bench_baseline WHERE type = $1 AND id = $2").await.unwrap();
            client.query_one(&statement, &[&RECORD_TYPE, &format!("s{n}")]).await.unwrap();
        }
    })
    .await
}

/// Two gRPC databrokers on one database; milliseconds from a Put on A to the Sync stream on B.
async fn propagation(url: &str) -> Vec<f64> {
    let a = serve(Arc::new(AnyStorage::Postgres(PostgresStorage::connect(url).await.unwrap()))).await;
    let b = serve(Arc::new(AnyStorage::Postgres(PostgresStorage::connect(url).await.unwrap()))).await;
    let writer = Broker::remote(&a, ServiceAuth::new(SECRET)).unwrap();
    let reader = Broker::remote(&b, ServiceAuth::new(SECRET)).unwrap();
    let from = reader.latest(Some("bench.Propagation")).await.unwrap().versions;
    let mut feed = reader.feed(from, Some("bench.Propagation")).await.unwrap();
    let mut samples = Vec::with_capacity(PROPAGATION_SAMPLES);
    for n in 0..PROPAGATION_SAMPLES {
        let id = format!("p{n}");
        let started = Instant::now();
        writer.put(vec![Record::new("bench.Propagation", id.clone(), body(n as u64))]).await.unwrap();
        loop {
            let record = tokio::time::timeout(Duration::from_secs(10), feed.next()).await.unwrap().unwrap();
            if record.id == id {
                break;
            }
        }
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    samples
}

async fn serve(storage: Arc<AnyStorage>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(databroker::serve(listener, storage, ServiceAuth::new(SECRET), std::future::pending()));
    url
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let args = args();
    let cluster = TestPostgres::start_cluster(&[("fsync", &args.fsync), ("full_page_writes", &args.fsync)])
        .expect("a PostgreSQL cluster (Debian's postgresql package)");
    let url = cluster.database().unwrap();
    let postgres = PostgresStorage::connect(&url).await.unwrap();
    let pool = postgres.pool().clone();
    pool.get()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE bench_baseline (type TEXT, id TEXT, data JSONB, PRIMARY KEY (type, id))")
        .await
        .unwrap();
    let postgres = Arc::new(AnyStorage::Postgres(postgres));
    let memory = Arc::new(AnyStorage::Memory(MemoryStorage::new()));
    // Every id exists before anything is timed, so that gets always find their record.
    let all: Vec<Record> = (0..IDS).map(|n| Record::new(RECORD_TYPE, format!("s{n}"), body(n))).collect();
    memory.put(all.clone()).await.unwrap();
    postgres.put(all).await.unwrap();
    for n in 0..IDS {
        baseline_put(&pool, n).await;
    }

    println!(
        "| operation | clients | memory /s | PostgreSQL /s | same SQL bare /s | ÷ same SQL | one-table upsert /s | ÷ upsert |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for clients in [1, 8] {
        let (mut m, mut p, mut same, mut b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.runs {
            m.push(storage_puts(Arc::clone(&memory), clients, args.seconds).await);
            p.push(storage_puts(Arc::clone(&postgres), clients, args.seconds).await);
            same.push(same_sql_puts(pool.clone(), clients, args.seconds).await);
            b.push(baseline_puts(pool.clone(), clients, args.seconds).await);
        }
        row("put", clients, median(m), median(p), Some(median(same)), median(b));
        let (mut m, mut p, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.runs {
            m.push(storage_gets(Arc::clone(&memory), clients, args.seconds).await);
            p.push(storage_gets(Arc::clone(&postgres), clients, args.seconds).await);
            b.push(baseline_gets(pool.clone(), clients, args.seconds).await);
        }
        row("get", clients, median(m), median(p), None, median(b));
    }

    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut maxes = Vec::new();
    for _ in 0..args.runs {
        let mut samples = propagation(&url).await;
        samples.sort_by(f64::total_cmp);
        p50s.push(percentile(&samples, 50.0));
        p99s.push(percentile(&samples, 99.0));
        maxes.push(samples[samples.len() - 1]);
    }
    println!();
    println!("| propagation, Put on A to Sync on B | p50 ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| {PROPAGATION_SAMPLES} samples, median of {} runs | {:.2} | {:.2} | {:.2} |",
        args.runs,
        median(p50s),
        median(p99s),
        median(maxes)
    );
}

fn row(operation: &str, clients: usize, memory: f64, postgres: f64, same: Option<f64>, baseline: f64) {
    let same = match same {
        Some(same) => format!("{same:.0} | {:.2}×", postgres / same),
        None => "– | –".to_owned(),
    };
    println!(
        "| {operation} | {clients} | {memory:.0} | {postgres:.0} | {same} | {baseline:.0} | {:.2}× |",
        postgres / baseline
    );
}

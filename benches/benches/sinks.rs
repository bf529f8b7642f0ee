//! Each sink's sustained write rate against the database's own bulk path on the same rows, in
//! the same run (the machine is shared and noisy; only ratios within one run mean much):
//! - PostgreSQL: the sink (binary COPY into a staging table, then an insert that skips existing
//!   keys) against `COPY tickcore.trades (session_date, match_number, symbol, ts_ns, price, shares, side, printable, kind) FROM STDIN (FORMAT binary)` driven directly, same rows,
//!   same batch size, one transaction per batch, both into a fresh database. Target >= 80%.
//! - Redis: the sink's trade stream writes (one pipeline per batch) against `redis-benchmark`
//!   pipelining the same XADD on one connection. Target >= 70%.
//! - Neo4j (Bolt): PriceBar UNWIND batches of several sizes, rows/s.
//!
//! Run: `cargo bench -p tickcore-benches --bench sinks` with the servers up (`scripts/services`).
//! `TICKCORE_BENCH_ROWS` (default 200k trades), `TICKCORE_BENCH_SINKS` (default `pg,redis,neo4j`). Writes `build_data/bench/sinks.json`. A server
//! that does not answer is reported and skipped.

use shards::book::Books;
use shards::events::EventLog;
use shards::synth::{Profile, Scope};
use std::process::Command;
use std::time::Instant;
use storage_adapters::adapter::{Connect, Sink};
use storage_adapters::pg::{BarRow, Numeric4, PgSink, TradeRow};
use storage_adapters::rows::RowBatch;
use tickcore_benches::{median, session};

const PG: &str = "postgres://postgres@127.0.0.1:5432";
const BATCH: usize = 5000;

/// Trades (with symbols) of a generated m7 session, at least `n` of them.
fn trade_rows(n: usize) -> Vec<TradeRow> {
    let bytes = session(Scope::M7, Profile::Realistic, (n as u64 * 40).max(100_000));
    let mut books = Books::default();
    let mut log = EventLog::default();
    books.replay(&bytes, false, &mut log, |_, _| {}).unwrap();
    log.trades
        .iter()
        .take(n)
        .map(|t| TradeRow {
            symbol: books
                .book(t.locate)
                .map(|b| b.symbol)
                .unwrap_or(*b"?       "),
            trade: *t,
        })
        .collect()
}

fn psql(db: &str, sql: &str) -> bool {
    Command::new("psql")
        .args([&format!("{PG}/{db}"), "-qAtc", sql])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn fresh_db(name: &str) -> bool {
    psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    ) && psql("postgres", &format!("CREATE DATABASE {name}"))
}

async fn pg_sink_rate(rows: &[TradeRow], db: &str) -> Result<f64, String> {
    let url = format!("{PG}/{db}");
    let mut sink = PgSink::connect(&url, None, "2026-12-02")
        .await
        .map_err(|e| e.0)?;
    let t = Instant::now();
    for chunk in rows.chunks(BATCH) {
        sink.write_rows(chunk, &[]).await.map_err(|e| e.0)?;
    }
    Ok(rows.len() as f64 / t.elapsed().as_secs_f64())
}

/// The same rows through binary COPY straight into the table (schema made by the sink's
/// migrations, so the table, partition and key are identical).
async fn pg_copy_rate(rows: &[TradeRow], db: &str) -> Result<f64, String> {
    use futures_util::pin_mut;
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::{ToSql, Type};
    let url = format!("{PG}/{db}");
    drop(
        PgSink::connect(&url, None, "2026-12-02")
            .await
            .map_err(|e| e.0)?,
    );
    let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::task::spawn_local(conn);
    let date = storage_adapters::pg::PgDate::parse("2026-12-02").unwrap();
    let types = [
        Type::DATE,
        Type::INT8,
        Type::TEXT,
        Type::INT8,
        Type::NUMERIC,
        Type::INT8,
        Type::TEXT,
        Type::BOOL,
        Type::TEXT,
    ];
    let prices: Vec<Numeric4> = rows
        .iter()
        .map(|r| Numeric4(r.trade.price as u64))
        .collect();
    let t = Instant::now();
    for (chunk, px) in rows.chunks(BATCH).zip(prices.chunks(BATCH)) {
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let sink = tx
            .copy_in("COPY tickcore.trades (session_date, match_number, symbol, ts_ns, price, shares, side, printable, kind) FROM STDIN (FORMAT binary)")
            .await
            .map_err(|e| e.to_string())?;
        let w = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(w);
        for (r, p) in chunk.iter().zip(px) {
            let t = &r.trade;
            let side = if t.side == b'B' { "B" } else { "S" };
            let kind = (t.kind as u8 as char).to_string();
            let sym = std::str::from_utf8(&r.symbol).unwrap().trim_end();
            let row: [&(dyn ToSql + Sync); 9] = [
                &date,
                &(t.match_number as i64),
                &sym,
                &(t.timestamp as i64),
                p,
                &(t.shares as i64),
                &side,
                &t.printable,
                &kind,
            ];
            w.as_mut().write(&row).await.map_err(|e| e.to_string())?;
        }
        w.finish().await.map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
    }
    Ok(rows.len() as f64 / t.elapsed().as_secs_f64())
}

fn bench_pg(rows: &[TradeRow], out: &mut serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let (mut sink, mut copy) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let db = format!("tickcore_bench_sinks_{i}");
        if !fresh_db(&db) {
            println!("pg: skipped (PostgreSQL does not answer on 127.0.0.1:5432)");
            return;
        }
        let s = local.block_on(&rt, pg_sink_rate(rows, &db));
        let db2 = format!("tickcore_bench_copy_{i}");
        fresh_db(&db2);
        let c = local.block_on(&rt, pg_copy_rate(rows, &db2));
        match (s, c) {
            (Ok(s), Ok(c)) => {
                sink.push(s);
                copy.push(c);
            }
            (s, c) => return println!("pg: failed: {s:?} {c:?}"),
        }
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        );
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {db2} WITH (FORCE)"),
        );
    }
    let (s, c) = (median(sink.clone()), median(copy.clone()));
    println!(
        "pg: sink {:.0} rows/s, bare binary COPY {:.0} rows/s: {:.0}% (target >= 80%), batches of {BATCH}",
        s,
        c,
        100.0 * s / c
    );
    out["pg"] = serde_json::json!({"sink_rows_per_s": s, "copy_rows_per_s": c, "ratio": s / c,
        "sink_runs": sink, "copy_runs": copy, "batch": BATCH, "rows": rows.len()});
}

fn bench_redis(rows: &[TradeRow], out: &mut serde_json::Value) {
    use storage_adapters::redis::RedisConnect;
    let prefix = format!("tickcore-bench-{}:", std::process::id());
    let connect = RedisConnect {
        url: "redis://127.0.0.1:6379".into(),
        password: None,
        prefix: prefix.clone(),
        stream_cap: 10_000,
        memory: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let r: Result<f64, String> = rt.block_on(async {
            let mut sink = connect.connect().await?;
            let t = Instant::now();
            for chunk in rows.chunks(BATCH) {
                let b = RowBatch {
                    trades: chunk.to_vec(),
                    ..Default::default()
                };
                sink.write(&b).await?;
            }
            Ok(rows.len() as f64 / t.elapsed().as_secs_f64())
        });
        clear_redis(&prefix);
        match r {
            Ok(x) => runs.push(x),
            Err(e) => return println!("redis: skipped ({e})"),
        }
    }
    // The same command shape, pipelined BATCH deep on one connection (the sink's pipelines are
    // a batch long on one connection).
    let key = format!("{prefix}rb");
    let o = Command::new("redis-benchmark")
        .args([
            "-q",
            "-c",
            "1",
            "-P",
            &BATCH.to_string(),
            "-n",
            &rows.len().to_string(),
        ])
        .args([
            "XADD", &key, "MAXLEN", "~", "10000", "*", "match", "123456", "px", "187.2300",
        ])
        .args(["qty", "100", "side", "B", "kind", "E", "printable", "1"])
        .output();
    clear_redis(&prefix);
    let rb = o.ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        // "XADD ...: 123456.79 requests per second, p50=..."
        let rate = text
            .rsplit(':')
            .find_map(|part| part.split_whitespace().next()?.parse::<f64>().ok());
        rate.or_else(|| {
            text.split_whitespace()
                .collect::<Vec<_>>()
                .windows(3)
                .find(|w| w[1] == "requests" && w[2] == "per")
                .and_then(|w| w[0].parse().ok())
        })
    });
    let s = median(runs.clone());
    match rb {
        Some(rb) => {
            println!(
                "redis: sink {:.0} trades/s (one XADD each), redis-benchmark -P {BATCH} -c 1 XADD {:.0}/s: {:.0}% (target >= 70%)",
                s,
                rb,
                100.0 * s / rb
            );
            out["redis"] = serde_json::json!({"sink_rows_per_s": s, "redis_benchmark_per_s": rb,
                "ratio": s / rb, "sink_runs": runs, "pipeline": BATCH, "rows": rows.len()});
        }
        None => println!("redis: sink {s:.0} trades/s; redis-benchmark gave no rate"),
    }
}

fn clear_redis(prefix: &str) {
    let keys = Command::new("redis-cli")
        .args(["--scan", "--pattern", &format!("{prefix}*")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    for k in keys.lines() {
        let _ = Command::new("redis-cli").args(["del", k]).output();
    }
}

fn bench_neo4j(out: &mut serde_json::Value) {
    use storage_adapters::neo4j::Neo4jConnect;
    let password =
        std::env::var("TICKCORE_TEST_NEO4J_PASSWORD").unwrap_or_else(|_| "tickcore-test".into());
    let http = |cmd: &str| {
        Command::new("curl")
            .args(["-s", "-u", &format!("root:{password}"), "-X", "POST"])
            .arg("http://127.0.0.1:2480/api/v1/server")
            .args(["-d", &format!("{{\"command\":\"{cmd}\"}}")])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"{\"result\""))
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows_out = Vec::new();
    for size in [100usize, 1000, 5000] {
        let db = format!("tickcore_bench_{size}");
        let _ = http(&format!("drop database {db}"));
        if !http(&format!("create database {db}")) {
            return println!(
                "neo4j: skipped (the Bolt server's HTTP API does not answer; run scripts/services)"
            );
        }
        let connect = Neo4jConnect {
            url: "bolt://127.0.0.1:7687".into(),
            user: "root".into(),
            password: password.clone(),
            database: db.clone(),
        };
        let total = 20_000usize;
        let r: Result<f64, String> = rt.block_on(async {
            let mut sink = connect.connect().await?;
            let t = Instant::now();
            let mut start = 0u64;
            while (start as usize) < total {
                let bars: Vec<BarRow> = (0..size as u64).map(|i| bar(start + i)).collect();
                start += size as u64;
                sink.write(&RowBatch {
                    bars,
                    ..Default::default()
                })
                .await?;
            }
            Ok(total as f64 / t.elapsed().as_secs_f64())
        });
        let _ = http(&format!("drop database {db}"));
        match r {
            Ok(rate) => {
                println!("neo4j: UNWIND batches of {size:>5}: {rate:.0} new PriceBar rows/s");
                rows_out
                    .push(serde_json::json!({"batch": size, "rows_per_s": rate, "rows": total}));
            }
            Err(e) => return println!("neo4j: failed ({e})"),
        }
    }
    out["neo4j"] = serde_json::json!(rows_out);
}

/// The `i`-th closed minute bar, spread over the m7 names.
fn bar(i: u64) -> BarRow {
    const NAMES: [&[u8; 8]; 7] = [
        b"AAPL    ",
        b"MSFT    ",
        b"AMZN    ",
        b"GOOGL   ",
        b"META    ",
        b"NVDA    ",
        b"TSLA    ",
    ];
    BarRow {
        symbol: *NAMES[(i % 7) as usize],
        bar: shards::bars::Bar {
            locate: (i % 7) as u16 + 1,
            interval_s: 60,
            start: (i / 7) * 60_000_000_000,
            open: 1_000_000,
            high: 1_001_000,
            low: 999_000,
            close: 1_000_500,
            volume: 1000,
            notional: 1_000_200 * 1000,
            trades: 10,
        },
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return println!("sinks: benchmark");
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n = if smoke {
        10_000
    } else {
        std::env::var("TICKCORE_BENCH_ROWS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200_000)
    };
    let rows = trade_rows(n);
    println!(
        "sinks: {} trade rows from a generated m7 session",
        rows.len()
    );
    let mut out = serde_json::json!({"rows": rows.len()});
    // TICKCORE_BENCH_SINKS picks a subset, e.g. `redis` or `pg,neo4j`.
    let only = std::env::var("TICKCORE_BENCH_SINKS").unwrap_or_else(|_| "pg,redis,neo4j".into());
    let on = |name: &str| only.split(',').any(|s| s.trim() == name);
    if on("pg") {
        bench_pg(&rows, &mut out);
    }
    if on("redis") {
        bench_redis(&rows, &mut out);
    }
    if on("neo4j") {
        bench_neo4j(&mut out);
    }
    if !smoke {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../build_data/bench");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(format!("{dir}/sinks.json"), out.to_string()).unwrap();
    }
}

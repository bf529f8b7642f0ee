//! The PostgreSQL sink: trades and closed bars, written by binary `COPY`, one transaction a batch.
//!
//! Trades first try the bulk path itself: `COPY` straight into the session's partition, under a
//! savepoint. A key already there (a replayed feed, a batch re-sent after a timeout whose commit
//! did land) fails that copy as a whole; the sink rolls back to the savepoint and takes the
//! idempotent path: `COPY` into a staging table, then an insert that skips existing keys. After
//! a conflict it stays on that path for a while (a replay conflicts batch after batch). Bars are
//! few and always take the staging path.
//!
//! Schema `tickcore` (see `migrations/pg/`): `trades` keyed by (session_date, match_number),
//! `bars` by (session_date, symbol, interval_s, start_ns), both partitioned by session date.
//! Migrations are versioned SQL files compiled into the crate and applied at connect, once, under
//! an advisory lock, so several engines may start together. Replaying a feed twice, or re-sending
//! a batch after a failure, never duplicates a row.
//!
//! Runs on an adapter core's tokio runtime; never on a shard core.

use futures_util::pin_mut;
use shards::bars::Bar;
use shards::events::Trade;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

/// Versioned migrations, applied in order.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "trades_and_bars",
    include_str!("../migrations/pg/0001_trades_and_bars.sql"),
)];

/// A failure, with what to do about it where that is known.
#[derive(Debug)]
pub struct PgError(pub String);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PgError {}

fn err(what: &str, e: tokio_postgres::Error) -> PgError {
    let detail = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string());
    PgError(format!("PostgreSQL {what}: {detail}"))
}

/// A trade as the sink stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradeRow {
    /// Symbol, space padded.
    pub symbol: [u8; 8],
    /// The trade.
    pub trade: Trade,
}

/// A closed bar as the sink stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarRow {
    /// Symbol, space padded.
    pub symbol: [u8; 8],
    /// The bar.
    pub bar: Bar,
}

fn sym(s: &[u8; 8]) -> &str {
    std::str::from_utf8(s).unwrap_or("?").trim_end()
}

/// A connection that writes trades and bars for one session date.
pub struct PgSink {
    client: Client,
    date: String,
    /// The same date as PostgreSQL's binary `date`, for the direct copy.
    day: PgDate,
    /// Batches left before the direct copy is tried again after a key conflict.
    staged_for: u32,
}

/// Batches that take the staging path after a key conflict before the direct copy is tried again.
const STAGED_AFTER_CONFLICT: u32 = 16;

/// A date in PostgreSQL's binary form (days since 2000-01-01).
#[derive(Debug, Clone, Copy)]
pub struct PgDate(pub i32);

impl PgDate {
    /// `YYYY-MM-DD` (already checked by [`is_date`]).
    pub fn parse(date: &str) -> Option<PgDate> {
        let y: i64 = date.get(0..4)?.parse().ok()?;
        let m: i64 = date.get(5..7)?.parse().ok()?;
        let d: i64 = date.get(8..10)?.parse().ok()?;
        // Days from civil (H. Hinnant's algorithm), shifted to the 2000-01-01 epoch.
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let unix_days = era * 146_097 + doe - 719_468;
        Some(PgDate((unix_days - 10_957) as i32))
    }
}

impl ToSql for PgDate {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0.to_be_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }
    tokio_postgres::types::accepts!(DATE);
    tokio_postgres::types::to_sql_checked!();
}

/// A Price(4) as PostgreSQL's binary `numeric` with four decimals, written without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Numeric4(pub u64);

impl ToSql for Numeric4 {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // Base-10000 digits, most significant first: the integer part's, then the fraction.
        let (mut int, frac) = (self.0 / 10_000, (self.0 % 10_000) as i16);
        let mut digits = [0i16; 6];
        let mut n = 0;
        while int > 0 {
            digits[n] = (int % 10_000) as i16;
            int /= 10_000;
            n += 1;
        }
        digits[..n].reverse();
        let weight = n as i16 - 1;
        digits[n] = frac;
        out.extend_from_slice(&(n as i16 + 1).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes()); // sign: positive
        out.extend_from_slice(&4i16.to_be_bytes()); // display scale
        for d in &digits[..=n] {
            out.extend_from_slice(&d.to_be_bytes());
        }
        Ok(tokio_postgres::types::IsNull::No)
    }
    tokio_postgres::types::accepts!(NUMERIC);
    tokio_postgres::types::to_sql_checked!();
}

fn side_str(side: u8) -> &'static str {
    match side {
        b'B' => "B",
        b'S' => "S",
        _ => " ",
    }
}

fn kind_str(kind: shards::events::TradeKind) -> &'static str {
    match kind as u8 {
        b'E' => "E",
        b'C' => "C",
        b'P' => "P",
        b'Q' => "Q",
        _ => "?",
    }
}

fn is_conflict(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

impl PgSink {
    /// Connects to `url` (a `postgres://` URL; `password`, when given, overrides the URL's),
    /// applies the migrations and creates the session date's partitions.
    pub async fn connect(url: &str, password: Option<&str>, date: &str) -> Result<PgSink, PgError> {
        let mut cfg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| PgError(format!("PostgreSQL URL `{url}` is not valid: {e}")))?;
        if let Some(p) = password {
            cfg.password(p);
        }
        cfg.connect_timeout(std::time::Duration::from_secs(5));
        let (mut client, conn) = cfg.connect(NoTls).await.map_err(|e| err("connect", e))?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the next query reports it.
            let _ = conn.await;
        });
        if !is_date(date) {
            return Err(PgError(format!("session date `{date}` is not YYYY-MM-DD")));
        }
        migrate(&mut client).await?;
        let part = date.replace('-', "");
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS tickcore.trades_{part} PARTITION OF tickcore.trades FOR VALUES IN ('{date}');
             CREATE TABLE IF NOT EXISTS tickcore.bars_{part} PARTITION OF tickcore.bars FOR VALUES IN ('{date}');
             CREATE TEMP TABLE IF NOT EXISTS stage_trades (match_number int8, symbol text, ts_ns int8,
                 price_e4 int8, shares int8, side text, printable bool, kind text) ON COMMIT DELETE ROWS;
             CREATE TEMP TABLE IF NOT EXISTS stage_bars (symbol text, interval_s int4, start_ns int8,
                 open_e4 int8, high_e4 int8, low_e4 int8, close_e4 int8, volume int8, vwap_e4 int8,
                 trades int4) ON COMMIT DELETE ROWS;"
        );
        client
            .batch_execute(&ddl)
            .await
            .map_err(|e| err("creating the session's partitions", e))?;
        Ok(PgSink {
            client,
            day: PgDate::parse(date).ok_or_else(|| PgError(format!("session date `{date}`")))?,
            staged_for: 0,
            date: date.to_string(),
        })
    }

    /// Writes `trades` and `bars` in one transaction; returns the rows that were new (rows
    /// already there, from an earlier run or a retried batch, are skipped).
    pub async fn write_rows(
        &mut self,
        trades: &[TradeRow],
        bars: &[BarRow],
    ) -> Result<(u64, u64), PgError> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| err("begin", e))?;
        let mut new_trades = None;
        if !trades.is_empty() && self.staged_for == 0 {
            tx.batch_execute("SAVEPOINT direct")
                .await
                .map_err(|e| err("savepoint", e))?;
            match copy_trades(&tx, trades, Some(self.day)).await {
                Ok(()) => new_trades = Some(trades.len() as u64),
                Err(e) if is_conflict(&e) => {
                    tx.batch_execute("ROLLBACK TO SAVEPOINT direct")
                        .await
                        .map_err(|e| err("rollback to savepoint", e))?;
                    self.staged_for = STAGED_AFTER_CONFLICT;
                }
                Err(e) => return Err(err("copy trades", e)),
            }
        } else {
            self.staged_for = self.staged_for.saturating_sub(1);
        }
        if !trades.is_empty() && new_trades.is_none() {
            copy_trades(&tx, trades, None)
                .await
                .map_err(|e| err("copy trades", e))?;
        }
        if !bars.is_empty() {
            let sink = tx
                .copy_in("COPY stage_bars FROM STDIN (FORMAT binary)")
                .await
                .map_err(|e| err("copy bars", e))?;
            let types = [
                Type::TEXT,
                Type::INT4,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT4,
            ];
            let w = BinaryCopyInWriter::new(sink, &types);
            pin_mut!(w);
            for r in bars {
                let b = &r.bar;
                let row: [&(dyn ToSql + Sync); 10] = [
                    &sym(&r.symbol),
                    &(b.interval_s as i32),
                    &(b.start as i64),
                    &(b.open as i64),
                    &(b.high as i64),
                    &(b.low as i64),
                    &(b.close as i64),
                    &(b.volume as i64),
                    &(b.vwap() as i64),
                    &(b.trades as i32),
                ];
                w.as_mut()
                    .write(&row)
                    .await
                    .map_err(|e| err("copy bars", e))?;
            }
            w.finish().await.map_err(|e| err("copy bars", e))?;
        }
        let new_trades = match new_trades {
            Some(n) => n,
            None => tx
            .execute(
                "INSERT INTO tickcore.trades SELECT $1::text::date, match_number, symbol, ts_ns,
                     price_e4::numeric / 10000, shares, side, printable, kind FROM stage_trades
                 ON CONFLICT DO NOTHING",
                &[&self.date],
            )
            .await
            .map_err(|e| err("insert trades", e))?,
        };
        let new_bars = tx
            .execute(
                "INSERT INTO tickcore.bars SELECT $1::text::date, symbol, interval_s, start_ns,
                     open_e4::numeric / 10000, high_e4::numeric / 10000, low_e4::numeric / 10000,
                     close_e4::numeric / 10000, volume, vwap_e4::numeric / 10000, trades FROM stage_bars
                 ON CONFLICT DO NOTHING",
                &[&self.date],
            )
            .await
            .map_err(|e| err("insert bars", e))?;
        tx.commit().await.map_err(|e| err("commit", e))?;
        Ok((new_trades, new_bars))
    }

    /// The client, for queries in tests and tools.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn is_date(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Applies every migration not yet applied, under an advisory lock (idempotent, concurrent-safe).
pub async fn migrate(client: &mut Client) -> Result<(), PgError> {
    let tx = client.transaction().await.map_err(|e| err("begin", e))?;
    // One lock for every tickcore instance: the first applies, the others wait and find it done.
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7160117);
         CREATE SCHEMA IF NOT EXISTS tickcore;
         CREATE TABLE IF NOT EXISTS tickcore.schema_migrations (
             version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());",
    )
    .await
    .map_err(|e| err("preparing migrations (may this user create a schema?)", e))?;
    for &(version, name, sql) in MIGRATIONS {
        let done = tx
            .query_opt(
                "SELECT 1 FROM tickcore.schema_migrations WHERE version = $1",
                &[&version],
            )
            .await
            .map_err(|e| err("reading migrations", e))?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| err(&format!("migration {version} ({name})"), e))?;
        tx.execute(
            "INSERT INTO tickcore.schema_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await
        .map_err(|e| err("recording a migration", e))?;
    }
    tx.commit().await.map_err(|e| err("commit migrations", e))
}

/// Connection settings of the PostgreSQL sink, for the adapter's (re)connects.
#[derive(Debug, Clone)]
pub struct PgConnect {
    /// `postgres://` URL.
    pub url: String,
    /// Password from the environment (`TICKCORE_PG_PASSWORD`), never from the command line.
    pub password: Option<String>,
    /// Session date, `YYYY-MM-DD`.
    pub date: String,
}

impl crate::adapter::Connect for PgConnect {
    type Sink = PgSink;
    async fn connect(&self) -> Result<PgSink, String> {
        PgSink::connect(&self.url, self.password.as_deref(), &self.date)
            .await
            .map_err(|e| e.to_string())
    }
}

impl crate::adapter::Sink for PgSink {
    async fn write(&mut self, rows: &crate::rows::RowBatch) -> Result<u64, String> {
        self.write_rows(&rows.trades, &rows.bars)
            .await
            .map(|(t, b)| t + b)
            .map_err(|e| e.to_string())
    }
}

/// Copies `trades` straight into the session's table (`day` given: every key must be new) or
/// into the staging table (`None`).
async fn copy_trades(
    tx: &tokio_postgres::Transaction<'_>,
    trades: &[TradeRow],
    day: Option<PgDate>,
) -> Result<(), tokio_postgres::Error> {
    let (sql, types): (&str, &[Type]) = match day {
        Some(_) => (
            "COPY tickcore.trades (session_date, match_number, symbol, ts_ns, price, shares, side, printable, kind) FROM STDIN (FORMAT binary)",
            &[Type::DATE, Type::INT8, Type::TEXT, Type::INT8, Type::NUMERIC, Type::INT8, Type::TEXT, Type::BOOL, Type::TEXT],
        ),
        None => (
            "COPY stage_trades FROM STDIN (FORMAT binary)",
            &[Type::INT8, Type::TEXT, Type::INT8, Type::INT8, Type::INT8, Type::TEXT, Type::BOOL, Type::TEXT],
        ),
    };
    let sink = tx.copy_in(sql).await?;
    let w = BinaryCopyInWriter::new(sink, types);
    pin_mut!(w);
    for r in trades {
        let t = &r.trade;
        let (m, ts, shares) = (t.match_number as i64, t.timestamp as i64, t.shares as i64);
        let (symbol, side, kind) = (sym(&r.symbol), side_str(t.side), kind_str(t.kind));
        match day {
            Some(d) => {
                let px = Numeric4(t.price as u64);
                let row: [&(dyn ToSql + Sync); 9] = [
                    &d,
                    &m,
                    &symbol,
                    &ts,
                    &px,
                    &shares,
                    &side,
                    &t.printable,
                    &kind,
                ];
                w.as_mut().write(&row).await?;
            }
            None => {
                let px = t.price as i64;
                let row: [&(dyn ToSql + Sync); 8] =
                    [&m, &symbol, &ts, &px, &shares, &side, &t.printable, &kind];
                w.as_mut().write(&row).await?;
            }
        }
    }
    w.finish().await?;
    Ok(())
}

/// Today's date in UTC, `YYYY-MM-DD` (the default session date).
pub fn today_utc() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

//! The Neo4j sink (Bolt, neo4rs): the research graph. `(:Stock {ticker})` nodes carrying the
//! day's summary so far, and `(:PriceBar {ticker, interval, start})` nodes for closed 1-minute
//! bars, linked `(:Stock)-[:HAS_PRICE]->(:PriceBar)`.
//!
//! Written with `UNWIND $rows AS r MERGE ...` batches, after unique constraints on
//! `Stock.ticker` and `PriceBar (ticker, interval, start)` (created at connect; without them MERGE
//! slows down quadratically). Updates to one node within a batch are coalesced (only the latest
//! summary of a stock is sent). MERGE on the natural keys makes every write idempotent. Only
//! Cypher that Neo4j 5 also accepts. Tested against ArcadeDB's Bolt server (see
//! `scripts/services`), the Bolt server these machines can run.

use crate::adapter::{Connect, Sink};
use crate::rows::{RowBatch, StateRow};
use neo4rs::{query, BoltType, ConfigBuilder, Graph};
use std::collections::HashMap;

/// Connection settings of the Neo4j sink.
#[derive(Debug, Clone)]
pub struct Neo4jConnect {
    /// `bolt://host:port` URL.
    pub url: String,
    /// User.
    pub user: String,
    /// Password from the environment (`TICKCORE_NEO4J_PASSWORD`).
    pub password: String,
    /// Database name.
    pub database: String,
}

/// A connected Neo4j sink.
pub struct Neo4jSink {
    graph: Graph,
}

fn sym(s: &[u8; 8]) -> String {
    std::str::from_utf8(s).unwrap_or("?").trim_end().to_string()
}

fn px(p: u64) -> f64 {
    p as f64 / 10_000.0
}

const CONSTRAINTS: [&str; 2] = [
    "CREATE CONSTRAINT tickcore_stock IF NOT EXISTS FOR (s:Stock) REQUIRE s.ticker IS UNIQUE",
    "CREATE CONSTRAINT tickcore_price_bar IF NOT EXISTS FOR (b:PriceBar) REQUIRE (b.ticker, b.interval, b.start) IS UNIQUE",
];

const STOCKS: &str = "UNWIND $rows AS r MERGE (s:Stock {ticker: r.ticker}) \
     SET s.trades = r.trades, s.volume = r.volume, s.vwap = r.vwap, s.last = r.last, \
         s.bid = r.bid, s.ask = r.ask, s.ts_ns = r.ts_ns";

const BARS: &str = "UNWIND $rows AS r MERGE (s:Stock {ticker: r.ticker}) \
     MERGE (b:PriceBar {ticker: r.ticker, interval: r.interval, start: r.start}) \
     SET b.open = r.open, b.high = r.high, b.low = r.low, b.close = r.close, \
         b.volume = r.volume, b.vwap = r.vwap, b.trades = r.trades \
     MERGE (s)-[:HAS_PRICE]->(b)";

impl Connect for Neo4jConnect {
    type Sink = Neo4jSink;
    async fn connect(&self) -> Result<Neo4jSink, String> {
        let uri = self
            .url
            .strip_prefix("bolt://")
            .or_else(|| self.url.strip_prefix("neo4j://"))
            .ok_or_else(|| {
                format!(
                    "Neo4j URL `{}` must start with bolt:// or neo4j://",
                    self.url
                )
            })?;
        let cfg = ConfigBuilder::default()
            .uri(uri)
            .user(self.user.as_str())
            .password(self.password.as_str())
            .db(self.database.as_str())
            .max_connections(2)
            .build()
            .map_err(|e| format!("Neo4j settings: {e}"))?;
        let graph = Graph::connect(cfg)
            .await
            .map_err(|e| format!("Neo4j connect to {}: {e}", self.url))?;
        // A transaction is the one call neo4rs does not retry: a refused login fails here at
        // once, instead of being retried for a minute (and locking the user out on servers
        // that count failed logins).
        let probe = graph.start_txn().await.map_err(|e| match e {
            neo4rs::Error::AuthenticationError(m) => format!(
                "Neo4j at {} refused the login of user `{}`: {m} (check --neo4j-user and TICKCORE_NEO4J_PASSWORD)",
                self.url, self.user
            ),
            e => format!("Neo4j connect to {}: {e}", self.url),
        })?;
        probe
            .rollback()
            .await
            .map_err(|e| format!("Neo4j connect to {}: {e}", self.url))?;
        for c in CONSTRAINTS {
            graph
                .run(query(c))
                .await
                .map_err(|e| format!("Neo4j refused the schema ({c}): {e}"))?;
        }
        Ok(Neo4jSink { graph })
    }
}

fn stock_row(s: &StateRow) -> HashMap<String, BoltType> {
    let t = &s.state;
    let vwap = if t.volume > 0 {
        px((t.notional / t.volume as u128) as u64)
    } else {
        0.0
    };
    HashMap::from([
        ("ticker".to_string(), sym(&s.symbol).into()),
        ("trades".to_string(), (t.trades as i64).into()),
        ("volume".to_string(), (t.volume as i64).into()),
        ("vwap".to_string(), vwap.into()),
        ("last".to_string(), px(t.last_price as u64).into()),
        ("bid".to_string(), px(t.bid.price as u64).into()),
        ("ask".to_string(), px(t.ask.price as u64).into()),
        ("ts_ns".to_string(), (t.timestamp as i64).into()),
    ])
}

impl Sink for Neo4jSink {
    async fn write(&mut self, rows: &RowBatch) -> Result<u64, String> {
        let mut stocks: Vec<&StateRow> = Vec::new();
        for s in rows.states.iter().rev() {
            if !stocks.iter().any(|x| x.state.locate == s.state.locate) {
                stocks.push(s);
            }
        }
        let bars: Vec<HashMap<String, BoltType>> = rows
            .bars
            .iter()
            .filter(|b| b.bar.interval_s == 60)
            .map(|r| {
                let b = &r.bar;
                HashMap::from([
                    ("ticker".to_string(), sym(&r.symbol).into()),
                    ("interval".to_string(), "1m".into()),
                    ("start".to_string(), (b.start as i64).into()),
                    ("open".to_string(), px(b.open as u64).into()),
                    ("high".to_string(), px(b.high as u64).into()),
                    ("low".to_string(), px(b.low as u64).into()),
                    ("close".to_string(), px(b.close as u64).into()),
                    ("volume".to_string(), (b.volume as i64).into()),
                    ("vwap".to_string(), px(b.vwap() as u64).into()),
                    ("trades".to_string(), (b.trades as i64).into()),
                ])
            })
            .collect();
        let n = (stocks.len() + bars.len()) as u64;
        if n == 0 {
            return Ok(0);
        }
        // One transaction per batch: the batch lands whole or not at all, and a failure comes
        // back at once (neo4rs retries `Graph::run` internally for up to a minute, which would
        // hide an outage from the adapter's own retry, spool and metrics).
        let fail = |e: neo4rs::Error| format!("Neo4j: {e}");
        let mut txn = self.graph.start_txn().await.map_err(fail)?;
        if !stocks.is_empty() {
            let rows: Vec<HashMap<String, BoltType>> =
                stocks.iter().map(|s| stock_row(s)).collect();
            txn.run(query(STOCKS).param("rows", rows))
                .await
                .map_err(fail)?;
        }
        if !bars.is_empty() {
            txn.run(query(BARS).param("rows", bars))
                .await
                .map_err(fail)?;
        }
        txn.commit().await.map_err(fail)?;
        Ok(n)
    }
}

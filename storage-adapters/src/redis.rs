//! The Redis sink (fred): the live state of each instrument, a capped stream of its trades, and a
//! pub/sub channel of BBO updates. Each batch is two pipelines sent at once: the hashes and
//! BBO messages through fred, the trades' `XADD`s through [`crate::resp`] on a second connection
//! (fred's per-command cost was twice the server's; see that module).
//!
//! Keys, under a prefix (default `tickcore:`):
//! - `{prefix}{SYMBOL}`: hash `bid_px bid_qty bid_orders ask_px ask_qty ask_orders last_px
//!   last_qty trades volume vwap ts_ns` (prices as four-decimal strings; `vwap` and `last_px`
//!   empty before the first trade). Updates to one instrument within a batch are coalesced: only
//!   its latest state is written.
//! - `{prefix}trades:{SYMBOL}`: stream capped near `stream_cap` entries (`MAXLEN ~`), one entry
//!   per trade with id `<feed ms>-<match number>`, fields `match px qty side kind printable`.
//!   The id makes a re-sent trade a rejected duplicate (Redis refuses ids not above the last),
//!   so a replay or a retried batch never adds an entry twice.
//!   The hash also carries the instrument's latest closed bars: `bar_1s` and `bar_1m`, each
//!   `start_ns open high low close volume vwap trades` (prices as four-decimal strings).
//! - `{prefix}bbo`: channel; one message per instrument per batch, `SYMBOL bid_px bid_qty ask_px
//!   ask_qty ts_ns`.
//!
//! Redis here keeps nothing on disk, so a restart empties it. The sink remembers the latest
//! state and bars it wrote for each instrument and the server's `run_id`; a connection that
//! finds another `run_id` than the last one writes every remembered hash again before anything
//! else, so the live state is whole again. Trade streams restart empty (they are a live tail;
//! PostgreSQL holds every trade).

use crate::adapter::{Connect, Sink};
use crate::pg::{BarRow, TradeRow};
use crate::resp::Pipe;
use crate::rows::{RowBatch, StateRow};
use fred::prelude::*;
use fred::types::config::ServerConfig;
use fred::types::{ClusterHash, CustomCommand};
use shards::price::Px4;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Connection settings of the Redis sink.
#[derive(Debug, Clone)]
pub struct RedisConnect {
    /// `redis://host:port[/db]` URL.
    pub url: String,
    /// Password from the environment (`TICKCORE_REDIS_PASSWORD`).
    pub password: Option<String>,
    /// Key prefix.
    pub prefix: String,
    /// Approximate cap of each trade stream.
    pub stream_cap: u64,
    /// What was written, kept across reconnects (see the module docs).
    pub memory: Arc<Mutex<Memory>>,
}

/// The latest hash contents per instrument, and the server they were written to. Used by the
/// adapter core only (the mutex is never contended; it lets the memory outlive a connection).
#[derive(Debug, Default)]
pub struct Memory {
    run_id: Option<String>,
    states: BTreeMap<u16, StateRow>,
    bars: BTreeMap<(u16, u32), BarRow>,
    /// Times a restarted server was found and the hashes written again.
    pub restores: u64,
}

/// A connected Redis sink.
pub struct RedisSink {
    client: Client,
    prefix: String,
    memory: Arc<Mutex<Memory>>,
    stream_keys: BTreeMap<[u8; 8], Vec<u8>>,
    pipe: Pipe,
    cap: Vec<u8>,
}

fn sym(s: &[u8; 8]) -> &str {
    std::str::from_utf8(s).unwrap_or("?").trim_end()
}

fn px(p: u32) -> String {
    Px4(p as u64).to_string()
}

impl Connect for RedisConnect {
    type Sink = RedisSink;
    async fn connect(&self) -> Result<RedisSink, String> {
        let mut cfg = Config::from_url(&self.url)
            .map_err(|e| format!("Redis URL `{}` is not valid: {e}", self.url))?;
        if let Some(p) = &self.password {
            cfg.password = Some(p.clone());
        }
        let client = Builder::from_config(cfg.clone())
            .with_connection_config(|c| {
                c.connection_timeout = std::time::Duration::from_secs(2);
                c.internal_command_timeout = std::time::Duration::from_secs(2);
            })
            .build()
            .map_err(|e| format!("Redis client: {e}"))?;
        client
            .init()
            .await
            .map_err(|e| format!("Redis connect to {}: {e}", self.url))?;
        let info: String = client
            .custom(
                CustomCommand::new("INFO", ClusterHash::Random, false),
                vec!["server"],
            )
            .await
            .map_err(|e| format!("Redis INFO on {}: {e}", self.url))?;
        let run_id = info
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|v| v.trim().to_string());
        let pipe = connect_pipe(&cfg).await?;
        let sink = RedisSink {
            client,
            prefix: self.prefix.clone(),
            memory: self.memory.clone(),
            stream_keys: BTreeMap::new(),
            pipe,
            cap: self.stream_cap.to_string().into_bytes(),
        };
        let restarted = {
            let m = self.memory.lock().map_err(|_| "Redis memory poisoned")?;
            m.run_id.is_some() && m.run_id != run_id
        };
        if restarted {
            sink.restore().await?;
        }
        let mut m = self.memory.lock().map_err(|_| "Redis memory poisoned")?;
        m.run_id = run_id;
        m.restores += u64::from(restarted);
        Ok(sink)
    }
    fn restores(&self) -> u64 {
        self.memory.lock().map(|m| m.restores).unwrap_or(0)
    }
}

fn bar_field(b: &BarRow) -> String {
    let bar = &b.bar;
    let vwap = px(bar.vwap());
    format!(
        "{} {} {} {} {} {} {} {}",
        bar.start,
        px(bar.open),
        px(bar.high),
        px(bar.low),
        px(bar.close),
        bar.volume,
        vwap,
        bar.trades
    )
}

fn bar_name(b: &BarRow) -> &'static str {
    if b.bar.interval_s == 1 {
        "bar_1s"
    } else {
        "bar_1m"
    }
}

fn state_fields(s: &StateRow) -> Vec<(&'static str, String)> {
    let t = &s.state;
    let traded = t.trades > 0;
    let vwap = if t.volume > 0 {
        let v = t.volume as u128;
        px(((t.notional + v / 2) / v) as u32)
    } else {
        String::new()
    };
    vec![
        ("bid_px", px(t.bid.price)),
        ("bid_qty", t.bid.shares.to_string()),
        ("bid_orders", t.bid.orders.to_string()),
        ("ask_px", px(t.ask.price)),
        ("ask_qty", t.ask.shares.to_string()),
        ("ask_orders", t.ask.orders.to_string()),
        (
            "last_px",
            if traded {
                px(t.last_price)
            } else {
                String::new()
            },
        ),
        ("last_qty", t.last_shares.to_string()),
        ("trades", t.trades.to_string()),
        ("volume", t.volume.to_string()),
        ("vwap", vwap),
        ("ts_ns", t.timestamp.to_string()),
    ]
}

impl Sink for RedisSink {
    async fn write(&mut self, rows: &RowBatch) -> Result<u64, String> {
        let p = self.client.pipeline();
        let fail = |e: Error| format!("Redis: {e}");
        // Latest state per instrument only.
        let mut latest: Vec<&StateRow> = Vec::new();
        for s in rows.states.iter().rev() {
            if !latest.iter().any(|l| l.state.locate == s.state.locate) {
                latest.push(s);
            }
        }
        for s in &latest {
            let key = format!("{}{}", self.prefix, sym(&s.symbol));
            let _: () = p.hset(key, state_fields(s)).await.map_err(fail)?;
            let t = &s.state;
            let msg = format!(
                "{} {} {} {} {} {}",
                sym(&s.symbol),
                px(t.bid.price),
                t.bid.shares,
                px(t.ask.price),
                t.ask.shares,
                t.timestamp
            );
            let _: () = p
                .publish(format!("{}bbo", self.prefix), msg)
                .await
                .map_err(fail)?;
        }
        // Latest closed bar per instrument and interval.
        let mut bars: Vec<&BarRow> = Vec::new();
        for b in rows.bars.iter().rev() {
            let same =
                |l: &&BarRow| l.bar.locate == b.bar.locate && l.bar.interval_s == b.bar.interval_s;
            if !bars.iter().any(same) {
                bars.push(b);
            }
        }
        for b in &bars {
            self.queue_bar(&p, b).await.map_err(fail)?;
        }
        for r in &rows.trades {
            self.queue_xadd(r);
        }
        let pipe = &mut self.pipe;
        // A trade already in its stream is the idempotent path (a replay or a re-sent batch).
        let dup = |e: &str| e.contains("equal or smaller");
        let (hashes, trades) = tokio::join!(p.try_all::<Value>(), pipe.flush(dup));
        for r in hashes {
            r.map_err(fail)?;
        }
        let trades = trades?;
        if let Some(e) = trades.error {
            return Err(format!("Redis XADD: {e}"));
        }
        let new = (latest.len() + bars.len()) as u64 + trades.ok;
        let mut m = self.memory.lock().map_err(|_| "Redis memory poisoned")?;
        for s in latest {
            m.states.insert(s.state.locate, *s);
        }
        for b in bars {
            m.bars.insert((b.bar.locate, b.bar.interval_s), *b);
        }
        Ok(new)
    }
}

/// A one-letter field value without allocating.
fn letter(c: u8) -> &'static str {
    const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    match c {
        b'A'..=b'Z' => &LETTERS[(c - b'A') as usize..=(c - b'A') as usize],
        _ => " ",
    }
}

impl RedisSink {
    /// Queues `XADD {prefix}trades:{SYMBOL} MAXLEN ~ cap <ms>-<match> match .. px .. qty ..
    /// side .. kind .. printable ..` on the bulk pipe, with no allocation once the symbol's key
    /// has been made.
    fn queue_xadd(&mut self, r: &TradeRow) {
        let t = &r.trade;
        let prefix = &self.prefix;
        let key = self
            .stream_keys
            .entry(r.symbol)
            .or_insert_with(|| format!("{prefix}trades:{}", sym(&r.symbol)).into_bytes());
        let p = &mut self.pipe;
        p.begin(18);
        p.arg(b"XADD");
        p.arg(key);
        p.arg(b"MAXLEN");
        p.arg(b"~");
        p.arg(&self.cap);
        p.arg_fmt(format_args!(
            "{}-{}",
            t.timestamp / 1_000_000,
            t.match_number
        ));
        p.arg(b"match");
        p.arg_fmt(format_args!("{}", t.match_number));
        p.arg(b"px");
        p.arg_fmt(format_args!("{}", Px4(u64::from(t.price))));
        p.arg(b"qty");
        p.arg_fmt(format_args!("{}", t.shares));
        p.arg(b"side");
        p.arg(letter(t.side).as_bytes());
        p.arg(b"kind");
        p.arg(letter(t.kind as u8).as_bytes());
        p.arg(b"printable");
        p.arg(if t.printable { b"1" } else { b"0" });
    }

    /// Queues the HSET of a bar's field (`bar_1s` / `bar_1m`) in its instrument's hash.
    async fn queue_bar(
        &self,
        p: &fred::clients::Pipeline<Client>,
        b: &BarRow,
    ) -> Result<(), Error> {
        let key = format!("{}{}", self.prefix, sym(&b.symbol));
        p.hset::<(), _, _>(key, (bar_name(b), bar_field(b))).await
    }

    /// Writes every remembered hash again (the server restarted empty).
    async fn restore(&self) -> Result<(), String> {
        let fail = |e: Error| format!("Redis restore: {e}");
        let (states, bars): (Vec<StateRow>, Vec<BarRow>) = {
            let m = self.memory.lock().map_err(|_| "Redis memory poisoned")?;
            (
                m.states.values().copied().collect(),
                m.bars.values().copied().collect(),
            )
        };
        let p = self.client.pipeline();
        for s in &states {
            let key = format!("{}{}", self.prefix, sym(&s.symbol));
            let _: () = p.hset(key, state_fields(s)).await.map_err(fail)?;
        }
        for b in &bars {
            self.queue_bar(&p, b).await.map_err(fail)?;
        }
        for r in p.try_all::<Value>().await {
            r.map_err(fail)?;
        }
        Ok(())
    }
}

/// The bulk pipe goes to the same server, user and database as the fred client.
async fn connect_pipe(cfg: &Config) -> Result<Pipe, String> {
    let ServerConfig::Centralized { server } = &cfg.server else {
        return Err("the Redis sink takes one server (redis://host:port), not a cluster".into());
    };
    Pipe::connect(
        &server.host,
        server.port,
        cfg.username.as_deref(),
        cfg.password.as_deref(),
        cfg.database,
    )
    .await
}

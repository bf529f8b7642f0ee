//! The effective configuration of a run: placement of every role on a CPU, instrument
//! assignment, ring and batch sizes; and where each value came from.
//!
//! Layers, lowest first: built-in defaults (fit for a 2-CPU laptop), the TOML file
//! (`affinity.toml`, or `--config PATH`), `TICKCORE_*` environment variables, command-line flags.
//! Every key exists in all four. Unknown keys, out-of-range values and CPUs the machine does not
//! have are startup errors that name the key and its source. Never touched after startup.

use crate::error::{Failure, Result};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Built in.
    Default,
    /// The configuration file.
    File,
    /// A `TICKCORE_*` environment variable.
    Env,
    /// A command-line flag.
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Env => "env",
            Source::Flag => "flag",
        })
    }
}

/// A value and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The value in force.
    pub value: T,
    /// Which layer set it.
    pub source: Source,
}

impl<T> Setting<T> {
    fn default(value: T) -> Self {
        Setting {
            value,
            source: Source::Default,
        }
    }
    fn set(&mut self, value: Option<T>, source: Source) {
        if let Some(v) = value {
            *self = Setting { value: v, source };
        }
    }
}

/// How instruments are spread over shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Assign {
    /// By a hash of the stock locate: stable, needs no knowledge of the feed.
    Hash,
    /// Greedy by message count, from a pass over the input before the replay starts.
    Balanced,
}

impl fmt::Display for Assign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Assign::Hash => "hash",
            Assign::Balanced => "balanced",
        })
    }
}

/// Every tunable, one field per key (the same names as in the file, flags and environment).
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// CPU of the feed ingress thread.
    #[arg(long)]
    pub feed_cpu: Option<usize>,
    /// CPUs of the shard cores, comma-separated; shard i runs on entry i mod the list's length.
    #[arg(long, value_delimiter = ',')]
    pub shard_cpus: Option<Vec<usize>>,
    /// CPUs of the storage adapter (event consumer) cores, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub adapter_cpus: Option<Vec<usize>>,
    /// CPU of the control core.
    #[arg(long)]
    pub control_cpu: Option<usize>,
    /// CPUs of the WebSocket gateway (`run --ws`), comma-separated; it runs on the first.
    #[arg(long, value_delimiter = ',')]
    pub gateway_cpus: Option<Vec<usize>>,
    /// Number of shards [default: one per entry of shard_cpus].
    #[arg(long)]
    pub shards: Option<usize>,
    /// How instruments are assigned to shards.
    #[arg(long, value_enum)]
    pub assign: Option<Assign>,
    /// Bytes of frames per ingress -> shard batch.
    #[arg(long)]
    pub feed_batch_bytes: Option<usize>,
    /// Buffers per ingress -> shard link (bounds the messages in flight).
    #[arg(long)]
    pub feed_buffers: Option<usize>,
    /// Buffers per shard -> consumer link.
    #[arg(long)]
    pub event_buffers: Option<usize>,
    /// glommio io_uring buffer memory per shard, KiB (locked memory).
    #[arg(long)]
    pub io_memory_kib: Option<usize>,
    /// Live orders each shard reserves room for, allocated and touched before the feed starts
    /// (16-byte slots: a ring of recent references, eight slots an order up to 64 MiB, and a
    /// hash, four slots an order; 2^19 orders is 96 MiB a shard). Past it the table grows by
    /// copying, mid-feed.
    #[arg(long)]
    pub shard_orders: Option<usize>,
    /// Books (instruments) each shard touches room for before the feed starts: their ladder
    /// windows, 8 KiB a book (4,096 books is 34 MiB a shard). Books past it fault in as they open.
    #[arg(long)]
    pub shard_books: Option<usize>,
    /// Rows per PostgreSQL batch (flush at this many rows...).
    #[arg(long)]
    pub pg_batch: Option<usize>,
    /// ...or when the oldest row has waited this long, ms (PostgreSQL).
    #[arg(long)]
    pub pg_linger_ms: Option<usize>,
    /// Rows (trades, instrument states) per Redis pipeline.
    #[arg(long)]
    pub redis_batch: Option<usize>,
    /// Flush a Redis pipeline after the oldest row has waited this long, ms.
    #[arg(long)]
    pub redis_linger_ms: Option<usize>,
    /// Rows (1-minute bars, stock summaries) per Neo4j UNWIND batch.
    #[arg(long)]
    pub neo4j_batch: Option<usize>,
    /// Flush a Neo4j batch after the oldest row has waited this long, ms.
    #[arg(long)]
    pub neo4j_linger_ms: Option<usize>,
    /// Rows each sink holds in memory when neither its database nor its spool takes them;
    /// past it a replay waits and a live feed counts rows lost.
    #[arg(long)]
    pub sink_memory_rows: Option<usize>,
    /// Cap on each sink's spool on disk, bytes (0: the disk's own limit).
    #[arg(long)]
    pub spool_max_bytes: Option<usize>,
    /// Feed time between shard checkpoints, seconds (0: only on `PUT /checkpoint`); each
    /// shard writes its own to build_data/checkpoints/.
    #[arg(long)]
    pub checkpoint_every_s: Option<usize>,
    /// How long a checkpoint may hold a shard, us: the summary counts those that took longer.
    #[arg(long)]
    pub checkpoint_stall_us: Option<usize>,
    /// Frames one WebSocket client may have waiting (BBO and depth conflate, so this bounds
    /// its trades and bars); past it the client is closed as too slow (1013).
    #[arg(long)]
    pub ws_queue_frames: Option<usize>,
    /// Symbols one WebSocket connection may name (`*` is always allowed).
    #[arg(long)]
    pub ws_symbols: Option<usize>,
    /// Requests a second one WebSocket connection may send (a burst of twice as many passes).
    #[arg(long)]
    pub ws_requests_per_s: Option<usize>,
    /// 1: the gateway echoes frames instead of serving data (only for the Autobahn
    /// conformance suite, scripts/autobahn).
    #[arg(long, hide = true)]
    pub ws_echo: Option<usize>,
    /// How often the control core merges the cores' histograms and checks the budgets, ms.
    #[arg(long)]
    pub control_interval_ms: Option<usize>,
    /// Consecutive intervals over budget before the degrade ladder goes one level up.
    #[arg(long)]
    pub degrade_enter: Option<usize>,
    /// Consecutive intervals under budget before it comes one level down.
    #[arg(long)]
    pub degrade_leave: Option<usize>,
    /// A latency budget, STAGE.PCT=DURATION (repeatable): e.g. --budget apply.p99=2us
    /// --budget e2e.p999=50us --budget persist.p99=20ms. Stages: ingress hop apply emit e2e
    /// persist snapshot; percentiles p50 p90 p99 p999 p9999 max. In the file: a [budgets] table.
    #[arg(long = "budget", value_name = "STAGE.PCT=DURATION")]
    #[serde(skip)]
    pub budget: Vec<String>,
    /// The file's `[budgets]` table (`"apply.p99" = "2us"`).
    #[arg(skip)]
    pub budgets: Option<std::collections::BTreeMap<String, String>>,
}

/// The configuration in force, every value with its source.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// CPU of the feed ingress.
    pub feed_cpu: Setting<usize>,
    /// CPUs of the shards.
    pub shard_cpus: Setting<Vec<usize>>,
    /// CPUs of the adapters / consumers.
    pub adapter_cpus: Setting<Vec<usize>>,
    /// CPU of control.
    pub control_cpu: Setting<usize>,
    /// CPUs of the WebSocket gateway.
    pub gateway_cpus: Setting<Vec<usize>>,
    /// Number of shards.
    pub shards: Setting<usize>,
    /// Instrument assignment.
    pub assign: Setting<Assign>,
    /// Frame bytes per feed batch.
    pub feed_batch_bytes: Setting<usize>,
    /// Buffers per feed link.
    pub feed_buffers: Setting<usize>,
    /// Buffers per event link.
    pub event_buffers: Setting<usize>,
    /// glommio io memory per shard, KiB.
    pub io_memory_kib: Setting<usize>,
    /// Live orders each shard reserves room for.
    pub shard_orders: Setting<usize>,
    /// Books each shard touches room for.
    pub shard_books: Setting<usize>,
    /// Rows per PostgreSQL batch (flush at this many rows...).
    pub pg_batch: Setting<usize>,
    /// ...or when the oldest row has waited this long, ms (PostgreSQL).
    pub pg_linger_ms: Setting<usize>,
    /// Rows (trades, instrument states) per Redis pipeline.
    pub redis_batch: Setting<usize>,
    /// Flush a Redis pipeline after the oldest row has waited this long, ms.
    pub redis_linger_ms: Setting<usize>,
    /// Rows (1-minute bars, stock summaries) per Neo4j UNWIND batch.
    pub neo4j_batch: Setting<usize>,
    /// Flush a Neo4j batch after the oldest row has waited this long, ms.
    pub neo4j_linger_ms: Setting<usize>,
    /// Rows a sink holds in memory when its database and spool both refuse them.
    pub sink_memory_rows: Setting<usize>,
    /// Cap on each sink's spool on disk, bytes (0: none).
    pub spool_max_bytes: Setting<usize>,
    /// Feed time between checkpoints, s (0: on request only).
    pub checkpoint_every_s: Setting<usize>,
    /// Budget for one checkpoint's hold on a shard, us.
    pub checkpoint_stall_us: Setting<usize>,
    /// Frames a WebSocket client may have waiting.
    pub ws_queue_frames: Setting<usize>,
    /// Symbols a WebSocket connection may name.
    pub ws_symbols: Setting<usize>,
    /// Requests a second a WebSocket connection may send.
    pub ws_requests_per_s: Setting<usize>,
    /// The gateway echoes frames (conformance testing only).
    pub ws_echo: Setting<usize>,
    /// Control interval, ms.
    pub control_interval_ms: Setting<usize>,
    /// Intervals over budget before a level up.
    pub degrade_enter: Setting<usize>,
    /// Intervals under budget before a level down.
    pub degrade_leave: Setting<usize>,
    /// Latency budgets, each with the layer that set it.
    pub budgets: Vec<Setting<crate::telemetry::budget::Budget>>,
}

/// Limits on every numeric key (inclusive).
const SHARDS: (usize, usize) = (1, 256);
const BATCH_BYTES: (usize, usize) = (256, 16 << 20);
const BUFFERS: (usize, usize) = (2, 4096);
const IO_MEMORY_KIB: (usize, usize) = (64, 1 << 20);
const SHARD_ORDERS: (usize, usize) = (1 << 10, 1 << 26);
const SHARD_BOOKS: (usize, usize) = (0, 1 << 16);

impl Config {
    /// Defaults for a machine with `cpus` CPUs: ingress, adapters and control share CPU 0, one
    /// shard on CPU 1 (or CPU 0 on a single-CPU machine).
    pub fn defaults(cpus: usize) -> Self {
        let shard_cpu = usize::from(cpus > 1);
        Config {
            file: None,
            feed_cpu: Setting::default(0),
            shard_cpus: Setting::default(vec![shard_cpu]),
            adapter_cpus: Setting::default(vec![0]),
            control_cpu: Setting::default(0),
            gateway_cpus: Setting::default(vec![0]),
            shards: Setting::default(1),
            assign: Setting::default(Assign::Hash),
            feed_batch_bytes: Setting::default(128 << 10),
            feed_buffers: Setting::default(64),
            event_buffers: Setting::default(64),
            io_memory_kib: Setting::default(1024),
            shard_orders: Setting::default(1 << 19),
            shard_books: Setting::default(4096),
            pg_batch: Setting::default(5000),
            pg_linger_ms: Setting::default(50),
            redis_batch: Setting::default(5000),
            redis_linger_ms: Setting::default(20),
            neo4j_batch: Setting::default(2000),
            neo4j_linger_ms: Setting::default(200),
            sink_memory_rows: Setting::default(1_000_000),
            spool_max_bytes: Setting::default(0),
            checkpoint_every_s: Setting::default(0),
            checkpoint_stall_us: Setting::default(1000),
            ws_queue_frames: Setting::default(16_384),
            ws_symbols: Setting::default(1_000),
            ws_requests_per_s: Setting::default(20),
            ws_echo: Setting::default(0),
            control_interval_ms: Setting::default(100),
            degrade_enter: Setting::default(3),
            degrade_leave: Setting::default(10),
            budgets: crate::telemetry::budget::defaults()
                .into_iter()
                .map(Setting::default)
                .collect(),
        }
    }

    /// Layers the file at `path` (if given; `affinity.toml` in the working directory is read when
    /// it exists and no path is given), the environment and `flags` over the defaults, and
    /// validates the result against a machine with `cpus` CPUs.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
        cpus: usize,
    ) -> Result<Self> {
        let mut c = Config::defaults(cpus);
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from("affinity.toml")).filter(|p| p.exists()),
        };
        if let Some(p) = &file {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Failure::at(p, format!("cannot read the configuration: {e}")))?;
            let o: Overrides = toml::from_str(&text).map_err(|e| {
                let msg = e.message().to_string();
                Failure::at(p, format!("bad configuration: {msg}"))
            })?;
            c.apply(&o, Source::File);
            c.apply_budgets(&o, Source::File)
                .map_err(|e| Failure::at(p, e.to_string()))?;
            c.file = Some(p.clone());
        }
        let from_env = from_env(env)?;
        c.apply(&from_env, Source::Env);
        c.apply_budgets(&from_env, Source::Env)?;
        c.apply(flags, Source::Flag);
        c.apply_budgets(flags, Source::Flag)?;

        if c.shards.source == Source::Default && c.shard_cpus.source != Source::Default {
            c.shards = Setting {
                value: c.shard_cpus.value.len(),
                source: c.shard_cpus.source,
            };
        }
        c.validate(cpus)?;
        Ok(c)
    }

    fn apply_budgets(&mut self, o: &Overrides, s: Source) -> Result<()> {
        use crate::telemetry::budget::parse_budget;
        let mut entries: Vec<String> = o
            .budgets
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        entries.extend(
            o.budget
                .iter()
                .flat_map(|b| b.split(','))
                .map(str::to_string),
        );
        for e in entries.iter().filter(|e| !e.trim().is_empty()) {
            let b = parse_budget(e).map_err(|why| Failure::new(format!("budget ({s}): {why}")))?;
            match self
                .budgets
                .iter_mut()
                .find(|x| x.value.stage == b.stage && x.value.quantile == b.quantile)
            {
                Some(x) => {
                    *x = Setting {
                        value: b,
                        source: s,
                    }
                }
                None => self.budgets.push(Setting {
                    value: b,
                    source: s,
                }),
            }
        }
        Ok(())
    }

    fn apply(&mut self, o: &Overrides, s: Source) {
        self.feed_cpu.set(o.feed_cpu, s);
        self.shard_cpus.set(o.shard_cpus.clone(), s);
        self.adapter_cpus.set(o.adapter_cpus.clone(), s);
        self.control_cpu.set(o.control_cpu, s);
        self.gateway_cpus.set(o.gateway_cpus.clone(), s);
        self.shards.set(o.shards, s);
        self.assign.set(o.assign, s);
        self.feed_batch_bytes.set(o.feed_batch_bytes, s);
        self.feed_buffers.set(o.feed_buffers, s);
        self.event_buffers.set(o.event_buffers, s);
        self.io_memory_kib.set(o.io_memory_kib, s);
        self.shard_orders.set(o.shard_orders, s);
        self.shard_books.set(o.shard_books, s);
        self.pg_batch.set(o.pg_batch, s);
        self.pg_linger_ms.set(o.pg_linger_ms, s);
        self.redis_batch.set(o.redis_batch, s);
        self.redis_linger_ms.set(o.redis_linger_ms, s);
        self.neo4j_batch.set(o.neo4j_batch, s);
        self.neo4j_linger_ms.set(o.neo4j_linger_ms, s);
        self.sink_memory_rows.set(o.sink_memory_rows, s);
        self.spool_max_bytes.set(o.spool_max_bytes, s);
        self.checkpoint_every_s.set(o.checkpoint_every_s, s);
        self.checkpoint_stall_us.set(o.checkpoint_stall_us, s);
        self.ws_queue_frames.set(o.ws_queue_frames, s);
        self.ws_symbols.set(o.ws_symbols, s);
        self.ws_requests_per_s.set(o.ws_requests_per_s, s);
        self.ws_echo.set(o.ws_echo, s);
        self.control_interval_ms.set(o.control_interval_ms, s);
        self.degrade_enter.set(o.degrade_enter, s);
        self.degrade_leave.set(o.degrade_leave, s);
    }

    fn validate(&self, cpus: usize) -> Result<()> {
        let bad = |key: &str, source: Source, why: String| {
            Failure::new(format!("{key} ({source}): {why}"))
        };
        let cpu = |key: &str, s: &Setting<usize>| {
            if s.value >= cpus {
                let last = cpus - 1;
                let why = format!(
                    "CPU {} does not exist: this machine has CPUs 0-{last}",
                    s.value
                );
                return Err(bad(key, s.source, why));
            }
            Ok(())
        };
        let cpu_list = |key: &str, s: &Setting<Vec<usize>>| {
            if s.value.is_empty() {
                return Err(bad(key, s.source, "the list is empty".into()));
            }
            for &v in &s.value {
                cpu(
                    key,
                    &Setting {
                        value: v,
                        source: s.source,
                    },
                )?;
            }
            Ok(())
        };
        let range = |key: &str, s: &Setting<usize>, (lo, hi): (usize, usize)| {
            if !(lo..=hi).contains(&s.value) {
                return Err(bad(
                    key,
                    s.source,
                    format!("{} is outside {lo}..={hi}", s.value),
                ));
            }
            Ok(())
        };
        cpu("feed_cpu", &self.feed_cpu)?;
        cpu("control_cpu", &self.control_cpu)?;
        cpu_list("shard_cpus", &self.shard_cpus)?;
        cpu_list("adapter_cpus", &self.adapter_cpus)?;
        cpu_list("gateway_cpus", &self.gateway_cpus)?;
        range("shards", &self.shards, SHARDS)?;
        range("feed_batch_bytes", &self.feed_batch_bytes, BATCH_BYTES)?;
        range("feed_buffers", &self.feed_buffers, BUFFERS)?;
        range("event_buffers", &self.event_buffers, BUFFERS)?;
        range("io_memory_kib", &self.io_memory_kib, IO_MEMORY_KIB)?;
        range("shard_orders", &self.shard_orders, SHARD_ORDERS)?;
        range("shard_books", &self.shard_books, SHARD_BOOKS)?;
        range("pg_batch", &self.pg_batch, (1, 1_000_000))?;
        range("pg_linger_ms", &self.pg_linger_ms, (0, 60_000))?;
        range("redis_batch", &self.redis_batch, (1, 1_000_000))?;
        range("redis_linger_ms", &self.redis_linger_ms, (0, 60_000))?;
        range("neo4j_batch", &self.neo4j_batch, (1, 1_000_000))?;
        range("neo4j_linger_ms", &self.neo4j_linger_ms, (0, 60_000))?;
        range("sink_memory_rows", &self.sink_memory_rows, (1, 1 << 30))?;
        range("spool_max_bytes", &self.spool_max_bytes, (0, usize::MAX))?;
        range("checkpoint_every_s", &self.checkpoint_every_s, (0, 86_400))?;
        range(
            "checkpoint_stall_us",
            &self.checkpoint_stall_us,
            (1, 10_000_000),
        )?;
        range("ws_queue_frames", &self.ws_queue_frames, (16, 1 << 24))?;
        range("ws_symbols", &self.ws_symbols, (1, 1 << 16))?;
        range("ws_requests_per_s", &self.ws_requests_per_s, (1, 100_000))?;
        range("ws_echo", &self.ws_echo, (0, 1))?;
        range(
            "control_interval_ms",
            &self.control_interval_ms,
            (1, 60_000),
        )?;
        range("degrade_enter", &self.degrade_enter, (1, 10_000))?;
        range("degrade_leave", &self.degrade_leave, (1, 10_000))?;
        Ok(())
    }

    /// CPU of shard `i`.
    pub fn shard_cpu(&self, i: usize) -> usize {
        let cpus = &self.shard_cpus.value;
        cpus[i % cpus.len()]
    }

    /// True when shard `i`'s CPU runs no other role (no other shard, ingress, adapter or
    /// control).
    pub fn cpu_is_dedicated_to_shard(&self, i: usize) -> bool {
        let cpu = self.shard_cpu(i);
        let others = (0..self.shards.value).filter(|&j| j != i && self.shard_cpu(j) == cpu);
        others.count() == 0
            && self.feed_cpu.value != cpu
            && self.control_cpu.value != cpu
            && !self.adapter_cpus.value.contains(&cpu)
    }

    /// `key = value  # source` lines, for `tickcore config`.
    pub fn render(&self) -> String {
        let list = |v: &[usize]| {
            let items: Vec<String> = v.iter().map(|c| c.to_string()).collect();
            format!("[{}]", items.join(", "))
        };
        let rows: Vec<(&str, String, Source)> = vec![
            (
                "feed_cpu",
                self.feed_cpu.value.to_string(),
                self.feed_cpu.source,
            ),
            (
                "shard_cpus",
                list(&self.shard_cpus.value),
                self.shard_cpus.source,
            ),
            (
                "adapter_cpus",
                list(&self.adapter_cpus.value),
                self.adapter_cpus.source,
            ),
            (
                "control_cpu",
                self.control_cpu.value.to_string(),
                self.control_cpu.source,
            ),
            (
                "gateway_cpus",
                list(&self.gateway_cpus.value),
                self.gateway_cpus.source,
            ),
            ("shards", self.shards.value.to_string(), self.shards.source),
            (
                "assign",
                format!("\"{}\"", self.assign.value),
                self.assign.source,
            ),
            (
                "feed_batch_bytes",
                self.feed_batch_bytes.value.to_string(),
                self.feed_batch_bytes.source,
            ),
            (
                "feed_buffers",
                self.feed_buffers.value.to_string(),
                self.feed_buffers.source,
            ),
            (
                "event_buffers",
                self.event_buffers.value.to_string(),
                self.event_buffers.source,
            ),
            (
                "io_memory_kib",
                self.io_memory_kib.value.to_string(),
                self.io_memory_kib.source,
            ),
            (
                "shard_orders",
                self.shard_orders.value.to_string(),
                self.shard_orders.source,
            ),
            (
                "shard_books",
                self.shard_books.value.to_string(),
                self.shard_books.source,
            ),
            (
                "pg_batch",
                self.pg_batch.value.to_string(),
                self.pg_batch.source,
            ),
            (
                "pg_linger_ms",
                self.pg_linger_ms.value.to_string(),
                self.pg_linger_ms.source,
            ),
            (
                "redis_batch",
                self.redis_batch.value.to_string(),
                self.redis_batch.source,
            ),
            (
                "redis_linger_ms",
                self.redis_linger_ms.value.to_string(),
                self.redis_linger_ms.source,
            ),
            (
                "neo4j_batch",
                self.neo4j_batch.value.to_string(),
                self.neo4j_batch.source,
            ),
            (
                "neo4j_linger_ms",
                self.neo4j_linger_ms.value.to_string(),
                self.neo4j_linger_ms.source,
            ),
            (
                "sink_memory_rows",
                self.sink_memory_rows.value.to_string(),
                self.sink_memory_rows.source,
            ),
            (
                "spool_max_bytes",
                self.spool_max_bytes.value.to_string(),
                self.spool_max_bytes.source,
            ),
            (
                "checkpoint_every_s",
                self.checkpoint_every_s.value.to_string(),
                self.checkpoint_every_s.source,
            ),
            (
                "checkpoint_stall_us",
                self.checkpoint_stall_us.value.to_string(),
                self.checkpoint_stall_us.source,
            ),
            (
                "ws_queue_frames",
                self.ws_queue_frames.value.to_string(),
                self.ws_queue_frames.source,
            ),
            (
                "ws_symbols",
                self.ws_symbols.value.to_string(),
                self.ws_symbols.source,
            ),
            (
                "ws_requests_per_s",
                self.ws_requests_per_s.value.to_string(),
                self.ws_requests_per_s.source,
            ),
            (
                "control_interval_ms",
                self.control_interval_ms.value.to_string(),
                self.control_interval_ms.source,
            ),
            (
                "degrade_enter",
                self.degrade_enter.value.to_string(),
                self.degrade_enter.source,
            ),
            (
                "degrade_leave",
                self.degrade_leave.value.to_string(),
                self.degrade_leave.source,
            ),
        ];
        let file = match &self.file {
            Some(p) => format!("# configuration file: {}\n", p.display()),
            None => "# configuration file: none (built-in defaults)\n".into(),
        };
        let mut out = file;
        for (k, v, s) in rows {
            out.push_str(&format!("{:<40} # {s}\n", format!("{k} = {v}")));
        }
        out.push_str("[budgets]\n");
        for b in &self.budgets {
            let limit = crate::telemetry::budget::duration_text(b.value.limit_ns);
            let kv = format!("\"{}\" = \"{limit}\"", b.value.key());
            out.push_str(&format!("{kv:<40} # {}\n", b.source));
        }
        out
    }
}

/// Reads every key's `TICKCORE_<KEY>` variable.
fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Overrides> {
    fn one<T: std::str::FromStr>(
        env: &impl Fn(&str) -> Option<String>,
        key: &str,
    ) -> Result<Option<T>> {
        let var = format!("TICKCORE_{}", key.to_ascii_uppercase());
        match env(&var) {
            None => Ok(None),
            Some(s) => {
                s.trim().parse().map(Some).map_err(|_| {
                    Failure::new(format!("{var}: `{s}` is not a valid value for {key}"))
                })
            }
        }
    }
    fn list(env: &impl Fn(&str) -> Option<String>, key: &str) -> Result<Option<Vec<usize>>> {
        let var = format!("TICKCORE_{}", key.to_ascii_uppercase());
        let Some(s) = env(&var) else { return Ok(None) };
        s.split(',')
            .map(|p| p.trim().parse::<usize>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Some)
            .map_err(|_| Failure::new(format!("{var}: `{s}` is not a comma-separated CPU list")))
    }
    let assign = match env("TICKCORE_ASSIGN") {
        None => None,
        Some(s) => Some(match s.trim() {
            "hash" => Assign::Hash,
            "balanced" => Assign::Balanced,
            _ => {
                let msg = format!("TICKCORE_ASSIGN: `{s}` is not hash or balanced");
                return Err(Failure::new(msg));
            }
        }),
    };
    Ok(Overrides {
        feed_cpu: one(&env, "feed_cpu")?,
        shard_cpus: list(&env, "shard_cpus")?,
        adapter_cpus: list(&env, "adapter_cpus")?,
        control_cpu: one(&env, "control_cpu")?,
        gateway_cpus: list(&env, "gateway_cpus")?,
        shards: one(&env, "shards")?,
        assign,
        feed_batch_bytes: one(&env, "feed_batch_bytes")?,
        feed_buffers: one(&env, "feed_buffers")?,
        event_buffers: one(&env, "event_buffers")?,
        io_memory_kib: one(&env, "io_memory_kib")?,
        shard_orders: one(&env, "shard_orders")?,
        shard_books: one(&env, "shard_books")?,
        pg_batch: one(&env, "pg_batch")?,
        pg_linger_ms: one(&env, "pg_linger_ms")?,
        redis_batch: one(&env, "redis_batch")?,
        redis_linger_ms: one(&env, "redis_linger_ms")?,
        neo4j_batch: one(&env, "neo4j_batch")?,
        neo4j_linger_ms: one(&env, "neo4j_linger_ms")?,
        sink_memory_rows: one(&env, "sink_memory_rows")?,
        spool_max_bytes: one(&env, "spool_max_bytes")?,
        checkpoint_every_s: one(&env, "checkpoint_every_s")?,
        checkpoint_stall_us: one(&env, "checkpoint_stall_us")?,
        ws_queue_frames: one(&env, "ws_queue_frames")?,
        ws_symbols: one(&env, "ws_symbols")?,
        ws_requests_per_s: one(&env, "ws_requests_per_s")?,
        ws_echo: one(&env, "ws_echo")?,
        control_interval_ms: one(&env, "control_interval_ms")?,
        degrade_enter: one(&env, "degrade_enter")?,
        degrade_leave: one(&env, "degrade_leave")?,
        budget: env("TICKCORE_BUDGETS").into_iter().collect(),
        budgets: None,
    })
}

/// CPUs this process may run on.
pub fn machine_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(text: &str) -> tempfile_path::TempToml {
        tempfile_path::TempToml::new(text)
    }

    mod tempfile_path {
        pub struct TempToml(pub std::path::PathBuf);
        impl TempToml {
            pub fn new(text: &str) -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let n = N.fetch_add(1, Ordering::Relaxed);
                let p = std::env::temp_dir()
                    .join(format!("tickcore-config-{}-{n}.toml", std::process::id()));
                std::fs::write(&p, text).unwrap();
                TempToml(p)
            }
        }
        impl Drop for TempToml {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn layers_apply_in_order_and_remember_their_source() {
        let f = write("shards = 2\nfeed_batch_bytes = 4096\n");
        let env = |k: &str| (k == "TICKCORE_FEED_BATCH_BYTES").then(|| "8192".to_string());
        let flags = Overrides {
            feed_buffers: Some(8),
            ..Default::default()
        };
        let c = Config::load(Some(&f.0), env, &flags, 4).unwrap();
        assert_eq!(
            c.shards,
            Setting {
                value: 2,
                source: Source::File
            }
        );
        assert_eq!(
            c.feed_batch_bytes,
            Setting {
                value: 8192,
                source: Source::Env
            }
        );
        assert_eq!(
            c.feed_buffers,
            Setting {
                value: 8,
                source: Source::Flag
            }
        );
        assert_eq!(c.feed_cpu.source, Source::Default);
        assert!(c.render().contains("shards = 2"));
    }

    #[test]
    fn shard_count_follows_the_cpu_list_unless_set() {
        let flags = Overrides {
            shard_cpus: Some(vec![1, 2, 3]),
            ..Default::default()
        };
        let c = Config::load(Some(&write("").0), no_env, &flags, 4).unwrap();
        assert_eq!(c.shards.value, 3);
        assert_eq!(c.shard_cpu(4), 2);
    }

    #[test]
    fn bad_configuration_is_one_clear_error() {
        let e = Config::load(
            Some(&write("shardz = 2\n").0),
            no_env,
            &Overrides::default(),
            2,
        );
        assert!(
            e.unwrap_err().message.contains("shardz"),
            "unknown key named"
        );
        let flags = Overrides {
            feed_cpu: Some(7),
            ..Default::default()
        };
        let e = Config::load(Some(&write("").0), no_env, &flags, 2).unwrap_err();
        assert!(e.message.contains("CPU 7 does not exist"), "{}", e.message);
        let flags = Overrides {
            shards: Some(0),
            ..Default::default()
        };
        let e = Config::load(Some(&write("").0), no_env, &flags, 2).unwrap_err();
        assert!(e.message.starts_with("shards (flag)"), "{}", e.message);
        let env = |k: &str| (k == "TICKCORE_SHARDS").then(|| "many".to_string());
        let e = Config::load(Some(&write("").0), env, &Overrides::default(), 2).unwrap_err();
        assert!(e.message.contains("TICKCORE_SHARDS"), "{}", e.message);
        let missing = std::path::Path::new("/nonexistent/affinity.toml");
        let e = Config::load(Some(missing), no_env, &Overrides::default(), 2).unwrap_err();
        assert!(e.message.contains("cannot read"), "{}", e.message);
    }

    #[test]
    fn the_shipped_affinity_toml_loads() {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../affinity.toml");
        Config::load(Some(Path::new(p)), no_env, &Overrides::default(), 2).unwrap();
    }
}

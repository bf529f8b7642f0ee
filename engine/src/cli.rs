//! Command-line interface: every flag, its help text and its default, in one place.
//!
//! Owns parsing only. Each subcommand's work lives in [`crate::cmd`]; this module turns their
//! failures into one `tickcore: error: ...` line on stderr and an exit code (0 ok, 1 failed,
//! 2 bad usage).

use crate::cmd;
use clap::{Args, Parser, Subcommand, ValueEnum};
use shards::synth::{Profile, Scope};
use std::path::PathBuf;

/// A thread-per-core NASDAQ TotalView-ITCH 5.0 feed handler and full-depth order-book builder.
#[derive(Debug, Parser)]
#[command(
    name = "tickcore",
    version,
    about,
    long_about = "tickcore reads NASDAQ TotalView-ITCH 5.0 (BinaryFILE framing: u16 big-endian \
length + message), keeps a full-depth (L3) order book for every instrument, and reports books, \
trades and anomalies.\n\nStart with `tickcore gen` to write a synthetic session, then `tickcore \
inspect` or `tickcore book` on it. `tickcore book` with no --input builds a generated m7 session \
in memory.",
    after_help = "Exit codes: 0 success, 1 the input or environment failed (the message says \
which file and byte offset), 2 bad command-line usage."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a synthetic ITCH 5.0 session for tests, benchmarks and demos.
    ///
    /// The session has the structure of a NASDAQ day (system events O S Q M E C, a directory and
    /// trading action for every instrument, then order flow with a real day's mix of message
    /// types) and books that never cross. The same scope, message count, seed and profile always
    /// give the same bytes.
    Gen(GenArgs),
    /// Count what an ITCH 5.0 file holds: messages per type, instruments, time span, anomalies.
    Inspect(InspectArgs),
    /// Build every instrument's full-depth book from an ITCH 5.0 file and print the final books.
    ///
    /// Without --input, builds a generated m7 session (2,000,000 messages, seed 1) in memory.
    Book(BookArgs),
    /// Run the thread-per-core engine: ingress, pinned shard cores, event consumer.
    ///
    /// Messages are routed by stock locate to the shard that owns the instrument (market-wide
    /// messages to every shard); each shard builds its books, bars and per-core snapshots and
    /// sends its events to the consumer. Placement and sizes come from affinity.toml (or
    /// --config), TICKCORE_* variables and the flags below; `tickcore config` shows them.
    /// SIGINT/SIGTERM stop the feed, drain every ring and print the summary; a second signal
    /// exits at once. Without --feed, runs a generated m7 session (2,000,000 messages, seed 1).
    Run(Box<RunArgs>),
    /// Print the effective configuration, where each value came from, and the plan (threads,
    /// roles, CPUs, priorities) that `tickcore run` launches with the same flags.
    Config(Box<ConfigArgs>),
    /// Load what the sinks spooled (build_data/spool/<sink>/) into their databases.
    Drain(DrainArgs),
    /// Measure the engine: an open-loop replay of a generated session at a fixed offered rate.
    ///
    /// Message i is due i/RATE seconds after the first whatever the engine does, and latency
    /// is counted from that due time, so queueing shows up instead of hiding (no coordinated
    /// omission). Reports offered and achieved throughput, per-stage p50/p90/p99/p99.9/p99.99/max,
    /// drops, degrade time, sink rows/s, peak memory and placement; writes
    /// build_data/bench/<time>-<scope>.json and a latency chart (.svg) beside it. With
    /// --baseline it exits 1 when a figure regressed more than --tolerance percent.
    Bench(Box<BenchArgs>),
    /// Serve an ITCH session as a MoldUDP64 exchange: one or two lines, a re-request server,
    /// heartbeats, end of session, and faults on the lines for tests and benchmarks.
    ///
    /// Packs as many messages per datagram as fit (--max-payload), sends each packet on every
    /// line (each line with its own drop, reorder and duplicate faults, deterministic for
    /// --seed), heartbeats a line idle for a second, and after the last message repeats end of
    /// session every second for --linger-s while still answering re-requests. Tests and
    /// benchmarks send to loopback addresses only.
    Exchange(Box<ExchangeArgs>),
}

/// `tickcore exchange`.
#[derive(Debug, Args)]
pub struct ExchangeArgs {
    /// ITCH 5.0 BinaryFILE to serve.
    #[arg(long, conflicts_with = "gen", required_unless_present = "gen")]
    pub input: Option<PathBuf>,
    /// Serve a generated session instead: SCOPE[:MESSAGES[:SEED[:PROFILE]]], as `run --feed gen:`.
    #[arg(long, value_name = "SCOPE:N:SEED")]
    pub gen: Option<String>,
    /// Lines to send on: udp://HOST:PORT for A, then optionally ,udp://HOST:PORT for B. A
    /// multicast group takes ?ttl=N&iface=ADDR.
    #[arg(long, value_parser = crate::net::parse_lines)]
    pub lines: std::vec::Vec<crate::net::Endpoint>,
    /// Address the re-request server listens on (UDP).
    #[arg(long, default_value = "127.0.0.1:31000")]
    pub rerequest: std::net::SocketAddr,
    /// Session name: 1 to 10 letters or digits.
    #[arg(long, default_value = "TICKCORE", value_parser = shards::mold::Session::parse)]
    pub session: shards::mold::Session,
    /// Pacing: max, realtime or a factor (by the ITCH timestamps), or messages per second (1000000/s).
    #[arg(long, default_value = "max")]
    pub speed: crate::runtime::ingress::Speed,
    /// Percentage of packets each line drops.
    #[arg(long, default_value = "0", value_parser = crate::exchange::faults::parse_pct)]
    pub drop: f64,
    /// Percentage of packets each line sends after the next one.
    #[arg(long, default_value = "0", value_parser = crate::exchange::faults::parse_pct)]
    pub reorder: f64,
    /// Percentage of packets each line sends twice.
    #[arg(long, default_value = "0", value_parser = crate::exchange::faults::parse_pct)]
    pub dup: f64,
    /// Stop line A after N data packets: A@N.
    #[arg(long, value_name = "A@N", value_parser = crate::exchange::faults::parse_kill)]
    pub kill_line: Option<u64>,
    /// Sequence numbers FROM-TO (inclusive) that no line carries and the re-request server never
    /// answers: a receiver must report exactly this range lost.
    #[arg(long, value_name = "FROM-TO", value_parser = parse_range)]
    pub silence: Option<(u64, u64)>,
    /// Seed of the faults: the same seed drops, reorders and duplicates the same packets.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds to repeat end of session and answer re-requests after the last message.
    #[arg(long, default_value_t = 5.0)]
    pub linger_s: f64,
    /// Largest payload per datagram, in bytes.
    #[arg(long, default_value_t = shards::mold::DEFAULT_MAX_PAYLOAD)]
    pub max_payload: usize,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Parses `FROM-TO`, sequence numbers from 1, FROM <= TO.
pub fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("`{s}`: write FROM-TO, sequence numbers from 1, FROM <= TO");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b) = (
        a.parse::<u64>().map_err(|_| bad())?,
        b.parse::<u64>().map_err(|_| bad())?,
    );
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// `tickcore bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Instrument universe of the generated session.
    #[arg(long, value_enum, default_value = "m7")]
    pub scope: ScopeArg,
    /// Messages (accepts 20M, 500k).
    #[arg(long, default_value = "2M", value_parser = parse_count)]
    pub messages: u64,
    /// Offered load, messages per second (accepts 1M, 500k), or max (as fast as ingress goes).
    #[arg(long, default_value = "1M")]
    pub rate: String,
    /// Seed of the generated session.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Shards [default: from the configuration].
    #[arg(long)]
    pub shards: Option<usize>,
    /// Which sinks run, and their settings.
    #[command(flatten)]
    pub sinks: SinkChoice,
    /// Where to write the JSON result [default: build_data/bench/<time>-<scope>.json].
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// An earlier result to compare with: exit 1 when a figure is worse by more than --tolerance.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Allowed regression against --baseline, percent.
    #[arg(long, default_value_t = 10.0)]
    pub tolerance: f64,
    /// Measure nothing (no clock reads, no histograms): the throughput cost of measuring.
    #[arg(long)]
    pub no_histograms: bool,
    /// Snapshot requests per second the control core sends during the run, round-robin over
    /// the listed symbols, to measure the `snapshot` stage (request -> owning shard -> answer);
    /// 0 sends none. The control core's loop turns every 0.5 ms, so at most 2000/s.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=2000))]
    pub snapshot_rate: u32,
    /// Milliseconds per CPU to measure the machine's own noise before the replay: a thread
    /// spins on each of the engine's ingress and shard CPUs in turn (the others idle), and
    /// every time it loses its CPU (timer ticks, the hypervisor, interrupts) is a gap. The
    /// result reports the gaps and the e2e floor they alone impose (`noise` in the JSON): a
    /// tail budget below that floor cannot be met on this machine. 0 skips it.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub noise_ms: u64,
    /// Run the live path: an exchange simulator in this process serves the session over
    /// MoldUDP64 on loopback at --rate, and the engine receives it (arbitration, gap recovery)
    /// instead of reading memory. e2e then counts from each message's send time.
    #[arg(long)]
    pub live: bool,
    /// Take shard checkpoints every S seconds of feed time (into build_data/bench/checkpoints/)
    /// and report the stall of each slice a shard gives them (p50/p99/max) against checkpoint_stall_us.
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every_s: u64,
    /// WebSocket clients to run in this process against the gateway (`run --ws`), each
    /// subscribed to every symbol's trades and BBO before the feed starts; reports their
    /// receive latency and frames/s, then the same frames from a bare tokio-tungstenite
    /// broadcast server to as many clients. 0: no gateway.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=512))]
    pub ws_clients: u64,
    /// Run the admin endpoint (on a free loopback port) with this many connections held open
    /// without a request, and `/metrics` scraped every 20 ms and timed: what an endpoint
    /// beside the feed costs its tail, and how it answers under load. 0 scrapes with no
    /// idle connections (the baseline to compare 100 against). Absent: no endpoint.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=200))]
    pub admin_idle: Option<u64>,
    /// Measure a restart instead: a `tickcore exchange` process serves the session at --rate
    /// over MoldUDP64 on loopback, a `tickcore run` process follows it with a capture, is
    /// SIGKILLed once it has applied N messages and is started again with --recover; reports
    /// how long the restarted process took to be live again. Twice, back to back: from its
    /// checkpoints (every --checkpoint-every-s of feed time, 600 when 0) and from the capture
    /// alone. Pick a rate the machine follows with a third process beside it (300k on 2 CPUs).
    #[arg(long, value_name = "N", value_parser = parse_count, conflicts_with_all = ["live", "ws_clients", "baseline"])]
    pub recover_at: Option<u64>,
    /// Lines the live exchange sends on (1 or 2).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub live_lines: u8,
    /// Percentage of packets each live line drops (recovered by re-requests).
    #[arg(long, default_value = "0", value_parser = crate::exchange::faults::parse_pct)]
    pub drop: f64,
    /// With --live: also write the capture (the recovery log) to
    /// build_data/bench/live-capture.pcap, to measure what it costs the e2e latency.
    #[arg(long)]
    pub live_capture: bool,
    /// CPU for the live exchange thread [default: one the feed and shards do not use, else the
    /// feed's].
    #[arg(long)]
    pub exchange_cpu: Option<usize>,
    /// Placement file [default: ./affinity.toml when it exists].
    #[arg(long, env = "TICKCORE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `tickcore run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Placement and tuning file [default: ./affinity.toml when it exists].
    #[arg(long, env = "TICKCORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to run: `file:PATH`; `gen:SCOPE[:MESSAGES[:SEED[:PROFILE]]]` (e.g.
    /// gen:v3k:20M:1:deep) for a session generated in memory before the clock starts;
    /// `mold:udp://HOST:PORT[,udp://HOST:PORT]` for MoldUDP64 live on line A (and B), which
    /// ends at the session's end; or `pcap:PATH` for a capture written by --capture.
    #[arg(long, value_parser = parse_feed)]
    pub feed: Option<FeedSpec>,
    /// Pacing: max; by ITCH timestamps, realtime or a factor of real time (10, 0.5); or an
    /// open-loop rate in messages per second (1000000/s), latency counted from each message's
    /// due time.
    #[arg(long, default_value = "max")]
    pub speed: crate::runtime::ingress::Speed,
    /// Write the final books here, in exactly the `tickcore book --json` format.
    #[arg(long)]
    pub dump_books: Option<PathBuf>,
    /// Price levels per side in --dump-books; 0 writes every level.
    #[arg(long, default_value_t = crate::report::DEFAULT_DEPTH)]
    pub depth: usize,
    /// Write every event the consumer receives here, one per line.
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Print this symbol's snapshot, answered by its shard, at the end (repeatable).
    #[arg(long)]
    pub query: Vec<String>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// On corrupt framing, resynchronise and count instead of stopping.
    #[arg(long)]
    pub skip_corrupt: bool,
    /// Start from the newest whole checkpoint in build_data/checkpoints/ (a damaged one is
    /// skipped, and said) and apply only the feed messages after it. With none, start from
    /// the beginning, and say so.
    #[arg(long)]
    pub recover: bool,
    /// Which sinks run, and their settings.
    #[command(flatten)]
    pub sinks: SinkChoice,
    /// Live feed settings.
    #[command(flatten)]
    pub live: LiveArgs,
    /// The admin endpoint and the WebSocket gateway.
    #[command(flatten)]
    pub endpoints: EndpointArgs,
    /// Keep the admin endpoint and the WebSocket gateway up this many seconds after the feed
    /// ends, so that clients can read the final state (was --admin-linger-s).
    #[arg(
        long,
        alias = "admin-linger-s",
        default_value_t = 0.0,
        value_name = "SECONDS"
    )]
    pub linger_s: f64,
    /// Hold the feed until this many WebSocket clients have subscribed to something (with
    /// --ws; for tests and demos that must see every event from the first). Waits at most a
    /// minute, then fails.
    #[arg(long, default_value_t = 0, value_name = "N", requires = "ws")]
    pub ws_wait_clients: u64,
    /// For tests and drills only: inject a delay, apply-delay=DURATION@shardN[:for=DURATION]
    /// (each message shard N applies spins DURATION more, for the first `for` of its run or
    /// all of it). Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub chaos: Vec<crate::runtime::shard::ChaosSpec>,
    /// Placement and sizes (each also a key in affinity.toml and a TICKCORE_* variable).
    #[command(flatten)]
    pub tune: crate::config::Overrides,
}

/// Storage sink settings shared by `run` and `drain`. Passwords come only from the environment
/// (TICKCORE_PG_PASSWORD), so they never show in `ps`.
#[derive(Debug, Args)]
pub struct SinkArgs {
    /// PostgreSQL URL, e.g. postgres://tickcore@db:5432/market (no password here).
    #[arg(long, env = "TICKCORE_PG")]
    pub pg: Option<String>,
    /// Redis URL, e.g. redis://127.0.0.1:6379/0 (password from TICKCORE_REDIS_PASSWORD).
    #[arg(long, env = "TICKCORE_REDIS")]
    pub redis: Option<String>,
    /// Prefix of every Redis key and channel.
    #[arg(long, default_value = "tickcore:")]
    pub redis_prefix: String,
    /// Approximate number of entries kept in each instrument's trade stream.
    #[arg(long, default_value_t = 10_000)]
    pub redis_stream_cap: u64,
    /// Neo4j URL, e.g. bolt://127.0.0.1:7687 (password from TICKCORE_NEO4J_PASSWORD).
    #[arg(long, env = "TICKCORE_NEO4J")]
    pub neo4j: Option<String>,
    /// Neo4j user.
    #[arg(long, default_value = "neo4j")]
    pub neo4j_user: String,
    /// Neo4j database.
    #[arg(long, default_value = "neo4j")]
    pub neo4j_db: String,
    /// Session date the feed belongs to (ITCH carries none) [default: today, UTC].
    #[arg(long)]
    pub session_date: Option<String>,
    /// After the feed ends, how long to keep retrying a sink that is down before leaving the
    /// rest in the spool, seconds.
    #[arg(long, default_value_t = 10)]
    pub sink_finish_s: u64,
}

/// `tickcore drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Tuning file for batch sizes [default: ./affinity.toml when it exists].
    #[arg(long, env = "TICKCORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Sink settings (the spool in build_data/spool/pg/ drains into --pg).
    #[command(flatten)]
    pub sink: SinkArgs,
}

/// `tickcore config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Placement and tuning file [default: ./affinity.toml when it exists].
    #[arg(long, env = "TICKCORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Placement and sizes, as `tickcore run` takes them.
    #[command(flatten)]
    pub tune: crate::config::Overrides,
    /// Which sinks run, and their settings.
    #[command(flatten)]
    pub sinks: SinkChoice,
    /// The endpoints, as `tickcore run` takes them (each adds its thread to the plan).
    #[command(flatten)]
    pub endpoints: EndpointArgs,
}

/// The endpoints a run serves besides the feed path (`run`, and `config`, whose plan they
/// change).
#[derive(Debug, Args)]
pub struct EndpointArgs {
    /// Admin endpoint: HOST:PORT or off [default: 127.0.0.1:9800; when that port is taken the
    /// run goes on without one]. Serves GET /metrics (Prometheus), /status (JSON),
    /// /snapshot/SYMBOL, /budgets and PUT /budgets. A non-loopback address needs
    /// TICKCORE_ADMIN_TOKEN, sent as `Authorization: Bearer <token>` on every request.
    #[arg(long, value_name = "ADDR|off")]
    pub admin: Option<crate::control::admin::AdminAddr>,
    /// WebSocket gateway [default: off; `--ws` alone: 127.0.0.1:9900]. Clients subscribe to
    /// trades, bbo, bars and depth:N per symbol (JSON text frames, see README "WebSocket");
    /// GET / on the same address serves a live book page. A non-loopback address needs
    /// TICKCORE_WS_TOKEN, sent as `?token=` or `Authorization: Bearer <token>` at connect time.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::gateway::DEFAULT_ADDR)]
    pub ws: Option<std::net::SocketAddr>,
}

/// A feed to replay.
#[derive(Debug, Clone)]
pub enum FeedSpec {
    /// An ITCH 5.0 BinaryFILE.
    File(PathBuf),
    /// A session generated in memory.
    Gen(shards::synth::GenConfig),
    /// MoldUDP64 live on line A (and B).
    Mold(Vec<crate::net::Endpoint>),
    /// A capture written by `--capture`.
    Pcap(PathBuf),
}

/// Which storage sinks a run feeds (`run`, `bench`, and `config`, whose plan they change).
#[derive(Debug, Args)]
pub struct SinkChoice {
    /// Storage sinks to feed, comma-separated: none, or any of pg, redis, neo4j. A sink given a
    /// URL (--pg, --redis, --neo4j, or TICKCORE_PG / _REDIS / _NEO4J) runs whether listed here
    /// or not. A listed sink with no URL writes to its spool only (build_data/spool/<sink>/),
    /// for `tickcore drain` to load later.
    #[arg(
        long = "sinks",
        value_name = "SINKS",
        value_delimiter = ',',
        default_value = "none"
    )]
    pub names: Vec<String>,
    /// Sink settings.
    #[command(flatten)]
    pub settings: SinkArgs,
}

/// The live feed's settings (`--feed mold:...`).
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// The re-request server of a live feed (UDP HOST:PORT).
    #[arg(long, default_value = "127.0.0.1:31000")]
    pub rerequest: std::net::SocketAddr,
    /// Lock onto this MoldUDP64 session only [default: the first live one, and a new one
    /// after the old has gone silent].
    #[arg(long, value_parser = shards::mold::Session::parse)]
    pub session: Option<shards::mold::Session>,
    /// Write what the live feed applied, in sequence order, to this pcap file (Wireshark
    /// opens it; --feed pcap:PATH replays it).
    #[arg(long, value_name = "PATH")]
    pub capture: Option<PathBuf>,
    /// With two lines, microseconds a gap waits for the other line before it is asked for
    /// (the A/B skew).
    #[arg(long, default_value_t = 200)]
    pub reorder_us: u64,
    /// Milliseconds a re-request waits for its answer before it is sent again.
    #[arg(long, default_value_t = 20)]
    pub retry_ms: u64,
    /// Re-requests in flight at once for the gap the books wait on (a restart's gap, a long
    /// loss); 1 asks one at a time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub request_window: u16,
    /// Re-requests a gap gets without progress before it is declared lost.
    #[arg(long, default_value_t = 10)]
    pub max_retries: u32,
    /// Milliseconds of silence after which a line is reported silent and a lost tail is probed.
    #[arg(long, default_value_t = 1500)]
    pub liveness_ms: u64,
    /// Packets held beyond a gap, at most (1,500 bytes each).
    #[arg(long, default_value_t = 8192)]
    pub hold_packets: usize,
    /// Receive buffer per line, bytes (SO_RCVBUFFORCE where allowed, else SO_RCVBUF up to
    /// net.core.rmem_max; the summary says what was granted).
    #[arg(long, default_value_t = 32 << 20)]
    pub rcvbuf: usize,
}

/// Parses `file:PATH`, `gen:SCOPE[:MESSAGES[:SEED[:PROFILE]]]`, `mold:LINES` or `pcap:PATH`.
pub fn parse_feed(s: &str) -> Result<FeedSpec, String> {
    if let Some(p) = s.strip_prefix("file:") {
        return Ok(FeedSpec::File(PathBuf::from(p)));
    }
    if let Some(p) = s.strip_prefix("pcap:") {
        return Ok(FeedSpec::Pcap(PathBuf::from(p)));
    }
    if let Some(l) = s.strip_prefix("mold:") {
        return crate::net::parse_lines(l).map(FeedSpec::Mold);
    }
    let Some(g) = s.strip_prefix("gen:") else {
        return Err(format!(
            "`{s}` is not a feed: use file:PATH, gen:SCOPE[:MESSAGES[:SEED[:PROFILE]]], \
             mold:udp://HOST:PORT[,udp://HOST:PORT] or pcap:PATH"
        ));
    };
    let parts: Vec<&str> = g.split(':').collect();
    let scope = ScopeArg::from_str(parts[0], true)
        .map_err(|_| format!("`{}` is not a scope (f2, m7, n100, v3k)", parts[0]))?;
    let messages = parts.get(1).map_or(Ok(2_000_000), |m| parse_count(m))?;
    let seed = parts.get(2).map_or(Ok(1), |x| {
        x.parse::<u64>().map_err(|_| format!("`{x}` is not a seed"))
    })?;
    let profile = match parts.get(3) {
        None => ProfileArg::Realistic,
        Some(p) => ProfileArg::from_str(p, true)
            .map_err(|_| format!("`{p}` is not a profile (realistic, deep, uniform)"))?,
    };
    if parts.len() > 4 {
        return Err(format!("`{s}`: too many fields after gen:"));
    }
    Ok(FeedSpec::Gen(shards::synth::GenConfig {
        scope: scope.into(),
        messages,
        seed,
        profile: profile.into(),
    }))
}

/// Instrument universes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// 2 instruments.
    F2,
    /// The seven large US tech names: AAPL MSFT AMZN GOOGL META NVDA TSLA.
    M7,
    /// 100 instruments.
    N100,
    /// 3,500 instruments.
    V3k,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Scope {
        match s {
            ScopeArg::F2 => Scope::F2,
            ScopeArg::M7 => Scope::M7,
            ScopeArg::N100 => Scope::N100,
            ScopeArg::V3k => Scope::V3k,
        }
    }
}

/// Where adds land.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// Most adds at or near the inside, a thin tail to 200 ticks (like a real day).
    Realistic,
    /// Adds spread evenly over 200 ticks either side of the inside (deep books).
    Deep,
    /// Instruments uniform, adds uniform over 200 ticks either side of a fixed mid, and every
    /// execute, cancel, delete and replace aimed at any live order of the day (harsher than a
    /// real day, where most cancels hit young orders; the peers' benchmark shape).
    Uniform,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Profile {
        match p {
            ProfileArg::Realistic => Profile::Realistic,
            ProfileArg::Deep => Profile::Deep,
            ProfileArg::Uniform => Profile::Uniform,
        }
    }
}

/// `tickcore gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Instrument universe.
    #[arg(long, value_enum, default_value = "m7")]
    pub scope: ScopeArg,
    /// Messages in the file, system events and directory included (accepts 20M, 500k, 1_000_000).
    #[arg(long, default_value = "1M", value_parser = parse_count)]
    pub messages: u64,
    /// Seed; the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where adds land relative to the inside.
    #[arg(long, value_enum, default_value = "realistic")]
    pub profile: ProfileArg,
    /// Output file [default: build_data/sessions/<scope>-<messages>-s<seed>[-deep].itch50].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `tickcore inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// ITCH 5.0 BinaryFILE to read.
    #[arg(long)]
    pub input: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// On corrupt framing, resynchronise and count instead of stopping with an error.
    #[arg(long)]
    pub skip_corrupt: bool,
}

/// `tickcore book`.
#[derive(Debug, Args)]
pub struct BookArgs {
    /// ITCH 5.0 BinaryFILE to read [default: a generated m7 session in memory].
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Show only this instrument (symbol as in the feed, e.g. AAPL).
    #[arg(long)]
    pub symbol: Option<String>,
    /// Price levels per side to show; 0 shows every level.
    #[arg(long, default_value_t = crate::report::DEFAULT_DEPTH)]
    pub depth: usize,
    /// One JSON object per instrument per line, sorted by locate (summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// On corrupt framing, resynchronise and count instead of stopping with an error.
    #[arg(long)]
    pub skip_corrupt: bool,
}

/// Parses a count with an optional k/M/G suffix and `_` separators; with a suffix, a decimal
/// that comes to a whole number (`1.5M`, `2.5k`).
pub fn parse_count(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let (digits, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000),
        Some('g' | 'G') => (&t[..t.len() - 1], 1_000_000_000),
        _ => (&t[..], 1),
    };
    scaled(digits, mult).ok_or_else(|| {
        format!("`{s}` is not a count (examples: 1000000, 1_000_000, 500k, 1.5M, 20M)")
    })
}

/// `whole[.fraction] * mult`, exactly, when that is a whole number that fits.
fn scaled(digits: &str, mult: u64) -> Option<u64> {
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let digit_only = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digit_only(whole) || !digit_only(frac) || frac.len() > 9 {
        return None;
    }
    let scale = 10u64.pow(frac.len() as u32);
    let f = if frac.is_empty() {
        0
    } else {
        frac.parse::<u64>().ok()?
    };
    let part = (f.checked_mul(mult)? % scale == 0).then(|| f * mult / scale)?;
    whole
        .parse::<u64>()
        .ok()?
        .checked_mul(mult)?
        .checked_add(part)
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    // The engine clock counts from its first read: read it now, so its times (a recovery's
    // `live_again_s`) count from the process's start.
    crate::runtime::clock::now_ns();
    let cli = Cli::parse();
    let _events = crate::log::init_events();
    let result = match cli.command {
        Command::Gen(a) => cmd::gen::run(&a),
        Command::Inspect(a) => cmd::inspect::run(&a),
        Command::Book(a) => cmd::book::run(&a),
        Command::Run(a) => cmd::run::run(&a),
        Command::Config(a) => cmd::config::run(&a),
        Command::Drain(a) => cmd::drain::run(&a),
        Command::Bench(a) => cmd::bench::run(&a),
        Command::Exchange(a) => cmd::exchange::run(&a),
    };
    match result {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("tickcore: error: {f}");
            f.code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_with_suffixes() {
        assert_eq!(parse_count("20M"), Ok(20_000_000));
        assert_eq!(parse_count("500k"), Ok(500_000));
        assert_eq!(parse_count("1_000"), Ok(1_000));
        assert!(parse_count("12x").is_err());
        assert_eq!(parse_count("1.5M"), Ok(1_500_000));
        assert_eq!(parse_count("2.5k"), Ok(2_500));
        assert_eq!(parse_count("0.25M"), Ok(250_000));
        assert!(parse_count("1.5").is_err(), "not a whole count");
        assert!(parse_count("1.0005k").is_err(), "not a whole count");
        assert!(parse_count(".5M").is_err());
        assert!(parse_count("1.M").is_ok_and(|n| n == 1_000_000));
        assert!(parse_count("1.-5M").is_err());
        assert!(parse_count("99999999999G").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

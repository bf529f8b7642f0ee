//! `tickcore run`: the thread-per-core engine over a file or a generated session.

use crate::cli::{FeedSpec, RunArgs};
use crate::config::{machine_cpus, Config};
use crate::error::{Failure, Result};
use crate::feed::{open, Feed, FeedBytes};
use crate::fmt::{count, rate};
use crate::live::replay::PcapSource;
use crate::live::source::{LiveConfig, LiveReport, MoldSource};
use crate::log::Log;
use crate::report::json_line;
use crate::runtime::ingress::{BytesSource, Fed, Source};
use crate::runtime::shard::Snapshot;
use crate::runtime::{self, RunOptions, RunReport};
use shards::price::Px4;
use shards::synth::generate;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Runs the command.
pub fn run(a: &RunArgs) -> Result<()> {
    let cpus = machine_cpus();
    let cfg = Config::load(
        a.config.as_deref(),
        |k| std::env::var(k).ok(),
        &a.tune,
        cpus,
    )?;
    let mut log = Log::open("run");
    log.line(&format!(
        "tickcore run: {} shard(s), config {}",
        cfg.shards.value,
        cfg.file
            .as_ref()
            .map_or("built-in defaults".into(), |p| p.display().to_string())
    ));
    let live = matches!(a.feed, Some(FeedSpec::Mold(_) | FeedSpec::Pcap(_)));
    let feed = if live {
        None
    } else {
        Some(load_feed(a.feed.as_ref())?)
    };
    let stop = Arc::new(AtomicBool::new(false));
    install_signals(&stop)?;
    let events = match &a.events {
        None => None,
        Some(p) => {
            let f = std::fs::File::create(p)
                .map_err(|e| Failure::at(p, format!("cannot create the event file: {e}")))?;
            Some(Box::new(std::io::BufWriter::new(f)) as Box<dyn Write + Send>)
        }
    };
    let sinks = sink_plans(&a.sinks.names, &a.sinks.settings, &cfg, live)?;
    let (checkpoints, recover) = checkpointing(a, &cfg, &sinks, &mut log)?;
    // A live feed resumes after the checkpoint: the arbiter starts there, and re-requests
    // what lies between it and the first packet it hears.
    let resume = recover.as_ref().map_or(0, |r| r.0);
    let source = match (&a.feed, &feed) {
        (_, Some(f)) => AnySource::Bytes(BytesSource {
            name: f.name.display().to_string(),
            bytes: &f.bytes,
            skip_corrupt: a.skip_corrupt,
        }),
        (Some(FeedSpec::Mold(lines)), None) => {
            let mut lc = live_config(lines, &a.live);
            lc.arbiter.start = resume + 1;
            // The checkpoint's session, unless the operator named one: its sequence numbers
            // are the ones the checkpoint counts.
            let kept = recover
                .as_ref()
                .and_then(|r| r.1.first())
                .map(|s| s.session);
            if let Some(s) = kept.filter(|s| s != &[b' '; 10] && lc.arbiter.session.is_none()) {
                lc.arbiter.session = Some(shards::mold::Session(s));
            }
            // With no whole checkpoint the capture alone is the log: replayed from its
            // start, rather than every message asked of the exchange again.
            if a.recover {
                lc.resume_capture = resumes_capture(lc.capture.as_deref(), &mut log);
            }
            AnySource::Mold(Box::new(MoldSource::open(lc).map_err(Failure::new)?))
        }
        (Some(FeedSpec::Pcap(p)), None) => {
            AnySource::Pcap(PcapSource::open(p).map_err(Failure::new)?)
        }
        _ => unreachable!("a file or generated feed is loaded above"),
    };
    let name = PathBuf::from(source.describe());
    if let AnySource::Mold(_) = &source {
        // Tests and scripts wait for this line before they start sending.
        eprintln!("tickcore: live feed ready: {}", name.display());
    }
    for c in &a.chaos {
        if c.shard >= cfg.shards.value {
            return Err(Failure::new(format!(
                "--chaos: shard{} does not exist (this run has {} shard(s))",
                c.shard, cfg.shards.value
            )));
        }
    }
    let mut admin = crate::control::admin::Admin::bind(
        a.endpoints
            .admin
            .as_ref()
            .unwrap_or(&crate::control::admin::AdminAddr::Default),
        std::env::var("TICKCORE_ADMIN_TOKEN").ok(),
    )
    .map_err(Failure::new)?;
    if let Some(ad) = admin.as_mut() {
        ad.checkpoint = checkpoints.as_ref().map(|c| Arc::clone(&c.request));
        log.say(&format!("admin endpoint on http://{}", ad.addr));
    }
    let gateway = match a.endpoints.ws {
        Some(addr) => {
            let token = std::env::var("TICKCORE_WS_TOKEN").ok();
            let limits = crate::gateway::client::Limits::of(&cfg);
            let g = crate::gateway::Gateway::bind(addr, token, limits).map_err(Failure::new)?;
            // Tests and scripts wait for this line before they connect.
            log.say(&format!(
                "WebSocket gateway on ws://{0}/ (live page http://{0}/)",
                g.addr
            ));
            Some(g)
        }
        None => None,
    };
    let opts = RunOptions {
        speed: Some(a.speed),
        events,
        queries: a.query.clone(),
        sinks,
        admin,
        gateway,
        load_cpu: None,
        chaos: a.chaos.iter().map(|c| (c.shard, c.chaos)).collect(),
        linger: std::time::Duration::from_secs_f64(a.linger_s.clamp(0.0, 3600.0)),
        ws_wait_clients: a.ws_wait_clients,
        unmeasured: false,
        snapshot_probe: None,
        stop: Some(Arc::clone(&stop)),
        checkpoints,
        recover,
        live: match &source {
            AnySource::Mold(m) => Some(m.gauges()),
            _ => None,
        },
    };
    let r = runtime::run(&source, &cfg, opts, &stop)?;
    if let Some(p) = &a.dump_books {
        dump_books(&r, a.depth, p)?;
    }
    let live_report = match &source {
        AnySource::Mold(m) => m.report(),
        _ => None,
    };
    let mut text = summary(&r, &name);
    let stall_budget_ns = cfg.checkpoint_stall_us.value as u64 * 1000;
    text += &crate::checkpoint::summary_lines(&r.shards, r.ingress.checkpoints, stall_budget_ns);
    if r.ingress.resumed_after > 0 {
        text += &format!(
            "  recovered: the live feed resumed after message {} (its checkpoint)\n",
            count(r.ingress.resumed_after)
        );
    }
    if r.ingress.skipped > 0 {
        text += &format!(
            "  recovered: the first {} messages were in the checkpoint (read, not applied)\n",
            count(r.ingress.skipped)
        );
    }
    if let Some(l) = &live_report {
        text += &live_summary(l);
    }
    for line in text.lines() {
        log.line(line);
    }
    if a.json {
        let mut j = summary_json(&r, &name);
        j["live"] = serde_json::to_value(&live_report).unwrap_or_default();
        let mut c =
            crate::checkpoint::summary_json(&r.shards, r.ingress.checkpoints, stall_budget_ns);
        c["skipped_messages"] = r.ingress.skipped.into();
        c["resumed_after"] = r.ingress.resumed_after.into();
        j["checkpoints"] = c;
        println!("{j}");
    } else {
        print!("{text}");
        for (sym, s) in &r.snapshots {
            println!("{}", snapshot_text(sym, s.as_ref()));
        }
    }
    if let Some(e) = &r.ingress.error {
        return Err(Failure::at(&name, e));
    }
    if let Some(e) = &r.consumer.write_error {
        return Err(Failure::new(format!("writing events: {e}")));
    }
    lost_rows(&r.sinks)
}

/// Checkpoints on (`checkpoint_every_s` > 0 or `--recover`: their directory made), and, with
/// `--recover`, the state to start from.
#[allow(clippy::type_complexity)]
fn checkpointing(
    a: &RunArgs,
    cfg: &Config,
    sinks: &[runtime::SinkPlan],
    log: &mut Log,
) -> Result<(
    Option<runtime::CheckpointOpts>,
    Option<(u64, Vec<shards::checkpoint::ShardState>)>,
)> {
    let dir = crate::paths::checkpoints();
    let on = cfg.checkpoint_every_s.value > 0 || a.recover;
    let opts = if on {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Failure::at(&dir, format!("cannot create the checkpoint directory: {e}"))
        })?;
        let mut o = runtime::CheckpointOpts::new(
            dir.clone(),
            cfg.checkpoint_every_s.value as u64,
            cfg.shards.value,
        );
        o.sinks_durable = sinks
            .iter()
            .map(|p| std::sync::Arc::clone(&p.settings.durable))
            .collect();
        Some(o)
    } else {
        None
    };
    let say = &mut |l: &str| log.say(l);
    if !a.recover {
        let spools: Vec<PathBuf> = sinks.iter().map(|p| p.settings.spool_dir.clone()).collect();
        crate::checkpoint::recovery::start_fresh(&dir, &spools, say)?;
        return Ok((opts, None));
    }
    // A checkpoint past a sink's durable mark would skip rows that sink never kept.
    let bound = sinks
        .iter()
        .map(|p| {
            let m = storage_adapters::adapter::durable_mark(&p.settings.spool_dir).unwrap_or(0);
            (p.settings.name.clone(), m)
        })
        .min_by_key(|(_, m)| *m);
    let recover = crate::checkpoint::recovery::load(&dir, cfg.shards.value, bound, say)?;
    Ok((opts, recover))
}

/// A recovery's `--capture` file holds what the killed run received: it is replayed before
/// the lines are heard, and this run appends to it. Says so, or that there is none.
fn resumes_capture(capture: Option<&std::path::Path>, log: &mut Log) -> bool {
    match capture {
        Some(p) if p.exists() => {
            log.say(&format!(
                "recover: replaying {} first, then appending to it",
                p.display()
            ));
            true
        }
        Some(p) => {
            log.say(&format!(
                "recover: no capture at {}: what the checkpoint lacks is asked of the exchange",
                p.display()
            ));
            false
        }
        None => false,
    }
}

/// Exit status 3 when any sink lost rows: a run that dropped data must not look like one that
/// did not.
fn lost_rows(sinks: &[storage_adapters::adapter::SinkReport]) -> Result<()> {
    let lost: Vec<String> = sinks
        .iter()
        .filter(|k| k.rows_lost > 0)
        .map(|k| format!("{} {}", k.name, count(k.rows_lost)))
        .collect();
    if lost.is_empty() {
        return Ok(());
    }
    Err(Failure {
        message: format!(
            "rows lost by sink: {}. Their database and spool refused them past sink_memory_rows; \
             free the spool's disk (or raise spool_max_bytes) and check the database",
            lost.join(", ")
        ),
        code: 3,
    })
}

/// The storage adapters to run: those `--sinks` names, and every sink given a URL (`--pg`,
/// `--redis`, `--neo4j` or their TICKCORE_* variables). A URL alone used to write nothing,
/// silently; an operator who names a database means to write to it.
pub fn sink_plans(
    names: &[String],
    a: &crate::cli::SinkArgs,
    cfg: &Config,
    live: bool,
) -> Result<Vec<runtime::SinkPlan>> {
    let mut plans = Vec::new();
    for n in &effective_sinks(names, a) {
        match n.as_str() {
            "pg" => plans.push(pg_plan(a, cfg)),
            "redis" => plans.push(redis_plan(a, cfg)),
            "neo4j" => plans.push(neo4j_plan(a, cfg)),
            other => {
                return Err(Failure::new(format!(
                    "--sinks: `{other}` is not a sink (available: pg, redis, neo4j)"
                )))
            }
        }
    }
    // A replay can wait for a sink that can keep nothing more; a live feed cannot.
    for p in &mut plans {
        p.settings.overflow = if live {
            storage_adapters::adapter::Overflow::Lose
        } else {
            storage_adapters::adapter::Overflow::PushBack
        };
    }
    Ok(plans)
}

/// `names` with every sink that has a URL added (once, after those named).
pub fn effective_sinks(names: &[String], a: &crate::cli::SinkArgs) -> Vec<String> {
    let mut all: Vec<String> = names
        .iter()
        .filter(|n| !matches!(n.as_str(), "none" | ""))
        .cloned()
        .collect();
    for (name, url) in [("pg", &a.pg), ("redis", &a.redis), ("neo4j", &a.neo4j)] {
        if url.is_some() && !all.iter().any(|n| n == name) {
            all.push(name.to_string());
        }
    }
    all
}

/// Batching, spool and retry settings shared by every sink: `batch` rows or `linger_ms`, a
/// queue of eight batches before the spool, 64 MiB spool segments, `sink_memory_rows` held
/// when the spool refuses (a replay's overflow: push back).
fn settings(
    name: &str,
    (batch, linger_ms): (usize, usize),
    write_timeout_s: u64,
    url: &Option<String>,
    a: &crate::cli::SinkArgs,
    cfg: &Config,
) -> storage_adapters::adapter::Settings {
    storage_adapters::adapter::Settings {
        name: name.into(),
        spool_dir: crate::paths::spool().join(name),
        batch_rows: batch,
        linger: std::time::Duration::from_millis(linger_ms as u64),
        max_queued_rows: batch * 8,
        write_timeout: std::time::Duration::from_secs(write_timeout_s),
        finish_within: std::time::Duration::from_secs(a.sink_finish_s),
        segment_bytes: 64 << 20,
        spool_only: url.is_none(),
        memory_rows: cfg.sink_memory_rows.value,
        overflow: storage_adapters::adapter::Overflow::PushBack,
        spool_max_bytes: (cfg.spool_max_bytes.value > 0)
            .then_some(cfg.spool_max_bytes.value as u64),
        durable: Default::default(),
    }
}

/// The PostgreSQL adapter's settings.
pub fn pg_plan(a: &crate::cli::SinkArgs, cfg: &Config) -> runtime::SinkPlan {
    let date = a
        .session_date
        .clone()
        .unwrap_or_else(storage_adapters::pg::today_utc);
    let settings = settings(
        "pg",
        (cfg.pg_batch.value, cfg.pg_linger_ms.value),
        5,
        &a.pg,
        a,
        cfg,
    );
    let pg = storage_adapters::pg::PgConnect {
        url: a.pg.clone().unwrap_or_default(),
        password: std::env::var("TICKCORE_PG_PASSWORD").ok(),
        date,
    };
    let wants = storage_adapters::adapter::Wants {
        trades: true,
        bars: true,
        states: false,
    };
    runtime::SinkPlan {
        settings,
        connect: storage_adapters::adapter::AnyConnect::Pg(pg),
        wants,
    }
}

/// The Neo4j adapter's settings.
pub fn neo4j_plan(a: &crate::cli::SinkArgs, cfg: &Config) -> runtime::SinkPlan {
    let settings = settings(
        "neo4j",
        (cfg.neo4j_batch.value, cfg.neo4j_linger_ms.value),
        30,
        &a.neo4j,
        a,
        cfg,
    );
    let connect = storage_adapters::neo4j::Neo4jConnect {
        url: a.neo4j.clone().unwrap_or_default(),
        user: a.neo4j_user.clone(),
        password: std::env::var("TICKCORE_NEO4J_PASSWORD").unwrap_or_default(),
        database: a.neo4j_db.clone(),
    };
    let wants = storage_adapters::adapter::Wants {
        trades: false,
        bars: true,
        states: true,
    };
    runtime::SinkPlan {
        settings,
        connect: storage_adapters::adapter::AnyConnect::Neo4j(connect),
        wants,
    }
}

/// The Redis adapter's settings.
pub fn redis_plan(a: &crate::cli::SinkArgs, cfg: &Config) -> runtime::SinkPlan {
    let settings = settings(
        "redis",
        (cfg.redis_batch.value, cfg.redis_linger_ms.value),
        5,
        &a.redis,
        a,
        cfg,
    );
    let connect = storage_adapters::redis::RedisConnect {
        url: a.redis.clone().unwrap_or_default(),
        password: std::env::var("TICKCORE_REDIS_PASSWORD").ok(),
        prefix: a.redis_prefix.clone(),
        stream_cap: a.redis_stream_cap,
        memory: Default::default(),
    };
    let wants = storage_adapters::adapter::Wants {
        trades: true,
        bars: true,
        states: true,
    };
    runtime::SinkPlan {
        settings,
        connect: storage_adapters::adapter::AnyConnect::Redis(connect),
        wants,
    }
}

/// One line per sink for the summary.
pub fn sink_lines(sinks: &[storage_adapters::adapter::SinkReport]) -> String {
    let mut s = String::new();
    for k in sinks {
        s += &format!(
            "  sink {}: {} rows in, {} written ({} new) in {} batches, commit mean {:.0} us / p99 {} us; \
             spool {} bytes pending (peak {}), {} records drained; {} retries, {:.2} s degraded\n",
            k.name,
            count(k.rows_in),
            count(k.rows_written),
            count(k.rows_new),
            count(k.batches),
            k.commit_mean_us,
            k.commit_p99_us,
            count(k.spool_pending_bytes),
            count(k.spool_peak_bytes),
            count(k.spool_drained),
            count(k.retries),
            k.degraded_s
        );
        if let Some(o) = &k.spool_open {
            if o.pending > 0 {
                s += &format!(
                    "  sink {}: found {} records from an earlier run in the spool\n",
                    k.name,
                    count(o.pending)
                );
            }
            for d in &o.damage {
                s += &format!("  sink {}: spool damage: {d}\n", k.name);
            }
        }
        if k.spool_refusals > 0 || k.pushbacks > 0 {
            s += &format!(
                "  sink {}: the spool refused {} appends; up to {} rows held in memory; the feed \
                 was pushed back {} time(s)\n",
                k.name,
                count(k.spool_refusals),
                count(k.held_peak_rows),
                count(k.pushbacks)
            );
        }
        if k.rows_lost > 0 {
            s += &format!(
                "  sink {}: LOST {} rows (database, spool and memory all refused them)\n",
                k.name,
                count(k.rows_lost)
            );
        }
        if k.restores > 0 {
            s += &format!(
                "  sink {}: the server restarted empty {} time(s); its state was written again\n",
                k.name, k.restores
            );
        }
        if let Some(e) = &k.last_error {
            s += &format!("  sink {}: last error: {e}\n", k.name);
        }
    }
    s
}

/// The sinks as JSON.
pub fn sinks_json(sinks: &[storage_adapters::adapter::SinkReport]) -> serde_json::Value {
    sinks
        .iter()
        .map(|k| {
            serde_json::json!({
                "name": k.name, "rows_in": k.rows_in, "rows_written": k.rows_written,
                "rows_new": k.rows_new, "batches": k.batches, "commit_mean_us": k.commit_mean_us,
                "commit_p99_us": k.commit_p99_us, "spool_pending_bytes": k.spool_pending_bytes,
                "spool_peak_bytes": k.spool_peak_bytes, "spool_drained": k.spool_drained,
                "retries": k.retries, "degraded_s": k.degraded_s, "last_error": k.last_error,
                "restores": k.restores, "rows_lost": k.rows_lost,
                "spool_refusals": k.spool_refusals, "held_peak_rows": k.held_peak_rows,
                "pushbacks": k.pushbacks,
                "spool_damage": k.spool_open.as_ref().map(|o| o.damage.iter().map(|d| d.to_string()).collect::<Vec<_>>()),
            })
        })
        .collect()
}

/// The feed a run or an exchange serves: a file, a generated session, or the demo session.
pub fn load_feed(spec: Option<&FeedSpec>) -> Result<Feed> {
    let gen = |g: &shards::synth::GenConfig| -> Result<Feed> {
        let bytes = generate(g).map_err(|e| Failure::new(e.to_string()))?;
        let name = format!(
            "generated {} {} session ({} messages, seed {})",
            g.scope.name(),
            g.profile.name(),
            count(g.messages),
            g.seed
        );
        Ok(Feed {
            name: PathBuf::from(name),
            bytes: FeedBytes::Owned(bytes),
        })
    };
    match spec {
        Some(FeedSpec::File(p)) => open(p),
        Some(FeedSpec::Gen(g)) => gen(g),
        Some(FeedSpec::Mold(_) | FeedSpec::Pcap(_)) => Err(Failure::new(
            "a live feed or a capture is not a file: this command takes file:PATH or gen:...",
        )),
        None => gen(&crate::cmd::book::DEMO),
    }
}

/// SIGINT/SIGTERM set `stop`; a second one exits at once (130).
pub fn install_signals(stop: &Arc<AtomicBool>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM] {
        // The first signal sets the flag (a clean stop); a second, with the flag already set,
        // exits at once. Registration order matters: the conditional exit checks the flag
        // before the plain handler sets it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(stop))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(stop)))
            .map_err(|e| Failure::new(format!("cannot install signal handlers: {e}")))?;
    }
    Ok(())
}

/// Writes every book of every shard, sorted by locate, as `tickcore book --json` does.
fn dump_books(r: &RunReport, depth: usize, path: &std::path::Path) -> Result<()> {
    let mut all: Vec<(u16, usize, &shards::book::Book)> = r
        .books
        .iter()
        .enumerate()
        .flat_map(|(i, b)| b.books().iter().map(move |book| (book.locate, i, book)))
        .collect();
    all.sort_by_key(|&(locate, shard, _)| (locate, shard));
    let mut out = String::new();
    for (_, shard, book) in all {
        json_line(&r.books[shard], book, depth, &mut out);
    }
    std::fs::write(path, out).map_err(|e| Failure::at(path, format!("cannot write: {e}")))
}

fn summary(r: &RunReport, feed: &std::path::Path) -> String {
    let secs = r.engine_wall.as_secs_f64();
    let mut s = format!(
        "ran {} messages of {} through {} shard(s) in {:.3} s ({:.3} s of it starting up): {} end to end over the feed{}\n",
        count(r.ingress.messages),
        feed.display(),
        r.shards.len(),
        secs,
        r.startup_s(),
        rate(r.feed_rate()),
        if r.ingress.stopped {
            " (stopped early by a signal)"
        } else {
            ""
        }
    );
    let place: Vec<String> = r
        .placement
        .iter()
        .map(|(n, c)| format!("{n}@cpu{c}"))
        .collect();
    s += &format!("  placement: {}\n", place.join(" "));
    s += &format!(
        "  ingress: {} messages, {} market-wide (sent to every shard)\n",
        count(r.ingress.messages),
        count(r.ingress.broadcast)
    );
    for sh in &r.shards {
        s += &format!(
            "  shard{}: {} messages in {} batches; {} trades, {} BBO changes, {} bars, {} breaks\n",
            sh.id,
            count(sh.messages),
            count(sh.batches),
            count(sh.trades),
            count(sh.bbos),
            count(sh.bars),
            count(sh.breaks)
        );
    }
    if let Some(g) = &r.gateway {
        s += &format!(
            "  gateway ws://{}/: {} connections ({} refused, {} cut off as too slow); {} frames, {} updates conflated, {} error frames\n",
            g.addr,
            count(g.accepted),
            count(g.refused),
            count(g.slow_closed),
            count(g.frames),
            count(g.conflated),
            count(g.errors)
        );
        s += &gateway_behind_line(&r.consumer).unwrap_or_default();
    }
    let c = &r.consumer;
    s += &format!(
        "  consumer: {} batches; {} trades, {} BBO changes, {} bars, {} breaks\n",
        count(c.batches),
        count(c.trades),
        count(c.bbos),
        count(c.bars),
        count(c.breaks)
    );
    let waits: Vec<String> = r
        .links
        .iter()
        .map(|l| format!("{} {}/{}", l.name, count(l.full_waits), count(l.sent)))
        .collect();
    s += &format!("  ring waits (full/sent): {}\n", waits.join(", "));
    s += &sink_lines(&r.sinks);
    s += &control_lines(&r.control);
    s
}

/// Latency per stage and what the degrade ladder did, for the summary.
pub fn control_lines(c: &crate::control::ControlCore) -> String {
    use crate::telemetry::budget::{pretty, LEVELS};
    let all = c.all_stages();
    let mut s = String::from("  latency p50 / p99 / p99.9 / max:");
    let mut any = false;
    for st in crate::telemetry::STAGES {
        let h = all.get(st);
        if h.is_empty() {
            continue;
        }
        any = true;
        let q = |x: f64| pretty(h.value_at_quantile(x));
        s += &format!(
            " {} {} / {} / {} / {};",
            st.name(),
            q(0.5),
            q(0.99),
            q(0.999),
            pretty(h.max())
        );
    }
    if !any {
        s += " nothing measured";
    }
    s.push('\n');
    let st = &c.state;
    let time: Vec<String> = st
        .time_at_level
        .iter()
        .enumerate()
        .map(|(l, t)| format!("level {l} {t:.2} s"))
        .collect();
    let budgets: Vec<String> = st.budgets.iter().map(|b| b.to_string()).collect();
    s += &format!(
        "  budgets {}: {} level change(s), {}; now level {} ({})\n",
        budgets.join(" "),
        st.changes.len(),
        time.join(", "),
        st.ladder.level,
        LEVELS[st.ladder.level]
    );
    for ch in &st.changes {
        s += &format!(
            "  degrade {} -> {} at {:.2} s: {}\n",
            ch.from, ch.to, ch.at_s, ch.reason
        );
    }
    s
}

/// When the gateway fell behind the feed: how often its batches gathered (every buffer in
/// flight) and how many turns the feed's thread gave it; `None` when it kept up.
fn gateway_behind_line(c: &crate::runtime::consumer::ConsumerReport) -> Option<String> {
    (c.gateway_gathered > 0 || c.gateway_turns > 0).then(|| {
        format!(
            "  gateway fell behind: {} batches gathered while all its buffers were in flight, \
             {} turns given to it from the feed's spare CPU\n",
            count(c.gateway_gathered),
            count(c.gateway_turns)
        )
    })
}

fn summary_json(r: &RunReport, feed: &std::path::Path) -> serde_json::Value {
    let secs = r.engine_wall.as_secs_f64();
    serde_json::json!({
        "feed": feed.display().to_string(),
        "messages": r.ingress.messages,
        "broadcast": r.ingress.broadcast,
        "handed_to_shards": r.ingress.per_shard,
        "stopped": r.ingress.stopped,
        "wall_s": secs,
        "wall_with_sinks_s": r.wall.as_secs_f64(),
        "startup_s": r.startup_s(),
        "msgs_per_s": r.feed_rate(),
        "plan": r.plan.lines(),
        "placement": r.placement.iter().map(|(n, c)| (n.clone(), serde_json::json!(c))).collect::<serde_json::Map<_, _>>(),
        "shards": r.shards.iter().map(|s| serde_json::json!({
            "id": s.id, "messages": s.messages, "batches": s.batches, "trades": s.trades,
            "bbos": s.bbos, "bbos_coalesced": s.bbos_coalesced, "bars": s.bars,
            "breaks": s.breaks, "bad_batches": s.bad_batches,
        })).collect::<Vec<_>>(),
        "stages": crate::control::stages_json(&r.control.all_stages()),
        "cores": r.control.state.cores.iter().map(|c| serde_json::json!({
            "name": c.name, "cpu": c.cpu, "items": c.items, "events": c.events,
            "stages": crate::control::stages_json(&c.stages),
        })).collect::<Vec<_>>(),
        "degrade": crate::control::admin::degrade_json(&r.control),
        "snapshot_latency": crate::control::stage_json(&r.control.state.snapshot),
        "consumer": {
            "batches": r.consumer.batches, "trades": r.consumer.trades, "bbos": r.consumer.bbos,
            "bars": r.consumer.bars, "breaks": r.consumer.breaks, "bad_batches": r.consumer.bad_batches,
            "gateway_gathered": r.consumer.gateway_gathered,
            "gateway_turns": r.consumer.gateway_turns,
        },
        "links": r.links.iter().map(|l| serde_json::json!({
            "name": l.name, "sent": l.sent, "full_waits": l.full_waits,
        })).collect::<Vec<_>>(),
        "sinks": sinks_json(&r.sinks),
        "gateway": serde_json::to_value(&r.gateway).unwrap_or_default(),
        "snapshots": r.snapshots.iter().map(|(sym, s)| (sym.clone(), s.as_ref().map_or(serde_json::Value::Null, snapshot_json))).collect::<serde_json::Map<_, _>>(),
    })
}

fn px(p: u32) -> String {
    Px4(p as u64).to_string()
}

pub fn snapshot_json(s: &Snapshot) -> serde_json::Value {
    let levels = |ls: &[shards::book::LevelInfo]| {
        ls.iter()
            .filter(|l| l.orders > 0)
            .map(|l| serde_json::json!({"px": px(l.price), "qty": l.shares, "orders": l.orders}))
            .collect::<Vec<_>>()
    };
    let bar = |b: &Option<shards::bars::Bar>| match b {
        None => serde_json::Value::Null,
        Some(b) => serde_json::json!({
            "start_ns": b.start, "open": px(b.open), "high": px(b.high), "low": px(b.low),
            "close": px(b.close), "volume": b.volume, "vwap": px(b.vwap()), "trades": b.trades,
        }),
    };
    serde_json::json!({
        "symbol": String::from_utf8_lossy(&s.symbol).trim_end(),
        "locate": s.locate,
        "bid": {"px": px(s.bid.price), "qty": s.bid.shares, "orders": s.bid.orders},
        "ask": {"px": px(s.ask.price), "qty": s.ask.shares, "orders": s.ask.orders},
        "last": {"px": px(s.last.0), "qty": s.last.1, "ts_ns": s.last.2},
        "trades": s.trades, "volume": s.volume,
        "vwap": s.vwap.map(|v| Px4(v).to_string()),
        "bids": levels(&s.bids), "asks": levels(&s.asks),
        "bar_1s": bar(&s.bar_1s), "bar_1m": bar(&s.bar_1m),
    })
}

fn snapshot_text(sym: &str, s: Option<&Snapshot>) -> String {
    match s {
        None => format!("{sym}: not in the feed's stock directory"),
        Some(s) => format!("{sym}: {}", snapshot_json(s)),
    }
}

/// The feed a run reads: bytes (a file or a generated session), a live MoldUDP64 feed, or a
/// capture of one.
pub enum AnySource<'a> {
    /// A file or a generated session.
    Bytes(BytesSource<'a>),
    /// MoldUDP64 live.
    Mold(Box<MoldSource>),
    /// A capture.
    Pcap(PcapSource),
}

impl Source for AnySource<'_> {
    fn describe(&self) -> String {
        match self {
            AnySource::Bytes(s) => s.describe(),
            AnySource::Mold(s) => s.describe(),
            AnySource::Pcap(s) => s.describe(),
        }
    }

    fn pump(
        &self,
        stop: &std::sync::atomic::AtomicBool,
        each: impl FnMut(Fed<'_>),
    ) -> std::result::Result<shards::itch::WalkStats, shards::itch::FrameError> {
        match self {
            AnySource::Bytes(s) => s.pump(stop, each),
            AnySource::Mold(s) => s.pump(stop, each),
            AnySource::Pcap(s) => s.pump(stop, each),
        }
    }

    fn whole(&self) -> Option<&[u8]> {
        match self {
            AnySource::Bytes(s) => s.whole(),
            _ => None,
        }
    }

    fn resumes_after(&self) -> u64 {
        match self {
            AnySource::Mold(s) => s.resumes_after(),
            _ => 0,
        }
    }

    fn session(&self) -> Option<[u8; 10]> {
        match self {
            AnySource::Mold(s) => s.session(),
            _ => None,
        }
    }
}

/// The live feed's configuration from the command line.
pub fn live_config(lines: &[crate::net::Endpoint], a: &crate::cli::LiveArgs) -> LiveConfig {
    LiveConfig {
        lines: lines.to_vec(),
        rerequest: a.rerequest,
        arbiter: crate::live::arbiter::ArbiterConfig {
            reorder_ns: a.reorder_us.saturating_mul(1_000),
            retry_ns: a.retry_ms.max(1).saturating_mul(1_000_000),
            max_retries: a.max_retries,
            hold_packets: a.hold_packets.clamp(1, 1 << 20),
            request_window: a.request_window as usize,
            liveness_ns: a.liveness_ms.max(1).saturating_mul(1_000_000),
            session: a.session,
            ..Default::default()
        },
        rcvbuf: a.rcvbuf,
        capture: a.capture.clone(),
        resume_capture: false,
        paced: None,
    }
}

/// The live feed's lines of the summary.
pub fn live_summary(l: &LiveReport) -> String {
    let mut s = format!(
        "  live: session {}, {} messages applied, {}\n",
        l.session.as_deref().unwrap_or("(none seen)"),
        count(l.applied),
        if l.ended {
            "ended at end of session"
        } else {
            "did not reach end of session"
        }
    );
    if l.from_capture > 0 {
        s += &format!(
            "  live: {} of them from the killed run's capture, before the lines were heard\n",
            count(l.from_capture)
        );
    }
    if let (Some(t), Some(seq)) = (l.live_again_s, l.live_again_seq) {
        s += &format!(
            "  live: live {t:.2} s after start (every message the lines had sent was in, \
             through {})\n",
            count(seq)
        );
    }
    let first: u64 = l
        .lines
        .iter()
        .take(l.lines.len() - 1)
        .map(|(_, x)| x.first)
        .sum();
    for (name, x) in &l.lines {
        s += &format!(
            "    line {name}: {} packets, {} messages; first {} ({:.1}%), late {}, duplicate {}; {} heartbeats; {} malformed, {} other session; {} silences\n",
            count(x.packets),
            count(x.messages),
            count(x.first),
            100.0 * x.first as f64 / first.max(1) as f64,
            count(x.late),
            count(x.duplicate),
            count(x.heartbeats),
            count(x.malformed),
            count(x.other_session),
            x.silences
        );
    }
    let v = &l.recovery;
    s += &format!(
        "    recovery: {} gaps, {} re-requests, {} filled, {} lost ({} messages), held peak {} packets, hold full {}{}\n",
        count(v.gaps),
        count(v.rerequests),
        count(v.filled),
        count(v.lost_gaps),
        count(v.lost_messages),
        v.held_peak,
        count(v.hold_full),
        l.fill_us.map_or(String::new(), |f| format!(
            "; gap filled in p50 {:.0} us, p99 {:.0} us, max {:.0} us",
            f[0], f[1], f[2]
        ))
    );
    for (from, to) in &v.lost_ranges {
        s += &format!("    LOST: messages {from} to {} ({})\n", to - 1, to - from);
    }
    let bufs: Vec<String> = l
        .rcvbuf
        .iter()
        .map(|b| {
            format!(
                "{} KiB{}",
                b.granted >> 10,
                if b.forced { " (forced)" } else { "" }
            )
        })
        .collect();
    s += &format!(
        "    sockets: receive buffers {}; kernel drops (UdpRcvbufErrors, host-wide) {}\n",
        bufs.join(", "),
        l.kernel_drops.map_or("unknown".into(), count)
    );
    let m = serde_json::to_value(l.malformed).unwrap_or_default();
    let bad: Vec<String> = m
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if !bad.is_empty() {
        s += &format!("    malformed: {}\n", bad.join(", "));
    }
    if let Some(c) = l.captured {
        s += &format!("    capture: {} datagrams written\n", count(c));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::consumer::ConsumerReport;

    #[rstest::rstest]
    #[case::kept_up(0, 0, None)]
    #[case::gathered(3, 0, Some("3 batches gathered"))]
    #[case::given_turns(0, 1_500, Some("1,500 turns given"))]
    fn the_summary_says_when_the_gateway_fell_behind(
        #[case] gathered: u64,
        #[case] turns: u64,
        #[case] says: Option<&str>,
    ) {
        let c = ConsumerReport {
            gateway_gathered: gathered,
            gateway_turns: turns,
            ..Default::default()
        };
        let line = gateway_behind_line(&c);
        match says {
            None => assert_eq!(line, None),
            Some(part) => assert!(
                line.as_deref().is_some_and(|l| l.contains(part)),
                "{line:?}"
            ),
        }
    }
}

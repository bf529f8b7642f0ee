//! `tickcore bench`: an open-loop measurement of the whole engine, its JSON result, its chart,
//! and the regression gate against a baseline.
//!
//! The JSON shape is an interface (scripts/bench, CI gates and people's notebooks read it):
//! fields are only ever added. See the README's "`tickcore bench` JSON" section.

use crate::cli::BenchArgs;
use crate::config::{machine_cpus, Config, Overrides};
use crate::control::{stage_json_of, QUANTILES};
use crate::error::{Failure, Result};
use crate::fmt::{count, rate};
use crate::runtime::ingress::{BytesSource, Speed};
use crate::runtime::{self, RunOptions, RunReport};
use crate::telemetry::budget::pretty;
use crate::telemetry::STAGES;
use shards::synth::{generate, GenConfig, Profile, Scope};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Version of the JSON shape (bumped only if a field ever changes meaning).
pub const SHAPE: u32 = 1;

/// Runs the command.
pub fn run(a: &BenchArgs) -> Result<()> {
    if let Some(at) = a.recover_at {
        return super::bench_recover::run(a, at);
    }
    let offered = parse_rate(&a.rate).map_err(Failure::new)?;
    let flags = Overrides {
        shards: a.shards,
        ..Default::default()
    };
    let cfg = Config::load(
        a.config.as_deref(),
        |k| std::env::var(k).ok(),
        &flags,
        machine_cpus(),
    )?;
    let scope: Scope = a.scope.into();
    let prober = super::bench_probes::Prober::new(&cfg, a.noise_ms)?;
    let before = prober.as_ref().map(|p| p.take());
    eprintln!(
        "tickcore bench: generating {} {} messages (seed {})...",
        scope.name(),
        count(a.messages),
        a.seed
    );
    let bytes = generate(&GenConfig {
        scope,
        messages: a.messages,
        seed: a.seed,
        profile: Profile::Realistic,
    })
    .map_err(|e| Failure::new(e.to_string()))?;
    eprintln!(
        "tickcore bench: replaying at {} on {} shard(s)...",
        offered.map_or("max".into(), rate),
        cfg.shards.value
    );
    let live = a
        .live
        .then(|| super::bench_live::LiveBench::start(a, offered, bytes.clone(), &cfg));
    let live = live.transpose()?;
    let source = match &live {
        Some(l) => super::run::AnySource::Mold(Box::new(l.source()?)),
        None => super::run::AnySource::Bytes(BytesSource {
            name: format!("generated {} session", scope.name()),
            bytes: &bytes,
            skip_corrupt: false,
        }),
    };
    let ws = ws_gateway(a, &cfg)?;
    // Where the run's threads go, as the runtime will plan them (the clients' CPU changes only
    // how threads wait, never where they run).
    let planned = crate::runtime::plan::Plan::new(
        &cfg,
        &super::run::effective_sinks(&a.sinks.names, &a.sinks.settings),
        crate::runtime::plan::Endpoints {
            admin: a.admin_idle.is_some(),
            gateway: ws.is_some(),
            load_cpu: None,
        },
    );
    let clients_cpu = super::bench_ws::clients_cpu(&planned, machine_cpus());
    let clients = match &ws {
        Some(g) => Some(super::bench_ws::Clients::start(
            g.addr,
            a.ws_clients as usize,
            clients_cpu,
        )?),
        None => None,
    };
    let (admin, admin_load) = admin_load(a, &cfg)?;
    let opts = RunOptions {
        admin,
        speed: Some(offered.map_or(Speed::Max, Speed::Rate)),
        ws_wait_clients: a.ws_clients,
        load_cpu: clients.is_some().then_some(clients_cpu),
        gateway: ws,
        sinks: super::run::sink_plans(&a.sinks.names, &a.sinks.settings, &cfg, false)?,
        unmeasured: a.no_histograms,
        snapshot_probe: (a.snapshot_rate > 0)
            .then(|| std::time::Duration::from_secs_f64(1.0 / f64::from(a.snapshot_rate))),
        checkpoints: checkpoints(a.checkpoint_every_s, cfg.shards.value)?,
        ..Default::default()
    };
    let stop = AtomicBool::new(false);
    let r = runtime::run(&source, &cfg, opts, &stop)?;
    let mut result = result_json(a, scope, offered, &r);
    let live_lines = match (live, &source) {
        (Some(l), super::run::AnySource::Mold(m)) => {
            let (rep, ex) = l.finish(m)?;
            let text = rep
                .as_ref()
                .map(super::run::live_summary)
                .unwrap_or_default();
            result["live"] = serde_json::to_value(&rep).unwrap_or_default();
            result["exchange"] = serde_json::to_value(&ex).unwrap_or_default();
            text
        }
        _ => String::new(),
    };
    let stall_budget_ns = cfg.checkpoint_stall_us.value as u64 * 1000;
    if r.ingress.checkpoints > 0 {
        result["checkpoints"] =
            crate::checkpoint::summary_json(&r.shards, r.ingress.checkpoints, stall_budget_ns);
    }
    let ckpt_lines =
        crate::checkpoint::summary_lines(&r.shards, r.ingress.checkpoints, stall_budget_ns);
    let ws_lines = match clients {
        Some(c) => {
            let (j, text) = ws_result(
                c.finish()?,
                r.gateway.as_ref(),
                a.ws_clients as usize,
                (cfg.gateway_cpus.value[0], clients_cpu),
                &GatewayLoad::of(&r),
            )?;
            result["ws"] = j;
            text
        }
        None => String::new(),
    };
    let admin_lines = match admin_load {
        Some(l) => {
            let rep = l.finish()?;
            result["admin"] = rep.json();
            rep.line()
        }
        None => String::new(),
    };
    // The floor brackets the replay: probed before and after it, the gaps of both together.
    match (&prober, before) {
        (Some(p), Some(b)) => p.record(b, p.take(), &mut result),
        _ => result["noise"] = serde_json::Value::Null,
    }
    result["vs_floor"] = vs_floor(&result, "noise");
    // The same floor from the run itself: what the data path's own threads lost meanwhile.
    let shard_off: Vec<_> = r.shards.iter().map(|s| s.off_cpu.as_ref()).collect();
    result["run_floor"] =
        crate::telemetry::offcpu::run_floor_json(r.ingress.off_cpu.as_ref(), &shard_off);
    result["vs_run_floor"] = vs_floor(&result, "run_floor");
    let path = a.json.clone().unwrap_or_else(|| default_path(scope));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::at(dir, format!("cannot create the directory: {e}")))?;
    }
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&result).unwrap_or_default(),
    )
    .map_err(|e| Failure::at(&path, format!("cannot write the result: {e}")))?;
    let svg = path.with_extension("svg");
    std::fs::write(&svg, chart(&result, &r))
        .map_err(|e| Failure::at(&svg, format!("cannot write the chart: {e}")))?;
    print!(
        "{}{ckpt_lines}{live_lines}{ws_lines}{admin_lines}",
        table(&result)
    );
    println!("  wrote {} and {}", path.display(), svg.display());
    match &a.baseline {
        None => Ok(()),
        Some(b) => gate(&result, b, a.tolerance),
    }
}

/// The admin endpoint for `--admin-idle`, bound on a free loopback port, and its load started
/// (its connections wait in the listener's backlog until the endpoint serves).
fn admin_load(
    a: &BenchArgs,
    cfg: &Config,
) -> Result<(
    Option<crate::control::admin::Admin>,
    Option<super::bench_admin::AdminLoad>,
)> {
    let Some(idle) = a.admin_idle else {
        return Ok((None, None));
    };
    let addr =
        crate::control::admin::AdminAddr::Given("127.0.0.1:0".parse().expect("a valid address"));
    let admin = crate::control::admin::Admin::bind(&addr, None)
        .map_err(Failure::new)?
        .ok_or_else(|| Failure::new("the admin endpoint did not bind (a bug)"))?;
    let load = super::bench_admin::AdminLoad::start(admin.addr, idle as usize, cfg.feed_cpu.value)?;
    Ok((Some(admin), Some(load)))
}

/// The gateway for `--ws-clients`, bound on a free loopback port, stamping frames.
fn ws_gateway(a: &BenchArgs, cfg: &Config) -> Result<Option<crate::gateway::Gateway>> {
    if a.ws_clients == 0 {
        return Ok(None);
    }
    let limits = crate::gateway::client::Limits {
        stamp: true,
        ..crate::gateway::client::Limits::of(cfg)
    };
    let addr = "127.0.0.1:0".parse().expect("a valid address");
    crate::gateway::Gateway::bind(addr, None, limits)
        .map(Some)
        .map_err(Failure::new)
}

/// What the gateway had to work with over the feed: for the floor of its deliver stage.
struct GatewayLoad {
    /// The feed's wall time, s.
    feed_s: f64,
    /// The share of its CPU the data path left it: all of it, less the ingress thread's CPU
    /// time when the plan puts the two on one CPU (as it does on 2 CPUs).
    share: f64,
    /// The deliver stage's p99, ns.
    deliver_p99_ns: u64,
    /// Turns the consumer's thread yielded to the gateway when it fell behind on their CPU.
    turns: u64,
}

impl GatewayLoad {
    fn of(r: &runtime::RunReport) -> GatewayLoad {
        use runtime::plan::Role;
        let feed_s = r.feed_s();
        let ingress = r.ingress.cpu_ns as f64 / 1e9 / feed_s;
        let beside_ingress =
            r.plan.thread_of(&Role::Gateway).cpu == r.plan.thread_of(&Role::Ingress).cpu;
        let all = r.control.all_stages();
        GatewayLoad {
            feed_s,
            share: if beside_ingress {
                (1.0 - ingress).clamp(0.0, 1.0)
            } else {
                1.0
            },
            deliver_p99_ns: all
                .get(crate::telemetry::Stage::Deliver)
                .value_at_quantile(0.99),
            turns: r.consumer.gateway_turns,
        }
    }
}

/// The clients' figures and the baseline's (its server on the gateway's CPU and its clients
/// on ours: `cpus`), as JSON and as table lines, with the floor `load` puts under deliver.
fn ws_result(
    c: super::bench_ws::ClientsReport,
    gateway: Option<&crate::gateway::GatewayReport>,
    n: usize,
    cpus: (usize, usize),
    load: &GatewayLoad,
) -> Result<(serde_json::Value, String)> {
    use crate::telemetry::median;
    let base = super::bench_ws::baseline(c.kept, n, cpus)?;
    let ours = median(&c.per_s);
    let theirs = median(&base.per_s);
    let (ours_all, theirs_all) = (c.per_s.iter().sum::<f64>(), base.per_s.iter().sum::<f64>());
    let ratio = if theirs > 0.0 { ours / theirs } else { 0.0 };
    let q = |p: f64| c.latency.value_at_quantile(p);
    // CPU per frame: what each server spent on its own thread, whatever share of the CPU it
    // got; the steadier comparison on a shared machine.
    let ours_cpu = gateway.map_or(0.0, |g| g.cpu_ns as f64 / g.frames.max(1) as f64);
    let j = serde_json::json!({
        "clients": n,
        "frames_per_client_median": median(&c.frames.iter().map(|&f| f as f64).collect::<Vec<_>>()),
        "frames_per_s_per_client_median": ours,
        "frames_per_s_total": ours_all,
        "receive_latency_ns": {"p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": c.latency.max()},
        "cut_off": c.cut,
        "cpu_ns_per_frame": ours_cpu,
        "frames_written": gateway.map_or(0, |g| g.frames),
        "baseline": {"frames": base.frames, "frames_per_s_per_client_median": theirs,
            "frames_per_s_total": theirs_all, "cpu_ns_per_frame": base.cpu_ns_per_frame},
        "vs_baseline": ratio,
        "turns_given": load.turns,
        "deliver_floor": deliver_floor_json(&base.write, n, gateway, load),
    });
    let text = format!(
        "  ws: {n} clients, receive latency p50 {} p99 {} p99.9 {}; {}/s per client (median), {}/s \
         in all, {} cut off; bare tokio-tungstenite broadcast of the same {} frames: {}/s per \
         client, {}/s in all; ratio {ratio:.2}x (rates over the window of all clients)\n  \
         ws CPU per frame written: gateway {:.0} ns, bare server {:.0} ns ({:.2}x); turns \
         yielded to it when behind: {}\n",
        pretty(q(0.5)),
        pretty(q(0.99)),
        pretty(q(0.999)),
        count(ours as u64),
        count(ours_all as u64),
        c.cut,
        count(base.frames as u64),
        count(theirs as u64),
        count(theirs_all as u64),
        ours_cpu,
        base.cpu_ns_per_frame,
        ours_cpu / base.cpu_ns_per_frame.max(1.0),
        count(load.turns),
    ) + &deliver_floor_line(&j["deliver_floor"]);
    Ok((j, text))
}

/// The shortest round the gateway could have kept in this run ([`WriteCost::round_floor_ns`]
/// with the frames it wrote and the CPU share it had), and deliver p99 over it.
///
/// [`WriteCost::round_floor_ns`]: super::bench_ws::WriteCost::round_floor_ns
fn deliver_floor_json(
    w: &super::bench_ws::WriteCost,
    n: usize,
    gateway: Option<&crate::gateway::GatewayReport>,
    load: &GatewayLoad,
) -> serde_json::Value {
    let frames_per_s = gateway.map_or(0, |g| g.frames) as f64 / load.feed_s;
    let floor = w.round_floor_ns(n, frames_per_s, load.share);
    serde_json::json!({
        "write_cpu_ns": w.per_write_ns,
        "frame_cpu_ns": w.per_frame_ns,
        "frames_per_s": frames_per_s,
        "cpu_share": load.share,
        "round_floor_ns": floor,
        "deliver_p99_ns": load.deliver_p99_ns,
        "p99_vs_floor": floor.filter(|&f| f > 0.0).map(|f| load.deliver_p99_ns as f64 / f),
    })
}

fn deliver_floor_line(j: &serde_json::Value) -> String {
    let f = |k: &str| j[k].as_f64().unwrap_or(0.0);
    let floor = match j["round_floor_ns"].as_f64() {
        Some(ns) => format!(
            "round floor {}; deliver p99 / floor {:.1}x",
            pretty(ns as u64),
            f("p99_vs_floor")
        ),
        None => "no round floor: the frames alone take more CPU than the gateway had".into(),
    };
    format!(
        "  ws write cost on this machine's loopback: {:.1} us a write + {:.0} ns a frame; \
         {} frames/s with {:.0}% of a CPU: {floor}\n",
        f("write_cpu_ns") / 1e3,
        f("frame_cpu_ns"),
        count(f("frames_per_s") as u64),
        f("cpu_share") * 100.0,
    )
}

/// Checkpoints every `every_s` of feed time into a directory of the benchmark's own (emptied
/// first), or none.
fn checkpoints(every_s: u64, shards: usize) -> Result<Option<runtime::CheckpointOpts>> {
    if every_s == 0 {
        return Ok(None);
    }
    let dir = crate::paths::bench().join("checkpoints");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::at(&dir, format!("cannot create the directory: {e}")))?;
    Ok(Some(runtime::CheckpointOpts::new(dir, every_s, shards)))
}

/// e2e over the floor in `j[of]` at p99 and p99.9 (`null` where either is missing or the
/// floor is 0).
fn vs_floor(j: &serde_json::Value, of: &str) -> serde_json::Value {
    let ratio = |stage: &str, q: &str| {
        let v = j["stages"][stage][format!("{q}_ns")].as_f64()?;
        let floor = j[of][format!("floor_{q}_ns")].as_f64()?;
        (floor > 0.0).then(|| v / floor)
    };
    // A snapshot request crosses the same threads as a message, at a time the machine does
    // not choose: the floor a message meets at p99 is the one a request meets.
    serde_json::json!({
        "p99": ratio("e2e", "p99"),
        "p999": ratio("e2e", "p999"),
        "snapshot_p99": ratio("snapshot", "p99"),
    })
}

/// `max`, or messages per second (`1000000`, `1M`, `500k`).
pub fn parse_rate(s: &str) -> std::result::Result<Option<f64>, String> {
    if s == "max" {
        return Ok(None);
    }
    match crate::cli::parse_count(s) {
        Ok(n) if n >= 1 => Ok(Some(n as f64)),
        _ => Err(format!(
            "--rate `{s}` is not a rate: write messages per second (1000000, 1M, 1.5M, 500k) or max"
        )),
    }
}

fn default_path(scope: Scope) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    crate::paths::bench().join(format!("{secs}-{}.json", scope.name()))
}

/// The result in its documented shape.
fn result_json(
    a: &BenchArgs,
    scope: Scope,
    offered: Option<f64>,
    r: &RunReport,
) -> serde_json::Value {
    // Over the feed alone ([`RunReport::feed_rate`]).
    let secs = r.feed_s();
    let n = r.shards.len() as u64;
    let owed = r.ingress.messages + r.ingress.broadcast * n.saturating_sub(1);
    let applied: u64 = r.shards.iter().map(|s| s.messages).sum();
    let all = r.control.all_stages();
    let stages: serde_json::Map<String, serde_json::Value> = STAGES
        .iter()
        .map(|s| (s.name().to_string(), stage_json_of(&all, *s)))
        .collect();
    let sinks: Vec<serde_json::Value> = r
        .sinks
        .iter()
        .map(|k| {
            serde_json::json!({"name": k.name, "rows": k.rows_written,
                "rows_per_s": k.rows_written as f64 / r.wall.as_secs_f64().max(1e-9),
                "spool_pending_bytes": k.spool_pending_bytes, "retries": k.retries})
        })
        .collect();
    let placement: serde_json::Map<String, serde_json::Value> = r
        .placement
        .iter()
        .map(|(k, c)| (k.clone(), (*c).into()))
        .collect();
    let timeline: Vec<serde_json::Value> = r
        .control
        .state
        .ticks
        .iter()
        .map(|t| {
            serde_json::json!([
                t.at_s,
                t.e2e_p99_ns,
                t.e2e_max_ns,
                t.messages,
                t.level,
                t.ingress_lost_ns,
                t.shard_lost_ns,
                t.control_turn_max_ns,
                t.steal_ns,
                t.ingress_off_max_ns,
                t.ingress_turn_max_ns,
                t.shard_off_max_ns,
                t.shard_turn_max_ns,
                crate::telemetry::offcpu::Doing::names(t.ingress_turn_roles)
            ])
        })
        .collect();
    serde_json::json!({
        "shape": SHAPE,
        "scope": scope.name(),
        "messages": r.ingress.messages,
        "seed": a.seed,
        "offered_rate": offered,
        "achieved_rate": r.feed_rate(),
        "wall_s": secs,
        "startup_s": r.startup_s(),
        "shards": r.shards.len(),
        "sinks": sinks,
        "histograms": !a.no_histograms,
        "stages": stages,
        "drops": owed.saturating_sub(applied),
        "snapshot_rate": a.snapshot_rate,
        "snapshot_misses": r.control.state.probe_misses,
        "degrade": crate::control::admin::degrade_json(&r.control),
        "peak_rss_bytes": crate::telemetry::memory::peak_rss_bytes(),
        "placement": placement,
        "timeline": {"columns": ["at_s", "e2e_p99_ns", "e2e_max_ns", "messages", "level",
            "ingress_lost_ns", "shard_lost_ns", "control_turn_max_ns", "steal_ns",
            "ingress_off_max_ns", "ingress_turn_max_ns", "shard_off_max_ns", "shard_turn_max_ns",
            "ingress_turn_roles"],
            "rows": timeline},
        "lost_cpu_ns": r.control.state.lost.iter().map(|(n, v)| (n.clone(), (*v).into()))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
    })
}

/// The result as a table for the terminal.
fn table(j: &serde_json::Value) -> String {
    let mut s = format!(
        "bench {} {} messages, {} shard(s): offered {}, achieved {}, drops {}\n",
        j["scope"].as_str().unwrap_or("?"),
        count(j["messages"].as_u64().unwrap_or(0)),
        j["shards"],
        j["offered_rate"].as_f64().map_or("max".into(), rate),
        rate(j["achieved_rate"].as_f64().unwrap_or(0.0)),
        j["drops"]
    );
    s += &format!(
        "  {:<9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}\n",
        "stage", "p50", "p90", "p99", "p99.9", "p99.99", "max", "count"
    );
    for st in STAGES {
        let v = &j["stages"][st.name()];
        if v["count"].as_u64().unwrap_or(0) == 0 {
            continue;
        }
        // `null`: the quantile fell among samples over a minute (beyond the histograms).
        let f = |k: &str| v[k].as_u64().map_or("> 60s".into(), pretty);
        s += &format!(
            "  {:<9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}\n",
            st.name(),
            f("p50_ns"),
            f("p90_ns"),
            f("p99_ns"),
            f("p999_ns"),
            f("p9999_ns"),
            f("max_ns"),
            count(v["count"].as_u64().unwrap_or(0))
        );
    }
    for (of, vs, what) in [
        (
            "noise",
            "vs_floor",
            "noise floor (this machine's lost CPU time alone)",
        ),
        (
            "run_floor",
            "vs_run_floor",
            "floor of this run (its own data path's time off its CPUs)",
        ),
    ] {
        if let Some(n) = j[of].as_object() {
            let ns = |k: &str| pretty(n[k].as_u64().unwrap_or(0));
            let x = |q: &str| j[vs][q].as_f64().map_or("-".into(), |r| format!("{r:.1}x"));
            s += &format!(
                "  {what}: e2e p99 {}, p99.9 {}; e2e / floor: p99 {}, p99.9 {}; snapshot p99 / floor p99: {}\n",
                ns("floor_p99_ns"),
                ns("floor_p999_ns"),
                x("p99"),
                x("p999"),
                x("snapshot_p99")
            );
        }
    }
    if let Some(c) = j["crossing"].as_object() {
        let ns = |k: &str| pretty(c[k].as_u64().unwrap_or(0));
        let hop = j["stages"]["hop"]["p50_ns"].as_f64().unwrap_or(0.0);
        let per = c["one_way_p50_ns"].as_f64().filter(|v| *v > 0.0);
        s += &format!(
            "  core-to-core crossing (CPU {} -> {}, one way): p50 {}, p90 {} (before {}, after {}); hop p50 / crossing p50: {}\n",
            c["cpus"][0],
            c["cpus"][1],
            ns("one_way_p50_ns"),
            ns("one_way_p90_ns"),
            ns("before_p50_ns"),
            ns("after_p50_ns"),
            per.map_or("-".into(), |p| format!("{:.1}x", hop / p))
        );
    }
    if let Some(v) = j["speed"].as_object() {
        let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
        s += &format!(
            "  CPU {} speed: a fixed m7 slice applies at {:.1} ns/message (before {:.1}, after {:.1}); a load past the caches {:.0} ns (before {:.0}, after {:.0})\n",
            v["cpu"],
            f("apply_ns_per_message"),
            f("apply_before_ns"),
            f("apply_after_ns"),
            f("miss_ns"),
            f("miss_before_ns"),
            f("miss_after_ns")
        );
    }
    let secs: Vec<String> = j["degrade"]["seconds_at_level"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| format!("{:.1}", v.as_f64().unwrap_or(0.0)))
        .collect();
    s += &format!(
        "  degrade: {} change(s), seconds at level [{}]; peak RSS {} MiB\n",
        j["degrade"]["changes"].as_array().map_or(0, Vec::len),
        secs.join(", "),
        j["peak_rss_bytes"].as_u64().unwrap_or(0) >> 20
    );
    for k in j["sinks"].as_array().into_iter().flatten() {
        s += &format!(
            "  sink {}: {} rows, {:.0} rows/s\n",
            k["name"].as_str().unwrap_or("?"),
            count(k["rows"].as_u64().unwrap_or(0)),
            k["rows_per_s"].as_f64().unwrap_or(0.0)
        );
    }
    s
}

/// Compares with a baseline: throughput may not fall, and no stage's p99 or p99.9 may rise,
/// by more than `tolerance` percent. Every comparison is printed.
fn gate(now: &serde_json::Value, baseline: &Path, tolerance: f64) -> Result<()> {
    let text = std::fs::read_to_string(baseline)
        .map_err(|e| Failure::at(baseline, format!("cannot read the baseline: {e}")))?;
    let base: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure::at(baseline, format!("the baseline is not a bench result: {e}")))?;
    let tol = tolerance.max(0.0) / 100.0;
    let mut worse = Vec::new();
    let mut check = |what: String, was: f64, is: f64, higher_is_better: bool| {
        if was <= 0.0 {
            return;
        }
        let change = (is - was) / was;
        let bad = if higher_is_better {
            change < -tol
        } else {
            change > tol
        };
        let digits = if was < 100.0 { 2 } else { 0 };
        println!(
            "  gate {what}: baseline {was:.digits$}, now {is:.digits$} ({:+.1}%){}",
            change * 100.0,
            if bad { "  REGRESSED" } else { "" }
        );
        if bad {
            worse.push(format!("{what} {:+.1}%", change * 100.0));
        }
    };
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    check(
        "achieved_rate".into(),
        f(&base["achieved_rate"]),
        f(&now["achieved_rate"]),
        true,
    );
    for st in STAGES {
        let (b, n) = (&base["stages"][st.name()], &now["stages"][st.name()]);
        let fewest = b["count"]
            .as_u64()
            .unwrap_or(0)
            .min(n["count"].as_u64().unwrap_or(0));
        if fewest == 0 {
            continue;
        }
        // A quantile with fewer than ten samples beyond it is one or two outliers, not a
        // figure: p99 is gated from 1,000 samples, p99.9 from 10,000.
        for (q, tail) in [("p99_ns", 0.01), ("p999_ns", 0.001)] {
            if (fewest as f64) * tail < 10.0 {
                println!("  gate {}.{q}: skipped, {fewest} samples", st.name());
                continue;
            }
            check(format!("{}.{q}", st.name()), f(&b[q]), f(&n[q]), false);
        }
    }
    // e2e over the machine's floor in the same run: the engine's own share of the tail, which
    // a noisy hour moves less than the tail itself.
    for vs in ["vs_floor", "vs_run_floor"] {
        for q in ["p99", "p999"] {
            if let (Some(b), Some(n)) = (base[vs][q].as_f64(), now[vs][q].as_f64()) {
                check(format!("{vs}.{q}"), b, n, false);
            }
        }
    }
    if worse.is_empty() {
        println!(
            "  gate: nothing regressed by more than {tolerance}% against {}",
            baseline.display()
        );
        Ok(())
    } else {
        Err(Failure::new(format!(
            "regressed by more than {tolerance}% against {}: {}",
            baseline.display(),
            worse.join(", ")
        )))
    }
}

const COLORS: [&str; 7] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
];

/// A two-panel SVG: each stage's percentile distribution, and e2e over time.
fn chart(j: &serde_json::Value, r: &RunReport) -> String {
    let (w, h, pad) = (1000.0, 420.0, 60.0);
    let panel = (w - 3.0 * pad) / 2.0;
    let plot_h = h - 2.0 * pad;
    // Latency axis: log10 from 10 ns to the largest max.
    let top = STAGES
        .iter()
        .map(|s| j["stages"][s.name()]["max_ns"].as_f64().unwrap_or(1.0))
        .fold(1_000.0f64, f64::max);
    let (lo, hi) = (1.0f64, top.log10().ceil().max(2.0));
    let y = |ns: f64| pad + plot_h - (ns.max(10.0).log10() - lo) / (hi - lo) * plot_h;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    s += &format!(
        "<text x=\"{pad}\" y=\"20\" font-size=\"14\">tickcore bench {} {} msgs, offered {}, achieved {:.0}/s</text>\n",
        j["scope"].as_str().unwrap_or(""),
        j["messages"],
        j["offered_rate"].as_f64().map_or("max".into(), |r| format!("{r:.0}/s")),
        j["achieved_rate"].as_f64().unwrap_or(0.0)
    );
    // Axes and decades, both panels.
    for x0 in [pad, 2.0 * pad + panel] {
        s += &format!("<rect x=\"{x0}\" y=\"{pad}\" width=\"{panel}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#999\"/>\n");
        let mut d = lo;
        while d <= hi {
            let yy = y(10f64.powf(d));
            s += &format!("<line x1=\"{x0}\" x2=\"{}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", x0 + panel, x0 - 4.0, yy + 4.0, pretty(10f64.powf(d) as u64));
            d += 1.0;
        }
    }
    // Left: percentile distribution per stage.
    let qs: Vec<(&str, String)> = QUANTILES
        .iter()
        .map(|(n, _)| (*n, format!("{n}_ns")))
        .chain(std::iter::once(("max", "max_ns".to_string())))
        .collect();
    let xq = |i: usize| pad + panel * i as f64 / (qs.len() - 1) as f64;
    for (i, (name, _)) in qs.iter().enumerate() {
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{name}</text>\n",
            xq(i),
            pad + plot_h + 16.0
        );
    }
    s += &format!(
        "<text x=\"{pad}\" y=\"{}\">latency by percentile, per stage</text>\n",
        pad - 8.0
    );
    for (k, st) in STAGES.iter().enumerate() {
        let v = &j["stages"][st.name()];
        if v["count"].as_u64().unwrap_or(0) == 0 {
            continue;
        }
        let pts: Vec<String> = qs
            .iter()
            .enumerate()
            .map(|(i, (_, key))| format!("{:.1},{:.1}", xq(i), y(v[key].as_f64().unwrap_or(0.0))))
            .collect();
        let c = COLORS[k % COLORS.len()];
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n",
            pts.join(" ")
        );
        s += &format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{}</text>\n",
            pad + 8.0,
            pad + 14.0 + 13.0 * k as f64,
            st.name()
        );
    }
    // Right: e2e p99 and max per control interval.
    let x0 = 2.0 * pad + panel;
    s += &format!(
        "<text x=\"{x0}\" y=\"{}\">e2e per interval over time (p99 solid, max dotted)</text>\n",
        pad - 8.0
    );
    let ticks = &r.control.state.ticks;
    let end = ticks.last().map_or(1.0, |t| t.at_s).max(1e-3);
    let xt = |t: f64| x0 + panel * t / end;
    for (field, dash) in [(0usize, ""), (1, " stroke-dasharray=\"2,3\"")] {
        let pts: Vec<String> = ticks
            .iter()
            .filter(|t| t.e2e_max_ns > 0)
            .map(|t| {
                let v = if field == 0 {
                    t.e2e_p99_ns
                } else {
                    t.e2e_max_ns
                };
                format!("{:.1},{:.1}", xt(t.at_s), y(v as f64))
            })
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"{dash} points=\"{}\"/>\n",
            COLORS[4],
            pts.join(" ")
        );
    }
    for t in ticks.iter().filter(|t| t.level > 0) {
        s += &format!(
            "<rect x=\"{:.1}\" y=\"{}\" width=\"2\" height=\"6\" fill=\"#d62728\"/>\n",
            xt(t.at_s),
            pad + plot_h - 6.0
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{end:.1} s (red marks: degraded)</text>\n",
        x0 + panel,
        pad + plot_h + 16.0
    );
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("max"), Ok(None));
        assert_eq!(parse_rate("1M"), Ok(Some(1e6)));
        assert_eq!(parse_rate("1.5M"), Ok(Some(1.5e6)));
        assert_eq!(parse_rate("250000"), Ok(Some(250_000.0)));
        assert!(parse_rate("fast").unwrap_err().contains("is not a rate"));
        assert!(parse_rate("0").is_err());
    }
}

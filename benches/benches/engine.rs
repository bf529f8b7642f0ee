//! End-to-end replay throughput at `--speed max`: ingress thread -> K pinned shard cores ->
//! consumer, on generated m7 and v3k sessions, against the single-core book build on the same
//! bytes (what the hop and the extra threads cost). Median of 3 runs each.
//!
//! Run: `cargo bench -p tickcore-benches --bench engine`. `TICKCORE_BENCH_MESSAGES` (default
//! 20M), `TICKCORE_BENCH_SHARDS` (default `1,2`; any list for bigger machines). Writes
//! `build_data/bench/engine-<scope>.json`.

use shards::book::Books;
use shards::synth::{Profile, Scope};
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tickcore::config::{Config, Overrides};
use tickcore::runtime::{self, ingress::BytesSource, RunOptions};
use tickcore_benches::{median, session};

fn engine_rate(bytes: &[u8], shards: usize) -> (f64, u64, u64) {
    let flags = Overrides {
        shards: Some(shards),
        ..Default::default()
    };
    let cpus = tickcore::config::machine_cpus();
    // TICKCORE_SHARD_CPUS and the other variables apply, as for `tickcore run`.
    let cfg = Config::load(None, |k| std::env::var(k).ok(), &flags, cpus).expect("valid config");
    let src = BytesSource {
        name: "bench".into(),
        bytes,
        skip_corrupt: false,
    };
    let stop = AtomicBool::new(false);
    let r = runtime::run(&src, &cfg, RunOptions::default(), &stop).expect("engine runs");
    let waits = r.links.iter().map(|l| l.full_waits).sum();
    let owed = r.ingress.messages + r.ingress.broadcast * (shards as u64 - 1);
    let lost = owed.saturating_sub(r.shards.iter().map(|s| s.messages).sum::<u64>());
    (
        r.ingress.messages as f64 / r.wall.as_secs_f64(),
        waits,
        lost,
    )
}

fn single_core_rate(bytes: &[u8], n: u64) -> f64 {
    let mut books = Books::default();
    let t = Instant::now();
    books.replay(bytes, false, &mut (), |_, _| {}).unwrap();
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return println!("engine: benchmark");
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n = if smoke {
        20_000
    } else {
        tickcore_benches::messages_from_env(20_000_000)
    };
    let shard_counts: Vec<usize> = std::env::var("TICKCORE_BENCH_SHARDS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("engine: {n} messages per session, shards {shard_counts:?}");
    for scope in [Scope::M7, Scope::V3k] {
        let bytes = session(scope, Profile::Realistic, n);
        let single = median((0..3).map(|_| single_core_rate(&bytes, n)).collect());
        println!(
            "\n{}: single-core book build {:.2} M msgs/s",
            scope.name(),
            single / 1e6
        );
        let mut rows = Vec::new();
        for &k in &shard_counts {
            let runs: Vec<(f64, u64, u64)> = (0..3).map(|_| engine_rate(&bytes, k)).collect();
            let rate = median(runs.iter().map(|r| r.0).collect());
            let waits = runs.iter().map(|r| r.1).max().unwrap_or(0);
            let lost = runs.iter().map(|r| r.2).max().unwrap_or(0);
            println!(
                "  {k} shard(s): {:.2} M msgs/s end to end ({:.2}x single core), ring-full waits \
                 up to {waits}, messages not applied: {lost}",
                rate / 1e6,
                rate / single
            );
            rows.push(serde_json::json!({"shards": k, "msgs_per_s_median": rate,
                "runs": runs.iter().map(|r| r.0).collect::<Vec<_>>(), "ratio_to_single_core": rate / single,
                "max_ring_full_waits": waits, "messages_not_applied": lost}));
        }
        if !smoke {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../build_data/bench");
            std::fs::create_dir_all(dir).unwrap();
            let j = serde_json::json!({"scope": scope.name(), "messages": n,
                "single_core_msgs_per_s": single, "engine": rows});
            std::fs::write(format!("{dir}/engine-{}.json", scope.name()), j.to_string()).unwrap();
        }
    }
}

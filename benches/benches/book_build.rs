//! The issue-level book-building harness: for m7 and v3k, realistic and deep, on sessions of
//! `TICKCORE_BENCH_MESSAGES` (default 20M) messages, reports
//! - generation rate (the generator must not be the slowest part of a benchmark),
//! - book-building throughput, median of 3, as `tickcore book` runs (prefetching when timing
//!   says it pays), and with prefetching always and never, rounds interleaved,
//! - book memory and the process's peak RSS (which includes the session held in memory),
//! - p50/p99/p99.99 apply latency per message type from HDR histograms (rdtscp around each
//!   apply; the timer's own cost is measured and printed, not subtracted).
//!
//! Writes one JSON per session to `build_data/bench/book_build-<scope>-<profile>.json`.
//! Run: `cargo bench -p tickcore-benches --bench book_build`; `TICKCORE_BENCH_SESSIONS=v3k-deep`
//! (comma-separated `<scope>-<profile>` names) runs only those sessions.

use hdrhistogram::Histogram;
use shards::book::{Books, Prefetch};
use shards::itch::{walk, ALL_TYPES, TYPE_INDEX};
use shards::synth::{Profile, Scope};
use std::time::Instant;
use tickcore_benches::{cycles, cycles_per_ns, median, peak_rss_bytes, session};

fn replay(bytes: &[u8], prefetch: Prefetch) -> (f64, Books) {
    let mut books = Books::default();
    books.set_prefetch(prefetch);
    // As `tickcore book` does: the session's memory is made resident before the clock.
    books.reserve_for_session(bytes);
    let t = Instant::now();
    books.replay(bytes, false, &mut (), |_, _| {}).unwrap();
    (t.elapsed().as_secs_f64(), books)
}

fn latency(bytes: &[u8], per_ns: f64) -> Vec<(char, u64, [f64; 3])> {
    let mut h: Vec<Histogram<u64>> = (0..=ALL_TYPES.len())
        .map(|_| Histogram::new_with_bounds(1, 1 << 40, 3).unwrap())
        .collect();
    let mut books = Books::default();
    walk(bytes, false, |_, m| {
        let t0 = cycles();
        let _ = books.apply(m, &mut ());
        let dt = cycles() - t0;
        h[TYPE_INDEX[m[0] as usize] as usize].saturating_record(dt.max(1));
    })
    .unwrap();
    ALL_TYPES
        .iter()
        .zip(&h)
        .filter(|(_, h)| !h.is_empty())
        .map(|(t, h)| {
            let q = |p: f64| h.value_at_quantile(p) as f64 / per_ns;
            (*t as char, h.len(), [q(0.5), q(0.99), q(0.9999)])
        })
        .collect()
}

fn timer_overhead_ns(per_ns: f64) -> f64 {
    let v: Vec<f64> = (0..10_001)
        .map(|_| {
            let t0 = cycles();
            (cycles() - t0) as f64 / per_ns
        })
        .collect();
    median(v)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return println!("book_build: benchmark");
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: then this is a smoke run
    // on a small session that checks the harness works and writes no result.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n = if smoke {
        20_000
    } else {
        tickcore_benches::messages_from_env(20_000_000)
    };
    let per_ns = cycles_per_ns();
    let overhead = timer_overhead_ns(per_ns);
    let out_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../build_data/bench");
    std::fs::create_dir_all(out_dir).unwrap();
    // TICKCORE_BENCH_SESSIONS=v3k-deep,m7-realistic runs only those sessions.
    let only = std::env::var("TICKCORE_BENCH_SESSIONS").unwrap_or_default();
    println!("book_build: {n} messages per session, timer overhead {overhead:.1} ns (median)");
    for (scope, profile) in [
        (Scope::M7, Profile::Realistic),
        (Scope::M7, Profile::Deep),
        (Scope::V3k, Profile::Realistic),
        (Scope::V3k, Profile::Deep),
        (Scope::M7, Profile::Uniform),
        (Scope::V3k, Profile::Uniform),
    ] {
        let name = format!("{}-{}", scope.name(), profile.name());
        if !only.is_empty() && !only.split(',').any(|o| o == name) {
            continue;
        }
        let t = Instant::now();
        let bytes = session(scope, profile, n);
        let gen_rate = n as f64 / t.elapsed().as_secs_f64();
        // Rounds interleave the three modes, so that a noisy minute hits each alike.
        let modes = [Prefetch::Measured, Prefetch::Always, Prefetch::Never];
        let mut runs = [vec![], vec![], vec![]];
        for _ in 0..3 {
            for (m, r) in modes.iter().zip(runs.iter_mut()) {
                r.push(n as f64 / replay(&bytes, *m).0);
            }
        }
        let [measured, always, never] = runs.clone().map(median);
        let (_, books) = replay(&bytes, Prefetch::Measured);
        let lat = latency(&bytes, per_ns);
        println!(
            "\n{name}: build {:.2} M msgs/s ({:.1} ns/msg) measured; prefetch always {:.2} \
             M/s, never {:.2} M/s (measured/best x{:.2}); gen {:.2} M/s; book memory {:.1} MiB; \
             peak RSS {:.1} MiB (session {:.1} MiB)",
            measured / 1e6,
            1e9 / measured,
            always / 1e6,
            never / 1e6,
            measured / always.max(never),
            gen_rate / 1e6,
            books.heap_bytes() as f64 / 1048576.0,
            peak_rss_bytes() as f64 / 1048576.0,
            bytes.len() as f64 / 1048576.0
        );
        println!("  type        count      p50 ns    p99 ns  p99.99 ns");
        for (t, count, q) in &lat {
            println!(
                "  {t}    {count:>12}  {:>9.0} {:>9.0} {:>10.0}",
                q[0], q[1], q[2]
            );
        }
        let json = serde_json::json!({
            "session": name, "messages": n, "bytes": bytes.len(),
            "build_msgs_per_s": {"measured_median": measured, "measured_runs": runs[0],
                                 "always_median": always, "always_runs": runs[1],
                                 "never_median": never, "never_runs": runs[2]},
            "gen_msgs_per_s": gen_rate,
            "book_heap_bytes": books.heap_bytes(),
            "peak_rss_bytes": peak_rss_bytes(),
            "timer_overhead_ns": overhead,
            "apply_latency_ns": lat.iter().map(|(t, c, q)| (t.to_string(), serde_json::json!({
                "count": c, "p50": q[0], "p99": q[1], "p9999": q[2]}))).collect::<serde_json::Map<_, _>>(),
        });
        // The smoke pass (`cargo test --all-targets`) must not overwrite a real run's result.
        if !smoke {
            std::fs::write(
                format!("{out_dir}/book_build-{name}.json"),
                json.to_string(),
            )
            .unwrap();
        }
    }
}

//! Measurement helpers shared by the benchmarks: generated sessions, a cycle clock, peak memory.
//!
//! Owns how tickcore is measured, never what it computes: every benchmark drives the same public
//! APIs the engine uses.

use shards::synth::{generate, GenConfig, Profile, Scope};
use std::time::{Duration, Instant};

/// A generated session held in memory (generation is never inside a timed region).
pub fn session(scope: Scope, profile: Profile, messages: u64) -> Vec<u8> {
    generate(&GenConfig {
        scope,
        messages,
        seed: 1,
        profile,
    })
    .expect("benchmark sessions are large enough")
}

/// Message count from `TICKCORE_BENCH_MESSAGES` (accepts a `M` suffix), or `default`.
pub fn messages_from_env(default: u64) -> u64 {
    std::env::var("TICKCORE_BENCH_MESSAGES")
        .ok()
        .and_then(|s| match s.strip_suffix('M') {
            Some(m) => m.parse::<u64>().ok().map(|n| n * 1_000_000),
            None => s.parse().ok(),
        })
        .unwrap_or(default)
}

/// Reads the time-stamp counter: a few nanoseconds, constant rate on this CPU (`constant_tsc`).
#[inline(always)]
pub fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        let mut aux = 0u32;
        // SAFETY: rdtscp has no preconditions on x86_64.
        unsafe { core::arch::x86_64::__rdtscp(&mut aux) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }
}

/// Counter ticks per nanosecond, measured against the monotonic clock over 100 ms.
pub fn cycles_per_ns() -> f64 {
    let (t0, c0) = (Instant::now(), cycles());
    while t0.elapsed() < Duration::from_millis(100) {}
    let (dt, dc) = (t0.elapsed(), cycles() - c0);
    dc as f64 / dt.as_nanos() as f64
}

/// The process's peak resident set (VmHWM), in bytes; the engine's own reading.
pub use tickcore::telemetry::memory::peak_rss_bytes;

/// Median of a few values.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

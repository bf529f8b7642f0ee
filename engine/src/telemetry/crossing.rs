//! The platform's core-to-core crossing: how long one cache line takes to travel from the
//! ingress's CPU to a shard's, measured as half a round trip of a ping-pong between them.
//!
//! Why: at 1M msgs/s the e2e median is a few crossings long. A message's batch crosses to its
//! shard (ring index, slot, buffer), its events cross back, and the buffer's return tells the
//! ingress the shard is idle. On this project's 2-vCPU VM the crossing itself changes with
//! the host's placement of the vCPUs: in runs of the same build on 2026-12-07 the hop's p50
//! was 150-230 ns in some runs and 450-780 ns in others, and the e2e p50 went from 0.8-1.4 us to
//! 2.2-4.5 us with it. `tickcore bench` probes the crossing around the replay, as it probes the
//! noise, so a slow median can be told from a slow machine.
//!
//! Method: two threads, pinned to the two CPUs, pass a counter on one cache line back and forth
//! (each waits, spinning, for the other's value and answers with the next). The first times
//! each round trip with two clock reads; half of it is one crossing, plus half a clock read
//! (about 10 ns here). Never runs during a replay: it would take the engine's CPUs.

use crate::runtime::clock;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One crossing probe between two CPUs.
#[derive(Debug, Clone)]
pub struct Crossing {
    /// The CPU that starts each round trip (the ingress's).
    pub from: usize,
    /// The CPU that answers (a shard's).
    pub to: usize,
    /// Half of each round trip, ns.
    pub one_way: Histogram<u64>,
}

impl Crossing {
    /// One way at quantile `q`, ns (0 when nothing was recorded).
    pub fn one_way_ns(&self, q: f64) -> u64 {
        if self.one_way.is_empty() {
            return 0;
        }
        self.one_way.value_at_quantile(q)
    }
}

/// A counter on a line of its own.
#[repr(align(128))]
struct Line(AtomicU64);

/// Passes a counter between `from` and `to` for `span`, timing each round trip on `from`.
pub fn probe(from: usize, to: usize, span: Duration) -> Crossing {
    let line = Arc::new(Line(AtomicU64::new(0)));
    let done = Arc::new(AtomicBool::new(false));
    let answer = {
        let (line, done) = (Arc::clone(&line), Arc::clone(&done));
        std::thread::spawn(move || {
            crate::runtime::pin(to);
            let mut expect = 1u64;
            while !done.load(Ordering::Relaxed) {
                if line.0.load(Ordering::Acquire) == expect {
                    line.0.store(expect + 1, Ordering::Release);
                    expect += 2;
                }
                std::hint::spin_loop();
            }
        })
    };
    // Timed on a thread of its own, as the answer is: pinning the caller would leave the
    // bench's main thread, and every thread it spawns after, on `from` alone.
    let time = std::thread::spawn(move || {
        crate::runtime::pin(from);
        let mut one_way = crate::telemetry::histogram();
        let end = clock::now_ns() + span.as_nanos() as u64;
        let mut sent = 1u64;
        loop {
            let t0 = clock::now_ns();
            if t0 >= end {
                break;
            }
            line.0.store(sent, Ordering::Release);
            // Bounded: an answering thread that lost its CPU for good must not hang the bench.
            while line.0.load(Ordering::Acquire) != sent + 1 {
                if clock::now_ns() >= end + 1_000_000_000 {
                    break;
                }
                std::hint::spin_loop();
            }
            one_way.saturating_record((clock::now_ns() - t0) / 2);
            sent += 2;
        }
        one_way
    });
    let one_way = time
        .join()
        .unwrap_or_else(|_| crate::telemetry::histogram());
    done.store(true, Ordering::Relaxed);
    let _ = answer.join();
    Crossing { from, to, one_way }
}

/// Two probes of the same pair as one.
pub fn combine(mut a: Crossing, b: &Crossing) -> Crossing {
    let _ = a.one_way.add(&b.one_way);
    a
}

/// The JSON's `crossing`: one way at p50 and p90 over both probes, and each probe's p50.
pub fn json(before: &Crossing, after: &Crossing, span: Duration) -> serde_json::Value {
    let both = combine(before.clone(), after);
    serde_json::json!({
        "cpus": [before.from, before.to],
        "probe_s": span.as_secs_f64() * 2.0,
        "round_trips": both.one_way.len(),
        "one_way_p50_ns": both.one_way_ns(0.5),
        "one_way_p90_ns": both.one_way_ns(0.9),
        "before_p50_ns": before.one_way_ns(0.5),
        "after_p50_ns": after.one_way_ns(0.5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_times_round_trips_between_two_cpus() {
        let cpus = crate::config::machine_cpus();
        let to = usize::from(cpus > 1);
        let c = probe(0, to, Duration::from_millis(20));
        assert!(!c.one_way.is_empty(), "no round trip was timed");
        // A crossing takes more than nothing and, even on one CPU where each answer waits
        // for the scheduler, less than the probe itself.
        assert!(c.one_way_ns(0.5) > 0);
        assert!(
            c.one_way_ns(0.5) < 20_000_000,
            "one way {} ns",
            c.one_way_ns(0.5)
        );
    }

    #[test]
    fn two_probes_combine_and_report_each_median() {
        let mut a = Crossing {
            from: 0,
            to: 1,
            one_way: crate::telemetry::histogram(),
        };
        let mut b = a.clone();
        a.one_way.saturating_record_n(100, 10);
        b.one_way.saturating_record_n(300, 30);
        let j = json(&a, &b, Duration::from_millis(100));
        // Quantiles come back as the top of their bucket.
        let (lo, hi) = (
            a.one_way.highest_equivalent(100),
            a.one_way.highest_equivalent(300),
        );
        assert_eq!(j["round_trips"], 40);
        assert_eq!(j["before_p50_ns"], lo);
        assert_eq!(j["after_p50_ns"], hi);
        assert_eq!(j["one_way_p50_ns"], hi);
        assert_eq!(j["cpus"], serde_json::json!([0, 1]));
    }
}

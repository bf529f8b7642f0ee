//! The platform's own noise: how long, and how often, a thread that never yields still loses
//! its CPU (hypervisor steal, interrupts, kernel work), and the latency floor that alone puts
//! under any stage.
//!
//! Why: on a shared VM a spinning thread can lose its CPU for milliseconds. Every message that
//! arrives during such a gap waits for the rest of it, whatever the engine does, so a tail
//! budget tighter than the gaps allow cannot be met on that box. `tickcore bench` measures the
//! gaps on the engine's CPUs before it replays, and reports the floor beside the figures, so an
//! operator can tell a slow engine from a noisy machine.
//!
//! Method: a thread pinned to each CPU of the engine's path reads the engine clock back to back
//! for the probe's length, all of them at once, as the engine keeps them busy. Probing one CPU
//! at a time (as this module did until 2026-12-05) leaves the others idle, so the machine's
//! other work (here: kdamond, RabbitMQ's Erlang schedulers, NATS, Redis) runs there and the
//! probe misses it; a `sched_switch` trace of a 1M/s bench run showed the ingress preempted
//! 1,280 times in 3.5 s for 74 ms in all, up to 4 ms at a time by kdamond, while the one-CPU
//! probe minutes before had put the p99 floor at 7 us. Busy together, the probe threads lose
//! what the engine's threads lose. A gap is the time between two reads beyond [`GAP_NS`]. A message
//! arriving at a uniformly random moment inside a gap of length g waits a uniform share of g,
//! so the share of messages that wait more than x is
//! `sum over gaps of max(g - x, 0) / probe length`; a message crosses each CPU of the path once,
//! so the path's share is the sum over its CPUs. The floor at quantile q is the smallest x whose
//! share is at most 1 - q. Never runs during a replay: it would steal the engine's CPUs.

use crate::runtime::clock;
use hdrhistogram::Histogram;
use std::time::Duration;

/// Reads closer together than this are the clock's own cost, not a lost CPU.
pub const GAP_NS: u64 = 1_000;

/// What one CPU lost during the probe.
#[derive(Debug, Clone)]
pub struct CpuNoise {
    /// The CPU.
    pub cpu: usize,
    /// Length of the probe on it, ns.
    pub span_ns: u64,
    /// Every gap of at least [`GAP_NS`], ns.
    pub gaps: Histogram<u64>,
}

impl CpuNoise {
    /// Share of the probe's time spent in gaps of at least `min_ns`.
    pub fn lost_share(&self, min_ns: u64) -> f64 {
        let lost: u64 = self
            .gaps
            .iter_recorded()
            .filter(|v| v.value_iterated_to() >= min_ns)
            .map(|v| v.value_iterated_to() * v.count_at_value())
            .sum();
        lost as f64 / self.span_ns.max(1) as f64
    }

    /// Share of uniformly arriving messages that wait longer than `x_ns` on this CPU.
    fn share_waiting_over(&self, x_ns: u64) -> f64 {
        let waited: u64 = self
            .gaps
            .iter_recorded()
            .map(|v| v.value_iterated_to().saturating_sub(x_ns) * v.count_at_value())
            .sum();
        waited as f64 / self.span_ns.max(1) as f64
    }

    /// Gaps of at least `min_ns`.
    pub fn gaps_over(&self, min_ns: u64) -> u64 {
        self.gaps
            .iter_recorded()
            .filter(|v| v.value_iterated_to() >= min_ns)
            .map(|v| v.count_at_value())
            .sum()
    }
}

/// The latency a message crossing every CPU in `path` waits at quantile `q` from the gaps
/// alone: the smallest x (ns) such that at most `1 - q` of messages wait longer than x.
pub fn floor_ns(path: &[&CpuNoise], q: f64) -> u64 {
    let share = |x: u64| path.iter().map(|c| c.share_waiting_over(x)).sum::<f64>();
    let allowed = 1.0 - q;
    let max = path.iter().map(|c| c.gaps.max()).max().unwrap_or(0);
    if share(0) <= allowed {
        return 0;
    }
    // share() only falls as x grows: bisect between 0 (too much) and the longest gap (none).
    let (mut lo, mut hi) = (0u64, max);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if share(mid) <= allowed {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// Spins on every CPU of `cpus` at once for `span`, recording each one's gaps.
pub fn probe(cpus: &[usize], span: Duration) -> Vec<CpuNoise> {
    let mut unique = cpus.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let spinners: Vec<_> = unique
        .iter()
        .map(|&cpu| std::thread::spawn(move || spin(cpu, span)))
        .collect();
    spinners.into_iter().filter_map(|h| h.join().ok()).collect()
}

fn spin(cpu: usize, span: Duration) -> CpuNoise {
    crate::runtime::pin(cpu);
    let mut gaps = crate::telemetry::histogram();
    let start = clock::now_ns();
    let end = start + span.as_nanos() as u64;
    let mut last = start;
    loop {
        let t = clock::now_ns();
        let g = t - last;
        if g >= GAP_NS {
            gaps.saturating_record(g);
        }
        last = t;
        if t >= end {
            break;
        }
    }
    CpuNoise {
        cpu,
        span_ns: last - start,
        gaps,
    }
}

/// Two probes of the same CPUs as one: each CPU's gaps and spans added.
pub fn combine(mut a: Vec<CpuNoise>, b: Vec<CpuNoise>) -> Vec<CpuNoise> {
    for n in b {
        match a.iter_mut().find(|c| c.cpu == n.cpu) {
            Some(c) => {
                let _ = c.gaps.add(&n.gaps);
                c.span_ns += n.span_ns;
            }
            None => a.push(n),
        }
    }
    a
}

/// The worst floor at `q` over `paths` (each the CPUs one message crosses), from the CPUs
/// measured in `probed`.
pub fn worst_floor_ns(probed: &[CpuNoise], paths: &[Vec<usize>], q: f64) -> u64 {
    paths
        .iter()
        .map(|p| {
            let on: Vec<&CpuNoise> = probed.iter().filter(|c| p.contains(&c.cpu)).collect();
            floor_ns(&on, q)
        })
        .max()
        .unwrap_or(0)
}

/// The probe as JSON: per CPU, and the worst floors over `paths`.
pub fn json(probed: &[CpuNoise], paths: &[Vec<usize>], span: Duration) -> serde_json::Value {
    let cpus: Vec<serde_json::Value> = probed
        .iter()
        .map(|c| {
            serde_json::json!({
                "cpu": c.cpu,
                "max_gap_ns": c.gaps.max(),
                "gaps_over_10us": c.gaps_over(10_000),
                "gaps_over_100us": c.gaps_over(100_000),
                "lost_share_over_10us": c.lost_share(10_000),
                "lost_share_over_100us": c.lost_share(100_000),
            })
        })
        .collect();
    serde_json::json!({
        "probe_s": span.as_secs_f64(),
        "probe_mode": "all CPUs of the path at once",
        "cpus": cpus,
        "floor_p99_ns": worst_floor_ns(probed, paths, 0.99),
        "floor_p999_ns": worst_floor_ns(probed, paths, 0.999),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(span_ns: u64, gaps: &[(u64, u64)]) -> CpuNoise {
        let mut h = crate::telemetry::histogram();
        for &(g, n) in gaps {
            h.record_n(g, n).unwrap();
        }
        CpuNoise {
            cpu: 0,
            span_ns,
            gaps: h,
        }
    }

    #[test]
    fn a_quiet_cpu_has_no_floor() {
        let quiet = cpu(1_000_000_000, &[(2_000, 10)]);
        // 20 us of 1 s lost: 0.002% of messages wait at all, under the 1% a p99 allows.
        assert_eq!(floor_ns(&[&quiet], 0.99), 0);
    }

    #[test]
    fn the_floor_is_where_the_waiting_share_meets_the_quantile() {
        // Ten 1 ms gaps in 1 s: 1% of the time lost. The share waiting over x is
        // 10 * (1 ms - x) / 1 s, which is 0.1% at x = 0.9 ms.
        let noisy = cpu(1_000_000_000, &[(1_000_000, 10)]);
        let f = floor_ns(&[&noisy], 0.999);
        let rel = (f as f64 - 900_000.0).abs() / 900_000.0;
        assert!(rel < 0.02, "p99.9 floor {f} ns, expected about 900 us");
        // At p99 the whole 1% may wait: the floor is next to nothing (the histogram's 2
        // significant digits round the gaps up a little).
        let f99 = floor_ns(&[&noisy], 0.99);
        assert!(f99 <= 10_000, "p99 floor {f99} ns");
        // Two such CPUs in the path double the share: p99 now has a floor of about 0.5 ms.
        let f2 = floor_ns(&[&noisy, &noisy], 0.99);
        assert!((f2 as f64 - 500_000.0).abs() / 500_000.0 < 0.02, "{f2}");
    }

    #[test]
    fn shares_count_only_gaps_at_or_over_the_bound() {
        let c = cpu(1_000_000, &[(5_000, 4), (50_000, 2)]);
        assert_eq!(c.gaps_over(10_000), 2);
        assert!((c.lost_share(10_000) - 0.1).abs() < 0.002);
        assert!((c.lost_share(1_000) - 0.12).abs() < 0.002);
    }

    #[test]
    fn two_probes_combine_into_one_per_cpu() {
        let a = vec![cpu(1_000, &[(2_000, 1)])];
        let mut b = cpu(3_000, &[(5_000, 2)]);
        b.cpu = 0;
        let c = combine(a, vec![b]);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].span_ns, c[0].gaps.len()), (4_000, 3));
    }

    #[test]
    fn the_probe_measures_every_cpu_it_is_given_once() {
        let n = probe(&[0, 0], Duration::from_millis(20));
        // Twice named, measured once.
        assert_eq!(n.len(), 1);
        assert!(n[0].span_ns >= 20_000_000);
    }
}
